"""Helpers to run fastmarl's LBF in lock-step with ``lbforaging==2.0.0`` (the reference).

Each of our E envs is paired with one reference ``ForagingEnv``. After every reference
reset its state (player cells and levels, the food field, the food spawned, the step) is
written into our env, so both start from the same state; then both take the same actions.
The reference serves simultaneous loaders in ``set.pop()`` order (a hash order of the
player objects); fastmarl serves all food at once, which is the same as long as no cell
touches two food: :func:`run_parity` checks that this holds in every state it visits.
"""

from __future__ import annotations

from collections import Counter

import gymnasium as gym
import lbforaging  # noqa: F401 (registers the reference's ids)
import numpy as np
import torch
from lbforaging.foraging import environment as ref

import fastmarl
from fastmarl.envs.lbf import LOAD, Foraging


def make_reference(env_id: str, **kwargs) -> ref.ForagingEnv:
    """The reference env of ``env_id`` with ``kwargs`` (built directly: ``gym.make`` would take
    ``max_episode_steps`` for its own TimeLimit wrapper instead of the env's)."""
    return ref.ForagingEnv(**{**gym.spec(env_id).kwargs, **kwargs})


def write_state(env: Foraging, e: int, r: ref.ForagingEnv) -> None:
    """The reference env ``r``'s state into fastmarl env index ``e``."""
    env.agent_pos[e] = torch.tensor([list(p.position) for p in r.players])
    env.agent_level[e] = torch.tensor([int(p.level) for p in r.players])
    rows, cols = np.nonzero(r.field)
    F = env.num_food
    assert len(rows) <= F
    pos = np.full((F, 2), -1)
    lvl = np.zeros(F, np.int64)
    pos[:len(rows)] = np.stack([rows, cols], -1)
    lvl[:len(rows)] = r.field[rows, cols]
    env.food_pos[e], env.food_level[e] = torch.tensor(pos), torch.tensor(lvl)
    env.food_spawned[e], env.t[e] = int(r._food_spawned), int(r.current_step)


def random_actions(rng: np.random.Generator, masks: np.ndarray, p_load: float) -> np.ndarray:
    """(E, A) actions: LOAD with probability ``p_load`` where it is valid, else uniform over all 6 (invalid
    ones included: they must turn into NONE)."""
    actions = rng.integers(0, 6, masks.shape[:2])
    load = masks[..., LOAD] & (rng.random(masks.shape[:2]) < p_load)
    return np.where(load, LOAD, actions)


def run_parity(env_id: str, num_envs: int, steps: int, seed: int, p_load: float = 0.5,
               **kwargs) -> Counter:
    """Lockstep run of ``steps`` env-steps (summed over the batch); returns the event counts."""
    refs = [make_reference(env_id, **kwargs) for _ in range(num_envs)]
    env = fastmarl.make(env_id, num_envs=num_envs, seed=seed, dtype=torch.float64, **kwargs)
    env.reset(seed=seed)  # step() needs a reset first; the state is then overwritten
    first = []
    for e, r in enumerate(refs):
        first.append(np.stack(r.reset(seed=seed * 1000 + e)[0]))
        write_state(env, e, r)
    np.testing.assert_array_equal(env._obs_mask()[0].numpy(), np.stack(first))
    rng = np.random.default_rng(seed)
    counts: Counter = Counter()
    for t in range(steps // num_envs + 1):
        masks = env.action_mask().numpy()
        ref_masks = np.array([[[a in r._valid_actions[p] for a in ref.Action] for p in r.players] for r in refs])
        np.testing.assert_array_equal(masks, ref_masks, err_msg=f"{env_id}, step {t}: action masks")
        actions = random_actions(rng, masks, p_load)
        obs_r, rew_r, done_r = [], [], []
        for e, r in enumerate(refs):
            obs, rew, done, trunc, _ = r.step(list(actions[e]))
            obs_r.append(np.stack(obs))
            rew_r.append(rew)
            done_r.append(done or trunc)
        # no player (loading or not) is next to two food: the serving order of the reference cannot matter
        near = (env.food_pos[:, None] - env.agent_pos[:, :, None]).abs().sum(-1) == 1
        counts["next_to_two_food"] += int(((near & (env.food_level > 0)[:, None]).sum(-1) > 1).sum())
        ts = env.step({"agent": torch.as_tensor(actions)})
        where = f"{env_id}, step {t}"
        np.testing.assert_array_equal(ts.final_obs["agent"].numpy(), np.stack(obs_r), err_msg=where)
        np.testing.assert_array_equal(ts.reward["agent"].numpy(), np.array(rew_r), err_msg=where)
        np.testing.assert_array_equal(ts.done.numpy(), np.array(done_r), err_msg=where)
        for k, v in ts.info["conflicts"].items():
            counts[k] += int(v.sum())
        counts["env_steps"] += num_envs
        counts["rewarded"] += int((np.array(rew_r) > 0).sum())
        counts["penalised"] += int((np.array(rew_r) < 0).sum())
        for e in np.nonzero(np.array(done_r))[0]:
            obs, _ = refs[e].reset()
            write_state(env, int(e), refs[e])
            np.testing.assert_array_equal(env._obs_mask()[0][e].numpy(), np.stack(obs), err_msg=f"{where} reset")
            counts["resets"] += 1
    return counts
