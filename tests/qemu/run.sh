#!/bin/bash
# shellcheck disable=SC2016 # assertions are eval'd single-quoted on purpose
# End-to-end tests: real initramfs images (dracut shell and systemd, initramfs-tools,
# mkinitcpio's hooks) booting Debian's generic kernel under QEMU (TCG) with an
# emulated Intel or AMD IOMMU, and Debian's arm64 kernel on qemu-system-aarch64 (virt,
# GICv3 ITS, SMMUv3; tests/qemu/arm64.sh). Usage: tests/qemu/run.sh [intel|amd|detach|arm64|sriov|newer|all]
# (detach: only the runtime handover scenarios, one boot; arm64: only the arm64 boots;
# sriov: only the igb SR-IOV boot, tests/qemu/sriov.sh; newer: only the named subset on
# bookworm-backports' kernel, see newer_scenarios).
# Exit 0 only when every assertion held; the last line is "N passed, M failed".
# Environment: VFIO_EARLY_BIN (use this binary instead of building it),
# VFIO_EARLY_BOOT_TIMEOUT (seconds per boot, default 240), VE_SKIP_DEPS=1.
set -uo pipefail

QEMU_DIR=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/qemu/lib.sh
. "$QEMU_DIR/lib.sh"

which=${1:-all}
case $which in intel | amd | detach | arm64 | sriov | newer | all) ;; *)
    echo "usage: $0 [intel|amd|detach|arm64|sriov|newer|all]" >&2
    exit 2
    ;;
esac

# shellcheck source=tests/assert.sh
. "$QEMU_DIR/../assert.sh"

# Readers of a boot log (the guest's report lines). Every reader captures the text
# first and matches in the captured copy: a producer piped into a quiet grep (or one to /dev/null,
# which GNU grep also ends at the first match) can kill the producer with SIGPIPE, and
# pipefail then fails an assertion that held.
report() { tr -d '\r' <"$WORK_DIR/$1.log" | grep -a '^VE-'; }
# has TEXT ERE: TEXT (a captured copy) has a line matching ERE.
has() { grep -E -- "$2" <<<"$1" >/dev/null; }
# report_has BOOT PREFIX ERE: a report line starting with PREFIX matches ERE after it.
report_has() {
    local r
    r=$(report "$1" | sed -n "s/^$2//p")
    has "$r" "$3"
}
dev_field() { report "$1" | awk -v a="$2" -v f="$3" '$1 == "VE-DEV" && $2 == a { v = $f } END { print v }'; }
driver_is() { [[ $(dev_field "$1" "$2" 3) == "$3" ]]; }
override_clear() { [[ $(dev_field "$1" "$2" 4) == "(null)" ]]; }
override_is() { [[ $(dev_field "$1" "$2" 4) == "$3" ]]; }
kmsg_has() { report_has "$1" 'VE-KMSG ' "$2"; }
reached_report() { report_has "$1" '' '^VE-END'; }
conf_has() { report_has "$1" 'VE-CONF ' "$2"; }
agent_lines() { report "$1" | grep '^VE-KMSG' | grep -c 'vfio-early:'; }
# Devices that are neither selected nor vfio-pci's: never on vfio-pci, no override.
others_untouched() {
    local b=$1 a
    for a in 0000:00:00.0 0000:00:02.0 0000:00:07.0 0000:00:08.0 0000:00:1f.0 0000:00:1f.2 \
        0000:00:1f.3 0000:02:00.0 0000:02:00.1; do
        [[ $(dev_field "$b" "$a" 3) != vfio-pci ]] && override_clear "$b" "$a" || return 1
    done
}
huge_is() { [[ $(report "$1" | awk -v s="$2" '$1 == "VE-HUGE" && $2 == s { v = $3 } END { print v }') == "$3" ]]; }
check_ran() { report_has "$1" '' '^VE-CHECK-EXIT [01]$'; }
check_has() { report_has "$1" 'VE-CHECK ' "$2"; }
check_exit_is() { report_has "$1" '' "^VE-CHECK-EXIT $2\$"; }
# console_before BOOT A B: the first console line matching A comes before the first
# matching B.
console_before() {
    local a b text
    text=$(tr -d '\r' <"$WORK_DIR/$1.log")
    a=$(grep -a -n -m1 -E -- "$2" <<<"$text" | cut -d: -f1)
    b=$(grep -a -n -m1 -E -- "$3" <<<"$text" | cut -d: -f1)
    [[ -n $a && -n $b ]] && ((a < b))
}
nothing_on_vfio() { ! report_has "$1" 'VE-DEV ' ' vfio-pci( |$)'; }
# The guest's own view of its kernel and of the vfio stack (guest/report.sh).
uname_is() { [[ $(report "$1" | awk '$1 == "VE-UNAME" { v = $2 } END { print v }') == "$2" ]]; }
mod_loaded() { report_has "$1" 'VE-MOD ' "^$2\$"; }
vfiodev_has() { report_has "$1" 'VE-VFIODEV ' "$2"; }
reset_is() { [[ $(report "$1" | awk -v a="$2" '$1 == "VE-RESET" && $2 == a { v = $3 } END { print v }') == "$3" ]]; }
# ver_ge A B: kernel release A is at least B (major.minor).
ver_ge() { [[ $(printf '%s\n' "$2" "${1%%-*}" | sort -V | head -n1) == "$2" ]]; }

