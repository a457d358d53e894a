"""Builds models/activity-classifier and models/recordings/activity.csv from BasicMotions (aeon 1.6.0 wheel).

Model: per-channel standardisation (in the manifest, statistics of the TRAIN split), then in the graph, per channel:
mean, standard deviation and mean absolute first difference over the window (18 features), a standard scaler and a
small MLP (18 -> 16 ReLU -> 4) trained with scikit-learn on the 40 TRAIN cases. Output `logits` [1,4].
"""

from __future__ import annotations

import shutil

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from sklearn.neural_network import MLPClassifier

import basicmotions
from common import MODELS, fill_sha256, read_sensor_csv, sensor_tensor, temp_dir, toml_floats, toml_str

WINDOW = 100
LABELS = ["standing", "running", "walking", "badminton"]  # class order of the .ts header


def features(x: np.ndarray) -> np.ndarray:
    """x [n, 6, T] (already standardised) -> [n, 18], exactly what the graph computes."""
    m = x.mean(axis=2, keepdims=True)
    s = np.sqrt(((x - m) ** 2).mean(axis=2))
    ad = np.abs(np.diff(x, axis=2)).mean(axis=2)
    return np.concatenate([m[:, :, 0], s, ad], axis=1).astype(np.float32)


def build_graph(f_mean, f_std, clf: MLPClassifier) -> onnx.ModelProto:
    f32 = lambda a: np.asarray(a, dtype=np.float32)  # noqa: E731
    inits = [
        numpy_helper.from_array(f32(f_mean)[None], "feat_mean"),
        numpy_helper.from_array(f32(f_std)[None], "feat_std"),
        numpy_helper.from_array(f32(clf.coefs_[0]), "w1"),
        numpy_helper.from_array(f32(clf.intercepts_[0]), "b1"),
        numpy_helper.from_array(f32(clf.coefs_[1]), "w2"),
        numpy_helper.from_array(f32(clf.intercepts_[1]), "b2"),
        numpy_helper.from_array(np.array([1], np.int64), "one"),
        numpy_helper.from_array(np.array([0], np.int64), "zero"),
        numpy_helper.from_array(np.array([WINDOW], np.int64), "end"),
        numpy_helper.from_array(np.array([WINDOW - 1], np.int64), "end_1"),
        numpy_helper.from_array(np.array([2], np.int64), "axis2"),
        numpy_helper.from_array(np.array([1, 18], np.int64), "flat"),
    ]
    n = helper.make_node
    nodes = [
        n("ReduceMean", ["window"], ["mean"], axes=[2], keepdims=1),
        n("Sub", ["window", "mean"], ["centred"]),
        n("Mul", ["centred", "centred"], ["sq"]),
        n("ReduceMean", ["sq"], ["var"], axes=[2], keepdims=1),
        n("Sqrt", ["var"], ["std"]),
        n("Slice", ["window", "one", "end", "axis2"], ["later"]),
        n("Slice", ["window", "zero", "end_1", "axis2"], ["earlier"]),
        n("Sub", ["later", "earlier"], ["diff"]),
        n("Abs", ["diff"], ["absdiff"]),
        n("ReduceMean", ["absdiff"], ["mad"], axes=[2], keepdims=1),
        n("Concat", ["mean", "std", "mad"], ["feat3"], axis=1),
        n("Reshape", ["feat3", "flat"], ["feat"]),
        n("Sub", ["feat", "feat_mean"], ["feat_c"]),
        n("Div", ["feat_c", "feat_std"], ["feat_n"]),
        n("Gemm", ["feat_n", "w1", "b1"], ["h_pre"]),
        n("Relu", ["h_pre"], ["h"]),
        n("Gemm", ["h", "w2", "b2"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "activity_classifier",
        [helper.make_tensor_value_info("window", TensorProto.FLOAT, [1, 6, WINDOW])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 4])],
        inits,
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="make_activity_classifier")
    m.ir_version = 8
    m = onnx.shape_inference.infer_shapes(m, check_type=True, strict_mode=True)
    onnx.checker.check_model(m, full_check=True)
    return m


