"""Competitive training: Elo maths, the self-play pool, per-group learners, frozen and scripted groups,
the evaluation matrix and config validation (fastmarl.train.selfplay, fastmarl.train.pool,
fastmarl.analysis.competitive, fastmarl.analysis.elo, fastmarl.config.competitive)."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch

from fastmarl.analysis.competitive import play_matrix
from fastmarl.analysis.competitive import train_and_evaluate as train
from fastmarl.analysis.elo import elo_sequence, elo_update, expected_score, fit_elo, matrix_scores
from fastmarl.config import ConfigError, PPOConfig
from fastmarl.config.competitive import CompetitiveConfig, GroupSetup, parse_groups
from fastmarl.envs import make
from fastmarl.envs.api import JointPolicy
from fastmarl.envs.mpe.geometry import axis_move
from fastmarl.train.checkpoint import CheckpointError
from fastmarl.train.pool import (
    list_snapshots,
    load_group_policy,
    load_snapshot,
    policy_learner,
    prioritised_weights,
    register_scripted,
    sample_snapshot,
    save_snapshot,
    sub_spec,
)
from fastmarl.train.selfplay import learner_config

torch.set_num_threads(1)

TINY = PPOConfig(num_steps=10, num_epochs=2, num_minibatches=2, hidden_size=16, num_layers=1)


class Chase:
    """simple_tag (3 adversaries, 1 prey, 2 obstacles): every adversary steps toward the prey; the prey's
    relative position is the last of the adversary's 'other agents' slots, obs[12:14]."""

    def initial_carry(self, n):
        return {}

    def act(self, ts, carry, deterministic=True, generator=None):
        return {"adversary": axis_move(ts.obs["adversary"][..., 12:14])}, carry


class Seek:
    """simple_tag prey that walks into the nearest adversary (obs[8:14]: the three adversaries)."""

    def initial_carry(self, n):
        return {}

    def act(self, ts, carry, deterministic=True, generator=None):
        rel = ts.obs["agent"][..., 8:14].reshape(*ts.obs["agent"].shape[:2], 3, 2)
        nearest = rel.norm(dim=-1).argmin(-1)
        d = torch.gather(rel, 2, nearest[..., None, None].expand(-1, -1, 1, 2))[:, :, 0]
        return {"agent": axis_move(d)}, carry


def _tiny(tmp_path, **kw) -> CompetitiveConfig:
    base = dict(env="simple_tag_v3", num_envs=8, total_steps=320, phase_steps=160, snapshot_interval=0,
                eval_interval=0, eval_episodes=2, matrix_episodes=0, runs_dir=str(tmp_path), progress=False,
                plots=False, ppo=TINY)
    return CompetitiveConfig(**{**base, **kw})


def _weights(policy) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in policy.weights().items()}


# -- Elo --------------------------------------------------------------------------------

def test_elo_update_on_a_known_result_sequence():
    # A beats B from 1500/1500 with K=32: expected 0.5, so +-16
    assert elo_update(1500, 1500, 1.0) == (1516.0, 1484.0)
    # then a draw: E_A = 1 / (1 + 10^(-32/400)) = 0.5459219, A loses 32 * 0.0459219 = 1.46950
    ra, rb = elo_update(1516, 1484, 0.5)
    assert expected_score(1516, 1484) == pytest.approx(0.5459219228, abs=1e-10)
    assert (ra, rb) == (pytest.approx(1514.5304985, abs=1e-6), pytest.approx(1485.4695015, abs=1e-6))
    # then B wins: E_A = 0.5417249, A loses 32 * 0.5417249 = 17.33520
    seq = elo_sequence([("A", "B", 1.0), ("A", "B", 0.5), ("B", "A", 1.0)])
    assert seq["A"] == pytest.approx(1497.1953025, abs=1e-6)
    assert seq["B"] == pytest.approx(1502.8046975, abs=1e-6)
    assert seq["A"] + seq["B"] == pytest.approx(3000.0)  # ratings are conserved


