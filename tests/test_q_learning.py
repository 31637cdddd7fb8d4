"""IQL / VDN / QMIX: target updates, bootstrap values, the TD loss against a hand
computation, config validation, action masks, learning the monotonic matrix game,
and a smoke run on simple_spread with a run directory."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from torch import nn

import fastmarl
from fastmarl.algos.q_learning import QLearner
from fastmarl.algos.q_targets import bootstrap_values, hard_update, soft_update
from fastmarl.algos.replay import EpisodeBuffer
from fastmarl.config import ConfigError, QConfig, validate_q_config
from fastmarl.envs import TimeStep, check_env, register
from fastmarl.envs.matrix import MatrixGame
from fastmarl.train.runner import train as train_q

# small, fast settings for one-step matrix games: 32 episodes per iteration, one update each
MATRIX = dict(num_envs=32, total_steps=32 * 150, batch_size=32, buffer_size=500, update_interval=32,
              epsilon_anneal_steps=32 * 100, lr=5e-3, target_update_interval=20, hidden_size=32,
              log_interval=32 * 50, eval_episodes=4, recurrent=False)


# -- shared maths ------------------------------------------------------------------------

def test_hard_and_soft_target_updates():
    online, target = nn.Linear(3, 2), nn.Linear(3, 2)
    with torch.no_grad():
        online.weight.fill_(1.0), online.bias.fill_(2.0), target.weight.fill_(0.0), target.bias.fill_(-2.0)
    soft_update(target, online, 0.25)
    assert target.weight.unique().tolist() == [0.25] and target.bias.unique().tolist() == [-1.0]
    soft_update(target, online, 0.5)
    assert target.weight.unique().tolist() == [0.625] and target.bias.unique().tolist() == [0.5]
    hard_update(target, online)
    assert torch.equal(target.weight, online.weight) and torch.equal(target.bias, online.bias)


def test_learner_target_update_schedule():
    spec = fastmarl.make("matrix_monotonic_v0").spec
    cfg = QConfig(algo="qmix", env="matrix_monotonic_v0", target_update_interval=3, recurrent=False)
    learner = QLearner(spec, cfg, validate_q_config(cfg, spec))
    env = fastmarl.make("matrix_monotonic_v0", num_envs=8)
    buf = EpisodeBuffer(16, 1, 8, *learner.buffer_fields())
    ts = env.reset(seed=0)
    acts, _ = learner.act(ts, {})
    nxt = env.step(acts)
    learner.record(buf, ts, env.state(), acts, nxt, nxt.final_state)
    w = lambda m: torch.cat([p.flatten() for p in m.parameters()])  # noqa: E731
    for i in range(1, 4):
        learner.learn(buf.sample(8))
        same = torch.equal(w(learner.agents), w(learner.target_agents))
        assert same == (i == 3)  # copied at the 3rd update only
        assert torch.equal(w(learner.mixers), w(learner.target_mixers)) == (i == 3)
    soft = dataclasses.replace(cfg, target_update="soft", tau=0.5)
    learner = QLearner(spec, soft, validate_q_config(soft, spec))
    before_t, before_o = w(learner.target_agents).clone(), w(learner.agents).clone()
    learner.learn(buf.sample(8))
    torch.testing.assert_close(w(learner.target_agents), 0.5 * before_t + 0.5 * w(learner.agents))
    assert not torch.equal(w(learner.agents), before_o)


def test_bootstrap_values_double_q_and_masks():
    online = torch.tensor([[1.0, 5.0, 3.0], [0.0, 0.0, 9.0]])
    target = torch.tensor([[10.0, 2.0, 4.0], [1.0, 7.0, 3.0]])
    assert bootstrap_values(online, target, None, double_q=False).tolist() == [10.0, 7.0]
    assert bootstrap_values(online, target, None, double_q=True).tolist() == [2.0, 3.0]  # online argmax 1, 2
    mask = torch.tensor([[False, False, True], [False, False, False]])
    assert bootstrap_values(online, target, mask, double_q=True).tolist() == [4.0, 0.0]  # no legal action: 0
    assert bootstrap_values(online, target, mask, double_q=False).tolist() == [4.0, 0.0]


def test_td_loss_matches_hand_computation():
    """Two-step episodes, IQL and VDN: recompute the loss from the network's own Q-values."""
    env = fastmarl.make("matrix_penalty_v0", num_envs=3, episode_length=2)
    for algo in ("iql", "vdn"):
        cfg = QConfig(algo=algo, env="matrix_penalty_v0", recurrent=False, gamma=0.9, double_q=False)
        learner = QLearner(env.spec, cfg, validate_q_config(cfg, env.spec))
        buf = EpisodeBuffer(8, 2, 3, *learner.buffer_fields())
        ts = env.reset(seed=0)
        for _ in range(2):
            acts, _ = learner.act(ts, {})
            nxt = env.step(acts)
            learner.record(buf, ts, None, acts, nxt, None)
            ts = nxt
        batch = buf.gather(torch.arange(3))
        loss, _ = learner.loss("agent", batch)
        with torch.no_grad():
            net, tnet = learner.agents["agent"], learner.target_agents["agent"]
            obs = batch["obs/agent"]  # (3, 3, 2, 3): one-hot steps 0, 1, 2
            q = net.step(obs.flatten(0, 1), None)[0].view(3, 3, 2, 3)
            qt = tnet.step(obs.flatten(0, 1), None)[0].view(3, 3, 2, 3)
            a, r = batch["action/agent"], batch["reward/agent"]
            chosen = q[:, :2].gather(-1, a[..., None]).squeeze(-1)  # (3, 2, 2)
            nxt_v = qt[:, 1:].amax(-1) * torch.tensor([1.0, 0.0])[None, :, None]  # step 1 terminates
            if algo == "iql":
                want = ((chosen - (r + 0.9 * nxt_v)) ** 2).mean()
            else:
                want = ((chosen.sum(-1) - (r.mean(-1) + 0.9 * nxt_v.sum(-1))) ** 2).mean()
        torch.testing.assert_close(loss, want)


