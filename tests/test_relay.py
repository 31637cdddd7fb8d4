"""relay_v0: API conformance (ours and PettingZoo's), scaling to 64 relays, and
hand-checked connectivity / link-quality rewards on constructed states."""

import math

import pytest
import torch
from pettingzoo.test import parallel_api_test

import fastmarl
from fastmarl.envs import check_env
from fastmarl.envs.pettingzoo import to_parallel_env
from fastmarl.envs.swarm.relay import link_bottlenecks

torch.set_num_threads(1)


@pytest.mark.parametrize("kw", [dict(), dict(continuous_actions=True), dict(num_relays=3, num_neighbors=1),
                                dict(num_relays=1)])
def test_check_env_and_pettingzoo(kw):
    check_env(fastmarl.make("relay_v0", num_envs=3, seed=0, **kw), steps=60)
    parallel_api_test(to_parallel_env("relay_v0", seed=0, **kw), num_cycles=60)


def test_kwargs_validated():
    with pytest.raises(TypeError, match="comm_range"):
        fastmarl.make("relay_v0", comm_rang=0.5)
    with pytest.raises(ValueError, match="num_relays"):
        fastmarl.make("relay_v0", num_relays=0)


def test_scales_to_64_relays():
    env = fastmarl.make("relay_v0", num_envs=2, seed=0, num_relays=64, num_neighbors=8)
    ts = env.reset(seed=0)
    assert ts.obs["relay"].shape == (2, 64, 12 + 3 * 8)
    ts = env.step({"relay": torch.randint(0, 5, (2, 64))})
    assert ts.reward["relay"].shape == (2, 64) and env.state().shape == (2, 4 * 66)
    assert torch.isfinite(ts.reward["relay"]).all()


def _place(env, relays, base, remote):
    """Relays at ``relays`` (R, 2), base and remote at the given points, at rest, in env 0."""
    s = env.world_state
    p = torch.tensor([*relays, base, remote], dtype=s.pos.dtype)[None].expand_as(s.pos).clone()
    env.set_world_state(s._replace(pos=p, vel=torch.zeros_like(s.vel)))


def _reward(env, relays, base=(-1.0, 0.0), remote=(0.9, 0.0)):
    # (the remote is kept within 1 - its size of the origin, so 0.9 stays put)
    _place(env, relays, base, remote)
    R = len(relays)
    return env.step({"relay": torch.zeros(1, R, dtype=torch.long)}).reward["relay"][0]


def _env(**kw):
    env = fastmarl.make("relay_v0", num_envs=1, seed=0, remote_speed=0.0, comm_range=0.5, **kw)
    env.reset(seed=0)
    return env


def test_chain_connected_and_link_quality():
    env = _env()
    # straight chain, every hop 0.4 <= 0.5: connected, longest hop 0.4 -> 1 - 0.4 / 0.5
    r = _reward(env, [[-0.6, 0], [-0.2, 0], [0.2, 0], [0.6, 0]])
    assert r.tolist() == pytest.approx([1 - 0.8] * 4, abs=1e-5)
    connected, b = env.link_state()
    assert connected.tolist() == [True] and b.item() == pytest.approx(0.4, abs=1e-6)
    o = env.observations()["relay"][0]
    assert o[:, 10:12].tolist() == [[1.0, 1.0]] * 4  # every relay hears base and remote


def test_chain_broken_by_one_long_hop():
    env = _env()
    # relay 3 pulled back: hop relay 3 -> remote is 0.55 > 0.5
    r = _reward(env, [[-0.6, 0], [-0.2, 0], [0.2, 0], [0.35, 0]])
    # shaping (default 1): -1 - (0.55 / 0.5 - 1), the open bottleneck being that 0.55 hop
    assert r.tolist() == pytest.approx([-1.1] * 4, abs=1e-5)
    assert env.link_state()[0].tolist() == [False]
    o = env.observations()["relay"][0]
    assert o[:, 10].tolist() == [1.0] * 4 and o[:, 11].tolist() == [0.0] * 4  # nobody hears the remote


def test_shaping_when_disconnected():
    # all relays next to the base (0.1 apart: no overlap, 0.1 is not < 2 * 0.05): the open bottleneck is the
    # 1.5 hop to the remote: gap 1.5 / 0.5 - 1 = 2
    relays = [[-0.9, 0.0], [-0.9, 0.1], [-0.9, -0.1], [-0.9, 0.2]]
    assert _reward(_env(), relays, remote=(0.6, 0.0)).tolist() == pytest.approx([-3.0] * 4, abs=1e-5)
    # a gap beyond 3 is clipped: comm range 0.3, bottleneck 1.5 -> gap 4 -> 3
    r = _reward(fastmarl.make("relay_v0", num_envs=1, seed=0, remote_speed=0.0, comm_range=0.3), relays,
                remote=(0.6, 0.0))
    assert r.tolist() == pytest.approx([-4.0] * 4, abs=1e-5)
    assert _reward(_env(shaping=0.0), relays, remote=(0.6, 0.0)).tolist() == pytest.approx([-1.0] * 4, abs=1e-6)
    # relays at -0.4, 0.1 (hops 0.6, 0.5, 0.5): open bottleneck 0.6 -> -1 - 0.5 * (0.6 / 0.5 - 1)
    relays = [[-0.4, 0.0], [0.1, 0.0], [-0.4, 0.0], [0.1, 0.0]]
    r = _reward(_env(shaping=0.5, collision_penalty=0.0), relays, remote=(0.6, 0.0))
    assert r.tolist() == pytest.approx([-1.1] * 4, abs=1e-5)
    with pytest.raises(ValueError, match="shaping"):
        fastmarl.make("relay_v0", shaping=-1.0)


