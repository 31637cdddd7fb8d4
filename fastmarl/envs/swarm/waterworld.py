"""waterworld_v0: PettingZoo's SISL waterworld (``waterworld_v4``), re-implemented as batched tensor maths.

Pursuers (group ``"pursuer"``, ``pursuer_0..``) swim in the unit square ``[0, 1]^2`` among
food (``n_evaders``, radius ``2 radius``), poison (``n_poisons``, radius ``0.75 radius``) and
static circular obstacles (``n_obstacles``, radius ``obstacle_radius``, at ``obstacle_coord`` or
uniform per episode when it is None). Kwargs, defaults, spaces, sensors and rewards follow
PettingZoo's ``waterworld_v4`` source (PettingZoo 1.25; the defaults are its code's, e.g. 2
pursuers and ``n_coop=1``, not the older values in its documentation's argument list).

Step (``dt = 1 / FPS``): the action ``a`` (``Box(-1, 1, (2,))``) becomes the thrust
``pursuer_max_accel * a``, scaled down to norm ``pursuer_max_accel``; it is added to the
pursuer's velocity, which is clipped per axis to ``pursuer_speed``. Everything moves
``vel * dt`` (no drag), bouncing elastically off the walls and the obstacles. Objects pass
through each other. A pursuer *touches* food / poison when their discs overlap.
Food touched by at least ``n_coop`` pursuers at once is eaten: each of them gets
``food_reward`` and the food reappears elsewhere. Touched poison gives ``poison_reward`` and
reappears. Every pursuer touching a food gets ``encounter_reward`` per food, and
``thrust_penalty * |thrust|`` each step. Reward ``r = local_ratio * r_local + (1 - local_ratio) *
mean(r_local)``. Episodes truncate after ``max_cycles`` steps (no termination).

Sensors: ``n_sensors`` rays at angles ``2 pi k / n_sensors`` (world frame) of length
``sensor_range``. A ray senses an object whose centre projects onto it at ``0 <= proj``, with
``proj - r_obj <= sensor_range`` and the ray passing within ``r_obj`` of the centre; it reads
``clip(proj / sensor_range, 0, 1)`` for the nearest such object (1 when none) and, with
``speed_features``, the relative velocity along the ray divided by ``(object max speed +
pursuer_speed)`` (0 when none). Walls read the fraction of the ray inside the square.
Observation (``S = n_sensors``), ``8 S + 2`` values (``5 S + 2`` without speed features)::

    [obstacle dist (S), wall dist (S), food dist (S), food speed (S), poison dist (S),
     poison speed (S), pursuer dist (S), pursuer speed (S), touching food (1), poisoned (1)]

Global state ``(E, 4 (P + F + Q) + 2 O)``: positions and velocities (divided by each kind's
max speed) of pursuers, food and poison, then obstacle positions.

Differences from PettingZoo (no pymunk; exact parity is not a goal): contacts and bounces are
resolved once per step after the move (pymunk resolves them inside its solver); food is eaten
in the step ``n_coop`` pursuers touch it (PettingZoo pays when they separate); the food reward
counts each eaten food; obstacles bounce with ``obstacle_radius`` (pymunk uses 0.1 whatever it is);
random obstacles are drawn independently; every pursuer pays its thrust penalty once per step
(in PettingZoo's AEC loop the last pursuer of each cycle pays it twice). As in PettingZoo, a lone
pursuer's pursuer sensors read 0. ``continuous_actions=False`` (a fastmarl addition) gives
``Discrete(5)``: stay, -x, +x, -y, +y at full thrust.
"""

from __future__ import annotations

import math
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
from fastmarl.envs.mpe.geometry import MOVES, N_MOVES, axis_move

