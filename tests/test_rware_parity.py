"""fastmarl's batched RWARE against the reference ``rware==2.0.0``, step for step.

N reference envs and one fastmarl env with num_envs=N start in the same state (the
reference's reset written into fastmarl) and take the same random actions; every
observation, reward and done must agree. The reference's random draws are made to
agree: the new request after a delivery (``request_draws``, read off a copy of the
reference's generator before its step) and networkx's tie-break order between
equally long queues (``tie_priority``, read from the node order of the components
the reference hands to ``dag_longest_path``). The conflict resolution itself is
fastmarl's; the conflicts it met are counted and must occur.
"""

import copy
from collections import Counter

import gymnasium as gym
import networkx as nx
import numpy as np
import pytest
import rware
import torch
from rware import warehouse as ref
from scipy import stats

import fastmarl
from fastmarl.envs.rware import Warehouse

if "rware-img-tiny-1ag-v2" not in gym.registry:
    rware.image_registration()  # the reference's rware-img[dict][-Nd]-... ids
STEPS = 10_000  # env-steps per configuration (summed over the batch)


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


class TieRecorder:
    """Wraps networkx's dag_longest_path (result unchanged) to record each component's node order."""

    def __init__(self):
        self.orders: list[list] = []
        self._orig = nx.algorithms.dag_longest_path

    def __call__(self, G, *args, **kwargs):
        self.orders.append(list(G))
        return self._orig(G, *args, **kwargs)


def write_state(env: Warehouse, e: int, r) -> None:
    """The reference env ``r``'s state into fastmarl env index ``e``."""
    env.agent_pos[e] = torch.tensor([[a.x, a.y] for a in r.agents])
    env.agent_dir[e] = torch.tensor([a.dir.value for a in r.agents])
    env.carrying[e] = torch.tensor([a.carrying_shelf.id - 1 if a.carrying_shelf else -1 for a in r.agents])
    env.has_delivered[e] = torch.tensor([a.has_delivered for a in r.agents])
    env.shelf_pos[e] = torch.tensor([[s.x, s.y] for s in r.shelfs])
    env.requests[e] = torch.tensor([s.id - 1 for s in r.request_queue], dtype=torch.long)
    env.t[e], env.inactive[e] = r._cur_steps, r._cur_inactive_steps


def flat(space, obs) -> np.ndarray:
    """One reference observation as fastmarl's flat vector (dict observations through gymnasium's flatten)."""
    return gym.spaces.flatten(space, obs).astype(np.float64) if isinstance(obs, dict) else np.asarray(obs).reshape(-1)


def ref_obs(r, obs) -> np.ndarray:
    return np.stack([flat(r.observation_space[i], o) for i, o in enumerate(obs)])


