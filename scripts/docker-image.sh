#!/usr/bin/env bash
# Builds the Docker image metastore:local (see Dockerfile) from local parts only, since there is
# no image registry: first the base image metastore-base:local, a root filesystem made of the
# shared libraries the release binaries load (from this machine's Debian packages), an
# /etc/passwd with the non-root user metastore (uid 10001) and /data owned by it; then
# `docker build` puts the release binaries on it.
#
# usage: scripts/docker-image.sh [--no-build]   (--no-build: use the binaries already built)
set -eu
cd "$(dirname "$0")/.."
command -v docker >/dev/null || { echo "docker is not installed" >&2; exit 2; }
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/metastore-target}
[ "${1:-}" = "--no-build" ] || { scripts/deps.sh && cargo build --release --workspace --all-targets; }
BIN=$CARGO_TARGET_DIR/release
BINARIES="metastore-storaged metastore-gateway metastore-probe"
for b in $BINARIES; do [ -x "$BIN/$b" ] || { echo "missing $BIN/$b: build first" >&2; exit 2; }; done
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# The base: shared libraries (with the dynamic loader), user, group, /data and /tmp.
ROOT=$WORK/root
mkdir -p "$ROOT/etc" "$ROOT/data" "$ROOT/tmp"
for b in $BINARIES; do
  ldd "$BIN/$b" | grep -o '/[^ ]*' | while read -r lib; do
    mkdir -p "$ROOT$(dirname "$lib")"
    cp -L "$lib" "$ROOT$lib"
  done
done
echo 'metastore:x:10001:10001:MetaStore:/data:/nonexistent' >"$ROOT/etc/passwd"
echo 'metastore:x:10001:' >"$ROOT/etc/group"
chmod 1777 "$ROOT/tmp"
tar -C "$ROOT" --numeric-owner --owner=0 --group=0 --exclude=./data -c . >"$WORK/base.tar"
tar -C "$ROOT" --numeric-owner --owner=10001 --group=10001 -r -f "$WORK/base.tar" ./data
docker import "$WORK/base.tar" metastore-base:local >/dev/null

# The image: the release binaries on the base (stripped: symbols are not needed to run).
mkdir -p "$WORK/context/bin"
for b in $BINARIES; do
  cp "$BIN/$b" "$WORK/context/bin/"
  strip "$WORK/context/bin/$b"
done
cp Dockerfile "$WORK/context/"
docker build -q -t metastore:local "$WORK/context" >/dev/null
echo "built image metastore:local ($(docker image inspect -f '{{.Size}}' metastore:local | awk '{printf "%.0f MB", $1/1e6}'))" >&2
