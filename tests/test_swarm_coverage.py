"""swarm_coverage_v0: API conformance (ours and PettingZoo's), 64 drones, and hand-checked
coverage / target / battery / charging numbers on constructed states."""

import pytest
import torch
from pettingzoo.test import parallel_api_test

import fastmarl
from fastmarl.envs import check_env
from fastmarl.envs.api import env_state_dict, load_env_state_dict
from fastmarl.envs.episodes import evaluate_policy
from fastmarl.envs.pettingzoo import to_parallel_env
from fastmarl.envs.scripted import RandomPolicy
from fastmarl.envs.swarm.coverage import BASELINE, baseline_policy, station_charging

torch.set_num_threads(1)
ID = "swarm_coverage_v0"


@pytest.mark.parametrize("kw", [dict(max_cycles=40), dict(continuous_actions=True, max_cycles=40),
                                dict(num_drones=3, num_stations=2, station_capacity=2, num_neighbors=1, max_cycles=30),
                                dict(num_drones=1, num_targets=0, grid_size=4, patch_radius=0)])
def test_check_env_and_pettingzoo(kw):
    check_env(fastmarl.make(ID, num_envs=3, seed=0, **kw), steps=50)
    parallel_api_test(to_parallel_env(ID, seed=0, **kw), num_cycles=80)


def test_kwargs_validated():
    with pytest.raises(TypeError, match="sensing_radius"):
        fastmarl.make(ID, sensing_radus=0.2)
    for bad in (dict(grid_size=3), dict(num_drones=0), dict(station_capacity=0), dict(sensing_radius=0.0),
                dict(move_drain=-0.1), dict(num_stations=1.5)):
        with pytest.raises(ValueError, match=next(iter(bad))):
            fastmarl.make(ID, **bad)


def test_64_drones_shapes():
    env = fastmarl.make(ID, num_envs=2, seed=0, num_drones=64, grid_size=32, num_stations=4, num_neighbors=6)
    ts = env.reset(seed=0)
    obs_dim = 6 + 3 * 3 + 3 * 6 + 3 + 25 + 16
    assert ts.obs["drone"].shape == (2, 64, obs_dim) and ts.action_mask["drone"].shape == (2, 64, 5)
    ts = env.step({"drone": torch.randint(0, 5, (2, 64))})
    assert ts.reward["drone"].shape == (2, 64) and env.state().shape == (2, 5 * 64 + 3 * 4 + 3 * 4 + 16 * 16 + 1)
    assert env.render().shape == (400, 400, 3)


def _env(**kw):
    base = dict(num_drones=2, grid_size=10, sensing_radius=0.15, num_targets=1, coverage_reward=10.0,
                target_reward=1.0, idle_drain=0.01, move_drain=0.02, charge_rate=0.25, station_radius=0.1)
    env = fastmarl.make(ID, num_envs=1, seed=0, **{**base, **kw})
    env.reset(seed=0)
    env.covered = torch.ones_like(env.covered)  # everything seen unless a test clears cells, except
    env.covered[0, 0, 0] = False  # a far corner cell, so the episode does not end (all covered + found)
    env.found = torch.ones_like(env.found)
    env.stations = torch.full_like(env.stations, 0.9)  # out of the way
    env.battery = torch.full_like(env.battery, 0.5)
    return env


def _stay(env):
    return env.step({"drone": torch.zeros(1, env.D, dtype=torch.long)})


def test_cell_counted_once_even_if_two_drones_see_it():
    env = _env()
    # cell (ix, iy) = (5, 5) has centre (0.1, 0.1) (cell side 0.2); both drones are 0.05 from it
    env.pos = torch.tensor([[[0.05, 0.1], [0.15, 0.1]]])
    env.covered[0, 5, 5] = False
    r = _stay(env).reward["drone"][0]
    assert r.tolist() == pytest.approx([10.0 * 1 / 100] * 2)  # one cell, not two
    assert bool(env.covered[0, 5, 5])
    assert _stay(env).reward["drone"][0].tolist() == [0.0, 0.0]  # seen again: nothing


