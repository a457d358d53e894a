#!/usr/bin/env bash
# The ARM and packaging part of CI (scripts/test.sh runs it after the x86_64 suite), idempotent:
#   1. cross/setup.sh: cross gcc, qemu-user, Rust targets, the aarch64 ONNX Runtime
#   2. the release agent for aarch64 (checked under 7 MB)
#   3. the runtime crate's tests for aarch64, run under qemu-aarch64 (the cargo runner in .cargo/config.toml)
#   4. the release agent for armv7 (no ONNX Runtime exists for it in any registry, so it is built, and its
#      error without one is tested, but it runs no model)
#   5. the packages: .deb and .tar.gz for amd64 and arm64 (scripts/package.sh)
#   6. the tests that need those artifacts: tests/tests/aarch64.rs (the aarch64 agent under qemu against
#      Mosquitto, compared with the x86_64 agent) and tests/tests/package.rs (install into a fresh root, upgrade,
#      run --check); `cargo test --workspace` does not build them (feature `arm-artifacts`).
# Each step prints its wall time.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
target_dir="${CARGO_TARGET_DIR:-$root/target}"

step() {
  local name="$1" start=$SECONDS
  shift
  echo "==> $name"
  "$@"
  echo "==> $name: $((SECONDS - start)) s"
}

export EDGE_CROSS_NO_SETUP=1
# The x86_64 reference side of the tests (and the amd64 package check) loads the x86_64 library.
export ORT_DYLIB_PATH="${ORT_DYLIB_PATH:-$root/third_party/onnxruntime/x86_64/libonnxruntime.so.1.31.1}"
step "cross setup" cross/setup.sh
step "aarch64 release agent" cross/build.sh aarch64
step "runtime and packaging tests for aarch64 under qemu" cargo test --locked -p edge-runtime -p edge-packaging --target aarch64-unknown-linux-gnu
step "armv7 release agent" cross/build.sh armv7
step "packages (amd64, arm64)" scripts/package.sh amd64 arm64
# The x86_64 reference agent the tests compare with (target/debug; scripts/test.sh builds it too).
step "x86_64 agent (debug)" cargo build --locked -p device-agent
step "aarch64 under qemu + package tests" env \
  EDGE_AARCH64_AGENT="$target_dir/aarch64-unknown-linux-gnu/release/device-agent" \
  EDGE_ARMV7_AGENT="$target_dir/armv7-unknown-linux-gnueabihf/release/device-agent" \
  EDGE_PACKAGE_DIR="$target_dir/package" \
  cargo test --locked -p integration-tests --features arm-artifacts --test aarch64 --test package -- --test-threads 2 --nocapture
