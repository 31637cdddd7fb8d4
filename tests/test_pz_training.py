"""Training through from_pettingzoo: ``TrainConfig(env="pz:mpe2.simple_spread_v3")``."""

import math

import pytest
import torch

import fastmarl
from fastmarl.cli.train import train_main
from fastmarl.config import ConfigError, PPOConfig, TrainConfig
from fastmarl.train import evaluate_run, train
from fastmarl.train.runner import _make_env, pettingzoo_factory

pytest.importorskip("mpe2")

PZ_SPREAD = "pz:mpe2.simple_spread_v3"


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _cfg(tmp_path, **kw) -> TrainConfig:
    base = dict(algo="mappo", env=PZ_SPREAD, env_kwargs={"N": 3, "max_cycles": 25}, num_envs=8,
                total_steps=8 * 25 * 12, seed=3, runs_dir=str(tmp_path), name="pz", eval_interval=1200,
                eval_episodes=8, gif=False, tensorboard=False, progress=False, ppo=PPOConfig(num_minibatches=2))
    base.update(kw)
    return TrainConfig(**base)


def test_mappo_trains_on_mpe2_through_from_pettingzoo(tmp_path):
    res = train(_cfg(tmp_path, gif=True))  # the GIF's env is created with render_mode="rgb_array"
    assert res.global_step == 2400
    row = res.last_train
    # 8 envs x 25 steps per iteration = one 25-step episode per env per iteration
    assert row["episodes"] == 8 and row["episode_length"] == 25
    for key in ("return", "policy_loss/agent", "value_loss/agent", "entropy/agent", "approx_kl/agent"):
        assert math.isfinite(row[key]), (key, row)
    # a softmax over 5 actions, 12 updates from near-uniform (log 5 = 1.61): lower, far from collapsed
    assert 0.5 < row["entropy/agent"] < math.log(5)
    ev = res.final_eval
    assert ev["episodes_det"] == 8 and ev["episode_length_det"] == 25
    # spread returns per agent lie between about -60 (agents wandering off) and 0
    for mode in ("det", "stoch"):
        assert -80 < ev[f"return_{mode}"] < 0, ev
    assert (res.run_dir / "episode.gif").stat().st_size > 1000
    # the run directory alone reloads the policy on the PettingZoo env
    again = evaluate_run(res.run_dir, episodes=8)
    assert again["step"] == 2400
    assert again["return_det"] == pytest.approx(ev["return_det"], rel=1e-5)


def test_pz_env_matches_the_native_spec():
    env = _make_env(_cfg("unused"), num_envs=2, seed=0)
    native = fastmarl.make("simple_spread_v3", num_envs=2, N=3)
    assert env.spec.env_id == "simple_spread_v3"
    (g,), (n,) = env.spec.groups.values(), native.spec.groups.values()
    assert g.agents == n.agents == ("agent_0", "agent_1", "agent_2")
    assert (g.obs_dim, g.action_dim, g.discrete) == (n.obs_dim, n.action_dim, n.discrete) == (18, 5, True)
    assert env.spec.state_dim == native.spec.state_dim == 54
    assert env.spec.max_episode_steps == 25


@pytest.mark.parametrize("env_id, message", [
    ("pz:no_such_package.simple_spread_v3", "cannot import 'no_such_package.simple_spread_v3'"),
    ("pz:mpe2.no_such_env_v0", "cannot import 'mpe2.no_such_env_v0'"),
    ("pz:", "expected pz:<importable module"),
    ("pz:mpe2/simple_spread_v3", "expected pz:<importable module"),
    ("pz:math", "has no parallel_env() or env() factory"),
])
def test_bad_pz_ids_are_clear_errors(tmp_path, env_id, message):
    with pytest.raises(ConfigError) as info:
        train(_cfg(tmp_path, env=env_id))
    assert message in str(info.value)
    assert not (tmp_path / "pz").exists()  # nothing written before the env is valid


def test_bad_pz_id_on_the_command_line(tmp_path, capsys):
    code = train_main(["--env", "pz:no_such_package.x", "--runs-dir", str(tmp_path), "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err
    assert "fastmarl train: error:" in err and "cannot import 'no_such_package.x'" in err


def test_unknown_pz_kwarg_names_it():
    make = pettingzoo_factory(PZ_SPREAD, {"bogus_kwarg": 1})
    with pytest.raises(TypeError, match="bogus_kwarg"):
        make()
