#!/usr/bin/env bash
# Tests the krew packaging with krew itself: packages the plugin (krew/package.sh), builds
# krew from its Go module, installs the plugin from the built archive and manifest into a
# temporary KREW_ROOT, and runs `kubectl vault version` and completion through kubectl's
# plugin discovery. Prints the binary's size.
#
# Needs Go (and the module proxy, or a module cache that holds krew) and the kubectl that
# tests/localcluster/k8s/build.sh builds. krew is built once per version and kept in
# KREW_CACHE (default ~/.cache/vault-operator/krew-VERSION).
#
#   krew/test.sh                              the release archive, as published
#   KREW_TEST_PROFILE=debug krew/test.sh      a debug build: what CI runs, quick when warm
#   BINARY=path/to/kubectl-vault krew/test.sh an existing build (the Rust test's way)
#
# Only the manifest written into the temporary folder is used: krew/vault.yaml is left as
# it was.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
KREW_VERSION=${KREW_VERSION:-v0.4.3}
krew_cache=${KREW_CACHE:-$HOME/.cache/vault-operator/krew-$KREW_VERSION}
profile=${KREW_TEST_PROFILE:-release}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "krew/test.sh: FAIL: $*" >&2; exit 1; }

manifest="$work/vault.yaml"
archive=$(DIST="$work/dist" MANIFEST="$manifest" PROFILE="$profile" "$here/package.sh" \
  | head -n 1)
version=$(awk '$1 == "version:" {print $2; exit}' "$manifest")
echo "archive: $(basename "$archive") ($(du -h "$archive" | cut -f1)), manifest version $version"

if [ ! -x "$krew_cache/krew" ]; then
  echo "building krew $KREW_VERSION from sigs.k8s.io/krew into $krew_cache"
  mkdir -p "$krew_cache"
  # Offline when the module cache holds krew: Go's own cache serves as the proxy, and its
  # checksums were verified when it was filled.
  downloads="$(go env GOMODCACHE)/cache/download"
  if [ -f "$downloads/sigs.k8s.io/krew/@v/$KREW_VERSION.zip" ]; then
    export GOPROXY="file://$downloads" GOSUMDB=off
  fi
  GOBIN="$krew_cache" GOFLAGS=-mod=mod go install "sigs.k8s.io/krew/cmd/krew@$KREW_VERSION"
fi
kubectl_bin=$("$top/tests/localcluster/k8s/build.sh")

export KREW_ROOT="$work/krew"
export PATH="$KREW_ROOT/bin:$kubectl_bin:$krew_cache:/usr/bin:/bin"
export KUBECONFIG="$work/no-kubeconfig"

krew install --manifest="$manifest" --archive="$archive" </dev/null 2>&1 \
  | sed 's/^/  krew: /'

installed="$KREW_ROOT/store/vault/$version"
[ -x "$installed/kubectl-vault" ] || fail "krew did not install $installed/kubectl-vault"
[ -f "$installed/LICENSE" ] || fail "the archive lacks LICENSE"
size=$(stat -c %s "$installed/kubectl-vault")
case "$profile:${BINARY:-}" in
  release:) build="stripped release build" ;;
  *) build="test build (debug), not the published size" ;;
esac
echo "binary size: $size bytes ($(( size / 1024 / 1024 )) MiB), $build"

kubectl plugin list 2>/dev/null | grep -q "$KREW_ROOT/bin/kubectl-vault" \
  || fail "kubectl plugin list does not find kubectl-vault"
got=$(kubectl vault version)
[ "$got" = "kubectl-vault ${version#v}" ] || fail "kubectl vault version said: $got"
echo "kubectl vault version: $got"

# A command that builds the cluster client, against a closed loopback port: the binary as
# built must say so, not panic (a build without the tests' dev-dependencies once lacked a
# TLS crypto provider).
cat >"$work/closed.kubeconfig" <<'EOF'
apiVersion: v1
kind: Config
clusters: [{name: closed, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: nobody, user: {token: none}}]
contexts: [{name: closed, context: {cluster: closed, user: nobody}}]
current-context: closed
EOF
refused=$(KUBECONFIG="$work/closed.kubeconfig" kubectl vault status 2>&1 || true)
echo "$refused" | grep -q "^error: no cluster reachable at https://127.0.0.1:1/" \
  || fail "kubectl vault status against a closed port said: $refused"
echo "kubectl vault status, no cluster: ${refused%%;*}"

# Completion through kubectl, once kubectl_complete-vault is linked as the caveats say.
ln -s "$installed/kubectl_complete-vault" "$KREW_ROOT/bin/kubectl_complete-vault"
completion=$(kubectl __complete vault st 2>/dev/null)
echo "$completion" | grep -q '^status' || fail "kubectl __complete vault st said: $completion"
echo "kubectl __complete vault st: $(echo "$completion" | head -n 1 | cut -f1)"
echo "krew/test.sh: PASS"
