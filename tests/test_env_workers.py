"""from_pettingzoo(..., backend="process" | "ray"): the same trajectories as in-process, bitwise;
dead workers replaced with their envs reset and the event logged; training through the CLI."""

import logging
import math
import os
import signal
import sys
import time

import numpy as np
import pytest
import torch

from fastmarl.cli.train import train_main
from fastmarl.config import ConfigError, PPOConfig, TrainConfig
from fastmarl.envs.pz_vecenv import from_pettingzoo
from fastmarl.envs.workers import EnvWorkerError, WorkerVecEnv, driver_pythonpath
from fastmarl.train import train

mpe2 = pytest.importorskip("mpe2")
from mpe2 import simple_spread_v3  # noqa: E402

FIELDS = ("obs", "reward", "terminated", "truncated", "final_obs", "final_state", "action_mask", "alive")


def spread(max_cycles=7):
    return simple_spread_v3.parallel_env(N=3, max_cycles=max_cycles)


def spread_rgb():
    return simple_spread_v3.parallel_env(N=3, max_cycles=7, render_mode="rgb_array")


def pursuit():
    from pettingzoo.sisl import pursuit_v5
    return pursuit_v5.parallel_env(max_cycles=9, n_evaders=4, n_pursuers=4)


def _equal(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)


def _trajectory(env, steps: int, seed: int, resets_at: tuple[int, ...] = ()):
    """Every TimeStep and state of ``steps`` random steps (the same actions for every backend),
    with partial resets of every other env at the steps in ``resets_at``."""
    gen = torch.Generator().manual_seed(seed)
    out = [env.reset(seed=seed)]
    for t in range(steps):
        acts = {g: torch.randint(0, s.action_dim, (env.num_envs, s.num_agents), generator=gen)
                for g, s in env.spec.groups.items()}
        ts = env.step(acts)
        out.append(ts)
        if env.spec.state_dim:
            out.append(env.state())
        if t in resets_at:
            out.append(env.reset(seed=seed + t, mask=torch.arange(env.num_envs) % 2 == 0))
    return out


def _same(ref, got):
    assert len(ref) == len(got)
    for i, (a, b) in enumerate(zip(ref, got)):
        if isinstance(a, torch.Tensor):
            assert torch.equal(a, b), f"state() differs at entry {i}"
            continue
        for f in FIELDS:
            assert _equal(getattr(a, f), getattr(b, f)), f"{f} differs at entry {i}"


@pytest.mark.parametrize("make, E, K, need_state", [pytest.param(spread_rgb, 5, 2, True, marks=pytest.mark.slow), (spread, 4, 1, False),
                                                   pytest.param(pursuit, 3, 2, True, marks=pytest.mark.slow)])
def test_process_backend_steps_the_inprocess_trajectories_bitwise(make, E, K, need_state):
    ref_env = from_pettingzoo(make, E, seed=11, need_state=need_state)
    ref = _trajectory(ref_env, 20, seed=11, resets_at=(4,))
    env = from_pettingzoo(make, E, seed=11, need_state=need_state, backend="process", num_workers=K)
    try:
        assert env.spec == ref_env.spec
        assert env.sizes == [len(r) for r in torch.arange(E).tensor_split(K)] and sum(env.sizes) == E
        got = _trajectory(env, 20, seed=11, resets_at=(4,))
        assert any(bool(ts.done.any()) for ts in ref if not isinstance(ts, torch.Tensor))  # auto-resets were compared
        _same(ref, got)
        if make is spread_rgb:  # each frame comes from the worker that holds the env
            frames = [env.render(i) for i in range(E)]
            for i, frame in enumerate(frames):
                assert frame.dtype == np.uint8 and np.array_equal(frame, ref_env.render(i)), i
            assert not np.array_equal(frames[0], frames[E - 1])  # the envs differ: the index was routed
        assert len(set(env.worker_pids)) == K and os.getpid() not in env.worker_pids
    finally:
        env.close()
    with pytest.raises(RuntimeError, match="closed"):
        env.state()


def _kill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    time.sleep(0.3)


