"""jammer_v0: API conformance (ours and PettingZoo's), 64 agents per group, hand-computed SINR
values on constructed states, zero-sum rewards up to the power cost, observations, resume."""

import math

import pytest
import torch
from pettingzoo.test import parallel_api_test

import fastmarl
from fastmarl.envs import check_env
from fastmarl.envs.episodes import evaluate_policy
from fastmarl.envs.pettingzoo import to_parallel_env
from fastmarl.envs.scripted import RandomPolicy
from fastmarl.envs.swarm.jammer import baseline_policy

torch.set_num_threads(1)

NOISE, P_TX, P_JAM = 0.04, 1.0, 4.0


@pytest.mark.parametrize("kw", [dict(), dict(num_pairs=1, num_jammers=1, num_channels=2, num_power_levels=1,
                                              link_model="threshold"),
                                dict(num_pairs=3, num_jammers=2, num_neighbors=1, mutual_interference=False)])
def test_check_env_and_pettingzoo(kw):
    check_env(fastmarl.make("jammer_v0", num_envs=3, seed=0, max_cycles=20, **kw), steps=45)
    parallel_api_test(to_parallel_env("jammer_v0", seed=0, max_cycles=20, **kw), num_cycles=45)


def test_kwargs_validated():
    with pytest.raises(TypeError, match="num_pairs"):
        fastmarl.make("jammer_v0", num_pair=2)
    for bad in (dict(num_channels=0), dict(link_model="ber"), dict(noise_power=0.0), dict(power_cost=-1.0),
                dict(num_jammers=1.5), dict(local_ratio=1.5), dict(barrage=1)):
        with pytest.raises(ValueError, match=next(iter(bad))):
            fastmarl.make("jammer_v0", **bad)


def test_scales_to_64_per_group():
    C, Cj, k = 8, 9, 4  # Cj: the jammers' channel choices, barrage included (default 8 channels)
    env = fastmarl.make("jammer_v0", num_envs=2, seed=0, num_pairs=64, num_jammers=64, num_neighbors=k)
    ts = env.reset(seed=0)
    assert ts.obs["target"].shape == (2, 64, 5 + 2 * C + k * (7 + C + Cj))
    assert ts.obs["jammer"].shape == (2, 64, 3 + C + Cj + k * (8 + C + Cj))
    for _ in range(3):
        ts = env.step({"target": torch.randint(0, 5 * C, (2, 64)), "jammer": torch.randint(0, 5 * Cj * 3, (2, 64))})
    assert ts.reward["target"].shape == (2, 64) and ts.reward["jammer"].shape == (2, 64)
    assert env.state().shape == (2, 64 * (7 + C) + 64 * (3 + Cj)) and torch.isfinite(env.state()).all()


def _env(**kw):
    kw = {"num_pairs": 1, "num_jammers": 1, "num_channels": 2, "num_power_levels": 1, "receiver_speed": 0.0,
          "noise_power": NOISE, "tx_power": P_TX, "max_jammer_power": P_JAM, "dtype": torch.float64, **kw}
    env = fastmarl.make("jammer_v0", num_envs=1, seed=0, **kw)
    env.reset(seed=0)
    return env


def _place(env, tx, rx, jam, tx_ch, jam_ch, jam_level=None):
    """Put the links and jammers at the given points; returns the TimeStep of one no-op step."""
    Cj = env.cfg.jammer_channels
    f = dict(dtype=torch.float64)
    env.tx, env.rx, env.jam = (torch.tensor([p], **f) for p in (tx, rx, jam))
    jam_level = jam_level or [0] * len(jam)
    at = torch.tensor([[5 * c for c in tx_ch]])  # move 0 (no-op) on each channel
    aj = torch.tensor([[5 * (c + Cj * lv) for c, lv in zip(jam_ch, jam_level)]])
    return env.step({"target": at, "jammer": aj})


@pytest.mark.parametrize("alpha", [2.0, 3.0])
def test_sinr_same_and_other_channel(alpha):
    # link of length 1; jammer 2 away from the receiver
    env = _env(path_loss_exponent=alpha, power_cost=0.0)
    ts = _place(env, [(-1.0, -1.0)], [(0.0, -1.0)], [(0.0, 1.0)], [1], [1])
    sinr = P_TX / (NOISE + P_JAM * 2.0 ** -alpha)
    assert env.sinr[0, 0].item() == pytest.approx(sinr, rel=1e-9)
    assert ts.reward["target"][0, 0].item() == pytest.approx(math.log2(1 + sinr), rel=1e-9)
    assert ts.reward["jammer"][0, 0].item() == pytest.approx(-math.log2(1 + sinr), rel=1e-9)
    ts = _place(env, [(-1.0, -1.0)], [(0.0, -1.0)], [(0.0, 1.0)], [1], [0])  # other channel: noise only
    assert env.sinr[0, 0].item() == pytest.approx(P_TX / NOISE, rel=1e-9)
    assert ts.reward["target"][0, 0].item() == pytest.approx(math.log2(1 + P_TX / NOISE), rel=1e-9)


