"""``fastmarl sweep``: the grid, its checks before any trial starts, a local sweep with a failing
trial and a resume, and a genuine two-node Ray cluster on loopback where a trial's worker process
is killed mid-trial and the trial is restored to the same final result as an uninterrupted run."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fastmarl.config import ConfigError, config_class
from fastmarl.config.sweep import SweepConfig
from fastmarl.train import train
from fastmarl.train.sweep import RESULT_FILE, check_storage, connect, expand_grid, prepare

pytest.importorskip("ray")
pytest.importorskip("ray.tune")

TESTS = Path(__file__).parent
SMALL = {"total_steps": 1200, "num_envs": 8, "eval_interval": 600, "eval_episodes": 4, "checkpoint_interval": 200,
         "tensorboard": False, "ppo.num_minibatches": 2}


def test_the_grid_is_the_product_of_its_axes_with_nested_overrides(tmp_path):
    sc = SweepConfig(algos=["mappo", "ippo"], envs=["simple_spread_v3"], env_kwargs=[{"N": 2}, {"N": 3}],
                     seeds=[0, 1], grid={"ppo.lr": [1e-3, 3e-3]}, set={"total_steps": 1000, "ppo.num_epochs": 2})
    trials = expand_grid(sc, tmp_path)
    assert len(trials) == 2 * 2 * 2 * 2
    assert len({t.name for t in trials}) == 16
    t = trials[0]
    assert t.name == "000_mappo_simple_spread_v3_kw0_lr=0.001_s0"
    assert t.params == {"algo": "mappo", "env": "simple_spread_v3", "env_kwargs": {"N": 2}, "seed": 0, "ppo.lr": 1e-3}
    cfg = config_class("mappo").from_dict(t.config)
    assert (cfg.ppo.lr, cfg.ppo.num_epochs, cfg.total_steps, cfg.env_kwargs) == (1e-3, 2, 1000, {"N": 2})
    assert (cfg.runs_dir, cfg.name, cfg.progress, cfg.threads) == (str(tmp_path), t.name, False, 1)
    assert {(x.params["algo"], x.params["env_kwargs"]["N"], x.params["ppo.lr"], x.params["seed"]) for x in trials} \
        == {(a, n, lr, s) for a in ("mappo", "ippo") for n in (2, 3) for lr in (1e-3, 3e-3) for s in (0, 1)}
    assert [x.name for x in expand_grid(sc, tmp_path)] == [x.name for x in trials]  # stable: resume finds them


@pytest.mark.parametrize("kw, message", [
    (dict(algos=["mapo"]), "did you mean 'mappo'"),
    (dict(envs=["simple_sprad_v3"]), "simple_spread_v3"),
    (dict(grid={"ppo.lrr": [1e-3]}), "did you mean 'lr'"),
    (dict(set={"total_step": 100}), "did you mean 'total_steps'"),
    (dict(set={"ppo.num_epochs": 0}), "num_epochs"),
    (dict(grid={"seed": [1, 2]}), "'seed' is set by the sweep itself"),
    (dict(space={"ppo.lr": "loguniform(1e-2, 1e-4)"}, search="optuna"), "two numbers low < high"),
    (dict(space={"ppo.lr": "lognormal(0, 1)"}, search="optuna"), "expected one of uniform(...)"),
    (dict(space={"ppo.lrr": "loguniform(1e-4, 1e-2)"}, search="optuna"), "did you mean 'lr'"),
])
def test_a_bad_grid_is_refused_before_anything_is_written(tmp_path, kw, message):
    sc = SweepConfig(**{"set": dict(SMALL), "storage": str(tmp_path), "name": "bad", **kw})
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        prepare(sc)
    assert not (tmp_path / "bad").exists()


def test_unwritable_storage_is_refused(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(ConfigError, match="storage .* is not writable"):
        check_storage(blocker / "sweeps")
    sc = SweepConfig(set=dict(SMALL), storage=str(blocker / "sweeps"))
    with pytest.raises(ConfigError, match="is not writable"):
        prepare(sc)


def test_an_unreachable_address_is_a_clear_error_in_seconds():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once closed
    t = time.time()
    with pytest.raises(ConfigError, match=f"address '127.0.0.1:{port}': no Ray cluster answers there"):
        connect(f"127.0.0.1:{port}")
    assert time.time() - t < 10
    with pytest.raises(ConfigError, match="expected auto or HOST:PORT"):
        connect("nowhere")


def test_resume_needs_an_existing_sweep_and_a_second_start_is_refused(tmp_path):
    sc = SweepConfig(set=dict(SMALL), storage=str(tmp_path), name="s")
    with pytest.raises(ConfigError, match="nothing to resume"):
        prepare(sc, resume=True)
    prepare(sc)
    assert json.loads((tmp_path / "s" / "sweep.json").read_text())["set"] == SMALL
    with pytest.raises(ConfigError, match="exists; continue it with `fastmarl sweep --resume"):
        prepare(sc)


def _sweep(args: list[str], env: dict | None = None, **kw) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "fastmarl.cli", "sweep", *args]
    full = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS.parent), str(TESTS)]), "OMP_NUM_THREADS": "1",
            "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", **(env or {})}
    return subprocess.run(cmd, env=full, capture_output=True, text=True, timeout=400, cwd=TESTS.parent, **kw)


def _small_set() -> list[str]:
    return [f"{k}={v}" for k, v in SMALL.items()]


@pytest.mark.slow
def test_local_sweep_reports_a_failing_trial_and_the_others_go_on(tmp_path):
    # two trials on pz:sweep_envs: kwargs set 0 makes the env raise after 30 steps of training, set 1 is plain
    toml = tmp_path / "grid.toml"
    toml.write_text('algos = ["ippo"]\nenvs = ["pz:sweep_envs"]\nseeds = [0]\nname = "local"\n'
                    '[[env_kwargs]]\nfail_after = 30\n[[env_kwargs]]\nmax_cycles = 25\n')
    res = _sweep(["--config", str(toml), "--storage", str(tmp_path), "--num-cpus", "2", "--set", *_small_set()])
    assert res.returncode == 1, res.stderr[-3000:]  # 1: a trial failed (the others went on)
    out = tmp_path / "local"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"] == {"failed": 1, "finished": 1}
    failed, done = sorted(summary["trials"], key=lambda r: r["status"])
    assert failed["trial"].startswith("000_ippo_pz-sweep_envs_kw0") and failed["status"] == "failed"
    assert "sweep_envs: failing on purpose after 30 steps" in Path(failed["error_file"]).read_text()
    assert f"trial {failed['trial']} failed; traceback: {failed['error_file']}" in res.stderr
    assert done["status"] == "finished" and done["steps"] == 1200 and done["return_det"] < 0
    run = Path(done["run_dir"])
    for f in ("config.json", "metrics.csv", "eval.csv", "meta.json", RESULT_FILE):
        assert (run / f).is_file(), f  # an ordinary run directory
    assert "| grid point | runs | IQM return_det |" in res.stdout and done["trial"] in res.stdout
    assert (out / "summary.md").read_text() in res.stdout
    # (--resume after a kill -9 of the driver: the two-node test below)


# -- a genuine two-node cluster on loopback ------------------------------------------------------

@pytest.fixture
def two_nodes():
    from ray_cluster import LocalCluster

    cluster = LocalCluster()
    try:
        cluster.start_head(num_cpus=1, resources={"head_node": 1})
        cluster.add_node(num_cpus=1, resources={"second_node": 1})  # its own CPU, resource and object store
        yield cluster
    finally:
        cluster.stop()  # always, and only this cluster's processes (by PID)
        assert cluster.pids() == []


def _wait(cond, timeout: float, proc: subprocess.Popen, what: str) -> None:
    deadline = time.time() + timeout
    while not cond():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the sweep ended (rc {proc.returncode}) before {what}:\n{err[-3000:]}")
        if time.time() > deadline:
            proc.kill()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


LAUNCHED: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def _stop_launched_drivers():
    yield
    while LAUNCHED:  # a failed test leaves no sweep driver behind
        p = LAUNCHED.pop()
        if p.poll() is None:
            p.kill()
            p.communicate()


def _popen_sweep(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS.parent), str(TESTS)]), "OMP_NUM_THREADS": "1",
           "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    proc = subprocess.Popen([sys.executable, "-m", "fastmarl.cli", "sweep", *args], env=env, cwd=TESTS.parent,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    LAUNCHED.append(proc)
    return proc


def _attempts(sweep: Path, trial: str) -> list[dict]:
    p = sweep / "trials" / f"{trial}.json"
    try:
        return json.loads(p.read_text())["attempts"] if p.is_file() else []
    except (json.JSONDecodeError, KeyError):
        return []  # being replaced right now


def _eval_rows(run: Path) -> list[str]:
    return [line.rsplit(",", 1)[0] for line in (run / "eval.csv").read_text().splitlines()]  # without time


@pytest.mark.slow
def test_two_node_sweep_survives_a_killed_worker_and_a_killed_driver(two_nodes, tmp_path):
    base = ["--address", two_nodes.address, "--storage", str(tmp_path), "--seeds", "0", "1", "--cpus-per-trial", "1",
            "--set", "total_steps=4000", "num_envs=8", "eval_interval=2000", "eval_episodes=4",
            "checkpoint_interval=200", "tensorboard=False", "ppo.num_minibatches=2"]
    sweep = tmp_path / "kill"
    t0, t1 = "000_mappo_simple_spread_v3_s0", "001_mappo_simple_spread_v3_s1"
    proc = _popen_sweep([*base, "--name", "kill"])
    # kill trial 0's worker process by its PID once it has checkpointed, before it has finished
    _wait(lambda: _attempts(sweep, t0) and (sweep / "runs" / t0 / "checkpoints" / "latest").is_file(), 240, proc,
          "trial 0's first checkpoint")
    victim = _attempts(sweep, t0)[0]["pid"]
    assert not (sweep / "runs" / t0 / RESULT_FILE).exists()
    os.kill(victim, signal.SIGKILL)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    summary = json.loads((sweep / "summary.json").read_text())
    assert summary["counts"] == {"finished": 2}
    rows = {r["trial"]: r for r in summary["trials"]}
    assert rows[t0]["resumed"] and not rows[t1]["resumed"]
    first, second = _attempts(sweep, t0)[:2]
    assert first["pid"] == victim and second["pid"] != victim  # Tune restarted it in a new worker
    nodes = {a["node"] for t in (t0, t1) for a in _attempts(sweep, t)}
    assert len(nodes) == 2  # the trials ran on both nodes (one CPU each)
    # the restored trial's final result equals an uninterrupted run of the same config
    cfg = config_class("mappo").from_dict({**json.loads((sweep / "runs" / t0 / "config.json").read_text()),
                                           "runs_dir": str(tmp_path / "ref"), "name": "ref"})
    ref = train(cfg)
    assert rows[t0]["return_det"] == ref.metrics["return_det"] and rows[t0]["steps"] == ref.global_step == 4000
    assert _eval_rows(sweep / "runs" / t0) == _eval_rows(ref.run_dir)
    assert _eval_rows(sweep / "runs" / t0)[1:] != _eval_rows(sweep / "runs" / t1)[1:]  # seeds differ: not vacuous

    # the driver killed with -9 mid-sweep (one trial at a time): --resume trains only what is not finished
    drv = tmp_path / "drv"
    proc = _popen_sweep([*base, "--name", "drv", "--max-concurrent", "1"])
    _wait(lambda: (drv / "runs" / t0 / RESULT_FILE).is_file() and (drv / "runs" / t1 / "checkpoints" / "latest")
          .is_file(), 240, proc, "trial 0's end and trial 1's first checkpoint")
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    stamp = (drv / "runs" / t0 / "metrics.csv").stat().st_mtime_ns
    deadline = time.time() + 60  # Ray ends the dead driver's trials
    while time.time() < deadline and any(os.path.exists(f"/proc/{a['pid']}") for a in _attempts(drv, t1)):
        time.sleep(0.2)
    proc = _popen_sweep(["--resume", "--name", "drv", "--storage", str(tmp_path), "--address", two_nodes.address])
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    summary = json.loads((drv / "summary.json").read_text())
    assert summary["counts"] == {"finished": 2}
    assert (drv / "runs" / t0 / "metrics.csv").stat().st_mtime_ns == stamp  # not rerun
    rows = {r["trial"]: r for r in summary["trials"]}
    assert rows[t1]["resumed"]
    assert rows[t0]["return_det"] == ref.metrics["return_det"]  # the same config and seed as the first sweep's
    assert _eval_rows(drv / "runs" / t1) == _eval_rows(sweep / "runs" / t1)  # resumed exactly


@pytest.mark.slow
def test_optuna_search_with_early_stopping_draws_from_the_space(tmp_path):
    res = _sweep(["--search", "optuna", "--space", "ppo.lr=loguniform(1e-4,1e-2)", "--grid", "ppo.num_epochs=2,4",
                  "--num-samples", "3", "--early-stop", "--seeds", "0", "--storage", str(tmp_path), "--name", "opt",
                  "--num-cpus", "2", "--set", "total_steps=1200", "num_envs=8", "eval_interval=400", "eval_episodes=4",
                  "tensorboard=False", "ppo.num_minibatches=2"])
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads((tmp_path / "opt" / "summary.json").read_text())
    assert len(summary["trials"]) == 3 and set(summary["counts"]) <= {"finished", "stopped"}
    assert summary["counts"].get("finished", 0) >= 1
    lrs = set()
    for row in summary["trials"]:
        cfg = json.loads((Path(row["run_dir"]) / "config.json").read_text())
        assert 1e-4 <= cfg["ppo"]["lr"] <= 1e-2 and cfg["ppo"]["num_epochs"] in (2, 4)
        lrs.add(cfg["ppo"]["lr"])
        if row["status"] == "finished":
            assert row["steps"] == 1200
    assert len(lrs) == 3  # drawn, not a grid
    assert "A new study created" in res.stderr  # optuna ran the search


def test_the_grid_check_runs_on_the_drivers_cpu(tmp_path):
    # the trials may ask for a GPU that the driver (a cluster's head) lacks: checked on the CPU here
    sweep_dir, trials = prepare(SweepConfig(set={**SMALL, "device": "cuda:0"}, gpus_per_trial=0.5,
                                            storage=str(tmp_path), name="gpu"))
    assert config_class("mappo").from_dict(trials[0].config).device == "cuda:0"
    assert (sweep_dir / "sweep.json").is_file()
