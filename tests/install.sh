#!/usr/bin/env bash
# Installs into temporary DESTDIRs and checks that every file lands where packagers and
# the initramfs generators expect it, with the right mode; that the man pages and
# completions are produced by the build; that a user's config is never overwritten;
# and that uninstall removes everything but that config.
#
# Usage: tests/install.sh        (brings the static binary and the docs up to date first)
set -euo pipefail
cd "$(dirname "$0")/.."

destdir=$(mktemp -d)
trap 'rm -rf "$destdir"' EXIT
failures=0
checks=0

fail() {
    echo "FAIL: $*" >&2
    failures=$((failures + 1))
}

# expect REL MODE: $destdir/REL is a regular file with MODE.
expect() {
    local rel=$1 mode=$2 got
    checks=$((checks + 1))
    if [[ ! -f $destdir/$rel ]]; then
        fail "$rel missing"
        return
    fi
    got=$(stat -c %a "$destdir/$rel")
    [[ $got == "${mode#0}" ]] || fail "$rel has mode $got, want ${mode#0}"
    expected+=("$rel")
}

# Mode a tree file should get: executables 755, the rest 644.
tree_mode() {
    if [[ -x $1 ]]; then echo 755; else echo 644; fi
}

# Up to date first (install itself only builds what is missing, as packagers expect).
make -s build docs >/dev/null
make -s install DESTDIR="$destdir" >/dev/null

expected=()
expect usr/bin/vfio-early 755
expect usr/lib/vfio-early/vfio-early-boot 755
while IFS= read -r f; do
    expect "usr/lib/dracut/modules.d/${f#dracut/}" "$(tree_mode "$f")"
done < <(find dracut -mindepth 2 -type f | sort)
for f in mkinitcpio/install/* mkinitcpio/hooks/*; do
    [[ -f $f ]] && expect "usr/lib/initcpio/${f#mkinitcpio/}" 644
done
for f in mkinitcpio/*.service; do
    [[ -f $f ]] && expect "usr/lib/vfio-early/${f##*/}" 644
done
while IFS= read -r f; do
    expect "usr/share/initramfs-tools/${f#initramfs-tools/}" "$(tree_mode "$f")"
done < <(find initramfs-tools -mindepth 2 -type f | sort)
expect etc/vfio-early.toml 644
expect etc/libvirt/hooks/qemu.d/vfio-early 755
for f in examples/*.toml docs/*.md; do
    [[ -f $f ]] && expect "usr/share/doc/vfio-early/${f##*/}" 644
done
expect usr/share/bash-completion/completions/vfio-early 644
expect usr/share/zsh/site-functions/_vfio-early 644
expect usr/share/fish/vendor_completions.d/vfio-early.fish 644

# One man page for the command and one per subcommand, from the binary's own list.
bin=$destdir/usr/bin/vfio-early
expect usr/share/man/man8/vfio-early.8 644
subcommands=$("$bin" --help | awk '/^Commands:/ { on = 1; next } on && NF == 0 { exit } on { print $1 }' | grep -vx help)
[[ -n $subcommands ]] || fail "no subcommands in vfio-early --help"
for s in $subcommands; do
    expect "usr/share/man/man8/vfio-early-$s.8" 644
done
expect usr/share/man/man8/vfio-early-config-suggest.8 644
expect usr/share/man/man8/vfio-early-hook-libvirt.8 644
for s in apply config; do
    grep -qx "$s" <<<"$subcommands" || fail "subcommand $s missing from the CLI"
done

# The essential integration files exist at all (another engineer's tree might be empty).
for rel in usr/lib/dracut/modules.d/90vfio-early/module-setup.sh usr/lib/initcpio/install/vfio-early \
    usr/lib/initcpio/hooks/vfio-early usr/share/initramfs-tools/hooks/vfio-early \
    usr/share/initramfs-tools/scripts/init-top/vfio-early; do
    checks=$((checks + 1))
    [[ -f $destdir/$rel ]] || fail "$rel not installed"
done

# Nothing else was installed.
while IFS= read -r f; do
    checks=$((checks + 1))
    grep -qxF "$f" <<<"$(printf '%s\n' "${expected[@]}")" || fail "unexpected file $f"
done < <(cd "$destdir" && find . -type f | sed 's|^\./||' | sort)

