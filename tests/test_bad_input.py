"""Malformed actions and make() arguments fail early, with messages that help.

Every rejected step must leave the env exactly as it was: the world state and
the RNG are compared with a twin env that never saw the bad call.
"""

from __future__ import annotations

import pytest
import torch

import fastmarl
from fastmarl.envs import ActionError
from fastmarl.envs.api import check_known_keys

E = 3  # simple_spread_v3, N=3: group "agent" with 3 agents


def _twins(continuous: bool):
    kw = dict(num_envs=E, seed=0, continuous_actions=continuous)
    a, b = fastmarl.make("simple_spread_v3", **kw), fastmarl.make("simple_spread_v3", **kw)
    a.reset(seed=1), b.reset(seed=1)
    return a, b


def _valid(continuous: bool) -> dict[str, torch.Tensor]:
    if continuous:
        return {"agent": torch.full((E, 3, 5), 0.5).index_fill_(2, torch.tensor([2]), 1.0)}
    return {"agent": torch.full((E, 3), 2, dtype=torch.long)}


def _snapshot(env):
    s = env.world_state
    return [s.pos.clone(), s.vel.clone(), s.comm.clone(), s.t.clone(), env._gen.get_state().clone()]


def _bad_cases(continuous: bool):
    good = _valid(continuous)["agent"]
    cases = [
        # (name, actions, fragments the message must contain: group, expected, received)
        ("non-dict", [good], ["['agent']", "must be a dict", "got list"]),
        ("missing group", {}, ["missing ['agent']", "expected exactly ['agent']"]),
        ("extra group", {"agent": good, "adversary": good}, ["unexpected ['adversary']", "expected exactly ['agent']"]),
        ("not a tensor", {"agent": good.numpy()}, ["'agent'", "expected a torch.Tensor", "got ndarray"]),
        ("wrong device", {"agent": torch.empty(good.shape, dtype=good.dtype, device="meta")},
         ["'agent'", "expected a tensor on device cpu", "got meta"]),
    ]
    if continuous:
        nan = good.clone()
        nan[1, 2, 3] = float("nan")
        high = good.clone()
        high[0, 1, 4] = 1.5
        low = good.clone()
        low[2, 0, 0] = -0.25
        cases += [
            ("wrong shape", {"agent": good[:, :2]}, ["'agent'", "shape (3, 3, 5)", "got (3, 2, 5)"]),
            ("missing action axis", {"agent": good[..., 0]}, ["'agent'", "shape (3, 3, 5)", "got (3, 3)"]),
            ("wrong dtype", {"agent": good.long()}, ["'agent'", "floating dtype", "torch.int64"]),
            ("above range", {"agent": high}, ["'agent'", "1.5", "0.0 <= a <= 1.0"]),
            ("below range", {"agent": low}, ["'agent'", "-0.25", "0.0 <= a <= 1.0"]),
            ("NaN", {"agent": nan}, ["'agent'", "NaN", "finite values in [0.0, 1.0]"]),
        ]
    else:
        cases += [
            ("wrong shape", {"agent": good[:2]}, ["'agent'", "shape (3, 3)", "got (2, 3)"]),
            ("one-hot instead of index", {"agent": torch.nn.functional.one_hot(good, 5)},
             ["'agent'", "shape (3, 3)", "got (3, 3, 5)"]),
            ("float dtype", {"agent": good.float()}, ["'agent'", "integer dtype for Discrete(5)", "torch.float32"]),
            ("bool dtype", {"agent": good > 0}, ["'agent'", "integer dtype", "torch.bool"]),
            ("above range", {"agent": good.clone().index_fill_(1, torch.tensor([1]), 5)},
             ["'agent'", "discrete action 5 out of range", "0 <= a < 5"]),
            ("negative", {"agent": good.clone().index_fill_(0, torch.tensor([2]), -1)},
             ["'agent'", "discrete action -1 out of range", "0 <= a < 5"]),
        ]
    return cases


