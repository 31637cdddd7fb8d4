"""simple_tag_v3: slower predators (adversaries) chase faster prey among obstacles.

Entities (mpe2 order): ``adversary_0..`` (size 0.075, accel 3, max speed 1),
``agent_0..`` (the prey, size 0.05, accel 4, max speed 1.3), then obstacles
``landmark i`` (size 0.2, immovable). Everything collides physically. Agents
start uniformly in [-1, 1]^2, obstacles in [-0.9, 0.9]^2.

Rewards (mpe2): a prey gets -10 for every adversary touching it
(``|p_a - p_b| < 0.125``) minus a boundary penalty ``bound(|x|) + bound(|y|)``
with ``bound(x) = 0 if x < 0.9, 10 (x - 0.9) if x < 1, min(exp(2x - 2), 10)``.
Every adversary gets +10 for every (prey, adversary) pair in contact: the
capture reward is shared by the whole team, not given to the one who touched.

Observation: ``[vel (2), pos (2), obstacle rel pos (2L), other agents rel pos
(2(A-1)), velocities of the *other prey* only]``; so adversaries see ``num_good``
velocities and prey ``num_good - 1``, and the two groups have different sizes.
With ``num_landmark_neighbors`` / ``num_agent_neighbors`` only the nearest
obstacles / agents are kept (closest first, zero-padded); then the velocity
part has one slot per kept neighbour, zero when the neighbour is an adversary.

Curriculum: with ``curriculum=True`` the prey's max speed and accel are
``(1.3, 4.0) * (0.5, 0.75, 1.0)[stage]``, already at stage 0 from construction.
``scenario.advance_curriculum()`` / ``set_curriculum_stage(n)`` change the
stage (clamped to 0..2); as mpe2 documents, it takes effect for an env at its
next reset, so the speeds live per env in ``MPEState.extra["accel"]`` (E, A)
and ``extra["max_speed"]`` (E, N), which the core physics reads. Without
curriculum the speeds are constants and ``extra`` stays empty.
Deliberate difference: in mpe2 1.1.1 the stage can never change, because
``BaseScenario.curriculum_stage`` is a property with a no-op setter that
shadows the scenario's own attribute (advance/set are silently ignored, the
prey stays at 50% speed). We implement the documented behaviour; until the
stage is changed both agree exactly (the parity tests check both cases, the
latter against mpe2 with that property shadowed).

``terminate_on_success``: the episode terminates when every prey touches at
least one adversary (checked after the step, unless the step also truncates,
as in mpe2; with ``num_good=0`` mpe2's test is vacuously true every step).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from fastmarl.envs.mpe.core import MPEState, World, WorldDef, reset_entities
from fastmarl.envs.mpe.geometry import nearest_k, norm2, relative_to_self, uniform

KWARGS = dict(num_good=1, num_adversaries=3, num_obstacles=2, max_cycles=25, curriculum=False,
              terminate_on_success=False, num_agent_neighbors=None, num_landmark_neighbors=None)

ADVERSARY_SIZE, PREY_SIZE, OBSTACLE_SIZE = 0.075, 0.05, 0.2
ADVERSARY_ACCEL, ADVERSARY_MAX_SPEED = 3.0, 1.0
PREY_ACCEL, PREY_MAX_SPEED = 4.0, 1.3
CAPTURE_REWARD = 10.0


def boundary_penalty(x: Tensor) -> Tensor:
    """mpe2's ``bound`` of |coordinate| x, elementwise (>= 0)."""
    return torch.where(x < 0.9, 0.0, torch.where(x < 1.0, (x - 0.9) * 10, torch.clamp(torch.exp(2 * x - 2), max=10.0)))


