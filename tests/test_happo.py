"""HAPPO checked with numbers: the per-agent Adam, the sequential ratio product and the surrogate against
hand computations on a tiny batch, the seeded and recorded update order, exact resume, learning a matrix
game and simple_spread, the CLI, and the refusals."""

import copy
import csv
import json
import math

import pytest
import torch
from crash import Crash, crash_after
from test_checkpoint import _assert_same_run
from test_ppo_toyenv import TickEnv, one_thread  # noqa: F401 (autouse fixture)

from fastmarl.algos.actor_critic import logp_entropy
from fastmarl.algos.happo import HAPPO, AgentAdam
from fastmarl.cli import main
from fastmarl.config import ALGORITHMS, ConfigError, HAPPOConfig, HAPPOTrainConfig, PPOConfig, resolve_happo
from fastmarl.envs.matrix import MatrixGame
from fastmarl.train.checkpoint import latest_checkpoint, load_checkpoint
from fastmarl.train.runner import train

# -- the per-agent optimizer ----------------------------------------------------------


def test_agent_adam_equals_adam_shared_and_steps_only_its_agents_slice():
    torch.manual_seed(0)
    grads = [torch.randn(3, 4, 2) for _ in range(7)]
    # shared (one network): torch's Adam, step for step
    w = torch.nn.Parameter(torch.randn(1, 4, 2))
    ref = torch.nn.Parameter(w.detach().clone())
    ours, theirs = AgentAdam([w], 1, lr=0.01), torch.optim.Adam([ref], lr=0.01, eps=1e-5, foreach=False)
    for g in grads:
        w.grad, ref.grad = g[:1].clone(), g[:1].clone()
        ours.step(agent=2)  # any agent: the shared slice 0
        theirs.step()
    assert torch.equal(w, ref)
    # per agent: agent k's slice follows its own Adam over the steps it took, the others stand still
    w = torch.nn.Parameter(torch.randn(3, 4, 2))
    start = w.detach().clone()
    refs = [torch.nn.Parameter(start[k].clone()) for k in range(3)]
    opt = AgentAdam([w], 3, lr=0.01)
    ref_opts = [torch.optim.Adam([r], lr=0.01, eps=1e-5, foreach=False) for r in refs]
    agents = [0, 2, 2, 0, 2, 0, 2]  # agent 1 never steps
    for g, k in zip(grads, agents):
        w.grad = g.clone()  # gradients in every slice: only agent k's may move its weights
        opt.step(agent=k)
        refs[k].grad = g[k].clone()
        ref_opts[k].step()
    for k in range(3):
        assert torch.equal(w[k], refs[k]), k
    assert torch.equal(w[1], start[1]) and opt.agent_steps == [3, 0, 4]
    # state round trip: a restored optimizer takes the same next step
    clone = AgentAdam([torch.nn.Parameter(w.detach().clone())], 3, lr=0.01)
    clone.load_state_dict(copy.deepcopy(opt.state_dict()))  # as a checkpoint would: no shared tensors
    w.grad = clone.param_groups[0]["params"][0].grad = grads[0].clone()
    opt.step(agent=1)
    clone.step(agent=1)
    assert torch.equal(w, clone.param_groups[0]["params"][0]) and clone.agent_steps == [3, 1, 4]


# -- the sequential update on a tiny batch ---------------------------------------------

def _happo(env, E=2, T=2, **kw) -> HAPPO:
    ppo = dict(num_steps=T, num_minibatches=1, num_epochs=1, share_params=False)
    ppo.update(kw.pop("ppo", {}))
    cfg = HAPPOTrainConfig(env="tick_v0", num_envs=E, total_steps=E * T * 4, ppo=PPOConfig(**ppo), **kw)
    return HAPPO(env.spec, cfg, resolve_happo(cfg, env.spec))


def _three_agent_game(E: int) -> MatrixGame:
    payoff = torch.arange(27.0).view(3, 3, 3).tolist()
    return MatrixGame(payoff, num_envs=E, episode_length=2, seed=0)


