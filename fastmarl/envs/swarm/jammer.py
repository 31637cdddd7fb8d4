"""jammer_v0: jammers vs communicating links, an abstract 2D electronic-warfare game.

Two groups in the arena ``[-arena_size, arena_size]^2``. Group ``"target"``: ``num_pairs``
transmitters (``target_i``); each one owns a link to its receiver ``i``, a passive ground node
that drifts at ``receiver_speed`` (random heading, bouncing off the walls; 0 keeps it still).
The transmitter chooses its position and channel; both its position and its receiver's matter.
Group ``"jammer"``: ``num_jammers`` jammers choosing position, channel and power.

Actions (one ``Discrete`` per agent; moves 0 no-op, 1 -x, 2 +x, 3 -y, 4 +y, a step of
``target_speed`` / ``jammer_speed``): target ``a = move + 5 * channel`` (``5 C`` actions);
jammer ``a = move + 5 * (channel + C' * level)`` (``5 C' L`` actions), power
``p = max_jammer_power * (level + 1) / L``. With ``barrage=True`` (default) a jammer has
``C' = C + 1`` channel choices: channel ``C`` is *barrage* jamming, ``p / C`` on every channel
(spot jamming on one channel hits harder but a hopping link can dodge it); else ``C' = C``.

Signal model (path-loss exponent ``alpha``, reference distance ``d0``, gain
``g(d) = max(d, d0) ** -alpha``): SINR at receiver i is
``tx_power g(|tx_i - rx_i|) / (noise_power + I_i)``, where ``I_i`` sums ``p_j g(|jam_j - rx_i|)``
over the jammers on the *same* channel as link i (``p_j / C`` from barrage jammers), plus
``tx_power g(|tx_k - rx_i|)`` of the other transmitters on that channel when
``mutual_interference``. Link rate: ``log2(1 + SINR)``
(``link_model="shannon"``) or ``1[SINR > sinr_threshold_db]`` (``"threshold"``).

Rewards: with the team's mean link rate ``R = sum_i rate_i / num_pairs`` (the mean keeps the
scale independent of the team size), target i gets ``local_ratio * rate_i + (1 - local_ratio) * R``
(its own link blended with the team's; the targets' mean reward is ``R`` for any blend) and every
jammer gets ``-R - power_cost * p_j / max_jammer_power``. The game is zero-sum in per-agent terms up to
the power cost: ``mean(r_target) + mean(r_jammer) = -mean power cost``. Episodes truncate
after ``max_cycles`` steps (no termination).

Observations (C channels, k = ``num_neighbors`` slots, nearest first, zero-padded; an
opponent or teammate fills a slot only within ``sensing_radius``; powers in dB as
``10 log10(1 + x / noise_power) / 30``)::

    target: [pos (2), receiver rel pos (2), channel one-hot (C), last SINR dB / 30 (1),
             interference at its receiver per channel (C, the receiver's spectrum report),
             k jammer slots [rel pos (2), channel one-hot (C'), power / max (1), seen (1)],
             k teammate slots [rel pos (2), channel one-hot (C), seen (1)]]
    jammer: [pos (2), channel one-hot (C'), power / max (1), sensed transmitter power per
             channel within sensing_radius (C), k target slots [tx rel pos (2), its receiver
             rel pos (2), channel one-hot (C), seen (1)], k teammate slots [rel pos (2),
             channel one-hot (C'), seen (1)]]

Global state: positions of transmitters, receivers and jammers, receiver velocities, channel
one-hots, SINRs (dB / 30) and jammer powers. Start: receivers uniform in 0.8 of the arena,
each transmitter within 0.3 of its receiver, jammers uniform in the arena.
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import asdict, dataclass
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
from fastmarl.envs.mpe.geometry import MOVES, N_MOVES, axis_move, norm2, others_index

ENV_ID = "jammer_v0"
BASELINE = ("scripted: targets follow their receiver and hop to the least-jammed channel when SINR < 10 dB; "
            "jammers chase the nearest sensed link at full power on its channel, else sweep the channels")
DB_SCALE = 30.0
_DEADBAND = 0.03  # the scripted movers stay put closer than this to their goal


@dataclass(frozen=True)
class JammerConfig:
    num_pairs: int = 2  # transmitter/receiver links (target agents)
    num_jammers: int = 2  # jammer agents
    num_channels: int = 8  # frequency channels C (barrage puts 1/C of a jammer's power on each)
    num_power_levels: int = 3  # jammer power levels L
    barrage: bool = True  # jammers may also spread their power over all channels (channel index C)
    arena_size: float = 1.0  # half-width of the square arena
    target_speed: float = 0.05  # distance a transmitter moves per step
    jammer_speed: float = 0.05  # distance a jammer moves per step
    receiver_speed: float = 0.02  # drift of the receivers per step
    tx_power: float = 1.0  # transmit power of the targets
    max_jammer_power: float = 4.0  # power of the highest jammer level (jammers outpower transmitters)
    noise_power: float = 0.04  # receiver noise N
    path_loss_exponent: float = 2.0  # alpha
    reference_distance: float = 0.1  # d0: gains use max(d, d0)
    link_model: str = "shannon"  # "shannon" (log2(1 + SINR)) or "threshold" (SINR > threshold)
    sinr_threshold_db: float = 0.0  # success threshold of the "threshold" model
    mutual_interference: bool = True  # transmitters on the same channel interfere with each other's links
    power_cost: float = 0.1  # jammer energy cost per step at max power (linear in power)
    local_ratio: float = 0.5  # weight of a target's own link rate in its reward (rest: the team mean)
    sensing_radius: float = 0.8  # opponents and teammates are seen within this distance
    num_neighbors: int = 4  # k observation slots per kind
    max_cycles: int = 50  # episode length

    def __post_init__(self):
        for name in ("num_pairs", "num_jammers", "num_channels", "num_power_levels", "num_neighbors", "max_cycles"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{ENV_ID}: {name} must be an int >= 1, got {v!r}")
        for name, strict in (("arena_size", True), ("tx_power", True), ("max_jammer_power", True),
                             ("noise_power", True), ("path_loss_exponent", True), ("reference_distance", True),
                             ("sensing_radius", True), ("target_speed", False), ("jammer_speed", False),
                             ("receiver_speed", False), ("power_cost", False)):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not (v > 0 if strict else v >= 0):
                raise ValueError(f"{ENV_ID}: {name} must be a number {'>' if strict else '>='} 0, got {v!r}")
        if not isinstance(self.local_ratio, (int, float)) or not 0.0 <= self.local_ratio <= 1.0:
            raise ValueError(f"{ENV_ID}: local_ratio must be in [0, 1], got {self.local_ratio!r}")
        if not isinstance(self.barrage, bool):
            raise ValueError(f"{ENV_ID}: barrage must be a bool, got {self.barrage!r}")
        if self.link_model not in ("shannon", "threshold"):
            raise ValueError(f"{ENV_ID}: link_model must be 'shannon' or 'threshold', got {self.link_model!r}")
        if not isinstance(self.sinr_threshold_db, (int, float)) or not math.isfinite(self.sinr_threshold_db):
            raise ValueError(f"{ENV_ID}: sinr_threshold_db must be a finite number, got {self.sinr_threshold_db!r}")

    @property
    def jammer_channels(self) -> int:
        """C': the jammers' channel choices (C, plus barrage)."""
        return self.num_channels + int(self.barrage)


def gain(a: Tensor, b: Tensor, alpha: float, d0: float) -> Tensor:
    """Path gain ``max(|a_i - b_j|, d0) ** -alpha`` from a (E, M, 2) to b (E, K, 2): (E, M, K)."""
    return norm2(a[:, :, None] - b[:, None]).clamp_min(d0) ** -alpha


def interference_per_channel(cfg: JammerConfig, tx: Tensor, rx: Tensor, tx_ch: Tensor, jam: Tensor,
                             jam_ch: Tensor, jam_pw: Tensor) -> Tensor:
    """(E, T, C) interference power at each receiver on each channel (own transmitter excluded).

    tx, rx (E, T, 2); tx_ch (E, T) long; jam (E, J, 2); jam_ch (E, J) long (C = barrage);
    jam_pw (E, J) powers."""
    a, d0, C = cfg.path_loss_exponent, cfg.reference_distance, cfg.num_channels
    barrage = (jam_ch == C)[..., None].to(tx.dtype) / C  # power spread evenly over the C channels
    spectrum = torch.nn.functional.one_hot(jam_ch, C + 1)[..., :C].to(tx.dtype) + barrage  # (E, J, C)
    out = torch.einsum("etj,ejc->etc", gain(rx, jam, a, d0) * jam_pw[:, None], spectrum)
    if cfg.mutual_interference and tx.shape[1] > 1:
        g = gain(rx, tx, a, d0) * (1.0 - torch.eye(tx.shape[1], dtype=tx.dtype, device=tx.device))
        out = out + cfg.tx_power * torch.einsum("ets,esc->etc", g, torch.nn.functional.one_hot(tx_ch, C).to(tx.dtype))
    return out


def link_sinr(cfg: JammerConfig, tx: Tensor, rx: Tensor, tx_ch: Tensor, interference: Tensor) -> Tensor:
    """(E, T) SINR of each link; ``interference`` (E, T, C) from :func:`interference_per_channel`."""
    signal = cfg.tx_power * norm2(tx - rx).clamp_min(cfg.reference_distance) ** -cfg.path_loss_exponent
    return signal / (cfg.noise_power + torch.gather(interference, 2, tx_ch[..., None])[..., 0])


def link_rate(cfg: JammerConfig, sinr: Tensor) -> Tensor:
    """(E, T) rate: Shannon ``log2(1 + SINR)`` or threshold success (1.0 / 0.0)."""
    if cfg.link_model == "shannon":
        return torch.log2(1.0 + sinr)
    return (10.0 * torch.log10(sinr) > cfg.sinr_threshold_db).to(sinr.dtype)


def nearest_slots(rel: Tensor, feats: Tensor, valid: Tensor, k: int) -> Tensor:
    """Observation slots of the k nearest valid candidates: (E, M, k * (3 + F)).

    rel (E, M, K, 2) relative positions, feats (E, M, K, F), valid (E, M, K) bool. A slot is
    ``[rel (2), feats (F), 1]``, closest first; invalid candidates and padding are zeros."""
    E, M, K, F = *rel.shape[:3], feats.shape[-1]
    slots = torch.cat([rel, feats, torch.ones_like(rel[..., :1])], -1) * valid[..., None].to(rel.dtype)
    if K > 0:
        order = torch.argsort(torch.where(valid, norm2(rel), math.inf), dim=-1, stable=True)[..., :k]
        slots = torch.gather(slots, 2, order[..., None].expand(*order.shape, 3 + F))
    if slots.shape[2] < k:
        slots = torch.cat([slots, slots.new_zeros(E, M, k - slots.shape[2], 3 + F)], 2)
    return slots.reshape(E, M, k * (3 + F))


class JammerEnv(FieldsState):
    """``num_envs`` copies of the jammer game; see the module docstring for every shape."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, cfg: JammerConfig, num_envs: int = 1, device: str | torch.device = "cpu",
                 seed: int | None = None, dtype: torch.dtype = torch.float32, validate: bool = True,
                 render_mode: str | None = None):
        if not isinstance(num_envs, int) or isinstance(num_envs, bool) or num_envs < 1:
            raise ValueError(f"num_envs must be a positive int, got {num_envs!r}")
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode {render_mode!r} is not supported: use None or 'rgb_array'")
        self.cfg, self.num_envs, self.dtype, self.validate = cfg, num_envs, dtype, validate
        self.device = torch.empty(0, device=device).device
        self.render_mode = render_mode
        T, J, C, L, k = cfg.num_pairs, cfg.num_jammers, cfg.num_channels, cfg.num_power_levels, cfg.num_neighbors
        Cj = cfg.jammer_channels
        box = lambda n: gym.spaces.Box(-np.inf, np.inf, (n,), np.float32)  # noqa: E731
        groups = {
            "target": GroupSpec("target", tuple(f"target_{i}" for i in range(T)),
                                box(5 + 2 * C + k * (4 + Cj) + k * (3 + C)), gym.spaces.Discrete(N_MOVES * C)),
            "jammer": GroupSpec("jammer", tuple(f"jammer_{i}" for i in range(J)),
                                box(3 + C + Cj + k * (5 + C) + k * (3 + Cj)), gym.spaces.Discrete(N_MOVES * Cj * L)),
        }
        self.spec = EnvSpec(ENV_ID, groups, state_dim=T * (7 + C) + J * (3 + Cj), max_episode_steps=cfg.max_cycles,
                            teams=(("target",), ("jammer",)))
        f = dict(device=self.device, dtype=dtype)
        self._moves = torch.tensor(MOVES, **f)
        self._levels = cfg.max_jammer_power * torch.arange(1, L + 1, **f) / L
        self._others_t, self._others_j = others_index(T, self.device), others_index(J, self.device)
        self._gen = torch.Generator(device=self.device)
        self._gen.manual_seed(seed if seed is not None else int(torch.randint(0, 2**62, (1,)).item()))
        E, z, li = num_envs, lambda *s: torch.zeros(*s, **f), dict(dtype=torch.long, device=self.device)
        self.tx, self.rx, self.rx_vel, self.jam = z(E, T, 2), z(E, T, 2), z(E, T, 2), z(E, J, 2)
        self.tx_ch, self.jam_ch, self.jam_level = (torch.zeros(E, n, **li) for n in (T, J, J))
        self.sinr, self.t = z(E, T), torch.zeros(E, **li)
        self.reset()  # allocates the state; step() still needs a reset() of its own
        self._was_reset = False

    # -- physics and observations --------------------------------------------------
    def _links(self) -> tuple[Tensor, Tensor]:
        """(interference (E, T, C), SINR (E, T)) of the current state."""
        c = self.cfg
        interf = interference_per_channel(c, self.tx, self.rx, self.tx_ch, self.jam, self.jam_ch,
                                          self._levels[self.jam_level])
        return interf, link_sinr(c, self.tx, self.rx, self.tx_ch, interf)

    def _db(self, x: Tensor) -> Tensor:
        return 10.0 * torch.log10(1.0 + x / self.cfg.noise_power) / DB_SCALE

    def _obs(self, interf: Tensor) -> dict[str, Tensor]:
        c = self.cfg
        C, k, R = c.num_channels, c.num_neighbors, c.sensing_radius
        oh = lambda ch: torch.nn.functional.one_hot(ch, C).to(self.dtype)  # noqa: E731
        tx_oh, jam_oh = oh(self.tx_ch), torch.nn.functional.one_hot(self.jam_ch, c.jammer_channels).to(self.dtype)
        pw = (self._levels[self.jam_level] / c.max_jammer_power)[..., None]  # (E, J, 1)
        rel_tj = self.jam[:, None] - self.tx[:, :, None]  # (E, T, J, 2)
        t_jam = nearest_slots(rel_tj, torch.cat([jam_oh, pw], -1)[:, None].expand(-1, c.num_pairs, -1, -1),
                              norm2(rel_tj) <= R, k)
        t_mates = self._mates(self.tx, tx_oh, self._others_t)
        sinr_db = (10.0 * torch.log10(self.sinr) / DB_SCALE).clamp(-3.0, 3.0)[..., None]
        target = torch.cat([self.tx, self.rx - self.tx, tx_oh, sinr_db, self._db(interf), t_jam, t_mates], -1)
        rel_jt = self.tx[:, None] - self.jam[:, :, None]  # (E, J, T, 2)
        seen = norm2(rel_jt) <= R
        g = gain(self.jam, self.tx, c.path_loss_exponent, c.reference_distance) * seen  # (E, J, T)
        sensed = c.tx_power * torch.einsum("ejt,etc->ejc", g, tx_oh)
        rx_rel = self.rx[:, None] - self.jam[:, :, None]
        j_tgt = nearest_slots(rel_jt, torch.cat([rx_rel, tx_oh[:, None].expand(-1, c.num_jammers, -1, -1)], -1),
                              seen, k)
        jammer = torch.cat([self.jam, jam_oh, pw, self._db(sensed), j_tgt,
                            self._mates(self.jam, jam_oh, self._others_j)], -1)
        return {"target": target, "jammer": jammer}

    def _mates(self, pos: Tensor, onehot: Tensor, others: Tensor) -> Tensor:
        """Teammate slots (E, M, k (3 + C)) of agents at pos (E, M, 2) with channel one-hots (E, M, C)."""
        rows = torch.arange(pos.shape[1], device=self.device)[:, None]
        rel = (pos[:, None] - pos[:, :, None])[:, rows, others]  # (E, M, M-1, 2)
        feats = onehot[:, None].expand(-1, pos.shape[1], -1, -1)[:, rows, others]
        return nearest_slots(rel, feats, norm2(rel) <= self.cfg.sensing_radius, self.cfg.num_neighbors)

    def state(self) -> Tensor:
        """(E, T (7 + C) + J (3 + C')): tx, rx, rx velocity, channel one-hot and SINR dB / 30 per
        link, then position, channel one-hot and power / max per jammer."""
        C, E = self.cfg.num_channels, self.num_envs
        oh = lambda ch, n=C: torch.nn.functional.one_hot(ch, n).to(self.dtype)  # noqa: E731
        sinr_db = (10.0 * torch.log10(self.sinr) / DB_SCALE).clamp(-3.0, 3.0)[..., None]
        links = torch.cat([self.tx, self.rx, self.rx_vel, oh(self.tx_ch), sinr_db], -1).reshape(E, -1)
        pw = (self._levels[self.jam_level] / self.cfg.max_jammer_power)[..., None]
        jammers = torch.cat([self.jam, oh(self.jam_ch, self.cfg.jammer_channels), pw], -1).reshape(E, -1)
        return torch.cat([links, jammers], 1)

    # -- reset / step ------------------------------------------------------------------
    def _reset_where(self, mask: Tensor) -> None:
        c, g, E = self.cfg, self._gen, self.num_envs
        T, J, S = c.num_pairs, c.num_jammers, c.arena_size
        u = lambda *s: torch.rand(*s, generator=g, device=self.device, dtype=self.dtype)  # noqa: E731
        rx = (u(E, T, 2) * 2 - 1) * 0.8 * S
        ang, rad, head = u(E, T) * 2 * math.pi, u(E, T) * 0.3 * S, u(E, T) * 2 * math.pi
        tx = (rx + rad[..., None] * torch.stack([ang.cos(), ang.sin()], -1)).clamp(-S, S)
        jam = (u(E, J, 2) * 2 - 1) * S
        rx_vel = c.receiver_speed * torch.stack([head.cos(), head.sin()], -1)
        tx_ch = torch.randint(0, c.num_channels, (E, T), generator=g, device=self.device)
        jam_ch = torch.randint(0, c.num_channels, (E, J), generator=g, device=self.device)
        m = mask[:, None, None]
        self.tx, self.rx = torch.where(m, tx, self.tx), torch.where(m, rx, self.rx)
        self.rx_vel, self.jam = torch.where(m, rx_vel, self.rx_vel), torch.where(m, jam, self.jam)
        self.tx_ch = torch.where(mask[:, None], tx_ch, self.tx_ch)
        self.jam_ch = torch.where(mask[:, None], jam_ch, self.jam_ch)
        self.jam_level = torch.where(mask[:, None], 0, self.jam_level)
        self.t = torch.where(mask, 0, self.t)
        self.sinr = torch.where(mask[:, None], self._links()[1], self.sinr)

    def reset(self, seed: int | None = None, mask: Tensor | None = None) -> TimeStep:
        """Reset all envs (mask None) or those where ``mask`` (E,) bool is True."""
        if seed is not None:
            self._gen.manual_seed(int(seed))
        self._reset_where(reset_mask(mask, self.num_envs, self.device))
        self._was_reset = True
        return reset_timestep(self.spec, self._obs(self._links()[0]), self.dtype)

    def step(self, actions: dict[str, Tensor]) -> TimeStep:
        """Step every env; see :mod:`fastmarl.envs.api`. Auto-resets ended episodes."""
        require_reset(self)
        if self.validate:
            validate_actions(self.spec, actions, self.num_envs, self.device)
        c, S = self.cfg, self.cfg.arena_size
        at, aj = actions["target"].long(), actions["jammer"].long()
        self.tx = (self.tx + c.target_speed * self._moves[at % N_MOVES]).clamp(-S, S)
        self.jam = (self.jam + c.jammer_speed * self._moves[aj % N_MOVES]).clamp(-S, S)
        self.tx_ch, self.jam_ch = at // N_MOVES, (aj // N_MOVES) % c.jammer_channels
        self.jam_level = aj // (N_MOVES * c.jammer_channels)
        rx = self.rx + self.rx_vel
        out = rx.abs() > S  # bounce off the walls
        self.rx_vel = torch.where(out, -self.rx_vel, self.rx_vel)
        self.rx = torch.where(out, torch.sign(rx) * 2 * S - rx, rx)
        interf, self.sinr = self._links()
        rate = link_rate(c, self.sinr)  # (E, T)
        team = rate.mean(-1, keepdim=True)  # (E, 1)
        cost = c.power_cost * self._levels[self.jam_level] / c.max_jammer_power
        reward = {"target": c.local_ratio * rate + (1.0 - c.local_ratio) * team, "jammer": -team - cost}
        self.t = self.t + 1
        trunc = self.t >= c.max_cycles
        obs = final_obs = self._obs(interf)
        final_state = None
        if bool(trunc.any()):
            final_state = self.state()
            self._reset_where(trunc)
            obs = self._obs(self._links()[0])
        return TimeStep(obs=obs, reward=reward, terminated=torch.zeros_like(trunc), truncated=trunc,
                        final_obs=final_obs, final_state=final_state)

    # -- checkpoints (fastmarl.train.checkpoint) and rendering --------------------------
    _STATE = ("tx", "rx", "rx_vel", "jam", "tx_ch", "jam_ch", "jam_level", "sinr", "t")

    def render(self, env_index: int = 0, size: int = 360) -> np.ndarray:
        """RGB (size, size, 3) uint8: receivers as squares and transmitters as discs in their
        channel's colour, joined by a line (green: rate >= 1 bit, red: below); jammers as
        black-ringed discs in their channel's colour, larger with more power."""
        if not 0 <= env_index < self.num_envs:
            raise IndexError(f"env_index {env_index} out of range for num_envs={self.num_envs}")
        c, e = self.cfg, env_index
        pal = [np.array([int(255 * v) for v in _hue(i / c.num_channels)], np.uint8) for i in range(c.num_channels)]
        px = lambda p: ((p.detach().cpu().double().numpy() / c.arena_size * 0.47 + 0.5) * size)  # noqa: E731
        tx, rx, jam = px(self.tx[e]), px(self.rx[e]), px(self.jam[e])
        img = np.full((size, size, 3), 250, np.uint8)
        ys, xs = np.mgrid[0:size, 0:size]
        ok = (link_rate(c, self.sinr[e]) >= 1.0).cpu().numpy() if c.link_model == "shannon" else \
            link_rate(c, self.sinr[e]).cpu().numpy() > 0
        for i in range(c.num_pairs):  # rendering, not a hot path
            for s in np.linspace(0, 1, 60):
                x, y = tx[i] * (1 - s) + rx[i] * s
                row, col = int(np.clip(size - y, 0, size - 1)), int(np.clip(x, 0, size - 1))
                img[row, col] = (40, 170, 40) if ok[i] else (220, 40, 40)
            col = pal[int(self.tx_ch[e, i])]
            img[(np.abs(xs - rx[i, 0]) <= 4) & (np.abs(ys - (size - rx[i, 1])) <= 4)] = col
            img[(xs - tx[i, 0]) ** 2 + (ys - (size - tx[i, 1])) ** 2 <= 25] = col
        for j in range(c.num_jammers):
            r = 4 + 3 * int(self.jam_level[e, j])
            d2 = (xs - jam[j, 0]) ** 2 + (ys - (size - jam[j, 1])) ** 2
            img[d2 <= (r + 2) ** 2] = 0
            ch = int(self.jam_ch[e, j])
            img[d2 <= r * r] = pal[ch] if ch < c.num_channels else 160  # grey: barrage
        return img

    def close(self) -> None:
        pass


