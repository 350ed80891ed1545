#!/usr/bin/env bash
# The test suite, in stages that also run one by one (the root Makefile names each).
#
#   scripts/test.sh                 the whole suite: install check layer sam demo e2e fuzz (what CI
#                                   runs through .ci/run, and `make ci`)
#   scripts/test.sh STAGE...        only these stages, in the order given
#
# | stage   | what it runs                                                         | needs          |
# |---------|----------------------------------------------------------------------|----------------|
# | install | scripts/install-test-deps.sh: pinned tools into .tools/              | network, root  |
# | check   | cargo fmt --check, clippy -D warnings (also with feature `fuzzing`), | cargo          |
# |         | cargo doc -D warnings                                                |                |
# | unit    | plain `cargo test`: what needs outside tools is left ignored         | cargo          |
# | layer   | both layer zips built (layer/build.sh) and checked (layer/check.sh)  | install        |
# | sam     | scripts/check-sam.sh: the template's names, cfn-lint, sam validate   | install        |
# |         | and sam build                                                        |                |
# | demo    | scripts/demo.sh (two invocations), scripts/scenario-connections.sh   | install        |
# |         | --quick (on demand), and a look at what they printed                 |                |
# | e2e     | every test of the workspace, the ignored ones included, against the  | install        |
# |         | shipped x86_64 binary; fails if any test is still left ignored       |                |
# | fuzz    | the seed corpora through the fuzz targets' entry points (cargo test, | cargo; nightly |
# |         | feature `fuzzing`), then scripts/fuzz.sh: each target 5 s; without  | and cargo-fuzz |
# |         | nightly or cargo-fuzz the fuzzing says why and is skipped            | for fuzzing    |
# | bench   | scripts/bench.sh, which writes docs/BENCHMARKS.md (not in the suite) | install        |
#
# The last line counts the tests of the unit, e2e and fuzz stages: passed, failed, ignored.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

suite=(install check layer sam demo e2e fuzz)
stages=(install check unit layer sam demo e2e fuzz bench)

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
  exit 2
}

step() { printf '\n==> %s\n' "$*"; }

# Tools installed by the install stage come first on PATH.
[ -d "$root/.tools/venv/bin" ] && export PATH="$root/.tools/venv/bin:$PATH"

stage_install() {
  scripts/install-test-deps.sh
  export PATH="$root/.tools/venv/bin:$PATH"
}

stage_check() {
  step "format"
  cargo fmt --all -- --check
  step "lints"
  cargo clippy --workspace --all-targets --locked -- -D warnings
  # The fuzz targets' entry points, built only with this feature.
  cargo clippy -p contrail --all-targets --features fuzzing --locked -- -D warnings
  step "docs"
  RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked --quiet
}

# Set by the layer stage, so that the e2e stage after it does not build the x86_64 layer again.
layer_built=0

stage_layer() {
  layer/build.sh all
  layer/check.sh all
  layer_built=1
}

stage_sam() {
  scripts/check-sam.sh
}

stage_demo() {
  mkdir -p target
  scripts/demo.sh --invocations 2 --quiet | tee target/demo-output.txt
  local want
  for want in "aws.lambda.init" "handle-order" "order handled" "faas.invoke_duration" "contrail.records.exported" \
    "aws.lambda.init.contrail" "aws.lambda.init.runtime" "aws.lambda.invocation.cost" "aws.lambda.init.cost" \
    "aws.lambda.environment.utilization" "aws.lambda.environment.idle_gap"; do
    grep -q -- "$want" target/demo-output.txt || { echo "demo output lacks '$want'" >&2; return 1; }
  done
  # The README's worked example of scale, at the end-to-end test's size, on demand only.
  scripts/scenario-connections.sh --quick --only on-demand | tee target/scenario-output.txt
  for want in "== contrail-sim scale" "OperationalError" "sum: aws.lambda.connections{server.port=5432}"; do
    grep -qF -- "$want" target/scenario-output.txt || { echo "scenario output lacks '$want'" >&2; return 1; }
  done
}

# Totals over the test runs of this invocation.
passed=0 failed=0 ignored=0 counted=0

# Runs `cargo test --locked --no-fail-fast ARGS...` with its output kept in target/test-NAME.txt,
# adds its counts to the totals, and sets last_ignored. Returns cargo's status.
run_tests() {
  local name=$1 status p f i
  shift
  mkdir -p target
  set +e
  cargo test --locked --no-fail-fast "$@" 2>&1 | tee "target/test-$name.txt"
  status=${PIPESTATUS[0]}
  set -e
  read -r p f i < <(awk '/^test result:/ {
      for (k = 2; k <= NF; k++) {
        if ($k ~ /^passed/) p += $(k - 1)
        if ($k ~ /^failed/) f += $(k - 1)
        if ($k ~ /^ignored/) i += $(k - 1)
      }
    } END { print p + 0, f + 0, i + 0 }' "target/test-$name.txt")
  passed=$((passed + p)) failed=$((failed + f)) ignored=$((ignored + i)) counted=1
  last_ignored=$i
  echo "$name: $p passed, $f failed, $i ignored"
  return "$status"
}

stage_unit() {
  run_tests unit
}

stage_e2e() {
  # The end-to-end tests run the shipped x86_64 binary and the Rust sample function.
  [ "$layer_built" = 1 ] || layer/build.sh x86_64
  export CONTRAIL_BIN="$root/target/lambda-x86_64/extensions/contrail"
  cargo build --locked -p contrail-sample-rust
  export CONTRAIL_SAMPLE_RUST_BIN="$root/target/debug/sample-rust"
  run_tests e2e --workspace -- --include-ignored
  if [ "$last_ignored" != 0 ]; then
    echo "the full suite left $last_ignored tests ignored: every test must run here" >&2
    grep -E '^test .* \.\.\. ignored' target/test-e2e.txt >&2 || true
    return 1
  fi
}

stage_fuzz() {
  # On stable: every committed seed still matches the fixtures and passes its target.
  run_tests fuzz-seeds -p contrail --features fuzzing --lib fuzzing::
  # On nightly with cargo-fuzz: a few seconds of each target (docs/FUZZING.md).
  scripts/fuzz.sh --seconds 5
}

stage_bench() {
  scripts/bench.sh
}

[ $# -gt 0 ] || set -- "${suite[@]}"
for stage in "$@"; do
  case "$stage" in -h|--help) usage ;; esac
  case " ${stages[*]} " in
    *" $stage "*) ;;
    *) echo "scripts/test.sh: unknown stage '$stage' (one of: ${stages[*]})" >&2; usage ;;
  esac
done

started=$(date +%s)
current=""
times=()
finish() {
  local status=$?
  echo
  [ ${#times[@]} -eq 0 ] || echo "stages: ${times[*]}"
  [ -z "$current" ] || echo "stage '$current' failed"
  echo "finished in $(( $(date +%s) - started )) s"
  [ "$counted" = 0 ] || echo "${passed} passed, ${failed} failed, ${ignored} ignored"
  exit "$status"
}
trap finish EXIT

for stage in "$@"; do
  step "stage $stage"
  current=$stage
  stage_started=$(date +%s)
  "stage_$stage"
  times+=("$stage $(( $(date +%s) - stage_started ))s")
  current=""
done
