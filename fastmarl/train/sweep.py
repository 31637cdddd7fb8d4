"""Grids of training runs as Ray Tune trials: ``run_sweep(SweepConfig(...))`` (``fastmarl sweep``).

Every trial is one ``fastmarl.train`` run (the one loop) writing an ordinary run directory,
``storage/<sweep>/runs/<trial>``; Ray Tune only places trials on the cluster's resources,
restarts a trial whose worker dies and runs the search and early stopping. What a trial does:

- its run directory holds ``sweep_result.json``: it finished; it reports that and trains nothing;
- its run directory holds a valid checkpoint: it resumes from it (``train(resume=...)``, the exact
  resume: on CPU the final result equals an uninterrupted run's);
- otherwise it trains from the start (a run directory left without any checkpoint is renamed
  ``<trial>.interrupted-<time>``, never deleted).

It reports the evaluation metrics (``return_det``, ...) at every evaluation and its final
metrics at the end. A trial that raises writes its traceback to ``storage/<sweep>/errors/<trial>.txt``
and reports ``failed``; it is not retried and the other trials go on. A trial whose worker
process (or node) dies is restarted up to ``max_failures`` times by Tune and resumes as above;
``run_sweep(..., resume=True)`` runs a sweep again from its saved ``sweep.json``, which trains
only what is not finished (a search restores its Tune experiment: the trials it drew).
Everything about the trials is checked before Ray starts: unknown algorithms, envs and config
keys (with the closest name), and an unwritable storage path.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import json
import os
import re
import socket
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from fastmarl.config import ConfigError, check_env_settings, config_class
from fastmarl.config.sweep import SweepConfig, parse_distribution, validate_sweep
from fastmarl.envs.workers import driver_pythonpath, ray_or_error
from fastmarl.train.checkpoint import CheckpointError, atomic_write_text, newest_valid_checkpoint
from fastmarl.train.runner import _close, _make_env, build_learner, train

SWEEP_FILE = "sweep.json"  # storage/<sweep>/sweep.json: the resolved SweepConfig (resume reads it)
RESULT_FILE = "sweep_result.json"  # in a finished trial's run directory: its final metrics
TRIAL_DEFAULTS = {"progress": False, "gif": False}  # a trial prints no progress bar; set gif=True to keep GIFs


@dataclass
class Trial:
    """One training run of the sweep."""

    name: str
    """its run directory's name (storage/<sweep>/runs/<name>)"""
    config: dict[str, Any]
    """the algorithm's config as a dict (``config_class(algo).from_dict``)"""
    params: dict[str, Any] = field(default_factory=dict)
    """its grid point: algo, env, env_kwargs, seed and each grid key (what the summary groups by)"""