# The main config (configs/main.toml) on the standard topology.
assert_main() { # BOOT LABEL EARLY_E1000E(yes|no)
    local b=$1 l=$2
    ok "$l: boot reached the report (the agent did not stall it)" reached_report "$b"
    ok "$l: card A display 01:00.0 on vfio-pci" driver_is "$b" 0000:01:00.0 vfio-pci
    ok "$l: card A audio 01:00.1 on vfio-pci (functions = slot)" driver_is "$b" 0000:01:00.1 vfio-pci
    ok "$l: e1000e 00:03.0 handed to vfio-pci" driver_is "$b" 0000:00:03.0 vfio-pci
    if [[ $3 == yes ]]; then
        ok "$l: e1000e was bound early and unbound by the agent" kmsg_has "$b" 'vfio-early: 0000:00:03\.0.*was e1000e'
    fi
    ok "$l: identical card B stays on the host (bochs-drm)" driver_is "$b" 0000:02:00.0 bochs-drm
    ok "$l: card B audio stays on the host (snd_hda_intel)" driver_is "$b" 0000:02:00.1 snd_hda_intel
    ok "$l: boot VGA 00:02.0 keeps bochs-drm" driver_is "$b" 0000:00:02.0 bochs-drm
    ok "$l: boot VGA refusal logged with its reason" kmsg_has "$b" 'vfio-early: 0000:00:02\.0.*refused.*boot_vga'
    ok "$l: no other device touched" others_untouched "$b"
    ok "$l: summary line in the kernel log" kmsg_has "$b" 'vfio-early: .*3 bound.*1 refused'
}

assert_untouched() { # BOOT LABEL
    local b=$1 l=$2
    ok "$l: boot reached the report" reached_report "$b"
    ok "$l: no device on vfio-pci" nothing_on_vfio "$b"
    ok "$l: card A stays on bochs-drm" driver_is "$b" 0000:01:00.0 bochs-drm
    ok "$l: e1000e stays on e1000e" driver_is "$b" 0000:00:03.0 e1000e
    ok "$l: no driver_override set" override_clear "$b" 0000:01:00.0
}

# The detach scenarios (guest/detach.sh): one VM step's output, status, device state.
dt_rc() { [[ $(report "$1" | awk -v s="$2" '$1 == "VE-DT-RC" && $2 == s { v = $3 } END { print v }') == "$3" ]]; }
dt_out() { report "$1" | awk -v s="$2" '$1 == "VE-DT-OUT" && $2 == s { sub(/^VE-DT-OUT [^ ]+ /, ""); print }' | grep -E -- "$3" >/dev/null; }
dt_field() { report "$1" | awk -v s="$2" -v a="$3" -v f="$4" '$1 == "VE-DT-DEV" && $2 == s && $3 == a { v = $f } END { print v }'; }
dt_driver() { [[ $(dt_field "$1" "$2" "$3" 4) == "$4" ]]; }
dt_override() { [[ $(dt_field "$1" "$2" "$3" 5) == "$4" ]]; }
dt_net() { report "$1" | awk -v s="$2" '$1 == "VE-DT-NET" && $2 == s { $1 = $2 = $3 = ""; print }' | tr -d ' '; }
# dt_fbcon BOOT STEP BIND: the framebuffer console (name "frame buffer") is bound or not.
dt_fbcon() { [[ $(report "$1" | awk -v s="$2" '$1 == "VE-DT-VT" && $2 == s && /frame buffer/ { v = v $4 } END { print v }') == "$3" ]]; }
# dt_fbcon_named BOOT STEP: the step's output names that console.
dt_fbcon_named() {
    local c
    c=$(report "$1" | awk '$1 == "VE-DT-VT" && $2 == "boot" && /frame buffer/ && c == "" { c = $3 } END { print c }')
    [[ -n $c ]] && dt_out "$1" "$2" "console $c\$"
}
VIABLE='group [0-9]+ is viable, by the kernel.s own check'

