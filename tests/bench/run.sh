#!/usr/bin/env bash
# The performance goals of the project, each measured side by side with its baseline
# in one run, printed as markdown tables (README's performance section comes from it).
#
# Instruction counts come from `valgrind --tool=callgrind --trace-children=yes` (they
# repeat exactly on this machine; every process of a shell loop is counted), wall-clock
# figures are medians of RUNS runs. The commands' output goes to a file, never to
# /dev/null (GNU grep stops at the first match when its output is /dev/null).
#
#   size       the boot agent (--no-default-features), static musl, stripped, stable
#   groups     `groups` on a 1,039-function tree vs one `lspci -nn` on it (same pci.ids)
#   seed       the seed guide's loop (one `lspci -nns` per device) vs `groups`, on the
#              guide's desktop (its 8-function AMD machine: `tree.sh DIR desktop`)
#   kconfig    `check-kconfig --json` on Debian's config vs `grep -c -E` of the same
#              options (the symbols rules.toml names)
#   distinct   the distinct instructions the boot agent's `--version` and a small
#              `bind --dry-run` execute (callgrind --dump-instr): the code TCG translates
#   boot       tests/qemu/bench-boot.sh ROUNDS: the agent vs the seed's shell loop
#              (TCG wall clock; and one boot each under -icount, for comparison)
#   scaling    groups and bind --dry-run at 15, 256, 1,039 functions; check-kconfig at
#              1x, 10x, 100x the config: instructions per function / per byte, and per
#              further function / byte from one size to the next (flat = linear)
#
# Both listings are checked to show the same devices (the seed loop's and `groups`'s
# device lines, `lspci -nn`'s lines and `groups`'s): a benchmark of a command that
# shows less would prove nothing.
#
# Usage: tests/bench/run.sh [--quick] [--boot-rounds N] [--no-boot]
#   --quick: small inputs, 3 runs, no boot benchmark (what CI runs: it checks that the
#   benchmarks run, not their figures, except one: the run fails when the boot agent
#   is over 1,000,000 bytes).
set -uo pipefail

top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top" || exit 2
quick=0
boot_rounds=5
while (($#)); do
    case $1 in
    --quick) quick=1 boot_rounds=0 ;;
    --boot-rounds) boot_rounds=$2 && shift ;;
    --no-boot) boot_rounds=0 ;;
    *) echo "usage: $0 [--quick] [--boot-rounds N] [--no-boot]" >&2 && exit 2 ;;
    esac
    shift
done
runs=11
sizes=(15 256 1039)
factors=(1 10 100)
if ((quick)); then
    runs=3 sizes=(15 64) factors=(1 2)
fi
for tool in valgrind lspci grep awk; do
    command -v "$tool" >/dev/null || { echo "$tool not found (tests/deps.sh installs it)" >&2 && exit 2; }
done
target=${CARGO_TARGET_DIR:-$top/target}
musl=x86_64-unknown-linux-musl
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
log=$target/bench/run-$(date -u +%Y%m%dT%H%M%SZ).log
mkdir -p "$target/bench"
: >"$log"
say() { echo "==> $*" | tee -a "$log" >&2; }