def nest(flat: dict[str, Any]) -> dict[str, Any]:
    """``{"ppo.lr": 1e-3, "total_steps": 5}`` -> ``{"ppo": {"lr": 1e-3}, "total_steps": 5}``."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        *parents, leaf = key.split(".")
        d = out
        for p in parents:
            d = d.setdefault(p, {})
            if not isinstance(d, dict):
                raise ConfigError(f"config key {key!r}: {p!r} is not a nested config")
        d[leaf] = value
    return out


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) and k != "env_kwargs" else v
    return out


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", str(text)).strip("-")[:40]


def trial_config(sc: SweepConfig, params: dict[str, Any], name: str, runs_dir: Path) -> dict[str, Any]:
    """The config dict of the trial at grid point ``params``."""
    grid_keys = {k: v for k, v in params.items() if k not in ("algo", "env", "env_kwargs", "seed")}
    d = {"algo": params["algo"], "env": params["env"], "env_kwargs": dict(params["env_kwargs"]),
         "seed": params["seed"], "name": name, "runs_dir": str(runs_dir), **TRIAL_DEFAULTS,
         "threads": max(1, int(sc.cpus_per_trial))}  # torch threads = the CPUs the trial holds
    return _merge(_merge(d, nest(sc.set)), nest(grid_keys))


def expand_grid(sc: SweepConfig, runs_dir: Path) -> list[Trial]:
    """Every trial of a grid sweep, in a fixed order (its names are stable across resumes)."""
    keys = list(sc.grid)
    trials = []
    points = itertools.product(sc.algos, sc.envs, range(len(sc.env_kwargs)), *[sc.grid[k] for k in keys], sc.seeds)
    for i, (algo, env, kw, *rest) in enumerate(points):
        *values, seed = rest
        params = {"algo": algo, "env": env, "env_kwargs": sc.env_kwargs[kw], "seed": seed, **dict(zip(keys, values))}
        extra = "_".join(f"{_slug(k.rsplit('.', 1)[-1])}={_slug(v)}" for k, v in zip(keys, values))
        kw_tag = f"_kw{kw}" if len(sc.env_kwargs) > 1 else ""
        name = f"{i:03d}_{algo}_{_slug(env)}{kw_tag}{'_' + extra if extra else ''}_s{seed}"
        trials.append(Trial(name, trial_config(sc, params, name, runs_dir), params))
    return trials


def check_trial(config: dict[str, Any]) -> None:
    """Build the trial's config, env (one copy, in-process) and learner, as ``train`` would: every
    config error (unknown algorithm, env, key; a bad value) surfaces here, before Ray starts. On
    this machine's CPU: the driver of a cluster need not have the trials' GPU."""
    cfg = config_class(config["algo"]).from_dict(config)
    here = dataclasses.replace(cfg, device="cpu", env_backend="inprocess", env_workers=None)
    check_env_settings(dataclasses.replace(cfg, device="cpu"))  # the env backend's settings too
    env = _make_env(here, 1, cfg.seed)
    try:
        build_learner(here, env.spec, "cpu")
    finally:
        _close(env)


def check_trials(trials: list[Trial]) -> None:
    """``check_trial`` on each distinct config (seeds aside); the error names the trial."""
    seen: set[str] = set()
    for t in trials:
        key = json.dumps({k: v for k, v in t.config.items() if k not in ("seed", "name")}, sort_keys=True, default=str)
        if key in seen:
            continue
        seen.add(key)
        try:
            check_trial(t.config)
        except (ConfigError, KeyError, TypeError, ValueError) as e:
            msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
            raise ConfigError(f"trial {t.name} ({_describe(t.params)}): {msg}") from None


def _describe(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items())


def check_storage(path: str | Path) -> Path:
    """The storage folder, absolute, created and proven writable (a probe file); ConfigError if not."""
    p = Path(path).expanduser().absolute()
    try:
        p.mkdir(parents=True, exist_ok=True)
        probe = p / f".write-probe-{os.getpid()}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise ConfigError(f"storage {str(path)!r} is not writable ({e.strerror or e}); choose a folder this "
                          "user can write (and, on a cluster, that every node reaches)", ("storage",)) from None
    return p


def connect(address: str | None, num_cpus: int | None = None):
    """``ray``, initialised: a local instance (``address`` None) or the cluster at ``address``
    (``auto`` or ``HOST:PORT``; a HOST:PORT that does not answer is a ConfigError in seconds)."""
    ray = ray_or_error()
    runtime_env = {"env_vars": {"PYTHONPATH": driver_pythonpath(), "OMP_NUM_THREADS": "1"}}
    if ray.is_initialized():
        return ray
    if address not in (None, "auto", "local"):
        host, sep, port = str(address).rpartition(":")
        if not sep or not port.isdigit():
            raise ConfigError(f"address {address!r}: expected auto or HOST:PORT (e.g. 127.0.0.1:6379)", ("address",))
        try:
            socket.create_connection((host, int(port)), timeout=5).close()
        except OSError as e:
            raise ConfigError(f"address {address!r}: no Ray cluster answers there ({e.strerror or e}); start one "
                              f"with `ray start --head --port {port}` or check the address", ("address",)) from None
    try:
        ray.init(address=address, num_cpus=num_cpus if address is None else None, include_dashboard=False,
                 log_to_driver=False, runtime_env=runtime_env)
    except ConnectionError as e:
        raise ConfigError(f"address {address!r}: cannot join a Ray cluster ({e}); start one with "
                          "`ray start --head` or leave --address out to run on this machine", ("address",)) from None
    return ray


# -- the trial (runs inside a Ray worker) ------------------------------------------------------

def _has_checkpoint(run_dir: Path) -> bool:
    if not (run_dir / "config.json").is_file():
        return False
    try:
        newest_valid_checkpoint(run_dir / "checkpoints")
    except (CheckpointError, FileNotFoundError, ValueError):
        return False
    return True


def _report_metrics(row: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def run_trial(trial: dict[str, Any], sweep_dir: Path, report, node: str | None = None) -> dict[str, Any]:
    """Train (or resume, or read back) one trial, calling ``report(metrics)`` at each evaluation and
    at the end; returns the final metrics. Raises what training raises. Each start is recorded in
    ``storage/<sweep>/trials/<trial>.json`` (its grid point; per attempt the process id and node)."""
    name, config = trial["name"], trial["config"]
    run_dir = Path(config["runs_dir"]) / name
    record = sweep_dir / "trials" / f"{name}.json"
    record.parent.mkdir(parents=True, exist_ok=True)
    attempts = json.loads(record.read_text()).get("attempts", []) if record.is_file() else []
    attempts.append({"pid": os.getpid(), "node": node, "host": socket.gethostname(), "time": time.time()})
    atomic_write_text(record, json.dumps({"params": trial["params"], "attempts": attempts}, default=str) + "\n")
    done = run_dir / RESULT_FILE
    if done.is_file():
        final = json.loads(done.read_text())
        report(final)
        return final
    cfg = config_class(config["algo"]).from_dict(config)
    torch.set_num_threads(cfg.threads or 1)
    resume = run_dir if _has_checkpoint(run_dir) else None
    if resume is None and run_dir.exists():
        run_dir.rename(run_dir.with_name(f"{name}.interrupted-{time.strftime('%Y%m%d-%H%M%S')}"))

    def callback(info) -> None:
        if info.evaluation is not None:
            report({**_report_metrics(info.evaluation), "step": float(info.step)})

    res = train(None if resume is not None else cfg, resume=resume, callback=callback)
    final = {**_report_metrics(res.metrics), "step": float(res.global_step), "failed": 0.0,
             "resumed": float(resume is not None)}
    atomic_write_text(done, json.dumps({**final, "run_dir": str(res.run_dir)}, indent=2) + "\n")
    report(final)
    return final


def _trainable(config: dict[str, Any]) -> None:
    """Tune's function trainable: one trial (``config["trial"]`` in a grid; drawn keys in a search)."""
    from ray import tune

    sweep_dir = Path(config["sweep_dir"])
    if "trial" in config:
        trial = config["trial"]
    else:  # a search: the drawn values on the sweep's base grid point
        sc = SweepConfig.from_dict(config["sweep"])
        p = config["params"]
        name = f"{p['algo']}_{_slug(p['env'])}_s{p['seed']}_{tune.get_context().get_trial_id()}"
        params = {k: v for k, v in config["params"].items()}
        params["env_kwargs"] = sc.env_kwargs[int(params.pop("env_kwargs_index"))]
        trial = {"name": name, "config": trial_config(sc, params, name, sweep_dir / "runs"), "params": params}
    import ray

    try:
        run_trial(trial, sweep_dir, tune.report, node=ray.get_runtime_context().get_node_id())
    except Exception:  # noqa: BLE001 (reported with its traceback file; the other trials go on)
        err = sweep_dir / "errors" / f"{trial['name']}.txt"
        err.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(err, traceback.format_exc())
        tune.report({"failed": 1.0})


