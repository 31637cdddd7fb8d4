"""Value-based runs: TD(lambda) targets against a hand computation, and exact resume
(replay buffer, optimizers, targets, RNG, env and unfinished episodes) after a crash,
with clear errors for a missing or corrupted replay file."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from crash import Crash, crash_after, updates
from test_ppo_toyenv import one_thread  # noqa: F401 (autouse fixture)

import fastmarl
from fastmarl.algos.q_learning import REPLAY_FILE
from fastmarl.algos.q_targets import lambda_returns
from fastmarl.config import ConfigError, QConfig, validate_q_config
from fastmarl.train.checkpoint import CheckpointError, latest_checkpoint

# -- TD(lambda) ---------------------------------------------------------------------------

def test_lambda_returns_match_a_hand_computation():
    """Two sequences, gamma 0.5, lambda 0.5: (a) 3 real steps, truncated (bootstraps from
    its final state); (b) 2 real steps, terminated at its last step, then padding."""
    gamma, lam = 0.5, 0.5
    r = torch.tensor([[1.0, 2.0], [2.0, 4.0], [3.0, 0.0]])  # (T=3, B=2)
    v = torch.tensor([[10.0, 20.0], [20.0, 40.0], [30.0, 0.0]])  # value of the state after step t
    term = torch.tensor([[0.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    filled = torch.tensor([[1.0, 1.0], [1.0, 1.0], [1.0, 0.0]])
    # (a) G2 = 3 + 0.5 * 30 = 18; G1 = 2 + 0.5 * (0.5 * 20 + 0.5 * 18) = 11.5; G0 = 1 + 0.5 * (5 + 5.75) = 6.375
    # (b) G1 = 4 (terminal); G0 = 2 + 0.5 * (0.5 * 20 + 0.5 * 4) = 8; padding 0
    want = torch.tensor([[6.375, 8.0], [11.5, 4.0], [18.0, 0.0]])
    torch.testing.assert_close(lambda_returns(r, term, filled, v, gamma, lam), want)
    # lambda 0: one-step targets r + gamma * (1 - terminated) * V'
    one = torch.tensor([[6.0, 12.0], [12.0, 4.0], [18.0, 0.0]])
    torch.testing.assert_close(lambda_returns(r, term, filled, v, gamma, 0.0), one)
    # lambda 1: discounted return, bootstrapped once at the last real step: (a) 1 + 0.5*2 + 0.25*18
    torch.testing.assert_close(lambda_returns(r, term, filled, v, gamma, 1.0)[0], torch.tensor([6.5, 4.0]))
    # trailing agent dims broadcast: (T, B, A)
    out = lambda_returns(r[..., None].expand(3, 2, 2), term[..., None].expand(3, 2, 2),
                         filled[..., None].expand(3, 2, 2), v[..., None].expand(3, 2, 2), gamma, lam)
    torch.testing.assert_close(out, want[..., None].expand(3, 2, 2))


def test_td_lambda_loss_on_two_step_episodes():
    """VDN on 2-step penalty-game episodes, gamma 0.9, lambda 0.5, no double Q: the step-0 target mixes
    the one-step bootstrap with the (terminal) step-1 return, G0 = r0 + 0.9 * (0.5 * V1 + 0.5 * r1)."""
    from fastmarl.algos.q_learning import QLearner
    from fastmarl.algos.replay import EpisodeBuffer

    env = fastmarl.make("matrix_penalty_v0", num_envs=3, episode_length=2)
    cfg = QConfig(algo="vdn", env="matrix_penalty_v0", recurrent=False, gamma=0.9, double_q=False, td_lambda=0.5)
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
        obs = batch["obs/agent"]  # (3 episodes, 3 observations, 2 agents, 3)
        q = learner.agents["agent"].step(obs.flatten(0, 1), None)[0].view(3, 3, 2, 3)
        qt = learner.target_agents["agent"].step(obs.flatten(0, 1), None)[0].view(3, 3, 2, 3)
        chosen = q[:, :2].gather(-1, batch["action/agent"][..., None]).squeeze(-1).sum(-1)  # (3, 2)
        r = batch["reward/agent"].mean(-1)  # (3, 2) team reward
        v1 = qt[:, 1].amax(-1).sum(-1)  # value of the observation after step 0
        g1 = r[:, 1]  # step 1 terminates
        g0 = r[:, 0] + 0.9 * (0.5 * v1 + 0.5 * g1)
        want = ((chosen - torch.stack([g0, g1], 1)) ** 2).mean()
    torch.testing.assert_close(loss, want)


def test_td_lambda_is_validated_and_defaults_per_algo():
    spec = fastmarl.make("simple_spread_v3").spec
    with pytest.raises(ConfigError, match="td_lambda must be in"):
        validate_q_config(QConfig(td_lambda=1.5), spec)
    got = {a: validate_q_config(QConfig(algo=a), spec) for a in ("iql", "vdn", "qmix")}
    assert {a: (d.td_lambda, d.standardise_rewards) for a, d in got.items()} == \
        {"iql": (0.0, False), "vdn": (0.0, False), "qmix": (0.6, True)}
    explicit = validate_q_config(QConfig(algo="qmix", td_lambda=0.0, standardise_rewards=False), spec)
    assert (explicit.td_lambda, explicit.standardise_rewards) == (0.0, False)


# -- resume -------------------------------------------------------------------------------

def _cfg(tmp_path, name: str, **kw) -> QConfig:
    # 4 envs x 25-step episodes; checkpoints every 180 env steps (45 per env: mid-episode), a 12-episode
    # buffer that wraps, an update every 20 env steps, a target copy every 3 updates
    base = dict(algo="qmix", env="simple_spread_v3", env_kwargs={"N": 2}, total_steps=720, num_envs=4, batch_size=4,
                buffer_size=12, learning_starts=4, update_interval=20, target_update_interval=3, hidden_size=8,
                mixer_embed=8, hypernet_embed=8, epsilon_anneal_steps=400, log_interval=100, eval_interval=360,
                eval_episodes=2, checkpoint_interval=180, keep_checkpoints=2, threads=1, runs_dir=str(tmp_path),
                name=name)
    return QConfig(**{**base, **kw})


def _weights(res) -> dict[str, torch.Tensor]:
    return res.learner.weights()


@pytest.mark.parametrize("kw", [pytest.param(dict(td_lambda=0.6), marks=pytest.mark.slow),
                                dict(algo="iql", recurrent=False, standardise_rewards=True, double_q=False)],
                         ids=["qmix-gru-td-lambda", "iql-ff-standardised"])
def test_resume_after_a_crash_equals_an_uninterrupted_run(tmp_path, kw):
    full = fastmarl.train(_cfg(tmp_path, "full", **kw))
    # 20 updates ~ 440 env steps: the crash comes after the checkpoint at step 360 (mid-episode, with updates
    # done and unfinished episodes staged), so the resumed run redoes steps 360..440 from that checkpoint
    with pytest.raises(Crash):
        fastmarl.train(_cfg(tmp_path, "crashed", **kw), callback=crash_after(20, updates))
    assert latest_checkpoint(tmp_path / "crashed" / "checkpoints").name == "step_000000000360"
    resumed = fastmarl.train(resume=tmp_path / "crashed")
    assert resumed.metrics["steps"] == full.metrics["steps"] == 720
    assert resumed.metrics["updates"] == full.metrics["updates"] > 20
    a, b = _weights(full), _weights(resumed)
    assert a.keys() == b.keys() and any(k.startswith("target_") for k in a)
    for k in a:
        assert torch.equal(a[k], b[k]), k  # bitwise: online and target networks, mixer, reward statistics
    strip = lambda rows: [{k: v for k, v in r.items() if k not in ("time", "sps")} for r in rows]  # noqa: E731
    assert strip(resumed.history) == strip(full.history)  # the same log rows, losses included
    assert resumed.evals == full.evals
    assert resumed.learner.epsilon == full.learner.epsilon
    # resuming again from the final checkpoint with a longer budget continues from step 720
    more = fastmarl.train(dataclasses.replace(_cfg(tmp_path, "crashed", **kw), total_steps=800),
                          resume=tmp_path / "crashed")
    assert more.metrics["steps"] == 800 and more.metrics["updates"] == full.metrics["updates"] + 4


def _crash(tmp_path, name: str, **kw):
    with pytest.raises(Crash):
        fastmarl.train(_cfg(tmp_path, name, total_steps=400, eval_interval=0, **kw), callback=crash_after(12, updates))
    return latest_checkpoint(tmp_path / name / "checkpoints")


def test_missing_or_corrupted_replay_is_a_clear_error(tmp_path):
    ckpt = _crash(tmp_path, "corrupt")
    data = bytearray((ckpt / REPLAY_FILE).read_bytes())
    data[-5] ^= 0xFF  # one flipped byte in the stored episodes
    (ckpt / REPLAY_FILE).write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=f"corrupted: {REPLAY_FILE} has SHA-256"):
        fastmarl.train(resume=tmp_path / "corrupt")
    (ckpt / REPLAY_FILE).write_bytes(bytes(data[:100]))
    with pytest.raises(CheckpointError, match=f"corrupted: {REPLAY_FILE} has 100 bytes"):
        fastmarl.train(resume=tmp_path / "corrupt")
    (ckpt / REPLAY_FILE).unlink()
    with pytest.raises(CheckpointError, match=f"incomplete: {REPLAY_FILE} is missing"):
        fastmarl.train(resume=tmp_path / "corrupt")
    # saved without the buffer on purpose: resuming says why it cannot
    _crash(tmp_path, "small", checkpoint_replay=False)
    with pytest.raises(CheckpointError, match=f"has no {REPLAY_FILE}.*checkpoint_replay=False"):
        fastmarl.train(resume=tmp_path / "small")


def test_resume_rejects_settings_that_must_not_change(tmp_path):
    _crash(tmp_path, "run")
    with pytest.raises(ConfigError, match="cannot change buffer_size"):
        fastmarl.train(_cfg(tmp_path, "run", buffer_size=24), resume=tmp_path / "run")
    with pytest.raises(ConfigError, match="resume it with a QConfig"):
        fastmarl.train(fastmarl.TrainConfig(), resume=tmp_path / "run")
