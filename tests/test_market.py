"""market_v0: API conformance, a hand-computed step (who trades, at what price, inventory, cash,
rewards), cash and inventory conservation, inventory limits, 64 makers and traders, baseline,
exact resume."""

import io

import pytest
import torch
from pettingzoo.test import parallel_api_test

import fastmarl
from fastmarl.envs import check_env
from fastmarl.envs.api import env_state_dict, load_env_state_dict
from fastmarl.envs.episodes import evaluate_policy
from fastmarl.envs.market import FixedSpreadMaker, baseline_policy
from fastmarl.envs.pettingzoo import to_parallel_env
from fastmarl.envs.scripted import RandomPolicy

torch.set_num_threads(1)

KWARG_SETS = [
    {},
    dict(num_traders=2, observe_fair=False, jump_prob=0.1, max_cycles=9),
    dict(num_makers=3, num_traders=1, trader_slots=0, half_spreads=(1.0, 2.0), skews=(0.0,), continuous_actions=True),
]


@pytest.mark.parametrize("kw", KWARG_SETS)
def test_check_env_and_pettingzoo(kw):
    check_env(fastmarl.make("market_v0", num_envs=3, seed=0, **kw), steps=60)
    parallel_api_test(to_parallel_env("market_v0", seed=0, **kw), num_cycles=60)


def test_kwargs_validated():
    with pytest.raises(TypeError, match="volatility"):
        fastmarl.make("market_v0", volatilty=1.0)
    for bad in (dict(skews=(-1.0, 1.0)), dict(half_spreads=(0.0, 1.0)), dict(arrival_rate=1.5),
                dict(num_makers=0), dict(inventory_limit=0), dict(volatility=-1.0), dict(max_cycles=0)):
        with pytest.raises(ValueError, match=next(iter(bad))):
            fastmarl.make("market_v0", **bad)
    with pytest.raises(ValueError, match="nobody would ever trade"):
        fastmarl.make("market_v0", trader_slots=0)


@pytest.mark.parametrize("observe_fair", [True, False])
def test_hand_computed_step(observe_fair):
    env = fastmarl.make("market_v0", num_envs=1, seed=0, num_makers=2, trader_slots=5, inventory_limit=2,
                        inventory_penalty=0.01, observe_fair=observe_fair)
    env.reset(seed=0)
    env.inv = torch.tensor([[-1, 0]])
    env.cash = torch.tensor([[1.0, 0.0]])
    env.shock = torch.tensor([0.3])  # fair price 0 -> 0.3 (the mid is 0 too after a reset)
    values = torch.tensor([[1.0, -0.9, 5.0, -0.6, -0.55]])
    priority = torch.tensor([[0.2, 0.7]])  # maker 1 first among equal quotes
    env._orders = lambda fair: (torch.ones(1, 5, dtype=torch.bool), values, priority)
    # maker 0: h 0.5, k 0 -> bid -0.5, ask 0.5, can sell -1 + 2 = 1 unit, buy 2 + 1 = 3;
    # maker 1: h 1, k 0.5 -> bid -0.5, ask 1.5, can sell 2, buy 2
    ts = env.step({"maker": torch.tensor([[0 * 3 + 1, 1 * 3 + 2]])})
    # buyers (value > 0.5), best first: 5.0 takes maker 0's only unit at 0.5; 1.0 would pay maker 1's 1.5: no.
    # sellers (value < -0.5), lowest first: -0.9 and -0.6 sell to maker 1 (tie won) at -0.5, filling its
    # capacity of 2; -0.55 sells to maker 0 at -0.5
    assert env.inv.tolist() == [[-1, 2]] and int(env.noise_inv) == 1 - 3
    assert env.cash[0].tolist() == pytest.approx([1.0 + 0.5 + 0.5, 0.5 + 0.5])
    assert float(env.noise_cash) == pytest.approx(-0.5 - 3 * 0.5)
    # reward: (cash' + inv' * 0.3) - (cash + inv * 0) - 0.01 inv'^2
    assert ts.reward["maker"][0].tolist() == pytest.approx([2.0 - 0.3 - 1.0 - 0.01, 1.0 + 0.6 - 0.04])
    assert env.flow[0].tolist() == [1.0, 3.0]
    assert env.best[0].tolist() == [0.5, 0.5] and env.own[0].tolist() == [[0.5, 0.5], [0.5, 1.5]]
    assert float(env.mid) == pytest.approx((0.5 - 3 * 0.5) / 4)
    assert float(env.hist[0, 0]) == pytest.approx(0.3 if observe_fair else -0.25)
    o = ts.obs["maker"][0]  # prices in units of max(half_spreads) = 2
    assert o[1, 0].item() == 1.0 and o[1, 5:9].tolist() == pytest.approx([0.25, 0.25, 0.25, 0.75])


def test_learning_traders_trade_first_at_best_quotes():
    env = fastmarl.make("market_v0", num_envs=1, seed=0, num_makers=2, num_traders=2, trader_slots=1,
                        arrival_rate=0.0, volatility=0.0)
    env.reset(seed=0)
    env.shock = torch.tensor([0.0])
    # maker 0: h 0.5, k -0.5 -> bid -1, ask 0; maker 1: h 2, k 0.5 -> bid -1.5, ask 2.5
    ts = env.step({"maker": torch.tensor([[0, 8]]), "trader": torch.tensor([[1, 2]])})
    # trader 0 buys at 0 from maker 0, trader 1 sells at -1 to maker 0; the scripted slot never arrives
    assert env.inv.tolist() == [[0, 0, 1, -1]]
    assert env.cash[0].tolist() == pytest.approx([1.0, 0.0, 0.0, -1.0])
    assert ts.reward["trader"][0].tolist() == pytest.approx([0.0, -1.0])  # fair stays 0: the seller paid the spread


