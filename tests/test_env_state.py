"""The env-state protocol (``SavableEnv`` in fastmarl.envs.api): an env saved
mid-episode and restored into a fresh copy steps exactly as the original, bit for
bit, through episode ends (auto-reset draws from the saved generator), for every
registered env, the wrappers, and MPE curricula."""

from __future__ import annotations

import io

import pytest
import torch

import fastmarl
from fastmarl.envs import list_envs
from fastmarl.envs.api import SavableEnv, TimeStep, env_state_dict, load_env_state_dict
from fastmarl.envs.comm_wrappers import AgentPositions, BroadcastChannel
from fastmarl.envs.scripted import RandomPolicy
from fastmarl.envs.scripted_tag import TagPreyScripted
from fastmarl.envs.wrappers import DiscretizeObservation, Discretizer, ScriptedGroups

E = 3


def _through_disk(state: dict) -> dict:
    """What a checkpoint does with it: torch.save, then a weights-only load."""
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


def _assert_same(a: TimeStep, b: TimeStep, env_a, env_b, where: str) -> None:
    for name in ("obs", "reward", "final_obs", "action_mask", "alive"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), f"{where}: {name}"
        if x is not None:
            assert x.keys() == y.keys(), f"{where}: {name}"
            for g in x:
                assert torch.equal(x[g], y[g]), f"{where}: {name}[{g}] differs"
    for name in ("terminated", "truncated"):
        assert torch.equal(getattr(a, name), getattr(b, name)), f"{where}: {name} differs"
    if env_a.spec.state_dim > 0:
        assert torch.equal(env_a.state(), env_b.state()), f"{where}: state() differs"


def _check_resume(build, before: int = 7, after: int | None = None) -> None:
    """Step ``build()`` ``before`` steps, save it, step on; a second ``build()``
    (with other start states) loads the save and must match every later step."""
    env = build(seed=0)
    assert isinstance(env, SavableEnv)
    after = after or 2 * (env.spec.max_episode_steps or 10) + 3  # across at least one auto-reset
    policy, gen = RandomPolicy(env.spec), torch.Generator().manual_seed(1)
    ts = env.reset(seed=0)
    for _ in range(before):
        ts = env.step(policy.act(ts, {}, generator=gen)[0])
    saved = _through_disk(env_state_dict(env))
    copy = build(seed=123)
    copy.reset(seed=123)
    assert load_env_state_dict(copy, saved)
    for t in range(after):
        actions, _ = policy.act(ts, {}, generator=gen)
        ts, ts_copy = env.step(actions), copy.step(actions)
        _assert_same(ts, ts_copy, env, copy, f"{env.spec.env_id}, step {t} after the restore")


@pytest.mark.parametrize("env_id", [e.env_id for e in list_envs()])
def test_every_registered_env_resumes_exactly(env_id):
    _check_resume(lambda seed: fastmarl.make(env_id, num_envs=E, seed=seed), after=60)


@pytest.mark.parametrize("env_id", ["simple_spread_v3", "simple_tag_v3"])
def test_curriculum_stage_is_saved(env_id):
    env = fastmarl.make(env_id, num_envs=E, seed=0, curriculum=True)
    env.advance_curriculum()
    saved = _through_disk(env_state_dict(env))
    assert saved["curriculum_stage"] == 1
    fresh = fastmarl.make(env_id, num_envs=E, seed=5, curriculum=True)
    assert fresh.curriculum_stage == 0
    load_env_state_dict(fresh, saved)
    assert fresh.curriculum_stage == 1

    def build(seed):
        e = fastmarl.make(env_id, num_envs=E, seed=seed, curriculum=True)
        if seed == 0:  # only the original advances: the copy gets its stage from the saved state
            e.advance_curriculum()
        return e

    _check_resume(build)  # simple_tag's stage sets the prey's speed at each reset


def test_curriculum_state_does_not_load_into_an_env_without_one():
    saved = env_state_dict(fastmarl.make("simple_tag_v3", num_envs=E, seed=0, curriculum=True))
    plain = fastmarl.make("simple_tag_v3", num_envs=E, seed=0)
    before = plain.world_state.pos.clone()
    with pytest.raises(ValueError, match="curriculum"):
        plain.load_state_dict(saved)
    assert torch.equal(plain.world_state.pos, before)


def test_state_of_another_batch_size_is_rejected():
    for env_id in ("simple_spread_v3", "traffic_grid_v0"):
        saved = env_state_dict(fastmarl.make(env_id, num_envs=E, seed=0))
        with pytest.raises(ValueError, match="shape"):
            load_env_state_dict(fastmarl.make(env_id, num_envs=E + 1, seed=0), saved)


def test_wrappers_delegate_to_the_wrapped_env():
    _check_resume(lambda seed: BroadcastChannel(fastmarl.make("simple_reference_v3", num_envs=E, seed=seed),
                                                comm_range=0.8, flip_prob=0.2, drop_prob=0.2))
    _check_resume(lambda seed: AgentPositions(fastmarl.make("simple_spread_v3", num_envs=E, seed=seed)))
    _check_resume(lambda seed: DiscretizeObservation(fastmarl.make("simple_v3", num_envs=E, seed=seed),
                                                     Discretizer(4, "bins", bins=3, low=-2.0, high=2.0)))


def test_envs_that_cannot_be_saved_say_so():
    # ScriptedGroups holds its policies' carries and the last TimeStep: not savable (the trainer resets it)
    inner = fastmarl.make("simple_tag_v3", num_envs=E, seed=0)
    env = ScriptedGroups(inner, {"agent": TagPreyScripted(inner.spec)})
    assert env_state_dict(env) is None and not load_env_state_dict(env, env_state_dict(inner))
    # a wrapper around it has nothing to save either
    wrapped = AgentPositions(env, positions=lambda e: inner.world_state.pos[:, : inner.world.A])
    assert env_state_dict(wrapped) is None and not load_env_state_dict(wrapped, None)
