"""The batched multi-agent environment API.

One env object steps ``num_envs`` (``E``) copies of a multi-agent task at once on
one torch device. Agents are organised in *groups*: agents of one kind, with the
same observation and action spaces, stacked along one axis. A group ``g`` with
``A_g`` agents exchanges tensors shaped ``(E, A_g, ...)``.

Shapes at this boundary (``E`` = num_envs, ``A_g`` = agents in group ``g``):

===================  =====================================  =========================
field                shape                                   dtype
===================  =====================================  =========================
obs[g]               (E, A_g, obs_dim_g)                     float (env dtype)
reward[g]            (E, A_g)                                float (env dtype)
terminated           (E,)                                    bool
truncated            (E,)                                    bool
final_obs[g]         (E, A_g, obs_dim_g)                     float
final_state          (E, state_dim) or None                  float
action_mask[g]       (E, A_g, n_actions_g) or None           bool
alive[g]             (E, A_g) or None                        bool
actions[g] discrete  (E, A_g)                                integer
actions[g] box       (E, A_g, act_dim_g)                     float
state()              (E, state_dim)                          float
===================  =====================================  =========================

Episode ends are per environment (``terminated | truncated``). ``step`` resets the
environments that ended (auto-reset): ``obs`` then holds the first observation
of the new episode, while ``final_obs`` holds the last observation of the episode
that ended, so value bootstrapping at truncation is exact. When no environment
ended, ``final_obs`` is the same object as ``obs`` and ``final_state`` is None
(meaning "same as ``state()``").
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

GroupTensors = dict[str, Tensor]


@dataclass(frozen=True)
class GroupSpec:
    """One group of homogeneous agents.

    Attributes:
        name: group name, e.g. ``"adversary"``.
        agents: agent names in the order of the agent axis, e.g. ``("adversary_0", ...)``.
        observation_space: space of *one* agent's observation (a ``Box``).
        action_space: space of *one* agent's action: ``Discrete(n)`` (actions
            ``(E, A_g)`` integers) or ``Box`` (actions ``(E, A_g, dim)`` floats).
    """

    name: str
    agents: tuple[str, ...]
    observation_space: gym.spaces.Box
    action_space: gym.spaces.Space
    source_shape: tuple[int, ...] | None = None
    """the shape of the observation before it was flattened into ``observation_space`` (a
    PettingZoo env's image, e.g. (H, W, C)); None: not flattened"""

    @property
    def image_observations(self) -> bool:
        """The observations are images (their own shape, or the one they were flattened from)."""
        return is_image_shape(self.source_shape or self.observation_space.shape)

    @property
    def num_agents(self) -> int:
        return len(self.agents)

    @property
    def discrete(self) -> bool:
        return isinstance(self.action_space, gym.spaces.Discrete)

    @property
    def obs_dim(self) -> int:
        return int(np.prod(self.observation_space.shape))

    @property
    def action_dim(self) -> int:
        """Number of discrete actions, or the length of a continuous action."""
        if isinstance(self.action_space, gym.spaces.Discrete):
            return int(self.action_space.n)
        return int(np.prod(self.action_space.shape))


@dataclass(frozen=True)
class EnvSpec:
    """Static description of a batched env.

    Attributes:
        env_id: registry id, e.g. ``"simple_spread_v3"``.
        groups: group name -> GroupSpec, in agent order.
        state_dim: size of the global state returned by ``state()`` (0: none).
        max_episode_steps: episode length limit (truncation), or None.
        has_action_mask: whether TimeStep.action_mask is provided.
        has_alive_mask: whether TimeStep.alive is provided (agents can die).
        teams: the groups that share an objective, one tuple of group names per team, every
            group in exactly one; None: one team of every group (a cooperative env). More than
            one team (``competitive``): returns are reported per group, never averaged over
            opposing teams, and a value-mixing learner must be told which groups it mixes.
    """

    env_id: str
    groups: dict[str, GroupSpec]
    state_dim: int
    max_episode_steps: int | None
    has_action_mask: bool = False
    has_alive_mask: bool = False
    teams: tuple[tuple[str, ...], ...] | None = None

    def __post_init__(self):
        if self.teams is not None:
            flat = [g for team in self.teams for g in team]
            if sorted(flat) != sorted(self.groups) or any(not team for team in self.teams):
                raise ValueError(f"{self.env_id}: teams {self.teams} must put every group of {list(self.groups)} "
                                 "in exactly one (non-empty) team")

    @property
    def team_groups(self) -> tuple[tuple[str, ...], ...]:
        """The teams (``teams``, or one team of every group)."""
        return self.teams if self.teams is not None else (tuple(self.groups),)

    @property
    def competitive(self) -> bool:
        """More than one team: the groups do not all share one objective."""
        return len(self.team_groups) > 1

    @property
    def agents(self) -> tuple[str, ...]:
        return tuple(a for g in self.groups.values() for a in g.agents)

    @property
    def num_agents(self) -> int:
        return sum(g.num_agents for g in self.groups.values())

    def group_of(self, agent: str) -> tuple[str, int]:
        """(group name, index in the group) of an agent name."""
        check_known_keys([agent], self.agents, f"agent of {self.env_id}", KeyError)
        g = next(g for g in self.groups.values() if agent in g.agents)
        return g.name, g.agents.index(agent)


def restrict_teams(teams: tuple[tuple[str, ...], ...] | None, groups: Iterable[str]
                   ) -> tuple[tuple[str, ...], ...] | None:
    """``teams`` with only the groups in ``groups`` (the others scripted away or absent), empty teams
    dropped; None stays None."""
    if teams is None:
        return None
    keep = set(groups)
    return tuple(t for t in (tuple(g for g in team if g in keep) for team in teams) if t)


@dataclass
class TimeStep:
    """What ``reset`` and ``step`` return; see the module docstring for shapes."""

    obs: GroupTensors
    reward: GroupTensors
    terminated: Tensor
    truncated: Tensor
    final_obs: GroupTensors
    final_state: Tensor | None = None
    action_mask: GroupTensors | None = None
    alive: GroupTensors | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def done(self) -> Tensor:
        """(E,) bool: the episode ended in this step (and was auto-reset)."""
        return self.terminated | self.truncated


class ActionError(ValueError):
    """An action given to ``step`` is malformed; the env state is unchanged."""


def available_devices() -> list[str]:
    """The torch devices this machine can use: cpu, each CUDA GPU (cuda:0, ...), mps."""
    out = ["cpu"]
    if torch.cuda.is_available():
        out += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if torch.backends.mps.is_available():
        out.append("mps")
    return out


def memory_available(device: str | torch.device) -> int | None:
    """Bytes free for new tensors on ``device``: the GPU's free memory (CUDA), the system's
    ``MemAvailable`` (cpu, Linux); None where it cannot be read."""
    dev = torch.device(device)
    if dev.type == "cuda" and torch.cuda.is_available():
        return int(torch.cuda.mem_get_info(dev)[0])
    if dev.type != "cpu":
        return None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def is_image_shape(shape: tuple[int, ...]) -> bool:
    """Shaped like an image: (H, W) or (H, W, C) / (C, H, W) with C <= 4, H and W >= 8."""
    if len(shape) not in (2, 3):
        return False
    dims = sorted(shape)
    return dims[-2] >= 8 and (len(shape) == 2 or dims[0] <= 4)


def check_device(device: str | torch.device) -> torch.device:
    """``device`` as a ``torch.device``; ValueError in one line, naming the device, why it cannot
    be used and the devices that can, when this machine or this PyTorch build lacks it (instead
    of torch's assertion from deep inside the first tensor made there)."""
    avail = ", ".join(available_devices())
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"device {device!r} is not a torch device ({str(e).splitlines()[0]}); available: {avail}") \
            from None
    why = None
    if dev.type == "cuda":
        if not torch.backends.cuda.is_built():
            why = f"this PyTorch ({torch.__version__}) was built without CUDA"
        elif not torch.cuda.is_available():
            why = "no CUDA GPU is visible (driver missing, or CUDA_VISIBLE_DEVICES hides them)"
        elif dev.index is not None and dev.index >= torch.cuda.device_count():
            why = f"this machine has {torch.cuda.device_count()} CUDA GPU(s)"
    elif dev.type == "mps":
        if not torch.backends.mps.is_built():
            why = f"this PyTorch ({torch.__version__}) was built without MPS (Apple GPUs)"
        elif not torch.backends.mps.is_available():
            why = "MPS needs an Apple-silicon Mac with macOS 12.3 or later"
    elif dev.type not in ("cpu", "meta"):
        backend = getattr(torch, dev.type, None)
        is_available = getattr(backend, "is_available", None)
        if callable(is_available) and not is_available():
            why = f"torch.{dev.type}.is_available() is False"
    if why is not None:
        raise ValueError(f"device {str(device)!r} is not available: {why}; available: {avail}")
    return dev