def test_sequential_ratio_product_by_hand():
    # 3 agents, a rollout of T=2 steps in E=2 envs: 4 samples. Each agent is updated in turn; the factor
    # passed to agent m's surrogate is the product over the agents updated before it of their ratios.
    env = _three_agent_game(2)
    torch.manual_seed(0)
    happo = _happo(env, ppo=dict(lr=0.05))
    happo.begin(env, seed=0)
    happo.collect(env, lambda ts: None)
    b, net = happo.buffer, happo.nets["agent"]
    old = b.logp["agent"].clone()  # (T, E, A)
    seen = []
    agent_loss = happo.agent_loss

    def spy(name, net, i, idx, adv, factor):
        seen.append((i, factor.clone()))
        return agent_loss(name, net, i, idx, adv, factor)

    happo.agent_loss = spy
    happo.update(0.0)
    order = [int(a.split("_")[1]) for a in happo.order]
    assert sorted(order) == [0, 1, 2] and [i for i, _ in seen] == order
    # every agent's actor is final once its turn is over: its new log-probabilities, by a plain forward
    out = net.actor_seq(net.actor_input(b.obs["agent"]), None, None)
    new = logp_entropy(out, net.log_std, None, b.actions["agent"])[0].detach()
    for m, (i, factor) in enumerate(seen):
        for t in range(2):
            for e in range(2):
                want = 1.0
                for j in order[:m]:
                    want *= math.exp(new[t, e, j].item() - old[t, e, j].item())
                assert factor[t, e].item() == pytest.approx(want, rel=1e-5), (m, t, e)
    assert seen[0][1].eq(1.0).all() and not torch.allclose(seen[2][1], torch.ones(2, 2))
    # each agent moved only its own actor slice (per-agent networks)
    assert not torch.allclose(new, old)


def test_agent_surrogate_by_hand():
    # the clipped surrogate of agent i with its standardised advantage times the given factor, clipping the
    # agent's own ratio only (the factor is not clipped)
    env = _three_agent_game(2)
    torch.manual_seed(1)
    happo = _happo(env, ppo=dict(ent_coef=0.0))
    happo.begin(env, seed=0)
    happo.collect(env, lambda ts: None)
    net, b = happo.nets["agent"], happo.buffer
    with torch.no_grad():
        net.actor_head.bias.add_(torch.tensor([[0.5, -0.5, 0.2]]))  # move the policy: ratios != 1
    adv = torch.tensor([[[1.0, -2.0, 0.5], [3.0, 0.5, -1.0]], [[-1.0, 2.0, 1.5], [0.0, -0.5, 2.5]]])
    factor = torch.tensor([[3.0, 0.5], [1.2, 0.1]])
    i = 1
    out = happo.agent_loss("agent", net, i, torch.arange(4), adv, factor)
    a = [adv[t, e, i].item() for t in range(2) for e in range(2)]
    mean = sum(a) / 4
    std = math.sqrt(sum((x - mean) ** 2 for x in a) / 3)
    new = logp_entropy(net.actor_seq(net.actor_input(b.obs["agent"]), None, None), None, None,
                       b.actions["agent"])[0].detach()
    terms = []
    for n, (t, e) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
        r = math.exp(new[t, e, i].item() - b.logp["agent"][t, e, i].item())
        w = factor[t, e].item() * (a[n] - mean) / std
        terms.append(min(r * w, min(max(r, 0.8), 1.2) * w))
    assert any(abs(math.log(math.exp(new[t, e, i].item() - b.logp["agent"][t, e, i].item()))) > 0.2
               for t in range(2) for e in range(2)), "some ratio is outside the clip range"
    assert out["policy_loss"].item() == pytest.approx(-sum(terms) / 4, rel=1e-5)
    assert out["loss"].item() == pytest.approx(-sum(terms) / 4, rel=1e-5)


@pytest.mark.parametrize("recurrent,share", [(False, False), (True, False), (False, True), (True, True)])
def test_every_option_combination_updates_every_agent(recurrent, share):
    env = TickEnv(num_envs=4, limits=[2, 3, 4, 5], terminal=[True, False, True, False])
    torch.manual_seed(0)
    happo = _happo(env, E=4, T=6, ppo=dict(recurrent=recurrent, share_params=share, num_minibatches=2))
    before = {k: v.clone() for k, v in happo.weights().items()}
    happo.begin(env, 0)
    happo.collect(env, lambda ts: None)
    m = happo.update(0.0)
    assert all(math.isfinite(v) for v in m.values()) and m["ratio_product_dev"] > 0
    w = happo.weights()
    head = "agent.actor_head.weight"
    moved = [not torch.equal(w[head][k], before[head][k]) for k in range(w[head].shape[0])]
    assert all(moved) and len(moved) == (1 if share else 2)
    assert not torch.equal(w["box.log_std"], before["box.log_std"])  # the continuous group's actor
    critic = "critic_head.weight"
    assert all(not torch.equal(w[f"{g}.{critic}"], before[f"{g}.{critic}"]) for g in ("agent", "box"))


