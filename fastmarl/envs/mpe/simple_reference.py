"""simple_reference_v3: two agents each tell the other which landmark to reach.

Entities (mpe2 order): ``agent_0``, ``agent_1`` (movable, speaking on a
10-symbol channel, size 0.05), then three landmarks (size 0.05) coloured red,
green and blue. Nothing collides. Each episode agent ``i`` is told a goal
landmark ``goal[i]`` (uniform over the three, independently) that its
*partner* must reach; kept per env in ``MPEState.extra["goal"]`` (E, 2) int64.
``extra["color"]`` (E, A + 3, 3): each agent takes the colour of the landmark
it must reach (mpe2's colouring).

Actions: ``Discrete(50)`` = ``move + 5 * symbol`` or ``Box(0, 1, (15,))`` =
``[no-op, left, right, down, up, message (10)]``.

Rewards: local ``r_i = -|p_{partner(i)} - p_{landmark goal[i]}|``, global the
mean of both; blended ``global * (1 - local_ratio) + local * local_ratio``.

Observation of agent ``i``: ``[vel (2), landmark rel pos (2 * 3),
colour of landmark goal[i] (3), partner's message (10)]``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from fastmarl.envs.mpe.core import MPEState, World, WorldDef, reset_entities
from fastmarl.envs.mpe.geometry import norm2, relative_to_self, uniform

KWARGS = dict(local_ratio=0.5, max_cycles=25)

NUM_LANDMARKS = 3
AGENT_COLOR = (0.25, 0.25, 0.25)
LANDMARK_COLORS = ((0.75, 0.25, 0.25), (0.25, 0.75, 0.25), (0.25, 0.25, 0.75))


class Scenario:
    env_id = "simple_reference_v3"

    def __init__(self, local_ratio=0.5, max_cycles=25):
        if not isinstance(local_ratio, (int, float)) or isinstance(local_ratio, bool) or not 0.0 <= local_ratio <= 1.0:
            raise ValueError(f"simple_reference_v3: local_ratio is a proportion in [0, 1], got {local_ratio!r}")
        if not isinstance(max_cycles, int) or isinstance(max_cycles, bool) or max_cycles < 1:
            raise ValueError(f"simple_reference_v3: max_cycles must be a positive int, got {max_cycles!r}")
        self.local_ratio, self.max_cycles = float(local_ratio), max_cycles

    def world_def(self) -> WorldDef:
        return WorldDef(
            agent_names=["agent_0", "agent_1"],
            landmark_names=[f"landmark {i}" for i in range(NUM_LANDMARKS)],
            size=[0.05] * (2 + NUM_LANDMARKS),
            movable=[True, True] + [False] * NUM_LANDMARKS,
            collide=[False] * (2 + NUM_LANDMARKS),
            color=[AGENT_COLOR] * 2 + list(LANDMARK_COLORS),
            silent=[False, False],
            dim_c=10,
        )

    def episode_colors(self, w: World, goal: Tensor) -> Tensor:
        """(E, N, 3) entity colours; goal (E, 2). Agent ``j`` shows the colour of the
        landmark it must reach, i.e. the goal its partner was told."""
        color = w.color.expand(goal.shape[0], -1, -1).clone()
        color[:, :2] = w.color[w.A:][goal.flip(-1)]
        return color

    def reset(self, w: World, s: MPEState, mask: Tensor, gen: torch.Generator) -> MPEState:
        E = s.pos.shape[0]
        goal = torch.randint(0, NUM_LANDMARKS, (E, 2), generator=gen, device=s.pos.device)
        goal = torch.where(mask[:, None], goal, s.extra["goal"]) if "goal" in s.extra else goal
        pos = uniform(gen, (E, w.N, 2), -1.0, 1.0, s.pos)
        extra = {**s.extra, "goal": goal, "color": self.episode_colors(w, goal)}
        return reset_entities(s, mask, pos, extra)

    def rewards(self, w: World, s: MPEState) -> Tensor:
        E = s.pos.shape[0]
        goal_pos = s.pos[:, w.A:][torch.arange(E, device=s.pos.device)[:, None], s.extra["goal"]]  # (E, 2, 2)
        local = -norm2(s.pos[:, :2].flip(1) - goal_pos)  # (E, 2): partner's distance to my goal
        glob = local.mean(-1, keepdim=True)  # (E, 1)
        return glob * (1 - self.local_ratio) + local * self.local_ratio

    def terminal(self, w: World, s: MPEState) -> Tensor | None:
        return None

    def observations(self, w: World, s: MPEState) -> dict[str, Tensor]:
        E = s.pos.shape[0]
        a_pos = s.pos[:, :2]
        lm_rel = relative_to_self(a_pos, s.pos[:, w.A:]).reshape(E, 2, -1)  # (E, 2, 6)
        goal_color = w.color[w.A:][s.extra["goal"]]  # (E, 2, 3)
        obs = torch.cat([s.vel[:, :2], lm_rel, goal_color, s.comm.flip(1)], -1)  # (E, 2, 21)
        return {"agent": obs}
