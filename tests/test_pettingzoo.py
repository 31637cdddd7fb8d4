"""PettingZoo adapters, both ways.

to_parallel_env / to_aec_env pass PettingZoo's own API and seed tests on every
registered env; from_pettingzoo reproduces mpe2 and fastmarl trajectories
exactly, handles turn-based classic games with action masks, and pads agents
that die early.
"""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from envmodes import action_mode_kwargs
from pettingzoo import ParallelEnv
from pettingzoo.test import api_test, parallel_api_test, parallel_seed_test, seed_test

import fastmarl
from fastmarl.envs import check_env, list_envs
from fastmarl.envs.pettingzoo import to_aec_env, to_parallel_env
from fastmarl.envs.pz_vecenv import from_pettingzoo, sub_seed

ENV_IDS = [e.env_id for e in list_envs()]
MODES = [pytest.param(False, id="discrete"), pytest.param(True, id="continuous")]

# PettingZoo test-suite warnings that mean the API contract is broken (other
# warnings are advice, e.g. about infinite observation bounds).
CONTRACT_WARNINGS = (
    "Live agent was not given", "dead last turn", "No agents present but not all", "infos` dictionary",
    "does not have a `render_mode`", "Observation is not a NumPy array", "Observation contains NaNs",
    "different classes", "not a numeric dtype", "has not defined a render() method", "info of each agent",
    "Reward should be",
)



