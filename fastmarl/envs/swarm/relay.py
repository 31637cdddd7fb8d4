"""relay_v0: relay drones keep a multi-hop radio link between a base and a moving remote node.

Built on the MPE physics core (:mod:`fastmarl.envs.mpe.core`). Entities, in
order: ``relay_0..`` (R agents, group ``"relay"``, size 0.05, accel 3, max
speed 1, colliding with each other), then the landmarks ``base`` (fixed at
``(-0.9, y)``, ``y ~ U(-0.3, 0.3)`` per episode) and ``remote`` (starts in
``[0.3, 0.7] x [-0.5, 0.5]`` and moves kinematically along a smooth scripted
path, velocity ``remote_speed * (0.5 cos(0.5 tau + phi_x), cos(0.8 tau + phi_y))``
with ``tau`` the episode time and random phases ``extra["remote_phase"]`` (E, 2),
clamped to the arena ``[-1, 1]^2``; ``remote_speed=0`` keeps it still). Relays
start near the base, uniformly in ``[-1, -0.5] x [-0.5, 0.5]``.

Link model: two nodes are linked when their distance is ``<= comm_range``. The
communication graph has ``M = R + 2`` nodes ordered ``[base, relays..., remote]``.
:func:`link_bottlenecks` gives, for each source (base, remote) and node, the
smallest possible *longest hop* over all paths (a min-max relaxation run for
``M - 1`` rounds, the length of the longest simple path); it is ``inf`` when the
node is unreachable.

Reward (E, R): shared ``connected + quality`` minus a local collision term:
``connected`` is 1 when base and remote are connected through the network;
``quality`` is ``-bottleneck / comm_range`` (the longest hop of the best path,
in [-1, 0]) when connected; when not, it is ``-1 - shaping * min(gap, 3)`` with
``gap = open_bottleneck / comm_range - 1`` and ``open_bottleneck`` the longest
hop of the best path when hops of any length were links (how far the network is
from connecting): a dense signal towards a first connection (``shaping=0``: a
flat -1). Each relay loses ``collision_penalty`` per other relay it overlaps.

Observation of one relay (``K = R - 1`` others, or the ``num_neighbors`` nearest)::

    [vel (2), pos (2), base rel pos (2), remote rel pos (2), remote vel (2),
     hears_base (1), hears_remote (1), K x [rel pos (2), linked (1)]]

``hears_base`` / ``hears_remote``: the relay is connected (multi-hop) to the
base / remote; ``linked``: that relay is within ``comm_range``. Global state
(E, 4 (R + 2)): all positions then all velocities.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from fastmarl.envs.api import EnvSpec, TimeStep
from fastmarl.envs.mpe.core import MPEEnv, MPEState, World, WorldDef, check_kwargs, reset_entities
from fastmarl.envs.mpe.geometry import nearest_k, norm2, relative_to_self, uniform
from fastmarl.envs.scripted import COAST, steer

KWARGS = dict(num_relays=4, comm_range=0.5, remote_speed=0.3, num_neighbors=None, collision_penalty=0.1, shaping=1.0,
              max_cycles=50)
ENV_KWARGS = dict(continuous_actions=False, dtype=torch.float32, validate=True, render_mode=None)

RELAY_SIZE, NODE_SIZE = 0.05, 0.08
SHAPING_CLIP = 3.0  # the disconnected gap counts up to a bottleneck of 4 comm ranges (reward >= -1 - 3 shaping)
BASELINE = ("scripted even spacing: relay k of R (ordered along the base-remote line) flies to "
            "base + (k+1)/(R+1) (remote - base)")
BASE_X = -0.9


def link_bottlenecks(nodes: Tensor, comm_range: float) -> Tensor:
    """(E, 2, M) min over paths of the longest hop, from the base (row 0) and the remote (row 1).

    nodes (E, M, 2) positions ordered ``[base, relays..., remote]``; ``inf`` where
    no path exists (a hop longer than ``comm_range`` is no link); 0 at the source.
    """
    E, M, _ = nodes.shape
    d = norm2(nodes[:, :, None] - nodes[:, None])  # (E, M, M)
    hop = torch.where(d <= comm_range, d, math.inf)[:, None]  # (E, 1, M, M)
    b = torch.full((E, 2, M), math.inf, dtype=nodes.dtype, device=nodes.device)
    b[:, 0, 0] = 0.0
    b[:, 1, M - 1] = 0.0
    # relaxation b[k] <- min_j max(b[j], hop[j, k]); a simple path has at most M - 1 hops. Best
    # paths are usually far shorter, so large swarms stop early once a round changes nothing
    # (checked every 8 rounds: one device sync each, skipped under torch.compile).
    for r in range(M - 1):
        new = torch.minimum(b, torch.maximum(b[..., :, None], hop).amin(-2))
        if r % 8 == 7 and not torch.compiler.is_compiling() and torch.equal(new, b):
            return new
        b = new
    return b


class Scenario:
    env_id = "relay_v0"

    def __init__(self, num_relays=4, comm_range=0.5, remote_speed=0.3, num_neighbors=None, collision_penalty=0.1,
                 shaping=1.0, max_cycles=50):
        for name, v, lo in (("num_relays", num_relays, 1), ("max_cycles", max_cycles, 1)):
            if not isinstance(v, int) or isinstance(v, bool) or v < lo:
                raise ValueError(f"{self.env_id}: {name} must be an int >= {lo}, got {v!r}")
        if num_neighbors is not None and (not isinstance(num_neighbors, int) or isinstance(num_neighbors, bool)
                                          or num_neighbors < 1):
            raise ValueError(f"{self.env_id}: num_neighbors must be a positive int or None, got {num_neighbors!r}")
        if not isinstance(comm_range, (int, float)) or isinstance(comm_range, bool) or not comm_range > 0:
            raise ValueError(f"{self.env_id}: comm_range must be a positive number, got {comm_range!r}")
        for name, v in (("remote_speed", remote_speed), ("collision_penalty", collision_penalty),
                        ("shaping", shaping)):
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not v >= 0:
                raise ValueError(f"{self.env_id}: {name} must be a number >= 0, got {v!r}")
        self.R, self.max_cycles = num_relays, max_cycles
        self.comm_range, self.remote_speed = float(comm_range), float(remote_speed)
        self.k = num_neighbors if num_neighbors is not None else num_relays - 1
        self.collision_penalty, self.shaping = float(collision_penalty), float(shaping)

    def world_def(self) -> WorldDef:
        R = self.R
        return WorldDef(
            agent_names=[f"relay_{i}" for i in range(R)], landmark_names=["base", "remote"],
            size=[RELAY_SIZE] * R + [NODE_SIZE] * 2, movable=[True] * R + [False] * 2,
            collide=[True] * R + [False] * 2,  # relays fly over the ground nodes
            color=[(0.35, 0.35, 0.85)] * R + [(0.25, 0.25, 0.25), (0.85, 0.55, 0.15)],
            silent=[True] * R, max_speed=[1.0] * R + [None] * 2, accel=[3.0] * R,
        )

    def reset(self, w: World, s: MPEState, mask: Tensor, gen: torch.Generator) -> MPEState:
        E, R = s.pos.shape[0], self.R
        relays = torch.stack([uniform(gen, (E, R), -1.0, -0.5, s.pos), uniform(gen, (E, R), -0.5, 0.5, s.pos)], -1)
        base = torch.stack([torch.full((E,), BASE_X, dtype=s.pos.dtype, device=s.pos.device),
                            uniform(gen, (E,), -0.3, 0.3, s.pos)], -1)
        remote = torch.stack([uniform(gen, (E,), 0.3, 0.7, s.pos), uniform(gen, (E,), -0.5, 0.5, s.pos)], -1)
        pos = torch.cat([relays, base[:, None], remote[:, None]], 1)
        phase = uniform(gen, (E, 2), 0.0, 2 * math.pi, s.pos)
        old = s.extra.get("remote_phase", phase)
        return reset_entities(s, mask, pos, {**s.extra, "remote_phase": torch.where(mask[:, None], phase, old)})

    def post_physics(self, w: World, s: MPEState) -> MPEState:
        """The remote node moves one step along its scripted path (kinematic, no forces)."""
        R = self.R
        tau = (s.t * w.dt).to(s.pos.dtype)[:, None]  # (E, 1)
        ph = s.extra["remote_phase"]
        v = self.remote_speed * torch.stack([0.5 * torch.cos(0.5 * tau[:, 0] + ph[:, 0]),
                                             torch.cos(0.8 * tau[:, 0] + ph[:, 1])], -1)  # (E, 2)
        old = s.pos[:, R + 1]
        new = (old + v * w.dt).clamp(-1 + NODE_SIZE, 1 - NODE_SIZE)
        pos = torch.cat([s.pos[:, :R + 1], new[:, None]], 1)
        vel = torch.cat([s.vel[:, :R + 1], ((new - old) / w.dt)[:, None]], 1)
        return s._replace(pos=pos, vel=vel)

    def graph_nodes(self, s: MPEState) -> Tensor:
        """(E, R + 2, 2) positions ordered ``[base, relays..., remote]``."""
        R = self.R
        return torch.cat([s.pos[:, R:R + 1], s.pos[:, :R], s.pos[:, R + 1:R + 2]], 1)

    def link_state(self, s: MPEState) -> tuple[Tensor, Tensor]:
        """(connected (E,) bool, bottleneck (E,) longest hop of the best base-remote path, inf if none)."""
        b = link_bottlenecks(self.graph_nodes(s), self.comm_range)[:, 0, -1]
        return torch.isfinite(b), b

    def rewards(self, w: World, s: MPEState) -> Tensor:
        # with unlimited range the min-max bottleneck is always finite; the network is connected
        # exactly when it is <= comm_range, and then it is the link bottleneck itself
        b = link_bottlenecks(self.graph_nodes(s), math.inf)[:, 0, -1]
        connected, b = b <= self.comm_range, b / self.comm_range
        quality = torch.where(connected, -b, -1.0 - self.shaping * (b - 1.0).clamp(max=SHAPING_CLIP))
        shared = connected.to(s.pos.dtype) + quality  # (E,)
        rp = s.pos[:, :self.R]
        d = norm2(rp[:, :, None] - rp[:, None])  # (E, R, R)
        hits = ((d < 2 * RELAY_SIZE) & w.offdiag).to(s.pos.dtype).sum(-1)  # (E, R)
        return shared[:, None] - self.collision_penalty * hits

    def terminal(self, w: World, s: MPEState) -> Tensor | None:
        return None

    def observations(self, w: World, s: MPEState) -> dict[str, Tensor]:
        R, E = self.R, s.pos.shape[0]
        rp, rv = s.pos[:, :R], s.vel[:, :R]
        base, remote = s.pos[:, R:R + 1], s.pos[:, R + 1:R + 2]
        hears = torch.isfinite(link_bottlenecks(self.graph_nodes(s), self.comm_range)[:, :, 1:R + 1])  # (E, 2, R)
        rel = relative_to_self(rp, rp)[:, w.agent_rows, w.others]  # (E, R, R-1, 2)
        rel, real = nearest_k(rel, self.k, torch.ones_like(rel[..., :1]))  # (E, R, k, 2/1), zero-padded
        linked = (norm2(rel) <= self.comm_range).to(rp.dtype)[..., None] * real
        slots = torch.cat([rel, linked], -1).reshape(E, R, 3 * self.k)
        return {"relay": torch.cat([rv, rp, base - rp, remote - rp, s.vel[:, R + 1:R + 2].expand(-1, R, -1),
                                    hears.transpose(1, 2).to(rp.dtype), slots], -1)}

    def global_state(self, s: MPEState) -> Tensor:
        """(E, 4 (R + 2)): all positions then all velocities."""
        return torch.cat([s.pos.flatten(1), s.vel.flatten(1)], 1)


class RelayEnv(MPEEnv):
    """MPEEnv with a link readout; ``state()`` holds every position and velocity."""

    def link_state(self) -> tuple[Tensor, Tensor]:
        """(connected (E,) bool, bottleneck (E,)) for the current state; see Scenario.link_state."""
        return self.scenario.link_state(self._state)


class EvenSpacing:
    """The scripted baseline (:data:`BASELINE`), read from the observations alone.

    Relays are ranked by their projection on the base -> remote line (so they
    never swap places), relay of rank k steers to the point ``(k + 1) / (R + 1)``
    of the way from base to remote: with R relays the longest hop is
    ``|remote - base| / (R + 1)``, the best any placement can do."""

    def __init__(self, spec: EnvSpec):
        if set(spec.groups) != {"relay"}:
            raise ValueError(f"EvenSpacing drives relay_v0 (one group 'relay'), got groups {list(spec.groups)}")
        self.group = spec.groups["relay"]

    def initial_carry(self, num_envs: int) -> dict:
        return {}

    def act(self, ts: TimeStep, carry: dict, deterministic: bool = True,
            generator: torch.Generator | None = None) -> tuple[dict[str, Tensor], dict]:
        o = ts.obs["relay"]  # (E, R, obs_dim)
        vel, pos = o[..., 0:2], o[..., 2:4]
        base, remote = pos + o[..., 4:6], pos + o[..., 6:8]
        line = remote - base
        rank = ((pos - base) * line).sum(-1).argsort(-1).argsort(-1)  # (E, R) order along the line
        frac = (rank + 1).to(o.dtype) / (o.shape[1] + 1)
        target = base + frac[..., None] * line + o[..., 8:10] * COAST  # lead the moving remote a little
        return {"relay": steer(target - pos - vel * COAST, self.group)}, carry


def baseline_policy(spec: EnvSpec) -> EvenSpacing:
    """The baseline the trained relays must beat (:data:`BASELINE`)."""
    return EvenSpacing(spec)


def make_relay(num_envs: int = 1, device="cpu", seed: int | None = None, **kwargs) -> RelayEnv:
    merged = check_kwargs(Scenario.env_id, kwargs, {**KWARGS, **ENV_KWARGS})
    env_kw = {k: merged.pop(k) for k in ENV_KWARGS}
    return RelayEnv(Scenario(**merged), num_envs=num_envs, device=device, seed=seed, **env_kw)


__all__ = ["Scenario", "RelayEnv", "make_relay", "link_bottlenecks", "EvenSpacing", "baseline_policy", "BASELINE"]
