"""swarm_defense_v0: an attacking swarm tries to reach a protected zone past interceptors.

Built on the MPE physics core (:mod:`fastmarl.envs.mpe.core`; no contact forces). Entities,
in order: ``attacker_0..`` (M agents, group ``"attacker"``, size 0.03, max speed
``attacker_speed``), ``defender_0..`` (D agents, group ``"defender"``, size 0.05, max speed
``defender_speed``), then the landmark ``zone`` (a disc of ``zone_radius`` at the origin).
Both groups accelerate with 4.0 (mpe2's force model, damping 0.25, dt 0.1). The swarm starts
in an arc: a random bearing per episode, each attacker within ``spawn_spread / 2`` radians of
it at distance ``spawn_radius + U(0, 0.2)``; defenders start uniformly within
``defender_start_radius`` of the zone.

Each step, after the physics, in this order: (1) engagement: every defender destroys its
``engagements_per_step`` nearest live attackers within ``engagement_radius`` (engagements are
simultaneous: two defenders may pick the same attacker, and the second shot is wasted);
(2) arrival: a live attacker that was not destroyed and is inside the zone scores once and is
consumed. Destroyed and consumed attackers are dead: ``TimeStep.alive["attacker"]`` turns
False in the step they die (their last reward), afterwards their observation and reward are
zeros, their actions are ignored and they stay where they died. Defenders never die.

Rewards (``kp`` = ``kill_penalty``): attacker i gets ``+1`` if it arrived this step and
``-kp`` if it was destroyed, plus the shaping ``approach_shaping * (progress toward the zone
this step)`` while it was alive; every defender gets ``-(arrivals - kp * kills) / D`` (team
shared) plus ``pursuit_shaping * (progress toward its nearest live attacker)``. Without
shaping (both coefficients 0) the game is zero-sum per step: the group sums cancel.
Episodes terminate when no attacker is alive and truncate after ``max_cycles``.

Observations (k = ``num_neighbors`` slots ``[rel pos (2), vel (2), seen (1)]``, nearest first,
zero-padded; only live attackers within ``sensing_radius`` fill a slot)::

    attacker: [vel (2), pos (2), zone rel pos (2), k defender slots, k teammate slots]
    defender: [vel (2), pos (2), zone rel pos (2), live attacker fraction (1),
               k attacker slots, k teammate slots]

Global state (E, 4 (M + D) + M): all agents' positions, velocities, then the alive mask.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch
from torch import Tensor

from fastmarl.envs.api import EnvSpec, TimeStep
from fastmarl.envs.mpe.core import MPEEnv, MPEState, World, WorldDef, check_kwargs
from fastmarl.envs.mpe.geometry import norm2, others_index, uniform
from fastmarl.envs.scripted import COAST, steer
from fastmarl.envs.swarm.jammer import nearest_slots

BASELINE = ("scripted: attackers fly straight at the zone; each defender intercepts its nearest seen attacker "
            "(pursuit of a lead point), else returns to the zone")
KWARGS = dict(num_attackers=8, num_defenders=3, attacker_speed=0.6, defender_speed=1.0, engagement_radius=0.1,
              engagements_per_step=1, zone_radius=0.2, spawn_radius=1.0, spawn_spread=math.pi / 2,
              defender_start_radius=0.4, sensing_radius=1.0, num_neighbors=4, kill_penalty=0.1,
              approach_shaping=0.1, pursuit_shaping=0.1, max_cycles=50)
ENV_KWARGS = dict(continuous_actions=False, dtype=torch.float32, validate=True, render_mode=None)
ATTACKER_SIZE, DEFENDER_SIZE, ACCEL = 0.03, 0.05, 4.0


class Scenario:
    env_id = "swarm_defense_v0"

    def __init__(self, **kwargs):
        kw = check_kwargs(self.env_id, kwargs, KWARGS)
        for name in ("num_attackers", "num_defenders", "engagements_per_step", "num_neighbors", "max_cycles"):
            v = kw[name]
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{self.env_id}: {name} must be an int >= 1, got {v!r}")
        for name in ("attacker_speed", "defender_speed", "engagement_radius", "zone_radius", "spawn_radius",
                     "spawn_spread", "defender_start_radius", "sensing_radius", "kill_penalty", "approach_shaping",
                     "pursuit_shaping"):
            v = kw[name]
            strict = name not in ("kill_penalty", "approach_shaping", "pursuit_shaping", "spawn_spread")
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not (v > 0 if strict else v >= 0):
                raise ValueError(f"{self.env_id}: {name} must be a number {'>' if strict else '>='} 0, got {v!r}")
        if kw["spawn_radius"] <= kw["zone_radius"]:
            raise ValueError(f"{self.env_id}: spawn_radius ({kw['spawn_radius']}) must exceed zone_radius "
                             f"({kw['zone_radius']}): attackers would start inside the zone")
        self.kw = {k: (float(v) if isinstance(v, float) else v) for k, v in kw.items()}
        self.M, self.D, self.max_cycles = kw["num_attackers"], kw["num_defenders"], kw["max_cycles"]
        self._others: dict[str, Tensor] = {}  # (n, n-1) "every other agent" indices, built once per device

    def world_def(self) -> WorldDef:
        M, D, k = self.M, self.D, self.kw
        return WorldDef(
            agent_names=[f"attacker_{i}" for i in range(M)] + [f"defender_{i}" for i in range(D)],
            landmark_names=["zone"], size=[ATTACKER_SIZE] * M + [DEFENDER_SIZE] * D + [k["zone_radius"]],
            movable=[True] * (M + D) + [False], collide=[False] * (M + D + 1),
            color=[(0.85, 0.3, 0.3)] * M + [(0.3, 0.4, 0.85)] * D + [(0.6, 0.85, 0.6)], silent=[True] * (M + D),
            max_speed=[k["attacker_speed"]] * M + [k["defender_speed"]] * D + [None], accel=[ACCEL] * (M + D))

    def reset(self, w: World, s: MPEState, mask: Tensor, gen: torch.Generator) -> MPEState:
        E, M, D, k = s.pos.shape[0], self.M, self.D, self.kw
        bearing = uniform(gen, (E, 1), 0.0, 2 * math.pi, s.pos)
        ang = bearing + uniform(gen, (E, M), -0.5, 0.5, s.pos) * k["spawn_spread"]
        rad = k["spawn_radius"] + uniform(gen, (E, M), 0.0, 0.2, s.pos)
        att = rad[..., None] * torch.stack([ang.cos(), ang.sin()], -1)
        dang = uniform(gen, (E, D), 0.0, 2 * math.pi, s.pos)
        drad = k["defender_start_radius"] * uniform(gen, (E, D), 0.0, 1.0, s.pos).sqrt()
        dfd = drad[..., None] * torch.stack([dang.cos(), dang.sin()], -1)
        pos = torch.cat([att, dfd, torch.zeros_like(att[:, :1])], 1)
        m, m2 = mask[:, None], mask[:, None, None]
        ex = s.extra
        f = torch.zeros(E, M, dtype=torch.bool, device=s.pos.device)
        extra = {"alive": torch.where(m, True, ex.get("alive", ~f)),
                 "killed": torch.where(m, False, ex.get("killed", f)),
                 "arrived": torch.where(m, False, ex.get("arrived", f)),
                 "wreck": torch.where(m2, att, ex.get("wreck", att)),
                 "prev_pos": torch.where(m2, pos[:, :M + D], ex.get("prev_pos", pos[:, :M + D])),
                 "reward": torch.where(m, 0.0, ex.get("reward", torch.zeros_like(pos[:, :M + D, 0])))}
        return MPEState(torch.where(m2, pos, s.pos), torch.where(m2, 0.0, s.vel), s.comm, s.t, extra)

    def post_physics(self, w: World, s: MPEState) -> MPEState:
        """Freeze the dead, resolve engagements then arrivals, and compute the step's rewards."""
        M, D, k, ex = self.M, self.D, self.kw, s.extra
        alive0 = ex["alive"]
        att = torch.where(alive0[..., None], s.pos[:, :M], ex["wreck"])
        pos = torch.cat([att, s.pos[:, M:]], 1)
        vel = torch.cat([torch.where(alive0[..., None], s.vel[:, :M], 0.0), s.vel[:, M:]], 1)
        dfd = pos[:, M:M + D]
        d = norm2(att[:, None] - dfd[:, :, None])  # (E, D, M) defender -> attacker
        dm = torch.where((d <= k["engagement_radius"]) & alive0[:, None], d, math.inf)
        vals, idx = dm.topk(min(k["engagements_per_step"], M), dim=-1, largest=False)  # nearest first
        shots = torch.zeros_like(d).scatter_(-1, idx, torch.isfinite(vals).to(d.dtype))
        killed = shots.amax(1) > 0
        dist_zone = norm2(att)
        arrived = alive0 & ~killed & (dist_zone <= k["zone_radius"])
        alive1 = alive0 & ~killed & ~arrived
        prev = ex["prev_pos"]
        score = arrived.to(d.dtype) - k["kill_penalty"] * killed.to(d.dtype)  # (E, M)
        r_att = score + k["approach_shaping"] * (norm2(prev[:, :M]) - dist_zone) * alive0
        # defender shaping: progress toward its nearest live attacker (distances to the same attacker)
        d_prev = norm2(att[:, None] - prev[:, M:, None])  # (E, D, M) from the defenders' previous positions
        near = torch.where(alive0[:, None], d, math.inf).argmin(-1, keepdim=True)  # (E, D, 1)
        progress = (torch.gather(d_prev, 2, near) - torch.gather(d, 2, near))[..., 0] * alive0.any(-1, keepdim=True)
        r_def = -score.sum(-1, keepdim=True) / D + k["pursuit_shaping"] * progress
        extra = {**ex, "alive": alive1, "killed": killed, "arrived": arrived,
                 "wreck": torch.where(alive0[..., None] & ~alive1[..., None], att, ex["wreck"]),
                 "prev_pos": pos[:, :M + D], "reward": torch.cat([r_att, r_def], 1)}
        return s._replace(pos=pos, vel=vel, extra=extra)

    def rewards(self, w: World, s: MPEState) -> Tensor:
        return s.extra["reward"]

    def terminal(self, w: World, s: MPEState) -> Tensor | None:
        return ~s.extra["alive"].any(-1)

    def observations(self, w: World, s: MPEState) -> dict[str, Tensor]:
        M, D, k = self.M, self.D, self.kw
        alive = s.extra["alive"]
        ap, av, dp, dv = s.pos[:, :M], s.vel[:, :M], s.pos[:, M:M + D], s.vel[:, M:M + D]
        R, K = k["sensing_radius"], k["num_neighbors"]

        def slots(p: Tensor, q: Tensor, qv: Tensor, valid: Tensor, others: Tensor | None = None) -> Tensor:
            rel, vel = q[:, None] - p[:, :, None], qv[:, None].expand(-1, p.shape[1], -1, -1)
            valid = valid[:, None].expand(-1, p.shape[1], -1)
            if others is not None:
                rows = torch.arange(p.shape[1], device=p.device)[:, None]
                rel, vel, valid = rel[:, rows, others], vel[:, rows, others], valid[:, rows, others]
            return nearest_slots(rel, vel, valid & (norm2(rel) <= R), K)

        every = torch.ones_like(dp[..., 0], dtype=torch.bool)
        if str(ap.device) not in self._others:
            self._others[str(ap.device)] = (others_index(M, ap.device), others_index(D, ap.device))
        others_m, others_d = self._others[str(ap.device)]
        att = torch.cat([av, ap, -ap, slots(ap, dp, dv, every), slots(ap, ap, av, alive, others_m)], -1)
        frac = alive.to(ap.dtype).mean(-1, keepdim=True)[:, None].expand(-1, D, -1)
        dfd = torch.cat([dv, dp, -dp, frac, slots(dp, ap, av, alive), slots(dp, dp, dv, every, others_d)], -1)
        return {"attacker": att * alive[..., None], "defender": dfd}

    def global_state(self, s: MPEState) -> Tensor:
        """(E, 4 (M + D) + M): agent positions, velocities, then the attackers' alive mask."""
        A = self.M + self.D
        return torch.cat([s.pos[:, :A].flatten(1), s.vel[:, :A].flatten(1), s.extra["alive"].to(s.pos.dtype)], 1)


