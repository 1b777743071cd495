#!/usr/bin/env bash
# Every benchmark of the project in one place, each next to its baseline or target,
# printed as one markdown table (for README). Raw outputs go to a log.
#
#   binary size        full tool and boot agent (--no-default-features), stable static
#                      musl and, when a nightly with the musl target and rust-src is
#                      installed, -Z build-std
#   plan               cargo bench -p vfio-early --bench plan (1,024 devices, 256 groups)
#   groups             tests/bench/groups-vs-seed.sh (vfio-early groups vs the seed
#                      guide's lspci loop, same fixture), or the groups bench alone
#   check-kconfig      cargo bench -p kernel-config --bench check (in-process), and the
#                      whole command on a real ~290 KB config (process start included)
#   boot time added    tests/qemu/bench-boot.sh, when present
#
# Usage: tests/bench/run.sh [--no-nightly]     (runtime: a few minutes, mostly builds)
set -uo pipefail

top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top" || exit 2
target=${CARGO_TARGET_DIR:-$top/target}
nightly=1
[[ ${1:-} == --no-nightly ]] && nightly=0
mkdir -p "$target/bench"
log=$target/bench/run-$(date -u +%Y%m%dT%H%M%SZ).log
: >"$log"
rows=()

row() { rows+=("| $1 | $2 | $3 |"); }

# section NAME CMD...: runs CMD, appends its output to the log, keeps it in $out.
section() {
    local name=$1
    shift
    echo "==> $name" | tee -a "$log" >&2
    out=$("$@" 2>&1)
    local rc=$?
    printf '%s\n' "$out" >>"$log"
    return $rc
}

# after REGEX: the first number after the first match of REGEX in $out.
after() {
    awk -v re="$1" 'match($0, re) {
        s = substr($0, RSTART + RLENGTH)
        if (match(s, /[0-9]+(\.[0-9]+)?/)) { print substr(s, RSTART, RLENGTH); exit }
    }' <<<"$out"
}

human_size() {
    awk -v b="$1" 'BEGIN { if (b >= 1048576) printf "%.2f MB (%d bytes)", b / 1048576, b; else printf "%.0f KB (%d bytes)", b / 1024, b }'
}

# --- binary size -------------------------------------------------------------------
# Two binaries: the full tool (/usr/bin/vfio-early) and the boot agent the initramfs
# carries (`bind` alone, --no-default-features), each with the stable toolchain and,
# when a nightly with the musl target and rust-src is there, with -Z build-std.
musl=x86_64-unknown-linux-musl
has_nightly=0
if ((nightly)) && rustup toolchain list 2>/dev/null | grep -q '^nightly' &&
    rustup +nightly target list --installed 2>/dev/null | grep -qx "$musl" &&
    rustup +nightly component list --installed 2>/dev/null | grep -q '^rust-src'; then
    has_nightly=1
fi
for build in full boot; do
    features=()
    [[ $build == boot ]] && features=(--no-default-features)
    if section "stable static build ($build)" cargo build --release --target "$musl" -p vfio-early \
        "${features[@]}" --target-dir "$target/size-$build"; then
        bin=$target/size-$build/$musl/release/vfio-early
        size=$(stat -c %s "$bin")
        kind=$(file -L "$bin" 2>/dev/null | grep -Eo 'statically linked|static-pie linked|dynamically linked' || echo "?")
        row "binary size, $build, stable" "$(human_size "$size"), $kind" "target <= 1.0 MB"
    else
        row "binary size, $build, stable" "build failed (see log)" "target <= 1.0 MB"
    fi
    if ((has_nightly)); then
        if section "nightly build-std build ($build)" env \
            RUSTFLAGS="-Zunstable-options -Cpanic=immediate-abort -C relocation-model=static -C target-feature=+crt-static" \
            cargo +nightly build --release --target "$musl" -p vfio-early "${features[@]}" \
            -Z build-std=std,panic_abort -Z build-std-features=optimize_for_size --target-dir "$target/nightly-$build"; then
            size=$(stat -c %s "$target/nightly-$build/$musl/release/vfio-early")
            row "binary size, $build, nightly \`-Z build-std\`, panic=immediate-abort" "$(human_size "$size")" "target <= 1.0 MB"
        else
            row "binary size, $build, nightly \`-Z build-std\`" "build failed (see log)" "target <= 1.0 MB"
        fi
    else
        row "binary size, $build, nightly \`-Z build-std\`" "not measured (no nightly with $musl and rust-src, or --no-nightly)" "target <= 1.0 MB"
    fi
done
# The whole-command benchmarks below run the full tool.
bin=$target/size-full/$musl/release/vfio-early

# --- plan ----------------------------------------------------------------------------
if section "plan bench" cargo bench -q -p vfio-early --bench plan; then
    median=$(after "median")
    best=$(after "best")
    row "plan, 1,024 devices in 256 groups (\`cargo bench --bench plan\`)" "median ${median:-?} ms, best ${best:-?} ms" "target < 2 ms"
