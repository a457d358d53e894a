"""Builds models/vibration-anomaly and models/recordings/vibration.csv.

Data: the 3-axis accelerometer channels of BasicMotions (smart watch, 10 Hz; aeon 1.6.0 wheel). No labelled machine
vibration data ships in a package registry, and the Daphnet excerpt in aeon has no labelled anomalies (all labels 0),
so "normal" vibration is the low-intensity activities (standing, walking) and "anomalous" the high-intensity ones
(running, badminton).

Model: an MLP autoencoder (scikit-learn MLPRegressor, 150 -> 32 -> 8 -> 32 -> 150, tanh) trained on normal windows of
the TRAIN split only (3 channels x 50 samples, stride 10). The graph standardises each channel itself, reconstructs
the window and outputs the mean squared reconstruction error as `score` [1]. The threshold is the 99th percentile of
the scores of the normal TRAIN windows.
"""

from __future__ import annotations

import shutil

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from sklearn.neural_network import MLPRegressor

import basicmotions
from common import MODELS, fill_sha256, read_sensor_csv, sensor_tensor, temp_dir, toml_str

WINDOW = 50
CHANNELS = basicmotions.CHANNELS[:3]
NORMAL = {0, 2}  # standing, walking
HIDDEN = (32, 8, 32)


def windows(X: np.ndarray, stride: int) -> np.ndarray:
    """[n, 3, 100] cases -> [m, 3, WINDOW] windows."""
    return np.stack([x[:, s : s + WINDOW] for x in X for s in range(0, X.shape[2] - WINDOW + 1, stride)])


def build_graph(ch_mean, ch_std, ae: MLPRegressor) -> onnx.ModelProto:
    f32 = lambda a: np.asarray(a, dtype=np.float32)  # noqa: E731
    d = 3 * WINDOW
    inits = [
        numpy_helper.from_array(f32(ch_mean).reshape(1, 3, 1), "ch_mean"),
        numpy_helper.from_array(f32(ch_std).reshape(1, 3, 1), "ch_std"),
        numpy_helper.from_array(np.array([1, d], np.int64), "flat"),
    ]
    nodes = [
        helper.make_node("Sub", ["window", "ch_mean"], ["centred"]),
        helper.make_node("Div", ["centred", "ch_std"], ["scaled"]),
        helper.make_node("Reshape", ["scaled", "flat"], ["x"]),
    ]
    prev = "x"
    layers = len(ae.coefs_)
    for i, (w, b) in enumerate(zip(ae.coefs_, ae.intercepts_)):
        inits += [numpy_helper.from_array(f32(w), f"w{i}"), numpy_helper.from_array(f32(b), f"b{i}")]
        out = f"z{i}"
        nodes.append(helper.make_node("Gemm", [prev, f"w{i}", f"b{i}"], [out]))
        if i < layers - 1:
            nodes.append(helper.make_node("Tanh", [out], [f"a{i}"]))
            out = f"a{i}"
        prev = out
    nodes += [
        helper.make_node("Sub", [prev, "x"], ["err"]),
        helper.make_node("Mul", ["err", "err"], ["sq"]),
        helper.make_node("ReduceMean", ["sq"], ["score"], axes=[1], keepdims=0),
    ]
    graph = helper.make_graph(
        nodes,
        "vibration_anomaly",
        [helper.make_tensor_value_info("window", TensorProto.FLOAT, [1, 3, WINDOW])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, [1])],
        inits,
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="make_vibration_anomaly")
    m.ir_version = 8
    m = onnx.shape_inference.infer_shapes(m, check_type=True, strict_mode=True)
    onnx.checker.check_model(m, full_check=True)
    return m


