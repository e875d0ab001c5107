#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what the tests need, then runs
#   1. every Rust test (unit, the Key Vault emulator and Kubernetes test server fidelity tests, end to end
#      with the real binary, manifest parsing),
#   2. the Helm chart tests with real Helm (helm-python-sdk bundles Helm's Go SDK), the alert rules and the
#      dashboard's queries with the real promtool, and the docs' links,
#   3. the static release binary and the container image built from it with buildah, run for real.
# The local servers the tests need (Key Vault + Entra emulator, Kubernetes API test server) are started
# in-process by the tests themselves; nothing else has to run.
set -euo pipefail
cd "$(dirname "$0")/.."

# Local servers only: never send test traffic through a proxy.
export NO_PROXY="127.0.0.1,localhost${NO_PROXY:+,$NO_PROXY}"
export no_proxy="$NO_PROXY"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

need() { command -v "$1" >/dev/null 2>&1; }

apt_updated=
apt_install() {
  if [ -z "$apt_updated" ]; then apt-get update -qq >/dev/null; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

echo "==> checking tools"
need cargo || { echo "cargo is required (rustup toolchain)"; exit 1; }
need openssl || apt_install openssl
need python3 || apt_install python3 python3-pip
# groff renders the man pages (tests/cli_docs.rs); promtool checks the alert rules and dashboard queries;
# buildah builds and runs the container image offline. --no-install-recommends: the prometheus package
# otherwise pulls node-exporter and its collectors.
need groff || apt_install groff-base
need promtool || apt_install --no-install-recommends prometheus
need buildah || apt_install buildah
[ -f /etc/ssl/certs/ca-certificates.crt ] || apt_install ca-certificates
if ! need kubectl; then
  # The kubectl fidelity tests drive the Kubernetes test server with the real kubectl.
  apt_install kubectl || apt_install kubernetes-client || { echo "kubectl is required for the kubectl fidelity tests"; exit 1; }
fi

# ---- Go oracle (issue 10) -------------------------------------------------------------------------------
# The differential tests (tests/differential.rs) judge the validation against a small Go program that runs
# istiod's own start-up check with Go's crypto/x509. Go comes from Debian: golang-1.23-go from
# bookworm-backports (close to the Go istiod is built with), else the distribution's golang-go. The oracle
# uses the standard library only, so nothing is downloaded (GOPROXY=off). The Python `cryptography` package
# generates the corpus cases rcgen can't (SHA-1 signatures, name encodings, explicit-curve keys).
echo "==> Go oracle for the differential tests"
go_bin=/usr/lib/go-1.23/bin/go
if [ ! -x "$go_bin" ]; then
  if ! grep -rqs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d/; then
    echo 'deb http://deb.debian.org/debian bookworm-backports main' >/etc/apt/sources.list.d/bookworm-backports.list
    apt_updated=
  fi
  apt_install golang-1.23-go || true
fi
if [ ! -x "$go_bin" ]; then
  need go || apt_install golang-go
  go_bin="$(command -v go)"
fi
python3 -m pip install -q --disable-pip-version-check cryptography
mkdir -p target/oracle
(cd tests/oracle/istiod_verify && GOTOOLCHAIN=local GOFLAGS=-mod=mod GOPROXY=off GOCACHE="$PWD/../../../target/oracle/gocache" \
  "$go_bin" build -o ../../../target/oracle/istiod-verify .)
export CACERTS_SYNC_ORACLE="$PWD/target/oracle/istiod-verify"
echo "istiod oracle: $("$CACERTS_SYNC_ORACLE" -version)"
# ---- end Go oracle ---------------------------------------------------------------------------------------

echo "==> installing Python packages for the chart tests"
python3 -m pip install -q --disable-pip-version-check -r tests/chart/requirements.txt

echo "==> Rust tests"
# The fault suites append each checked case's outcome here; docs/faults.md must be exactly their table.
fault_log="$PWD/target/fault-cases.log"
rm -f "$fault_log"
CACERTS_SYNC_FAULT_LOG="$fault_log" cargo test --workspace --locked --no-fail-fast

echo "==> docs/faults.md against this run's fault-matrix outcomes"
python3 tests/faults/table.py --check "$fault_log"

echo "==> Helm chart tests (alert rules and dashboard with promtool), docs links"
python3 -m pytest tests/chart tests/docs -q -p no:cacheprovider

# The Dockerfile's build command, then the checks its RUN step makes, then the README's first command with it.
echo "==> the container image's binary: static release build, exactly as the Dockerfile builds it"
target="$(uname -m)-unknown-linux-gnu"
RUSTFLAGS="-C target-feature=+crt-static" AWS_LC_SYS_NO_JITTER_ENTROPY=1 \
  cargo build --release --locked --bin cacerts-sync --target "$target"
bin="target/$target/release/cacerts-sync"
ldd "$bin" 2>&1 | grep -Eq 'not a dynamic executable|statically linked' || { echo "$bin is not static"; exit 1; }
"$bin" --version
out=$(mktemp -d)
"$bin" sync --source dir:examples/sample-ca --target "dir:$out/cacerts"
cmp "$out/cacerts/ca-cert.pem" examples/sample-ca/ca-cert.pem
rm -rf "$out"
echo "static binary: ok ($(du -h "$bin" | cut -f1))"

# No Docker engine runs here; buildah builds the Dockerfile's final stage from that binary, offline.
echo "==> the container image, built and run with buildah"
bash tests/image.sh "$bin"
