#!/usr/bin/env bash
# Installs, idempotently, what cross-compiling the agent for ARM boards and running it here under emulation
# needs on Debian 12 / Ubuntu 22.04+ with rustup Rust. Run as root (or with sudo available).
#   - Debian's cross gcc (the linker; `cc` also uses it for ring's C code) and the target glibc/libstdc++ that
#     qemu-user loads the ARM binaries with (ONNX Runtime needs libstdc++): gcc-aarch64-linux-gnu
#     libc6-dev-arm64-cross libstdc++6-arm64-cross, gcc-arm-linux-gnueabihf libc6-dev-armhf-cross; the cross g++
#     (g++-aarch64-linux-gnu, g++-arm-linux-gnueabihf) for OpenH264's C++ (the rtsp source's decoder)
#   - qemu-user (qemu-aarch64, qemu-arm); binfmt_misc is not needed, cross/qemu-run.sh calls qemu directly
#   - the Rust targets aarch64-unknown-linux-gnu and armv7-unknown-linux-gnueabihf
#   - the aarch64 libonnxruntime from the onnxruntime wheel on PyPI (scripts/fetch-onnxruntime.sh aarch64)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
"$root/scripts/apt-install.sh" gcc-aarch64-linux-gnu g++-aarch64-linux-gnu libc6-dev-arm64-cross \
  libstdc++6-arm64-cross gcc-arm-linux-gnueabihf g++-arm-linux-gnueabihf libc6-dev-armhf-cross qemu-user
installed="$(rustup target list --installed)"
for target in aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf; do
  grep -qx "$target" <<<"$installed" || rustup target add "$target"
done
"$root/scripts/fetch-onnxruntime.sh" aarch64
