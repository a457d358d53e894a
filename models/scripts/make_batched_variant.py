"""Builds models/testing/activity-classifier-batched/: models/activity-classifier 1.0.0 with a dynamic batch axis.

The graph is the original's, node for node; only the first dimension of the input `window` and of the output
`logits` becomes the symbolic `batch`, and the Reshape target of the 18 features becomes [-1, 18] (it was [1, 18]).
Weights, preprocessing, labels and decoding are unchanged, so every window's logits equal the original's: the script
checks that with onnxruntime on every window of models/recordings/activity.csv (stride 1), run one at a time with
the original and all at once, in batches of 1, 7 and 64, with the variant. The agent batches inference on it (see
docs/bundle-format.md, "Batch inference"). Run from the repository root:

    python3 models/scripts/make_batched_variant.py
"""

from __future__ import annotations

import re
import shutil

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

from common import MODELS, fill_sha256, read_sensor_csv, sensor_tensor, toml_str

ORIGINAL = MODELS / "activity-classifier"
BATCHED = MODELS / "testing" / "activity-classifier-batched"
RECORDING = MODELS / "recordings" / "activity.csv"
VERSION = "1.0.1"
WINDOW = 100


def with_batch_axis(model: onnx.ModelProto) -> onnx.ModelProto:
    graph = model.graph
    for value in [graph.input[0], graph.output[0]]:
        dim = value.type.tensor_type.shape.dim[0]
        dim.Clear()
        dim.dim_param = "batch"
    flat = next(init for init in graph.initializer if init.name == "flat")
    flat.CopyFrom(numpy_helper.from_array(np.array([-1, 18], np.int64), "flat"))
    del graph.value_info[:]
    model = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    onnx.checker.check_model(model, full_check=True)
    return model


def check(original: ort.InferenceSession, batched: ort.InferenceSession, spec: dict) -> int:
    _, rows = read_sensor_csv(RECORDING)
    windows = np.concatenate([sensor_tensor(rows, start, spec) for start in range(len(rows) - WINDOW + 1)])
    expected = np.concatenate([original.run(["logits"], {"window": w[None]})[0] for w in windows])
    for size in [1, 7, 64]:
        got = np.concatenate(
            [batched.run(["logits"], {"window": windows[i : i + size]})[0] for i in range(0, len(windows), size)]
        )
        worst = float(np.abs(got - expected).max())
        assert worst <= 1e-5, f"batches of {size}: logits differ by {worst}"
    return len(windows)


def main() -> None:
    model = with_batch_axis(onnx.load(str(ORIGINAL / "model.onnx")))
    shutil.rmtree(BATCHED, ignore_errors=True)
    BATCHED.mkdir(parents=True)
    onnx.save(model, str(BATCHED / "model.onnx"))
    shutil.copy(ORIGINAL / "labels.txt", BATCHED / "labels.txt")

    manifest = (ORIGINAL / "manifest.toml").read_text()
    spec = {"window": WINDOW, "layout": "channels_first"}
    for key in ["mean", "std"]:
        spec[key] = [float(v) for v in re.search(rf"^{key} = \[(.*)\]$", manifest, re.M).group(1).split(",")]
    providers = ["CPUExecutionProvider"]
    windows = check(
        ort.InferenceSession(str(ORIGINAL / "model.onnx"), providers=providers),
        ort.InferenceSession(str(BATCHED / "model.onnx"), providers=providers),
        spec,
    )
    provenance = (
        "TEST AND BENCHMARK VARIANT. models/activity-classifier 1.0.0 with a dynamic batch axis, made by "
        "models/scripts/make_batched_variant.py with the onnx API: the first dimension of `window` and `logits` is "
        "the symbolic `batch` and the feature Reshape takes [-1, 18]; nodes and weights are the original's. "
        f"Checked with onnxruntime: on all {windows} windows of recordings/activity.csv (stride 1), in batches of "
        "1, 7 and 64, the logits equal the original's to 1e-5."
    )
    manifest = re.sub(r'^version = ".*"$', f'version = "{VERSION}"', manifest, flags=re.M)
    manifest = re.sub(r"^provenance = .*$", f"provenance = {toml_str(provenance)}", manifest, flags=re.M)
    (BATCHED / "manifest.toml").write_text(manifest)
    print("checked", windows, "windows; sha256", fill_sha256(BATCHED))


if __name__ == "__main__":
    main()