class SwarmDefenseEnv(MPEEnv):
    """MPEEnv with the attackers' alive mask in every TimeStep (``spec.has_alive_mask``)."""

    def __init__(self, scenario: Scenario, **kw):
        super().__init__(scenario, **kw)
        self.spec: EnvSpec = dataclasses.replace(self.spec, has_alive_mask=True)
        self._defenders_alive = torch.ones(self.num_envs, scenario.D, dtype=torch.bool, device=self.device)

    def _with_alive(self, ts: TimeStep) -> TimeStep:
        ts.alive = {"attacker": self._state.extra["alive"], "defender": self._defenders_alive}
        return ts

    def step(self, actions: dict[str, Tensor]) -> TimeStep:
        return self._with_alive(super().step(actions))

    def reset(self, seed: int | None = None, mask: Tensor | None = None) -> TimeStep:
        return self._with_alive(super().reset(seed=seed, mask=mask))

    def render(self, env_index: int = 0, size: int = 360) -> np.ndarray:
        """RGB (size, size, 3) uint8: the zone (green), defenders (blue) with their engagement
        radius (thin ring), live attackers (red), destroyed ones (grey); consumed ones vanish."""
        if not 0 <= env_index < self.num_envs:
            raise IndexError(f"env_index {env_index} out of range for num_envs={self.num_envs}")
        sc, s, e = self.scenario, self._state, env_index
        M, D, k = sc.M, sc.D, sc.kw
        half = k["spawn_radius"] + 0.3
        px = lambda v: v / half * 0.5 * size  # noqa: E731
        pos = s.pos[e].detach().cpu().double().numpy()
        img = np.full((size, size, 3), 250, np.uint8)
        ys, xs = np.mgrid[0:size, 0:size]

        def disc(p, r, col, ring=None):
            d2 = (xs - (size / 2 + px(p[0]))) ** 2 + (ys - (size / 2 - px(p[1]))) ** 2
            if ring is None:
                img[d2 <= max(px(r), 1.5) ** 2] = col
            else:
                img[(d2 <= px(r) ** 2) & (d2 >= (px(r) - ring) ** 2)] = col

        disc((0.0, 0.0), k["zone_radius"], (170, 225, 170))
        alive = s.extra["alive"][e].cpu().numpy()
        gone = s.extra["arrived"][e].cpu().numpy()
        for j in range(D):  # rendering, not a hot path
            disc(pos[M + j], k["engagement_radius"], (120, 140, 220), ring=1.2)
            disc(pos[M + j], DEFENDER_SIZE, (50, 70, 200))
        for i in range(M):
            if alive[i]:
                disc(pos[i], ATTACKER_SIZE, (210, 50, 50))
            elif not gone[i]:
                disc(pos[i], ATTACKER_SIZE * 0.7, (150, 150, 150))
        return img