def test_fit_elo_recovers_known_ratings():
    true = np.array([1500.0, 1700.0, 1300.0, 1550.0])
    p = 1 / (1 + 10 ** ((true[None] - true[:, None]) / 400))  # p[i, j] = P(i beats j)
    games = np.full((4, 4), 1000.0) - 1000.0 * np.eye(4)
    fitted = fit_elo(games * p, games, prior_games=0.0)
    assert fitted - fitted.mean() == pytest.approx(true - true.mean(), abs=1e-6)
    assert fitted.mean() == pytest.approx(1500.0)
    # bipartite (only cross pairs played, as in a snapshot matrix): differences are still identified
    cross = games.copy()
    cross[:2, :2] = cross[2:, 2:] = 0
    fitted = fit_elo(cross * p, cross, prior_games=0.0)
    assert fitted - fitted.mean() == pytest.approx(true - true.mean(), abs=1e-6)


def test_fit_elo_prior_keeps_a_clean_sweep_finite():
    # player 0 beats 1 in every game, 1 beats 2 in every game: the MLE diverges, the prior does not
    scores = np.array([[0, 10, 0], [0, 0, 10], [0, 0, 0]], dtype=float)
    games = np.array([[0, 10, 0], [10, 0, 10], [0, 10, 0]], dtype=float)
    r = fit_elo(scores, games, prior_games=1.0)
    assert np.isfinite(r).all() and r[0] > r[1] > r[2]
    assert r[0] - r[1] == pytest.approx(r[1] - r[2], abs=1e-6)  # symmetric data, symmetric gaps


def test_matrix_scores_are_per_seed_percentile_ranks():
    # 2 x 2 cells, 2 seeds; advantage x = ret_a - ret_b
    ret_a = torch.tensor([[[1.0, 0.0], [2.0, 0.0]], [[3.0, 0.0], [3.0, 1.0]]])
    ret_b = torch.zeros_like(ret_a)
    s = matrix_scores(ret_a, ret_b)
    # seed 0: x = 1, 2, 3, 3 -> ranks (0, 1, 2.5, 2.5) / 3; seed 1: x = 0, 0, 0, 1 -> (1, 1, 1, 3) / 3
    expected = torch.tensor([[0 + 1, 1 + 1], [2.5 + 1, 2.5 + 3]]) / 3 / 2
    assert s == pytest.approx(expected, abs=1e-6)


# -- the pool --------------------------------------------------------------------------------

def test_pool_snapshot_round_trip(tmp_path):
    env = make("simple_tag_v3", num_envs=2, seed=0)
    torch.manual_seed(3)
    learner = policy_learner(env.spec, "agent", "ippo", TINY, "cpu")
    with torch.no_grad():  # not the init values, so a reload that re-initialises would show
        for p in learner.nets.parameters():
            p.add_(torch.randn_like(p))
    path = save_snapshot(tmp_path / "pool", "agent", 1234, learner, "ippo")
    assert path.name == "step_000000001234" and list_snapshots(tmp_path / "pool", "agent") == [path]
    loaded, manifest = load_snapshot(path, env.spec)
    assert (manifest["step"], manifest["group"], manifest["algo"]) == (1234, "agent", "ippo")
    a, b = learner.weights(), loaded.weights()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not loaded.centralized and list(loaded.nets) == ["agent"]
    again = load_group_policy(path, "agent", env.spec)
    assert all(torch.equal(a[k], again.weights()[k]) for k in a)
    with pytest.raises(ConfigError, match="group 'agent', not 'adversary'"):
        load_group_policy(path, "adversary", env.spec)
    weights = path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8])
    with pytest.raises(CheckpointError, match="model.safetensors"):
        load_snapshot(path, env.spec)


def test_frozen_group_from_a_fastmarl_train_run(tmp_path):
    from fastmarl.algos.ppo import PPO
    from fastmarl.config import TrainConfig, resolve
    from fastmarl.train.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint

    # a `fastmarl train` run directory: config.json + checkpoints/ of one PPO over both groups
    cfg = TrainConfig(algo="ippo", env="simple_tag_v3", num_envs=2, total_steps=20, ppo=TINY)
    env = make("simple_tag_v3", num_envs=2)
    torch.manual_seed(11)
    full = PPO(env.spec, cfg, resolve(cfg, env.spec))
    run_dir = tmp_path / "plain"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(json.dumps(cfg.to_dict()))
    save_checkpoint(run_dir / "checkpoints", 20, full.weights(), {}, {"iteration": 1})
    policy = load_group_policy(run_dir, "agent", env.spec)
    saved, _, _ = load_checkpoint(latest_checkpoint(run_dir / "checkpoints"), trainer=False)
    mine = policy.weights()
    assert set(mine) == {k for k in saved if k.startswith("agent.")}
    assert all(torch.equal(saved[k], v) for k, v in mine.items())
    # and it plays as a frozen group in a competitive run
    frozen = GroupSetup(mode="frozen", checkpoint=str(run_dir))
    out = train(_tiny(tmp_path, name="vs_plain", groups={"agent": frozen}))
    assert all(torch.equal(saved[k], v) for k, v in out.fixed["agent"].weights().items())


