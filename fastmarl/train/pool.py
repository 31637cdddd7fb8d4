"""The policies of a competitive run: scripted ones, saved ones (the snapshot pool) and the opponent draw.

- scripted policies by name: ``"noop"``, the env module's ``baseline_policy`` as
  ``"baseline"``, and any added with :func:`register_scripted`;
- the pool: ``pool/<group>/step_<step>/`` snapshots (safetensors, atomic, checksummed:
  :mod:`fastmarl.train.checkpoint`), written by :func:`save_snapshot`, read back as a policy
  of their group by :func:`load_snapshot` / :func:`load_group_policy` (which also reads a
  group's policy out of a ``fastmarl train`` run);
- the opponent draw (:func:`sample_snapshot`): ``"latest"``, ``"uniform"`` over the newest
  ``pool_size`` snapshots, or ``"prioritised"`` (:func:`prioritised_weights`);
- :func:`episode_returns`: one paired episode per env, the per-agent return of every group.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import json
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor

from fastmarl.algos.ppo import PPO
from fastmarl.config import ConfigError, PPOConfig, TrainConfig, config_from_dict, resolve
from fastmarl.envs.api import EnvSpec, Policy, TimeStep, check_known_keys, restrict_teams
from fastmarl.train.checkpoint import (
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
    verify_checkpoint,
)

PRIORITY_EMA = 0.3  # weight of the newest iteration in the learner's running return against a snapshot


def sub_spec(spec: EnvSpec, groups: list[str] | tuple[str, ...]) -> EnvSpec:
    """The env spec restricted to ``groups`` (same env id, state and masks; their teams only)."""
    return dataclasses.replace(spec, groups={g: spec.groups[g] for g in groups},
                               teams=restrict_teams(spec.teams, groups))


class NoopPolicy:
    """Action 0 for discrete groups, the zero vector (clipped to the box) for continuous ones."""

    def __init__(self, spec: EnvSpec):
        self.spec = spec

    def initial_carry(self, num_envs: int) -> dict:
        return {}

    def act(self, ts: TimeStep, carry: dict, deterministic: bool = True,
            generator: torch.Generator | None = None) -> tuple[dict[str, Tensor], dict]:
        out = {}
        for name, g in self.spec.groups.items():
            obs = ts.obs[name]
            if g.discrete:
                out[name] = torch.zeros(obs.shape[:2], dtype=torch.long, device=obs.device)
            else:
                low = torch.as_tensor(g.action_space.low, device=obs.device, dtype=obs.dtype)
                high = torch.as_tensor(g.action_space.high, device=obs.device, dtype=obs.dtype)
                zero = torch.zeros(*obs.shape[:2], g.action_dim, device=obs.device, dtype=obs.dtype)
                out[name] = zero.clamp(low, high)
        return out, carry


# name -> factory(spec of the whole env) -> Policy; "baseline" is looked up in the env's module
SCRIPTED: dict[str, Callable[[EnvSpec], Policy]] = {"noop": NoopPolicy}


def register_scripted(name: str, factory: Callable[[EnvSpec], Policy]) -> None:
    """Make ``GroupSetup(mode="scripted", scripted=name)`` use ``factory(env.spec)``
    (a Policy; only the actions of the group it is assigned to are used)."""
    if name == "baseline":
        raise ValueError("'baseline' is reserved for the env module's baseline_policy")
    SCRIPTED[name] = factory


def baseline_factory(env) -> Callable[[EnvSpec], Policy] | None:
    """The ``baseline_policy(spec)`` of the module that defines the env's scenario, or None."""
    obj = getattr(env, "scenario", None) or env
    module = importlib.import_module(type(obj).__module__)
    return getattr(module, "baseline_policy", None)