detach_scenarios() { # one Intel boot: every step of guest/detach.sh
    local b=intel-detach nic=0000:00:03.0 vga=0000:00:02.0 card=0000:01:00.0 audio=0000:01:00.1
    qemu_boot "$b" intel "$WORK_DIR/dracut-shell.img" \
        "$DRACUT_ARGS printk.devkmsg=on ve.config=detach-boot ve.detach=1"
    ok "detach: the scenarios ran to their end" eval 'report '"$b"' | grep -x VE-DT-END >/dev/null'
    ok "detach: e1000e 00:03.0 detached to vfio-pci (exit 0)" \
        eval 'dt_rc '"$b"' nic-detach 0 && dt_driver '"$b"' nic-detached '"$nic"' vfio-pci'
    ok "detach: the kernel's VFIO verdict after the e1000e detach: viable" dt_out "$b" nic-detach "$VIABLE"
    ok "detach: the e1000e interface is gone while on vfio-pci" eval '[[ $(dt_net '"$b"' nic-detached) == none ]]'
    ok "detach again: idempotent (exit 0, already on vfio-pci)" \
        eval 'dt_rc '"$b"' nic-detach-again 0 && dt_out '"$b"' nic-detach-again "already-bound"'
    ok "reattach: e1000e back on e1000e, override cleared, its interface back" \
        eval 'dt_rc '"$b"' nic-reattach 0 && dt_driver '"$b"' nic-reattached '"$nic"' e1000e && dt_override '"$b"' nic-reattached '"$nic"' "(null)" && [[ $(dt_net '"$b"' nic-reattached) != none && -n $(dt_net '"$b"' nic-reattached) ]]'
    ok "reattach again: nothing to do (exit 0)" \
        eval 'dt_rc '"$b"' nic-reattach-again 0 && dt_out '"$b"' nic-reattach-again "nothing to do"'
    ok "detach refused: card A's display alone (exit 1), naming the audio function its group needs" \
        eval 'dt_rc '"$b"' card-alone 1 && dt_out '"$b"' card-alone "refused: .*IOMMU group .*0000:01:00\.1"'
    ok "detach refused: the group is left untouched (drivers and overrides)" \
        eval 'dt_driver '"$b"' card-alone '"$card"' bochs-drm && dt_driver '"$b"' card-alone '"$audio"' snd_hda_intel && dt_override '"$b"' card-alone '"$card"' "(null)" && dt_override '"$b"' card-alone '"$audio"' "(null)"'
    ok "detach refused: a process holding the boot display's DRM node is named" \
        eval 'dt_rc '"$b"' vga-held 1 && dt_out '"$b"' vga-held "sleep \(pid [0-9]+\) holds /dev/dri/card" && dt_driver '"$b"' card-alone '"$vga"' bochs-drm'
    ok "detach boot VGA (bochs-drm with fbcon): on vfio-pci (exit 0)" \
        eval 'dt_rc '"$b"' vga-detach 0 && dt_driver '"$b"' vga-detached '"$vga"' vfio-pci'
    ok "detach boot VGA: [handover] released the framebuffer console (fbcon) first" \
        eval 'dt_fbcon '"$b"' boot 1 && dt_fbcon_named '"$b"' vga-detach && dt_out '"$b"' vga-detach "^released console" && dt_fbcon '"$b"' vga-detached 0'
    ok "detach boot VGA: the kernel's VFIO verdict: viable" dt_out "$b" vga-detach "$VIABLE"
    ok "reattach boot VGA: back on bochs-drm with fbcon rebound" \
        eval 'dt_rc '"$b"' vga-reattach 0 && dt_driver '"$b"' vga-reattached '"$vga"' bochs-drm && dt_fbcon '"$b"' vga-reattached 1 && dt_out '"$b"' vga-reattach "^restored console" && dt_fbcon_named '"$b"' vga-reattach'
    ok "libvirt hook prepare begin (libvirt's argv, domain XML on stdin): the managed='no' e1000e detached" \
        eval 'dt_rc '"$b"' hook-prepare 0 && dt_driver '"$b"' hook-prepared '"$nic"' vfio-pci && dt_driver '"$b"' hook-prepared '"$vga"' bochs-drm'
    ok "libvirt hook prepare begin: detach followed by the kernel's VFIO verdict: viable" dt_out "$b" hook-prepare "$VIABLE"
    ok "libvirt hook started begin: a no-op for detach and reattach, exit 0" dt_rc "$b" hook-started 0
    ok "libvirt hook release end: e1000e reattached with its interface back" \
        eval 'dt_rc '"$b"' hook-release 0 && dt_driver '"$b"' hook-released '"$nic"' e1000e && [[ $(dt_net '"$b"' hook-released) != none ]]'
    ok "detach --slot: card A's display and audio on vfio-pci, group viable by the kernel" \
        eval 'dt_rc '"$b"' card-detach 0 && dt_driver '"$b"' card-detached '"$card"' vfio-pci && dt_driver '"$b"' card-detached '"$audio"' vfio-pci && dt_out '"$b"' card-detach "$VIABLE"'
    ok "reattach under a VFIO holder: the stalled unbind is bounded (exit 1, no answer after 2000 ms)" \
        eval 'dt_out '"$b"' card-hold "^held " && dt_rc '"$b"' card-held-reattach 1 && dt_out '"$b"' card-held-reattach "0000:01:00\.1: unbinding from vfio-pci failed: .*no answer after 2000 ms"'
    ok "reattach stalled: the group is rolled back whole (the display function unbound first is back on vfio-pci)" \
        eval 'dt_out '"$b"' card-held-reattach "put back on vfio-pci" && ! dt_out '"$b"' card-held-reattach "incompletely" && dt_driver '"$b"' card-held '"$card"' vfio-pci && dt_override '"$b"' card-held '"$card"' vfio-pci && ! dt_driver '"$b"' card-held '"$audio"' snd_hda_intel'
    ok "reattach after the holder let go: card A back on bochs-drm and snd_hda_intel" \
        eval 'dt_rc '"$b"' card-reattach 0 && dt_driver '"$b"' card-reattached '"$card"' bochs-drm && dt_driver '"$b"' card-reattached '"$audio"' snd_hda_intel && dt_override '"$b"' card-reattached '"$audio"' "(null)"'
}

DRACUT_ARGS="root=/dev/nonexistent rd.retry=6 rd.shell=0 rd.emergency=poweroff"

# image_list IMAGE: the image's file list (captured, then matched).
image_list() { cpio -it --quiet <"$1" 2>/dev/null; }
image_has() { local l; l=$(image_list "$1"); grep -E -- "$2" <<<"$l" >/dev/null; }

# The module closure and the vfio interfaces of the kernel now in KVER/KMODDIR, proven
# from its own modules.dep and, after a boot, from the guest (BOOT): vfio_virqfd is a
# module up to 6.1 and folded into vfio.ko from 6.2; modules may ship compressed.
closure_assertions() { # LABEL
    local l=$1 mods
    mods=$("$AGENT_BIN" modules --kver "$KVER" --kmoddir "$KMODDIR")
    for m in vfio_pci vfio_pci_core vfio vfio_iommu_type1 irqbypass; do
        ok "$l modules: $m in vfio-pci's closure for $KVER" grep -qx "$m" <<<"$mods"
    done
    if ver_ge "$KVER" 6.2; then
        ok "$l modules: no vfio_virqfd in the closure ($KVER >= 6.2: folded into vfio.ko)" \
            eval '! grep -qx vfio_virqfd <<<"$mods" && ! grep -q "vfio_virqfd" "$KMODDIR/modules.dep"'
    else
        ok "$l modules: vfio_virqfd in the closure ($KVER < 6.2: its own module)" grep -qx vfio_virqfd <<<"$mods"
    fi
}

