"""PPO pieces checked with numbers: losses, value normaliser, batched per-agent
layers, the GRU and its resets, action masks; every option combination on a toy env;
config validation."""

import itertools
import math

import numpy as np
import pytest
import torch
from test_ppo_toyenv import TickEnv, one_thread  # noqa: F401 (autouse fixture)

from fastmarl.algos.actor_critic import logp_entropy, sample_action
from fastmarl.algos.ppo import PPO, ppo_losses
from fastmarl.config import ConfigError, PPOConfig, TrainConfig, resolve
from fastmarl.nn import AgentGRU, AgentLinear, RunningMeanStd

# -- losses -----------------------------------------------------------------------

def test_clipped_policy_loss_by_hand():
    adv = torch.tensor([1.0, -1.0, 1.0, -1.0])
    ratio = torch.tensor([1.5, 0.5, 0.9, 1.1])
    new_logp = ratio.log().requires_grad_()
    zeros = torch.zeros(4)
    out = ppo_losses(new_logp, zeros, adv, zeros, zeros, zeros, clip_coef=0.2, clip_vloss=False)
    # per sample max(-A r, -A clip(r, 0.8, 1.2)): [-1.2, 0.8, -0.9, 1.1] -> mean 0.2 / 4 ... = -0.05
    assert out["policy_loss"].item() == pytest.approx((-1.2 + 0.8 - 0.9 + 1.1) / 4)
    assert out["clipfrac"].item() == pytest.approx(0.5)
    out["policy_loss"].backward()
    # clipped samples (0, 1) give no gradient; unclipped ones give -A * r / 4
    torch.testing.assert_close(new_logp.grad, torch.tensor([0.0, 0.0, -0.9 / 4, 1.1 / 4]))


def test_clipped_value_loss_by_hand():
    new_v = torch.tensor([2.0, 0.1, 1.5])
    old_v = torch.tensor([0.0, 0.0, 1.0])
    ret = torch.tensor([1.0, 1.0, 1.4])
    z = torch.zeros(3)
    plain = ppo_losses(z, z, z, new_v, old_v, ret, clip_coef=0.2, clip_vloss=False)["value_loss"]
    assert plain.item() == pytest.approx(0.5 * (1.0 + 0.81 + 0.01) / 3)
    # clipped predictions: [0.2, 0.1, 1.2] -> errors [0.64, 0.81, 0.04]; the max of both per sample
    clipped = ppo_losses(z, z, z, new_v, old_v, ret, clip_coef=0.2, clip_vloss=True)["value_loss"]
    assert clipped.item() == pytest.approx(0.5 * (1.0 + 0.81 + 0.04) / 3)


def test_losses_respect_the_alive_mask():
    z = torch.zeros(2)
    adv = torch.tensor([1.0, 100.0])
    out = ppo_losses(z, z, adv, z, z, z, 0.2, False, mask=torch.tensor([True, False]))
    assert out["policy_loss"].item() == pytest.approx(-1.0)


# -- value normaliser ---------------------------------------------------------------

def test_running_mean_std_matches_numpy_over_all_batches():
    rms = RunningMeanStd(epsilon=0.0)
    rng = np.random.default_rng(0)
    batches = [rng.normal(5.0, 3.0, size=n) for n in (10, 1, 200, 37)]
    for b in batches:
        rms.update(torch.as_tensor(b, dtype=torch.float32))
    every = np.concatenate(batches)
    assert rms.mean.item() == pytest.approx(every.mean(), rel=1e-6)
    assert rms.var.item() == pytest.approx(every.var(), rel=1e-5)
    assert rms.count.item() == len(every)
    x = torch.tensor([0.0, 5.0, 10.0])
    torch.testing.assert_close(rms.normalize(x), torch.as_tensor((x.numpy() - every.mean()) / every.std(),
                                                                 dtype=torch.float32))
    torch.testing.assert_close(rms.denormalize(rms.normalize(x)), x)
    masked = RunningMeanStd()
    masked.update(torch.tensor([1.0, 2.0, 100.0]), mask=torch.tensor([True, True, False]))
    assert masked.mean.item() == pytest.approx(1.5)


