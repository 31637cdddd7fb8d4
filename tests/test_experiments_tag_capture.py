"""experiments/tag_capture.py: the tabular discretization, the measures on a hand-made
trajectory, and tiny end-to-end runs (deep IQL vs the scripted prey, tabular IQL vs a learning prey)."""

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def _load():
    path = ROOT / "experiments" / "tag_capture.py"
    spec = importlib.util.spec_from_file_location("tag_capture", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["tag_capture"] = mod
    spec.loader.exec_module(mod)
    return mod


tc = _load()
torch.set_num_threads(1)


def test_tabular_discretizer_reads_velocity_and_prey_only():
    d = tc.tabular_discretizer(3)
    assert d.num_states == 3 * 3 * 11 * 11 and d.obs_dim == 16
    obs = torch.zeros(2, 16)
    obs[1, 2:14] = torch.rand(12) - 0.5  # own position, obstacles, other predators: ignored
    obs[:, 12:14] = torch.tensor([0.05, -0.05])  # prey relative position (both in the middle bin)
    idx = d(obs)
    assert idx[0] == idx[1]
    moved = obs[:1].clone()
    moved[0, 12] = 0.05 + 0.2  # one prey bin (width 0.2) to the right
    assert d(moved).item() - idx[0].item() == 11  # the prey's x is the second-to-last radix digit
    fast = obs[:1].clone()
    fast[0, 0] = 0.9  # own x velocity: top bin
    assert d(fast).item() - idx[0].item() == 3 * 11 * 11


def test_measure_on_a_hand_made_trajectory():
    T, E, P = 25, 2, 3
    pred = torch.full((T, E, P, 2), 1.0)
    prey = torch.zeros(T, E, 1, 2)
    # env 0: the three predators reach the prey at step 7 from 0/120/240 degrees
    a = torch.tensor([0.0, 2 * math.pi / 3, 4 * math.pi / 3])
    pred[6:, 0] = 0.1 * torch.stack([a.cos(), a.sin()], -1)
    tr = {"pred_pos": pred, "pred_vel": torch.zeros_like(pred), "prey_pos": prey}
    out = tc.measure(tr, torch.tensor([-30.0, 0.0]))
    assert out["capture_rate"] == 0.5 and out["time_to_first_capture"] == 7.0
    assert out["captures_per_episode"] == 0.5
    assert out["spread_R"] == pytest.approx(0.0, abs=1e-6)
    assert out["prey_return"] == -15.0
    assert sum(out["role_shares"]) == pytest.approx(1.0)
    assert len(out["distance_by_step"]) == T and len(out["distance_by_step"][0]) == P


@pytest.mark.parametrize("cond", ["iql_vs_scripted", "tabular_vs_learning"])
def test_tiny_runs(tmp_path, cond):
    res = tc.train_run(cond, seed=0, steps=2048, eval_every=1024, eval_episodes=8, out=tmp_path)
    saved = json.loads((tmp_path / f"{cond}_s0.json").read_text())
    assert saved["steps"] == res["steps"] == 2048
    assert [e["step"] for e in saved["evals"]] == [0, 1024, 2048]
    for e in saved["evals"]:
        assert 0.0 <= e["capture_rate"] <= 1.0 and sum(e["role_shares"]) == pytest.approx(1.0)
    assert (saved["final_vs_scripted"] is None) == cond.endswith("scripted")
    snaps = torch.load(tmp_path / f"{cond}_s0.pt", weights_only=False)
    assert set(snaps) == {"early", "late"} and snaps["late"]["step"] == res["steps"]
