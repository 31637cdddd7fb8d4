"""DIAL inside PPO (``ppo.comm="dial"``, fastmarl.nn.comm.DialComm): straight-through
gradients from a listener's loss into the speaker's message head (and none when
the channel is cut), decentralization (a listener depends on a speaker's
observation only through the message), topology masks, exact replay of the
rollout's messages in the update, config validation, the comm measures on DIAL
messages, and a referential game that PPO solves only by talking."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from test_comm_wrappers import ReferentialGame, _ppo

from fastmarl.algos.actor_critic import GroupActorCritic, logp_entropy
from fastmarl.algos.ppo import PPO
from fastmarl.analysis.comm import causal_influence, message_entropy
from fastmarl.config import ConfigError, PPOConfig, TrainConfig, resolve
from fastmarl.envs.api import GroupSpec
from fastmarl.envs.comm import range_mask, reachability
from fastmarl.nn.comm import DialComm


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


A, O, N_ACT = 3, 5, 4


def _net(seed: int = 0, **ppo) -> GroupActorCritic:
    group = GroupSpec("agent", tuple(f"agent_{i}" for i in range(A)),
                      gym.spaces.Box(-1.0, 1.0, (O,), np.float32), gym.spaces.Discrete(N_ACT))
    cfg = PPOConfig(**{**dict(comm="dial", hidden_size=16, num_layers=1), **ppo})
    torch.manual_seed(seed)
    return GroupActorCritic(group, 0, cfg, centralized=False)  # float32, as actor_input casts


def _grad(out, params):
    gs = torch.autograd.grad(out, params, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for g, p in zip(gs, params)]


# -- gradients through the straight-through estimator ---------------------------------

def test_listener_loss_reaches_the_speakers_message_head():
    """Per-agent networks: agent 1's logits get gradient into agent 0's (and 2's)
    message head and body through the ST message, never into agent 1's own message
    head (nobody hears itself); with every link dropped, no gradient crosses."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(64, A, O, generator=g)
    w = torch.randn(64, N_ACT, generator=g)
    for drop, crosses in ((0.0, True), (1.0, False)):
        net = _net(share_params=False, dial_drop_prob=drop)
        noise = net.actor_comm.sample_noise(64, generator=torch.Generator().manual_seed(2))
        out = net.actor_seq(net.actor_input(x), None, None, noise)  # (64, A, n)
        head = net.actor_comm.channels[0].head.weight  # (A, H, L * V): one message head per agent
        body = net.actor_body.net[0].weight  # (A, O, H)
        g_head, g_body = _grad((out[:, 1] * w).sum(), [head, body])
        per_head = g_head.abs().sum((1, 2))
        per_body = g_body.abs().sum((1, 2))
        assert per_head[1] == 0  # its own message goes to the others only
        assert per_body[1] > 0  # its own body, directly
        if crosses:
            assert per_head[0] > 0 and per_head[2] > 0 and per_body[0] > 0 and per_body[2] > 0
        else:
            assert per_head.sum() == 0 and per_body[0] == 0 and per_body[2] == 0


def test_message_forward_is_discrete_and_gradient_is_the_relaxed_samples():
    """The delivered message is exactly one-hot; d(received)/d(logits) equals the
    gradient of softmax((logits + g) / tau) for the replayed Gumbel noise g."""
    tau = 0.7
    comm = DialComm(8, 2, temperature=tau).double()
    h = torch.randn(5, 2, 8, dtype=torch.float64, requires_grad=True)
    noise = comm.sample_noise(5, generator=torch.Generator().manual_seed(0))
    ch = comm.channels[0]
    msg = ch(h, gumbel=noise.gumbel[:, 0])
    assert set(msg.onehot.detach().unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(msg.index, (msg.logits + noise.gumbel[:, 0]).argmax(-1)[..., 0])
    c = torch.randn(5, 2, 1, 2, dtype=torch.float64)
    (got,) = torch.autograd.grad((msg.onehot * c).sum(), h)
    soft = torch.softmax((ch.logits(h) + noise.gumbel[:, 0]) / tau, -1)
    (want,) = torch.autograd.grad((soft * c).sum(), h)
    torch.testing.assert_close(got, want)


# -- decentralized execution ---------------------------------------------------------

def test_listener_ignores_speaker_obs_when_the_message_is_held_fixed():
    """Shared weights: with every sent message forced to a fixed value, perturbing
    agent 0's observation changes agent 0's logits and nobody else's (exactly);
    with real messages the others' logits depend on it (through the ST message)."""
    net = _net()
    g = torch.Generator().manual_seed(3)
    x = torch.randn(32, A, O, generator=g)
    x2 = x.clone()
    x2[:, 0] += torch.randn(32, O, generator=g)
    noise = net.actor_comm.sample_noise(32, generator=g)
    fixed = torch.nn.functional.one_hot(torch.randint(0, 2, (32, A, 1), generator=g), 2).float()
    force = lambda m: fixed  # noqa: E731

    def logits(obs, transform=None):
        out, _ = net.actor_step(net.actor_input(obs), None, None, comm_noise=noise, message_transform=transform)
        return out

    a, b = logits(x, force), logits(x2, force)
    assert torch.equal(a[:, 1:], b[:, 1:])
    assert (a[:, 0] - b[:, 0]).abs().max() > 1e-3
    xr = x.clone().requires_grad_(True)
    (gx,) = torch.autograd.grad(logits(xr)[:, 1].sum(), xr)
    assert gx[:, 0].abs().sum() > 0  # the real message carries agent 0's observation to agent 1
    xr = x.clone().requires_grad_(True)
    (gx,) = torch.autograd.grad(logits(xr, lambda m: m.detach())[:, 1].sum(), xr)
    assert gx[:, 0].abs().sum() == 0 and gx[:, 2].abs().sum() == 0  # ... and nothing else does


@pytest.mark.parametrize("rounds", [1, 2])
def test_topology_mask_limits_who_influences_whom(rounds):
    """Agent i's output depends on agent j's input exactly when j reaches i within
    the rounds (a range-limited chain: 0-1-2-3, 4 out of range)."""
    torch.manual_seed(0)
    comm = DialComm(8, 5, rounds=rounds).double()
    mask = range_mask(torch.tensor([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0], [3.0, 0.0], [9.0, 0.0]]), 1.0)
    noise = comm.sample_noise(generator=torch.Generator().manual_seed(1))
    h = torch.randn(5, 8, dtype=torch.float64)
    J = torch.autograd.functional.jacobian(lambda x: comm(x, mask, noise)[0], h)  # (5, 8, 5, 8)
    dep = J.abs().sum((1, 3)) > 0
    assert torch.equal(dep, reachability(mask, rounds)), dep.int()


# -- PPO: rollout replay, evaluation, config ------------------------------------------------

def _spread_ppo(**ppo) -> tuple[PPO, object]:
    import fastmarl

    env = fastmarl.make("simple_spread_v3", num_envs=16, seed=0)
    cfg = TrainConfig(algo="mappo", env="simple_spread_v3", num_envs=16, total_steps=16 * 8,
                      ppo=PPOConfig(**{**dict(num_steps=8, num_minibatches=2, hidden_size=32, comm="dial"), **ppo}))
    torch.manual_seed(0)
    algo = PPO(env.spec, cfg, resolve(cfg, env.spec))
    algo.start(env.reset(seed=0))
    return algo, env


def test_update_replays_the_rollouts_messages():
    """With the stored message noise the update's log-probabilities equal the
    rollout's (PPO ratio exactly 1 before the first step), link noise included;
    fresh message samples would give other log-probabilities."""
    algo, env = _spread_ppo(dial_message_length=2, dial_flip_prob=0.3, dial_drop_prob=0.3)
    net, b = algo.nets["agent"], algo.buffer
    with torch.no_grad():  # make the messages matter at initialisation
        net.actor_head.weight.mul_(100.0)
        net.actor_comm.channels[0].head.weight.mul_(100.0)
    algo.collect(env)
    assert b.comm_noise["agent"].gumbel.shape == (8, 16, 1, 3, 2, 2)
    assert b.comm_noise["agent"].alive.float().mean().item() == pytest.approx(0.7, abs=0.08)
    with torch.no_grad():
        x = net.actor_input(b.obs["agent"])
        replay = logp_entropy(net.actor_seq(x, None, None, b.comm_noise["agent"]), None, None, b.actions["agent"])[0]
        fresh = logp_entropy(net.actor_seq(x, None, None, None), None, None, b.actions["agent"])[0]
    torch.testing.assert_close(replay, b.logp["agent"], atol=1e-5, rtol=0)
    assert (fresh - b.logp["agent"]).abs().max() > 0.1
    m = algo.update(0.0)
    assert math.isfinite(m["loss/agent"])


def test_deterministic_evaluation_sends_argmax_messages():
    algo, env = _spread_ppo()
    ts = env.reset(seed=3)
    a1, _ = algo.act(ts, {}, deterministic=True, generator=torch.Generator().manual_seed(1))
    a2, _ = algo.act(ts, {}, deterministic=True, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a1["agent"], a2["agent"])


def test_dial_config_validation():
    import fastmarl

    spec = fastmarl.make("simple_spread_v3", num_envs=2).spec

    def err(**ppo):
        with pytest.raises(ConfigError) as e:
            resolve(TrainConfig(num_envs=4, total_steps=100, ppo=PPOConfig(num_minibatches=1, **ppo)), spec)
        return str(e.value)

    assert "ppo.dial_vocab_size" in err(comm="tarmac", dial_vocab_size=3)
    assert "--comm dial" in err(dial_drop_prob=0.5)
    assert "ppo.dial_vocab_size must be an integer >= 2" in err(comm="dial", dial_vocab_size=1)
    assert "ppo.dial_message_length" in err(comm="dial", dial_message_length=0)
    assert "dial_temperature" in err(comm="dial", dial_temperature=0.0)
    assert "dial_flip_prob is a probability" in err(comm="dial", dial_flip_prob=1.5)
    with pytest.raises(ConfigError, match="did you mean 'dial_vocab_size'"):
        TrainConfig.from_dict({"ppo": {"comm": "dial", "dial_vocab": 3}})
    sl = fastmarl.make("simple_speaker_listener_v4", num_envs=2).spec
    with pytest.raises(ConfigError, match="single agent"):
        resolve(TrainConfig(env="simple_speaker_listener_v4", num_envs=4, total_steps=100,
                            ppo=PPOConfig(comm="dial", num_minibatches=1)), sl)
    resolve(TrainConfig(num_envs=4, total_steps=100, ppo=PPOConfig(comm="dial", num_minibatches=1,
                                                                   dial_vocab_size=3, dial_flip_prob=0.1)), spec)


# -- measures on DIAL messages -------------------------------------------------------------

def test_comm_measures_on_dial_messages():
    """The messages of a fresh network are near-uniform bits (entropy about log 2);
    the causal influence of agent 0's message on agent 1 (interventions through
    ``message_transform``) is positive, and exactly 0 when the links are dropped."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(20_000, A, O, generator=g)
    for drop in (0.0, 1.0):
        net = _net(dial_drop_prob=drop)
        with torch.no_grad():
            net.actor_head.weight.mul_(100.0)
            _, _, trace = net.actor_step(net.actor_input(x), None, None, generator=g, return_trace=True)
        if drop == 0.0:
            ent = message_entropy(trace.index[:, 0])
            assert torch.allclose(ent, torch.full((A,), math.log(2), dtype=ent.dtype), atol=0.01), ent

        def listener(obs, msgs):
            def force(m):
                m = m.clone()
                m[:, 0] = torch.nn.functional.one_hot(msgs, 2).to(m.dtype)[:, None]
                return m
            out, _ = net.actor_step(net.actor_input(obs), None, None, deterministic=True, message_transform=force)
            return out[:, 1]

        ci = causal_influence(listener, x[:200], 2, logits=True).mean().item()
        assert (ci > 1e-3) if drop == 0.0 else (abs(ci) < 1e-12), (drop, ci)


# -- learning ---------------------------------------------------------------------------

@pytest.mark.slow
def test_ppo_dial_learns_a_referential_game():
    """One-step referential game (tests/test_comm_wrappers.py): the listener can name
    the speaker's target only from a same-step DIAL message (3 bits). Chance is 1/4;
    with every message dropped PPO stays there. Measured success: seeds 0-1 1.0,
    seeds 2-3 0.75 (two targets share a message, a known local optimum)."""
    _, success = _ppo(ReferentialGame(64, K=4, steps=1), iters=30,
                      ppo_kw=dict(comm="dial", dial_message_length=3))
    assert success > 0.65, success
    _, silent = _ppo(ReferentialGame(64, K=4, steps=1), iters=30,
                     ppo_kw=dict(comm="dial", dial_message_length=3, dial_drop_prob=1.0))
    assert silent < 0.4, silent
