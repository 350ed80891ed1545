#!/usr/bin/env bash
# Benchmarks: criterion figures of the hot paths, then whole-process runs of the extension
# (the layer's static musl build when cargo-lambda is available, else the release build) under
# the emulator; writes docs/BENCHMARKS.md.
#
#   scripts/bench.sh [OPTION...]     options of contrail-bench (bench/), e.g. --rounds N (default
#                                    10 start-up rounds; other scenarios use N/3), --only SCENARIO,
#                                    --out FILE; contrail-bench --help lists them
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
step() { printf '\n==> %s\n' "$*"; }
started=$(date +%s)

step "release binaries"
cargo build --release -p contrail -p contrail-sim -p contrail-sample-rust -p contrail-bench

step "hot paths (criterion, short runs)"
cargo bench -p contrail --bench pipeline -- --quick
# The /proc readings in a PID namespace of their own, as on Lambda (needs root; without it, in
# the host's, where some iterations look for the processes again).
if unshare --pid --fork --mount-proc true 2>/dev/null; then
  unshare --pid --fork --mount-proc cargo bench -p contrail --bench environment -- --quick
else
  cargo bench -p contrail --bench environment -- --quick
fi

# The whole-process runs measure the binary users run, the layer's static musl build, when it
# can be built here (cargo-lambda and zig, see scripts/install-test-deps.sh); otherwise the
# release build above, and the report says which. It is built after the criterion step, which
# rebuilds target/release/contrail: the runner takes the layer binary only when it is not older.
case "$(uname -m)" in
  x86_64) arch=x86_64 ;;
  aarch64) arch=arm64 ;;
  *) arch="" ;;
esac
if [ -n "$arch" ] && { [ -x "$root/.tools/venv/bin/cargo-lambda" ] || command -v cargo-lambda >/dev/null; }; then
  step "layer binary ($arch)"
  layer/build.sh "$arch"
else
  step "layer binary: cargo-lambda not found, measuring target/release/contrail instead"
fi

step "whole-process runs under the emulator"
"$root/target/release/contrail-bench" --command "scripts/bench.sh${*:+ $*}" "$@"

echo
echo "benchmarks finished in $(( $(date +%s) - started )) s"
