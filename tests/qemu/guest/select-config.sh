#!/bin/sh
# Runs inside the VM before the agent (dracut pre-udev 00-a*, or first in init):
# ve.config=NAME on the kernel command line puts /ve/configs/NAME.toml in place of
# /etc/vfio-early.toml, so one image serves several scenarios. Then captures the
# "before" fixture when ve.capture=1.
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
if grep -q 've.capture=1' /proc/cmdline; then
    sh /ve/capture.sh before >/dev/console 2>&1
fi
