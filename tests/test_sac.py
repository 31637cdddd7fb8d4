"""MASAC / ISAC: the soft target (twin-min, entropy term, done masking) and the tanh log-prob
correction against hand computations, the temperature update, exact resume, a NaN stop, the
refusals, learning a continuous toy game with a known optimum and a discrete matrix game, and a
short continuous simple_spread run through the CLI."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch
from crash import Crash, crash_after, updates
from peakgame import TARGET, TOY, PeakGame, train_on
from test_ppo_toyenv import TickEnv, one_thread  # noqa: F401 (autouse fixture)

import fastmarl
from fastmarl.algos.learner import NonFiniteLoss
from fastmarl.algos.offpolicy import REPLAY_FILE
from fastmarl.algos.sac import SACLearner, alpha_loss, sac_target, squashed_gaussian
from fastmarl.cli import main
from fastmarl.config import ConfigError, SACConfig, validate_offpolicy
from fastmarl.train.checkpoint import latest_checkpoint

# -- the soft target ------------------------------------------------------------------------


def test_sac_target_matches_a_hand_computation():
    """gamma 0.9, alpha 0.5; two transitions of two agents, the second terminated."""
    r = torch.tensor([[1.0, 2.0], [3.0, -1.0]])
    term = torch.tensor([False, True])
    q1 = torch.tensor([[3.0, 5.0], [7.0, 7.0]])
    q2 = torch.tensor([[4.0, 1.0], [9.0, 9.0]])
    logp = torch.tensor([[-1.0, 2.0], [0.0, 0.0]])
    # row 0: min = (3, 1); v = (3 + 0.5, 1 - 1) = (3.5, 0); y = (1 + 0.9 * 3.5, 2 + 0) ; row 1: y = r
    want = torch.tensor([[4.15, 2.0], [3.0, -1.0]])
    torch.testing.assert_close(sac_target(r, term, 0.9, q1, q2, 0.5, logp), want)
    # discrete: one agent, two actions with probs (0.25, 0.75), Q'1 = (2, 6), Q'2 = (4, 2), log p = (-2, -0.5)
    # v = 0.25 * (2 - 0.5 * -2) + 0.75 * (2 - 0.5 * -0.5) = 0.75 + 1.6875 = 2.4375; y = 1 + 0.5 * 2.4375
    y = sac_target(torch.tensor([[1.0]]), torch.tensor([0.0]), 0.5, torch.tensor([[[2.0, 6.0]]]),
                   torch.tensor([[[4.0, 2.0]]]), 0.5, torch.tensor([[[-2.0, -0.5]]]), torch.tensor([[[0.25, 0.75]]]))
    torch.testing.assert_close(y, torch.tensor([[2.21875]]))


def test_tanh_gaussian_log_prob_has_the_change_of_variables_correction():
    out = torch.tensor([[0.3, -1.2, math.log(0.5), math.log(2.0)]])  # mean (0.3, -1.2), std (0.5, 2)
    gen = torch.Generator().manual_seed(3)
    u, logp = squashed_gaussian(out, gen)
    eps = torch.randn(1, 2, generator=torch.Generator().manual_seed(3))
    x = torch.tensor([[0.3, -1.2]]) + torch.tensor([[0.5, 2.0]]) * eps
    torch.testing.assert_close(u, torch.tanh(x))
    dist = torch.distributions.Normal(torch.tensor([0.3, -1.2]), torch.tensor([0.5, 2.0]))
    want = (dist.log_prob(x) - torch.log(1 - torch.tanh(x) ** 2)).sum(-1)
    torch.testing.assert_close(logp, want)
    u_det, _ = squashed_gaussian(out, None, deterministic=True)
    torch.testing.assert_close(u_det, torch.tanh(torch.tensor([[0.3, -1.2]])))


def _learner(**kw) -> tuple[SACLearner, PeakGame]:
    env = PeakGame(4)
    cfg = SACConfig(**{**TOY, "num_envs": 4, **kw})
    return SACLearner(env.spec, cfg, validate_offpolicy(cfg, env.spec)), env


def _batch(B: int, terminated: bool) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return {"obs/agent": torch.ones(B, 2, 2, 1), "state": torch.ones(B, 2, 1),
            "action/agent": torch.rand(B, 2, 2, generator=g) * 2 - 1, "reward/agent": torch.randn(B, 2, generator=g),
            "terminated": torch.full((B,), terminated)}


@pytest.mark.parametrize("algo", ["masac", "isac"])
def test_learner_targets_take_the_twin_min_the_entropy_term_and_mask_dones(algo):
    """Target critics that output the constants 3 and 5: y = r + gamma (3 - alpha log pi(a')) with a'
    the learner's own sample (same generator state); terminated transitions: y = r exactly."""
    learner, _ = _learner(algo=algo, gamma=0.9, alpha_init=0.4)
    with torch.no_grad():
        for net, c in zip(learner.target_critics["agent"].nets, (3.0, 5.0)):
            net.head.weight.zero_()
            net.head.bias.fill_(c)
    batch = _batch(6, terminated=False)
    state = learner.generator.get_state()
    y = learner.targets(batch)["agent"]
    gen = torch.Generator().set_state(state)
    _, logp = squashed_gaussian(learner.actors["agent"](batch["obs/agent"][:, 1]), gen)
    torch.testing.assert_close(y, batch["reward/agent"] + 0.9 * (3.0 - 0.4 * logp))
    done = _batch(6, terminated=True)
    torch.testing.assert_close(learner.targets(done)["agent"], done["reward/agent"])


def test_temperature_update():
    """d/d log_alpha of mean(log_alpha (H - H_target)) is mean(H) - H_target; one learner step moves
    log alpha by alpha_lr (Adam's first step) towards the target: up while the entropy is below it."""
    log_alpha = torch.nn.Parameter(torch.tensor(0.0))
    alpha_loss(log_alpha, torch.tensor([1.0, 2.0]), -1.0).backward()
    torch.testing.assert_close(log_alpha.grad, torch.tensor(2.5))
    for target, sign in ((50.0, 1.0), (-50.0, -1.0)):
        learner, _ = _learner(alpha_init=0.2, alpha_lr=0.01, target_entropy=target)
        learner.learn(_batch(32, terminated=False))
        moved = learner.log_alpha["agent"].item() - math.log(0.2)
        assert moved == pytest.approx(sign * 0.01, rel=1e-3)
    fixed, _ = _learner(alpha_init=0.2, autotune_alpha=False)
    fixed.learn(_batch(32, terminated=False))
    assert fixed.log_alpha["agent"].item() == pytest.approx(math.log(0.2))


# -- learning -------------------------------------------------------------------------------

@pytest.mark.parametrize("algo", ["masac", pytest.param("isac", marks=pytest.mark.slow)])
def test_learns_the_continuous_peak_game(algo):
    """Random joint actions score about -1.7; the optimum (TARGET) scores 1 (seeds 0-2 reach 0.97-0.998)."""
    res = train_on(PeakGame, SACConfig(algo=algo, **TOY))
    assert res.final_eval["return_det"] > 0.9
    a, _ = res.learner.act(PeakGame(1).reset(), {}, deterministic=True)
    assert (a["agent"][0] - TARGET).abs().max() < 0.25


def test_masac_learns_a_discrete_matrix_game():
    """matrix_monotonic_v0: the best joint action (0, 0) pays 10 (uniform random: 3.6)."""
    cfg = SACConfig(algo="masac", **{**TOY, "env": "matrix_monotonic_v0", "total_steps": 3000})
    res = train_on(lambda n: fastmarl.make("matrix_monotonic_v0", num_envs=n), cfg)
    assert res.final_eval["return_det"] == 10.0


def test_box_actions_are_mapped_onto_the_env_box():
    """u in [-1, 1] -> low + (u + 1) / 2 (high - low), for a [0, 2] box."""
    env = PeakGame(2, 0.0, 2.0)
    cfg = SACConfig(**{**TOY, "num_envs": 2})
    learner = SACLearner(env.spec, cfg, validate_offpolicy(cfg, env.spec))
    u = torch.tensor([[[-1.0, 0.0], [0.5, 1.0]]]).expand(2, 2, 2)
    torch.testing.assert_close(learner.codec.to_env({"agent": u})["agent"], u + 1.0)


# -- bad input ------------------------------------------------------------------------------

def test_envs_it_cannot_handle_are_refused_with_the_algorithms_that_apply():
    spec = fastmarl.make("swarm_coverage_v0").spec  # discrete actions with action masks
    with pytest.raises(ConfigError, match=r"masac cannot train on swarm_coverage_v0: .*action masks.*algorithms "
                                          r"that apply to swarm_coverage_v0: mappo, ippo, .*iql, vdn, qmix") as e:
        validate_offpolicy(SACConfig(env="swarm_coverage_v0"), spec)
    assert not {"masac", "isac", "maddpg", "iddpg"} & set(str(e.value).rsplit(": ", 1)[1].split(", "))
    no_state = TickEnv(state=False, masks=False).spec
    with pytest.raises(ConfigError, match="has no state.*use algo='isac'"):
        validate_offpolicy(SACConfig(algo="masac"), no_state)
    validate_offpolicy(SACConfig(algo="isac"), no_state)
    with pytest.raises(ConfigError, match=r"unknown SACConfig key: 'alpha_int' \(did you mean 'alpha_init'\?\)"):
        SACConfig.from_dict({"alpha_int": 0.1})
    with pytest.raises(ConfigError, match="tau must be in"):
        validate_offpolicy(SACConfig(tau=2.0), fastmarl.make("simple_spread_v3").spec)


# -- resume and NaN -------------------------------------------------------------------------

def _cfg(tmp_path, name: str, **kw) -> SACConfig:
    # 4 envs x 25-step continuous simple_spread; checkpoints every 180 env steps (mid-episode), a 12-episode
    # buffer that wraps, an update every 8 env steps after 100
    base = dict(algo="masac", env="simple_spread_v3", env_kwargs={"N": 2, "continuous_actions": True},
                total_steps=720, num_envs=4, batch_size=16, buffer_size=12, learning_starts=100, update_interval=8,
                hidden_size=16, log_interval=100, eval_interval=360, eval_episodes=2, checkpoint_interval=180,
                keep_checkpoints=2, threads=1, runs_dir=str(tmp_path), name=name, progress=False)
    return SACConfig(**{**base, **kw})


@pytest.mark.parametrize("kw", [dict(), pytest.param(dict(algo="isac", env_kwargs={"N": 2}, share_params=False),
                                                     marks=pytest.mark.slow)],
                         ids=["masac-continuous", "isac-discrete-per-agent"])
def test_resume_after_a_crash_equals_an_uninterrupted_run(tmp_path, kw):
    full = fastmarl.train(_cfg(tmp_path, "full", **kw))
    with pytest.raises(Crash):  # after the checkpoint at 360 (45 updates ~ step 460)
        fastmarl.train(_cfg(tmp_path, "crashed", **kw), callback=crash_after(45, updates))
    assert latest_checkpoint(tmp_path / "crashed" / "checkpoints").name == "step_000000000360"
    assert (latest_checkpoint(tmp_path / "crashed" / "checkpoints") / REPLAY_FILE).is_file()
    resumed = fastmarl.train(resume=tmp_path / "crashed")
    assert resumed.metrics["steps"] == full.metrics["steps"] == 720
    # half an update per 4-env collect; the credit held at 1 through warm-up: 1.5 at step 100, then 155 more
    # collects: 1.5 + 77.5 = 79
    assert resumed.metrics["updates"] == full.metrics["updates"] == 79
    a, b = full.learner.weights(), resumed.learner.weights()
    assert a.keys() == b.keys() and any(k.startswith("target_critics") for k in a) and "log_alpha.agent" in a
    for k in a:
        assert torch.equal(a[k], b[k]), k
    strip = lambda rows: [{k: v for k, v in r.items() if k not in ("time", "sps")} for r in rows]  # noqa: E731
    assert strip(resumed.history) == strip(full.history)
    assert resumed.evals == full.evals


def test_a_nan_loss_stops_the_run_naming_step_loss_and_checkpoint(tmp_path, capsys):
    def poison(info):  # after the checkpoint at step 360: the critics output NaN from now on
        if info.step == 360:
            with torch.no_grad():
                info.learner.critics["agent"].nets[0].head.bias.fill_(float("nan"))

    with pytest.raises(NonFiniteLoss) as e:
        fastmarl.train(_cfg(tmp_path, "nan"), callback=poison)
    # one update per two 4-env collects: the first after the poison comes at step 368
    assert e.value.step == 368 and e.value.loss == "critic_loss/agent" and math.isnan(e.value.value)
    assert e.value.checkpoint == str(tmp_path / "nan" / "checkpoints" / "step_000000000360")
    assert "loss 'critic_loss/agent' is nan at env step 368" in str(e.value) and "step_000000000360" in str(e.value)


# -- the command line -----------------------------------------------------------------------

@pytest.mark.parametrize("algo", ["masac", pytest.param("isac", marks=pytest.mark.slow)])
def test_short_continuous_simple_spread_run_through_the_cli(tmp_path, capsys, algo):
    argv = ["train", "--algo", algo, "--env", "simple_spread_v3", "--env-kwargs", "continuous_actions=True",
            "--total-steps", "1200", "--num-envs", "8", "--learning-starts", "400", "--batch-size", "64",
            "--hidden-size", "32", "--log-interval", "600", "--eval-episodes", "4", "--threads", "1",
            "--no-progress", "--runs-dir", str(tmp_path), "--name", "r"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "final eval return per agent: deterministic" in out and "stochastic" in out
    run = tmp_path / "r"
    saved = json.loads((run / "config.json").read_text())
    assert saved["algo"] == algo and saved["env_kwargs"] == {"continuous_actions": True}
    rows = (run / "metrics.csv").read_text().splitlines()
    assert len(rows) == 3 and "critic_loss/agent" in rows[0] and "alpha/agent" in rows[0]
    ckpt = latest_checkpoint(run / "checkpoints")
    assert ckpt.name == "step_000000001200" and (ckpt / REPLAY_FILE).is_file()
    assert main(["eval", str(run), "--episodes", "3", "--json"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["step"] == 1200 and -200 < res["return_det"] < 0
    assert main(["train", "--algo", algo, "--env", "swarm_coverage_v0", "--runs-dir", str(tmp_path)]) == 2
    assert "action masks" in capsys.readouterr().err
    more = fastmarl.train(dataclasses.replace(SACConfig.from_dict(saved), total_steps=1600), resume=run)
    assert more.global_step == 1600
