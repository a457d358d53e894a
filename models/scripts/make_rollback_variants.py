"""Builds two deliberately bad variants of models/activity-classifier for OTA rollback tests (test-only bundles).

- models/testing/activity-classifier-slow/: the same logits, plus an input-dependent branch of 64 MatMuls on 64 rows with one
  shared 256x256 constant (a scaled Hadamard matrix) whose result is multiplied by 0 and added to the logits.
  ONNX Runtime cannot constant-fold it (it depends on the input) and does not simplify `x * 0` (NaN semantics),
  so every run pays for it.
- models/testing/activity-classifier-unstable/: the same logits while the window is calm; NaN logits when the
  window is energetic, i.e. when the mean absolute first difference of the standardised window (over all samples
  and channels) is above ENERGY_THRESHOLD. The graph adds `Where(energy > threshold, NaN, 0)` to the logits.
- models/testing/calm-window.csv: one calm (standing) window of models/recordings/activity.csv that the unstable
  variant decodes normally.

Both bundles keep the original's name, input, output, labels and preprocessing; only the version (1.1.0), the
sha256 and the provenance change. The script checks the variants against the original with onnxruntime and prints
the slow factor and the fraction of NaN windows. Run from the repository root:

    python3 models/scripts/make_rollback_variants.py
"""

from __future__ import annotations

import re
import shutil
import statistics
import time
import tomllib

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from common import MODELS, fill_sha256, read_sensor_csv, sensor_tensor, toml_str

ORIGINAL = MODELS / "activity-classifier"
TESTING = MODELS / "testing"
SLOW = TESTING / "activity-classifier-slow"
UNSTABLE = TESTING / "activity-classifier-unstable"
RECORDING = MODELS / "recordings" / "activity.csv"
CALM_WINDOW = TESTING / "calm-window.csv"
VERSION = "1.1.0"

# Slow branch: DEPTH MatMuls of [ROWS, WIDTH] by one shared [WIDTH, WIDTH] weight.
WIDTH = 256
ROWS = 64
DEPTH = 64
# Unstable branch: mean |x[t+1] - x[t]| over the standardised window. On models/recordings/activity.csv the
# standing windows are at 0.02-0.09, walking at 0.12-0.26, running and badminton at 0.64-0.82.
ENERGY_THRESHOLD = 0.45
# The calm window: rows 400..499 of the recording (BasicMotions TEST case 1, standing; max |x| 0.47, energy 0.023).
CALM_START = 400

WINDOW = 100
CLEAN = "logits_clean"


def hadamard(n: int) -> np.ndarray:
    """Sylvester's Hadamard matrix divided by sqrt(n): dense (+-1/16 for 256), orthogonal, exact in f32."""
    h = np.ones((1, 1), np.float32)
    while h.shape[0] < n:
        h = np.block([[h, h], [h, -h]])
    assert h.shape[0] == n
    return (h / np.float32(np.sqrt(n))).astype(np.float32)


def load_original() -> onnx.ModelProto:
    """The original graph with its `logits` output renamed to CLEAN (the variants add the final node)."""
    model = onnx.load(str(ORIGINAL / "model.onnx"))
    producers = [node for node in model.graph.node if "logits" in node.output]
    assert len(producers) == 1, producers
    producers[0].output[list(producers[0].output).index("logits")] = CLEAN
    assert not any("logits" in node.input for node in model.graph.node)
    return model


def finish(model: onnx.ModelProto, producer: str) -> onnx.ModelProto:
    model.producer_name = producer
    del model.graph.value_info[:]
    model = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    onnx.checker.check_model(model, full_check=True)
    return model


def int64s(name: str, values) -> onnx.TensorProto:
    return numpy_helper.from_array(np.array(values, np.int64), name)


