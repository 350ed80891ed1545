#!/usr/bin/env bash
# Installs everything the test suite needs, at pinned versions, into .tools/ (git-ignored).
# Idempotent: a second run only checks what is there.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
tools="$root/.tools"
mkdir -p "$tools"

log() { printf '[install] %s\n' "$*" >&2; }

# Debian packages: native build of the Node runtime client, qemu for the arm64 smoke test,
# openssl for the test certificates of the https export test, PostgreSQL for the connection
# counts of tests/tests/resources.rs.
apt_pkgs=(autoconf automake libtool cmake g++ make unzip zip qemu-user-static binutils openssl postgresql)
missing=()
for p in "${apt_pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  log "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Rust targets for the layer builds. Not declared in a rust-toolchain.toml: rustup ignores a
# toolchain file's targets when RUSTUP_AUTO_INSTALL=0, and otherwise a missing target makes every
# cargo command sync the `stable` channel, that is download a newer toolchain (DEVELOPING.md).
for t in x86_64-unknown-linux-musl aarch64-unknown-linux-musl; do
  rustup target list --installed | grep -qx "$t" || { log "rustup target add $t"; rustup target add "$t" >/dev/null; }
done

# cargo-fuzz, for the fuzz stage (docs/FUZZING.md), only where the nightly toolchain is: it
# cannot be installed offline, and scripts/fuzz.sh says so and skips the fuzzing without it.
cargo_fuzz_version=0.13.1
if cargo +nightly --version >/dev/null 2>&1 &&
  ! cargo +nightly fuzz --version 2>/dev/null | grep -qx "cargo-fuzz $cargo_fuzz_version"; then
  log "cargo install cargo-fuzz $cargo_fuzz_version"
  cargo install -q cargo-fuzz --version "$cargo_fuzz_version" --locked
fi

# Python: one virtual environment for the collector, the runtime client, the SDK and the SAM tools.
venv="$tools/venv"
if [ ! -x "$venv/bin/python" ]; then
  log "python venv"
  python3 -m venv "$venv"
fi
stamp="$venv/.requirements.sha"
want=$(sha256sum scripts/requirements-test.txt | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  log "pip install -r scripts/requirements-test.txt"
  "$venv/bin/pip" install -q --disable-pip-version-check -r scripts/requirements-test.txt
  echo "$want" >"$stamp"
fi

# Node: the runtime client and the OpenTelemetry SDK for the Node sample function, and the
# OTLP/gRPC exporters of the end-to-end tests' Node handler (tests/node-grpc).
for node_dir in sample-functions/node tests/node-grpc; do
  nstamp="$node_dir/node_modules/.package.sha"
  nwant=$(sha256sum "$node_dir/package.json" | cut -d' ' -f1)
  if [ "$(cat "$nstamp" 2>/dev/null)" != "$nwant" ]; then
    log "npm install in $node_dir"
    (cd "$node_dir" && npm install --no-audit --no-fund --loglevel=error >/dev/null)
    echo "$nwant" >"$nstamp"
  fi
done
# AWS's SigV4 test suite (Apache-2.0), as the pinned crates.io package aws-sigv4 ships it:
# the vectors the signer's test reads (extension/src/export/aws/sigv4/tests.rs). Not committed.
# cargo fetches the package (checked against the registry's checksum) into a throwaway manifest's
# registry cache; its sha256 is checked again here before the suite is unpacked.
sigv4_version=1.3.6
sigv4_sha256=c35452ec3f001e1f2f6db107b6373f1f48f05ec63ba2c5c9fa91f07dad32af11
suite="$tools/aws-signing-test-suite"
if [ "$(cat "$suite/.version" 2>/dev/null)" != "$sigv4_version" ]; then
  log "aws-signing-test-suite from aws-sigv4 $sigv4_version"
  tmp=$(mktemp -d)
  mkdir -p "$tmp/fetch/src"
  printf '[package]\nname = "fetch-sigv4-suite"\nversion = "0.0.0"\nedition = "2021"\n[dependencies]\naws-sigv4 = { version = "=%s", default-features = false }\n[workspace]\n' \
    "$sigv4_version" >"$tmp/fetch/Cargo.toml"
  : >"$tmp/fetch/src/lib.rs"
  CARGO_TARGET_DIR="$tmp/target" cargo fetch --quiet --manifest-path "$tmp/fetch/Cargo.toml"
  crate=$(find "${CARGO_HOME:-$HOME/.cargo}/registry/cache" -name "aws-sigv4-$sigv4_version.crate" | head -n 1)
  [ -n "$crate" ] || { log "aws-sigv4-$sigv4_version.crate not in cargo's cache after cargo fetch"; exit 1; }
  echo "$sigv4_sha256  $crate" | sha256sum -c --quiet -
  tar -xzf "$crate" -C "$tmp" "aws-sigv4-$sigv4_version/aws-signing-test-suite" "aws-sigv4-$sigv4_version/LICENSE"
  rm -rf "$suite"
  mv "$tmp/aws-sigv4-$sigv4_version/aws-signing-test-suite" "$suite"
  mv "$tmp/aws-sigv4-$sigv4_version/LICENSE" "$suite/LICENSE"
  echo "$sigv4_version" >"$suite/.version"
  rm -rf "$tmp"
fi
log "done"
