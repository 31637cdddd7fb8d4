"""formation_v0: agents hold a formation around a reference point that travels to a goal.

Built on the MPE physics core (:mod:`fastmarl.envs.mpe.core`). Entities, in
order: ``agent_0..`` (N agents, group ``"agent"``, size 0.04, accel 3, max speed
1, colliding), then the landmarks ``reference`` (starts in ``[-0.8, -0.5] x
[-0.5, 0.5]``, moves kinematically straight to the goal at ``reference_speed``
and stops there), ``goal`` (fixed, in ``[0.5, 0.8] x [-0.5, 0.5]``), then
``obstacle i`` (``num_obstacles`` immovable discs of radius 0.1 that agents
collide with, placed near the reference's straight path: at a uniform fraction
in ``[0.45, 0.8]`` of the way to the goal, shifted sideways by ``U(-0.2, 0.2)``,
so never on the start). Agents start within 0.3 of the reference.

Formation (one per episode: ``formation=None`` draws it uniformly, or name one
of :data:`SHAPES`): slot ``i`` of agent ``i`` (assignment by index) is the
reference plus an offset, in the frame of the travel direction (x forward,
y left), ``spacing`` apart: ``line`` abreast; ``wedge`` a V with agent 0 at the
tip; ``circle`` evenly on a circle of circumference ``N * spacing`` (radius at
least ``spacing / 2``). Shape index and heading live in ``extra["shape"]`` (E,)
long and ``extra["heading"]`` (E,).

Reward (E, N): shared ``-mean_i |p_i - slot_i| + progress_weight * progress``
(progress: decrease of the centroid's distance to the goal this step) minus a
local ``collision_penalty`` per other agent overlapping and ``obstacle_penalty``
per obstacle overlapping: slots that pass over an obstacle cannot be held, the
agents must go around it. Observation of one agent (``K = N - 1`` others, or the
``num_neighbors`` nearest, zero-padded; ``O = num_obstacles``)::

    [vel (2), pos (2), own slot rel pos (2), reference rel pos (2), reference vel (2),
     goal rel pos (2), formation one-hot (3), K x other rel pos (2), O x obstacle rel pos (2)]

Global state (E, 4 (N + 2 + O) + 3): all positions, all velocities, the one-hot.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from fastmarl.envs.api import EnvSpec, TimeStep
from fastmarl.envs.mpe.core import MPEEnv, MPEState, World, WorldDef, check_kwargs, reset_entities
from fastmarl.envs.mpe.geometry import nearest_k, norm2, relative_to_self, uniform
from fastmarl.envs.scripted import COAST, steer

SHAPES = ("line", "wedge", "circle")
KWARGS = dict(num_agents=4, formation=None, spacing=0.25, reference_speed=0.3, progress_weight=10.0,
              num_neighbors=None, collision_penalty=0.1, num_obstacles=2, obstacle_penalty=0.5, max_cycles=50)
ENV_KWARGS = dict(continuous_actions=False, dtype=torch.float32, validate=True, render_mode=None)
AGENT_SIZE, OBSTACLE_SIZE = 0.04, 0.1
BASELINE = ("scripted go-to-slot: each agent steers to its own slot (read from its observation), pushed away "
            "from obstacles closer than 0.2 to its edge")


def formation_offsets(n: int, spacing: float) -> Tensor:
    """(3, n, 2) slot offsets of :data:`SHAPES` in the travel frame (x forward, y left)."""
    i = torch.arange(n, dtype=torch.float64)
    line = torch.stack([torch.zeros(n, dtype=torch.float64), (i - (n - 1) / 2) * spacing], -1)
    rank = torch.div(i + 1, 2, rounding_mode="floor")
    side = torch.where(i % 2 == 1, 1.0, -1.0).double()
    wedge = torch.stack([-rank * spacing, side * rank * spacing], -1)
    radius = max(n * spacing / (2 * math.pi), spacing / 2)
    ang = 2 * math.pi * i / n
    circle = torch.stack([radius * torch.cos(ang), radius * torch.sin(ang)], -1)
    return torch.stack([line, wedge, circle])


class Scenario:
    env_id = "formation_v0"

    def __init__(self, num_agents=4, formation=None, spacing=0.25, reference_speed=0.3, progress_weight=10.0,
                 num_neighbors=None, collision_penalty=0.1, num_obstacles=2, obstacle_penalty=0.5, max_cycles=50):
        for name, v, lo in (("num_agents", num_agents, 1), ("max_cycles", max_cycles, 1),
                            ("num_obstacles", num_obstacles, 0)):
            if not isinstance(v, int) or isinstance(v, bool) or v < lo:
                raise ValueError(f"{self.env_id}: {name} must be an int >= {lo}, got {v!r}")
        if formation is not None and formation not in SHAPES:
            raise ValueError(f"{self.env_id}: formation must be None (random per episode) or one of {SHAPES}, "
                             f"got {formation!r}")
        if num_neighbors is not None and (not isinstance(num_neighbors, int) or isinstance(num_neighbors, bool)
                                          or num_neighbors < 1):
            raise ValueError(f"{self.env_id}: num_neighbors must be a positive int or None, got {num_neighbors!r}")
        for name, v, strict in (("spacing", spacing, True), ("reference_speed", reference_speed, False),
                                ("progress_weight", progress_weight, False),
                                ("collision_penalty", collision_penalty, False),
                                ("obstacle_penalty", obstacle_penalty, False)):
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not (v > 0 if strict else v >= 0):
                raise ValueError(f"{self.env_id}: {name} must be a number {'>' if strict else '>='} 0, got {v!r}")
        self.N, self.max_cycles = num_agents, max_cycles
        self.shape = None if formation is None else SHAPES.index(formation)
        self.spacing, self.reference_speed = float(spacing), float(reference_speed)
        self.progress_weight, self.collision_penalty = float(progress_weight), float(collision_penalty)
        self.O, self.obstacle_penalty = num_obstacles, float(obstacle_penalty)
        self.k = num_neighbors if num_neighbors is not None else num_agents - 1
        self._offsets: Tensor | None = None

    def world_def(self) -> WorldDef:
        N, O = self.N, self.O
        return WorldDef(
            agent_names=[f"agent_{i}" for i in range(N)],
            landmark_names=["reference", "goal"] + [f"obstacle {i}" for i in range(O)],
            size=[AGENT_SIZE] * N + [0.03, 0.05] + [OBSTACLE_SIZE] * O, movable=[True] * N + [False] * (2 + O),
            collide=[True] * N + [False] * 2 + [True] * O,
            color=[(0.35, 0.35, 0.85)] * N + [(0.85, 0.55, 0.15), (0.25, 0.75, 0.25)] + [(0.25, 0.25, 0.25)] * O,
            silent=[True] * N, max_speed=[1.0] * N + [None] * (2 + O), accel=[3.0] * N,
        )

    def offsets(self, like: Tensor) -> Tensor:
        """(3, N, 2) formation offsets with the dtype/device of ``like`` (cached)."""
        if self._offsets is None or self._offsets.dtype != like.dtype or self._offsets.device != like.device:
            self._offsets = formation_offsets(self.N, self.spacing).to(like)
        return self._offsets

    def slots(self, s: MPEState) -> Tensor:
        """(E, N, 2) target position of each agent: reference + offset rotated to the heading."""
        off = self.offsets(s.pos)[s.extra["shape"]]  # (E, N, 2)
        c, si = torch.cos(s.extra["heading"])[:, None], torch.sin(s.extra["heading"])[:, None]
        rot = torch.stack([c * off[..., 0] - si * off[..., 1], si * off[..., 0] + c * off[..., 1]], -1)
        return s.pos[:, self.N:self.N + 1] + rot

    def _goal_dist(self, s: MPEState) -> Tensor:
        return norm2(s.pos[:, :self.N].mean(1) - s.pos[:, self.N + 1])  # (E,)

    def reset(self, w: World, s: MPEState, mask: Tensor, gen: torch.Generator) -> MPEState:
        E, N, dev = s.pos.shape[0], self.N, s.pos.device
        ref = torch.stack([uniform(gen, (E,), -0.8, -0.5, s.pos), uniform(gen, (E,), -0.5, 0.5, s.pos)], -1)
        goal = torch.stack([uniform(gen, (E,), 0.5, 0.8, s.pos), uniform(gen, (E,), -0.5, 0.5, s.pos)], -1)
        ang = uniform(gen, (E, N), 0.0, 2 * math.pi, s.pos)
        rad = uniform(gen, (E, N), 0.0, 0.3, s.pos)
        agents = ref[:, None] + rad[..., None] * torch.stack([torch.cos(ang), torch.sin(ang)], -1)
        d = goal - ref
        frac = uniform(gen, (E, self.O, 1), 0.45, 0.8, s.pos)
        side = uniform(gen, (E, self.O, 1), -0.2, 0.2, s.pos)
        normal = torch.stack([-d[:, 1], d[:, 0]], -1) / norm2(d)[:, None]  # unit, left of the path
        obstacles = ref[:, None] + frac * d[:, None] + side * normal[:, None]
        pos = torch.cat([agents, ref[:, None], goal[:, None], obstacles], 1)
        shape = (torch.randint(0, len(SHAPES), (E,), generator=gen, device=dev) if self.shape is None
                 else torch.full((E,), self.shape, dtype=torch.long, device=dev))
        new = {"shape": shape, "heading": torch.atan2(d[:, 1], d[:, 0])}
        extra = {k: torch.where(mask, v, s.extra.get(k, v)) for k, v in new.items()}
        s = reset_entities(s, mask, pos, extra)
        gd = self._goal_dist(s)
        zero = torch.zeros_like(gd)
        return s._replace(extra={**s.extra, "goal_dist": torch.where(mask, gd, s.extra.get("goal_dist", gd)),
                                 "progress": torch.where(mask, zero, s.extra.get("progress", zero))})

    def post_physics(self, w: World, s: MPEState) -> MPEState:
        """The reference moves towards the goal; the centroid's progress is recorded."""
        N = self.N
        ref, goal = s.pos[:, N], s.pos[:, N + 1]
        d = goal - ref
        dist = norm2(d)[:, None]
        step = torch.clamp(dist, max=self.reference_speed * w.dt)
        new = ref + torch.where(dist > 0, d / dist.clamp_min(1e-12) * step, 0.0)
        pos = torch.cat([s.pos[:, :N], new[:, None], s.pos[:, N + 1:]], 1)
        vel = torch.cat([s.vel[:, :N], ((new - ref) / w.dt)[:, None], s.vel[:, N + 1:]], 1)
        s = s._replace(pos=pos, vel=vel)
        gd = self._goal_dist(s)
        return s._replace(extra={**s.extra, "goal_dist": gd, "progress": s.extra["goal_dist"] - gd})

    def rewards(self, w: World, s: MPEState) -> Tensor:
        p = s.pos[:, :self.N]
        slot_err = norm2(p - self.slots(s)).mean(-1)  # (E,)
        shared = -slot_err + self.progress_weight * s.extra["progress"]
        d = norm2(p[:, :, None] - p[:, None])  # (E, N, N)
        hits = ((d < 2 * AGENT_SIZE) & w.offdiag).to(p.dtype).sum(-1)
        bumps = (norm2(p[:, :, None] - s.pos[:, None, self.N + 2:]) < AGENT_SIZE + OBSTACLE_SIZE).to(p.dtype).sum(-1)
        return shared[:, None] - self.collision_penalty * hits - self.obstacle_penalty * bumps

    def terminal(self, w: World, s: MPEState) -> Tensor | None:
        return None

    def observations(self, w: World, s: MPEState) -> dict[str, Tensor]:
        N, E = self.N, s.pos.shape[0]
        p, v = s.pos[:, :N], s.vel[:, :N]
        ref, goal = s.pos[:, N:N + 1], s.pos[:, N + 1:N + 2]
        onehot = torch.nn.functional.one_hot(s.extra["shape"], len(SHAPES)).to(p.dtype)[:, None].expand(-1, N, -1)
        rel = relative_to_self(p, p)[:, w.agent_rows, w.others]  # (E, N, N-1, 2)
        (rel,) = nearest_k(rel, self.k)  # (E, N, k, 2)
        obst = (s.pos[:, None, N + 2:] - p[:, :, None]).reshape(E, N, 2 * self.O)
        return {"agent": torch.cat([v, p, self.slots(s) - p, ref - p, s.vel[:, N:N + 1].expand(-1, N, -1),
                                    goal - p, onehot, rel.reshape(E, N, 2 * self.k), obst], -1)}

    def global_state(self, s: MPEState) -> Tensor:
        """(E, 4 (N + 2 + O) + 3): all positions, all velocities, the formation one-hot."""
        onehot = torch.nn.functional.one_hot(s.extra["shape"], len(SHAPES)).to(s.pos.dtype)
        return torch.cat([s.pos.flatten(1), s.vel.flatten(1), onehot], 1)