def test_running_mean_std_per_feature():
    """shape (F,): one mean/variance per feature over every leading index, batches folded in exactly."""
    rms = RunningMeanStd(epsilon=0.0, shape=(3,))
    rng = np.random.default_rng(1)
    batches = [rng.normal([0.0, 5.0, -2.0], [1.0, 3.0, 0.1], size=(n, 4, 3)) for n in (2, 9, 1)]
    for b in batches:
        rms.update(torch.as_tensor(b))
    every = np.concatenate([b.reshape(-1, 3) for b in batches])
    np.testing.assert_allclose(rms.mean.numpy(), every.mean(0), rtol=1e-9)
    np.testing.assert_allclose(rms.var.numpy(), every.var(0), rtol=1e-9)
    assert rms.count.item() == every.shape[0]
    masked = RunningMeanStd(shape=(2,))
    masked.update(torch.tensor([[[1.0, 10.0], [3.0, 30.0]], [[1e9, 1e9], [5.0, 50.0]]]),
                  mask=torch.tensor([[True, True], [False, True]]))
    torch.testing.assert_close(masked.mean, torch.tensor([3.0, 30.0], dtype=torch.float64))
    with pytest.raises(ValueError, match="shape"):
        masked.update(torch.zeros(4, 3))


# -- per-agent layers and the GRU -------------------------------------------------

def test_agent_linear_shared_and_per_agent_match_plain_linear_layers():
    torch.manual_seed(0)
    x = torch.randn(7, 3, 4)  # (batch, agents, features)
    shared = AgentLinear(1, 4, 5)
    torch.testing.assert_close(shared(x), x @ shared.weight[0] + shared.bias[0])
    per = AgentLinear(3, 4, 5)
    per.bias.data.normal_()
    want = torch.stack([x[:, a] @ per.weight[a] + per.bias[a] for a in range(3)], 1)
    torch.testing.assert_close(per(x), want)
    torch.testing.assert_close(per(x[None].expand(2, -1, -1, -1))[1], want)  # extra leading dims


def test_agent_gru_equals_torch_gru_cell_and_resets_at_episode_starts():
    torch.manual_seed(0)
    gru = AgentGRU(1, 4, 6)
    ref = torch.nn.GRUCell(4, 6)
    with torch.no_grad():  # torch stores (3H, in) with gate order r, z, n, like ours
        ref.weight_ih.copy_(gru.ih.weight[0].T)
        ref.weight_hh.copy_(gru.hh.weight[0].T)
        ref.bias_ih.copy_(gru.ih.bias[0])
        ref.bias_hh.copy_(gru.hh.bias[0])
    x, h = torch.randn(5, 2, 4), torch.randn(5, 2, 6)
    torch.testing.assert_close(gru.step(x, h), ref(x.view(10, 4), h.view(10, 6)).view(5, 2, 6))
    # unroll over 4 steps of 5 envs; env 2 starts a new episode at t = 2
    xs = torch.randn(4, 5, 2, 4)
    starts = torch.zeros(4, 5, dtype=torch.bool)
    starts[2, 2] = True
    out, _ = gru.unroll(xs, h, starts)
    fresh, _ = gru.unroll(xs[2:, 2:3], torch.zeros(1, 2, 6), torch.zeros(2, 1, dtype=torch.bool))
    torch.testing.assert_close(out[2:, 2:3], fresh)  # nothing from before the start leaks through
    assert not torch.allclose(out[2:, 1:2], fresh)


# -- action distributions -------------------------------------------------------------

