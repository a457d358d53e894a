"""Builds the fixtures of the image input options (docs/bundle-format.md, "Image preprocessing"):

- models/testing/filters/: a shipped frame (frames/astronaut.png, 512x512) downscaled to 96x72 and a 40x30 image
  (small.png, made here) upscaled to 96x72 with each `input.filter`, by the library each filter claims to match:
  OpenCV (opencv-python-headless) for `bilinear` (INTER_LINEAR), PIL for `nearest` (NEAREST, the same as OpenCV's
  INTER_NEAREST_EXACT), `bilinear_antialias` (BILINEAR), `area` (BOX; OpenCV's INTER_AREA at whole-number
  ratios), `bicubic` (BICUBIC) and `lanczos` (LANCZOS); also tall.png (30x40) for the letterbox cases. It prints
  how far OpenCV's and PIL's versions of a filter are apart.
- models/testing/image-identity-{i8,i32,i64,rank3}/: bundles of one-node graphs (made with the `onnx` package) that
  return their input as f32 (`Cast`), so that the tensor the runtime builds is what they publish: integer inputs
  [1, 3, 24, 32] (stretch), and an f32 input without a batch axis, [3, 32, 32], letterboxed with the padding on
  the right and bottom at 127.5 (0.0 once normalised with mean 0.5 and std 0.5).
- models/references/image-classifier-lanczos.json: the shipped classifier with `filter = "lanczos"` (PIL LANCZOS
  centre crop), top-5 from Python onnxruntime, in the format of make_references.py.
- models/references/inputs.json: each identity bundle's output on its frames, from Python onnxruntime on a
  numpy/PIL tensor built as the bundle's manifest says.

Run from the repository root: python3 models/scripts/make_input_fixtures.py
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper
from PIL import Image

from common import MODELS, fill_sha256, load_rgb

FILTERS_DIR = MODELS / "testing" / "filters"
SIZE = (96, 72)
# The library call each filter is compared with (docs/bundle-format.md states how close each comes).
FILTERS = {
    "nearest": lambda im, size: np.asarray(Image.fromarray(im).resize(size, Image.NEAREST)),
    "bilinear": lambda im, size: cv2.resize(im, size, interpolation=cv2.INTER_LINEAR),
    "bilinear_antialias": lambda im, size: np.asarray(Image.fromarray(im).resize(size, Image.BILINEAR)),
    "bicubic": lambda im, size: np.asarray(Image.fromarray(im).resize(size, Image.BICUBIC)),
    "lanczos": lambda im, size: np.asarray(Image.fromarray(im).resize(size, Image.LANCZOS)),
}

IDENTITY = {
    "i8": (TensorProto.INT8, [1, 3, 24, 32]),
    "i32": (TensorProto.INT32, [1, 3, 24, 32]),
    "i64": (TensorProto.INT64, [1, 3, 24, 32]),
    "rank3": (TensorProto.FLOAT, [3, 32, 32]),
}
NUMPY_DTYPES = {"i8": np.int8, "i32": np.int32, "i64": np.int64}


def save_png(path, pixels: np.ndarray) -> None:
    Image.fromarray(pixels).save(path, optimize=True)


def make_filter_fixtures() -> None:
    FILTERS_DIR.mkdir(parents=True, exist_ok=True)
    frame = np.asarray(load_rgb(MODELS / "frames" / "astronaut.png"))
    small = np.asarray(Image.fromarray(frame).resize((40, 30), Image.BOX, box=(0, 64, 512, 448)))
    save_png(FILTERS_DIR / "small.png", small)
    save_png(FILTERS_DIR / "tall.png", np.asarray(Image.fromarray(frame).resize((30, 40), Image.BOX, box=(96, 0, 416, 427))))
    for name, resize in FILTERS.items():
        save_png(FILTERS_DIR / f"{name}-down.png", resize(frame, SIZE))
        save_png(FILTERS_DIR / f"{name}-up.png", resize(small, SIZE))
    # The runtime's `area` is a box filter, as PIL's BOX is: the source pixels whose centres fall in an output
    # pixel's footprint count equally. OpenCV's INTER_AREA weighs the pixels the footprint's edges cut by the part
    # they cover, the same at whole-number ratios only, and upscaling it interpolates bilinearly.
    for label, source in [("down", frame), ("up", small)]:
        save_png(FILTERS_DIR / f"area-{label}.png", np.asarray(Image.fromarray(source).resize(SIZE, Image.BOX)))
    whole = cv2.resize(frame, (128, 128), interpolation=cv2.INTER_AREA).astype(int)
    box = np.asarray(Image.fromarray(frame).resize((128, 128), Image.BOX)).astype(int)
    print(f"area at a whole-number ratio (512 to 128): OpenCV INTER_AREA vs PIL BOX max {np.abs(whole - box).max()}")
    # How far PIL's and OpenCV's versions of the same filter are apart, for the documentation.
    for name, cv_flag, pil_flag in [("nearest", cv2.INTER_NEAREST_EXACT, Image.NEAREST),
                                    ("area", cv2.INTER_AREA, Image.BOX),
                                    ("bilinear (antialias in PIL only)", cv2.INTER_LINEAR, Image.BILINEAR)]:
        for label, source in [("down", frame), ("up", small)]:
            a = cv2.resize(source, SIZE, interpolation=cv_flag).astype(int)
            b = np.asarray(Image.fromarray(source).resize(SIZE, pil_flag)).astype(int)
            print(f"{name} {label}: OpenCV vs PIL max {np.abs(a - b).max()}, {np.mean(a != b):.1%} differ")


def identity_spec(name: str) -> dict:
    if name == "rank3":
        return {"kind": "image", "tensor": "images", "width": 32, "height": 32, "dtype": "f32", "resize": "letterbox",
                "pad_side": "bottom_right", "pad_value": 127.5, "scale": 1 / 255, "mean": [0.5], "std": [0.5],
                "batch_axis": False}
    return {"kind": "image", "tensor": "images", "width": 32, "height": 24, "dtype": name, "resize": "stretch"}


def identity_tensor(path, spec: dict) -> np.ndarray:
    """The tensor as the manifest says, from PIL's BILINEAR resize (the runtime's default filter)."""
    if spec["resize"] == "letterbox":
        im = load_rgb(path)
        w, h = spec["width"], spec["height"]
        s = min(w / im.width, h / im.height)
        new_w, new_h = round(im.width * s), round(im.height * s)
        inset = (np.asarray(im.resize((new_w, new_h), Image.BILINEAR)).astype(np.float32) * np.float32(spec["scale"])
                 - np.float32(0.5)) / np.float32(0.5)
        # pad_value 127.5 normalised: (127.5 / 255 - 0.5) / 0.5 = 0.0; the padding is on the right and bottom.
        t = np.full((h, w, 3), (np.float32(127.5) * np.float32(spec["scale"]) - np.float32(0.5)) / np.float32(0.5),
                    np.float32)
        t[:new_h, :new_w] = inset
        return np.ascontiguousarray(t.transpose(2, 0, 1))
    px = np.asarray(load_rgb(path).resize((spec["width"], spec["height"]), Image.BILINEAR)).astype(np.int64)
    if spec["dtype"] == "i8":
        px = px - 128
    return np.ascontiguousarray(px.astype(NUMPY_DTYPES[spec["dtype"]]).transpose(2, 0, 1)[None])


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list):
        return "[" + ", ".join(repr(float(v)) for v in value) + "]"
    return repr(value)


def make_identity_bundle(name: str) -> dict:
    elem, shape = IDENTITY[name]
    graph = helper.make_graph(
        [helper.make_node("Cast", ["images"], ["values"], to=TensorProto.FLOAT)],
        f"image-identity-{name}",
        [helper.make_tensor_value_info("images", elem, shape)],
        [helper.make_tensor_value_info("values", TensorProto.FLOAT, shape)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="make_input_fixtures.py")
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    bundle = MODELS / "testing" / f"image-identity-{name}"
    bundle.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(bundle / "model.onnx"))
    spec = identity_spec(name)
    lines = [
        f'name = "image-identity-{name}"',
        'version = "1.0.0"',
        'task = "raw"',
        'sha256 = ""',
        'license = "Apache-2.0"',
        f'provenance = "One Cast node from its {shape} input to f32, made with the onnx package by '
        'models/scripts/make_input_fixtures.py: it publishes the tensor the runtime builds."',
        "",
        "[input]",
        *[f"{key} = {toml_value(value)}" for key, value in spec.items()],
        "",
        "[output]",
        'decoder = "raw"',
        "",
    ]
    (bundle / "manifest.toml").write_text("\n".join(lines))
    fill_sha256(bundle)
    session = ort.InferenceSession(str(bundle / "model.onnx"), providers=["CPUExecutionProvider"])
    frames = ["frames/astronaut.png", "testing/filters/small.png", "testing/filters/tall.png"]
    cases = []
    for frame in frames:
        tensor = identity_tensor(MODELS / frame, spec)
        (values,) = session.run(["values"], {"images": tensor})
        # Integer inputs come back as whole numbers: written as such, the file is half the size.
        rounded = [int(v) if name != "rank3" else round(float(v), 6) for v in values.ravel()]
        cases.append({"input": frame, "shape": list(values.shape), "values": rounded})
    return {"bundle": f"testing/image-identity-{name}", "cases": cases}


def make_lanczos_reference() -> None:
    """The shipped classifier's top-5 with PIL LANCZOS resizing, as make_references.py writes references."""
    bundle = MODELS / "image-classifier"
    labels = (bundle / "labels.txt").read_text().splitlines()
    spec = {"width": 224, "height": 224, "resize": "center_crop", "crop_fraction": 0.875, "scale": 1 / 255,
            "mean": [0.4980392156862745] * 3, "std": [0.5019607843137255] * 3}
    session = ort.InferenceSession(str(bundle / "model.onnx"), providers=["CPUExecutionProvider"])
    cases = []
    for frame in ["frames/astronaut.png", "frames/camera.png"]:
        im = load_rgb(MODELS / frame)
        s = max(224 / im.width, 224 / im.height) / 0.875
        left, top = (im.width - 224 / s) / 2, (im.height - 224 / s) / 2
        px = np.asarray(im.resize((224, 224), Image.LANCZOS, box=(left, top, left + 224 / s, top + 224 / s)))
        mean, std = np.float32(spec["mean"][0]), np.float32(spec["std"][0])
        t = ((px.astype(np.float32) * np.float32(spec["scale"]) - mean) / std).transpose(2, 0, 1)[None]
        (logits,) = session.run(["logits"], {"images": np.ascontiguousarray(t, np.float32)})
        logits = logits[0].astype(np.float64)
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        top = np.argsort(-probs, kind="stable")[:5]
        cases.append({
            "input": frame,
            "logits_top5": [float(logits[i]) for i in top],
            "output": {"classification": {"classes": [
                {"index": int(i), "label": labels[i], "score": float(probs[i])} for i in top]}},
        })
    reference = {"bundle": "image-classifier", "filter": "lanczos", "onnxruntime": ort.__version__, "cases": cases}
    (MODELS / "references" / "image-classifier-lanczos.json").write_text(json.dumps(reference, indent=1) + "\n")


def main() -> None:
    make_filter_fixtures()
    bundles = [make_identity_bundle(name) for name in IDENTITY]
    reference = {"onnxruntime": ort.__version__, "bundles": bundles}
    (MODELS / "references" / "inputs.json").write_text(json.dumps(reference) + "\n")
    make_lanczos_reference()


if __name__ == "__main__":
    main()
