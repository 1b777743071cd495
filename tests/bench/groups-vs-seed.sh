#!/usr/bin/env bash
# Times `vfio-early groups` against the seed guide's IOMMU-group loop (one
# `lspci -nns` per device) on the same fixture tree: 48 PCI functions in 21 groups,
# built by agent/benches/groups.rs, with the host's pci.ids. pciutils is pointed at the
# fixture with `lspci -A linux-sysfs -O sysfs.path=DIR/sys/bus/pci`.
#
# Usage: tests/bench/groups-vs-seed.sh [RUNS]   (default 10; needs lspci, bash, cargo)
set -euo pipefail

runs=${1:-10}
top=$(cd "$(dirname "$0")/../.." && pwd)
target=${CARGO_TARGET_DIR:-$top/target}
fixture=$(mktemp -d)
trap 'rm -rf "$fixture"' EXIT

command -v lspci >/dev/null || { echo "lspci not found (apt-get install pciutils)" >&2; exit 2; }

cd "$top"
cargo build --release -q -p vfio-early
VFIO_EARLY_BENCH_FIXTURE=$fixture cargo bench -q -p vfio-early --bench groups
bin=$target/release/vfio-early
sys=$fixture/sys

# The seed guide's loop, verbatim but for the paths.
seed_loop() {
    # shellcheck disable=SC2044,SC2045
    for iommu_group in $(find "$sys"/kernel/iommu_groups/ -maxdepth 1 -mindepth 1 -type d); do
        echo "IOMMU group $(basename "$iommu_group")"
        for device in $(ls -1 "$iommu_group"/devices/); do
            echo -n $'\t'
            lspci -A linux-sysfs -O sysfs.path="$sys/bus/pci" -nns "$device"
        done
    done
}

agent() {
    "$bin" --root "$fixture" groups
}

# Microseconds per run of "$@", over $runs runs (after one warm-up).
per_run_us() {
    "$@" >/dev/null
    local start end
    start=$(date +%s%N)
    for ((i = 0; i < runs; i++)); do "$@" >/dev/null; done
    end=$(date +%s%N)
    echo $(((end - start) / runs / 1000))
}

lines_seed=$(seed_loop | grep -c $'^\t')
lines_agent=$(agent | grep -c $'^\t')
if [[ $lines_seed != "$lines_agent" ]]; then
    echo "listings differ: seed loop shows $lines_seed devices, vfio-early $lines_agent" >&2
    exit 1
fi

seed_us=$(per_run_us seed_loop)
agent_us=$(per_run_us agent)
awk -v n="$lines_agent" -v s="$seed_us" -v a="$agent_us" 'BEGIN {
    printf "devices listed:            %d\n", n
    printf "seed loop (lspci/device):  %8.2f ms per run\n", s / 1000
    printf "vfio-early groups:         %8.2f ms per run\n", a / 1000
    printf "speed-up:                  %8.1fx\n", s / a
}'
