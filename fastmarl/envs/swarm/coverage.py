"""swarm_coverage_v0: battery-limited drones cover an area and find hidden targets, sharing scarce chargers.

The arena ``[-1, 1]^2`` is split into ``grid_size x grid_size`` cells (side ``2 / grid_size``).
``num_drones`` drones (group ``"drone"``) move kinematically: each step a drone with charge
left moves ``speed * u`` (``|u| <= 1``), clamped to the arena. A drone *senses* the disc of
radius ``sensing_radius`` around it: a cell is covered the first time any sensing drone's
disc contains the cell centre, and a hidden target (``num_targets``, uniform in the arena
each episode) is found the first time a sensing drone is within ``sensing_radius``.

Battery (each drone, in [0, 1], starts ~ U(0.5, 1)): per step
``b' = clip(b - idle_drain - move_drain * |u| + charge_rate * charging, 0, 1)``.
A drone with ``b == 0`` at the start of a step is *empty*: it neither moves nor senses
(action-masked: only action 0 is legal; with continuous actions its action is ignored). It
is not removed: if it sits at a station it recharges and flies again.
Stations (``num_stations``, uniform in ``[-0.7, 0.7]^2`` per episode): a drone within
``station_radius`` of a station is *at* it (the nearest one if several). A station charges at
most ``station_capacity`` drones per step: those at it ranked by distance to its centre
(ties: lower drone index first); the others wait and get nothing (full drones hold slots too).
Drones start at the stations (drone i at station ``i % num_stations``, offset uniformly within
``station_radius / 2``); cells and targets seen at the start count as covered / found.

Actions: discrete (default) ``0`` stay, ``1`` -x, ``2`` +x, ``3`` -y, ``4`` +y (``u`` a unit
axis vector), with an action mask; ``continuous_actions=True``: ``Box(-1, 1, (2,))``, ``u`` the
action scaled to norm <= 1.
Reward (shared by all drones): ``coverage_reward * new_cells / grid_size^2 + target_reward *
new_targets`` (each cell and target counted once per episode, however many drones see it).
Episodes terminate when every cell is covered and every target found, truncate at ``max_cycles``.

Observation of one drone (``S = min(num_stations, 3)`` nearest stations, ``K = num_neighbors``
nearest drones, zero-padded; ``P = 2 patch_radius + 1``)::

    [pos (2), vel / speed (2), battery (1), t / max_cycles (1),
     S x [station rel pos (2), drones at it / station_capacity (1)],
     K x [drone rel pos (2), battery (1)],
     target hint [rel pos (2), 1] of the nearest unfound target within hint_radius (else zeros),
     P x P local coverage patch around the drone's cell (1 covered or outside, 0 not),
     4 x 4 coarse coverage map (fraction covered per block, x-major)]

Global state ``(E, 5 D + 3 num_stations + 3 num_targets + M^2 + 1)``: drone positions,
velocities, batteries, station positions and occupancy, target positions and found flags,
the coverage map pooled to ``M = min(grid_size, 16)`` per side, and ``t / max_cycles``.
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
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
from fastmarl.envs.mpe.geometry import MOVES, N_MOVES, axis_move, nearest_k

GROUP = "drone"
BASELINE = "scripted sweep: go to the nearest uncovered cell seen in the local patch or coarse map, return to charge when low"
_COARSE, _STATE_MAP, _MAX_STATION_SLOTS = 4, 16, 3
KWARGS: dict[str, Any] = dict(
    num_drones=4, grid_size=16, sensing_radius=0.15, num_targets=4, num_stations=1, station_capacity=1,
    station_radius=0.15, speed=0.1, idle_drain=0.005, move_drain=0.015, charge_rate=0.1, coverage_reward=10.0,
    target_reward=1.0, max_cycles=100, num_neighbors=4, patch_radius=2, hint_radius=None,
    continuous_actions=False, dtype=torch.float32, validate=True, render_mode=None)
_INTS = dict(num_drones=1, grid_size=_COARSE, num_targets=0, num_stations=1, station_capacity=1, max_cycles=1,
             num_neighbors=1, patch_radius=0)
_POSITIVE = ("sensing_radius", "station_radius", "speed")
_NONNEG = ("idle_drain", "move_drain", "charge_rate", "coverage_reward", "target_reward")


def _offsets(w: int, device: torch.device) -> Tensor:
    """((2w + 1)^2, 2) long: every cell offset (dx, dy) in [-w, w]^2, dx-major."""
    r = torch.arange(-w, w + 1, device=device)
    return torch.stack(torch.meshgrid(r, r, indexing="ij"), -1).reshape(-1, 2)


def station_charging(pos: Tensor, stations: Tensor, radius: float, capacity: int) -> tuple[Tensor, Tensor, Tensor]:
    """Who charges. pos (E, D, 2), stations (E, S, 2) -> (charging (E, D) bool, at (E, D) long
    station index or -1, occupancy (E, S) drones at each station). A station charges its
    ``capacity`` nearest drones (ties: lower index)."""
    d = (pos[:, :, None] - stations[:, None]).norm(dim=-1)  # (E, D, S); exact, unlike cdist's matmul path
    d = torch.where(d <= radius, d, math.inf)
    dmin, at = d.min(-1)  # nearest station within range (ties: lower station index)
    here = torch.isfinite(dmin)
    at = torch.where(here, at, -1)
    same = (at[:, :, None] == at[:, None, :]) & here[:, :, None] & here[:, None, :]  # (E, i, j)
    idx = torch.arange(pos.shape[1], device=pos.device)
    ahead = (dmin[:, None, :] < dmin[:, :, None]) | ((dmin[:, None, :] == dmin[:, :, None]) & (idx < idx[:, None]))
    rank = (same & ahead).sum(-1)  # drones ahead of i in i's queue
    occupancy = (F.one_hot(at.clamp_min(0), stations.shape[1]) * here[..., None]).sum(1)
    return here & (rank < capacity), at, occupancy


class SwarmCoverage(FieldsState):
    """``num_envs`` copies of the coverage task; see the module docstring for every shape."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, num_envs: int = 1, device: str | torch.device = "cpu", seed: int | None = None, **kwargs: Any):
        env_id = self.env_id = "swarm_coverage_v0"
        c = check_kwargs(env_id, kwargs, KWARGS)
        if not isinstance(num_envs, int) or isinstance(num_envs, bool) or num_envs < 1:
            raise ValueError(f"{env_id}: num_envs must be a positive int, got {num_envs!r}")
        for k, lo in _INTS.items():
            if not isinstance(c[k], int) or isinstance(c[k], bool) or c[k] < lo:
                raise ValueError(f"{env_id}: {k} must be an int >= {lo}, got {c[k]!r}")
        positive = _POSITIVE + (("hint_radius",) if c["hint_radius"] is not None else ())
        for k in positive + _NONNEG:
            v = c[k]
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            if not ok or not (v > 0 if k in positive else v >= 0):
                kind = "positive" if k in positive else "non-negative"
                raise ValueError(f"{env_id}: {k} must be a finite {kind} number, got {v!r}")
        if c["dtype"] not in (torch.float32, torch.float64):
            raise ValueError(f"{env_id}: dtype must be torch.float32 or torch.float64, got {c['dtype']}")
        if c["render_mode"] not in (None, "rgb_array"):
            raise ValueError(f"{env_id}: render_mode {c['render_mode']!r} is not supported: use None or 'rgb_array'")
        self.cfg = c
        self.device = torch.empty(0, device=device).device
        self.num_envs, self.D, self.G, self.T, self.S = num_envs, c["num_drones"], c["grid_size"], c["num_targets"], c["num_stations"]
        self.dtype, self.validate, self.render_mode = c["dtype"], bool(c["validate"]), c["render_mode"]
        self.continuous = bool(c["continuous_actions"])
        self.cell = 2.0 / self.G
        self.r = float(c["sensing_radius"])
        self.hint_r = float(c["hint_radius"]) if c["hint_radius"] is not None else 2.0 * self.r
        self.K, self.S_obs, p = c["num_neighbors"], min(self.S, _MAX_STATION_SLOTS), c["patch_radius"]
        f = dict(device=self.device, dtype=self.dtype)
        self._moves = torch.tensor(MOVES, **f)
        w = math.ceil(self.r / self.cell)  # sensing window half-width in cells
        self._sense_off, self._patch_off = _offsets(w, self.device), _offsets(p, self.device)
        self.obs_dim = 6 + 3 * self.S_obs + 3 * self.K + 3 + (2 * p + 1) ** 2 + _COARSE ** 2
        self.state_dim = 5 * self.D + 3 * self.S + 3 * self.T + min(self.G, _STATE_MAP) ** 2 + 1
        act = gym.spaces.Box(-1.0, 1.0, (2,), np.float32) if self.continuous else gym.spaces.Discrete(N_MOVES)
        group = GroupSpec(GROUP, tuple(f"drone_{i}" for i in range(self.D)),
                          gym.spaces.Box(-np.inf, np.inf, (self.obs_dim,), np.float32), act)
        self.spec = EnvSpec(env_id, {GROUP: group}, self.state_dim, c["max_cycles"], has_action_mask=not self.continuous)
        self._gen = torch.Generator(device=self.device)
        self._gen.manual_seed(seed if seed is not None else int(torch.randint(0, 2**62, (1,)).item()))
        E, D = num_envs, self.D
        self.pos, self.vel, self.battery = torch.zeros(E, D, 2, **f), torch.zeros(E, D, 2, **f), torch.zeros(E, D, **f)
        self.stations, self.targets = torch.zeros(E, self.S, 2, **f), torch.zeros(E, self.T, 2, **f)
        self.covered = torch.zeros(E, self.G, self.G, dtype=torch.bool, device=self.device)  # [e, ix, iy]
        self.found = torch.zeros(E, self.T, dtype=torch.bool, device=self.device)
        self.t = torch.zeros(E, dtype=torch.long, device=self.device)
        self.reset()  # allocates the state; step() still needs a reset() of its own
        self._was_reset = False

    # -- sensing ------------------------------------------------------------------------
    def _cell_of(self, pos: Tensor) -> Tensor:
        return ((pos + 1.0) / self.cell).floor().long().clamp(0, self.G - 1)  # (E, D, 2) [ix, iy]

    def sense(self, active: Tensor) -> tuple[Tensor, Tensor]:
        """Mark what the ``active`` (E, D) drones see now; returns (new cells (E,), new targets (E,))."""
        E, G = self.num_envs, self.G
        idx = self._cell_of(self.pos)[:, :, None, :] + self._sense_off  # (E, D, W, 2)
        inside = ((idx >= 0) & (idx < G)).all(-1)
        centre = (idx.to(self.dtype) + 0.5) * self.cell - 1.0
        seen = inside & ((centre - self.pos[:, :, None]).square().sum(-1) <= self.r ** 2) & active[..., None]
        flat = (idx[..., 0].clamp(0, G - 1) * G + idx[..., 1].clamp(0, G - 1)).reshape(E, -1)
        hits = torch.zeros(E, G * G, device=self.device, dtype=self.dtype).scatter_add_(1, flat, seen.reshape(E, -1).to(self.dtype))
        new = (hits > 0).view(E, G, G) & ~self.covered
        self.covered = self.covered | new
        near = ((self.pos[:, :, None] - self.targets[:, None]).norm(dim=-1) <= self.r) & active[..., None]  # (E, D, T)
        new_t = near.any(1) & ~self.found
        self.found = self.found | new_t
        return new.sum((1, 2)), new_t.sum(-1)

    # -- observations, state ------------------------------------------------------------
    def _obs(self) -> dict[str, Tensor]:
        E, D, dt = self.num_envs, self.D, self.dtype
        _, _, occ = station_charging(self.pos, self.stations, self.cfg["station_radius"], self.cfg["station_capacity"])
        st_rel = self.stations[:, None] - self.pos[:, :, None]  # (E, D, S, 2)
        occ_d = (occ.to(dt) / self.cfg["station_capacity"])[:, None, :, None].expand(-1, D, -1, -1)
        st = torch.cat(nearest_k(st_rel, self.S_obs, occ_d), -1).reshape(E, D, -1)
        rel = self.pos[:, None] - self.pos[:, :, None]  # (E, D, D, 2); self masked out below
        eye = torch.eye(D, dtype=torch.bool, device=self.device)[None, :, :, None]
        rel = torch.where(eye, 1e6, rel)
        bat = self.battery[:, None, :, None].expand(-1, D, -1, -1)
        nb_rel, nb_bat = nearest_k(rel, self.K, bat)
        real = (nb_rel.abs() < 1e5).all(-1, keepdim=True)  # padding and self (1e6) are not drones
        nb = torch.cat([nb_rel, nb_bat], -1) * real
        tg_rel = self.targets[:, None] - self.pos[:, :, None]  # (E, D, T, 2)
        tg_d = torch.where(self.found[:, None], math.inf, tg_rel.norm(dim=-1)) if self.T else tg_rel.new_zeros(E, D, 0)
        dmin, j = tg_d.min(-1) if self.T else (torch.full((E, D), math.inf, device=self.device, dtype=dt), None)
        hint = dmin <= self.hint_r
        h_rel = torch.gather(tg_rel, 2, j[..., None, None].expand(-1, -1, 1, 2))[:, :, 0] if self.T else self.pos * 0
        h = torch.cat([h_rel, torch.ones_like(dmin)[..., None]], -1) * hint[..., None]
        p = self.cfg["patch_radius"]
        padded = F.pad(self.covered.to(dt), (p, p, p, p), value=1.0)  # outside counts as covered
        idx = self._cell_of(self.pos)[:, :, None, :] + self._patch_off + p
        patch = torch.gather(padded.reshape(E, -1), 1, (idx[..., 0] * (self.G + 2 * p) + idx[..., 1]).reshape(E, -1))
        coarse = F.adaptive_avg_pool2d(self.covered.to(dt)[:, None], _COARSE).reshape(E, 1, -1).expand(-1, D, -1)
        tfrac = (self.t.to(dt) / self.cfg["max_cycles"])[:, None, None].expand(-1, D, 1)
        obs = torch.cat([self.pos, self.vel / self.cfg["speed"], self.battery[..., None], tfrac, st, nb.reshape(E, D, -1),
                         h, patch.reshape(E, D, -1), coarse], -1)
        return {GROUP: obs}

    def observations(self) -> dict[str, Tensor]:
        """Observations of the current state, group -> (E, D, obs_dim) (after editing the state)."""
        return self._obs()

    def state(self) -> Tensor:
        """(E, state_dim): see the module docstring."""
        E, dt = self.num_envs, self.dtype
        _, _, occ = station_charging(self.pos, self.stations, self.cfg["station_radius"], self.cfg["station_capacity"])
        m = F.adaptive_avg_pool2d(self.covered.to(dt)[:, None], min(self.G, _STATE_MAP)).reshape(E, -1)
        return torch.cat([self.pos.flatten(1), self.vel.flatten(1) / self.cfg["speed"], self.battery, self.stations.flatten(1),
                          occ.to(dt), self.targets.flatten(1), self.found.to(dt), m,
                          (self.t.to(dt) / self.cfg["max_cycles"])[:, None]], 1)

    def _mask(self) -> dict[str, Tensor] | None:
        if self.continuous:
            return None
        empty = (self.battery <= 0)[..., None]
        legal = torch.ones(self.num_envs, self.D, N_MOVES, dtype=torch.bool, device=self.device)
        return {GROUP: legal & (~empty | (torch.arange(N_MOVES, device=self.device) == 0))}

    # -- dynamics -----------------------------------------------------------------------
    def _reset_where(self, mask: Tensor) -> None:
        E, D, g, f = self.num_envs, self.D, self._gen, dict(device=self.device, dtype=self.dtype)
        u = lambda *s: torch.rand(*s, generator=g, **f)  # noqa: E731
        stations = u(E, self.S, 2) * 1.4 - 0.7
        home = stations[:, torch.arange(D, device=self.device) % self.S]
        pos = home + (u(E, D, 2) * 2 - 1) * (self.cfg["station_radius"] / 2)
        targets, battery = u(E, self.T, 2) * 2 - 1, 0.5 + 0.5 * u(E, D)
        m1, m2, m3 = mask[:, None], mask[:, None, None], mask[:, None, None]
        self.stations, self.pos = torch.where(m3, stations, self.stations), torch.where(m3, pos, self.pos)
        self.targets, self.battery = torch.where(m3, targets, self.targets), torch.where(m1, battery, self.battery)
        self.vel = torch.where(m3, 0.0, self.vel)
        self.covered, self.found = self.covered & ~m2, self.found & ~m1
        self.t = torch.where(mask, 0, self.t)
        self.sense(mask[:, None].expand(-1, D))  # the start positions are seen (no reward); others inactive

    def reset(self, seed: int | None = None, mask: Tensor | None = None) -> TimeStep:
        """Reset all envs (mask None) or those where ``mask`` (E,) bool is True."""
        if seed is not None:
            self._gen.manual_seed(int(seed))
        self._reset_where(reset_mask(mask, self.num_envs, self.device))
        self._was_reset = True
        return reset_timestep(self.spec, self._obs(), self.dtype, action_mask=self._mask())

    def step(self, actions: dict[str, Tensor]) -> TimeStep:
        """Step every env; see :mod:`fastmarl.envs.api`. Auto-resets ended episodes."""
        require_reset(self)
        if self.validate:
            validate_actions(self.spec, actions, self.num_envs, self.device)
        c, a = self.cfg, actions[GROUP]
        if self.continuous:
            a = a.to(self.dtype)
            u = a / a.norm(dim=-1, keepdim=True).clamp_min(1.0)
        else:
            u = self._moves[a.long()]
        active = self.battery > 0
        u = u * active[..., None]
        old = self.pos
        self.pos = (old + c["speed"] * u).clamp(-1.0, 1.0)
        self.vel = self.pos - old
        charging, _, _ = station_charging(self.pos, self.stations, c["station_radius"], c["station_capacity"])
        drain = c["idle_drain"] + c["move_drain"] * u.norm(dim=-1)
        self.battery = (self.battery - drain + c["charge_rate"] * charging.to(self.dtype)).clamp(0.0, 1.0)
        new_cells, new_targets = self.sense(active)
        team = c["coverage_reward"] * new_cells.to(self.dtype) / self.G ** 2 + c["target_reward"] * new_targets.to(self.dtype)
        self.t = self.t + 1
        term = self.covered.flatten(1).all(1) & self.found.all(1)
        trunc = (self.t >= c["max_cycles"]) & ~term
        done = term | trunc
        obs = final_obs = self._obs()
        final_state, info = None, {"new_cells": new_cells, "new_targets": new_targets, "charging": charging}
        if bool(done.any()):
            final_state = self.state()
            self._reset_where(done)
            obs = self._obs()
        return TimeStep(obs=obs, reward={GROUP: team[:, None].expand(-1, self.D).contiguous()}, terminated=term,
                        truncated=trunc, final_obs=final_obs, final_state=final_state, action_mask=self._mask(), info=info)

    def coverage(self) -> Tensor:
        """(E,) fraction of cells covered so far this episode."""
        return self.covered.flatten(1).to(self.dtype).mean(1)

    # -- save / restore (fastmarl.train.checkpoint) -------------------------------------
    _STATE = ("pos", "vel", "battery", "stations", "targets", "covered", "found", "t")

    def render(self, env_index: int = 0, size: int = 400) -> np.ndarray:
        """RGB (size, size, 3): covered cells green, stations' charging discs orange, unfound targets
        red, found ones grey, drones blue (darker = less battery) with their sensing circles."""
        if not 0 <= env_index < self.num_envs:
            raise IndexError(f"env_index {env_index} out of range for num_envs={self.num_envs}")
        cov = self.covered[env_index].cpu().numpy()
        px = np.arange(size)
        cell = np.minimum((px * self.G) // size, self.G - 1)
        img = np.where(cov[cell[None, :], cell[::-1, None]][..., None], np.uint8([200, 235, 200]), np.uint8([250, 250, 250]))
        ys, xs = np.mgrid[0:size, 0:size]
        to_px = lambda p: ((p[0] + 1) / 2 * size, (1 - p[1]) / 2 * size)  # noqa: E731
        for s in self.stations[env_index].cpu().numpy():
            x, y = to_px(s)
            img[(xs - x) ** 2 + (ys - y) ** 2 <= (self.cfg["station_radius"] / 2 * size) ** 2] = (240, 150, 40)
        for p, fd in zip(self.targets[env_index].cpu().numpy(), self.found[env_index].cpu().numpy()):
            x, y = to_px(p)
            img[(xs - x) ** 2 + (ys - y) ** 2 <= 25] = (150, 150, 150) if fd else (220, 30, 30)
        for p, b in zip(self.pos[env_index].cpu().numpy(), self.battery[env_index].cpu().numpy()):
            x, y = to_px(p)
            d2, rr = (xs - x) ** 2 + (ys - y) ** 2, self.r / 2 * size
            img[(d2 <= rr ** 2) & (d2 >= (rr - 1.5) ** 2)] = (90, 90, 200)
            img[d2 <= 36] = (int(40 + 40 * b), int(40 + 60 * b), int(80 + 170 * b))
        return img

    def close(self) -> None:
        pass


class CoverageScripted:
    """The baseline (see ``BASELINE``), from observations only; discrete or continuous actions."""

    def __init__(self, spec: EnvSpec, env_kwargs: dict[str, Any] | None = None):
        if set(spec.groups) != {GROUP} or not spec.env_id.startswith("swarm_coverage"):
            raise ValueError(f"CoverageScripted drives swarm_coverage_v0, got {spec.env_id}")
        self.spec, self.cfg = spec, {**KWARGS, **(env_kwargs or {})}
        c = self.cfg
        self.S_obs, self.K, self.p = min(c["num_stations"], _MAX_STATION_SLOTS), c["num_neighbors"], c["patch_radius"]

    def initial_carry(self, num_envs: int) -> dict:
        return {}

    def act(self, ts: TimeStep, carry: dict, deterministic: bool = True,
            generator: torch.Generator | None = None) -> tuple[dict[str, Tensor], dict]:
        o, c, p = ts.obs[GROUP], self.cfg, self.p
        pos, battery = o[..., 0:2], o[..., 4]
        i = 6
        st = o[..., i:i + 2]  # nearest station, relative
        i += 3 * self.S_obs + 3 * self.K
        hint = o[..., i:i + 3]
        i += 3
        n = (2 * p + 1) ** 2
        patch, coarse = o[..., i:i + n], o[..., i + n:i + n + _COARSE ** 2]
        cell = 2.0 / c["grid_size"]
        off = _offsets(p, o.device).to(o.dtype)
        centre = (((pos + 1) / cell).floor().clamp(0, c["grid_size"] - 1) + 0.5) * cell - 1  # own cell centre
        # nearest uncovered cell in the patch, else the nearest least-covered coarse block
        cand = centre[..., None, :] + off * cell - pos[..., None, :]
        d = torch.where(patch < 0.5, cand.norm(dim=-1), math.inf)
        dmin, j = d.min(-1)
        to_patch = torch.gather(cand, -2, j[..., None, None].expand(*j.shape, 1, 2))[..., 0, :]
        b = torch.arange(_COARSE, device=o.device, dtype=o.dtype)
        bc = torch.stack(torch.meshgrid(b, b, indexing="ij"), -1).reshape(-1, 2) * (2 / _COARSE) + (1 / _COARSE - 1)
        rel_b = bc - pos[..., None, :]
        score = torch.where(coarse < 0.999, rel_b.norm(dim=-1) + 2.0 * coarse, math.inf)
        to_block = torch.gather(rel_b, -2, score.argmin(-1)[..., None, None].expand(*j.shape, 1, 2))[..., 0, :]
        goal = torch.where(torch.isfinite(dmin)[..., None], to_patch, to_block)
        goal = torch.where(hint[..., 2:3] > 0, hint[..., :2], goal)
        # spread out: unit push away from neighbours closer than two sensing radii (padding slots are 0)
        nb = o[..., 6 + 3 * self.S_obs:6 + 3 * self.S_obs + 3 * self.K].reshape(*o.shape[:-1], self.K, 3)[..., :2]
        dn = nb.norm(dim=-1, keepdim=True)
        close = (dn > 0) & (dn < 2 * c["sensing_radius"])
        push = -(torch.where(close, nb / dn.clamp_min(1e-6), 0.0)).sum(-2)
        goal = goal / goal.norm(dim=-1, keepdim=True).clamp_min(1e-6) + push
        # return to charge when the battery barely covers the way back (+ margin); stay until full
        per_step = c["idle_drain"] + c["move_drain"]
        need = st.norm(dim=-1) / c["speed"] * per_step + 0.1
        at_station = st.norm(dim=-1) <= c["station_radius"] * 0.5
        was_home = (carry.get("home", torch.zeros_like(battery)) > 0) & ~ts.done[:, None]
        go_home = (battery < need) | (at_station & (battery < 0.95) & was_home)
        goal = torch.where(go_home[..., None], st, goal)
        stay = go_home & at_station
        carry = {"home": go_home.to(o.dtype)}
        g = self.spec.groups[GROUP]
        if g.discrete:
            a = torch.where(stay, 0, axis_move(goal, 1e-3))
            if ts.action_mask is not None:
                a = torch.where(torch.gather(ts.action_mask[GROUP], -1, a[..., None])[..., 0], a, 0)
            return {GROUP: a}, carry
        u = goal / goal.norm(dim=-1, keepdim=True).clamp_min(c["speed"])
        return {GROUP: torch.where(stay[..., None], 0.0, u).clamp(-1, 1)}, carry


def baseline_policy(spec: EnvSpec, **env_kwargs: Any) -> CoverageScripted:
    """The scripted baseline for an env built with ``env_kwargs`` (defaults if omitted)."""
    return CoverageScripted(spec, env_kwargs)


def make_swarm_coverage(num_envs: int = 1, device: str | torch.device = "cpu", seed: int | None = None,
                        **kwargs: Any) -> SwarmCoverage:
    return SwarmCoverage(num_envs=num_envs, device=device, seed=seed, **kwargs)


__all__ = ["SwarmCoverage", "CoverageScripted", "make_swarm_coverage", "baseline_policy", "station_charging", "BASELINE"]