GROUP = "pursuer"
BASELINE = "greedy heuristic: steer along the ray that sees the nearest food, away from poison, low thrust (random thrust is the floor)"
KWARGS: dict[str, Any] = dict(
    n_pursuers=2, n_evaders=5, n_poisons=10, n_obstacles=1, n_coop=1, n_sensors=30, sensor_range=0.2, radius=0.015,
    obstacle_radius=0.1, obstacle_coord=((0.5, 0.5),), pursuer_max_accel=0.5, pursuer_speed=0.2, evader_speed=0.1,
    poison_speed=0.1, poison_reward=-1.0, food_reward=10.0, encounter_reward=0.01, thrust_penalty=-0.5,
    local_ratio=1.0, speed_features=True, max_cycles=500, FPS=15, continuous_actions=True, dtype=torch.float32,
    validate=True, render_mode=None)
_INTS = dict(n_pursuers=1, n_evaders=0, n_poisons=0, n_obstacles=0, n_coop=1, n_sensors=1, max_cycles=1, FPS=1)
_POSITIVE = ("sensor_range", "radius", "pursuer_max_accel", "pursuer_speed")
_NONNEG = ("obstacle_radius", "evader_speed", "poison_speed")
_ANY = ("poison_reward", "food_reward", "encounter_reward", "thrust_penalty")
_SQRT2 = float(np.float32(math.sqrt(2)))


def ray_readings(p: Tensor, pv: Tensor, x: Tensor, xv: Tensor, r: float, rays: Tensor, rng: float, vscale: float,
                 exclude_self: bool = False) -> tuple[Tensor, Tensor]:
    """Every ray of every pursuer against every object, as one tensor expression.

    p, pv (E, P, 2) pursuer positions / velocities; x, xv (E, J, 2) objects of radius ``r``;
    rays (S, 2) unit vectors. Returns (distance (E, P, S) in [0, 1], 1 = nothing sensed;
    relative speed along the ray / ``vscale`` (E, P, S), 0 = nothing sensed).
    ``exclude_self``: objects are the pursuers themselves (J = P); a pursuer never senses itself.
    """
    E, P = p.shape[:2]
    if x.shape[1] == 0:
        return p.new_ones(E, P, rays.shape[0]), p.new_zeros(E, P, rays.shape[0])
    rel = x[:, None] - p[:, :, None]  # (E, P, J, 2)
    proj = torch.einsum("epjd,sd->epsj", rel, rays)  # (E, P, S, J)
    off = (rel.square().sum(-1) - r * r)[:, :, None]  # (E, P, 1, J): the ray misses if proj^2 < |rel|^2 - r^2
    seen = (proj >= 0) & (proj <= rng + r) & (proj.square() >= off)
    if exclude_self:
        seen = seen & ~torch.eye(P, dtype=torch.bool, device=p.device)[None, :, None, :]
    near, j = torch.where(seen, proj, math.inf).min(-1)  # nearest sensed object per ray
    dmin = (near / rng).clamp_max(1.0)  # 1 where nothing is sensed (inf)
    J = x.shape[1]
    xj = xv.reshape(-1, 2)[j + torch.arange(E, device=p.device)[:, None, None] * J]  # (E, P, S, 2) that object's velocity
    v = ((xj - pv[:, :, None]) * rays).sum(-1) / vscale
    v = torch.where(torch.gather(seen, -1, j[..., None])[..., 0], v, 0.0)
    return dmin, v.clamp(-_SQRT2, _SQRT2)


def wall_readings(p: Tensor, rays: Tensor, rng: float) -> Tensor:
    """(E, P, S): fraction of each ray inside ``[0, 1]^2`` (1 when it does not reach a wall)."""
    vec = rays * rng  # (S, 2)
    clipped = (p[:, :, None] + vec).clamp(0.0, 1.0) - p[:, :, None]
    safe = vec.abs() > 1e-8
    ratio = torch.where(safe, clipped / torch.where(safe, vec, 1.0), 1.0).amin(-1)
    return torch.where(ratio < 1.0 - 1e-4, ratio, 1.0)


