"""Builds models/testing/image-classifier-batched/: models/image-classifier 1.0.0 with a dynamic batch axis.

The graph is the original's, node for node; only the first dimension of the input `images` and of the output
`logits` becomes the symbolic `batch`, and the head's Reshape target becomes [-1, 1280] (it was [1, -1]). Weights, preprocessing, labels and decoding are unchanged, so every image's logits equal
the original's: the script checks that with onnxruntime on every photo of models/frames/, run one at a time with the
original and all at once, in batches of 1, 3 and all, with the variant. A cascade runs its crops in one batch on it
(see docs/bundle-format.md, "Cascades"). Run from the repository root:

    python3 models/scripts/make_batched_image_classifier.py
"""

from __future__ import annotations

import re
import shutil

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

from common import MODELS, fill_sha256, image_tensor, toml_str

ORIGINAL = MODELS / "image-classifier"
BATCHED = MODELS / "testing" / "image-classifier-batched"
FRAMES = sorted(p for p in (MODELS / "frames").iterdir() if p.suffix in (".jpg", ".png"))
VERSION = "1.0.1"
# The input spec of models/image-classifier/manifest.toml, for common.image_tensor.
SPEC = {
    "width": 224,
    "height": 224,
    "resize": "center_crop",
    "crop_fraction": 0.875,
    "scale": 1.0 / 255.0,
    "mean": [0.4980392156862745] * 3,
    "std": [0.5019607843137255] * 3,
}


def with_batch_axis(model: onnx.ModelProto) -> onnx.ModelProto:
    graph = model.graph
    for value in [graph.input[0], graph.output[0]]:
        dim = value.type.tensor_type.shape.dim[0]
        dim.Clear()
        dim.dim_param = "batch"
    # The head flattens the pooled features to [1, -1]; per image that is [-1, 1280].
    head = next(node for node in graph.node if node.output[0] == "/Constant_output_0")
    target = numpy_helper.to_array(head.attribute[0].t)
    assert target.tolist() == [1, -1], target
    head.attribute[0].t.CopyFrom(numpy_helper.from_array(np.array([-1, 1280], np.int64)))
    del graph.value_info[:]
    model = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    onnx.checker.check_model(model, full_check=True)
    return model


def check(original: ort.InferenceSession, batched: ort.InferenceSession) -> int:
    images = np.concatenate([image_tensor(path, SPEC)[0] for path in FRAMES])
    expected = np.concatenate([original.run(["logits"], {"images": image[None]})[0] for image in images])
    for size in [1, 3, len(images)]:
        got = np.concatenate(
            [batched.run(["logits"], {"images": images[i : i + size]})[0] for i in range(0, len(images), size)]
        )
        worst = float(np.abs(got - expected).max())
        # Batched convolutions may sum in another order: float32 rounding, not a different model.
        assert worst <= 1e-4, f"batches of {size}: logits differ by {worst}"
    return len(images)


def main() -> None:
    model = with_batch_axis(onnx.load(str(ORIGINAL / "model.onnx")))
    shutil.rmtree(BATCHED, ignore_errors=True)
    BATCHED.mkdir(parents=True)
    onnx.save(model, str(BATCHED / "model.onnx"))
    shutil.copy(ORIGINAL / "labels.txt", BATCHED / "labels.txt")

    providers = ["CPUExecutionProvider"]
    images = check(
        ort.InferenceSession(str(ORIGINAL / "model.onnx"), providers=providers),
        ort.InferenceSession(str(BATCHED / "model.onnx"), providers=providers),
    )
    provenance = (
        "TEST VARIANT. models/image-classifier 1.0.0 with a dynamic batch axis, made by "
        "models/scripts/make_batched_image_classifier.py with the onnx API: the first dimension of `images` and "
        "`logits` is the symbolic `batch` and the head's Reshape takes [-1, 1280]; nodes and weights are the "
        f"original's. Checked with onnxruntime: on the {images} photos of models/frames, in batches of 1, 3 and "
        f"{images}, the logits equal the original's to 1e-4."
    )
    manifest = (ORIGINAL / "manifest.toml").read_text()
    manifest = re.sub(r'^name = ".*"$', 'name = "image-classifier-batched"', manifest, flags=re.M)
    manifest = re.sub(r'^version = ".*"$', f'version = "{VERSION}"', manifest, flags=re.M)
    manifest = re.sub(r"^provenance = .*$", f"provenance = {toml_str(provenance)}", manifest, flags=re.M)
    (BATCHED / "manifest.toml").write_text(manifest)
    print("checked", images, "images; sha256", fill_sha256(BATCHED))


if __name__ == "__main__":
    main()
