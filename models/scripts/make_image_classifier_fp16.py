"""Builds models/testing/image-classifier-fp16/: the shipped EfficientNet-Lite0 (models/image-classifier) in float16,
with a float16 input and a dynamic batch axis, and its references.

The weights and activations are converted to float16 by PyPI onnxconverter-common 1.16.0 (MIT,
`float16.convert_float_to_float16` with keep_io_types=False, so the input `images` is float16); a Cast after the
last node keeps the output `logits` float32, as the runtime's decoders read it. The first dimension of the input and
the output becomes the symbolic `batch` (and the Reshape before the classifier takes any batch); the script checks that a batch of two gives each frame's logits. The
manifest is the shipped one but for `dtype = "f16"`.

References (models/references/image-classifier-fp16.json, the format of make_references.py): Python onnxruntime on
this model, fed the float16 tensor that numpy/PIL preprocessing gives (common.image_tensor, then astype(float16)),
for the shipped PNG frames. Run from the repository root:

    python3 models/scripts/make_image_classifier_fp16.py
"""

from __future__ import annotations

import json
import re
import shutil
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper

from common import MODELS, fill_sha256, image_tensor, pip_download, temp_dir

ORIGINAL = MODELS / "image-classifier"
FP16 = MODELS / "testing" / "image-classifier-fp16"
FRAMES = ["frames/astronaut.png", "frames/camera.png"]


def converted() -> onnx.ModelProto:
    # The converter is fetched as the other sources are; it is pure Python, so it is imported from the wheel.
    wheel = pip_download("onnxconverter-common==1.16.0", temp_dir("onnxconverter-"))
    sys.path.insert(0, str(wheel))
    from onnxconverter_common import float16

    model = onnx.load(str(ORIGINAL / "model.onnx"))
    # The exporter flattened the pooled features with a Reshape to [1, -1]: [-1, 1280] keeps the batch.
    (flatten,) = [node for node in model.graph.node if list(node.output) == ["/Constant_output_0"]]
    flatten.attribute[0].t.CopyFrom(numpy_helper.from_array(np.array([-1, 1280], np.int64)))
    model = float16.convert_float_to_float16(model, keep_io_types=False)
    graph = model.graph
    (output,) = graph.output
    half_logits = "logits_fp16"
    for node in graph.node:
        node.output[:] = [half_logits if name == output.name else name for name in node.output]
    graph.node.append(helper.make_node("Cast", [half_logits], [output.name], to=onnx.TensorProto.FLOAT))
    output.type.tensor_type.elem_type = onnx.TensorProto.FLOAT
    for value in [graph.input[0], output]:
        dim = value.type.tensor_type.shape.dim[0]
        dim.Clear()
        dim.dim_param = "batch"
    del graph.value_info[:]
    model = onnx.shape_inference.infer_shapes(model)
    onnx.checker.check_model(model)
    return model


def main() -> None:
    FP16.mkdir(parents=True, exist_ok=True)
    onnx.save(converted(), str(FP16 / "model.onnx"))
    shutil.copy(ORIGINAL / "labels.txt", FP16 / "labels.txt")
    text = (ORIGINAL / "manifest.toml").read_text()
    text = text.replace('name = "image-classifier"', 'name = "image-classifier-fp16"')
    text = re.sub(r'^provenance = .*$', 'provenance = "models/image-classifier 1.0.0 converted to float16 (input '
                  'float16, output float32, dynamic batch axis) with PyPI onnxconverter-common 1.16.0 by '
                  'models/scripts/make_image_classifier_fp16.py."', text, flags=re.M)
    text = text.replace('dtype = "f32"', 'dtype = "f16"')
    (FP16 / "manifest.toml").write_text(text)
    fill_sha256(FP16)

    import tomllib

    spec = tomllib.loads(text)["input"]
    labels = (FP16 / "labels.txt").read_text().splitlines()
    session = ort.InferenceSession(str(FP16 / "model.onnx"), providers=["CPUExecutionProvider"])
    original = ort.InferenceSession(str(ORIGINAL / "model.onnx"), providers=["CPUExecutionProvider"])
    tensors = [image_tensor(MODELS / frame, spec)[0] for frame in FRAMES]
    (batch,) = session.run(["logits"], {"images": np.concatenate(tensors).astype(np.float16)})
    cases = []
    for frame, tensor, batched in zip(FRAMES, tensors, batch):
        (logits,) = session.run(["logits"], {"images": tensor.astype(np.float16)})
        assert np.abs(logits[0] - batched).max() <= 1e-2, f"{frame}: a batch of two differs from one frame"
        (full,) = original.run(["logits"], {"images": tensor})
        print(f"{frame}: float16 vs float32 logits max difference {np.abs(logits[0] - full[0]).max():.4f}")
        scores = logits[0].astype(np.float64)
        probs = np.exp(scores - scores.max())
        probs /= probs.sum()
        top = np.argsort(-probs, kind="stable")[:5]
        cases.append({"input": frame, "output": {"classification": {"classes": [
            {"index": int(i), "label": labels[i], "score": float(probs[i])} for i in top]}}})
    reference = {"bundle": "testing/image-classifier-fp16", "onnxruntime": ort.__version__, "cases": cases}
    (MODELS / "references" / "image-classifier-fp16.json").write_text(json.dumps(reference, indent=1) + "\n")


if __name__ == "__main__":
    main()