# -- the driver --------------------------------------------------------------------------------

@dataclass
class TrialOutcome:
    """What the sweep's summary shows of one trial."""

    name: str
    params: dict[str, Any]
    status: str
    """finished, failed (error_file has the traceback), stopped (early stopping) or unfinished"""
    metrics: dict[str, float] = field(default_factory=dict)
    run_dir: str | None = None
    error_file: str | None = None


@dataclass
class SweepResult:
    sweep_dir: Path
    trials: list[TrialOutcome]
    config: SweepConfig


def _tune_search(sc: SweepConfig, sweep_dir: Path):
    """(param_space, search_alg) of a search: the grid's lists as choices, the space's distributions."""
    from ray import tune

    def dist(kind: str, args: list[Any]):
        return {"uniform": lambda: tune.uniform(*args), "loguniform": lambda: tune.loguniform(*args),
                "randint": lambda: tune.randint(*args), "choice": lambda: tune.choice(args)}[kind]()

    params: dict[str, Any] = {"algo": tune.choice(sc.algos), "env": tune.choice(sc.envs),
                              "env_kwargs_index": tune.choice(list(range(len(sc.env_kwargs)))),
                              "seed": tune.choice(sc.seeds)}
    params.update({k: tune.choice(v) for k, v in sc.grid.items()})
    params.update({k: dist(*parse_distribution(k, v)) for k, v in sc.space.items()})
    search_alg = None
    if sc.search == "optuna":
        from ray.tune.search.optuna import OptunaSearch
        search_alg = OptunaSearch(seed=min(sc.seeds))
    return {"sweep_dir": str(sweep_dir), "sweep": sc.to_dict(), "params": params}, search_alg


