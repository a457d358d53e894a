"""The Python pipeline a user would otherwise write, for benches/compare.sh: onnxruntime, Pillow, numpy and paho-mqtt.

Runs one bundle over its inputs in a loop, as fast as it goes: image files are read and decoded each time (as the
agent's `images` source does), a recording's windows are cut from the CSV read once (stride = window, as the agent's
`csv` source by default). Each output is published as JSON at QoS 1, `{"seq", "input", "output"}` with `output` as
in the agent's predictions. The preprocessing and decoding are the functions that made models/references/ (Pillow
resize, numpy normalisation, same manifest semantics as the runtime), so top-1 agrees with the agent's.
On SIGTERM it stops and prints `{"frames": N, "peak_rss_bytes": B}` (ru_maxrss) on standard output.
"""

from __future__ import annotations

import argparse
import json
import resource
import signal
import sys
import tomllib
from pathlib import Path

import numpy as np
import onnxruntime as ort
import paho.mqtt.client as mqtt

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "models" / "scripts"))
from common import image_tensor, read_sensor_csv, sensor_tensor  # noqa: E402
from make_references import decode_output, labels_of  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads")
    parser.add_argument("--port", type=int, required=True, help="the broker on 127.0.0.1")
    parser.add_argument("--topic", required=True)
    parser.add_argument("inputs", type=Path, nargs="+", help="image files, or one CSV recording")
    args = parser.parse_args()

    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))

    manifest = tomllib.loads((args.bundle / "manifest.toml").read_text())
    spec = manifest["input"]
    labels = labels_of(args.bundle, manifest)
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.inter_op_num_threads = 1
    model = args.bundle / manifest.get("model", "model.onnx")
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]

    def infer(tensor: np.ndarray, geometry=None) -> dict:
        outs = dict(zip(names, session.run(names, {spec["tensor"]: tensor})))
        return decode_output(outs, manifest, labels, geometry)

    if spec["kind"] == "image":

        def cycle():
            for path in args.inputs:
                tensor, geometry, _ = image_tensor(path, spec)
                yield path.name, infer(tensor, geometry)

    else:
        (recording,) = args.inputs
        _, rows = read_sensor_csv(recording)
        window = spec["window"]

        def cycle():
            for start in range(0, len(rows) - window + 1, window):
                origin = f"{recording.name} rows {start + 1}-{start + window}"
                yield origin, infer(sensor_tensor(rows, start, spec))

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"reference-{args.bundle.name}")
    client.connect("127.0.0.1", args.port)
    client.loop_start()
    seq = 0
    while not stopping:
        for origin, output in cycle():
            client.publish(args.topic, json.dumps({"seq": seq, "input": origin, "output": output}), qos=1)
            seq += 1
            if stopping:
                break
    client.loop_stop()
    peak_rss_bytes = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: kilobytes
    print(json.dumps({"frames": seq, "peak_rss_bytes": peak_rss_bytes}))


if __name__ == "__main__":
    main()
