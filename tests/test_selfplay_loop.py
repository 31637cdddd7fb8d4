"""Self-play over the one training loop (fastmarl.train.selfplay): exact resume, the opponent draws
in numbers, and the competitive config's unknown keys."""

from __future__ import annotations

import csv

import pytest
import torch
from crash import Crash, crash_after

from fastmarl.config import ConfigError, PPOConfig
from fastmarl.config.competitive import CompetitiveConfig, GroupSetup
from fastmarl.train.pool import list_snapshots, load_snapshot, prioritised_weights, snapshot_step
from fastmarl.train.selfplay import train

torch.set_num_threads(1)

TINY = PPOConfig(num_steps=10, num_epochs=2, num_minibatches=2, hidden_size=16, num_layers=1)


def _cfg(tmp_path, **kw) -> CompetitiveConfig:
    base = dict(env="simple_tag_v3", num_envs=8, total_steps=640, phase_steps=160, snapshot_interval=80,
                eval_interval=240, eval_episodes=4, matrix_episodes=0, runs_dir=str(tmp_path), progress=False,
                plots=False, ppo=TINY, seed=5)
    return CompetitiveConfig(**{**base, **kw})


def _rows(path, drop=("time", "sps")) -> list[dict[str, str]]:
    return [{k: v for k, v in r.items() if k not in drop} for r in csv.DictReader(open(path))]


@pytest.mark.parametrize("sampling,schedule", [("prioritised", "alternate"), ("uniform", "simultaneous")])
def test_a_resumed_selfplay_run_equals_an_uninterrupted_one(tmp_path, sampling, schedule):
    kw = dict(opponent_sampling=sampling, schedule=schedule, pool_size=2, checkpoint_interval=160,
              groups={"agent": GroupSetup(algo="ippo", ppo={"lr": 1e-3})})
    whole = train(_cfg(tmp_path, name="whole", **kw))
    # dies at step 400 (5 iterations of 80): its last checkpoint is step 320, and the pool already
    # holds the snapshots of steps 400 (written after the checkpoint: the resumed run must not draw them early)
    with pytest.raises(Crash):
        train(_cfg(tmp_path, name="cut", **kw), callback=crash_after(5))
    cut = tmp_path / "cut"
    assert max(snapshot_step(p) for g in ("adversary", "agent") for p in list_snapshots(cut / "pool", g)) == 400
    resumed = train(resume=cut)
    assert resumed.global_step == whole.global_step == 640
    assert _rows(cut / "metrics.csv") == _rows(whole.run_dir / "metrics.csv")
    assert _rows(cut / "eval.csv") == _rows(whole.run_dir / "eval.csv")
    assert [int(r["step"]) for r in _rows(cut / "eval.csv")] == [240, 480, 640]
    for g in ("adversary", "agent"):
        a, b = list_snapshots(cut / "pool", g), list_snapshots(whole.run_dir / "pool", g)
        assert [p.name for p in a] == [p.name for p in b]
        wa, wb = resumed.learners[g].weights(), whole.learners[g].weights()
        assert all(torch.equal(wa[k], wb[k]) for k in wb)
        spec = whole.learners[g].spec
        sa, sb = load_snapshot(a[-1], spec)[0].weights(), load_snapshot(b[-1], spec)[0].weights()
        assert all(torch.equal(sa[k], sb[k]) for k in sb)


def test_resume_refuses_a_changed_setting(tmp_path):
    train(_cfg(tmp_path, name="r", total_steps=160))
    with pytest.raises(ConfigError, match="cannot change pool_size: 10 -> 3 when resuming a competitive run"):
        train(_cfg(tmp_path, name="r", pool_size=3), resume=tmp_path / "r")


def _draws(tmp_path, sampling, pool_size):
    """Train with ``sampling`` and return the log rows as the loop saw them (full precision) and the pool."""
    rows = []
    res = train(_cfg(tmp_path, name=sampling, total_steps=1280, phase_steps=320, opponent_sampling=sampling,
                     pool_size=pool_size,
                     eval_interval=0),
                callback=lambda info: rows.append(info.row))
    pool = {g: [snapshot_step(p) for p in list_snapshots(res.run_dir / "pool", g)] for g in ("adversary", "agent")}
    return rows, pool


