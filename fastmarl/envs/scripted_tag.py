"""Scripted policies for ``simple_tag_v3`` (discrete actions, full observations).

:class:`TagPreyScripted` drives the prey (group ``agent``) away from the
predators; :class:`TagChaserScripted` drives the predators (group
``adversary``) straight at the prey (a greedy-pursuit reference). Both read only
the agent's own observation and follow the ``Policy`` protocol
(:class:`fastmarl.envs.api.Policy`), so they can play one side of the env
(:class:`fastmarl.envs.wrappers.ScriptedGroups`) while the other side learns::

    env = fastmarl.make("simple_tag_v3", num_envs=64)
    prey = TagPreyScripted(env.spec)
    env = ScriptedGroups(env, {"agent": prey})   # now only the predators act

The prey steers along the sum of three pushes, with its position extrapolated
by its coasting distance (``pos + vel * 0.3``, mpe2's damping 0.25 and dt 0.1)
so it brakes before it arrives:

- *flee*: away from the predators' weighted centroid, the predators' positions
  relative to the prey averaged with weights ``1 / (d^2 + 0.01)`` (the nearest
  dominate; ``flee="nearest"``: away from the nearest only), as a unit vector;
- *walls*: per axis, ``wall_gain * (|x| - wall_margin) / (1 - wall_margin)``
  towards the centre once ``|x| > wall_margin`` (simple_tag penalises the prey
  beyond 0.9);
- *obstacles*: ``obstacle_gain * (1 - d / obstacle_range)`` away from every
  obstacle centre closer than ``obstacle_range``.

The action is the move (0 no-op, 1 -x, 2 +x, 3 -y, 4 +y) whose direction is
closest to the summed push (the no-op only when the push is zero).

Observation layout (mpe2's simple_tag, P adversaries, G prey, L obstacles):
``[vel (2), pos (2), obstacles rel (2L), other agents rel (2(P+G-1)), other prey vel]``,
other agents in agent order (adversaries first).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from fastmarl.envs.api import EnvSpec, TimeStep
from fastmarl.envs.mpe.geometry import N_MOVES, axis_move

__all__ = ["TagPreyScripted", "TagChaserScripted", "tag_layout", "move_towards"]

_COAST = 0.1 * (1 - 0.25) / 0.25  # distance travelled coasting from unit velocity (dt 0.1, damping 0.25)


def tag_layout(spec: EnvSpec) -> tuple[int, int, int]:
    """(adversaries P, prey G, obstacles L) of a simple_tag spec with full observations and discrete actions."""
    if "agent" not in spec.groups or "adversary" not in spec.groups:
        raise ValueError(f"expected simple_tag_v3's groups 'adversary' and 'agent', got {list(spec.groups)}")
    P, G = spec.groups["adversary"].num_agents, spec.groups["agent"].num_agents
    D = spec.groups["agent"].obs_dim
    rest = D - 4 - 2 * (P + G - 1) - 2 * (G - 1)
    if rest < 0 or rest % 2 or spec.groups["adversary"].obs_dim != 4 + rest + 2 * (P + G - 1) + 2 * G:
        raise ValueError(f"{spec.env_id}: observation sizes {D} (prey) / {spec.groups['adversary'].obs_dim} "
                         "(adversaries) do not match simple_tag's full observations; num_agent_neighbors / "
                         "num_landmark_neighbors are not supported")
    for name in ("agent", "adversary"):
        g = spec.groups[name]
        if not g.discrete or g.action_dim != N_MOVES:
            raise ValueError(f"the scripted simple_tag policies need discrete actions (Discrete(5)); group {name!r} "
                             f"has {g.action_space}: create the env with continuous_actions=False")
    return P, G, rest // 2


def move_towards(direction: Tensor) -> Tensor:
    """direction (..., 2) -> (...) long: the MPE move closest in direction (0 no-op only for a zero vector)."""
    zero = torch.linalg.vector_norm(direction, dim=-1) < 1e-9
    return torch.where(zero, 0, axis_move(direction))


class TagPreyScripted:
    """Evading prey for simple_tag_v3 (see the module docstring). Acts for group ``agent``: (E, G) long."""

    def __init__(self, spec: EnvSpec, flee: Literal["weighted", "nearest"] = "weighted", wall_margin: float = 0.7,
                 wall_gain: float = 2.0, obstacle_range: float = 0.35, obstacle_gain: float = 1.5):
        if flee not in ("weighted", "nearest"):
            raise ValueError(f"flee must be 'weighted' or 'nearest', got {flee!r}")
        if not 0.0 <= wall_margin < 1.0:
            raise ValueError(f"wall_margin must be in [0, 1), got {wall_margin}")
        if wall_gain < 0 or obstacle_gain < 0 or obstacle_range <= 0:
            raise ValueError("wall_gain and obstacle_gain must be >= 0 and obstacle_range > 0")
        self.P, self.G, self.L = tag_layout(spec)
        if self.P == 0:
            raise ValueError("TagPreyScripted needs at least one adversary to flee from")
        self.flee, self.wall_margin, self.wall_gain = flee, wall_margin, wall_gain
        self.obstacle_range, self.obstacle_gain = obstacle_range, obstacle_gain

    def initial_carry(self, num_envs: int) -> dict:
        return {}

    def push(self, obs: Tensor) -> Tensor:
        """Prey observations (E, G, D) -> the summed push (E, G, 2)."""
        P, L = self.P, self.L
        vel, pos = obs[..., 0:2], obs[..., 2:4]
        obstacles = obs[..., 4:4 + 2 * L].unflatten(-1, (L, 2))  # (E, G, L, 2) relative
        preds = obs[..., 4 + 2 * L:4 + 2 * L + 2 * P].unflatten(-1, (P, 2))  # (E, G, P, 2) relative
        d2 = (preds ** 2).sum(-1)  # (E, G, P)
        if self.flee == "nearest":
            away = -preds.gather(-2, d2.argmin(-1)[..., None, None].expand(*d2.shape[:-1], 1, 2))[..., 0, :]
        else:
            w = 1.0 / (d2 + 0.01)
            away = -(w[..., None] * preds).sum(-2) / w.sum(-1, keepdim=True)
        away = away / torch.linalg.vector_norm(away, dim=-1, keepdim=True).clamp_min(1e-9)
        ahead = pos + vel * _COAST
        excess = ((ahead.abs() - self.wall_margin) / (1.0 - self.wall_margin)).clamp_min(0.0)
        wall = -torch.sign(ahead) * self.wall_gain * excess
        d_obs = torch.linalg.vector_norm(obstacles, dim=-1, keepdim=True)  # (E, G, L, 1)
        strength = self.obstacle_gain * (1.0 - d_obs / self.obstacle_range).clamp_min(0.0)
        avoid = -(strength * obstacles / d_obs.clamp_min(1e-9)).sum(-2)
        return away + wall + avoid

    def act(self, ts: TimeStep, carry: dict, deterministic: bool = True,
            generator: torch.Generator | None = None) -> tuple[dict[str, Tensor], dict]:
        return {"agent": move_towards(self.push(ts.obs["agent"]))}, carry


class TagChaserScripted:
    """Greedy pursuit for simple_tag_v3's predators: each steers at the nearest
    prey's position ``lead`` seconds ahead (its velocity extrapolated), minus its
    own coasting distance. Acts for group ``adversary``: (E, P) long."""

    def __init__(self, spec: EnvSpec, lead: float = 0.0):
        self.P, self.G, self.L = tag_layout(spec)
        if self.G == 0:
            raise ValueError("TagChaserScripted needs at least one prey to chase")
        self.lead = float(lead)

    def initial_carry(self, num_envs: int) -> dict:
        return {}

    def act(self, ts: TimeStep, carry: dict, deterministic: bool = True,
            generator: torch.Generator | None = None) -> tuple[dict[str, Tensor], dict]:
        P, G, L = self.P, self.G, self.L
        obs = ts.obs["adversary"]  # (E, P, D)
        vel = obs[..., 0:2]
        start = 4 + 2 * L + 2 * (P - 1)  # each adversary sees the other adversaries first, then the prey
        prey = obs[..., start:start + 2 * G].unflatten(-1, (G, 2))  # (E, P, G, 2) relative
        prey_vel = obs[..., obs.shape[-1] - 2 * G:].unflatten(-1, (G, 2))
        target = prey + self.lead * prey_vel
        nearest = (prey ** 2).sum(-1).argmin(-1)  # (E, P)
        goal = target.gather(-2, nearest[..., None, None].expand(*nearest.shape, 1, 2))[..., 0, :]
        return {"adversary": move_towards(goal - vel * _COAST)}, carry
