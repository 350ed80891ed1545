#!/usr/bin/env bash
# Benchmarks: criterion figures of the hot paths, then whole-process runs of the release
# extension under the emulator; writes docs/BENCHMARKS.md.
#
#   scripts/bench.sh [--rounds N]    (default 10 start-up rounds; other scenarios use N/3)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
step() { printf '\n==> %s\n' "$*"; }
started=$(date +%s)

step "release binaries"
cargo build --release -p contrail -p contrail-sim -p contrail-sample-rust -p contrail-e2e

step "hot paths (criterion, short runs)"
cargo bench -p contrail --bench pipeline -- --quick

step "whole-process runs under the emulator"
"$root/target/release/bench" --command "scripts/bench.sh${*:+ $*}" "$@"

echo
echo "benchmarks finished in $(( $(date +%s) - started )) s: docs/BENCHMARKS.md"
