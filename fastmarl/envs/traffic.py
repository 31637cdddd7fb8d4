"""traffic_grid_v0: a rows x cols grid of signalised intersections (a queue model).

Every intersection is an agent of group ``"signal"`` (``signal_{r * cols + c}``).
Each has four incoming approaches, indexed by where vehicles come from:
0 = from the north (travelling south), 1 = from the south (north), 2 = from the
east (west), 3 = from the west (east). Vehicles drive straight through; the
downstream link of approach d at (r, c) is approach d of the next intersection
in the travel direction, or the far boundary (the vehicle leaves).

Per step, in every env and intersection at once:
1. The chosen phase applies: 0 = N-S green (approaches 0, 1), 1 = E-W green (2, 3).
   A step in which the phase changes serves nobody there (lost time).
2. Each green approach moves ``min(queue, max_flow, free space downstream)``
   vehicles; free space is ``link_capacity - queue`` of the downstream approach
   *before* the step, so capacity is never exceeded (each approach has one feeder).
3. Vehicles arrive at every boundary entry approach with probability
   ``arrival_rate`` (Bernoulli), if it is not full (blocked ones never enter).

Queues are integers: vehicles are created only by arrivals and removed only by
departures at the far boundary, so ``queues.sum() == arrived - departed`` exactly
(per episode; ``arrived`` / ``departed`` are attributes, (E,) long).

Shapes (E envs, A = rows * cols agents): obs ``{"signal": (E, A, 7)}`` =
``[4 queues / link_capacity, phase one-hot (2), min(time since change, 10) / 10]``;
reward ``(E, A)`` = ``-(local_ratio * local queue + (1 - local_ratio) * mean queue
per intersection)``; actions ``(E, A)`` in {0, 1} (or ``(E, A, 2)`` weights in
[0, 1] with ``continuous_actions``: the phase is their argmax); state ``(E, 7 A)``.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from fastmarl.envs.api import (
    EnvSpec,
    FieldsState,
    GroupSpec,
    TimeStep,
    require_reset,
    reset_mask,
    reset_timestep,
    validate_actions,
)
from fastmarl.envs.mpe.core import check_kwargs

GROUP = "signal"
BASELINE_PERIOD = 4  # the best fixed period at the default settings (swept over 1..15 steps)
BASELINE = (f"fixed-time plan: every signal switches phase every {BASELINE_PERIOD} steps, all in step "
            "(the best period of a sweep at default settings)")
TSC_MAX = 10  # time since phase change is clipped (and normalised) at this many steps
# approaches served by each phase: phase 0 = N-S (0, 1), phase 1 = E-W (2, 3)
_PHASE_SERVES = ((True, True, False, False), (False, False, True, True))


def fixed_time_actions(t: Tensor, period: int, num_agents: int) -> Tensor:
    """Fixed-time plan baseline: every signal shows phase ``(t // period) % 2``.

    t (E,) integer steps into the episode -> actions (E, num_agents) long."""
    return ((t.long() // period) % 2)[:, None].expand(-1, num_agents).contiguous()


def downstream(x: Tensor, fill: float | int) -> Tensor:
    """x (E, R, C, 4) per approach -> (E, R, C, 4): x at each approach's downstream approach
    (``fill`` where the vehicle would leave the grid)."""
    def pad(t: Tensor, dim: int) -> Tensor:
        shape = list(t.shape)
        shape[dim] = 1
        return t.new_full(shape, fill)
    s, n, w, e = x[..., 0], x[..., 1], x[..., 2], x[..., 3]
    return torch.stack([torch.cat([s[:, 1:], pad(s, 1)], 1), torch.cat([pad(n, 1), n[:, :-1]], 1),
                        torch.cat([pad(w, 2), w[:, :, :-1]], 2), torch.cat([e[:, :, 1:], pad(e, 2)], 2)], -1)


def upstream(x: Tensor) -> Tensor:
    """x (E, R, C, 4) -> what each approach receives from its upstream approach (0 at entries)."""
    s, n, w, e = x[..., 0], x[..., 1], x[..., 2], x[..., 3]
    z1, z2 = torch.zeros_like(s[:, :1]), torch.zeros_like(s[:, :, :1])
    return torch.stack([torch.cat([z1, s[:, :-1]], 1), torch.cat([n[:, 1:], z1], 1),
                        torch.cat([w[:, :, 1:], z2], 2), torch.cat([z2, e[:, :, :-1]], 2)], -1)


def exits(x: Tensor) -> Tensor:
    """(E,) sum of x (E, R, C, 4) over the approaches whose downstream is outside the grid."""
    return x[:, -1, :, 0].sum(1) + x[:, 0, :, 1].sum(1) + x[:, :, 0, 2].sum(1) + x[:, :, -1, 3].sum(1)


def entry_mask(rows: int, cols: int, device: torch.device) -> Tensor:
    """(R, C, 4) bool: approaches fed from outside the grid."""
    m = torch.zeros(rows, cols, 4, dtype=torch.bool, device=device)
    m[0, :, 0] = m[-1, :, 1] = m[:, -1, 2] = m[:, 0, 3] = True
    return m


class TrafficGrid(FieldsState):
    """``num_envs`` copies of a rows x cols signal grid; see the module docstring."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}
    _STATE = ("queues", "phase", "since_change", "t", "arrived", "departed")

    def __init__(self, num_envs: int = 1, device: str | torch.device = "cpu", seed: int | None = None, rows: int = 2,
                 cols: int = 2, arrival_rate: float = 0.3, max_flow: int = 2, link_capacity: int = 20,
                 episode_length: int = 100, local_ratio: float = 1.0, continuous_actions: bool = False,
                 dtype: torch.dtype = torch.float32, validate: bool = True, render_mode: str | None = None):
        env_id = self.env_id = "traffic_grid_v0"
        for name, v in (("num_envs", num_envs), ("rows", rows), ("cols", cols), ("max_flow", max_flow),
                        ("link_capacity", link_capacity), ("episode_length", episode_length)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{env_id}: {name} must be a positive int, got {v!r}")
        if not isinstance(arrival_rate, (int, float)) or not 0.0 <= arrival_rate <= 1.0:
            raise ValueError(f"{env_id}: arrival_rate is a per-step probability in [0, 1], got {arrival_rate!r}")
        if not isinstance(local_ratio, (int, float)) or not 0.0 <= local_ratio <= 1.0:
            raise ValueError(f"{env_id}: local_ratio must be in [0, 1], got {local_ratio!r}")
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode {render_mode!r} is not supported: use None or 'rgb_array'")
        self.device = torch.empty(0, device=device).device
        self.num_envs, self.rows, self.cols, self.num_agents = num_envs, rows, cols, rows * cols
        self.arrival_rate, self.max_flow, self.link_capacity = float(arrival_rate), max_flow, link_capacity
        self.episode_length, self.local_ratio = episode_length, float(local_ratio)
        self.continuous_actions, self.dtype, self.validate, self.render_mode = bool(continuous_actions), dtype, validate, render_mode
        act = gym.spaces.Box(0.0, 1.0, (2,), np.float32) if self.continuous_actions else gym.spaces.Discrete(2)
        group = GroupSpec(GROUP, tuple(f"signal_{i}" for i in range(self.num_agents)),
                          gym.spaces.Box(0.0, 1.0, (7,), np.float32), act)
        self.spec = EnvSpec(env_id, {GROUP: group}, state_dim=7 * self.num_agents, max_episode_steps=episode_length)
        self._gen = torch.Generator(device=self.device)
        self._gen.manual_seed(seed if seed is not None else int(torch.randint(0, 2**62, (1,)).item()))
        self._serves = torch.tensor(_PHASE_SERVES, device=self.device)  # (2, 4)
        self._entry = entry_mask(rows, cols, self.device)
        E, li = num_envs, dict(dtype=torch.long, device=self.device)
        self.queues = torch.zeros(E, rows, cols, 4, **li)  # vehicles waiting on each approach
        self.phase = torch.zeros(E, rows, cols, **li)
        self.since_change = torch.zeros(E, rows, cols, **li)
        self.t = torch.zeros(E, **li)
        self.arrived = torch.zeros(E, **li)  # vehicles that entered in this episode
        self.departed = torch.zeros(E, **li)  # vehicles that left in this episode
        self.reset()  # allocates the state; step() still needs a reset() of its own
        self._was_reset = False

    # -- observations, state, rewards ---------------------------------------------------
    def _obs(self) -> dict[str, Tensor]:
        E, A = self.num_envs, self.num_agents
        q = self.queues.to(self.dtype) / self.link_capacity
        ph = torch.nn.functional.one_hot(self.phase, 2).to(self.dtype)
        tsc = self.since_change.clamp(max=TSC_MAX).to(self.dtype)[..., None] / TSC_MAX
        return {GROUP: torch.cat([q, ph, tsc], -1).reshape(E, A, 7)}

    def state(self) -> Tensor:
        """(E, 7 A): every signal's observation, in agent order."""
        return self._obs()[GROUP].flatten(1)

    def _rewards(self) -> Tensor:
        local = self.queues.sum(-1).reshape(self.num_envs, self.num_agents).to(self.dtype)  # (E, A)
        glob = local.mean(-1, keepdim=True)
        return -(self.local_ratio * local + (1.0 - self.local_ratio) * glob)

    def mean_queue(self) -> Tensor:
        """(E,) mean queue length per approach right now."""
        return self.queues.to(self.dtype).mean((1, 2, 3))

    # -- dynamics -----------------------------------------------------------------------
    def _reset_where(self, mask: Tensor) -> None:
        m4 = mask[:, None, None, None]
        self.queues = torch.where(m4, 0, self.queues)
        start = torch.randint(0, 2, self.phase.shape, generator=self._gen, device=self.device)
        self.phase = torch.where(mask[:, None, None], start, self.phase)
        self.since_change = torch.where(mask[:, None, None], 0, self.since_change)
        self.t, self.arrived, self.departed = (torch.where(mask, 0, x) for x in (self.t, self.arrived, self.departed))

    def reset(self, seed: int | None = None, mask: Tensor | None = None) -> TimeStep:
        """Reset all envs (mask None) or those where ``mask`` (E,) bool is True."""
        if seed is not None:
            self._gen.manual_seed(int(seed))
        self._reset_where(reset_mask(mask, self.num_envs, self.device))
        self._was_reset = True
        return reset_timestep(self.spec, self._obs(), self.dtype)

    def advance(self, phase: Tensor) -> Tensor:
        """Apply phases (E, R, C) long and move vehicles; returns outflow (E, R, C, 4)."""
        switched = phase != self.phase
        green = self._serves[phase] & ~switched[..., None]  # (E, R, C, 4)
        free = downstream(self.link_capacity - self.queues, fill=self.max_flow)  # leaving is never blocked
        out = torch.where(green, torch.minimum(self.queues.clamp(max=self.max_flow), free), 0)
        q = self.queues - out + upstream(out)
        self.departed = self.departed + exits(out)
        arrive = torch.rand(q.shape, generator=self._gen, device=self.device) < self.arrival_rate
        arrive = (arrive & self._entry & (q < self.link_capacity)).long()
        self.queues = q + arrive
        self.arrived = self.arrived + arrive.sum((1, 2, 3))
        self.since_change = torch.where(switched, 0, self.since_change + 1)
        self.phase = phase
        return out

    def step(self, actions: dict[str, Tensor]) -> TimeStep:
        """Step every env; see :mod:`fastmarl.envs.api`. Auto-resets ended episodes."""
        require_reset(self)
        if self.validate:
            validate_actions(self.spec, actions, self.num_envs, self.device)
        a = actions[GROUP]
        a = a.argmax(-1) if self.continuous_actions else a.long()
        self.advance(a.reshape(self.num_envs, self.rows, self.cols))
        self.t = self.t + 1
        reward = self._rewards()
        trunc = self.t >= self.episode_length
        term = torch.zeros_like(trunc)
        obs = final_obs = self._obs()
        final_state = None
        if bool(trunc.any()):
            final_state = final_obs[GROUP].flatten(1)
            self._reset_where(trunc)
            obs = self._obs()
        return TimeStep(obs=obs, reward={GROUP: reward}, terminated=term, truncated=trunc, final_obs=final_obs,
                        final_state=final_state, info={"arrived": self.arrived, "departed": self.departed})

    def fixed_time_actions(self, period: int = 5) -> dict[str, Tensor]:
        """The fixed-time baseline's actions for the current step, as ``step`` takes them."""
        a = fixed_time_actions(self.t, period, self.num_agents)
        if self.continuous_actions:
            a = torch.nn.functional.one_hot(a, 2).float()
        return {GROUP: a}

    def render(self, env_index: int = 0, cell: int = 48) -> np.ndarray:
        """RGB (rows * cell, cols * cell, 3): intersections (green bar = green axis)
        with red queue bars on each approach, longer = fuller."""
        if not 0 <= env_index < self.num_envs:
            raise IndexError(f"env_index {env_index} out of range for num_envs={self.num_envs}")
        q = (self.queues[env_index].cpu().numpy() / self.link_capacity).clip(0, 1)
        ph = self.phase[env_index].cpu().numpy()
        img = np.full((self.rows * cell, self.cols * cell, 3), 235, np.uint8)
        h, c0 = cell // 2, cell // 2 - 3
        for r in range(self.rows):
            for c in range(self.cols):
                y, x = r * cell + h, c * cell + h
                img[y - 4:y + 4, x - 4:x + 4] = (40, 160, 40)
                if ph[r, c] == 0:
                    img[y - 8:y + 8, x - 2:x + 2] = (0, 220, 0)
                else:
                    img[y - 2:y + 2, x - 8:x + 8] = (0, 220, 0)
                n = (q[r, c] * (c0 - 6)).astype(int)
                img[y - 6 - n[0]:y - 6, x - 1:x + 1] = (200, 30, 30)  # from the north
                img[y + 6:y + 6 + n[1], x - 1:x + 1] = (200, 30, 30)  # from the south
                img[y - 1:y + 1, x + 6:x + 6 + n[2]] = (200, 30, 30)  # from the east
                img[y - 1:y + 1, x - 6 - n[3]:x - 6] = (200, 30, 30)  # from the west
        return img


class FixedTimePolicy:
    """The fixed-time baseline as a policy: phase ``(t // period) % 2`` with ``t`` the step in the
    episode, counted in the carry ((E,) long, reset where ``ts.done``); the same actions as
    ``TrafficGrid.fixed_time_actions(period)``."""

    def __init__(self, spec: EnvSpec, period: int = BASELINE_PERIOD):
        if set(spec.groups) != {GROUP}:
            raise ValueError(f"FixedTimePolicy drives traffic_grid_v0 (one group {GROUP!r}), got {list(spec.groups)}")
        if not isinstance(period, int) or isinstance(period, bool) or period < 1:
            raise ValueError(f"period must be a positive int, got {period!r}")
        self.group, self.period = spec.groups[GROUP], period

    def initial_carry(self, num_envs: int) -> Tensor:
        return torch.zeros(num_envs, dtype=torch.long)

    def act(self, ts: TimeStep, carry: Tensor, deterministic: bool = True,
            generator: torch.Generator | None = None) -> tuple[dict[str, Tensor], Tensor]:
        t = torch.where(ts.done, 0, carry.to(ts.done.device))
        a = fixed_time_actions(t, self.period, self.group.num_agents)
        if not self.group.discrete:
            a = torch.nn.functional.one_hot(a, 2).to(ts.obs[GROUP].dtype)
        return {GROUP: a}, t + 1


def baseline_policy(spec: EnvSpec, period: int = BASELINE_PERIOD) -> FixedTimePolicy:
    """The baseline trained signals must beat (:data:`BASELINE`)."""
    return FixedTimePolicy(spec, period)


KWARGS: dict[str, Any] = dict(rows=2, cols=2, arrival_rate=0.3, max_flow=2, link_capacity=20, episode_length=100,
                              local_ratio=1.0, continuous_actions=False, dtype=torch.float32, validate=True,
                              render_mode=None)


def make_traffic_grid(num_envs: int = 1, device: str | torch.device = "cpu", seed: int | None = None,
                      **kwargs: Any) -> TrafficGrid:
    return TrafficGrid(num_envs=num_envs, device=device, seed=seed, **check_kwargs("traffic_grid_v0", kwargs, KWARGS))
