#!/usr/bin/env bash
# Tests the krew packaging with krew itself: packages the plugin (krew/package.sh), builds
# krew from its Go module, installs the plugin from the built archive and manifest into a
# temporary KREW_ROOT, and runs `kubectl vault version` and completion through kubectl's
# plugin discovery. Prints the binary's size.
#
# Needs Go (and the module proxy, or a module cache that holds krew) and the kubectl that
# tests/localcluster/k8s/build.sh builds.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
KREW_VERSION=${KREW_VERSION:-v0.4.3}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "krew/test.sh: FAIL: $*" >&2; exit 1; }

archive=$(DIST="$work/dist" "$here/package.sh" | head -n 1)
version=$(awk '$1 == "version:" {print $2; exit}' "$here/vault.yaml")
echo "archive: $(basename "$archive") ($(du -h "$archive" | cut -f1)), manifest version $version"

echo "building krew $KREW_VERSION from sigs.k8s.io/krew"
GOBIN="$work/gobin" GOFLAGS=-mod=mod go install "sigs.k8s.io/krew/cmd/krew@$KREW_VERSION"
kubectl_bin=$("$top/tests/localcluster/k8s/build.sh")

export KREW_ROOT="$work/krew"
export PATH="$KREW_ROOT/bin:$kubectl_bin:$work/gobin:/usr/bin:/bin"
export KUBECONFIG="$work/no-kubeconfig"

krew install --manifest="$here/vault.yaml" --archive="$archive" </dev/null 2>&1 \
  | sed 's/^/  krew: /'

installed="$KREW_ROOT/store/vault/$version"
[ -x "$installed/kubectl-vault" ] || fail "krew did not install $installed/kubectl-vault"
[ -f "$installed/LICENSE" ] || fail "the archive lacks LICENSE"
size=$(stat -c %s "$installed/kubectl-vault")
echo "binary size: $size bytes ($(( size / 1024 / 1024 )) MiB), stripped release build"

kubectl plugin list 2>/dev/null | grep -q "$KREW_ROOT/bin/kubectl-vault" \
  || fail "kubectl plugin list does not find kubectl-vault"
got=$(kubectl vault version)
[ "$got" = "kubectl-vault ${version#v}" ] || fail "kubectl vault version said: $got"
echo "kubectl vault version: $got"

# Completion through kubectl, once kubectl_complete-vault is linked as the caveats say.
ln -s "$installed/kubectl_complete-vault" "$KREW_ROOT/bin/kubectl_complete-vault"
completion=$(kubectl __complete vault st 2>/dev/null)
echo "$completion" | grep -q '^status' || fail "kubectl __complete vault st said: $completion"
echo "kubectl __complete vault st: $(echo "$completion" | head -n 1 | cut -f1)"
echo "krew/test.sh: PASS"
