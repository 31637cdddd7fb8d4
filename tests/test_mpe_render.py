"""MPE rendering against mpe2's: disc sizes with and without ``dynamic_rescaling``.

mpe2 zooms its discs with the camera when ``dynamic_rescaling`` is on (its
default): radius ``size * 350 * 0.9 * range at reset / range now``, a range being
the largest absolute coordinate of any entity; off, the radius is ``size * 350``.
Both envs start from the same state (copied from mpe2) and take the same moves,
so the camera ranges match and the agent's disc must have the same radius.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from mpe_reference import mpe2_parallel, sync_from_mpe2, world_of

import fastmarl

pytest.importorskip("pygame")


RING = 1.5  # our discs' black border, in pixels (mpe2's is 1 px, drawn a little wider)


def disc_radius(img: np.ndarray, fill: np.ndarray) -> float:
    """Radius in pixels of the inside of the disc filled with colour ``fill`` (3,) uint8, from its area."""
    return math.sqrt((img == fill).all(-1).sum() / math.pi)


def agent_fill(env) -> np.ndarray:
    return (np.clip(env.world.color[0].cpu().double().numpy(), 0, 1) * 200).astype(np.uint8)


@pytest.mark.parametrize("dynamic_rescaling", [True, False])
def test_disc_size_matches_mpe2(dynamic_rescaling):
    ref = mpe2_parallel("simple_v3", seed=3, render_mode="rgb_array", dynamic_rescaling=dynamic_rescaling)
    ours = fastmarl.make("simple_v3", num_envs=1, seed=0, dtype=torch.float64, dynamic_rescaling=dynamic_rescaling)
    sync_from_mpe2(ours, [ref])
    start = ref.unwrapped.original_cam_range
    for _ in range(8):  # move right: the camera range shrinks from 0.83 to 0.60
        ref.step({"agent_0": 2})
        ours.step({"agent": torch.tensor([[2]])})
    now = max(abs(c) for e in world_of(ref).entities for c in e.state.p_pos)
    zoom = 0.9 * start / now
    assert zoom > 1.2  # the camera moved enough for the zoom to show
    want = world_of(ref).agents[0].size * 350 * (zoom if dynamic_rescaling else 1.0)
    fill = agent_fill(ours)
    r_ref, r_ours = disc_radius(ref.render(), fill), disc_radius(ours.render(0), fill)
    assert abs(r_ours + RING - want) < 0.5, (r_ours, want)
    assert abs(r_ours - r_ref) < 0.5, (r_ours, r_ref)  # measured 0.29 (zoomed) and 0.07 px
    ref.close()


def test_zoom_restarts_with_every_episode():
    """At an episode's first step (a state set at t = 0, a reset, or an auto-reset
    inside step) the camera range is the start range: mpe2's zoom is 0.9 there,
    with no rescaling 1; in between it follows the camera."""
    env = fastmarl.make("simple_v3", num_envs=2, seed=0, max_cycles=4)
    plain = fastmarl.make("simple_v3", num_envs=2, seed=0, max_cycles=4, dynamic_rescaling=False)
    fill = agent_fill(env)
    base = env.world.size[0].item() * 350  # the radius without rescaling
    s = env.world_state
    start = torch.tensor([[-0.9, 0.0], [0.3, 0.2]]).expand(2, 2, 2)  # agent, landmark: the range is 0.9
    for e in (env, plain):
        e.set_world_state(s._replace(pos=start.clone(), vel=torch.zeros_like(s.vel), t=torch.zeros_like(s.t)))
    assert abs(disc_radius(env.render(1), fill) + RING - 0.9 * base) < 0.5
    right = {"agent": torch.full((2, 1), 2)}
    for _ in range(3):  # the agent moves in: the range shrinks, the discs grow
        env.step(right)
        plain.step(right)
    now = env.world_state.pos[1].abs().max().item()
    assert abs(disc_radius(env.render(1), fill) + RING - 0.9 * 0.9 / now * base) < 0.5
    assert abs(disc_radius(plain.render(1), fill) + RING - base) < 0.5
    ts = env.step(right)  # the episode ends: auto-reset
    assert bool(ts.truncated.all())
    for i in range(2):
        assert abs(disc_radius(env.render(i), fill) + RING - 0.9 * base) < 0.5
    env.step(right)
    env.reset(mask=torch.tensor([False, True]))
    assert abs(disc_radius(env.render(1), fill) + RING - 0.9 * base) < 0.5
