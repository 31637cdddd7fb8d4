"""Batched multi-agent particle physics and the generic MPE env.

A scenario (one file per task in this package) declares its entities with a
:class:`WorldDef`, and supplies batched ``reset``, ``observations``, ``rewards``
and (optionally) ``terminal`` functions over an :class:`MPEState`. This module
owns everything the scenarios share: action decoding, physics, auto-reset,
validation, the global state and rendering.

Entity order follows mpe2: agents first (in agent order), then landmarks.
Shapes: ``E`` envs, ``A`` agents, ``L`` landmarks, ``N = A + L`` entities,
``C`` = communication dim.

Physics (facts from mpe2's ``core.py``, re-expressed over stacked tensors):
action force ``u * accel`` (accel defaults to 5), soft contact forces between
colliding entities ``contact_force * (p_a - p_b) / |p_a - p_b| * softplus(-(d - d_min)/k) * k``,
then for movable entities: ``pos += vel * dt``; ``vel *= 1 - damping``;
``vel += force / mass * dt``; speed clipped to ``max_speed``. Note the position
update uses the velocity from *before* the force is applied, as mpe2 does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple, Protocol

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from fastmarl.envs.api import (
    ActionError,
    EnvSpec,
    GroupSpec,
    TimeStep,
    action_limits,
    action_range_violations,
    check_action_structure,
    check_known_keys,
    reset_mask,
    validate_actions,
)
from fastmarl.envs.mpe.aot import aot_advance
from fastmarl.envs.mpe.geometry import MOVES, N_MOVES, norm2, others_index
from fastmarl.envs.mpe.render import draw_discs

DIM_P = 2
# below this many envs the re-layout costs more than the vectorization gains (measured)
ENV_LAST_MIN_ENVS = 64


@dataclass
class WorldDef:
    """Static entity table of a scenario, one entry per entity (agents first).

    ``agent_names`` name agents as mpe2 does; the group of an agent is its name
    without the trailing ``_<index>`` (``adversary_2`` -> ``adversary``).
    Per-agent lists have A entries, per-entity lists N = A + L entries.
    """

    agent_names: list[str]
    landmark_names: list[str]
    size: list[float]  # N
    movable: list[bool]  # N
    collide: list[bool]  # N
    color: list[tuple[float, float, float]]  # N, in [0, 1]
    silent: list[bool]  # A
    dim_c: int = 0
    mass: list[float] | None = None  # N, default 1
    max_speed: list[float | None] | None = None  # N, None = unlimited
    accel: list[float | None] | None = None  # A, None = 5.0 (mpe2's sensitivity)
    dt: float = 0.1
    damping: float = 0.25
    contact_force: float = 1e2
    contact_margin: float = 1e-3


class MPEState(NamedTuple):
    """Batched world state (every tensor leads with E)."""

    pos: Tensor  # (E, N, 2) positions of all entities
    vel: Tensor  # (E, N, 2) velocities
    comm: Tensor  # (E, A, C) communication state (what each agent is saying)
    t: Tensor  # (E,) int64 steps taken in the current episode
    extra: dict[str, Tensor]  # scenario-specific state, each (E, ...)
    # Optional keys of ``extra`` read by the core: ``"accel"`` (E, A) and
    # ``"max_speed"`` (E, N) override WorldDef.accel / WorldDef.max_speed per env
    # (e.g. simple_tag's curriculum, which changes prey speed at each env's reset).


def group_of_name(agent_name: str) -> str:
    head, _, tail = agent_name.rpartition("_")
    return head if head and tail.isdigit() else agent_name


class World:
    """Constants of a scenario as tensors on the env device, plus helpers."""

    def __init__(self, wd: WorldDef, device: torch.device, dtype: torch.dtype):
        A, L = len(wd.agent_names), len(wd.landmark_names)
        N = A + L
        for name, lst, n in [("size", wd.size, N), ("movable", wd.movable, N), ("collide", wd.collide, N),
                             ("color", wd.color, N), ("silent", wd.silent, A)]:
            if len(lst) != n:
                raise ValueError(f"WorldDef.{name} has {len(lst)} entries, expected {n}")
        self.wd = wd
        self.A, self.L, self.N, self.C = A, L, N, wd.dim_c
        self.device, self.dtype = device, dtype
        f = dict(device=device, dtype=dtype)
        self.size = torch.tensor(wd.size, **f)
        self.movable = torch.tensor(wd.movable, device=device)
        mass = wd.mass or [1.0] * N
        self.inv_mass = 1.0 / torch.tensor(mass, **f)
        max_speed = wd.max_speed or [None] * N
        self.has_max_speed = any(m is not None for m in max_speed)
        self.max_speed = torch.tensor([math.inf if m is None else m for m in max_speed], **f)
        accel = wd.accel or [None] * A
        self.accel = torch.tensor([5.0 if a is None else a for a in accel], **f)
        self.silent = torch.tensor(wd.silent, device=device)
        self.agent_movable = self.movable[:A]
        self.moves = torch.tensor(MOVES, **f)
        self.symbols = torch.arange(wd.dim_c, device=device)  # message symbols 0..C-1
        self.color = torch.tensor(wd.color, **f)
        self.dt, self.damping = wd.dt, wd.damping
        self.contact_force, self.contact_margin = wd.contact_force, wd.contact_margin
        # Contact pairs: colliding entities a < b where at least one of them moves
        # (forces on immovable entities are never used). Each pair is computed
        # once; the force on b is minus the force on a, as in mpe2.
        pairs = [(a, b) for a in range(N) for b in range(a + 1, N)
                 if wd.collide[a] and wd.collide[b] and (wd.movable[a] or wd.movable[b])]
        self.n_pairs = len(pairs)
        self.pair_a = torch.tensor([p[0] for p in pairs], device=device, dtype=torch.long)
        self.pair_b = torch.tensor([p[1] for p in pairs], device=device, dtype=torch.long)
        self.pair_dist_min = self.size[self.pair_a] + self.size[self.pair_b] if pairs else self.size[:0]
        # (P, N) signed incidence: +1 on a, -1 on b, 0 for immovable entities
        inc = torch.zeros(len(pairs), N, **f)
        for p, (a, b) in enumerate(pairs):
            inc[p, a] = 1.0 if wd.movable[a] else 0.0
            inc[p, b] = -1.0 if wd.movable[b] else 0.0
        self.pair_incidence = inc
        # Dense form used by compiled steps: all ordered pairs of colliders.
        col = [i for i in range(N) if wd.collide[i]]
        self.n_col = len(col)
        self.col_slice = slice(col[0], col[-1] + 1) if col and col == list(range(col[0], col[-1] + 1)) else None
        self.col_idx = torch.tensor(col, device=device, dtype=torch.long)
        self.pair_mask = (~torch.eye(len(col), dtype=torch.bool, device=device))[None, :, :, None]  # (1, nc, nc, 1)
        size_c = self.size[self.col_idx]
        self.col_dist_min = size_c[:, None] + size_c[None, :]
        self.col_movable = self.movable[self.col_idx][None, :, None]
        self.any_immovable_agent = not all(wd.movable[:A])
        # Movable landmarks are rare (none in the mpe2 suite); the fast path skips them.
        self.movable_landmarks = any(wd.movable[A:])
        self.all_agents_silent = all(wd.silent)
        # index helpers for "every other agent" observations and pairwise rewards
        self.others = others_index(A, device)  # (A, A-1)
        self.agent_rows = torch.arange(A, device=device)[:, None]  # (A, 1)
        self.offdiag = ~torch.eye(A, dtype=torch.bool, device=device)  # (A, A)


def reset_entities(s: MPEState, mask: Tensor, pos: Tensor, extra: dict[str, Tensor] | None = None) -> MPEState:
    """State whose envs in ``mask`` (E,) start over at ``pos`` (E, N, 2), at rest and
    silent; other envs keep ``s``. ``extra`` replaces ``s.extra`` if given."""
    m = mask[:, None, None]
    return MPEState(torch.where(m, pos, s.pos), torch.where(m, 0.0, s.vel), torch.where(m, 0.0, s.comm), s.t,
                    s.extra if extra is None else extra)


def entity_pos(s: MPEState, index: Tensor) -> Tensor:
    """(E, 2) position of entity ``index[e]`` (E,) long in each env."""
    return torch.gather(s.pos, 1, index[:, None, None].expand(-1, 1, 2))[:, 0]


class Scenario(Protocol):
    """What a scenario file provides. All functions are batched over envs."""

    env_id: str
    max_cycles: int

    def world_def(self) -> WorldDef: ...

    def reset(self, w: World, s: MPEState, mask: Tensor, gen: torch.Generator) -> MPEState:
        """New state where ``mask`` (E,) is True; other envs keep ``s``."""
        ...

    def observations(self, w: World, s: MPEState) -> dict[str, Tensor]:
        """group -> (E, A_g, obs_dim_g)."""
        ...

    def rewards(self, w: World, s: MPEState) -> Tensor:
        """(E, A) per-agent reward, local/global mixing already applied."""
        ...

    def terminal(self, w: World, s: MPEState) -> Tensor | None:
        """(E,) bool early termination, or None if the task never terminates."""
        ...

    # optional: ``global_state(s) -> (E, state_dim)`` replaces the default state
    # (all observations concatenated) for centralized critics


def physics_step(w: World, s: MPEState, u: Tensor) -> tuple[Tensor, Tensor]:
    """One integration step; u (E, A, 2) action forces. Returns new (pos, vel)."""
    pos, vel = s.pos, s.vel
    A = w.A
    force_agents, force_lm = u, None
    if torch.compiler.is_compiling() and w.n_col > 1:
        # Compiled: every ordered pair of colliders, as one dense block that
        # inductor fuses and vectorizes (measured 2x faster here than the pair
        # list, whose gathers and per-entity sums it does not vectorize).
        pc = pos[:, w.col_slice] if w.col_slice is not None else pos[:, w.col_idx]
        delta = pc[:, :, None, :] - pc[:, None, :, :]  # (E, nc, nc, 2): p_a - p_b
        dist = norm2(delta)
        k = w.contact_margin
        pen = torch.nn.functional.softplus(-(dist - w.col_dist_min) / k) * k
        f = w.contact_force * delta / dist[..., None] * pen[..., None]
        f = torch.where(w.pair_mask, f, 0.0).sum(2)  # (E, nc, 2) total contact force on each
        f = torch.where(w.col_movable, f, 0.0)
        if w.col_slice is not None and w.col_slice == slice(0, A):
            force_agents = u + f  # the common case: only agents collide
        else:
            full = torch.zeros_like(pos)
            full[:, w.col_idx] = f
            force_agents = u + full[:, :A]
            force_lm = full[:, A:]
    elif w.n_pairs:
        # Eager: each contact pair once (half the work of all ordered pairs, and
        # none between two immovable entities), summed per entity by one matmul.
        delta = pos[:, w.pair_a] - pos[:, w.pair_b]  # (E, P, 2): p_a - p_b
        dist = norm2(delta)
        k = w.contact_margin
        pen = torch.nn.functional.softplus(-(dist - w.pair_dist_min) / k) * k
        f = w.contact_force * delta / dist[..., None] * pen[..., None]  # force on a; b gets -f
        full = torch.einsum("epd,pn->end", f, w.pair_incidence)  # (E, N, 2) total contact force
        force_agents = u + full[:, :A]
        force_lm = full[:, A:]
    # integrate agents (and movable landmarks, if any)
    max_speed = s.extra.get("max_speed")  # optional per-env override (E, N)
    new_pos_a, new_vel_a = _integrate(w, pos[:, :A], vel[:, :A], force_agents, slice(0, A), max_speed)
    if w.any_immovable_agent:
        m = w.agent_movable[None, :, None]
        new_pos_a = torch.where(m, new_pos_a, pos[:, :A])
        new_vel_a = torch.where(m, new_vel_a, vel[:, :A])
    if w.L == 0:
        return new_pos_a, new_vel_a
    if w.movable_landmarks:
        fl = force_lm if force_lm is not None else torch.zeros_like(pos[:, A:])
        pl, vl = _integrate(w, pos[:, A:], vel[:, A:], fl, slice(A, w.N), max_speed)
        m = w.movable[A:][None, :, None]
        pl, vl = torch.where(m, pl, pos[:, A:]), torch.where(m, vl, vel[:, A:])
    else:
        pl, vl = pos[:, A:], vel[:, A:]
    return torch.cat([new_pos_a, pl], 1), torch.cat([new_vel_a, vl], 1)


def _integrate(w: World, pos: Tensor, vel: Tensor, force: Tensor, ents: slice,
               max_speed: Tensor | None = None) -> tuple[Tensor, Tensor]:
    new_pos = pos + vel * w.dt
    new_vel = vel * (1 - w.damping) + force * w.inv_mass[ents][:, None] * w.dt
    if w.has_max_speed or max_speed is not None:
        ms = w.max_speed[ents] if max_speed is None else max_speed[:, ents]  # (n,) or (E, n)
        speed = norm2(new_vel)
        over = (speed > ms)[..., None]
        new_vel = torch.where(over, new_vel / speed[..., None] * ms[..., None], new_vel)
    return new_pos, new_vel


@dataclass
class _GroupLayout:
    name: str
    start: int
    stop: int
    movable: bool
    silent: bool


class MPEEnv:
    """A batched MPE task: ``num_envs`` copies stepped at once on ``device``.

    See :mod:`fastmarl.envs.api` for the shapes of every returned tensor.
    Action spaces follow mpe2: discrete ``Discrete(5 * C)`` for a movable
    speaking agent (``move + 5 * message``), ``Discrete(5)`` for a silent
    movable one, ``Discrete(C)`` for an immovable speaker; continuous
    ``Box(0, 1, (5 + C,))`` where the force is ``(a[2] - a[1], a[4] - a[3]) * accel``
    and the message is ``a[5:]``.

    ``compile``: False runs the step eagerly; True wraps the whole pure step in
    ``torch.compile`` (inductor); ``"aot"`` compiles it ahead of time with
    AOTInductor and calls the library without dynamo's per-call overhead
    (CPU; see :mod:`fastmarl.envs.mpe.aot`).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(
        self,
        scenario: Scenario,
        num_envs: int = 1,
        device: str | torch.device = "cpu",
        seed: int | None = None,
        continuous_actions: bool = False,
        dtype: torch.dtype = torch.float32,
        compile: bool | str = False,
        validate: bool = True,
        render_mode: str | None = None,
        dynamic_rescaling: bool = True,
    ):
        if not isinstance(num_envs, int) or isinstance(num_envs, bool) or num_envs < 1:
            raise ValueError(f"num_envs must be a positive int, got {num_envs!r}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode {render_mode!r} is not supported: use None or 'rgb_array' (render() returns an RGB array)")
        if compile not in (False, True, "aot"):
            raise ValueError(f"compile must be False, True (torch.compile) or 'aot' (ahead-of-time, CPU), got {compile!r}")
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
        self.scenario = scenario
        self.num_envs = num_envs
        self.device = torch.empty(0, device=device).device  # "cuda" -> "cuda:0", as tensors report it
        self.dtype = dtype
        self.continuous_actions = bool(continuous_actions)
        self.validate = validate
        self.render_mode = render_mode
        self.dynamic_rescaling = dynamic_rescaling
        self.max_cycles = scenario.max_cycles
        wd = scenario.world_def()
        self.world = w = World(wd, self.device, dtype)
        self._layout = self._group_layout(wd)
        self._gen = torch.Generator(device=self.device)
        self._gen.manual_seed(seed if seed is not None else int(torch.randint(0, 2**62, (1,)).item()))
        E = num_envs
        z = torch.zeros(E, w.N, DIM_P, device=self.device, dtype=dtype)
        blank = MPEState(z, z.clone(), torch.zeros(E, w.A, w.C, device=self.device, dtype=dtype),
                         torch.zeros(E, dtype=torch.long, device=self.device), {})
        self._state = scenario.reset(w, blank, torch.ones(E, dtype=torch.bool, device=self.device), self._gen)
        self._cam_range0 = _cam_range(self._state.pos)  # (E,) the camera range at each episode's start (render)
        self._obs = obs = scenario.observations(w, self._state)
        self.spec = self._make_spec(obs)
        self._limits = action_limits(self.spec)
        # Compiled steps keep the state with the env axis innermost in memory (tensors
        # still index as (E, ...)): inductor then vectorizes its loops over envs
        # instead of over the tiny agent/xy axes, about 2x faster at 8192 envs.
        self._env_last = bool(compile) and num_envs >= ENV_LAST_MIN_ENVS
        # On CPU the re-layout fuses into the compiled step (saves ~15 us a step at
        # 64 envs); torch 2.11's CUDA path rejected that graph, so there it runs after.
        self._store_in_graph = self._env_last and self.device.type == "cpu"
        self._state = self._store(self._state)
        if compile == "aot":
            self._advance_fn = aot_advance(self)
        elif compile:
            self._advance_fn = torch.compile(self._advance, dynamic=False, fullgraph=True,
                                             options={"cpp_wrapper": True})
        else:
            self._advance_fn = self._advance

    # -- spec -----------------------------------------------------------------
    @staticmethod
    def _group_layout(wd: WorldDef) -> list[_GroupLayout]:
        layout: list[_GroupLayout] = []
        for i, name in enumerate(wd.agent_names):
            g = group_of_name(name)
            if layout and layout[-1].name == g:
                layout[-1].stop = i + 1
                if (wd.movable[i], wd.silent[i]) != (layout[-1].movable, layout[-1].silent):
                    raise ValueError(f"agents of group {g!r} differ in movable/silent; give them different names")
            else:
                if any(l.name == g for l in layout):
                    raise ValueError(f"agents of group {g!r} are not contiguous in agent order")
                layout.append(_GroupLayout(g, i, i + 1, wd.movable[i], wd.silent[i]))
        return layout

    def _action_space(self, lay: _GroupLayout) -> gym.spaces.Space:
        C = self.world.C
        if self.continuous_actions:
            dim = (N_MOVES if lay.movable else 0) + (0 if lay.silent else C)
            return gym.spaces.Box(low=0.0, high=1.0, shape=(dim,), dtype=np.float32)
        n = N_MOVES if lay.movable else 1
        if not lay.silent:
            n *= C
        return gym.spaces.Discrete(n)

    def _make_spec(self, obs: dict[str, Tensor]) -> EnvSpec:
        wd = self.world.wd
        groups = {}
        state_dim = 0
        for lay in self._layout:
            o = obs[lay.name]
            odim = o.shape[-1]
            state_dim += odim * (lay.stop - lay.start)
            groups[lay.name] = GroupSpec(
                name=lay.name,
                agents=tuple(wd.agent_names[lay.start:lay.stop]),
                observation_space=gym.spaces.Box(-np.inf, np.inf, shape=(odim,), dtype=np.float32),
                action_space=self._action_space(lay),
            )
        if hasattr(self.scenario, "global_state"):
            state_dim = int(self.scenario.global_state(self._state).shape[-1])
        return EnvSpec(env_id=self.scenario.env_id, groups=groups, state_dim=state_dim,
                       max_episode_steps=self.max_cycles)

    # -- actions --------------------------------------------------------------
    def _decode(self, actions: dict[str, Tensor], accel_all: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Group actions -> (u (E, A, 2) forces, c (E, A, C) messages).

        ``accel_all`` (E, A), optional, overrides the world's per-agent accel per env."""
        w = self.world
        us, cs = [], []
        for lay in self._layout:
            a = actions[lay.name]
            n = lay.stop - lay.start
            # (A_g, 1), or (E, A_g, 1) when the scenario sets a per-env "accel" in extra
            accel = (w.accel if accel_all is None else accel_all)[..., lay.start:lay.stop, None]
            if self.continuous_actions:
                if lay.movable:
                    # the differences are taken in the action's own dtype, as mpe2 does
                    u = torch.stack([a[..., 2] - a[..., 1], a[..., 4] - a[..., 3]], -1).to(self.dtype) * accel
                    msg = a[..., N_MOVES:]
                else:
                    u = w.moves.new_zeros(a.shape[0], n, DIM_P)
                    msg = a
                c = msg.to(self.dtype) if not lay.silent else w.moves.new_zeros(a.shape[0], n, w.C)
            else:
                a = a.long()
                if lay.movable:
                    u = w.moves[a % N_MOVES] * accel
                    msg_idx = a // N_MOVES
                else:
                    u = w.moves.new_zeros(a.shape[0], n, DIM_P)
                    msg_idx = a
                if lay.silent:
                    c = w.moves.new_zeros(a.shape[0], n, w.C)
                else:
                    # one-hot by comparison: no range check here (invalid actions are
                    # reported after the pure step, before anything is committed)
                    c = (msg_idx[..., None] == w.symbols).to(self.dtype)
            us.append(u)
            cs.append(c)
        if len(us) == 1:
            return us[0], cs[0]
        return torch.cat(us, 1), torch.cat(cs, 1)

    # -- stepping -------------------------------------------------------------
    def _advance(self, s: MPEState, actions: dict[str, Tensor]):
        """Pure step: action decoding, physics, messages, rewards, termination,
        observations (one function, so ``torch.compile`` can fuse all of it)."""
        w, sc = self.world, self.scenario
        u, c = self._decode(actions, s.extra.get("accel"))
        pos, vel = physics_step(w, s, u)
        comm = c if not w.all_agents_silent else s.comm
        s = MPEState(pos, vel, comm, s.t + 1, s.extra)
        s = self._post_physics(s)
        rew = sc.rewards(w, s)
        term = sc.terminal(w, s)
        trunc = s.t >= self.max_cycles
        if term is None:
            term = torch.zeros_like(trunc)
        else:
            term = term & ~trunc  # mpe2 reports truncation, not termination, at the limit
        obs = sc.observations(w, s)
        invalid = action_range_violations(self._limits, actions) if self.validate else torch.zeros((), dtype=torch.bool,
                                                                                                  device=trunc.device)
        if self._store_in_graph:
            s = self._store(s)
        return s, rew, term, trunc, obs, torch.stack([invalid, (term | trunc).any()])

    def _store(self, s: MPEState) -> MPEState:
        """Store pos/vel/comm env-innermost in compile mode (see __init__); no-op in eager."""
        if not self._env_last:
            return s
        return s._replace(pos=_env_innermost(s.pos), vel=_env_innermost(s.vel), comm=_env_innermost(s.comm))

    def _post_physics(self, s: MPEState) -> MPEState:
        hook = getattr(self.scenario, "post_physics", None)
        return hook(self.world, s) if hook is not None else s

    def step(self, actions: dict[str, Tensor]) -> TimeStep:
        """Step every env; see :mod:`fastmarl.envs.api`. Invalid actions raise ActionError
        before anything changes."""
        if self.validate:
            check_action_structure(self.spec, actions, self.num_envs, self.device)
        s, rew, term, trunc, obs, flags = self._advance_fn(self._state, actions)
        # one device sync for both questions: any invalid action? any episode ended?
        invalid, any_done = flags.tolist()
        if invalid:
            # the step is pure: nothing was committed; explain the problem precisely
            validate_actions(self.spec, actions, self.num_envs, self.device)
            raise ActionError("actions out of range")  # unreachable unless the two checks disagree
        if not self._store_in_graph:
            s = self._store(s)
        rewards = self._split(rew)
        done = term | trunc
        final_obs, final_state = obs, None
        if any_done:
            final_state = self._global_state(s, obs)
            s = self.scenario.reset(self.world, s._replace(t=torch.where(done, 0, s.t)), done, self._gen)
            if self.dynamic_rescaling:
                self._cam_range0 = torch.where(done, _cam_range(s.pos), self._cam_range0)
            obs = self.scenario.observations(self.world, s)
            s = self._store(s)
        self._state = s
        self._obs = obs
        return TimeStep(obs=obs, reward=rewards, terminated=term, truncated=trunc,
                        final_obs=final_obs, final_state=final_state)

    def _split(self, per_agent: Tensor) -> dict[str, Tensor]:
        return {lay.name: per_agent[:, lay.start:lay.stop] for lay in self._layout}

    def reset(self, seed: int | None = None, mask: Tensor | None = None) -> TimeStep:
        """Reset all envs, or those where ``mask`` (E,) bool is True. ``seed``
        re-seeds the env's generator first (same seed -> same trajectory)."""
        if seed is not None:
            self._gen.manual_seed(int(seed))
        E = self.num_envs
        mask = reset_mask(mask, E, self.device)
        s = self._state
        s = self.scenario.reset(self.world, s._replace(t=torch.where(mask, 0, s.t)), mask, self._gen)
        self._cam_range0 = torch.where(mask, _cam_range(s.pos), self._cam_range0)
        self._state = s = self._store(s)
        obs = self.scenario.observations(self.world, s)
        self._obs = obs
        zeros = torch.zeros(E, self.world.A, device=self.device, dtype=self.dtype)
        f = torch.zeros(E, dtype=torch.bool, device=self.device)
        return TimeStep(obs=obs, reward=self._split(zeros), terminated=f, truncated=f.clone(), final_obs=obs)

    def _global_state(self, s: MPEState, obs: dict[str, Tensor]) -> Tensor:
        # a scenario may define its own global state (e.g. true positions under
        # partial observability); by default it is mpe2's: all observations
        fn = getattr(self.scenario, "global_state", None)
        if fn is not None:
            return fn(s)
        return torch.cat([o.flatten(1) for o in obs.values()], 1) if len(obs) > 1 else next(iter(obs.values())).flatten(1)

    def state(self) -> Tensor:
        """(E, state_dim): the scenario's ``global_state(s)`` if it defines one, else
        every agent's observation concatenated in agent order, as mpe2's ``state()``."""
        return self._global_state(self._state, self._obs)

    def observations(self) -> dict[str, Tensor]:
        """Current observations, group -> (E, A_g, obs_dim_g)."""
        return self._obs

    # -- curriculum (scenarios that support it: simple_spread, simple_tag) ----
    def _curriculum_scenario(self):
        if not getattr(self.scenario, "curriculum", False):
            raise AttributeError(f"{self.spec.env_id}: curriculum is off; create the env with curriculum=True")
        return self.scenario

    @property
    def curriculum_stage(self) -> int:
        return self._curriculum_scenario().curriculum_stage

    def advance_curriculum(self) -> None:
        """Move to the next curriculum stage (no-op at the last one)."""
        self._curriculum_scenario().advance_curriculum()

    def set_curriculum_stage(self, stage: int) -> None:
        """Jump to a curriculum stage (clamped to the valid range)."""
        self._curriculum_scenario().set_curriculum_stage(stage)

    # -- checkpoints (the SavableEnv protocol of fastmarl.envs.api) -------------
    def state_dict(self) -> dict[str, Any]:
        """Copies of the world state, the generator's state and, with a curriculum, its stage."""
        s = {"world": _map_tensors(self._state._asdict(), Tensor.clone), "generator": self._gen.get_state()}
        if getattr(self.scenario, "curriculum", False):
            s["curriculum_stage"] = self.scenario.curriculum_stage
        return s

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Inverse of :meth:`state_dict`; ValueError (nothing changed) when the shapes or the curriculum differ."""
        if "curriculum_stage" in state and not getattr(self.scenario, "curriculum", False):
            raise ValueError(f"{self.spec.env_id}: the saved state has a curriculum stage, this env has no "
                             "curriculum; create it with curriculum=True")
        world = _map_tensors(state["world"], lambda t: t.to(self.device))
        self.set_world_state(self._state._replace(**world))
        self._gen.set_state(state["generator"])
        if "curriculum_stage" in state:
            self.set_curriculum_stage(state["curriculum_stage"])

    # -- direct state access (parity tests, scripted policies) ----------------
    @property
    def world_state(self) -> MPEState:
        return self._state

    def set_world_state(self, s: MPEState) -> None:
        """Replace the world state (shapes as in MPEState); recomputes observations."""
        cur = self._state
        for name in ("pos", "vel", "comm", "t"):
            a, b = getattr(s, name), getattr(cur, name)
            if a.shape != b.shape:
                raise ValueError(f"state.{name}: expected shape {tuple(b.shape)}, got {tuple(a.shape)}")
        self._state = self._store(s)
        self._cam_range0 = torch.where(s.t == 0, _cam_range(s.pos), self._cam_range0)  # envs set to a start
        self._obs = self.scenario.observations(self.world, s)

    # -- rendering ------------------------------------------------------------
    def render(self, env_index: int = 0, size: int = 700) -> np.ndarray:
        """RGB array (size, size, 3) uint8 of env ``env_index``: entities as
        discs (mpe2's colours and 350 px per unit of size), centred like mpe2's camera.

        With ``dynamic_rescaling`` (mpe2's default) the discs zoom with the camera
        as mpe2's do: radii scaled by ``0.9 * range at the episode's start / range
        now``, a range being the largest absolute coordinate of any entity."""
        if not 0 <= env_index < self.num_envs:
            raise IndexError(f"env_index {env_index} out of range for num_envs={self.num_envs}")
        w, s = self.world, self._state
        colors = s.extra.get("color")
        colors = colors[env_index] if colors is not None else w.color
        zoom = 1.0
        if self.dynamic_rescaling:
            zoom = 0.9 * float(self._cam_range0[env_index]) / max(float(s.pos[env_index].abs().max()), 1e-6)
        return draw_discs(s.pos[env_index], colors, w.size, w.A, size, zoom)

    def close(self) -> None:
        pass


def _cam_range(pos: Tensor) -> Tensor:
    """pos (E, N, 2) -> (E,): mpe2's camera range, the largest absolute coordinate of any entity."""
    return pos.detach().abs().amax((1, 2))


def _env_innermost(x: Tensor) -> Tensor:
    """Same values and shape (E, ...), stored with the env axis innermost."""
    if x.dim() < 2 or x.shape[0] == 1 or x.stride(0) == 1:
        return x
    perm = list(range(1, x.dim())) + [0]
    inv = [x.dim() - 1] + list(range(x.dim() - 1))
    return x.permute(*perm).contiguous().permute(*inv)


def _map_tensors(x: Any, fn: Callable[[Tensor], Tensor]) -> Any:
    """``fn`` applied to every tensor in nested dicts (a world state's ``extra``); other values as they are."""
    if isinstance(x, Tensor):
        return fn(x)
    if isinstance(x, dict):
        return {k: _map_tensors(v, fn) for k, v in x.items()}
    return x


def check_kwargs(env_id: str, given: dict[str, Any], allowed: dict[str, Any]) -> dict[str, Any]:
    """Merge ``given`` over ``allowed`` defaults; an unknown key is a TypeError (as for any
    unexpected keyword argument) naming it with the closest accepted one."""
    check_known_keys(given, allowed, f"{env_id} keyword argument", TypeError)
    return {**allowed, **given}


__all__ = [
    "WorldDef", "MPEState", "World", "MPEEnv", "Scenario", "physics_step", "reset_entities", "entity_pos",
    "check_kwargs", "group_of_name",
]
