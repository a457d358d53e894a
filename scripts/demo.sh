#!/usr/bin/env bash
# The demo: builds the agent and edgectl, starts a private Mosquitto broker on a free loopback port and a live
# RTSP camera (GStreamer's RTSP server, tests/rtsp/server.py, streaming H.264 of two of the project's frames),
# runs the agent with demo/agent.toml plus that camera for DEMO_SECONDS (default 25) and prints every message it publishes as one summary
# line (the first message of each kind also as raw JSON). Along the way it publishes a frame, a truncated JPEG
# and two sensor windows (one of the wrong length) to the agent's inbound topics, pushes a signed over-the-air
# update of the activity classifier (1.0.0 -> 1.1.0) with edgectl, then stops the agent with SIGTERM and shows
# the retained `offline` status.
#
# Needs Debian 12 with rustup Rust and Python 3; scripts/setup.sh installs the rest (run as root or with sudo).
# Environment: DEMO_SECONDS (run time, default 25), DEMO_KEEP=1 (keep the work directory: the generated
# config, every payload received in messages.log, the broker's and the agent's logs).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
seconds="${DEMO_SECONDS:-25}"
[[ "$seconds" =~ ^[0-9]+$ ]] && [ "$seconds" -ge 5 ] || { echo "DEMO_SECONDS must be a whole number >= 5" >&2; exit 2; }

if [ -t 1 ]; then bold=$'\033[1m' plain=$'\033[0m'; else bold="" plain=""; fi
step() { printf '\n%s== %s%s\n' "$bold" "$*" "$plain"; }

step "Setup (idempotent): Mosquitto, OpenSSL, GStreamer's RTSP server, ffmpeg, libonnxruntime"
scripts/setup.sh
export ORT_DYLIB_PATH="$root/third_party/onnxruntime/x86_64/libonnxruntime.so.1.31.1"

step "Build: cargo build --release -p device-agent -p edge-operator"
cargo build --release --locked -p device-agent -p edge-operator
agent_bin="${CARGO_TARGET_DIR:-$root/target}/release/device-agent"
edgectl="${CARGO_TARGET_DIR:-$root/target}/release/edgectl"

