#!/usr/bin/env bash
# Builds the agent's OCI image from scratch (no base image is pulled):
#
#   cross/image.sh [--arch amd64|arm64] [--agent BINARY] [--onnxruntime LIBRARY] [--tag NAME]
#
# Defaults: amd64; the release agent of the workspace (amd64: target/release/device-agent, arm64:
# target/aarch64-unknown-linux-gnu/release/device-agent, as cross/build.sh makes them); the ONNX Runtime under
# third_party/onnxruntime/<x86_64|aarch64>/ (scripts/fetch-onnxruntime.sh); tag edge-agent:<version>[-arm64].
#
# The image holds the agent, libonnxruntime, every shared library the two need (their DT_NEEDED entries, resolved
# recursively: readelf, not ldd, so that an arm64 image is built the same way from the cross toolchain's
# libraries), the dynamic loader, CA certificates for MQTT over TLS, and a user `edge-agent` (uid/gid 10001, also
# in group `video`, 44, for cameras). It runs as that user; /var/lib/edge-agent (owned by it) is a volume; the
# config is expected at /etc/edge-agent/agent.toml, mounted read-only. Needs buildah and readelf; root, or
# rootless buildah with subuids. Prints the image's name and size.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
arch=amd64 agent="" ort="" tag=""
while [ "$#" -gt 0 ]; do
  case "$1" in
    --arch) arch="$2"; shift 2 ;;
    --agent) agent="$2"; shift 2 ;;
    --onnxruntime) ort="$2"; shift 2 ;;
    --tag) tag="$2"; shift 2 ;;
    *) echo "cross/image.sh: unknown argument $1 (--arch, --agent, --onnxruntime, --tag)" >&2; exit 2 ;;
  esac
done
version="$(sed -n 's/^version = "\(.*\)"$/\1/p' "$root/Cargo.toml" | head -n1)"
case "$arch" in
  amd64)
    agent="${agent:-$target_dir/release/device-agent}"
    ort="${ort:-$root/third_party/onnxruntime/x86_64/libonnxruntime.so.1.31.1}"
    tag="${tag:-edge-agent:$version}"
    multiarch=x86_64-linux-gnu
    library_dirs=(/lib/x86_64-linux-gnu /usr/lib/x86_64-linux-gnu)
    ;;
  arm64)
    agent="${agent:-$target_dir/aarch64-unknown-linux-gnu/release/device-agent}"
    ort="${ort:-$root/third_party/onnxruntime/aarch64/libonnxruntime.so.1.31.1}"
    tag="${tag:-edge-agent:$version-arm64}"
    multiarch=aarch64-linux-gnu
    # Debian's cross toolchain (cross/setup.sh): libc6-arm64-cross and libstdc++6-arm64-cross.
    library_dirs=(/usr/aarch64-linux-gnu/lib)
    ;;
  *) echo "cross/image.sh: unknown architecture $arch (amd64 or arm64)" >&2; exit 2 ;;
esac
for tool in buildah readelf; do
  command -v "$tool" >/dev/null || { echo "cross/image.sh: $tool is missing (scripts/setup.sh installs it)" >&2; exit 1; }
done
for file in "$agent" "$ort"; do
  [ -f "$file" ] || { echo "cross/image.sh: $file is missing (cross/build.sh, scripts/fetch-onnxruntime.sh)" >&2; exit 1; }
done

rootfs="$(mktemp -d)"
state="$(mktemp -d)"
container=""
cleanup() {
  [ -z "$container" ] || buildah rm "$container" >/dev/null
  rm -rf "$rootfs" "$state"
}
trap cleanup EXIT

# The shared library `name` from the architecture's library directories.
find_library() {
  local dir
  for dir in "${library_dirs[@]}"; do
    [ -e "$dir/$1" ] && { echo "$dir/$1"; return; }
  done
  echo "cross/image.sh: $1 (needed by the agent or ONNX Runtime) is not in ${library_dirs[*]}" >&2
  exit 1
}

# Copies every library `elf` needs, recursively, into the image's /lib/<multiarch>/, under its DT_NEEDED name.
copy_needed() {
  local name
  for name in $(readelf -d "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]$/\1/p'); do
    [ -e "$rootfs/lib/$multiarch/$name" ] && continue
    cp -L "$(find_library "$name")" "$rootfs/lib/$multiarch/$name"
    copy_needed "$rootfs/lib/$multiarch/$name"
  done
}

mkdir -p "$rootfs"/{usr/bin,usr/lib/edge-agent,"lib/$multiarch",etc/edge-agent,etc/ssl/certs,tmp}
chmod 1777 "$rootfs/tmp"
cp "$agent" "$rootfs/usr/bin/device-agent"
cp -L "$ort" "$rootfs/usr/lib/edge-agent/$(basename "$ort")"
copy_needed "$rootfs/usr/bin/device-agent"
copy_needed "$rootfs/usr/lib/edge-agent/$(basename "$ort")"
# The dynamic loader, at the path the agent's ELF header names.
interpreter="$(readelf -l "$agent" | sed -n 's/.*Requesting program interpreter: \(.*\)\]$/\1/p')"
mkdir -p "$rootfs$(dirname "$interpreter")"
cp -L "$(find_library "$(basename "$interpreter")")" "$rootfs$interpreter"
cp -L /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
printf 'root:x:0:0:root:/root:/sbin/nologin\nedge-agent:x:10001:10001:edge-agent:/var/lib/edge-agent:/sbin/nologin\n' \
  >"$rootfs/etc/passwd"
printf 'root:x:0:\nvideo:x:44:edge-agent\nedge-agent:x:10001:\n' >"$rootfs/etc/group"
chmod 0750 "$state"

container="$(buildah from scratch)"
buildah copy --quiet "$container" "$rootfs" / >/dev/null
# The state directory, owned by the agent's user: a named volume mounted there starts as a copy of it.
buildah copy --quiet --chown 10001:10001 "$container" "$state" /var/lib/edge-agent >/dev/null
labels=(--label "org.opencontainers.image.title=edge-agent"
  --label "org.opencontainers.image.description=Edge inference agent: ONNX Runtime in, MQTT out"
  --label "org.opencontainers.image.version=$version"
  --label "org.opencontainers.image.licenses=Apache-2.0"
  --label "org.opencontainers.image.revision=$(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)")
[ -z "${EDGE_IMAGE_SOURCE:-}" ] || labels+=(--label "org.opencontainers.image.source=$EDGE_IMAGE_SOURCE")
buildah config --os linux --arch "$arch" "${labels[@]}" \
  --env "ORT_DYLIB_PATH=/usr/lib/edge-agent/$(basename "$ort")" \
  --env RUST_LOG=info --env MALLOC_TRIM_THRESHOLD_=1048576 \
  --user 10001:10001 --workingdir /var/lib/edge-agent --volume /var/lib/edge-agent \
  --stop-signal SIGTERM \
  --entrypoint '["/usr/bin/device-agent"]' --cmd '["run", "--config", "/etc/edge-agent/agent.toml"]' \
  "$container"
buildah commit --quiet --rm "$container" "$tag" >/dev/null
container=""
echo "$tag: $(du -sb "$rootfs" | cut -f1) bytes uncompressed ($arch)"
