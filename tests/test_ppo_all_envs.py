"""IPPO and MAPPO run one collect + update on every registered env (both action kinds)."""

import math

import pytest
import torch
from test_ppo_toyenv import one_thread  # noqa: F401 (autouse fixture)

import fastmarl
from fastmarl.algos.ppo import PPO
from fastmarl.config import PPOConfig, TrainConfig, resolve
from fastmarl.envs import list_envs
from fastmarl.envs.episodes import evaluate_policy, headline

CASES = [(e.env_id, algo, cont) for e in list_envs() for algo in ("ippo", "mappo") for cont in (False, True)]


@pytest.mark.parametrize("env_id,algo,continuous", CASES)
def test_ppo_runs_on_every_env(env_id, algo, continuous):
    try:
        env = fastmarl.make(env_id, num_envs=4, seed=0, continuous_actions=continuous)
    except TypeError:
        pytest.skip(f"{env_id} has no continuous_actions option")
    if algo == "mappo" and env.spec.state_dim == 0:
        pytest.skip(f"{env_id} has no global state")
    cfg = TrainConfig(algo=algo, env=env_id, num_envs=4, total_steps=4 * 5,
                      ppo=PPOConfig(num_steps=5, num_epochs=1, num_minibatches=2, hidden_size=16, recurrent=True))
    torch.manual_seed(0)
    ppo = PPO(env.spec, cfg, resolve(cfg, env.spec))
    ppo.start(env.reset(seed=0))
    ppo.collect(env)
    metrics = ppo.update(0.0)
    assert all(math.isfinite(v) for v in metrics.values()), metrics
    assert {f"policy_loss/{g}" for g in env.spec.groups} <= set(metrics)
    res = evaluate_policy(ppo, fastmarl.make(env_id, num_envs=2, seed=1, continuous_actions=continuous))
    rets = headline(res)  # per group on a competitive env
    assert rets and all(math.isfinite(v) for v in rets.values()) and res["episodes"] == 2
    assert ("return" in res) != env.spec.competitive
