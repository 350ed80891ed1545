"""Checks every Runtime, Architecture and layer CompatibleArchitecture/BuildArchitecture of a SAM
template against an explicit allow-list: cfn-lint does not catch a misspelt runtime or
architecture. Run by scripts/check-sam.sh with the Python of .tools/venv (it needs samcli's YAML
loader, which understands the CloudFormation short forms such as !Ref).

    python scripts/check_sam_template.py template.yaml
"""
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
