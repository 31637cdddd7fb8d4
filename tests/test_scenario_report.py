"""experiments/scenario_report.py: statistics and generated sentences on hand-made numbers, the group
mixing policy, and one tiny end-to-end page (2 seeds x 2,000 steps of relay_v0)."""

import csv
import dataclasses
import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]


def _load():
    path = ROOT / "experiments" / "scenario_report.py"
    spec = importlib.util.spec_from_file_location("scenario_report", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["scenario_report"] = mod  # dataclasses resolve the module by name
    spec.loader.exec_module(mod)
    return mod


sr = _load()


def test_t_interval_by_hand():
    m, lo, hi = sr.t_interval(np.array([1.0, 2.0, 3.0]))
    half = 4.302653 * 1.0 / math.sqrt(3)  # t(0.975, 2 dof) * sd / sqrt(n)
    assert (m, lo, hi) == pytest.approx((2.0, 2.0 - half, 2.0 + half), abs=1e-5)
    assert sr.t_interval(np.array([5.0])) == (5.0, 5.0, 5.0)


def test_curve_bands_interpolate_and_band():
    curves = [{"step": np.array([0.0, 10.0]), "time": np.zeros(2), "a": np.array([0.0, 10.0])},
              {"step": np.array([0.0, 10.0]), "time": np.zeros(2), "a": np.array([2.0, 12.0])}]
    b = sr.curve_bands(curves, ["a"], points=3)
    np.testing.assert_allclose(b["step"], [0, 5, 10])
    mean, low, high = b["a"]
    np.testing.assert_allclose(mean, [1, 6, 11])
    half = 12.7062 * math.sqrt(2) / math.sqrt(2)  # t(0.975, 1) * sd (sqrt 2) / sqrt(2)
    np.testing.assert_allclose(high - mean, [half] * 3, rtol=1e-4)


def _comp(diffs, trained=1.0):
    d = np.asarray(diffs, dtype=float)
    m, lo, hi = sr.t_interval(d)
    return {"group": "g", "policy": "trained", "versus": "baseline", "diff": m, "low": lo, "high": hi,
            "wins": int((d > 0).sum()), "n": d.size, "trained": trained, "reference": trained - m}


def test_verdict_follows_the_numbers():
    assert sr.verdict(_comp([2.0, 2.1, 1.9])).startswith("beats the baseline by +2.00")
    assert "3/3 seeds better" in sr.verdict(_comp([2.0, 2.1, 1.9]))
    worse = sr.verdict(_comp([-1.0, -1.1, -0.9]))
    assert worse.startswith("does not beat the baseline: it scores 1.00 per agent less") and "0/3" in worse
    assert sr.verdict(_comp([3.0, -2.0, 0.5])).startswith("is not distinguishable from the baseline")
    spread = sr.verdict(_comp([-0.1, -50.0, -40.0]))  # every seed below, the interval still includes 0
    assert spread.startswith("is below the baseline in all 3 seeds (difference -30.03 per agent)")


def test_comparisons_and_text_from_results():
    results = {"random": {"g": [-5.0, -6.0, -7.0]}, "baseline": {"g": [1.0, 2.0, 3.0]},
               "trained": {"g": [2.0, 3.5, 4.0]}, "trained (stochastic)": {"g": [0.0, 0.0, 0.0]}}
    comps = sr.comparisons(results, ["g"])
    vs_base = next(c for c in comps if c["versus"] == "baseline")
    assert vs_base["diff"] == pytest.approx((1.0 + 1.5 + 1.0) / 3)  # paired: same replicates
    assert vs_base["wins"] == 3
    curves = [{"step": np.arange(20.0), "time": np.arange(20.0), "g": np.arange(20.0) + k} for k in range(3)]
    text = sr.data_shows("mappo", ["g"], comps, curves, results)
    assert "Trained MAPPO scores 3.17 per agent, the baseline 2.00, random -6.00" in text
    assert "beats the baseline by +1.17" in text and "beats the random by +9.17" in text
    assert "was still rising" in text and "mean 19.50 over the last 10%" in text
    assert "17.50 over the 10% before" in text


def test_scenario_run_validated():
    with pytest.raises(ValueError, match="lrr"):
        sr.ScenarioRun(ppo={"lrr": 1e-3})
    with pytest.raises(ValueError, match="algo"):
        sr.ScenarioRun(algo="qmix")


@pytest.mark.slow
def test_tiny_page_end_to_end(tmp_path, monkeypatch):
    tiny = dataclasses.replace(sr.SCENARIOS["relay_v0"], num_envs=20, env_kwargs={"max_cycles": 20})
    monkeypatch.setitem(sr.SCENARIOS, "relay_v0", tiny)
    runs, docs = tmp_path / "runs", tmp_path / "docs"
    ctx = sr.run_scenario("relay_v0", [0, 1], runs, docs, total_steps=2000, episodes=8, bench_sizes=(1, 4),
                          bench_seconds=0.02, log=lambda m: None)
    page = (docs / "relay_v0.md").read_text()
    for seed in (0, 1):
        with open(runs / "relay_v0" / f"seed{seed}" / "metrics.csv", newline="") as f:
            last = [r for r in csv.DictReader(f) if r.get("return")][-1]
        row = next(ln for ln in page.splitlines() if ln.startswith(f"| {seed} | 2,000 |"))  # 4 x 20 envs x 25
        assert f"{float(last['return']):.2f}" in row  # final training return read back from metrics.csv
    saved = json.loads((runs / "relay_v0" / "report.json").read_text())
    base = saved["results"]["baseline"]["relay"]
    m, lo, hi = sr.t_interval(np.array(base))
    assert f"| baseline | {m:.2f} [{lo:.2f}, {hi:.2f}] |" in page
    assert ctx["data_shows"] in page and sr.SCENARIOS["relay_v0"].algo in page
    assert f"{saved['throughput'][1]['steps_per_s']:,.0f}" in page
    for name, limit in (("relay_v0_curve.png", 200_000), ("relay_v0_random.gif", 600_000),
                        ("relay_v0_trained.gif", 600_000)):
        assert 0 < (docs / "figures" / name).stat().st_size < limit
    assert "[relay_v0](relay_v0.md)" in (docs / "README.md").read_text()
    # a finished run is reused; one with other settings is an error unless retrained
    finished = runs / "relay_v0" / "seed0" / "finished.json"
    stamp = finished.read_text()
    entry = sr.SCENARIOS["relay_v0"]
    sr.train_seed("relay_v0", entry, 0, runs, total_steps=2000, log=lambda m: None)
    assert finished.read_text() == stamp
    with pytest.raises(SystemExit, match="total_steps"):
        sr.train_seed("relay_v0", entry, 0, runs, total_steps=3000, log=lambda m: None)


def test_heading_geometry_by_hand():
    # pursuer 0 at the origin moving +x, evaders at (1, 0) and (0, -3): nearest (1, 0), straight at it (0 deg);
    # pursuer 1 at (1, 1) moving +x: nearest evader (1, 0) straight below, 90 deg; pursuer 2 moving away, 180 deg
    pp = torch.tensor([[[0.0, 0.0], [1.0, 1.0], [2.0, 0.0]]], dtype=torch.float64)
    pv = torch.tensor([[[0.5, 0.0], [0.3, 0.0], [0.0, 0.0]]], dtype=torch.float64)
    pv[0, 2] = torch.tensor([0.2, 0.0])
    ev = torch.tensor([[[1.0, 0.0], [0.0, -3.0]]], dtype=torch.float64)
    d, ang, speed = sr.heading_geometry(pp, pv, ev)
    assert d[0].tolist() == pytest.approx([1.0, 1.0, 1.0])
    assert ang[0].tolist() == pytest.approx([0.0, 90.0, 180.0], abs=1e-6)
    assert speed[0].tolist() == pytest.approx([0.5, 0.3, 0.2])