@pytest.mark.parametrize("continuous", [False, True], ids=["discrete", "continuous"])
def test_bad_actions_raise_and_leave_env_unchanged(continuous):
    env, twin = _twins(continuous)
    valid = _valid(continuous)
    for name, actions, fragments in _bad_cases(continuous):
        before = _snapshot(env)
        with pytest.raises(ActionError) as info:
            env.step(actions)
        msg = str(info.value)
        for frag in fragments:
            assert frag in msg, f"{name}: message {msg!r} should contain {frag!r}"
        for x, y in zip(before, _snapshot(env)):
            assert torch.equal(x, y), f"{name}: the failed step changed the env state"
        # a valid step then works and matches the twin that never saw the bad call
        ts, ts_twin = env.step(valid), twin.step(valid)
        for g in ts.obs:
            assert torch.equal(ts.obs[g], ts_twin.obs[g]) and torch.equal(ts.reward[g], ts_twin.reward[g]), name
        assert torch.equal(env.state(), twin.state())


def test_validation_is_on_by_default():
    env = fastmarl.make("simple_spread_v3", num_envs=2, seed=0)
    env.reset(seed=0)
    assert env.validate
    with pytest.raises(ActionError):
        env.step({"agent": torch.full((2, 3), 9)})


# ---------------------------------------------------------------------------
# make()
# ---------------------------------------------------------------------------


def test_check_known_keys_names_each_unknown_key():
    known = {"lr": 1, "gamma": 2, "gae_lambda": 3}
    check_known_keys({"lr": 0, "gamma": 0}, known, "PPOConfig key")  # all known: nothing raised
    check_known_keys([], known, "PPOConfig key")
    with pytest.raises(ValueError) as info:
        check_known_keys(["lrr", "gama", "zzz"], known, "PPOConfig key")
    assert str(info.value) == ("unknown PPOConfig key: 'lrr' (did you mean 'lr'?), 'gama' (did you mean 'gamma'?), "
                               "'zzz'; valid: ['gae_lambda', 'gamma', 'lr']")
    with pytest.raises(TypeError, match=r"^unknown thing: 'b'; valid: \['a'\]$"):
        check_known_keys("ab", "a", "thing", TypeError)  # any iterables of names, any error type


def test_unknown_env_id_suggests_close_matches():
    with pytest.raises(KeyError, match=r"unknown env id .*: 'simple_sprad_v3' \(did you mean 'simple_spread_v3'\?\)"):
        fastmarl.make("simple_sprad_v3")
    with pytest.raises(KeyError, match=r"did you mean 'simple_tag_v3'"):
        fastmarl.make("simple_tag_v2")
    with pytest.raises(KeyError, match=r"unknown env id .*: 'pong'; valid: \[.*'simple_spread_v3'") as info:
        fastmarl.make("pong")
    assert "did you mean" not in str(info.value)  # nothing close: no misleading hint


def test_unknown_kwarg_is_named_with_suggestions():
    with pytest.raises(TypeError, match=r"unknown simple_spread_v3 keyword argument: 'local_ration' "
                                        r"\(did you mean 'local_ratio'\?\)"):
        fastmarl.make("simple_spread_v3", local_ration=0.3)
    with pytest.raises(TypeError, match=r"'max_cycle' \(did you mean 'max_cycles'\?\)"):
        fastmarl.make("simple_spread_v3", max_cycle=10)
    with pytest.raises(TypeError, match=r"'continuous' \(did you mean 'continuous_actions'\?\)"):
        fastmarl.make("simple_spread_v3", continuous=True)
    with pytest.raises(TypeError, match=r"valid: \[.*'N'.*'local_ratio'"):
        fastmarl.make("simple_spread_v3", zzz=1)


@pytest.mark.parametrize("kwargs, match", [
    (dict(N=0), r"N must be a positive int, got 0"),
    (dict(N=-2), r"N must be a positive int, got -2"),
    (dict(N=2.5), r"N must be a positive int, got 2\.5"),
    (dict(N="3"), r"N must be a positive int, got '3'"),
    (dict(local_ratio=1.5), r"local_ratio is a proportion in \[0, 1\], got 1\.5"),
    (dict(local_ratio=-0.1), r"local_ratio is a proportion in \[0, 1\], got -0\.1"),
])
def test_invalid_scenario_values_raise_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        fastmarl.make("simple_spread_v3", **kwargs)


