#!/usr/bin/env bash
# The whole test suite: installs what the tests need (pinned), checks formatting and lints,
# builds and checks both layer zips and the SAM template, then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
step() { printf '\n==> %s\n' "$*"; }
started=$(date +%s)

step "install test dependencies"
scripts/install-test-deps.sh
export PATH="$root/.tools/venv/bin:$PATH"

step "format, lints, docs"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked --quiet

step "layer zips (x86_64, arm64), checked; the end-to-end tests run the shipped x86_64 binary"
layer/build.sh all
layer/check.sh all
export CONTRAIL_BIN="$root/target/lambda-x86_64/extensions/contrail"

step "Rust sample function"
cargo build --locked -p contrail-sample-rust
export CONTRAIL_SAMPLE_RUST_BIN="$root/target/debug/sample-rust"

step "SAM template"
scripts/check-sam.sh

step "the README's main command (scripts/demo.sh), two invocations"
scripts/demo.sh --invocations 2 --quiet | tee target/demo-output.txt
for want in "aws.lambda.init" "handle-order" "order handled" "faas.invoke_duration" "contrail.records.exported"; do
  grep -q -- "$want" target/demo-output.txt || { echo "demo output lacks '$want'" >&2; exit 1; }
done

step "tests"
set +e
cargo test --workspace --locked --no-fail-fast 2>&1 | tee target/test-output.txt
status=${PIPESTATUS[0]}
set -e

passed=$(grep -Eo 'test result: [a-zA-Z]+\. [0-9]+ passed' target/test-output.txt | awk '{s+=$4} END {print s+0}')
failed=$(grep -Eo '[0-9]+ failed' target/test-output.txt | awk '{s+=$1} END {print s+0}')
echo
echo "suite finished in $(( $(date +%s) - started )) s"
echo "${passed} passed, ${failed} failed"
exit "$status"
