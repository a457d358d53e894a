"""Builds models/text-detector and models/text-recognizer, their text frames and their references.

Source: rapidocr-onnxruntime 1.3.24 (Apache-2.0) ships PaddleOCR's PP-OCRv4 models converted to ONNX
(PaddleOCR, Apache-2.0): `ch_PP-OCRv4_det_infer.onnx` (DBNet text detector, input [n, 3, h, w] with dynamic n, h, w)
and `ch_PP-OCRv4_rec_infer.onnx` (CTC recogniser, input [n, 3, 48, w], output [n, t, 6625] probabilities, its
6623-character list in the metadata key `character`). Both graphs are copied byte for byte.

The frames are rendered here with Pillow's bundled font (deterministic for a Pillow version); the references come
from rapidocr's own classes on them: `TextDetector` (its preprocessing, the model and its `DBPostProcess`) and
`TextRecognizer` (its resize, the model and its `CTCLabelDecode`), configured from the package's config.yaml.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import yaml
from PIL import Image, ImageDraw, ImageFont

from common import MODELS, fill_sha256, pip_download, temp_dir, toml_str, wheel_member

RAPIDOCR = "rapidocr-onnxruntime==1.3.24"
DETECTOR_FILE = "ch_PP-OCRv4_det_infer.onnx"
RECOGNIZER_FILE = "ch_PP-OCRv4_rec_infer.onnx"
# One element in SAMPLE_STRIDE of each preprocessed tensor goes into the references (the tensors are megabytes).
SAMPLE_STRIDE = 101

# Text lines of the detector frame: (text, font size, left, top, rotation in degrees).
DETECTOR_LINES = [
    ("Edge inference runtime", 40, 30, 30, 0),
    ("MQTT link up: 42 frames/s", 28, 40, 120, 0),
    ("camera-7 OK", 34, 330, 200, 8),
    ("sensor window 100", 22, 60, 280, 0),
]
# Recogniser crops: (file stem, text, font size). Wide lines, so that rapidocr's one-crop batch needs no padding.
RECOGNIZER_CROPS = [
    ("text-crop-runtime", "Edge inference runtime", 32),
    ("text-crop-mqtt", "MQTT link up: 42 frames/s", 28),
    ("text-crop-sensor", "sensor window 100 OK", 36),
]


def render_line(text: str, size: int) -> Image.Image:
    """One dark line of text on a light background, with a margin of a third of the font size."""
    font = ImageFont.load_default(size=size)
    left, top, right, bottom = font.getbbox(text)
    margin = size // 3
    image = Image.new("RGB", (right - left + 2 * margin, bottom - top + 2 * margin), (245, 242, 235))
    ImageDraw.Draw(image).text((margin - left, margin - top), text, font=font, fill=(20, 24, 40))
    return image


def render_frames() -> tuple[str, list[str]]:
    # A directory of their own: image sources and the drift evaluation read every file of frames/ itself.
    frames = MODELS / "frames" / "text"
    frames.mkdir(exist_ok=True)
    page = Image.new("RGB", (640, 360), (245, 242, 235))
    for text, size, left, top, angle in DETECTOR_LINES:
        line = render_line(text, size).convert("RGBA")
        if angle:
            line = line.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=(0, 0, 0, 0))
        page.paste(line, (left, top), line)
    page.save(frames / "text-lines.png", optimize=True)
    crops = []
    for stem, text, size in RECOGNIZER_CROPS:
        render_line(text, size).save(frames / f"{stem}.png", optimize=True)
        crops.append(stem)
    return "frames/text/text-lines.png", [f"frames/text/{stem}.png" for stem in crops]


def sample(tensor: np.ndarray) -> list[float]:
    return [float(v) for v in tensor.reshape(-1)[::SAMPLE_STRIDE]]


def rapidocr_config(package) -> dict:
    return yaml.safe_load((package / "config.yaml").read_text())


def detector_references(package, frame: str) -> dict:
    from rapidocr_onnxruntime.ch_ppocr_v3_det import TextDetector

    config = rapidocr_config(package)["Det"]
    config["model_path"] = str(package / config["model_path"])
    detector = TextDetector(config)
    image = cv2.imread(str(MODELS / frame))  # BGR, as rapidocr's LoadImage gives it
    tensor = detector.preprocess_op(image)
    boxes, _ = detector(image)
    # The scores are not returned by TextDetector; recompute them as its postprocessing does.
    preds = detector.infer(tensor)[0]
    _, scores = detector.postprocess_op(preds, image.shape[:2])
    return {
        "input": frame,
        "tensor_shape": list(tensor.shape),
        "tensor_sample_stride": SAMPLE_STRIDE,
        "tensor_sample": sample(tensor),
        "boxes": [[[float(x), float(y)] for x, y in box] for box in boxes],
        "scores": [float(s) for s in scores],
        "config": {k: config[k] for k in ("limit_side_len", "limit_type", "thresh", "box_thresh", "unclip_ratio")},
    }


def recognizer_references(package, crops: list[str]) -> list[dict]:
    from rapidocr_onnxruntime.ch_ppocr_v3_rec import TextRecognizer

    config = rapidocr_config(package)["Rec"]
    config["model_path"] = str(package / config["model_path"])
    recognizer = TextRecognizer(config)
    cases = []
    for crop in crops:
        image = cv2.imread(str(MODELS / crop))
        h, w = image.shape[:2]
        tensor = recognizer.resize_norm_img(image, w / h)  # what a batch of this one crop is given
        [(text, score)], _ = recognizer(image)
        cases.append(
            {
                "input": crop,
                "tensor_shape": [1, *tensor.shape],
                "tensor_sample_stride": SAMPLE_STRIDE,
                "tensor_sample": sample(tensor),
                "text": text,
                "score": float(score),
            }
        )
    return cases


DETECTOR_MANIFEST = """name = "text-detector"
version = "1.0.0"
task = "detection"
model = "model.onnx"
sha256 = ""
license = "Apache-2.0"
provenance = {provenance}
labels = ["text"]

