"""Envs stepped by workers: ``from_pettingzoo(env_fn, num_envs, backend="process" | "ray")``.

The ``num_envs`` envs are split into ``num_workers`` contiguous shards (``np.array_split``
sizes); each worker (a subprocess on this machine, or a Ray actor anywhere in the cluster)
builds its shard with ``make_shard(num_envs=n, seed=seed, env_offset=offset)`` (for
``from_pettingzoo``: a :class:`~fastmarl.envs.pz_vecenv.PettingZooVecEnv`, whose numpy core
``reset_arrays`` / ``step_arrays`` / ``state_array`` runs without torch in its hot path) and steps it; the driver scatters the actions, gathers the numpy arrays,
concatenates them along the env axis and builds the same :class:`~fastmarl.envs.api.TimeStep`
as the in-process backend. Env ``i`` of the batch is env ``i - offset`` of its shard and is seeded
``sub_seed(seed, i)`` as in-process, so the same seeds give the same trajectories, bitwise for
deterministic envs. With ``need_state`` a worker sends each env's ``state()`` along with every
step, so ``state()`` costs no second round trip.

A worker that dies (its process killed, its Ray actor lost with its node) is replaced: a new
worker builds the shard and resets its envs with a seed derived from the run's seed and the
restart count; in the step where that happens those envs report ``truncated`` with
``final_obs`` the last observation the driver saw (their episodes were cut there), zero
rewards, and the new episodes' first observations. The event is logged (logger
``fastmarl.envs.workers``, warning level), kept in ``env.events`` and put in that step's
``TimeStep.info["env_worker_restarts"]``. After ``max_restarts`` replacements of one worker the
next death is a ``RuntimeError``. An exception inside the env (not a death) is raised in the
driver with the worker's traceback.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
import traceback
import weakref
from multiprocessing.connection import Connection
from typing import Any, Callable

import cloudpickle
import numpy as np
import torch
from torch import Tensor

from fastmarl.envs.api import TimeStep, check_device, require_reset, reset_mask, validate_actions

__all__ = ["BACKENDS", "WorkerVecEnv", "EnvWorkerError", "ray_or_error", "sub_seed", "arrays_to_timestep",
           "actions_to_numpy"]

BACKENDS = ("inprocess", "process", "ray")
RAY_HINT = "pip install 'fastmarl[ray]'"
RESTART_SEED_BASE = 1_000_000  # a replaced worker's envs are reset with sub_seed(seed, this + restart count)
log = logging.getLogger("fastmarl.envs.workers")


class EnvWorkerError(RuntimeError):
    """An env raised inside a worker (the message holds the worker's traceback), or a worker
    could not be started or died more than ``max_restarts`` times."""


class _WorkerDied(Exception):
    """A worker is gone (process exited, Ray actor lost): the driver replaces it."""


def sub_seed(seed: int, index: int) -> int:
    """Seed of env ``index`` in a batch seeded with ``seed``. Derived with numpy's
    SeedSequence so that runs with neighbouring seeds share no env seeds (with
    ``seed + index``, seeds 0 and 1 would share all but one env)."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1)[0])


def actions_to_numpy(actions: dict[str, Tensor]) -> dict[str, np.ndarray]:
    return {g: a.detach().cpu().numpy() for g, a in actions.items()}


def arrays_to_timestep(a: dict[str, Any], device: torch.device) -> TimeStep:
    """The TimeStep of a numpy core's ``step_arrays`` (or ``reset_arrays``) dict: ``obs``,
    ``reward``, ``alive``, ``action_mask`` group -> (E, A_g, ...); ``terminated``, ``truncated``
    (E,); ``final_obs`` (None: equal to ``obs``); ``final_state`` (E, S) or None."""
    def t(bufs):
        return None if bufs is None else {g: torch.from_numpy(np.asarray(b)).to(device) for g, b in bufs.items()}

    obs = t(a["obs"])
    fin_state = a["final_state"]
    return TimeStep(obs=obs, reward=t(a["reward"]), terminated=torch.from_numpy(a["terminated"]).to(device),
                    truncated=torch.from_numpy(a["truncated"]).to(device),
                    final_obs=obs if a["final_obs"] is None else t(a["final_obs"]),
                    final_state=None if fin_state is None else torch.from_numpy(fin_state).to(device),
                    action_mask=t(a["action_mask"]), alive=t(a["alive"]))


def ray_or_error():
    """The ``ray`` module, or an ImportError that says which extra to install."""
    try:
        import ray
    except ImportError:
        raise ImportError(f"this needs Ray, which is not installed: {RAY_HINT}") from None
    return ray


def driver_pythonpath() -> str:
    """This process's own import path (the working directory, an uninstalled checkout, a test's
    folder: the entries outside the Python installation) as a PYTHONPATH for its workers, so that
    they import the same fastmarl and the same env factories."""
    prefixes = tuple({sys.prefix, sys.base_prefix, sys.exec_prefix})
    own = [p for p in sys.path if p and not os.path.abspath(p).startswith(prefixes)]
    return os.pathsep.join(dict.fromkeys([os.getcwd()] + own))


class EnvShard:
    """What runs inside a worker: envs ``offset .. offset + num_envs - 1`` of the batch, built by
    the cloudpickled ``make_shard``."""

    def __init__(self, payload: bytes, num_envs: int, offset: int, seed: int | None):
        make_shard = cloudpickle.loads(payload)
        self.env = make_shard(num_envs=num_envs, seed=seed, env_offset=offset)
        self.env.send_state = True

    def spec(self):
        return self.env.spec

    def pid(self) -> int:
        return os.getpid()

    def reset(self, seed: int | None, idx: list[int] | None) -> dict[str, Any]:
        return self.env.reset_arrays(seed, idx)

    def step(self, acts: dict[str, np.ndarray]) -> dict[str, Any]:
        return self.env.step_arrays(acts)

    def state(self) -> np.ndarray:
        return self.env.state_array()

    def render(self, index: int) -> np.ndarray:
        return self.env.render(index)

    def close(self) -> None:
        self.env.close()


# -- worker handles: the same five calls on a subprocess or a Ray actor ------------------------

def _process_main(fd: int) -> None:
    """A subprocess worker (``python -c`` of this function, see :class:`_ProcessWorker`): builds its
    shard from the first message, then answers (method, args) messages until closed."""
    conn = Connection(fd)
    try:
        shard = EnvShard(*conn.recv())
    except BaseException:  # noqa: BLE001 (the driver raises it with this traceback)
        conn.send(("err", traceback.format_exc()))
        return
    conn.send(("ok", None))
    while True:
        try:
            method, call_args = conn.recv()
        except (EOFError, OSError):
            break
        try:
            out = getattr(shard, method)(*call_args)
        except Exception:  # noqa: BLE001
            conn.send(("err", traceback.format_exc()))
            continue
        conn.send(("ok", out))
        if method == "close":
            break


class _ProcessWorker:
    """A fresh ``python`` subprocess talking over a socket pair. Not multiprocessing's spawn: that
    re-runs the parent's ``__main__`` in the child, which fails for scripts without an
    ``if __name__ == "__main__"`` guard; the shard's factory travels by cloudpickle instead."""

    def __init__(self, args: tuple):
        mine, theirs = socket.socketpair()
        env = dict(os.environ)
        env.setdefault("OMP_NUM_THREADS", "1")
        # the parent's import path (an uninstalled checkout, a test's folder), as multiprocessing would pass it
        env["PYTHONPATH"] = driver_pythonpath()
        code = "import sys; from fastmarl.envs.workers import _process_main; _process_main(int(sys.argv[1]))"
        self.proc = subprocess.Popen([sys.executable, "-c", code, str(theirs.fileno())], pass_fds=(theirs.fileno(),),
                                     env=env, stdin=subprocess.DEVNULL)
        theirs.close()  # the driver holds one end only: a dead worker then reads as EOF
        self.conn = Connection(mine.detach())
        self._pending_death: Exception | None = None
        self.send_raw(args)

    def send_raw(self, obj: Any) -> None:
        try:
            self.conn.send(obj)
        except (BrokenPipeError, ConnectionResetError, OSError) as e:
            self._pending_death = e

    def send(self, method: str, *args) -> None:
        self.send_raw((method, args))

    def recv(self) -> Any:
        if self._pending_death is not None:
            raise _WorkerDied(f"process {self.proc.pid}: pipe closed ({self._pending_death})")
        try:
            status, out = self.conn.recv()
        except (EOFError, ConnectionResetError, OSError) as e:
            try:
                self.proc.wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                pass
            raise _WorkerDied(f"process {self.proc.pid} exited (exit code {self.proc.returncode}; "
                              f"{type(e).__name__})") from None
        if status == "err":
            raise EnvWorkerError(f"an env worker (pid {self.proc.pid}) raised:\n{out}")
        return out

    @property
    def pid(self) -> int:
        return int(self.proc.pid)

    def shutdown(self) -> None:
        try:
            if self.proc.poll() is None:
                self.conn.send(("close", ()))
                if self.conn.poll(5.0):
                    self.conn.recv()
        except (BrokenPipeError, EOFError, OSError):
            pass
        try:
            self.proc.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5.0)
        self.conn.close()


