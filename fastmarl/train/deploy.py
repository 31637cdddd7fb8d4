"""A trained policy outside the training loop: act on PettingZoo-style observation dicts.

::

    policy = fastmarl.load_policy("runs/NAME")          # deterministic; deterministic=False, seed=0 samples
    actions = policy.act(observations)                  # {agent: obs array} -> {agent: action}

``load_policy`` reads a run directory of any algorithm (PPO family, HAPPO, IQL/VDN/QMIX,
MASAC/ISAC, MADDPG/IDDPG) and needs only a checkpoint whose model file verifies: the trainer
state (optimizers, replay buffer, env state) is never read, so a damaged one does not matter.
The policy is the learner's own ``act`` (the one evaluation uses), so playing a PettingZoo env
through it scores what ``fastmarl eval`` scores on the batched env.

Observations, one entry per agent that is present (agents missing from the dict, e.g. dead or
not yet acting, get zeros and no action):

- unbatched: the agent's observation as PettingZoo gives it, shape = the observation space's
  (``(obs_dim,)`` for fastmarl's envs, e.g. ``(H, W, C)`` for an image env run through ``pz:``),
  a Discrete observation as an int, or the classic ``{"observation": ..., "action_mask": ...}``;
- batched: the same with a leading batch axis ``(B, ...)`` on every agent's entry (B copies of
  the task acted on at once); the actions then have that axis too.

Actions: a Discrete group's action is an int index ``0..n-1`` (batched: an int64 array ``(B,)``; add
the space's ``start`` where a PettingZoo space has one), a Box group's a float32 array ``(act_dim,)``
(batched ``(B, act_dim)``) inside the action space. Recurrent policies
keep their hidden state inside: call ``reset()`` at the start of every episode (``reset(done)`` with
a ``(B,)`` bool array resets only those rows of a batch). Action masks are read from the classic
observation dict or passed as ``act(obs, action_mask={agent: bool array})``.

:class:`DeployedPolicy` also wraps any :class:`~fastmarl.envs.api.Policy` with its env's spec, e.g.
the tabular Q-learner that ``train_tabular`` returns (tabular runs write no run directory).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fastmarl.config import ConfigError, TrainConfig
from fastmarl.envs.api import EnvSpec, Policy, TimeStep, check_known_keys
from fastmarl.train.rundir import RunDir
from fastmarl.train.runner import load_run


class DeployedPolicy:
    """``policy.act({agent: obs}) -> {agent: action}`` over a :class:`~fastmarl.envs.api.Policy` and the
    :class:`~fastmarl.envs.api.EnvSpec` of the env it was trained on (see the module docstring).

    Attributes: ``agents`` (every agent the policy can act for), ``spec``, ``deterministic`` (the default
    of ``act``), ``info`` (run, algo, env, step of a loaded run)."""

    def __init__(self, policy: Policy, spec: EnvSpec, deterministic: bool = True, seed: int = 0,
                 device: str | torch.device = "cpu", info: dict[str, Any] | None = None):
        self.policy, self.spec, self.deterministic = policy, spec, deterministic
        self.device = torch.device(device)
        self.info = dict(info or {})
        self._where = {a: (g.name, i) for g in spec.groups.values() for i, a in enumerate(g.agents)}
        self._shape = {n: tuple(g.source_shape or g.observation_space.shape) for n, g in spec.groups.items()}
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed)
        self._carry: Any = None
        self._batch: int | None = None
        self._starts: torch.Tensor | None = None

    @property
    def agents(self) -> tuple[str, ...]:
        return self.spec.agents

    def reset(self, done: Any = None, seed: int | None = None) -> None:
        """Start new episodes: every one (``done`` None; the next ``act`` may use another batch size),
        or the rows of a batch where ``done`` ((B,) bool) is True. ``seed`` re-seeds the sampling."""
        if seed is not None:
            self.generator.manual_seed(seed)
        if done is None:
            self._carry, self._batch, self._starts = None, None, None
            return
        done = torch.as_tensor(np.asarray(done, dtype=bool), device=self.device).reshape(-1)
        if self._batch is not None and done.shape[0] != self._batch:
            raise ValueError(f"reset(done): expected {self._batch} flags (the batch size the policy acts on), "
                             f"got {done.shape[0]}")
        self._starts = done if self._starts is None else self._starts | done

    @torch.no_grad()
    def act(self, observations: Mapping[str, Any], deterministic: bool | None = None,
            action_mask: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Actions of the agents in ``observations`` (see the module docstring for the forms);
        ``deterministic`` overrides the policy's default for this call."""
        if not isinstance(observations, Mapping):
            raise TypeError(f"act() takes a dict agent name -> observation (PettingZoo's form), got "
                            f"{type(observations).__name__}")
        check_known_keys(observations, self.agents, f"agent of {self.spec.env_id} (the agents this policy acts "
                         "for)", KeyError)
        check_known_keys(action_mask or {}, self.agents, "agent in action_mask", KeyError)
        if not observations:
            return {}
        rows, masks, batched = self._read(observations, action_mask or {})
        if masks and not self.spec.has_action_mask:
            raise ValueError(f"action masks given, but {self.spec.env_id} has none: the policy was trained without "
                             "them and would not apply them; drop action_mask (and the observations' masks)")
        B = next(iter(rows.values())).shape[0]
        obs, present = {}, {}
        for name, g in self.spec.groups.items():
            obs[name] = torch.zeros(B, g.num_agents, g.obs_dim, dtype=torch.float32)
            present[name] = torch.zeros(B, g.num_agents, dtype=torch.bool)
        mask_t = ({n: torch.ones(B, g.num_agents, g.action_dim, dtype=torch.bool)
                   for n, g in self.spec.groups.items() if g.discrete} if masks or self.spec.has_action_mask else None)
        for agent, row in rows.items():
            name, i = self._where[agent]
            obs[name][:, i] = torch.from_numpy(row)
            present[name][:, i] = True
            if agent in masks:
                mask_t[name][:, i] = torch.from_numpy(masks[agent])
        if self._carry is None:
            self._carry, self._batch = self.policy.initial_carry(B), B
            self._starts = torch.ones(B, dtype=torch.bool, device=self.device)
        elif B != self._batch:
            raise ValueError(f"act(): a batch of {B}, but the policy's episodes have {self._batch}; call reset() "
                             "to start new episodes with another batch size")
        to = lambda d: {k: v.to(self.device) for k, v in d.items()}  # noqa: E731
        starts = self._starts if self._starts is not None else torch.zeros(B, dtype=torch.bool, device=self.device)
        ts = TimeStep(obs=to(obs), reward={n: torch.zeros(B, g.num_agents, device=self.device)
                                           for n, g in self.spec.groups.items()},
                      terminated=starts, truncated=torch.zeros_like(starts), final_obs=to(obs),
                      action_mask=to(mask_t) if mask_t is not None else None, alive=to(present))
        det = self.deterministic if deterministic is None else bool(deterministic)
        actions, self._carry = self.policy.act(ts, self._carry, det, self.generator)
        self._starts = None
        out: dict[str, Any] = {}
        for agent in rows:
            name, i = self._where[agent]
            g = self.spec.groups[name]
            a = actions[name][:, i].cpu().numpy()
            a = a.astype(np.int64) if g.discrete else a.astype(g.action_space.dtype or np.float32)
            out[agent] = a if batched else (int(a[0]) if g.discrete else a[0])
        return out

    def _read(self, observations: Mapping[str, Any], action_mask: Mapping[str, Any]
              ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], bool]:
        """agent -> its observations (B, obs_dim) float32 and action masks (B, n) bool; batched or not."""
        rows, masks, batch = {}, {}, None
        for agent, o in observations.items():
            name, _ = self._where[agent]
            g, shape = self.spec.groups[name], self._shape[name]
            mask = action_mask.get(agent)
            if isinstance(o, Mapping):
                if "observation" not in o:
                    raise ValueError(f"agent {agent!r}: a dict observation needs an 'observation' entry (PettingZoo's "
                                     f"classic form {{'observation', 'action_mask'}}), got keys {list(o)}")
                mask = o.get("action_mask") if mask is None else mask
                o = o["observation"]
            a = np.asarray(o)
            if a.ndim == 0 and g.obs_dim > 1 and np.issubdtype(a.dtype, np.integer):  # a Discrete observation
                a = np.eye(g.obs_dim, dtype=np.float32)[int(a)]
            flat = (g.obs_dim,)  # also accepted: an observation already flattened
            is_batched = a.ndim == len(shape) + 1 or (a.ndim == 2 and shape != flat and a.shape[1:] == flat)
            if a.shape[is_batched:] not in (shape, flat):
                raise ValueError(f"agent {agent!r}: observation of shape {a.shape}, expected {shape} (one "
                                 f"observation) or (B, {', '.join(map(str, shape))}) (a batch of B)")
            if batch is None:
                batch = is_batched
            elif batch != is_batched:
                raise ValueError(f"agent {agent!r}: mixes batched and unbatched observations; give every agent's "
                                 "observation the same leading batch axis, or none")
            a = a.reshape(-1, g.obs_dim).astype(np.float32)
            if rows and a.shape[0] != next(iter(rows.values())).shape[0]:
                raise ValueError(f"agent {agent!r}: a batch of {a.shape[0]} observations, the other agents have "
                                 f"{next(iter(rows.values())).shape[0]}")
            rows[agent] = a
            if mask is not None:
                if not g.discrete:
                    raise ValueError(f"agent {agent!r}: an action mask for a continuous (Box) action space")
                m = np.asarray(mask).astype(bool).reshape(a.shape[0], -1)
                if m.shape[1] != g.action_dim:
                    raise ValueError(f"agent {agent!r}: action mask of {m.shape[1]} entries, expected {g.action_dim}")
                masks[agent] = m
        return rows, masks, bool(batch)


