#!/usr/bin/zsh -f
# Completes one command line in a real interactive zsh (inside a zpty), with the
# completion system loaded from FPATH_DIR, and prints the candidates zsh offers, one a
# line. compadd is wrapped to record what it adds after zsh's own matching; a
# comppostfuncs hook marks the end, so nothing here waits on a guessed delay.
#
# Usage: zsh-capture.zsh FPATH_DIR WORKDIR 'vfio-early apply --'
zmodload zsh/zpty || exit 2
dir=$1 work=$2 line=$3
out=$work/matches done=$work/done
: >"$out"
rm -f "$done"
zpty z zsh -f -i
zpty -w z "PS1=''; RPROMPT=''; fpath=(${(q)dir} \$fpath); autoload -Uz compinit; compinit -u -d ${(q)work}/zcompdump"
zpty -w z "zstyle ':completion:*' insert-tab false"
zpty -w z "compadd() { if (( \${@[(I)-[OAD]]} )); then builtin compadd \"\$@\"; return; fi; local -a __h; builtin compadd -A __h \"\$@\"; (( \$#__h )) && print -rl -- \$__h >>${(q)out}; builtin compadd \"\$@\"; }"
zpty -w z "__vfio_done() { print done >${(q)done}; }; comppostfuncs=(__vfio_done)"
zpty -w z "print -r -- READY-\$((6*7))"
zpty -r z junk '*READY-42*' || exit 2
zpty -w -n z "$line"$'\t'
# Bounded: 30 s at most (a completion takes milliseconds).
for _ in {1..300}; do
    [[ -e $done ]] && break
    sleep 0.1
done
zpty -d z
[[ -e $done ]] || { echo "zsh-capture: no completion finished for: $line" >&2; exit 2; }
cat "$out"
