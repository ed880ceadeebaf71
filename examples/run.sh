#!/usr/bin/env bash
# Runs one example against a running MetaStore (or etcd):
#   examples/run.sh go|rust|python|curl
# Endpoints: ETCD_ENDPOINTS (comma-separated host:port, default 127.0.0.1:2379), for example
# the single member that scripts/run.sh starts. Prepares what the example needs first: the Go
# program is compiled (Debian's Go and clientv3 packages, GOPATH mode), the Python client
# is installed into a virtualenv of its own, the Rust example is built with the workspace.
set -eu
cd "$(dirname "$0")"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/metastore-target}
case "${1:-}" in
  go)
    mkdir -p "$CARGO_TARGET_DIR/go"
    GO111MODULE=off GOPATH=/usr/share/gocode go build -o "$CARGO_TARGET_DIR/go/example-go" go/main.go
    exec "$CARGO_TARGET_DIR/go/example-go" ;;
  rust)
    [ -x "$CARGO_TARGET_DIR/release/example-rust" ] ||
      (cd .. && cargo build --release --workspace --all-targets)
    exec "$CARGO_TARGET_DIR/release/example-rust" ;;
  python)
    venv=${METASTORE_EXAMPLES_PYENV:-$HOME/.cache/metastore-py-examples}
    if ! "$venv/bin/python" -c 'import etcd3' 2>/dev/null; then
      python3 -m venv "$venv"
      "$venv/bin/pip" install -q -r python/requirements.txt
    fi
    exec "$venv/bin/python" python/example.py ;;
  curl)
    exec curl/example.sh ;;
  *)
    echo "usage: examples/run.sh go|rust|python|curl" >&2; exit 2 ;;
esac
