"""simple_world_comm_v3: a leader-led pack of predators, prey, food and forests.

Entities (mpe2 order): ``leadadversary_0`` (the leader, the only speaker, on a
4-dim channel), ``adversary_0..adversary_{num_adversaries-2}``, ``agent_0..``
(the prey); then landmarks: ``landmark i`` obstacles (size 0.2, collide),
``food i`` (size 0.03), ``forest i`` (size 0.3). Adversaries: size 0.075,
accel 3, max speed 1; prey: size 0.045, accel 4, max speed 1.3. Agents and
obstacles collide physically; food and forests do not. Agents start uniform
in [-1, 1]^2, every landmark in [-0.9, 0.9]^2.

Actions: the leader ``Discrete(20)`` = ``move + 5 * symbol`` or
``Box(0, 1, (9,))``; the others ``Discrete(5)`` / ``Box(0, 1, (5,))``.

Rewards (``touch(a, b)``: ``|p_a - p_b| < size_a + size_b``):
prey ``-5 * #adversaries touching it - 2 * (bound(|x|) + bound(|y|))
+ 2 * #food touched - 0.05 * distance to the nearest food`` with
``bound(x) = 0 if x < 0.9, 10 (x - 0.9) if x < 1, min(exp(2x - 2), 10)``;
every adversary ``-0.1 * distance to the nearest prey + 5 * #(prey, adversary)
pairs touching`` (the capture reward is shared by the whole pack).

Observations (``in_forest`` is +1 / -1 per forest: whether the observer
touches it):
adversaries and leader ``[vel (2), pos (2), landmark rel pos (2L),
other agents rel pos (2(A-1)), prey velocities (2 num_good), in_forest (F),
leader's message (4)]``;
prey ``[vel (2), pos (2), landmark rel pos (2L), other agents rel pos (2(A-1)),
in_forest (F), other prey velocities (2(num_good-1))]``.
Forests hide: observer ``i`` sees agent ``j`` if they share a forest, or if
neither is in any forest, or if ``i`` is the leader; a hidden agent's
relative position (and velocity, for prey) reads (0, 0).

mpe2 quirks kept: the leader hears its own message; food is never consumed
(a prey may collect +2 per food every step it stays on it); mpe2 draws the
food and forest positions twice at reset (the second draw counts), which
leaves their distribution uniform in [-0.9, 0.9]^2 like ours.

Not supported (rejected with an error): ``num_adversaries < 1`` (mpe2 would
then name a prey ``leadadversary_0``), ``num_good < 1`` and ``num_food < 1``
(mpe2's rewards take a minimum over an empty list and fail).
"""

from __future__ import annotations

import torch
from torch import Tensor

from fastmarl.envs.mpe.core import MPEState, World, WorldDef, reset_entities
from fastmarl.envs.mpe.geometry import norm2, relative_to_self, uniform

KWARGS = dict(num_good=2, num_adversaries=4, num_obstacles=1, num_food=2, max_cycles=25, num_forests=2)

ADVERSARY_SIZE, PREY_SIZE = 0.075, 0.045
OBSTACLE_SIZE, FOOD_SIZE, FOREST_SIZE = 0.2, 0.03, 0.3
ADVERSARY_ACCEL, ADVERSARY_MAX_SPEED = 3.0, 1.0
PREY_ACCEL, PREY_MAX_SPEED = 4.0, 1.3
LEADER_COLOR, ADVERSARY_COLOR, PREY_COLOR = (0.65, 0.15, 0.15), (0.95, 0.45, 0.45), (0.45, 0.95, 0.45)
OBSTACLE_COLOR, FOOD_COLOR, FOREST_COLOR = (0.25, 0.25, 0.25), (0.15, 0.15, 0.65), (0.6, 0.9, 0.6)
CAPTURE_REWARD, FOOD_REWARD = 5.0, 2.0


