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
    remove_stale_temporaries,
    save_checkpoint,
)
from fastmarl.train.runner import evaluate_run, train


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


def _dead_pid() -> int:
    """A process id that no process has now."""
    pid = 4_000_000
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except PermissionError:
            pass
        pid -= 1


def test_resume_falls_back_to_the_newest_valid_checkpoint(tmp_path, capsys):
    full = train(_cfg(tmp_path, "full"))
    with pytest.raises(Crash):  # checkpoints at 320 and 640, then dies
        train(_cfg(tmp_path, "run"), callback=crash_after(5))
    ckdir = tmp_path / "run" / "checkpoints"
    bad = latest_checkpoint(ckdir)
    assert bad.name == "step_000000000640"
    data = (bad / "trainer.pt").read_bytes()
    (bad / "trainer.pt").write_bytes(data[: len(data) // 3])  # truncated
    capsys.readouterr()
    resumed = train(resume=tmp_path / "run")
    err = capsys.readouterr().err
    assert "skipped a damaged checkpoint" in err and "step_000000000640 is corrupted: trainer.pt" in err
    assert "continuing from" in err and "step_000000000320" in err
    # the damaged checkpoint is kept, renamed; the resumed run wrote step 640 anew
    kept = ckdir / "damaged-step_000000000640"
    assert kept.is_dir() and (kept / "trainer.pt").read_bytes() == data[: len(data) // 3]
    assert resumed.global_step == full.global_step == 960
    _assert_same_run(tmp_path / "full", tmp_path / "run")  # from step 320 it is the same run


def test_resume_with_no_valid_checkpoint_names_every_damaged_one(tmp_path):
    with pytest.raises(Crash):
        train(_cfg(tmp_path, "run"), callback=crash_after(5))
    ckdir = tmp_path / "run" / "checkpoints"
    (ckdir / "step_000000000640" / "manifest.json").unlink()
    (ckdir / "step_000000000320" / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match=r"no valid checkpoint in .*step_000000000640 is incomplete: it has no "
                                              r"manifest.json.*step_000000000320 is corrupted: model.safetensors"):
        train(resume=tmp_path / "run")
    assert sorted(p.name for p in ckdir.iterdir()) == ["latest", "step_000000000320", "step_000000000640"]


def test_stale_temporaries_are_removed_and_nothing_else(tmp_path):
    dead, alive = _dead_pid(), os.getppid()
    stale = [f".tmp-step_000000000960-{dead}", f".latest.tmp-{dead}", f".metrics.csv.tmp-{dead}",
             f".learning_curve.png.tmp-{dead}"]
    kept = [f".tmp-step_000000000960-{alive}",  # a live process may still be writing it
            ".notes.tmp", "notes.tmp-12", "step_000000000320", "latest"]
    for name in stale + kept:
        if "step_" in name:
            (tmp_path / name).mkdir()
            (tmp_path / name / "model.safetensors").write_bytes(b"x")
        else:
            (tmp_path / name).write_text("x")
    removed = remove_stale_temporaries(tmp_path)
    assert sorted(p.name for p in removed) == sorted(stale)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(kept)


def test_resume_removes_what_killed_writes_left(tmp_path, capsys):
    with pytest.raises(Crash):
        train(_cfg(tmp_path, "run"), callback=crash_after(3))
    run, dead = tmp_path / "run", _dead_pid()
    (run / "checkpoints" / f".tmp-step_000000000640-{dead}").mkdir()
    (run / "checkpoints" / f".tmp-step_000000000640-{dead}" / "model.safetensors").write_bytes(b"half")
    (run / "checkpoints" / f".latest.tmp-{dead}").write_text("step_000000000640")
    (run / f".config.json.tmp-{dead}").write_text("{")
    train(resume=run)
    err = capsys.readouterr().err
    assert err.count("left by a write that was interrupted") == 3
    assert not [p for p in [*run.iterdir(), *(run / "checkpoints").iterdir()] if ".tmp" in p.name]


def test_eval_needs_only_a_valid_model(tmp_path, capsys):
    with pytest.raises(Crash):
        train(_cfg(tmp_path, "run"), callback=crash_after(5))
    ckdir = tmp_path / "run" / "checkpoints"
    (ckdir / "step_000000000640" / "trainer.pt").write_bytes(b"garbage")  # eval does not read it
    assert evaluate_run(tmp_path / "run", episodes=4)["step"] == 640
    assert capsys.readouterr().err == ""
    (ckdir / "step_000000000640" / "model.safetensors").write_bytes(b"garbage")
    assert evaluate_run(tmp_path / "run", episodes=4)["step"] == 320  # the newest valid model
    err = capsys.readouterr().err
    assert "skipped a damaged checkpoint" in err and "step_000000000640 is corrupted: model.safetensors" in err
    assert "using step_000000000320" in err
    with pytest.raises(CheckpointError, match="model.safetensors"):  # a checkpoint named explicitly is not replaced
        evaluate_run(tmp_path / "run", episodes=4, checkpoint=ckdir / "step_000000000640")


def test_checkpoints_keep_the_log_history_by_column_and_older_list_ones_resume(tmp_path, monkeypatch):
    """The loop's log rows go into trainer.pt as columns (a few tensors, not a dict a row); a
    checkpoint written before that, with a list of row dicts, still resumes to the same run."""
    from fastmarl.train.history import History

    full = train(_cfg(tmp_path, "full"))
    assert isinstance(full.history, History) and len(full.history) == 6
    csv_rows = _rows(tmp_path / "full" / "metrics.csv")
    assert [r["step"] for r in full.history] == [int(r["step"]) for r in csv_rows] == [160 * i for i in range(1, 7)]
    _, trainer, _ = load_checkpoint(latest_checkpoint(tmp_path / "full" / "checkpoints"))
    saved = trainer["loop"]["history"]
    assert saved["format"] == "columns" and saved["rows"] == 6
    assert torch.equal(saved["columns"]["step"]["values"], torch.arange(1, 7) * 160)
    with monkeypatch.context() as m:  # the crashed run writes its checkpoints the old way
        m.setattr(History, "state_dict", History.to_list)
        with pytest.raises(Crash):
            train(_cfg(tmp_path, "old"), callback=crash_after(5))
    _, trainer, _ = load_checkpoint(latest_checkpoint(tmp_path / "old" / "checkpoints"))
    assert isinstance(trainer["loop"]["history"], list) and len(trainer["loop"]["history"]) == 4
    resumed = train(resume=tmp_path / "old")
    drop = lambda rows: [{k: v for k, v in r.items() if k not in ("time", "sps")} for r in rows]  # noqa: E731
    assert drop(resumed.history) == drop(full.history)
    _assert_same_run(tmp_path / "full", tmp_path / "old")