# The extras config's reset methods on the real kernel (configs/extras.toml).
reset_assertions() { # BOOT LABEL
    local b=$1 l=$2
    ok "$l reset: e1000e's reset_method pm written at boot and read back (logged)" \
        eval 'kmsg_has '"$b"' "vfio-early: 0000:00:03\.0: reset_method pm \(was pm\)" && reset_is '"$b"' 0000:00:03.0 pm'
    ok "$l reset: card A's device_specific refused without the vendor_reset module, bus kept" \
        eval 'kmsg_has '"$b"' "vfio-early: 0000:01:00\.0: reset_method device_specific not set: device_specific needs the vendor_reset module" && reset_is '"$b"' 0000:01:00.0 bus'
    ok "$l reset: check shows the chosen pm in place and the refused device_specific" \
        eval 'check_has '"$b"' "^pass +reset 0000:00:03\.0 +reset_method is pm, as the config chooses" && check_has '"$b"' "^warn +reset 0000:01:00\.0 +the config chooses reset_method device_specific; the kernel shows bus"'
    ok "$l reset: check shows card A's audio function (no method of its own) reset with its slot" \
        check_has "$b" '^pass +reset 0000:01:00\.1 +reset_method: none; resettable by a bus reset of its whole slot'
}

guest_kernel_assertions() { # BOOT LABEL
    local b=$1 l=$2
    ok "$l: the guest runs $KVER (uname -r)" uname_is "$b" "$KVER"
    ok "$l: vfio, vfio_pci_core, vfio_pci and vfio_iommu_type1 loaded" \
        eval 'mod_loaded '"$b"' vfio && mod_loaded '"$b"' vfio_pci_core && mod_loaded '"$b"' vfio_pci && mod_loaded '"$b"' vfio_iommu_type1'
    if ver_ge "$KVER" 6.2; then
        ok "$l: no vfio_virqfd module loaded (in vfio.ko on $KVER)" eval '! mod_loaded '"$b"' vfio_virqfd'
    else
        ok "$l: vfio_virqfd loaded as its own module ($KVER)" mod_loaded "$b" vfio_virqfd
    fi
    ok "$l: the group interface /dev/vfio/N is there" vfiodev_has "$b" '^/dev/vfio/[0-9]+$'
}
T0=$(now)

