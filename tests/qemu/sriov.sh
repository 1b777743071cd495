#!/bin/bash
# The SR-IOV part of the QEMU harness, sourced by run.sh: QEMU's igb (an 82576 PF,
# QEMU >= 8.0) behind its own root port under the emulated Intel IOMMU. The image's
# config (configs/sriov.toml) makes 4 VFs at boot; the image carries igb only because
# `vfio-early initramfs` names it for the [[sriov]] entry (dracut's --add-drivers adds
# igbvf alone).
# igb needs QEMU >= 8.0 and the machine runs Debian 12's 7.2 (QEMU 10 breaks the
# AMD-IOMMU boots, tests/deps.sh): this boot alone runs QEMU 10 from bookworm-backports,
# its packages downloaded (never installed) and extracted under $CACHE_DIR/qemu10.
# shellcheck disable=SC2034  # variables are used by the scripts that source this
# shellcheck disable=SC2016  # assertions are eval'd single-quoted on purpose

# shellcheck source=tests/apt-private.sh
. "$QEMU_DIR/../apt-private.sh"

# fetch_qemu10: QEMU 10's x86 emulator, its data and the SeaBIOS it was built with,
# from bookworm-backports, extracted under $CACHE_DIR/qemu10 (cached). Sets QEMU10_BIN
# and QEMU10_DATA (the -L dirs: its own data and BIOS first, the system's ROMs after).
fetch_qemu10() {
    local c=$CACHE_DIR/qemu10 d
    if [[ ! -f $c/.done ]]; then
        log "fetching QEMU 10 from $BACKPORTS_SUITE (extracted, not installed)"
        rm -rf "$c"
        mkdir -p "$c/deb" "$c/root"
        (cd "$c/deb" && backports_download qemu-system-x86 qemu-system-common qemu-system-data seabios) ||
            die "apt-get download of QEMU 10 from $BACKPORTS_SUITE failed"
        for d in "$c"/deb/*.deb; do dpkg-deb -x "$d" "$c/root"; done
        rm -rf "$c/deb"
        touch "$c/.done"
    fi
    QEMU10_BIN=$c/root/usr/bin/qemu-system-x86_64
    # Its own modules (audio, UI) first; the installed 7.2's, which it tries too, fail
    # to load ("Only modules from the same build can be loaded"), harmlessly.
    QEMU10_MODULES=$c/root/usr/lib/x86_64-linux-gnu/qemu
    QEMU10_DATA="$c/root/usr/share/qemu $c/root/usr/share/seabios"
    [[ -x $QEMU10_BIN ]] || die "no $QEMU10_BIN"
    log "SR-IOV emulator: $("$QEMU10_BIN" --version | sed -n 1p)"
}

SRIOV_PF=0000:03:00.0
# igb's VF offset 0x80 and stride 2: VF N at devfn 0x80 + 2N.
SRIOV_VFS=(0000:03:10.0 0000:03:10.2 0000:03:10.4 0000:03:10.6)
SRIOV_QEMU="-device pcie-root-port,id=rp3,chassis=3,slot=3,addr=09.0 -netdev user,id=n1 -device igb,bus=rp3,addr=00.0,netdev=n1"

# sriov_field BOOT PF FIELD: a VE-SRIOV field (2 numvfs, 3 totalvfs, 4 autoprobe).
sriov_field() { report "$1" | awk -v a="$2" -v f="$3" '$1 == "VE-SRIOV" && $2 == a { v = $(f + 1) } END { print v }'; }
# vf_pf BOOT VF: the PF its physfn link names.
vf_pf() { report "$1" | awk -v a="$2" '$1 == "VE-VF" && $2 == a { v = $3 } END { print v }'; }
groups_has() { report_has "$1" 'VE-GROUPS ' "$2"; }
groups_json_has() { report_has "$1" 'VE-GROUPS-JSON ' "$2"; }

sriov_scenarios() {
    local b=intel-sriov img=$WORK_DIR/dracut-sriov.img pf=$SRIOV_PF
    local v0=${SRIOV_VFS[0]} v1=${SRIOV_VFS[1]} v2=${SRIOV_VFS[2]} v3=${SRIOV_VFS[3]}
    VE_DRACUT_DRIVERS=igbvf dracut_image "$img" shell "$QEMU_DIR/configs/sriov.toml" || die "dracut SR-IOV image"
    local list
    list=$(cpio -it --quiet <"$img" 2>/dev/null)
    ok "SR-IOV image: igb is in the image (named by vfio-early initramfs for the [[sriov]] entry)" \
        grep -E '/igb\.ko(\.[a-z]+)?$' <<<"$list"
    fetch_qemu10
    QEMU_MODULE_DIR=$QEMU10_MODULES VE_QEMU_BIN=$QEMU10_BIN VE_QEMU_DATA=$QEMU10_DATA \
        VE_QEMU_EXTRA=$SRIOV_QEMU qemu_boot "$b" intel "$img" \
        "$DRACUT_ARGS printk.devkmsg=on ve.config=sriov ve.check=1 ve.groups=1"
    ok "SR-IOV: boot reached the report" reached_report "$b"
    ok "SR-IOV: the agent loaded igb, made 4 VFs and read the count back" \
        eval '[[ $(sriov_field '"$b $pf"' 2) == 4 ]] && kmsg_has '"$b"' "vfio-early: $pf: made 4 VFs \(sriov_numvfs read back 4, PF driver igb loaded\)"'
    ok "SR-IOV: the PF stays on igb" driver_is "$b" "$pf" igb
    ok "SR-IOV: the VFs are the PF's (physfn links)" \
        eval '[[ $(vf_pf '"$b $v0"') == '"$pf"' && $(vf_pf '"$b $v3"') == '"$pf"' ]]'
    ok "SR-IOV: VF 0 and VF 1 (vf = [0, 1]) on vfio-pci" \
        eval 'driver_is '"$b $v0"' vfio-pci && driver_is '"$b $v1"' vfio-pci'
    ok "SR-IOV: VF 2 (by its address) on vfio-pci" driver_is "$b" "$v2" vfio-pci
    ok "SR-IOV: VF 3 (not selected) on igbvf, without an override" \
        eval 'driver_is '"$b $v3"' igbvf && override_clear '"$b $v3"''
    ok "SR-IOV: sriov_drivers_autoprobe restored to 1" eval '[[ $(sriov_field '"$b $pf"' 4) == 1 ]]'
    ok "SR-IOV: each VF in its own IOMMU group, apart from the PF" \
        eval '[[ $(dev_field '"$b $v0"' 6) != $(dev_field '"$b $pf"' 6) && $(dev_field '"$b $v0"' 6) != $(dev_field '"$b $v1"' 6) ]]'
    ok "SR-IOV: check passes the [[sriov]] entry with its VFs and drivers" \
        check_has "$b" "^pass +sriov $pf +PF on igb, 4 of 7 VFs \(config: 4\), made at boot after loading igb: VF 0 $v0 on vfio-pci, .*VF 3 $v3 on igbvf"
    ok "SR-IOV: groups shows the PF's counts and each VF's PF (words and JSON)" \
        eval 'groups_has '"$b"' "^	$pf .* SR-IOV PF: 4 of 7 VFs" && groups_has '"$b"' "^	$v2 .* SR-IOV VF 2 of $pf" && groups_json_has '"$b"' "\"sriov\":\{\"role\":\"vf\",\"pf\":\"$pf\",\"index\":2\}"'
}
