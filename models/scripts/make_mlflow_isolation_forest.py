"""Saves models/vibration-isolation-forest/model.onnx as an MLflow model (the `onnx` flavour, with a tensor signature)
into models/testing/mlflow-isolation-forest/, with the real `mlflow` package (mlflow-skinny), for the test of
`device-agent model import`. Run make_vibration_isolation_forest.py first.
"""

from __future__ import annotations

import shutil

import mlflow.onnx
import numpy as np
import onnx
from mlflow.models import ModelSignature
from mlflow.types import Schema, TensorSpec

from common import MODELS


def main() -> None:
    model = onnx.load(str(MODELS / "vibration-isolation-forest" / "model.onnx"))
    signature = ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, 3, 50), "window")]),
        outputs=Schema([TensorSpec(np.dtype(np.int64), (-1, 1), "label"),
                        TensorSpec(np.dtype(np.float32), (-1, 1), "scores")]),
    )
    out = MODELS / "testing" / "mlflow-isolation-forest"
    shutil.rmtree(out, ignore_errors=True)
    mlflow.onnx.save_model(model, str(out), signature=signature)
    print((out / "MLmodel").read_text())


if __name__ == "__main__":
    main()