def test_disc_covers_the_hand_counted_cells():
    env = _env(sensing_radius=0.25)
    env.covered = torch.zeros_like(env.covered)
    env.pos = torch.tensor([[[0.1, 0.1], [0.1, 0.1]]])  # on the centre of cell (5, 5)
    # centres within 0.25: its own cell and the 4 side neighbours (0.2 away); diagonals are 0.283 away
    ts = _stay(env)
    assert ts.reward["drone"][0].tolist() == pytest.approx([10.0 * 5 / 100] * 2)
    assert env.covered[0].nonzero().tolist() == [[4, 5], [5, 4], [5, 5], [5, 6], [6, 5]]
    patch = env.observations()["drone"][0, 0, 6 + 3 + 12 + 3:6 + 3 + 12 + 3 + 25].reshape(5, 5)  # [dx, dy]
    want = torch.zeros(5, 5)
    want[1, 2] = want[2, 1] = want[2, 2] = want[2, 3] = want[3, 2] = 1.0
    assert torch.equal(patch, want)


def test_target_found_once_and_hint():
    env = _env(hint_radius=0.4)
    env.found = torch.zeros_like(env.found)
    env.targets = torch.tensor([[[0.3, 0.0]]])
    env.pos = torch.tensor([[[0.0, 0.0], [0.6, 0.5]]])  # drone 0 is 0.3 away: hint, not found
    hint = slice(6 + 3 + 12, 6 + 3 + 12 + 3)
    assert env.observations()["drone"][0, 0, hint].tolist() == pytest.approx([0.3, 0.0, 1.0])
    assert env.observations()["drone"][0, 1, hint].tolist() == [0.0, 0.0, 0.0]  # 0.58 away: no hint
    assert _stay(env).reward["drone"][0].tolist() == [0.0, 0.0]
    env.pos = torch.tensor([[[0.2, 0.0], [0.4, 0.0]]])  # both within 0.15: found once
    assert _stay(env).reward["drone"][0].tolist() == pytest.approx([1.0, 1.0])
    assert _stay(env).reward["drone"][0].tolist() == [0.0, 0.0]
    assert env.observations()["drone"][0, 0, hint].tolist() == [0.0, 0.0, 0.0]  # found: no more hint


def test_battery_drains_and_charges_at_the_hand_computed_rate():
    env = _env()
    env.stations = torch.tensor([[[0.0, 0.0]]])
    env.pos = torch.tensor([[[0.05, 0.0], [-0.5, -0.5]]])  # drone 0 at the station, drone 1 away
    env.battery = torch.tensor([[0.5, 0.5]])
    env.step({"drone": torch.tensor([[0, 2]])})  # drone 1 moves +x
    assert env.battery[0].tolist() == pytest.approx([0.5 - 0.01 + 0.25, 0.5 - 0.01 - 0.02])
    assert env.pos[0, 1].tolist() == pytest.approx([-0.4, -0.5])
    env.step({"drone": torch.tensor([[0, 0]])})
    env.step({"drone": torch.tensor([[0, 0]])})  # charging saturates at 1
    assert env.battery[0].tolist() == pytest.approx([1.0, 0.47 - 0.02])


def test_continuous_thrust_drains_in_proportion():
    env = _env(continuous_actions=True)
    env.pos = torch.tensor([[[-0.5, -0.5], [-0.5, 0.5]]])
    env.step({"drone": torch.tensor([[[0.3, 0.4], [1.0, 1.0]]])})  # |u| = 0.5 and 1 (clipped from sqrt 2)
    assert env.battery[0].tolist() == pytest.approx([0.5 - 0.01 - 0.02 * 0.5, 0.5 - 0.01 - 0.02])
    want = torch.tensor([[-0.47, -0.46], [-0.5 + 0.1 / 2 ** 0.5, 0.5 + 0.1 / 2 ** 0.5]])
    assert torch.allclose(env.pos[0], want, atol=1e-6)


@pytest.mark.parametrize("capacity,charged", [(1, [False, True, False]), (2, [False, True, True]),
                                              (3, [True, True, True])])
def test_station_capacity(capacity, charged):
    env = _env(num_drones=3, station_capacity=capacity)
    env.stations = torch.tensor([[[0.0, 0.0]]])
    # drone 0 is 0.06 from the station; drones 1 and 2 tie at 0.03: nearest first, then lower index
    env.pos = torch.tensor([[[0.06, 0.0], [0.03, 0.0], [-0.03, 0.0]]])
    env.battery = torch.full((1, 3), 0.5)
    occ = env.observations()["drone"][0, :, 8]
    assert occ.tolist() == pytest.approx([3.0 / capacity] * 3)
    ts = _stay(env)
    assert ts.info["charging"][0].tolist() == charged
    want = [0.5 - 0.01 + (0.25 if c else 0.0) for c in charged]
    assert env.battery[0].tolist() == pytest.approx(want)