def test_reference_distance_and_threshold_model():
    # link shorter than d0 = 0.1 and a jammer 0.05 from the receiver: both gains use d0
    env = _env(link_model="threshold", sinr_threshold_db=-7.0)
    ts = _place(env, [(0.0, 0.0)], [(0.05, 0.0)], [(0.05, 0.05)], [0], [0])
    sinr = P_TX * 0.1 ** -2 / (NOISE + P_JAM * 0.1 ** -2)  # 100 / 400.04 = -6.02 dB > -7 dB
    assert env.sinr[0, 0].item() == pytest.approx(sinr, rel=1e-9)
    assert ts.reward["target"][0, 0].item() == 1.0
    env = _env(link_model="threshold", sinr_threshold_db=-5.0)
    assert _place(env, [(0.0, 0.0)], [(0.05, 0.0)], [(0.05, 0.05)], [0], [0]).reward["target"][0, 0].item() == 0.0


def test_mutual_interference_and_team_reward():
    # two links on channel 0, no jammer on it: each receiver hears the other transmitter
    pts = dict(tx=[(0.0, 0.0), (0.0, 1.0)], rx=[(0.5, 0.0), (0.5, 1.0)], jam=[(-1.0, -1.0)], jam_ch=[1])
    env = _env(num_pairs=2, power_cost=0.0)
    ts = _place(env, tx_ch=[0, 0], **pts)
    d_cross = math.hypot(0.5, 1.0)  # other transmitter -> receiver
    sinr = P_TX * 0.5 ** -2 / (NOISE + P_TX * d_cross ** -2)
    assert env.sinr[0].tolist() == pytest.approx([sinr, sinr], rel=1e-9)
    rate = math.log2(1 + sinr)
    assert ts.reward["target"][0].tolist() == pytest.approx([rate, rate], rel=1e-9)  # mean over links, shared
    # separate channels (the jammer is on link 1's channel) or mutual_interference=False: noise only
    _place(env, tx_ch=[0, 1], **pts)
    assert env.sinr[0, 0].item() == pytest.approx(P_TX * 0.5 ** -2 / NOISE, rel=1e-9)
    env = _env(num_pairs=2, mutual_interference=False)
    _place(env, tx_ch=[0, 0], **pts)
    assert env.sinr[0].tolist() == pytest.approx([P_TX * 0.5 ** -2 / NOISE] * 2, rel=1e-9)


def test_barrage_spreads_power_over_channels():
    env = _env(num_channels=4, power_cost=0.0)
    assert env.spec.groups["jammer"].action_dim == 5 * 5 * 1  # channels 0..3 and barrage (4)
    ts = _place(env, [(-1.0, -1.0)], [(0.0, -1.0)], [(0.0, 0.0)], [2], [4])  # barrage, 1 from the receiver
    sinr = P_TX / (NOISE + P_JAM / 4 * 1.0)
    assert ts.reward["target"][0, 0].item() == pytest.approx(math.log2(1 + sinr), rel=1e-9)
    env = _env(num_channels=4, barrage=False)
    assert env.spec.groups["jammer"].action_dim == 5 * 4 * 1


def test_power_levels_and_cost():
    env = _env(num_power_levels=4, num_jammers=2, power_cost=0.1)
    # jammer 0 at level 1 on the link's channel, 1 away from the receiver; jammer 1 at level 3 elsewhere
    ts = _place(env, [(0.0, 0.0)], [(1.0, 0.0)], [(1.0, 1.0), (-1.0, -1.0)], [0], [0, 1], jam_level=[1, 3])
    p0 = P_JAM * 2 / 4
    rate = math.log2(1 + P_TX / (NOISE + p0 * 1.0))
    assert ts.reward["target"][0, 0].item() == pytest.approx(rate, rel=1e-9)
    assert ts.reward["jammer"][0].tolist() == pytest.approx([-rate - 0.1 * 2 / 4, -rate - 0.1 * 4 / 4], rel=1e-9)