class FormationEnv(MPEEnv):
    """MPEEnv with a formation-error readout."""

    def formation_error(self) -> Tensor:
        """(E,) mean distance of the agents to their slots right now."""
        s = self._state
        return norm2(s.pos[:, :self.scenario.N] - self.scenario.slots(s)).mean(-1)


class GoToSlot:
    """The scripted baseline (:data:`BASELINE`), from the observations alone: steer to the own slot,
    leading it by the reference's velocity, plus a push away from each obstacle whose edge is
    closer than 0.2 (strength growing linearly to 0.5 at contact)."""

    def __init__(self, spec: EnvSpec, num_obstacles: int = 2, num_neighbors: int | None = None, **_: object):
        if set(spec.groups) != {"agent"}:
            raise ValueError(f"GoToSlot drives formation_v0 (one group 'agent'), got groups {list(spec.groups)}")
        self.group, self.O = spec.groups["agent"], num_obstacles
        k = num_neighbors if num_neighbors is not None else self.group.num_agents - 1
        want = 15 + 2 * k + 2 * num_obstacles
        if self.group.obs_dim != want:
            raise ValueError(f"formation observations have {self.group.obs_dim} entries, expected {want} for "
                             f"num_obstacles={num_obstacles}, num_neighbors={num_neighbors}; pass the env's kwargs")

    def initial_carry(self, num_envs: int) -> dict:
        return {}

    def act(self, ts: TimeStep, carry: dict, deterministic: bool = True,
            generator: torch.Generator | None = None) -> tuple[dict[str, Tensor], dict]:
        o = ts.obs["agent"]
        vel, slot, ref_vel = o[..., 0:2], o[..., 4:6], o[..., 8:10]
        obst = o[..., o.shape[-1] - 2 * self.O:].reshape(*o.shape[:2], self.O, 2)  # (E, N, O, 2) rel pos
        dist = norm2(obst).clamp_min(1e-6)
        gap = dist - OBSTACLE_SIZE - AGENT_SIZE
        push = (-obst / dist[..., None] * (0.5 * (1 - gap / 0.2)).clamp(0, 0.5)[..., None]).sum(2)
        return {"agent": steer(slot + (ref_vel - vel) * COAST + push, self.group)}, carry


def baseline_policy(spec: EnvSpec, **env_kwargs: object) -> GoToSlot:
    """The baseline trained agents must beat (:data:`BASELINE`); pass the env's kwargs."""
    return GoToSlot(spec, **env_kwargs)


def make_formation(num_envs: int = 1, device="cpu", seed: int | None = None, **kwargs) -> FormationEnv:
    merged = check_kwargs(Scenario.env_id, kwargs, {**KWARGS, **ENV_KWARGS})
    env_kw = {k: merged.pop(k) for k in ENV_KWARGS}
    return FormationEnv(Scenario(**merged), num_envs=num_envs, device=device, seed=seed, **env_kw)


__all__ = ["Scenario", "FormationEnv", "make_formation", "formation_offsets", "SHAPES", "GoToSlot", "baseline_policy",
           "BASELINE"]
