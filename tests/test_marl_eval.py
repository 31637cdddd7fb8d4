"""Run results in marl-eval's JSON layout, and the learning curve's reference returns.

The layout, as marl-eval's README documents it (and its JsonLogger, BenchMARL and Mava write it):
``{environment: {task: {algorithm: {run: {"step_0": {"step_count": int, metric: [values]}, ...,
"absolute_metrics": {metric: [values]}}}}}}``; every step and the absolute metrics hold the same
metrics (marl-eval's DiagnoseData), the absolute metrics come last (its processing takes the last
key) with 1 or 10x the per-step number of values, and every run of an environment has as many steps.
"""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import fastmarl
from fastmarl.config import EVAL_SEED_OFFSET, QConfig, TrainConfig
from fastmarl.envs.episodes import evaluate_policy
from fastmarl.envs.scripted import RandomPolicy, SpreadScripted
from fastmarl.train import marl_eval
from fastmarl.train.rundir import RunDir, plot_learning_curve

ROOT = Path(__file__).resolve().parents[1]
QUIET = dict(gif=False, tensorboard=False, progress=False, threads=1)


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def check_layout(data) -> dict[str, int]:
    """Assert the documented layout; returns environment -> steps per run."""
    assert isinstance(data, dict) and data
    steps_per_env = {}
    for env, tasks in data.items():
        assert isinstance(env, str) and env == env.lower() and isinstance(tasks, dict) and tasks
        for task, algos in tasks.items():
            assert task == task.lower() and isinstance(algos, dict) and algos
            for algo, runs in algos.items():
                assert isinstance(runs, dict) and runs
                for run, record in runs.items():
                    keys = list(record)
                    assert keys[-1] == "absolute_metrics", keys
                    steps = keys[:-1]
                    assert steps == [f"step_{i}" for i in range(len(steps))] and steps, keys
                    assert steps_per_env.setdefault(env, len(steps)) == len(steps), "runs differ in step count"
                    names, sizes, counts = None, None, []
                    for k in steps:
                        entry = dict(record[k])
                        count = entry.pop("step_count")
                        assert isinstance(count, int) and count > 0
                        counts.append(count)
                        assert entry and (names is None or set(entry) == names), (k, set(entry), names)
                        names = set(entry)
                        for metric, values in entry.items():
                            assert metric == metric.lower() and isinstance(values, list) and values
                            assert all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)
                        sizes = sizes or {m: len(v) for m, v in entry.items()}
                        assert {m: len(v) for m, v in entry.items()} == sizes
                    assert counts == sorted(set(counts)), "step counts must increase"
                    absolute = record["absolute_metrics"]
                    assert set(absolute) == names
                    for metric, values in absolute.items():
                        assert len(values) in (1, 10 * sizes[metric]), (metric, len(values))
    return steps_per_env


def _train(cfg, tmp_path, name):
    cfg.runs_dir, cfg.name = str(tmp_path), name
    return fastmarl.train(cfg)


def test_every_run_writes_marl_eval_json_matching_its_eval_csv(tmp_path):
    runs = []
    for algo, seed in (("ippo", 0), ("ippo", 1), ("mappo", 0)):
        res = _train(TrainConfig(algo=algo, env="simple_spread_v3", seed=seed, total_steps=3000, num_envs=20,
                                 eval_interval=1000, eval_episodes=12, **QUIET), tmp_path, f"{algo}{seed}")
        runs.append(res.run_dir)
    res = _train(QConfig(algo="iql", env="simple_spread_v3", total_steps=600, eval_interval=200, eval_episodes=12,
                         **QUIET), tmp_path, "iql0")
    runs.append(res.run_dir)
    for run in runs:
        data = json.loads((run / marl_eval.FILE).read_text())
        assert check_layout(data) == {"mpe": 3}
        (algo, records), = data["mpe"]["simple_spread_v3"].items()
        (seed, record), = records.items()
        cfg = RunDir(run).read_config()
        assert algo == cfg.algo and seed == f"seed_{cfg.seed}"
        with open(run / "eval.csv") as f:
            rows = list(csv.DictReader(f))
        for i, row in enumerate(rows):  # the per-episode values behind eval.csv's means
            step = record[f"step_{i}"]
            assert step["step_count"] == int(row["step"])
            assert len(step["return"]) == 12 and len(step["episode_length"]) == 12
            assert np.mean(step["return"]) == pytest.approx(float(row["return_det"]), abs=1e-4)
            assert np.std(step["return"], ddof=1) == pytest.approx(float(row["return_std_det"]), abs=1e-4)
        # the absolute metrics: 120 fresh episodes of the final policy, not the last evaluation repeated
        absolute = record["absolute_metrics"]["return"]
        assert len(absolute) == 120 and len(set(absolute)) > 100
    merged = marl_eval.merge(json.loads((r / marl_eval.FILE).read_text()) for r in runs)
    assert check_layout(merged) == {"mpe": 3}
    assert {a: sorted(s) for a, s in merged["mpe"]["simple_spread_v3"].items()} == \
        {"ippo": ["seed_0", "seed_1"], "mappo": ["seed_0"], "iql": ["seed_0"]}
    out = marl_eval.merge_runs(tmp_path)  # what experiments/mappo_vs_ippo.py writes for its runs folder
    assert out == tmp_path / marl_eval.FILE and json.loads(out.read_text()) == merged
    assert marl_eval.merge_runs(tmp_path) == out  # its own output is not merged into itself
    with pytest.raises(ValueError, match="mpe/simple_spread_v3/ippo/seed_0 appears twice"):
        marl_eval.merge(json.loads((runs[0] / marl_eval.FILE).read_text()) for _ in range(2))