def check_deployable(cfg: Any) -> None:
    """A ConfigError, with the reason, for runs whose policy needs more than its agents' observations:
    a message channel (``message_bits``: the messages are part of a wrapped env's observations and
    actions) or range-limited communication (``comm_range``: the agents' positions)."""
    if isinstance(cfg, TrainConfig) and cfg.message_bits:
        raise ConfigError(f"run with message_bits={cfg.message_bits}: its policy reads and writes the messages of "
                          "fastmarl's BroadcastChannel wrapper, which a PettingZoo env does not have; deploy a run "
                          "without --message-bits (learned communication inside the group, --comm, works)")
    if isinstance(cfg, TrainConfig) and cfg.comm_range is not None and cfg.ppo.comm != "none":
        raise ConfigError(f"run with comm_range={cfg.comm_range}: its actors need the agents' positions to limit "
                          "who hears whom, which observation dicts do not carry; deploy a run without --comm-range")


def load_policy(run_dir: str | Path, checkpoint: str | Path | None = None, *, deterministic: bool = True,
                seed: int = 0, device: str = "cpu") -> DeployedPolicy:
    """The policy of a run directory, ready to act on PettingZoo-style dicts (see the module docstring):
    ``checkpoint`` (default: the newest whose model file verifies), deterministic by default
    (``deterministic=False``: sampled with a generator seeded ``seed``; for IQL/VDN/QMIX epsilon-greedy
    with the checkpoint's epsilon), on ``device`` (cpu unless told otherwise, whatever the run trained on).
    Raises ConfigError (not a run directory, a run that cannot be deployed) or CheckpointError (no
    valid model)."""
    run = RunDir.open(run_dir)
    check_deployable(run.read_config())
    learner, cfg, env, manifest = load_run(run_dir, checkpoint, num_envs=1, device=device)
    spec = env.spec
    if hasattr(env, "close"):
        env.close()
    info = {"run": str(run.path), "algo": cfg.algo, "env": cfg.env, "step": int(manifest["step"])}
    return DeployedPolicy(learner, spec, deterministic=deterministic, seed=seed, device=device, info=info)