def boundary_penalty(x: Tensor) -> Tensor:
    """mpe2's ``bound`` of |coordinate| x, elementwise (>= 0)."""
    return torch.where(x < 0.9, 0.0, torch.where(x < 1.0, (x - 0.9) * 10, torch.clamp(torch.exp(2 * x - 2), max=10.0)))


class Scenario:
    env_id = "simple_world_comm_v3"

    def __init__(self, num_good=2, num_adversaries=4, num_obstacles=1, num_food=2, max_cycles=25, num_forests=2):
        for k, v, lo in (("num_good", num_good, 1), ("num_adversaries", num_adversaries, 1),
                         ("num_obstacles", num_obstacles, 0), ("num_food", num_food, 1),
                         ("num_forests", num_forests, 0), ("max_cycles", max_cycles, 1)):
            if not isinstance(v, int) or isinstance(v, bool) or v < lo:
                raise ValueError(f"simple_world_comm_v3: {k} must be an int >= {lo}, got {v!r}")
        self.num_good, self.num_adversaries = num_good, num_adversaries
        self.num_obstacles, self.num_food, self.num_forests = num_obstacles, num_food, num_forests
        self.max_cycles = max_cycles

    def world_def(self) -> WorldDef:
        nA, nG = self.num_adversaries, self.num_good
        nO, nF, nT = self.num_obstacles, self.num_food, self.num_forests
        return WorldDef(
            agent_names=["leadadversary_0"] + [f"adversary_{i}" for i in range(nA - 1)] + [f"agent_{i}" for i in range(nG)],
            landmark_names=[f"landmark {i}" for i in range(nO)] + [f"food {i}" for i in range(nF)]
            + [f"forest {i}" for i in range(nT)],
            size=[ADVERSARY_SIZE] * nA + [PREY_SIZE] * nG + [OBSTACLE_SIZE] * nO + [FOOD_SIZE] * nF + [FOREST_SIZE] * nT,
            movable=[True] * (nA + nG) + [False] * (nO + nF + nT),
            collide=[True] * (nA + nG + nO) + [False] * (nF + nT),
            color=[LEADER_COLOR] + [ADVERSARY_COLOR] * (nA - 1) + [PREY_COLOR] * nG
            + [OBSTACLE_COLOR] * nO + [FOOD_COLOR] * nF + [FOREST_COLOR] * nT,
            silent=[False] + [True] * (nA + nG - 1),
            dim_c=4,
            max_speed=[ADVERSARY_MAX_SPEED] * nA + [PREY_MAX_SPEED] * nG + [None] * (nO + nF + nT),
            accel=[ADVERSARY_ACCEL] * nA + [PREY_ACCEL] * nG,
        )

    def reset(self, w: World, s: MPEState, mask: Tensor, gen: torch.Generator) -> MPEState:
        E = s.pos.shape[0]
        pos = torch.cat([uniform(gen, (E, w.A, 2), -1.0, 1.0, s.pos), uniform(gen, (E, w.L, 2), -0.9, 0.9, s.pos)], 1)
        return reset_entities(s, mask, pos)

    # -- pieces shared by rewards and observations ------------------------------
    def _food_pos(self, w: World, s: MPEState) -> Tensor:
        start = w.A + self.num_obstacles
        return s.pos[:, start:start + self.num_food]  # (E, nF, 2)

    def in_forest(self, w: World, s: MPEState) -> Tensor:
        """(E, A, F) bool: agent touches forest f (``|p_a - p_f| < size_a + 0.3``)."""
        forests = s.pos[:, w.N - self.num_forests:]
        return norm2(relative_to_self(s.pos[:, :w.A], forests)) < w.size[:w.A, None] + FOREST_SIZE

    def captures(self, w: World, s: MPEState) -> Tensor:
        """(E, nG, nA) bool: prey g touches adversary a."""
        nA = self.num_adversaries
        return norm2(relative_to_self(s.pos[:, nA:w.A], s.pos[:, :nA])) < PREY_SIZE + ADVERSARY_SIZE

    def food_touches(self, w: World, s: MPEState) -> Tensor:
        """(E, nG, nF) bool: prey g touches food f."""
        return norm2(relative_to_self(s.pos[:, self.num_adversaries:w.A], self._food_pos(w, s))) < PREY_SIZE + FOOD_SIZE

    # -- scenario protocol ----------------------------------------------------
    def rewards(self, w: World, s: MPEState) -> Tensor:
        nA = self.num_adversaries
        dtype = s.pos.dtype
        prey, adv = s.pos[:, nA:w.A], s.pos[:, :nA]
        hit = self.captures(w, s).to(dtype)  # (E, nG, nA)
        bound = boundary_penalty(prey.abs())  # (E, nG, 2)
        food_dist = norm2(relative_to_self(prey, self._food_pos(w, s)))  # (E, nG, nF)
        eaten = (food_dist < PREY_SIZE + FOOD_SIZE).to(dtype)
        prey_rew = (-CAPTURE_REWARD * hit.sum(-1) - 2 * (bound[..., 0] + bound[..., 1])
                    + FOOD_REWARD * eaten.sum(-1) - 0.05 * food_dist.amin(-1))  # (E, nG)
        nearest_prey = norm2(relative_to_self(adv, prey)).amin(-1)  # (E, nA)
        adv_rew = -0.1 * nearest_prey + CAPTURE_REWARD * hit.sum((1, 2))[:, None]  # (E, nA)
        return torch.cat([adv_rew, prey_rew], 1)

    def terminal(self, w: World, s: MPEState) -> Tensor | None:
        return None

    def observations(self, w: World, s: MPEState) -> dict[str, Tensor]:
        A, nA, nG = w.A, self.num_adversaries, self.num_good
        E = s.pos.shape[0]
        a_pos, a_vel = s.pos[:, :A], s.vel[:, :A]
        lm_rel = relative_to_self(a_pos, s.pos[:, A:]).reshape(E, A, -1)  # (E, A, 2L)
        inf = self.in_forest(w, s)  # (E, A, F)
        # visible[i, j]: i and j share a forest, or neither is in one, or i is the leader
        share = (inf[:, :, None, :] & inf[:, None, :, :]).any(-1)  # (E, A, A)
        out = ~inf.any(-1)  # (E, A)
        is_leader = (torch.arange(A, device=s.pos.device) == 0)[:, None]  # (A, 1): the leader sees everyone
        visible = share | (out[:, :, None] & out[:, None, :]) | is_leader
        seen = visible[:, w.agent_rows, w.others][..., None]  # (E, A, A-1, 1)
        other_rel = relative_to_self(a_pos, a_pos)[:, w.agent_rows, w.others]  # (E, A, A-1, 2)
        other_rel = torch.where(seen, other_rel, 0.0)
        other_vel = torch.where(seen, a_vel[:, w.others], 0.0)  # (E, A, A-1, 2)
        in_forest = torch.where(inf, 1.0, -1.0).to(s.pos.dtype)  # (E, A, F)
        base = torch.cat([a_vel, a_pos, lm_rel, other_rel.reshape(E, A, -1)], -1)  # (E, A, 4 + 2L + 2(A-1))
        # adversaries' "others" end with all prey; a prey's end with the other prey
        adv_vel = other_vel[:, :nA, nA - 1:].reshape(E, nA, 2 * nG)
        prey_vel = other_vel[:, nA:, nA:].reshape(E, nG, 2 * (nG - 1))
        leader_msg = s.comm[:, :1].expand(-1, nA, -1)  # (E, nA, 4)
        adv_obs = torch.cat([base[:, :nA], adv_vel, in_forest[:, :nA], leader_msg], -1)
        prey_obs = torch.cat([base[:, nA:], in_forest[:, nA:], prey_vel], -1)
        obs = {"leadadversary": adv_obs[:, :1]}
        if nA > 1:
            obs["adversary"] = adv_obs[:, 1:]
        obs["agent"] = prey_obs
        return obs
