"""experiments/mappo_vs_ippo.py: its statistics on hand-made cases, and one tiny end-to-end run."""

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load():
    path = ROOT / "experiments" / "mappo_vs_ippo.py"
    spec = importlib.util.spec_from_file_location("mappo_vs_ippo", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["mappo_vs_ippo"] = mod  # dataclasses resolve the module by name
    spec.loader.exec_module(mod)
    return mod


mvi = _load()


def test_interpolate_curves_onto_a_grid():
    curves = [(np.array([0.0, 10.0]), np.array([0.0, 10.0])), (np.array([5.0, 15.0]), np.array([-1.0, -3.0]))]
    got = mvi.interpolate_curves(curves, np.array([0.0, 5.0, 10.0, 20.0]))
    np.testing.assert_allclose(got, [[0, 5, 10, 10], [-1, -1, -2, -3]])  # ends held flat outside a run's range


def test_bootstrap_band_of_two_runs_is_their_range():
    # means of 2 runs resampled: 0 (p=1/4), 0.5 (1/2), 1 (1/4): the 2.5% and 97.5% quantiles are 0 and 1
    values = np.array([[0.0, 2.0], [1.0, 2.0]])
    mean, low, high = mvi.bootstrap_mean_ci(values, reps=4000)
    np.testing.assert_allclose(mean, [0.5, 2.0])
    np.testing.assert_allclose(low, [0.0, 2.0])
    np.testing.assert_allclose(high, [1.0, 2.0])


def test_bootstrap_band_narrows_with_more_runs():
    rng = np.random.default_rng(1)
    few, many = rng.normal(0, 1, (5, 1)), rng.normal(0, 1, (200, 1))
    def width(v):
        _, low, high = mvi.bootstrap_mean_ci(v)
        return high[0] - low[0]

    assert width(many) < width(few)
    _, low, high = mvi.bootstrap_mean_ci(many)
    # the normal-theory 95% half-width is 1.96 / sqrt(200) = 0.139
    assert 0.2 < high[0] - low[0] < 0.36


def test_first_crossing():
    x, y = np.array([1.0, 2.0, 3.0, 4.0]), np.array([-25.0, -19.0, -21.0, -15.0])
    assert mvi.first_crossing(x, y, -20.0) == 2.0
    assert mvi.first_crossing(x, y, -16.0) == 4.0
    assert mvi.first_crossing(x, y, -10.0) is None


def _stats(mappo_ci, ippo_ci, p_ci, mappo_iqm=-14.0, ippo_iqm=-15.0):
    return {"mappo": {"iqm": mappo_iqm, "iqm_ci": mappo_ci}, "ippo": {"iqm": ippo_iqm, "iqm_ci": ippo_ci},
            "prob_improvement": {"p": float(np.mean(p_ci)), "ci": p_ci}}


def test_conclusion_follows_the_intervals():
    runs = {"mappo": [{}] * 5, "ippo": [{}] * 5}
    text = mvi.conclusion(_stats([-14.5, -13.5], [-15.2, -14.0], [0.3, 0.9]), runs)
    assert "overlap" in text and "do not separate" in text and "includes 0.5" in text
    text = mvi.conclusion(_stats([-14.5, -13.5], [-16.0, -15.0], [0.8, 1.0]), runs)
    assert "do not overlap" in text and "MAPPO reaches a higher final return than IPPO" in text
    assert "lies above 0.5" in text
    text = mvi.conclusion(_stats([-16.0, -15.0], [-14.5, -13.5], [0.0, 0.2], -15.5, -14.0), runs)
    assert "IPPO reaches a higher final return than MAPPO" in text and "lies below 0.5" in text


@pytest.mark.slow
def test_final_score_stats_with_rliable():
    pytest.importorskip("rliable")
    st = mvi.final_score_stats({"mappo": np.array([1.0, 2.0, 3.0, 4.0, 100.0]),
                                "ippo": np.array([-5.0, -4.0, -3.0, -2.0, -1.0])}, reps=2000)
    assert st["mappo"]["iqm"] == pytest.approx(3.0)  # 25% trimmed from each end of 5 runs: mean(2, 3, 4)
    assert st["mappo"]["mean"] == pytest.approx(22.0)
    assert st["ippo"]["iqm"] == pytest.approx(-3.0)
    lo, hi = st["ippo"]["iqm_ci"]
    assert -5.0 <= lo <= -3.0 <= hi <= -1.0
    # every mappo run beats every ippo run: P = 1 in every resample
    assert st["prob_improvement"]["p"] == pytest.approx(1.0)
    assert st["prob_improvement"]["ci"] == pytest.approx([1.0, 1.0])


@pytest.mark.slow
def test_tiny_end_to_end_run(tmp_path):
    pytest.importorskip("rliable")
    report, figures, runs = tmp_path / "report.md", tmp_path / "figures", tmp_path / "runs"
    mvi.main(["--seeds", "0", "1", "--total-steps", "1e4", "--eval-interval", "5000", "--final-episodes", "20",
              "--workers", "2", "--bootstrap-reps", "1000", "--runs-dir", str(runs), "--report", str(report), "--figures", str(figures)])
    text = report.read_text()
    assert "| MAPPO | deterministic |" in text and "P(MAPPO > IPPO)" in text and "## Conclusion" in text
    assert (figures / "report_curves.png").stat().st_size > 5000
    summary = json.loads((runs / "summary.json").read_text())
    for algo in ("mappo", "ippo"):
        rs = summary["runs"][algo]
        assert [r["seed"] for r in rs] == [0, 1]
        for r in rs:
            assert r["env_steps"] == 10_000 and r["steps_per_s"] > 0
            assert -80 < r["return_det"] < 0 and -80 < r["return_stoch"] < 0
    # finished runs are kept: the report can be rebuilt without training
    mtime = (runs / "mappo_s0" / "final.json").stat().st_mtime
    mvi.main(["--seeds", "0", "1", "--total-steps", "1e4", "--bootstrap-reps", "1000", "--runs-dir", str(runs),
              "--report", str(report),
              "--figures", str(figures), "--report-only"])
    assert (runs / "mappo_s0" / "final.json").stat().st_mtime == mtime