class _RayWorker:
    actor_cls = None  # ray.remote(EnvShard), made on first use (ray imported lazily)

    def __init__(self, args: tuple, options: dict[str, Any]):
        ray = ray_or_error()
        if not ray.is_initialized():
            ray.init(address=os.environ.get("RAY_ADDRESS"), include_dashboard=False, log_to_driver=False,
                     runtime_env={"env_vars": {"PYTHONPATH": driver_pythonpath()}})
        if _RayWorker.actor_cls is None:
            _RayWorker.actor_cls = ray.remote(EnvShard)
        self.ray = ray
        self.actor = _RayWorker.actor_cls.options(**options).remote(*args)
        self.ref = self.actor.pid.remote()  # the first answer: the actor was built (or why not)
        self._pid: int | None = None

    def send(self, method: str, *args) -> None:
        self.ref = getattr(self.actor, method).remote(*args)

    def recv(self) -> Any:
        exc = self.ray.exceptions
        try:
            return self.ray.get(self.ref)
        except (exc.RayActorError, exc.ActorUnavailableError) as e:  # killed, or its node is gone
            raise _WorkerDied(f"Ray actor died ({type(e).__name__}: {str(e)[:3000]})") from None
        except exc.RayTaskError as e:
            raise EnvWorkerError(f"an env worker (Ray actor) raised:\n{e}") from None

    @property
    def pid(self) -> int:
        if self._pid is None:
            self._pid = int(self.ray.get(self.actor.pid.remote()))
        return self._pid

    def shutdown(self) -> None:
        try:
            self.ray.get(self.actor.close.remote(), timeout=10)
        except Exception:  # noqa: BLE001 (already dead: nothing to close)
            pass
        self.ray.kill(self.actor)


