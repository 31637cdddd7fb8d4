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
import rware  # noqa: F401 (registers the ids)
import torch
from rware import warehouse as ref
from scipy import stats

import fastmarl
from fastmarl.envs.rware import Warehouse

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


def run_parity(env_id: str, num_envs: int, steps: int, seed: int, monkeypatch, **kwargs) -> Counter:
    refs = [gym.make(env_id, disable_env_checker=True, **kwargs).unwrapped for _ in range(num_envs)]
    env = fastmarl.make(env_id, num_envs=num_envs, seed=seed, dtype=torch.float64, **kwargs)
    rec = TieRecorder()
    monkeypatch.setattr(nx.algorithms, "dag_longest_path", rec)
    A, S, R, G = env.num_agents, env.num_shelves, env.num_requests, len(env.goal_cells)
    first = []
    for e, r in enumerate(refs):
        first.append(np.stack(r.reset(seed=seed * 1000 + e)[0]))
        write_state(env, e, r)
    np.testing.assert_array_equal(env._obs()["agent"].numpy(), np.stack(first))
    rng = np.random.default_rng(seed)
    counts: Counter = Counter()
    for t in range(steps // num_envs + 1):
        actions = rng.integers(0, 5, (num_envs, A))
        prio = np.full((num_envs, A), 10**6)
        draws = np.zeros((num_envs, G), dtype=np.int64)
        ref_obs, ref_rew, ref_done = [], [], []
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
            ref_obs.append(np.stack(obs))
            ref_rew.append(rew)
            ref_done.append(done or trunc)
        ts = env.step({"agent": torch.as_tensor(actions)}, tie_priority=torch.as_tensor(prio),
                      request_draws=torch.as_tensor(draws))
        where = f"{env_id}, step {t}"
        np.testing.assert_array_equal(ts.final_obs["agent"].numpy(), np.stack(ref_obs), err_msg=where)
        np.testing.assert_array_equal(ts.reward["agent"].numpy(), np.array(ref_rew), err_msg=where)
        np.testing.assert_array_equal(ts.done.numpy(), np.array(ref_done), err_msg=where)
        for k, v in ts.info["conflicts"].items():
            counts[k] += int(v.sum())
        counts["deliveries"] += int((np.array(ref_rew) > 0).sum())
        counts["loaded"] += int((env.carrying >= 0).sum())
        counts["env_steps"] += num_envs
        for e in np.nonzero(np.array(ref_done))[0]:
            obs, _ = refs[e].reset()
            write_state(env, int(e), refs[e])
            np.testing.assert_array_equal(env._obs()["agent"][e].numpy(), np.stack(obs), err_msg=f"{where} reset")
            counts["resets"] += 1
    return counts


CONFIGS = [
    ("rware-tiny-2ag-v2", 20, {}),
    ("rware-tiny-4ag-hard-v2", 20, {}),
    ("rware-tiny-8ag-easy-v2", 20, {}),
    ("rware-small-4ag-v2", 20, {}),
    ("rware-small-12ag-easy-v2", 20, {"reward_type": ref.RewardType.GLOBAL}),
    ("rware-tiny-16ag-v2", 20, {}),
]


@pytest.mark.parametrize("env_id,num_envs,kwargs", CONFIGS, ids=[c[0] + ("-global" if c[2] else "") for c in CONFIGS])
def test_parity_with_reference(env_id, num_envs, kwargs, monkeypatch):
    counts = run_parity(env_id, num_envs, STEPS, seed=len(env_id), monkeypatch=monkeypatch, **kwargs)
    print(env_id, dict(counts))
    assert counts["env_steps"] >= STEPS and counts["resets"] >= num_envs
    assert counts["same_target"] > 0 and counts["loaded"] > 0
    if "2ag" not in env_id:
        assert counts["chain"] > 0 and counts["swap"] > 0 and counts["blocked_loaded"] > 0


def test_hand_made_conflicts():
    """A 3x3 block of moves: a 4-cycle rotates, a swap stays, a queue of 2 beats a single robot."""
    layout = "\n".join(["......", "......", "......", "..gg..", "x....x"])
    env = Warehouse(num_envs=1, n_agents=8, request_queue_size=1, layout=layout, seed=0)
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
