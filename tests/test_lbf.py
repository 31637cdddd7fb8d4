"""LBF beside the parity tests: the reference's ids and kwargs, bad input, hand-made rules, the checker,
PettingZoo, compile, training.

(PettingZoo's api/seed tests, check_env, save/load and a PPO update also run on the listed id
``Foraging-8x8-2p-2f-coop-v3`` through the suites parametrized over ``list_envs()``; here they run on
partial observability and the other options too.)
"""

import csv
import json
import warnings

import gymnasium as gym
import lbforaging  # noqa: F401 (registers the reference's ids)
import numpy as np
import pytest
import torch
from lbf_reference import make_reference
from pettingzoo.test import api_test, parallel_api_test, parallel_seed_test

import fastmarl
from fastmarl.cli import main
from fastmarl.envs import ActionError, check_env
from fastmarl.envs.lbf import LOAD, NONE, NORTH, SOUTH, Foraging, lbf_ids
from fastmarl.envs.pettingzoo import to_aec_env, to_parallel_env


def test_ids_and_kwargs_are_the_references():
    theirs = {k: v for k, v in gym.registry.items() if k.startswith("Foraging")}
    ours = lbf_ids()
    assert set(ours) == set(theirs) and len(ours) == 15 * 8 * 4 * 2 * 2
    for env_id, spec in theirs.items():
        kw = {**dict(min_player_level=1, max_player_level=2, min_food_level=1, max_food_level=None,
                     max_episode_steps=50, grid_observation=False, penalty=0.0), **ours[env_id]}
        assert {k: kw[k] for k in spec.kwargs} == spec.kwargs, env_id
    for env_id in ("Foraging-8x8-2p-2f-coop-v3", "Foraging-2s-19x19-9p-4f-v3", "Foraging-2s-5x5-3p-1f-coop-v3"):
        env, r = fastmarl.make(env_id), make_reference(env_id)
        space, theirs = env.spec.groups["agent"].observation_space, r.observation_space[0]
        np.testing.assert_array_equal(space.low, theirs.low)
        np.testing.assert_array_equal(space.high, theirs.high)
        assert env.num_agents == r.n_agents and env.spec.groups["agent"].action_dim == 6


def test_bad_input_is_a_clear_error():
    with pytest.raises(KeyError, match="did you mean 'Foraging-8x8-2p-2f-coop-v3'"):
        fastmarl.make("Foraging-8x8-2p-2f-coop-v2")
    with pytest.raises(TypeError, match="did you mean 'max_num_food'"):
        fastmarl.make("Foraging-8x8-2p-2f-coop-v3", max_num_foods=3)
    with pytest.raises(ValueError, match="do not fit a 5x5 grid"):
        fastmarl.make("Foraging-5x5-9p-4f-v3", players=24)
    with pytest.raises(ValueError, match="do not fit"):
        fastmarl.make("Foraging-5x5-2p-1f-v3", max_num_food=10)
    with pytest.raises(ValueError, match="field_size must be"):
        fastmarl.make("Foraging-5x5-2p-1f-v3", field_size=(2, 8))
    with pytest.raises(ValueError, match="grid_observation=True is not supported"):
        fastmarl.make("Foraging-5x5-2p-1f-v3", grid_observation=True)
    with pytest.raises(ValueError, match="min level must be <= its max"):
        fastmarl.make("Foraging-5x5-2p-1f-v3", min_player_level=3)
    with pytest.raises(ValueError, match="a list of 2 such ints"):
        fastmarl.make("Foraging-5x5-2p-1f-v3", max_player_level=[1, 2, 3])
    with pytest.raises(ValueError, match="exceeds the food maximum"):
        fastmarl.make("Foraging-5x5-2p-1f-v3", min_food_level=5)
    with pytest.raises(ValueError, match="sight must be an int"):
        fastmarl.make("Foraging-5x5-2p-1f-v3", sight=-1)
    env = fastmarl.make("Foraging-8x8-3p-2f-v3", num_envs=3, seed=0)
    env.reset(seed=0)
    before = env.state_dict()
    for bad, msg in ((torch.full((3, 3), 6), "out of range"), (torch.zeros(3, 2, dtype=torch.long), "shape"),
                     (torch.zeros(3, 3), "integer dtype")):
        with pytest.raises(ActionError, match=msg):
            env.step({"agent": bad})
    after = env.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in env._STATE)