@pytest.mark.parametrize("sampling", ["uniform", "prioritised"])
def test_opponent_draws_follow_the_pool_generator(tmp_path, sampling):
    """Replay the draws: one multinomial per iteration from a generator seeded seed + 2, over the newest
    pool_size snapshots that existed when the iteration began, weighted (prioritised) by the running
    mean (EMA 0.3) of the learner's training return against each snapshot."""
    rows, pool = _draws(tmp_path, sampling, pool_size=2)
    gen = torch.Generator().manual_seed(5 + 2)
    vs: dict[str, dict[int, float]] = {"adversary": {}, "agent": {}}
    seen = 0
    for r in rows:
        learner = r["learning"]
        other = "agent" if learner == "adversary" else "adversary"
        start = r["step"] - 80
        window = [s for s in pool[other] if s <= start][-2:]
        if sampling == "uniform":
            w = torch.ones(len(window), dtype=torch.float64)
        else:
            w = prioritised_weights([vs[other].get(s) for s in window])
        expect = window[int(torch.multinomial(w, 1, generator=gen))]
        assert r[f"opponent/{other}"] == expect, r["step"]
        ret = r.get(f"return/{learner}")
        if ret is not None:
            old = vs[other].get(expect)
            vs[other][expect] = ret if old is None else 0.7 * old + 0.3 * ret
            seen += 1
    assert seen >= 5  # the prioritised weights were fed by finished episodes (25 steps; 10 per iteration)
    if sampling == "prioritised":
        assert any(len(v) == 2 for v in vs.values())  # some draw chose between two rated snapshots


def test_competitive_config_rejects_unknown_keys():
    with pytest.raises(ConfigError, match=r"unknown PPOConfig key in ppo: 'num_step' \(did you mean 'num_steps'\?\)"):
        CompetitiveConfig.from_dict({"ppo": {"num_step": 5}})
    with pytest.raises(ConfigError, match=r"unknown PPOConfig key in groups.agent.ppo: 'lrr' \(did you mean 'lr'\?\)"):
        CompetitiveConfig.from_dict({"groups": {"agent": {"ppo": {"lrr": 1e-3}}}})
    with pytest.raises(ConfigError, match=r"unknown CompetitiveConfig key: 'opponent_sample' \(did you mean "
                                          r"'opponent_sampling'\?\)"):
        CompetitiveConfig.from_dict({"kind": "competitive", "opponent_sample": "latest"})
    with pytest.raises(ConfigError, match="groups: expected a mapping"):
        CompetitiveConfig.from_dict({"groups": ["agent=ippo"]})
    cfg = CompetitiveConfig(groups={"agent": GroupSetup(algo="ippo", ppo={"lr": 1e-3})}, pool_size=3)
    assert CompetitiveConfig.from_dict(cfg.to_dict()) == cfg  # a run's config.json round trip


def test_the_loop_writes_checkpoints_tensorboard_and_the_gif(tmp_path):
    res = train(_cfg(tmp_path, name="files", total_steps=160, checkpoint_interval=80, tensorboard=True, gif=True,
                     groups={"agent": GroupSetup(mode="scripted", scripted="noop")}))
    run = res.run_dir
    assert sorted(p.name for p in (run / "checkpoints").iterdir() if p.is_dir()) == \
        ["step_000000000080", "step_000000000160"]
    assert any((run / "tb").iterdir()) and (run / "episode.gif").stat().st_size > 0
    assert (run / "learning_curve.png").is_file()
    assert [r["learning"] for r in _rows(run / "metrics.csv")] == ["adversary", "adversary"]
    assert "opponent/agent" not in _rows(run / "metrics.csv")[0]  # a scripted group is no opponent from the pool