def scripted_policy(name: str, env, env_kwargs: dict[str, Any] | None = None) -> Policy:
    """The scripted policy ``name`` for ``env`` (whole spec). The env module's
    ``baseline_policy`` also gets those ``env_kwargs`` it accepts (e.g. a speed
    it plans with). Raises ConfigError."""
    baseline = baseline_factory(env)
    known = sorted(SCRIPTED) + (["baseline"] if baseline is not None else [])
    check_known_keys([name], known, f"scripted policy for {env.spec.env_id} (add one with "
                     "fastmarl.train.pool.register_scripted)", ConfigError)
    factory = baseline if name == "baseline" else SCRIPTED[name]
    kwargs = {}
    if name == "baseline" and env_kwargs:
        params = inspect.signature(factory).parameters
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        kwargs = {k: v for k, v in env_kwargs.items() if takes_any or k in params}
    return factory(env.spec, **kwargs)


# -- snapshots and the pool -----------------------------------------------------------

def policy_learner(spec: EnvSpec, group: str, algo: str, ppo: PPOConfig, device: str | torch.device) -> PPO:
    """A PPO for ``group`` alone, sized for acting (its weights are loaded afterwards)."""
    cfg = TrainConfig(algo=algo, env=spec.env_id, num_envs=ppo.num_minibatches,
                      total_steps=ppo.num_minibatches * ppo.num_steps, ppo=ppo, device=str(device))
    sub = sub_spec(spec, [group])
    return PPO(sub, cfg, resolve(cfg, sub), device)


def save_snapshot(pool: Path, group: str, step: int, learner: PPO, algo: str) -> Path:
    """Write ``pool/<group>/step_<step>`` (weights + manifest with group, step, algo, PPO settings)."""
    info = {"kind": "snapshot", "group": group, "algo": algo, "ppo": dataclasses.asdict(learner.p),
            "env": learner.spec.env_id}
    return save_checkpoint(Path(pool) / group, step, learner.weights(), {}, info)


def list_snapshots(pool: Path, group: str) -> list[Path]:
    """Snapshot folders of ``group``, oldest first."""
    return list_checkpoints(Path(pool) / group)


def load_snapshot(path: str | Path, spec: EnvSpec, device: str | torch.device = "cpu") -> tuple[PPO, dict]:
    """(policy of the snapshot's group, its manifest), checksums verified."""
    weights, _, manifest = load_checkpoint(Path(path), trainer=False, map_location=device)
    if manifest.get("kind") != "snapshot":
        raise ConfigError(f"{path} is a training checkpoint, not a pool snapshot; use load_group_policy")
    group = manifest["group"]
    if group not in spec.groups:
        raise ConfigError(f"snapshot {path} is of group {group!r}, which {spec.env_id} does not have "
                          f"(groups: {list(spec.groups)})")
    policy = policy_learner(spec, group, manifest["algo"], config_from_dict(PPOConfig, manifest["ppo"], "ppo."), device)
    _load_into(policy, weights, path)
    return policy, manifest


def _load_into(policy: PPO, weights: dict[str, Tensor], path: Path | str) -> None:
    try:
        policy.load_weights(weights)
    except (ValueError, RuntimeError) as e:
        raise ConfigError(f"the weights in {path} do not fit group(s) {list(policy.spec.groups)} of "
                          f"{policy.spec.env_id} with these env kwargs: {str(e)[:300]}") from None