def test_opponent_sampling(tmp_path):
    snaps = [tmp_path / f"step_{i:012d}" for i in range(6)]
    gen = torch.Generator().manual_seed(0)
    assert sample_snapshot(snaps, "latest", 3, gen) == snaps[-1]
    drawn = {sample_snapshot(snaps, "uniform", 3, gen).name for _ in range(200)}
    assert drawn == {s.name for s in snaps[-3:]}  # only the newest pool_size
    # prioritised: returns [unseen, 1, 3] -> min 1, std 1 -> weights [1, 1, e^-2]
    w = prioritised_weights([None, 1.0, 3.0])
    assert w.tolist() == pytest.approx([1.0, 1.0, math.exp(-2.0)])
    stats = {snaps[-1].name: 10.0, snaps[-2].name: 0.0}  # the learner does worst against snaps[-2]
    counts = {s.name: 0 for s in snaps[-2:]}
    for _ in range(400):
        counts[sample_snapshot(snaps, "prioritised", 2, gen, stats).name] += 1
    # weights exp(0) : exp(-10 / 5) -> P(snaps[-1]) = 0.119
    assert counts[snaps[-1].name] / 400 == pytest.approx(math.exp(-2) / (1 + math.exp(-2)), abs=0.05)


# -- training ----------------------------------------------------------------------------------

def test_mixed_algorithms_mappo_predators_vs_ippo_prey(tmp_path):
    cfg = _tiny(tmp_path, schedule="simultaneous", name="mixed",
                groups={"adversary": GroupSetup(algo="mappo"), "agent": GroupSetup(algo="ippo", ppo={"lr": 1e-3})})
    env = make("simple_tag_v3", num_envs=8, seed=0)
    torch.manual_seed(0)
    res = train(cfg)
    adv, prey = res.learners["adversary"], res.learners["agent"]
    assert adv.centralized and not prey.centralized
    assert (adv.p.lr, prey.p.lr) == (3e-3, 1e-3)
    ts = env.reset(seed=0)
    spec = env.spec
    net_a, net_p = adv.nets["adversary"], prey.nets["agent"]
    # MAPPO critic: state + own obs + one-hot id of 3 agents; IPPO critic: own obs (one prey: no id)
    assert net_a.critic_input(ts.obs["adversary"], env.state()).shape[-1] == \
        spec.state_dim + spec.groups["adversary"].obs_dim + 3
    assert net_p.critic_input(ts.obs["agent"], None).shape[-1] == spec.groups["agent"].obs_dim
    rows = list(csv.DictReader(open(res.run_dir / "metrics.csv")))
    assert len(rows) == 4 and all(r["learning"] == "adversary+agent" for r in rows)
    assert all(math.isfinite(float(r[f"policy_loss/{g}"])) for r in rows for g in ("adversary", "agent"))
    for g, learner in res.learners.items():  # both learned: final weights differ from the step-0 snapshot
        first = load_snapshot(list_snapshots(res.run_dir / "pool", g)[0], spec)[0].weights()
        assert any(not torch.equal(first[k], v) for k, v in learner.weights().items())
    saved = json.loads((res.run_dir / "config.json").read_text())
    assert saved["kind"] == "competitive" and CompetitiveConfig.from_dict(saved).groups["agent"].ppo == {"lr": 1e-3}


