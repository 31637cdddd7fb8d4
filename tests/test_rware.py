"""RWARE beside the parity tests: the reference's ids and kwargs, bad input, the checker, PettingZoo, training.

(PettingZoo's api/seed tests, check_env, save/load and a PPO update also run on the listed id
``rware-tiny-2ag-v2`` through the suites parametrized over ``list_envs()``; here they run on
the other observation types too.)
"""

import csv
import json
import warnings

import gymnasium as gym
import numpy as np
import pytest
import rware
import torch
from pettingzoo.test import api_test, parallel_api_test, parallel_seed_test

import fastmarl
from fastmarl.cli import main
from fastmarl.envs import ActionError, check_env
from fastmarl.envs.pettingzoo import to_aec_env, to_parallel_env
from fastmarl.envs.rware import IMAGE_LAYERS, OBSERVATION_TYPES, REWARD_TYPES, rware_ids


def _value(v):
    """A reference kwarg value (enum or plain) in fastmarl's terms."""
    return getattr(v, "value", v)


def test_ids_and_kwargs_are_the_references():
    """Every id rware 2.0.0 registers on import, and those of its image_registration(), with the same kwargs."""
    if "rware-img-tiny-1ag-v2" not in gym.registry:
        rware.image_registration()
    theirs = {k: v for k, v in gym.registry.items() if k.startswith("rware")}
    ours = rware_ids()
    assert set(ours) == set(theirs) and len(ours) == 4 * 3 * 19 * 5
    for env_id, spec in theirs.items():
        built = fastmarl.make(env_id).__dict__ if env_id in ("rware-tiny-2ag-v2", "rware-imgdict-Nd-large-19ag-hard-v2") \
            else None
        kw = {**dict(observation_type="FLATTENED", image_observation_directional=True), **ours[env_id]}
        for k, v in spec.kwargs.items():
            mine = kw.get(k, {"column_height": 8, "msg_bits": 0, "sensor_range": 1, "max_inactivity_steps": None,
                              "max_steps": 500, "reward_type": "INDIVIDUAL"}.get(k))
            if k == "observation_type":
                assert OBSERVATION_TYPES[mine.upper()] == _value(v), (env_id, k)
            elif k == "reward_type":
                assert REWARD_TYPES[mine] == _value(v), (env_id, k)
            else:
                assert mine == v, (env_id, k, mine, v)
        if built is not None:  # and the env built from the id has the reference's spaces
            r = gym.make(env_id, disable_env_checker=True).unwrapped
            assert built["obs_dim"] == gym.spaces.flatdim(r.observation_space[0])
            assert built["num_agents"] == r.n_agents and (built["H"], built["W"]) == r.grid_size


def test_bad_input_is_a_clear_error():
    with pytest.raises(KeyError, match="rware-tiny-2ag-v2"):
        fastmarl.make("rware-tiny-2ag-v3")
    with pytest.raises(TypeError, match="did you mean 'sensor_range'"):
        fastmarl.make("rware-tiny-2ag-v2", sensor_rang=2)
    with pytest.raises(ValueError, match="shelf_columns must be odd"):
        fastmarl.make("rware-tiny-2ag-v2", shelf_columns=4)
    with pytest.raises(ValueError, match="do not fit"):
        fastmarl.make("rware-tiny-2ag-v2", n_agents=200)
    with pytest.raises(ValueError, match="do not fit"):
        fastmarl.make("rware-tiny-2ag-v2", request_queue_size=33)
    with pytest.raises(ValueError, match="msg_bits"):
        fastmarl.make("rware-tiny-2ag-v2", msg_bits=2)
    with pytest.raises(ValueError, match="observation_type must be one of"):
        fastmarl.make("rware-tiny-2ag-v2", observation_type="pixels")
    with pytest.raises(ValueError, match="image layer must be one of"):
        fastmarl.make("rware-img-tiny-2ag-v2", image_observation_layers=["SHELF"])
    with pytest.raises(ValueError, match="layout may hold only"):
        fastmarl.make("rware-tiny-2ag-v2", layout="..x\n.gy")
    with pytest.raises(ValueError, match="n_agents must be a positive int"):
        fastmarl.make("rware-tiny-2ag-v2", n_agents=0)
    env = fastmarl.make("rware-tiny-4ag-v2", num_envs=3, seed=0)
    env.reset(seed=0)
    before = env.state_dict()
    for bad, msg in ((torch.full((3, 4), 5), "out of range"), (torch.zeros(3, 3, dtype=torch.long), "shape"),
                     (torch.zeros(3, 4), "integer dtype")):
        with pytest.raises(ActionError, match=msg):
            env.step({"agent": bad})
    after = env.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in env._STATE)