boot_scenarios() { # VENDOR
    local v=$1
    qemu_boot "$v-dracut-shell" "$v" "$WORK_DIR/dracut-shell.img" \
        "$DRACUT_ARGS rd.driver.pre=e1000e printk.devkmsg=on ve.config=main"
    assert_main "$v-dracut-shell" "$v dracut shell" yes
    guest_kernel_assertions "$v-dracut-shell" "$v dracut shell"
    ok "$v dracut shell: IOMMU groups exist ($v)" kmsg_has "$v-dracut-shell" 'IOMMU group [0-9]+'
    ok "$v dracut shell: modprobe.d backstop in the image" conf_has "$v-dracut-shell" '^install vfio-pci .*vfio-early bind --once; modprobe --ignore-install vfio-pci'

    qemu_boot "$v-itools" "$v" "$WORK_DIR/itools.img" "root=/dev/nonexistent"
    assert_main "$v-itools" "$v initramfs-tools (no printk.devkmsg)" no

    if [[ $v == intel ]]; then
        qemu_boot "$v-dracut-systemd" "$v" "$WORK_DIR/dracut-systemd.img" \
            "$DRACUT_ARGS rd.modules_load=e1000e ve.config=main"
        # systemd-modules-load races the agent here (no order between them): either
        # way e1000e must end on vfio-pci.
        assert_main "$v-dracut-systemd" "$v dracut systemd (no printk.devkmsg)" no

        # mkinitcpio's oneshot unit (for its systemd hook) under a real systemd
        # initramfs: dracut's systemd image with the unit in place of our hook.
        # (ve.config=main is the image's own config: the switcher runs at pre-udev, unordered
        # with the unit.)
        qemu_boot "$v-systemd-unit" "$v" "$WORK_DIR/dracut-unit.img" "$DRACUT_ARGS ve.config=main"
        assert_main "$v-systemd-unit" "$v systemd oneshot unit (no printk.devkmsg)" no
        ok "$v systemd oneshot unit: finished before udev's coldplug started" console_before "$v-systemd-unit" \
            'Finished .*vfio-early\.servic' 'Starting .*Coldplug All udev Devices'

        qemu_boot "$v-mkinitcpio" "$v" "$WORK_DIR/mkinitcpio.img" "ve.config=main"
        assert_main "$v-mkinitcpio" "$v mkinitcpio runtime hook" no
        ok "$v mkinitcpio: early hook ran before MODULES= and udev's run_hook" \
            grep -aq ':: running early hook \[vfio-early\]' "$WORK_DIR/$v-mkinitcpio.log"

        qemu_boot "$v-killswitch" "$v" "$WORK_DIR/dracut-shell.img" \
            "$DRACUT_ARGS rd.driver.pre=e1000e ve.config=main vfio_early=off"
        assert_untouched "$v-killswitch" "$v kill switch"
        ok "$v kill switch: exactly one agent line, naming the switch" \
            eval '[[ $(agent_lines '"$v"'-killswitch) == 1 ]] && kmsg_has '"$v"'-killswitch "vfio-early: .*vfio_early=off"'

        qemu_boot "$v-badconfig" "$v" "$WORK_DIR/dracut-shell.img" \
            "$DRACUT_ARGS rd.driver.pre=e1000e ve.config=bad"
        assert_untouched "$v-badconfig" "$v malformed config"
        ok "$v malformed config: the error names the line" kmsg_has "$v-badconfig" 'vfio-early: .*vfio-early\.toml:3:'

        # Optional scenarios in one boot: rollback, hugepages, check after the bind.
        qemu_boot "$v-extras" "$v" "$WORK_DIR/dracut-shell.img" \
            "$DRACUT_ARGS rd.driver.pre=e1000e printk.devkmsg=on ve.config=extras ve.rollback=1 ve.check=1"
        ok "$v rollback: boot reached the report" reached_report "$v-extras"
        ok "$v rollback: card A display ends on its host driver" driver_is "$v-extras" 0000:01:00.0 bochs-drm
        ok "$v rollback: card A audio ends on its host driver" driver_is "$v-extras" 0000:01:00.1 snd_hda_intel
        ok "$v rollback: card A display's pre-set driver_override (bochs-drm) restored, not cleared" \
            override_is "$v-extras" 0000:01:00.0 bochs-drm
        ok "$v rollback: the plan showed the pre-set override" \
            report_has "$v-extras" 'VE-PLAN ' 'driver_override is bochs-drm now'

        ok "$v rollback: the failure is logged" kmsg_has "$v-extras" 'vfio-early: .*0000:01:00\.1.*(fail|roll|verif)'
        ok "$v rollback: e1000e (another group) still handed over" driver_is "$v-extras" 0000:00:03.0 vfio-pci
        ok "$v hugepages: 64 x 2 MiB reserved and read back" huge_is "$v-extras" 2048kB 64
        ok "$v check: ran inside the VM after the bind" check_ran "$v-extras"
        ok "$v check: reports the bound e1000e" check_has "$v-extras" '^pass +device 0000:00:03\.0 +on vfio-pci'
        ok "$v check: fails on the rolled-back group" check_has "$v-extras" '^fail +boot 0000:01:00\.1 +rolled-back'
        reset_assertions "$v-extras" "$v"
        ok "$v check: the vfio interfaces this kernel offers (no device cdev before 6.6)" \
            check_has "$v-extras" '^info +vfio interface +group interface: /dev/vfio/[0-9]+.*; no vfio device cdev: Linux .* is older than 6\.6'

        # 1 GiB pages: -cpu max (pdpe1gb) and -m 8G (at 1-4G the kernel finds no
        # contiguous GiB at run time).
        VFIO_EARLY_QEMU_MEM=8192 qemu_boot "$v-huge1g" "$v" "$WORK_DIR/dracut-shell.img" "$DRACUT_ARGS ve.config=huge1g ve.check=1"
        ok "$v hugepages: 1 x 1 GiB reserved and read back (-m 8G)" huge_is "$v-huge1g" 1048576kB 1
        ok "$v hugepages: the agent logs what it obtained" kmsg_has "$v-huge1g" 'vfio-early: hugepages 1G: requested 1, obtained 1'
        ok "$v hugepages: card A bound in the same run" driver_is "$v-huge1g" 0000:01:00.0 vfio-pci
        ok "$v check: passes (exit 0) after a successful bind" check_exit_is "$v-huge1g" 0
        ok "$v check: card A's display on vfio-pci in a usable group" check_has "$v-huge1g" '^pass +device 0000:01:00\.0 +on vfio-pci'

        # QEMU's default CPU model has no pdpe1gb: 2 MiB pages still come, 1 GiB pages
        # are refused by name (the config line and why).
        VFIO_EARLY_QEMU_CPU=qemu64 qemu_boot "$v-huge-qemu64" "$v" "$WORK_DIR/dracut-shell.img" "$DRACUT_ARGS ve.config=huge-qemu64"
        ok "$v hugepages, default CPU: 64 x 2 MiB reserved and read back" huge_is "$v-huge-qemu64" 2048kB 64
        ok "$v hugepages, default CPU: the agent logs 2M requested 64, obtained 64" kmsg_has "$v-huge-qemu64" 'vfio-early: hugepages 2M: requested 64, obtained 64'
        ok "$v hugepages, default CPU: 1G refused, naming the line and pdpe1gb" kmsg_has "$v-huge-qemu64" 'vfio-early: hugepages 1G: not reserved: .*vfio-early\.toml:10: size 1G is not offered.*pdpe1gb'

        # Little memory: the shortfall is reported, with the fix, not hidden.
        VFIO_EARLY_QEMU_MEM=2048 qemu_boot "$v-huge-short" "$v" "$WORK_DIR/dracut-shell.img" "$DRACUT_ARGS ve.config=huge-short ve.check=1"
        ok "$v hugepages, -m 2G: the kernel gave no 1 GiB page" huge_is "$v-huge-short" 1048576kB 0
        ok "$v hugepages, -m 2G: the shortfall is logged with the command-line fix" kmsg_has "$v-huge-short" 'vfio-early: hugepages 1G: requested 1, obtained 0 \(1 short\).*hugepagesz=1G'
        ok "$v hugepages, -m 2G: card A bound all the same" driver_is "$v-huge-short" 0000:01:00.0 vfio-pci
        ok "$v check: reports the hugepage shortfall" check_has "$v-huge-short" '^(warn|fail) +hugepages'
    else
        qemu_boot "$v-mkinitcpio" "$v" "$WORK_DIR/mkinitcpio.img" "ve.config=main"
        assert_main "$v-mkinitcpio" "$v mkinitcpio runtime hook" no
    fi
}