@pytest.mark.slow
def test_a_killed_process_worker_is_replaced_its_envs_reset_and_the_event_logged(caplog):
    E = 4
    env = from_pettingzoo(spread, E, seed=3, backend="process", num_workers=2, max_restarts=1)
    try:
        ts = env.reset(seed=3)
        acts = {g: torch.zeros(E, s.num_agents, dtype=torch.long) for g, s in env.spec.groups.items()}
        before = env.step(acts)
        old = env.worker_pids
        _kill(old[1])
        with caplog.at_level(logging.WARNING, logger="fastmarl.envs.workers"):
            ts = env.step(acts)
        # envs 2, 3 (worker 1) were cut: truncated, final_obs = the last observation seen, new episodes begin
        assert ts.truncated.tolist() == [False, False, True, True] and not ts.terminated.any()
        assert torch.equal(ts.final_obs["agent"][2:], before.obs["agent"][2:])
        assert torch.equal(ts.reward["agent"][2:], torch.zeros(2, 3))
        assert env.worker_pids[0] == old[0] and env.worker_pids[1] != old[1]
        (event,) = env.events
        assert event["worker"] == 1 and event["envs"] == [2, 4] and event["during"] == "step"
        assert ts.info["env_worker_restarts"] == [event]
        assert "env worker 1 (process backend, envs 2..3) died during step" in caplog.text
        # the new episodes start from the replacement's reset: the obs of a fresh env seeded like it
        fresh = from_pettingzoo(spread, E, seed=None)
        expect = fresh.reset(seed=event["reset_seed"]).obs["agent"][2:]
        assert torch.equal(ts.obs["agent"][2:], expect)
        env.step(acts)  # it goes on
        _kill(env.worker_pids[1])
        with pytest.raises(EnvWorkerError, match="died again after 1 restarts"):
            env.step(acts)
    finally:
        env.close()


class _Broken:
    """A ParallelEnv whose step raises: an error inside the env, not a dead worker."""

    def __new__(cls):
        env = spread()

        def step(actions):
            raise ZeroDivisionError("the env's own bug")
        env.step = step
        return env


def test_an_env_error_inside_a_worker_is_raised_with_its_traceback():
    env = from_pettingzoo(_Broken, 2, seed=0, backend="process", num_workers=1)
    try:
        env.reset(seed=0)
        with pytest.raises(EnvWorkerError, match="ZeroDivisionError: the env's own bug") as info:
            env.step({"agent": torch.zeros(2, 3, dtype=torch.long)})
        assert "Traceback" in str(info.value) and not env.events
    finally:
        env.close()


def test_backend_arguments_are_checked():
    with pytest.raises(ValueError, match="backend must be one of"):
        from_pettingzoo(spread, 2, backend="threads")
    with pytest.raises(ValueError, match=r"num_workers must be an integer in \[1, num_envs=2\]"):
        from_pettingzoo(spread, 2, backend="process", num_workers=3)
    with pytest.raises(ValueError, match="backend='inprocess' has no workers"):
        from_pettingzoo(spread, 2, num_workers=2)


def test_ray_backend_without_ray_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    with pytest.raises(ImportError, match=r"pip install 'fastmarl\[ray\]'"):
        from_pettingzoo(spread, 2, backend="ray", num_workers=1)


def _cfg(tmp_path, **kw) -> TrainConfig:
    base = dict(algo="mappo", env="pz:mpe2.simple_spread_v3", env_kwargs={"N": 3, "max_cycles": 25}, num_envs=6,
                total_steps=6 * 25 * 4, seed=5, runs_dir=str(tmp_path), eval_interval=0, eval_episodes=4,
                gif=False, tensorboard=False, progress=False, threads=1, ppo=PPOConfig(num_minibatches=2))
    base.update(kw)
    return TrainConfig(**base)


@pytest.mark.slow
def test_training_with_process_workers_equals_inprocess_training(tmp_path, capsys):
    ref = train(_cfg(tmp_path, name="inproc"))
    code = train_main(["--algo", "mappo", "--env", "pz:mpe2.simple_spread_v3", "--env-kwargs", "N=3", "max_cycles=25",
                       "--num-envs", "6", "--total-steps", str(6 * 25 * 4), "--seed", "5", "--runs-dir", str(tmp_path),
                       "--name", "proc", "--eval-interval", "0", "--eval-episodes", "4", "--no-gif", "--no-tensorboard",
                       "--no-progress", "--threads", "1", "--num-minibatches", "2",
                       "--env-backend", "process", "--env-workers", "2"])
    assert code == 0, capsys.readouterr().err
    from fastmarl.train.rundir import RunDir
    run = RunDir.open(tmp_path / "proc")
    cfg = run.read_config()
    assert (cfg.env_backend, cfg.env_workers) == ("process", 2)
    # its log rows (returns and losses) and final evaluation equal the in-process run's
    assert len(ref.history) == 4
    with open(run.path / "metrics.csv") as f, open(ref.run_dir / "metrics.csv") as g:
        cols = f.readline().strip().split(",")
        rows = [dict(zip(cols, line.strip().split(","))) for line in f]
        g.readline()
        ref_rows = [dict(zip(cols, line.strip().split(","))) for line in g]
    assert len(rows) == 4
    for k in ("return", "policy_loss/agent", "value_loss/agent", "entropy/agent"):
        assert [r[k] for r in rows] == [r[k] for r in ref_rows], k
    with open(run.path / "eval.csv") as f, open(ref.run_dir / "eval.csv") as g:  # all but the time column
        a, b = ([line.rsplit(",", 1)[0] for line in h.read().splitlines()] for h in (f, g))
        assert a[0].startswith("step,return_det") and a[0].endswith("episodes_stoch") and len(a) == 2
        assert a == b


