#!/bin/bash
# Builds the Debian package from `make install DESTDIR=` (dpkg-deb, no debhelper):
# target/debian/vfio-early_<version>_<arch>.deb. Run through `make deb`.
#
# Debian specifics beyond make install: man pages and the changelog gzipped (policy
# 12.3), the copyright file, /etc/vfio-early.toml a conffile, and the update-initramfs
# trigger (see triggers): dpkg activates it when the package is installed, upgraded
# or removed, and initramfs-tools and Debian's dracut both declare interest in it, so
# the next image gains or loses the hook without a maintainer script of ours calling
# a generator.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cd "$repo"
target_dir=${TARGET_DIR:-target}
out=$target_dir/debian
root=$out/root
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
arch=$(dpkg --print-architecture)
[[ -n $version ]] || { echo "build-deb: no version in Cargo.toml" >&2; exit 2; }
# Reproducible: the time stamps and the changelog date come from the last commit.
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
export SOURCE_DATE_EPOCH

rm -rf "$root"
mkdir -p "$root"
# DESTDIR must be absolute; the target directory may be either (CARGO_TARGET_DIR).
destdir=$root
[[ $destdir == /* ]] || destdir=$PWD/$destdir
make -s install DESTDIR="$destdir" >/dev/null
# mkinitcpio is not in Debian: its hooks and the unit for its systemd hook stay out.
rm -r "$root/usr/lib/initcpio" "$root/usr/lib/vfio-early/vfio-early.service"
doc=$root/usr/share/doc/vfio-early
gzip -9n "$root"/usr/share/man/man8/*.8
install -m0644 "$here/copyright" "$doc/copyright"
{
    printf 'vfio-early (%s) unstable; urgency=medium\n\n' "$version"
    sed -n '/^  \*/p' "$here/changelog"
    printf '\n -- %s  %s\n' "$(sed -n 's/^Maintainer: //p' "$here/control")" \
        "$(date -u -R -d "@$SOURCE_DATE_EPOCH")"
} | gzip -9n >"$doc/changelog.gz"
chmod 0644 "$doc/changelog.gz"
install -Dm0644 "$here/lintian-overrides" "$root/usr/share/lintian/overrides/vfio-early"

mkdir -p "$root/DEBIAN"
{
    sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" "$here/control"
    printf 'Installed-Size: %s\n' "$(du -sk --exclude=DEBIAN "$root" | cut -f1)"
} >"$root/DEBIAN/control"
install -m0644 "$here/conffiles" "$here/triggers" "$root/DEBIAN/"
(cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z |
    xargs -0 md5sum) >"$root/DEBIAN/md5sums"
chmod 0644 "$root/DEBIAN/md5sums"
find "$root" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
deb=$out/vfio-early_${version}_$arch.deb
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "$deb"