def test_conservation_and_inventory_limits():
    E, limit = 16, 3
    env = fastmarl.make("market_v0", num_envs=E, seed=2, num_makers=3, num_traders=2, trader_slots=6,
                        arrival_rate=0.9, volatility=1.0, jump_prob=0.2, inventory_limit=limit, max_cycles=30,
                        dtype=torch.float64)
    env.reset(seed=2)
    gen = torch.Generator().manual_seed(0)
    at_limit = 0
    for _ in range(70):
        env.step({"maker": torch.randint(0, 9, (E, 3), generator=gen),
                  "trader": torch.randint(0, 3, (E, 2), generator=gen)})
        # every trade has two sides: over makers, learning traders and the scripted counterparty
        assert torch.equal(env.inv.sum(1) + env.noise_inv, torch.zeros(E, dtype=torch.long))
        assert torch.allclose(env.cash.sum(1) + env.noise_cash, torch.zeros(E, dtype=torch.float64), atol=1e-9)
        assert int(env.inv.abs().max()) <= limit
        at_limit += int((env.inv.abs() == limit).sum())
    assert at_limit > 0  # the limit was reached, so it was exercised


def test_64_makers_and_traders():
    env = fastmarl.make("market_v0", num_envs=2, seed=0, num_makers=64, num_traders=64, trader_slots=32)
    ts = env.reset(seed=0)
    assert ts.obs["maker"].shape == (2, 64, 12) and ts.obs["trader"].shape == (2, 64, 6)
    assert env.state().shape == (2, 9 + 4 * 64 + 2 * 64)
    ts = env.step({"maker": torch.randint(0, 9, (2, 64)), "trader": torch.randint(0, 3, (2, 64))})
    assert ts.reward["maker"].shape == (2, 64) and ts.reward["trader"].shape == (2, 64)
    assert env.render().shape == (200, 40 * 65, 3)
    assert int(env.inv.sum()) + int(env.noise_inv.sum()) == 0


def test_fixed_spread_baseline_beats_random_makers():
    env = fastmarl.make("market_v0", num_envs=128, seed=0)
    fixed = evaluate_policy(baseline_policy(env.spec), env, seed=0)["return"]
    skew = evaluate_policy(FixedSpreadMaker(env.spec, skew_inventory=True), env, seed=0)["return"]
    rand = evaluate_policy(RandomPolicy(env.spec), env, seed=0)["return"]
    print(f"maker return per agent: fixed spread {fixed:.2f}, inventory-skewing {skew:.2f}, random {rand:.2f}")
    assert fixed > rand + 5 and skew > fixed
    a, _ = baseline_policy(env.spec).act(env.reset(seed=0), {})
    assert a["maker"].unique().tolist() == [1 * 3 + 1]  # middle half-spread (1.0), zero skew


def test_state_dict_resumes_exactly():
    env = fastmarl.make("market_v0", num_envs=4, seed=0, num_traders=1, max_cycles=5)
    env.reset(seed=0)
    gen = torch.Generator().manual_seed(0)
    acts = [{"maker": torch.randint(0, 9, (4, 2), generator=gen), "trader": torch.randint(0, 3, (4, 1), generator=gen)}
            for _ in range(12)]
    for a in acts[:3]:
        env.step(a)
    buf = io.BytesIO()  # through the checkpoint's own functions and torch.save / weights_only load
    torch.save(env_state_dict(env), buf)
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)
    first = [env.step(a).reward["maker"].clone() for a in acts[3:]]
    # a fresh env with another seed, as a resumed run builds it: only the saved state can make it match
    env = fastmarl.make("market_v0", num_envs=4, seed=99, num_traders=1, max_cycles=5)
    assert load_env_state_dict(env, saved)
    again = [env.step(a).reward["maker"] for a in acts[3:]]
    assert all(torch.equal(x, y) for x, y in zip(first, again))


def test_continuous_actions_are_argmax_of_weights():
    runs = []
    for cont in (False, True):
        env = fastmarl.make("market_v0", num_envs=8, seed=5, num_traders=2, continuous_actions=cont)
        ts, pol, total = env.reset(seed=5), FixedSpreadMaker(env.spec, skew_inventory=True), 0.0
        for _ in range(20):
            ts = env.step(pol.act(ts, {})[0])
            total += ts.reward["maker"].sum().item() + ts.reward["trader"].sum().item()
        runs.append((total, env.inv.clone()))
    assert runs[0][0] == runs[1][0] and torch.equal(runs[0][1], runs[1][1])


def test_env_state_from_another_num_envs_is_refused():
    import fastmarl

    small, big = fastmarl.make("market_v0", num_envs=2, seed=0), fastmarl.make("market_v0", num_envs=3, seed=0)
    small.reset(seed=0), big.reset(seed=0)
    with pytest.raises(ValueError, match="saved .* has shape"):
        big.load_state_dict(small.state_dict())