def test_alternate_schedule_snapshots_and_opponents(tmp_path):
    # phases of 160 steps (2 iterations of 8 envs x 10 steps): adversary, agent, adversary, agent
    res = train(_tiny(tmp_path, total_steps=640, opponent_sampling="latest", name="alt"))
    rows = list(csv.DictReader(open(res.run_dir / "metrics.csv")))
    assert [r["learning"] for r in rows] == ["adversary"] * 2 + ["agent"] * 2 + ["adversary"] * 2 + ["agent"] * 2
    steps = lambda g: [int(p.name[5:]) for p in list_snapshots(res.run_dir / "pool", g)]  # noqa: E731
    assert steps("adversary") == [0, 160, 480] and steps("agent") == [0, 320, 640]
    # "latest": each learner played the newest snapshot of the other side
    assert [int(r["opponent/agent"]) for r in rows if r["learning"] == "adversary"] == [0, 0, 320, 320]
    assert [int(r["opponent/adversary"]) for r in rows if r["learning"] == "agent"] == [160, 160, 480, 480]
    # the adversary did not learn in the last phase: its weights are those of its last snapshot
    last = load_snapshot(list_snapshots(res.run_dir / "pool", "adversary")[-1], res.learners["adversary"].spec)[0]
    assert all(torch.equal(v, last.weights()[k]) for k, v in res.learners["adversary"].weights().items())


def test_prioritised_opponents_come_from_the_pool(tmp_path):
    res = train(_tiny(tmp_path, total_steps=640, opponent_sampling="prioritised", pool_size=2,
                      snapshot_interval=80, name="prio"))
    rows = list(csv.DictReader(open(res.run_dir / "metrics.csv")))
    snaps = {g: [int(p.name[5:]) for p in list_snapshots(res.run_dir / "pool", g)] for g in ("adversary", "agent")}
    for r in rows:
        learner, = [g for g in ("adversary", "agent") if r["learning"] == g]
        other = "agent" if learner == "adversary" else "adversary"
        step = int(r["step"]) - 80  # the iteration started here
        older = [s for s in snaps[other] if s <= step]
        assert int(r[f"opponent/{other}"]) in older[-2:]  # one of the newest pool_size=2 at that time


def test_frozen_group_never_changes(tmp_path):
    env = make("simple_tag_v3", num_envs=2, seed=0)
    torch.manual_seed(5)
    prey = policy_learner(env.spec, "agent", "mappo", TINY, "cpu")
    snap = save_snapshot(tmp_path / "src", "agent", 0, prey, "mappo")
    before = _weights(prey)
    res = train(_tiny(tmp_path, name="frozen", groups={"agent": GroupSetup(mode="frozen", checkpoint=str(snap))}))
    frozen = res.fixed["agent"]
    assert all(torch.equal(before[k], v) for k, v in frozen.weights().items())
    assert not (res.run_dir / "pool" / "agent").exists()
    first = load_snapshot(list_snapshots(res.run_dir / "pool", "adversary")[0], env.spec)[0].weights()
    assert any(not torch.equal(first[k], v) for k, v in res.learners["adversary"].weights().items())


class Recorder:
    """Wraps an env; records the observations and actions of one group at every step."""

    def __init__(self, env, group):
        self.env, self.group, self.log = env, group, []
        self.spec, self.num_envs, self.device = env.spec, env.num_envs, env.device
        self._obs = None

    def reset(self, seed=None, mask=None):
        ts = self.env.reset(seed=seed, mask=mask)
        self._obs = ts.obs[self.group]
        return ts

    def step(self, actions):
        self.log.append((self._obs.clone(), actions[self.group].clone()))
        ts = self.env.step(actions)
        self._obs = ts.obs[self.group]
        return ts

    def state(self):
        return self.env.state()


def test_scripted_group_gets_exactly_the_scripted_actions(tmp_path):
    register_scripted("test_seek", lambda spec: Seek())
    env = Recorder(make("simple_tag_v3", num_envs=8, seed=0), "agent")
    train(_tiny(tmp_path, name="scripted", groups={"agent": GroupSetup(mode="scripted", scripted="test_seek")}),
          env=env)
    assert len(env.log) == 40  # 4 iterations x 10 steps; evaluation uses its own env
    obs = torch.stack([o for o, _ in env.log])
    acts = torch.stack([a for _, a in env.log])
    from fastmarl.envs.api import TimeStep

    expected = Seek().act(TimeStep(obs={"agent": obs.flatten(0, 1)}, reward={}, terminated=None, truncated=None,
                                    final_obs={}), {})[0]["agent"]
    assert torch.equal(acts.flatten(0, 1), expected)
    assert len(acts.unique()) > 1  # not trivially constant


