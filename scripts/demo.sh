#!/usr/bin/env bash
# The main job: a local cluster running the operator in-cluster, and the Bank-Vaults sample
# cr-raft.yaml, unchanged, as a three-node Raft Vault, initialised, unsealed and configured.
# Builds and starts only what is missing, so a second run reuses the first.
#   scripts/demo.sh          start (or reuse) and show `kubectl vault status`
#   scripts/demo.sh down     stop the cluster
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/vault-operator/target}"
name="${DEMO_CLUSTER:-demo}"
samples="${VAULT_SAMPLES_DIR:-$top/../shared/samples/bank-vaults}"
bin="$CARGO_TARGET_DIR/debug"
clusters="${LOCALCLUSTER_HOME:-$HOME/.cache/localcluster/clusters}"
export KUBECONFIG="$clusters/$name/kubeconfig"
step_no=0
current=""

step() {
  step_no=$((step_no + 1))
  current="$*"
  printf '\n[%d] %s\n' "$step_no" "$*"
}

# On failure: which step, and the logs that tell why.
failed() {
  local code=$?
  trap - EXIT
  [ "$code" -eq 0 ] && return
  printf '\nFAILED at step %d: %s\n' "$step_no" "$current" >&2
  if [ -x "$bin/localcluster" ] && [ -f "$KUBECONFIG" ]; then
    for pod in $(kubectl get pods -n vault-operator -o name 2>/dev/null | cut -d/ -f2); do
      printf -- '--- %s (vault-operator), last lines:\n' "$pod" >&2
      "$bin/localcluster" logs "$pod" -n vault-operator --name "$name" 2>&1 | tail -n 20 >&2
    done
    for pod in vault-0 vault-1 vault-2; do
      printf -- '--- %s (default), last lines:\n' "$pod" >&2
      "$bin/localcluster" logs "$pod" -n default -c vault --name "$name" 2>&1 \
        | tail -n 10 >&2 || true
    done
  fi
  exit "$code"
}

if [ "${1:-}" = down ]; then
  if [ -x "$bin/localcluster" ]; then
    "$bin/localcluster" down --name "$name"
  fi
  exit 0
fi
trap failed EXIT

step "Tools: OpenBao's bao and the Kubernetes components (built once per machine)"
"$top/scripts/tools.sh" bao >/dev/null
k8s=$("$top/scripts/tools.sh" k8s)
export PATH="$bin:$k8s:$PATH"

step "Building the controller, the webhook, the plugin and the local cluster"
cargo build --quiet --locked --manifest-path "$top/Cargo.toml" \
  -p vault-controller -p vault-webhook -p kubectl-vault -p localcluster

step "Starting the local cluster '$name' (reused when it runs)"
localcluster up --name "$name" >/dev/null
kubectl get nodes -L topology.kubernetes.io/zone

step "Installing the operator: kubectl vault install (CRD, RBAC, controller, webhook)"
kubectl vault install >/dev/null
kubectl -n vault-operator rollout status deployment/vault-controller --timeout=180s
kubectl -n vault-operator rollout status deployment/vault-webhook --timeout=180s

step "Applying the Bank-Vaults samples rbac.yaml and cr-raft.yaml, unchanged, in default"
kubectl apply -n default -f "$samples/rbac.yaml"
# The webhook's certificate and caBundle may be a few seconds behind its rollout.
for attempt in $(seq 1 30); do
  if kubectl apply -n default -f "$samples/cr-raft.yaml" 2>/tmp/demo-apply.$$; then
    break
  fi
  [ "$attempt" -eq 30 ] && { cat /tmp/demo-apply.$$ >&2; exit 1; }
  sleep 2
done
rm -f /tmp/demo-apply.$$

step "Waiting for three pods Ready, unsealed, with a Raft leader, and externalConfig applied"
started=$(date +%s)
kubectl wait -n default vault/vault --for=condition=Ready --timeout=300s
kubectl wait -n default vault/vault --for=condition=Unsealed --timeout=60s
kubectl wait -n default vault/vault --for=condition=Configured --timeout=120s
echo "Ready and configured $(( $(date +%s) - started ))s after the wait began"

step "kubectl vault status"
kubectl vault status -n default vault

ca="$clusters/$name/vault-ca.crt"
kubectl get secret -n default vault-tls -o jsonpath='{.data.ca\.crt}' | base64 -d > "$ca"
pod_ip=$(kubectl get pod -n default vault-0 -o jsonpath='{.status.podIP}')
cat <<EOF

The cluster runs. Use it from this shell with:
  export KUBECONFIG=$KUBECONFIG
  export PATH=$bin:$k8s:\$PATH
  kubectl vault status -n default
Which keys the key store holds (names only) and where the pods run:
  kubectl get secret -n default vault-unseal-keys -o jsonpath='{.data}' | tr , '\n' | cut -d: -f1
  kubectl get pods -n default -o wide
Read a startup secret from inside the cluster's network, with the stored root token:
  $bin/localcluster exec --name $name -- curl -sS --cacert $ca \\
    -H "X-Vault-Token: \$(kubectl get secret -n default vault-unseal-keys \\
        -o jsonpath='{.data.vault-root}' | base64 -d)" \\
    --resolve vault-0.default.svc:8200:$pod_ip \\
    https://vault-0.default.svc:8200/v1/secret/data/accounts/aws
Stop it with: make down
EOF