def test_qmix_mixer_sees_the_state_normalised_per_feature_and_clipped():
    """state_clip > 0: the mixer's state is (s - mean) / std per feature over the replayed real steps,
    clipped to +-state_clip; the statistics travel with the weights; state_clip 0 leaves the state raw."""
    env = fastmarl.make("simple_spread_v3", num_envs=4, seed=0)
    cfg = QConfig(algo="qmix", recurrent=False, state_clip=1.5)
    derived = validate_q_config(cfg, env.spec)
    assert derived.state_clip == 1.5
    assert validate_q_config(QConfig(algo="qmix"), env.spec).state_clip == 2.0  # the default
    assert validate_q_config(QConfig(algo="vdn", state_clip=3.0), env.spec).state_clip == 0.0  # no mixer state
    learner = QLearner(env.spec, cfg, derived)
    g = torch.Generator().manual_seed(0)
    S = env.spec.state_dim
    state = torch.randn(6, 5, S, generator=g) * torch.linspace(0.1, 5.0, S) + 3.0  # (T + 1, B, S)
    state[-1, 0] = 100.0  # a far-away final state
    filled = torch.ones(5, 5)
    filled[3:, 1] = 0.0  # padding after step 3 of sequence 1
    filled[:, 4] = 0.0
    state[:, 4] = 1e6  # an all-padding sequence must not enter the statistics
    seen = learner._mixer_state(state, filled)
    real = state[:-1][filled.bool()]  # (n, S)
    mean, std = real.double().mean(0), real.double().var(0, unbiased=False).add(1e-5).sqrt()
    torch.testing.assert_close(learner.state_norm.mean, mean)
    torch.testing.assert_close(seen, ((state - mean) / std).float().clamp(-1.5, 1.5))
    assert seen.abs().max() == 1.5 and (seen[-1, 0] == 1.5).all()
    w = {k: v.clone() for k, v in learner.weights().items()}
    assert "state_norm.mean" in w
    other = QLearner(env.spec, cfg, derived)
    other.load_weights(w)
    torch.testing.assert_close(other.state_norm.var, learner.state_norm.var)
    raw = QLearner(env.spec, QConfig(algo="qmix", state_clip=0.0), validate_q_config(QConfig(state_clip=0.0), env.spec))
    assert raw.state_norm is None and raw._mixer_state(state, filled) is state
    with pytest.raises(ConfigError, match="state_clip"):
        validate_q_config(QConfig(state_clip=-1.0), env.spec)


# -- config -----------------------------------------------------------------------------

def test_config_validation():
    with pytest.raises(ConfigError, match="did you mean 'batch_size'"):
        QConfig.from_dict({"batch_sise": 3})
    assert QConfig.from_dict({"algo": "vdn", "lr": 1e-3}).lr == 1e-3
    spec = fastmarl.make("simple_spread_v3").spec
    validate_q_config(QConfig(), spec)
    with pytest.raises(ConfigError, match="discrete actions"):
        validate_q_config(QConfig(), fastmarl.make("simple_spread_v3", continuous_actions=True).spec)
    with pytest.raises(ConfigError, match="algo='vdn'"):
        validate_q_config(QConfig(algo="qmix"), dataclasses.replace(spec, state_dim=0))
    validate_q_config(QConfig(algo="vdn"), dataclasses.replace(spec, state_dim=0))
    with pytest.raises(ConfigError, match="max_seq_len"):
        validate_q_config(QConfig(), dataclasses.replace(spec, max_episode_steps=None))
    with pytest.raises(ConfigError, match="buffer_size"):
        validate_q_config(QConfig(buffer_size=8, batch_size=32), spec)
    with pytest.raises(ConfigError, match="tau"):
        validate_q_config(QConfig(target_update="soft", tau=0.0), spec)
    with pytest.raises(ConfigError, match="no action masks"):
        validate_q_config(QConfig(action_masks=True), spec)


# -- learning ------------------------------------------------------------------------------

