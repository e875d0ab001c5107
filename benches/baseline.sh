#!/usr/bin/env bash
# The kubectl + shell way of doing cacerts-sync's job, as people script it today (cf. the AKS plug-in CA
# cert-validator CronJob plus a "sync the secret with kubectl" script). It is the point of comparison for
# benches/bench.py, so it is deliberately the CHEAP version: no validation of the material at all (no chain
# check, no key/cert match, no torn-rotation handling), sequential requests, one token per run.
#
# Inputs (environment):
#   VAULT_URL                  https://<vault>/ (the emulator's vault_url in the bench)
#   AZURE_AUTHORITY_HOST       Entra authority (https://login.microsoftonline.com in real life)
#   AZURE_TENANT_ID AZURE_CLIENT_ID AZURE_CLIENT_SECRET   service principal (client credentials)
#   SSL_CERT_FILE              CA bundle for curl --cacert
#   KUBECONFIG                 cluster to write to
#   WORK_DIR                   optional scratch directory (default: a fresh mktemp -d, removed on exit)
# Exit status: 0 success (changed or unchanged), non-zero on any failure (set -e).
set -euo pipefail

: "${VAULT_URL:?}" "${AZURE_AUTHORITY_HOST:?}" "${AZURE_TENANT_ID:?}" "${AZURE_CLIENT_ID:?}" "${AZURE_CLIENT_SECRET:?}"
: "${SSL_CERT_FILE:?}" "${KUBECONFIG:?}"

NAMESPACE=istio-system
SECRET=cacerts
SELECTOR=app=istiod
ANNOTATION=baseline.cacerts-sync.io/root-sha256
API_VERSION=2025-07-01

if [[ -n "${WORK_DIR:-}" ]]; then
  work=$WORK_DIR
  mkdir -p "$work"
else
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
fi

authority=${AZURE_AUTHORITY_HOST%/}
vault=${VAULT_URL%/}

# 1. Entra token (client credentials).
token=$(curl -sSf --cacert "$SSL_CERT_FILE" -X POST "$authority/$AZURE_TENANT_ID/oauth2/v2.0/token" \
  --data-urlencode grant_type=client_credentials \
  --data-urlencode "client_id=$AZURE_CLIENT_ID" \
  --data-urlencode "client_secret=$AZURE_CLIENT_SECRET" \
  --data-urlencode scope=https://vault.azure.net/.default | jq -r .access_token)

# 2. The four secrets, one GET each.
for name in root-cert ca-cert ca-key cert-chain; do
  curl -sSf --cacert "$SSL_CERT_FILE" -H "Authorization: Bearer $token" \
    "$vault/secrets/$name?api-version=$API_VERSION" | jq -j .value > "$work/$name.pem"
done

# 3. Write the Secret (create or update).
kubectl create secret generic "$SECRET" -n "$NAMESPACE" \
  --from-file=root-cert.pem="$work/root-cert.pem" \
  --from-file=ca-cert.pem="$work/ca-cert.pem" \
  --from-file=ca-key.pem="$work/ca-key.pem" \
  --from-file=cert-chain.pem="$work/cert-chain.pem" \
  --dry-run=client -o yaml | kubectl apply -f - >/dev/null

# 4. Restart istiod when the root in the Secret differs from what the Deployments were restarted for.
root_sha=$(kubectl get secret "$SECRET" -n "$NAMESPACE" -o jsonpath='{.data.root-cert\.pem}' | base64 -d | sha256sum | cut -d' ' -f1)
seen=$(kubectl get deployment -l "$SELECTOR" -n "$NAMESPACE" \
  -o jsonpath="{range .items[*]}{.metadata.annotations.baseline\.cacerts-sync\.io/root-sha256}{\"\n\"}{end}")
stale=0
while IFS= read -r line; do
  [[ "$line" == "$root_sha" ]] || stale=1
done <<< "$seen"
if [[ $stale == 1 ]]; then
  echo "Root certificate update detected. Restarting deployment..."
  kubectl rollout restart deployment -l "$SELECTOR" -n "$NAMESPACE"
  kubectl annotate deployment -l "$SELECTOR" -n "$NAMESPACE" --overwrite "$ANNOTATION=$root_sha" >/dev/null
fi
