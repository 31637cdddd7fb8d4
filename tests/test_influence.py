"""influence_v0: API conformance, the opinion update by hand on a 3-node graph, cancelling pushes,
zero-sum rewards, bounded opinions, budgets, graphs, 64 agents per side, baseline, exact resume."""

import io

import pytest
import torch
from pettingzoo.test import parallel_api_test

import fastmarl
from fastmarl.envs import check_env
from fastmarl.envs.api import JointPolicy, env_state_dict, load_env_state_dict
from fastmarl.envs.episodes import evaluate_policy
from fastmarl.envs.influence import baseline_policy, influence_weights, random_graph
from fastmarl.envs.pettingzoo import to_parallel_env
from fastmarl.envs.scripted import RandomPolicy

torch.set_num_threads(1)

KWARG_SETS = [
    {},
    dict(graph="erdos_renyi", view_size=5, effort_levels=(0.0, 0.5, 1.0), budget=4.0, effort_cost=0.05),
    dict(graph="small_world", num_agents_per_side=3, reward="change", max_cycles=7, continuous_actions=True),
]


@pytest.mark.parametrize("kw", KWARG_SETS)
def test_check_env_and_pettingzoo(kw):
    check_env(fastmarl.make("influence_v0", num_envs=3, seed=0, **kw), steps=40)
    parallel_api_test(to_parallel_env("influence_v0", seed=0, **kw), num_cycles=40)


def test_kwargs_validated():
    with pytest.raises(TypeError, match="stubbornes"):
        fastmarl.make("influence_v0", stubbornes=0.2)
    for bad in (dict(graph="grid"), dict(view_size=0), dict(view_size=17), dict(mean_degree=3, graph="small_world"),
                dict(effort_levels=(1.5,)), dict(budget=0), dict(reward="final"), dict(stubbornness=-0.1),
                dict(num_nodes=1)):
        with pytest.raises(ValueError, match=next(iter(bad))):
            fastmarl.make("influence_v0", **bad)


def _path3(**kw):
    """One env, 3 nodes on the path 0 - 1 - 2, one agent per side, all nodes in view."""
    env = fastmarl.make("influence_v0", num_envs=1, seed=0, num_nodes=3, num_agents_per_side=1, mean_degree=2,
                        stubbornness=0.1, push_strength=0.2, **kw)
    env.reset(seed=0)
    adj = torch.tensor([[[False, True, False], [True, False, True], [False, True, False]]])
    env.adj = adj
    env.weights, env.degree = influence_weights(adj, env.dtype)
    env.view = torch.tensor([[[1, 0, 2], [1, 0, 2]]])  # degree order: node 1 (2 links), then 0, 2 (index)
    env.x0 = torch.tensor([[0.1, 0.0, -0.4]])
    env.x = torch.tensor([[0.5, -0.2, 0.8]])
    return env


def test_hand_computed_update_on_three_nodes():
    env = _path3()
    assert torch.allclose(env.weights[0], torch.tensor([[1 / 2, 1 / 2, 0], [1 / 3, 1 / 3, 1 / 3], [0, 1 / 2, 1 / 2]]))
    ts = env.step({"blue": torch.tensor([[0]]), "red": torch.tensor([[2]])})  # blue pushes node 1, red node 2
    # averages: (0.5 - 0.2) / 2 = 0.15, (0.5 - 0.2 + 0.8) / 3 = 0.36667, (-0.2 + 0.8) / 2 = 0.3
    # x' = 0.9 avg + 0.1 x0 + 0.2 (blue - red): 0.145, 0.33 + 0.2 = 0.53, 0.27 - 0.04 - 0.2 = 0.03
    assert torch.allclose(env.x[0], torch.tensor([0.145, 0.53, 0.03]), atol=1e-6)
    # level reward: mean(x') - mean(x0) = 0.235 - (-0.1)
    assert ts.reward["blue"].item() == pytest.approx(0.335, abs=1e-6)
    assert ts.reward["red"].item() == pytest.approx(-0.335, abs=1e-6)
    o = ts.obs["blue"][0, 0]  # slot 0 = node 1: [opinion, degree / max, blue effort, red effort]
    assert torch.allclose(o[:4], torch.tensor([0.53, 1.0, 1.0, 0.0]))
    assert torch.allclose(o[8:12], torch.tensor([0.03, 0.5, 0.0, 1.0]))  # slot 2 = node 2
    # pushes clip at +1: node 1 (avg 0.53 / 3 + ...) pushed by blue with strength 1 saturates
    env.eta = 1.0
    env.step({"blue": torch.tensor([[0]]), "red": torch.tensor([[1]])})
    assert env.x[0, 1].item() == 1.0


