#!/bin/sh
# Runs inside the VM before the agent (dracut pre-udev 00-a*, or first in init):
# ve.config=NAME on the kernel command line puts /ve/configs/NAME.toml in place of
# /etc/vfio-early.toml, so one image serves several scenarios. Then captures the
# "before" fixture when ve.capture=1, and with ve.rollback=1 makes 01:00.1 unbindable,
# pre-sets 01:00.0's driver_override and prints the dry-run plan (VE-PLAN lines).
PATH=/ve/bin:$PATH
read -r cmdline </proc/cmdline
for w in $cmdline; do
    case $w in
    ve.config=*)
        name=${w#ve.config=}
        if [ -f "/ve/configs/$name.toml" ]; then
            cp "/ve/configs/$name.toml" /etc/vfio-early.toml
            echo "VE-STAGE config $name" >/dev/console
        fi
        ;;
    esac
done
case " $cmdline " in
*" ve.rollback=1 "*)
    # A plain file over one function's driver_override: the write "succeeds", the
    # device never binds, and the agent's verification must catch it and roll back.
    mkdir -p /tmp
    : >/tmp/ve-fake-override
    mount --bind /tmp/ve-fake-override /sys/bus/pci/devices/0000:01:00.1/driver_override &&
        echo "VE-STAGE rollback armed" >/dev/console
    # A driver_override set before the agent, on the real attribute of the group's other
    # function: the rollback must write it back, not clear it. (bochs-drm is the driver
    # that takes the device anyway, so the rest of the boot is unchanged.)
    echo bochs-drm >/sys/bus/pci/devices/0000:01:00.0/driver_override &&
        echo "VE-STAGE override pre-set" >/dev/console
    /usr/bin/vfio-early bind --dry-run 2>&1 | sed 's/^/VE-PLAN /' >/dev/console
    ;;
esac
if grep -q 've.capture=1' /proc/cmdline; then
    sh /ve/capture.sh before >/dev/console 2>&1
fi