def main() -> None:
    tmp = temp_dir("basicmotions-")
    data = basicmotions.load(tmp)
    assert [c.lower() for c in data["classes"]] == LABELS, data["classes"]
    Xtr, ytr = data["TRAIN"]
    Xte, yte = data["TEST"]
    ch_mean = Xtr.transpose(1, 0, 2).reshape(6, -1).mean(axis=1)
    ch_std = Xtr.transpose(1, 0, 2).reshape(6, -1).std(axis=1)
    ch_mean = np.round(ch_mean, 6).astype(np.float32)
    ch_std = np.round(ch_std, 6).astype(np.float32)
    norm = lambda X: ((X - ch_mean[None, :, None]) / ch_std[None, :, None]).astype(np.float32)  # noqa: E731
    Ftr, Fte = features(norm(Xtr)), features(norm(Xte))
    f_mean, f_std = Ftr.mean(axis=0), Ftr.std(axis=0) + 1e-6
    clf = MLPClassifier(hidden_layer_sizes=(16,), alpha=1e-3, max_iter=5000, random_state=0)
    clf.fit((Ftr - f_mean) / f_std, ytr)
    train_acc = clf.score((Ftr - f_mean) / f_std, ytr)

    bundle = MODELS / "activity-classifier"
    bundle.mkdir(parents=True, exist_ok=True)
    model = build_graph(f_mean, f_std, clf)
    onnx.save(model, str(bundle / "model.onnx"))

    sess = ort.InferenceSession(str(bundle / "model.onnx"), providers=["CPUExecutionProvider"])
    spec = {"window": WINDOW, "layout": "channels_first", "mean": ch_mean.tolist(), "std": ch_std.tolist()}
    pred = []
    for x in Xte:
        t = sensor_tensor(x.T, 0, spec)
        pred.append(int(np.argmax(sess.run(["logits"], {"window": t})[0][0])))
    pred = np.asarray(pred)
    test_acc = float((pred == yte).mean())
    confusion = np.zeros((4, 4), int)
    for a, b in zip(yte, pred):
        confusion[a, b] += 1
    print(f"train accuracy {train_acc:.3f}, TEST accuracy (onnxruntime) {test_acc:.3f}")
    print("confusion (rows true, cols predicted):", LABELS, "\n", confusion)

    # Replay recording: two TEST cases of each activity, in a mixed order, 100 rows each.
    order = []
    for k in [2, 0, 1, 3, 0, 2, 3, 1]:  # walking, standing, running, badminton, standing, walking, badminton, running
        idx = [i for i in np.flatnonzero(yte == k) if i not in order]
        order.append(int(idx[0]))
    rows = np.concatenate([Xte[i].T for i in order], axis=0)
    basicmotions.write_csv(MODELS / "recordings" / "activity.csv", rows, basicmotions.CHANNELS)
    _, rec = read_sensor_csv(MODELS / "recordings" / "activity.csv")
    rec_pred = [int(np.argmax(sess.run(["logits"], {"window": sensor_tensor(rec, s, spec)})[0][0])) for s in range(0, len(rec), WINDOW)]
    print("recording cases (TEST index):", order, "true:", [LABELS[yte[i]] for i in order])
    print("recording predicted:", [LABELS[p] for p in rec_pred])

    (bundle / "labels.txt").write_text("\n".join(LABELS) + "\n")
    provenance = (
        "Trained by models/scripts/make_activity_classifier.py on the 40 TRAIN cases of the UEA BasicMotions data "
        "set (smart-watch 3-axis accelerometer + 3-axis gyroscope, 10 Hz, 100-sample cases; 4 activities) as "
        "shipped in PyPI aeon 1.6.0 (aeon/datasets/data/BasicMotions). Pipeline: per-channel standardisation with "
        "TRAIN statistics (input.mean/std), then in-graph per-channel mean, standard deviation and mean absolute "
        "first difference (18 features), a standard scaler and a scikit-learn MLP (18-16-4, ReLU, seed 0). "
        f"Accuracy: TRAIN {train_acc:.3f}, TEST {test_acc:.3f} ({int((pred == yte).sum())}/40 cases, "
        "computed with onnxruntime on this graph)."
    )
    manifest = f"""name = "activity-classifier"
version = "1.0.0"
task = "classification"
model = "model.onnx"
sha256 = ""
license = "Apache-2.0"
provenance = {toml_str(provenance)}
labels_file = "labels.txt"

[input]
kind = "sensor"
tensor = "window"
channels = 6
window = {WINDOW}
layout = "channels_first"
channel_names = {toml_list(basicmotions.CHANNELS)}
mean = {toml_floats(ch_mean)}
std = {toml_floats(ch_std)}

[output]
decoder = "classification"
tensor = "logits"
softmax = "auto"
top_k = 4

[execution]
providers = ["cpu"]
"""
    (bundle / "manifest.toml").write_text(manifest)
    print("sha256", fill_sha256(bundle))
    shutil.rmtree(tmp, ignore_errors=True)


def toml_list(items) -> str:
    return "[" + ", ".join(toml_str(s) for s in items) + "]"


if __name__ == "__main__":
    main()
