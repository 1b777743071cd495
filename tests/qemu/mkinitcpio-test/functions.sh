#!/bin/bash
# Test-only stand-ins for mkinitcpio's build-time functions (add_module, add_binary,
# add_file, add_symlink, add_runscript, warning, ...). Each call is recorded, one line
# per call, in $VE_RECORD; they also really build $BUILDROOT, so the image the harness
# boots is the one build() described. Needs BUILDROOT, KERNELVERSION, VE_KROOT,
# VE_REPO_DIR, VE_RECORD, hookname.
# shellcheck disable=SC2154 # set by the caller

ve_record() {
    printf '%s\n' "$*" >>"$VE_RECORD"
}

warning() {
    ve_record "warning $*"
    printf '==> WARNING: %s\n' "$*" >&2
}

error() {
    ve_record "error $*"
    printf '==> ERROR: %s\n' "$*" >&2
}

add_dir() {
    mkdir -p "$BUILDROOT$1"
}

add_file() { # src [dest]
    local dest=${2:-$1}
    ve_record "add_file $1 $dest"
    mkdir -p "$BUILDROOT$(dirname "$dest")"
    cp -L "$1" "$BUILDROOT$dest"
}

add_symlink() { # name [target]
    ve_record "add_symlink $1 ${2:-}"
    mkdir -p "$BUILDROOT$(dirname "$1")"
    ln -sfn "${2:-$1}" "$BUILDROOT$1"
}

add_binary() { # src [dest]; dynamic ones get their libraries
    local dest=${2:-$1} lib
    ve_record "add_binary $1 $dest"
    mkdir -p "$BUILDROOT$(dirname "$dest")"
    cp -L "$1" "$BUILDROOT$dest"
    for lib in $(ldd "$1" 2>/dev/null | grep -o '/[^ ]*'); do
        mkdir -p "$BUILDROOT$(dirname "$lib")"
        cp -L "$lib" "$BUILDROOT$lib"
    done
}

add_module() { # name: the module and its dependencies, as modprobe resolves them
    local path rel
    ve_record "add_module $1"
    while read -r _ path _; do
        rel=${path#"$VE_KROOT"}
        mkdir -p "$BUILDROOT$(dirname "$rel")"
        cp "$path" "$BUILDROOT$rel"
    done < <(modprobe -d "$VE_KROOT" -S "$KERNELVERSION" --show-depends "$1" 2>/dev/null | grep '^insmod ')
}

add_runscript() { # the runtime hook named $hookname
    ve_record "add_runscript $hookname"
    mkdir -p "$BUILDROOT/hooks"
    cp "$VE_REPO_DIR/mkinitcpio/hooks/$hookname" "$BUILDROOT/hooks/$hookname"
    chmod 755 "$BUILDROOT/hooks/$hookname"
}