def prepare(sc: SweepConfig, resume: bool = False) -> tuple[Path, list[Trial]]:
    """Validate the sweep and its trials, check the storage, write (or, resuming, read) sweep.json."""
    root = check_storage(sc.storage)
    sweep_dir = root / sc.name
    saved = sweep_dir / SWEEP_FILE
    if resume:
        if not saved.is_file():
            raise ConfigError(f"nothing to resume: {saved} does not exist (run the sweep without --resume first)")
        sc = SweepConfig.from_dict({**json.loads(saved.read_text()), "storage": sc.storage, "address": sc.address})
    validate_sweep(sc)
    if not resume and saved.is_file():
        raise ConfigError(f"sweep {sweep_dir} exists; continue it with `fastmarl sweep --resume --name {sc.name} "
                          f"--storage {sc.storage}` or choose another --name", ("name",))
    trials = expand_grid(sc, sweep_dir / "runs")
    if sc.search == "grid":
        check_trials(trials)
    else:  # a search: the base points (every algo x env x env_kwargs), each grid and space key at a first value
        firsts = {k: v[0] for k, v in sc.grid.items()}
        firsts.update({k: parse_distribution(k, v)[1][0] for k, v in sc.space.items()})
        seen = {}
        for t in trials:
            seen.setdefault((t.params["algo"], t.params["env"], json.dumps(t.params["env_kwargs"])), t)
        check_trials([Trial(t.name, trial_config(sc, {**t.params, **firsts}, t.name, sweep_dir / "runs"), t.params)
                      for t in seen.values()])
    sweep_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(saved, json.dumps(sc.to_dict(), indent=2, default=str) + "\n")
    return sweep_dir, trials


def run_sweep(sc: SweepConfig, resume: bool = False, num_cpus: int | None = None) -> SweepResult:
    """Run the sweep's trials on Ray Tune (see the module docstring); returns every trial's outcome."""
    sweep_dir, trials = prepare(sc, resume)
    sc = SweepConfig.from_dict({**json.loads((sweep_dir / SWEEP_FILE).read_text()), "address": sc.address})
    ray = connect(sc.address, num_cpus)
    from ray import tune

    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")  # a failed trial reports no metric
    resources = {"cpu": sc.cpus_per_trial, "gpu": sc.gpus_per_trial}
    scheduler = None
    if sc.early_stop:
        from ray.tune.schedulers import ASHAScheduler
        scheduler = ASHAScheduler(time_attr="training_iteration", grace_period=sc.grace_evals, reduction_factor=2)
    if sc.search == "grid":
        space, search_alg, samples = ({"sweep_dir": str(sweep_dir), "trial": tune.grid_search(
            [dataclasses.asdict(t) for t in trials])}, None, 1)
    else:
        (space, search_alg), samples = _tune_search(sc, sweep_dir), sc.num_samples
    attempt = len(list((sweep_dir / "tune").glob("attempt-*"))) if (sweep_dir / "tune").exists() else 0
    trainable = tune.with_resources(_trainable, resources)
    last = sweep_dir / "tune" / f"attempt-{attempt - 1}"
    if resume and sc.search != "grid" and tune.Tuner.can_restore(str(last)):
        # a search continues its own experiment: the same drawn trials (finished ones read back), then the rest
        tune.Tuner.restore(str(last), trainable, resume_unfinished=True, resume_errored=True).fit()
        return SweepResult(sweep_dir, collect_outcomes(sweep_dir, None, sc.early_stop), sc)
    tuner = tune.Tuner(
        trainable, param_space=space,
        tune_config=tune.TuneConfig(metric=sc.metric, mode=sc.mode, num_samples=samples, search_alg=search_alg,
                                    scheduler=scheduler, max_concurrent_trials=sc.max_concurrent,
                                    reuse_actors=True),  # a new trial skips the import of torch and fastmarl
        run_config=tune.RunConfig(name=f"attempt-{attempt}", storage_path=str(sweep_dir / "tune"), verbose=0,
                                  failure_config=tune.FailureConfig(max_failures=sc.max_failures)))
    tuner.fit()
    del ray
    return SweepResult(sweep_dir, collect_outcomes(sweep_dir, trials if sc.search == "grid" else None,
                                                   sc.early_stop), sc)


def collect_outcomes(sweep_dir: Path, trials: list[Trial] | None, early_stop: bool = False) -> list[TrialOutcome]:
    """Each trial's outcome, read from its run directory and error file (the files are the truth:
    they survive the driver). ``trials`` None (a search): the trials recorded in ``trials/``."""
    if trials is None:
        trials = [Trial(p.stem, {}, json.loads(p.read_text())["params"])
                  for p in sorted((sweep_dir / "trials").glob("*.json"))]
    out = []
    for t in trials:
        run_dir = sweep_dir / "runs" / t.name
        err = sweep_dir / "errors" / f"{t.name}.txt"
        done = run_dir / RESULT_FILE
        if done.is_file():
            m = json.loads(done.read_text())
            out.append(TrialOutcome(t.name, t.params, "finished", {k: v for k, v in m.items() if k != "run_dir"},
                                    str(run_dir)))
        elif err.is_file():
            out.append(TrialOutcome(t.name, t.params, "failed", {}, str(run_dir) if run_dir.exists() else None,
                                    str(err)))
        else:
            status = "stopped" if early_stop and run_dir.exists() else "unfinished"
            out.append(TrialOutcome(t.name, t.params, status, {}, str(run_dir) if run_dir.exists() else None))
    return out
