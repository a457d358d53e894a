"""Shared by the scikit-learn bundle scripts: a skl2onnx graph fed by a sensor window.

skl2onnx graphs take a flat feature vector `X` [N, features]; the runtime feeds a sensor window [N, channels, window]
(channels first). `window_input` prepends one Reshape node, so that the flat vector is the window read channel by
channel (x[c * window + t]), which is how the training features are made too (`flat_windows`).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def flat_windows(windows: np.ndarray) -> np.ndarray:
    """[n, channels, window] -> [n, channels * window], float32, channel by channel."""
    return np.ascontiguousarray(windows.reshape(len(windows), -1), dtype=np.float32)


def window_input(model: onnx.ModelProto, channels: int, window: int, name: str = "window") -> onnx.ModelProto:
    """`model` (one input [N, channels * window]) taking `name` [N, channels, window] instead."""
    graph = model.graph
    (flat,) = graph.input
    shape = numpy_helper.from_array(np.array([-1, channels * window], np.int64), "flat_shape")
    graph.initializer.append(shape)
    graph.node.insert(0, helper.make_node("Reshape", [name, "flat_shape"], [flat.name], name="window_to_features"))
    del graph.input[:]
    graph.input.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", channels, window]))
    onnx.checker.check_model(model, full_check=True)
    return model


def set_metadata(model: onnx.ModelProto, key: str, value: str) -> None:
    entry = model.metadata_props.add()
    entry.key, entry.value = key, value


def sensor_windows(rows: np.ndarray, window: int) -> list[tuple[int, np.ndarray]]:
    """Every non-overlapping window of a recording's rows [samples, channels], as (first row, [channels, window])."""
    return [(s, np.ascontiguousarray(rows[s : s + window].T)) for s in range(0, len(rows) - window + 1, window)]
