"""simple_crypto_v3 equals mpe2's, step for step (float64, shared initial state).

The goal and the key are per-episode scenario state: they are copied from the
mpe2 world after every reset (and the colours derived from them must equal
mpe2's). With continuous actions some messages are all zeros, mpe2's "no
answer" case, which scores 0 instead of the squared error.
"""

import numpy as np
import pytest
import torch
from mpe_reference import EXTRA_SYNC, assert_same_spaces, random_actions, run_lockstep

import fastmarl

ENV_ID = "simple_crypto_v3"


def sync_goal_and_key(worlds, ours, env_ids, extra):
    goal, key = extra["goal"].clone(), extra["key"].clone()
    for i in env_ids:
        w = worlds[i]
        goal[i] = [lm is w.agents[0].goal_a for lm in w.landmarks].index(True)
        # the key is a landmark's colour array (the same object), so identify it by value
        key[i] = [np.array_equal(lm.color, w.agents[2].key) for lm in w.landmarks].index(True)
    color = ours.scenario.episode_colors(ours.world, goal)
    for i in env_ids:
        ref = np.stack([e.color[:3] for e in worlds[i].entities])  # mpe2 colours bob/landmarks with 4-vectors
        np.testing.assert_allclose(color[i].numpy(), ref, rtol=0, atol=1e-12, err_msg=f"episode colours env {i}")
    return {"goal": goal, "key": key, "color": color}


EXTRA_SYNC[ENV_ID] = sync_goal_and_key


@pytest.mark.parametrize("continuous", [False, True])
def test_crypto_lockstep(continuous):
    assert_same_spaces(ENV_ID, continuous=continuous)
    seen = {"goal_key": set(), "silent_msgs": 0}

    def before(t, ours, penvs):
        s = ours.world_state
        seen["goal_key"].update(zip(s.extra["goal"].tolist(), s.extra["key"].tolist()))

    def actions(spec, num_envs, rng, t):
        acts = random_actions(spec, num_envs, rng, continuous)
        if continuous:  # sometimes an all-zero message (mpe2 skips it in the rewards)
            for g in acts:
                quiet = rng.random((num_envs, 1)) < 0.25
                acts[g] = np.where(quiet[..., None], np.float32(0), acts[g])
                seen["silent_msgs"] += int(quiet.sum())
        return acts

    stats = run_lockstep(ENV_ID, steps=200, num_envs=3, continuous=continuous, before_step=before, action_fn=actions)
    assert stats["episode_ends"] == 3 * (200 // 25)
    assert seen["goal_key"] == {(0, 0), (0, 1), (1, 0), (1, 1)}, seen["goal_key"]
    if continuous:
        assert seen["silent_msgs"] > 50


def test_own_rewards_and_observations_by_hand():
    E = 256
    env = fastmarl.make(ENV_ID, num_envs=E, seed=2, dtype=torch.float64, continuous_actions=True)
    env.reset()
    s = env.world_state
    goal, key = s.extra["goal"], s.extra["key"]
    assert set(zip(goal.tolist(), key.tolist())) == {(0, 0), (0, 1), (1, 0), (1, 1)}
    pos0 = s.pos.clone()
    eve = torch.tensor([0.0, 0.0, 0.0, 0.0], dtype=torch.float64)  # no answer: eve scores 0
    bob = torch.tensor([0.2, 0.3, 0.0, 1.0], dtype=torch.float64)
    alice = torch.tensor([0.1, 0.9, 0.4, 0.0], dtype=torch.float64)
    ts = env.step({"eve": eve.expand(E, 1, 4), "bob": bob.expand(E, 1, 4), "alice": alice.expand(E, 1, 4)})
    onehot = torch.nn.functional.one_hot
    g, k = onehot(goal, 4).double(), onehot(key, 4).double()
    bob_err = ((bob - g) ** 2).sum(-1)
    torch.testing.assert_close(ts.reward["eve"][:, 0], torch.zeros(E, dtype=torch.float64))
    torch.testing.assert_close(ts.reward["bob"][:, 0], -bob_err)
    torch.testing.assert_close(ts.reward["alice"][:, 0], -bob_err)
    torch.testing.assert_close(ts.obs["eve"][:, 0], alice.expand(E, 4))
    torch.testing.assert_close(ts.obs["bob"][:, 0], torch.cat([k, alice.expand(E, 4)], -1))
    torch.testing.assert_close(ts.obs["alice"][:, 0], torch.cat([g, k], -1))
    torch.testing.assert_close(env.world_state.pos, pos0)  # nobody moves
    # eve answers now: her error is her loss and the good team's gain
    eve = torch.tensor([1.0, 0.0, 0.0, 0.5], dtype=torch.float64)
    ts = env.step({"eve": eve.expand(E, 1, 4), "bob": bob.expand(E, 1, 4), "alice": alice.expand(E, 1, 4)})
    eve_err = ((eve - g) ** 2).sum(-1)
    torch.testing.assert_close(ts.reward["eve"][:, 0], -eve_err)
    torch.testing.assert_close(ts.reward["alice"][:, 0], eve_err - bob_err)