# The named subset on the newer kernel that linux-image-amd64 names in
# bookworm-backports (found by name, cached like the 6.1 one): its module closure and
# image contents, then Intel and AMD binds, rollback (with check and a reset_method
# written and read back) and the kill switch, each boot checking the guest's uname -r.
# Leaves KVER and friends on the newer kernel.
newer_scenarios() {
    local t p ext
    t=$(now)
    KERNEL_SUITE=backports fetch_kernel
    log "newer kernel $KVER ready: $(elapsed "$t") s"
    closure_assertions "newer $KVER"
    # Debian compresses the modules of its 6.12 (CONFIG_MODULE_COMPRESS_XZ, and
    # MODULE_DECOMPRESS: the kernel takes them compressed through finit_module).
    p=$(awk -F: '$1 ~ /\/vfio-pci\.ko/ { print $1; exit }' "$KMODDIR/modules.dep")
    ext=${p##*/vfio-pci}
    ok "newer $KVER: vfio-pci ships as $ext (the suffix as modules.dep names it)" test -n "$p" -a -f "$KMODDIR/$p"
    dracut_image "$WORK_DIR/newer-dracut-shell.img" shell "$QEMU_DIR/configs/main.toml" || die "dracut shell image ($KVER)"
    ok "newer $KVER image: vfio-pci, vfio-pci-core, vfio and vfio_iommu_type1 in it as $ext" \
        eval 'for m in vfio-pci vfio-pci-core vfio vfio_iommu_type1; do image_has "$WORK_DIR/newer-dracut-shell.img" "/$m${ext//./\\.}\$" || exit 1; done'
    ok "newer $KVER image: no vfio_virqfd module in it" eval '! image_has "$WORK_DIR/newer-dracut-shell.img" vfio_virqfd'

    local b=newer-intel
    qemu_boot "$b" intel "$WORK_DIR/newer-dracut-shell.img" \
        "$DRACUT_ARGS rd.driver.pre=e1000e printk.devkmsg=on ve.config=main ve.check=1"
    assert_main "$b" "newer intel dracut shell" yes
    guest_kernel_assertions "$b" "newer intel dracut shell"
    # iommufd and the vfio device cdev (6.6+) exist only when the kernel's config has
    # them: what the guest shows and what check says follow that config (Debian's
    # 6.12 has CONFIG_IOMMUFD unset, so no VFIO_DEVICE_CDEV).
    if grep -qx 'CONFIG_VFIO_DEVICE_CDEV=y' "$KROOT/boot/config-$KVER"; then
        ok "newer intel: VFIO_DEVICE_CDEV=y: /dev/vfio/devices/vfioN there and check lists it" \
            eval 'vfiodev_has '"$b"' "^/dev/vfio/devices/vfio[0-9]+$" && check_has '"$b"' "^info +vfio interface +group interface: /dev/vfio/[0-9]+.*; device cdev /dev/vfio/devices: /dev/vfio/devices/vfio[0-9]"'
    else
        ok "newer intel: no VFIO_DEVICE_CDEV in $KVER's config: no /dev/vfio/devices, and check says the kernel is built without it" \
            eval '! vfiodev_has '"$b"' "^/dev/vfio/devices" && check_has '"$b"' "^info +vfio interface +group interface: /dev/vfio/[0-9]+.*; no vfio device cdev: Linux [^ ]+ is built without it"'
    fi

    # The AMD bind runs on Debian 12's QEMU 7.2: under QEMU 10.0.2's amd-iommu, 6.12's
    # emulated-device DMA went untranslated (AHCI IDENTIFY timeouts, a udev event that
    # never ended: 2 boots of 4 here), one reason the machine's QEMU stays 7.2.
    b=newer-amd
    qemu_boot "$b" amd "$WORK_DIR/newer-dracut-shell.img" \
        "$DRACUT_ARGS rd.driver.pre=e1000e printk.devkmsg=on ve.config=main"
    assert_main "$b" "newer amd dracut shell" yes
    ok "newer amd: the guest runs $KVER (uname -r)" uname_is "$b" "$KVER"

    b=newer-extras
    qemu_boot "$b" intel "$WORK_DIR/newer-dracut-shell.img" \
        "$DRACUT_ARGS rd.driver.pre=e1000e printk.devkmsg=on ve.config=extras ve.rollback=1 ve.check=1"
    ok "newer rollback: the guest runs $KVER (uname -r)" uname_is "$b" "$KVER"
    ok "newer rollback: card A display ends on its host driver" driver_is "$b" 0000:01:00.0 bochs-drm
    ok "newer rollback: card A audio ends on its host driver" driver_is "$b" 0000:01:00.1 snd_hda_intel
    ok "newer rollback: the failure is logged" kmsg_has "$b" 'vfio-early: .*0000:01:00\.1.*(fail|roll|verif)'
    ok "newer rollback: e1000e (another group) still handed over" driver_is "$b" 0000:00:03.0 vfio-pci
    ok "newer check: fails on the rolled-back group" check_has "$b" '^fail +boot 0000:01:00\.1 +rolled-back'
    reset_assertions "$b" "newer"

    b=newer-killswitch
    qemu_boot "$b" intel "$WORK_DIR/newer-dracut-shell.img" \
        "$DRACUT_ARGS rd.driver.pre=e1000e ve.config=main vfio_early=off"
    assert_untouched "$b" "newer kill switch"
    ok "newer kill switch: the guest runs $KVER (uname -r)" uname_is "$b" "$KVER"
    ok "newer kill switch: exactly one agent line, naming the switch" \
        eval '[[ $(agent_lines '"$b"') == 1 ]] && kmsg_has '"$b"' "vfio-early: .*vfio_early=off"'
}

# shellcheck source=tests/qemu/arm64.sh
. "$QEMU_DIR/arm64.sh"
# shellcheck source=tests/qemu/sriov.sh
. "$QEMU_DIR/sriov.sh"
export VE_QEMU_DIR=$QEMU_DIR
if [[ $which == arm64 ]]; then
    if [[ -z ${VE_SKIP_DEPS:-} ]]; then
        "$QEMU_DIR/deps.sh" || die "deps.sh failed"
    fi
    arm64_scenarios
    log "total $(elapsed "$T0") s"
    echo "$passed passed, $failed failed"
    ((failed == 0))
    exit
fi

# --- setup -------------------------------------------------------------------------
if [[ -z ${VE_SKIP_DEPS:-} ]]; then
    "$QEMU_DIR/deps.sh" || die "deps.sh failed"
fi
t=$(now)
fetch_kernel
log "kernel $KVER ready: $(elapsed "$t") s"
t=$(now)
build_agent
log "agent built: $(elapsed "$t") s"
export VE_QEMU_DIR=$QEMU_DIR
mkdir -p "$WORK_DIR/empty-confdir"

# --- one scenario alone (detach: one image, one boot; sriov: one boot; newer kernel) -
# alone SCENARIO: runs it, says how long it took, and ends the run with its summary.
alone() {
    "$@"
    log "$which: $(elapsed "$T0") s"
    assert_summary
    exit
}
case $which in
detach)
    dracut_image "$WORK_DIR/dracut-shell.img" shell "$QEMU_DIR/configs/main.toml" || die "dracut shell image"
    alone detach_scenarios
    ;;
