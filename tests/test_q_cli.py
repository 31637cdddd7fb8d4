"""IQL / VDN / QMIX through the same command line and Python API as PPO: train,
eval and render a tiny QMIX run, and the errors that guide users."""

import csv
import json

import imageio.v3 as iio
import pytest
from test_ppo_toyenv import one_thread  # noqa: F401 (autouse fixture)

import fastmarl
from fastmarl.cli import main
from fastmarl.config import ALGORITHMS, ConfigError, QConfig, TrainConfig, config_class
from fastmarl.train.loop import TrainResult
from fastmarl.train.rundir import RunDir

TINY = ["--env-kwargs", "N=2", "--total-steps", "2e3", "--num-envs", "8", "--batch-size", "8", "--buffer-size",
        "64", "--learning-starts", "8", "--update-interval", "50", "--hidden-size", "16", "--log-interval", "1000",
        "--eval-episodes", "3", "--threads", "1"]


def test_every_value_based_algorithm_is_configured_by_qconfig():
    q_family = {name for name, a in ALGORITHMS.items() if a.family == "q"}
    assert q_family == {"iql", "vdn", "qmix"}
    assert all(config_class(name) is QConfig and ALGORITHMS[name].off_policy for name in q_family)
    assert config_class("mappo") is TrainConfig and not ALGORITHMS["mappo"].off_policy
    with pytest.raises(ConfigError, match=r"unknown algo: 'qmx' \(did you mean 'qmix'\?\)"):
        config_class("qmx")


@pytest.mark.slow
def test_tiny_qmix_cli_run_then_eval_and_render(tmp_path, capsys):
    argv = ["train", "--algo", "qmix", "--env", "simple_spread_v3", *TINY, "--runs-dir", str(tmp_path),
            "--name", "q"]
    assert main(argv) == 0
    assert "final eval return per agent: deterministic" in capsys.readouterr().out
    run = tmp_path / "q"
    saved = json.loads((run / "config.json").read_text())
    assert saved["algo"] == "qmix" and saved["total_steps"] == 2000 and saved["env_kwargs"] == {"N": 2}
    cfg = RunDir.open(run).read_config()
    assert isinstance(cfg, QConfig) and cfg.algo == "qmix"
    assert (run / "meta.json").is_file() and (run / "learning_curve.png").is_file()
    assert [int(r["step"]) for r in csv.DictReader(open(run / "metrics.csv"))] == [1000, 2000]
    assert [int(r["step"]) for r in csv.DictReader(open(run / "eval.csv"))] == [2000]
    manifest = json.loads(next((run / "checkpoints").glob("step_*/manifest.json")).read_text())
    assert manifest["step"] == 2000 and manifest["algo"] == "qmix"

    assert main(["eval", str(run), "--episodes", "4", "--json"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["step"] == 2000 and res["episodes_det"] == 4 and res["return_det"] < 0 and "return_stoch" in res
    out = tmp_path / "ep.gif"
    assert main(["render", str(run), "--out", str(out)]) == 0
    assert iio.imread(out).shape[0] > 10

    # resume to a longer budget: continues from step 2000, logs only the new rows
    assert main(["train", "--resume", str(run), "--total-steps", "4e3"]) == 0
    assert "(4,000 env steps)" in capsys.readouterr().out
    assert [int(r["step"]) for r in csv.DictReader(open(run / "metrics.csv"))] == [1000, 2000, 3000, 4000]
    assert [int(r["step"]) for r in csv.DictReader(open(run / "eval.csv"))] == [2000, 4000]
    assert json.loads((run / "config.json").read_text())["total_steps"] == 4000
    with pytest.raises(ConfigError, match="cannot change lr"):
        fastmarl.train(QConfig(**{**cfg.to_dict(), "lr": 1.0}), resume=run)


def test_python_api_dispatches_on_the_config_type():
    res = fastmarl.train(QConfig(algo="vdn", env_kwargs={"N": 2}, total_steps=400, num_envs=8, batch_size=8,
                                 buffer_size=32, learning_starts=8, update_interval=50, hidden_size=16,
                                 log_interval=200, eval_episodes=2, threads=1))
    assert isinstance(res, TrainResult) and res.run_dir is None and res.metrics["steps"] == 400
    with pytest.raises(ConfigError, match="QConfig"):
        fastmarl.train(TrainConfig(algo="qmix"))


@pytest.mark.parametrize("argv,message", [
    (["--algo", "vdn", "--env-kwargs", "continuous_actions=True"], "vdn needs discrete actions"),
    (["--algo", "qmix", "--total-steps", "0"], "total_steps must be an integer >= 1"),
])
def test_q_cli_errors_say_what_to_do(tmp_path, capsys, argv, message):
    assert main(["train", *argv, "--runs-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert message in err and ("ippo/mappo" in err or "continuous" not in message)
    assert not list(tmp_path.iterdir())  # nothing written for an invalid config


def test_q_cli_rejects_unknown_and_ppo_only_options(tmp_path, capsys):
    for flag in ("--learning-rate", "--num-steps"):  # a typo, and a PPO option QMIX does not have
        with pytest.raises(SystemExit) as e:
            main(["train", "--algo", "qmix", flag, "3", "--runs-dir", str(tmp_path)])
        assert e.value.code != 0
        assert flag in capsys.readouterr().err
