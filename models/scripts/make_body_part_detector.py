"""Builds models/body-part-detector: NudeNet's YOLOv8n detector, unchanged, and its references.

Source: PyPI nudenet 3.4.2 ships nudenet/320n.onnx, a YOLOv8n detector exported by ultralytics 8.2.46 (its
metadata: AGPL-3.0, 18 classes in `names`, input `images` [batch, 3, height, width], output `output0`
[batch, 22, anchors]). The model file is copied byte for byte; the labels come from the metadata's `names` (a
Python dict literal).

References (models/references/body-part-detector.json), for every frame in models/frames/:
  * `package`: what nudenet's own pipeline (`NudeDetector().detect(path)`) returns: it pads the image at the
    right and bottom with black to a square, resizes with OpenCV (bilinear, no antialiasing), runs the model,
    keeps scores >= 0.2, then cv2.dnn.NMSBoxes(score 0.25, IoU 0.45) over all classes at once; boxes are
    [x, y, w, h] truncated to whole source pixels.
  * `runtime_preprocessing`: the same model on the tensor the runtime's preprocessing makes from the manifest
    (common.image_tensor: centred letterbox, PIL bilinear), decoded by the numpy reference below, which is what
    the runtime's `yolo` decoder does: best class per anchor, score > 0.25, greedy NMS at IoU > 0.45 over all
    classes (`agnostic_nms = true`, as nudenet), at most 100 boxes, letterbox undone and clamped to the image.
"""

from __future__ import annotations

import ast
import json
import shutil
import sys

import numpy as np
import onnx
import onnxruntime as ort

from common import MODELS, extract_wheel, fill_sha256, image_tensor, pip_download, temp_dir, toml_str

NUDENET = "nudenet==3.4.2"
SIZE = 320
SCORE, IOU, MAX = 0.25, 0.45, 100
FRAMES = ["astronaut.png", "camera.png", "grace_hopper.jpg", "people.jpg"]


def iou(a, b) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return 0.0 if union <= 0 else inter / union


def decode(head: np.ndarray, geometry: dict, src: tuple[int, int]) -> list[dict]:
    """The runtime's yolo decoder in numpy (see the module docstring)."""
    rows = head[0]  # [4 + classes, anchors]
    scores = rows[4:]
    best = scores.argmax(axis=0)  # first maximum: ties go to the lower class
    best_score = scores.max(axis=0)
    cand = []
    for a in np.flatnonzero(best_score > np.float32(SCORE)):
        cx, cy, w, h = (float(v) for v in rows[:4, a])
        cand.append(((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), float(best_score[a]), int(best[a]), int(a)))
    cand.sort(key=lambda c: (-c[1], c[3]))
    kept = []
    for c in cand:
        if len(kept) == MAX:
            break
        if all(iou(k[0], c[0]) <= IOU for k in kept):
            kept.append(c)
    s, px, py = geometry["s"], geometry["pad_x"], geometry["pad_y"]
    out = []
    for box, score, cls, _ in kept:
        x0, y0, x1, y1 = box
        corners = [(x0 - px) / s, (y0 - py) / s, (x1 - px) / s, (y1 - py) / s]
        limits = [src[0], src[1], src[0], src[1]]
        corners = [min(max(v, 0.0), lim) for v, lim in zip(corners, limits)]
        out.append({"class_index": cls, "score": score, "bbox": corners})
    return out


def main() -> None:
    tmp = temp_dir("nudenet-")
    wheel = pip_download(NUDENET, tmp)
    root = extract_wheel(wheel, tmp / "wheel")
    model = onnx.load(str(root / "nudenet" / "320n.onnx"))
    meta = {p.key: p.value for p in model.metadata_props}
    names = ast.literal_eval(meta["names"])
    labels = [names[i] for i in range(len(names))]
    assert len(labels) == 18 and meta["version"] == "8.2.46", meta

    bundle = MODELS / "body-part-detector"
    bundle.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(root / "nudenet" / "320n.onnx", bundle / "model.onnx")
    (bundle / "labels.txt").write_text("\n".join(labels) + "\n")

    provenance = (
        "NudeNet body-part detector (notAI-tech/NudeNet): nudenet/320n.onnx from PyPI nudenet 3.4.2, a YOLOv8n "
        "exported by ultralytics 8.2.46 (licence AGPL-3.0 per the model's metadata). Copied unchanged by "
        "models/scripts/make_body_part_detector.py; labels from the metadata's `names`. Input images "
        f"[batch, 3, height, width] (dynamic, used at {SIZE} x {SIZE}), output output0 [batch, 22, anchors]: "
        "4 box rows then 18 class scores. nudenet letterboxes at the bottom and right with black and resizes "
        "with OpenCV; the bundle letterboxes centred (see models/README.md for the difference it makes)."
    )
    manifest = f"""name = "body-part-detector"
version = "1.0.0"
task = "detection"
model = "model.onnx"
sha256 = ""
license = "AGPL-3.0-only"
provenance = {toml_str(provenance)}
labels_file = "labels.txt"

[input]
kind = "image"
tensor = "images"
layout = "nchw"
width = {SIZE}
height = {SIZE}
color = "rgb"
dtype = "f32"
resize = "letterbox"
scale = {1.0 / 255.0!r}
mean = [0.0]
std = [1.0]
pad_value = 0

[output]
decoder = "yolo"
tensor = "output0"
score_threshold = {SCORE}
iou_threshold = {IOU}
max_detections = {MAX}
agnostic_nms = true

[execution]
providers = ["cpu"]
"""
    (bundle / "manifest.toml").write_text(manifest)
    print("sha256", fill_sha256(bundle))

    sys.path.insert(0, str(root))
    from nudenet import NudeDetector  # noqa: E402  (from the downloaded wheel)

    detector = NudeDetector()
    sess = ort.InferenceSession(str(bundle / "model.onnx"), providers=["CPUExecutionProvider"])
    spec = {"width": SIZE, "height": SIZE, "resize": "letterbox", "pad_value": 0, "scale": 1.0 / 255.0}
    cases = []
    for name in FRAMES:
        path = MODELS / "frames" / name
        package = [
            {"class_index": labels.index(d["class"]), "label": d["class"], "score": d["score"], "box": d["box"]}
            for d in detector.detect(str(path))
        ]
        t, geometry, src = image_tensor(path, spec)
        ours = decode(sess.run(["output0"], {"images": t})[0], geometry, src)
        cases.append({"input": f"frames/{name}", "package": package, "runtime_preprocessing": ours})
        print(name, "nudenet:", [(d["label"], round(d["score"], 2), d["box"]) for d in package])
        print(name, "runtime preprocessing:", [(labels[d["class_index"]], round(d["score"], 2)) for d in ours])
    refs = {"bundle": "body-part-detector", "package": NUDENET, "onnxruntime": ort.__version__, "cases": cases}
    (MODELS / "references" / "body-part-detector.json").write_text(json.dumps(refs, indent=1) + "\n")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
