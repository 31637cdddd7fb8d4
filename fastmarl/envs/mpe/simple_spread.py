"""simple_spread_v3: N agents cover N landmarks without colliding.

Reward (mpe2): global = -sum over landmarks of the distance to the closest
agent; local = -1 for each other agent in collision; blended by ``local_ratio``.
Observation per agent: ``[vel(2), pos(2), landmark rel pos (2L), other agents
rel pos (2(N-1)), other agents' comm (2(N-1))]``; with ``num_*_neighbors`` only
the nearest ones, zero-padded.
"""

from __future__ import annotations

import torch
from torch import Tensor

from fastmarl.envs.mpe.core import MPEState, World, WorldDef, reset_entities
from fastmarl.envs.mpe.geometry import nearest_k, norm2, relative_to_self, uniform

KWARGS = dict(N=3, local_ratio=0.5, max_cycles=25, curriculum=False, terminate_on_success=False,
              num_agent_neighbors=None, num_landmark_neighbors=None)
CAPTURE_RADIUS = 0.1


class Scenario:
    env_id = "simple_spread_v3"

    def __init__(self, N=3, local_ratio=0.5, max_cycles=25, curriculum=False, terminate_on_success=False,
                 num_agent_neighbors=None, num_landmark_neighbors=None):
        if not isinstance(N, int) or N < 1:
            raise ValueError(f"simple_spread_v3: N must be a positive int, got {N!r}")
        if not 0.0 <= local_ratio <= 1.0:
            raise ValueError(f"simple_spread_v3: local_ratio is a proportion in [0, 1], got {local_ratio!r}")
        for k, v in (("num_agent_neighbors", num_agent_neighbors), ("num_landmark_neighbors", num_landmark_neighbors)):
            if v is not None and (not isinstance(v, int) or v <= 0):
                raise ValueError(f"simple_spread_v3: {k} must be a positive int or None, got {v!r}")
        self.N, self.local_ratio, self.max_cycles = N, float(local_ratio), int(max_cycles)
        self.curriculum, self.curriculum_stage = bool(curriculum), 0
        self.num_stages = 2  # stage 0: no collision penalty; stage 1: full task
        self.terminate_on_success = terminate_on_success
        self.num_agent_neighbors, self.num_landmark_neighbors = num_agent_neighbors, num_landmark_neighbors

    # -- curriculum (mpe2's API; the collision penalty switches on at once) ------
    def advance_curriculum(self) -> None:
        self.curriculum_stage = min(self.curriculum_stage + 1, self.num_stages - 1)

    def set_curriculum_stage(self, stage: int) -> None:
        self.curriculum_stage = max(0, min(int(stage), self.num_stages - 1))

    def world_def(self) -> WorldDef:
        N = self.N
        return WorldDef(
            agent_names=[f"agent_{i}" for i in range(N)],
            landmark_names=[f"landmark {i}" for i in range(N)],
            size=[0.15] * N + [0.05] * N,
            movable=[True] * N + [False] * N,
            collide=[True] * N + [False] * N,
            color=[(0.35, 0.35, 0.85)] * N + [(0.25, 0.25, 0.25)] * N,
            silent=[True] * N,
            dim_c=2,
        )

    def reset(self, w: World, s: MPEState, mask: Tensor, gen: torch.Generator) -> MPEState:
        E = s.pos.shape[0]
        pos = uniform(gen, (E, w.N, 2), -1.0, 1.0, s.pos)
        return reset_entities(s, mask, pos)

    def _min_dists(self, w: World, s: MPEState) -> Tensor:
        """(E, L) distance from each landmark to its closest agent."""
        a, lm = s.pos[:, : w.A], s.pos[:, w.A:]
        return norm2(relative_to_self(lm, a)).amin(-1)

    def rewards(self, w: World, s: MPEState) -> Tensor:
        A = w.A
        glob = -self._min_dists(w, s).sum(-1)  # (E,)
        if self.curriculum and self.curriculum_stage == 0:
            local = torch.zeros_like(s.pos[:, :A, 0])
        else:
            a = s.pos[:, :A]
            d = norm2(relative_to_self(a, a))  # (E, A, A)
            hit = (d < 0.3) & w.offdiag  # sizes 0.15 + 0.15
            local = -hit.to(s.pos.dtype).sum(-1)
        return glob[:, None] * (1 - self.local_ratio) + local * self.local_ratio

    def terminal(self, w: World, s: MPEState) -> Tensor | None:
        if not self.terminate_on_success:
            return None
        return (self._min_dists(w, s) < CAPTURE_RADIUS).all(-1)

    def observations(self, w: World, s: MPEState) -> dict[str, Tensor]:
        A = w.A
        a_pos, a_vel = s.pos[:, :A], s.vel[:, :A]
        lm_rel = relative_to_self(a_pos, s.pos[:, A:])  # (E, A, L, 2)
        E = a_pos.shape[0]
        other_rel = relative_to_self(a_pos, a_pos)[:, w.agent_rows, w.others]  # (E, A, A-1, 2)
        other_comm = s.comm[:, w.others]  # (E, A, A-1, C)
        if self.num_landmark_neighbors is not None:
            (lm_rel,) = nearest_k(lm_rel, self.num_landmark_neighbors)
        if self.num_agent_neighbors is not None:
            other_rel, other_comm = nearest_k(other_rel, self.num_agent_neighbors, other_comm)
        obs = torch.cat([a_vel, a_pos, lm_rel.reshape(E, A, -1), other_rel.reshape(E, A, -1),
                         other_comm.reshape(E, A, -1)], -1)
        return {"agent": obs}