work="$(mktemp -d "${TMPDIR:-/tmp}/edge-demo.XXXXXX")"
chmod 755 "$work" # Mosquitto drops to its own user when started as root.
broker_pid="" sub_pid="" show_pid="" agent_pid="" push_pid="" camera_pid=""
cleanup() {
  # Only the processes this script started, by PID; the agent first so that it cannot outlive the broker.
  for pid in "$push_pid" "$agent_pid" "$sub_pid" "$show_pid" "$camera_pid" "$broker_pid"; do
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  done
  for pid in "$push_pid" "$agent_pid" "$sub_pid" "$show_pid" "$camera_pid" "$broker_pid"; do
    [ -n "$pid" ] && wait "$pid" 2>/dev/null || true
  done
  if [ "${DEMO_KEEP:-0}" = 1 ]; then echo "Work directory kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step "Broker: a private Mosquitto on 127.0.0.1 (never the system service)"
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\n' "$port" > "$work/mosquitto.conf"
mosquitto_bin="$(command -v mosquitto || echo /usr/sbin/mosquitto)"
"$mosquitto_bin" -c "$work/mosquitto.conf" > "$work/mosquitto.log" 2>&1 &
broker_pid=$!
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { cat "$work/mosquitto.log" >&2; echo "Mosquitto did not start" >&2; exit 1; }
echo "mosquitto pid $broker_pid listening on 127.0.0.1:$port"

step "Camera: a live RTSP stream on 127.0.0.1 (GStreamer's RTSP server, H.264 at 10 frames/s)"
# Two of the project's frames at 640x480, one second each, looped: the stream the `porch` source reads.
mkdir "$work/camera"
for name in people grace_hopper; do
  ffmpeg -loglevel error -i "models/frames/$name.jpg" -vf scale=640:480 "$work/camera/$name.png"
done
for i in $(seq 0 19); do
  still="$work/camera/people.png"
  [ "$i" -lt 10 ] || still="$work/camera/grace_hopper.png"
  cp "$still" "$work/camera/$(printf '%03d' "$i").png"
done
camera_port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
mkfifo "$work/camera.fifo"
/usr/bin/python3 tests/rtsp/server.py "$camera_port" "$work/camera/%03d.png" < "$work/camera.fifo" > "$work/camera.log" 2>&1 &
camera_pid=$!
exec 7> "$work/camera.fifo" # the server's stdin stays open (it reads commands from it) until the demo ends
for _ in $(seq 100); do grep -q '^ready' "$work/camera.log" && break; sleep 0.1; done
grep -q '^ready' "$work/camera.log" || { cat "$work/camera.log" >&2; echo "The RTSP server did not start" >&2; exit 1; }
echo "RTSP server pid $camera_pid serving rtsp://127.0.0.1:$camera_port/cam"

step "Config: demo/agent.toml with this broker's port and absolute paths, plus the RTSP camera"
# Every path in demo/agent.toml starts with "../" (relative to demo/); the copy lives elsewhere, so make them
# absolute. The agent reads no environment variables in its config.
root_in_sed="$(printf '%s' "$root" | sed 's/[\\|&]/\\&/g')"
sed -e "s|^port = .*|port = $port|" -e "s|\"\.\./|\"$root_in_sed/|g" demo/agent.toml > "$work/agent.toml"
grep -E '^(device_id|port|model|path) = ' "$work/agent.toml" | sed 's/^/  /'
device="$(sed -n 's/^device_id = "\(.*\)"/\1/p' "$work/agent.toml")"
prefix="devices/$device"
# Over-the-air updates: a key made for this run, trusted by the agent; the state lives in the work directory.
"$edgectl" keygen --out "$work/demo-key" > /dev/null
cat >> "$work/agent.toml" <<TOML

[update]
trusted_keys = ["$(cat "$work/demo-key.pub")"]
state_dir = "$work/state"

[update.probation]
window_secs = 5.0
min_frames = 2

# The live camera: faces on the RTSP stream, and a snapshot (a retained JPEG with the boxes drawn) at most
# every 5 s when one is found.
[[sources]]
name = "porch"
kind = "rtsp"
model = "$root/models/face-detector"
url = "rtsp://127.0.0.1:$camera_port/cam"

[[snapshots]]
source = "porch"
labels = ["face"]
min_interval_secs = 5.0
TOML
echo "  [[sources]] porch: kind = \"rtsp\", url = \"rtsp://127.0.0.1:$camera_port/cam\"; [[snapshots]] of its faces"
echo "  [update] trusts the key in demo-key.pub; state in $work/state"
echo "\$ device-agent run --config agent.toml --check"
"$agent_bin" run --config "$work/agent.toml" --check

step "Run: device-agent run --config agent.toml for ${seconds} s; subscribed to $prefix/{status,health,predictions/#,errors/#,update/status} (the camera's predictions: every 10th shown)"
cat > "$work/show.py" <<'PY'
"""Prints each `topic retained payload` line of mosquitto_sub as one summary line."""
import json, os, sys, time

t0 = float(os.environ["DEMO_T0"])
raw_log = open(os.environ["DEMO_MESSAGES"], "a")
raw_seen, counts = set(), {}


def seconds(ms):
    return f"{ms / 1000:.1f}"


def classes(output):
    return ", ".join(f"{c['label']} {c['score']:.2f}" for c in output["classes"][:3])


def detections(output):
    found = output["detections"]
    boxes = " ".join(
        f"[{d['score']:.2f} ({d['bbox']['x_min']:.0f},{d['bbox']['y_min']:.0f})-({d['bbox']['x_max']:.0f},{d['bbox']['y_max']:.0f})]"
        for d in found[:3]
    )
    return f"{len(found)} {found[0]['label'] if found else 'face'}(s) {boxes}".rstrip()


def prediction(p):
    (kind, output), = p["output"].items()
    if kind == "classification":
        what = classes(output)
    elif kind == "detection":
        what = detections(output)
    elif kind == "anomaly":
        verdict = "ANOMALY" if output["anomalous"] else "normal"
        what = f"score {output['score']:.3f} vs threshold {output['threshold']:.3f}: {verdict}"
    else:
        what = f"{len(output['tensors'])} raw tensor(s)"
    return f"#{p['seq']:<3} {what}  ({p['provider']}, {p['total_us'] / 1000:.1f} ms)"


def health(h):
    system = f"up {h['uptime_s']} s, cpu {h['cpu_percent']:.0f}%, rss {h['rss_bytes'] / 1e6:.0f} MB, reconnects {h['mqtt_reconnects']}"
    parts = []
    for s in h["sources"]:
        errors = sum(e["count"] for e in s["errors"])
        parts.append(
            f"{s['name']} {s['frames_ok']}/{s['frames_in']} ok {s['frames_per_s']:.1f}/s "
            f"p50 {s['latency']['total']['p50_us'] / 1000:.0f} ms"
            + (f" err {errors}" if errors else "")
            + (f" dropped {s['dropped']}" if s["dropped"] else "")
        )
    cameras = [
        f"{c['source']} {c['width']}x{c['height']} {c['codec']}/{c['decoder']}: received {c['received_per_s']:.1f}/s, "
        f"decoded {c['decoded_per_s']:.1f}/s, inferred {c['inferred_per_s']:.1f}/s, replaced {c['replaced_per_s']:.1f}/s, "
        f"reconnects {c['reconnects']}, last frame {c['last_frame_age_ms']} ms ago"
        for c in h.get("cameras", [])
    ]
    return "\n".join([system, " " * 33 + " | ".join(parts)] + [" " * 33 + c for c in cameras])


for line in sys.stdin:
    raw_log.write(line)
    topic, retained, payload = line.rstrip("\n").split(" ", 2)
    kind = topic.split("/")[2] if topic.count("/") >= 2 else topic
    counts[kind] = counts.get(kind, 0) + 1
    try:
        message = json.loads(payload)
        if topic.endswith("/predictions/porch") and message["seq"] % 10 and topic in raw_seen:
            continue  # the live camera predicts ten times a second: every 10th is shown
        if kind == "status":
            flag = " (retained)" if retained == "1" else ""
            since = f", since {seconds(message['since_ms'] - t0 * 1000)} s" if message["since_ms"] else ""
            text = f"{message['state'].upper()}{flag}  agent {message['agent_version']}{since}"
        elif kind == "predictions":
            text = prediction(message)
        elif kind == "errors":
            text = f"#{message['seq']:<3} REJECTED {message['input']}: stage={message['stage']} kind={message['kind']}: {message['message']}"
        elif kind == "health":
            text = health(message)
        elif kind == "update":
            progress = f" {message['percent']:.0f}%" if message["state"] == "downloading" else ""
            reason = f": {message['reason']}" if message["reason"] else ""
            text = f"{message['state'].upper()}{progress} {message['model']} {message['version']} (running {message['running_version']}){reason}"
        else:
            text = payload[:120]
    except (ValueError, KeyError, TypeError) as e:
        text = f"(unreadable: {e}) {payload[:120]}"
    label = topic.split("/", 2)[2] if topic.count("/") >= 2 else topic
    print(f"{time.time() - t0:6.1f}s  {label:<22} {text}")
    key = kind if kind != "predictions" else topic
    if key not in raw_seen:
        raw_seen.add(key)
        print(f"{'':8}  {topic} {payload[:200]}{' ...' if len(payload) > 200 else ''}")
    sys.stdout.flush()

print("\nMessages received: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
PY
mkfifo "$work/sub.fifo"
export DEMO_T0 DEMO_MESSAGES="$work/messages.log"
DEMO_T0="$(python3 -c 'import time; print(time.time())')"
python3 -u "$work/show.py" < "$work/sub.fifo" &
show_pid=$!
mosquitto_sub -h 127.0.0.1 -p "$port" -q 1 -F '%t %r %p' \
  -t "$prefix/status" -t "$prefix/health" -t "$prefix/predictions/#" -t "$prefix/errors/#" \
  -t "$prefix/update/status" > "$work/sub.fifo" &
sub_pid=$!
sleep 0.5

# As the packaged systemd unit runs it: glibc gives freed memory back (docs/operations.md, Memory).
MALLOC_TRIM_THRESHOLD_=1048576 RUST_LOG="${RUST_LOG:-info}" "$agent_bin" run --config "$work/agent.toml" \
  > "$work/agent.log" 2>&1 &
agent_pid=$!
mosquitto_sub -h 127.0.0.1 -p "$port" -t "$prefix/status" -C 1 -W 20 > /dev/null \
  || { cat "$work/agent.log" >&2; echo "The agent did not come online" >&2; exit 1; }

# Inbound inputs, once the agent is online: a frame and a truncated JPEG for the doorbell (mqtt_frames), a
# window cut from the activity recording and one of the wrong length for the wrist (mqtt_sensor).
sleep 3
head -c 20000 models/frames/people.jpg > "$work/truncated.jpg"
python3 - "$work" <<'PY'
import csv, json, sys
rows = list(csv.reader(open("models/recordings/activity.csv")))[1:]
window = lambda first, n: json.dumps({"channels": 6, "values": [float(v) for row in rows[first:first + n] for v in row]})
open(f"{sys.argv[1]}/window.json", "w").write(window(200, 100))  # rows 201-300: the running case
open(f"{sys.argv[1]}/short-window.json", "w").write(window(0, 10))  # 10 samples; the model takes 100
PY
pub() { mosquitto_pub -h 127.0.0.1 -p "$port" -q 1 "$@"; sleep 0.7; }
pub -t "$prefix/frames/doorbell" -f models/frames/people.jpg
pub -t "$prefix/frames/doorbell" -f "$work/truncated.jpg"
pub -t "$prefix/sensor/wrist" -f "$work/window.json"
pub -t "$prefix/sensor/wrist" -f "$work/short-window.json"

# An over-the-air update while the agent serves: the activity classifier as version 1.1.0, packed with a
# golden self-test vector, signed with the trusted key, delivered in chunks over MQTT, self-tested, swapped in
# between two windows and committed after its probation. The push's own progress goes to push.log.
cp -r models/activity-classifier "$work/activity-1.1.0"
sed -i 's/^version = "1.0.0"/version = "1.1.0"/' "$work/activity-1.1.0/manifest.toml"
"$edgectl" model pack "$work/activity-1.1.0" -o "$work/activity-1.1.0.bundle" --self-test models/recordings/activity.csv > "$work/push.log" 2>&1
"$edgectl" model sign "$work/activity-1.1.0.bundle" --key "$work/demo-key.key" >> "$work/push.log" 2>&1
"$edgectl" model push "$work/activity-1.1.0.bundle" --broker "127.0.0.1:$port" --key "$work/demo-key.key" --device "$device" --chunk-size 4096 --timeout 60 >> "$work/push.log" 2>&1 &
push_pid=$!

remaining="$(python3 -c "import time; print(max(0.0, $DEMO_T0 + $seconds - time.time()))")"
sleep "$remaining"

push_status=0
wait "$push_pid" || push_status=$?
push_pid=""

step "Stop: SIGTERM to the agent (pid $agent_pid)"
kill -TERM "$agent_pid"
agent_status=0
for _ in $(seq 200); do kill -0 "$agent_pid" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$agent_pid" 2>/dev/null; then
  echo "The agent did not stop within 20 s" >&2
  agent_status=1
else
  wait "$agent_pid" || agent_status=$?
  echo "agent exited with status $agent_status"
fi
agent_pid=""
sleep 1
kill "$sub_pid" 2>/dev/null || true
wait "$sub_pid" 2>/dev/null || true
sub_pid=""
wait "$show_pid" 2>/dev/null || true
show_pid=""

step "The camera's last snapshot (retained JPEG on $prefix/snapshots/porch)"
mosquitto_sub -h 127.0.0.1 -p "$port" -t "$prefix/snapshots/porch" -C 1 -W 5 -N > "$work/snapshot.jpg" || true
python3 - "$work/snapshot.jpg" <<'PY'
import json, sys
data = open(sys.argv[1], "rb").read()
if not data.startswith(b"\xff\xd8"):
    sys.exit("no snapshot arrived")
# The prediction it belongs to rides in the JPEG's comment segment (FF FE).
at = data.index(b"\xff\xfe")
length = int.from_bytes(data[at + 2:at + 4], "big")
print(f"{len(data)} bytes of JPEG, comment {json.loads(data[at + 4:at + 2 + length])}")
PY

step "Retained status after shutdown (a new subscriber)"
status_line="$(mosquitto_sub -h 127.0.0.1 -p "$port" -t "$prefix/status" -C 1 -W 5 -F '%t retained=%r %p' || true)"
echo "$status_line"

step "Over-the-air update: edgectl model pack, sign and push (exit status $push_status)"
cat "$work/push.log"

step "Agent log (stderr)"
cat "$work/agent.log"

if [ "$agent_status" -ne 0 ] || [ "$push_status" -ne 0 ] || [[ "$status_line" != *'retained=1 {"state":"offline"'* ]]; then
  echo "Demo FAILED: agent status $agent_status, push status $push_status, status message: ${status_line:-none}" >&2
  exit 1
fi
echo
echo "Demo finished."