def test_station_charging_two_stations_nearest_wins():
    pos = torch.tensor([[[0.0, 0.0], [0.35, 0.0], [0.55, 0.0]]])
    stations = torch.tensor([[[0.0, 0.05], [0.5, 0.0]]])
    charging, at, occ = station_charging(pos, stations, 0.2, 1)
    # drone 1 is within range of both (0.354 from station 0 is out; 0.15 from station 1 in) -> station 1
    assert at[0].tolist() == [0, 1, 1] and occ[0].tolist() == [1, 2]
    assert charging[0].tolist() == [True, False, True]  # drone 2 (0.05) beats drone 1 (0.15)


def test_empty_battery_cannot_move_or_sense_until_recharged():
    env = _env()
    env.stations = torch.tensor([[[0.5, 0.5]]])
    env.pos = torch.tensor([[[0.1, 0.1], [0.5, 0.5]]])
    env.battery = torch.tensor([[0.0, 0.0]])
    env.covered[0, 5, 5] = False
    mask = env._mask()["drone"][0]
    assert mask.tolist() == [[True, False, False, False, False]] * 2
    ts = env.step({"drone": torch.tensor([[2, 2]])})  # ignored: both are empty
    assert torch.equal(env.pos[0], torch.tensor([[0.1, 0.1], [0.5, 0.5]]))
    assert ts.reward["drone"][0].tolist() == [0.0, 0.0] and not bool(env.covered[0, 5, 5])  # no sensing
    # drone 1 sits at the station: it recharged and may move again; drone 0 stays empty
    assert env.battery[0].tolist() == pytest.approx([0.0, 0.25 - 0.01])
    assert ts.action_mask["drone"][0].tolist() == [[True, False, False, False, False], [True] * 5]
    env.step({"drone": torch.tensor([[0, 2]])})
    assert env.pos[0, 1].tolist() == pytest.approx([0.6, 0.5])


def test_state_dict_round_trip_continues_identically():
    env = fastmarl.make(ID, num_envs=4, seed=3)
    env.reset(seed=3)
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        env.step({"drone": torch.randint(0, 5, (4, 4), generator=g)})
    saved = env_state_dict(env)
    acts = [torch.randint(0, 5, (4, 4), generator=g) for _ in range(3)]
    first = [env.step({"drone": a}).obs["drone"].clone() for a in acts]
    other = fastmarl.make(ID, num_envs=4, seed=99)
    assert load_env_state_dict(other, saved)
    again = [other.step({"drone": a}).obs["drone"] for a in acts]
    assert all(torch.equal(a, b) for a, b in zip(first, again))


def test_baseline_beats_random():
    assert "scripted" in BASELINE
    env = fastmarl.make(ID, num_envs=32, seed=1)
    scripted = evaluate_policy(baseline_policy(env.spec), env)["return"]
    rand = evaluate_policy(RandomPolicy(env.spec), fastmarl.make(ID, num_envs=32, seed=1))["return"]
    assert scripted > rand + 3.0, (scripted, rand)
    assert scripted <= 10.0 + 4.0 + 1e-4  # cannot exceed full coverage + every target


def test_env_state_from_another_size_is_refused_before_anything_changes():
    small = fastmarl.make("swarm_coverage_v0", num_envs=2, seed=0)
    big = fastmarl.make("swarm_coverage_v0", num_envs=3, seed=0)
    small.reset(seed=0), big.reset(seed=0)
    before = {k: v.clone() for k, v in big.state_dict().items() if k != "generator"}
    with pytest.raises(ValueError, match=r"saved pos has shape \(2, "):
        big.load_state_dict(small.state_dict())
    saved = small.state_dict()
    del saved["battery"]
    with pytest.raises(ValueError, match="no 'battery'"):
        small.load_state_dict(saved)
    assert all(torch.equal(before[k], v) for k, v in big.state_dict().items() if k != "generator")