def test_masked_actions_are_never_sampled_and_carry_no_probability():
    g = torch.Generator().manual_seed(0)
    logits = torch.zeros(2000, 3)
    mask = torch.tensor([True, False, True]).expand(2000, 3)
    a, logp = sample_action(logits, None, mask, False, g)
    assert not bool((a == 1).any())
    torch.testing.assert_close(logp, torch.full((2000,), math.log(0.5)))
    frac = (a == 0).float().mean().item()
    assert 0.45 < frac < 0.55
    _, ent = logp_entropy(logits, None, mask, a)
    torch.testing.assert_close(ent, torch.full((2000,), math.log(2.0)))
    assert torch.isfinite(ent).all()


def test_gaussian_log_probability_and_entropy():
    mean, log_std = torch.tensor([[0.5, -1.0]]), torch.tensor([[0.0, math.log(2.0)]])
    a = torch.tensor([[1.5, -1.0]])
    logp, ent = logp_entropy(mean, log_std, None, a)
    want = -0.5 * 1.0 - 0.5 * math.log(2 * math.pi) + (-math.log(2.0) - 0.5 * math.log(2 * math.pi))
    assert logp.item() == pytest.approx(want, rel=1e-6)
    assert ent.item() == pytest.approx(1.0 + math.log(2 * math.pi) + math.log(2.0), rel=1e-6)


# -- the learner on a toy env ------------------------------------------------------

def _ppo(env, algo="mappo", E=4, T=6, **ppo_kw):
    cfg = TrainConfig(algo=algo, env="tick_v0", num_envs=E, total_steps=E * T * 4,
                      ppo=PPOConfig(num_steps=T, num_minibatches=2, **ppo_kw))
    return PPO(env.spec, cfg, resolve(cfg, env.spec))


def test_recurrent_training_sees_the_hidden_states_of_the_rollout():
    # episodes of 2..4 steps inside a 9-step rollout: hidden states are reset mid-rollout
    env = TickEnv(num_envs=4, limits=[2, 3, 4, 3], terminal=[True, False, False, True])
    torch.manual_seed(0)
    ppo = _ppo(env, T=9, recurrent=True)
    ppo.start(env.reset())
    ppo.collect(env)
    ppo.collect(env)  # the second rollout starts mid-episode, from a stored hidden state
    b = ppo.buffer
    assert b.starts.any() and not b.starts.all()
    for name, net in ppo.nets.items():
        h0a, h0c = b.h0[name]
        assert h0a.abs().sum() > 0
        out = net.actor_seq(net.actor_input(b.obs[name]), h0a, b.starts)
        logp, _ = logp_entropy(out, net.log_std, b.masks.get(name), b.actions[name])
        torch.testing.assert_close(logp, b.logp[name], atol=1e-5, rtol=1e-5)
        v = net.critic_seq(net.critic_input(b.obs[name], b.state), h0c, b.starts)
        torch.testing.assert_close(ppo._denorm(net, v), b.values[name], atol=1e-5, rtol=1e-5)
        # ignoring the episode starts gives other log-probabilities: the resets matter
        wrong = net.actor_seq(net.actor_input(b.obs[name]), h0a, torch.zeros_like(b.starts))
        assert not torch.allclose(logp_entropy(wrong, net.log_std, b.masks.get(name), b.actions[name])[0], b.logp[name])


@pytest.mark.parametrize("algo,recurrent,share", list(itertools.product(["ippo", "mappo"], [False, True], [True, False])))
def test_every_option_combination_updates_every_group(algo, recurrent, share):
    env = TickEnv(num_envs=4, limits=[2, 3, 4, 5], terminal=[True, False, True, False])
    torch.manual_seed(0)
    ppo = _ppo(env, algo, recurrent=recurrent, share_params=share)
    before = {k: v.clone() for k, v in ppo.weights().items()}
    ppo.start(env.reset())
    ppo.collect(env)
    m = ppo.update(0.0)
    assert all(math.isfinite(v) for v in m.values())
    for name in ("agent", "box"):
        assert f"policy_loss/{name}" in m and f"value_loss/{name}" in m
        changed = [k for k, v in ppo.weights().items() if k.startswith(name) and not torch.equal(v, before[k])]
        assert any("actor" in k for k in changed) and any("critic" in k for k in changed)
    n_agents_axis = 2 if not share else 1
    assert ppo.nets["agent"].actor_head.weight.shape[0] == n_agents_axis


