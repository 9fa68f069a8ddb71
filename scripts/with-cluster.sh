#!/usr/bin/env bash
# Runs a command with a local cluster started for it and stopped afterwards, whatever the
# command's outcome. The command finds the cluster through LOCALCLUSTER_NAME.
#   scripts/with-cluster.sh cargo test --workspace
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cargo build --quiet --locked -p localcluster --manifest-path "$top/Cargo.toml"
localcluster="${CARGO_TARGET_DIR:-$top/target}/debug/localcluster"

name="test-$$"
export LOCALCLUSTER_NAME="$name"
cleanup() {
  "$localcluster" down --name "$name" || true
  rm -rf "${LOCALCLUSTER_HOME:-$HOME/.cache/localcluster/clusters}/$name"
}
trap cleanup EXIT
"$localcluster" up --name "$name" >/dev/null
"$@"
