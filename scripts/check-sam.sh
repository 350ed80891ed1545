#!/usr/bin/env bash
# Checks template.yaml without AWS access:
#   1. every Runtime, Architecture and layer CompatibleArchitecture/BuildArchitecture against an
#      explicit allow-list (cfn-lint does not catch a misspelt runtime or architecture);
#   2. cfn-lint template.yaml;
#   3. sam validate --lint;
#   4. sam build of every resource (the layers and the Rust sample with cargo-lambda and zig, the
#      Python sample from CPython 3.12 wheels, the Node sample with npm), then a look at what
#      each build produced.
#
#   scripts/check-sam.sh [--no-build]
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
venv="$root/.tools/venv"
[ -x "$venv/bin/sam" ] || { echo "check-sam: $venv/bin/sam missing: run scripts/install-test-deps.sh" >&2; exit 1; }
export PATH="$venv/bin:$PATH"
export PYTHON="$venv/bin/python"  # pip for the Python sample's makefile build
export SAM_CLI_TELEMETRY=0

build=1
[ "${1:-}" = "--no-build" ] && build=0

step() { printf '[check-sam] %s\n' "$*" >&2; }

step "runtime and architecture names"
"$venv/bin/python" scripts/check_sam_template.py template.yaml

step "cfn-lint template.yaml"
cfn-lint template.yaml

step "sam validate --lint"
sam validate --lint

[ "$build" = 1 ] || exit 0

step "sam build (all resources)"
started=$(date +%s)
sam build --template-file template.yaml --build-dir .aws-sam/build
step "sam build took $(( $(date +%s) - started ))s"

out=.aws-sam/build
fail() { echo "[check-sam] FAIL $*" >&2; exit 1; }
machine() { readelf -h "$1" | sed -n 's/^ *Machine: *//p'; }
static() { ! readelf -l "$1" | grep -q INTERP; }

for layer in ContrailLayerX86:"Advanced Micro Devices X86-64" ContrailLayerArm64:AArch64; do
  id=${layer%%:*}; want=${layer#*:}
  bin="$out/$id/extensions/contrail"
  [ -x "$bin" ] || fail "$bin is missing or not executable"
  [ "$(machine "$bin")" = "$want" ] || fail "$bin is a $(machine "$bin"), want $want"
  static "$bin" || fail "$bin is dynamically linked"
done
bin="$out/SampleRustFunction/bootstrap"
[ -x "$bin" ] || fail "$bin is missing or not executable"
[ "$(machine "$bin")" = AArch64 ] || fail "$bin is a $(machine "$bin"), want AArch64"
[ -f "$out/SamplePythonFunction/app.py" ] || fail "the Python sample has no app.py"
# Every module of the sample that app.py imports is shipped beside it.
for module in $(sed -n -E 's/^(from|import) ([a-z_]+).*/\2/p' sample-functions/python/app.py | sort -u); do
  [ -f "sample-functions/python/$module.py" ] || continue
  [ -f "$out/SamplePythonFunction/$module.py" ] || fail "the Python sample has no $module.py (app.py imports it)"
done
[ -d "$out/SamplePythonFunction/opentelemetry/propagators/aws" ] || fail "the Python sample lacks its dependencies"
[ -f "$out/SampleNodeFunction/index.js" ] || fail "the Node sample has no index.js"
[ -f "$out/SampleNodeFunction/resources.js" ] || fail "the Node sample has no resources.js (index.js requires it)"
[ -d "$out/SampleNodeFunction/node_modules/@opentelemetry/sdk-trace" ] || fail "the Node sample lacks its dependencies"
[ ! -e "$out/SampleNodeFunction/node_modules/aws-lambda-ric" ] || fail "the Node sample ships its dev dependency aws-lambda-ric"
step "ok: both layers, and the Rust, Python and Node samples built"
