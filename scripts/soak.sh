#!/usr/bin/env bash
# The soak: the release agent against a private Mosquitto for MINUTES (default 10), with two sources predicting
# steadily, the broker stopped for 30 s every two minutes, a hostile inbound message every 15 s and the agent's
# RSS sampled every 5 s (tests/src/bin/soak/). Prints predictions produced / received / duplicated / lost,
# reconnects, the hostile messages and the agent's memory; exits 1 if the agent died or its RSS grew by more than
# 32 MiB after the warm-up.
#
#   scripts/soak.sh [MINUTES]      at least 2
#
# Idempotent: runs scripts/setup.sh (Mosquitto, libonnxruntime), then builds the agent and the soak in release.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
minutes="${1:-10}"
[[ "$minutes" =~ ^[0-9]+([.][0-9]+)?$ ]] || { echo "MINUTES must be a number, not '$minutes'" >&2; exit 2; }
scripts/setup.sh
export ORT_DYLIB_PATH="$root/third_party/onnxruntime/x86_64/libonnxruntime.so.1.31.1"
cargo build --release --locked -p device-agent -p integration-tests --bin device-agent --bin soak
# The soak finds the agent in the same target directory ($CARGO_TARGET_DIR or target/).
exec "${CARGO_TARGET_DIR:-$root/target}/release/soak" "$minutes"
