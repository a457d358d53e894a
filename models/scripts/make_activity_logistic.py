"""Builds models/testing/activity-logistic and its references (models/references/activity-logistic.json): a
classifier whose class names live in the ONNX model's metadata (`labels_metadata = "classes"`), not in the bundle.

Data: BasicMotions (aeon 1.6.0 wheel), 6 channels x 100 samples, the 40 TRAIN cases.
Model: scikit-learn Pipeline(StandardScaler, LogisticRegression) on the flat window (600 values, channel by channel),
exported with skl2onnx (zipmap=False): outputs `label` int64 [N] and `probabilities` float32 [N, 4]; a Reshape node in
front takes the window [N, 6, 100]. The class names go into metadata_props["classes"] as a JSON list.

References: scikit-learn's own `predict_proba` on every window of models/recordings/activity.csv.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import onnxruntime as ort
import sklearn
from skl2onnx import to_onnx
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import basicmotions
from common import MODELS, fill_sha256, read_sensor_csv, temp_dir, toml_str
from sklearn_onnx import flat_windows, sensor_windows, set_metadata, window_input

WINDOW = 100
BUNDLE = "activity-logistic"


def main() -> None:
    tmp = temp_dir("activity-logistic-")
    data = basicmotions.load(tmp)
    Xtr, ytr = data["TRAIN"]
    Xte, yte = data["TEST"]
    classes = data["classes"]
    classifier = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000, C=0.1)).fit(flat_windows(Xtr), ytr)
    accuracy = float((classifier.predict(flat_windows(Xte)) == yte).mean())
    print(f"classes {classes}; TEST accuracy {accuracy:.3f}")

    model = to_onnx(classifier, np.zeros((1, 6 * WINDOW), np.float32), options={"zipmap": False},
                    target_opset={"": 17, "ai.onnx.ml": 3})
    model = window_input(model, 6, WINDOW)
    set_metadata(model, "classes", json.dumps(classes))
    bundle = MODELS / "testing" / BUNDLE
    bundle.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(bundle / "model.onnx"))
    provenance = (
        f"scikit-learn {sklearn.__version__} StandardScaler + LogisticRegression (C 0.1) trained by "
        "models/scripts/make_activity_logistic.py on the 40 TRAIN cases of BasicMotions (PyPI aeon 1.6.0) as flat "
        f"windows (6 x 100), exported with skl2onnx (zipmap off); TEST accuracy {accuracy:.3f}. Class names in the "
        "model's metadata under `classes` (a JSON list)."
    )
    (bundle / "manifest.toml").write_text(f"""name = "{BUNDLE}"
version = "1.0.0"
task = "classification"
model = "model.onnx"
sha256 = ""
license = "Apache-2.0"
provenance = {toml_str(provenance)}
labels_metadata = "classes"

[input]
kind = "sensor"
tensor = "window"
channels = 6
window = {WINDOW}
layout = "channels_first"
channel_names = {json.dumps(basicmotions.CHANNELS)}

[output]
decoder = "classification"
tensor = "probabilities"
softmax = "never"
top_k = 4

[execution]
providers = ["cpu"]
""")
    print("sha256", fill_sha256(bundle))

    _, rows = read_sensor_csv(MODELS / "recordings" / "activity.csv")
    session = ort.InferenceSession(str(bundle / "model.onnx"), providers=["CPUExecutionProvider"])
    cases, worst = [], 0.0
    for start, window in sensor_windows(rows, WINDOW):
        probabilities = classifier.predict_proba(flat_windows(window[None]))[0]
        (onnx_probabilities,) = session.run(["probabilities"], {"window": window[None]})
        worst = max(worst, float(np.abs(probabilities - onnx_probabilities[0]).max()))
        top = np.argsort(-probabilities, kind="stable")
        cases.append({
            "input": "recordings/activity.csv",
            "start_row": start,
            "output": {"classification": {"classes": [
                {"index": int(i), "label": classes[i], "score": float(probabilities[i])} for i in top]}},
        })
    print(f"{len(cases)} windows; worst |sklearn - onnxruntime| probability {worst:.2e}")
    references = {"bundle": BUNDLE, "onnxruntime": ort.__version__, "scikit-learn": sklearn.__version__,
                  "cases": cases}
    (MODELS / "references" / f"{BUNDLE}.json").write_text(json.dumps(references, indent=1) + "\n")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
