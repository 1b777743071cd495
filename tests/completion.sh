#!/usr/bin/env bash
# Drives the installed completions in the real shells (bash with bash-completion, zsh,
# fish from Debian's packages): each must complete a subcommand, a subcommand's option
# and an option's values.
#
# Usage: tests/completion.sh DESTDIR   (a `make install DESTDIR=` tree)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dest=$1
bash_file=$dest/usr/share/bash-completion/completions/vfio-early
zsh_dir=$dest/usr/share/zsh/site-functions
fish_file=$dest/usr/share/fish/vendor_completions.d/vfio-early.fish
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failures=0
checks=0

# The lines typed (the cursor at the end) and one candidate each must offer.
cases=(
    "vfio-early ap|apply"
    "vfio-early config sug|suggest"
    "vfio-early apply --|--dry-run"
    "vfio-early groups --|--json"
    "vfio-early check-kconfig --cpu |intel"
    "vfio-early check-kconfig --cpu |auto"
)

# bash: bash-completion's protocol, as readline calls it: COMP_WORDS, COMP_CWORD,
# COMP_LINE, COMP_POINT set, the function `complete -p` names called, COMPREPLY read.
complete_bash() {
    bash --norc --noprofile -c '
        source /usr/share/bash-completion/bash_completion
        source "$1"
        line=$2
        read -ra COMP_WORDS <<<"$line"
        [[ $line == *" " ]] && COMP_WORDS+=("")
        COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
        COMP_LINE=$line
        COMP_POINT=${#line}
        spec=$(complete -p vfio-early)
        fn=${spec#* -F }
        fn=${fn%% *}
        COMPREPLY=()
        "$fn" vfio-early "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}"
        printf "%s\n" "${COMPREPLY[@]}"
    ' bash "$bash_file" "$1"
}

complete_zsh() {
    zsh -f "$here/completion/zsh-capture.zsh" "$zsh_dir" "$work" "$1"
}

complete_fish() {
    # shellcheck disable=SC2016 # $argv is fish's, expanded by fish
    fish --no-config -c 'source $argv[1]; complete -C $argv[2]' "$fish_file" "$1" | cut -f1
}

for shell in bash zsh fish; do
    for c in "${cases[@]}"; do
        line=${c%|*}
        want=${c##*|}
        checks=$((checks + 1))
        if ! got=$("complete_$shell" "$line" 2>"$work/err"); then
            echo "FAIL: $shell: completing '$line' failed: $(cat "$work/err")" >&2
            failures=$((failures + 1))
            continue
        fi
        if ! grep -qxF -- "$want" <<<"$got"; then
            echo "FAIL: $shell: '$line<TAB>' offers [$(tr '\n' ' ' <<<"$got")], not $want" >&2
            failures=$((failures + 1))
        fi
    done
done
echo "completion test: $checks checks, $failures failed"
((failures == 0))
