#!/bin/bash
# The arm64 part of the QEMU harness, sourced by run.sh: Debian's arm64 kernel on
# qemu-system-aarch64 -M virt,gic-version=3,iommu=smmuv3 (TCG), booting a busybox-init
# image that carries the aarch64 agent. GICv3 because GICv2 (virt's default) has no
# ITS, and the ITS is what isolates MSIs on arm64.
# shellcheck disable=SC2034  # variables are used by the scripts that source this
# shellcheck disable=SC2016  # assertions are eval'd single-quoted on purpose

# shellcheck source=tests/apt-private.sh
. "$QEMU_DIR/../apt-private.sh"

ARM64_DIR=$QEMU_DIR/arm64

# fetch_kernel_arm64: Debian's arm64 kernel (whatever linux-image-arm64 depends on
# today) and busybox-static for arm64, through a private apt state for that
# architecture, cached under $CACHE_DIR/arm64. Sets ARM64_KVER, ARM64_KROOT,
# ARM64_KMODDIR, ARM64_IMAGE, ARM64_BUSYBOX.
fetch_kernel_arm64() {
    local c=$CACHE_DIR/arm64 pkg deb
    mkdir -p "$c"
    ARM64_KROOT=$c/kernel
    if [[ ! -f $ARM64_KROOT/.done ]]; then
        pkg=$(foreign_apt_cache arm64 depends linux-image-arm64 | awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
        [[ -n $pkg ]] || die "apt-cache depends linux-image-arm64 (arm64) names no versioned kernel"
        log "fetching $pkg (arm64)"
        rm -rf "$ARM64_KROOT" "$c/deb"
        mkdir -p "$c/deb" "$ARM64_KROOT"
        (cd "$c/deb" && foreign_apt arm64 download -qq "$pkg") || die "apt-get download $pkg (arm64) failed"
        deb=$(ls "$c"/deb/*.deb)
        dpkg-deb -x "$deb" "$ARM64_KROOT"
        ARM64_KVER=$(ls "$ARM64_KROOT/lib/modules")
        depmod -b "$ARM64_KROOT" "$ARM64_KVER"
        rm -rf "$c/deb"
        printf '%s\n' "$pkg" >"$c/kernel.pkg"
        touch "$ARM64_KROOT/.done"
    fi
    if [[ ! -f $c/busybox/.done ]]; then
        rm -rf "$c/busybox" "$c/deb"
        mkdir -p "$c/deb" "$c/busybox"
        (cd "$c/deb" && foreign_apt arm64 download -qq busybox-static) || die "apt-get download busybox-static (arm64) failed"
        dpkg-deb -x "$(ls "$c"/deb/*.deb)" "$c/busybox"
        rm -rf "$c/deb"
        touch "$c/busybox/.done"
    fi
    ARM64_KVER=$(ls "$ARM64_KROOT/lib/modules")
    ARM64_KMODDIR=$ARM64_KROOT/lib/modules/$ARM64_KVER
    ARM64_IMAGE=$ARM64_KROOT/boot/vmlinuz-$ARM64_KVER
    ARM64_BUSYBOX=$c/busybox/bin/busybox
    [[ -f $ARM64_IMAGE ]] || die "no $ARM64_IMAGE"
    [[ -f $ARM64_BUSYBOX ]] || die "no arm64 busybox at $ARM64_BUSYBOX"
}

# build_agent_arm64: the two static aarch64 binaries, as `make` builds them. Sets
# ARM64_AGENT_BIN (the full tool: `check` in the VM) and ARM64_BOOT_BIN (the image's
# /usr/bin/vfio-early). VFIO_EARLY_BIN_ARM64 / VFIO_EARLY_BOOT_BIN_ARM64 skip the build.
build_agent_arm64() {
    local t=aarch64-unknown-linux-musl
    ARM64_AGENT_BIN=${VFIO_EARLY_BIN_ARM64:-$REPO_DIR/target/$t/release/vfio-early}
    ARM64_BOOT_BIN=${VFIO_EARLY_BOOT_BIN_ARM64:-$REPO_DIR/target/boot/$t/release/vfio-early}
    if [[ -z ${VFIO_EARLY_BIN_ARM64:-} ]]; then
        (cd "$REPO_DIR" && cargo build --quiet --release --target "$t" -p vfio-early) ||
            die "cargo build of the aarch64 tool failed"
    fi
    if [[ -z ${VFIO_EARLY_BOOT_BIN_ARM64:-} ]]; then
        (cd "$REPO_DIR" && cargo build --quiet --release --target "$t" -p vfio-early \
            --no-default-features --target-dir target/boot) ||
            die "cargo build of the aarch64 boot agent failed"
    fi
    [[ -f $ARM64_AGENT_BIN && -f $ARM64_BOOT_BIN ]] || die "no aarch64 binaries"
}

# _arm64_closure MODULE...: the modules.dep paths that load MODULE..., dependencies
# first, each once (what modprobe would insmod).
_arm64_closure() {
    awk -v want="$*" '
        function name(p,  n) { n = p; sub(/.*\//, "", n); sub(/\.ko.*$/, "", n); gsub(/-/, "_", n); return n }
        BEGIN { n = split(want, w, " "); for (i = 1; i <= n; i++) { m = w[i]; gsub(/-/, "_", m); wanted[m] = i } }
        { sub(/:$/, "", $1); p = $1; sub(/:.*/, "", p); line[name(p)] = $0 }
        END {
            for (i = 1; i <= n; i++) {
                m = w[i]; gsub(/-/, "_", m)
                k = split(line[m], f, " "); sub(/:$/, "", f[1])
                for (j = k; j >= 2; j--) if (!(f[j] in seen)) { seen[f[j]] = 1; print f[j] }
                if (!(f[1] in seen)) { seen[f[1]] = 1; print f[1] }
            }
        }' "$ARM64_KMODDIR/modules.dep"
}

