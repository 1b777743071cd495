#!/usr/bin/env bash
# Lints every shell script of the project with shellcheck.
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t scripts < <(
  git ls-files | while read -r f; do
    [[ -f $f ]] || continue
    case $f in
      *.sh | dracut/* | mkinitcpio/* | initramfs-tools/* | libvirt/* | packaging/* | tests/system/guest/* | .ci/run) ;;
      *) continue ;;
    esac
    [[ $(head -n1 "$f") =~ ^\#!.*(ba|da|a)?sh ]] || [[ $f == *.sh || $f == packaging/arch/* ]] || continue
    echo "$f"
  done
)
echo "shellcheck: ${#scripts[@]} scripts"
shellcheck -x "${scripts[@]}"
