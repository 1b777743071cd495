#!/usr/bin/env bash
# Runs every command the README and docs/INSTALL.md tell a user to type: each line of
# their code blocks that starts with `vfio-early ` or `sudo vfio-early `, extracted from
# the Markdown and run exactly as written (sudo dropped: this runs as root or not at all),
# with `--root FIXTURE` after the program name. FIXTURE is `make install DESTDIR=` plus
# the seed guide's desktop (boot iGPU 00:01.0, Radeon at 01:00.0), dracut and one kernel.
# Every command must exit 0 (`check` may say 1: nothing was booted), and README's
# `config suggest --gpu 2 --write` must select the card the README names.
#
# Usage: tests/doc-commands.sh    (after `make build docs`, as tests/install.sh runs it)
set -euo pipefail
cd "$(dirname "$0")/.."

fixture=$(mktemp -d)
trap 'rm -rf "$fixture"' EXIT
failures=0
checks=0
fail() {
    echo "FAIL: $*" >&2
    failures=$((failures + 1))
}

make -s install DESTDIR="$fixture" >/dev/null
cargo run -q -p vfio-early-testing --example seed-desktop -- "$fixture"
release=$(cat "$fixture/proc/sys/kernel/osrelease")
mkdir -p "$fixture/lib/modules/$release" "$fixture/usr/lib/dracut" "$fixture/usr/src/linux"
: >"$fixture/lib/modules/$release/modules.dep"
: >"$fixture/usr/lib/dracut/dracut-functions.sh"
install -m0755 /dev/null "$fixture/usr/bin/dracut"
cp tests/kconfig/debian12_linux-6.1.192-2_amd64.config "$fixture/usr/src/linux/.config"
bin=$fixture/usr/bin/vfio-early

# The commands, in document order.
mapfile -t lines < <(for doc in README.md docs/INSTALL.md; do
    awk '/^```/ { block = !block; next } block && /^(sudo )?vfio-early / { print }' "$doc"
done)
((${#lines[@]} >= 8)) || fail "only ${#lines[@]} commands found in README.md and docs/INSTALL.md"
for line in "${lines[@]}"; do
    checks=$((checks + 1))
    typed=${line#sudo }
    cmd="\"\$bin\" --root \"\$fixture\" ${typed#vfio-early }"
    set +e
    out=$(bin=$bin fixture=$fixture bash -c "$cmd" 2>&1)
    rc=$?
    set -e
    allowed=0
    [[ $typed == "vfio-early check "* || $typed == "vfio-early check" ]] && allowed="0 1"
    if [[ " $allowed " != *" $rc "* ]]; then
        fail "'$line' exits $rc: $out"
    fi
done

# README's example: GPU 2 is the Radeon at 01:00.0 on this desktop, as README says.
checks=$((checks + 1))
grep -q '^address = "0000:01:00.0"$' "$fixture/etc/vfio-early.toml" ||
    fail "config suggest --gpu 2 --write did not select 0000:01:00.0: $(cat "$fixture/etc/vfio-early.toml")"
checks=$((checks + 1))
grep -q 'GPU 2.*01:00\.0' README.md || fail "README does not say which card GPU 2 is"
echo "doc commands: ${#lines[@]} commands, $checks checks, $failures failed"
((failures == 0))