[input]
kind = "image"
tensor = "x"
layout = "nchw"
width = 736
height = 736
color = "bgr"
dtype = "f32"
resize = "stretch"
scale = 0.003921568859368563
mean = [0.485, 0.456, 0.406]
std = [0.229, 0.224, 0.225]

[input.dynamic_size]
mode = "limit_side"
limit_side = 736
limit = "min"
multiple_of = 32
min_side = 32
max_side = 2048

[output]
decoder = "dbnet"
tensor = "sigmoid_0.tmp_0"
threshold = 0.3
box_threshold = 0.5
unclip_ratio = 1.6
dilate = true
max_detections = 1000

[execution]
providers = ["cpu"]
"""

RECOGNIZER_MANIFEST = """name = "text-recognizer"
version = "1.0.0"
task = "text"
model = "model.onnx"
sha256 = ""
license = "Apache-2.0"
provenance = {provenance}
# The model's `character` metadata, one character per entry (TOML strings, so that U+3000 stays a label).
labels = [{labels}]

[input]
kind = "image"
tensor = "x"
layout = "nchw"
width = 320
height = 48
color = "bgr"
dtype = "f32"
resize = "stretch"
scale = 0.003921568859368563
mean = [0.5]
std = [0.5]

[input.dynamic_size]
mode = "fixed_height"
min_side = 320
max_side = 2048
pad = 0.0

[output]
decoder = "ctc"
tensor = "softmax_11.tmp_0"
use_space_char = true

[execution]
providers = ["cpu"]
"""


def toml_label(label: str) -> str:
    """A TOML basic string: UTF-8, with quotes, backslashes and control characters escaped (JSON escapes them
    alike), and a whitespace character written as its \\uXXXX escape, so that it reads as what it is."""
    if label.isspace():
        return "".join(f"\\u{ord(c):04x}" for c in label).join('""')
    return json.dumps(label, ensure_ascii=False)


def main() -> None:
    tmp = temp_dir("text-models-")
    wheel = pip_download(RAPIDOCR, tmp)
    import rapidocr_onnxruntime

    package = Path(rapidocr_onnxruntime.__file__).parent
    for bundle, member in (("text-detector", DETECTOR_FILE), ("text-recognizer", RECOGNIZER_FILE)):
        raw = wheel_member(wheel, "models/" + member)
        if raw != (package / "models" / member).read_bytes():
            raise RuntimeError(f"the installed rapidocr's {member} differs from the wheel's")
        (MODELS / bundle).mkdir(exist_ok=True)
        (MODELS / bundle / "model.onnx").write_bytes(raw)

    session = ort.InferenceSession(str(MODELS / "text-recognizer" / "model.onnx"), providers=["CPUExecutionProvider"])
    characters = session.get_modelmeta().custom_metadata_map["character"].splitlines()
    provenance_det = (
        f"PaddleOCR PP-OCRv4 text detector (DBNet, Apache-2.0) as shipped in PyPI {RAPIDOCR} "
        f"(rapidocr_onnxruntime/models/{DETECTOR_FILE}), byte copy. Input BGR, ImageNet mean/std, size chosen per "
        "image (shorter side to 736, multiples of 32) as rapidocr's DetPreProcess; output a [1, 1, h, w] text "
        "probability map."
    )
    provenance_rec = (
        f"PaddleOCR PP-OCRv4 text recogniser (CTC, Apache-2.0) as shipped in PyPI {RAPIDOCR} "
        f"(rapidocr_onnxruntime/models/{RECOGNIZER_FILE}), byte copy. Input BGR, (x/255 - 0.5)/0.5, height 48, "
        "width from the crop's aspect ratio; output [1, t, 6625] probabilities over blank, the 6623 characters of "
        "the model's `character` metadata (the labels here) and a space."
    )
    (MODELS / "text-detector" / "manifest.toml").write_text(DETECTOR_MANIFEST.format(provenance=toml_str(provenance_det)))
    labels = ", ".join(toml_label(c) for c in characters)
    (MODELS / "text-recognizer" / "manifest.toml").write_text(
        RECOGNIZER_MANIFEST.format(provenance=toml_str(provenance_rec), labels=labels)
    )
    for bundle in ("text-detector", "text-recognizer"):
        fill_sha256(MODELS / bundle)

    frame, crops = render_frames()
    references = {
        "text-detector": {"bundle": "text-detector", "rapidocr": RAPIDOCR, "cases": [detector_references(package, frame)]},
        "text-recognizer": {
            "bundle": "text-recognizer",
            "rapidocr": RAPIDOCR,
            "cases": recognizer_references(package, crops),
        },
    }
    for bundle, reference in references.items():
        (MODELS / "references" / f"{bundle}.json").write_text(json.dumps(reference, indent=1) + "\n")
    print(json.dumps({b: [c.get("text", len(c.get("boxes", []))) for c in r["cases"]] for b, r in references.items()}))
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
