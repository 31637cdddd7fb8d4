"""End to end through the command line: train, eval, render, and the errors that guide users."""

import csv
import json

import imageio.v3 as iio
import pytest
from test_ppo_toyenv import one_thread  # noqa: F401 (autouse fixture)

from fastmarl.cli import main
from fastmarl.config import TrainConfig


def test_tiny_cli_run_writes_a_complete_run_directory(tmp_path, capsys):
    argv = ["train", "--algo", "mappo", "--env", "simple_spread_v3", "--env-kwargs", "N=2", "local_ratio=0.25",
            "--total-steps", "6e2", "--num-envs", "8", "--num-steps", "25", "--num-minibatches", "2",
            "--runs-dir", str(tmp_path), "--name", "tiny", "--eval-interval", "400", "--eval-episodes", "3",
            "--checkpoint-interval", "0", "--no-progress", "--threads", "1"]
    assert main(argv) == 0
    assert "final eval return per agent" in capsys.readouterr().out
    run = tmp_path / "tiny"
    cfg = TrainConfig.from_dict(json.loads((run / "config.json").read_text()))
    assert cfg.env_kwargs == {"N": 2, "local_ratio": 0.25} and cfg.total_steps == 600 and cfg.algo == "mappo"
    meta = json.loads((run / "meta.json").read_text())
    assert meta["versions"]["torch"] and "commit" in meta["git"] and meta["seed"] == 0
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    assert [int(r["step"]) for r in rows] == [200, 400, 600]
    assert all(float(r["episode_length"]) == 25 for r in rows[1:]) and float(rows[-1]["lr"]) > 0
    evals = list(csv.DictReader(open(run / "eval.csv")))
    assert [int(r["step"]) for r in evals] == [400, 600]  # the interval, and always at the end
    assert all(-200 < float(r["return_det"]) < 0 and float(r["episodes_det"]) == 3 for r in evals)
    assert list((run / "tb").glob("events.out.tfevents.*"))
    assert (run / "learning_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    frames = iio.imread(run / "episode.gif")
    assert frames.ndim == 4 and frames.shape[-1] in (3, 4) and frames.shape[0] > 10
    manifest = json.loads(next((run / "checkpoints").glob("step_*/manifest.json")).read_text())
    assert manifest["step"] == 600 and set(manifest["files"]) == {"model.safetensors", "trainer.pt"}

    assert main(["eval", str(run), "--episodes", "5", "--json"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["step"] == 600 and res["episodes_det"] == 5 and -200 < res["return_det"] < 0
    out = tmp_path / "ep.gif"
    assert main(["render", str(run), "--out", str(out)]) == 0
    assert iio.imread(out).shape[0] > 10

    # resume to a longer budget: continues from step 600 without re-logging earlier rows
    assert main(["train", "--resume", str(run), "--total-steps", "800", "--no-progress"]) == 0
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    assert [int(r["step"]) for r in rows] == [200, 400, 600, 800]


@pytest.mark.parametrize("argv,message", [
    (["--env", "simple_spread_v3", "--env-kwargs", "M=3"], "unknown simple_spread_v3 keyword argument: 'M'"),
    (["--env", "simple_sprd_v3"], "did you mean 'simple_spread_v3'"),
    (["--total-steps", "10"], "less than one iteration"),
    (["--env", "simple_spread_v3", "--env-kwargs", "continuous_actions=True", "--action-masks", "True"],
     "action masks apply to discrete actions only"),
])
def test_cli_errors_say_what_to_do(tmp_path, capsys, argv, message):
    assert main(["train", *argv, "--runs-dir", str(tmp_path), "--no-progress"]) == 2
    assert message in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # nothing written for an invalid config


def test_cli_rejects_unknown_options(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--learning-rate", "0.1", "--runs-dir", str(tmp_path)])
    assert e.value.code != 0
    assert "--learning-rate" in capsys.readouterr().err


def test_resume_of_a_missing_run_is_a_clear_error(tmp_path, capsys):
    assert main(["train", "--resume", str(tmp_path / "nope")]) == 2
    assert "is not a run directory" in capsys.readouterr().err


def test_train_help_lists_every_algorithm_as_one_choice(capsys):
    from fastmarl.cli.train import TRAIN_ALGOS

    assert main(["train", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--algo {mappo,ippo,iql,vdn,qmix}" in out
    assert set(TRAIN_ALGOS) == {"mappo", "ippo", "iql", "vdn", "qmix"}


@pytest.mark.parametrize("algo,own,foreign", [("qmix", "--mixer-embed", "--clip-coef"),
                                              ("mappo", "--clip-coef", "--mixer-embed")])
def test_train_algo_help_shows_that_algorithms_options(capsys, algo, own, foreign):
    with pytest.raises(SystemExit) as e:
        main(["train", "--algo", algo, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert f"fastmarl train --algo {algo}" in out and own in out and foreign not in out


def test_unknown_algo_names_the_choices(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--algo", "qmx"])
    assert e.value.code != 0
    assert "invalid choice: 'qmx'" in capsys.readouterr().err
