#!/usr/bin/env bash
# Builds the Docker image metastore:local from local parts only (no registry needed): the two
# built binaries plus the shared libraries they load, imported as a minimal root filesystem.
# Used by docker-compose.yml.
set -eu
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/metastore-target}
[ "${1:-}" = "--no-build" ] || cargo build --release --workspace --all-targets
BIN=$CARGO_TARGET_DIR/release
ROOT=$(mktemp -d)
trap 'rm -rf "$ROOT"' EXIT
mkdir -p "$ROOT/usr/local/bin" "$ROOT/data" "$ROOT/tmp"
for b in metastore-storaged metastore-gateway; do
  cp "$BIN/$b" "$ROOT/usr/local/bin/"
  # Every shared library the binary loads, including the dynamic loader.
  ldd "$BIN/$b" | grep -o '/[^ ]*' | while read -r lib; do
    mkdir -p "$ROOT$(dirname "$lib")"
    cp -L "$lib" "$ROOT$lib"
  done
done
tar -C "$ROOT" -c . | docker import \
  --change 'ENV PATH=/usr/local/bin' \
  --change 'WORKDIR /data' \
  - metastore:local >/dev/null
echo "built image metastore:local" >&2