class Scenario:
    env_id = "simple_tag_v3"
    CURRICULUM_STAGES = (0.5, 0.75, 1.0)  # prey speed factor per stage

    def __init__(self, num_good=1, num_adversaries=3, num_obstacles=2, max_cycles=25, curriculum=False,
                 terminate_on_success=False, num_agent_neighbors=None, num_landmark_neighbors=None):
        for k, v in (("num_good", num_good), ("num_adversaries", num_adversaries), ("num_obstacles", num_obstacles)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ValueError(f"simple_tag_v3: {k} must be a non-negative int, got {v!r}")
        if num_good + num_adversaries < 1:
            raise ValueError("simple_tag_v3: needs at least one agent (num_good + num_adversaries >= 1)")
        if not isinstance(max_cycles, int) or max_cycles < 1:
            raise ValueError(f"simple_tag_v3: max_cycles must be a positive int, got {max_cycles!r}")
        for k, v in (("num_agent_neighbors", num_agent_neighbors), ("num_landmark_neighbors", num_landmark_neighbors)):
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v <= 0):
                raise ValueError(f"simple_tag_v3: {k} must be a positive int or None, got {v!r}")
        self.num_good, self.num_adversaries, self.num_obstacles = num_good, num_adversaries, num_obstacles
        self.max_cycles = max_cycles
        self.curriculum, self.curriculum_stage = bool(curriculum), 0
        self.terminate_on_success = bool(terminate_on_success)
        self.num_agent_neighbors, self.num_landmark_neighbors = num_agent_neighbors, num_landmark_neighbors

    # -- curriculum (mpe2's API; takes effect at each env's next reset) ---------
    def advance_curriculum(self) -> None:
        """Next stage; no-op at the last one."""
        self.curriculum_stage = min(self.curriculum_stage + 1, len(self.CURRICULUM_STAGES) - 1)

    def set_curriculum_stage(self, stage: int) -> None:
        """Jump to ``stage``, clamped to [0, number of stages - 1] as mpe2 does."""
        self.curriculum_stage = max(0, min(int(stage), len(self.CURRICULUM_STAGES) - 1))

    def _speeds(self, factor: float) -> tuple[list[float], list[float]]:
        """Per-agent accel (A) and per-entity max speed (N) with the prey scaled by factor."""
        nA, nG, L = self.num_adversaries, self.num_good, self.num_obstacles
        accel = [ADVERSARY_ACCEL] * nA + [PREY_ACCEL * factor] * nG
        max_speed = [ADVERSARY_MAX_SPEED] * nA + [PREY_MAX_SPEED * factor] * nG + [math.inf] * L
        return accel, max_speed

    # -- scenario protocol ----------------------------------------------------
    def world_def(self) -> WorldDef:
        nA, nG, L = self.num_adversaries, self.num_good, self.num_obstacles
        accel, max_speed = self._speeds(1.0)
        return WorldDef(
            agent_names=[f"adversary_{i}" for i in range(nA)] + [f"agent_{i}" for i in range(nG)],
            landmark_names=[f"landmark {i}" for i in range(L)],
            size=[ADVERSARY_SIZE] * nA + [PREY_SIZE] * nG + [OBSTACLE_SIZE] * L,
            movable=[True] * (nA + nG) + [False] * L,
            collide=[True] * (nA + nG + L),
            color=[(0.85, 0.35, 0.35)] * nA + [(0.35, 0.85, 0.35)] * nG + [(0.25, 0.25, 0.25)] * L,
            silent=[True] * (nA + nG),
            dim_c=2,
            max_speed=[None if math.isinf(m) else m for m in max_speed],
            accel=accel,
        )

    def reset(self, w: World, s: MPEState, mask: Tensor, gen: torch.Generator) -> MPEState:
        E, A = s.pos.shape[0], w.A
        pos = torch.cat([uniform(gen, (E, A, 2), -1.0, 1.0, s.pos), uniform(gen, (E, w.L, 2), -0.9, 0.9, s.pos)], 1)
        extra = s.extra
        if self.curriculum:
            accel, max_speed = self._speeds(self.CURRICULUM_STAGES[self.curriculum_stage])
            f = dict(dtype=s.pos.dtype, device=s.pos.device)
            new_accel, new_max = torch.tensor(accel, **f), torch.tensor(max_speed, **f)
            old_accel = extra.get("accel", new_accel.expand(E, A))
            old_max = extra.get("max_speed", new_max.expand(E, w.N))
            extra = {**extra, "accel": torch.where(mask[:, None], new_accel, old_accel),
                     "max_speed": torch.where(mask[:, None], new_max, old_max)}
        return reset_entities(s, mask, pos, extra)

    def _captures(self, w: World, s: MPEState) -> Tensor:
        """(E, nG, nA) bool: prey g touches adversary a."""
        nA = self.num_adversaries
        prey, adv = s.pos[:, nA:w.A], s.pos[:, :nA]
        return norm2(relative_to_self(prey, adv)) < PREY_SIZE + ADVERSARY_SIZE

    def rewards(self, w: World, s: MPEState) -> Tensor:
        nA = self.num_adversaries
        hit = self._captures(w, s).to(s.pos.dtype)  # (E, nG, nA)
        bound = boundary_penalty(s.pos[:, nA:w.A].abs())  # (E, nG, 2)
        prey = -CAPTURE_REWARD * hit.sum(-1) - bound[..., 0] - bound[..., 1]  # (E, nG)
        team = CAPTURE_REWARD * hit.sum((1, 2))  # (E,)
        return torch.cat([team[:, None].expand(-1, nA), prey], 1)  # (E, A)

    def terminal(self, w: World, s: MPEState) -> Tensor | None:
        if not self.terminate_on_success:
            return None
        return self._captures(w, s).any(-1).all(-1)

    def observations(self, w: World, s: MPEState) -> dict[str, Tensor]:
        nA, nG, A = self.num_adversaries, self.num_good, w.A
        E = s.pos.shape[0]
        a_pos, a_vel = s.pos[:, :A], s.vel[:, :A]
        lm_rel = relative_to_self(a_pos, s.pos[:, A:])  # (E, A, L, 2)
        other_rel = relative_to_self(a_pos, a_pos)[:, w.agent_rows, w.others]  # (E, A, A-1, 2)
        if self.num_landmark_neighbors is not None:
            (lm_rel,) = nearest_k(lm_rel, self.num_landmark_neighbors)
        if self.num_agent_neighbors is None:
            # velocities of the other prey only: every prey for an adversary, the others for a prey
            prey_vel = a_vel[:, nA:]  # (E, nG, 2)
            adv_vel = prey_vel.reshape(E, 1, 2 * nG).expand(E, nA, -1)  # (E, nA, 2 nG)
            own_vel = a_vel[:, w.others[nA:, nA:]].reshape(E, nG, 2 * max(nG - 1, 0))  # (E, nG, 2 (nG-1))
        else:
            is_prey = (w.others >= nA)[None, :, :, None]  # (1, A, A-1, 1)
            other_vel = torch.where(is_prey, a_vel[:, w.others], 0.0)  # (E, A, A-1, 2)
            other_rel, other_vel = nearest_k(other_rel, self.num_agent_neighbors, other_vel)
            other_vel = other_vel.reshape(E, A, 2 * self.num_agent_neighbors)
            adv_vel, own_vel = other_vel[:, :nA], other_vel[:, nA:]
        common = torch.cat([a_vel, a_pos, lm_rel.reshape(E, A, 2 * lm_rel.shape[2]),
                            other_rel.reshape(E, A, 2 * other_rel.shape[2])], -1)
        out = {}
        if nA:
            out["adversary"] = torch.cat([common[:, :nA], adv_vel], -1)
        if nG:
            out["agent"] = torch.cat([common[:, nA:], own_vel], -1)
        return out
