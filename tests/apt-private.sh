#!/bin/bash
# Private apt states for the tests: nothing under /etc/apt changes. Sourced by
# tests/deps.sh (backports packages) and tests/qemu/lib.sh (foreign-architecture
# downloads). Each state keeps its own package lists under $APT_PRIVATE_DIR.
#
#   backports_install PKG...       installs PKG from bookworm-backports (root), with
#                                  what it needs from the system's own sources
#   backports_installed PKG        true when PKG is installed from backports
#   backports_download PKG...      downloads PKG's .deb from backports into the current
#                                  directory (nothing installed)
#   backports_apt ARGS...          apt-get on the backports state (use `download`)
#   backports_apt_cache ARGS...    apt-cache on the same state (`depends PKG/SUITE`)
#   foreign_apt ARCH ARGS...       apt-get for another architecture (download only)
#   foreign_apt_cache ARCH ARGS... apt-cache on the same state
#
# The backports source is added to the system's sources (Dir::Etc::SourceParts keeps
# them) through a private list; packages come from backports only with -t.

APT_PRIVATE_DIR=${VFIO_EARLY_APT_DIR:-${TMPDIR:-/tmp}/vfio-early-apt}
BACKPORTS_SUITE=${VFIO_EARLY_BACKPORTS:-bookworm-backports}
DEBIAN_MIRROR=${VFIO_EARLY_DEBIAN_MIRROR:-http://deb.debian.org/debian}

# _apt_opts NAME: the options of private state NAME (its source list, lists, cache).
_apt_opts() {
    local d=$APT_PRIVATE_DIR/$1
    printf '%s\n' -o "Dir::State::Lists=$d/lists" -o "Dir::Cache=$d/cache" \
        -o "Dir::Cache::pkgcache=" -o "Dir::Cache::srcpkgcache="
}

# _apt_state NAME SOURCELINE: creates state NAME whose extra source is SOURCELINE.
_apt_state() {
    local d=$APT_PRIVATE_DIR/$1
    mkdir -p "$d/lists/partial" "$d/cache/archives/partial"
    printf '%s\n' "$2" >"$d/sources.list"
}

# _apt_fresh NAME: true when NAME's lists were fetched less than a day ago.
_apt_fresh() {
    local stamp=$APT_PRIVATE_DIR/$1/updated
    [[ -f $stamp ]] && [[ -n $(find "$stamp" -mmin -1440 2>/dev/null) ]]
}

backports_installed() {
    [[ $(dpkg-query -W -f='${Status} ${Version}' "$1" 2>/dev/null) == "install ok installed "*bpo* ]]
}

# _backports_opts: the options of the backports state, its lists fetched when stale.
_backports_opts() {
    local -a opts
    mapfile -t opts < <(_apt_opts backports)
    _apt_state backports "deb $DEBIAN_MIRROR $BACKPORTS_SUITE main"
    opts+=(-o "Dir::Etc::SourceList=$APT_PRIVATE_DIR/backports/sources.list")
    if ! _apt_fresh backports; then
        apt-get "${opts[@]}" update -qq >&2 || return 1
        touch "$APT_PRIVATE_DIR/backports/updated"
    fi
    printf '%s\n' "${opts[@]}"
}

# backports_apt ARGS...: apt-get with bookworm-backports known (nothing installed
# with `download`).
backports_apt() {
    local -a opts
    mapfile -t opts < <(_backports_opts) && ((${#opts[@]})) || return 1
    apt-get "${opts[@]}" "$@"
}

# backports_apt_cache ARGS...: apt-cache on the same state.
backports_apt_cache() {
    local -a opts
    mapfile -t opts < <(_backports_opts) && ((${#opts[@]})) || return 1
    apt-cache "${opts[@]}" "$@"
}

# backports_install PKG...: installs PKG from bookworm-backports (root).
backports_install() {
    DEBIAN_FRONTEND=noninteractive backports_apt install -y -qq --no-install-recommends \
        -t "$BACKPORTS_SUITE" "$@" >/dev/null
}

# backports_download PKG...: downloads PKG from bookworm-backports into this folder.
backports_download() {
    backports_apt download -qq -t "$BACKPORTS_SUITE" "$@"
}

# _foreign_opts ARCH: the options of the private state that only knows ARCH (the
# system's sources, another architecture); its lists are fetched when stale.
_foreign_opts() {
    local arch=$1 d=$APT_PRIVATE_DIR/arch-$1
    local -a opts
    mapfile -t opts < <(_apt_opts "arch-$arch")
    opts+=(-o "APT::Architecture=$arch" -o "APT::Architectures=$arch"
        -o "Dir::Etc::SourceList=$d/sources.list")
    if ! _apt_fresh "arch-$arch"; then
        _apt_state "arch-$arch" "# the system's sources only (sources.list.d)"
        apt-get "${opts[@]}" update -qq >&2 || return 1
        touch "$d/updated"
    fi
    printf '%s\n' "${opts[@]}"
}

# foreign_apt ARCH ARGS...: apt-get for ARCH (use `download`: nothing is installed).
foreign_apt() {
    local -a opts
    mapfile -t opts < <(_foreign_opts "$1") && ((${#opts[@]})) || return 1
    shift
    apt-get "${opts[@]}" "$@"
}

# foreign_apt_cache ARCH ARGS...: apt-cache for ARCH.
foreign_apt_cache() {
    local -a opts
    mapfile -t opts < <(_foreign_opts "$1") && ((${#opts[@]})) || return 1
    shift
    apt-cache "${opts[@]}" "$@"
}
