#!/usr/bin/env bash
# Installs what the tests need on a Debian machine (idempotent; root for apt-get).
set -euo pipefail

packages=(
  # QEMU end-to-end boots (tests/qemu): the emulator, busybox, kmod's depmod/modprobe, cpio,
  # the real initramfs generators, UEFI firmware for the framebuffer boot.
  qemu-system-x86 qemu-system-arm busybox-static kmod cpio dracut-core initramfs-tools-core ovmf
  # Shell lint; pciutils/hwdata and valgrind (callgrind) for the benchmarks.
  shellcheck pciutils hwdata valgrind
  # Fetching the kernel package (apt-get download) and unpacking it.
  dpkg-dev xz-utils zstd file
  # make install (tests/install.sh); unshare/mount for the private mount namespaces;
  # g++ builds libFuzzer for the fuzz smoke run.
  make util-linux g++
  # The completions driven in the real shells (tests/completion.sh); the man pages
  # rendered by man and checked by groff (tests/install.sh).
  bash-completion zsh fish man-db groff-base
  # The packages (tests/packages.sh): lintian, makepkg (with fakeroot and bsdtar),
  # rpmbuild.
  lintian makepkg pacman-package-manager fakeroot libarchive-tools rpm
  # The installed Debian under QEMU (tests/system): mmdebstrap builds the roots,
  # mkfs.ext4 -d the disk image, debugfs reads files back out of it.
  mmdebstrap e2fsprogs
)
# From bookworm-backports, through a private apt state (tests/apt-private.sh): empty.
# QEMU 10 is not installed: with it the AMD-IOMMU boots hang here (AHCI "bad command
# list buffer address": the guest's DMA is not translated; also with iommu=pt), while
# its Intel-IOMMU boots pass (no_timer_check). Debian 12's 7.2 runs every boot but the
# SR-IOV one, which needs igb (QEMU >= 8.0): tests/qemu/sriov.sh downloads QEMU 10's
# packages and runs it from an extraction under the harness cache.
backports=()

missing=()
for p in "${packages[@]}"; do
  [[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null) == 'install ok installed' ]] || missing+=("$p")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "deps: missing Debian packages (run as root to install): ${missing[*]}" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# shellcheck source=tests/apt-private.sh
. "$(dirname "$0")/apt-private.sh"
missing=()
for p in ${backports[@]+"${backports[@]}"}; do
  backports_installed "$p" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "deps: missing from $BACKPORTS_SUITE (run as root to install): ${missing[*]}" >&2
    exit 1
  fi
  backports_install "${missing[@]}"
fi

# The static binaries: x86_64, and aarch64 (linked with rust-lld, see .cargo/config.toml).
installed=$(rustup target list --installed 2>/dev/null)
for t in x86_64-unknown-linux-musl aarch64-unknown-linux-musl; do
  grep -qx "$t" <<<"$installed" || rustup target add "$t"
done
