#!/usr/bin/env bash
# Builds a sysfs-shaped fixture tree of N PCI functions for the benchmarks, laid out as
# the kernel shows it and as the project's own fixture builder writes it
# (sys/devices/pci0000:00/ADDR with its attributes and 64 bytes of config space for
# lspci; sys/bus/pci/devices/ADDR and sys/kernel/iommu_groups/G/devices/ADDR links;
# driver and iommu_group links), plus the host's pci.ids, an Intel DMAR table, a
# 2,000-record kernel log and a config selecting the first GPU's slot.
#
# Functions cycle through a desktop's real ids (GPU + audio, NVMe, NICs, USB, SATA,
# bridges); eight functions per slot, slots of one card share an IOMMU group (four
# functions per group).
#
# With `desktop` for N: the seed guide's desktop instead (the 8 functions of its AMD
# machine, testing::seed_machine, written by the seed-desktop example), with the host's
# pci.ids, an AMD IVRS table and the config space lspci reads.
#
# Usage: tests/bench/tree.sh DIR N|desktop
set -euo pipefail

dir=$1
n=$2
top=$(cd "$(dirname "$0")/../.." && pwd)
mkdir -p "$dir"
cd "$dir"
config_space() { # vendor device class -> 64 bytes
    local v=$1 d=$2 c=$3 hdr=00
    [[ ${c:0:4} == 0604 ]] && hdr=01
    printf '%b' "\\x${v:2:2}\\x${v:0:2}\\x${d:2:2}\\x${d:0:2}\\x00\\x00\\x00\\x00\\x01\\x${c:4:2}\\x${c:2:2}\\x${c:0:2}\\x00\\x00\\x$hdr\\x00"
    printf '\0%.0s' {1..48}
}
pci_ids() {
    mkdir -p usr/share/hwdata
    for ids in /usr/share/hwdata/pci.ids /usr/share/misc/pci.ids; do
        if [[ -f $ids ]]; then
            cp "$ids" usr/share/hwdata/pci.ids
            break
        fi
    done
}
if [[ $n == desktop ]]; then
    (cd "$top" && cargo run -q -p vfio-early-testing --example seed-desktop -- "$dir")
    pci_ids
    mkdir -p sys/firmware/acpi/tables
    : >sys/firmware/acpi/tables/IVRS
    for real in sys/devices/pci0000:00/*/; do
        v=$(<"$real/vendor") d=$(<"$real/device") c=$(<"$real/class")
        config_space "${v#0x}" "${d#0x}" "${c#0x}" >"$real/config"
    done
    exit 0
fi
mkdir -p sys/bus/pci/devices sys/bus/pci/drivers sys/kernel/iommu_groups sys/devices/pci0000:00 \
    sys/firmware/acpi/tables proc/sys/kernel dev etc run
: >sys/firmware/acpi/tables/DMAR
: >sys/bus/pci/drivers_probe
echo "6.1.0-bench-amd64" >proc/sys/kernel/osrelease
echo "BOOT_IMAGE=/vmlinuz root=/dev/sda1 ro quiet intel_iommu=on iommu=pt" >proc/cmdline
pci_ids

# A kernel log of 2,000 records, the IOMMU proof among them.
{
    echo "6,0,0,-;Linux version 6.1.0-bench-amd64"
    echo "6,1,100,-;DMAR: IOMMU enabled"
    echo "6,2,200,-;DMAR-IR: Enabled IRQ remapping in x2apic mode"
    for ((i = 3; i < 1999; i++)); do
        echo "6,$i,$((i * 1000)),-;pci 0000:00:1f.$((i % 8)): [8086:a3c8] type 00 class 0x060100 bench filler record $i"
    done
    echo "6,1999,1999000,-;DMAR: Intel(R) Virtualization Technology for Directed I/O"
} >dev/kmsg

# vendor device subvendor subdevice class driver
models=(
    "10de 1b80 1458 3702 030000 nouveau"
    "10de 10f0 1458 3702 040300 snd_hda_intel"
    "144d a808 144d a801 010802 nvme"
    "8086 15bc 1028 0962 020000 e1000e"
    "8086 a36d 1028 0962 0c0330 xhci_hcd"
    "8086 a352 1028 0962 010601 ahci"
    "8086 1901 0000 0000 060400 pcieport"
    "1002 73bf 1002 0e3a 030000 amdgpu"
)
declare -A drivers=()
for ((i = 0; i < n; i++)); do
    printf -v addr "0000:%02x:%02x.%x" $((i / 256)) $(((i / 8) % 32)) $((i % 8))
    group=$((i / 4))
    read -r v d sv sd class drv <<<"${models[$(((i / 8) % ${#models[@]}))]}"
    real=sys/devices/pci0000:00/$addr
    mkdir -p "$real"
    echo "0x$v" >"$real/vendor"
    echo "0x$d" >"$real/device"
    echo "0x$sv" >"$real/subsystem_vendor"
    echo "0x$sd" >"$real/subsystem_device"
    echo "0x$class" >"$real/class"
    echo "pci:v0000${v^^}d0000${d^^}sv0000${sv^^}sd0000${sd^^}bc${class:0:2}sc${class:2:2}i${class:4:2}" >"$real/modalias"
    echo "(null)" >"$real/driver_override"
    echo "-1" >"$real/numa_node"
    [[ ${class:0:2} == 03 ]] && echo 0 >"$real/boot_vga"
    config_space "$v" "$d" "$class" >"$real/config"
    ln -s "../../../devices/pci0000:00/$addr" "sys/bus/pci/devices/$addr"
    if [[ -z ${drivers[$drv]:-} ]]; then
        mkdir -p "sys/bus/pci/drivers/$drv"
        : >"sys/bus/pci/drivers/$drv/bind"
        : >"sys/bus/pci/drivers/$drv/unbind"
        drivers[$drv]=1
    fi
    ln -s "../../../bus/pci/drivers/$drv" "$real/driver"
    mkdir -p "sys/kernel/iommu_groups/$group/devices"
    ln -s "../../../kernel/iommu_groups/$group" "$real/iommu_group"
    ln -s "../../../../devices/pci0000:00/$addr" "sys/kernel/iommu_groups/$group/devices/$addr"
done
cat >etc/vfio-early.toml <<'EOF'
[[device]]
address = "0000:00:00.0"
functions = "slot"
EOF
