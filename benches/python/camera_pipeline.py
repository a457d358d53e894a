"""The Python/OpenCV pipeline the agent's camera path is compared with (scripts/bench-camera.sh).

Reads the same stream as the agent (an H.264 file or RTSP URL through OpenCV's FFmpeg backend, or the same JPEG
parts of an MJPEG stream) and does the same work per frame: decode, colour conversion to RGB, resize (stretch,
centre crop or letterbox, as the bundle's manifest says), normalise into a float32 NCHW tensor. One thread, as
the agent's source and worker each use one: cv2.setNumThreads(1), and one decoding thread for FFmpeg
(CAP_PROP_N_THREADS; OpenCV otherwise gives the codec a thread per core).

Prints one JSON line: frames, seconds, per-frame microseconds (median, p10, p90) for decode and preprocess.
"""

import argparse
import json
import os
import statistics
import sys
import time

os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;tcp")
import cv2  # noqa: E402
import numpy as np  # noqa: E402

cv2.setNumThreads(1)


class Preprocess:
    """Resize and normalise an RGB frame as the bundle's manifest says (the keys the agent reads)."""

    def __init__(self, width, height, mode, mean, std, scale, crop_fraction, pad_value):
        self.width, self.height, self.mode = width, height, mode
        self.mean = np.array(mean, dtype=np.float32).reshape(-1, 1, 1)
        self.std = np.array(std, dtype=np.float32).reshape(-1, 1, 1)
        self.scale = np.float32(scale)
        self.crop_fraction, self.pad_value = crop_fraction, pad_value

    def __call__(self, rgb):
        h, w = rgb.shape[:2]
        if self.mode == "letterbox":
            s = min(self.width / w, self.height / h)
            nw, nh = round(w * s), round(h * s)
            canvas = np.full((self.height, self.width, 3), self.pad_value, dtype=np.uint8)
            left, top = (self.width - nw) // 2, (self.height - nh) // 2
            canvas[top:top + nh, left:left + nw] = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_AREA)
            resized = canvas
        elif self.mode == "center_crop":
            s = max(self.width / w, self.height / h) / self.crop_fraction
            cw, ch = min(w, self.width / s), min(h, self.height / s)
            x0, y0 = int((w - cw) / 2), int((h - ch) / 2)
            resized = cv2.resize(rgb[y0:y0 + int(ch), x0:x0 + int(cw)], (self.width, self.height),
                                 interpolation=cv2.INTER_AREA)
        else:
            resized = cv2.resize(rgb, (self.width, self.height), interpolation=cv2.INTER_AREA)
        chw = resized.transpose(2, 0, 1).astype(np.float32) * self.scale
        return np.ascontiguousarray(((chw - self.mean) / self.std)[np.newaxis])


def manifest_preprocess(path):
    import tomllib
    with open(path, "rb") as f:
        spec = tomllib.load(f)["input"]
    return Preprocess(spec["width"], spec["height"], spec.get("resize", "stretch"), spec.get("mean", [0.0]),
                      spec.get("std", [1.0]), spec.get("scale", 1.0), spec.get("crop_fraction", 1.0),
                      spec.get("pad_value", 0))


def video_frames(source, limit):
    capture = cv2.VideoCapture(source, cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, 1])
    if not capture.isOpened():
        sys.exit(f"OpenCV cannot open {source}")
    for _ in range(limit):
        started = time.perf_counter()
        ok, bgr = capture.read()
        if not ok:
            return
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        yield time.perf_counter() - started, rgb


def jpeg_frames(paths, limit):
    parts = [open(p, "rb").read() for p in paths]
    for i in range(limit):
        started = time.perf_counter()
        bgr = cv2.imdecode(np.frombuffer(parts[i % len(parts)], np.uint8), cv2.IMREAD_COLOR)
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        yield time.perf_counter() - started, rgb


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--manifest", required=True, help="the bundle's manifest.toml (resize and normalisation)")
    parser.add_argument("--video", help="an H.264 file or an rtsp:// URL")
    parser.add_argument("--jpegs", nargs="*", help="JPEG parts, cycled")
    parser.add_argument("--frames", type=int, default=300)
    args = parser.parse_args()
    preprocess = manifest_preprocess(args.manifest)
    frames = video_frames(args.video, args.frames) if args.video else jpeg_frames(args.jpegs, args.frames)
    decode_us, preprocess_us = [], []
    started = time.perf_counter()
    for decode_s, rgb in frames:
        t = time.perf_counter()
        preprocess(rgb)
        preprocess_us.append((time.perf_counter() - t) * 1e6)
        decode_us.append(decode_s * 1e6)
    seconds = time.perf_counter() - started

    def summary(values):
        q = statistics.quantiles(values, n=10)
        return {"median": statistics.median(values), "p10": q[0], "p90": q[-1]}

    print(json.dumps({"frames": len(decode_us), "seconds": seconds, "decode_us": summary(decode_us),
                      "preprocess_us": summary(preprocess_us)}))


if __name__ == "__main__":
    main()
