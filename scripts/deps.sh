#!/usr/bin/env bash
# Installs the system packages the build (and, with --test, the tests) need, if missing.
set -eu
pkgs="libclang-dev protobuf-compiler"
[ "${1:-}" = "--test" ] && pkgs="$pkgs etcd-server etcd-client"
missing=""
for p in $pkgs; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  echo "installing:$missing" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi
