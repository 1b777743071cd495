#!/usr/bin/env bash
# The packages users install from (packaging/): builds the Debian package (make deb),
# the Arch package (makepkg -d, as an unprivileged user this test creates: makepkg
# refuses root) and the RPM (rpmbuild), and compares each one's files and modes with
# what `make install` puts into a DESTDIR, less the hooks of generators the
# distribution does not ship and plus the distribution's own files. Lintian must be
# clean (--fail-on error,warning). Last line: "N passed, M failed".
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
repo=$PWD

# shellcheck source=tests/assert.sh
. "$repo/tests/assert.sh"
same() { # same FILE_A FILE_B: equal, else the diff
    diff -u "$1" "$2" >&2
}

for tool in dpkg-deb lintian makepkg rpmbuild rpm fakeroot; do
    command -v "$tool" >/dev/null || { echo "packages: $tool is missing (tests/deps.sh installs it)" >&2; exit 2; }
done
tmp=$(mktemp -d)
chmod 0755 "$tmp"
trap '[[ -n ${KEEP:-} ]] || rm -rf "$tmp"' EXIT
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
arch=$(dpkg --print-architecture)

make -s build docs >/dev/null || { echo "packages: make failed" >&2; exit 2; }
make -s install DESTDIR="$tmp/ref" >/dev/null || { echo "packages: make install failed" >&2; exit 2; }
# "MODE PATH" of every regular file, man pages without the .gz every package adds.
listing() { sed -E 's|^([0-7]+ /usr/share/man/.*)\.gz$|\1|' | LC_ALL=C sort; }
(cd "$tmp/ref" && find . -type f -printf '%m /%P\n') | listing >"$tmp/ref.list"
# "-rwxr-xr-x PATH" (ls -l style, as dpkg-deb, tar and rpm list) to "755 PATH".
octal_modes() {
    local perms path m i
    while read -r perms path; do
        m=0
        for ((i = 1; i < 10; i++)); do
            m=$((m * 2))
            [[ ${perms:i:1} == - ]] || m=$((m + 1))
        done
        printf '%o %s\n' "$m" "$path"
    done
}
# The reference less some paths: without PATTERN (extended regex on the path).
ref_without() { grep -Ev " ($1)" "$tmp/ref.list"; }
mkinitcpio_files='/usr/lib/initcpio/|/usr/lib/vfio-early/vfio-early\.service$'
itools_files='/usr/share/initramfs-tools/'

# --- Debian ---
deb=target/debian/vfio-early_${version}_$arch.deb
rm -f "$deb"
make -s deb >/dev/null
ok "make deb writes $deb" test -f "$deb"
dpkg-deb -c "$deb" | awk '$1 ~ /^-/ { print $1, substr($6, 2) }' |
    octal_modes |
    listing >"$tmp/deb.list"
{
    ref_without "$mkinitcpio_files"
    printf '644 %s\n' /usr/share/doc/vfio-early/changelog.gz /usr/share/doc/vfio-early/copyright \
        /usr/share/lintian/overrides/vfio-early
} | LC_ALL=C sort >"$tmp/deb.want"
ok "deb: files and modes = make install's (mkinitcpio's hooks out; copyright, changelog, lintian overrides in)" \
    same "$tmp/deb.want" "$tmp/deb.list"
ok "deb: man pages gzipped" test "$(dpkg-deb -c "$deb" | grep -c 'man8/.*\.8\.gz$')" -gt 5
dpkg-deb -e "$deb" "$tmp/DEBIAN"
ok "deb: /etc/vfio-early.toml and the libvirt hook are conffiles" \
    same <(printf '%s\n' /etc/libvirt/hooks/qemu.d/vfio-early /etc/vfio-early.toml) "$tmp/DEBIAN/conffiles"
ok "deb: install, upgrade and removal activate the update-initramfs trigger" \
    same <(echo activate-noawait update-initramfs) <(grep -v '^#' "$tmp/DEBIAN/triggers")
ok "deb: version and architecture" same <(printf '%s\n' "$version" "$arch") \
    <(dpkg-deb -f "$deb" Version Architecture | sed 's/^[^:]*: //')
