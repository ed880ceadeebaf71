#!/usr/bin/env bash
# Fault-injection robustness run (docs/robustness.md): 3 storaged members and 3 gateways under
# concurrent etcd clients, one fault kind at a time, every history checked by
# metastore-checker. Builds the binaries it needs, then runs every fault kind on both engines.
#
#   scripts/robustness.sh                      # full run (200 MB snapshot catch-up, 6 faults/kind)
#   scripts/robustness.sh --short              # CI: a few minutes for both engines
#   scripts/robustness.sh --engine rocksdb --fault stop-leader --keep
#
# Any other flag is passed on (metastore-robustness --help). Partition faults need root (network
# namespaces and iptables); without them they are skipped with a message. Exits non-zero on
# any violation, keeping the run directory (logs, history.json, summary.md).
set -eu
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/metastore-target}
export METASTORE_BIN_DIR=${METASTORE_BIN_DIR:-$CARGO_TARGET_DIR/release}
if [ -z "${METASTORE_NO_BUILD:-}" ]; then
  # The whole workspace, as every script builds it: building single packages changes feature
  # unification and would compile RocksDB a second time.
  cargo build --release --workspace --all-targets
fi
exec "$CARGO_TARGET_DIR/release/metastore-robustness" "$@"
