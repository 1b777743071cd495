#!/bin/bash
# The user's whole flow on an installed Debian 12 under QEMU (TCG, emulated Intel
# IOMMU, the QEMU harness's PCI topology): two roots built by mmdebstrap from Debian's
# archive, one with initramfs-tools, one with Debian's dracut, each booted from an
# ext4 disk image with systemd as PID 1 and the kernel and initramfs the root's own
# /boot holds after each step. Inside the guest (ve-step.service, guest/ve-step): apt
# installs the .deb that `make deb` built (its trigger rebuilds the image), then
# `vfio-early groups --gpu`, `config suggest --gpu N --write`, `apply`, as README says;
# reboots check the bind, the kill switch, a refused apply, and `apt remove`.
# Usage: tests/system/run.sh [--check-only] [itools|dracut|all]   (default all)
# Last line: "N passed, M failed".
# Environment: VFIO_EARLY_SYSTEM_CACHE (default ${XDG_CACHE_HOME:-$HOME/.cache}/
# vfio-early-tests: the built roots), VFIO_EARLY_SYSTEM_WORK (default tests/system/work),
# VFIO_EARLY_SYSTEM_BOOT_TIMEOUT (seconds per boot, default 2400).
set -uo pipefail
SYSTEM_DIR=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/system/lib.sh
. "$SYSTEM_DIR/lib.sh"
cd "$REPO_DIR" || exit 2

# shellcheck source=tests/assert.sh
. "$REPO_DIR/tests/assert.sh"

for tool in mmdebstrap mkfs.ext4 debugfs qemu-system-x86_64 lsinitramfs unmkinitramfs dpkg-deb; do
    command -v "$tool" >/dev/null || { slog "$tool is missing (tests/deps.sh installs it)"; exit 2; }
done
t_all=$(now)
# --check-only: assert on the logs the last run left in $SYS_WORK, building and
# booting nothing.
check_only=0
gens=(itools dracut)
for arg in "$@"; do
    case $arg in
    --check-only) check_only=1 ;;
    itools | dracut) gens=("$arg") ;;
    all) gens=(itools dracut) ;;
    *)
        echo "usage: $0 [--check-only] [itools|dracut|all]" >&2
        exit 2
        ;;
    esac
