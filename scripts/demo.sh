#!/usr/bin/env bash
# The main job: the emulator runs the Rust sample function with Contrail attached, invokes it,
# and shows what Contrail exported: to the emulator's embedded OTLP sink (a waterfall per
# invocation with its log lines, then the metrics), or to OTEL_EXPORTER_OTLP_ENDPOINT when set.
#
#   scripts/demo.sh                       five invocations, 200 ms apart
#   scripts/demo.sh --invocations 20 --log-format json ...   any `contrail-sim run` options instead
set -euo pipefail
cd "$(dirname "$0")/.."

echo "==> building contrail, contrail-sim and the Rust sample function (release)" >&2
cargo build --release --quiet -p contrail -p contrail-sim -p contrail-sample-rust

extensions=$(mktemp -d)
trap 'rm -rf "$extensions"' EXIT
cp target/release/contrail "$extensions/contrail"

if [ -n "${OTEL_EXPORTER_OTLP_ENDPOINT:-}" ]; then
  echo "==> exporting to $OTEL_EXPORTER_OTLP_ENDPOINT" >&2
fi
[ $# -gt 0 ] || set -- --invocations 5 --interval-ms 200 --payload '{"order_id":"A-1042","items":3}'
exec target/release/contrail-sim run \
  --extensions-dir "$extensions" \
  --function-name contrail-demo \
  "$@" \
  -- target/release/sample-rust