sriov) alone sriov_scenarios ;;
newer) alone newer_scenarios ;;
esac

# --- build-time checks (no boot) ---------------------------------------------------
closure_assertions "$KVER"
empty_kmod=$WORK_DIR/empty-kmoddir
mkdir -p "$empty_kmod"
ok "modules: exit 1 when the kernel has no vfio-pci" \
    eval '"$AGENT_BIN" modules --kver "$KVER" --kmoddir "$empty_kmod" >/dev/null 2>&1; [[ $? == 1 ]]'
# The backstop's softdep lines come from the config's ids and the target kernel's alias
# table: the same on the captured VM and on a root without any device.
fixture=$REPO_DIR/tests/fixtures/qemu-intel-before
if [[ -d $fixture ]]; then
    conf=$("$AGENT_BIN" --root "$fixture" modules --kver "$KVER" --kmoddir "$KMODDIR" \
        --config "$QEMU_DIR/configs/main.toml" --modprobe-conf 2>/dev/null)
    conf_empty=$("$AGENT_BIN" --root "$empty_kmod" modules --kver "$KVER" --kmoddir "$KMODDIR" \
        --config "$QEMU_DIR/configs/main.toml" --modprobe-conf 2>/dev/null)
    ok "modules --modprobe-conf: softdep bochs pre: vfio-pci (from card A's id in the config)" grep -qx "softdep bochs pre: vfio-pci" <<<"$conf"
    # e1000e is named by address alone (so rd.driver.pre=e1000e still binds it first).
    ok "modules --modprobe-conf: no softdep for an entry without an id" eval '! grep -q "softdep e1000e" <<<"$conf"'
    ok "modules --modprobe-conf: the same without the build host's devices" test "$conf" == "$conf_empty"
fi

mk=$WORK_DIR/mkinitcpio-build
rm -rf "$mk"
mkdir -p "$mk/root" "$mk/root-systemd" "$mk/root-novfio" "$mk/root-bad"
mkinitcpio_build "$mk/root" "$mk/record" "$QEMU_DIR/configs/main.toml" base udev vfio-early 2>/dev/null
ok "mkinitcpio build(): returns 0" test $? -eq 0
ok "mkinitcpio build(): adds vfio_pci and vfio_iommu_type1" \
    eval 'grep -qx "add_module vfio_pci" "$mk/record" && grep -qx "add_module vfio_iommu_type1" "$mk/record"'
ok "mkinitcpio build(): adds the binary and the config" \
    eval 'grep -qxF "add_binary $BOOT_BIN /usr/bin/vfio-early" "$mk/record" && grep -q "^add_file .* /etc/vfio-early.toml$" "$mk/record"'
ok "mkinitcpio build(): adds the runtime hook" grep -qx "add_runscript vfio-early" "$mk/record"
ok "mkinitcpio build(): writes the modprobe.d backstop" grep -q '^install vfio-pci ' "$mk/root/etc/modprobe.d/vfio-early.conf"
ok "mkinitcpio build(): no systemd unit without the systemd hook" eval '! grep -q vfio-early.service "$mk/record"'
mkinitcpio_build "$mk/root-systemd" "$mk/record-systemd" "$QEMU_DIR/configs/main.toml" base systemd vfio-early 2>/dev/null
ok "mkinitcpio build() with HOOKS=(systemd): installs and enables the oneshot unit" \
    eval 'grep -q "^add_file .* /usr/lib/systemd/system/vfio-early.service$" "$mk/record-systemd" && grep -q "^add_symlink /usr/lib/systemd/system/sysinit.target.wants/vfio-early.service" "$mk/record-systemd"'
ok "mkinitcpio build() with the systemd hook in _hooks: no runtime hook (systemd's init never runs it)" \
    eval '! grep -q "^add_runscript" "$mk/record-systemd"'
ok "mkinitcpio unit: DefaultDependencies=no, before udev trigger and modules-load" \
    eval 'grep -qx "DefaultDependencies=no" "$mk/root-systemd/usr/lib/systemd/system/vfio-early.service" && grep -q "^Before=systemd-udev-trigger.service systemd-modules-load.service" "$mk/root-systemd/usr/lib/systemd/system/vfio-early.service"'
VE_KMODDIR_OVERRIDE=$empty_kmod mkinitcpio_build "$mk/root-novfio" "$mk/record-novfio" "$QEMU_DIR/configs/main.toml" base udev vfio-early 2>/dev/null
ok "mkinitcpio build() without vfio-pci: returns 0" test $? -eq 0
ok "mkinitcpio build() without vfio-pci: warns loudly and leaves the hook out" \
    eval 'grep -q "^warning .*unavailable.*LEFT OUT" "$mk/record-novfio" && ! grep -q "^add_runscript" "$mk/record-novfio"'
mkinitcpio_build "$mk/root-bad" "$mk/record-bad" "$QEMU_DIR/configs/bad.toml" base udev vfio-early 2>/dev/null
ok "mkinitcpio build() with a malformed config: warns with the line, still builds" \
    eval 'grep -q "^warning vfio-early: .*bad.toml:3:" "$mk/record-bad" && grep -qx "add_runscript vfio-early" "$mk/record-bad"'

# dracut's module-setup.sh and the initramfs-tools hook, against a kernel with and
# without vfio-pci (recording stand-ins for dracut; the host's hook-functions).
dm=$WORK_DIR/hook-build
rm -rf "$dm"
mkdir -p "$dm/initdir" "$dm/initdir-novfio"
dracut_module_run "$KMODDIR" "$QEMU_DIR/configs/main.toml" "$dm/record" "$dm/initdir" 2>/dev/null
ok "dracut module-setup: returns 0" test $? -eq 0
ok "dracut module-setup: instmods the vfio closure" \
    eval 'grep -qx "instmods vfio_pci" "$dm/record" && grep -qx "instmods vfio_iommu_type1" "$dm/record"'
