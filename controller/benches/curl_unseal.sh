#!/usr/bin/env bash
# The floor for the unseal benchmark: the same steps the controller takes, by hand, with
# curl and jq. Three sealed, uninitialised OpenBao servers on 127.0.0.1, node i named
# vault-<i>.test; ends when all three are unsealed, Raft peers, with a leader.
#   curl_unseal.sh CA_FILE PORT0 PORT1 PORT2
# Keys and the token stay out of argv and the output: they go through stdin and a file.
set -euo pipefail
ca=$1
shift
ports=("$@")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
umask 077

# Set CURL_UNSEAL_TRACE=1 to see when each step ends, on stderr.
step() {
  if [ -n "${CURL_UNSEAL_TRACE:-}" ]; then echo "$(date +%s.%N) $*" >&2; fi
}

# api NODE METHOD PATH [curl args...]: one call to node NODE, body on stdin.
api() {
  local node=$1 method=$2 path=$3
  shift 3
  local host="vault-$node.test" port=${ports[$node]}
  curl -sS --fail-with-body --noproxy '*' --cacert "$ca" \
    --resolve "$host:$port:127.0.0.1" -X "$method" "$@" "https://$host:$port/v1/$path"
}

unseal() {
  local node=$1
  for i in 0 1 2; do
    jq -c --argjson i "$i" '{key: .keys[$i]}' "$work/init.json" |
      api "$node" POST sys/unseal -d @- >/dev/null
  done
}

# wait_for NODE PATH JQ_FILTER [curl args...]: polls until the filter says true.
wait_for() {
  local node=$1 path=$2 filter=$3
  shift 3
  for _ in $(seq 1 600); do
    if api "$node" GET "$path" "$@" 2>/dev/null | jq -e "$filter" >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.05
  done
  echo "timed out waiting for $path on vault-$node" >&2
  return 1
}

step start
echo '{"secret_shares":5,"secret_threshold":3}' |
  api 0 POST sys/init -d @- >"$work/init.json"
step initialised
jq -r '"X-Vault-Token: " + .root_token' "$work/init.json" >"$work/token-header"

unseal 0
step unsealed vault-0
# A join is refused until vault-0 leads.
wait_for 0 sys/leader '.is_self'
step vault-0 leads

jq -n --arg addr "https://127.0.0.1:${ports[0]}" --rawfile ca "$ca" \
  '{leader_api_addr: $addr, leader_ca_cert: $ca, leader_tls_servername: "vault-0.test"}' \
  >"$work/join.json"
for node in 1 2; do
  api "$node" POST sys/storage/raft/join -d @"$work/join.json" >/dev/null
  step joined "vault-$node"
  unseal "$node"
  step unseal keys sent to "vault-$node"
done

for node in 0 1 2; do
  wait_for "$node" sys/seal-status '.sealed == false'
  step "vault-$node" unsealed
done
wait_for 0 sys/storage/raft/configuration \
  '(.data.config.servers | length) == 3 and any(.data.config.servers[]; .leader)' \
  -H @"$work/token-header"
step leader found