def test_per_agent_networks_act_differently_on_equal_inputs():
    env = TickEnv(num_envs=3, with_box=False)
    torch.manual_seed(0)
    per = _ppo(env, share_params=False, agent_id=False).nets["agent"]
    shared = _ppo(env, share_params=True, agent_id=False).nets["agent"]
    x = torch.ones(3, 2, 2)  # both agents observe the same thing
    out_per, _ = per.actor_step(per.actor_input(x), None, None)
    out_shared, _ = shared.actor_step(shared.actor_input(x), None, None)
    assert not torch.allclose(out_per[:, 0], out_per[:, 1])
    torch.testing.assert_close(out_shared[:, 0], out_shared[:, 1])


@pytest.mark.slow
def test_ppo_learns_the_toy_task():
    # agent group: action 0 pays 1 (max 2 per step for 2 agents); box: a = 0.5 pays 0
    env = TickEnv(num_envs=32, limits=[4] * 32)
    torch.manual_seed(0)
    ppo = _ppo(env, E=32, T=8, lr=1e-2)
    ppo.start(env.reset())
    for i in range(30):
        ppo.collect(env)
        ppo.update(i / 30)
    assert ppo.buffer.rewards["agent"].mean() > 0.9  # random: 1/3 (agent 0) and 1/2 (agent 1)
    assert ppo.buffer.rewards["box"].mean() > -0.6  # random in the box: -1.25 on average


# -- validation ------------------------------------------------------------------

def test_invalid_combinations_are_errors_that_say_what_to_do():
    stateless = TickEnv(state=False).spec
    with pytest.raises(ConfigError, match="--algo ippo"):
        resolve(TrainConfig(algo="mappo", num_envs=4, total_steps=1000), stateless)
    resolve(TrainConfig(algo="ippo", num_envs=4, total_steps=1000), stateless)  # fine
    with pytest.raises(ConfigError, match="discrete actions only.*'box'"):
        resolve(TrainConfig(num_envs=4, total_steps=1000, ppo=PPOConfig(action_masks=True)), TickEnv().spec)
    with pytest.raises(ConfigError, match="provides no action masks"):
        resolve(TrainConfig(num_envs=4, total_steps=1000, ppo=PPOConfig(action_masks=True)),
                TickEnv(with_box=False, masks=False).spec)
    with pytest.raises(ConfigError, match="less than one iteration"):
        resolve(TrainConfig(num_envs=100, total_steps=10), TickEnv().spec)
    with pytest.raises(ConfigError, match="divisible"):
        resolve(TrainConfig(num_envs=5, total_steps=1000, ppo=PPOConfig(recurrent=True, num_minibatches=2)),
                TickEnv().spec)
    with pytest.raises(ConfigError, match=r"'lrr' \(did you mean 'lr'\?\)"):
        TrainConfig.from_dict({"ppo": {"lrr": 1.0}})
    with pytest.raises(ConfigError, match="did you mean 'total_steps'"):
        TrainConfig.from_dict({"total_step": 10})
    d = resolve(TrainConfig(num_envs=4, total_steps=1000), TickEnv().spec)
    assert d.action_masks == {"agent": True, "box": False}
    assert d.num_iterations == math.ceil(1000 / (4 * 25))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_training_runs_on_the_gpu(tmp_path):
    from fastmarl.train import train

    res = train(TrainConfig(device="cuda", num_envs=64, total_steps=64 * 25 * 4, runs_dir=str(tmp_path), name="gpu",
                            eval_episodes=8, gif=True, tensorboard=False, progress=False))
    assert math.isfinite(res.final_eval["return_det"]) and res.global_step == 6400