# The binary: static, runs.
checks=$((checks + 1))
version=$("$bin" --version || true)
grep -q '^vfio-early ' <<<"$version" || fail "installed binary does not run"
if command -v file >/dev/null; then
    checks=$((checks + 1))
    [[ $(file -L "$bin") =~ statically\ linked|static-pie\ linked ]] || fail "binary is not static: $(file -L "$bin")"
fi

# The boot build: static, runs `bind`, and has none of the host-only subcommands.
boot=$destdir/usr/lib/vfio-early/vfio-early-boot
checks=$((checks + 1))
"$boot" bind --help >/dev/null || fail "boot build does not run bind"
checks=$((checks + 1))
if "$boot" check --help >/dev/null 2>&1; then fail "boot build carries check"; fi
checks=$((checks + 1))
(($(stat -c %s "$boot") < $(stat -c %s "$bin"))) || fail "boot build is not smaller than the full binary"

# The aarch64 build (`make` builds every architecture of ARCHES): `make install
# ARCH=arm64` carries both aarch64 binaries, static (ELF machine 0xb7 = AArch64).
arm_dest=$(mktemp -d)
make -s install DESTDIR="$arm_dest" ARCH=arm64 >/dev/null
for rel in usr/bin/vfio-early usr/lib/vfio-early/vfio-early-boot; do
    checks=$((checks + 1))
    machine=$(od -An -tx2 -j18 -N2 "$arm_dest/$rel" | tr -d ' ')
    [[ $machine == 00b7 ]] || fail "ARCH=arm64: $rel is ELF machine 0x$machine, not AArch64 (0xb7)"
    if command -v file >/dev/null; then
        kind=$(file -L "$arm_dest/$rel")
        [[ $kind == *"statically linked"* ]] || fail "ARCH=arm64: $rel is not static: $kind"
    fi
done
rm -rf "$arm_dest"

# The config: every line a comment, and a valid config that selects nothing.
checks=$((checks + 1))
if grep -Ev '^(#.*)?$' "$destdir/etc/vfio-early.toml"; then
    fail "the installed config has active lines (above): it must select nothing"
fi
checks=$((checks + 1))
empty_root=$(mktemp -d)
plan=$("$bin" --root "$empty_root" bind --dry-run --json --strict --config "$destdir/etc/vfio-early.toml") ||
    fail "the installed config does not pass bind --dry-run --strict"
rm -rf "$empty_root"
grep -q '"devices": *\[\]' <<<"$plan" || fail "the installed config selects devices: $plan"

# Man pages render; completions are well-formed and know the new subcommands.
for page in "$destdir"/usr/share/man/man8/*.8; do
    checks=$((checks + 1))
    if command -v groff >/dev/null; then
        warnings=$(groff -man -ww -z "$page" 2>&1) || fail "$page does not render"
        [[ -z $warnings ]] || fail "$page: $warnings"
    fi
    grep -q '^\.TH' "$page" || fail "$page has no .TH header"
done
# Every page as man shows it: EXIT STATUS and EXAMPLES, no empty section, a DESCRIPTION
# that is not the NAME line again, and no reference to a page that is not installed.
man_dir=$destdir/usr/share/man/man8
for page in "$man_dir"/*.8; do
    checks=$((checks + 1))
    name=$(basename "$page" .8)
    # Wide, so no line wraps (and no reference is hyphenated).
    if ! shown=$(MANWIDTH=1000 man -l "$page" 2>&1); then
        fail "man -l $name: $shown"
        continue
    fi
    for section in NAME SYNOPSIS DESCRIPTION "EXIT STATUS" EXAMPLES; do
        grep -qx "$section" <<<"$shown" || fail "$name(8) has no $section"
    done
    empty=$(awk '/^[A-Z][A-Z ]*[A-Z]$/ { if (h != "" && !body) print h; h = $0; body = 0; next }
        NF && h != "" && !/^vfio-early/ { body = 1 }
        END { if (h != "" && !body) print h }' <<<"$shown")
    [[ -z $empty ]] || fail "$name(8) has empty sections: $empty"
    about=$(awk 'p { print; exit } $0 == "NAME" { p = 1 }' <<<"$shown" | sed 's/^ *[^ ]* - //')
    description=$(awk 'p && NF { print; exit } $0 == "DESCRIPTION" { p = 1 }' <<<"$shown" | sed 's/^ *//')
    [[ -n $about && $description != "$about"* ]] || fail "$name(8): DESCRIPTION repeats NAME ($about)"
    while IFS= read -r ref; do
        [[ -f $man_dir/$ref.8 ]] || fail "$name(8) refers to $ref(8), which is not installed"
    done < <(grep -oE 'vfio-early(-[a-z]+)*\(8\)' <<<"$shown" | sed 's/(8)$//' | sort -u)
