"""Competitive envs: QMIX/VDN need to be told which groups the mixer serves (with the reason),
and every headline return is per group there, never a mean over opposing teams."""

from __future__ import annotations

import pytest
import torch

import fastmarl
from fastmarl.cli.train import train_main
from fastmarl.config import ConfigError, PPOConfig, QConfig, TrainConfig, validate_q_config
from fastmarl.envs.episodes import EpisodeTracker, evaluate_policy, format_headline, headline
from fastmarl.envs.scripted import RandomPolicy
from fastmarl.envs.wrappers import ScriptedGroups
from fastmarl.train import train
from fastmarl.train.runner import build_learner


def _spec(env_id, **kw):
    return fastmarl.make(env_id, num_envs=1, seed=0, **kw).spec


def test_teams_of_the_competitive_envs():
    assert _spec("simple_tag_v3").team_groups == (("adversary",), ("agent",)) and _spec("simple_tag_v3").competitive
    assert _spec("simple_world_comm_v3").team_groups == (("leadadversary", "adversary"), ("agent",))
    assert _spec("simple_crypto_v3").team_groups == (("eve",), ("alice", "bob"))
    assert not _spec("simple_speaker_listener_v4").competitive  # two groups, one team
    assert not _spec("pursuit_evasion_v0", scripted_evaders=True).competitive  # the evaders are not agents
    tag = fastmarl.make("simple_tag_v3", num_envs=2, seed=0)
    prey_scripted = ScriptedGroups(tag, {"agent": RandomPolicy(tag.spec)})
    assert prey_scripted.spec.teams == (("adversary",),) and not prey_scripted.spec.competitive
    with pytest.raises(ValueError, match=r"teams .* must put every group of \['a', 'b'\] in exactly one"):
        type(tag.spec)("x", {"a": tag.spec.groups["adversary"], "b": tag.spec.groups["agent"]}, 0, 1,
                       teams=(("a",),))


@pytest.mark.parametrize("algo", ["vdn", "qmix"])
def test_mixing_on_a_competitive_env_is_refused_with_the_reason(algo):
    spec = _spec("simple_tag_v3")
    with pytest.raises(ConfigError, match=rf"{algo} on simple_tag_v3: its groups are opposing teams \(adversary vs "
                                          r"agent\), and a mixer learns the joint value of one team's reward; say "
                                          r"which groups the mixer serves with mixer_groups") as info:
        validate_q_config(QConfig(algo=algo, env="simple_tag_v3"), spec)
    assert info.value.fields == ("mixer_groups",)
    learner = build_learner(QConfig(algo=algo, env="simple_tag_v3", mixer_groups=["adversary"]), spec, "cpu")
    assert set(learner.mixers) == {"adversary"}  # the prey learn as IQL
    both = build_learner(QConfig(algo=algo, env="simple_tag_v3", mixer_groups=["agent", "adversary"]), spec, "cpu")
    assert set(both.mixers) == {"adversary", "agent"}
    coop = _spec("simple_speaker_listener_v4")
    assert set(build_learner(QConfig(algo=algo, env="simple_speaker_listener_v4"), coop, "cpu").mixers) == \
        {"speaker", "listener"}
    with pytest.raises(ConfigError, match=r"'adversry' \(did you mean 'adversary'\?\)"):
        validate_q_config(QConfig(algo=algo, env="simple_tag_v3", mixer_groups=["adversry"]), spec)
    with pytest.raises(ConfigError, match="iql has no mixer"):
        validate_q_config(QConfig(algo="iql", env="simple_tag_v3", mixer_groups=["adversary"]), spec)


def test_the_cli_names_the_flag(tmp_path, capsys):
    assert train_main(["--algo", "qmix", "--env", "simple_tag_v3", "--runs-dir", str(tmp_path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "say which groups the mixer serves with --mixer-groups (e.g. adversary" in err and not any(tmp_path.iterdir())


def test_evaluation_and_training_returns_are_per_group_on_competitive_envs():
    env = fastmarl.make("simple_tag_v3", num_envs=16, seed=0)
    res = evaluate_policy(RandomPolicy(env.spec), env, deterministic=False, seed=1)
    assert "return" not in res and "return_std" not in res
    assert {"return/adversary", "return/agent", "return_std/adversary", "return_std/agent"} <= set(res)
    assert res["return/agent"] < 0 <= res["return/adversary"]  # the prey pay for the catches (and the walls)
    assert headline(res) == {"return/adversary": res["return/adversary"], "return/agent": res["return/agent"]}
    assert format_headline(res) == f"adversary {res['return/adversary']:.2f}, agent {res['return/agent']:.2f}"
    coop = fastmarl.make("simple_speaker_listener_v4", num_envs=4, seed=0)
    r = evaluate_policy(RandomPolicy(coop.spec), coop, seed=1)
    assert headline(r) == {"return": r["return"]} and format_headline(r) == f"{r['return']:.2f}"
    # the training tracker: per-group returns only, the mean over both teams nowhere
    tracker, ts = EpisodeTracker(env.spec, 16, "cpu"), env.reset(seed=0)
    pol, gen, carry = RandomPolicy(env.spec), torch.Generator().manual_seed(0), {}
    for _ in range(env.spec.max_episode_steps):
        actions, carry = pol.act(ts, carry, False, gen)
        ts = env.step(actions)
        tracker(ts)
    out = tracker.pop()
    assert out["episodes"] == 16 and "return" not in out and {"return/adversary", "return/agent"} <= set(out)


def test_a_competitive_run_reports_each_group(tmp_path, capsys):
    res = train(TrainConfig(env="simple_tag_v3", algo="ippo", num_envs=4, total_steps=200, eval_episodes=4,
                            runs_dir=str(tmp_path), name="tag", gif=False, tensorboard=False, progress=False,
                            threads=1, ppo=PPOConfig(num_steps=25, num_minibatches=1)))
    assert "return_det" not in res.metrics and {"return_det/adversary", "return_det/agent"} <= set(res.metrics)
    assert {"return_train/adversary", "return_train/agent"} <= set(res.metrics)
    header = (tmp_path / "tag" / "eval.csv").read_text().splitlines()[0].split(",")
    assert "return_det" not in header and "return_det/adversary" in header
    assert "eval return: deterministic adversary" in capsys.readouterr().out