lintian --fail-on error,warning "$deb" >"$tmp/lintian.out" 2>&1
rc=$?
cat "$tmp/lintian.out"
ok "deb: lintian --fail-on error,warning clean (exit $rc)" test "$rc" -eq 0
ok "deb: every lintian override has a justifying comment" \
    awk '/^#/ { c = 1; next } /^[^#]/ && NF { if (!c) exit 1 } !NF { c = 0 }' packaging/debian/lintian-overrides

# --- Arch (makepkg -d as an unprivileged user) ---
user=vfio-early-build
id "$user" >/dev/null 2>&1 || useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$user"
mkdir -p "$tmp/arch/out" "$tmp/arch/build" "$tmp/arch/src"
cp packaging/arch/PKGBUILD packaging/arch/vfio-early.install "$tmp/arch/"
chown -R "$user" "$tmp/arch"
# The binaries and docs are built above; the user has no Rust toolchain, so make's
# `build` step gets CARGO=true (it finds everything up to date).
(cd "$tmp/arch" && runuser -u "$user" -- env -i PATH=/usr/bin:/bin HOME=/nonexistent CARGO=true \
    VFIO_EARLY_SRC="$repo" PKGDEST="$tmp/arch/out" BUILDDIR="$tmp/arch/build" SRCDEST="$tmp/arch/src" \
    makepkg -d --noconfirm --nocolor) >"$tmp/makepkg.out" 2>&1
rc=$?
tail -n 5 "$tmp/makepkg.out"
pkg=$(compgen -G "$tmp/arch/out/vfio-early-$version-1-x86_64.pkg.tar.*" | head -n 1)
ok "makepkg -d built vfio-early-$version-1-x86_64 as $user (exit $rc)" test "$rc" -eq 0 -a -n "$pkg"
if [[ -n $pkg ]]; then
    tar -tvf "$pkg" | awk '$1 ~ /^-/ && $6 !~ /^\./ { print $1, "/" $6 }' |
        octal_modes |
        listing >"$tmp/arch.list"
    ok "pkg.tar: files and modes = make install's (initramfs-tools' hooks out)" \
        same <(ref_without "$itools_files") "$tmp/arch.list"
    ok "pkg.tar: /etc/vfio-early.toml in backup (kept on upgrade)" \
        same <(echo 'backup = etc/vfio-early.toml') <(tar -xOf "$pkg" .PKGINFO | grep '^backup')
fi
ok "PKGBUILD version = Cargo.toml's ($version)" grep -qx "pkgver=$version" packaging/arch/PKGBUILD

# --- RPM ---
rpmbuild -bb --nodeps --define "_topdir $tmp/rpm" --define "_vfio_early_src $repo" \
    packaging/rpm/vfio-early.spec >"$tmp/rpmbuild.out" 2>&1
rc=$?
tail -n 3 "$tmp/rpmbuild.out"
rpmf=$(compgen -G "$tmp/rpm/RPMS/x86_64/vfio-early-$version-1*.x86_64.rpm" | head -n 1)
ok "rpmbuild built vfio-early-$version-1.x86_64.rpm (exit $rc)" test "$rc" -eq 0 -a -n "$rpmf"
if [[ -n $rpmf ]]; then
    rpm -qp --qf '[%{FILEMODES:perms} %{FILENAMES}\n]' "$rpmf" 2>/dev/null | awk '$1 ~ /^-/' |
        octal_modes |
        listing >"$tmp/rpm.list"
    ok "rpm: files and modes = make install's (mkinitcpio's and initramfs-tools' hooks out)" \
        same <(ref_without "$mkinitcpio_files|$itools_files") "$tmp/rpm.list"
    ok "rpm: /etc/vfio-early.toml and the libvirt hook are %config" \
        same <(printf '%s\n' /etc/libvirt/hooks/qemu.d/vfio-early /etc/vfio-early.toml) \
        <(rpm -qp --configfiles "$rpmf" 2>/dev/null | LC_ALL=C sort)
fi
ok "spec version = Cargo.toml's ($version)" grep -Eq "^Version: +$version\$" packaging/rpm/vfio-early.spec

assert_summary