@pytest.mark.parametrize("num_envs", [0, -1, 1.5, True])
def test_invalid_num_envs(num_envs):
    with pytest.raises(ValueError, match="num_envs must be a positive int"):
        fastmarl.make("simple_spread_v3", num_envs=num_envs)


def test_bad_reset_mask():
    env = fastmarl.make("simple_spread_v3", num_envs=3, seed=0)
    for mask in (torch.ones(2, dtype=torch.bool), torch.ones(3), [True, False, True]):
        with pytest.raises(ValueError, match=r"reset mask must be a bool tensor of shape \(3,\)"):
            env.reset(mask=mask)


@pytest.mark.parametrize("env_id", ["simple_spread_v3", "traffic_grid_v0", "market_v0", "influence_v0",
                                    "jammer_v0", "swarm_coverage_v0", "waterworld_v0", "matrix_climbing_v0"])
def test_reset_mask_validated_everywhere(env_id):
    env = fastmarl.make(env_id, num_envs=3, seed=0)
    env.reset(seed=0)
    for bad in (torch.ones(2, dtype=torch.bool), torch.ones(3), [True, False, True]):
        with pytest.raises(ValueError, match=r"reset mask must be a bool tensor of shape \(3,\)"):
            env.reset(mask=bad)
    ts = env.reset(mask=torch.tensor([True, False, True]))
    assert all(o.shape[0] == 3 for o in ts.obs.values())


def _missing_devices() -> list[str]:
    """Devices this machine lacks: a CUDA index past the last GPU, and mps off Apple silicon."""
    out = [f"cuda:{torch.cuda.device_count()}"]
    if not torch.cuda.is_available():
        out.append("cuda")
    if not torch.backends.mps.is_available():
        out.append("mps")
    return out


@pytest.mark.parametrize("device", _missing_devices())
def test_a_missing_device_is_one_line_naming_what_is_available(device, tmp_path):
    from mpe2 import simple_spread_v3

    from fastmarl.config import ConfigError, TrainConfig
    from fastmarl.envs.api import available_devices
    from fastmarl.envs.pz_vecenv import from_pettingzoo
    from fastmarl.train import train

    avail = ", ".join(available_devices())
    assert avail.startswith("cpu")
    want = rf"^device '{device}' is not available: .+; available: {avail}$"
    with pytest.raises(ValueError, match=want):
        fastmarl.make("simple_spread_v3", num_envs=2, device=device)
    with pytest.raises(ValueError, match=want):
        from_pettingzoo(lambda: simple_spread_v3.parallel_env(), 2, device=device)
    with pytest.raises(ConfigError, match=want) as info:
        train(TrainConfig(device=device, num_envs=2, runs_dir=str(tmp_path)))
    assert info.value.fields == ("device",) and not any(tmp_path.iterdir())
    if device.startswith("cuda") and not torch.backends.cuda.is_built():
        assert f"this PyTorch ({torch.__version__}) was built without CUDA" in str(info.value)


def test_a_device_torch_does_not_know_is_named():
    with pytest.raises(ValueError, match=r"^device 'gpu' is not a torch device \(.*\); available: cpu"):
        fastmarl.make("simple_spread_v3", device="gpu")


def test_unknown_env_id_message_stays_short_with_thousands_of_variant_ids():
    with pytest.raises(KeyError) as info:
        fastmarl.make("pong")
    msg = str(info.value)
    assert len(msg) < 3000 and "variant ids (lbf, rware" in msg and "'rware-tiny-2ag-v2'" in msg
    assert "rware-img-Nd-large-10ag-easy-v2" not in msg  # an unlisted variant is not spelled out ...
    assert "Foraging-2s-19x19-9p-4f-v3" not in msg and "'Foraging-8x8-2p-2f-coop-v3'" in msg
    with pytest.raises(KeyError, match=r"did you mean 'rware-small-4ag-v2'"):  # ... but still suggested
        fastmarl.make("rware-smal-4ag-v2")
    with pytest.raises(KeyError, match=r"did you mean 'Foraging-2s-12x12-3p-2f-v3'"):
        fastmarl.make("Foraging-2s-12x12-3p-2f-v2")
