"""GAE against hand computations, and bootstrapping at truncation vs termination."""

import pytest
import torch
from test_ppo_toyenv import TickEnv, one_thread  # noqa: F401 (autouse fixture)

from fastmarl.algos.ppo import PPO, gae
from fastmarl.config import PPOConfig, TrainConfig, resolve


def test_gae_matches_hand_computation():
    # 3 steps of one env; the episode terminates at t=1 (so next_values[1] = 0), a new one starts at t=2
    rewards = torch.tensor([1.0, 0.0, 2.0])
    values = torch.tensor([0.5, 1.0, 2.0])
    next_values = torch.tensor([1.0, 0.0, 3.0])
    dones = torch.tensor([False, True, False])
    adv = gae(rewards, values, next_values, dones, gamma=0.5, lam=0.5)
    # delta = r + gamma * V' - V: [1 + 0.5 - 0.5, 0 + 0 - 1, 2 + 1.5 - 2] = [1, -1, 1.5]
    # A2 = 1.5; A1 = -1 (episode ended: nothing from t=2 flows back); A0 = 1 + 0.25 * (-1) = 0.75
    assert adv.tolist() == [0.75, -1.0, 1.5]


def test_gae_broadcasts_env_dones_over_agents():
    T, E, A = 5, 3, 2
    g = torch.Generator().manual_seed(0)
    r, v, nv = (torch.randn(T, E, A, generator=g) for _ in range(3))
    dones = torch.rand(T, E, generator=g) < 0.3
    adv = gae(r, v, nv, dones, 0.9, 0.8)
    for a in range(A):  # same as one agent at a time
        torch.testing.assert_close(adv[..., a], gae(r[..., a], v[..., a], nv[..., a], dones, 0.9, 0.8))
    # lam = 1, no dones: advantage = discounted sum of deltas
    adv1 = gae(r, v, nv, torch.zeros(T, E, dtype=torch.bool), 0.9, 1.0)
    deltas = r + 0.9 * nv - v
    expect = sum(0.9 ** k * deltas[k] for k in range(T))
    torch.testing.assert_close(adv1[0], expect)


def _reference_gae(rewards, values, next_values, dones, gamma, lam):
    """Plain Python over one sequence."""
    out, last = [0.0] * len(rewards), 0.0
    for t in reversed(range(len(rewards))):
        delta = rewards[t] + gamma * next_values[t] - values[t]
        last = delta + gamma * lam * (0.0 if dones[t] else 1.0) * last
        out[t] = last
    return out


@pytest.mark.parametrize("algo", ["ippo", "mappo"])
def test_rollout_bootstraps_from_final_obs_at_truncation_not_at_termination(algo):
    # env 0 terminates after 3 steps, env 1 is truncated after 3 steps (time limit); 5-step rollout
    env = TickEnv(num_envs=2, limits=[3, 3], terminal=[True, False])
    T, gamma, lam = 5, 0.9, 0.8
    cfg = TrainConfig(algo=algo, env="tick_v0", num_envs=2, total_steps=2 * T,
                      ppo=PPOConfig(num_steps=T, value_norm=False, num_minibatches=1, gamma=gamma, gae_lambda=lam))
    ppo = PPO(env.spec, cfg, resolve(cfg, env.spec))
    for net in ppo.nets.values():
        # a known critic: V = 10 * t + 1, read from the step counter (first feature of obs and of state)
        net.critic_step = lambda x, h, starts: (10.0 * x[..., 0] + 1.0, h)
    ppo.start(env.reset())
    ppo.collect(env)
    b = ppo.buffer
    # counters seen at steps 0..4: 0 1 2 | 0 1 ; after step 4 the counter is 2
    assert b.obs["agent"][:, 0, 0, 0].tolist() == [0, 1, 2, 0, 1]
    assert b.values["agent"][:, 0, 0].tolist() == [1, 11, 21, 1, 11]
    assert b.terminated[:, 0].tolist() == [False, False, True, False, False]
    assert b.truncated[:, 1].tolist() == [False, False, True, False, False]
    # at the truncation the critic saw the final observation (counter 3), not the reset one (counter 0)
    assert b.final_values["agent"][2, 1].tolist() == [31.0, 31.0]
    expected_next = {0: [11, 21, 0, 11, 21], 1: [11, 21, 31, 11, 21]}  # termination: 0; truncation: V(final_obs)
    for name in ("agent", "box"):
        adv, ret = ppo.advantages(name)
        for e in (0, 1):
            for a in range(adv.shape[2]):
                rew = b.rewards[name][:, e, a].tolist()
                want = _reference_gae(rew, [1, 11, 21, 1, 11], expected_next[e], [False, False, True, False, False],
                                      gamma, lam)
                torch.testing.assert_close(adv[:, e, a], torch.tensor(want))
                torch.testing.assert_close(ret[:, e, a], torch.tensor(want) + torch.tensor([1.0, 11, 21, 1, 11]))
    # the only difference between the two envs' deltas at the end step is gamma * V(final_obs)
    r = b.rewards["agent"][2]
    adv, _ = ppo.advantages("agent")
    torch.testing.assert_close(adv[2, 1] - r[1], adv[2, 0] - r[0] + gamma * 31.0)