# arm64_image OUT CONFIG: a busybox-init image for arm64. /init (arm64/init) runs the
# agent the way the mkinitcpio hook does (before any driver loads), then a coldplug
# stand-in that insmods the devices' drivers (arm64/coldplug.list, in modules.dep
# order; busybox's modprobe cannot read kmod's index), then the report.
arm64_image() {
    local out=$1 config=$2 root=$WORK_DIR/arm64-root t p a
    t=$(now)
    rm -rf "$root"
    mkdir -p "$root"/{proc,sys,dev,run,tmp,etc,usr/bin,lib/modules/"$ARM64_KVER"}
    # The agent loads vfio-pci's closure itself (no kmod modprobe in this image).
    {
        _arm64_closure vfio_pci vfio_iommu_type1
        _arm64_closure e1000e bochs snd_hda_intel
    } | sort -u | while read -r p; do
        mkdir -p "$root/lib/modules/$ARM64_KVER/$(dirname "$p")"
        cp "$ARM64_KMODDIR/$p" "$root/lib/modules/$ARM64_KVER/$p"
    done
    for p in modules.order modules.builtin modules.builtin.modinfo modules.alias; do
        cp "$ARM64_KMODDIR/$p" "$root/lib/modules/$ARM64_KVER/"
    done
    depmod -b "$root" "$ARM64_KVER"
    # The whole alias table stays (depmod over the image keeps only its modules'):
    # the group-safety rule must know drivers outside the image.
    cp "$ARM64_KMODDIR/modules.alias" "$root/lib/modules/$ARM64_KVER/modules.alias"
    _arm64_closure e1000e bochs snd_hda_intel | sed "s|^|/lib/modules/$ARM64_KVER/|" >"$root/etc/ve-coldplug.list"
    cp "$ARM64_BOOT_BIN" "$root/usr/bin/vfio-early"
    cp "$config" "$root/etc/vfio-early.toml"
    VE_BUSYBOX=$ARM64_BUSYBOX VFIO_EARLY_BIN=$ARM64_AGENT_BIN stage_guest_tools "$root"
    cp "$ARM64_DIR/init" "$root/init"
    chmod 755 "$root/init" "$root/usr/bin/vfio-early" "$root/ve/bin/vfio-early"
    (cd "$root" && find . | cpio --quiet -o -H newc) >"$out"
    a=$(du -k "$out" | cut -f1)
    log "arm64 busybox image: $(elapsed "$t") s, ${a} KiB"
}