def test_change_reward_and_budget_with_effort_cost():
    env = _path3(reward="change", effort_levels=(0.0, 1.0), budget=1.5, effort_cost=0.1)
    spent = []
    for _ in range(3):  # blue pushes node 1 at effort 1 (slot 0 * 2 + level 1); red rests (level 0)
        mean_before, left_before = env.x.mean().item(), env.left[0, 0].item()
        ts = env.step({"blue": torch.tensor([[1]]), "red": torch.tensor([[0]])})
        spent.append(left_before - env.left[0, 0].item())
        change = env.x.mean().item() - mean_before
        assert ts.reward["blue"].item() == pytest.approx(change - 0.1 * spent[-1], abs=1e-6)
        assert ts.reward["red"].item() == pytest.approx(-change, abs=1e-6)
    assert spent == pytest.approx([1.0, 0.5, 0.0])  # the budget cuts the second push and stops the third
    assert ts.obs["blue"][0, 0, -2].item() == 0.0 and ts.obs["red"][0, 0, -2].item() == 1.0  # budget left


def test_opposing_equal_pushes_cancel_exactly():
    env = fastmarl.make("influence_v0", num_envs=2, seed=3, num_nodes=10, num_agents_per_side=2,
                        effort_levels=(0.0, 0.5, 1.0))
    env.reset(seed=3)
    for name in ("x", "x0", "weights", "adj", "degree", "view"):  # two identical envs
        t = getattr(env, name)
        setattr(env, name, t[:1].expand_as(t).clone())
    slot = torch.tensor([[3, 7], [3, 7]])
    level = torch.tensor([[2, 1], [0, 0]])  # env 0: efforts 1 and 0.5; env 1: no effort at all
    a = slot * 3 + level
    ts = env.step({"blue": a, "red": a.clone()})  # both sides see the same view: same nodes, same efforts
    assert torch.equal(env.x[0], env.x[1])
    assert env.pushed[0].sum().item() == pytest.approx(3.0) and env.pushed[1].sum().item() == 0.0
    assert torch.equal(ts.reward["blue"][0], ts.reward["blue"][1])


def test_zero_sum_and_opinions_stay_in_range():
    env = fastmarl.make("influence_v0", num_envs=16, seed=1, num_nodes=12, num_agents_per_side=3,
                        push_strength=1.0, max_cycles=20)
    ts = env.reset(seed=1)
    gen = torch.Generator().manual_seed(0)
    saturated = 0
    for _ in range(45):
        ts = env.step({g: torch.randint(0, 12, (16, 3), generator=gen) for g in ("blue", "red")})
        assert torch.equal(ts.reward["blue"].sum(1), -ts.reward["red"].sum(1))
        assert float(env.x.abs().max()) <= 1.0
        saturated += int((env.x.abs() == 1.0).sum())
    assert saturated > 0  # strong pushes do reach the bounds, so the clip was exercised


@pytest.mark.parametrize("graph", ["geometric", "erdos_renyi", "small_world"])
def test_graphs_symmetric_with_target_degree(graph):
    adj, pos = random_graph(graph, 200, 40, 4.0, 0.0 if graph == "small_world" else 0.1,
                            torch.Generator().manual_seed(0), torch.device("cpu"))
    assert torch.equal(adj, adj.transpose(1, 2)) and not bool(adj.diagonal(dim1=1, dim2=2).any())
    deg = adj.sum(-1).float()
    if graph == "small_world":  # no rewiring: the ring lattice, every node has exactly 4 links
        assert bool((deg == 4).all())
    else:
        assert 3.2 < deg.mean().item() < 4.4  # geometric loses a little at the border
    assert pos.shape == (200, 40, 2) and 0.0 <= float(pos.min()) and float(pos.max()) <= 1.0


