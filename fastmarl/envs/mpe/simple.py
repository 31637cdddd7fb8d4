"""simple_v3: one agent moves to one landmark (a single-agent debugging task).

Entities (mpe2 order): ``agent_0`` (size 0.05, no collisions, silent), then
``landmark 0`` (size 0.05). The world has no communication channel (dim_c 0).
Reward: minus the *squared* distance to the landmark (the only MPE task that
squares it). Observation: ``[vel (2), landmark rel pos (2)]``. Both start
uniformly in [-1, 1]^2.
"""

from __future__ import annotations

import torch
from torch import Tensor

from fastmarl.envs.mpe.core import MPEState, World, WorldDef, reset_entities
from fastmarl.envs.mpe.geometry import uniform

KWARGS = dict(max_cycles=25)


class Scenario:
    env_id = "simple_v3"

    def __init__(self, max_cycles=25):
        if not isinstance(max_cycles, int) or max_cycles < 1:
            raise ValueError(f"simple_v3: max_cycles must be a positive int, got {max_cycles!r}")
        self.max_cycles = max_cycles

    def world_def(self) -> WorldDef:
        return WorldDef(
            agent_names=["agent_0"],
            landmark_names=["landmark 0"],
            size=[0.05, 0.05],
            movable=[True, False],
            collide=[False, False],
            color=[(0.25, 0.25, 0.25), (0.75, 0.25, 0.25)],
            silent=[True],
            dim_c=0,
        )

    def reset(self, w: World, s: MPEState, mask: Tensor, gen: torch.Generator) -> MPEState:
        E = s.pos.shape[0]
        pos = uniform(gen, (E, w.N, 2), -1.0, 1.0, s.pos)
        return reset_entities(s, mask, pos)

    def rewards(self, w: World, s: MPEState) -> Tensor:
        d = s.pos[:, :1] - s.pos[:, 1:2]  # (E, 1, 2) agent minus landmark
        return -(d * d).sum(-1)  # (E, 1)

    def terminal(self, w: World, s: MPEState) -> Tensor | None:
        return None

    def observations(self, w: World, s: MPEState) -> dict[str, Tensor]:
        return {"agent": torch.cat([s.vel[:, :1], s.pos[:, 1:2] - s.pos[:, :1]], -1)}  # (E, 1, 4)
