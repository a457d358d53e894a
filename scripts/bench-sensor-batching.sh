#!/usr/bin/env bash
# Sensor windows end to end on this machine: the activity recording replayed (looping) as fast as the worker takes
# its windows, through the release agent, its spool and a local Mosquitto (JSON, QoS 1), to a subscriber counting
# the predictions that arrive. Three configurations, in interleaved rounds:
#   single   the shipped classifier, one message per prediction (no [sources.batch]: as before batching)
#   publish  the shipped classifier, 50 predictions to a message ([sources.batch], max_delay_ms 100)
#   batched  publish, plus batch inference: the dynamic-batch variant (models/testing/activity-classifier-batched)
#            runs the windows waiting in the source's queue (64 deep) as one batch
# and bare Session::run of the classifier on one window (`device-agent bench`), the limit.
# Per run: windows/s inferred (health's frames_per_s, the start-up interval left out), predictions/s that arrived at
# the subscriber (over the whole run, start-up and the drain at shutdown included), predictions_unpublished (refused
# by the spool or link), the spool's dropped_predictions (messages deleted over its byte budget), and the sequence
# numbers missing below the highest that arrived (a window inferred whose prediction never came).
# Usage: scripts/bench-sensor-batching.sh. Environment: ROUNDS (3), SECONDS_PER_RUN (20), STRIDE (100, the window:
# how the recording source replays by default), THREADS (1 intra-op thread). Needs mosquitto (scripts/setup.sh).
set -euo pipefail
R="$(cd "$(dirname "$0")/.." && pwd)"
A="${CARGO_TARGET_DIR:-$R/target}/release/device-agent"
export ORT_DYLIB_PATH=${ORT_DYLIB_PATH:-$R/third_party/onnxruntime/x86_64/libonnxruntime.so.1.31.1}
ROUNDS="${ROUNDS:-3}" SECONDS_PER_RUN="${SECONDS_PER_RUN:-20}" STRIDE="${STRIDE:-100}" THREADS="${THREADS:-1}"
CLASSIFIER=$R/models/activity-classifier BATCHED=$R/models/testing/activity-classifier-batched
RECORDING=$R/models/recordings/activity.csv

(cd "$R" && cargo build --release -q -p device-agent)
# shellcheck source=scripts/lib/private-mosquitto.sh
source "$R/scripts/lib/private-mosquitto.sh"
sleep 0.5

# One run of configuration $1: writes $W/<name>-<round>.{health.jsonl,predictions.txt,seconds}.
run() {
  local name=$1 round=$2 model=$CLASSIFIER batch="" queue=8 out="$W/$1-$2" sub health agent
  case "$name" in
    publish) batch=$'[sources.batch]\nmax_predictions = 50\nmax_delay_ms = 100' ;;
    batched) batch=$'[sources.batch]\nmax_predictions = 50\nmax_delay_ms = 100' model=$BATCHED queue=64 ;;
  esac
  rm -rf "$W/spool"
  cat > "$W/a.toml" <<TOML
device_id = "bench"
[onnxruntime]
intra_threads = $THREADS
[mqtt]
port = $port
[health]
interval_secs = 2
[spool]
dir = "$W/spool"
[[sources]]
kind = "csv"
name = "wrist"
model = "$model"
path = "$RECORDING"
loop = true
stride = $STRIDE
queue = $queue
$batch
TOML
  mosquitto_sub -p "$port" -q 1 -t devices/bench/predictions/wrist -F '%p' > "$out.predictions.txt" & sub=$!
  mosquitto_sub -p "$port" -t devices/bench/health -F '%p' > "$out.health.jsonl" & health=$!
  sleep 0.3
  local started=$(date +%s.%N)
  RUST_LOG=warn "$A" run --config "$W/a.toml" & agent=$!
  sleep "$SECONDS_PER_RUN"
  kill -TERM "$agent"; wait "$agent" || true
  python3 -c "print($(date +%s.%N) - $started)" > "$out.seconds"
  sleep 1
  kill "$sub" "$health"; wait "$sub" "$health" 2>/dev/null || true
}

echo "load average at start: $(cat /proc/loadavg)"
for round in $(seq "$ROUNDS"); do
  for name in single publish batched; do
    echo "round $round of $ROUNDS: $name" >&2
    run "$name" "$round"
  done
  "$A" bench -m "$CLASSIFIER" --threads "$THREADS" --seconds 5 "$RECORDING" | awk '/^bare Session::run/ {print $3}' \
    > "$W/bare-$round"
done
echo "load average at end: $(cat /proc/loadavg)"

python3 - "$W" "$ROUNDS" "$SECONDS_PER_RUN" "$STRIDE" "$THREADS" <<'PY'
import json, re, statistics, sys
from pathlib import Path
w, rounds = Path(sys.argv[1]), int(sys.argv[2])
def spread(values, fmt="{:.0f}"):
    values = sorted(values)
    return f"{fmt.format(statistics.median(values))} ({fmt.format(values[0])}-{fmt.format(values[-1])})"
bare = [float((w / f"bare-{r}").read_text()) for r in range(1, rounds + 1)]
print(f"activity classifier, recording replayed looping at full speed, stride {sys.argv[4]}, "
      f"{sys.argv[3]} s per run, {sys.argv[5]} intra-op thread(s), JSON at QoS 1; median (range) over {rounds} rounds")
print(f"bare Session::run windows/s: {spread(bare)}")
print(f"{'config':<9}{'inferred/s':>22}{'÷ bare':>8}{'arrived/s':>22}{'unpublished':>13}{'spool dropped':>15}"
      f"{'missing':>9}")
for name in ["single", "publish", "batched"]:
    inferred, arrived, unpublished, dropped, missing = [], [], [], [], []
    for r in range(1, rounds + 1):
        out = w / f"{name}-{r}"
        reports = [json.loads(l) for l in out.with_suffix(".health.jsonl").read_text().splitlines() if l.strip()]
        sources = [next(s for s in rep["sources"] if s["name"] == "wrist") for rep in reports]
        inferred.append(statistics.mean(s["frames_per_s"] for s in sources[1:]) if len(sources) > 1 else 0.0)
        seconds = float(out.with_suffix(".seconds").read_text())
        seqs = [int(seq) for seq in re.findall(r'"seq":(\d+)', out.with_suffix(".predictions.txt").read_text())]
        arrived.append(len(seqs) / seconds)
        missing.append(max(seqs) + 1 - len(set(seqs)) if seqs else 0)
        unpublished.append(max(s["predictions_unpublished"] for s in sources))
        dropped.append(max((rep["spool"] or {}).get("dropped_predictions", 0) for rep in reports))
    ratio = statistics.median(inferred) / statistics.median(bare)
    print(f"{name:<9}{spread(inferred):>22}{ratio:>8.2f}{spread(arrived):>22}{max(unpublished):>13}{max(dropped):>15}"
          f"{max(missing):>9}")
print("unpublished, spool dropped (spool records: a batch is one) and missing: the most over the rounds")
PY
