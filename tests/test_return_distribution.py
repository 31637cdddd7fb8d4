"""Episode returns under uniformly random discrete actions match mpe2's in distribution.

Independent resets on both sides (ours: one batched episode per env; mpe2: a
Python loop of seeded episodes), so this checks what the lock-step parity tests
cannot: the initial-state distributions (ours draw with torch, mpe2 with numpy).
Per group, the per-episode return (mean over the group's agents) must pass a
two-sample Kolmogorov-Smirnov test and have means within 4 standard errors.
Fixed seeds make the test deterministic.
"""

import importlib

import numpy as np
import pytest
import torch
from scipy.stats import ks_2samp

import fastmarl

OURS_EPISODES, MPE2_EPISODES = 2000, 300


def ours_returns(env_id: str, seed: int) -> dict[str, np.ndarray]:
    env = fastmarl.make(env_id, num_envs=OURS_EPISODES, seed=seed)
    env.reset(seed=seed)
    gen = torch.Generator().manual_seed(seed)
    ret = {g: torch.zeros(OURS_EPISODES) for g in env.spec.groups}
    for _ in range(env.spec.max_episode_steps):
        acts = {g: torch.randint(0, s.action_dim, (OURS_EPISODES, s.num_agents), generator=gen)
                for g, s in env.spec.groups.items()}
        ts = env.step(acts)
        for g in ret:
            ret[g] += ts.reward[g].mean(-1)
    assert bool(ts.truncated.all()), "every env should end its one episode at max_cycles"
    return {g: r.double().numpy() for g, r in ret.items()}


def mpe2_returns(env_id: str, seed: int, groups: dict[str, list[str]]) -> dict[str, np.ndarray]:
    penv = importlib.import_module(f"mpe2.{env_id}").parallel_env()
    rng = np.random.default_rng(seed)
    ret = {g: np.zeros(MPE2_EPISODES) for g in groups}
    for ep in range(MPE2_EPISODES):
        penv.reset(seed=seed + ep)
        n = {a: penv.action_space(a).n for a in penv.agents}
        while penv.agents:
            _, rew, _, _, _ = penv.step({a: int(rng.integers(0, n[a])) for a in penv.agents})
            for g, agents in groups.items():
                ret[g][ep] += np.mean([rew[a] for a in agents])
    return ret


@pytest.mark.parametrize("env_id", ["simple_spread_v3", pytest.param("simple_tag_v3", marks=pytest.mark.slow)])
def test_random_policy_returns_match_mpe2(env_id):
    ours = ours_returns(env_id, seed=1)
    spec = fastmarl.make(env_id, num_envs=1).spec
    ref = mpe2_returns(env_id, seed=1, groups={g: list(s.agents) for g, s in spec.groups.items()})
    for g in ours:
        a, b = ours[g], ref[g]
        assert a.std() > 0 and b.std() > 0, f"{env_id}/{g}: returns do not vary"
        p = ks_2samp(a, b).pvalue
        assert p > 1e-3, f"{env_id}/{g}: KS p-value {p:.2g} (ours mean {a.mean():.3f}, mpe2 {b.mean():.3f})"
        se = np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
        assert abs(a.mean() - b.mean()) < 4 * se, f"{env_id}/{g}: means {a.mean():.3f} vs {b.mean():.3f}, se {se:.3f}"
