"""Any PettingZoo env as a batched fastmarl env: ``from_pettingzoo(env_fn, num_envs)``.

The result follows the :class:`~fastmarl.envs.api.VecEnv` protocol, so the
fastmarl trainers run on PettingZoo's families (classic, butterfly, SISL, ...).
``num_envs`` instances are stepped in a Python loop: this is the PettingZoo
edge, as fast as the wrapped envs and no faster. Dicts keyed by agent name
exist only here and in :mod:`fastmarl.envs.pettingzoo` (the other way);
everything ``from_pettingzoo`` returns follows the shapes of :mod:`fastmarl.envs.api`.
"""

from __future__ import annotations

import functools
import warnings
from typing import Any, Callable

import gymnasium as gym
import numpy as np
import torch
from pettingzoo import AECEnv, ParallelEnv
from pettingzoo.utils.conversions import aec_to_parallel, turn_based_aec_to_parallel
from torch import Tensor

from fastmarl.envs.api import (
    EnvSpec,
    GroupSpec,
    TimeStep,
    check_device,
    is_image_shape,
    require_reset,
    reset_mask,
    validate_actions,
)
from fastmarl.envs.mpe.core import group_of_name
from fastmarl.envs.workers import BACKENDS, WorkerVecEnv, actions_to_numpy, arrays_to_timestep, sub_seed

__all__ = ["from_pettingzoo", "PettingZooVecEnv", "sub_seed", "BACKENDS"]