def make_slow() -> onnx.ModelProto:
    model = load_original()
    g = model.graph
    n = helper.make_node
    g.initializer.extend(
        [
            numpy_helper.from_array(hadamard(WIDTH), "slow_w"),
            int64s("slow_flat", [1, 6 * WINDOW]),
            int64s("slow_start", [0]),
            int64s("slow_end", [WIDTH]),
            int64s("slow_axis", [1]),
            int64s("slow_rows", [ROWS, WIDTH]),
            numpy_helper.from_array(np.array(0.0, np.float32), "slow_zero"),
        ]
    )
    # The first WIDTH values of the window, squashed into [-1, 1] so that the chain cannot overflow whatever the
    # input (the weight is orthogonal: the norm stays <= 16), broadcast to [ROWS, WIDTH].
    nodes = [
        n("Reshape", ["window", "slow_flat"], ["slow_flat_window"]),
        n("Slice", ["slow_flat_window", "slow_start", "slow_end", "slow_axis"], ["slow_slice"]),
        n("Tanh", ["slow_slice"], ["slow_squashed"]),
        n("Expand", ["slow_squashed", "slow_rows"], ["slow_0"]),
    ]
    for i in range(DEPTH):
        nodes.append(n("MatMul", [f"slow_{i}", "slow_w"], [f"slow_{i + 1}"]))
    nodes += [
        n("ReduceSum", [f"slow_{DEPTH}"], ["slow_sum"], keepdims=0),
        n("Mul", ["slow_sum", "slow_zero"], ["slow_nothing"]),
        n("Add", [CLEAN, "slow_nothing"], ["logits"]),
    ]
    g.node.extend(nodes)
    return finish(model, "make_rollback_variants (slow)")


def make_unstable() -> onnx.ModelProto:
    model = load_original()
    g = model.graph
    n = helper.make_node
    g.initializer.extend(
        [
            int64s("unstable_one", [1]),
            int64s("unstable_zero", [0]),
            int64s("unstable_end", [WINDOW]),
            int64s("unstable_end_1", [WINDOW - 1]),
            int64s("unstable_axis", [2]),
            numpy_helper.from_array(np.array(ENERGY_THRESHOLD, np.float32), "unstable_threshold"),
            numpy_helper.from_array(np.array(np.nan, np.float32), "unstable_nan"),
            numpy_helper.from_array(np.array(0.0, np.float32), "unstable_zero_f"),
        ]
    )
    nodes = [
        n("Slice", ["window", "unstable_one", "unstable_end", "unstable_axis"], ["unstable_later"]),
        n("Slice", ["window", "unstable_zero", "unstable_end_1", "unstable_axis"], ["unstable_earlier"]),
        n("Sub", ["unstable_later", "unstable_earlier"], ["unstable_diff"]),
        n("Abs", ["unstable_diff"], ["unstable_absdiff"]),
        n("ReduceMean", ["unstable_absdiff"], ["unstable_energy"], keepdims=0),
        n("Greater", ["unstable_energy", "unstable_threshold"], ["unstable_energetic"]),
        n("Where", ["unstable_energetic", "unstable_nan", "unstable_zero_f"], ["unstable_poison"]),
        n("Add", [CLEAN, "unstable_poison"], ["logits"]),
    ]
    g.node.extend(nodes)
    return finish(model, "make_rollback_variants (unstable)")


def write_bundle(bundle, model: onnx.ModelProto, provenance: str) -> str:
    """model.onnx, labels.txt and the original manifest with version, provenance and sha256 replaced."""
    bundle.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(bundle / "model.onnx"))
    shutil.copyfile(ORIGINAL / "labels.txt", bundle / "labels.txt")
    text = (ORIGINAL / "manifest.toml").read_text()
    text, versions = re.subn(r'^version = "[^"]*"$', f'version = "{VERSION}"', text, flags=re.M)
    line = f"provenance = {toml_str(provenance)}"
    text, provenances = re.subn(r"^provenance = .*$", lambda _: line, text, flags=re.M)
    assert versions == 1 and provenances == 1
    (bundle / "manifest.toml").write_text(text)
    return fill_sha256(bundle)


def session(path, threads: int = 1) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path / "model.onnx"), options, providers=["CPUExecutionProvider"])


def run(sess: ort.InferenceSession, window: np.ndarray) -> np.ndarray:
    return sess.run(["logits"], {"window": window})[0]


def median_us(sess: ort.InferenceSession, window: np.ndarray, runs: int) -> float:
    for _ in range(20):
        run(sess, window)
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        run(sess, window)
        samples.append((time.perf_counter() - started) * 1e6)
    return statistics.median(samples)


def energy(window: np.ndarray) -> float:
    return float(np.abs(np.diff(window, axis=2)).mean())


