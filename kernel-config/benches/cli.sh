#!/usr/bin/env bash
# Whole-command benchmark of `vfio-early check-kconfig` on a ~290 KB config, next to a
# baseline: one grep for the seed guide's "Step 0" options (what users do by hand).
#
#   kernel-config/benches/cli.sh            # builds the release binary first
#   BIN=path/to/vfio-early kernel-config/benches/cli.sh
#
# Uses hyperfine when installed (apt-get install hyperfine), else a plain loop.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "${here}/../.." && pwd)
config="${repo}/tests/kconfig/fedora-rawhide_6.18.0-0.rc3.fc44_x86_64.config"
runs=${RUNS:-200}

if [[ -z "${BIN:-}" ]]; then
    cargo build --quiet --release -p vfio-early --manifest-path "${repo}/Cargo.toml"
    BIN="${repo}/target/release/vfio-early"
fi

tmp=$(mktemp -d)
trap 'rm -rf "${tmp}"' EXIT
gzip -c "${config}" > "${tmp}/config.gz"
mkdir -p "${tmp}/root/proc/sys/kernel"
cp "${tmp}/config.gz" "${tmp}/root/proc/config.gz"
echo "6.18.0-0.rc3.fc44.x86_64" > "${tmp}/root/proc/sys/kernel/osrelease"

options='IOMMU_SUPPORT|AMD_IOMMU|AMD_IOMMU_V2|INTEL_IOMMU|INTEL_IOMMU_SVM|IRQ_REMAP|VFIO|VFIO_PCI|VFIO_PCI_VGA'
names=(
    "check-kconfig FILE (human)"
    "check-kconfig FILE --json"
    "check-kconfig (default source: ROOT/proc/config.gz)"
    "baseline: grep for the guide's Step 0 options"
)
cmds=(
    "${BIN} check-kconfig ${config}"
    "${BIN} check-kconfig ${config} --json"
    "${BIN} --root ${tmp}/root check-kconfig"
    "grep -E '^CONFIG_(${options})=' ${config}"
)

echo "binary: ${BIN} ($(stat -c %s "${BIN}") bytes); config: $(stat -c %s "${config}") bytes"
if command -v hyperfine >/dev/null 2>&1; then
    args=()
    for i in "${!cmds[@]}"; do
        args+=(--command-name "${names[i]}" "${cmds[i]}")
    done
    # check-kconfig exits 0 here, grep too; -N: no shell between us and the binary.
    hyperfine -N --warmup 20 --runs "${runs}" --style basic "${args[@]}"
else
    for i in "${!cmds[@]}"; do
        start=$(date +%s%N)
        for ((n = 0; n < runs; n++)); do
            eval "${cmds[i]}" >/dev/null
        done
        end=$(date +%s%N)
        printf '%-55s %8.3f ms mean over %d runs\n' "${names[i]}" \
            "$(echo "(${end} - ${start}) / ${runs} / 1000000" | bc -l)" "${runs}"
    done
fi
