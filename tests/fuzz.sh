#!/usr/bin/env bash
# Runs every cargo-fuzz target of fuzz/ for a bounded time and prints, per target, the
# executions and crashes.
#
# Usage: tests/fuzz.sh smoke            15 s per target, seeded (CI; FUZZ_SECONDS, FUZZ_SEED override)
#        tests/fuzz.sh long [SECONDS]   SECONDS per target (default 600)
#        tests/fuzz.sh list             the targets
#        TARGETS="config kmsg" tests/fuzz.sh smoke   a subset
#
# Corpora start from the real samples in fuzz/seeds/<target>/ and grow in
# fuzz/corpus/<target>/ (not checked in). A crash leaves its input in
# fuzz/artifacts/<target>/; reproduce with
#   cargo +nightly fuzz run -O <target> fuzz/artifacts/<target>/<file>
# and turn it into a regression test in the owning crate (agent/tests/fuzz_regressions.rs
# for the agent, kernel-config/tests/ for the .config parser).
#
# The summary ends with one line per target, `fuzz: target=T seconds=S execs=N
# crashes=C distinct=D artifact=PATH|-` (C crashing inputs, D distinct panic sites), and
# a total line. Exit status: 0 when no target crashed,
# 1 when one did, 2 for a usage or build error.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=${1:-}
case $mode in
  smoke) seconds=${FUZZ_SECONDS:-15} ;;
  long) seconds=${2:-${FUZZ_SECONDS:-600}} ;;
  list) ;;
  *)
    sed -n '5,8p' "$0" >&2
    exit 2
    ;;
esac

all_targets() {
  sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^vfio-early-fuzz$'
}

if [[ $mode == list ]]; then
  all_targets
  exit 0
fi
if ! [[ $seconds =~ ^[0-9]+$ ]] || ((seconds < 1)); then
  echo "fuzz.sh: SECONDS must be a positive number, not '$seconds'" >&2
  exit 2
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz.sh: installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

# libFuzzer's sanitizer coverage needs nightly; without it, stable with -s none.
fuzz=(cargo +nightly fuzz)
sanitizer=()
if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "fuzz.sh: no nightly toolchain; building on stable with -s none"
  fuzz=(cargo fuzz)
  sanitizer=(-s none)
fi

read -r -a targets <<<"${TARGETS:-$(all_targets | tr '\n' ' ')}"
# The fuzz targets build into fuzz/target (nightly, sanitizer flags), whatever target
# directory the caller's CARGO_TARGET_DIR names for the project.
unset CARGO_TARGET_DIR
host=$(rustc -vV | sed -n 's/^host: //p')
bindir=fuzz/target/$host/release
logdir=fuzz/target/logs
mkdir -p "$logdir"

echo "fuzz.sh: building ${#targets[@]} targets (${fuzz[*]} build -O ${sanitizer[*]})"
build_start=$SECONDS
if ! "${fuzz[@]}" build -O "${sanitizer[@]}" >"$logdir/build.log" 2>&1; then
  tail -n 40 "$logdir/build.log" >&2
  echo "fuzz.sh: build failed (log: $logdir/build.log)" >&2
  exit 2
fi
echo "fuzz.sh: built in $((SECONDS - build_start)) s"

summary=()
total_execs=0
total_crashes=0
for t in "${targets[@]}"; do
  bin=$bindir/$t
  if [[ ! -x $bin ]]; then
    echo "fuzz.sh: no binary for target '$t' ($bin)" >&2
    exit 2
  fi
  corpus=fuzz/corpus/$t
  artifacts=fuzz/artifacts/$t
  mkdir -p "$corpus" "$artifacts"
  seeds=()
  [[ -d fuzz/seeds/$t ]] && seeds=("fuzz/seeds/$t")
  before=$(find "$artifacts" -type f | sort)
  log=$logdir/$t.log
  echo "fuzz.sh: $t for $seconds s"
  # Fork mode keeps fuzzing after a crash, so one known bug does not hide the next.
  # -timeout: one input taking 10 s is a hang (counted as a crash);
  # -rss_limit_mb: an input that makes a parser allocate 2 GiB is one too.
  # The config target gets inputs past the 256 KiB size limit, so that a parse that is
  # slower than linear shows up as a timeout.
  extra=()
  [[ $t == config ]] && extra=(-max_len=300000)
  # The smoke run in CI is seeded (FUZZ_SEED overrides): a crash it finds is found
  # again on the next run, not by chance on one CI run and not the next. Long runs
  # take a random seed, to explore.
  [[ $mode == smoke ]] && extra+=(-seed="${FUZZ_SEED:-1}")
  set +e
  "$bin" "${extra[@]}" -fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1 \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix="$artifacts/" "$corpus" "${seeds[@]}" >"$log" 2>&1
  status=$?
  set -e
  # The last progress line of the fork driver counts every execution of every job.
  execs=$(sed -n 's/^#\([0-9]*\): .*/\1/p' "$log" | tail -n1)
  execs=${execs:-0}
  new=$(comm -13 <(echo "$before") <(find "$artifacts" -type f | sort) | grep -v '^$' || true)
  crashes=0
  artifact=-
  if [[ -n $new ]]; then
    crashes=$(wc -l <<<"$new")
    artifact=$(head -n1 <<<"$new")
  elif ((status != 0 && status != 77)) || [[ $(grep -c 'ERROR: libFuzzer' "$log") != 0 ]]; then
    crashes=1
  fi
  # Distinct bugs: crashing inputs (the first 50) replayed, grouped by panic site.
  sites=$(
    head -n 50 <<<"$new" | while read -r f; do
      [[ -n $f ]] && timeout 20 "$bin" "$f" 2>&1 | grep -m1 -o 'panicked at [^ ]*:[0-9]*:'
    done | sed 's/^panicked at //; s/:$//' | sort -u || true
  )
  distinct=$(grep -c . <<<"$sites" || true)
  if ((crashes)); then
    echo "fuzz.sh: $t: $crashes crashing inputs, $distinct distinct panic sites; log: $log"
    while read -r site; do echo "    at $site"; done <<<"$sites"
  fi
  total_execs=$((total_execs + execs))
  total_crashes=$((total_crashes + crashes))
  summary+=("fuzz: target=$t seconds=$seconds execs=$execs crashes=$crashes distinct=$distinct artifact=$artifact")
done

echo
echo "== fuzz summary ($mode)"
printf '%s\n' "${summary[@]}"
echo "fuzz: total targets=${#targets[@]} execs=$total_execs crashes=$total_crashes"
((total_crashes == 0))