def test_names_and_competitive_metrics(tmp_path):
    assert marl_eval.names("pz:mpe2.simple_spread_v3") == ("mpe2", "simple_spread_v3")
    assert marl_eval.names("simple_spread_v3", {"N": 5}) == ("mpe", "simple_spread_v3__n=5")
    assert marl_eval.names("relay_v0") == ("applications", "relay_v0")
    res = _train(TrainConfig(algo="ippo", env="simple_tag_v3", total_steps=1000, num_envs=8, eval_interval=500,
                             eval_episodes=6, **QUIET), tmp_path, "tag")
    data = json.loads((res.run_dir / marl_eval.FILE).read_text())
    check_layout(data)
    step = data["mpe"]["simple_tag_v3"]["ippo"]["seed_0"]["step_0"]
    assert set(step) == {"step_count", "return_adversary", "return_agent", "episode_length"}  # never a mean of teams


def test_references_are_the_random_and_scripted_returns_and_the_curve_draws_them(tmp_path, monkeypatch):
    res = _train(TrainConfig(algo="ippo", env="simple_spread_v3", total_steps=1000, num_envs=8, eval_interval=0,
                             eval_episodes=40, **QUIET), tmp_path, "spread")
    refs = json.loads((res.run_dir / "references.json").read_text())
    env = fastmarl.make("simple_spread_v3", num_envs=40, seed=0)
    for name, policy in (("random", RandomPolicy(env.spec)), ("scripted", SpreadScripted(env.spec))):
        want = evaluate_policy(policy, env, True, EVAL_SEED_OFFSET)["return"]  # the loop's seed: 0 + offset
        assert refs[name] == {"return": pytest.approx(want, abs=1e-5)}
    assert refs["scripted"]["return"] > refs["random"]["return"] + 10
    drawn = []
    import matplotlib.figure

    def capture(fig, *a, **k):
        for ax in fig.axes:
            drawn.append({line.get_label(): line.get_ydata()[0] for line in ax.get_lines()
                          if len(set(line.get_ydata())) == 1 and len(line.get_ydata()) == 2})
        return orig(fig, *a, **k)

    orig = matplotlib.figure.Figure.savefig
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", capture)
    plot_learning_curve(RunDir(res.run_dir), "t", refs)
    for axis in drawn:  # both panels: one horizontal line per reference at its return
        assert axis[f"random {refs['random']['return']:.2f}"] == pytest.approx(refs["random"]["return"])
        assert axis[f"scripted {refs['scripted']['return']:.2f}"] == pytest.approx(refs["scripted"]["return"])
    assert len(drawn) == 2
    assert (res.run_dir / "learning_curve.png").stat().st_size > 0


def test_env_without_scripted_controller_gets_random_only(tmp_path):
    res = _train(TrainConfig(algo="ippo", env="simple_tag_v3", total_steps=400, num_envs=8, eval_interval=0,
                             eval_episodes=6, **QUIET), tmp_path, "tag")
    refs = json.loads((res.run_dir / "references.json").read_text())
    assert set(refs) == {"random"} and set(refs["random"]) == {"return/adversary", "return/agent"}


@pytest.mark.slow
def test_compare_experiment_writes_one_merged_file(tmp_path):
    runs = tmp_path / "runs"
    cmd = [sys.executable, "experiments/compare.py", "--algos", "ippo", "mappo", "--envs", "simple_spread_v3",
           "--seeds", "0", "1", "--total-steps", "10000", "--eval-interval", "5000", "--eval-episodes", "8",
           "--final-episodes", "16", "--workers", "2", "--runs-dir", str(runs), "--report", str(tmp_path / "r.md"),
           "--figures", str(tmp_path / "fig")]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600,
                         env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    data = json.loads((runs / "marl_eval.json").read_text())
    assert check_layout(data) == {"mpe": 2}
    assert {a: sorted(s) for a, s in data["mpe"]["simple_spread_v3"].items()} == \
        {"ippo": ["seed_0", "seed_1"], "mappo": ["seed_0", "seed_1"]}


@pytest.mark.slow
def test_a_resumed_run_writes_the_same_file_as_an_uninterrupted_one(tmp_path):
    def cfg(name):
        return TrainConfig(algo="ippo", env="simple_spread_v3", total_steps=4000, num_envs=20, eval_interval=1000,
                           eval_episodes=8, checkpoint_interval=1000, runs_dir=str(tmp_path), name=name, **QUIET)

    whole = fastmarl.train(cfg("whole")).run_dir
    stopped = fastmarl.train(cfg("parts"), callback=lambda info: info.step >= 2000)
    assert stopped.stopped and not (stopped.run_dir / marl_eval.FILE).exists()  # written when the run ends
    fastmarl.train(resume=stopped.run_dir)
    a = json.loads((whole / marl_eval.FILE).read_text())
    b = json.loads((stopped.run_dir / marl_eval.FILE).read_text())
    assert check_layout(b) == {"mpe": 4}
    assert a == b  # on CPU the resumed run equals the uninterrupted one, evaluations included
