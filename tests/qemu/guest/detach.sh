#!/bin/sh
# Runs inside the VM (busybox sh) from report.sh with ve.detach=1, once coldplug has
# settled and every device is on its host driver: the runtime handover scenarios.
# Lines: VE-DT-RC <step> <status>          VE-DT-OUT <step> <line of its output>
#        VE-DT-DEV <step> <addr> <driver|none> <driver_override>
#        VE-DT-NET <step> <addr> <interfaces|none>   VE-DT-VT <step> <vtconN> <bind>
PATH=/ve/bin:$PATH
VE=/ve/bin/vfio-early
HOOK=/etc/libvirt/hooks/qemu.d/vfio-early
NIC=0000:00:03.0
VGA=0000:00:02.0
CARD=0000:01:00.0
AUDIO=0000:01:00.1
cp /ve/configs/detach.toml /etc/vfio-early.toml

run() { # run STEP COMMAND...: its output and status
    step=$1
    shift
    "$@" >/tmp/ve-dt.out 2>&1
    rc=$?
    sed "s/^/VE-DT-OUT $step /" /tmp/ve-dt.out
    echo "VE-DT-RC $step $rc"
}
driver_of() {
    if [ -L "/sys/bus/pci/devices/$1/driver" ]; then
        basename "$(readlink "/sys/bus/pci/devices/$1/driver")"
    else
        echo none
    fi
}
state() { # state STEP [ADDR]: the devices, the NIC's interfaces, the consoles. ADDR's
    # override is not read: while its unbind waits for a VFIO holder, reading it would
    # wait too (the device lock).
    for a in $NIC $VGA $CARD $AUDIO; do
        if [ "$a" = "${2:-}" ]; then
            ovr=-
        else
            ovr=$(cat "/sys/bus/pci/devices/$a/driver_override")
        fi
        echo "VE-DT-DEV $1 $a $(driver_of "$a") ${ovr:-none}"
    done
    net=
    for i in "/sys/bus/pci/devices/$NIC/net"/*; do
        [ -e "$i" ] && net="$net${i##*/} "
    done
    echo "VE-DT-NET $1 $NIC ${net:-none}"
    for v in /sys/class/vtconsole/vtcon*; do
        echo "VE-DT-VT $1 ${v##*/} $(cat "$v/bind") $(cat "$v/name")"
    done
}
state boot

# An e1000e on its host driver: detached, detached again, reattached, again.
run nic-detach $VE detach $NIC
state nic-detached
run nic-detach-again $VE detach $NIC
run nic-reattach $VE reattach $NIC
state nic-reattached
run nic-reattach-again $VE reattach $NIC

# Card A's display alone: its group needs the audio function too.
run card-alone $VE detach $CARD
state card-alone

# The boot display while a process holds its DRM node: refused, naming it.
node=
for c in "/sys/bus/pci/devices/$VGA/drm"/card*; do
    [ -e "$c" ] && node=${c##*/}
done
# shellcheck disable=SC2217 # sleep only keeps the node open, as a compositor would
sleep 600 <"/dev/dri/$node" &
holder=$!
run vga-held $VE detach $VGA
kill $holder
wait $holder 2>/dev/null

# The only display (boot VGA on bochs-drm, fbcon on it): [handover] consoles.
run vga-detach $VE detach $VGA
state vga-detached
run vga-reattach $VE reattach $VGA
state vga-reattached

# libvirt's hook, with libvirt's argv and a domain XML on stdin.
run hook-prepare $HOOK win10 prepare begin - </ve/domain.xml
state hook-prepared
run hook-started $HOOK win10 started begin - </ve/domain.xml
run hook-release $HOOK win10 release end - </ve/domain.xml
state hook-released

# A stalled unbind: card A detached whole, then its audio function held open through
# VFIO, as a VM does; vfio-pci's remove waits for the holder, so the reattach must give
# up in time and put the display function, already unbound, back on vfio-pci.
run card-detach $VE detach --slot $CARD
state card-detached
for m in /usr/sbin/modprobe /sbin/modprobe; do
    [ -x $m ] && $m vfio_iommu_type1 && break
done
group=$(basename "$(readlink "/sys/bus/pci/devices/$AUDIO/iommu_group")")
vfio-hold "$group" $AUDIO >/tmp/ve-hold.out 2>&1 &
hold=$!
n=0
while ! grep -q '^held' /tmp/ve-hold.out && [ $n -lt 100 ]; do
    sleep 0.1
    n=$((n + 1))
done
sed 's/^/VE-DT-OUT card-hold /' /tmp/ve-hold.out
run card-held-reattach $VE reattach --slot $CARD
state card-held $AUDIO
kill $hold
wait $hold 2>/dev/null
# Once the holder is gone the abandoned unbind ends (reading the device waits for it).
state card-released
run card-reattach $VE reattach --slot $CARD
state card-reattached
[ -f /run/vfio-early/detached.json ] && sed 's/^/VE-DT-OUT record /' /run/vfio-early/detached.json
echo "VE-DT-END"