# instr CMD...: instructions of CMD and every process it starts; its output goes to
# a file (kept in $work/out).
instr() {
    local d
    d=$(mktemp -d "$work/cg.XXXX")
    valgrind --tool=callgrind --trace-children=yes --callgrind-out-file="$d/cg.%p" \
        "$@" >"$work/out" 2>"$d/stderr"
    awk '/^summary:/ { s += $2 } END { printf "%d\n", s }' "$d"/cg.*
}
# median_ms CMD...: the median wall-clock time of $runs runs, in milliseconds.
median_ms() {
    local i t0 t1
    "$@" >"$work/out" 2>/dev/null
    for ((i = 0; i < runs; i++)); do
        t0=$(date +%s%N)
        "$@" >"$work/out" 2>/dev/null
        t1=$(date +%s%N)
        echo $(((t1 - t0) / 1000))
    done | sort -n | awk '{ v[NR] = $1 } END { printf "%.2f\n", v[int((NR + 1) / 2)] / 1000 }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
per() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%d", a / b }'; }
# same_count WHAT N M: fails the run when two listings show different numbers of devices.
same_count() {
    if [[ $2 != "$3" ]]; then
        echo "$1: $2 devices against $3; the commands do not show the same machine" >&2
        exit 1
    fi
}
thousands() { sed -E ':a; s/^([0-9]+)([0-9]{3})/\1,\2/; ta' <<<"$1"; }
rows=()
row() { rows+=("| $1 | $2 | $3 | $4 |"); }

say "builds (stable, static musl): full tool and boot agent"
cargo build -q --release --target "$musl" -p vfio-early >>"$log" 2>&1 || { echo "build failed (see $log)" >&2 && exit 1; }
cargo build -q --release --target "$musl" -p vfio-early --no-default-features \
    --target-dir "$target/boot" >>"$log" 2>&1 || { echo "boot build failed (see $log)" >&2 && exit 1; }
bin=$target/$musl/release/vfio-early
boot=$target/boot/$musl/release/vfio-early

# --- size ------------------------------------------------------------------------
# The one goal this run also enforces (every run builds the boot agent the images
# carry): over it the run fails after printing its tables, so CI's `--quick` run
# catches a boot agent that grew past the goal.
size_goal=1000000
size=$(stat -c %s "$boot")
size_met="not met"
((size <= size_goal)) && size_met=met
row "boot agent size (\`--no-default-features\`, static, stripped, stable)" "$(thousands "$size") bytes" \
    "$(ratio "$size" "$size_goal") of $(thousands "$size_goal") ($size_met)" "<= 1.0"

# --- groups on a big tree vs lspci -nn ---------------------------------------------
tree() { # tree N -> DIR (built once)
    local d=$work/tree-$1
    [[ -d $d ]] || tests/bench/tree.sh "$d" "$1" >>"$log" 2>&1
    echo "$d"
}
big=${sizes[-1]}
t=$(tree "$big")
say "groups vs lspci -nn, $big functions"
g_ir=$(instr "$bin" --root "$t" groups)
g_lines=$(grep -c $'^\t[0-9a-f]' "$work/out")
l_ir=$(instr lspci -A linux-sysfs -O sysfs.path="$t/sys/bus/pci" -nn)
same_count "groups vs lspci -nn" "$g_lines" "$(grep -c . "$work/out")"
g_ms=$(median_ms "$bin" --root "$t" groups)
l_ms=$(median_ms lspci -A linux-sysfs -O sysfs.path="$t/sys/bus/pci" -nn)
row "\`groups\` / one \`lspci -nn\`, $big functions, same pci.ids" \
    "$(thousands "$g_ir") / $(thousands "$l_ir") instructions; $g_ms / $l_ms ms" "$(ratio "$g_ir" "$l_ir")" "<= 1.0"

# --- the seed guide's loop vs groups, on the guide's desktop ------------------------
desk=$work/desktop
say "the guide's desktop (tests/bench/tree.sh DIR desktop)"
tests/bench/tree.sh "$desk" desktop >>"$log" 2>&1 || { echo "the desktop tree failed (see $log)" >&2 && exit 1; }
# The seed guide's loop, verbatim but for the paths, as a script (every process it
# starts is counted).
cat >"$work/seed.sh" <<'EOF'
sys=$1/sys
for iommu_group in $(find "$sys"/kernel/iommu_groups/ -maxdepth 1 -mindepth 1 -type d); do
    echo "IOMMU group $(basename "$iommu_group")"
    for device in $(ls -1 "$iommu_group"/devices/); do
        echo -n $'\t'
        lspci -A linux-sysfs -O sysfs.path="$sys/bus/pci" -nns "$device"
    done
done
EOF
say "seed loop vs groups"
s_ir=$(instr bash "$work/seed.sh" "$desk")
s_lines=$(grep -c $'^\t[0-9a-f]' "$work/out")
d_ir=$(instr "$bin" --root "$desk" groups)
same_count "seed loop vs groups" "$s_lines" "$(grep -c $'^\t[0-9a-f]' "$work/out")"
s_ms=$(median_ms bash "$work/seed.sh" "$desk")
d_ms=$(median_ms "$bin" --root "$desk" groups)
n_desk=$(find "$desk/sys/bus/pci/devices" -mindepth 1 -maxdepth 1 | wc -l)
row "seed loop (\`lspci -nns\` per device) / \`groups\`, the guide's desktop ($n_desk functions)" \
    "$(thousands "$s_ir") / $(thousands "$d_ir") instructions; $s_ms / $d_ms ms" "$(ratio "$s_ir" "$d_ir")" ">= 50"

# --- check-kconfig vs grep ---------------------------------------------------------
cfg=tests/kconfig/debian12_linux-6.1.192-2_amd64.config
names=$(grep -oE '^\[symbol\.[A-Za-z0-9_]+\]' kernel-config/rules.toml | sed -E 's/^\[symbol\.(.*)\]$/\1/' | sort -u | paste -sd'|')
pattern="^(# )?CONFIG_($names)[= ]"
say "check-kconfig vs grep -c -E"
k_ir=$(instr "$bin" check-kconfig --json "$cfg")
grep_ir=$(instr grep -c -E "$pattern" "$cfg")
k_ms=$(median_ms "$bin" check-kconfig --json "$cfg")
grep_ms=$(median_ms grep -c -E "$pattern" "$cfg")
row "\`check-kconfig --json\` / \`grep -c -E\` of its $(tr '|' '\n' <<<"$names" | wc -l) options, Debian's config ($(($(stat -c %s "$cfg") / 1000)) KB)" \
    "$(thousands "$k_ir") / $(thousands "$grep_ir") instructions; $k_ms / $grep_ms ms" "$(ratio "$k_ir" "$grep_ir")" "<= 1.0"

# --- first-run code ----------------------------------------------------------------
# distinct CMD...: how many distinct instructions CMD executes (callgrind
# --dump-instr, positions written out in full): what QEMU TCG has to translate the
# first time a program runs in a boot (the boot rows).
distinct() {
    local f=$work/cg.distinct
    valgrind --tool=callgrind --dump-instr=yes --compress-pos=no --compress-strings=no \
        --callgrind-out-file="$f" "$@" >"$work/out" 2>/dev/null
    grep -oE '^0x[0-9a-f]+' "$f" | sort -u | wc -l
}
say "distinct instructions: the boot agent's --version and bind --dry-run"
d_ver=$(distinct "$boot" --version)
t_small=$(tree "${sizes[0]}")
d_dry=$(distinct "$boot" --root "$t_small" bind --dry-run --json)
row "distinct instructions one run executes (what TCG translates the first time a program runs in a boot), the boot agent" \
    "\`--version\` $(thousands "$d_ver"); \`bind --dry-run --json\`, ${sizes[0]} functions, $(thousands "$d_dry")" "-" "(for comparison)"

# --- boot time ---------------------------------------------------------------------
if ((boot_rounds > 0)); then
    say "boot time, $boot_rounds rounds (tests/qemu/bench-boot.sh)"
    out=$(tests/qemu/bench-boot.sh "$boot_rounds" 2>&1)
    printf '%s\n' "$out" >>"$log"
    boot_ratio=$(sed -nE 's/^ratio agent\/shell: *([0-9.]+).*/\1/p' <<<"$out")
    agent_ms=$(sed -nE 's/^agent, hook markers[^:]*: *([0-9.]+) ms.*/\1/p' <<<"$out")
    shell_ms=$(sed -nE 's/^shell loop[^:]*: *([0-9.]+) ms.*/\1/p' <<<"$out")
    same_ratio=$(sed -nE 's/^ratio agent\/shell, same modules: *([0-9.]+).*/\1/p' <<<"$out")
    same_ms=$(sed -nE 's/^same-module loop[^:]*: *([0-9.]+) ms.*/\1/p' <<<"$out")
    boot_met=$(awk -v r="${boot_ratio:-}" 'BEGIN { print (r != "" && r <= 1.0) ? "met" : "not met" }')
    row "time added to boot, QEMU TCG, agent / the seed's shell loop, same image ($boot_rounds boots each)" \
        "${agent_ms:-?} / ${shell_ms:-?} ms (medians)" "${boot_ratio:-failed, see $log} ($boot_met)" "<= 1.0"
    row "the same, the loop also loading vfio_iommu_type1 (as kmod's modprobe does: the 6 modules the agent loads)" \
        "${agent_ms:-?} / ${same_ms:-?} ms (medians)" "${same_ratio:-failed, see $log}" "(for comparison)"
    loop_use=$(sed -nE 's/^e1000e opened through VFIO[^;]*; loop: (.*)$/\1/p' <<<"$out")
    row "a VM's use of what the run bound: the e1000e opened through VFIO afterwards (container, group, type-1 IOMMU, device; as QEMU opens it)" \
        "agent and same-module loop: held; the guide's loop: ${loop_use:-?}" "-" "(for comparison)"
    # -icount: the guest's clock counts instructions (and timer waits), so TCG's
    # translation of code run for the first time is not in the figures.
    read -r ic_agent ic_shell ic_same < <(sed -nE 's/^icount [^:]*: *([0-9.]+) \/ ([0-9.]+) \/ ([0-9.]+) ms.*/\1 \2 \3/p' <<<"$out")
    ic_ratio=$(sed -nE 's/^ratio agent\/shell, icount: *([0-9.]+).*/\1/p' <<<"$out")
    ic_same_ratio=$(sed -nE 's/^ratio agent\/shell, same modules, icount: *([0-9.]+).*/\1/p' <<<"$out")
    row "both, under \`-icount shift=0,sleep=off\` (guest time = instructions executed, 1 ns each; no translation), one boot each" \
        "${ic_agent:-?} / ${ic_shell:-?} ms; same-module loop ${ic_same:-?} ms" \
        "${ic_ratio:-failed, see $log}; same modules ${ic_same_ratio:-failed}" "(for comparison)"
fi

echo
echo "| what | measured (ours / baseline) | ratio | goal |"
echo "| --- | --- | --- | --- |"
printf '%s\n' "${rows[@]}"

# --- scaling -----------------------------------------------------------------------
# Per function: the whole run over the functions; per further function: what the next
# size added over the one before, over the functions it added (flat when linear).
echo
echo "| functions | \`groups\` instructions | per function | per further function | \`bind --dry-run\` instructions | per function | per further function |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
prev_n=0 prev_g=0 prev_b=0
for n in "${sizes[@]}"; do
    say "scaling: $n functions"
    t=$(tree "$n")
    gi=$(instr "$bin" --root "$t" groups)
    same_count "groups at $n functions" "$n" "$(grep -c $'^\t[0-9a-f]' "$work/out")"
    bi=$(instr "$bin" --root "$t" bind --dry-run --json)
    if ((prev_n)); then
        gm=$(thousands "$(per $((gi - prev_g)) $((n - prev_n)))") bm=$(thousands "$(per $((bi - prev_b)) $((n - prev_n)))")
    else
        gm=- bm=-
    fi
    echo "| $(thousands "$n") | $(thousands "$gi") | $(thousands "$(per "$gi" "$n")") | $gm | $(thousands "$bi") | $(thousands "$(per "$bi" "$n")") | $bm |"
    prev_n=$n prev_g=$gi prev_b=$bi
done
echo
echo "| \`check-kconfig --json\` on | bytes | instructions | per byte | per further byte |"
echo "| --- | --- | --- | --- | --- |"
prev_bytes=0 prev_k=0
for f in "${factors[@]}"; do
    say "scaling: check-kconfig at ${f}x"
    big_cfg=$work/config-$f
    cp "$cfg" "$big_cfg"
    # More symbols, none of them the rules' (each copy's names get a suffix).
    for ((k = 1; k < f; k++)); do sed -E "s/CONFIG_([A-Za-z0-9_]+)/CONFIG_\\1_COPY$k/" "$cfg"; done >>"$big_cfg"
    bytes=$(stat -c %s "$big_cfg")
    ki=$(instr "$bin" check-kconfig --json "$big_cfg")
    marginal=-
    if ((prev_bytes)); then
        marginal=$(awk -v i=$((ki - prev_k)) -v b=$((bytes - prev_bytes)) 'BEGIN { printf "%.1f", i / b }')
    fi
    echo "| ${f}x | $(thousands "$bytes") | $(thousands "$ki") | $(awk -v i="$ki" -v b="$bytes" 'BEGIN { printf "%.1f", i / b }') | $marginal |"
    prev_bytes=$bytes prev_k=$ki
done
echo
echo "raw output: $log ($(uname -m), $(nproc) cores, $(date -u +%Y-%m-%d))"
if ((size > size_goal)); then
    echo "boot agent: $(thousands "$size") bytes, over the goal of $(thousands "$size_goal")" >&2
    exit 1
fi