@pytest.mark.parametrize("algo,recurrent", [("iql", False), ("vdn", False), ("qmix", False), ("qmix", True)])
def test_finds_the_optimum_of_the_monotonic_game(algo, recurrent):
    res = train_q(QConfig(algo=algo, env="matrix_monotonic_v0", seed=0, **{**MATRIX, "recurrent": recurrent}))
    assert res.metrics["return_det"] == 10.0  # greedy joint action (0, 0)
    assert res.metrics["updates"] == 150  # one update per iteration (32 env steps), from the first
    first, last = res.history[0], res.history[-1]
    assert first["return"] < 6.0 < 9.0 < last["return"]  # from near-uniform play (mean 3.6) to mostly (0, 0)
    env = fastmarl.make("matrix_monotonic_v0")
    q, _ = res.learner.agents["agent"].step(env.reset().obs["agent"], None if not recurrent else torch.zeros(1, 2, 32))
    assert (q[0].argmax(-1) == 0).all()


class MaskedMatrix(MatrixGame):
    """The monotonic game where action 0 (the unmasked optimum) is illegal for agent 0."""

    def __init__(self, **kw):
        super().__init__([[10.0, 6.0, 2.0], [6.0, 4.0, 1.0], [2.0, 1.0, 0.0]], env_id="matrix_masked_test_v0", **kw)
        self.spec = dataclasses.replace(self.spec, has_action_mask=True)
        self._mask = torch.ones(self.num_envs, 2, 3, dtype=torch.bool)
        self._mask[:, 0, 0] = False

    def _add(self, ts: TimeStep) -> TimeStep:
        ts.action_mask = {"agent": self._mask.clone()}
        return ts

    def reset(self, seed=None, mask=None):
        return self._add(super().reset(seed, mask))

    def step(self, actions):
        return self._add(super().step(actions))


def test_action_masks_are_respected():
    try:
        register("matrix_masked_test_v0", lambda num_envs=1, device="cpu", seed=None: MaskedMatrix(num_envs=num_envs),
                 "test", "masked")
    except ValueError:
        pass  # registered by an earlier run in this process
    check_env(fastmarl.make("matrix_masked_test_v0", num_envs=2))
    res = train_q(QConfig(algo="vdn", env="matrix_masked_test_v0", seed=0, **MATRIX))
    assert res.metrics["return_det"] == 6.0  # best legal joint action (1, 0)
    assert res.learner.derived.action_masks == {"agent": True}


def test_smoke_spread_recurrent_qmix_with_run_dir(tmp_path):
    cfg = QConfig(algo="qmix", env="simple_spread_v3", num_envs=4, total_steps=4 * 25 * 3, batch_size=4,
                  buffer_size=16, learning_starts=4, update_interval=50, hidden_size=16, log_interval=100,
                  eval_episodes=2, runs_dir=str(tmp_path), name="smoke", seed=3)
    res = train_q(cfg)
    # updates from step 100 (4 episodes stored): 1 + 200 / 50
    assert res.metrics["steps"] == 300 and res.metrics["updates"] == 5
    row = res.history[-1]
    assert torch.isfinite(torch.tensor(row["loss/agent"])) and row["episodes_stored"] == 12
    assert -200 < res.metrics["return_det"] < 0
    run = res.run_dir
    assert json.loads((run / "config.json").read_text())["algo"] == "qmix"
    assert (run / "metrics.csv").read_text().count("\n") == len(res.history) + 1
    assert "return_det" in (run / "eval.csv").read_text()
    assert (run / "checkpoints" / "latest").is_file()
    from fastmarl.train.checkpoint import latest_checkpoint, load_checkpoint

    weights, state, manifest = load_checkpoint(latest_checkpoint(run / "checkpoints"))
    assert manifest["step"] == 300 and state["algo"]["num_updates"] == 5
    fresh = QLearner(res.learner.spec, cfg, res.learner.derived)
    fresh.load_weights(weights)
    env = fastmarl.make("simple_spread_v3", num_envs=2, seed=1)
    ts = env.reset(seed=1)
    a1, _ = res.learner.act(ts, res.learner.initial_carry(2), deterministic=True)
    a2, _ = fresh.act(ts, fresh.initial_carry(2), deterministic=True)
    assert torch.equal(a1["agent"], a2["agent"])


def test_iql_on_a_two_group_env_trains_each_group():
    cfg = QConfig(algo="vdn", env="simple_tag_v3", num_envs=4, total_steps=4 * 25 * 2, batch_size=4, buffer_size=8,
                  learning_starts=4, update_interval=25, recurrent=False, hidden_size=16, log_interval=200,
                  eval_episodes=2, mixer_groups=["adversary", "agent"])  # each team mixed on its own reward
    res = train_q(cfg)
    assert set(res.learner.agents) == {"adversary", "agent"}
    assert res.metrics["updates"] == 5  # from step 100: 1 + 100 / 25
    assert {"loss/adversary", "loss/agent"} <= set(res.history[-1])
