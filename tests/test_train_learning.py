"""A short learning check on an easy task: simple_v3 (one agent reaches a landmark)."""

import pytest
import torch
from test_ppo_toyenv import one_thread  # noqa: F401 (autouse fixture)

import fastmarl
from fastmarl.config import EVAL_SEED_OFFSET, PPOConfig, TrainConfig
from fastmarl.envs.episodes import evaluate_policy
from fastmarl.envs.scripted import RandomPolicy
from fastmarl.train import train

pytestmark = pytest.mark.slow  # training runs


@pytest.mark.parametrize("algo", ["ippo", "mappo"])
def test_ppo_clearly_beats_random_on_simple_v3(tmp_path, algo):
    cfg = TrainConfig(algo=algo, env="simple_v3", num_envs=64, total_steps=64 * 25 * 25, seed=1,
                      runs_dir=str(tmp_path), name=algo, eval_interval=0, eval_episodes=200, gif=False,
                      tensorboard=False, progress=False, ppo=PPOConfig(num_minibatches=2))
    res = train(cfg)
    env = fastmarl.make("simple_v3", num_envs=200, seed=0)
    random = evaluate_policy(RandomPolicy(env.spec), env, seed=1 + EVAL_SEED_OFFSET)["return"]  # same episodes
    assert random < -30  # the landmark is far on average; wandering makes it worse
    assert res.final_eval["return_det"] > -12, (res.final_eval, random)
    assert res.final_eval["return_stoch"] > -14
    torch.testing.assert_close(torch.tensor(res.final_eval["episode_length_det"]), torch.tensor(25.0))