def test_connected_via_non_obvious_path():
    env = _env()
    # relays out of index order on a detour through y = 0.3: base -> r2 -> r0 -> r3 -> r1 -> remote;
    # hops hypot(0.35, 0.3) ~ 0.461, 0.4, 0.4, 0.4, hypot(0.3, 0.3) ~ 0.424 (base and remote 1.85 apart)
    relays = [[-0.2, 0.3], [0.6, 0.3], [-0.6, 0.3], [0.2, 0.3]]
    r = _reward(env, relays, base=(-0.95, 0.0), remote=(0.9, 0.0))
    assert r.tolist() == pytest.approx([1 - math.hypot(0.35, 0.3) / 0.5] * 4, abs=1e-5)
    # the best path is the one whose longest hop is smallest, not the one with fewest hops
    nodes = torch.tensor([[[0.0, 0.0], [0.3, 0.0], [0.45, 0.2], [0.6, 0.0]]])  # base, a, b, remote
    b = link_bottlenecks(nodes, 0.5)
    # base-a-remote (hops 0.3, 0.3) beats base-b-remote (~0.49, 0.25); base-remote (0.6) is no link
    assert b[0, 0, -1].item() == pytest.approx(0.3, abs=1e-6)
    assert b[0, 1, 0].item() == pytest.approx(0.3, abs=1e-6)  # symmetric from the remote side
    assert b[0, 0, 2].item() == pytest.approx(0.3, abs=1e-6)  # base-a-b (0.3, 0.25) beats direct base-b (~0.49)
    assert b[0, 1, 1].item() == pytest.approx(0.25, abs=1e-6)  # remote-b-a (0.25, 0.25) beats remote-a (0.3)
    far = link_bottlenecks(torch.tensor([[[0.0, 0.0], [0.3, 0.0], [1.0, 0.0]]]), 0.5)
    assert far[0, 0].tolist() == [0.0, pytest.approx(0.3), math.inf] and far[0, 1, 1].item() == math.inf


def test_collision_penalty_is_local():
    env = _env(collision_penalty=0.1)
    # relays 0 and 1 overlap (0.05 apart < 2 * 0.05); chain still connected with hops <= 0.4
    r = _reward(env, [[-0.6, 0], [-0.55, 0], [-0.2, 0], [0.2, 0]], remote=(0.6, 0.0))
    # chain: base -0.6 (0.4) -0.55 (0.35) -0.2 (0.4) 0.2 (0.4) -> remote at 0.6 (0.4)
    assert r.tolist() == pytest.approx([0.2 - 0.1, 0.2 - 0.1, 0.2, 0.2], abs=1e-5)


def test_remote_moves_along_path():
    env = fastmarl.make("relay_v0", num_envs=2, seed=0, remote_speed=0.3)
    env.reset(seed=0)
    before = env.world_state.pos[:, -1].clone()
    env.step({"relay": torch.zeros(2, 4, dtype=torch.long)})
    after = env.world_state.pos[:, -1]
    assert (after - before).norm(dim=-1).gt(0).all()
    assert torch.allclose(env.world_state.vel[:, -1], (after - before) / 0.1, atol=1e-5)


def test_bottleneck_early_stop_matches_full_relaxation():
    # random 40-node graphs: the early-stopping relaxation equals M - 1 full rounds
    g = torch.Generator().manual_seed(0)
    nodes = torch.rand(64, 40, 2, generator=g) * 2 - 1
    b = link_bottlenecks(nodes, 0.35)
    d = torch.cdist(nodes, nodes)
    hop = torch.where(d <= 0.35, d, math.inf)[:, None]
    ref = torch.full((64, 2, 40), math.inf)
    ref[:, 0, 0], ref[:, 1, -1] = 0.0, 0.0
    for _ in range(39):
        ref = torch.minimum(ref, torch.maximum(ref[..., :, None], hop).amin(-2))
    assert torch.equal(torch.isinf(b), torch.isinf(ref)) and torch.allclose(b[~b.isinf()], ref[~ref.isinf()], atol=1e-5)
    assert 0 < torch.isfinite(b[:, 0, -1]).sum() < 64  # both connected and disconnected cases occur


def test_even_spacing_baseline():
    from fastmarl.envs.episodes import evaluate_policy
    from fastmarl.envs.scripted import RandomPolicy
    from fastmarl.envs.swarm.relay import baseline_policy

    env = _env()
    # base (-1, 0), remote (0.9, 0): slots at -1 + 1.9 (k + 1) / 5 = -0.62, -0.24, 0.14, 0.52; relays in
    # index order 2, 0, 3, 1 along the line get ranks 0..3: relay 2 sits on slot 0 (no-op), relay 0 is left
    # of slot 1 (+x), relay 3 right of slot 2 (-x), relay 1 below slot 3 (+y)
    _place(env, [[-0.5, 0.0], [0.52, -0.3], [-0.62, 0.0], [0.3, 0.0]], (-1.0, 0.0), (0.9, 0.0))
    obs = env.observations()
    ts = fastmarl.envs.api.TimeStep(obs=obs, reward={}, terminated=torch.zeros(1, dtype=torch.bool),
                                    truncated=torch.zeros(1, dtype=torch.bool), final_obs=obs)
    a, _ = baseline_policy(env.spec).act(ts, {})
    assert a["relay"].tolist() == [[2, 4, 0, 1]]
    env = fastmarl.make("relay_v0", num_envs=64, seed=0)
    base = evaluate_policy(baseline_policy(env.spec), env, seed=1)["return"]
    rand = evaluate_policy(RandomPolicy(env.spec), env, seed=1)["return"]
    assert base > rand + 50  # about -3 vs -92
