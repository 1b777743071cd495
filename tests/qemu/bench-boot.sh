#!/bin/bash
# Boot benchmark: the time the agent adds to boot, next to the same bind done by a
# busybox shell loop like the seed guide's vfio-bind, in the same image (mkinitcpio-
# style busybox image, early hook, Intel IOMMU, TCG). Two figures per boot, from kmsg
# timestamps: the hook's markers around the whole bind (process start, module load,
# binds), and for the agent the span from its first to its last kernel log line.
# The loop runs twice per round: as the guide wrote it (`modprobe vfio-pci`: busybox's
# applet loads 5 modules, without vfio's soft dependency vfio_iommu_type1), the figure
# of `ratio agent/shell:`; and loading the 6 modules the agent (and kmod's modprobe, on
# an installed system) loads, `ratio agent/shell, same modules:`. After each run the
# hook opens the e1000e through VFIO as QEMU does (vfio-hold): the agent's and the
# same-module runs must give a usable device; what the guide's loop gives is printed.
# Then the three once more each under `-icount shift=0,sleep=off`: the guest's clock
# counts the instructions it executes (1 ns each) and its timer waits, so the time TCG
# spends translating code the first time it runs (which a CPU does not) is not
# counted; deterministic, so one boot each (`ratio agent/shell, icount:`). Last, the
# agent with -v under both: its trace, each line timed (where its time goes).
# Usage: tests/qemu/bench-boot.sh [ROUNDS]   (default 3; medians are printed)
set -uo pipefail
QEMU_DIR=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/qemu/lib.sh
. "$QEMU_DIR/lib.sh"
rounds=${1:-3}

[[ -n ${VE_SKIP_DEPS:-} ]] || "$QEMU_DIR/deps.sh" || die "deps.sh failed"
fetch_kernel
build_agent
export VE_QEMU_DIR=$QEMU_DIR
mkinitcpio_image "$WORK_DIR/bench.img" "$QEMU_DIR/configs/bench.toml" "udev ve-bench" 2>/dev/null ||
    die "bench image"

# span LOG FIRST_REGEX LAST_REGEX: seconds between the kmsg timestamps of the first
# line matching FIRST and the last line matching LAST.
span() {
    tr -d '\r' <"$1" | grep -a '^VE-KMSG' | awk -v a="$2" -v b="$3" '
        { ts = $0; sub(/^VE-KMSG \[ */, "", ts); sub(/\].*/, "", ts) }
        $0 ~ a && first == "" { first = ts }
        $0 ~ b { last = ts }
        END { if (first == "" || last == "") exit 1; printf "%.6f\n", last - first }'
}
# vfio_use LOG: what the hook's VFIO open of the e1000e after the run gave (`held ...`
# or vfio-hold's error): can a VM use what the run bound?
vfio_use() { tr -d '\r' <"$1" | sed -n 's/^VE-KMSG \[[^]]*\] ve-bench: vfio use: //p' | tail -n 1; }
# usable NAME: the run of NAME.log loaded vfio_iommu_type1 and left the e1000e usable
# through VFIO, or the script dies: a figure of a run that did less would mean nothing.
usable() {
    local log=$WORK_DIR/$1.log use
    # grep -c reads the whole log (-q would stop at the match and, under pipefail, fail
    # the pipeline on tr's SIGPIPE).
    [[ $(tr -d '\r' <"$log" | grep -ac '^VE-MOD vfio_iommu_type1$') -gt 0 ]] ||
        die "$1: vfio_iommu_type1 was not loaded"
    use=$(vfio_use "$log")
    [[ $use == held* ]] || die "$1: the e1000e could not be used through VFIO: ${use:-no answer}"
}
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