@pytest.mark.parametrize("kwargs", [dict(observation_type="image"), dict(observation_type="image_dict",
                                    image_observation_layers=list(IMAGE_LAYERS)), dict(reward_type="two_stage")])
def test_checker_and_pettingzoo_on_the_other_observation_types(kwargs):
    env_id = "rware-tiny-4ag-v2"
    check_env(fastmarl.make(env_id, num_envs=4, seed=0, **kwargs))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # advice (infinite bounds); the contract is asserted by the tests
        parallel_api_test(to_parallel_env(env_id, seed=0, **kwargs), num_cycles=50)
        api_test(to_aec_env(env_id, seed=0, **kwargs), num_cycles=50)
        parallel_seed_test(lambda: to_parallel_env(env_id, **kwargs), num_cycles=50)
    pz = to_parallel_env(env_id, seed=1, **kwargs)
    obs, _ = pz.reset(seed=1)
    assert set(obs) == {f"agent_{i}" for i in range(4)}
    assert all(o.shape == pz.observation_space(a).shape and pz.observation_space(a).contains(o) for a, o in obs.items())


@pytest.mark.slow
def test_compiled_step_equals_eager():
    eager = fastmarl.make("rware-tiny-8ag-v2", num_envs=16, seed=4)
    comp = fastmarl.make("rware-tiny-8ag-v2", num_envs=16, seed=4, compile=True)
    x, y = eager.reset(seed=4), comp.reset(seed=4)
    assert torch.equal(x.obs["agent"], y.obs["agent"])
    g = torch.Generator().manual_seed(0)
    for _ in range(40):
        a = {"agent": torch.randint(0, 5, (16, 8), generator=g)}
        x, y = eager.step(a), comp.step(a)
        assert torch.equal(x.obs["agent"], y.obs["agent"]) and torch.equal(x.reward["agent"], y.reward["agent"])
    assert all(torch.equal(eager.state_dict()[k], comp.state_dict()[k]) for k in eager._STATE)


@pytest.mark.slow
def test_train_cli_ippo_on_rware(tmp_path, capsys):
    argv = ["train", "--algo", "ippo", "--env", "rware-tiny-2ag-v2", "--total-steps", "4000", "--num-envs", "8",
            "--num-steps", "50", "--num-minibatches", "2", "--runs-dir", str(tmp_path), "--name", "rw",
            "--eval-interval", "0", "--eval-episodes", "2", "--checkpoint-interval", "0", "--no-progress",
            "--threads", "1"]
    assert main(argv) == 0
    run = tmp_path / "rw"
    assert json.loads((run / "config.json").read_text())["env"] == "rware-tiny-2ag-v2"
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    assert int(rows[-1]["step"]) == 4000
    assert float(rows[-1]["episode_length"]) == 500  # one whole 500-step episode per env
    evals = list(csv.DictReader(open(run / "eval.csv")))
    assert evals and all(0 <= float(r["return_det"]) < 50 and float(r["episodes_det"]) == 2 for r in evals)
    assert all(float(r["episode_length_det"]) == 500 for r in evals)
    assert np.isfinite(float(rows[-1]["return"])) and float(rows[-1]["episodes"]) == 8
