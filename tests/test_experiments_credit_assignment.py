"""experiments/credit_assignment.py --report-only on hand-made saved runs: the counts,
first crossings and per-seed numbers in the report are the ones in the data."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))

import credit_assignment as ca  # noqa: E402

pytestmark = pytest.mark.slow  # an experiment script's report


def _spread_run(algo: str, seed: int, evals: list[float], final: float) -> dict:
    return {"algo": algo, "seed": seed, "env_steps": 300_000, "config": {}, "train_time_s": 10.0,
            "steps_per_s": 30_000.0, "final_return": final, "final_return_std": 1.0, "final_episodes": 1000,
            "evals": [{"step": 100_000 * (i + 1), "return": v} for i, v in enumerate(evals)], "train": []}


def test_report_reads_its_numbers_from_the_saved_runs(tmp_path):
    runs = tmp_path / "runs"
    payoff = [[11.0, -30.0, 0.0], [-30.0, 7.0, 6.0], [0.0, 0.0, 5.0]]
    rows = lambda joints: [{"seed": i, "joint_action": list(j), "payoff": payoff[j[0]][j[1]],  # noqa: E731
                            "optimal": j == (0, 0), "utilities": []} for i, j in enumerate(joints)]
    matrix = {"settings": ca.MATRIX_SETTINGS, "seeds": [0, 1, 2],
              "games": {"matrix_climbing_v0": {"payoff": payoff, "algos": {
                  "iql": rows([(2, 2), (2, 2), (1, 1)]), "vdn": rows([(0, 0), (2, 2), (2, 2)]),
                  "qmix": rows([(0, 0), (0, 0), (1, 1)])}}}}
    (runs / "spread").mkdir(parents=True)
    (runs / "matrix.json").write_text(json.dumps(matrix))
    spread = [("qmix", 0, [-20.0, -16.5, -16.0], -16.2), ("qmix", 1, [-21.0, -18.0, -17.5], -17.4),
              ("vdn", 0, [-19.0, -17.0, -15.0], -15.5), ("vdn", 1, [-22.0, -19.0, -16.9], -16.8),
              ("iql", 0, [-25.0, -24.0, -23.0], -23.1)]
    for algo, seed, ev, fin in spread:
        (runs / "spread" / f"{algo}_s{seed}.json").write_text(json.dumps(_spread_run(algo, seed, ev, fin)))
    report = tmp_path / "report.md"
    ca.main(["--report-only", "--runs-dir", str(runs), "--report", str(report), "--figures", str(tmp_path / "fig"),
             "--seeds", "0", "1", "--bootstrap-reps", "200"])
    text = report.read_text()
    assert "| matrix_climbing_v0 | (0, 0) (11) | QMIX | 2/3 | (0, 0) x2, (1, 1) x1 | 9.67 |" in text
    assert "IQL 0/3 (most often (2, 2), payoff 5)" in text and "VDN 1/3" in text
    # first greedy eval at or above -17, per seed; final scores per seed
    assert "s0: 200,000, s1: never" in text  # qmix
    assert "s0: 200,000, s1: 300,000" in text  # vdn: -17.0 counts as reached
    assert "QMIX: 1/2 seeds reach a greedy eval of -17 or better within 300,000 steps; 1/2 end there" in text
    assert "VDN: 2/2 seeds reach" in text and "IQL: 0/1 seeds reach" in text
    assert "Only one seed finished for IQL" in text and "-23.10 (1 seed, no CI)" in text
    assert "**Not run yet** (1 of 6 runs" in text and "iql s1" in text
    assert (tmp_path / "fig" / "credit_assignment_matrix.png").stat().st_size < 200_000
    assert (tmp_path / "fig" / "credit_assignment_spread.png").is_file()
