# The project's entry points. `make test` is what CI runs (.ci/run) and what the README names.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c

# One Cargo target folder outside the checkout, so that fresh clones (CI's) reuse builds.
export CARGO_TARGET_DIR ?= $(HOME)/.cache/vault-operator/target
CARGO ?= cargo

.PHONY: test lint unit crd k8s clean-cache

## test: every check and test the project has
test: lint unit

## lint: formatting and clippy, warnings as errors
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

## unit: the Rust test suites
unit:
	$(CARGO) test --workspace --locked

## crd: regenerate manifests/crd.yaml from the Rust types
crd:
	$(CARGO) run --quiet --locked -p vault-controller -- crd > manifests/crd.yaml

## k8s: build the Kubernetes components the local cluster runs (cached per version)
k8s:
	tests/localcluster/k8s/build.sh
