#!/usr/bin/env bash
# Runs every test: lint, unit and integration tests, the QEMU boots, a fuzz smoke run.
# Usage: ./test.sh [--fast]   (--fast skips the QEMU boots and the installed Debian
# roots, initramfs-tools and dracut: see tests/system/README.md)
set -uo pipefail
cd "$(dirname "$0")" || exit 2

fast=0
for arg in "$@"; do
  case $arg in
    --fast) fast=1 ;;
  esac
done
log=$(mktemp)
trap 'rm -f "$log"' EXIT
failed_steps=()

step() {
  local name=$1
  shift
  echo "==> $name"
  if ! "$@" 2>&1 | tee -a "$log"; then
    failed_steps+=("$name")
  fi
}

step deps tests/deps.sh
step fmt cargo fmt --all -- --check
step clippy cargo clippy --workspace --all-targets -- -D warnings
step "clippy (boot build)" cargo clippy -p vfio-early --no-default-features -- -D warnings
step "cargo test" cargo test --workspace
step shellcheck tests/shellcheck.sh
step install tests/install.sh
step packages tests/packages.sh
if ((!fast)) && [[ -x tests/qemu/run.sh ]]; then
  step "qemu boots" tests/qemu/run.sh all
fi
if ((!fast)) && [[ -x tests/system/run.sh ]]; then
  step "installed system" tests/system/run.sh all
fi
if [[ -x tests/fuzz.sh ]]; then
  step "fuzz smoke" tests/fuzz.sh smoke
fi
# The benchmarks run (small inputs; their figures are not judged here).
step "bench smoke" tests/bench/run.sh --quick
# The boot benchmark once: its checks hold (every run's markers, the modules loaded,
# the agent's bind usable through VFIO), its ratios are not judged.
if ((!fast)) && [[ -x tests/qemu/bench-boot.sh ]]; then
  step "boot bench smoke" tests/qemu/bench-boot.sh 1
fi

# One closing line over everything: tests counted by cargo and by the QEMU harness.
sum() { grep -Eo "[0-9]+ $1" "$log" | awk '{ n += $1 } END { print n + 0 }'; }
passed=$(sum passed)
failed=$(sum failed)
failed=$(( ${failed:-0} + ${#failed_steps[@]} ))
if ((${#failed_steps[@]})); then
  echo "failed steps: ${failed_steps[*]}"
fi
echo "${passed:-0} passed, ${failed} failed"
((failed == 0))
