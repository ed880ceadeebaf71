#!/usr/bin/env bash
# Installs the system packages the build (and, with --test, the tests, the examples and the
# conformance report) need, if missing: a C/C++ toolchain and clang for RocksDB and bindgen,
# protoc, etcdctl (the README's first steps use it), and for the tests etcd itself, Go with
# Debian's clientv3, python3 and curl. Docker (for the image and compose test) is used where
# the engine is present, not installed; where it is, the docker-compose command is added if
# missing.
set -eu
pkgs="build-essential clang libclang-dev protobuf-compiler etcd-client"
[ "${1:-}" = "--test" ] && pkgs="$pkgs etcd-server openssl curl python3 python3-venv golang-go golang-etcd-server-dev"
command -v docker >/dev/null && ! command -v docker-compose >/dev/null && pkgs="$pkgs docker-compose"
missing=""
for p in $pkgs; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  echo "installing:$missing" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi

# The JSON gateway's client tests: python etcd3gw (and its test suite's helper oslotest) and the
# OpenAPI validator, in a virtualenv of their own.
if [ "${1:-}" = "--test" ]; then
  venv=${METASTORE_PYENV:-$HOME/.cache/metastore-py}
  if ! "$venv/bin/python" -c 'import etcd3gw, oslotest, openapi_spec_validator' 2>/dev/null; then
    echo "installing python test clients into $venv" >&2
    if ! python3 -m venv "$venv" 2>/dev/null; then
      SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
      DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-venv python3-pip >/dev/null
      python3 -m venv "$venv"
    fi
    "$venv/bin/pip" install -q etcd3gw oslotest openapi-spec-validator
  fi
fi

# The Python example's client (etcd3, which needs an older protobuf) in a virtualenv of its own.
if [ "${1:-}" = "--test" ]; then
  venv=${METASTORE_EXAMPLES_PYENV:-$HOME/.cache/metastore-py-examples}
  if ! "$venv/bin/python" -c 'import etcd3' 2>/dev/null; then
    echo "installing the python example's client into $venv" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q -r "$(dirname "$0")/../examples/python/requirements.txt"
  fi
fi