def _copy(bufs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {g: b.copy() for g, b in bufs.items()}


def _as_parallel(env: Any) -> ParallelEnv:
    if isinstance(env, ParallelEnv):
        return env
    if isinstance(env, AECEnv):
        # Turn-based games (pettingzoo.classic) are not parallelizable: every agent
        # gets an action each step and only the agent whose turn it is acts.
        if env.metadata.get("is_parallelizable", False):
            return aec_to_parallel(env)
        return turn_based_aec_to_parallel(env)
    raise TypeError(f"env_fn must return a PettingZoo ParallelEnv or AECEnv, got {type(env).__name__}")


class _ObsCodec:
    """Turns one agent's PettingZoo observation into a flat float32 vector.

    Box: flattened (images ``(H, W, C)`` become ``H*W*C`` values, unscaled; ``uint8`` images stay
    ``uint8``, a quarter of the bytes, for learners with a CNN torso to scale);
    Discrete(n): one-hot of length n; MultiBinary: flattened 0/1;
    Dict ``{"observation", "action_mask"}`` (pettingzoo.classic): the
    ``observation`` entry as above, the mask read separately.
    """

    def __init__(self, space: gym.spaces.Space, where: str):
        self.mask_in_obs = False
        if isinstance(space, gym.spaces.Dict):
            if "observation" not in space.spaces:
                raise TypeError(f"{where}: Dict observation spaces are supported only in the "
                                f"{{'observation', 'action_mask'}} form, got keys {list(space.spaces)}; "
                                "flatten the observation in env_fn (e.g. a PettingZoo wrapper)")
            self.mask_in_obs = "action_mask" in space.spaces
            space = space.spaces["observation"]
        self.inner = space
        if isinstance(space, gym.spaces.Box):
            self.kind = "box"
            low = np.asarray(space.low, dtype=np.float64).reshape(-1)
            high = np.asarray(space.high, dtype=np.float64).reshape(-1)
        elif isinstance(space, gym.spaces.Discrete):
            self.kind = "discrete"
            low, high = np.zeros(int(space.n)), np.ones(int(space.n))
        elif isinstance(space, gym.spaces.MultiBinary):
            self.kind = "box"
            n = int(np.prod(space.shape))
            low, high = np.zeros(n), np.ones(n)
        else:
            raise TypeError(f"{where}: observation space {space} is not supported (Box, Discrete, MultiBinary "
                            "or the classic Dict with 'observation'/'action_mask'); flatten it in env_fn")
        self.dim = low.size
        self.dtype = np.dtype(np.float32)
        if self.kind == "box" and space.dtype == np.uint8 and is_image_shape(tuple(space.shape)):
            self.dtype = np.dtype(np.uint8)
        self.space = gym.spaces.Box(low.astype(self.dtype), high.astype(self.dtype), dtype=self.dtype)

    def encode(self, obs: Any, out: np.ndarray) -> np.ndarray | None:
        """Write the flat observation into ``out`` (dim,); return the obs mask or None."""
        mask = None
        if isinstance(obs, dict):
            mask = obs.get("action_mask")
            obs = obs["observation"]
        if self.kind == "discrete":
            out[:] = 0.0
            out[int(obs) - int(self.inner.start)] = 1.0
        else:
            out[:] = np.asarray(obs, dtype=self.dtype).reshape(-1)
        return mask


class PettingZooVecEnv:
    """``num_envs`` PettingZoo envs behind the batched fastmarl API.

    Groups: agents are grouped by name prefix (``adversary_0`` -> ``adversary``)
    unless ``group_fn(agent) -> group name`` says otherwise; a group's agents
    must share observation and action spaces. Observations are flattened to
    float32 vectors (see :class:`_ObsCodec`; images become ``H*W*C`` vectors, ``uint8``
    ones stay ``uint8``; ``GroupSpec.source_shape`` keeps the frame's shape).

    Shapes (``E`` = num_envs), beyond :mod:`fastmarl.envs.api`:

    * ``alive[g]`` (E, A_g) bool is always given: True while the agent is in the
      episode after this step. An agent whose ``alive`` turns False got its last
      reward and observation in that step; afterwards its rows are zeros and
      its actions are ignored.
    * ``action_mask[g]`` (E, A_g, n) bool, when the env gives masks (in the
      observation dict, or ``infos[agent]["action_mask"]``), for every discrete
      group (all True for a group without masks). A row can be all False: the
      agent's action is ignored this step (it is dead, or in a turn-based game,
      not its turn), so mask logits with a large finite negative, not ``-inf``.
    * An env's episode ends when all its agents are gone; ``truncated`` if an
      agent of the last step was truncated (and not terminated), else
      ``terminated``. It is then reset (``reset(seed=None)``: the env's own RNG
      continues) with ``final_obs`` / ``final_state`` kept.

    ``state()`` is the env's ``state()`` flattened to float32, when it has one;
    otherwise ``spec.state_dim == 0`` and ``state()`` raises. ``final_state`` is
    filled only with ``need_state=True`` (a learner that reads the state: MAPPO,
    QMIX); an env whose ``state()`` raises once its episode is over then gets its
    last good state (with one warning naming the env).
    Seeding: ``reset(seed=s)`` resets env ``i`` with seed ``sub_seed(s, i)``.
    """

    def __init__(self, env_fn: Callable[[], Any], num_envs: int, device: str | torch.device = "cpu",
                 seed: int | None = None, group_fn: Callable[[str], str] | None = None, need_state: bool = True,
                 teams: tuple[tuple[str, ...], ...] | None = None, env_offset: int = 0):
        if not isinstance(num_envs, int) or isinstance(num_envs, bool) or num_envs < 1:
            raise ValueError(f"num_envs must be a positive int, got {num_envs!r}")
        self.num_envs = num_envs
        self.env_offset = env_offset  # a worker's share of a bigger batch: env i is env env_offset + i of it
        self.send_state = False  # a worker sets this: its step and reset arrays then carry the state
        self.device = check_device(device)
        self.need_state = need_state
        self._last_state: dict[int, np.ndarray] = {}  # env index -> its last state() that did not raise
        self._warned_state = False
        self.envs: list[ParallelEnv] = [_as_parallel(env_fn()) for _ in range(num_envs)]
        first = [env.reset(seed=None if seed is None else sub_seed(seed, env_offset + i))
                 for i, env in enumerate(self.envs)]
        e0 = self.envs[0]
        agents = list(getattr(e0, "possible_agents", None) or e0.agents)
        group_fn = group_fn or group_of_name

        # groups in order of first appearance
        members: dict[str, list[str]] = {}
        for a in agents:
            g = group_fn(a)
            if not isinstance(g, str):
                raise TypeError(f"group_fn({a!r}) must return a group name (str), got {g!r}")
            members.setdefault(g, []).append(a)
        infos0 = first[0][1]
        groups: dict[str, GroupSpec] = {}
        self._codec: dict[str, _ObsCodec] = {}
        self._act_start: dict[str, int] = {}
        self._mask_groups: list[str] = []
        for g, names in members.items():
            o0, a0 = e0.observation_space(names[0]), e0.action_space(names[0])
            for a in names[1:]:
                for kind, s0, s in (("observation", o0, e0.observation_space(a)), ("action", a0, e0.action_space(a))):
                    if s != s0:
                        raise ValueError(
                            f"agents {names[0]!r} and {a!r} of group {g!r} have different {kind} spaces "
                            f"({s0} vs {s}); agents of a group must share spaces: pass group_fn to split them, "
                            "e.g. group_fn=lambda agent: agent for one group per agent")
            codec = _ObsCodec(o0, f"group {g!r}")
            if isinstance(a0, gym.spaces.Discrete):
                act_space = gym.spaces.Discrete(int(a0.n))
                self._act_start[g] = int(a0.start)
            elif isinstance(a0, gym.spaces.Box):
                act_space = gym.spaces.Box(np.asarray(a0.low).reshape(-1), np.asarray(a0.high).reshape(-1),
                                           dtype=a0.dtype)
            else:
                raise TypeError(f"group {g!r}: action space {a0} is not supported (Discrete or Box)")
            has_mask = codec.mask_in_obs or any("action_mask" in (infos0.get(a) or {}) for a in names)
            if has_mask:
                if not isinstance(a0, gym.spaces.Discrete):
                    raise TypeError(f"group {g!r}: action masks need a Discrete action space, got {a0}")
                self._mask_groups.append(g)
            self._codec[g] = codec
            groups[g] = GroupSpec(name=g, agents=tuple(names), observation_space=codec.space, action_space=act_space,
                                  source_shape=tuple(codec.inner.shape) if codec.kind == "box" else None)

        self._where = {a: (g.name, i) for g in groups.values() for i, a in enumerate(g.agents)}
        state_dim = 0
        try:
            state_dim = int(np.asarray(e0.state()).size)
        except (NotImplementedError, AttributeError):
            state_dim = 0
        max_cycles = getattr(e0.unwrapped, "max_cycles", None)
        has_mask = bool(self._mask_groups)
        name = e0.metadata.get("name", type(e0.unwrapped).__name__) if hasattr(e0, "metadata") else type(e0).__name__
        self.spec = EnvSpec(env_id=str(name), groups=groups, state_dim=state_dim,
                            max_episode_steps=max_cycles if isinstance(max_cycles, int) else None,
                            has_action_mask=has_mask, has_alive_mask=True,
                            teams=tuple(tuple(t) for t in teams) if teams is not None else None)

        # numpy buffers (E, A_g, ...) filled in place by the per-env loop
        E = num_envs
        self._obs = {g: np.zeros((E, s.num_agents, s.obs_dim), self._codec[g].dtype) for g, s in groups.items()}
        self._alive = {g: np.zeros((E, s.num_agents), bool) for g, s in groups.items()}
        self._reward = {g: np.zeros((E, s.num_agents), np.float32) for g, s in groups.items()}
        self._mask = ({g: np.ones((E, s.num_agents, s.action_dim), bool) for g, s in groups.items() if s.discrete}
                      if has_mask else None)
        for e, (obs, infos) in enumerate(first):
            self._load_env(e, obs, infos, self.envs[e].agents)

    # -- buffers ---------------------------------------------------------------
    def _load_env(self, e: int, obs: dict, infos: dict, live: list[str]) -> None:
        """Write env ``e``'s observations, masks and alive flags (others zeroed)."""
        for g in self._obs:
            self._obs[g][e] = 0.0
            self._alive[g][e] = False
            if self._mask is not None and g in self._mask:
                self._mask[g][e] = g not in self._mask_groups  # groups without masks: all legal
        for a, o in obs.items():
            g, i = self._slot(a)
            m = self._codec[g].encode(o, self._obs[g][e, i])
            if self._mask is not None and g in self._mask_groups:
                if m is None:
                    m = (infos.get(a) or {}).get("action_mask")
                self._mask[g][e, i] = True if m is None else np.asarray(m).astype(bool).reshape(-1)
        for a in live:
            g, i = self._slot(a)
            self._alive[g][e, i] = True

    def _slot(self, agent: str) -> tuple[str, int]:
        try:
            return self._where[agent]
        except KeyError:
            raise KeyError(f"agent {agent!r} is not in possible_agents {list(self._where)}; agents created "
                           "during an episode are not supported") from None

    def _state_np(self, e: int) -> np.ndarray:
        st = np.asarray(self.envs[e].state(), dtype=np.float32).reshape(-1)
        self._last_state[e] = st
        return st

    def _final_state_np(self, e: int) -> np.ndarray:
        """State of env ``e`` whose episode just ended; some envs' ``state()`` raise once every
        agent is gone (e.g. they index their removed agents): then the last good state."""
        try:
            return self._state_np(e)
        except Exception as err:  # noqa: BLE001 (any error of the finished env's state())
            if not self._warned_state:
                self._warned_state = True
                warnings.warn(f"{self.spec.env_id}: state() raised {type(err).__name__}: {err} after its episode "
                              "ended; final_state is the last state before the end (warned once)",
                              RuntimeWarning, stacklevel=3)
            last = self._last_state.get(e)
            return last if last is not None else np.zeros(self.spec.state_dim, np.float32)

    # -- the numpy core (what a worker process runs) ------------------------------
    def reset_arrays(self, seed: int | None = None, idx: list[int] | None = None) -> dict[str, Any]:
        """Reset the envs ``idx`` (None: all); env ``i`` gets seed ``sub_seed(seed, env_offset + i)``.
        Returns :func:`step_arrays`' dict for a reset (zero rewards, nothing ended)."""
        for e in range(self.num_envs) if idx is None else idx:
            obs, infos = self.envs[e].reset(seed=None if seed is None else sub_seed(seed, self.env_offset + e))
            self._load_env(e, obs, infos, self.envs[e].agents)
        self._was_reset = True
        E = self.num_envs
        obs = _copy(self._obs)
        return {"obs": obs, "reward": {g: np.zeros_like(r) for g, r in self._reward.items()},
                "terminated": np.zeros(E, bool), "truncated": np.zeros(E, bool), "final_obs": None,
                "final_state": None, "action_mask": _copy(self._mask) if self._mask is not None else None,
                "alive": _copy(self._alive), "state": self._state_or_none()}

    def step_arrays(self, acts: dict[str, np.ndarray]) -> dict[str, Any]:
        """Step every env (a Python loop) with ``acts[g]`` (E, A_g[, D]) numpy; auto-resets the envs
        whose episode ended. Returns numpy arrays: ``obs``/``reward``/``alive``/``action_mask``
        group -> (E, A_g, ...), ``terminated``/``truncated`` (E,), ``final_obs`` (None when no env
        ended), ``final_state`` (E, S) (None when no env ended or the state is not needed), and
        ``state`` (E, S): the state after the step when ``need_state`` (None otherwise, or when the
        env's ``state()`` raised: ``state()`` then raises it)."""
        E = self.num_envs
        term = np.zeros(E, bool)
        trunc = np.zeros(E, bool)
        final_obs: dict[int, dict[str, np.ndarray]] = {}
        final_state: dict[int, np.ndarray] = {}
        for r in self._reward.values():
            r[:] = 0.0
        for e, env in enumerate(self.envs):
            pz_actions = {}
            for a in env.agents:
                g, i = self._slot(a)
                pz_actions[a] = self._pz_action(g, acts[g][e, i])
            obs, rew, terminations, truncations, infos = env.step(pz_actions)
            for a, r in rew.items():
                if a in self._where:
                    g, i = self._where[a]
                    self._reward[g][e, i] = r
            self._load_env(e, obs, infos, env.agents)
            if not env.agents:  # every agent is gone: the episode ended
                last = list(terminations) or list(truncations)
                trunc[e] = any(truncations.get(a, False) and not terminations.get(a, False) for a in last)
                term[e] = not trunc[e]
                final_obs[e] = {g: o[e].copy() for g, o in self._obs.items()}
                if self.need_state and self.spec.state_dim > 0:
                    final_state[e] = self._final_state_np(e)
                obs, infos = env.reset(seed=None)
                self._load_env(e, obs, infos, env.agents)
        out = {"obs": _copy(self._obs), "reward": _copy(self._reward), "terminated": term, "truncated": trunc,
               "final_obs": None, "final_state": None,
               "action_mask": _copy(self._mask) if self._mask is not None else None, "alive": _copy(self._alive)}
        if final_obs:
            fin = _copy(self._obs)
            for e, rows in final_obs.items():
                for g in fin:
                    fin[g][e] = rows[g]
            out["final_obs"] = fin
            if self.need_state and self.spec.state_dim > 0:
                out["final_state"] = np.stack([final_state[e] if e in final_state else self._state_np(e)
                                               for e in range(E)])
        out["state"] = self._state_or_none()
        return out

    def state_array(self) -> np.ndarray:
        """(E, state_dim) float32 numpy: each env's ``state()`` flattened."""
        if self.spec.state_dim == 0:
            raise RuntimeError(f"{self.spec.env_id}: the PettingZoo env does not implement state(), so this "
                               "env has no global state (spec.state_dim == 0); use a critic over the "
                               "concatenated observations instead")
        return np.stack([self._state_np(e) for e in range(self.num_envs)])

    def _state_or_none(self) -> np.ndarray | None:
        """The state now, for the learners that read it every step (``need_state``), sent along with a
        worker's step so that ``state()`` costs no second round trip."""
        if not (self.send_state and self.need_state and self.spec.state_dim > 0):
            return None
        try:
            return self.state_array()
        except Exception:  # noqa: BLE001 (state() raises it again when it is asked for)
            return None

    # -- API -------------------------------------------------------------------
    def reset(self, seed: int | None = None, mask: Tensor | None = None) -> TimeStep:
        """Reset all envs, or those where ``mask`` (E,) bool is True; env ``i``
        gets seed ``sub_seed(seed, i)`` (None: its RNG continues)."""
        idx = None
        if mask is not None:
            idx = torch.nonzero(reset_mask(mask, self.num_envs, torch.device('cpu'))).reshape(-1).tolist()
        return arrays_to_timestep(self.reset_arrays(seed, idx), self.device)

    def step(self, actions: dict[str, Tensor]) -> TimeStep:
        """Step every env (a Python loop); auto-resets the envs whose episode ended."""
        require_reset(self)
        validate_actions(self.spec, actions, self.num_envs, self.device)
        return arrays_to_timestep(self.step_arrays(actions_to_numpy(actions)), self.device)

    def _pz_action(self, g: str, a: np.ndarray) -> Any:
        spec = self.spec.groups[g]
        if spec.discrete:
            return int(a) + self._act_start[g]
        space = self.envs[0].action_space(spec.agents[0])
        return np.asarray(a, dtype=space.dtype).reshape(space.shape)

    def state(self) -> Tensor:
        """(E, state_dim) float32: each env's ``state()`` flattened."""
        return torch.from_numpy(self.state_array()).to(self.device)

    def render(self, env_index: int = 0) -> np.ndarray:
        """RGB array (H, W, 3) uint8 of env ``env_index`` (its ``render()``)."""
        if not 0 <= env_index < self.num_envs:
            raise IndexError(f"env_index {env_index} out of range for num_envs={self.num_envs}")
        frame = self.envs[env_index].render()
        if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[-1] != 3:
            raise RuntimeError(f"{self.spec.env_id}: render() returned {type(frame).__name__}, not an RGB array; "
                               "create the env with render_mode='rgb_array' in env_fn")
        return frame.astype(np.uint8, copy=False)

    def close(self) -> None:
        for env in self.envs:
            env.close()


def from_pettingzoo(env_fn: Callable[[], Any], num_envs: int, device: str | torch.device = "cpu",
                    seed: int | None = None, group_fn: Callable[[str], str] | None = None,
                    need_state: bool = True, teams: tuple[tuple[str, ...], ...] | None = None,
                    backend: str = "inprocess", num_workers: int | None = None,
                    **worker_options: Any) -> PettingZooVecEnv | WorkerVecEnv:
    """Batched fastmarl env over ``num_envs`` copies of a PettingZoo env.

    Args:
        env_fn: factory of a PettingZoo ``ParallelEnv`` or ``AECEnv`` (AEC envs are
            converted with ``aec_to_parallel``, or ``turn_based_aec_to_parallel``
            for turn-based games that are not parallelizable).
        num_envs: number of copies (E).
        device: torch device of every returned tensor.
        seed: env ``i`` is first reset with ``sub_seed(seed, i)``.
        group_fn: agent name -> group name; default: the name without ``_<index>``.
        need_state: fill ``final_state`` from the finished env's ``state()`` (False for
            learners that never read the state: IPPO, IQL, VDN).
        teams: the groups that share an objective (``EnvSpec.teams``), e.g.
            ``(("adversary",), ("agent",))`` for mpe2's simple_tag; PettingZoo does not say,
            so the default (None) is one team: returns then average over every agent.
        backend: ``"inprocess"`` (the envs stepped in a Python loop in this process),
            ``"process"`` (``num_workers`` subprocesses on this machine) or ``"ray"``
            (``num_workers`` Ray actors; needs ``pip install 'fastmarl[ray]'``), each stepping its
            share of the envs: same API, same trajectories for the same seeds
            (:mod:`fastmarl.envs.workers`; ``env_fn`` and ``group_fn`` are sent with cloudpickle).
        num_workers: workers of the process and ray backends (default: one per CPU core, at
            most ``num_envs``).
        worker_options: ``max_restarts``, ``ray_options`` of
            :class:`~fastmarl.envs.workers.WorkerVecEnv`.

    See :class:`PettingZooVecEnv` for masks, dead agents and episode ends.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {list(BACKENDS)}, got {backend!r}")
    if backend == "inprocess":
        if num_workers is not None or worker_options:
            given = (["num_workers"] if num_workers is not None else []) + sorted(worker_options)
            raise ValueError(f"{given} configure the process and ray backends; backend='inprocess' has no workers")
        return PettingZooVecEnv(env_fn, num_envs, device=device, seed=seed, group_fn=group_fn,
                                need_state=need_state, teams=teams)
    make_shard = functools.partial(PettingZooVecEnv, env_fn, device="cpu", group_fn=group_fn, need_state=need_state,
                                   teams=teams)
    return WorkerVecEnv(make_shard, num_envs, device=device, seed=seed, need_state=need_state, backend=backend,
                        num_workers=num_workers, **worker_options)
