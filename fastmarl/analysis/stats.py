"""Statistics of learning results over seeds: the protocol of Agarwal et al. (2021, ``rliable``).

Final scores: the interquartile mean (IQM) over runs with a 95% stratified-bootstrap CI, and the
probability of improvement P(X > Y) with its CI, both from ``rliable`` (an optional dependency:
``pip install "fastmarl[experiments]"``). Curves: per-run curves put on a common grid (of env steps
or of wall time) and a percentile-bootstrap band of the mean over runs.

Shapes: ``scores`` maps a name to a ``(runs,)`` array of one task's final scores; curves are
``(x, y)`` pairs of 1-D arrays with ``x`` increasing; ``values`` is ``(runs, points)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

CI_LEVEL = 0.95


def _rliable():
    # rliable (and its arch/pandas stack) is an optional dependency: imported only when a
    # report's statistics are computed, so that `import fastmarl` never needs it
    try:
        from rliable import library as rly
        from rliable import metrics
    except ImportError as e:
        raise ImportError(f"final-score statistics need rliable ({e}): pip install rliable==1.2.0 'pandas<3' "
                          "(or pip install 'fastmarl[experiments]')") from e
    return rly, metrics


def _columns(scores: Mapping[str, Sequence[float] | np.ndarray]) -> dict[str, np.ndarray]:
    cols = {}
    for name, s in scores.items():
        a = np.asarray(s, dtype=np.float64).reshape(-1)
        if a.size == 0:
            raise ValueError(f"no scores for {name!r}")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"scores for {name!r} hold NaN or inf: {a.tolist()}")
        cols[name] = a[:, None]  # rliable: (runs, tasks)
    return cols


def iqm_ci(scores: Mapping[str, Sequence[float] | np.ndarray], reps: int = 20_000, level: float = CI_LEVEL,
           seed: int = 0) -> dict[str, dict[str, float | list[float]]]:
    """name -> {"iqm", "iqm_ci": [low, high], "mean", "mean_ci": [low, high], "runs"}; one task."""
    rly, metrics = _rliable()
    cols = _columns(scores)
    np.random.seed(seed)  # rliable's bootstrap draws from numpy's global RNG
    agg = lambda x: np.array([metrics.aggregate_iqm(x), metrics.aggregate_mean(x)])  # noqa: E731
    point, ci = rly.get_interval_estimates(cols, agg, reps=reps, confidence_interval_size=level)
    return {n: {"iqm": float(point[n][0]), "iqm_ci": [float(ci[n][0, 0]), float(ci[n][1, 0])],
                "mean": float(point[n][1]), "mean_ci": [float(ci[n][0, 1]), float(ci[n][1, 1])],
                "runs": int(cols[n].shape[0])} for n in cols}


def prob_improvement(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray, reps: int = 20_000,
                     level: float = CI_LEVEL, seed: int = 0) -> dict[str, float | list[float]]:
    """P(X > Y) (ties count half) over runs of one task, with its stratified-bootstrap CI. Scores grow
    with quality (returns do)."""
    rly, metrics = _rliable()
    cols = _columns({"x": x, "y": y})
    np.random.seed(seed)
    p, ci = rly.get_interval_estimates({"xy": (cols["x"], cols["y"])}, metrics.probability_of_improvement,
                                       reps=reps, confidence_interval_size=level)
    lo, hi = np.asarray(ci["xy"]).reshape(-1)[:2]
    return {"p": float(np.asarray(p["xy"]).reshape(-1)[0]), "ci": [float(lo), float(hi)]}


def interpolate_curves(curves: Sequence[tuple[np.ndarray, np.ndarray]], grid: np.ndarray) -> np.ndarray:
    """Per-run curves -> ``(runs, len(grid))`` by linear interpolation; grid points outside a run's
    x range take its first/last value."""
    if not curves:
        raise ValueError("no curves to interpolate")
    return np.stack([np.interp(grid, np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64))
                     for x, y in curves])


def bootstrap_mean_ci(values: np.ndarray, reps: int = 5000, level: float = CI_LEVEL,
                      seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``values (runs, points)`` -> ``(mean, low, high)`` per point: percentile bootstrap of the mean
    over runs (runs resampled with replacement, the same draw for every point)."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2 or values.shape[0] == 0:
        raise ValueError(f"values must be (runs, points) with at least one run, got shape {values.shape}")
    rng = np.random.default_rng(seed)
    n = values.shape[0]
    means = values[rng.integers(0, n, size=(reps, n))].mean(axis=1)  # (reps, points)
    alpha = (1 - level) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha], axis=0)
    return values.mean(axis=0), low, high


def first_crossing(x: np.ndarray, y: np.ndarray, target: float) -> float | None:
    """The first x at which y >= target (None if never)."""
    hit = np.nonzero(np.asarray(y) >= target)[0]
    return float(np.asarray(x)[hit[0]]) if hit.size else None
