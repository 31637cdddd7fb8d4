"""simple_adversary_v3: N good agents reach a goal landmark the adversary cannot see.

Entities (mpe2 order): ``adversary_0``, ``agent_0..agent_{N-1}`` (size 0.15),
then N landmarks (size 0.08). Nothing collides, everyone is silent. Each
episode one landmark is the goal (uniform over the N), kept per env as
``MPEState.extra["goal"]`` (E,) int64; ``extra["color"]`` (E, A + N, 3) holds
that episode's colours for rendering (the goal is drawn green).

Rewards (mpe2's shaped variant): the adversary gets ``-|p_adv - p_goal|``; every
good agent gets the same team reward ``-min_i |p_i - p_goal| + |p_adv - p_goal|``.

Observations (no velocities at all, as in mpe2):
good agent ``[goal rel pos (2), landmark rel pos (2N), other agents rel pos (2N)]``,
adversary ``[landmark rel pos (2N), other agents rel pos (2N)]``. With
``num_landmark_neighbors`` / ``num_agent_neighbors`` only the nearest ones are
kept (closest first, zero-padded); the goal position is always observed.
"""

from __future__ import annotations

import torch
from torch import Tensor

from fastmarl.envs.mpe.core import MPEState, World, WorldDef, entity_pos, reset_entities
from fastmarl.envs.mpe.geometry import nearest_k, norm2, relative_to_self, uniform

KWARGS = dict(N=2, max_cycles=25, num_agent_neighbors=None, num_landmark_neighbors=None)

ADVERSARY_COLOR, GOOD_COLOR = (0.85, 0.35, 0.35), (0.35, 0.35, 0.85)
LANDMARK_COLOR, GOAL_COLOR = (0.15, 0.15, 0.15), (0.15, 0.65, 0.15)


class Scenario:
    env_id = "simple_adversary_v3"

    def __init__(self, N=2, max_cycles=25, num_agent_neighbors=None, num_landmark_neighbors=None):
        if not isinstance(N, int) or isinstance(N, bool) or N < 1:
            raise ValueError(f"simple_adversary_v3: N (good agents and landmarks) must be a positive int, got {N!r}")
        if not isinstance(max_cycles, int) or max_cycles < 1:
            raise ValueError(f"simple_adversary_v3: max_cycles must be a positive int, got {max_cycles!r}")
        for k, v in (("num_agent_neighbors", num_agent_neighbors), ("num_landmark_neighbors", num_landmark_neighbors)):
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v <= 0):
                raise ValueError(f"simple_adversary_v3: {k} must be a positive int or None, got {v!r}")
        self.N, self.max_cycles = N, max_cycles
        self.num_agent_neighbors, self.num_landmark_neighbors = num_agent_neighbors, num_landmark_neighbors

    def world_def(self) -> WorldDef:
        N = self.N
        return WorldDef(
            agent_names=["adversary_0"] + [f"agent_{i}" for i in range(N)],
            landmark_names=[f"landmark {i}" for i in range(N)],
            size=[0.15] * (N + 1) + [0.08] * N,
            movable=[True] * (N + 1) + [False] * N,
            collide=[False] * (2 * N + 1),
            color=[ADVERSARY_COLOR] + [GOOD_COLOR] * N + [LANDMARK_COLOR] * N,
            silent=[True] * (N + 1),
            dim_c=2,
        )

    def episode_colors(self, w: World, goal: Tensor) -> Tensor:
        """(E, A + N, 3) entity colours with the goal landmark of each env (E,) in green."""
        is_goal = torch.nn.functional.one_hot(goal + w.A, w.N).bool()[..., None]  # (E, N_ent, 1)
        return torch.where(is_goal, w.color.new_tensor(GOAL_COLOR), w.color)

    def reset(self, w: World, s: MPEState, mask: Tensor, gen: torch.Generator) -> MPEState:
        E = s.pos.shape[0]
        goal = torch.randint(0, self.N, (E,), generator=gen, device=s.pos.device)
        goal = torch.where(mask, goal, s.extra["goal"]) if "goal" in s.extra else goal
        pos = uniform(gen, (E, w.N, 2), -1.0, 1.0, s.pos)
        extra = {**s.extra, "goal": goal, "color": self.episode_colors(w, goal)}
        return reset_entities(s, mask, pos, extra)

    def _goal_pos(self, w: World, s: MPEState) -> Tensor:
        """(E, 2) position of each env's goal landmark."""
        return entity_pos(s, s.extra["goal"] + w.A)

    def rewards(self, w: World, s: MPEState) -> Tensor:
        d = norm2(s.pos[:, : w.A] - self._goal_pos(w, s)[:, None])  # (E, A) distance to the goal
        adv = -d[:, :1]
        good = -d[:, 1:].amin(-1, keepdim=True) + d[:, :1]
        return torch.cat([adv, good.expand(-1, self.N)], 1)

    def terminal(self, w: World, s: MPEState) -> Tensor | None:
        return None

    def observations(self, w: World, s: MPEState) -> dict[str, Tensor]:
        A = w.A
        E = s.pos.shape[0]
        a_pos = s.pos[:, :A]
        lm_rel = relative_to_self(a_pos, s.pos[:, A:])  # (E, A, N, 2)
        other_rel = relative_to_self(a_pos, a_pos)[:, w.agent_rows, w.others]  # (E, A, A-1, 2)
        if self.num_landmark_neighbors is not None:
            (lm_rel,) = nearest_k(lm_rel, self.num_landmark_neighbors)
        if self.num_agent_neighbors is not None:
            (other_rel,) = nearest_k(other_rel, self.num_agent_neighbors)
        seen = torch.cat([lm_rel.reshape(E, A, -1), other_rel.reshape(E, A, -1)], -1)
        goal_rel = self._goal_pos(w, s)[:, None] - a_pos[:, 1:]  # (E, N, 2)
        return {"adversary": seen[:, :1], "agent": torch.cat([goal_rel, seen[:, 1:]], -1)}
