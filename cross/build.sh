#!/usr/bin/env bash
# Builds the release agent for ARM boards (and x86_64) in one command:
#
#   cross/build.sh [aarch64] [armv7] [x86_64]      (default: aarch64)
#
# Output: target/<triple>/release/device-agent (x86_64: target/release/device-agent), stripped, opt-level "s",
# fat LTO, panic=abort (the workspace's release profile). The linkers come from .cargo/config.toml.
# Then prints each binary's size and checks the aarch64 one against the 8 MB budget (ONNX Runtime excluded:
# it is loaded at run time, see cross/README.md).
#
# EDGE_GLIBC=2.28 links the ARM agents against that glibc instead of the build machine's (Debian 12: 2.36, so
# the agent needs >= 2.34), with cargo-zigbuild and zig from PyPI (installed into target/zig-tools on first use).
# Same output path, so `EDGE_PACKAGE_NO_BUILD=1 scripts/package.sh arm64` packages it.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
[ -n "${EDGE_CROSS_NO_SETUP:-}" ] || cross/setup.sh
target_dir="${CARGO_TARGET_DIR:-$root/target}"
[ "$#" -gt 0 ] || set -- aarch64
budget=8000000
for arch in "$@"; do
  case "$arch" in
    aarch64) triple=aarch64-unknown-linux-gnu ;;
    armv7)   triple=armv7-unknown-linux-gnueabihf ;;
    x86_64)  triple="" ;;
    *) echo "cross/build.sh: unknown architecture $arch (aarch64, armv7 or x86_64)" >&2; exit 2 ;;
  esac
  if [ -n "$triple" ] && [ -n "${EDGE_GLIBC:-}" ]; then
    tools="$target_dir/zig-tools"
    [ -x "$tools/bin/cargo-zigbuild" ] || python3 -m pip install --quiet --target "$tools" ziglang cargo-zigbuild
    PATH="$tools/bin:$PATH" PYTHONPATH="$tools${PYTHONPATH:+:$PYTHONPATH}" \
      cargo zigbuild --locked --release -p device-agent --target "$triple.$EDGE_GLIBC"
    binary="$target_dir/$triple/release/device-agent"
  elif [ -n "$triple" ]; then
    cargo build --locked --release -p device-agent --target "$triple"
    binary="$target_dir/$triple/release/device-agent"
  else
    cargo build --locked --release -p device-agent
    binary="$target_dir/release/device-agent"
  fi
  size="$(stat -c %s "$binary")"
  echo "$arch: $binary $size bytes"
  if [ "$arch" = aarch64 ] && [ "$size" -ge "$budget" ]; then
    echo "cross/build.sh: the aarch64 agent is $size bytes, over the $budget-byte budget" >&2
    exit 1
  fi
done
