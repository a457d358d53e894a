"""Builds models/testing/text-segmentation: PP-OCRv4's DBNet text detector used as a one-class segmentation.

Source: PyPI rapidocr-onnxruntime 1.3.24 (Apache-2.0) ships rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx
(input `x` [batch, 3, height, width], output `sigmoid_0.tmp_0` [batch, 1, height, width]: the probability that a
pixel is text). The model file is copied byte for byte; the bundle fixes the input at 640 x 320 (stretch) and
publishes the pixels above rapidocr's own binarisation threshold (`thresh` 0.3) as one "text" mask.

The frame models/testing/text-frame.png (three lines of text drawn with Pillow's built-in bitmap font) is made
here too. References (models/references/text-segmentation.json):
  * `mask`: the numpy reference of the `segmentation` decoder on the runtime's preprocessing (common.image_tensor:
    stretch, PIL bilinear, ImageNet mean/std as rapidocr): a source pixel is text when the map cell under its
    centre (model x = (x + 0.5) * 640 / source width, floored; the same for y) is above 0.3; row-major runs over
    the source pixels, outside first.
  * `package_boxes`: rapidocr's own TextDetector on the frame (its resize to multiples of 32, its DB
    post-processing): the boxes of text it finds, which the mask must cover.
"""

from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import onnxruntime as ort
from PIL import Image, ImageDraw, ImageFont

from common import MODELS, extract_wheel, fill_sha256, image_tensor, pip_download, temp_dir, toml_str

RAPIDOCR = "rapidocr-onnxruntime==1.3.24"
WIDTH, HEIGHT = 640, 320
THRESHOLD = 0.3
MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
LINES = ["EDGE INFERENCE 2026", "text as a mask", "RUN-LENGTH ENCODED"]


def make_frame(path) -> None:
    """Black text on white, large enough for the detector: the bitmap font drawn small, then scaled 4x."""
    small = Image.new("L", (200, 60), 255)
    draw = ImageDraw.Draw(small)
    font = ImageFont.load_default_imagefont()
    for i, line in enumerate(LINES):
        draw.text((8, 6 + 18 * i), line, fill=0, font=font)
    small.resize((800, 240), Image.NEAREST).convert("RGB").save(path)


def reference_runs(prob: np.ndarray, src_w: int, src_h: int) -> list[int]:
    """The decoder's mask in numpy (see the module docstring)."""
    cells_x = np.floor((np.arange(src_w) + 0.5) * WIDTH / src_w).astype(int)
    cells_y = np.floor((np.arange(src_h) + 0.5) * HEIGHT / src_h).astype(int)
    inside = (prob[np.ix_(cells_y, cells_x)] > np.float32(THRESHOLD)).reshape(-1)
    runs, current, count = [], False, 0
    for value in inside:
        if value != current:
            runs.append(count)
            current, count = value, 0
        count += 1
    runs.append(count)
    return runs


def main() -> None:
    tmp = temp_dir("rapidocr-")
    wheel = pip_download(RAPIDOCR, tmp)
    root = extract_wheel(wheel, tmp / "wheel")
    bundle = MODELS / "testing" / "text-segmentation"
    bundle.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(root / "rapidocr_onnxruntime" / "models" / "ch_PP-OCRv4_det_infer.onnx", bundle / "model.onnx")
    frame = MODELS / "testing" / "text-frame.png"
    make_frame(frame)

    provenance = (
        "PP-OCRv4 DBNet text detector (PaddleOCR, Apache-2.0): rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx "
        "from PyPI rapidocr-onnxruntime 1.3.24 (Apache-2.0), copied unchanged by "
        "models/scripts/make_text_segmentation.py. Input x [batch, 3, height, width] (dynamic, used at "
        f"{WIDTH} x {HEIGHT}), output sigmoid_0.tmp_0 [batch, 1, height, width], the text probability per pixel. "
        "Test bundle: the text probability map published as a one-class segmentation mask."
    )
    manifest = f"""name = "text-segmentation"
version = "1.0.0"
task = "segmentation"
model = "model.onnx"
sha256 = ""
license = "Apache-2.0"
provenance = {toml_str(provenance)}
labels = ["text"]

[input]
kind = "image"
tensor = "x"
layout = "nchw"
width = {WIDTH}
height = {HEIGHT}
color = "rgb"
dtype = "f32"
resize = "stretch"
scale = {1.0 / 255.0!r}
mean = {MEAN}
std = {STD}

[output]
decoder = "segmentation"
tensor = "sigmoid_0.tmp_0"
threshold = {THRESHOLD}

[execution]
providers = ["cpu"]
"""
    (bundle / "manifest.toml").write_text(manifest)
    print("sha256", fill_sha256(bundle))

    spec = {"width": WIDTH, "height": HEIGHT, "resize": "stretch", "mean": MEAN, "std": STD, "scale": 1.0 / 255.0}
    t, _, (src_w, src_h) = image_tensor(frame, spec)
    sess = ort.InferenceSession(str(bundle / "model.onnx"), providers=["CPUExecutionProvider"])
    prob = sess.run(None, {"x": t})[0][0, 0]
    runs = reference_runs(prob, src_w, src_h)
    print("text pixels", sum(runs[1::2]), "of", src_w * src_h, "runs", len(runs))

    sys.path.insert(0, str(root))
    import cv2  # noqa: E402
    from rapidocr_onnxruntime.ch_ppocr_v3_det import TextDetector  # noqa: E402

    config = {"model_path": str(root / "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx"), "use_cuda": False}
    boxes, _ = TextDetector(config)(cv2.imread(str(frame)))
    package_boxes = [[[float(x), float(y)] for x, y in box] for box in boxes]
    print("rapidocr boxes", len(package_boxes))
    refs = {
        "bundle": "text-segmentation",
        "package": RAPIDOCR,
        "onnxruntime": ort.__version__,
        "cases": [
            {
                "input": "testing/text-frame.png",
                "width": src_w,
                "height": src_h,
                "mask": runs,
                "package_boxes": package_boxes,
            }
        ],
    }
    (MODELS / "references" / "text-segmentation.json").write_text(json.dumps(refs) + "\n")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
