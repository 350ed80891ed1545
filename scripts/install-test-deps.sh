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
# openssl for the test certificates of the https export test.
apt_pkgs=(autoconf automake libtool cmake g++ make unzip zip qemu-user-static binutils openssl)
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
log "done"
