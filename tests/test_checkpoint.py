"""Checkpoints: integrity checks on load, and exact resume after a crash or a kill."""

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from crash import Crash, crash_after
from safetensors.torch import load_file
from test_ppo_toyenv import one_thread  # noqa: F401 (autouse fixture)

from fastmarl.config import PPOConfig, TrainConfig
from fastmarl.train.checkpoint import (
    CheckpointError,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
)
from fastmarl.train.runner import train


def _save(folder: Path, step: int) -> Path:
    weights = {"a.weight": torch.arange(6.0).view(2, 3), "b": torch.tensor([step], dtype=torch.int64)}
    trainer = {"opt": {"step": torch.tensor(3.0)}, "rng": torch.Generator().manual_seed(1).get_state()}
    return save_checkpoint(folder, step, weights, trainer, {"iteration": step // 10}, keep=2)


def test_round_trip_keep_and_latest(tmp_path):
    for step in (10, 20, 30):
        _save(tmp_path, step)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_000000000020", "step_000000000030"]
    (tmp_path / ".tmp-step_000000000040-123").mkdir()  # a crash while writing leaves only a hidden folder
    assert latest_checkpoint(tmp_path).name == "step_000000000030"
    weights, trainer, manifest = load_checkpoint(latest_checkpoint(tmp_path))
    assert weights["b"].item() == 30 and torch.equal(weights["a.weight"], torch.arange(6.0).view(2, 3))
    assert trainer["opt"]["step"].item() == 3.0 and manifest["iteration"] == 3


@pytest.mark.parametrize("damage,message", [
    ("flip_model", r"corrupted: model.safetensors has SHA-256"),
    ("truncate_trainer", r"corrupted: trainer.pt has \d+ bytes, the manifest says \d+"),
    ("no_manifest", r"incomplete: it has no manifest.json"),
    ("bad_manifest", r"manifest.json is not valid JSON"),
    ("no_model", r"incomplete: model.safetensors is missing"),
])
def test_corrupted_or_partial_checkpoint_is_a_clear_error(tmp_path, damage, message):
    ck = _save(tmp_path, 10)
    if damage == "flip_model":
        data = bytearray((ck / "model.safetensors").read_bytes())
        data[-3] ^= 0xFF
        (ck / "model.safetensors").write_bytes(bytes(data))
    elif damage == "truncate_trainer":
        data = (ck / "trainer.pt").read_bytes()
        (ck / "trainer.pt").write_bytes(data[: len(data) // 2])
    elif damage == "no_manifest":
        (ck / "manifest.json").unlink()
    elif damage == "bad_manifest":
        (ck / "manifest.json").write_text('{"format": ')
    elif damage == "no_model":
        (ck / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match=message) as info:
        load_checkpoint(ck)
    assert str(ck) in str(info.value) and "earlier checkpoint" in str(info.value)


def _cfg(tmp_path, name, **kw) -> TrainConfig:
    # 6 iterations of 16 envs x 10 steps; checkpoints every 2 iterations, evaluations every 3
    base = dict(env="simple_spread_v3", env_kwargs={"N": 2}, num_envs=16, total_steps=960, seed=3,
                runs_dir=str(tmp_path), name=name, checkpoint_interval=320, eval_interval=480, eval_episodes=4,
                gif=False, tensorboard=False, progress=False, threads=1,
                ppo=PPOConfig(num_steps=10, num_minibatches=2))
    return TrainConfig(**{**base, **kw})


def _rows(path: Path, drop=("time", "sps")) -> list[dict]:
    with open(path) as f:
        return [{k: v for k, v in r.items() if k not in drop} for r in csv.DictReader(f)]


def _final_weights(run: Path) -> dict:
    return load_file(latest_checkpoint(run / "checkpoints") / "model.safetensors")


def _assert_same_run(a: Path, b: Path) -> None:
    wa, wb = _final_weights(a), _final_weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    ra, rb = _rows(a / "metrics.csv"), _rows(b / "metrics.csv")
    assert len(ra) == len(rb) == 6 and ra == rb
    assert _rows(a / "eval.csv") == _rows(b / "eval.csv")


@pytest.mark.parametrize("algo,recurrent", [pytest.param("mappo", False, marks=pytest.mark.slow), ("ippo", True)])
def test_resume_after_a_crash_equals_an_uninterrupted_run(tmp_path, algo, recurrent):
    ppo = PPOConfig(num_steps=10, num_minibatches=2, recurrent=recurrent)
    full = train(_cfg(tmp_path, "full", algo=algo, ppo=ppo))
    with pytest.raises(Crash):  # dies after iteration 5: the last checkpoint is iteration 4's
        train(_cfg(tmp_path, "crashed", algo=algo, ppo=ppo), callback=crash_after(5))
    assert latest_checkpoint(tmp_path / "crashed" / "checkpoints").name == "step_000000000640"
    assert len(_rows(tmp_path / "crashed" / "metrics.csv")) == 5  # iteration 5 was logged, then lost
    resumed = train(resume=tmp_path / "crashed")
    assert resumed.global_step == full.global_step == 960
    _assert_same_run(tmp_path / "full", tmp_path / "crashed")


@pytest.mark.slow
def test_resume_after_sigkill_equals_an_uninterrupted_run(tmp_path):
    cfg = _cfg(tmp_path, "full", total_steps=160 * 40, checkpoint_interval=160, eval_interval=0)
    train(cfg)
    args = [sys.executable, "-m", "fastmarl.cli", "train", "--env", "simple_spread_v3", "--env-kwargs", "N=2",
            "--num-envs", "16", "--num-steps", "10", "--num-minibatches", "2", "--total-steps", str(160 * 40),
            "--seed", "3", "--runs-dir", str(tmp_path), "--name", "killed", "--checkpoint-interval", "160",
            "--eval-interval", "0", "--eval-episodes", "4", "--no-gif", "--no-tensorboard", "--no-progress",
            "--threads", "1"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ckdir = tmp_path / "killed" / "checkpoints"
    deadline = time.time() + 60
    while time.time() < deadline and len(list_checkpoints(ckdir)) < 3 and proc.poll() is None:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()
    done = latest_checkpoint(ckdir).name
    assert done != "step_000000006400", "the run finished before it was killed"
    res = subprocess.run([sys.executable, "-m", "fastmarl.cli", "train", "--resume", str(tmp_path / "killed")],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    wa, wb = _final_weights(tmp_path / "full"), _final_weights(tmp_path / "killed")
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    ra, rb = _rows(tmp_path / "full" / "metrics.csv"), _rows(tmp_path / "killed" / "metrics.csv")
    assert len(rb) == 40 and ra == rb


def test_resume_refuses_a_corrupted_latest_checkpoint(tmp_path):
    with pytest.raises(Crash):
        train(_cfg(tmp_path, "run"), callback=crash_after(2))
    ck = latest_checkpoint(tmp_path / "run" / "checkpoints")
    (ck / "trainer.pt").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="trainer.pt"):
        train(resume=tmp_path / "run")
