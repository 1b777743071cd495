#!/bin/bash
# mmdebstrap customize hook: makes the root bootable as an installed system on the
# test's disk (/dev/vda, ext4) and quiet (no getty, no timers), and enables the unit
# that runs one test step per boot (ve.step= on the kernel command line).
# Usage: customize.sh ROOT GENERATOR
set -euo pipefail
root=$1
printf '%s\n' vfio-test >"$root/etc/hostname"
printf '%s\n' '/dev/vda / ext4 rw,errors=remount-ro 0 1' >"$root/etc/fstab"
# A fixed machine id: the journal and units behave the same on every boot.
printf '%s\n' 0123456789abcdef0123456789abcdef >"$root/etc/machine-id"
for u in serial-getty@ttyS0.service getty@tty1.service apt-daily.timer apt-daily-upgrade.timer \
    e2scrub_all.timer e2scrub_reap.service fstrim.timer systemd-timesyncd.service; do
    ln -sf /dev/null "$root/etc/systemd/system/$u"
done
cat >"$root/etc/systemd/system/ve-step.service" <<'UNIT'
[Unit]
Description=vfio-early system test: one step, then power off
After=multi-user.target systemd-udev-settle.service
ConditionKernelCommandLine=ve.step

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/ve-step
StandardOutput=journal+console
StandardError=journal+console
TimeoutStartSec=1800

[Install]
WantedBy=multi-user.target
UNIT
mkdir -p "$root/etc/systemd/system/multi-user.target.wants"
ln -sf ../ve-step.service "$root/etc/systemd/system/multi-user.target.wants/ve-step.service"
