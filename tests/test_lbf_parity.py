"""fastmarl's batched LBF against the reference ``lbforaging==2.0.0``, step for step, and its spawn laws.

N reference envs and one fastmarl env with num_envs=N start in the same state (each
reference reset written into fastmarl) and take the same random actions (LOAD favoured
where it is valid, invalid actions included); every action mask, observation, reward and
done must agree. The conflicts met are counted and must occur where the configuration
allows them. The resets are compared in distribution (chi-square two-sample tests).
"""

import numpy as np
import pytest
import torch
from lbf_reference import make_reference, run_parity
from scipy import stats

import fastmarl

STEPS = 10_000  # env-steps per configuration (summed over the batch)


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# what every configuration must meet; overlap (a player moving onto one whose move failed) needs 3 players
ANY = {"invalid", "move_collision", "load", "joint_load", "failed_load", "rewarded"}
CROWD = ANY | {"overlap"}
CONFIGS = [  # id, num_envs, p_load, kwargs, counters that must be > 0
    ("Foraging-8x8-2p-2f-coop-v3", 20, 0.8, {}, ANY),
    ("Foraging-2s-8x8-2p-2f-coop-v3", 20, 0.8, {}, ANY),
    ("Foraging-10x10-3p-3f-v3", 20, 0.6, {}, CROWD),
    ("Foraging-15x15-4p-3f-v3", 20, 0.6, {}, CROWD),
    ("Foraging-2s-12x12-6p-4f-v3", 20, 0.6, {"penalty": 0.1}, CROWD | {"penalised"}),
    ("Foraging-5x5-9p-2f-v3", 20, 0.5, {}, CROWD),
    ("Foraging-8x8-4p-1f-coop-v3", 20, 0.8, {"sight": 1, "observe_agent_levels": False}, CROWD),
    ("Foraging-7x7-3p-2f-v3", 20, 0.6, {"sight": 3, "normalize_reward": False, "penalty": 0.5,
                                        "min_player_level": [1, 2, 1], "max_player_level": [2, 3, 4],
                                        "max_food_level": [3, 5], "max_episode_steps": 80}, CROWD | {"penalised"}),
    ("Foraging-2s-19x19-9p-4f-coop-v3", 10, 0.8, {}, CROWD),
]
NAMES = [f"{c[0]}-{'-'.join(k for k in c[3]) or 'default'}" for c in CONFIGS]


@pytest.mark.slow
@pytest.mark.parametrize("env_id,num_envs,p_load,kwargs,expect", CONFIGS, ids=NAMES)
def test_parity_with_reference(env_id, num_envs, p_load, kwargs, expect):
    counts = run_parity(env_id, num_envs, STEPS, seed=len(env_id), p_load=p_load, **kwargs)
    print(env_id, dict(counts))
    assert counts["env_steps"] >= STEPS and counts["resets"] >= num_envs
    assert counts["next_to_two_food"] == 0  # the premise of serving all food at once
    assert not [k for k in expect if counts[k] == 0], f"conflicts not exercised: {dict(counts)}"


def test_parity_quick():
    """The fast tier's parity case: 1,500 crowded steps, penalty on, partial observability."""
    counts = run_parity("Foraging-2s-6x6-5p-3f-v3", 10, 1500, seed=3, p_load=0.6, penalty=0.1)
    print(dict(counts))
    assert not [k for k in CROWD | {"penalised"} if counts[k] == 0], dict(counts)


