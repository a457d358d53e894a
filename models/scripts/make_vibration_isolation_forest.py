"""Builds models/vibration-isolation-forest and its references (models/references/vibration-isolation-forest.json).

Data: the same windows as make_vibration_anomaly.py (BasicMotions accelerometer, aeon 1.6.0 wheel; 3 channels x 50
samples, stride 10; normal = standing and walking of the TRAIN split).

Model: scikit-learn's IsolationForest (100 trees, seed 0, contamination "auto") on the flat window (150 values,
channel by channel), exported with skl2onnx: outputs `label` int64 [N] (1 inlier, -1 outlier) and `scores` float32
[N, 1] (`decision_function`: negative means anomalous). One Reshape node in front takes the window [N, 3, 50].

References: scikit-learn's own `decision_function` and `predict` on every non-overlapping window of
models/recordings/vibration.csv, as the runtime reads them.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import onnxruntime as ort
import sklearn
from skl2onnx import to_onnx
from sklearn.ensemble import IsolationForest

import basicmotions
from common import MODELS, fill_sha256, read_sensor_csv, temp_dir, toml_str
from sklearn_onnx import flat_windows, sensor_windows, window_input

WINDOW = 50
NORMAL = {0, 2}  # standing, walking
BUNDLE = "vibration-isolation-forest"


def windows(X: np.ndarray, stride: int) -> np.ndarray:
    """[n, 3, 100] cases -> [m, 3, WINDOW] windows."""
    return np.stack([x[:, s : s + WINDOW] for x in X for s in range(0, X.shape[2] - WINDOW + 1, stride)])


def train() -> IsolationForest:
    tmp = temp_dir("isolation-forest-")
    data = basicmotions.load(tmp)
    Xtr, ytr = data["TRAIN"]
    normal = windows(Xtr[np.isin(ytr, list(NORMAL))][:, :3], stride=10)
    forest = IsolationForest(n_estimators=100, random_state=0).fit(flat_windows(normal))
    Xte, yte = data["TEST"]
    test = windows(Xte[:, :3], stride=WINDOW)
    truth = np.repeat(~np.isin(yte, list(NORMAL)), 100 // WINDOW)
    flagged = forest.predict(flat_windows(test)) == -1
    print(f"TEST windows {len(test)}: flagged {int(flagged.sum())}, of which anomalous {int((flagged & truth).sum())}; "
          f"anomalous windows {int(truth.sum())}")
    shutil.rmtree(tmp, ignore_errors=True)
    return forest


def export(forest: IsolationForest) -> onnx.ModelProto:
    model = to_onnx(forest, np.zeros((1, 3 * WINDOW), np.float32), target_opset={"": 17, "ai.onnx.ml": 3})
    return window_input(model, 3, WINDOW)


def main() -> None:
    forest = train()
    bundle = MODELS / BUNDLE
    bundle.mkdir(parents=True, exist_ok=True)
    onnx.save(export(forest), str(bundle / "model.onnx"))
    provenance = (
        f"scikit-learn {sklearn.__version__} IsolationForest (100 trees, seed 0) trained by "
        "models/scripts/make_vibration_isolation_forest.py on the normal (standing, walking) TRAIN windows of "
        "BasicMotions (PyPI aeon 1.6.0; 3-axis accelerometer, 50 samples, stride 10) as flat vectors, exported with "
        "skl2onnx; a Reshape node in front takes the window [N, 3, 50]. Outputs: `label` int64 (1 inlier, -1 outlier) "
        "and `scores` float32 (decision_function: negative = anomalous)."
    )
    (bundle / "manifest.toml").write_text(f"""name = "{BUNDLE}"
version = "1.0.0"
task = "anomaly"
model = "model.onnx"
sha256 = ""
license = "Apache-2.0"
provenance = {toml_str(provenance)}

[input]
kind = "sensor"
tensor = "window"
channels = 3
window = {WINDOW}
layout = "channels_first"
channel_names = ["acc_x", "acc_y", "acc_z"]

[output]
decoder = "anomaly"
tensor = "scores"
threshold = 0.0
# scikit-learn's decision_function is negative for outliers.
direction = "lower"
label_tensor = "label"
anomalous_label = -1

[execution]
providers = ["cpu"]
""")
    print("sha256", fill_sha256(bundle))

    _, rows = read_sensor_csv(MODELS / "recordings" / "vibration.csv")
    session = ort.InferenceSession(str(bundle / "model.onnx"), providers=["CPUExecutionProvider"])
    cases = []
    for start, window in sensor_windows(rows, WINDOW):
        x = flat_windows(window[None])
        score = float(np.float32(forest.decision_function(x)[0]))
        label = int(forest.predict(x)[0])
        onnx_label, onnx_score = session.run(["label", "scores"], {"window": window[None]})
        # The flags compared in the tests must not hang on float rounding.
        assert abs(score) > 1e-4 and int(onnx_label.reshape(-1)[0]) == label, (start, score, label, onnx_label, onnx_score)
        cases.append({
            "input": "recordings/vibration.csv",
            "start_row": start,
            "output": {"anomaly": {"score": score, "threshold": 0.0, "anomalous": score < 0, "label": label,
                                   "label_anomalous": label == -1}},
            "onnxruntime_score": float(onnx_score.reshape(-1)[0]),
        })
    worst = max(abs(c["output"]["anomaly"]["score"] - c["onnxruntime_score"]) for c in cases)
    flagged = sum(c["output"]["anomaly"]["anomalous"] for c in cases)
    print(f"{len(cases)} windows, {flagged} anomalous; worst |sklearn - onnxruntime| score {worst:.2e}")
    references = {"bundle": BUNDLE, "onnxruntime": ort.__version__, "scikit-learn": sklearn.__version__,
                  "cases": cases}
    (MODELS / "references" / f"{BUNDLE}.json").write_text(json.dumps(references, indent=1) + "\n")


if __name__ == "__main__":
    main()