# The arm64 machine (virt puts a PCIe host bridge at 00:00.0; addresses pinned):
#   00:01.0 root port -> 01:00.0 bochs-display, 01:00.1 ich9-intel-hda (card A, selected)
#   00:02.0 root port -> 02:00.0 e1000e                                 (NIC, host)
#   00:03.0 root port -> 03:00.0 bochs-display, 03:00.1 ich9-intel-hda (card B, host)
arm64_topology_args() {
    printf '%s\n' \
        -device pcie-root-port,id=rp1,chassis=1,slot=1,addr=01.0 \
        -device bochs-display,bus=rp1,addr=00.0,multifunction=on \
        -device ich9-intel-hda,bus=rp1,addr=00.1 \
        -device pcie-root-port,id=rp2,chassis=2,slot=2,addr=02.0 \
        -netdev user,id=n0 -device e1000e,bus=rp2,addr=00.0,netdev=n0,romfile= \
        -device pcie-root-port,id=rp3,chassis=3,slot=3,addr=03.0 \
        -device bochs-display,bus=rp3,addr=00.0,multifunction=on \
        -device ich9-intel-hda,bus=rp3,addr=00.1
}

# qemu_boot_arm64 NAME IOMMU(smmuv3|none) INITRD APPEND: like qemu_boot, on
# qemu-system-aarch64 -M virt,gic-version=3 under TCG; console on the PL011.
qemu_boot_arm64() {
    local name=$1 iommu=$2 initrd=$3 append=$4 machine=virt,gic-version=3 rc t
    case $iommu in
    smmuv3) machine=$machine,iommu=smmuv3 ;;
    none) ;;
    *) die "qemu_boot_arm64: unknown IOMMU $iommu" ;;
    esac
    mkdir -p "$WORK_DIR"
    local logf=$WORK_DIR/$name.log
    local -a topo
    mapfile -t topo < <(arm64_topology_args)
    t=$(now)
    timeout --kill-after=10 "$BOOT_TIMEOUT" qemu-system-aarch64 \
        -machine "$machine" -accel tcg -cpu "${VFIO_EARLY_QEMU_ARM64_CPU:-cortex-a57}" \
        -m "${VFIO_EARLY_QEMU_MEM:-1024}" -smp "${VFIO_EARLY_QEMU_SMP:-1}" \
        -nographic -nic none -no-reboot -monitor none -serial "file:$logf" \
        "${topo[@]}" \
        -kernel "$ARM64_IMAGE" -initrd "$initrd" \
        -append "console=ttyAMA0 panic=-1 loglevel=4 $append" </dev/null >"$WORK_DIR/$name.qemu.out" 2>&1
    rc=$?
    log "boot $name (arm64, $iommu): exit $rc after $(elapsed "$t") s, log $logf"
    return "$rc"
}

