"""simple_speaker_listener_v4: a speaker who cannot move guides a listener who cannot speak.

Entities (mpe2 order): ``speaker_0`` (immovable, speaks on a 3-symbol channel),
``listener_0`` (movable, silent), both size 0.075, then three landmarks
(size 0.04) coloured red, green and blue. Nothing collides. Each episode one
landmark is the goal (uniform over the three), kept per env in
``MPEState.extra["goal"]`` (E,) int64; ``extra["color"]`` (E, A + 3, 3) holds
the episode's colours for rendering (the listener takes the goal's colour
brightened by 0.45, as in mpe2).

Actions: the speaker's is ``Discrete(3)`` (the symbol) or ``Box(0, 1, (3,))``
(the message itself); the listener's is ``Discrete(5)`` / ``Box(0, 1, (5,))``.

Reward (shared by both agents): ``-|p_listener - p_goal|^2`` (squared distance).

Observations:
speaker ``[goal colour (3)]``;
listener ``[vel (2), landmark rel pos (2 * 3), speaker's message (3)]``.

mpe2 quirks kept: the speaker also has a (random, never changing) position,
used only for rendering; its message is what it said at the last step
(zeros right after a reset).
"""

from __future__ import annotations

import torch
from torch import Tensor

from fastmarl.envs.mpe.core import MPEState, World, WorldDef, reset_entities
from fastmarl.envs.mpe.geometry import relative_to_self, uniform

KWARGS = dict(max_cycles=25)

NUM_LANDMARKS = 3
AGENT_COLOR = (0.25, 0.25, 0.25)
LANDMARK_COLORS = ((0.65, 0.15, 0.15), (0.15, 0.65, 0.15), (0.15, 0.15, 0.65))
LISTENER_BRIGHTEN = 0.45  # the listener's colour is the goal's colour + 0.45


class Scenario:
    env_id = "simple_speaker_listener_v4"

    def __init__(self, max_cycles=25):
        if not isinstance(max_cycles, int) or isinstance(max_cycles, bool) or max_cycles < 1:
            raise ValueError(f"simple_speaker_listener_v4: max_cycles must be a positive int, got {max_cycles!r}")
        self.max_cycles = max_cycles

    def world_def(self) -> WorldDef:
        return WorldDef(
            agent_names=["speaker_0", "listener_0"],
            landmark_names=[f"landmark {i}" for i in range(NUM_LANDMARKS)],
            size=[0.075] * 2 + [0.04] * NUM_LANDMARKS,
            movable=[False, True] + [False] * NUM_LANDMARKS,
            collide=[False] * (2 + NUM_LANDMARKS),
            color=[AGENT_COLOR] * 2 + list(LANDMARK_COLORS),
            silent=[False, True],
            dim_c=3,
        )

    def goal_colors(self, w: World, goal: Tensor) -> Tensor:
        """(E, 3) colour of each env's goal landmark; goal (E,) int64."""
        return w.color[w.A:][goal]

    def episode_colors(self, w: World, goal: Tensor) -> Tensor:
        """(E, N, 3) entity colours of each env's episode: the listener is the goal colour + 0.45."""
        color = w.color.expand(goal.shape[0], -1, -1).clone()
        color[:, 1] = self.goal_colors(w, goal) + LISTENER_BRIGHTEN
        return color

    def reset(self, w: World, s: MPEState, mask: Tensor, gen: torch.Generator) -> MPEState:
        E = s.pos.shape[0]
        goal = torch.randint(0, NUM_LANDMARKS, (E,), generator=gen, device=s.pos.device)
        goal = torch.where(mask, goal, s.extra["goal"]) if "goal" in s.extra else goal
        pos = uniform(gen, (E, w.N, 2), -1.0, 1.0, s.pos)
        extra = {**s.extra, "goal": goal, "color": self.episode_colors(w, goal)}
        return reset_entities(s, mask, pos, extra)

    def rewards(self, w: World, s: MPEState) -> Tensor:
        goal_pos = s.pos[:, w.A:][torch.arange(s.pos.shape[0], device=s.pos.device), s.extra["goal"]]  # (E, 2)
        d = s.pos[:, 1] - goal_pos
        r = -(d[:, 0] * d[:, 0] + d[:, 1] * d[:, 1])  # (E,)
        return r[:, None].expand(-1, w.A)

    def terminal(self, w: World, s: MPEState) -> Tensor | None:
        return None

    def observations(self, w: World, s: MPEState) -> dict[str, Tensor]:
        E = s.pos.shape[0]
        listener = s.pos[:, 1:2]  # (E, 1, 2)
        lm_rel = relative_to_self(listener, s.pos[:, w.A:]).reshape(E, 1, -1)  # (E, 1, 6)
        obs_listener = torch.cat([s.vel[:, 1:2], lm_rel, s.comm[:, 0:1]], -1)  # (E, 1, 11)
        obs_speaker = self.goal_colors(w, s.extra["goal"])[:, None]  # (E, 1, 3)
        return {"speaker": obs_speaker, "listener": obs_listener}
