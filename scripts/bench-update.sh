#!/usr/bin/env bash
# Times an over-the-air update end to end on this machine: the shipped classifier, as version 2.0.0 padded to
# about 20 MB, packed, signed and pushed over a private loopback Mosquitto to a release agent that classifies
# frames at 10 fps. Prints the time from the push's start to each update state, to the first prediction of the
# new model and to the commit, and any gap in the prediction sequence numbers (frames lost in the swap).
# Environment: PROBATION (seconds, default 5), CHUNK (bytes per chunk, default the pusher's 64 KiB).
# Run scripts/setup.sh and `cargo build --release -p device-agent -p edge-operator` first.
set -euo pipefail
R="$(cd "$(dirname "$0")/.." && pwd)"; A="${CARGO_TARGET_DIR:-$R/target}/release/device-agent"; E="${CARGO_TARGET_DIR:-$R/target}/release/edgectl"
export ORT_DYLIB_PATH=$R/third_party/onnxruntime/x86_64/libonnxruntime.so.1.31.1
W=$(mktemp -d); cd "$W"
chmod 755 "$W" # Mosquitto drops to its own user when started as root.
$E keygen --out k >/dev/null
cp -r $R/models/image-classifier v2; sed -i 's/^version = "1.0.0"/version = "2.0.0"/' v2/manifest.toml
head -c 1400000 /dev/urandom > v2/padding.bin
$E model pack v2 -o v2.bundle --self-test $R/models/frames/cat.jpg 2>&1 | tail -1
$E model sign v2.bundle --key k.key >/dev/null 2>&1
ls -l v2.bundle
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
printf 'listener %s 127.0.0.1\nallow_anonymous true\n' $port > m.conf
"$(command -v mosquitto || echo /usr/sbin/mosquitto)" -c m.conf > m.log 2>&1 & bp=$!
sleep 0.5
cat > a.toml <<TOML
device_id = "bench"
[mqtt]
port = $port
[[sources]]
kind = "images"
name = "cam"
model = "$R/models/image-classifier"
path = "$R/models/frames"
rate_fps = 10.0
loop = true
[update]
trusted_keys = ["$(cat k.pub)"]
state_dir = "state"
[update.probation]
window_secs = ${PROBATION:-5}
min_frames = 10
TOML
$A run --config a.toml > a.log 2>&1 & ap=$!
sleep 3
mosquitto_sub -p $port -t 'devices/bench/predictions/cam' -F '%p' > preds.jsonl & sp=$!
mosquitto_sub -p $port -t 'devices/bench/update/status' -F '%p' > status.jsonl & ssp=$!
sleep 1
t0=$(date +%s.%N)
$E model push v2.bundle --broker 127.0.0.1:$port --key k.key --device bench --json ${CHUNK:+--chunk-size $CHUNK} > push.jsonl 2>push.err; rc=$?
t1=$(date +%s.%N)
sleep 1; kill $sp $ssp $ap; wait $ap || true; kill $bp
python3 - "$t0" "$t1" <<'PY'
import json, sys
t0, t1 = float(sys.argv[1]), float(sys.argv[2])
preds = [json.loads(l) for l in open("preds.jsonl") if l.strip()]
lines = [json.loads(l) for l in open("push.jsonl") if l.strip()]
summary = lines[-1]["summary"]
first_new = min((p for p in preds if p["model"]["version"] == "2.0.0"), key=lambda p: p["seq"])
seqs = sorted(p["seq"] for p in preds)
gaps = [(a, b) for a, b in zip(seqs, seqs[1:]) if b != a + 1]
states = [(l.get("state"), l.get("percent")) for l in lines[:-1]]
print(f"push exit ok={summary['committed']} elapsed {t1-t0:.2f} s (pusher says {summary['elapsed_s']}) chunks {summary['chunks_published']}/{summary['chunk_count']}")
print(f"first 2.0.0 prediction {first_new['published_at_ms']/1000 - t0:.2f} s after push start")
print(f"predictions {len(seqs)} seq {seqs[0]}..{seqs[-1]} gaps {gaps}")
seen = {}
for l in open("status.jsonl"):
    if l.strip():
        st = json.loads(l)
        seen.setdefault(st["state"], st["at_ms"] / 1000 - t0)
print("first status per state (s after push start):", {k: round(v, 2) for k, v in seen.items()})
PY
grep -E "Downloading|active|committed" a.log | sed 's/^/  /'
rm -rf "$W"