def make_swarm_defense(num_envs: int = 1, device="cpu", seed: int | None = None, **kwargs) -> SwarmDefenseEnv:
    merged = check_kwargs(Scenario.env_id, kwargs, {**KWARGS, **ENV_KWARGS})
    env_kw = {k: merged.pop(k) for k in ENV_KWARGS}
    return SwarmDefenseEnv(Scenario(**merged), num_envs=num_envs, device=device, seed=seed, **env_kw)


class ScriptedSwarmDefense:
    """The scripted baseline for both groups (see ``BASELINE``), reading only observations."""

    def __init__(self, spec: EnvSpec, defender_speed: float = 1.0):
        self.att, self.dfd = spec.groups["attacker"], spec.groups["defender"]
        self.speed = defender_speed  # for the lead time of an intercept

    def initial_carry(self, num_envs: int) -> dict:
        return {}

    def act(self, ts: TimeStep, carry: dict, deterministic: bool = True,
            generator: torch.Generator | None = None) -> tuple[dict[str, Tensor], dict]:
        oa, od = ts.obs["attacker"], ts.obs["defender"]
        a = steer(oa[..., 4:6] - oa[..., 0:2] * COAST, self.att)
        rel, vel, seen = od[..., 7:9], od[..., 9:11], od[..., 11:12] > 0.5  # nearest seen attacker
        lead = rel + vel * (norm2(rel)[..., None] / self.speed)
        goal = torch.where(seen, lead, od[..., 4:6])
        return {"attacker": a, "defender": steer(goal - od[..., 0:2] * COAST, self.dfd)}, carry


def baseline_policy(spec: EnvSpec, defender_speed: float = KWARGS["defender_speed"]) -> ScriptedSwarmDefense:
    """Scripted policy driving both groups (the Policy protocol of fastmarl.envs.api);
    ``defender_speed`` (the env's) sets the lead time of the intercepts."""
    return ScriptedSwarmDefense(spec, defender_speed)


__all__ = ["Scenario", "SwarmDefenseEnv", "make_swarm_defense", "baseline_policy", "BASELINE", "KWARGS"]