: >"$WORK_DIR/bench-agent.txt"
: >"$WORK_DIR/bench-agent-lines.txt"
: >"$WORK_DIR/bench-shell.txt"
: >"$WORK_DIR/bench-same.txt"
for ((i = 1; i <= rounds; i++)); do
    qemu_boot "bench-agent-$i" intel "$WORK_DIR/bench.img" "printk.devkmsg=on ve.bench=agent" || true
    span "$WORK_DIR/bench-agent-$i.log" 've-bench: start agent' 've-bench: end agent' >>"$WORK_DIR/bench-agent.txt" ||
        die "no agent markers in bench-agent-$i.log"
    span "$WORK_DIR/bench-agent-$i.log" 'vfio-early: ' 'vfio-early: ' >>"$WORK_DIR/bench-agent-lines.txt" || true
    qemu_boot "bench-shell-$i" intel "$WORK_DIR/bench.img" "printk.devkmsg=on ve.bench=shell" || true
    span "$WORK_DIR/bench-shell-$i.log" 've-bench: start shell' 've-bench: end shell' >>"$WORK_DIR/bench-shell.txt" ||
        die "no shell markers in bench-shell-$i.log"
    qemu_boot "bench-same-$i" intel "$WORK_DIR/bench.img" "printk.devkmsg=on ve.bench=shell-same" || true
    span "$WORK_DIR/bench-same-$i.log" 've-bench: start shell' 've-bench: end shell' >>"$WORK_DIR/bench-same.txt" ||
        die "no shell markers in bench-same-$i.log"
    # What each run loaded (report.sh lists the vfio stack's modules): the same-module
    # loop must have loaded what the agent loads, or its figure means nothing.
    for run in agent same; do
        usable "bench-$run-$i"
    done
    shell_use=$(vfio_use "$WORK_DIR/bench-shell-$i.log")
done
# One more boot: the agent's `--version` run three times in a row. The first run is
# the first time its code executes in the boot (QEMU TCG translates it then); the
# later ones run translated code: what first execution alone costs.
qemu_boot "bench-exec" intel "$WORK_DIR/bench.img" "printk.devkmsg=on ve.bench=exec" || true
exec_ms=()
for run in 1 2 3; do
    next=$((run + 1))
    [[ $run == 3 ]] && next=end
    exec_ms+=("$(span "$WORK_DIR/bench-exec.log" "ve-bench: exec $run\$" "ve-bench: exec $next\$" | awk '{ printf "%.1f", $1 * 1000 }')") ||
        die "no exec markers in bench-exec.log"
done
# The -icount boots: the same three runs, the guest's clock counting instructions.
icount=()
for run in agent shell same; do
    case $run in
    agent) mode=agent marker=agent ;;
    shell) mode=shell marker=shell ;;
    same) mode=shell-same marker=shell ;;
    esac
    VE_QEMU_EXTRA="${VE_QEMU_EXTRA:-} -icount shift=0,sleep=off" \
        qemu_boot "bench-icount-$run" intel "$WORK_DIR/bench.img" "printk.devkmsg=on ve.bench=$mode" || true
    icount+=("$(span "$WORK_DIR/bench-icount-$run.log" "ve-bench: start $marker" "ve-bench: end $marker")") ||
        die "no markers in bench-icount-$run.log"
    [[ $run == shell ]] || usable "bench-icount-$run"
done
# Where the agent's time goes: two more boots of the agent with -v, each trace line a
# kernel log record (the hook's ve.bench=trace), under TCG and under -icount
# (deterministic); the time from each line to the next, side by side.
# trace LOG: "MS TEXT" per line between the markers, MS since the line before.
trace() {
    tr -d '\r' <"$1" | grep -a '^VE-KMSG' | sed -n '/ve-bench: start agent/,/ve-bench: end agent/p' | awk '
        { ts = $0; sub(/^VE-KMSG \[ */, "", ts); sub(/\].*/, "", ts); text = $0; sub(/^VE-KMSG \[[^]]*\] /, "", text) }
        # -v lines carry the agent clock: dropped (the kernel stamps time them); an info
        # line comes twice (on stderr and as the agent log record): shown once.
        { sub(/^vfio-early: +[0-9]+\.[0-9]+ ms /, "vfio-early: ", text) }
        NR > 1 && text != last { printf "%.1f %s\n", (ts - prev) * 1000, substr(text, 1, 100); prev = ts }
        NR == 1 { prev = ts }
        { last = text }'
}
qemu_boot "bench-trace" intel "$WORK_DIR/bench.img" "printk.devkmsg=on ve.bench=trace" || true
VE_QEMU_EXTRA="${VE_QEMU_EXTRA:-} -icount shift=0,sleep=off" \
    qemu_boot "bench-icount-trace" intel "$WORK_DIR/bench.img" "printk.devkmsg=on ve.bench=trace" || true