def test_views_sorted_by_degree():
    env = fastmarl.make("influence_v0", num_envs=4, seed=0, num_nodes=30, view_size=6)
    d = torch.gather(env.degree[:, None].expand(-1, 4, -1), 2, env.view)
    assert bool((d[..., :-1] >= d[..., 1:]).all())
    assert all(len(set(v.tolist())) == 6 for v in env.view.reshape(-1, 6))  # distinct nodes


def test_64_agents_per_side():
    env = fastmarl.make("influence_v0", num_envs=2, seed=0, num_agents_per_side=64, num_nodes=256, view_size=16,
                        graph="small_world", mean_degree=6)
    ts = env.reset(seed=0)
    assert ts.obs["blue"].shape == (2, 64, 67) and ts.obs["red"].shape == (2, 64, 67)
    assert env.state().shape == (2, 5 * 256 + 128 + 1)
    ts = env.step({g: torch.randint(0, 16, (2, 64)) for g in ("blue", "red")})
    assert ts.reward["blue"].shape == (2, 64) and env.render().shape == (256, 256, 3)


def test_baseline_picks_central_unaligned_nodes():
    env = fastmarl.make("influence_v0", num_envs=1, seed=0, num_nodes=3, num_agents_per_side=2, mean_degree=2,
                        effort_levels=(0.5, 1.0))
    ts = env.reset(seed=0)
    slots = torch.tensor([[0.9, 1.0, 0, 0], [-0.3, 0.5, 0, 0], [0.2, 0.25, 0, 0]]).flatten()  # opinion, degree
    obs = torch.cat([slots, torch.zeros(3)]).expand(1, 2, 15)
    ts.obs = {"blue": obs, "red": obs}
    a, _ = baseline_policy(env.spec).act(ts, {})
    # blue: slot 0 is aligned (0.9 >= 0.5); unaligned by degree: slot 1, slot 2 -> agents take 1 and 2
    # red: nothing is aligned to -1 (-0.3 > -0.5): by degree slot 0, slot 1; full effort is level 1
    assert a["blue"].tolist() == [[1 * 2 + 1, 2 * 2 + 1]] and a["red"].tolist() == [[0 * 2 + 1, 1 * 2 + 1]]


def test_baseline_beats_random_on_both_sides():
    env = fastmarl.make("influence_v0", num_envs=64, seed=0)
    base, rand = baseline_policy(env.spec), RandomPolicy(env.spec)

    blue_wins = evaluate_policy(JointPolicy({"blue": base, "red": rand}), env, seed=0)["return/blue"]
    red_wins = evaluate_policy(JointPolicy({"blue": rand, "red": base}), env, seed=0)["return/red"]
    print(f"baseline vs random, return per side: blue {blue_wins:.3f}, red {red_wins:.3f}")
    assert blue_wins > 0.5 and red_wins > 0.5


def test_state_dict_resumes_exactly():
    env = fastmarl.make("influence_v0", num_envs=4, seed=0, max_cycles=5, view_size=8)
    env.reset(seed=0)
    gen = torch.Generator().manual_seed(0)
    acts = [{g: torch.randint(0, 8, (4, 2), generator=gen) for g in ("blue", "red")} for _ in range(12)]
    for a in acts[:3]:
        env.step(a)
    buf = io.BytesIO()  # through the checkpoint's own functions and torch.save / weights_only load
    torch.save(env_state_dict(env), buf)
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)
    first = [env.step(a).obs["blue"].clone() for a in acts[3:]]
    # a fresh env with another seed, as a resumed run builds it: only the saved state can make it match
    env = fastmarl.make("influence_v0", num_envs=4, seed=99, max_cycles=5, view_size=8)
    assert load_env_state_dict(env, saved)
    again = [env.step(a).obs["blue"] for a in acts[3:]]
    assert all(torch.equal(x, y) for x, y in zip(first, again))


def test_continuous_actions_are_argmax_of_weights():
    runs = []
    for cont in (False, True):
        env = fastmarl.make("influence_v0", num_envs=8, seed=5, view_size=6, continuous_actions=cont)
        ts, pol, total = env.reset(seed=5), baseline_policy(env.spec), 0.0
        for _ in range(10):
            ts = env.step(pol.act(ts, {})[0])
            total += ts.reward["blue"].sum().item()
        runs.append((total, env.x.clone()))
    assert runs[0][0] == runs[1][0] and torch.equal(runs[0][1], runs[1][1])
