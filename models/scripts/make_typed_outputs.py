"""Builds models/testing/typed-outputs and its references (models/references/typed-outputs.json): a small graph, made
with `onnx`, whose outputs are of the types the runtime must read and publish besides float32.

Input: a vibration window `window` float32 [1, 3, 50]. Outputs:
- `argmax` int64 [1, 3]: ArgMax over the samples of each channel;
- `positive` bool [1, 3, 50]: window > 0;
- `half` float16 [1, 3, 50]: window * 1.5, cast to float16;
- `count` int32 []: how many values are positive (a scalar).

References: Python onnxruntime on every non-overlapping window of models/recordings/vibration.csv, written as the
runtime's `raw` output (float16 values widened to float32, which is exact; integers and bools as integers).
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from common import MODELS, fill_sha256, read_sensor_csv
from sklearn_onnx import sensor_windows

WINDOW = 50
BUNDLE = "typed-outputs"
OUTPUTS = {"argmax": "int64", "positive": "bool", "half": "float16", "count": "int32"}


def build_graph() -> onnx.ModelProto:
    nodes = [
        helper.make_node("ArgMax", ["window"], ["argmax"], axis=2, keepdims=0),
        helper.make_node("Greater", ["window", "zero"], ["positive"]),
        helper.make_node("Mul", ["window", "one_and_a_half"], ["scaled"]),
        helper.make_node("Cast", ["scaled"], ["half"], to=TensorProto.FLOAT16),
        helper.make_node("Cast", ["positive"], ["positive_int"], to=TensorProto.INT32),
        helper.make_node("ReduceSum", ["positive_int"], ["count"], keepdims=0),
    ]
    graph = helper.make_graph(
        nodes,
        "typed_outputs",
        [helper.make_tensor_value_info("window", TensorProto.FLOAT, [1, 3, WINDOW])],
        [
            helper.make_tensor_value_info("argmax", TensorProto.INT64, [1, 3]),
            helper.make_tensor_value_info("positive", TensorProto.BOOL, [1, 3, WINDOW]),
            helper.make_tensor_value_info("half", TensorProto.FLOAT16, [1, 3, WINDOW]),
            helper.make_tensor_value_info("count", TensorProto.INT32, []),
        ],
        [
            numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
            numpy_helper.from_array(np.array(1.5, np.float32), "one_and_a_half"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="make_typed_outputs")
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def raw_tensor(name: str, value: np.ndarray) -> dict:
    dtype = OUTPUTS[name]
    floats = dtype.startswith("float")
    return {
        "name": name,
        "shape": list(value.shape),
        "data": [float(v) for v in value.astype(np.float32).reshape(-1)] if floats else [],
        "dtype": dtype,
        "integers": [] if floats else [int(v) for v in value.reshape(-1)],
    }


def main() -> None:
    bundle = MODELS / "testing" / BUNDLE
    bundle.mkdir(parents=True, exist_ok=True)
    onnx.save(build_graph(), str(bundle / "model.onnx"))
    (bundle / "manifest.toml").write_text(f"""name = "{BUNDLE}"
version = "1.0.0"
task = "raw"
model = "model.onnx"
sha256 = ""
license = "Apache-2.0"
provenance = "Made by models/scripts/make_typed_outputs.py with onnx: outputs of type int64, bool, float16 and int32."

[input]
kind = "sensor"
tensor = "window"
channels = 3
window = {WINDOW}

[output]
decoder = "raw"

[execution]
providers = ["cpu"]
""")
    print("sha256", fill_sha256(bundle))
    _, rows = read_sensor_csv(MODELS / "recordings" / "vibration.csv")
    session = ort.InferenceSession(str(bundle / "model.onnx"), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    cases = []
    for start, window in sensor_windows(rows, WINDOW):
        values = session.run(names, {"window": window[None]})
        tensors = [raw_tensor(name, value) for name, value in zip(names, values)]
        cases.append({"input": "recordings/vibration.csv", "start_row": start, "output": {"raw": {"tensors": tensors}}})
    references = {"bundle": BUNDLE, "onnxruntime": ort.__version__, "cases": cases}
    (MODELS / "references" / f"{BUNDLE}.json").write_text(json.dumps(references) + "\n")
    print(f"{len(cases)} windows")


if __name__ == "__main__":
    main()
