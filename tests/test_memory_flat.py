"""Long runs stay flat: the loop releases garbage cycles and freed heap pages after evaluations
and checkpoints (benchmarks/soak.py measures it over an hour; docs/benchmarks.md)."""

from __future__ import annotations

import gc
import importlib.util
import weakref
from pathlib import Path

import pytest

import fastmarl.train.loop as loop_mod
from fastmarl.config import PPOConfig, TrainConfig
from fastmarl.train.runner import train

ROOT = Path(__file__).resolve().parents[1]


def _soak():
    spec = importlib.util.spec_from_file_location("soak", ROOT / "benchmarks" / "soak.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class _Node:
    def __init__(self):
        self.me = self  # a reference cycle: only the cycle collector frees it


def test_release_memory_frees_reference_cycles():
    gc.disable()
    try:
        node = _Node()
        ref = weakref.ref(node)
        del node
        assert ref() is not None  # still alive: refcounting alone cannot free a cycle
        loop_mod.release_memory()
        assert ref() is None
    finally:
        gc.enable()


def test_the_loop_releases_memory_after_evaluations(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(loop_mod, "release_memory", lambda: calls.append(1))
    cfg = TrainConfig(env="simple_spread_v3", total_steps=1500, num_envs=10, eval_interval=500, eval_episodes=2,
                      checkpoint_interval=0, threads=1, progress=False, gif=False, tensorboard=False,
                      runs_dir=str(tmp_path), name="m", ppo=PPOConfig(num_steps=50))
    train(cfg)
    assert len(calls) >= 1  # rate-limited to one every 5 s, so a 1-second run releases once


def test_soak_summary_growth_and_verdict():
    soak = _soak()
    flat = [{"t": t, "rss_mb": 400.0 + (t > 60) * 10 + (t % 20 == 0), "step": t * 100} for t in range(0, 600, 10)]
    res = soak.summarise(flat, 60, 0.05)
    assert res["rss_at_warmup_mb"] == 401.0 and res["rss_final_mb"] == 410.0 and res["rss_max_mb"] == 411.0
    assert res["growth"] == pytest.approx(410 / 401 - 1) and res["max_growth"] == pytest.approx(411 / 401 - 1)
    assert res["passed"] and res["steps_at_warmup"] == 6000
    creeping = [{"t": t, "rss_mb": 400.0 + t / 10, "step": t} for t in range(0, 600, 10)]
    res = soak.summarise(creeping, 60, 0.05)
    assert res["growth"] == pytest.approx(459 / 406 - 1) and not res["passed"]
    with pytest.raises(SystemExit, match="too few samples"):
        soak.summarise(flat[:3], 60, 0.05)