# -- the order ------------------------------------------------------------------------

def _orders(seed: int, iterations: int = 6, **happo_kw) -> list[list[str]]:
    env = _three_agent_game(4)
    torch.manual_seed(0)
    cfg = HAPPOTrainConfig(env="m", num_envs=4, total_steps=4 * 2 * iterations, seed=seed,
                           ppo=PPOConfig(num_steps=2, num_minibatches=1, num_epochs=1, share_params=False),
                           happo=HAPPOConfig(**happo_kw))
    happo = HAPPO(env.spec, cfg, resolve_happo(cfg, env.spec))
    happo.begin(env, seed)
    orders = []
    for _ in range(iterations):
        happo.collect(env, lambda ts: None)
        happo.update(0.0)
        orders.append(list(happo.order))
    return orders


def test_update_order_is_random_seeded_and_fixed_on_request():
    a, b = _orders(0), _orders(0)
    assert a == b  # seeded
    assert all(sorted(o) == ["agent_0", "agent_1", "agent_2"] for o in a)
    assert len({tuple(o) for o in a}) > 1  # a new order each iteration
    assert a != _orders(1)
    assert all(o == ["agent_0", "agent_1", "agent_2"] for o in _orders(0, fixed_order=True))


def test_order_scope_group_keeps_each_groups_sequence():
    env = TickEnv(num_envs=2, limits=[2, 3])
    torch.manual_seed(0)
    for scope, seqs in [("all", [[("agent", 0), ("agent", 1), ("box", 0)]]),
                        ("group", [[("agent", 0), ("agent", 1)], [("box", 0)]])]:
        happo = _happo(env, happo=HAPPOConfig(order_scope=scope, fixed_order=True))
        assert happo.sequences() == seqs
        happo.begin(env, 0)
        happo.collect(env, lambda ts: None)
        m = happo.update(0.0)  # discrete with masks and continuous groups in one update
        assert all(math.isfinite(v) for v in m.values()) and happo.order == ["agent_0", "agent_1", "box_0"]


# -- resume ------------------------------------------------------------------------------

def _cfg(tmp_path, name, recurrent=False) -> HAPPOTrainConfig:
    # 6 iterations of 16 envs x 10 steps; checkpoints every 2 iterations, evaluations every 3
    return HAPPOTrainConfig(env="simple_spread_v3", env_kwargs={"N": 3}, num_envs=16, total_steps=960, seed=3,
                            runs_dir=str(tmp_path), name=name, checkpoint_interval=320, eval_interval=480,
                            eval_episodes=4, gif=False, tensorboard=False, progress=False, threads=1,
                            ppo=PPOConfig(num_steps=10, num_minibatches=2, num_epochs=2, share_params=False,
                                          recurrent=recurrent))