class ResetNeeded(RuntimeError):
    """``step`` was called before the env's first ``reset`` (or ``load_state_dict``)."""


def require_reset(env: Any) -> None:
    """Raise ResetNeeded unless ``env`` was reset (``env._was_reset``, set by its ``reset`` and
    ``load_state_dict``): a constructor's placeholder state is not a seeded episode start, and
    stepping it would give a run that no seed reproduces. (Wrappers rely on the env they wrap.)"""
    if not getattr(env, "_was_reset", False):
        raise ResetNeeded(f"{env.spec.env_id}: step() was called before reset(); call env.reset(seed=...) first "
                          "(it returns the first observations), then step()")


def check_known_keys(given: Iterable[str], known: Iterable[str], what: str,
                     error: type[Exception] = ValueError) -> None:
    """Raise ``error`` if a name of ``given`` is not in ``known`` (a typo never
    silently falls back to a default).

    The message names every unknown one with the closest known name (difflib)
    and lists the known ones, e.g. for ``what="simple_spread_v3 keyword
    argument"``: ``unknown simple_spread_v3 keyword argument: 'local_ration' (did
    you mean 'local_ratio'?); valid: ['N', 'local_ratio', ...]``. ``what`` says
    what the names are, with the context a user needs to find them."""
    known = list(known)
    unknown = [k for k in given if k not in known]
    if not unknown:
        return
    names = [str(k) for k in known]
    hints = []
    for k in unknown:
        close = difflib.get_close_matches(str(k), names, n=1)
        hints.append(f"{k!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    raise error(f"unknown {what}: {', '.join(hints)}; valid: {sorted(known)}")


@runtime_checkable
class VecEnv(Protocol):
    """What the trainers and adapters need from a batched env."""

    spec: EnvSpec
    num_envs: int
    device: torch.device

    def reset(self, seed: int | None = None, mask: Tensor | None = None) -> TimeStep:
        """Reset all envs (mask None) or those where ``mask`` (E,) is True."""
        ...

    def step(self, actions: GroupTensors) -> TimeStep:
        """Advance every env by one step; auto-resets envs whose episode ended."""
        ...

    def state(self) -> Tensor:
        """Global state (E, state_dim) for centralized critics."""
        ...

    def render(self, env_index: int = 0) -> np.ndarray:
        """RGB image (H, W, 3) uint8 of one env, no display needed."""
        ...


@runtime_checkable
class SavableEnv(Protocol):
    """An env whose state can be checkpointed, for an exact resume.

    ``state_dict()`` returns everything the env's future depends on (its tensors
    and its generator's state; MPE envs: the world state and the curriculum stage),
    as copies in plain dicts that ``torch.load(weights_only=True)`` reads back; a
    wrapper returns its own state with the wrapped env's inside, or None when the
    wrapped env cannot be saved. ``load_state_dict(state)`` restores it into an env
    built with the same arguments (raises ValueError, before changing anything,
    when the state does not fit: another ``num_envs`` or size). An env saved
    mid-episode and restored steps exactly as the original would have.
    """

    def state_dict(self) -> dict[str, Any] | None:
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None:
        ...


def env_state_dict(env: Any) -> dict[str, Any] | None:
    """``env.state_dict()`` for a :class:`SavableEnv`; None when ``env`` cannot be saved
    (the trainer then starts fresh episodes on resume)."""
    return env.state_dict() if isinstance(env, SavableEnv) else None


def load_env_state_dict(env: Any, state: dict[str, Any] | None) -> bool:
    """Restore ``env`` from :func:`env_state_dict`'s result; False if it cannot be
    (nothing was saved, or ``env`` is not a :class:`SavableEnv`): the caller then resets it."""
    if state is None or not isinstance(env, SavableEnv):
        return False
    env.load_state_dict(state)
    return True


class Policy(Protocol):
    """What running an env needs from a policy, learned or scripted: evaluation
    (:func:`fastmarl.envs.episodes.evaluate_policy`), the scripted groups of
    :class:`fastmarl.envs.wrappers.ScriptedGroups`, the reference policies of
    :mod:`fastmarl.envs.scripted`, and every learner's acting side."""

    def initial_carry(self, num_envs: int) -> Any:
        """Recurrent state for ``num_envs`` envs (anything; ``{}`` when stateless)."""
        ...

    def act(self, ts: TimeStep, carry: Any, deterministic: bool = False,
            generator: torch.Generator | None = None) -> tuple[dict[str, Tensor], Any]:
        """Actions group -> (E, A_g[, D]) for the observations in ``ts``; the new carry.
        ``ts.done`` marks envs whose ``ts.obs`` begins a new episode."""
        ...


class JointPolicy:
    """Several policies acting together as one :class:`Policy`: ``policies`` maps
    group -> policy, and only that group's actions are taken from it. Every policy
    sees the whole TimeStep; one assigned to several groups acts once per step.
    The carry is a list, one per distinct policy (in order of first appearance)."""

    def __init__(self, policies: dict[str, Policy]):
        self.sources: list[tuple[Policy, list[str]]] = []  # (policy, the groups it acts for)
        for group, pol in policies.items():
            for src, groups in self.sources:
                if src is pol:
                    groups.append(group)
                    break
            else:
                self.sources.append((pol, [group]))

    def initial_carry(self, num_envs: int) -> list:
        return [pol.initial_carry(num_envs) for pol, _ in self.sources]

    def act(self, ts: TimeStep, carry: list, deterministic: bool = False,
            generator: torch.Generator | None = None) -> tuple[dict[str, Tensor], list]:
        actions, new = {}, []
        for (pol, groups), c in zip(self.sources, carry):
            a, c = pol.act(ts, c, deterministic, generator)
            actions.update({g: a[g] for g in groups})
            new.append(c)
        return actions, new


def validate_actions(spec: EnvSpec, actions: Any, num_envs: int, device: torch.device) -> None:
    """Raise ActionError naming the group, what was expected and what was received.

    Checks: a dict with exactly the spec's groups; tensors on the env device;
    shape; dtype kind; discrete actions within [0, n); box actions finite and
    within the space bounds. Costs one device sync per group (the range check);
    envs that fuse the range check into their step use :func:`check_action_structure`
    and :func:`action_range_violations` instead and call this only to explain a failure.
    """
    check_action_structure(spec, actions, num_envs, device)
    for name, g in spec.groups.items():
        a = actions[name]
        if g.discrete:
            n = g.action_dim
            bad = (a < 0) | (a >= n)
            if bool(bad.any()):
                v = a[bad][0].item()
                raise ActionError(f"group {name!r}: discrete action {v} out of range, expected 0 <= a < {n}")
        else:
            low, high = _box_bounds(g)
            ok = (a >= low) & (a <= high)  # NaN fails both comparisons
            if not bool(ok.all()):
                if bool(torch.isnan(a).any()):
                    raise ActionError(f"group {name!r}: continuous actions contain NaN, expected finite values in [{low}, {high}]")
                v = a[~ok][0].item()
                raise ActionError(
                    f"group {name!r}: continuous action value {v} out of range, expected {low} <= a <= {high}"
                )


def _box_bounds(g: GroupSpec) -> tuple[float, float]:
    return float(np.min(g.action_space.low)), float(np.max(g.action_space.high))


def check_action_structure(spec: EnvSpec, actions: Any, num_envs: int, device: torch.device) -> None:
    """The metadata part of :func:`validate_actions` (no device sync): groups,
    types, devices, shapes and dtypes. Raises ActionError."""
    if not isinstance(actions, dict):
        raise ActionError(
            f"actions must be a dict group -> Tensor with groups {list(spec.groups)}, "
            f"got {type(actions).__name__}"
        )
    missing = [g for g in spec.groups if g not in actions]
    extra = [g for g in actions if g not in spec.groups]
    if missing or extra:
        raise ActionError(
            f"actions have the wrong groups: missing {missing}, unexpected {extra}; "
            f"expected exactly {list(spec.groups)}"
        )
    for name, g in spec.groups.items():
        a = actions[name]
        if not isinstance(a, Tensor):
            raise ActionError(f"group {name!r}: expected a torch.Tensor, got {type(a).__name__}")
        if a.device != device:
            raise ActionError(f"group {name!r}: expected a tensor on device {device}, got {a.device}")
        if g.discrete:
            want = (num_envs, g.num_agents)
            if tuple(a.shape) != want:
                raise ActionError(f"group {name!r}: expected discrete actions of shape {want}, got {tuple(a.shape)}")
            if a.dtype.is_floating_point or a.dtype.is_complex or a.dtype == torch.bool:
                raise ActionError(f"group {name!r}: expected an integer dtype for Discrete({g.action_dim}) actions, got {a.dtype}")
        else:
            want = (num_envs, g.num_agents, g.action_dim)
            if tuple(a.shape) != want:
                raise ActionError(f"group {name!r}: expected continuous actions of shape {want}, got {tuple(a.shape)}")
            if not a.dtype.is_floating_point:
                raise ActionError(f"group {name!r}: expected a floating dtype for Box actions, got {a.dtype}")


def action_limits(spec: EnvSpec) -> dict[str, tuple[bool, float, float]]:
    """group -> (discrete, low, high) as plain Python numbers (for compiled code)."""
    out = {}
    for name, g in spec.groups.items():
        out[name] = (True, 0.0, float(g.action_dim)) if g.discrete else (False, *_box_bounds(g))
    return out


def action_range_violations(limits: dict[str, tuple[bool, float, float]], actions: dict[str, Tensor]) -> Tensor:
    """() bool tensor: True if any action is out of range (or NaN); ``limits``
    from :func:`action_limits`. Pure tensor maths with no sync, so it can run
    inside a compiled step."""
    flags = []
    for name, (discrete, low, high) in limits.items():
        a = actions[name]
        if discrete:
            flags.append(((a < 0) | (a >= int(high))).any())
        else:
            flags.append(~((a >= low) & (a <= high)).all())
    return torch.stack(flags).any() if len(flags) > 1 else flags[0]


def reset_mask(mask: Tensor | None, num_envs: int, device: torch.device) -> Tensor:
    """Validate the ``mask`` argument of ``reset``: None -> all True; else a bool (num_envs,) tensor, moved to
    ``device``. Anything else is a ValueError naming what was passed."""
    if mask is None:
        return torch.ones(num_envs, dtype=torch.bool, device=device)
    if not isinstance(mask, Tensor) or tuple(mask.shape) != (num_envs,) or mask.dtype != torch.bool:
        raise ValueError(f"reset mask must be a bool tensor of shape ({num_envs},), got "
                         f"{getattr(mask, 'dtype', type(mask).__name__)} {tuple(getattr(mask, 'shape', ()))}")
    return mask.to(device)


def fields_state_dict(env: Any, fields: tuple[str, ...]) -> dict[str, Any]:
    """An env's state for checkpoints: copies of its tensor attributes ``fields`` and its generator's state
    (``env._gen``)."""
    return {**{k: getattr(env, k).clone() for k in fields}, "generator": env._gen.get_state()}


def load_fields_state_dict(env: Any, fields: tuple[str, ...], saved: dict[str, Any]) -> None:
    """Inverse of :func:`fields_state_dict`; a missing field or a shape that differs from the env's (another
    ``num_envs`` or size kwargs) is a ValueError naming it, raised before anything changes."""
    for k in fields:
        if k not in saved:
            raise ValueError(f"{env.spec.env_id}: saved env state has no {k!r}")
        if saved[k].shape != getattr(env, k).shape:
            raise ValueError(f"{env.spec.env_id}: saved {k} has shape {tuple(saved[k].shape)}, expected "
                             f"{tuple(getattr(env, k).shape)}")
    for k in fields:
        setattr(env, k, saved[k].to(env.device))
    env._gen.set_state(saved["generator"])


def reset_timestep(spec: EnvSpec, obs: dict[str, Tensor], dtype: torch.dtype, **extra: Any) -> TimeStep:
    """The TimeStep that ``reset`` returns: ``obs``, zero rewards (E, A_g) per group, no episode ends,
    ``final_obs`` = ``obs``; ``extra`` (e.g. ``action_mask``) is passed on."""
    first = next(iter(obs.values()))
    E, device = first.shape[0], first.device
    reward = {g: torch.zeros(E, s.num_agents, dtype=dtype, device=device) for g, s in spec.groups.items()}
    f = torch.zeros(E, dtype=torch.bool, device=device)
    return TimeStep(obs=obs, reward=reward, terminated=f, truncated=f.clone(), final_obs=obs, **extra)


class FieldsState:
    """Mixin: an env whose whole state is its tensor attributes named in ``_STATE`` plus its generator
    ``_gen`` saves and restores it with :func:`fields_state_dict` / :func:`load_fields_state_dict`; a state
    set whole (a checkpoint, a parity test) counts as a reset's start."""

    _STATE: tuple[str, ...] = ()

    def state_dict(self) -> dict[str, Any]:
        return fields_state_dict(self, self._STATE)

    def load_state_dict(self, s: dict[str, Any]) -> None:
        load_fields_state_dict(self, self._STATE, s)
        self._was_reset = True

    def close(self) -> None:
        pass

