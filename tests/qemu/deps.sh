#!/bin/bash
# Installs what the QEMU harness needs on a fresh Debian machine (CI): only what is
# missing, without recommends (qemu's pull a GUI).
set -euo pipefail
pkgs=(qemu-system-x86 qemu-system-arm busybox-static kmod cpio dracut-core initramfs-tools-core
    shellcheck ovmf pciutils hwdata xz-utils zstd util-linux)
missing=()
for p in "${pkgs[@]}"; do
    [[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null) == 'install ok installed' ]] || missing+=("$p")
done
# The kernel is fetched with apt-get download: the package lists must be there.
if ((${#missing[@]})) || ! apt-cache show linux-image-amd64 >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    if ((${#missing[@]})); then
        echo "deps.sh: installing ${missing[*]}" >&2
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
fi
command -v cargo >/dev/null || { echo "deps.sh: cargo is needed" >&2; exit 2; }
installed=$(rustup target list --installed 2>/dev/null)
for t in x86_64-unknown-linux-musl aarch64-unknown-linux-musl; do
    grep -qx "$t" <<<"$installed" || rustup target add "$t"
done