done
checks=$((checks + 1))
grep -q '^\.SH FILES' "$destdir/usr/share/man/man8/vfio-early.8" || fail "vfio-early.8 lacks FILES"
grep -q 'vfio_early=off' "$destdir/usr/share/man/man8/vfio-early.8" || fail "vfio-early.8 lacks the kill switch"
checks=$((checks + 1))
bash -n "$destdir/usr/share/bash-completion/completions/vfio-early" || fail "bash completion has a syntax error"
grep -q 'apply' "$destdir/usr/share/bash-completion/completions/vfio-early" || fail "bash completion lacks apply"
checks=$((checks + 1))
first=$(head -1 "$destdir/usr/share/zsh/site-functions/_vfio-early")
grep -q '^#compdef vfio-early' <<<"$first" || fail "zsh completion lacks #compdef"
checks=$((checks + 1))
grep -q 'complete -c vfio-early .*suggest' "$destdir/usr/share/fish/vendor_completions.d/vfio-early.fish" ||
    fail "fish completion lacks config suggest"
if command -v fish >/dev/null; then
    fish -n "$destdir/usr/share/fish/vendor_completions.d/vfio-early.fish" || fail "fish completion has a syntax error"
fi
if command -v zsh >/dev/null; then
    zsh -n "$destdir/usr/share/zsh/site-functions/_vfio-early" || fail "zsh completion has a syntax error"
fi

# The completions work in the real shells.
checks=$((checks + 1))
tests/completion.sh "$destdir" || fail "completions (above)"

# The libvirt hook runs the installed binary with libvirt's arguments.
checks=$((checks + 1))
grep -qxF "exec /usr/bin/vfio-early hook libvirt \"\$@\"" "$destdir/etc/libvirt/hooks/qemu.d/vfio-early" ||
    fail "the libvirt hook does not exec /usr/bin/vfio-early hook libvirt"

# Every command README and INSTALL.md show, as written, on the guide's desktop.
checks=$((checks + 1))
tests/doc-commands.sh || fail "documented commands (above)"

# A user's config and a user's own plain libvirt `qemu` hook survive a reinstall.
checks=$((checks + 1))
printf '[[device]]\naddress = "0000:01:00.0"\n' >"$destdir/etc/vfio-early.toml"
printf '#!/bin/sh\n# mine\n' >"$destdir/etc/libvirt/hooks/qemu"
make -s install DESTDIR="$destdir" >/dev/null
grep -q '^address = "0000:01:00.0"' "$destdir/etc/vfio-early.toml" || fail "make install overwrote the user's config"
checks=$((checks + 1))
grep -qx '# mine' "$destdir/etc/libvirt/hooks/qemu" || fail "make install touched the user's libvirt qemu hook"

# PREFIX is honoured.
checks=$((checks + 1))
local_dest=$(mktemp -d)
make -s install DESTDIR="$local_dest" PREFIX=/usr/local >/dev/null
[[ -x $local_dest/usr/local/bin/vfio-early && -f $local_dest/usr/local/share/man/man8/vfio-early.8 &&
    -f $local_dest/usr/local/lib/dracut/modules.d/90vfio-early/module-setup.sh &&
    -f $local_dest/etc/vfio-early.toml && ! -e $local_dest/usr/bin ]] || fail "PREFIX=/usr/local not honoured"
rm -rf "$local_dest"

# Uninstall leaves only the user's config.
checks=$((checks + 1))
make -s uninstall DESTDIR="$destdir" >/dev/null
left=$(cd "$destdir" && find . -type f | sed 's|^\./||' | sort | tr '\n' ' ')
[[ $left == "etc/libvirt/hooks/qemu etc/vfio-early.toml " ]] || fail "uninstall left: $left"

echo "install test: $checks checks, $failures failed"
((failures == 0))