def load_group_policy(path: str | Path, group: str, spec: EnvSpec, device: str | torch.device = "cpu") -> PPO:
    """The policy of ``group`` saved at ``path``: a pool snapshot, a competitive run
    (its newest snapshot of the group), a ``fastmarl train`` run directory (its
    latest checkpoint) or a checkpoint folder of one. Raises ConfigError."""
    path = Path(path)
    if (path / "config.json").is_file():
        saved = json.loads((path / "config.json").read_text())
        if saved.get("kind") == "competitive":
            snaps = list_snapshots(path / "pool", group)
            if not snaps:
                raise ConfigError(f"competitive run {path} has no snapshot of group {group!r}")
            path = snaps[-1]
        else:
            path = latest_checkpoint(path / "checkpoints")
    if not (path / "manifest.json").is_file():
        raise ConfigError(f"{path} is neither a pool snapshot, a checkpoint folder nor a run directory")
    manifest = verify_checkpoint(path)
    if manifest.get("kind") == "snapshot":
        policy, manifest = load_snapshot(path, spec, device)
        if manifest["group"] != group:
            raise ConfigError(f"snapshot {path} is of group {manifest['group']!r}, not {group!r}")
        return policy
    run_config = path.parent.parent / "config.json"
    if not run_config.is_file():
        raise ConfigError(f"checkpoint {path} is not inside a run directory (no {run_config}); its network settings "
                          "are unknown")
    train_cfg = TrainConfig.from_dict(json.loads(run_config.read_text()))
    weights, _, _ = load_checkpoint(path, trainer=False, map_location=device)
    mine = {k: v for k, v in weights.items() if k.startswith(f"{group}.")}
    if not mine:
        groups = sorted({k.split(".")[0] for k in weights})
        raise ConfigError(f"checkpoint {path} has no weights of group {group!r} (it has {groups})")
    policy = policy_learner(spec, group, train_cfg.algo, train_cfg.ppo, device)
    _load_into(policy, mine, path)
    return policy


def prioritised_weights(returns: list[float | None]) -> Tensor:
    """Sampling weights over snapshots from the learner's running mean return against
    each (None: never played). ``w_i = exp(-(R_i - min R) / std R)``, unseen = min R:
    the snapshots the learner does worst against are drawn most often."""
    seen = [r for r in returns if r is not None]
    if not seen:
        return torch.ones(len(returns), dtype=torch.float64)
    lo = min(seen)
    scale = float(np.std(seen)) if len(seen) > 1 else 0.0
    scale = scale if scale > 1e-12 else 1.0
    r = torch.tensor([lo if x is None else x for x in returns], dtype=torch.float64)
    return torch.exp(-(r - lo) / scale)


def sample_snapshot(snapshots: list[Path], strategy: str, pool_size: int, generator: torch.Generator,
                    returns: dict[str, float] | None = None) -> Path:
    """Draw one of the newest ``pool_size`` snapshots (``returns``: snapshot name ->
    the learner's running mean return against it, for ``"prioritised"``)."""
    if not snapshots:
        raise ValueError("the pool is empty")
    if strategy == "latest":
        return snapshots[-1]
    window = snapshots[-pool_size:]
    if strategy == "uniform":
        w = torch.ones(len(window), dtype=torch.float64)
    elif strategy == "prioritised":
        w = prioritised_weights([(returns or {}).get(p.name) for p in window])
    else:
        raise ValueError(f"unknown opponent_sampling {strategy!r}")
    return window[int(torch.multinomial(w, 1, generator=generator))]


def snapshot_step(path: Path) -> int:
    """The env step a snapshot folder (``step_<step>``) was saved at."""
    return int(path.name.split("_")[-1])


@torch.no_grad()
def episode_returns(policy: Policy, env, seed: int, deterministic: bool = False) -> dict[str, Tensor]:
    """One episode in each of the env's E envs (reset with ``seed``: paired start
    states): group -> (E,) return per agent of the group (summed reward / A_g)."""
    spec: EnvSpec = env.spec
    E = env.num_envs
    gen = torch.Generator(device=env.device)
    gen.manual_seed(seed)
    ts = env.reset(seed=seed)
    carry = policy.initial_carry(E)
    finished = torch.zeros(E, dtype=torch.bool, device=env.device)
    returns = {n: torch.zeros(E, device=env.device) for n in spec.groups}
    for step in range(spec.max_episode_steps or 10_000):
        actions, carry = policy.act(ts, carry, deterministic, gen)
        ts = env.step(actions)
        active = (~finished).float()
        for n, g in spec.groups.items():
            returns[n] += ts.reward[n].sum(-1) * active / g.num_agents
        finished |= ts.done
        if (step + 1) % 8 == 0 and bool(finished.all()):
            break
    return returns
