#!/bin/sh
# Runs inside the VM (busybox sh) once coldplug has settled: prints what the harness
# asserts on to the console, captures the "after" fixture when asked, powers off.
# Lines: VE-DEV <addr> <driver|none> <driver_override> <boot_vga|-> <iommu group|->
#        VE-KMSG <kernel log line about vfio>   VE-RUN <line of the agent's record>
#        VE-CONF <line of the image's modprobe.d backstop>   VE-HUGE <size> <nr_hugepages>
#        VE-CHECK <line of `vfio-early check`> (ve.check=1)   VE-CHECK-EXIT <status>
#        VE-SRIOV <pf> <numvfs> <totalvfs> <drivers_autoprobe>   VE-VF <vf> <pf>
#        VE-GROUPS <line of `vfio-early groups`> (ve.groups=1)
#        VE-UNAME <uname -r>   VE-MOD <loaded module of the vfio stack>
#        VE-VFIODEV <node under /dev/vfio, /dev/vfio/devices, /dev/iommu>
#        VE-RESET <addr> <reset_method, or "absent" when the kernel shows none>
PATH=/ve/bin:$PATH
exec >/dev/console 2>&1
echo "VE-STAGE report $1"
echo "VE-UNAME $(uname -r)"
while read -r m _; do
    case $m in vfio* | iommufd | irqbypass | kvm) echo "VE-MOD $m" ;; esac
done </proc/modules
for n in /dev/vfio/* /dev/vfio/devices/* /dev/iommu; do
    [ -e "$n" ] && echo "VE-VFIODEV $n"
done
for d in /sys/bus/pci/devices/*; do
    a=${d##*/}
    drv=none
    [ -L "$d/driver" ] && drv=$(basename "$(readlink "$d/driver")")
    ovr=$(cat "$d/driver_override" 2>/dev/null)
    vga=$(cat "$d/boot_vga" 2>/dev/null)
    grp=-
    [ -L "$d/iommu_group" ] && grp=$(basename "$(readlink "$d/iommu_group")")
    echo "VE-DEV $a $drv ${ovr:-none} ${vga:--} $grp"
    # SR-IOV: a PF's counts and autoprobe, a VF's PF.
    [ -f "$d/sriov_numvfs" ] &&
        echo "VE-SRIOV $a $(cat "$d/sriov_numvfs") $(cat "$d/sriov_totalvfs") $(cat "$d/sriov_drivers_autoprobe")"
    [ -L "$d/physfn" ] && echo "VE-VF $a $(basename "$(readlink "$d/physfn")")"
    rm=absent
    [ -f "$d/reset_method" ] && rm=$(tr ' ' , <"$d/reset_method" 2>/dev/null)
    echo "VE-RESET $a ${rm:-empty}"
done
dmesg | grep -i -E 'vfio|ve-bench' | sed 's/^/VE-KMSG /'
dmesg | grep -E 'DMAR|AMD-Vi|IOMMU' | head -20 | sed 's/^/VE-IOMMU /'
for f in /run/vfio-early/*; do
    [ -f "$f" ] && sed "s|^|VE-RUN ${f##*/}: |" "$f" && echo
done
for h in /sys/kernel/mm/hugepages/hugepages-*; do
    [ -d "$h" ] && echo "VE-HUGE ${h##*hugepages-} $(cat "$h/nr_hugepages")"
done
if grep -q 've.check=1' /proc/cmdline && [ -x /usr/bin/vfio-early ]; then
    /ve/bin/vfio-early check >/tmp/ve-check.txt 2>&1
    rc=$?
    sed 's/^/VE-CHECK /' /tmp/ve-check.txt
    echo "VE-CHECK-EXIT $rc"
fi
if grep -q 've.groups=1' /proc/cmdline && [ -x /ve/bin/vfio-early ]; then
    /ve/bin/vfio-early groups >/tmp/ve-groups.txt 2>&1
    sed 's/^/VE-GROUPS /' /tmp/ve-groups.txt
    /ve/bin/vfio-early groups --json >/tmp/ve-groups.json 2>&1
    tr -d ' \n' </tmp/ve-groups.json | sed 's/^/VE-GROUPS-JSON /'
    echo
fi
if grep -q 've.detach=1' /proc/cmdline; then
    sh /ve/detach.sh
fi
[ -f /etc/modprobe.d/vfio-early.conf ] && sed 's/^/VE-CONF /' /etc/modprobe.d/vfio-early.conf
if grep -q 've.capture=1' /proc/cmdline; then
    sh /ve/capture.sh after
fi
echo VE-END
sync
echo o >/proc/sysrq-trigger
sleep 30