def test_matrix_orders_hand_made_policies():
    env = make("simple_tag_v3", num_envs=64, seed=0)
    spec = env.spec
    from fastmarl.train.pool import NoopPolicy

    adversaries = {"noop": NoopPolicy(sub_spec(spec, ["adversary"])), "chase": Chase()}
    prey = {"noop": NoopPolicy(sub_spec(spec, ["agent"])), "seek": Seek()}
    ra, rb = play_matrix(env, ("adversary", adversaries), ("agent", prey), seed=1)
    mean = ra.mean(-1)
    # predators that chase catch a still prey (no-op predators almost never touch it); a prey that seeks
    # the nearest predator runs into still predators and loses return against them
    assert mean[1, 0] > mean[0, 0] + 5 and mean[0, 1] > mean[0, 0] + 5
    assert rb.mean(-1)[0, 0] > rb.mean(-1)[0, 1] + 5
    s = matrix_scores(ra, rb).numpy()
    wins = np.zeros((4, 4))
    games = np.zeros((4, 4))
    wins[:2, 2:], wins[2:, :2] = 64 * s, 64 * (1 - s).T
    games[:2, 2:] = games[2:, :2] = 64
    r = fit_elo(wins, games)
    assert r[1] > r[0] + 100  # chase >> noop predator
    assert r[2] > r[3]  # noop > seeking prey


# -- validation -----------------------------------------------------------------------------------

def test_config_validation_errors(tmp_path):
    def bad(match, **kw):
        with pytest.raises(ConfigError, match=match):
            train(_tiny(tmp_path, **kw))

    bad(r"unknown group of simple_tag_v3: 'predator'; valid: \['adversary', 'agent'\]",
        groups={"predator": GroupSetup()})
    bad(r"unknown PPOConfig key in groups.agent.ppo: 'lrr' \(did you mean 'lr'\?\)",
        groups={"agent": GroupSetup(ppo={"lrr": 1.0})})
    bad("checkpoint is needed by, and only by, mode 'frozen'", groups={"agent": GroupSetup(mode="frozen")})
    bad(r"unknown scripted policy for simple_tag_v3 .*register_scripted\): 'nope' \(did you mean 'noop'\?\)",
        groups={"agent": GroupSetup(mode="scripted", scripted="nope")})
    bad("ppo overrides apply to trained groups only",
        groups={"agent": GroupSetup(mode="random", ppo={"lr": 1.0})})
    bad("num_steps must be equal", groups={"agent": GroupSetup(ppo={"num_steps": 5})})
    bad("no group is trained", groups={"agent": GroupSetup(mode="random"), "adversary": GroupSetup(mode="random")})
    bad("opponent_sampling must be one of", opponent_sampling="best")
    bad("pool_size must be an integer >= 1", pool_size=0)
    with pytest.raises(ConfigError, match="unknown CompetitiveConfig key: 'pool_sise' \\(did you mean 'pool_size'"):
        CompetitiveConfig.from_dict({"pool_sise": 3})
    with pytest.raises(ConfigError, match="unknown GroupSetup key in groups.agent: 'algorithm' \\(did you mean 'algo'"):
        CompetitiveConfig.from_dict({"groups": {"agent": {"algorithm": "ippo"}}})
    assert not any(tmp_path.iterdir())  # every error surfaced before a run directory was written


def test_parse_groups_and_cli(tmp_path):
    g = parse_groups(["adversary=mappo", "agent=ippo,lr=0.001,hidden_size=8", "x=scripted:baseline", "y=random",
                      "z=frozen:runs/a"])
    assert g["adversary"] == GroupSetup(algo="mappo")
    assert g["agent"] == GroupSetup(algo="ippo", ppo={"lr": 0.001, "hidden_size": 8})
    assert (g["x"].mode, g["x"].scripted, g["y"].mode, g["z"].checkpoint) == ("scripted", "baseline", "random",
                                                                              "runs/a")
    with pytest.raises(ValueError, match="unknown mode 'sarsa'"):
        parse_groups(["agent=sarsa"])
    with pytest.raises(ValueError, match="group 'agent' is given twice"):
        parse_groups(["agent=ippo", "agent=random"])
    from fastmarl.cli import main

    rc = main(["selfplay", "--env", "simple_tag_v3", "--groups", "agent=ippo,lr=0.001", "--total-steps", "320",
               "--num-envs", "8", "--num-steps", "10", "--num-minibatches", "2", "--hidden-size", "16",
               "--phase-steps", "160", "--eval-episodes", "2", "--matrix-episodes", "4", "--runs-dir",
               str(tmp_path), "--name", "cli", "--no-progress", "--threads", "1"])
    assert rc == 0
    ratings = list(csv.DictReader(open(tmp_path / "cli" / "ratings.csv")))
    # adversary learns in steps 0-160, agent in 160-320: two snapshots per side, plus random
    assert [(r["group"], r["policy"]) for r in ratings] == [
        ("adversary", "step 0"), ("adversary", "step 160"), ("adversary", "random"),
        ("agent", "step 0"), ("agent", "step 320"), ("agent", "random")]
    assert (tmp_path / "cli" / "ratings.png").is_file() and (tmp_path / "cli" / "matrix.csv").is_file()
    assert main(["selfplay", "--groups", "predator=ippo", "--runs-dir", str(tmp_path)]) == 2
    # a competitive run resumes from its latest checkpoint, here with a longer budget
    assert main(["selfplay", "--resume", str(tmp_path / "cli"), "--total-steps", "480", "--no-progress"]) == 0
    steps = [int(r["step"]) for r in csv.DictReader(open(tmp_path / "cli" / "metrics.csv"))]
    assert steps == [80, 160, 240, 320, 400, 480]


