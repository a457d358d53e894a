"""Builds models/testing/large-output/: a test-only graph whose one output is about 5 MB.

The graph tiles its 224 x 224 RGB input nine times along the channels: `images` f32 [1,3,224,224] -> `tiled` f32
[1,27,224,224], 1,354,752 values (5.4 MB as f32, more as JSON). With `decoder = "raw"` every prediction is far over
the agent's default `mqtt.max_packet_bytes` (2 MiB): the tests check that such a prediction becomes a
`payload_too_large` error event and that the link stays up. The script checks the output with onnxruntime. Run from
the repository root:

    python3 models/scripts/make_large_output.py
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from common import MODELS, fill_sha256

BUNDLE = MODELS / "testing" / "large-output"
REPEATS = 9


def graph() -> onnx.ModelProto:
    repeats = numpy_helper.from_array(np.array([1, REPEATS, 1, 1], np.int64), "repeats")
    node = helper.make_node("Tile", ["images", "repeats"], ["tiled"])
    images = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 224, 224])
    tiled = helper.make_tensor_value_info("tiled", TensorProto.FLOAT, [1, 3 * REPEATS, 224, 224])
    body = helper.make_graph([node], "large_output", [images], [tiled], [repeats])
    model = helper.make_model(body, opset_imports=[helper.make_opsetid("", 17)], producer_name="make_large_output.py")
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


MANIFEST = """name = "large-output"
version = "1.0.0"
task = "raw"
model = "model.onnx"
sha256 = ""
license = "Apache-2.0"
provenance = "TEST VARIANT. A Tile node made by models/scripts/make_large_output.py: the input tiled 9 times along the channels, an output of about 5 MB."

[input]
kind = "image"
tensor = "images"
width = 224
height = 224

[output]
decoder = "raw"
"""


def main() -> None:
    BUNDLE.mkdir(parents=True, exist_ok=True)
    model = graph()
    onnx.save(model, str(BUNDLE / "model.onnx"))
    session = ort.InferenceSession(str(BUNDLE / "model.onnx"), providers=["CPUExecutionProvider"])
    frame = np.random.default_rng(0).random((1, 3, 224, 224), dtype=np.float32)
    (tiled,) = session.run(["tiled"], {"images": frame})
    assert tiled.shape == (1, 27, 224, 224) and np.array_equal(tiled[:, 24:], frame)
    (BUNDLE / "manifest.toml").write_text(MANIFEST)
    fill_sha256(BUNDLE)
    print(f"{BUNDLE}: output {tiled.nbytes} bytes as f32")


if __name__ == "__main__":
    main()