def _ref_resets(r, n: int, cells=None) -> dict:
    """``n`` reference resets; ``cells`` None: each as a new env's first reset (no old positions), else the
    players stand on ``cells`` (A [row, col]) before each reset."""
    out = {k: [] for k in ("p0", "plast", "level0", "level", "food", "food_level", "n_food")}
    for _ in range(n):
        for i, p in enumerate(r.players):
            p.position = None if cells is None else tuple(cells[i])
        r.reset()
        W = r.field.shape[1]
        out["p0"].append(r.players[0].position[0] * W + r.players[0].position[1])
        out["plast"].append(r.players[-1].position[0] * W + r.players[-1].position[1])
        out["level0"].append(int(r.players[0].level))
        out["level"] += [int(p.level) for p in r.players]
        rows, cols = np.nonzero(r.field)
        out["food"] += list(rows * W + cols)
        out["food_level"] += list(r.field[rows, cols])
        out["n_food"].append(len(rows))
    return {k: np.array(v) for k, v in out.items()}


def _ours(env) -> dict:
    W = env.W
    cell = env.agent_pos[..., 0] * W + env.agent_pos[..., 1]
    alive = env.food_level > 0
    fcell = env.food_pos[..., 0] * W + env.food_pos[..., 1]
    return {"p0": cell[:, 0].numpy(), "plast": cell[:, -1].numpy(), "level0": env.agent_level[:, 0].numpy(),
            "level": env.agent_level.flatten().numpy(),
            "food": fcell[alive].numpy(), "food_level": env.food_level[alive].numpy(),
            "n_food": alive.sum(1).numpy()}


def _same_law(a: np.ndarray, b: np.ndarray) -> float:
    """p-value of a chi-square two-sample test on the counts of the values of ``a`` and ``b``."""
    k = int(max(a.max(), b.max())) + 1
    table = np.stack([np.bincount(a, minlength=k), np.bincount(b, minlength=k)])
    table = table[:, table.sum(0) > 0]
    return 1.0 if table.shape[1] < 2 else stats.chi2_contingency(table).pvalue


@pytest.mark.parametrize("env_id,kwargs", [
    # crowded: fewer food than asked are spawned, at varying counts (slow: the reference then spends its 1,000
    # tries on every reset)
    pytest.param("Foraging-5x5-6p-4f-v3", {}, marks=pytest.mark.slow),
    ("Foraging-8x8-3p-2f-coop-v3", {"min_player_level": [1, 2, 1], "max_player_level": [3, 2, 1]}),
    ("Foraging-6x6-4p-3f-v3", {"max_food_level": [2, 4, 6], "min_food_level": [1, 3, 2]}),
])
def test_first_reset_distribution_matches_reference(env_id, kwargs):
    n = 3000
    env = fastmarl.make(env_id, num_envs=n, seed=11, **kwargs)
    env.reset(seed=11)
    r = make_reference(env_id, **kwargs)
    r.reset(seed=11)
    ours, theirs = _ours(env), _ref_resets(r, n)
    for k in ours:
        assert _same_law(ours[k], theirs[k]) > 1e-3, (env_id, k)


def test_auto_reset_avoids_the_old_cells_as_the_reference():
    """At an auto-reset, player i avoids where players >= i stood (the reference keeps their old positions while it
    respawns): the laws of the new cells match, and differ from a first reset's (the test has power)."""
    n, env_id = 3000, "Foraging-6x6-6p-1f-v3"
    cells = np.array([[0, 0], [0, 1], [1, 1], [2, 2], [5, 5], [4, 0]])
    env = fastmarl.make(env_id, num_envs=n, seed=5)
    env.reset(seed=5)
    fresh = _ours(env)
    env.agent_pos[:] = torch.tensor(cells)
    env.t[:] = env.max_episode_steps - 1  # the next step ends every episode
    ts = env.step({"agent": torch.zeros(n, 6, dtype=torch.long)})
    assert bool(ts.truncated.all() | ts.terminated.all())
    r = make_reference(env_id)
    r.reset(seed=5)
    ours, theirs = _ours(env), _ref_resets(r, n, cells)
    for k in ours:
        assert _same_law(ours[k], theirs[k]) > 1e-3, k
    assert not np.isin(ours["p0"], cells[:, 0] * 6 + cells[:, 1]).any()  # player 0 avoids all six old cells
    assert _same_law(fresh["p0"], theirs["p0"]) < 1e-6
