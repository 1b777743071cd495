#!/bin/sh
# Runs inside the VM (busybox sh): copies the parts of sysfs/procfs the agent reads
# into a small tree (attributes as files, kernel symlinks kept verbatim) and prints it
# as base64 tar between markers on the console. $1 = before|after.
PATH=/ve/bin:$PATH
stage=$1
out=/tmp/ve-capture/$stage
rm -rf "$out"
mkdir -p "$out"
copy_attr() { # $1 = absolute path of a file
    [ -r "$1" ] || return 0
    mkdir -p "$out$(dirname "$1")"
    cat "$1" >"$out$1" 2>/dev/null || rm -f "$out$1"
}
copy_link() { # $1 = absolute path of a symlink
    [ -L "$1" ] || return 0
    mkdir -p "$out$(dirname "$1")"
    ln -s "$(readlink "$1")" "$out$1"
}
for l in /sys/bus/pci/devices/*; do
    copy_link "$l"
    d=$(readlink -f "$l")
    for a in vendor device subsystem_vendor subsystem_device class boot_vga modalias \
        driver_override resource numa_node revision enable; do
        copy_attr "$d/$a"
    done
    copy_link "$d/driver"
    copy_link "$d/iommu_group"
    if [ -L "$d/driver" ]; then
        drv=$(readlink -f "$d/driver")
        mkdir -p "$out$drv"
        copy_link "$drv/module"
    fi
done
for g in /sys/kernel/iommu_groups/*; do
    [ -d "$g" ] || continue
    mkdir -p "$out$g/devices"
    for l in "$g"/devices/*; do copy_link "$l"; done
    copy_attr "$g/type"
done
mkdir -p "$out/sys/kernel/iommu_groups" "$out/sys/class/iommu" "$out/sys/firmware/acpi/tables"
for l in /sys/class/iommu/*; do copy_link "$l"; done
for t in /sys/firmware/acpi/tables/*; do
    [ -f "$t" ] && : >"$out$t"
done
for p in /proc/cmdline /proc/iomem /proc/interrupts /proc/sys/kernel/osrelease; do
    copy_attr "$p"
done
mkdir -p "$out/dev"
# /dev/kmsg itself (record format "<prio>,<seq>,<usec>,<flags>;<text>" plus the
# dictionary lines): read until it would block; dmesg -r converted as a fallback.
timeout 1 cat /dev/kmsg >"$out/dev/kmsg" 2>/dev/null
if [ ! -s "$out/dev/kmsg" ]; then
    dmesg -r | awk '{
        if (match($0, /^<[0-9]+>\[ *[0-9]+\.[0-9]+\] /)) {
            head = substr($0, 1, RLENGTH); text = substr($0, RLENGTH + 1)
            pri = head; sub(/^</, "", pri); sub(/>.*/, "", pri)
            ts = head; sub(/^<[0-9]+>\[ */, "", ts); sub(/\] $/, "", ts)
            split(ts, p, "."); us = p[1] * 1000000 + p[2]
            printf "%d,%d,%d,-;%s\n", pri, NR - 1, us, text
        }
    }' >"$out/dev/kmsg"
fi
echo "VE-CAPTURE-BEGIN $stage"
(cd "$out" && tar -czf - .) | base64
echo "VE-CAPTURE-END $stage"
