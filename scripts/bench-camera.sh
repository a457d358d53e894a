#!/usr/bin/env bash
# Camera frames on this machine: per-frame decode and preprocess of the release agent (`device-agent
# camera-bench`) against the same work in Python with OpenCV (benches/python/camera_pipeline.py), in interleaved
# rounds, for a 1080p H.264 stream (to the classifier's 224x224 centre crop and the face detector's 640x480
# letterbox) and 1080p MJPEG parts (both models; the agent also with full-size JPEG decoding); then frames/s
# the agent sustains end to end on the face detector from a live 30 fps RTSP stream, against bare Session::run.
# Usage: scripts/bench-camera.sh [all|micro|e2e]. Environment: ROUNDS (default 5), FRAMES (per H.264 run, default
# 300: the whole 10 s file), JPEG_FRAMES (per MJPEG run, default 150), E2E_SECONDS (default 30).
# Needs ffmpeg, mosquitto and GStreamer's RTSP server (scripts/setup.sh); the Python venv and the media are made
# under target/bench-camera/ on first use and kept.
set -euo pipefail
R="$(cd "$(dirname "$0")/.." && pwd)"
A="${CARGO_TARGET_DIR:-$R/target}/release/device-agent"
V="$R/target/bench-camera"
export ORT_DYLIB_PATH=$R/third_party/onnxruntime/x86_64/libonnxruntime.so.1.31.1
mode="${1:-all}"
ROUNDS="${ROUNDS:-5}" FRAMES="${FRAMES:-300}" JPEG_FRAMES="${JPEG_FRAMES:-150}" E2E_SECONDS="${E2E_SECONDS:-30}"
CLASSIFIER=$R/models/image-classifier FACES=$R/models/face-detector

(cd "$R" && cargo build --release -q -p device-agent)
mkdir -p "$V"
PY=$V/venv/bin/python
if ! "$PY" -c 'import cv2, numpy' 2>/dev/null; then
  python3 -m venv "$V/venv"
  "$V/venv/bin/pip" install -q opencv-python-headless numpy
fi

# A camera-like stream: a slow pan over people.jpg scaled up, 1080p 30 fps, 10 s, a key frame every 30 frames,
# no B-frames, 6 Mbit/s.
H264=$V/pan-1080p.h264
PAN="scale=2880:1620:force_original_aspect_ratio=increase,crop=2880:1620"
PAN+=",crop=1920:1080:x='(iw-ow)*t/10':y='(ih-oh)*t/10',format=yuv420p"
[ -s "$H264" ] || ffmpeg -hide_banner -loglevel error -y -loop 1 -framerate 30 -i "$R/models/frames/people.jpg" -t 10 \
  -vf "$PAN" \
  -c:v libx264 -preset medium -profile:v high -x264-params keyint=30:min-keyint=30:scenecut=0:bframes=0 \
  -b:v 6M -maxrate 6M -bufsize 12M -f h264 "$H264"
# MJPEG parts: every shipped frame cropped and scaled to 1080p, quality 85.
if [ ! -d "$V/jpeg" ]; then
  mkdir -p "$V/jpeg.part"
  "$PY" - "$R/models/frames" "$V/jpeg.part" <<'PY'
import pathlib, sys
import cv2
source, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
for path in sorted([*source.glob("*.jpg"), *source.glob("*.png")]):
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    h, w = image.shape[:2]
    scale = max(1920 / w, 1080 / h)
    image = cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_CUBIC)
    top, left = (image.shape[0] - 1080) // 2, (image.shape[1] - 1920) // 2
    frame = image[top:top + 1080, left:left + 1920]
    cv2.imwrite(str(out / f"{path.stem}.jpg"), frame, [cv2.IMWRITE_JPEG_QUALITY, 85])
PY
  mv "$V/jpeg.part" "$V/jpeg"
