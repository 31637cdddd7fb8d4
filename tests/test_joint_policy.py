"""JointPolicy (fastmarl.envs.api): several policies as one, each group's actions
from its own policy, a policy shared by groups acting once, carries per policy."""

from __future__ import annotations

import torch

from fastmarl.envs.api import JointPolicy, TimeStep


class _Tagged:
    """A fake policy: every group's action is its obs[..., 0] plus ``tag``; counts its calls in the carry."""

    def __init__(self, tag):
        self.tag = tag

    def initial_carry(self, num_envs):
        return {"calls": 0, "tag": self.tag}

    def act(self, ts, carry, deterministic=False, generator=None):
        acts = {g: o[..., 0] + self.tag for g, o in ts.obs.items()}
        return acts, {"calls": carry["calls"] + 1, "tag": self.tag}


def test_each_group_acts_from_its_policy():
    E = 3
    obs = {"pursuer": torch.arange(E * 2, dtype=torch.float32).reshape(E, 2, 1),
           "evader": 100 + torch.arange(E, dtype=torch.float32).reshape(E, 1, 1)}
    f = torch.zeros(E, dtype=torch.bool)
    ts = TimeStep(obs=obs, reward={}, terminated=f, truncated=f, final_obs=obs)
    a, b = _Tagged(1000.0), _Tagged(2000.0)
    mix = JointPolicy({"pursuer": a, "evader": b})
    carry = mix.initial_carry(E)
    actions, carry = mix.act(ts, carry)
    assert torch.equal(actions["pursuer"], obs["pursuer"][..., 0] + 1000)
    assert torch.equal(actions["evader"], obs["evader"][..., 0] + 2000)
    _, carry = mix.act(ts, carry)
    assert [c["calls"] for c in carry] == [2, 2] and [c["tag"] for c in carry] == [1000.0, 2000.0]
    same = JointPolicy({"pursuer": a, "evader": a})  # one source for both groups: called once per step
    c = same.initial_carry(E)
    _, c = same.act(ts, c)
    assert len(c) == 1 and c[0]["calls"] == 1
    assert same.sources == [(a, ["pursuer", "evader"])]