def bounce(pos: Tensor, vel: Tensor, r: float, obstacles: Tensor, obstacle_r: float) -> tuple[Tensor, Tensor]:
    """Elastic reflection (E, N, 2) off the walls of ``[0, 1]^2`` and the obstacles (E, O, 2)."""
    lo, hi = pos < r, pos > 1.0 - r
    pos = torch.where(lo, 2 * r - pos, torch.where(hi, 2 * (1.0 - r) - pos, pos)).clamp(r, 1.0 - r)
    vel = torch.where(lo, vel.abs(), torch.where(hi, -vel.abs(), vel))
    if obstacles.shape[1] and obstacle_r > 0:
        rel = pos[:, :, None] - obstacles[:, None]  # (E, N, O, 2)
        d = rel.norm(dim=-1, keepdim=True)
        n = rel / d.clamp_min(1e-9)
        hit = d < r + obstacle_r
        pos = pos + (torch.where(hit, (r + obstacle_r - d), 0.0) * n).sum(2)
        vn = (vel[:, :, None] * n).sum(-1, keepdim=True)
        vel = vel - (torch.where(hit & (vn < 0), 2 * vn, 0.0) * n).sum(2)
    return pos, vel


class Waterworld(FieldsState):
    """``num_envs`` copies of waterworld; see the module docstring for every shape."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 15}

    def __init__(self, num_envs: int = 1, device: str | torch.device = "cpu", seed: int | None = None, **kwargs: Any):
        env_id = self.env_id = "waterworld_v0"
        c = self.cfg = check_kwargs(env_id, kwargs, KWARGS)
        if not isinstance(num_envs, int) or isinstance(num_envs, bool) or num_envs < 1:
            raise ValueError(f"{env_id}: num_envs must be a positive int, got {num_envs!r}")
        for k, lo in _INTS.items():
            if not isinstance(c[k], int) or isinstance(c[k], bool) or c[k] < lo:
                raise ValueError(f"{env_id}: {k} must be an int >= {lo}, got {c[k]!r}")
        rules = {**{k: (lambda v: v > 0, " > 0") for k in _POSITIVE}, **{k: (lambda v: v >= 0, " >= 0") for k in _NONNEG},
                 **{k: (lambda v: True, "") for k in _ANY}, "local_ratio": (lambda v: 0 <= v <= 1, " in [0, 1]")}
        for k, (rule, what) in rules.items():
            v = c[k]
            if not (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and rule(v)):
                raise ValueError(f"{env_id}: {k} must be a finite number{what}, got {v!r}")
        if c["n_coop"] > c["n_pursuers"]:
            raise ValueError(f"{env_id}: n_coop={c['n_coop']} > n_pursuers={c['n_pursuers']}: no food could ever be eaten")
        oc = c["obstacle_coord"]
        if oc is not None:
            arr = np.asarray(oc, dtype=np.float64)
            arr = arr.reshape(0, 2) if arr.size == 0 else arr
            if arr.shape != (c["n_obstacles"], 2) or not ((arr > 0) & (arr < 1)).all():
                raise ValueError(f"{env_id}: obstacle_coord must be n_obstacles={c['n_obstacles']} (x, y) pairs in (0, 1) "
                                 f"or None (random), got {oc!r}")
        if c["dtype"] not in (torch.float32, torch.float64):
            raise ValueError(f"{env_id}: dtype must be torch.float32 or torch.float64, got {c['dtype']}")
        if c["render_mode"] not in (None, "rgb_array"):
            raise ValueError(f"{env_id}: render_mode {c['render_mode']!r} is not supported: use None or 'rgb_array'")
        self.device = torch.empty(0, device=device).device
        self.num_envs, self.dtype, self.validate, self.render_mode = num_envs, c["dtype"], bool(c["validate"]), c["render_mode"]
        self.P, self.F, self.Q, self.O, self.S = c["n_pursuers"], c["n_evaders"], c["n_poisons"], c["n_obstacles"], c["n_sensors"]
        self.continuous, self.dt = bool(c["continuous_actions"]), 1.0 / c["FPS"]
        self.r_p, self.r_f, self.r_q = c["radius"], 2 * c["radius"], 0.75 * c["radius"]
        f = dict(device=self.device, dtype=self.dtype)
        ang = torch.arange(self.S, dtype=torch.float64) * (2 * math.pi / self.S)
        self.rays = torch.stack([ang.cos(), ang.sin()], -1).to(**f)  # (S, 2)
        self._moves = torch.tensor(MOVES, **f)
        self._coord = torch.tensor(np.asarray(oc, dtype=np.float64).reshape(-1, 2), **f) if oc is not None else None
        self.obs_dim = (8 if c["speed_features"] else 5) * self.S + 2
        self.state_dim = 4 * (self.P + self.F + self.Q) + 2 * self.O
        act = gym.spaces.Box(-1.0, 1.0, (2,), np.float32) if self.continuous else gym.spaces.Discrete(N_MOVES)
        obs_space = gym.spaces.Box(-_SQRT2, _SQRT2, (self.obs_dim,), np.float32)
        group = GroupSpec(GROUP, tuple(f"pursuer_{i}" for i in range(self.P)), obs_space, act)
        self.spec = EnvSpec(env_id, {GROUP: group}, self.state_dim, c["max_cycles"])
        self._gen = torch.Generator(device=self.device)
        self._gen.manual_seed(seed if seed is not None else int(torch.randint(0, 2**62, (1,)).item()))
        E = num_envs
        z = lambda n: torch.zeros(E, n, 2, **f)  # noqa: E731
        self.pos, self.vel, self.food, self.food_vel = z(self.P), z(self.P), z(self.F), z(self.F)
        self.poison, self.poison_vel = z(self.Q), z(self.Q)
        self.obstacles = z(self.O)
        self.touch_food = torch.zeros(E, self.P, **f)  # 1 while touching some food
        self.poisoned = torch.zeros(E, self.P, **f)  # 1 if poisoned this step
        self.t = torch.zeros(E, dtype=torch.long, device=self.device)
        self.reset()  # allocates the state; step() still needs a reset() of its own
        self._was_reset = False

    # -- sampling -----------------------------------------------------------------------
    def _coords(self, n: int, r: float, tries: int = 8) -> Tensor:
        """(E, n, 2) uniform points more than ``2 r + obstacle_radius`` from every obstacle
        (PettingZoo's rule); the first of ``tries`` candidates that qualifies."""
        E = self.num_envs
        cand = torch.rand(E, n, tries, 2, generator=self._gen, device=self.device, dtype=self.dtype)
        if self.O:
            d = (cand[:, :, :, None] - self.obstacles[:, None, None]).norm(dim=-1)  # (E, n, tries, O)
            ok = (d > 2 * r + self.cfg["obstacle_radius"]).all(-1)
            k = torch.where(ok.any(-1), ok.to(torch.int8).argmax(-1), tries - 1)
            return torch.gather(cand, 2, k[..., None, None].expand(-1, -1, 1, 2))[:, :, 0]
        return cand[:, :, 0]

    def _speeds(self, n: int, speed: float) -> Tensor:
        return (torch.rand(self.num_envs, n, 2, generator=self._gen, device=self.device, dtype=self.dtype) * 2 - 1) * speed

    def _respawn(self, pos: Tensor, vel: Tensor, where: Tensor, r: float, speed: float) -> tuple[Tensor, Tensor]:
        """Objects where ``where`` (E, n) is True move to fresh random places and velocities."""
        n = pos.shape[1]
        m = where[..., None]
        return torch.where(m, self._coords(n, r), pos), torch.where(m, self._speeds(n, speed), vel)

    # -- observations, state ------------------------------------------------------------
    def _obs(self) -> dict[str, Tensor]:
        c, p, v = self.cfg, self.pos, self.vel
        R, ps = c["sensor_range"], c["pursuer_speed"]
        obst, _ = ray_readings(p, v, self.obstacles, torch.zeros_like(self.obstacles), c["obstacle_radius"], self.rays, R, 1.0)
        food = ray_readings(p, v, self.food, self.food_vel, self.r_f, self.rays, R, c["evader_speed"] + ps)
        pois = ray_readings(p, v, self.poison, self.poison_vel, self.r_q, self.rays, R, c["poison_speed"] + ps)
        if self.P > 1:
            purs = ray_readings(p, v, p, v, self.r_p, self.rays, R, 2 * ps, exclude_self=True)
        else:  # PettingZoo reports zeros (not 1s) for a lone pursuer
            purs = (torch.zeros_like(obst), torch.zeros_like(obst))
        parts = [obst, wall_readings(p, self.rays, R)]
        for d, s in (food, pois, purs):
            parts += [d, s] if c["speed_features"] else [d]
        return {GROUP: torch.cat(parts + [self.touch_food[..., None], self.poisoned[..., None]], -1)}

    def observations(self) -> dict[str, Tensor]:
        """Observations of the current state, group -> (E, P, obs_dim) (after editing the state)."""
        return self._obs()

    def state(self) -> Tensor:
        """(E, state_dim): see the module docstring."""
        c = self.cfg
        sp = lambda v, s: v / s if s > 0 else v  # noqa: E731
        return torch.cat([self.pos.flatten(1), sp(self.vel, c["pursuer_speed"]).flatten(1), self.food.flatten(1),
                          sp(self.food_vel, c["evader_speed"]).flatten(1), self.poison.flatten(1),
                          sp(self.poison_vel, c["poison_speed"]).flatten(1), self.obstacles.flatten(1)], 1)

    # -- dynamics -----------------------------------------------------------------------
    def _reset_where(self, mask: Tensor) -> None:
        c, m = self.cfg, mask[:, None, None]
        if self._coord is not None:
            obst = self._coord.expand(self.num_envs, -1, -1)
        else:
            obst = torch.rand(self.num_envs, self.O, 2, generator=self._gen, device=self.device, dtype=self.dtype)
        self.obstacles = torch.where(m, obst, self.obstacles)
        self.pos = torch.where(m, self._coords(self.P, self.r_p), self.pos)
        self.vel = torch.where(m, 0.0, self.vel)
        self.food = torch.where(m, self._coords(self.F, self.r_f), self.food)
        self.food_vel = torch.where(m, self._speeds(self.F, c["evader_speed"]), self.food_vel)
        self.poison = torch.where(m, self._coords(self.Q, self.r_q), self.poison)
        self.poison_vel = torch.where(m, self._speeds(self.Q, c["poison_speed"]), self.poison_vel)
        self.touch_food = torch.where(mask[:, None], 0.0, self.touch_food)
        self.poisoned = torch.where(mask[:, None], 0.0, self.poisoned)
        self.t = torch.where(mask, 0, self.t)

    def reset(self, seed: int | None = None, mask: Tensor | None = None) -> TimeStep:
        """Reset all envs (mask None) or those where ``mask`` (E,) bool is True."""
        if seed is not None:
            self._gen.manual_seed(int(seed))
        self._reset_where(reset_mask(mask, self.num_envs, self.device))
        self._was_reset = True
        return reset_timestep(self.spec, self._obs(), self.dtype)

    def thrust(self, a: Tensor) -> Tensor:
        """Actions -> thrust (E, P, 2), norm <= pursuer_max_accel."""
        u = a.to(self.dtype).clamp(-1, 1) if self.continuous else self._moves[a.long()]
        u = u * self.cfg["pursuer_max_accel"]
        n = u.norm(dim=-1, keepdim=True)
        return torch.where(n > self.cfg["pursuer_max_accel"], u * (self.cfg["pursuer_max_accel"] / n.clamp_min(1e-12)), u)

    def step(self, actions: dict[str, Tensor]) -> TimeStep:
        """Step every env; see :mod:`fastmarl.envs.api`. Auto-resets ended episodes."""
        require_reset(self)
        if self.validate:
            validate_actions(self.spec, actions, self.num_envs, self.device)
        c, dt = self.cfg, self.dt
        ro = c["obstacle_radius"]
        acc = self.thrust(actions[GROUP])
        self.vel = (self.vel + acc).clamp(-c["pursuer_speed"], c["pursuer_speed"])
        self.pos, self.vel = bounce(self.pos + self.vel * dt, self.vel, self.r_p, self.obstacles, ro)
        self.food, self.food_vel = bounce(self.food + self.food_vel * dt, self.food_vel, self.r_f, self.obstacles, ro)
        self.poison, self.poison_vel = bounce(self.poison + self.poison_vel * dt, self.poison_vel, self.r_q, self.obstacles, ro)
        touch_f = (self.pos[:, :, None] - self.food[:, None]).norm(dim=-1) < self.r_p + self.r_f  # (E, P, F)
        touch_q = (self.pos[:, :, None] - self.poison[:, None]).norm(dim=-1) < self.r_p + self.r_q  # (E, P, Q)
        eaten = touch_f.sum(1) >= c["n_coop"]  # (E, F)
        tf, tq = touch_f.to(self.dtype), touch_q.to(self.dtype)
        local = (c["food_reward"] * (tf * eaten[:, None]).sum(-1) + c["encounter_reward"] * tf.sum(-1)
                 + c["poison_reward"] * tq.sum(-1) + c["thrust_penalty"] * acc.norm(dim=-1))
        reward = c["local_ratio"] * local + (1 - c["local_ratio"]) * local.mean(-1, keepdim=True)
        self.food, self.food_vel = self._respawn(self.food, self.food_vel, eaten, self.r_f, c["evader_speed"])
        self.poison, self.poison_vel = self._respawn(self.poison, self.poison_vel, touch_q.any(1), self.r_q, c["poison_speed"])
        self.touch_food, self.poisoned = touch_f.any(-1).to(self.dtype), touch_q.any(-1).to(self.dtype)
        self.t = self.t + 1
        trunc = self.t >= c["max_cycles"]
        term = torch.zeros_like(trunc)
        obs = final_obs = self._obs()
        final_state, info = None, {"food_eaten": eaten.sum(-1), "poison_touched": touch_q.sum((1, 2))}
        if bool(trunc.any()):
            final_state = self.state()
            self._reset_where(trunc)
            obs = self._obs()
        return TimeStep(obs=obs, reward={GROUP: reward}, terminated=term, truncated=trunc, final_obs=final_obs,
                        final_state=final_state, info=info)

    # -- save / restore (fastmarl.train.checkpoint) -------------------------------------
    _STATE = ("pos", "vel", "food", "food_vel", "poison", "poison_vel", "obstacles", "touch_food", "poisoned", "t")

    def render(self, env_index: int = 0, size: int = 400) -> np.ndarray:
        """RGB (size, size, 3): obstacles teal, food green, poison red, pursuers purple with their sensor rays."""
        if not 0 <= env_index < self.num_envs:
            raise IndexError(f"env_index {env_index} out of range for num_envs={self.num_envs}")
        img = np.full((size, size, 3), 255, np.uint8)
        ys, xs = np.mgrid[0:size, 0:size]
        rays = self.rays.cpu().numpy() * self.cfg["sensor_range"] * size

        def disc(p, r, color):
            x, y = p[0] * size, (1 - p[1]) * size
            img[(xs - x) ** 2 + (ys - y) ** 2 <= max(r * size, 2.0) ** 2] = color

        for p in self.obstacles[env_index].cpu().numpy():
            disc(p, self.cfg["obstacle_radius"], (120, 176, 178))
        for p in self.pos[env_index].cpu().numpy():
            for t in np.linspace(0.25, 1.0, 4):  # sparse dots: the GIFs stay small
                xx, yy = (p[0] * size + t * rays[:, 0]).astype(int), ((1 - p[1]) * size - t * rays[:, 1]).astype(int)
                ok = (xx >= 0) & (xx < size) & (yy >= 0) & (yy < size)
                img[yy[ok], xx[ok]] = (190, 190, 190)
        for objs, r, col in ((self.food, self.r_f, (145, 250, 116)), (self.poison, self.r_q, (238, 116, 106)),
                             (self.pos, self.r_p, (101, 104, 249))):
            for p in objs[env_index].cpu().numpy():
                disc(p, r, col)
        return img

    def close(self) -> None:
        pass


class GreedyWaterworld:
    """Heuristic from observations only: steer along the ray that sees the nearest food, away
    from poison and obstacles within half the sensor range; otherwise keep a wandering heading
    (carried), turned away from walls. Thrust is ``thrust`` of the maximum (thrust costs reward)."""

    def __init__(self, spec: EnvSpec, speed_features: bool = True, thrust: float = 0.3):
        g = spec.groups.get(GROUP)
        if g is None or not spec.env_id.startswith("waterworld"):
            raise ValueError(f"GreedyWaterworld drives waterworld_v0, got {spec.env_id}")
        per = 8 if speed_features else 5
        if (g.obs_dim - 2) % per:
            raise ValueError(f"observation size {g.obs_dim} does not fit speed_features={speed_features}")
        self.spec, self.S, self.speed_features, self.thrust = spec, (g.obs_dim - 2) // per, speed_features, thrust
        ang = torch.arange(self.S, dtype=torch.float64) * (2 * math.pi / self.S)
        self.rays = torch.stack([ang.cos(), ang.sin()], -1).float()

    def initial_carry(self, num_envs: int) -> dict:
        return {}

    def act(self, ts: TimeStep, carry: dict, deterministic: bool = True,
            generator: torch.Generator | None = None) -> tuple[dict[str, Tensor], dict]:
        o, S = ts.obs[GROUP], self.S
        rays = self.rays.to(o)
        obst, wall, food = o[..., :S], o[..., S:2 * S], o[..., 2 * S:3 * S]
        pois = o[..., (4 if self.speed_features else 3) * S:(5 if self.speed_features else 4) * S]
        heading = carry.get("heading")
        if heading is None or heading.shape != o.shape[:-1] + (2,):
            k = torch.arange(o.shape[1], device=o.device, dtype=o.dtype) * 2.39996  # golden-angle spread
            heading = torch.stack([k.cos(), k.sin()], -1).expand(o.shape[0], -1, -1)
        danger = ((0.5 - torch.minimum(pois, obst)).clamp_min(0) + (0.3 - wall).clamp_min(0))[..., None]  # (E, P, S, 1)
        away = -(danger * rays).sum(-2)
        blocked = (heading @ rays.T > 0.7) & ((wall < 0.5) | (obst < 0.5))  # heading points at a wall / obstacle
        heading = torch.where(blocked.any(-1, keepdim=True), -heading, heading)
        fmin, j = food.min(-1)
        goal = torch.where((fmin < 1)[..., None], rays[j], heading) + away
        u = goal / goal.norm(dim=-1, keepdim=True).clamp_min(1e-6) * self.thrust
        g = self.spec.groups[GROUP]
        if g.discrete:
            return {GROUP: axis_move(u)}, {"heading": heading}
        return {GROUP: u}, {"heading": heading}


def baseline_policy(spec: EnvSpec, **env_kwargs: Any) -> GreedyWaterworld:
    """The greedy heuristic for an env built with ``env_kwargs`` (only ``speed_features`` matters)."""
    return GreedyWaterworld(spec, speed_features=env_kwargs.get("speed_features", True))


def make_waterworld(num_envs: int = 1, device: str | torch.device = "cpu", seed: int | None = None,
                    **kwargs: Any) -> Waterworld:
    return Waterworld(num_envs=num_envs, device=device, seed=seed, **kwargs)


__all__ = ["Waterworld", "GreedyWaterworld", "make_waterworld", "baseline_policy", "ray_readings", "wall_readings",
           "bounce", "BASELINE"]
