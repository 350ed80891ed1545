#!/usr/bin/env bash
# Builds the Contrail layer: a static musl executable at extensions/contrail.
#
#   layer/build.sh [x86_64|arm64|all]                  -> layer/dist/contrail-layer-<arch>.zip
#   layer/build.sh --artifacts DIR [x86_64|arm64]      -> DIR/extensions/contrail (SAM makefile builds)
#
# The binary is built with `cargo lambda build --extension --release` for
# x86_64-unknown-linux-musl or aarch64-unknown-linux-musl (zig links the arm64 build and compiles
# ring's C code), so it depends on no glibc and runs on every Lambda runtime. The zip is
# reproducible: fixed paths inside the binary, fixed mtimes (SOURCE_DATE_EPOCH, default
# 1980-01-01, the earliest date zip can store), no extra attributes, a fixed entry order.
#
# Needs cargo-lambda and zig: scripts/install-test-deps.sh puts both in .tools/venv.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dist="$root/layer/dist"
artifacts=""

usage() {
  echo "usage: layer/build.sh [--artifacts DIR] [x86_64|arm64|all]" >&2
  exit 2
}

while [ $# -gt 0 ]; do
  case "$1" in
    --artifacts) [ $# -ge 2 ] || usage; artifacts=$2; shift 2 ;;
    -h|--help) usage ;;
    *) break ;;
  esac
done
[ $# -le 1 ] || usage
which=${1:-all}
case "$which" in
  x86_64|arm64) arches=("$which") ;;
  all) arches=(x86_64 arm64) ;;
  *) echo "layer/build.sh: unknown architecture '$which' (x86_64, arm64 or all)" >&2; exit 2 ;;
esac
if [ -n "$artifacts" ] && [ ${#arches[@]} -ne 1 ]; then
  echo "layer/build.sh: --artifacts takes exactly one architecture" >&2
  exit 2
fi

if [ -x "$root/.tools/venv/bin/cargo-lambda" ]; then
  export PATH="$root/.tools/venv/bin:$PATH"
fi
command -v cargo-lambda >/dev/null || {
  echo "layer/build.sh: cargo-lambda not found: run scripts/install-test-deps.sh" >&2
  exit 1
}

export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-315532800}
export TZ=UTC
# Panic locations name source files: make them independent of where this machine keeps them.
cargo_home=${CARGO_HOME:-$HOME/.cargo}
export RUSTFLAGS="--remap-path-prefix=$cargo_home/registry/src=/cargo --remap-path-prefix=$root=/contrail"

triple_of() {
  case "$1" in
    x86_64) echo x86_64-unknown-linux-musl ;;
    arm64) echo aarch64-unknown-linux-musl ;;
  esac
}

build_binary() {
  local arch=$1 triple
  triple=$(triple_of "$arch")
  # One lambda dir per architecture: cargo-lambda always writes extensions/<bin> inside it.
  # `|| return 1`: errexit does not apply inside the command substitution that calls this, and a
  # failed build must not go on to package the previous binary.
  (cd "$root" && cargo lambda build --extension --release --locked -p contrail \
    --target "$triple" --lambda-dir "target/lambda-$arch") >&2 || return 1
  echo "$root/target/lambda-$arch/extensions/contrail"
}

for arch in "${arches[@]}"; do
  started=$(date +%s)
  binary=$(build_binary "$arch")
  seconds=$(( $(date +%s) - started ))

  if [ -n "$artifacts" ]; then
    mkdir -p "$artifacts/extensions"
    install -m 0755 "$binary" "$artifacts/extensions/contrail"
    echo "contrail ($arch): $(stat -c %s "$binary") bytes -> $artifacts/extensions/contrail (${seconds}s)"
    continue
  fi

  stage=$(mktemp -d)
  trap 'rm -rf "$stage"' EXIT
  mkdir -p "$stage/extensions"
  install -m 0755 "$binary" "$stage/extensions/contrail"
  chmod 0755 "$stage/extensions"
  touch -h -d "@$SOURCE_DATE_EPOCH" "$stage/extensions" "$stage/extensions/contrail"
  mkdir -p "$dist"
  zip_path="$dist/contrail-layer-$arch.zip"
  rm -f "$zip_path"
  (cd "$stage" && printf '%s\n' extensions/ extensions/contrail | zip -X -q -9 -@ "$zip_path")
  rm -rf "$stage"
  trap - EXIT

  printf 'contrail-layer-%s.zip: %s bytes (binary %s bytes, stripped) sha256 %s, built in %ss\n' \
    "$arch" "$(stat -c %s "$zip_path")" "$(stat -c %s "$binary")" \
    "$(sha256sum "$zip_path" | cut -d' ' -f1)" "$seconds"
done
