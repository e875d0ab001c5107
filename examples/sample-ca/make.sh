#!/usr/bin/env bash
# Regenerates this SAMPLE plug-in CA. NEVER USE IT IN PRODUCTION: the private key is public (it is in git).
# Root: RSA 4096, 20 years. Intermediate (ca-cert): RSA 4096, 10 years, pathlen 0, signed by the root.
# cert-chain.pem = ca-cert + root, the layout istiod expects. The root's private key is thrown away.
set -euo pipefail
cd "$(dirname "$0")"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:4096 -out "$work/root-key.pem"
openssl req -x509 -new -key "$work/root-key.pem" -sha256 -days 7300 \
  -subj "/O=cacerts-sync SAMPLE - DO NOT USE IN PRODUCTION/CN=SAMPLE Root CA" \
  -addext "basicConstraints=critical,CA:true" \
  -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
  -out root-cert.pem

openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:4096 -out ca-key.pem
openssl req -new -key ca-key.pem \
  -subj "/O=cacerts-sync SAMPLE - DO NOT USE IN PRODUCTION/CN=SAMPLE Intermediate CA" -out "$work/ca.csr"
cat > "$work/ca.ext" <<'EXT'
basicConstraints=critical,CA:true,pathlen:0
keyUsage=critical,keyCertSign,cRLSign,digitalSignature
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid:always
EXT
openssl x509 -req -in "$work/ca.csr" -CA root-cert.pem -CAkey "$work/root-key.pem" \
  -set_serial "0x$(openssl rand -hex 16)" -sha256 -days 3650 -extfile "$work/ca.ext" -out ca-cert.pem
cat ca-cert.pem root-cert.pem > cert-chain.pem
openssl verify -CAfile root-cert.pem ca-cert.pem
