#!/usr/bin/env bash
# The fuzz targets of fuzz/ (docs/FUZZING.md), one after the other, with libFuzzer's limits.
#
#   scripts/fuzz.sh                       every target for 5 s (the suite's fuzz stage, `make fuzz`)
#   scripts/fuzz.sh --seconds S [T...]    targets T (all by default) for S seconds each
#   scripts/fuzz.sh --runs N [T...]       targets T for N executions each (the runs of FUZZING.md)
#
# Needs the nightly toolchain (`cargo +nightly`) and cargo-fuzz; without either it says why
# and exits 0 without fuzzing. The targets are built without a sanitizer (`-s none`: the code
# fuzzed is safe Rust; fuzz/src/lib.rs bounds each allocation instead) into
# CONTRAIL_FUZZ_TARGET_DIR (default ~/.cache/contrail/fuzz-target), a folder kept across
# checkouts so that a fresh clone rebuilds only the extension. Each target reads its corpus
# from fuzz/corpus/T (written, not committed) and its seeds from fuzz/seeds/T (and the
# Telemetry API fixtures); its output goes to fuzz/logs/T.log. Runs under `nice -n 10`.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

all=(telemetry_batch mapper receiver_body xray_header config backend_response)
targets=("${all[@]}")
limit=(-max_total_time=5)
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) limit=(-max_total_time="$2"); shift 2 ;;
    --runs) limit=(-runs="$2"); shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2 ;;
    -*) echo "scripts/fuzz.sh: unknown option $1" >&2; exit 2 ;;
    *) break ;;
  esac
done
[ $# -eq 0 ] || targets=("$@")

if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "fuzz: skipped: no nightly toolchain (cargo +nightly), which cargo-fuzz needs"
  exit 0
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "fuzz: skipped: cargo-fuzz is not installed (scripts/install-test-deps.sh installs it where the nightly toolchain is)"
  exit 0
fi

target_dir=${CONTRAIL_FUZZ_TARGET_DIR:-$HOME/.cache/contrail/fuzz-target}
mkdir -p "$target_dir" fuzz/logs fuzz/artifacts
(cd fuzz && nice -n 10 cargo +nightly fuzz build -s none --target-dir "$target_dir")
bin="$target_dir/x86_64-unknown-linux-gnu/release"

for t in "${targets[@]}"; do
  [ -x "$bin/$t" ] || { echo "fuzz: no target $t (one of: ${all[*]})" >&2; exit 2; }
  mkdir -p "fuzz/corpus/$t"
  seeds=("fuzz/seeds/$t")
  [ "$t" != telemetry_batch ] || seeds=(extension/tests/fixtures/telemetry)
  log="fuzz/logs/$t.log"
  printf '\n==> fuzz %s (%s)\n' "$t" "${limit[*]}"
  set +e
  nice -n 10 "$bin/$t" "fuzz/corpus/$t" "${seeds[@]}" "${limit[@]}" \
    -timeout=10 -rss_limit_mb=512 -malloc_limit_mb=64 -print_final_stats=1 \
    -artifact_prefix="fuzz/artifacts/$t-" >"$log" 2>&1
  status=$?
  set -e
  grep -E '^#[0-9]+ +DONE|^Done [0-9]+ runs|stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)' "$log" || true
  if [ "$status" != 0 ]; then
    tail -n 60 "$log" >&2
    echo "fuzz: $t failed (status $status): the input is in fuzz/artifacts/, the output in $log" >&2
    exit 1
  fi
done
echo "fuzz: ${#targets[@]} targets, no crash"