done
has() { [[ " ${gens[*]} " == *" $1 "* ]]; }
if ((!check_only)); then
    rm -rf "$SYS_WORK"
    mkdir -p "$SYS_WORK"

    # The package under test, where `make deb` puts it (it builds both binaries first
    # through cargo, so a stale one, say a boot build left at the full tool's path, is
    # never packaged).
    deb=$(make -s deb 2>"$SYS_WORK/build.out" | tail -n 1)
    [[ -f $deb ]] || { cat "$SYS_WORK/build.out" >&2; slog "make deb wrote no package"; exit 2; }
    [[ $deb == /* ]] || deb=$REPO_DIR/$deb

    # The two roots, built side by side (downloads and dpkg overlap).
    t=$(now)
    for g in "${gens[@]}"; do
        build_root "$g" >"$SYS_WORK/root-$g.path" 2>"$SYS_WORK/root-$g.err" &
    done
    wait
    cat "$SYS_WORK"/root-*.err >&2
    for g in "${gens[@]}"; do
        [[ -f $(cat "$SYS_WORK/root-$g.path") ]] || { slog "building the $g root failed"; exit 2; }
    done
    slog "roots ready after $(elapsed "$t") s"

    # Two chains of boots, one per root, two VMs at a time at most.
    t=$(now)
    if has itools; then
        run_chain itools "$(cat "$SYS_WORK/root-itools.path")" "$deb" install bound-refuse off-remove removed \
            >"$SYS_WORK/itools.chain.out" 2>&1 &
    fi
    if has dracut; then
        run_chain dracut "$(cat "$SYS_WORK/root-dracut.path")" "$deb" install bound-refuse-remove \
            >"$SYS_WORK/dracut.chain.out" 2>&1 &
    fi
    wait
    cat "$SYS_WORK"/*.chain.out >&2
    slog "boots done after $(elapsed "$t") s"
fi
deb=$(compgen -G "$REPO_DIR/target/debian/vfio-early_*.deb" | head -n 1)

# --- Readers of the guest's findings ---
# ve G STEP KEY: the values of the "VE-KEY ..." lines of that boot.
ve() { sed -n "s/^VE-$3 //p" "$SYS_WORK/$1-$2.ve/$2.log" 2>/dev/null; }
ve_is() { [[ $(ve "$1" "$2" "$3") == "$4" ]]; }
rc_is() { [[ $(ve "$1" "$2" RC | awk -v n="$3" '$1 == n { print $2 }') == "$4" ]]; }
out_has() { local f=$SYS_WORK/$1-$2.ve/$2.$3.out; [[ -f $f ]] && (($(grep -c -E -- "$4" "$f") > 0)); }
driver_is() { [[ $(ve "$1" "$2" DEV | awk -v a="$3" '$1 == a { print $2 }') == "$4" ]]; }
override_is() { [[ $(ve "$1" "$2" DEV | awk -v a="$3" '$1 == a { print $3 }') == "$4" ]]; }
nothing_on_vfio() { [[ -n $(ve "$1" "$2" DEV) ]] && (($(ve "$1" "$2" DEV | awk '$2 == "vfio-pci"' | wc -l) == 0)); }
md5_of() { ve "$1" "$2" IMAGE | awk -v l="$3" '$1 == l && $2 == "md5" { print $3 }'; }
md5_differ() { local a b; a=$(md5_of "$1" "$2" "$3"); b=$(md5_of "$1" "$2" "$4"); [[ -n $a && -n $b && $a != "$b" ]]; }
md5_same() { local a b; a=$(md5_of "$1" "$2" "$3"); b=$(md5_of "$1" "$2" "$4"); [[ -n $a && $a == "$b" ]]; }
# Listing of an image (the guest's copy at LABEL, or the one a boot took from /boot).
img_copy() { printf '%s\n' "$SYS_WORK/$1-$2.ve/images/$2-$3.img"; }
img_boot() { printf '%s\n' "$SYS_WORK/$1/$2.initrd"; }
img_has() { # IMAGE PATH-REGEX
    [[ -f $1 ]] || return 1
    [[ -f $1.list ]] || lsinitramfs "$1" >"$1.list" 2>/dev/null
    grep -E -- "$2" "$1.list" >/dev/null
}
img_lacks() { [[ -f $1 ]] && ! img_has "$1" "$2"; }
# img_config_has IMAGE REGEX: the image's copy of /etc/vfio-early.toml matches.
img_config_has() {
    local d=$1.x
    [[ -f $1 ]] || return 1
    [[ -d $d ]] || unmkinitramfs "$1" "$d" >/dev/null 2>&1
    local f
    for f in "$d/etc/vfio-early.toml" "$d/main/etc/vfio-early.toml"; do
        [[ -f $f ]] && (($(grep -v '^[[:space:]]*#' "$f" | grep -c -E -- "$2") > 0)) && return 0
    done
    return 1
}
# kmsg_before G STEP A B: in the boot's kernel log, the first line matching A comes
# before the first matching B.
kmsg_before() {
    local f=$SYS_WORK/$1-$2.ve/$2.dmesg.out a b
    a=$(grep -n -E -- "$3" "$f" 2>/dev/null | head -n 1 | cut -d: -f1)
    b=$(grep -n -E -- "$4" "$f" 2>/dev/null | head -n 1 | cut -d: -f1)
    [[ -n $a && -n $b ]] && ((a < b))
}
kmsg_has() { grep -E -- "$3" "$SYS_WORK/$1-$2.ve/$2.dmesg.out" >/dev/null 2>&1; }
booted() { [[ $(awk -v n="$1-$2" '$1 == n { print $2 }' "$SYS_WORK/boots" 2>/dev/null) == 0 ]] && ve_is "$1" "$2" END "$2"; }

gpu_n_is() { [[ $1 == "$2 label" || $1 == "$2 counted" ]]; }
positive() { [[ $1 =~ ^[0-9]+$ ]] && (($1 > 0)); }
# agent_lines_are G STEP LINE: every agent line of the boot's kernel log is LINE.
agent_lines_are() {
    local f=$SYS_WORK/$1-$2.ve/$2.dmesg.out
    [[ -f $f ]] && [[ $(grep 'vfio-early' "$f" | sed 's/^\[[^]]*\] //' | sort -u) == "$3" ]]
}
# removed_image_clean G STEP IMAGE: the removal ran and IMAGE, an initramfs with an
# /init, lists nothing of vfio-early.
removed_image_clean() { rc_is "$1" "$2" apt-remove 0 && img_has "$3" '^init$' && img_lacks "$3" 'vfio-early'; }
no_generator_ran() { [[ -f $SYS_WORK/$1-$2.ve/$2.$3.out ]] && ! out_has "$1" "$2" "$3" '^running: |update-initramfs: Generating|dracut: (Generating|Executing)'; }

# deb_bin_help PATH REGEX: the .deb's binary at PATH, run with --help, says REGEX.
deb_bin_help() {
    local d out
    [[ -f $deb ]] || return 1
    d=$(mktemp -d)
    dpkg-deb -x "$deb" "$d" || { rm -rf "$d"; return 1; }
    out=$("$d/$1" --help 2>&1)
    rm -rf "$d"
    (($(grep -c -E -- "$2" <<<"$out") > 0))
}
ok "the .deb stays where make deb put it (${deb#"$REPO_DIR"/})" test -f "$deb"
ok "... its /usr/bin/vfio-early is the full tool (groups, apply)" deb_bin_help usr/bin/vfio-early '^  apply '
ok "... and the image's agent (/usr/lib/vfio-early/vfio-early-boot) the boot build" \
    deb_bin_help usr/lib/vfio-early/vfio-early-boot 'The boot agent'

card=0000:01:00.0
# What the guest ran: the generator command lines, from the captured output.
echo "--- what the guests ran (apt, vfio-early apply, the generators) ---"
for b in itools-install itools-bound-refuse itools-off-remove dracut-install dracut-bound-refuse-remove; do
    for c in apt-install groups suggest apply check apply-refused apt-remove; do
        f=$SYS_WORK/$b.ve/${b#*-}.$c.out
        [[ -f $f ]] || continue
        sed -n "1s|^+ |$b: \$ |p" "$f"
        grep -E '^(running: |update-initramfs: |dracut: (Executing|Generating) |Processing triggers for )' "$f" | sed "s|^|$b:   |"
    done
done

# --- The flow on each root ---
for g in "${gens[@]}"; do
    case $g in
    itools) gen_cmd='^running: update-initramfs -u -k all' trigger='Processing triggers for initramfs-tools' built='^update-initramfs: Generating /boot/initrd.img-' bound=bound-refuse ;;
    dracut) gen_cmd='^running: dracut --force --kver ' trigger='Processing triggers for dracut' built='^dracut: Generating /boot/initrd.img-' bound=bound-refuse-remove ;;
    esac
    ok "$g: first boot of the installed root reached its step and powered off" booted "$g" install
    ok "$g: apt installs the .deb non-interactively (exit 0)" rc_is "$g" install apt-install 0
    ok "$g: the package's trigger ran the generator ($trigger)" out_has "$g" install apt-install "$trigger"
    ok "$g: ... which rebuilt the image" out_has "$g" install apt-install "$built"
    ok "$g: the image after install carries the agent" img_has "$(img_copy "$g" install after-install)" 'usr/bin/vfio-early$'
    ok "$g: /etc/vfio-early.toml (and the libvirt hook) are the package's conffiles" \
        ve_is "$g" install CONFFILES "/etc/libvirt/hooks/qemu.d/vfio-early /etc/vfio-early.toml"
    ok "$g: vfio-early groups --gpu (exit 0)" rc_is "$g" install groups 0
    # N: groups' "GPU N" label once it prints one, else the card's rank among the
    # display controllers it lists (PCI address order): 2 here, after the boot display.
    ok "$g: N read from groups --gpu for $card is 2 ($(ve "$g" install GPU-N))" gpu_n_is "$(ve "$g" install GPU-N)" 2
    ok "$g: config suggest --gpu N --write (exit 0, no --force)" rc_is "$g" install suggest 0
    ok "$g: the written config names the card $card" positive "$(ve "$g" install CONFIG-NAMES-CARD)"
    ok "$g: ... and not its identical twin 02:00" ve_is "$g" install CONFIG-NAMES-TWIN 0
    ok "$g: vfio-early apply (exit 0)" rc_is "$g" install apply 0
    ok "$g: apply ran the system's generator" out_has "$g" install apply "$gen_cmd"
    ok "$g: apply rebuilt the image in /boot" md5_differ "$g" install after-install after-apply
    ok "$g: the image the reboot takes from /boot carries the agent" img_has "$(img_boot "$g" "$bound")" 'usr/bin/vfio-early$'
    ok "$g: ... and the config naming the card" img_config_has "$(img_boot "$g" "$bound")" "$card"

    ok "$g: reboot reached its step" booted "$g" "$bound"
    ok "$g: card display $card on vfio-pci after the real root's udev" driver_is "$g" "$bound" "$card" vfio-pci
    ok "$g: card audio 0000:01:00.1 on vfio-pci" driver_is "$g" "$bound" 0000:01:00.1 vfio-pci
    ok "$g: the display stack started (bochs loaded on the real root)" ve_is "$g" "$bound" "MODULE bochs" 1
    ok "$g: twin display 0000:02:00.0 keeps bochs-drm" driver_is "$g" "$bound" 0000:02:00.0 bochs-drm
    ok "$g: twin audio 0000:02:00.1 keeps snd_hda_intel" driver_is "$g" "$bound" 0000:02:00.1 snd_hda_intel
    ok "$g: boot display 0000:00:02.0 keeps bochs-drm" driver_is "$g" "$bound" 0000:00:02.0 bochs-drm
    ok "$g: the agent ran in the initramfs (its log line before the real root's mount)" \
        kmsg_before "$g" "$bound" 'vfio-early' 'EXT4-fs \(vda\): mounted'
    ok "$g: its record survived the switch to the real root" ve_is "$g" "$bound" RECORD present
    ok "$g: vfio-early check exits 0" rc_is "$g" "$bound" check 0
done

# A refused plan: apply stops before rebuilding, says why, the image is unchanged.
for g in "${gens[@]}"; do
    s=$([[ $g == itools ]] && echo bound-refuse || echo bound-refuse-remove)
    ok "$g: apply with a config naming the boot display exits 1" rc_is "$g" "$s" apply-refused 1
    ok "$g: ... says the image was not rebuilt" out_has "$g" "$s" apply-refused 'not rebuilt'
    ok "$g: ... names the refused device" out_has "$g" "$s" apply-refused '0000:00:02\.0'
    ok "$g: ... ran no generator" no_generator_ran "$g" "$s" apply-refused
    ok "$g: ... the image on disk is unchanged (checksum)" md5_same "$g" "$s" before-refusal after-refusal
    ok "$g: ... and its mtime" ve_is "$g" "$s" IMAGE-MTIME-SAME yes
done

if has itools; then
    # The kill switch.
    ok "itools: vfio_early=off boot reached its step" booted itools off-remove
    ok "itools: vfio_early=off: nothing on vfio-pci" nothing_on_vfio itools off-remove
    ok "itools: vfio_early=off: the card keeps bochs-drm" driver_is itools off-remove "$card" bochs-drm
    ok "itools: vfio_early=off: no driver_override left on the card" override_is itools off-remove "$card" '(null)'
    # The agent runs once from init-top and once more per modprobe of vfio-pci through the
    # backstop (install vfio-pci /usr/bin/vfio-early bind ...): each run logs one line.
    ok "itools: vfio_early=off: the agent logged ($(ve itools off-remove KMSG-AGENT-LINES) runs), one line per run" \
        positive "$(ve itools off-remove KMSG-AGENT-LINES)"
    ok "itools: vfio_early=off: ... and that line is always the kill switch's" agent_lines_are itools off-remove \
        'vfio-early: disabled by vfio_early=off on the kernel command line; nothing done'

fi

# Removal.
for g in "${gens[@]}"; do
    s=$([[ $g == itools ]] && echo off-remove || echo bound-refuse-remove)
    built=$([[ $g == itools ]] && echo '^update-initramfs: Generating' || echo '^dracut: Generating')
    ok "$g: apt remove vfio-early (exit 0)" rc_is "$g" "$s" apt-remove 0
    ok "$g: ... the trigger rebuilt the image" out_has "$g" "$s" apt-remove "$built"
    ok "$g: ... no hook files left" ve_is "$g" "$s" HOOK-FILES 0
    ok "$g: ... the next image (after the removal, a real image) has no agent" \
        removed_image_clean "$g" "$s" "$SYS_WORK/$g/final.initrd"
    ok "$g: ... the user's config stays (a conffile, removed on purge)" ve_is "$g" "$s" CONFIG-KEPT yes
done
if has itools; then
    ok "itools: boot after removal reached its step" booted itools removed
    ok "itools: after removal the card is back on bochs-drm" driver_is itools removed "$card" bochs-drm
    ok "itools: ... its audio on snd_hda_intel" driver_is itools removed 0000:01:00.1 snd_hda_intel
    ok "itools: ... no agent log line" ve_is itools removed KMSG-AGENT-LINES 0
fi

echo "--- figures ---"
for g in "${gens[@]}"; do
    if grep -q "root built" "$SYS_WORK/root-$g.err" 2>/dev/null; then
        sed -n "s/^system-test: \($g root built in .*\)/\1/p" "$SYS_WORK/root-$g.err"
    else
        echo "$g root: from the cache"
    fi
done
[[ -f $SYS_WORK/boots ]] && awk '{ printf "boot %-20s exit %s, %s s\n", $1, $2, $3 }' "$SYS_WORK/boots"
echo "total: $(elapsed "$t_all") s; logs in $SYS_WORK; the package: $deb"
assert_summary
