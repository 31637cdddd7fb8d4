"""pursuit_evasion_v0: a team of pursuers with limited sensing chases evaders among obstacles.

Built on the MPE physics core (:mod:`fastmarl.envs.mpe.core`). Entities, in
order: ``pursuer_0..`` (P agents, size 0.075, accel 3, max speed 1), then the
evaders (V; size 0.05, accel 4, max speed 1.3), then ``obstacle i`` (L circular
obstacles, size 0.15, immovable). Learning evaders are agents (group
``"evader"``); with ``scripted_evaders=True`` they are kinematic landmarks
steered by :func:`flee_direction` (no group, no reward). Either way the
evaders are entities ``P .. P+V-1``. Everything starts uniformly in the arena
``[-1, 1]^2`` (obstacles in ``[-0.8, 0.8]^2``).

Partial observation: an agent sees another agent or evader only within
``sensing_radius``. Each seen entity contributes ``[rel pos (2), vel (2),
visible (1)]``, all zero when out of range. With ``num_neighbors=None`` every
other pursuer / evader has a slot (in index order); with ``num_neighbors=k``
only the k nearest *visible* ones are kept per kind, closest first, zero-padded.
Obstacles are always visible (map knowledge). Observation of one agent::

    [vel (2), pos (2), obstacle rel pos (2L), pursuer slots (5 Kp), evader slots (5 Ke)]

``Kp`` = P-1 (pursuers) / P (evaders) or k; ``Ke`` = V (pursuers) / V-1
(evaders) or k. Global state (E, 4 N): positions and velocities of all entities.

Rewards: an evader is *captured* while some pursuer is within ``capture_radius``.
Every pursuer gets ``+10`` per captured evader (shared team reward); a captured
evader gets ``-10`` minus simple_tag's boundary penalty. Episodes truncate after
``max_cycles``; with ``terminate_on_capture=True`` they terminate once every
evader is captured.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from fastmarl.envs.api import EnvSpec, TimeStep
from fastmarl.envs.mpe.core import MPEEnv, MPEState, World, WorldDef, check_kwargs, reset_entities
from fastmarl.envs.mpe.geometry import norm2, others_index, uniform
from fastmarl.envs.mpe.simple_tag import boundary_penalty
from fastmarl.envs.scripted import COAST, steer

KWARGS = dict(num_pursuers=3, num_evaders=1, num_obstacles=2, scripted_evaders=False, sensing_radius=0.8,
              num_neighbors=None, capture_radius=0.15, max_cycles=50, terminate_on_capture=False,
              evader_speed=1.0)
ENV_KWARGS = dict(continuous_actions=False, dtype=torch.float32, validate=True, render_mode=None)

PURSUER_SIZE, EVADER_SIZE, OBSTACLE_SIZE = 0.075, 0.05, 0.15
CAPTURE_REWARD = 10.0
SLOT = 5  # rel pos (2), vel (2), visible flag (1)
BASELINE = ("scripted on both sides: pursuers head for where the nearest seen evader will be (its velocity times "
            "distance / pursuer speed ahead) and patrol a ring when none is seen; evaders flee the seen pursuers "
            "(flee_direction)")


def seen_slots(obs_pos: Tensor, tgt_pos: Tensor, tgt_vel: Tensor, radius: float, k: int | None,
               others: Tensor | None = None) -> Tensor:
    """Sensing: (E, M, Ks * 5) slots of targets seen by each observer.

    obs_pos (E, M, 2), tgt_pos / tgt_vel (E, K, 2). ``others`` (M, K-1) long drops
    the observer itself when observers and targets are the same set. Slots are
    ``[rel pos, vel, 1]`` within ``radius`` (distance <= radius), zeros outside;
    ``k`` keeps the k nearest visible ones (closest first, zero-padded).
    """
    E, M = obs_pos.shape[:2]
    rel = tgt_pos[:, None] - obs_pos[:, :, None]  # (E, M, K, 2)
    vel = tgt_vel[:, None].expand(-1, M, -1, -1)
    if others is not None:
        rows = torch.arange(M, device=obs_pos.device)[:, None]
        rel, vel = rel[:, rows, others], vel[:, rows, others]
    dist = norm2(rel)  # (E, M, K')
    vis = dist <= radius
    slots = torch.cat([rel, vel, torch.ones_like(dist)[..., None]], -1) * vis[..., None].to(rel.dtype)
    if k is not None:
        order = torch.argsort(torch.where(vis, dist, math.inf), dim=-1, stable=True)[..., :k]
        slots = torch.gather(slots, 2, order[..., None].expand(*order.shape, SLOT))
        if slots.shape[2] < k:
            slots = torch.cat([slots, slots.new_zeros(E, M, k - slots.shape[2], SLOT)], 2)
    return slots.reshape(E, M, -1)


def flee_direction(evader_pos: Tensor, pursuer_pos: Tensor) -> Tensor:
    """Scripted evader rule: unit direction (E, V, 2) away from the pursuers,
    each weighted by 1/distance^2 (the nearest dominate), plus a push away from
    the arena walls when closer than 0.3 (so they do not pin themselves in a corner)."""
    rel = evader_pos[:, :, None] - pursuer_pos[:, None]  # (E, V, P, 2)
    d = norm2(rel).clamp_min(1e-3)[..., None]
    push = (rel / d ** 3).sum(2)
    wall = torch.clamp(0.3 - (1 - evader_pos.abs()), min=0.0) * -torch.sign(evader_pos) * 50.0
    v = push + wall
    n = norm2(v)[..., None]
    return torch.where(n > 1e-9, v / n.clamp_min(1e-9), 0.0)


class Scenario:
    env_id = "pursuit_evasion_v0"

    def __init__(self, num_pursuers=3, num_evaders=1, num_obstacles=2, scripted_evaders=False, sensing_radius=0.8,
                 num_neighbors=None, capture_radius=0.15, max_cycles=50, terminate_on_capture=False,
                 evader_speed=1.0):
        for name, v, lo in (("num_pursuers", num_pursuers, 1), ("num_evaders", num_evaders, 1),
                            ("num_obstacles", num_obstacles, 0), ("max_cycles", max_cycles, 1)):
            if not isinstance(v, int) or isinstance(v, bool) or v < lo:
                raise ValueError(f"{self.env_id}: {name} must be an int >= {lo}, got {v!r}")
        if num_neighbors is not None and (not isinstance(num_neighbors, int) or isinstance(num_neighbors, bool)
                                          or num_neighbors < 1):
            raise ValueError(f"{self.env_id}: num_neighbors must be a positive int or None, got {num_neighbors!r}")
        for name, v in (("sensing_radius", sensing_radius), ("capture_radius", capture_radius),
                        ("evader_speed", evader_speed)):
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not v > 0:
                raise ValueError(f"{self.env_id}: {name} must be a positive number, got {v!r}")
        self.P, self.V, self.L = num_pursuers, num_evaders, num_obstacles
        self.scripted = bool(scripted_evaders)
        self.sensing_radius, self.capture_radius = float(sensing_radius), float(capture_radius)
        self.k, self.max_cycles = num_neighbors, max_cycles
        self.terminate_on_capture, self.evader_speed = bool(terminate_on_capture), float(evader_speed)

    def world_def(self) -> WorldDef:
        P, V, L, s = self.P, self.V, self.L, self.scripted
        pursuers = [f"pursuer_{i}" for i in range(P)]
        evaders = [f"evader_{i}" for i in range(V)]
        return WorldDef(
            agent_names=pursuers + ([] if s else evaders),
            landmark_names=(evaders if s else []) + [f"obstacle {i}" for i in range(L)],
            size=[PURSUER_SIZE] * P + [EVADER_SIZE] * V + [OBSTACLE_SIZE] * L,
            movable=[True] * P + [not s] * V + [False] * L,
            collide=[True] * P + [not s] * V + [True] * L,  # kinematic scripted evaders pass through
            color=[(0.85, 0.35, 0.35)] * P + [(0.35, 0.85, 0.35)] * V + [(0.25, 0.25, 0.25)] * L,
            silent=[True] * (P if s else P + V),
            max_speed=[1.0] * P + [1.3 if not s else None] * V + [None] * L,
            accel=[3.0] * P + ([] if s else [4.0] * V),
        )

    def reset(self, w: World, s: MPEState, mask: Tensor, gen: torch.Generator) -> MPEState:
        E, nm = s.pos.shape[0], self.P + self.V
        pos = torch.cat([uniform(gen, (E, nm, 2), -1.0, 1.0, s.pos), uniform(gen, (E, self.L, 2), -0.8, 0.8, s.pos)], 1)
        return reset_entities(s, mask, pos)

    def post_physics(self, w: World, s: MPEState) -> MPEState:
        """Scripted evaders move kinematically at ``evader_speed`` away from the pursuers."""
        if not self.scripted:
            return s
        P, V = self.P, self.V
        ev = s.pos[:, P:P + V]
        step = flee_direction(ev, s.pos[:, :P]) * (self.evader_speed * w.dt)
        new = (ev + step).clamp(-1 + EVADER_SIZE, 1 - EVADER_SIZE)
        pos = torch.cat([s.pos[:, :P], new, s.pos[:, P + V:]], 1)
        vel = torch.cat([s.vel[:, :P], (new - ev) / w.dt, s.vel[:, P + V:]], 1)
        return s._replace(pos=pos, vel=vel)

    def captured(self, s: MPEState) -> Tensor:
        """(E, V) bool: some pursuer is within ``capture_radius`` of the evader."""
        P = self.P
        d = norm2(s.pos[:, P:P + self.V, None] - s.pos[:, None, :P])  # (E, V, P)
        return (d <= self.capture_radius).any(-1)

    def rewards(self, w: World, s: MPEState) -> Tensor:
        cap = self.captured(s).to(s.pos.dtype)  # (E, V)
        team = CAPTURE_REWARD * cap.sum(-1)  # (E,)
        out = team[:, None].expand(-1, self.P)
        if self.scripted:
            return out
        bound = boundary_penalty(s.pos[:, self.P:self.P + self.V].abs())  # (E, V, 2)
        ev = -CAPTURE_REWARD * cap - bound[..., 0] - bound[..., 1]
        return torch.cat([out, ev], 1)  # (E, A)

    def terminal(self, w: World, s: MPEState) -> Tensor | None:
        return self.captured(s).all(-1) if self.terminate_on_capture else None

    def observations(self, w: World, s: MPEState) -> dict[str, Tensor]:
        P, V = self.P, self.V
        E = s.pos.shape[0]
        pp, pv = s.pos[:, :P], s.vel[:, :P]
        ep, evl = s.pos[:, P:P + V], s.vel[:, P:P + V]
        obst = s.pos[:, P + V:]
        dev = s.pos.device
        r, k = self.sensing_radius, self.k

        def common(p: Tensor, v: Tensor) -> Tensor:
            lm = (obst[:, None] - p[:, :, None]).reshape(E, p.shape[1], 2 * self.L)
            return torch.cat([v, p, lm], -1)

        others_p = others_index(P, dev)
        out = {"pursuer": torch.cat([common(pp, pv), seen_slots(pp, pp, pv, r, k, others_p),
                                     seen_slots(pp, ep, evl, r, k)], -1)}
        if not self.scripted:
            out["evader"] = torch.cat([common(ep, evl), seen_slots(ep, pp, pv, r, k),
                                       seen_slots(ep, ep, evl, r, k, others_index(V, dev))], -1)
        return out

    def global_state(self, s: MPEState) -> Tensor:
        """(E, 4 N): all positions then all velocities."""
        return torch.cat([s.pos.flatten(1), s.vel.flatten(1)], 1)


class ScriptedPursuitEvasion:
    """The scripted baseline (:data:`BASELINE`) for every group, from the observations alone.

    The observation layout depends on env kwargs the spec does not hold, so they are
    arguments here (the same names and defaults as the env's); a mismatch with the
    spec's observation sizes is a ValueError."""

    def __init__(self, spec: EnvSpec, num_obstacles: int = 2, num_evaders: int = 1, num_neighbors: int | None = None,
                 **_: object):
        if "pursuer" not in spec.groups or not set(spec.groups) <= {"pursuer", "evader"}:
            raise ValueError(f"ScriptedPursuitEvasion drives pursuit_evasion_v0, got groups {list(spec.groups)}")
        self.spec, self.L = spec, num_obstacles
        P = spec.groups["pursuer"].num_agents
        V = spec.groups["evader"].num_agents if "evader" in spec.groups else num_evaders
        k = num_neighbors
        self.kp = {"pursuer": k or P - 1, "evader": k or P}  # pursuer slots seen by each group
        self.ke = {"pursuer": k or V, "evader": k or V - 1}
        for name, g in spec.groups.items():
            want = 4 + 2 * num_obstacles + SLOT * (self.kp[name] + self.ke[name])
            if g.obs_dim != want:
                raise ValueError(f"group {name!r} observations have {g.obs_dim} entries, expected {want} for "
                                 f"num_obstacles={num_obstacles}, num_evaders={V}, num_neighbors={k}; pass the "
                                 "env's kwargs to baseline_policy")
        ang = 2 * math.pi * torch.arange(P) / P
        self.patrol = 0.4 * torch.stack([torch.cos(ang), torch.sin(ang)], -1)  # (P, 2) ring when nothing is seen

    def initial_carry(self, num_envs: int) -> dict:
        return {}

    def _slots(self, o: Tensor, start: int, k: int) -> Tensor:
        return o[..., start:start + SLOT * k].reshape(*o.shape[:2], k, SLOT)

    def act(self, ts: TimeStep, carry: dict, deterministic: bool = True,
            generator: torch.Generator | None = None) -> tuple[dict[str, Tensor], dict]:
        out = {}
        for name, g in self.spec.groups.items():
            o = ts.obs[name]
            vel, pos = o[..., 0:2], o[..., 2:4]
            base = 4 + 2 * self.L
            pur = self._slots(o, base, self.kp[name])  # (E, A, Kp, 5)
            eva = self._slots(o, base + SLOT * self.kp[name], self.ke[name])
            if name == "pursuer":
                seen = eva[..., 4] > 0.5
                dist = torch.where(seen, norm2(eva[..., :2]), math.inf)
                j = dist.argmin(-1, keepdim=True)  # nearest seen evader
                near = torch.gather(eva, 2, j[..., None].expand(-1, -1, -1, SLOT))[:, :, 0]  # (E, A, 5)
                lead = torch.gather(dist, 2, j).clamp(max=1.0)  # seconds to get there at speed 1
                chase = pos + near[..., :2] + near[..., 2:4] * lead
                target = torch.where(seen.any(-1, keepdim=True), chase, self.patrol.to(o))
                d = target - pos - vel * COAST
            else:  # flee from the seen pursuers (unseen ones placed far away weigh nothing)
                seen = pur[..., 4:5] > 0.5
                far = torch.where(seen, pos[:, :, None] + pur[..., :2], pos[:, :, None] + 1e3)
                E, A = pos.shape[:2]
                d = flee_direction(pos.reshape(E * A, 1, 2), far.reshape(E * A, -1, 2)).reshape(E, A, 2)
            out[name] = steer(d, g)
        return out, carry


def baseline_policy(spec: EnvSpec, **env_kwargs: object) -> ScriptedPursuitEvasion:
    """The baseline every group is compared with (:data:`BASELINE`); pass the env's kwargs."""
    return ScriptedPursuitEvasion(spec, **env_kwargs)


class PursuitEvasionEnv(MPEEnv):
    """MPEEnv with a capture-rate readout; ``state()`` is the scenario's true global
    state (every entity's position and velocity, scripted evaders included)."""

    def capture_rate(self) -> Tensor:
        """(E,) fraction of evaders captured right now."""
        return self.scenario.captured(self._state).float().mean(-1)


def make_pursuit_evasion(num_envs: int = 1, device="cpu", seed: int | None = None, **kwargs) -> PursuitEvasionEnv:
    merged = check_kwargs(Scenario.env_id, kwargs, {**KWARGS, **ENV_KWARGS})
    env_kw = {k: merged.pop(k) for k in ENV_KWARGS}
    return PursuitEvasionEnv(Scenario(**merged), num_envs=num_envs, device=device, seed=seed, **env_kw)
