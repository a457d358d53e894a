"""Loads the BasicMotions data set (UEA multivariate archive) from the aeon wheel.

BasicMotions: four students wore a smart watch and performed four activities; each case is 10 s of a 3-axis
accelerometer and a 3-axis gyroscope sampled at 10 Hz (6 channels x 100 samples). 40 TRAIN and 40 TEST cases.
"""

from __future__ import annotations

import numpy as np

from common import pip_download, wheel_member

AEON = "aeon==1.6.0"
CHANNELS = ["acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z"]


def parse_ts(text: str) -> tuple[np.ndarray, list[str], list[str]]:
    """Parses a .ts file: returns X [n, dims, length], the label of each case and the class list."""
    classes: list[str] = []
    cases, labels = [], []
    in_data = False
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if not in_data:
            if line.lower().startswith("@classlabel"):
                classes = line.split()[2:]
            if line.lower() == "@data":
                in_data = True
            continue
        *dims, label = line.split(":")
        cases.append([[float(v) for v in d.split(",")] for d in dims])
        labels.append(label)
    return np.asarray(cases, dtype=np.float32), labels, classes


def load(tmp) -> dict:
    wheel = pip_download(AEON, tmp)
    out = {}
    for split in ("TRAIN", "TEST"):
        text = wheel_member(wheel, f"aeon/datasets/data/BasicMotions/BasicMotions_{split}.ts").decode()
        X, labels, classes = parse_ts(text)
        out[split] = (X, np.asarray([classes.index(label) for label in labels]))
        out["classes"] = classes
    return out


def write_csv(path, rows: np.ndarray, names: list[str]) -> None:
    lines = [",".join(names)]
    lines += [",".join(f"{v:.6f}" for v in row) for row in rows]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
