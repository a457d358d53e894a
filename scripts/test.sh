#!/usr/bin/env bash
# Sets up (idempotently) and runs the whole test suite.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
scripts/setup.sh
export ORT_DYLIB_PATH="$root/third_party/onnxruntime/x86_64/libonnxruntime.so.1.31.1"
# Gates: formatting (rustfmt.toml), lints (warnings are errors), licences and sources of every dependency.
rustup component add rustfmt clippy >/dev/null 2>&1 || true
cargo fmt --all --check
cargo clippy --locked --workspace --all-targets -- -D warnings
command -v cargo-deny >/dev/null || cargo install --locked --no-default-features cargo-deny --version 0.20.2
cargo deny --locked check licenses bans sources
# The end-to-end tests start the agent and edgectl binaries; build them first so they find them.
cargo build --locked -p device-agent -p edge-operator
cargo test --locked --workspace
# ARM: the aarch64 agent under qemu, the runtime's tests for aarch64, armv7, the packages (EDGE_SKIP_ARM=1 skips).
[ -n "${EDGE_SKIP_ARM:-}" ] || scripts/test-arm.sh
