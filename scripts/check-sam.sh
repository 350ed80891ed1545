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
"$venv/bin/python" - template.yaml <<'PY'
import sys
from samcli.yamlhelper import yaml_parse

RUNTIMES = {"provided.al2023", "python3.12", "nodejs22.x"}
ARCHITECTURES = {"x86_64", "arm64"}

template = yaml_parse(open(sys.argv[1]).read())
problems, seen = [], 0
globals_fn = template.get("Globals", {}).get("Function", {})
for name, resource in template["Resources"].items():
    kind, props = resource["Type"], resource.get("Properties", {})
    meta = resource.get("Metadata", {})
    if kind == "AWS::Serverless::Function":
        seen += 1
        runtime = props.get("Runtime", globals_fn.get("Runtime"))
        if runtime not in RUNTIMES:
            problems.append(f"{name}: Runtime {runtime!r} is not one of {sorted(RUNTIMES)}")
        archs = props.get("Architectures", globals_fn.get("Architectures"))
        if not archs or any(a not in ARCHITECTURES for a in archs) or len(archs) != 1:
            problems.append(f"{name}: Architectures {archs!r}: want exactly one of {sorted(ARCHITECTURES)}")
        for layer in props.get("Layers", []):
            ref = layer.get("Ref") if isinstance(layer, dict) else None
            target = template["Resources"].get(ref, {}) if ref else {}
            layer_archs = target.get("Properties", {}).get("CompatibleArchitectures", [])
            if archs and layer_archs and archs[0] not in layer_archs:
                problems.append(f"{name}: {archs[0]} function uses layer {ref} built for {layer_archs}")
    elif kind == "AWS::Serverless::LayerVersion":
        seen += 1
        compatible = props.get("CompatibleArchitectures", [])
        build_arch = meta.get("BuildArchitecture")
        if any(a not in ARCHITECTURES for a in compatible) or build_arch not in ARCHITECTURES:
            problems.append(f"{name}: CompatibleArchitectures {compatible!r} / BuildArchitecture {build_arch!r}")
        elif compatible != [build_arch]:
            problems.append(f"{name}: built for {build_arch} but declared for {compatible}")
        for runtime in props.get("CompatibleRuntimes", []):
            if runtime not in RUNTIMES:
                problems.append(f"{name}: CompatibleRuntimes has {runtime!r}")
if problems:
    print("\n".join(problems), file=sys.stderr)
    sys.exit(1)
print(f"[check-sam] {seen} functions and layers use allowed runtimes and architectures", file=sys.stderr)
PY

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
[ -d "$out/SamplePythonFunction/opentelemetry/propagators/aws" ] || fail "the Python sample lacks its dependencies"
[ -f "$out/SampleNodeFunction/index.js" ] || fail "the Node sample has no index.js"
[ -d "$out/SampleNodeFunction/node_modules/@opentelemetry/sdk-trace" ] || fail "the Node sample lacks its dependencies"
[ ! -e "$out/SampleNodeFunction/node_modules/aws-lambda-ric" ] || fail "the Node sample ships its dev dependency aws-lambda-ric"
step "ok: both layers, and the Rust, Python and Node samples built"
