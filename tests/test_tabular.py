"""Tabular Q-learning (update against hand computations, exploration, learning on
matrix games) and the observation discretizer (bounds, indices, size checks)."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch

import fastmarl
from fastmarl.algos.tabular import (
    TabularQ,
    epsilon_greedy,
    linear_schedule,
    masked_greedy,
    tabular_q_update,
)
from fastmarl.config import TabularConfig
from fastmarl.envs import TimeStep, check_env
from fastmarl.envs.wrappers import DiscretizeObservation, Discretizer, TableTooLargeError, check_table_size
from fastmarl.train.runner import train_tabular

# -- the update -------------------------------------------------------------------

def test_update_matches_hand_computation():
    # 2 agents with their own tables, 3 states, 2 actions
    table = torch.tensor([[[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]],
                          [[10.0, 20.0], [30.0, 40.0], [50.0, 60.0]]])
    s = torch.tensor([[0, 1]])  # env 0: agent 0 in state 0, agent 1 in state 1
    a = torch.tensor([[1, 0]])
    r = torch.tensor([[1.0, -2.0]])
    s2 = torch.tensor([[2, 0]])
    td = tabular_q_update(table, torch.arange(2), s, a, r, s2, torch.tensor([False]), lr=0.5, gamma=0.9)
    # agent 0: Q[0,0,1] = 1 + 0.5 * (1 + 0.9 * max(4, 5) - 1) = 1 + 0.5 * 4.5 = 3.25
    # agent 1: Q[1,1,0] = 30 + 0.5 * (-2 + 0.9 * max(10, 20) - 30) = 30 + 0.5 * -14 = 23
    assert td[0].tolist() == pytest.approx([4.5, -14.0])
    assert table[0, 0, 1].item() == pytest.approx(3.25)
    assert table[1, 1, 0].item() == pytest.approx(23.0)
    # nothing else moved
    assert table[0].flatten().tolist() == pytest.approx([0, 3.25, 2, 3, 4, 5])

    # terminated: no bootstrap. Q[0,0,1] = 3.25 + 0.5 * (1 - 3.25) = 2.125
    tabular_q_update(table, torch.arange(2), s, a, r, s2, torch.tensor([True]), lr=0.5, gamma=0.9)
    assert table[0, 0, 1].item() == pytest.approx(2.125)


def test_shared_table_and_duplicates_are_averaged():
    table = torch.zeros(1, 2, 2)
    # 2 envs x 2 agents, all in state 0 taking action 1, rewards 1, 2, 3, 6: mean TD = 3
    s = torch.zeros(2, 2, dtype=torch.long)
    a = torch.ones(2, 2, dtype=torch.long)
    r = torch.tensor([[1.0, 2.0], [3.0, 6.0]])
    tabular_q_update(table, torch.zeros(2, dtype=torch.long), s, a, r, s, torch.tensor([True, True]), 0.1, 0.9)
    assert table[0, 0].tolist() == pytest.approx([0.0, 0.3])


def test_next_state_mask_limits_the_max():
    table = torch.tensor([[[0.0, 0.0], [100.0, 1.0]]])
    s, a, s2 = torch.tensor([[0]]), torch.tensor([[0]]), torch.tensor([[1]])
    mask = torch.tensor([[[False, True]]])  # action 0 (worth 100) is illegal in the next state
    tabular_q_update(table, torch.zeros(1, dtype=torch.long), s, a, torch.zeros(1, 1), s2, torch.tensor([False]),
                     lr=1.0, gamma=1.0, next_mask=mask)
    assert table[0, 0, 0].item() == pytest.approx(1.0)


def test_truncation_bootstraps_from_final_obs():
    """At a truncation ts.obs is the next episode's first observation; the update
    must use final_obs (state 2 here, worth 7), not obs (state 0, worth 0)."""
    spec = fastmarl.make("matrix_monotonic_v0", episode_length=2).spec
    cfg = TabularConfig(lr=1.0, gamma=0.5, obs_encoding="onehot", shared_table=True)
    learner = TabularQ(spec, cfg)
    learner.tables["agent"][0, 2] = 7.0
    onehot = lambda i: torch.nn.functional.one_hot(torch.full((1, 2), i), 3).float()  # noqa: E731
    ts = TimeStep(obs={"agent": onehot(1)}, reward={}, terminated=torch.tensor([False]),
                  truncated=torch.tensor([False]), final_obs={"agent": onehot(1)})
    nxt = TimeStep(obs={"agent": onehot(0)}, reward={"agent": torch.ones(1, 2)}, terminated=torch.tensor([False]),
                   truncated=torch.tensor([True]), final_obs={"agent": onehot(2)})
    learner.learn(ts, {"agent": torch.tensor([[1, 1]])}, nxt)
    assert learner.tables["agent"][0, 1, 1].item() == pytest.approx(1 + 0.5 * 7)


# -- exploration -----------------------------------------------------------------------

def test_linear_schedule():
    assert linear_schedule(1.0, 0.1, 100, 0) == 1.0
    assert linear_schedule(1.0, 0.1, 100, 50) == pytest.approx(0.55)
    assert linear_schedule(1.0, 0.1, 100, 1000) == pytest.approx(0.1)
    assert linear_schedule(1.0, 0.1, 0, 0) == pytest.approx(0.1)


def test_epsilon_greedy_respects_masks():
    g = torch.Generator().manual_seed(0)
    q = torch.tensor([5.0, 1.0, 3.0, 0.0]).expand(4000, 4)
    mask = torch.tensor([False, True, True, False]).expand(4000, 4)
    assert (epsilon_greedy(q, 0.0, mask, g) == 2).all()  # best legal
    a = epsilon_greedy(q, 1.0, mask, g)
    counts = torch.bincount(a, minlength=4).tolist()
    assert counts[0] == counts[3] == 0 and abs(counts[1] - 2000) < 200  # uniform over legal only
    ties = masked_greedy(torch.zeros(4000, 3), None, g, random_ties=True)
    assert (torch.bincount(ties, minlength=3) > 1100).all()


# -- the discretizer ------------------------------------------------------------------------

def test_bins_indices_bounds_and_clipping():
    d = Discretizer(2, "bins", bins=[4, 3], low=[0.0, -1.0], high=[1.0, 1.0])
    assert d.num_states == 12
    obs = torch.tensor([[0.0, -1.0], [0.24, 0.0], [0.25, 0.34], [0.999, 1.0], [1.0, 5.0], [-3.0, -9.0]])
    assert d.bin_indices(obs).tolist() == [[0, 0], [0, 1], [1, 2], [3, 2], [3, 2], [0, 0]]
    assert d(obs).tolist() == [0, 1, 5, 11, 11, 0]  # feature 0 most significant: 3 * b0 + b1
    assert d(obs[None]).shape == (1, 6)  # any leading dims


def test_integer_and_onehot_encodings():
    d = Discretizer(2, "integer", low=[0, -1], high=[2, 1])
    assert d.num_states == 9
    assert d(torch.tensor([[0.0, -1.0], [2.0, 1.0], [1.0, 0.0], [7.0, 0.0]])).tolist() == [0, 8, 4, 7]
    o = Discretizer(5, "onehot")
    assert o.num_states == 5 and o(torch.eye(5)[[3, 0]]).tolist() == [3, 0]


def test_discretizer_errors_and_size_checks():
    with pytest.raises(ValueError, match="unbounded"):
        Discretizer.for_space(gym.spaces.Box(-np.inf, np.inf, (3,)), bins=4)
    with pytest.raises(ValueError, match="high"):
        Discretizer(1, "bins", bins=2, low=1.0, high=1.0)
    with pytest.raises(ValueError, match="positive int"):
        Discretizer(2, "bins", bins=[2, 0], low=0, high=1)
    with pytest.raises(ValueError, match="one per observation feature"):
        Discretizer(2, "bins", bins=2, low=[0, 0, 0], high=1)
    with pytest.raises(TableTooLargeError, match="2\\^62"):
        Discretizer(70, "bins", bins=2, low=0, high=1)  # 2^70 states cannot be indexed
    with pytest.warns(UserWarning, match="entries"):
        assert check_table_size(2_000_000, 5, 2) == 20_000_000
    with pytest.raises(TableTooLargeError, match="fewer bins"):
        check_table_size(10**9, 5, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_table_size(1000, 5, 3)  # small: silent


def test_discretize_wrapper_on_spread_passes_check_env():
    env = fastmarl.make("simple_spread_v3", num_envs=3, seed=0, N=2)
    D = env.spec.groups["agent"].obs_dim
    wrapped = DiscretizeObservation(env, Discretizer(D, "bins", bins=2, low=-2.0, high=2.0))
    assert wrapped.num_states == {"agent": 2 ** D}
    check_env(wrapped, steps=30)
    ts = wrapped.reset(seed=1)
    raw = env.observations()["agent"]
    assert torch.equal(ts.obs["agent"][..., 0].long(), wrapped.index({"agent": raw})["agent"])


def test_wrapper_warns_when_table_is_huge():
    env = fastmarl.make("simple_spread_v3", num_envs=1, N=2)
    D = env.spec.groups["agent"].obs_dim  # 12 features x 5 bins -> 244M states x 5 actions
    with pytest.warns(UserWarning, match="entries"):
        DiscretizeObservation(env, Discretizer(D, "bins", bins=5, low=-2.0, high=2.0))


# -- learning --------------------------------------------------------------------------------

def _greedy(learner, env):
    actions, _ = learner.act(env.reset(seed=0), deterministic=True)
    return actions["agent"][0].tolist()


@pytest.mark.parametrize("shared", [False, True])
def test_tabular_iql_solves_the_monotonic_game(shared):
    env = fastmarl.make("matrix_monotonic_v0", num_envs=32)
    cfg = TabularConfig(total_steps=32 * 200, lr=0.1, gamma=0.0, epsilon_decay_steps=32 * 150, obs_encoding="onehot",
                        shared_table=shared, seed=1)
    res = train_tabular(env, cfg)
    assert res.steps == 6400 and res.episode_returns.shape == (6400,)
    assert _greedy(res.learner, env) == [0, 0]
    assert res.episode_returns[-320:].mean().item() > 8.5  # eps = 0.05 at the end: mostly 10
    assert res.episode_returns[:320].mean().item() < 6  # uniform play at the start: mean payoff 3.6
    # against a mostly-(0) partner, agent i's Q(0) approaches the payoff 10
    assert res.learner.tables["agent"][:, 0, 0].min().item() > 9.0


def test_tabular_iql_on_the_climbing_game_misses_the_optimum():
    """The classic result (Claus & Boutilier): independent learners avoid the
    risky optimum (0, 0) = 11 and settle on a safer joint action."""
    env = fastmarl.make("matrix_climbing_v0", num_envs=32)
    res = train_tabular(env, TabularConfig(total_steps=32 * 200, lr=0.1, gamma=0.0, epsilon_decay_steps=32 * 150,
                                           obs_encoding="onehot", seed=0))
    greedy = _greedy(res.learner, env)
    assert greedy != [0, 0] and env.joint_payoff(torch.tensor(greedy)).item() in (5.0, 7.0)


def test_tabular_on_a_multi_step_discretized_env_runs():
    env = fastmarl.make("simple_v3", num_envs=16, seed=0, max_cycles=10)
    res = train_tabular(env, TabularConfig(total_steps=16 * 40, bins=2, low=-3.0, high=3.0, epsilon_decay_steps=100))
    assert res.episode_returns.shape == (16 * 4,)  # 40 steps per env, episodes of 10
    assert torch.isfinite(res.learner.tables["agent"]).all()
    assert res.learner.tables["agent"].abs().sum() > 0