@pytest.mark.parametrize("kw, message", [
    (dict(env="simple_spread_v3", env_kwargs={}, env_backend="process"), "batched on the torch device already"),
    (dict(env_workers=2), "env_workers sets the workers of env_backend 'process' or 'ray'"),
    (dict(env_backend="process", env_workers=7), "env_workers=7 is more than num_envs=6"),
    (dict(env_backend="process", env_workers=0), "env_workers must be an integer >= 1"),
    (dict(env_backend="spawn"), "env_backend must be one of"),
])
def test_bad_env_backend_settings_are_config_errors(tmp_path, kw, message):
    with pytest.raises(ConfigError, match=message):
        train(_cfg(tmp_path, name="bad", **kw))
    assert not (tmp_path / "bad").exists()


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"PYTHONPATH": driver_pythonpath()}})  # this test module's factories
    yield ray
    if started:
        ray.shutdown()


@pytest.mark.slow
def test_ray_backend_same_trajectories_and_a_killed_actor_is_replaced(local_ray, caplog):
    E = 4
    ref = _trajectory(from_pettingzoo(spread, E, seed=2), 12, seed=2, resets_at=(3,))
    env = from_pettingzoo(spread, E, seed=2, backend="ray", num_workers=2)
    assert isinstance(env, WorkerVecEnv)
    try:
        _same(ref, _trajectory(env, 12, seed=2, resets_at=(3,)))
        old = env.worker_pids
        _kill(old[0])
        acts = {"agent": torch.zeros(E, 3, dtype=torch.long)}
        with caplog.at_level(logging.WARNING, logger="fastmarl.envs.workers"):
            ts = env.step(acts)
        assert ts.truncated.tolist() == [True, True, False, False]
        assert env.worker_pids[0] != old[0] and env.events[0]["backend"] == "ray"
        assert "env worker 0 (ray backend, envs 0..1) died during step" in caplog.text
        env.step(acts)
    finally:
        env.close()


def _worker_children() -> list[int]:
    from ray_cluster import _procs
    return [pid for pid, (ppid, cmd) in _procs().items()
            if ppid == os.getpid() and "from fastmarl.envs.workers import _process_main" in cmd]


@pytest.mark.slow
def test_training_goes_on_when_an_env_worker_is_killed(tmp_path, caplog):
    killed = []

    def kill_one(info):
        if info.iteration == 2 and not killed:
            pids = _worker_children()
            assert len(pids) == 2  # the training env's workers (the evaluation env comes at the end)
            killed.append(pids[0])
            _kill(pids[0])

    with caplog.at_level(logging.WARNING, logger="fastmarl.envs.workers"):
        res = train(_cfg(tmp_path, name="kill", env_backend="process", env_workers=2), callback=kill_one)
    assert killed and res.global_step == 6 * 25 * 4 and math.isfinite(res.final_eval["return_det"])
    assert "died during step" in caplog.text and "replaced (restart 1 of at most 3)" in caplog.text
    assert killed[0] not in _worker_children()
    assert _worker_children() == []  # train() stopped its workers


@pytest.mark.slow
def test_training_with_ray_workers_equals_inprocess_training(local_ray, tmp_path):
    # the training env's and the evaluation env's actors (2 + 2) coexist on a 2-CPU Ray: they reserve no CPU
    ref = train(_cfg(tmp_path, name="inproc", total_steps=6 * 25 * 2))
    res = train(_cfg(tmp_path, name="ray", total_steps=6 * 25 * 2, env_backend="ray", env_workers=2))
    assert len(res.history) == len(ref.history) == 2
    for a, b in zip(ref.history, res.history):
        for k in ("return", "policy_loss/agent", "value_loss/agent"):
            assert a[k] == b[k], k
    assert res.final_eval["return_det"] == ref.final_eval["return_det"]
