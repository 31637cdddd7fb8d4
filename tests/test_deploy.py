"""fastmarl.load_policy: a run's policy acting on PettingZoo-style dicts, for every learner family.

The parity promise end to end: a MAPPO policy trained on fastmarl's simple_spread_v3 plays mpe2's
simple_spread_v3 (the reference PettingZoo env) through ``load_policy``, and its mean return there
matches fastmarl's own evaluation of the same checkpoint within statistical error.
"""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
import torch
from deployruns import RUNS, trained

import fastmarl
from fastmarl.config import ConfigError
from fastmarl.train.checkpoint import MODEL, TRAINER, CheckpointError, latest_checkpoint
from fastmarl.train.deploy import DeployedPolicy
from fastmarl.train.runner import load_run

Z_BOUND = 4.0  # |z| above this: the means differ (a false alarm about once in 16,000 runs)


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def z_score(a: np.ndarray, mean_b: float, std_b: float, n_b: int) -> float:
    """Two-sample z statistic of the means of the returns ``a`` and of a sample (mean, std, size)."""
    se = math.sqrt(a.var(ddof=1) / a.size + std_b ** 2 / n_b)
    return (a.mean() - mean_b) / se


def mpe2_returns(policy, episodes: int, seed: int, deterministic: bool, **env_kwargs) -> np.ndarray:
    """Per-agent return (mean over agents of each one's summed reward) of each episode of mpe2's env."""
    from mpe2 import simple_spread_v3

    env = simple_spread_v3.parallel_env(**env_kwargs)
    out = np.empty(episodes)
    for ep in range(episodes):
        obs, _ = env.reset(seed=seed + ep)
        policy.reset()
        total = 0.0
        while env.agents:
            obs, rew, _, _, _ = env.step(policy.act(obs, deterministic=deterministic))
            total += sum(rew.values()) / len(rew)
        out[ep] = total
    env.close()
    return out


@pytest.mark.slow
def test_mappo_plays_mpe2_like_fastmarl_evaluates_it(tmp_path_factory):
    run = trained("mappo", tmp_path_factory)
    n_fast = 2000
    ours = fastmarl.evaluate(run, episodes=n_fast)
    policy = fastmarl.load_policy(run, seed=1)
    assert policy.info["algo"] == "mappo" and policy.info["step"] == 40_000
    for mode, episodes in (("det", 500), ("stoch", 250)):
        ref = mpe2_returns(policy, episodes, seed=10_000, deterministic=mode == "det")
        z = z_score(ref, ours[f"return_{mode}"], ours[f"return_std_{mode}"], n_fast)
        assert abs(z) < Z_BOUND, (mode, ref.mean(), ours[f"return_{mode}"], z)
    # the same bound rejects a different task: mpe2's episodes cut to 20 steps (from 25)
    short = mpe2_returns(policy, 250, seed=20_000, deterministic=True, max_cycles=20)
    assert z_score(short, ours["return_det"], ours["return_std_det"], n_fast) > Z_BOUND


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n == "mappo" else n for n in sorted(RUNS)])
def test_dict_policy_equals_the_learner_on_the_batched_env(name, tmp_path_factory):
    """Batched dicts (B = 6 envs) with partial resets where episodes end: the same actions as the
    learner's own ``act`` on the batched env, over 40 steps (several episodes of recurrent carry)."""
    run = trained(name, tmp_path_factory)
    learner, _, env, _ = load_run(run, num_envs=6)
    policy = fastmarl.load_policy(run)
    spec = env.spec
    ts = env.reset(seed=3)
    carry = learner.initial_carry(6)
    for _ in range(40):
        want, carry = learner.act(ts, carry, deterministic=True)
        obs = {a: ts.obs[g][:, i].numpy() for g, s in spec.groups.items() for i, a in enumerate(s.agents)}
        mask = ({a: ts.action_mask[g][:, i].numpy() for g, s in spec.groups.items() for i, a in enumerate(s.agents)
                 if g in ts.action_mask} if ts.action_mask is not None else None)
        got = policy.act(obs, action_mask=mask)
        for g, s in spec.groups.items():
            for i, a in enumerate(s.agents):
                np.testing.assert_allclose(got[a], want[g][:, i].numpy(), rtol=0, atol=1e-6, err_msg=a)
        ts = env.step(want)
        policy.reset(ts.done.numpy())