@pytest.mark.parametrize("recurrent", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_resume_after_a_crash_equals_an_uninterrupted_run(tmp_path, recurrent):
    full = train(_cfg(tmp_path, "full", recurrent))
    with pytest.raises(Crash):  # dies after iteration 5: the last checkpoint is iteration 4's
        train(_cfg(tmp_path, "crashed", recurrent), callback=crash_after(5))
    ckpt = latest_checkpoint(tmp_path / "crashed" / "checkpoints")
    assert ckpt.name == "step_000000000640"
    order_at_4 = load_checkpoint(ckpt)[1]["algo"]["order"]
    assert sorted(order_at_4) == ["agent_0", "agent_1", "agent_2"]
    resumed = train(resume=tmp_path / "crashed")
    assert resumed.global_step == full.global_step == 960
    assert resumed.learner.order == full.learner.order
    _assert_same_run(tmp_path / "full", tmp_path / "crashed")
    final = latest_checkpoint(tmp_path / "crashed" / "checkpoints")
    assert load_checkpoint(final)[1]["algo"]["order"] == full.learner.order
    assert json.loads((tmp_path / "crashed" / "config.json").read_text())["happo"] == {"fixed_order": False,
                                                                                    "order_scope": "all"}


# -- learning ------------------------------------------------------------------------------

def _learn(env: str, steps: int, seed: int, **kw) -> dict:
    cfg = HAPPOTrainConfig(env=env, num_envs=64, total_steps=steps, seed=seed, runs_dir=None, eval_interval=0,
                           eval_episodes=64, gif=False, tensorboard=False, progress=False, threads=1, **kw)
    return train(cfg).final_eval


@pytest.mark.slow
def test_happo_learns_the_climbing_game():
    # 2 agents, one step; the team reward of a uniformly random pair is mean(payoff) = -31/9 = -3.4, the best
    # one-agent-at-a-time improvement path climbs (2,2)=5 -> (1,2)=6 -> (1,1)=7; the optimum (0,0)=11
    # needs both to jump at once
    ev = _learn("matrix_climbing_v0", 20_000, 0, ppo=PPOConfig(num_steps=8, share_params=False))
    assert ev["return_det"] >= 6.0 and ev["return_stoch"] > 5.0


@pytest.mark.slow
def test_happo_beats_random_on_simple_spread():
    # 100k env steps (12-20 s on 2 CPU cores). Per agent, 64 evaluation episodes: uniform random -26.5 (1000
    # episodes; std 8 per episode), HAPPO -19.9 / -19.7 / -19.7 at seeds 0 / 1 / 2, MAPPO -23.7 / -19.6 / -18.8
    ev = _learn("simple_spread_v3", 100_000, 0)
    assert ev["return_det"] > -22.0 and ev["return_stoch"] > -22.5


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_happo_trains_on_the_gpu():
    ev = _learn("simple_spread_v3", 64 * 25 * 3, 0, device="cuda", ppo=PPOConfig(recurrent=True, share_params=False))
    assert math.isfinite(ev["return_det"])


# -- the command line and the refusals --------------------------------------------------------

def test_cli_trains_happo_on_mpe(tmp_path, capsys):
    argv = ["train", "--algo", "happo", "--env", "simple_speaker_listener_v4", "--total-steps", "400",
            "--num-envs", "8", "--num-steps", "25", "--num-minibatches", "2", "--runs-dir", str(tmp_path),
            "--name", "h", "--eval-episodes", "3", "--checkpoint-interval", "0", "--no-progress", "--no-gif",
            "--no-tensorboard", "--threads", "1", "--order-scope", "group"]
    assert main(argv) == 0
    assert "final eval return per agent" in capsys.readouterr().out
    run = tmp_path / "h"
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["algo"] == "happo" and cfg["ppo"]["share_params"] is False and cfg["happo"]["order_scope"] == "group"
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    assert [int(r["step"]) for r in rows] == [200, 400]
    assert all(math.isfinite(float(r["ratio_product_dev"])) for r in rows)
    assert {"policy_loss/speaker", "policy_loss/listener", "value_loss/listener"} <= set(rows[0])
    assert main(["eval", str(run), "--episodes", "3", "--json"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["step"] == 400 and math.isfinite(res["return_det"])


def test_cli_help_shows_happos_options(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--algo", "happo", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "fastmarl train --algo happo" in out
    assert "--fixed-order" in out and "--order-scope" in out and "--clip-coef" in out and "--mixer-embed" not in out
    assert ALGORITHMS["happo"].centralized_critic and ALGORITHMS["happo"].family == "happo"


def test_refusals_say_why_and_what_to_do(tmp_path, capsys):
    assert main(["train", "--algo", "happo", "--comm", "commnet", "--runs-dir", str(tmp_path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "happo updates one agent's policy at a time" in err and "--algo mappo" in err
    with pytest.raises(ConfigError, match="needs a global state"):
        resolve_happo(HAPPOTrainConfig(num_envs=4, total_steps=1000), TickEnv(state=False).spec)
    with pytest.raises(ConfigError, match=r"'fixed_ordr' \(did you mean 'fixed_order'\?\)"):
        HAPPOTrainConfig.from_dict({"happo": {"fixed_ordr": True}})
    with pytest.raises(ConfigError, match="happo.order_scope"):
        resolve_happo(HAPPOTrainConfig(num_envs=4, total_steps=1000, happo=HAPPOConfig(order_scope="team")),
                      TickEnv().spec)
