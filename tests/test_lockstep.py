"""Several learners sharing one env in lockstep (fastmarl.algos.lockstep) through the one training loop."""

from __future__ import annotations

import pytest
import torch
from crash import Crash, crash_after

from fastmarl.algos.lockstep import Lockstep
from fastmarl.algos.q_learning import QLearner
from fastmarl.algos.tabular import TabularQ
from fastmarl.config import QConfig, TabularConfig, validate_q_config
from fastmarl.envs import make
from fastmarl.envs.scripted_tag import TagPreyScripted
from fastmarl.envs.wrappers import ScriptedGroups
from fastmarl.train.checkpoint import latest_checkpoint
from fastmarl.train.loop import LoopSettings, run_loop
from fastmarl.train.pool import sub_spec
from fastmarl.train.rundir import RunDir

torch.set_num_threads(1)
E = 4


def _q(spec, groups, seed, steps=400):
    cfg = QConfig(algo="iql", env="simple_tag_v3", total_steps=steps, num_envs=E, seed=seed, recurrent=False,
                  hidden_size=16, num_layers=1, buffer_size=40, batch_size=4, learning_starts=4, update_interval=8,
                  epsilon_anneal_steps=200, target_update_interval=5)
    sub = sub_spec(spec, groups)
    return QLearner(sub, cfg, validate_q_config(cfg, sub), "cpu")


def _settings(steps, checkpoint_interval=0):
    return LoopSettings(seed=3, total_steps=steps, log_interval=40, eval_interval=0, eval_episodes=0,
                        checkpoint_interval=checkpoint_interval, keep_checkpoints=5, gif=False, tensorboard=False,
                        progress=False, title="lockstep simple_tag_v3", info={"algo": "lockstep", "env": "simple_tag_v3"})


def _scripted_prey_env():
    env = make("simple_tag_v3", num_envs=E, seed=3, max_cycles=10)
    return ScriptedGroups(env, {"agent": TagPreyScripted(env.spec)})


def _equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("kind", ["deep", "tabular"])
def test_one_member_equals_the_learner_alone(kind):
    """A Lockstep of one member is that learner: same weights and log rows after the same run."""
    def learner(spec):
        torch.manual_seed(0)
        if kind == "deep":
            return _q(spec, ["adversary"], seed=1)
        return TabularQ(sub_spec(spec, ["adversary"]), TabularConfig(total_steps=400, seed=1, bins=2, low=-1.0, high=1.0,
                                                                     warn_entries=10**7), "cpu")

    env = _scripted_prey_env()
    alone = learner(env.spec)
    res_alone = run_loop(_settings(400), alone, env, None)
    env = _scripted_prey_env()
    member = learner(env.spec)
    res_lock = run_loop(_settings(400), Lockstep({"predators": (member, ["adversary"])}, 400), env, None)
    assert _equal(alone.weights(), member.weights())
    drop = lambda r: {k.removeprefix("predators/"): v for k, v in r.items() if k not in ("time", "sps")}  # noqa: E731
    assert [drop(r) for r in res_lock.history] == [drop(r) for r in res_alone.history]
    assert len(res_lock.history) == 10 and "predators/epsilon" in res_lock.history[0]


def _two_sided(seed=3):
    env = make("simple_tag_v3", num_envs=E, seed=seed, max_cycles=10)
    torch.manual_seed(seed)
    predators = _q(env.spec, ["adversary"], seed=11)
    prey = _q(env.spec, ["agent"], seed=12)
    return env, Lockstep({"predators": (predators, ["adversary"]), "prey": (prey, ["agent"])}, 400)


def test_predators_and_prey_learn_together_and_resume_exactly(tmp_path):
    env, whole = _two_sided()
    (tmp_path / "whole").mkdir()
    run_loop(_settings(400, 80), whole, env, None, run=RunDir(tmp_path / "whole"))
    preds, prey = (whole.members[n].learner for n in ("predators", "prey"))
    assert preds.num_updates > 0 and prey.num_updates > 0  # both learned from the shared transitions
    assert set(whole.weights()) == {f"predators/{k}" for k in preds.weights()} | {f"prey/{k}" for k in prey.weights()}
    # killed at step 200: the last checkpoint is step 160 (replay buffers included), resumed from there
    env, cut = _two_sided()
    (tmp_path / "cut").mkdir()
    with pytest.raises(Crash):
        run_loop(_settings(400, 80), cut, env, None, run=RunDir(tmp_path / "cut"), callback=crash_after(50))
    ckpt = latest_checkpoint(tmp_path / "cut" / "checkpoints")
    assert ckpt.name == "step_000000000160"
    assert {"predators.replay.safetensors", "prey.replay.safetensors"} <= {p.name for p in ckpt.iterdir()}
    env, resumed = _two_sided()
    run_loop(_settings(400, 80), resumed, env, None, run=RunDir(tmp_path / "cut"), resume_from=ckpt)
    assert _equal(resumed.weights(), whole.weights())
    for name in ("predators", "prey"):
        a, b = resumed.members[name].learner, whole.members[name].learner
        assert (a.num_updates, a.epsilon, a.env_steps) == (b.num_updates, b.epsilon, b.env_steps)


def test_members_must_cover_the_env_once():
    env, _ = _two_sided()
    p = _q(env.spec, ["adversary"], seed=1)
    with pytest.raises(ValueError, match="group 'adversary' belongs to both member 'a' and member 'b'"):
        Lockstep({"a": (p, ["adversary"]), "b": (p, ["adversary"])}, 100)
    with pytest.raises(ValueError, match=r"no member acts for \['agent'\]"):
        Lockstep({"a": (p, ["adversary"])}, 100).begin(env, 0)