# arm64_scenarios: the arm64 boots and their assertions (run.sh's ok and readers).
arm64_scenarios() {
    local t b
    t=$(now)
    fetch_kernel_arm64
    build_agent_arm64
    log "arm64: kernel $ARM64_KVER and aarch64 agent ready: $(elapsed "$t") s"
    arm64_image "$WORK_DIR/arm64.img" "$QEMU_DIR/configs/arm64.toml" || die "arm64 image"

    # The card on vfio-pci in the group the SMMU makes at probe; check in the VM.
    b=arm64-smmuv3
    qemu_boot_arm64 "$b" smmuv3 "$WORK_DIR/arm64.img" "ve.check=1"
    ok "arm64: boot reached the report (virt, GICv3, SMMUv3, TCG)" reached_report "$b"
    ok "arm64: card A display 01:00.0 on vfio-pci" driver_is "$b" 0000:01:00.0 vfio-pci
    ok "arm64: card A audio 01:00.1 on vfio-pci (functions = slot)" driver_is "$b" 0000:01:00.1 vfio-pci
    ok "arm64: card A's two functions share the IOMMU group made at probe, with only their root port" \
        arm64_card_group "$b"
    ok "arm64: the agent logs the group made at probe" kmsg_has "$b" 'vfio-early: 0000:01:00\.1 .*bound to vfio-pci, IOMMU group [0-9]+ \(made at probe\)'
    ok "arm64: card B and the NIC stay on their host drivers, no override" arm64_others_untouched "$b"
    ok "arm64: the boot verdict names the Arm SMMU and the GICv3 ITS" \
        kmsg_has "$b" 'vfio-early: IOMMU Arm SMMU on .*MSI isolation \(GICv3 ITS\) on'
    ok "arm64: check ran inside the VM (the aarch64 tool)" check_ran "$b"
    ok "arm64: check proves the SMMU (sysfs unit smmu3, device-tree iommu-map)" \
        eval 'check_has '"$b"' "^pass +iommu +on, proven by sysfs class/iommu: smmu3\." && check_has '"$b"' "^pass +iommu vendor +Arm SMMU, from the device tree \(pcie@[0-9a-f]+ iommu-map\)"'
    ok "arm64: check proves MSI isolation by the GICv3 ITS" check_has "$b" '^pass +msi isolation +GICv3 ITS, per /proc/interrupts: .*ITS-MSI'
    ok "arm64: check passes (exit 0) after the bind" eval '[[ $(report '"$b"' | grep -c -x "VE-CHECK-EXIT 0") == 1 ]]'
    ok "arm64: check says nothing of VT-d or AMD-Vi" eval '[[ $(report '"$b"' | grep "^VE-CHECK " | grep -c -E "VT-d|AMD-Vi|intel_iommu") == 0 ]]'

    # The kill switch.
    b=arm64-killswitch
    qemu_boot_arm64 "$b" smmuv3 "$WORK_DIR/arm64.img" "vfio_early=off"
    ok "arm64 kill switch: boot reached the report" reached_report "$b"
    ok "arm64 kill switch: no device on vfio-pci" nothing_on_vfio "$b"
    ok "arm64 kill switch: card A stays on bochs-drm, no override" \
        eval 'driver_is '"$b"' 0000:01:00.0 bochs-drm && override_clear '"$b"' 0000:01:00.0'
    ok "arm64 kill switch: exactly one agent line, naming the switch" \
        eval '[[ $(agent_lines '"$b"') == 1 ]] && kmsg_has '"$b"' "vfio-early: .*vfio_early=off"'

    # No SMMU in the machine: nothing bound, arm64 advice.
    b=arm64-nosmmu
    qemu_boot_arm64 "$b" none "$WORK_DIR/arm64.img" "ve.check=1"
    ok "arm64 without SMMU: boot reached the report" reached_report "$b"
    ok "arm64 without SMMU: nothing on vfio-pci" nothing_on_vfio "$b"
    ok "arm64 without SMMU: the refusal names the missing IOMMU" kmsg_has "$b" 'vfio-early: 0000:01:00\.0 .*refused: .*IOMMU'
    ok "arm64 without SMMU: check exits 1, the device tree has no iommu-map (no VT-d advice)" \
        eval '[[ $(report '"$b"' | grep -c -x "VE-CHECK-EXIT 1") == 1 ]] && check_has '"$b"' "^fail +iommu +off: .*no iommu-map" && [[ $(report '"$b"' | grep "^VE-CHECK " | grep -c -E "VT-d|AMD-Vi") == 0 ]]'
    log "arm64 boots: $(elapsed "$t") s"
}

# arm64_card_group BOOT: 01:00.0 and 01:00.1 report the same IOMMU group, and every
# other device in it is their root port, on pcieport (QEMU's virt puts a root port and
# what is behind it in one group).
arm64_card_group() {
    local g
    g=$(dev_field "$1" 0000:01:00.0 6)
    [[ -n $g && $g != - && $(dev_field "$1" 0000:01:00.1 6) == "$g" ]] || return 1
    [[ $(report "$1" | awk -v g="$g" '$1 == "VE-DEV" && $6 == g && $2 != "0000:01:00.0" && $2 != "0000:01:00.1" && !($2 == "0000:00:01.0" && $3 == "pcieport")' | wc -l) == 0 ]]
}

# arm64_others_untouched BOOT: card B and the NIC on their host drivers, no override.
arm64_others_untouched() {
    local b=$1
    driver_is "$b" 0000:03:00.0 bochs-drm && driver_is "$b" 0000:03:00.1 snd_hda_intel &&
        driver_is "$b" 0000:02:00.0 e1000e &&
        override_clear "$b" 0000:02:00.0 && override_clear "$b" 0000:03:00.0 && override_clear "$b" 0000:03:00.1
}