def main() -> None:
    spec = tomllib.loads((ORIGINAL / "manifest.toml").read_text())["input"]
    _, rows = read_sensor_csv(RECORDING)
    windows = {start: sensor_tensor(rows, start, spec) for start in range(0, len(rows) - WINDOW + 1, 10)}
    by_window = [start for start in windows if start % WINDOW == 0]

    slow_provenance = (
        "TEST-ONLY, deliberately slow (OTA rollback tests). models/activity-classifier 1.0.0 edited by "
        "models/scripts/make_rollback_variants.py with the onnx API: the original graph is unchanged, its logits "
        f"are added to 0 * ReduceSum of an extra input-dependent branch: Tanh of the first {WIDTH} values of the "
        f"window, [{ROWS},{WIDTH}], through {DEPTH} chained MatMuls with one shared {WIDTH}x{WIDTH} f32 constant "
        "(Sylvester Hadamard / 16, orthogonal, so the chain stays finite). ONNX Runtime cannot fold it, so the "
        "logits equal the original's while every run costs far more. Do not deploy."
    )
    unstable_provenance = (
        "TEST-ONLY, deliberately unstable (OTA rollback tests). models/activity-classifier 1.0.0 edited by "
        "models/scripts/make_rollback_variants.py with the onnx API: the original graph is unchanged, its logits "
        "get Where(energy > threshold, NaN, 0) added, where energy is the mean absolute first difference of the "
        f"standardised window over all samples and channels and threshold = {ENERGY_THRESHOLD}. Calm windows "
        "(standing, walking) give the original logits; energetic ones (running, badminton) give NaN logits. "
        "Do not deploy."
    )
    slow_sha = write_bundle(SLOW, make_slow(), slow_provenance)
    unstable_sha = write_bundle(UNSTABLE, make_unstable(), unstable_provenance)
    print(f"slow     {slow_sha}  {(SLOW / 'model.onnx').stat().st_size} bytes")
    print(f"unstable {unstable_sha}  {(UNSTABLE / 'model.onnx').stat().st_size} bytes")

    lines = RECORDING.read_text().splitlines()
    CALM_WINDOW.write_text("\n".join([lines[0]] + lines[1 + CALM_START : 1 + CALM_START + WINDOW]) + "\n")

    original, slow, unstable = session(ORIGINAL), session(SLOW), session(UNSTABLE)

    # Slow: identical logits on every window.
    for start, window in windows.items():
        assert np.array_equal(run(original, window), run(slow, window)), f"slow differs at row {start}"

    # Unstable: identical logits on calm windows, all-NaN logits on energetic ones.
    nan_starts = []
    for start, window in windows.items():
        want, got = run(original, window), run(unstable, window)
        if energy(window) > ENERGY_THRESHOLD:
            assert np.isnan(got).all(), f"row {start}: energy {energy(window)} but logits {got}"
            nan_starts.append(start)
        else:
            assert np.array_equal(want, got), f"unstable differs at row {start}"
    _, calm_rows = read_sensor_csv(CALM_WINDOW)
    calm = sensor_tensor(calm_rows, 0, spec)
    assert np.array_equal(calm, windows[CALM_START])
    assert np.isfinite(run(unstable, calm)).all() and np.array_equal(run(unstable, calm), run(original, calm))

    print("energy per window (stride 100):", [round(energy(windows[s]), 3) for s in by_window])
    nan_by_window = [s for s in by_window if s in nan_starts]
    print(
        f"unstable: threshold {ENERGY_THRESHOLD}; NaN on {len(nan_by_window)}/{len(by_window)} windows at stride 100 "
        f"(rows {nan_by_window}), {len(nan_starts)}/{len(windows)} = {len(nan_starts) / len(windows):.2f} at stride 10"
    )

    probe = windows[CALM_START]
    for threads in (1, 0):
        fast_us = median_us(session(ORIGINAL, threads), probe, 5000)
        slow_us = median_us(session(SLOW, threads), probe, 500)
        label = "1 thread" if threads == 1 else "default threads"
        print(f"slow ({label}): original {fast_us:.1f} us, slow {slow_us:.1f} us, factor {slow_us / fast_us:.1f}x")


if __name__ == "__main__":
    main()
