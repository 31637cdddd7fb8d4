"""Helpers to run fastmarl MPE envs in lock-step with mpe2 (the reference).

Each of our E envs is paired with one mpe2 parallel env. After every mpe2
reset, the mpe2 world (positions, velocities, messages, plus scenario extras
given by ``extra_sync``) is copied into our env, so both start from the same
state; then both receive the same actions and must produce the same results.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

import numpy as np
import torch

import fastmarl
from fastmarl.envs.mpe.core import MPEState
from fastmarl.envs.mpe.geometry import axis_move

# scenario-specific state: env_id -> fn(list of mpe2 worlds, our env) -> extra dict
EXTRA_SYNC: dict[str, Callable[[list[Any], Any], dict[str, torch.Tensor]]] = {}


def mpe2_parallel(env_id: str, seed: int, **kwargs):
    mod = importlib.import_module(f"mpe2.{env_id}")
    env = mod.parallel_env(**kwargs)
    env.reset(seed=seed)
    return env


def world_of(penv):
    return penv.unwrapped.world


def sync_from_mpe2(ours, penvs, env_ids: list[int] | None = None) -> None:
    """Copy mpe2 world state of penvs[i] into env i of ours (all i, or env_ids)."""
    s = ours.world_state
    pos, vel, comm, t = s.pos.clone(), s.vel.clone(), s.comm.clone(), s.t.clone()
    ids = range(len(penvs)) if env_ids is None else env_ids
    for i in ids:
        w = world_of(penvs[i])
        ents = w.agents + w.landmarks
        pos[i] = torch.as_tensor(np.stack([e.state.p_pos for e in ents]), dtype=pos.dtype)
        vel[i] = torch.as_tensor(np.stack([e.state.p_vel for e in ents]), dtype=vel.dtype)
        if comm.shape[-1] > 0:
            comm[i] = torch.as_tensor(np.stack([a.state.c for a in w.agents]), dtype=comm.dtype)
        t[i] = penvs[i].unwrapped.steps
    extra = dict(s.extra)
    fn = EXTRA_SYNC.get(ours.spec.env_id)
    if fn is not None:
        extra.update(fn([world_of(p) for p in penvs], ours, list(ids), s.extra))
    ours.set_world_state(MPEState(pos, vel, comm, t, extra))


def assert_same_spaces(env_id: str, continuous: bool = False, **kwargs) -> None:
    """Agent names/order, observation sizes and action spaces equal mpe2's."""
    ours = fastmarl.make(env_id, num_envs=1, seed=0, continuous_actions=continuous, **kwargs)
    ref = mpe2_parallel(env_id, seed=0, continuous_actions=continuous, **kwargs)
    assert list(ours.spec.agents) == list(ref.possible_agents), (ours.spec.agents, ref.possible_agents)
    for a in ref.possible_agents:
        g = ours.spec.groups[ours.spec.group_of(a)[0]]
        assert g.observation_space.shape == ref.observation_space(a).shape, (a, g.observation_space, ref.observation_space(a))
        ra = ref.action_space(a)
        if continuous:
            assert g.action_space.shape == ra.shape, (a, g.action_space, ra)
        else:
            assert g.action_space.n == ra.n, (a, g.action_space, ra)
    assert ours.spec.state_dim == ref.state_space.shape[0]


def group_obs_to_agents(spec, obs: dict[str, torch.Tensor], i: int) -> dict[str, np.ndarray]:
    out = {}
    for g in spec.groups.values():
        for j, a in enumerate(g.agents):
            out[a] = obs[g.name][i, j].double().cpu().numpy()
    return out


def random_actions(spec, num_envs: int, rng: np.random.Generator, continuous: bool) -> dict[str, np.ndarray]:
    """group -> numpy array of actions for all envs (discrete (E, A) or box (E, A, d))."""
    acts = {}
    for g in spec.groups.values():
        if continuous:
            acts[g.name] = rng.uniform(0, 1, size=(num_envs, g.num_agents, g.action_dim)).astype(np.float32)
        else:
            acts[g.name] = rng.integers(0, g.action_dim, size=(num_envs, g.num_agents))
    return acts


