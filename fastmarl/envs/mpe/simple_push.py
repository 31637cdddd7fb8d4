"""simple_push_v3: an adversary keeps the good agent away from its goal landmark.

Entities (mpe2 order): ``adversary_0``, ``agent_0`` (size 0.05, accel 5, they
collide with each other), then ``landmark 0`` (green) and ``landmark 1``
(blue), size 0.05, not colliding. Each episode one landmark is the goal
(uniform), kept per env as ``MPEState.extra["goal"]`` (E,) int64; the good
agent is tinted with the goal's colour and ``extra["color"]`` (E, 4, 3) holds
the episode's entity colours.

Rewards: good agent ``-|p_agent - p_goal|``; adversary
``min_good |p_good - p_goal| - |p_adv - p_goal|``.

Observations (mpe2 quirks kept):
good agent ``[vel (2), goal rel pos (2), own colour (3), landmark rel pos (4),
landmark colours (6), adversary rel pos (2)]`` (19): its own colour reveals the
goal a second time; adversary ``[vel (2), landmark rel pos (4), agent rel pos (2)]``
(8): the adversary does not know the goal. mpe2 gathers the other agents'
messages but never puts them in the observation, and everyone is silent.
"""

from __future__ import annotations

import torch
from torch import Tensor

from fastmarl.envs.mpe.core import MPEState, World, WorldDef, entity_pos, reset_entities
from fastmarl.envs.mpe.geometry import norm2, uniform

KWARGS = dict(max_cycles=25)

# mpe2: landmark i is (0.1, 0.1, 0.1) plus 0.8 on channel i + 1; the good agent is
# (0.25, 0.25, 0.25) plus 0.5 on channel goal + 1; the adversary is (0.75, 0.25, 0.25).
LANDMARK_COLORS = ((0.1, 0.1 + 0.8, 0.1), (0.1, 0.1, 0.1 + 0.8))
GOOD_BASE_COLOR, GOOD_TINT = (0.25, 0.25, 0.25), 0.5
ADVERSARY_COLOR = (0.75, 0.25, 0.25)


class Scenario:
    env_id = "simple_push_v3"

    def __init__(self, max_cycles=25):
        if not isinstance(max_cycles, int) or max_cycles < 1:
            raise ValueError(f"simple_push_v3: max_cycles must be a positive int, got {max_cycles!r}")
        self.max_cycles = max_cycles

    def world_def(self) -> WorldDef:
        return WorldDef(
            agent_names=["adversary_0", "agent_0"],
            landmark_names=["landmark 0", "landmark 1"],
            size=[0.05] * 4,
            movable=[True, True, False, False],
            collide=[True, True, False, False],
            color=[ADVERSARY_COLOR, GOOD_BASE_COLOR, *LANDMARK_COLORS],
            silent=[True, True],
            dim_c=2,
        )

    def episode_colors(self, w: World, goal: Tensor) -> Tensor:
        """(E, 4, 3) entity colours: the good agent (entity 1) tinted by each env's goal (E,)."""
        tint = torch.nn.functional.one_hot(goal + 1, 3).to(w.color.dtype) * GOOD_TINT  # (E, 3)
        color = w.color.expand(goal.shape[0], -1, -1).clone()
        color[:, 1] = color[:, 1] + tint
        return color

    def reset(self, w: World, s: MPEState, mask: Tensor, gen: torch.Generator) -> MPEState:
        E = s.pos.shape[0]
        goal = torch.randint(0, 2, (E,), generator=gen, device=s.pos.device)
        goal = torch.where(mask, goal, s.extra["goal"]) if "goal" in s.extra else goal
        pos = uniform(gen, (E, w.N, 2), -1.0, 1.0, s.pos)
        extra = {**s.extra, "goal": goal, "color": self.episode_colors(w, goal)}
        return reset_entities(s, mask, pos, extra)

    def _goal_pos(self, w: World, s: MPEState) -> Tensor:
        """(E, 2) position of each env's goal landmark."""
        return entity_pos(s, s.extra["goal"] + w.A)

    def rewards(self, w: World, s: MPEState) -> Tensor:
        d = norm2(s.pos[:, :2] - self._goal_pos(w, s)[:, None])  # (E, 2): adversary, agent to the goal
        return torch.stack([d[:, 1] - d[:, 0], -d[:, 1]], 1)

    def terminal(self, w: World, s: MPEState) -> Tensor | None:
        return None

    def observations(self, w: World, s: MPEState) -> dict[str, Tensor]:
        E = s.pos.shape[0]
        adv_pos, ag_pos = s.pos[:, 0], s.pos[:, 1]  # (E, 2)
        lm = s.pos[:, 2:]  # (E, 2, 2)
        lm_colors = w.color[2:].reshape(1, 6).expand(E, -1)
        agent = torch.cat([s.vel[:, 1], self._goal_pos(w, s) - ag_pos, s.extra["color"][:, 1],
                           (lm - ag_pos[:, None]).reshape(E, 4), lm_colors, adv_pos - ag_pos], -1)
        adversary = torch.cat([s.vel[:, 0], (lm - adv_pos[:, None]).reshape(E, 4), ag_pos - adv_pos], -1)
        return {"adversary": adversary[:, None], "agent": agent[:, None]}