def main() -> None:
    tmp = temp_dir("vibration-")
    data = basicmotions.load(tmp)
    Xtr, ytr = data["TRAIN"]
    Xte, yte = data["TEST"]
    Xtr, Xte = Xtr[:, :3], Xte[:, :3]
    normal_tr = windows(Xtr[np.isin(ytr, list(NORMAL))], stride=10)
    ch_mean = np.round(normal_tr.transpose(1, 0, 2).reshape(3, -1).mean(axis=1), 6).astype(np.float32)
    ch_std = np.round(normal_tr.transpose(1, 0, 2).reshape(3, -1).std(axis=1), 6).astype(np.float32)
    flat = lambda W: ((W - ch_mean[None, :, None]) / ch_std[None, :, None]).reshape(len(W), -1)  # noqa: E731
    ae = MLPRegressor(hidden_layer_sizes=HIDDEN, activation="tanh", alpha=1e-3, max_iter=3000, random_state=0)
    ae.fit(flat(normal_tr), flat(normal_tr))

    bundle = MODELS / "vibration-anomaly"
    bundle.mkdir(parents=True, exist_ok=True)
    onnx.save(build_graph(ch_mean, ch_std, ae), str(bundle / "model.onnx"))
    sess = ort.InferenceSession(str(bundle / "model.onnx"), providers=["CPUExecutionProvider"])
    score = lambda w: float(sess.run(["score"], {"window": np.ascontiguousarray(w[None], dtype=np.float32)})[0][0])  # noqa: E731

    train_scores = np.array([score(w) for w in normal_tr])
    threshold = float(np.float32(np.percentile(train_scores, 99)))
    # Held-out evaluation: every non-overlapping window of every TEST case.
    te_w = windows(Xte, stride=WINDOW)
    te_y = np.repeat(~np.isin(yte, list(NORMAL)), 100 // WINDOW)
    te_s = np.array([score(w) for w in te_w])
    flagged = te_s > threshold
    tp = int((flagged & te_y).sum())
    fp = int((flagged & ~te_y).sum())
    fn = int((~flagged & te_y).sum())
    precision = tp / max(tp + fp, 1)
    recall = tp / max(tp + fn, 1)
    per_class = {data["classes"][k]: float(flagged[np.repeat(yte, 2) == k].mean()) for k in range(4)}
    print(f"threshold {threshold:.4f}; TEST windows {len(te_w)}: tp {tp} fp {fp} fn {fn}")
    print(f"precision {precision:.3f} recall {recall:.3f}; share flagged per class {per_class}")

    # Recording: TEST cases, normal and anomalous segments interleaved, 100 rows (2 windows) each.
    order = []
    for k in [2, 2, 0, 1, 2, 3, 0, 2]:  # walking, walking, standing, running, walking, badminton, standing, walking
        idx = [i for i in np.flatnonzero(yte == k) if i not in order]
        order.append(int(idx[-1]))
    rows = np.concatenate([Xte[i].T for i in order], axis=0)
    basicmotions.write_csv(MODELS / "recordings" / "vibration.csv", rows, CHANNELS)
    _, rec = read_sensor_csv(MODELS / "recordings" / "vibration.csv")
    spec = {"window": WINDOW, "layout": "channels_first"}
    rec_s = [float(sess.run(["score"], {"window": sensor_tensor(rec, s, spec)})[0][0]) for s in range(0, len(rec), WINDOW)]
    print("recording cases (TEST index):", order, [data["classes"][yte[i]] for i in order])
    print("recording scores:", [round(s, 3) for s in rec_s])

    provenance = (
        "MLP autoencoder (150-32-8-32-150, tanh, scikit-learn MLPRegressor, seed 0) trained by "
        "models/scripts/make_vibration_anomaly.py on windows of 3-axis smart-watch accelerometer data (50 samples "
        "= 5 s at 10 Hz, stride 10) from the TRAIN split of the UEA BasicMotions data set as shipped in PyPI aeon "
        "1.6.0; normal = standing and walking, anomalous = running and badminton (no labelled machine-vibration "
        "data ships in a package registry; aeon's Daphnet excerpt has no labelled anomalies). The graph "
        "standardises each channel, reconstructs the window and outputs the mean squared reconstruction error "
        f"`score` [1]. Threshold {threshold:.4f} = 99th percentile of normal TRAIN window scores. Held-out TEST "
        f"windows (non-overlapping, {len(te_w)}): precision {precision:.3f}, recall {recall:.3f} "
        f"(tp {tp}, fp {fp}, fn {fn})."
    )
    manifest = f"""name = "vibration-anomaly"
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
tensor = "score"
threshold = {threshold!r}

[execution]
providers = ["cpu"]
"""
    (bundle / "manifest.toml").write_text(manifest)
    print("sha256", fill_sha256(bundle))
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
