"""simple_crypto_v3: Alice sends Bob a message encrypted with a shared key; Eve eavesdrops.

Entities (mpe2 order): ``eve_0`` (the adversary), ``bob_0`` (good listener),
``alice_0`` (good speaker), all immovable and speaking on a 4-dim channel,
then two landmarks; sizes 0.05, nothing collides, positions only matter for
rendering. Each episode draws a goal landmark and a key landmark
(independently, uniform over the two); their "colours" are one-hot vectors of
length 4 (landmark ``i`` -> ``e_i``): the goal colour is the message, the key
colour the key. Kept per env in ``MPEState.extra["goal"]`` and
``extra["key"]`` (E,) int64; ``extra["color"]`` (E, N, 3) is for rendering.

Actions (each agent): ``Discrete(4)`` (one-hot message) or ``Box(0, 1, (4,))``
(the message itself).

Observations:
alice ``[goal colour (4), key (4)]``; bob ``[key (4), alice's message (4)]``;
eve ``[alice's message (4)]`` (eve does not get the key).

Rewards, with ``err(c) = |c - goal colour|^2`` and ``nz(c)`` = "message c is
not all zeros": eve ``-err(c_eve) * nz(c_eve)``; bob and alice both
``-err(c_bob) * nz(c_bob) + err(c_eve) * nz(c_eve)``. Alice's own message
does not enter the rewards.

mpe2 quirks kept: an all-zero message (possible with continuous actions) is
"no answer" and scores 0 instead of ``-err``. mpe2 colours bob and the
landmarks with 4-vectors (the one-hot ones); ``extra["color"]`` keeps their
first three components (the fourth is always 0 with two landmarks).
"""

from __future__ import annotations

import torch
from torch import Tensor

from fastmarl.envs.mpe.core import MPEState, World, WorldDef, reset_entities
from fastmarl.envs.mpe.geometry import uniform

KWARGS = dict(max_cycles=25)

NUM_LANDMARKS = 2
DIM_C = 4
AGENT_COLOR, EVE_COLOR = (0.25, 0.25, 0.25), (0.75, 0.25, 0.25)
EVE, BOB, ALICE = 0, 1, 2


class Scenario:
    env_id = "simple_crypto_v3"

    def __init__(self, max_cycles=25):
        if not isinstance(max_cycles, int) or isinstance(max_cycles, bool) or max_cycles < 1:
            raise ValueError(f"simple_crypto_v3: max_cycles must be a positive int, got {max_cycles!r}")
        self.max_cycles = max_cycles

    def world_def(self) -> WorldDef:
        lm_colors = [tuple(1.0 if k == i else 0.0 for k in range(3)) for i in range(NUM_LANDMARKS)]
        return WorldDef(
            agent_names=["eve_0", "bob_0", "alice_0"],
            landmark_names=[f"landmark {i}" for i in range(NUM_LANDMARKS)],
            size=[0.05] * (3 + NUM_LANDMARKS),
            movable=[False] * (3 + NUM_LANDMARKS),
            collide=[False] * (3 + NUM_LANDMARKS),
            color=[EVE_COLOR, AGENT_COLOR, AGENT_COLOR] + lm_colors,
            silent=[False] * 3,
            dim_c=DIM_C,
        )

    @staticmethod
    def _one_hot(idx: Tensor, like: Tensor) -> Tensor:
        """(E,) landmark index -> (E, 4) its colour, a one-hot vector in like's dtype."""
        return torch.nn.functional.one_hot(idx, DIM_C).to(like.dtype)

    def episode_colors(self, w: World, goal: Tensor) -> Tensor:
        """(E, N, 3) render colours: bob shows the goal landmark's colour (first 3 of 4 components)."""
        color = w.color.expand(goal.shape[0], -1, -1).clone()
        color[:, BOB] = w.color[w.A:][goal]
        return color

    def reset(self, w: World, s: MPEState, mask: Tensor, gen: torch.Generator) -> MPEState:
        E = s.pos.shape[0]
        draw = torch.randint(0, NUM_LANDMARKS, (E, 2), generator=gen, device=s.pos.device)
        goal, key = draw[:, 0], draw[:, 1]
        if "goal" in s.extra:
            goal, key = torch.where(mask, goal, s.extra["goal"]), torch.where(mask, key, s.extra["key"])
        pos = uniform(gen, (E, w.N, 2), -1.0, 1.0, s.pos)
        extra = {**s.extra, "goal": goal, "key": key, "color": self.episode_colors(w, goal)}
        return reset_entities(s, mask, pos, extra)

    def rewards(self, w: World, s: MPEState) -> Tensor:
        goal = self._one_hot(s.extra["goal"], s.comm)[:, None]  # (E, 1, 4)
        c = s.comm[:, :ALICE]  # (E, 2, 4) eve's and bob's messages
        err = ((c - goal) ** 2).sum(-1)  # (E, 2)
        err = torch.where((c != 0).any(-1), err, 0.0)  # an all-zero message scores nothing
        eve = -err[:, EVE]
        good = err[:, EVE] - err[:, BOB]
        return torch.stack([eve, good, good], -1)  # (E, 3) in agent order eve, bob, alice

    def terminal(self, w: World, s: MPEState) -> Tensor | None:
        return None

    def observations(self, w: World, s: MPEState) -> dict[str, Tensor]:
        goal = self._one_hot(s.extra["goal"], s.comm)  # (E, 4)
        key = self._one_hot(s.extra["key"], s.comm)  # (E, 4)
        alice_msg = s.comm[:, ALICE]  # (E, 4)
        return {
            "eve": alice_msg[:, None],  # (E, 1, 4)
            "bob": torch.cat([key, alice_msg], -1)[:, None],  # (E, 1, 8)
            "alice": torch.cat([goal, key], -1)[:, None],  # (E, 1, 8)
        }
