#!/usr/bin/env bash
# Builds kube-apiserver, kube-controller-manager, kube-scheduler and kubectl at the version
# go.mod pins, into a cache folder keyed by that version, once per machine.
#   build.sh            prints the folder holding the binaries, building them if missing
# Environment: LOCALCLUSTER_CACHE (default ~/.cache/localcluster).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
version=$(awk '$1 == "require" && $2 == "k8s.io/kubernetes" {print $3}' "$here/go.mod")
minor=$(echo "$version" | cut -d. -f2)
cache=${LOCALCLUSTER_CACHE:-$HOME/.cache/localcluster}
out="$cache/k8s-$version/bin"
commands=(kube-apiserver kube-controller-manager kube-scheduler kubectl)

missing=0
for c in "${commands[@]}"; do [ -x "$out/$c" ] || missing=1; done
if [ "$missing" = 0 ]; then echo "$out"; exit 0; fi

command -v go >/dev/null || { echo "build.sh: Go is not installed; install Go 1.26 or newer" >&2; exit 1; }
mkdir -p "$out.partial"
log="$cache/k8s-$version/build.log"
start=$(date +%s)
echo "building Kubernetes $version (first time on this machine: several minutes)" >&2
ldflags="-s -w"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags="$ldflags -X $p.gitVersion=$version -X $p.gitMajor=1 -X $p.gitMinor=$minor"
  ldflags="$ldflags -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
done
targets=()
for c in "${commands[@]}"; do targets+=("k8s.io/kubernetes/cmd/$c"); done
if ! (cd "$here" && CGO_ENABLED=0 go build -trimpath -ldflags="$ldflags" \
        -o "$out.partial/" "${targets[@]}") >"$log" 2>&1; then
  echo "build.sh: building Kubernetes $version failed; the end of $log:" >&2
  tail -n 30 "$log" >&2
  exit 1
fi
rm -rf "$out" && mv "$out.partial" "$out"
seconds=$(( $(date +%s) - start ))
echo "$seconds" > "$cache/k8s-$version/build-seconds"
echo "built Kubernetes $version in ${seconds}s: $(du -sh "$out" | cut -f1)" >&2
echo "$out"