def run_checked(fn, *args, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fn(*args, **kwargs)
    bad = {str(w.message) for w in caught if any(s in str(w.message) for s in CONTRACT_WARNINGS)}
    assert not bad, f"PettingZoo's test flagged API problems: {sorted(bad)}"


# ---------------------------------------------------------------------------
# fastmarl -> PettingZoo: PettingZoo's own test suite on every registered env
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("continuous", MODES)
@pytest.mark.parametrize("env_id", ENV_IDS)
def test_pettingzoo_api_and_seed_tests(env_id, continuous):
    kw = action_mode_kwargs(env_id, continuous)
    run_checked(parallel_api_test, to_parallel_env(env_id, seed=0, **kw), num_cycles=60)
    run_checked(api_test, to_aec_env(env_id, seed=0, **kw), num_cycles=60)
    run_checked(parallel_seed_test, lambda: to_parallel_env(env_id, **kw), num_cycles=60)
    run_checked(seed_test, lambda: to_aec_env(env_id, **kw), num_cycles=60)


# waterworld's continuous case, the slowest by far (~3 s), is in the slow tier only
@pytest.mark.parametrize("env_id, continuous", [
    pytest.param(e, m.values[0], id=f"{e}-{m.id}",
                 marks=pytest.mark.slow if (e, m.id) == ("waterworld_v0", "continuous") else ())
    for e in ENV_IDS for m in MODES])
def test_parallel_env_matches_batched_env(env_id, continuous):
    """Same seed and actions: the ParallelEnv returns the batched env's numbers,
    ends episodes PettingZoo's way (final_obs, then agents == []), and reset()
    continues with the batched env's auto-reset state."""
    kw = action_mode_kwargs(env_id, continuous)
    raw = fastmarl.make(env_id, seed=5, **kw)
    par = to_parallel_env(env_id, seed=5, **kw)
    spec = raw.spec
    ts = raw.reset(seed=7)
    obs, infos = par.reset(seed=7)
    assert par.agents == list(spec.agents) == par.possible_agents
    rng = np.random.default_rng(0)
    ended = early_ends = 0
    for t in range(2 * spec.max_episode_steps + 3):
        live = list(par.agents)  # agents of an env with alive masks leave the episode when they die
        for g, gs in spec.groups.items():
            for i, a in enumerate(gs.agents):
                if a not in live:
                    assert ts.alive is not None and not bool(ts.alive[g][0, i])
                    continue
                assert obs[a].dtype == np.float32 and obs[a].shape == (gs.obs_dim,)
                np.testing.assert_array_equal(obs[a], ts.obs[g][0, i].numpy().astype(np.float32))
        np.testing.assert_array_equal(par.state(), raw.state()[0].numpy())
        acts = {}
        for g, gs in spec.groups.items():
            if gs.discrete:
                acts[g] = torch.as_tensor(rng.integers(0, gs.action_dim, (1, gs.num_agents)))
            else:
                acts[g] = torch.as_tensor(rng.random((1, gs.num_agents, gs.action_dim), dtype=np.float32))
        pz_acts = {a: (int(acts[g][0, i]) if spec.groups[g].discrete else acts[g][0, i].numpy())
                   for g, gs in spec.groups.items() for i, a in enumerate(gs.agents)}
        ts = raw.step(acts)
        obs, rew, term, trunc, infos = par.step(pz_acts)
        assert set(obs) == set(rew) == set(term) == set(live)
        for g, gs in spec.groups.items():
            for i, a in enumerate(gs.agents):
                if a not in live:
                    continue
                died = ts.alive is not None and not bool(ts.alive[g][0, i]) and not bool(ts.done[0])
                assert isinstance(rew[a], float) and rew[a] == float(ts.reward[g][0, i])
                assert term[a] is (bool(ts.terminated[0]) or died) and trunc[a] is bool(ts.truncated[0])
                np.testing.assert_array_equal(obs[a], ts.final_obs[g][0, i].numpy().astype(np.float32))
        if bool(ts.done[0]):
            ended += 1
            assert par.agents == []
            np.testing.assert_array_equal(par.state(), ts.final_state[0].numpy())
            with pytest.raises(RuntimeError, match="call reset"):
                par.step(pz_acts)
            obs, infos = par.reset()  # no seed: the batched env's auto-reset state
        else:
            alive = [a for g, gs in spec.groups.items() for i, a in enumerate(gs.agents)
                     if ts.alive is None or bool(ts.alive[g][0, i])]
            assert par.agents == alive
        early_ends += int(bool(ts.terminated[0]))
    T = spec.max_episode_steps
    if early_ends == 0:
        assert ended == (2 * T + 3) // T  # episodes that end within the loop (2 for MPE lengths)
    else:
        assert ended >= (2 * T + 3) // T  # episodes that ended early leave room for more
    img = par.render()
    assert img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8


def test_parallel_env_rejects_bad_actions():
    par = to_parallel_env("simple_spread_v3", seed=0)
    par.reset(seed=0)
    good = {a: 0 for a in par.agents}
    with pytest.raises(KeyError, match="agent_1"):
        par.step({"agent_0": 0, "agent_2": 0})
    with pytest.raises(KeyError, match="unknown agent in the actions: 'agent_9'"):
        par.step({**good, "agent_9": 0})
    with pytest.raises(fastmarl.envs.ActionError, match="out of range"):
        par.step({**good, "agent_0": 7})
    obs, *_ = par.step(good)  # still usable
    assert set(obs) == set(par.possible_agents)
    with pytest.raises(ValueError, match="num_envs=1"):
        to_parallel_env(fastmarl.make("simple_spread_v3", num_envs=2))


# ---------------------------------------------------------------------------
# PettingZoo -> fastmarl
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("continuous", MODES)
def test_round_trip_equals_fastmarl(continuous):
    """from_pettingzoo(to_parallel_env(...)) == the raw batched env, env by env."""
    E, seed = 2, 10
    vec = from_pettingzoo(lambda: to_parallel_env("simple_spread_v3", continuous_actions=continuous), E, seed=seed)
    raws = [fastmarl.make("simple_spread_v3", seed=sub_seed(seed, e), continuous_actions=continuous) for e in range(E)]
    raw_ts = [r.reset(seed=sub_seed(seed, e)) for e, r in enumerate(raws)]
    ts = vec.reset(seed=seed)
    assert vec.spec.groups["agent"].num_agents == 3 and vec.spec.state_dim == raws[0].spec.state_dim
    assert vec.spec.max_episode_steps is None or vec.spec.max_episode_steps == 25
    gen = torch.Generator().manual_seed(0)
    ends = 0
    for t in range(60):
        for e in range(E):
            torch.testing.assert_close(ts.obs["agent"][e], raw_ts[e].obs["agent"][0], rtol=0, atol=0)
            torch.testing.assert_close(vec.state()[e], raws[e].state()[0], rtol=0, atol=0)
        if continuous:
            a = torch.rand(E, 3, 5, generator=gen)
        else:
            a = torch.randint(0, 5, (E, 3), generator=gen)
        ts = vec.step({"agent": a})
        raw_ts = [r.step({"agent": a[e:e + 1]}) for e, r in enumerate(raws)]
        for e in range(E):
            r = raw_ts[e]
            torch.testing.assert_close(ts.reward["agent"][e], r.reward["agent"][0], rtol=0, atol=0)
            assert bool(ts.terminated[e]) == bool(r.terminated[0]) and bool(ts.truncated[e]) == bool(r.truncated[0])
            torch.testing.assert_close(ts.final_obs["agent"][e], r.final_obs["agent"][0], rtol=0, atol=0)
            if bool(r.done[0]):
                ends += 1
                torch.testing.assert_close(ts.final_state[e], r.final_state[0], rtol=0, atol=0)
        assert bool(ts.alive["agent"].all())
    assert ends == E * 2


def _stack(d: dict, names) -> np.ndarray:
    return np.stack([np.asarray(d[a], dtype=np.float32) for a in names])


@pytest.mark.parametrize("module", ["simple_spread_v3", "simple_tag_v3"])
def test_from_pettingzoo_mpe2_matches_mpe2(module):
    pytest.importorskip("mpe2")
    mod = getattr(__import__("mpe2", fromlist=[module]), module)
    E, seed = 2, 3
    vec = from_pettingzoo(mod.parallel_env, E, seed=seed)
    refs = [mod.parallel_env() for _ in range(E)]
    ref_obs = [r.reset(seed=sub_seed(seed, e))[0] for e, r in enumerate(refs)]
    spec = vec.spec
    if module == "simple_spread_v3":
        assert {g: (s.num_agents, s.obs_dim) for g, s in spec.groups.items()} == {"agent": (3, 18)}
    else:
        assert {g: (s.num_agents, s.obs_dim) for g, s in spec.groups.items()} == {"adversary": (3, 16), "agent": (1, 14)}
    assert spec.state_dim == refs[0].state().size and spec.max_episode_steps == 25
    assert not spec.has_action_mask and spec.env_id == module
    ts = vec.reset(seed=seed)
    rng = np.random.default_rng(1)
    ends = 0
    for t in range(55):
        for g, gs in spec.groups.items():
            assert ts.obs[g].shape == (E, gs.num_agents, gs.obs_dim) and ts.obs[g].dtype == torch.float32
            for e in range(E):
                np.testing.assert_array_equal(ts.obs[g][e].numpy(), _stack(ref_obs[e], gs.agents))
        np.testing.assert_array_equal(vec.state().numpy(), np.stack([r.state() for r in refs]))
        acts = {g: torch.as_tensor(rng.integers(0, gs.action_dim, (E, gs.num_agents))) for g, gs in spec.groups.items()}
        ts = vec.step(acts)
        for e, r in enumerate(refs):
            o, rew, term, trunc, _ = r.step({a: int(acts[g][e, i]) for g, gs in spec.groups.items()
                                             for i, a in enumerate(gs.agents)})
            for g, gs in spec.groups.items():
                np.testing.assert_array_equal(ts.reward[g][e].numpy(), _stack(rew, gs.agents))
                np.testing.assert_array_equal(ts.final_obs[g][e].numpy(), _stack(o, gs.agents))
            assert bool(ts.truncated[e]) == all(trunc.values()) and not bool(ts.terminated[e])
            if not r.agents:
                ends += 1
                np.testing.assert_array_equal(ts.final_state[e].numpy(), r.state())
                o, _ = r.reset()  # mpe2 continues its RNG, as the adapter's auto-reset does
            ref_obs[e] = o
    assert ends == 2 * E


def test_from_pettingzoo_tictactoe_turns_masks_and_illegal_moves():
    tictactoe_v3 = pytest.importorskip("pettingzoo.classic.tictactoe_v3")
    E = 4
    vec = from_pettingzoo(tictactoe_v3.env, E, seed=0)
    spec = vec.spec
    gs = spec.groups["player"]
    assert gs.agents == ("player_1", "player_2") and gs.obs_dim == 18 and gs.action_space == gym.spaces.Discrete(9)
    assert spec.has_action_mask and spec.state_dim == 0
    with pytest.raises(RuntimeError, match="no global state"):
        vec.state()
    ts = vec.reset(seed=0)
    gen = torch.Generator().manual_seed(0)
    results = []
    for t in range(60):
        mask = ts.action_mask["player"]  # (E, 2, 9)
        board = ts.obs["player"].reshape(E, 2, 3, 3, 2)
        occupied = (board[:, 0].sum(-1) > 0).reshape(E, 9)  # from player_1's view: either mark
        active = mask.any(-1)  # (E, 2): exactly one player may move
        assert bool((active.sum(-1) == 1).all())
        for e in range(E):
            p = int(active[e].nonzero())
            assert torch.equal(mask[e, p], ~occupied[e])  # legal = empty squares
        # the active player picks a legal square; the waiting one sends 0 (ignored)
        w = torch.where(mask.any(-1, keepdim=True), mask.float(), torch.ones_like(mask, dtype=torch.float))
        a = torch.multinomial(w.reshape(-1, 9), 1, generator=gen).reshape(E, 2)
        marks_before = occupied.sum(-1)
        ts = vec.step({"player": a})
        for e in range(E):
            if bool(ts.done[e]):
                assert bool(ts.terminated[e]) and not bool(ts.truncated[e])
                r = ts.reward["player"][e]
                assert sorted(r.tolist()) in ([-1.0, 1.0], [0.0, 0.0])
                results.append(r.tolist())
                assert float(ts.obs["player"][e].abs().sum()) == 0.0  # auto-reset: empty board
                fin_marks = (ts.final_obs["player"][e, 0].reshape(9, 2).sum(-1) > 0).sum()
                assert int(fin_marks) == int(marks_before[e]) + 1
            else:
                assert float(ts.reward["player"][e].abs().sum()) == 0.0
                now = (ts.obs["player"][e, 0].reshape(9, 2).sum(-1) > 0).sum()
                assert int(now) == int(marks_before[e]) + 1
            assert bool(ts.alive["player"][e].all())
    assert len(results) >= E  # 60 steps: every env finished at least one game
    # an illegal move by the active player ends the game with -1 for that player
    ts = vec.reset(seed=1)
    a = torch.zeros(E, 2, dtype=torch.long)
    ts = vec.step({"player": a})  # everyone's first move: square 0
    p = ts.action_mask["player"].any(-1).float().argmax(-1)  # the player to move now
    ts = vec.step({"player": torch.zeros(E, 2, dtype=torch.long)})  # square 0 again: illegal
    assert bool(ts.terminated.all())
    for e in range(E):
        assert float(ts.reward["player"][e, int(p[e])]) == -1.0
    check_env(vec, steps=30, check_render=False)  # masks with all-False rows for the waiting player


def test_from_pettingzoo_butterfly_kaz():
    """Knights-Archers-Zombies: (27, 5) vector observations flattened, two groups,
    numbers equal to stepping PettingZoo directly over a whole episode.

    (check_env is not run here: KAZ itself is not deterministic across resets of
    one instance, which check_env's determinism test rightly reports.)"""
    pytest.importorskip("pygame")
    kaz = pytest.importorskip("pettingzoo.butterfly.knights_archers_zombies_v11")
    E, T = 2, 30
    vec = from_pettingzoo(lambda: kaz.parallel_env(max_cycles=T), E, seed=0)
    refs = [kaz.parallel_env(max_cycles=T) for _ in range(E)]
    for e, r in enumerate(refs):
        r.reset(seed=sub_seed(0, e))
    spec = vec.spec
    assert {g: (s.num_agents, s.obs_dim, s.action_dim) for g, s in spec.groups.items()} == {
        "archer": (2, 135, 6), "knight": (2, 135, 6)}
    assert spec.state_dim > 0 and spec.has_alive_mask and not spec.has_action_mask
    gen = torch.Generator().manual_seed(0)
    for t in range(T):
        acts = {g: torch.randint(0, 6, (E, 2), generator=gen) for g in spec.groups}
        ts = vec.step(acts)
        for e, r in enumerate(refs):
            live = list(r.agents)
            o, rew, term, trunc, _ = r.step({a: int(acts[spec.group_of(a)[0]][e, spec.group_of(a)[1]]) for a in live})
            for a in live:
                g, i = spec.group_of(a)
                np.testing.assert_array_equal(ts.final_obs[g][e, i].numpy(), o[a].reshape(-1).astype(np.float32))
                assert float(ts.reward[g][e, i]) == float(rew[a])
            if r.agents:
                for a in spec.agents:
                    g, i = spec.group_of(a)
                    assert bool(ts.alive[g][e, i]) == (a in r.agents)
    assert bool(ts.truncated.all()) and not bool(ts.terminated.any())  # max_cycles reached


# ---------------------------------------------------------------------------
# Dead agents, masks from infos, group checks: a tiny hand-written env
# ---------------------------------------------------------------------------


class Countdown(ParallelEnv):
    """``scout_0`` terminates after 2 steps, ``scout_1`` is truncated after 4.

    obs = [t, index, last action]; reward = 1 + index; infos carry an action
    mask (action 1 legal on even steps only); state() = [t, live agents].
    """

    metadata = {"name": "countdown_v0", "render_modes": ["rgb_array"]}

    def __init__(self, render_mode="rgb_array"):
        self.render_mode = render_mode
        self.possible_agents = ["scout_0", "scout_1"]
        self.agents = []
        self._obs_space = {a: gym.spaces.Box(-10.0, 10.0, (3,), np.float32) for a in self.possible_agents}
        self._act_space = {a: gym.spaces.Discrete(2) for a in self.possible_agents}

    def observation_space(self, agent):
        return self._obs_space[agent]

    def action_space(self, agent):
        return self._act_space[agent]

    def _obs(self, a, act=0):
        return np.array([self.t, self.possible_agents.index(a), act], np.float32)

    def _infos(self):
        return {a: {"action_mask": np.array([1, int(self.t % 2 == 0)], np.int8)} for a in self.agents}

    def reset(self, seed=None, options=None):
        self.t = 0
        self.agents = list(self.possible_agents)
        return {a: self._obs(a) for a in self.agents}, self._infos()

    def step(self, actions):
        assert set(actions) == set(self.agents), (actions, self.agents)
        self.t += 1
        obs = {a: self._obs(a, int(actions[a])) for a in self.agents}
        rew = {a: 1.0 + self.possible_agents.index(a) for a in self.agents}
        term = {a: a == "scout_0" and self.t >= 2 for a in self.agents}
        trunc = {a: a == "scout_1" and self.t >= 4 for a in self.agents}
        infos = self._infos()
        self.agents = [a for a in self.agents if not (term[a] or trunc[a])]
        return obs, rew, term, trunc, infos

    def state(self):
        return np.array([self.t, len(self.agents)], np.float32)

    def render(self):
        return np.zeros((8, 8, 3), np.uint8)


def test_dead_agent_padding_and_alive_mask():
    E = 2
    vec = from_pettingzoo(Countdown, E, seed=0)
    spec = vec.spec
    assert list(spec.groups) == ["scout"] and spec.has_alive_mask and spec.has_action_mask and spec.state_dim == 2
    ts = vec.reset()
    assert ts.alive["scout"].tolist() == [[True, True]] * E
    assert ts.action_mask["scout"].tolist() == [[[True, True]] * 2] * E
    one = torch.ones(E, 2, dtype=torch.long)
    ts = vec.step({"scout": one})  # t=1
    assert ts.alive["scout"].tolist() == [[True, True]] * E
    assert ts.action_mask["scout"][0].tolist() == [[True, False]] * 2  # from infos: odd step
    assert ts.reward["scout"][0].tolist() == [1.0, 2.0]
    ts = vec.step({"scout": one})  # t=2: scout_0 terminates, last obs and reward kept
    assert ts.alive["scout"].tolist() == [[False, True]] * E
    assert ts.obs["scout"][0].tolist() == [[2.0, 0.0, 1.0], [2.0, 1.0, 1.0]]
    assert ts.reward["scout"][0].tolist() == [1.0, 2.0]
    assert not bool(ts.done.any())
    ts = vec.step({"scout": one})  # t=3: scout_0 padded with zeros, its action ignored
    assert ts.obs["scout"][0].tolist() == [[0.0, 0.0, 0.0], [3.0, 1.0, 1.0]]
    assert ts.reward["scout"][0].tolist() == [0.0, 2.0]
    assert ts.alive["scout"].tolist() == [[False, True]] * E
    assert vec.state()[0].tolist() == [3.0, 1.0]
    ts = vec.step({"scout": one})  # t=4: scout_1 truncated -> episode over, auto-reset
    assert ts.truncated.tolist() == [True] * E and ts.terminated.tolist() == [False] * E
    assert ts.final_obs["scout"][0].tolist() == [[0.0, 0.0, 0.0], [4.0, 1.0, 1.0]]
    assert ts.final_state[0].tolist() == [4.0, 0.0]
    assert ts.obs["scout"][0].tolist() == [[0.0, 0.0, 0.0], [0.0, 1.0, 0.0]]
    assert ts.alive["scout"].tolist() == [[True, True]] * E
    assert vec.state()[0].tolist() == [0.0, 2.0]
    assert vec.render(1).shape == (8, 8, 3)
    check_env(vec, steps=12)


def test_dead_agents_through_to_parallel_env():
    """A batched env with an alive mask, seen as a ParallelEnv: dead agents leave ``agents``."""
    par = to_parallel_env(from_pettingzoo(Countdown, 1, seed=0))
    run_checked(parallel_api_test, par, num_cycles=10)
    run_checked(api_test, to_aec_env(from_pettingzoo(Countdown, 1, seed=0)), num_cycles=10)
    par.reset(seed=0)
    acts = {"scout_0": 1, "scout_1": 1}
    par.step(acts)
    obs, rew, term, trunc, infos = par.step(acts)
    assert term == {"scout_0": True, "scout_1": False} and par.agents == ["scout_1"]
    assert infos["scout_1"]["action_mask"].tolist() == [1, 1]
    par.step({"scout_1": 0})
    obs, rew, term, trunc, infos = par.step({"scout_1": 0})
    assert set(obs) == {"scout_1"} and trunc == {"scout_1": True} and par.agents == []


class _Mixed(Countdown):
    def __init__(self):
        super().__init__()
        self._obs_space["scout_1"] = gym.spaces.Box(-10.0, 10.0, (4,), np.float32)

    def _obs(self, a, act=0):
        o = super()._obs(a, act)
        return np.append(o, np.float32(1.0)) if a == "scout_1" else o


def test_group_spaces_must_match():
    with pytest.raises(ValueError, match=r"scout_0.*scout_1.*group_fn"):
        from_pettingzoo(_Mixed, 1)
    vec = from_pettingzoo(_Mixed, 1, group_fn=lambda agent: agent)
    assert {g: s.obs_dim for g, s in vec.spec.groups.items()} == {"scout_0": 3, "scout_1": 4}


def test_sub_seeds_of_neighbouring_runs_do_not_overlap():
    a = {sub_seed(0, i) for i in range(200)}
    b = {sub_seed(1, i) for i in range(200)}
    assert len(a) == 200 and len(b) == 200 and not (a & b)
    assert sub_seed(3, 7) == sub_seed(3, 7)