def _hue(h: float) -> tuple[float, float, float]:
    return colorsys.hsv_to_rgb(h, 0.8, 0.9)


ENV_KWARGS = dict(dtype=torch.float32, validate=True, render_mode=None)


def make_jammer(num_envs: int = 1, device: str | torch.device = "cpu", seed: int | None = None,
                **kwargs: Any) -> JammerEnv:
    merged = check_kwargs(ENV_ID, kwargs, {**asdict(JammerConfig()), **ENV_KWARGS})
    env_kw = {k: merged.pop(k) for k in ENV_KWARGS}
    return JammerEnv(JammerConfig(**merged), num_envs=num_envs, device=device, seed=seed, **env_kw)


class ScriptedJammerGame:
    """The scripted baseline for both groups (see ``BASELINE``), reading only observations."""

    def __init__(self, spec: EnvSpec):
        t, j = spec.groups["target"], spec.groups["jammer"]
        C = self.C = t.action_dim // N_MOVES
        for Cj in (C + 1, C):  # with or without the barrage channel: the one the dimensions fit
            k, rem = divmod(t.obs_dim - 5 - 2 * C, 7 + C + Cj)
            if rem == 0 and j.action_dim % (N_MOVES * Cj) == 0 and j.obs_dim == 3 + C + Cj + k * (8 + C + Cj):
                break
        else:
            raise ValueError(f"baseline_policy: the spec's dimensions do not fit {ENV_ID}'s layout")
        self.Cj, self.L, self.J = Cj, j.action_dim // (N_MOVES * Cj), j.num_agents

    def initial_carry(self, num_envs: int) -> dict:
        return {}

    def act(self, ts: TimeStep, carry: dict, deterministic: bool = True,
            generator: torch.Generator | None = None) -> tuple[dict[str, Tensor], dict]:
        C, ot, oj = self.C, ts.obs["target"], ts.obs["jammer"]
        t = carry.get("t", torch.zeros(ot.shape[0], dtype=torch.long, device=ot.device))
        t = torch.where(ts.done, 0, t)
        # targets: follow the receiver; hop to the least-interfered channel when SINR < 10 dB
        interf = ot[..., 5 + C:5 + 2 * C] + 1e-3 * torch.rand(ot.shape[:2] + (C,), generator=generator,
                                                             device=ot.device, dtype=ot.dtype)
        stay = ot[..., 4 + C] * DB_SCALE >= 10.0
        ch_t = torch.where(stay, ot[..., 4:4 + C].argmax(-1), interf.argmin(-1))
        a_t = axis_move(ot[..., 2:4], _DEADBAND) + N_MOVES * ch_t
        # jammers: the nearest seen link's receiver and channel, else sweep the channels toward the centre
        s0 = 3 + C + self.Cj  # first target slot: [tx rel (2), rx rel (2), channel (C), seen]
        seen = oj[..., s0 + 4 + C] > 0.5
        sweep = (t[:, None] + torch.arange(self.J, device=oj.device)) % C
        ch_j = torch.where(seen, oj[..., s0 + 4:s0 + 4 + C].argmax(-1), sweep)
        goal = torch.where(seen[..., None], oj[..., s0 + 2:s0 + 4], -oj[..., 0:2])  # its receiver, or the centre
        a_j = axis_move(goal, _DEADBAND) + N_MOVES * (ch_j + self.Cj * (self.L - 1))  # full power
        return {"target": a_t, "jammer": a_j}, {"t": t + 1}


def baseline_policy(spec: EnvSpec) -> ScriptedJammerGame:
    """Scripted policy driving both groups (the Policy protocol of fastmarl.envs.api)."""
    return ScriptedJammerGame(spec)


__all__ = ["JammerConfig", "JammerEnv", "make_jammer", "baseline_policy", "BASELINE", "interference_per_channel",
           "link_sinr", "link_rate", "nearest_slots", "gain"]