def run_lockstep(env_id: str, steps: int = 200, num_envs: int = 3, continuous: bool = False, seed: int = 0,
                 rtol: float = 1e-5, atol: float = 1e-6, action_fn=None, before_step=None,
                 after_step=None, **kwargs) -> dict[str, int]:
    """Step ours and mpe2 with identical actions; assert equal obs/rewards/terms/truncs.

    ``action_fn(spec, num_envs, rng, t)`` replaces the random actions;
    ``before_step(t, ours, penvs)`` runs before step t (e.g. to change a
    curriculum stage on both sides, or to read the state for a scripted policy);
    ``after_step(t, ts)`` sees our TimeStep of step t once it has been checked
    (e.g. to count collision rewards).

    Returns counts of what was exercised (episode ends, steps) so tests can
    assert the run covered what it should.
    """
    ours = fastmarl.make(env_id, num_envs=num_envs, seed=seed, dtype=torch.float64,
                         continuous_actions=continuous, **kwargs)
    penvs = [mpe2_parallel(env_id, seed=seed + 1000 * i, continuous_actions=continuous, **kwargs) for i in range(num_envs)]
    sync_from_mpe2(ours, penvs)
    spec = ours.spec
    rng = np.random.default_rng(seed)
    stats = {"steps": 0, "episode_ends": 0, "terminations": 0}
    # observations right after the sync must agree already
    for i, p in enumerate(penvs):
        ref = {a: p.unwrapped.observe(a) for a in p.agents}
        mine = group_obs_to_agents(spec, ours.observations(), i)
        for a in ref:
            np.testing.assert_allclose(mine[a], ref[a], rtol=rtol, atol=atol, err_msg=f"{env_id} reset obs {a}")
    for t in range(steps):
        if before_step is not None:
            before_step(t, ours, penvs)
        acts = action_fn(spec, num_envs, rng, t) if action_fn else random_actions(spec, num_envs, rng, continuous)
        ts = ours.step({k: torch.as_tensor(v) for k, v in acts.items()})
        reset_ids = []
        for i, p in enumerate(penvs):
            pz_act = {}
            for g in spec.groups.values():
                for j, a in enumerate(g.agents):
                    v = acts[g.name][i, j]
                    pz_act[a] = v.astype(np.float32) if continuous else int(v)
            obs, rew, term, trunc, _ = p.step(pz_act)
            mine_obs = group_obs_to_agents(spec, ts.final_obs, i)
            for a in obs:
                np.testing.assert_allclose(mine_obs[a], obs[a], rtol=rtol, atol=atol,
                                           err_msg=f"{env_id} step {t} env {i} obs {a}")
                g, j = spec.group_of(a)
                np.testing.assert_allclose(float(ts.reward[g][i, j]), rew[a], rtol=rtol, atol=atol,
                                           err_msg=f"{env_id} step {t} env {i} reward {a}")
                assert bool(ts.terminated[i]) == bool(term[a]), f"{env_id} step {t} env {i} terminated {a}"
                assert bool(ts.truncated[i]) == bool(trunc[a]), f"{env_id} step {t} env {i} truncated {a}"
            if bool(ts.terminated[i]) or bool(ts.truncated[i]):
                stats["episode_ends"] += 1
                stats["terminations"] += int(bool(ts.terminated[i]))
                p.reset(seed=seed + 7919 * (t + 1) + i)
                reset_ids.append(i)
            stats["steps"] += 1
        if after_step is not None:
            after_step(t, ts)
        if reset_ids:
            sync_from_mpe2(ours, penvs, reset_ids)
    return stats


def move_toward(delta: np.ndarray, continuous: bool) -> np.ndarray:
    """Actions moving along delta (..., 2): discrete (...) or continuous (..., 5) float32."""
    if not continuous:
        return axis_move(torch.as_tensor(delta)).numpy()
    dx, dy = delta[..., 0], delta[..., 1]
    a = np.zeros(delta.shape[:-1] + (5,), dtype=np.float32)
    a[..., 1], a[..., 2] = np.clip(-dx * 3, 0, 1), np.clip(dx * 3, 0, 1)
    a[..., 3], a[..., 4] = np.clip(-dy * 3, 0, 1), np.clip(dy * 3, 0, 1)
    return a


def sync_goal_landmark(worlds, ours, env_ids, extra):
    """EXTRA_SYNC for scenarios whose goal is a landmark (agents[0].goal_a in mpe2);
    our episode colours derived from it must equal mpe2's."""
    goal = extra["goal"].clone()
    for i in env_ids:
        w = worlds[i]
        goal[i] = [lm is w.agents[0].goal_a for lm in w.landmarks].index(True)
    color = ours.scenario.episode_colors(ours.world, goal)
    for i in env_ids:
        ref = np.stack([e.color for e in worlds[i].entities])
        np.testing.assert_allclose(color[i].numpy(), ref, rtol=0, atol=1e-12, err_msg=f"episode colours env {i}")
    return {"goal": goal, "color": color}
