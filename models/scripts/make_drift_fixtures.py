"""Writes runtime/tests/fixtures/drift.json: drift statistics computed with numpy and scipy, which the runtime's
unit tests (runtime/src/monitor/stats_tests.rs, profile_tests.rs) compare with its own.

Run from the repository root: ``python3 models/scripts/make_drift_fixtures.py`` (numpy and scipy, versions in
requirements.txt). The random samples come from a fixed seed, so the file is the same on every run.

- PSI: the index with empty shares (window or reference) replaced by 1e-4, as the runtime documents.
- KS, two samples: the statistic of ``scipy.stats.ks_2samp`` and the asymptotic p-value
  ``scipy.special.kolmogorov(sqrt(m n / (m + n)) D)`` (``ks_2samp``'s own ``asymp`` method rounds the
  effective size and uses another distribution, so it is not what the runtime computes).
- KS against a reference: ``scipy.stats.kstest`` against the distribution function interpolated linearly
  between the reference's 101 quantiles, p-value as above with the reference's size.
- Jensen-Shannon: ``scipy.spatial.distance.jensenshannon(p, q, base=2)``.
- Quantiles: ``numpy.quantile`` (linear interpolation), the deciles a profile's bin edges come from and the 101
  points of its KS grid.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from scipy import special, stats
from scipy.spatial import distance

OUT = Path(__file__).resolve().parents[2] / "runtime" / "tests" / "fixtures" / "drift.json"
EPSILON = 1e-4
GRID = np.linspace(0.0, 1.0, 101)
DECILES = np.linspace(0.1, 0.9, 9)


def floats(values) -> list[float]:
    return [float(v) for v in values]


def psi(proportions, counts) -> float:
    counts = np.asarray(counts, dtype=np.float64)
    if counts.sum() == 0:
        return 0.0
    actual = counts / counts.sum()
    expected = np.asarray(proportions, dtype=np.float64)
    actual = np.where(actual > 0, actual, EPSILON)
    expected = np.where(expected > 0, expected, EPSILON)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def psi_case(name, proportions, counts) -> dict:
    return {"name": name, "proportions": floats(proportions), "counts": [int(c) for c in counts],
            "psi": psi(proportions, counts)}


def ks_two_sample_case(name, a, b) -> dict:
    a, b = np.sort(np.asarray(a, dtype=np.float64)), np.sort(np.asarray(b, dtype=np.float64))
    statistic = float(stats.ks_2samp(a, b).statistic)
    effective_n = len(a) * len(b) / (len(a) + len(b))
    return {"name": name, "a": floats(a), "b": floats(b), "statistic": statistic,
            "p_value": float(special.kolmogorov(np.sqrt(effective_n) * statistic))}


def ks_reference_case(name, reference, window) -> dict:
    quantiles = np.quantile(np.asarray(reference, dtype=np.float64), GRID)
    assert np.all(np.diff(quantiles) > 0), "the fixture's reference quantiles must be distinct"
    window = np.sort(np.asarray(window, dtype=np.float64))
    statistic = float(stats.kstest(window, lambda x: np.interp(x, quantiles, GRID)).statistic)
    effective_n = len(window) * len(reference) / (len(window) + len(reference))
    return {"name": name, "quantiles": floats(quantiles), "size": len(reference), "window": floats(window),
            "statistic": statistic, "p_value": float(special.kolmogorov(np.sqrt(effective_n) * statistic))}


def js_case(name, p, q) -> dict:
    return {"name": name, "p": floats(p), "q": floats(q), "distance": float(distance.jensenshannon(p, q, base=2))}


def quantile_case(name, values) -> dict:
    values = np.asarray(values, dtype=np.float64)
    return {"name": name, "values": floats(values), "deciles": floats(np.quantile(values, DECILES)),
            "quantiles": floats(np.quantile(values, GRID))}


def main() -> None:
    rng = np.random.default_rng(12)

    def normal(mean, std, size):
        # Six decimals keep the file small; the statistics are computed from the rounded values.
        return np.round(rng.normal(mean, std, size), 6)

    reference = normal(0.0, 1.0, 2000)
    small = reference[:300]
    uniform = [0.1] * 10
    fixture = {
        "psi": [
            psi_case("identical shares", uniform, [10] * 10),
            psi_case("shifted", uniform, [0, 0, 2, 5, 10, 15, 20, 20, 18, 10]),
            psi_case("empty window bins", [0.2, 0.3, 0.5], [0, 7, 3]),
            psi_case("empty reference bin", [0.0, 0.5, 0.5], [4, 3, 3]),
            psi_case("both empty in one bin", [0.0, 0.4, 0.6], [0, 5, 5]),
            psi_case("window of one", uniform, [0, 0, 0, 1, 0, 0, 0, 0, 0, 0]),
            psi_case("constant feature, unchanged", [0.0, 1.0, 0.0], [0, 100, 0]),
            psi_case("constant feature, moved up", [0.0, 1.0, 0.0], [0, 0, 100]),
        ],
        "ks_two_sample": [
            ks_two_sample_case("identical samples", reference[:100], reference[:100]),
            ks_two_sample_case("same distribution", reference[:300], reference[300:800]),
            ks_two_sample_case("shifted", reference[:300], reference[800:1100] + 0.3),
            ks_two_sample_case("large windows", reference[:1000], normal(0.05, 1.0, 1000)),
            ks_two_sample_case("m = 1", [0.4], small),
            ks_two_sample_case("m = 2", [-0.3, 2.5], small),
            ks_two_sample_case("m = 5", normal(1.0, 1.0, 5), small),
            ks_two_sample_case("constant, equal", [3.0] * 50, [3.0] * 80),
            ks_two_sample_case("constant against spread", [3.0] * 50, reference[:80] + 3.0),
            ks_two_sample_case("ties", rng.integers(0, 4, 60), rng.integers(0, 5, 90)),
            ks_two_sample_case("disjoint", [10.0, 11.0, 12.0], reference[:100]),
        ],
        "ks_reference": [
            ks_reference_case("same distribution", reference, normal(0.0, 1.0, 100)),
            ks_reference_case("shifted", reference, normal(0.5, 1.0, 100)),
            ks_reference_case("wider", reference, normal(0.0, 2.0, 300)),
            ks_reference_case("m = 1", reference, [0.2]),
            ks_reference_case("m = 2", reference, [-1.0, 0.7]),
            ks_reference_case("m = 5", reference, normal(0.0, 1.0, 5)),
            ks_reference_case("constant window", reference, [0.25] * 40),
            ks_reference_case("beyond the reference", reference, [9.0, 10.0, 11.0]),
            ks_reference_case("below the reference", reference, [-9.0] * 4),
            ks_reference_case("small reference", normal(0.0, 1.0, 30), normal(0.0, 1.0, 100)),
        ],
        "kolmogorov": [
            {"x": x, "sf": float(special.kolmogorov(x))}
            for x in [0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.8, 0.82, 0.83, 0.9, 1.0, 1.2, 1.36, 1.63, 2.0, 3.0, 5.0,
                      8.0, 12.0, 20.0, 30.0]
        ],
        "js_distance": [
            js_case("identical", [0.25, 0.25, 0.5], [0.25, 0.25, 0.5]),
            js_case("counts against shares", [10, 20, 70], [0.1, 0.2, 0.7]),
            js_case("disjoint", [1, 0, 0], [0, 0, 1]),
            js_case("empty categories", [0.0, 0.5, 0.5, 0.0], [0.1, 0.4, 0.4, 0.1]),
            js_case("one category dominates", [0.25] * 4, [97, 1, 1, 1]),
            js_case("close", [0.3, 0.3, 0.4], [0.31, 0.29, 0.4]),
            js_case("single category", [5], [1]),
        ],
        "quantiles": [
            quantile_case("normal", small),
            quantile_case("ties", rng.integers(0, 3, 50)),
            quantile_case("one value", [4.5]),
            quantile_case("two values", [1.0, 2.0]),
            quantile_case("constant", [7.0] * 25),
        ],
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    # One case per line: diffs stay readable without a line per number.
    sections = ",\n".join(
        f'"{key}": [\n' + ",\n".join(json.dumps(case) for case in cases) + "\n]" for key, cases in fixture.items()
    )
    OUT.write_text("{\n" + sections + "\n}\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
