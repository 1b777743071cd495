#!/bin/bash
# Shared functions of the QEMU end-to-end harness. Sourced by run.sh and friends.
# shellcheck disable=SC2034  # variables are used by the scripts that source this
# shellcheck disable=SC2030,SC2031 # subshells set the build environment on purpose

QEMU_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$QEMU_DIR/../.." && pwd)
CACHE_DIR=${VFIO_EARLY_QEMU_CACHE:-$QEMU_DIR/cache}
WORK_DIR=${VFIO_EARLY_QEMU_WORK:-$QEMU_DIR/work}
BOOT_TIMEOUT=${VFIO_EARLY_BOOT_TIMEOUT:-240}

# shellcheck source=tests/qemu/stage.sh
. "$QEMU_DIR/stage.sh"
# shellcheck source=tests/apt-private.sh
. "$QEMU_DIR/../apt-private.sh"

log() { printf 'qemu-harness: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 2; }

# Seconds since the epoch with fractions, for phase timings.
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# fetch_kernel: downloads Debian's generic kernel (whatever linux-image-amd64 depends
# on today; with KERNEL_SUITE=backports, what it depends on in
# bookworm-backports, through the private apt state of tests/apt-private.sh), extracts it
# under $CACHE_DIR/kernel (kernel-backports) and runs depmod there. Sets KVER, KROOT
# (extracted root), KMODDIR, VMLINUZ; KSUITE is "" or "backports".
fetch_kernel() {
    local pkg deb suite=${KERNEL_SUITE:-} tag=kernel
    KSUITE=$suite
    [[ -n $suite ]] && tag=kernel-$suite
    mkdir -p "$CACHE_DIR"
    if [[ -f $CACHE_DIR/$tag.pkg ]]; then
        pkg=$(cat "$CACHE_DIR/$tag.pkg")
    elif [[ $suite == backports ]]; then
        pkg=$(backports_apt_cache depends "linux-image-amd64/$BACKPORTS_SUITE" |
            awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
        [[ -n $pkg ]] || die "linux-image-amd64 in $BACKPORTS_SUITE names no versioned kernel"
    else
        pkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
        [[ -n $pkg ]] || die "apt-cache depends linux-image-amd64 names no versioned kernel (apt-get update?)"
    fi
    KROOT=$CACHE_DIR/$tag
    if [[ ! -f $KROOT/.done ]]; then
        log "fetching $pkg"
        rm -rf "$KROOT" "$CACHE_DIR"/deb
        mkdir -p "$CACHE_DIR/deb"
        if [[ $suite == backports ]]; then
            (cd "$CACHE_DIR/deb" && backports_apt download "$pkg") || die "apt-get download $pkg failed"
        else
            (cd "$CACHE_DIR/deb" && apt-get download "$pkg") || die "apt-get download $pkg failed"
        fi
        deb=$(ls "$CACHE_DIR"/deb/*.deb)
        mkdir -p "$KROOT"
        dpkg-deb -x "$deb" "$KROOT"
        KVER=$(ls "$KROOT/lib/modules")
        depmod -b "$KROOT" "$KVER"
        rm -rf "$CACHE_DIR/deb"
        printf '%s\n' "$pkg" >"$CACHE_DIR/$tag.pkg"
        touch "$KROOT/.done"
    fi
    KVER=$(ls "$KROOT/lib/modules")
    KMODDIR=$KROOT/lib/modules/$KVER
    VMLINUZ=$KROOT/boot/vmlinuz-$KVER
    [[ -f $VMLINUZ ]] || die "no $VMLINUZ"
}

# build_agent: the static binary. Sets AGENT_BIN.
# The full tool (host side: modules, dry runs; `check` inside the VM) and the boot
# agent the images carry (`bind` alone, --no-default-features), as `make` builds them.
build_agent() {
    AGENT_BIN=${VFIO_EARLY_BIN:-$REPO_DIR/target/x86_64-unknown-linux-musl/release/vfio-early}
    BOOT_BIN=${VFIO_EARLY_BOOT_BIN:-$REPO_DIR/target/boot/x86_64-unknown-linux-musl/release/vfio-early}
    if [[ -z ${VFIO_EARLY_BIN:-} ]]; then
        (cd "$REPO_DIR" && cargo build --quiet --release --target x86_64-unknown-linux-musl -p vfio-early) ||
            die "cargo build of the static agent failed"
    fi
    if [[ -z ${VFIO_EARLY_BOOT_BIN:-} ]]; then
        (cd "$REPO_DIR" && cargo build --quiet --release --target x86_64-unknown-linux-musl -p vfio-early \
            --no-default-features --target-dir target/boot) ||
            die "cargo build of the boot agent failed"
    fi
    # The detach scenarios' VFIO holder (agent/examples/vfio-hold.rs), static too.
    VE_HOLD_BIN=$REPO_DIR/target/x86_64-unknown-linux-musl/release/examples/vfio-hold
    (cd "$REPO_DIR" && cargo build --quiet --release --target x86_64-unknown-linux-musl -p vfio-early \
        --example vfio-hold) || die "cargo build of the vfio-hold helper failed"
    export VE_HOLD_BIN
    [[ -x $AGENT_BIN ]] || die "no agent binary at $AGENT_BIN"
    [[ -x $BOOT_BIN ]] || die "no boot agent binary at $BOOT_BIN"
    export VFIO_EARLY_BIN=$AGENT_BIN VFIO_EARLY_BOOT_BIN=$BOOT_BIN
}

# The machine every boot uses. Addresses are pinned (q35 adds devices otherwise):
#   00:02.0 primary VGA (boot_vga = 1)                 -> the config names it: refused
#   00:03.0 e1000e                                     -> selected, loaded early
#   00:07.0 root port -> 01:00.0 bochs-display, 01:00.1 ich9-intel-hda  (card A, selected)
#   00:08.0 root port -> 02:00.0 bochs-display, 02:00.1 ich9-intel-hda  (card B, host)
topology_args() {
    printf '%s\n' \
        -device VGA,addr=02.0 \
        -netdev user,id=n0 -device e1000e,addr=03.0,netdev=n0 \
        -device pcie-root-port,id=rp1,chassis=1,slot=1,addr=07.0 \
        -device bochs-display,bus=rp1,addr=00.0,multifunction=on \
        -device ich9-intel-hda,bus=rp1,addr=00.1 \
        -device pcie-root-port,id=rp2,chassis=2,slot=2,addr=08.0 \
        -device bochs-display,bus=rp2,addr=00.0,multifunction=on \
        -device ich9-intel-hda,bus=rp2,addr=00.1
}

# qemu_boot NAME IOMMU(intel|amd|none) INITRD APPEND: boots the topology with a hard
# timeout; the serial console goes to $WORK_DIR/NAME.log. Returns qemu's status (124
# on timeout). no_timer_check: under TCG on a loaded host the kernel's IO-APIC timer
# check can fail, and with interrupt remapping on it then panics before userspace
# (panic_if_irq_remap in setup_IO_APIC, seen here); the check proves nothing we test.
qemu_boot() {
    local name=$1 iommu=$2 initrd=$3 append=$4 machine=q35 rc t
    local -a iommu_args=()
    case $iommu in
    intel)
        machine=q35,kernel-irqchip=split
        iommu_args=(-device 'intel-iommu,intremap=on')
        append="intel_iommu=on $append"
        ;;
    amd) iommu_args=(-device amd-iommu) ;;
    none) ;;
    *) die "qemu_boot: unknown IOMMU $iommu" ;;
    esac
    mkdir -p "$WORK_DIR"
    local logf=$WORK_DIR/$name.log
    local -a topo extra=()
    mapfile -t topo < <(topology_args)
    # VE_QEMU_EXTRA: devices added to the standard topology (words, no quoting).
    read -r -a extra <<<"${VE_QEMU_EXTRA:-}"
    t=$(now)
    # VE_QEMU_BIN / VE_QEMU_DATA: another emulator and its data dirs (-L, first found
    # wins), e.g. the private QEMU 10 of the SR-IOV boot (tests/qemu/sriov.sh).
    local -a data=()
    local dir
    for dir in ${VE_QEMU_DATA:-}; do data+=(-L "$dir"); done
    timeout --kill-after=10 "$BOOT_TIMEOUT" "${VE_QEMU_BIN:-qemu-system-x86_64}" ${data[@]+"${data[@]}"} \
        -machine "$machine" -accel tcg -cpu "${VFIO_EARLY_QEMU_CPU:-max}" -m "${VFIO_EARLY_QEMU_MEM:-1024}" -smp "${VFIO_EARLY_QEMU_SMP:-1}" \
        -nographic -vga none -nic none -no-reboot -monitor none -serial "file:$logf" \
        "${iommu_args[@]}" "${topo[@]}" ${extra[@]+"${extra[@]}"} \
        -kernel "$VMLINUZ" -initrd "$initrd" \
        -append "console=ttyS0 panic=-1 loglevel=4 no_timer_check $append" </dev/null >"$WORK_DIR/$name.qemu.out" 2>&1
    rc=$?
    local guest
    guest=$(tr -d '\r' <"$logf" | awk '$1 == "VE-UNAME" { v = $2 } END { print v }')
    log "boot $name ($iommu): exit $rc after $(elapsed "$t") s, guest uname -r ${guest:-unknown}, log $logf"
    return "$rc"
}

# dracut_image OUT MODE(shell|systemd|systemd-unit) CONFIG: the real dracut, run from a private copy
# of its base dir with our module and a test module added.
dracut_image() {
    local out=$1 mode=$2 config=$3 base=$WORK_DIR/dracut-base mods t
    if [[ ! -d $base ]]; then
        mkdir -p "$base"
        cp -a /usr/lib/dracut/. "$base/"
    fi
    rm -rf "$base/modules.d/90vfio-early" "$base/modules.d/99vfio-early-test"
    cp -a "$REPO_DIR/dracut/90vfio-early" "$base/modules.d/"
    cp -a "$QEMU_DIR/dracut-test" "$base/modules.d/99vfio-early-test"
    mods="base rootfs-block kernel-modules vfio-early vfio-early-test"
    [[ $mode == systemd* ]] && mods="systemd systemd-initrd dracut-systemd $mods"
    t=$(now)
    dracutbasedir=$base VFIO_EARLY_CONFIG=$config VE_QEMU_DIR=$QEMU_DIR VE_REPO_DIR=$REPO_DIR \
        VE_UNIT=$([[ $mode == systemd-unit ]] && echo 1) \
        dracut --quiet --force --no-hostonly --no-compress --no-early-microcode \
        --conf /dev/null --confdir "$WORK_DIR/empty-confdir" \
        --kver "$KVER" --kmoddir "$KMODDIR" -m "$mods" \
        --add-drivers "e1000e bochs snd_hda_intel ${VE_DRACUT_DRIVERS:-}" \
        "$out" >"$out.build.log" 2>&1 || {
        cat "$out.build.log" >&2
        return 1
    }
    log "dracut $mode image: $(elapsed "$t") s"
}

# itools_image OUT CONFIG: the real mkinitramfs, with its own view of /lib/modules and
# /boot (it hard-codes both) through an overlay and a tmpfs in a private mount
# namespace: nothing is created or removed there on the host.
itools_image() {
    local out=$1 config=$2 conf=$WORK_DIR/itools-conf t
    rm -rf "$conf"
    mkdir -p "$conf"
    cp -a /etc/initramfs-tools/. "$conf/"
    mkdir -p "$conf/hooks" "$conf/scripts/init-top" "$conf/scripts/init-premount"
    cp "$REPO_DIR/initramfs-tools/hooks/vfio-early" "$conf/hooks/"
    cp "$REPO_DIR/initramfs-tools/scripts/init-top/vfio-early" "$conf/scripts/init-top/"
    cp "$QEMU_DIR/itools-test/hooks/ve-test" "$conf/hooks/"
    cp "$QEMU_DIR/itools-test/scripts/init-premount/ve-report" "$conf/scripts/init-premount/"
    sed -i 's/^MODULES=.*/MODULES=list/; s/^COMPRESS=.*/COMPRESS=gzip/' "$conf/initramfs.conf"
    grep -q '^MODULES=' "$conf/initramfs.conf" || echo MODULES=list >>"$conf/initramfs.conf"
    t=$(now)
    local ns=$WORK_DIR/itools-ns
    rm -rf "$ns"
    mkdir -p "$ns/upper" "$ns/work"
    # shellcheck disable=SC2016 # expanded by the inner shell
    unshare -m /bin/bash -euc '
        ns=$1 kroot=$2 kver=$3 conf=$4 out=$5
        mount --make-rprivate /
        libdir=$(readlink -f /lib)
        mount -t overlay overlay -o "lowerdir=$libdir,upperdir=$ns/upper,workdir=$ns/work" "$libdir"
        mkdir -p "/lib/modules/$kver"
        mount --bind "$kroot/lib/modules/$kver" "/lib/modules/$kver"
        mount -t tmpfs tmpfs /boot
        cp "$kroot/boot/config-$kver" /boot/
        mkinitramfs -d "$conf" -o "$out" "$kver"
    ' itools "$ns" "$KROOT" "$KVER" "$conf" "$out" \
        >"$out.build.log" 2>&1 || {
        cat "$out.build.log" >&2
        return 1
    }
    rm -rf "$ns"
    log "initramfs-tools image: $(elapsed "$t") s"
}

# mkinitcpio_build ROOT RECORD CONFIG [HOOKS...]: sources mkinitcpio/install/vfio-early
# against the recording add_* stand-ins and runs its build() into ROOT, the way
# mkinitcpio would with HOOKS=(HOOKS...). Returns build()'s status.
mkinitcpio_build() {
    local root=$1 record=$2 config=$3
    shift 3
    (
        BUILDROOT=$root KERNELVERSION=$KVER VE_KROOT=$KROOT VE_REPO_DIR=$REPO_DIR VE_RECORD=$record
        _d_kmoduledir=${VE_KMODDIR_OVERRIDE:-$KMODDIR}
        # mkinitcpio builds from _hooks (HOOKS, plus -A, minus -S); the hook reads that.
        _hooks=("$@")
        # shellcheck disable=SC2030 # read by the sourced functions only
        hookname=vfio-early
        export VFIO_EARLY_CONFIG=$config VFIO_EARLY_UNIT=$REPO_DIR/mkinitcpio/vfio-early.service
        # shellcheck source=tests/qemu/mkinitcpio-test/functions.sh
        . "$QEMU_DIR/mkinitcpio-test/functions.sh"
        # shellcheck source=mkinitcpio/install/vfio-early
        . "$REPO_DIR/mkinitcpio/install/vfio-early"
        build
    )
}

# mkinitcpio_image OUT CONFIG [EARLYHOOKS]: a busybox image whose /init runs hooks as mkinitcpio's
# does, HOOKS=(base udev vfio-early ve-report), MODULES=(e1000e); built by our real
# build() through the stand-ins, plus kmod's modprobe.
mkinitcpio_image() {
    local out=$1 config=$2 early=${3:-udev vfio-early} root=$WORK_DIR/mkinitcpio-root t m f
    t=$(now)
    rm -rf "$root"
    mkdir -p "$root"/{proc,sys,dev,run,tmp,etc,hooks,usr/bin,usr/sbin,lib/modules/"$KVER"}
    : >"$out.record"
    mkinitcpio_build "$root" "$out.record" "$config" base udev vfio-early ve-report || return 1
    (
        BUILDROOT=$root KERNELVERSION=$KVER VE_KROOT=$KROOT VE_REPO_DIR=$REPO_DIR VE_RECORD=$out.record.test
        # shellcheck source=tests/qemu/mkinitcpio-test/functions.sh
        . "$QEMU_DIR/mkinitcpio-test/functions.sh"
        for m in e1000e bochs snd_hda_intel; do add_module "$m"; done
        add_binary "$(command -v kmod)" /usr/bin/kmod
    )
    ln -sf ../bin/kmod "$root/usr/sbin/modprobe"
    for f in modules.order modules.builtin modules.builtin.modinfo; do
        cp "$KMODDIR/$f" "$root/lib/modules/$KVER/"
    done
    depmod -b "$root" "$KVER"
    stage_guest_tools "$root"
    cp "$QEMU_DIR/mkinitcpio-test/init" "$root/init"
    cp "$QEMU_DIR"/mkinitcpio-test/hooks/* "$root/hooks/"
    chmod 755 "$root/init" "$root"/hooks/*
    printf '%s\n' "EARLYHOOKS='$early'" "HOOKS='udev ve-report'" "MODULES='e1000e'" >"$root/config"
    (cd "$root" && find . | cpio --quiet -o -H newc) >"$out"
    log "mkinitcpio-style busybox image: $(elapsed "$t") s"
}

# lsinitrd_hook IMAGE: the dracut image carries our hook at pre-udev priority 00.
lsinitrd_hook() {
    # The listing is captured first: grep stopping at its first match must not cut
    # cpio off (SIGPIPE under pipefail).
    local list
    list=$(cpio -it --quiet <"$1" 2>/dev/null)
    grep 'dracut/hooks/pre-udev/00-vfio-early\.sh$' <<<"$list" >/dev/null
}

# dracut_module_run KMODDIR CONFIG RECORD INITDIR: sources our module-setup.sh against
# recording stand-ins of dracut's functions and runs installkernel + install, as dracut
# would for kernel $KVER with modules from KMODDIR. Returns the last status.
dracut_module_run() {
    (
        kernel=$KVER srcmods=$1 initdir=$4 moddir=$REPO_DIR/dracut/90vfio-early
        export VFIO_EARLY_CONFIG=$2
        rec=$3
        dwarn() { printf 'dwarn %s\n' "$*" >>"$rec"; }
        instmods() { printf 'instmods %s\n' "$*" >>"$rec"; }
        inst_simple() { printf 'inst_simple %s\n' "$*" >>"$rec"; }
        inst_hook() { printf 'inst_hook %s\n' "$*" >>"$rec"; }
        require_binaries() { [[ -x $1 ]]; }
        # shellcheck source=dracut/90vfio-early/module-setup.sh
        . "$moddir/module-setup.sh"
        check || exit 1
        installkernel || exit 1
        install
    )
}

# itools_hook_run KMODDIR CONFIG DESTDIR: runs our initramfs-tools hook as mkinitramfs
# would (hook-functions are the host's); stderr goes to DESTDIR.stderr.
itools_hook_run() {
    mkdir -p "$3"
    VFIO_EARLY_CONFIG=$2 version=$KVER MODULESDIR=$1 DESTDIR=$3 verbose=n \
        sh "$REPO_DIR/initramfs-tools/hooks/vfio-early" 2>"$3.stderr"
}
