# The project's entry points. `make test` is what CI runs (.ci/run) and what the README names.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c

# One Cargo target folder outside the checkout, so that fresh clones (CI's) reuse builds.
export CARGO_TARGET_DIR ?= $(HOME)/.cache/vault-operator/target
CARGO ?= cargo

.PHONY: test lint unit tools crd k8s demo down dist

## test: every check and test the project has
test: lint unit

## demo: the main job; a local cluster with the operator and a three-node Raft Vault
demo:
	scripts/demo.sh

## down: stop the demo's cluster
down:
	scripts/demo.sh down

## lint: formatting and clippy, warnings as errors
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

## unit: every Rust test suite, with one local cluster for the run (needs root)
unit: tools
	scripts/with-cluster.sh $(CARGO) test --workspace --locked

## tools: OpenBao's bao, moto, SoftHSM2, the Cloud Storage emulator and the Kubernetes
## binaries, installed or built once per machine
tools:
	scripts/tools.sh bao >/dev/null
	scripts/tools.sh moto >/dev/null
	scripts/tools.sh softhsm >/dev/null
	scripts/tools.sh gcs-emulator >/dev/null
	scripts/tools.sh k8s >/dev/null

## crd: regenerate manifests/crd.yaml from the Rust types
crd:
	$(CARGO) run --quiet --locked -p vault-controller -- crd > manifests/crd.yaml

## dist: the plugin's release archives and krew/vault.yaml (TARGETS=... for other platforms)
dist:
	krew/package.sh

## k8s: build the Kubernetes components the local cluster runs (cached per version)
k8s:
	tests/localcluster/k8s/build.sh