ok "dracut module-setup: hook at pre-udev 00" grep -q '^inst_hook pre-udev 00 .*/vfio-early.sh$' "$dm/record"
ok "dracut module-setup: binary and config installed" \
    eval 'grep -qxF "inst_simple $BOOT_BIN /usr/bin/vfio-early" "$dm/record" && grep -q "^inst_simple .* /etc/vfio-early.toml$" "$dm/record"'
ok "dracut module-setup: modprobe.d backstop written" grep -q '^install vfio-pci ' "$dm/initdir/etc/modprobe.d/vfio-early.conf"
ok "dracut module-setup: the kernel's whole PCI alias table for the group-safety rule" \
    eval 'grep -q "^alias pci:.* snd_hda_intel$" "$dm/initdir/usr/lib/vfio-early/modules.alias"'
dracut_module_run "$empty_kmod" "$QEMU_DIR/configs/main.toml" "$dm/record-novfio" "$dm/initdir-novfio" 2>/dev/null
ok "dracut module-setup without vfio-pci: returns 0 (the image build goes on)" test $? -eq 0
ok "dracut module-setup without vfio-pci: warns loudly, leaves the hook out" \
    eval 'grep -q "^dwarn .*unavailable.*LEFT OUT" "$dm/record-novfio" && ! grep -q "^inst_hook" "$dm/record-novfio" && ! grep -q "^instmods" "$dm/record-novfio"'
itools_hook_run "$KMODDIR" "$QEMU_DIR/configs/main.toml" "$dm/destdir"
ok "initramfs-tools hook: returns 0" test $? -eq 0
ok "initramfs-tools hook: binary, config and backstop in the image" \
    eval 'test -x "$dm/destdir/usr/bin/vfio-early" && test -f "$dm/destdir/etc/vfio-early.toml" && grep -q "^install vfio-pci " "$dm/destdir/etc/modprobe.d/vfio-early.conf"'
itools_hook_run "$empty_kmod" "$QEMU_DIR/configs/main.toml" "$dm/destdir-novfio"
ok "initramfs-tools hook without vfio-pci: returns 0 (the image build goes on)" test $? -eq 0
ok "initramfs-tools hook without vfio-pci: warns loudly, leaves the agent out" \
    eval 'grep -q "^W: vfio-early: .*unavailable.*LEFT OUT" "$dm/destdir-novfio.stderr" && ! test -e "$dm/destdir-novfio/usr/bin/vfio-early"'

# --- images --------------------------------------------------------------------------
t=$(now)
dracut_image "$WORK_DIR/dracut-shell.img" shell "$QEMU_DIR/configs/main.toml" || die "dracut shell image"
dracut_image "$WORK_DIR/dracut-bad.img" shell "$QEMU_DIR/configs/bad.toml" || die "dracut image, bad config"
ok "dracut build with a malformed config: warns with the line" grep -q 'vfio-early: .*bad.toml:3:' "$WORK_DIR/dracut-bad.img.build.log"
ok "dracut image: the hook runs at pre-udev 00" eval 'lsinitrd_hook "$WORK_DIR/dracut-shell.img"'
if [[ $which != amd ]]; then
    dracut_image "$WORK_DIR/dracut-systemd.img" systemd "$QEMU_DIR/configs/main.toml" || die "dracut systemd image"
    dracut_image "$WORK_DIR/dracut-unit.img" systemd-unit "$QEMU_DIR/configs/main.toml" || die "dracut image with the unit"
    ok "systemd unit image: the unit is enabled and our pre-udev hook is not there" \
        eval 'cpio -it --quiet <"$WORK_DIR/dracut-unit.img" 2>/dev/null >"$WORK_DIR/dracut-unit.list"; grep -q "sysinit.target.wants/vfio-early.service$" "$WORK_DIR/dracut-unit.list" && ! grep -q "pre-udev/00-vfio-early.sh$" "$WORK_DIR/dracut-unit.list"'
fi
VFIO_EARLY_CONFIG=$QEMU_DIR/configs/main.toml itools_image "$WORK_DIR/itools.img" "$QEMU_DIR/configs/main.toml" || die "initramfs-tools image"
mkinitcpio_image "$WORK_DIR/mkinitcpio.img" "$QEMU_DIR/configs/main.toml" || die "mkinitcpio image"
log "images built: $(elapsed "$t") s"

# --- boots -----------------------------------------------------------------------------
t=$(now)
[[ $which == amd ]] || boot_scenarios intel
[[ $which == intel ]] || boot_scenarios amd
if [[ $which != amd ]]; then
    qemu_boot noiommu none "$WORK_DIR/dracut-shell.img" "$DRACUT_ARGS ve.config=main ve.check=1"
    ok "no IOMMU: boot reached the report" reached_report noiommu
    ok "no IOMMU: nothing on vfio-pci" nothing_on_vfio noiommu
    ok "no IOMMU: refusal names the missing IOMMU" kmsg_has noiommu 'vfio-early: .*IOMMU'
    ok "no IOMMU: check exits 1" check_exit_is noiommu 1
    ok "no IOMMU: check fails the IOMMU with the firmware hint" check_has noiommu '^fail +iommu +off: .*firmware'
fi
if [[ $which == all ]]; then
    t2=$(now)
    detach_scenarios
    log "detach scenarios: $(elapsed "$t2") s"
    t2=$(now)
    sriov_scenarios
    log "SR-IOV scenarios: $(elapsed "$t2") s"
fi
log "boots: $(elapsed "$t") s"
if [[ $which == all ]]; then
    t2=$(now)
    newer_scenarios
    log "newer kernel: $(elapsed "$t2") s"
    arm64_scenarios
fi
log "total $(elapsed "$T0") s"

assert_summary
