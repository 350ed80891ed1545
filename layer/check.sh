#!/usr/bin/env bash
# Verifies the layer zips that layer/build.sh made:
#   - the zip holds extensions/contrail, mode 0755, with the fixed 1980-01-01 timestamp;
#   - the zip is at most 2 MB;
#   - the executable is an ELF for the right machine (x86-64 / AArch64);
#   - it is statically linked: no program interpreter, no shared-library dependencies;
#   - it runs: natively for x86_64, under qemu-aarch64-static for arm64, and without
#     AWS_LAMBDA_RUNTIME_API it exits with an error that says so.
#
#   layer/check.sh [x86_64|arm64|all]    (default all; exits non-zero on the first failure)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dist="$root/layer/dist"
max_zip_bytes=$((2 * 1024 * 1024))

which=${1:-all}
case "$which" in
  x86_64|arm64) arches=("$which") ;;
  all) arches=(x86_64 arm64) ;;
  *) echo "layer/check.sh: unknown architecture '$which' (x86_64, arm64 or all)" >&2; exit 2 ;;
esac

fail() {
  echo "FAIL $*" >&2
  exit 1
}

for tool in unzip zipinfo readelf; do
  command -v "$tool" >/dev/null || fail "$tool is not installed (scripts/install-test-deps.sh)"
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

for arch in "${arches[@]}"; do
  zip_path="$dist/contrail-layer-$arch.zip"
  [ -f "$zip_path" ] || fail "$zip_path is missing: run layer/build.sh $arch"
  case "$arch" in
    x86_64) machine="Advanced Micro Devices X86-64"; run=() ;;
    arm64) machine="AArch64"; run=(qemu-aarch64-static) ;;
  esac

  zip_bytes=$(stat -c %s "$zip_path")
  [ "$zip_bytes" -le "$max_zip_bytes" ] || fail "$arch: zip is $zip_bytes bytes, over $max_zip_bytes"

  # zipinfo: permissions, version, os, size, type, method, date, time, name.
  entry=$(zipinfo "$zip_path" extensions/contrail) || fail "$arch: the zip has no extensions/contrail"
  mode=$(awk '{print $1}' <<<"$entry")
  [ "$mode" = "-rwxr-xr-x" ] || fail "$arch: extensions/contrail has mode $mode, want -rwxr-xr-x"
  stamp=$(awk '{print $7, $8}' <<<"$entry")
  [ "$stamp" = "80-Jan-01 00:00" ] || fail "$arch: extensions/contrail is dated $stamp, want 80-Jan-01 00:00"
  entries=$(zipinfo -1 "$zip_path" | tr '\n' ' ')
  [ "$entries" = "extensions/ extensions/contrail " ] || fail "$arch: unexpected entries: $entries"

  mkdir -p "$work/$arch"
  unzip -q -o "$zip_path" -d "$work/$arch"
  binary="$work/$arch/extensions/contrail"
  [ -x "$binary" ] || fail "$arch: extensions/contrail is not executable once unzipped"

  got_machine=$(readelf -h "$binary" | sed -n 's/^ *Machine: *//p')
  [ "$got_machine" = "$machine" ] || fail "$arch: ELF machine is '$got_machine', want '$machine'"
  if readelf -l "$binary" | grep -q 'INTERP'; then
    fail "$arch: has a program interpreter (dynamically linked): $(readelf -l "$binary" | grep -A1 INTERP | tail -1)"
  fi
  if readelf -d "$binary" 2>/dev/null | grep -q '(NEEDED)'; then
    fail "$arch: needs shared libraries: $(readelf -d "$binary" | grep NEEDED | tr -s ' ')"
  fi

  if [ "${#run[@]}" -gt 0 ]; then
    command -v "${run[0]}" >/dev/null || fail "${run[0]} is not installed (scripts/install-test-deps.sh)"
  fi
  set +e
  output=$(env -i PATH=/usr/bin:/bin timeout 30 "${run[@]}" "$binary" 2>&1)
  status=$?
  set -e
  [ "$status" -ne 124 ] || fail "$arch: did not exit within 30 s without AWS_LAMBDA_RUNTIME_API"
  [ "$status" -ne 0 ] || fail "$arch: exited 0 without AWS_LAMBDA_RUNTIME_API"
  grep -q 'AWS_LAMBDA_RUNTIME_API' <<<"$output" ||
    fail "$arch: exit $status without naming AWS_LAMBDA_RUNTIME_API; it said: $output"

  printf 'ok %s: zip %s bytes, binary %s bytes, %s, static, runs%s (exit %s: %s)\n' \
    "$arch" "$zip_bytes" "$(stat -c %s "$binary")" "$machine" \
    "${run:+ under ${run[*]}}" "$status" "$(head -1 <<<"$output")"
done