else
    row "plan, 1,024 devices" "bench failed (see log)" "target < 2 ms"
fi

# --- groups --------------------------------------------------------------------------
if [[ -x tests/bench/groups-vs-seed.sh ]] && command -v lspci >/dev/null &&
    section "groups vs seed loop" tests/bench/groups-vs-seed.sh 10; then
    agent=$(after "vfio-early groups:")
    seed=$(after "seed loop \(lspci/device\):")
    speedup=$(after "speed-up:")
    devices=$(after "devices listed:")
    inproc=$(after "in-process groups")
    row "\`vfio-early groups\`, ${devices:-48} functions in 21 groups, whole process (groups-vs-seed.sh)" \
        "${agent:-?} ms (in-process ${inproc:-?} ms)" "seed guide loop (\`lspci -nns\` per device): ${seed:-?} ms; ${speedup:-?}x faster"
elif section "groups bench" cargo bench -q -p vfio-early --bench groups; then
    inproc=$(after "in-process groups")
    seed=$(after "seed guide loop")
    row "\`groups\` in-process, 48 functions (\`cargo bench --bench groups\`)" "${inproc:-?} ms" "seed guide loop: ${seed:-not run (lspci missing)} ms"
else
    row "\`groups\`" "bench failed (see log)" "seed guide loop"
fi

# --- check-kconfig -------------------------------------------------------------------
if section "kernel-config bench" cargo bench -q -p kernel-config --bench check; then
    line=$(grep -m1 -E '^arch .*: parse \+ check \+ render' <<<"$out")
    median=$(sed -E 's/.*median +([0-9.]+) ms.*/\1/' <<<"$line")
    name=$(sed -E 's/^(arch \([0-9]+ KB\)).*/\1/' <<<"$line")
    gz=$(grep -m1 -E '^arch .*gunzip' <<<"$out" | sed -E 's/.*median +([0-9.]+) ms.*/\1/')
    oneshot=$(grep -m1 -E '^arch .*one-shot' <<<"$out" | sed -E 's/.*median +([0-9.]+) ms.*/\1/')
    row "check-kconfig in-process, ${name:-arch config}: parse + check + render" \
        "median ${median:-?} ms (with the rules table parsed too: ${oneshot:-?} ms; from gzip: ${gz:-?} ms)" "target < 3 ms"
else
    row "check-kconfig in-process" "bench failed (see log)" "target < 3 ms"
fi
cfg=$(find tests/kconfig -name "arch_linux-*.config" 2>/dev/null | sort | head -1)
bin=$target/$musl/release/vfio-early
if [[ -n $cfg && -x $bin ]]; then
    runs=20
    "$bin" check-kconfig "$cfg" >/dev/null 2>&1
    rc=$?
    if ((rc <= 1)); then
        start=$(date +%s%N)
        for ((i = 0; i < runs; i++)); do "$bin" check-kconfig "$cfg" >/dev/null 2>&1; done
        end=$(date +%s%N)
        per=$(awk -v d=$((end - start)) -v n=$runs 'BEGIN { printf "%.2f", d / n / 1e6 }')
        echo "check-kconfig CLI on $cfg: $per ms per run ($runs runs)" >>"$log"
        row "\`vfio-early check-kconfig\` on ${cfg##*/} ($(($(stat -c %s "$cfg") / 1024)) KB), whole process" "$per ms" "target < 3 ms in-process"
    else
        row "\`vfio-early check-kconfig\` CLI" "exit $rc (see log)" "target < 3 ms in-process"
    fi
fi

# --- boot time added ---------------------------------------------------------------
if [[ -x tests/qemu/bench-boot.sh ]]; then
    if section "boot time (QEMU)" tests/qemu/bench-boot.sh; then
        agent=$(after "^agent, hook markers[^:]*:")
        lines=$(after "^agent, first to last kernel log line:")
        shell=$(after "^shell loop[^:]*:")
        if [[ -n $agent ]]; then
            row "boot time added by the agent, QEMU TCG, 3 devices (tests/qemu/bench-boot.sh)" \
                "$agent ms (first to last log line: ${lines:-?} ms)" "seed guide's shell loop (vfio-bind), same image: ${shell:-?} ms"
        else
            row "boot time added (tests/qemu/bench-boot.sh)" "$(tail -1 <<<"$out")" "same boot without vfio-early"
        fi
    else
        row "boot time added (tests/qemu/bench-boot.sh)" "failed: $(tail -1 <<<"$out")" "seed guide's shell loop, same image"
    fi
else
    row "boot time added" "not measured: tests/qemu/bench-boot.sh absent" "same boot without vfio-early"
fi

echo
echo "| benchmark | measured | baseline / target |"
echo "| --- | --- | --- |"
printf '%s\n' "${rows[@]}"
echo
echo "raw output: $log ($(uname -m), $(nproc) cores, $(date -u +%Y-%m-%d))"
