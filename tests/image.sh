#!/usr/bin/env bash
# Builds the shipped Dockerfile with buildah, offline (no registry, no daemon), and runs the image for real:
#   tests/image.sh target/x86_64-unknown-linux-gnu/release/cacerts-sync
# The static binary must be built first (tests/run.sh does). It goes into target/image/ with the host's CA
# bundle, and the Dockerfile's `prebuilt` stage feeds the same final stage `docker build .` produces.
# Checks: `--version` and the README's first command (sync of examples/sample-ca into a mounted directory)
# inside the image, the files it writes belong to 65532 (the image's numeric non-root user), the labels.
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${1:?usage: tests/image.sh PATH-TO-STATIC-BINARY}"

mkdir -p target/image
cp "$bin" target/image/cacerts-sync
cp /etc/ssl/certs/ca-certificates.crt target/image/ca-certificates.crt

work=$(mktemp -d)
ctr=
cleanup() {
  if [ -n "$ctr" ]; then buildah "${store[@]}" rm "$ctr" >/dev/null 2>&1 || true; fi
  # vfs layers are plain directories; chroot isolation leaves nothing mounted.
  rm -rf "$work"
}
trap cleanup EXIT
# A private store, so the suite never touches (or depends on) the machine's containers storage.
store=(--root "$work/storage" --runroot "$work/run" --storage-driver vfs)
image=localhost/cacerts-sync:test
version=$(grep -m1 '^version' Cargo.toml | cut -d'"' -f2)

buildah "${store[@]}" build --quiet --isolation chroot --build-arg BINARY_FROM=prebuilt \
  --build-arg VERSION="$version" -t "$image" . >/dev/null

user=$(buildah "${store[@]}" inspect --type image --format '{{.OCIv1.Config.User}}' "$image")
[ "$user" = "65532:65532" ] || { echo "image user is '$user', expected 65532:65532"; exit 1; }
# Go template output (buildah 1.28 has no `json` function): [a b] for a list, map[k:v ...] for a map.
entry=$(buildah "${store[@]}" inspect --type image --format '{{.OCIv1.Config.Entrypoint}}' "$image")
[ "$entry" = '[/usr/local/bin/cacerts-sync]' ] || { echo "entrypoint is $entry"; exit 1; }
labels=$(buildah "${store[@]}" inspect --type image --format '{{.OCIv1.Config.Labels}}' "$image")
for label in title description source licenses "version:$version"; do
  grep -q "org.opencontainers.image.$label" <<<"$labels" || { echo "label $label missing: $labels"; exit 1; }
done

ctr=$(buildah "${store[@]}" from "$image")
run() { buildah "${store[@]}" run --isolation chroot "$@"; }
# `buildah run` runs the given command as the image's USER, like a container runtime does.
got=$(run "$ctr" -- /usr/local/bin/cacerts-sync --version)
[ "$got" = "cacerts-sync $version" ] || { echo "--version said '$got'"; exit 1; }

out="$work/out"
mkdir -m 0777 "$out"
run -v "$PWD/examples/sample-ca:/sample:ro" -v "$out:/out" "$ctr" -- \
  /usr/local/bin/cacerts-sync sync --source dir:/sample --target dir:/out/cacerts
for f in ca-cert.pem ca-key.pem cert-chain.pem root-cert.pem; do
  cmp "$out/cacerts/$f" "examples/sample-ca/$f"
done
owner=$(stat -c %u:%g "$out/cacerts/ca-cert.pem")
[ "$owner" = "65532:65532" ] || { echo "the image wrote as $owner, not as 65532:65532"; exit 1; }

buildah "${store[@]}" push --quiet "$image" "oci-archive:$work/image.tar" >/dev/null
archive=$(stat -c %s "$work/image.tar")
unpacked=$(buildah "${store[@]}" images --format '{{.Size}}' "$image")
echo "image: ok (runs as $user; $unpacked unpacked, OCI archive $(awk -v b="$archive" 'BEGIN { printf "%.1f MB", b / 1e6 }') with gzip layers)"