def _hand_state(env: Foraging, agents, levels, food, food_levels) -> None:
    env.reset(seed=0)  # step() needs a reset first; the state is then overwritten
    env.agent_pos[0], env.agent_level[0] = torch.tensor(agents), torch.tensor(levels)
    env.food_pos[0], env.food_level[0] = torch.tensor(food), torch.tensor(food_levels)
    env.food_spawned[0], env.t[0] = sum(food_levels), 0


def test_hand_made_moves_and_loads():
    """Three players on a row: two contest a cell (both stay), the third moves onto one of them (they share a
    cell, as in the reference); two loaders of level 1 + 2 lift a level-3 food, each paid by level."""
    env = Foraging(num_envs=1, players=4, field_size=(6, 6), max_num_food=2, sight=6, seed=0)
    _hand_state(env, [[2, 0], [4, 0], [2, 1], [2, 4]], [1, 2, 1, 2], [[0, 5], [3, 3]], [1, 3])
    # 0 and 1 both claim (3, 0); 2 claims nothing new (NONE); 3 loads next to nothing (invalid -> NONE)
    ts = env.step({"agent": torch.tensor([[SOUTH, NORTH, NONE, LOAD]])})
    assert env.agent_pos[0].tolist() == [[2, 0], [4, 0], [2, 1], [2, 4]]
    c = {k: int(v) for k, v in ts.info["conflicts"].items()}
    assert c["move_collision"] == 2 and c["invalid"] == 1
    assert ts.action_mask["agent"][0, 3].tolist() == [True, True, True, True, True, False]
    env.agent_pos[0] = torch.tensor([[3, 1], [3, 2], [2, 3], [3, 4]])  # around the food at (3, 3)
    env.agent_level[0] = torch.tensor([1, 1, 1, 2])
    ts = env.step({"agent": torch.tensor([[NONE, LOAD, LOAD, LOAD]])})  # levels 1 + 1 + 2 >= 3
    assert ts.reward["agent"][0].tolist() == pytest.approx([0.0, 1 * 3 / (4 * 4), 1 * 3 / (4 * 4), 2 * 3 / (4 * 4)])
    assert env.food_level[0].tolist() == [1, 0] and int(ts.info["conflicts"]["joint_load"]) == 1


def test_overlap_when_a_move_lands_on_a_blocked_player():
    env = Foraging(num_envs=1, players=3, field_size=(5, 5), max_num_food=1, sight=5, seed=0)
    _hand_state(env, [[1, 1], [1, 2], [0, 3]], [1, 1, 1], [[3, 3]], [2])
    # 0 moves east onto 1's cell; 1 moves north to (0, 2), contested by 2 moving west: 1 and 2 stay, 0 moves
    ts = env.step({"agent": torch.tensor([[4, NORTH, 3]])})
    assert env.agent_pos[0].tolist() == [[1, 2], [1, 2], [0, 3]] and int(ts.info["conflicts"]["overlap"]) == 2


@pytest.mark.parametrize("kwargs", [dict(sight=1, observe_agent_levels=False), dict(penalty=0.1, sight=3),
                                    dict(normalize_reward=False, max_food_level=[2, 4])])