def test_zero_sum_up_to_power_cost():
    env = fastmarl.make("jammer_v0", num_envs=8, seed=3, num_pairs=3, num_jammers=2, power_cost=0.2, num_channels=4)
    env.reset(seed=3)
    gen = torch.Generator().manual_seed(0)
    C, Cj, L = 4, 5, 3
    for _ in range(30):
        aj = torch.randint(0, 5 * Cj * L, (8, 2), generator=gen)
        ts = env.step({"target": torch.randint(0, 5 * C, (8, 3), generator=gen), "jammer": aj})
        cost = 0.2 * ((aj // (5 * Cj)) + 1).double() / L  # level l -> power (l + 1) / L of the max
        total = ts.reward["target"].mean(1).double() + ts.reward["jammer"].mean(1).double()
        assert torch.allclose(total, -cost.mean(1), atol=1e-5)
        rate = torch.log2(1 + env.sinr.double())  # (8, 3) each link's rate; local_ratio 0.5 by default
        assert torch.allclose(ts.reward["target"].double(), 0.5 * rate + 0.5 * rate.mean(1, keepdim=True), atol=1e-5)


def test_observations_sense_channels_and_opponents():
    env = _env(num_channels=3, sensing_radius=1.5, power_cost=0.0)
    ts = _place(env, [(0.0, 0.0)], [(1.0, 0.0)], [(1.0, 1.0)], [0], [2])
    C, o = 3, ts.obs["target"][0, 0]
    assert o[0:2].tolist() == [0.0, 0.0] and o[2:4].tolist() == [1.0, 0.0] and o[4:4 + C].tolist() == [1, 0, 0]
    assert o[4 + C].item() == pytest.approx(10 * math.log10(P_TX / NOISE) / 30)  # SINR dB / 30
    interf = [0.0, 0.0, 10 * math.log10(1 + P_JAM * 1.0 / NOISE) / 30]  # jammer 1 from the receiver, channel 2
    assert o[5 + C:5 + 2 * C].tolist() == pytest.approx(interf)
    slot = o[5 + 2 * C:5 + 2 * C + 4 + C + 1]  # nearest jammer: rel pos, channel one-hot (C + 1), power, seen
    assert slot.tolist() == pytest.approx([1.0, 1.0, 0, 0, 1, 0, 1.0, 1.0])
    j = ts.obs["jammer"][0, 0]
    sensed = [10 * math.log10(1 + P_TX * 2.0 ** -1 / NOISE) / 30, 0.0, 0.0]  # tx at distance sqrt(2)
    assert j[0:3 + C + 1].tolist() == pytest.approx([1, 1, 0, 0, 1, 0, 1.0])  # pos, channel 2 of C + 1, power
    assert j[4 + C:4 + 2 * C].tolist() == pytest.approx(sensed)
    assert j[4 + 2 * C:4 + 2 * C + 5 + C].tolist() == pytest.approx([-1, -1, 0, -1, 1, 0, 0, 1])
    # out of sensing range: the slots are empty and nothing is sensed
    env2 = _env(num_channels=3, sensing_radius=1.0)
    ts = _place(env2, [(0.0, 0.0)], [(1.0, 0.0)], [(-1.0, -1.0)], [0], [2])
    assert ts.obs["target"][0, 0, 5 + 2 * C:].abs().sum().item() == 0.0
    assert ts.obs["jammer"][0, 0, 4 + C:].abs().sum().item() == 0.0


def test_state_dict_resume_is_exact():
    env = fastmarl.make("jammer_v0", num_envs=4, seed=1, receiver_speed=0.05, num_channels=4)
    env.reset(seed=1)
    gen = torch.Generator().manual_seed(0)
    acts = [{"target": torch.randint(0, 20, (4, 2), generator=gen),
             "jammer": torch.randint(0, 75, (4, 2), generator=gen)}
            for _ in range(60)]  # 75 = 5 moves x (4 channels + barrage) x 3 levels
    for a in acts[:10]:
        env.step(a)
    saved = env.state_dict()
    first = [env.step(a).obs["jammer"].clone() for a in acts[10:]]
    env.load_state_dict(saved)
    again = [env.step(a).obs["jammer"].clone() for a in acts[10:]]
    assert all(torch.equal(x, y) for x, y in zip(first, again))  # includes an auto-reset at step 50


def test_scripted_baseline_beats_random_targets():
    env = fastmarl.make("jammer_v0", num_envs=64, seed=0)
    scripted = evaluate_policy(baseline_policy(env.spec), env, seed=0)
    rnd = evaluate_policy(RandomPolicy(env.spec), env, seed=0)
    assert scripted["return/target"] > rnd["return/target"] + 50  # following the receiver pays off