def run_parity(env_id: str, num_envs: int, steps: int, seed: int, monkeypatch, p_forward: float = 0.2,
               **kwargs) -> Counter:
    """Lockstep run; actions uniform but for FORWARD, drawn with probability ``p_forward`` (crowds queue)."""
    refs = [gym.make(env_id, disable_env_checker=True, **kwargs).unwrapped for _ in range(num_envs)]
    env = fastmarl.make(env_id, num_envs=num_envs, seed=seed, dtype=torch.float64, **kwargs)
    env.reset(seed=seed)  # step() needs a reset first; the state is then overwritten
    rec = TieRecorder()
    monkeypatch.setattr(nx.algorithms, "dag_longest_path", rec)
    A, S, R, G = env.num_agents, env.num_shelves, env.num_requests, len(env.goal_cells)
    first = []
    for e, r in enumerate(refs):
        first.append(ref_obs(r, r.reset(seed=seed * 1000 + e)[0]))
        write_state(env, e, r)
    np.testing.assert_array_equal(env._obs()["agent"].numpy(), np.stack(first))
    rng = np.random.default_rng(seed)
    probs = np.full(5, (1 - p_forward) / 4)
    probs[1] = p_forward
    counts: Counter = Counter()
    for t in range(steps // num_envs + 1):
        actions = rng.choice(5, (num_envs, A), p=probs)
        prio = np.full((num_envs, A), 10**6)
        draws = np.zeros((num_envs, G), dtype=np.int64)
        refs_obs, ref_rew, ref_done = [], [], []
        for e, r in enumerate(refs):
            g = copy.deepcopy(r.np_random)
            draws[e] = [g.integers(0, max(S - R, 1)) for _ in range(G)]
            starts = {(a.x, a.y): i for i, a in enumerate(r.agents)}
            rec.orders.clear()
            obs, rew, done, trunc, _ = r.step(list(actions[e]))
            for order in rec.orders:
                for rank, node in enumerate(order):
                    if node in starts:
                        prio[e, starts[node]] = rank
            refs_obs.append(ref_obs(r, obs))
            ref_rew.append(rew)
            ref_done.append(done or trunc)
        before = env.state_dict()
        ts = env.step({"agent": torch.as_tensor(actions)}, tie_priority=torch.as_tensor(prio),
                      request_draws=torch.as_tensor(draws))
        where = f"{env_id}, step {t}"
        np.testing.assert_array_equal(ts.final_obs["agent"].numpy(), np.stack(refs_obs), err_msg=where)
        np.testing.assert_array_equal(ts.reward["agent"].numpy(), np.array(ref_rew), err_msg=where)
        np.testing.assert_array_equal(ts.done.numpy(), np.array(ref_done), err_msg=where)
        for k, v in ts.info["conflicts"].items():
            counts[k] += int(v.sum())
        if int(ts.info["conflicts"]["tie"].sum()):  # would networkx's insertion order (our default) differ?
            after = {k: getattr(env, k).clone() for k in ("agent_pos", "carrying")}
            env.load_state_dict(before)
            env.step({"agent": torch.as_tensor(actions)}, request_draws=torch.as_tensor(draws))
            counts["tie_order_mattered"] += int((env.agent_pos != after["agent_pos"]).any(-1).any(-1).sum())
            env.load_state_dict(before)
            env.step({"agent": torch.as_tensor(actions)}, tie_priority=torch.as_tensor(prio),
                     request_draws=torch.as_tensor(draws))
        counts["deliveries"] += int((np.array(ref_rew) > 0).any(1).sum())
        counts["loaded"] += int((env.carrying >= 0).sum())
        counts["env_steps"] += num_envs
        for e in np.nonzero(np.array(ref_done))[0]:
            obs, _ = refs[e].reset()
            write_state(env, int(e), refs[e])
            np.testing.assert_array_equal(env._obs()["agent"][e].numpy(), ref_obs(refs[e], obs),
                                          err_msg=f"{where} reset")
            counts["resets"] += 1
    return counts


# a square open floor (the reference's transposed AGENT_DIRECTION/AGENT_LOAD writes stay on it), crowded
OPEN = "\n".join(["x.x.x.", "......", ".x..x.", "......", "x.x.x.", "..gg.."])
ALL_LAYERS = [ref.ImageLayer(i) for i in range(7)]
# conflict kinds each configuration must have met (two robots rarely meet; random robots rarely deliver)
BASE = {"loaded", "chain", "blocked_loaded"}
CROWD = BASE | {"same_target", "swap", "tie", "tie_order_mattered"}
DELIVER = CROWD | {"deliveries"}
CONFIGS = [  # id, num_envs, p_forward, kwargs, counters that must be > 0
    ("rware-tiny-2ag-v2", 20, 0.2, {}, BASE | {"deliveries"}),
    ("rware-tiny-4ag-hard-v2", 20, 0.2, {}, CROWD - {"tie_order_mattered"}),
    ("rware-tiny-8ag-easy-v2", 20, 0.4, {}, DELIVER),
    ("rware-small-4ag-v2", 20, 0.2, {}, CROWD - {"tie_order_mattered"}),
    ("rware-small-12ag-easy-v2", 20, 0.4, {"reward_type": ref.RewardType.GLOBAL}, DELIVER),
    ("rware-tiny-16ag-v2", 20, 0.5, {"reward_type": ref.RewardType.TWO_STAGE, "max_inactivity_steps": 120}, DELIVER),
    ("rware-medium-6ag-v2", 10, 0.3, {"sensor_range": 2, "normalised_coordinates": True}, CROWD),
    ("rware-tiny-4ag-v2", 20, 0.6, {"layout": OPEN, "n_agents": 14, "observation_type": ref.ObservationType.IMAGE,
                                    "image_observation_layers": ALL_LAYERS}, DELIVER | {"cycle"}),
    ("rware-imgdict-Nd-tiny-6ag-v2", 20, 0.3, {"sensor_range": 2}, DELIVER),
    ("rware-img-small-4ag-v2", 20, 0.3, {}, CROWD - {"tie_order_mattered"}),
    ("rware-tiny-8ag-v2", 20, 0.3, {"observation_type": ref.ObservationType.DICT, "normalised_coordinates": True},
     DELIVER),
]
NAMES = [f"{c[0]}-{'-'.join(str(getattr(v, 'name', v))[:8] for v in c[3].values()) or 'default'}" for c in CONFIGS]


@pytest.mark.slow
@pytest.mark.parametrize("env_id,num_envs,p_forward,kwargs,expect", CONFIGS, ids=NAMES)
def test_parity_with_reference(env_id, num_envs, p_forward, kwargs, expect, monkeypatch):
    counts = run_parity(env_id, num_envs, STEPS, seed=len(env_id), monkeypatch=monkeypatch, p_forward=p_forward,
                        **kwargs)
    print(env_id, dict(counts))
    assert counts["env_steps"] >= STEPS and counts["resets"] >= num_envs
    assert not [k for k in expect if counts[k] == 0], f"conflicts not exercised: {dict(counts)}"


def test_parity_quick(monkeypatch):
    """The fast tier's parity case: 2,000 crowded steps on the open floor, all image layers."""
    env_id, num_envs, p_forward, kwargs, _ = CONFIGS[7]
    counts = run_parity(env_id, num_envs, 2000, seed=3, monkeypatch=monkeypatch, p_forward=p_forward, **kwargs)
    print(dict(counts))
    assert counts["same_target"] > 0 and counts["chain"] > 0 and counts["swap"] > 0 and counts["tie"] > 0


def test_hand_made_conflicts():
    """A 3x3 block of moves: a 4-cycle rotates, a swap stays, a queue of 2 beats a single robot."""
    layout = "\n".join(["......", "......", "......", "..gg..", "x....x"])
    env = Warehouse(num_envs=1, n_agents=8, request_queue_size=1, layout=layout, seed=0)
    env.reset(seed=0)  # step() needs a reset first; the state is then overwritten
    # 4-cycle in cells (0,0) (1,0) (1,1) (0,1): right, down, left, up
    pos = [[0, 0], [1, 0], [1, 1], [0, 1], [3, 0], [4, 0], [3, 2], [5, 2]]
    dirs = [3, 1, 2, 0, 3, 2, 3, 2]  # robots 4/5 face each other; 6 faces right toward (4,2), 7 faces left toward it
    env.agent_pos[0] = torch.tensor(pos)
    env.agent_dir[0] = torch.tensor(dirs)
    ts = env.step({"agent": torch.ones(1, 8, dtype=torch.long)})
    new = env.agent_pos[0].tolist()
    assert new[:4] == [[1, 0], [1, 1], [0, 1], [0, 0]]
    assert new[4:6] == pos[4:6]
    assert (new[6] == [4, 2]) != (new[7] == [4, 2])  # exactly one of the rivals wins the free cell
    c = {k: int(v) for k, v in ts.info["conflicts"].items()}
    assert c["cycle"] == 4 and c["swap"] == 1 and c["same_target"] == 1


def test_request_and_reset_distributions_match_reference():
    """Initial cells, directions, requests and the shelf chosen as a new request follow the reference's laws
    (chi-square two-sample tests, 4,000 draws each)."""
    n = 4000
    env = fastmarl.make("rware-tiny-4ag-v2", num_envs=n, seed=1)
    r = gym.make("rware-tiny-4ag-v2", disable_env_checker=True).unwrapped
    r.reset(seed=1)
    ours_cells, ours_dirs, ours_req = (env._cells(env.agent_pos).flatten().numpy(), env.agent_dir.flatten().numpy(),
                                       env.requests.flatten().numpy())
    ref_cells, ref_dirs, ref_req = [], [], []
    for _ in range(n):
        r.reset()
        ref_cells += [a.y * r.grid_size[1] + a.x for a in r.agents]
        ref_dirs += [a.dir.value for a in r.agents]
        ref_req += [s.id - 1 for s in r.request_queue]
    for ours, theirs, k in ((ours_cells, ref_cells, env.H * env.W), (ours_dirs, ref_dirs, 4),
                            (ours_req, ref_req, env.num_shelves)):
        table = np.stack([np.bincount(ours, minlength=k), np.bincount(theirs, minlength=k)])
        assert stats.chi2_contingency(table[:, table.sum(0) > 0]).pvalue > 1e-3
    # new requests: a robot carries requested shelf 0 onto a goal; which shelf replaces it?
    env = Warehouse(num_envs=n, n_agents=1, request_queue_size=2, seed=2)
    env.reset(seed=2)  # step() needs a reset first; the state is then overwritten
    env.carrying[:] = 0
    env.requests[:] = torch.tensor([0, 5])
    goal = env.goal_cells[0].item()
    env.agent_pos[:] = torch.tensor([goal % env.W, goal // env.W - 1])
    env.agent_dir[:] = 1
    env.shelf_pos[:, 0] = env.agent_pos[:, 0]
    ts = env.step({"agent": torch.ones(n, 1, dtype=torch.long)})
    assert bool((ts.reward["agent"] == 1).all())
    ours = env.requests[:, 0].numpy()
    assert not np.isin(ours, [0, 5]).any()
    rng = np.random.default_rng(3)
    candidates = np.setdiff1d(np.arange(env.num_shelves), [0, 5])
    theirs = np.array([rng.choice(list(candidates)) for _ in range(n)])  # the reference's rule: choice(candidates)
    table = np.stack([np.bincount(ours, minlength=env.num_shelves), np.bincount(theirs, minlength=env.num_shelves)])
    assert stats.chi2_contingency(table[:, table.sum(0) > 0]).pvalue > 1e-3