fi
JPEGS=("$V"/jpeg/*.jpg)
# The RTSP server's frames: 2 s of the pan, 4:3 cropped, 640x480 PNGs numbered from 0 (multifilesrc's start).
if [ ! -d "$V/rtsp" ]; then
  mkdir -p "$V/rtsp.part"
  ffmpeg -hide_banner -loglevel error -y -i "$H264" -frames:v 60 -vf "crop=1440:1080,scale=640:480" \
    -start_number 0 "$V/rtsp.part/%03d.png"
  mv "$V/rtsp.part" "$V/rtsp"
fi

micro() {
  local results=$V/micro.txt round name model
  : > "$results"
  # name, model, then the agent's input arguments; the Python pipeline reads the same input.
  local cases=(
    "h264-classifier|$CLASSIFIER|h264"
    "h264-faces|$FACES|h264"
    "mjpeg-classifier|$CLASSIFIER|jpeg"
    "mjpeg-faces|$FACES|jpeg"
  )
  for round in $(seq "$ROUNDS"); do
    echo "round $round of $ROUNDS" >&2
    for entry in "${cases[@]}"; do
      IFS='|' read -r name model kind <<< "$entry"
      if [ "$kind" = h264 ]; then
        echo "$name agent $("$A" camera-bench -m "$model" --frames "$FRAMES" --h264 "$H264")" >> "$results"
        echo "$name python $("$PY" "$R/benches/python/camera_pipeline.py" --manifest "$model/manifest.toml" \
          --frames "$FRAMES" --video "$H264")" >> "$results"
      else
        echo "$name agent $("$A" camera-bench -m "$model" --frames "$JPEG_FRAMES" --jpeg "${JPEGS[@]}")" >> "$results"
        echo "$name agent-full-jpeg $("$A" camera-bench -m "$model" --frames "$JPEG_FRAMES" --full-jpeg \
          --jpeg "${JPEGS[@]}")" >> "$results"
        echo "$name python $("$PY" "$R/benches/python/camera_pipeline.py" --manifest "$model/manifest.toml" \
          --frames "$JPEG_FRAMES" --jpegs "${JPEGS[@]}")" >> "$results"
      fi
    done
  done
  python3 - "$results" <<'PY'
import json, statistics, sys
runs = {}
for line in open(sys.argv[1]):
    case, impl, result = line.split(" ", 2)
    runs.setdefault((case, impl), []).append(json.loads(result))
print("per-frame µs, median of the rounds' medians [min-max over rounds]; total = decode + preprocess medians")
print(f"{'case':<18}{'pipeline':<15}{'decode':>20}{'preprocess':>20}{'total':>20}{'agent/python':>14}")
def cell(values):
    return f"{statistics.median(values):.0f} [{min(values):.0f}-{max(values):.0f}]"
totals = {}
for (case, impl), results in runs.items():
    decode = [r["decode_us"]["median"] for r in results]
    preprocess = [r["preprocess_us"]["median"] for r in results]
    totals[case, impl] = [d + p for d, p in zip(decode, preprocess)]
for (case, impl), results in runs.items():
    decode = [r["decode_us"]["median"] for r in results]
    preprocess = [r["preprocess_us"]["median"] for r in results]
    python_total = statistics.median(totals[case, "python"])
    ratio = "" if impl == "python" else f"{statistics.median(totals[case, impl]) / python_total:.2f}"
    print(f"{case:<18}{impl:<15}{cell(decode):>20}{cell(preprocess):>20}{cell(totals[case, impl]):>20}{ratio:>14}")
PY
}

e2e() {
  local W pids=() port rport
  W=$(mktemp -d); chmod 755 "$W" # Mosquitto drops to its own user when started as root.
  trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$W"' RETURN
  free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
  port=$(free_port) rport=$(free_port)
  printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\n' "$port" > "$W/m.conf"
  "$(command -v mosquitto || echo /usr/sbin/mosquitto)" -c "$W/m.conf" > "$W/m.log" 2>&1 & pids+=($!)
  mkfifo "$W/rtsp.out"
  /usr/bin/python3 "$R/tests/rtsp/server.py" "$rport" "$V/rtsp/%03d.png" --fps 30 > "$W/rtsp.out" 2>&1 & pids+=($!)
  read -r -t 20 ready < "$W/rtsp.out" && [ "$ready" = ready ] || { echo "the RTSP server did not start" >&2; return 1; }
  cat "$W/rtsp.out" > /dev/null & pids+=($!)
  cat > "$W/a.toml" <<TOML
device_id = "bench"
[onnxruntime]
intra_threads = 1
[mqtt]
port = $port
[health]
interval_secs = 5
[[sources]]
kind = "rtsp"
name = "cam"
model = "$FACES"
url = "rtsp://127.0.0.1:$rport/cam"
TOML
  mosquitto_sub -p "$port" -t devices/bench/health -F '%p' > "$W/health.jsonl" & pids+=($!)
  RUST_LOG=warn "$A" run --config "$W/a.toml" & pids+=($!)
  sleep "$E2E_SECONDS"
  kill -TERM "${pids[-1]}"; wait "${pids[-1]}" || true
  echo "bare Session::run on a 640x480 frame of the stream, 1 intra-op thread, 10 s:" >&2
  "$A" bench -m "$FACES" --threads 1 --seconds 10 "$V/rtsp/000.png" > "$W/bare.txt"
  python3 - "$W/health.jsonl" "$W/bare.txt" <<'PY'
import json, statistics, sys
# The first report covers start-up (session load, RTSP connect): left out.
reports = [json.loads(line) for line in open(sys.argv[1]) if line.strip()][1:]
if not reports:
    sys.exit("no health report after the first")
bare = next(float(line.split()[2]) for line in open(sys.argv[2]) if line.startswith("bare Session::run"))
source = [next(s for s in r["sources"] if s["name"] == "cam") for r in reports]
camera = [next(c for c in r["cameras"] if c["source"] == "cam") for r in reports]
fps = statistics.mean(s["frames_per_s"] for s in source)
keys = ("received_per_s", "decoded_per_s", "inferred_per_s", "replaced_per_s")
rates = {k: statistics.mean(c[k] for c in camera) for k in keys}
print(f"end to end, face detector, 640x480 H.264 at 30 fps over RTSP, {len(reports)} health intervals of 5 s:")
print(f"  agent frames/s {fps:.1f} (bare Session::run {bare:.1f}): ratio {fps / bare:.3f}")
print("  camera " + ", ".join(f"{k} {v:.1f}" for k, v in rates.items())
      + f"; decoder {camera[-1]['decoder']}, {camera[-1]['width']}x{camera[-1]['height']}")
latency = source[-1]["latency"]
print(f"  agent cpu_percent {statistics.mean(r['cpu_percent'] for r in reports):.0f}, latency p50 ms: "
      + ", ".join(f"{k} {latency[k]['p50_us'] / 1000:.2f}" for k in ("decode", "preprocess", "inference", "total")))
PY
}

case "$mode" in
  all) micro; e2e ;;
  micro) micro ;;
  e2e) e2e ;;
  *) echo "usage: $0 [all|micro|e2e]" >&2; exit 64 ;;
esac