def test_learner_config_seeds_differ():
    cfg = CompetitiveConfig()
    a = learner_config(cfg, "adversary", GroupSetup(), 0)
    b = learner_config(cfg, "agent", GroupSetup(), 1)
    assert a.seed != b.seed and a.ppo == b.ppo == cfg.ppo
    assert JointPolicy({"a": a, "b": a}).sources == [(a, ["a", "b"])]  # one policy, acting once


@pytest.mark.parametrize("env_id", ["simple_tag_v3", "simple_adversary_v3", "pursuit_evasion_v0", "jammer_v0",
                                    "swarm_defense_v0"])
def test_selfplay_on_every_competitive_env(tmp_path, env_id):
    res = train(CompetitiveConfig(env=env_id, env_kwargs={"max_cycles": 10}, num_envs=4, total_steps=160,
                                  phase_steps=40, snapshot_interval=0,
                                  eval_interval=0, eval_episodes=2, matrix_episodes=2, matrix_max_snapshots=2,
                                  runs_dir=str(tmp_path), name="smoke", progress=False, plots=False, ppo=TINY))
    a, b = list(res.learners)
    rows = list(csv.DictReader(open(res.run_dir / "matrix.csv")))
    ratings = list(csv.DictReader(open(res.run_dir / "ratings.csv")))
    n_a = sum(r["group"] == a for r in ratings)
    assert len(rows) == n_a * (len(ratings) - n_a)
    # percentile-rank scores average exactly 0.5 over the cells of a matrix; ratings have mean 1500
    assert np.mean([float(r[f"score/{a}"]) for r in rows]) == pytest.approx(0.5, abs=1e-5)
    assert np.mean([float(r["rating"]) for r in ratings]) == pytest.approx(1500.0, abs=0.01)
    has_baseline = env_id != "simple_tag_v3" and env_id != "simple_adversary_v3"
    assert any(r["policy"] == "baseline" for r in ratings) == has_baseline


def test_baseline_policy_gets_the_env_kwargs_it_accepts():
    from fastmarl.train.pool import scripted_policy

    for env_id, kwargs in [("pursuit_evasion_v0", {"num_pursuers": 2, "max_cycles": 10}),
                           ("jammer_v0", {"num_jammers": 3, "max_cycles": 10})]:  # jammer's takes no kwargs
        env = make(env_id, num_envs=3, seed=0, **kwargs)
        policy = scripted_policy("baseline", env, kwargs)
        actions, _ = policy.act(env.reset(seed=0), policy.initial_carry(3))
        for g, spec in env.spec.groups.items():
            assert actions[g].shape == (3, spec.num_agents)
        env.step(actions)  # valid actions (the env validates them)
    with pytest.raises(ConfigError, match=r"unknown scripted policy for simple_tag_v3 .*: 'baseline'; valid: \['noop'"):
        scripted_policy("baseline", make("simple_tag_v3"))


def test_eval_of_a_competitive_run_dir_explains_itself(tmp_path):
    import json

    from fastmarl.config import ConfigError
    from fastmarl.train.runner import evaluate_run

    (tmp_path / "config.json").write_text(json.dumps({"kind": "competitive", "env": "simple_tag_v3"}))
    with pytest.raises(ConfigError, match="competitive .self-play. run"):
        evaluate_run(tmp_path, episodes=1)
