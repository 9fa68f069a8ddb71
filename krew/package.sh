#!/usr/bin/env bash
# Builds the release archives of `kubectl vault` (binary, LICENSE and the completion helper
# kubectl looks for) and writes krew/vault.yaml from krew/vault.yaml.tmpl with the version
# and each archive's sha256. Prints the path of each archive.
#
#   krew/package.sh               for this machine's target
#   TARGETS="x86_64-unknown-linux-gnu aarch64-apple-darwin" krew/package.sh
#   PROFILE=debug krew/package.sh  a debug build, for tests: no release build to wait for
#
# Environment: CARGO_TARGET_DIR (default ~/.cache/vault-operator/target), DIST (default
# krew/dist), TARGETS (Rust target triples; default the host's), PROFILE (release, the
# default, or debug: this machine's target only, in the target folder `cargo test` uses),
# BINARY (package this built binary instead of building one: this machine's target only),
# MANIFEST (where to write the manifest; default krew/vault.yaml).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/vault-operator/target}
dist=${DIST:-$here/dist}
manifest=${MANIFEST:-$here/vault.yaml}
profile=${PROFILE:-release}
host=$(rustc -vV | awk '$1 == "host:" {print $2}')
targets=${TARGETS:-$host}
case "$profile" in
  release) ;;
  debug)
    [ "$targets" = "$host" ] || { echo "package.sh: PROFILE=debug is for $host only" >&2; exit 1; }
    ;;
  *) echo "package.sh: PROFILE is release or debug, not $profile" >&2; exit 1 ;;
esac
if [ -n "${BINARY:-}" ] && [ "$targets" != "$host" ]; then
  echo "package.sh: BINARY is a build for $host only" >&2
  exit 1
fi

# The krew os and arch of a Rust target triple.
platform() {
  local os arch
  case "$1" in
    x86_64-*) arch=amd64 ;;
    aarch64-*) arch=arm64 ;;
    *) echo "package.sh: no krew arch for $1" >&2; return 1 ;;
  esac
  case "$1" in
    *-linux-*) os=linux ;;
    *-apple-darwin) os=darwin ;;
    *-windows-*) os=windows ;;
    *) echo "package.sh: no krew os for $1" >&2; return 1 ;;
  esac
  echo "$os $arch"
}

mkdir -p "$dist"
platforms=""
version=""
for target in $targets; do
  read -r os arch < <(platform "$target")
  bin=kubectl-vault
  [ "$os" = windows ] && bin=kubectl-vault.exe
  # Best compression for what is published; the fastest for test builds, which are large.
  level=-9
  if [ -n "${BINARY:-}" ]; then
    binary=$BINARY
    level=-1
  elif [ "$profile" = debug ]; then
    # No --target: the host's debug build is the one `cargo test` has already made.
    cargo build --quiet --locked -p kubectl-vault --manifest-path "$top/Cargo.toml" >&2
    binary="$CARGO_TARGET_DIR/debug/$bin"
    level=-1
  else
    # Stripped: the symbols would double the download and nobody reads them.
    CARGO_PROFILE_RELEASE_STRIP=symbols cargo build --quiet --release --locked \
      -p kubectl-vault --target "$target" --manifest-path "$top/Cargo.toml" >&2
    binary="$CARGO_TARGET_DIR/$target/release/$bin"
  fi

  # The version is the binary's own, so the manifest cannot disagree with it.
  if [ "$target" = "$host" ]; then
    version=$("$binary" version | awk '{print $2}')
  fi
  version=${version:-$(awk -F'"' '/^version = / {print $2; exit}' "$top/Cargo.toml")}

  stage=$(mktemp -d)
  chmod 755 "$stage"
  cp "$binary" "$stage/$bin"
  cp "$top/LICENSE" "$top/kubectl-vault/kubectl_complete-vault" "$stage/"
  archive="kubectl-vault-v$version-$target.tar.gz"
  # Same inputs, same bytes: sorted names, no times, no owners.
  tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$stage" -cf - . \
    | gzip -n "$level" >"$dist/$archive"
  rm -rf "$stage"
  sha=$(sha256sum "$dist/$archive" | awk '{print $1}')

  entry=$(sed -e "s|@OS@|$os|" -e "s|@ARCH@|$arch|" -e "s|@VERSION@|$version|" \
    -e "s|@ARCHIVE@|$archive|" -e "s|@SHA256@|$sha|" -e "s|@BIN@|$bin|" \
    "$here/platform.yaml.tmpl")
  platforms="$platforms$entry"$'\n'
  echo "$dist/$archive"
done

# The template with the version filled in and its @PLATFORMS@ line replaced by the entries.
{
  sed -e '/^@PLATFORMS@$/,$d' -e "s|@VERSION@|$version|g" "$here/vault.yaml.tmpl"
  printf '%s' "$platforms"
  sed -e '1,/^@PLATFORMS@$/d' -e "s|@VERSION@|$version|g" "$here/vault.yaml.tmpl"
} >"$manifest"
echo "wrote $manifest for v$version" >&2