def test_checker_and_pettingzoo_on_the_options(kwargs):
    env_id = "Foraging-2s-7x7-3p-2f-v3"
    check_env(fastmarl.make(env_id, num_envs=4, seed=0, **kwargs))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parallel_api_test(to_parallel_env(env_id, seed=0, **kwargs), num_cycles=60)
        api_test(to_aec_env(env_id, seed=0, **kwargs), num_cycles=60)
        parallel_seed_test(lambda: to_parallel_env(env_id, **kwargs), num_cycles=60)
    pz = to_parallel_env(env_id, seed=1, **kwargs)
    obs, infos = pz.reset(seed=1)
    assert set(obs) == {f"agent_{i}" for i in range(3)}
    assert all(pz.observation_space(a).contains(o) for a, o in obs.items())
    assert all(infos[a]["action_mask"].shape == (6,) and infos[a]["action_mask"][0] == 1 for a in obs)


@pytest.mark.slow
def test_compiled_step_equals_eager():
    eager = fastmarl.make("Foraging-2s-8x8-4p-3f-v3", num_envs=16, seed=4, penalty=0.1)
    comp = fastmarl.make("Foraging-2s-8x8-4p-3f-v3", num_envs=16, seed=4, penalty=0.1, compile=True)
    x, y = eager.reset(seed=4), comp.reset(seed=4)
    assert torch.equal(x.obs["agent"], y.obs["agent"])
    g = torch.Generator().manual_seed(0)
    for _ in range(120):
        a = {"agent": torch.randint(0, 6, (16, 4), generator=g)}
        x, y = eager.step(a), comp.step(a)
        for k in ("obs", "reward", "action_mask"):
            assert torch.equal(getattr(x, k)["agent"], getattr(y, k)["agent"]), k
        assert torch.equal(x.done, y.done)
    assert all(torch.equal(eager.state_dict()[k], comp.state_dict()[k]) for k in eager._STATE)


@pytest.mark.slow
@pytest.mark.parametrize("algo,extra", [
    ("ippo", ["--num-steps", "50", "--num-minibatches", "2"]),
    ("qmix", ["--batch-size", "8", "--buffer-size", "64", "--learning-starts", "8", "--update-interval", "50",
              "--hidden-size", "16"]),
])
def test_train_cli_on_lbf(tmp_path, algo, extra):
    env_id = "Foraging-8x8-2p-2f-coop-v3"
    argv = ["train", "--algo", algo, "--env", env_id, "--total-steps", "2000", "--num-envs", "8",
            "--runs-dir", str(tmp_path), "--name", algo, "--eval-interval", "0", "--eval-episodes", "2",
            "--checkpoint-interval", "0", "--no-progress", "--threads", "1", *extra]
    assert main(argv) == 0
    run = tmp_path / algo
    assert json.loads((run / "config.json").read_text())["env"] == env_id
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    assert int(rows[-1]["step"]) == 2000 and np.isfinite(float(rows[-1]["return"]))
    assert 0 < float(rows[-1]["episode_length"]) <= 50
    evals = list(csv.DictReader(open(run / "eval.csv")))
    assert evals and all(0 <= float(r["return_det"]) <= 1 and float(r["episodes_det"]) == 2 for r in evals)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here")
def test_cuda_equals_cpu():
    """The same seed and actions on a GPU: the same trajectory (random draws differ between devices, so the
    CUDA env's state is copied from the CPU one and auto-reset excluded by a long episode limit)."""
    cpu = fastmarl.make("Foraging-2s-8x8-4p-3f-v3", num_envs=64, seed=0, max_episode_steps=1000)
    gpu = fastmarl.make("Foraging-2s-8x8-4p-3f-v3", num_envs=64, seed=0, max_episode_steps=1000, device="cuda")
    cpu.reset(seed=0)
    gpu.load_state_dict({k: v for k, v in cpu.state_dict().items() if k != "generator"} | {
        "generator": gpu._gen.get_state()})
    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        a = torch.randint(0, 6, (64, 4), generator=g)
        x, y = cpu.step({"agent": a}), gpu.step({"agent": a.cuda()})
        if bool(x.done.any()):  # all food eaten: the respawns differ by device
            break
        assert torch.equal(x.obs["agent"], y.obs["agent"].cpu()) and torch.equal(x.reward["agent"],
                                                                                 y.reward["agent"].cpu())
