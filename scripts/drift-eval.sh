#!/usr/bin/env bash
# The model monitor evaluated on the shipped data (device-agent/src/monitor/eval.rs) at full length: false alarms
# per 10,000 windows on unchanged streams, and the detection and clearing delays of each shift (gain, offset, noise
# and a stuck channel on the sensor recordings; brightness, blur and noise on augmented frames), in release.
# Prints the tables that docs/operations.md quotes.
#
#   scripts/drift-eval.sh [WINDOWS [REPEATS [FRAMES]]]    defaults 10000 windows, 20 runs per shift, 1000 frames
#
# Idempotent: fetches libonnxruntime (scripts/fetch-onnxruntime.sh) if it is missing.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
for value in "${1:-}" "${2:-}" "${3:-}"; do
  [[ -z "$value" || "$value" =~ ^[0-9]+$ ]] || { echo "WINDOWS, REPEATS and FRAMES are counts, not '$value'" >&2; exit 2; }
done
library="$root/third_party/onnxruntime/x86_64/libonnxruntime.so.1.31.1"
[[ -f "$library" ]] || scripts/fetch-onnxruntime.sh x86_64
export ORT_DYLIB_PATH="$library"
export DRIFT_EVAL_WINDOWS="${1:-10000}" DRIFT_EVAL_REPEATS="${2:-20}" DRIFT_EVAL_FRAMES="${3:-1000}"
# One test thread: the tables print in order.
cargo test --release --locked -p device-agent --bins monitor::eval -- --nocapture --test-threads 1