trace "$WORK_DIR/bench-trace.log" >"$WORK_DIR/bench-trace.txt"
trace "$WORK_DIR/bench-icount-trace.log" >"$WORK_DIR/bench-icount-trace.txt"
for f in bench-trace bench-icount-trace; do
    grep -q 've-bench: end agent$' "$WORK_DIR/$f.txt" || die "no trace between the markers in $f.log"
done
# The same lines in both (the kernel's own may differ): side by side, else one after the other.
if cmp -s <(cut -d' ' -f2- "$WORK_DIR/bench-trace.txt") <(cut -d' ' -f2- "$WORK_DIR/bench-icount-trace.txt"); then
    steps=$(paste -d' ' <(cut -d' ' -f1 "$WORK_DIR/bench-trace.txt") "$WORK_DIR/bench-icount-trace.txt" |
        awk '{ t = $1; i = $2; $1 = ""; $2 = ""; sub(/^  /, ""); printf "  %6.1f  %6.1f  %s\n", t, i, $0 }')
else
    steps=$(awk '{ m = $1; $1 = ""; printf "  %6.1f     TCG  %s\n", m, substr($0, 2) }' "$WORK_DIR/bench-trace.txt"
        awk '{ m = $1; $1 = ""; printf "  %6.1f  icount  %s\n", m, substr($0, 2) }' "$WORK_DIR/bench-icount-trace.txt")
fi
agent=$(median <"$WORK_DIR/bench-agent.txt")
lines=$(median <"$WORK_DIR/bench-agent-lines.txt")
shell=$(median <"$WORK_DIR/bench-shell.txt")
same=$(median <"$WORK_DIR/bench-same.txt")
printf 'rounds: %d (QEMU TCG, 1 vCPU, Intel IOMMU; 3 devices: bochs-display + hda + e1000e)\n' "$rounds"
printf 'agent, hook markers (exec + vfio-pci load + bind + verify): %.1f ms  [%s]\n' \
    "$(awk -v v="$agent" 'BEGIN { print v * 1000 }')" "$(tr '\n' ' ' <"$WORK_DIR/bench-agent.txt")"
printf 'agent, first to last kernel log line:                      %.1f ms\n' "$(awk -v v="$lines" 'BEGIN { print v * 1000 }')"
printf 'shell loop (vfio-bind), hook markers:                      %.1f ms  [%s]\n' \
    "$(awk -v v="$shell" 'BEGIN { print v * 1000 }')" "$(tr '\n' ' ' <"$WORK_DIR/bench-shell.txt")"
printf 'same-module loop (vfio-bind + vfio_iommu_type1), markers:  %.1f ms  [%s]\n' \
    "$(awk -v v="$same" 'BEGIN { print v * 1000 }')" "$(tr '\n' ' ' <"$WORK_DIR/bench-same.txt")"
printf 'agent --version, 1st / 2nd / 3rd run in one boot:         %s / %s / %s ms\n' "${exec_ms[@]}"
printf 'icount (guest clock = instructions executed), agent / loop / same-module loop: %.1f / %.1f / %.1f ms\n' \
    "$(awk -v v="${icount[0]}" 'BEGIN { print v * 1000 }')" "$(awk -v v="${icount[1]}" 'BEGIN { print v * 1000 }')" \
    "$(awk -v v="${icount[2]}" 'BEGIN { print v * 1000 }')"
printf 'e1000e opened through VFIO after the run (type-1 IOMMU set): agent and same-module loop: held; loop: %s\n' "${shell_use:-?}"
printf 'ratio agent/shell: %.2f\n' "$(awk -v a="$agent" -v s="$shell" 'BEGIN { print a / s }')"
printf 'ratio agent/shell, same modules: %.2f\n' "$(awk -v a="$agent" -v s="$same" 'BEGIN { print a / s }')"
printf 'ratio agent/shell, icount: %.2f\n' "$(awk -v a="${icount[0]}" -v s="${icount[1]}" 'BEGIN { print a / s }')"
printf 'ratio agent/shell, same modules, icount: %.2f\n' "$(awk -v a="${icount[0]}" -v s="${icount[2]}" 'BEGIN { print a / s }')"
printf 'the agent with -v, ms from each kernel log line to the next: TCG, -icount, the line:\n%s\n' "$steps"
