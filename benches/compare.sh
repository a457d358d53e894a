#!/usr/bin/env bash
# The agent against its limit and against the Python pipeline a user would otherwise write, on the shipped bundles
# and inputs, in interleaved rounds. Per round and model:
#   bare     `device-agent bench`'s bare Session::run with the agent's session settings, on tensors preprocessed
#            beforehand;
#   agent    the release agent end to end: one source feeding the model (image files looped at twice the bare rate,
#            the newest frame winning; a recording replayed as fast as the worker takes windows), predictions as
#            JSON at QoS 1 to a private Mosquitto, counted as they arrive; its peak RSS is VmHWM just before it stops;
#   python   benches/python/reference_pipeline.py (onnxruntime, Pillow, numpy, paho-mqtt; pinned in
#            benches/python/requirements.txt) on the same inputs, publishing the same way; peak RSS is ru_maxrss.
# frames/s = predictions that arrived in SECONDS after the first / SECONDS. Every prediction's top-1 class (faces
# detected, anomaly flag) is checked against models/references/. Prints the table: median [min-max] over the rounds.
#
#   benches/compare.sh [MODEL...]   image-classifier face-detector activity-classifier vibration-anomaly (default all)
#
# Environment: ROUNDS (3), SECONDS (10, per measurement), THREADS (1: ONNX Runtime intra-op threads everywhere),
# ONNXRUNTIME_TOML (lines added to the agent's [onnxruntime] table), SOURCE_TOML (lines added to its source),
# BENCH_ARGS (added to `device-agent bench`). The Python venv is made under target/compare/ on first use; the
# release agent is built if needed. Needs mosquitto and mosquitto_sub (scripts/setup.sh).
set -euo pipefail
R="$(cd "$(dirname "$0")/.." && pwd)"
A="${CARGO_TARGET_DIR:-$R/target}/release/device-agent"
V="$R/target/compare"
export ORT_DYLIB_PATH="${ORT_DYLIB_PATH:-$R/third_party/onnxruntime/x86_64/libonnxruntime.so.1.31.1}"
# Bash's own $SECONDS counts from the shell's start: only a SECONDS in the environment is the user's.
SECONDS_PER_RUN=$(printenv SECONDS || echo 10)
ROUNDS="${ROUNDS:-3}" THREADS="${THREADS:-1}"
MODELS=("$@")
[ ${#MODELS[@]} -gt 0 ] || MODELS=(image-classifier face-detector activity-classifier vibration-anomaly)

(cd "$R" && cargo build --release -q -p device-agent)
PY=$V/venv/bin/python
if ! "$PY" -c 'import onnxruntime, PIL, numpy, paho.mqtt' 2>/dev/null; then
  python3 -m venv "$V/venv"
  "$V/venv/bin/pip" install -q -r "$R/benches/python/requirements.txt"
fi
RESULTS="$PY $R/benches/python/compare_results.py"

# shellcheck source=scripts/lib/private-mosquitto.sh
source "$R/scripts/lib/private-mosquitto.sh"

inputs_of() {
  case "$1" in
    activity-classifier) echo "$R/models/recordings/activity.csv" ;;
    vibration-anomaly) echo "$R/models/recordings/vibration.csv" ;;
    *) echo "$R"/models/frames/*.jpg "$R"/models/frames/*.png ;;
  esac
}

# Starts counting what arrives on the topics given; sets $sub.
subscribe() {
  local log=$1; shift
  local topics=(); for t in "$@"; do topics+=(-t "$t"); done
  mosquitto_sub -p "$port" -q 1 "${topics[@]}" -F '%U %t %p' > "$log" & sub=$!; pids+=("$sub")
  sleep 0.3
}

# Waits for the first prediction on the log, then SECONDS and a margin for the last health report.
measure_window() {
  local log=$1 waited=0
  until grep -q -m1 -v '/health ' "$log" 2>/dev/null; do
    sleep 0.05; waited=$((waited + 1))
    [ "$waited" -lt 600 ] || { echo "no prediction within 30 s; see $log" >&2; exit 1; }
  done
  sleep "$(python3 -c "print($SECONDS_PER_RUN + 1.5)")"
}

# Stops a process this script started, and forgets it.
stop() {
  kill -TERM "$1"; wait "$1" || true
  local kept=() p; for p in "${pids[@]}"; do [ "$p" = "$1" ] || kept+=("$p"); done; pids=("${kept[@]}")
}

# The agent end to end on $model, fed at $rate frames/s (image models): count's JSON plus peak_rss_bytes in
# $W/agent.json.
agent_run() {
  local model=$1 rate=$2 log=$W/agent.log inputs source agent hwm
  read -r -a inputs <<< "$(inputs_of "$model")"
  if [ "$model" = activity-classifier ] || [ "$model" = vibration-anomaly ]; then
    source="kind = \"csv\"
path = \"${inputs[0]}\"
rate_hz = 0.0
loop = true"
  else
    source="kind = \"images\"
files = [$(printf '"%s", ' "${inputs[@]}")]
rate_fps = $rate
loop = true"
  fi
  cat > "$W/agent.toml" <<TOML
device_id = "bench"
[onnxruntime]
intra_threads = $THREADS
${ONNXRUNTIME_TOML:-}
[mqtt]
port = $port
[health]
interval_secs = 1
[[sources]]
name = "bench"
model = "$R/models/$model"
$source
${SOURCE_TOML:-}
TOML
  subscribe "$log" devices/bench/predictions/bench devices/bench/health
  RUST_LOG=warn "$A" run --config "$W/agent.toml" & agent=$!; pids+=("$agent")
  measure_window "$log"
  hwm=$(awk '/^VmHWM:/ {print $2 * 1024}' "/proc/$agent/status")
  stop "$agent"; stop "$sub"
  $RESULTS count --log "$log" --seconds "$SECONDS_PER_RUN" --bundle "$model" --models "$R/models" \
    | python3 -c "import json, sys; r = json.load(sys.stdin); r['peak_rss_bytes'] = $hwm; print(json.dumps(r))" \
    > "$W/agent.json"
}

# The Python pipeline on $model: count's JSON plus its own figures (frames, peak_rss_bytes) in $W/python.json.
python_run() {
  local model=$1 log=$W/python.log inputs python
  read -r -a inputs <<< "$(inputs_of "$model")"
  subscribe "$log" "bench/python/$model"
  "$PY" "$R/benches/python/reference_pipeline.py" --bundle "$R/models/$model" --threads "$THREADS" \
    --port "$port" --topic "bench/python/$model" "${inputs[@]}" > "$W/python.out" & python=$!; pids+=("$python")
  measure_window "$log"
  stop "$python"; stop "$sub"
  $RESULTS count --log "$log" --seconds "$SECONDS_PER_RUN" --bundle "$model" --models "$R/models" \
    | python3 -c "import json, sys; r = json.load(sys.stdin); r |= json.load(open(sys.argv[1])); print(json.dumps(r))" \
    "$W/python.out" > "$W/python.json"
}

: > "$V/results.jsonl"
load_start=$(cat /proc/loadavg)
for round in $(seq "$ROUNDS"); do
  for model in "${MODELS[@]}"; do
    echo "round $round of $ROUNDS: $model" >&2
    read -r -a inputs <<< "$(inputs_of "$model")"
    # shellcheck disable=SC2086 # BENCH_ARGS is a list of arguments
    "$A" bench -m "$R/models/$model" --threads "$THREADS" --seconds "$SECONDS_PER_RUN" ${BENCH_ARGS:-} \
      "${inputs[@]}" > "$V/bench-$model.txt"
    bare=$(awk '/^bare, agent.s settings/ {print $4}' "$V/bench-$model.txt")
    bare_ort=$(awk '/^bare, ORT defaults/ {print $4}' "$V/bench-$model.txt")
    agent_run "$model" "$(python3 -c "print(round(2 * $bare, 1))")"
    python_run "$model"
    echo "{\"model\":\"$model\",\"round\":$round,\"bare_fps\":$bare,\"bare_ort_defaults_fps\":$bare_ort," \
      "\"agent\":$(cat "$W/agent.json"),"  \
      "\"python\":$(cat "$W/python.json")}" >> "$V/results.jsonl"
  done
done
load_end=$(cat /proc/loadavg)

echo
echo "benches/compare.sh: $ROUNDS interleaved rounds of $SECONDS_PER_RUN s, $THREADS intra-op thread(s), JSON at QoS 1"
echo "load average at start: $load_start; at end: $load_end"
echo "agent session settings: [onnxruntime] intra_threads = $THREADS ${ONNXRUNTIME_TOML:-(the rest: defaults)}"
for model in "${MODELS[@]}"; do # what bench says before its table: the model and the session's settings
  sed -n '/frames\/s/q; s/^/bench, '"$model"': /p' "$V/bench-$model.txt"
done
echo
$RESULTS table "$V/results.jsonl"