# -- the driver ------------------------------------------------------------------------------

class WorkerVecEnv:
    """``num_envs`` envs stepped by ``num_workers`` workers, each holding the shard that
    ``make_shard(num_envs=n, seed=seed, env_offset=offset)`` builds; the API, shapes and seeding
    of :class:`~fastmarl.envs.pz_vecenv.PettingZooVecEnv` (see the module docstring).

    ``backend``: ``"process"`` (fresh ``python`` subprocesses on this machine) or ``"ray"`` (Ray
    actors, started locally unless Ray is running or ``RAY_ADDRESS`` names a cluster). ``ray_options``
    go to ``.options()``; default ``{"num_cpus": 0, "scheduling_strategy": "SPREAD"}``: the actors
    reserve no CPU, so that a run's training and evaluation envs, or a sweep trial that already holds
    its CPUs, never wait for each other, and SPREAD places them across the cluster's nodes (pass
    ``{"num_cpus": 1}`` to reserve a CPU per worker). ``make_shard`` is sent with cloudpickle, so
    lambdas in it work."""

    def __init__(self, make_shard: Callable[..., Any], num_envs: int, device: str | torch.device = "cpu",
                 seed: int | None = None, need_state: bool = True, backend: str = "process",
                 num_workers: int | None = None, max_restarts: int = 3,
                 ray_options: dict[str, Any] | None = None):
        if not isinstance(num_envs, int) or isinstance(num_envs, bool) or num_envs < 1:
            raise ValueError(f"num_envs must be a positive int, got {num_envs!r}")
        if backend not in ("process", "ray"):
            raise ValueError(f"backend must be one of {list(BACKENDS)}, got {backend!r}")
        if num_workers is None:
            num_workers = min(num_envs, os.cpu_count() or 1)
        if not isinstance(num_workers, int) or isinstance(num_workers, bool) or not 1 <= num_workers <= num_envs:
            raise ValueError(f"num_workers must be an integer in [1, num_envs={num_envs}] (each worker steps at "
                             f"least one env), got {num_workers!r}")
        if backend == "ray":
            ray_or_error()
        self.num_envs, self.num_workers, self.backend = num_envs, num_workers, backend
        self.device = check_device(device)
        self.need_state, self.max_restarts = need_state, max_restarts
        self._seed = 0 if seed is None else int(seed)
        sizes = [len(a) for a in np.array_split(np.arange(num_envs), num_workers)]
        self.offsets = [int(x) for x in np.cumsum([0] + sizes[:-1])]
        self.sizes = sizes
        self._payload = cloudpickle.dumps(make_shard)
        self._ray_options = {"num_cpus": 0, "scheduling_strategy": "SPREAD", **(ray_options or {})}
        self.restarts = [0] * num_workers
        self.events: list[dict[str, Any]] = []
        self._closed = False
        self.workers: list[Any] = []
        self._finalizer = weakref.finalize(self, WorkerVecEnv._shutdown_all, self.workers)
        for k in range(num_workers):  # start them all, then wait: they build their envs in parallel
            self.workers.append(self._new_worker(k, seed))
        for k, w in enumerate(self.workers):
            try:
                w.recv()
            except _WorkerDied as e:
                self.close()
                raise EnvWorkerError(f"env worker {k} died while building its envs: {e}") from None
            except EnvWorkerError:
                self.close()
                raise
        self.workers[0].send("spec")
        self.spec = self.workers[0].recv()
        self._last: dict[str, Any] | None = None  # the merged arrays of the last reset/step
        self._parts: list[dict[str, Any] | None] = [None] * num_workers

    def _new_worker(self, k: int, seed: int | None):
        args = (self._payload, self.sizes[k], self.offsets[k], seed)
        if self.backend == "process":
            return _ProcessWorker(args)
        return _RayWorker(args, self._ray_options)

    @staticmethod
    def _shutdown_all(workers: list[Any]) -> None:
        for w in workers:
            try:
                w.shutdown()
            except Exception:  # noqa: BLE001 (closing at exit: nothing left to report to)
                pass

    @property
    def worker_pids(self) -> list[int]:
        """The OS process id of every worker (a Ray actor's process on its node)."""
        return [w.pid for w in self.workers]

    # -- scatter / gather with replacement of dead workers ---------------------------------
    def _call(self, method: str, per_worker: list[tuple]) -> tuple[list[Any], list[int]]:
        """``method(*per_worker[k])`` on every worker; (results, the workers replaced meanwhile)."""
        for w, args in zip(self.workers, per_worker):
            w.send(method, *args)
        out, replaced = [], []
        for k, w in enumerate(self.workers):
            try:
                out.append(w.recv())
            except _WorkerDied as e:
                out.append(self._replace(k, str(e), method, per_worker[k]))
                replaced.append(k)
        return out, replaced

    def _replace(self, k: int, why: str, method: str, args: tuple) -> Any:
        if self.restarts[k] >= self.max_restarts:
            raise EnvWorkerError(f"env worker {k} (envs {self.offsets[k]}..{self.offsets[k] + self.sizes[k] - 1}) "
                                 f"died again after {self.restarts[k]} restarts (max_restarts={self.max_restarts}): "
                                 f"{why}")
        old = self.workers[k]
        try:
            old.shutdown()
        except Exception:  # noqa: BLE001 (it is dead)
            pass
        self.restarts[k] += 1
        seed = sub_seed(self._seed, RESTART_SEED_BASE + sum(self.restarts))
        w = self._new_worker(k, None)
        w.recv()
        self.workers[k] = w
        w.send("reset", seed, None)
        fresh = w.recv()
        event = {"time": time.time(), "worker": k, "envs": [self.offsets[k], self.offsets[k] + self.sizes[k]],
                 "during": method, "error": why, "restart": self.restarts[k], "reset_seed": seed,
                 "backend": self.backend}
        self.events.append(event)
        log.warning("env worker %d (%s backend, envs %d..%d) died during %s: %s; replaced (restart %d of at most %d), "
                    "its envs reset with seed %d", k, self.backend, self.offsets[k],
                    self.offsets[k] + self.sizes[k] - 1, method, why, self.restarts[k], self.max_restarts, seed)
        if method == "step":  # the episodes were cut here: truncated, with the last observation seen
            prev = self._parts[k]
            n = self.sizes[k]
            fresh = {**fresh, "truncated": np.ones(n, bool),
                     "final_obs": prev["obs"] if prev is not None else fresh["obs"],
                     "final_state": None}
            if self.need_state and self.spec.state_dim > 0:
                last = prev.get("state") if prev is not None else None
                fresh["final_state"] = last if last is not None else fresh["state"]
            return fresh
        if method == "reset":
            w.send("reset", *args)
            return w.recv()
        w.send(method, *args)  # state / render: ask the new worker
        return w.recv()

    def _merge(self, parts: list[dict[str, Any]]) -> dict[str, Any]:
        def cat(key: str, fallback: str | None = None):
            if all(p[key] is None for p in parts):
                return None
            rows = [p[key] if p[key] is not None else p[fallback] for p in parts]
            return {g: np.concatenate([r[g] for r in rows]) for g in rows[0]}

        out = {"obs": cat("obs"), "reward": cat("reward"), "alive": cat("alive"), "action_mask": cat("action_mask"),
               "final_obs": cat("final_obs", "obs"),
               "terminated": np.concatenate([p["terminated"] for p in parts]),
               "truncated": np.concatenate([p["truncated"] for p in parts])}
        states = [p["state"] for p in parts]
        out["state"] = np.concatenate(states) if all(s is not None for s in states) else None
        out["final_state"] = None
        if any(p["final_state"] is not None for p in parts):
            if any(p["final_state"] is None and p["state"] is None for p in parts):
                self._state_remote()  # a worker's state() raised: raise it here, as in-process would
            out["final_state"] = np.concatenate([p["final_state"] if p["final_state"] is not None else p["state"]
                                                 for p in parts])
        return out

    def _finish(self, parts: list[dict[str, Any]], replaced: list[int]) -> TimeStep:
        self._parts = parts
        self._last = self._merge(parts)
        ts = arrays_to_timestep(self._last, self.device)
        if replaced:
            ts.info["env_worker_restarts"] = [e for e in self.events[-len(replaced):]]
        return ts

    # -- API -------------------------------------------------------------------------------
    def reset(self, seed: int | None = None, mask: Tensor | None = None) -> TimeStep:
        """Reset all envs, or those where ``mask`` (E,) bool is True; env ``i`` gets seed
        ``sub_seed(seed, i)`` (None: its RNG continues)."""
        self._check_open()
        if seed is not None:
            self._seed = int(seed)
        if mask is None:
            per = [(seed, None)] * self.num_workers
        else:
            m = reset_mask(mask, self.num_envs, torch.device("cpu")).numpy()
            per = [(seed, np.nonzero(m[o:o + n])[0].tolist()) for o, n in zip(self.offsets, self.sizes)]
        parts, replaced = self._call("reset", per)
        self._was_reset = True
        return self._finish(parts, replaced)

    def step(self, actions: dict[str, Tensor]) -> TimeStep:
        """Scatter the actions, step every shard, gather; see the module docstring for dead workers."""
        self._check_open()
        require_reset(self)
        validate_actions(self.spec, actions, self.num_envs, self.device)
        acts = actions_to_numpy(actions)
        per = [({g: a[o:o + n] for g, a in acts.items()},) for o, n in zip(self.offsets, self.sizes)]
        parts, replaced = self._call("step", per)
        return self._finish(parts, replaced)

    def _state_remote(self) -> np.ndarray:
        out, _ = self._call("state", [()] * self.num_workers)
        return np.concatenate(out)

    def state(self) -> Tensor:
        """(E, state_dim) float32: each env's ``state()`` flattened (sent with the last step)."""
        self._check_open()
        if self.spec.state_dim == 0:
            raise RuntimeError(f"{self.spec.env_id}: the PettingZoo env does not implement state(), so this "
                               "env has no global state (spec.state_dim == 0); use a critic over the "
                               "concatenated observations instead")
        st = self._last.get("state") if self._last is not None else None
        return torch.from_numpy(st.copy() if st is not None else self._state_remote()).to(self.device)

    def render(self, env_index: int = 0) -> np.ndarray:
        """RGB array (H, W, 3) uint8 of env ``env_index`` (rendered by its worker)."""
        self._check_open()
        if not 0 <= env_index < self.num_envs:
            raise IndexError(f"env_index {env_index} out of range for num_envs={self.num_envs}")
        k = int(np.searchsorted(self.offsets, env_index, side="right") - 1)
        w = self.workers[k]
        w.send("render", env_index - self.offsets[k])
        try:
            return w.recv()
        except _WorkerDied as e:
            return self._replace(k, str(e), "render", (env_index - self.offsets[k],))

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"{self.spec.env_id}: the env was closed (its {self.backend} workers are stopped)")

    def close(self) -> None:
        """Stop the workers (idempotent)."""
        self._closed = True
        self._finalizer()