@pytest.mark.parametrize("name", ["mappo_gru_box", "iql_gru", "isac", "ippo_tarmac"])
def test_unbatched_dicts_equal_batch_rows_and_sampling_is_seeded(name, tmp_path_factory):
    run = trained(name, tmp_path_factory)
    _, _, env, _ = load_run(run, num_envs=3)
    spec = env.spec
    ts = env.reset(seed=5)
    obs = {a: ts.obs[g][:, i].numpy() for g, s in spec.groups.items() for i, a in enumerate(s.agents)}
    batched = fastmarl.load_policy(run)
    rows = [fastmarl.load_policy(run) for _ in range(3)]
    for _ in range(3):  # three steps: the hidden state carries over
        b = batched.act(obs)
        for e, p in enumerate(rows):
            one = p.act({a: o[e] for a, o in obs.items()})
            for a in one:
                assert np.shape(one[a]) == np.shape(b[a][e])
                np.testing.assert_allclose(one[a], b[a][e], atol=1e-6)
    draws = [[fastmarl.load_policy(run, deterministic=False, seed=s).act(obs) for _ in range(2)] for s in (7, 7, 8)]
    flat = [np.concatenate([np.ravel(d[a]) for d in run_draws for a in sorted(d)]) for run_draws in draws]
    np.testing.assert_array_equal(flat[0], flat[1])  # same seed, same samples
    assert not np.array_equal(flat[0], flat[2])  # another seed, other samples


def test_action_masks_from_the_classic_observation_dict(tmp_path_factory):
    """IPPO trained on PettingZoo's tic-tac-toe plays the AEC game itself: every move legal, from the masks
    inside the observations; sampled (an unmasked sample would soon pick an occupied square)."""
    from pettingzoo.classic import tictactoe_v3

    policy = fastmarl.load_policy(trained("ippo_tictactoe", tmp_path_factory), deterministic=False)
    env = tictactoe_v3.env()
    moves = 0
    for game in range(30):
        env.reset(seed=game)
        policy.reset()
        for agent in env.agent_iter():
            obs, _, term, trunc, _ = env.last()
            if term or trunc:
                env.step(None)
                continue
            action = policy.act({agent: obs})[agent]
            assert obs["action_mask"][action] == 1, (game, obs["action_mask"], action)
            env.step(action)
            moves += 1
    assert moves > 150


def test_tabular_learner_through_deployed_policy():
    """Tabular runs write no run directory: DeployedPolicy wraps the learner train_tabular returns."""
    from fastmarl.config import TabularConfig
    from fastmarl.train.runner import train_tabular

    env = fastmarl.make("matrix_monotonic_v0", num_envs=32, seed=0)
    res = train_tabular(env, TabularConfig(total_steps=3000, seed=0))
    policy = DeployedPolicy(res.learner, env.spec)
    ts = env.reset(seed=0)
    want, _ = res.learner.act(ts, {}, deterministic=True)
    obs = {a: ts.obs[g][:, i].numpy() for g, s in env.spec.groups.items() for i, a in enumerate(s.agents)}
    got = policy.act(obs)
    for g, s in env.spec.groups.items():
        for i, a in enumerate(s.agents):
            np.testing.assert_array_equal(got[a], want[g][:, i].numpy())


def test_damaged_trainer_state_does_not_matter_a_damaged_model_is_named(tmp_path_factory, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained("qmix", tmp_path_factory), run)
    ckpt = latest_checkpoint(run / "checkpoints")
    (ckpt / TRAINER).write_bytes(b"garbage")
    obs = {f"agent_{i}": np.zeros(18, np.float32) for i in range(3)}
    assert set(fastmarl.load_policy(run).act(obs)) == set(obs)
    (ckpt / MODEL).write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="model.safetensors"):
        fastmarl.load_policy(run)


def test_bad_input_is_named(tmp_path_factory, tmp_path):
    policy = fastmarl.load_policy(trained("qmix", tmp_path_factory))  # simple_spread: 3 agents, 18 floats each
    good = {f"agent_{i}": np.zeros(18, np.float32) for i in range(3)}
    with pytest.raises(KeyError, match="did you mean 'agent_1'"):
        policy.act({**good, "agnet_1": np.zeros(18)})
    with pytest.raises(ValueError, match=r"agent 'agent_0': observation of shape \(17,\), expected \(18,\)"):
        policy.act({**good, "agent_0": np.zeros(17)})
    with pytest.raises(ValueError, match="mixes batched and unbatched"):
        policy.act({**good, "agent_0": np.zeros((2, 18))})
    with pytest.raises(TypeError, match="dict agent name -> observation"):
        policy.act([np.zeros(18)] * 3)
    policy.act({a: np.zeros((4, 18)) for a in good})
    with pytest.raises(ValueError, match="call reset"):
        policy.act({a: np.zeros((5, 18)) for a in good})
    policy.reset()
    assert policy.act({a: np.zeros((5, 18)) for a in good})["agent_0"].shape == (5,)
    assert policy.act({"agent_2": np.zeros((5, 18))}).keys() == {"agent_2"}  # absent agents get no action
    with pytest.raises(ConfigError, match="not a run directory"):
        fastmarl.load_policy(tmp_path)
