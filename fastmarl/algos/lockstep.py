"""Several learners, each for some groups of one env, in lockstep: one Learner for the training loop.

``Lockstep({"predators": (QLearner(...), ["adversary"]), "prey": (QLearner(...), ["agent"])})``
trains deep IQL predators against a deep IQL prey that learns at the same time (or tabular
predators against it, ...): at every env step each member acts for its own groups from the part
of the TimeStep that is theirs (:func:`fastmarl.envs.wrappers.select_groups`), the env steps once
with every member's actions, and each member stores its own groups' transition; ``update`` runs
every member's update. Members are step learners: they act and record one env step at a time
through ``start(ts, env)``, ``act_step()`` and ``record_step(actions, next_ts, env)``
(:class:`~fastmarl.algos.q_learning.QLearner`, :class:`~fastmarl.algos.tabular.TabularQ`), and
implement the rest of the :class:`~fastmarl.algos.learner.Learner` protocol. Each keeps its own
generator, so a member's numbers do not depend on the others' sampling.

Checkpoints hold every member: weights ``<member>/<name>``, trainer state by member, extra tensor
files ``<member>.<file>``. PPO learners share an env through whole rollouts instead
(:mod:`fastmarl.train.selfplay`).

Tensors at the boundary: a TimeStep of the whole env (group -> ``(E, A_g, ...)``); actions
group -> ``(E, A_g)``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from fastmarl.algos.learner import ExtraReader
from fastmarl.envs.api import TimeStep
from fastmarl.envs.wrappers import select_groups


class MemberPolicy:
    """One member of a :class:`Lockstep` as a :class:`~fastmarl.envs.api.Policy` of its groups (it reads
    their part of any TimeStep that holds them)."""

    def __init__(self, learner, groups: list[str]):
        self.learner, self.groups = learner, list(groups)

    def initial_carry(self, num_envs: int) -> Any:
        return self.learner.initial_carry(num_envs)

    def act(self, ts: TimeStep, carry: Any, deterministic: bool = False,
            generator: torch.Generator | None = None) -> tuple[dict[str, Tensor], Any]:
        return self.learner.act(select_groups(ts, self.groups), carry, deterministic, generator)


class Lockstep:
    """Members ``name -> (step learner, its groups)`` sharing one env (see the module docstring);
    ``total_steps``: the run's env-step budget. ``ts`` is the last TimeStep of the whole env."""

    def __init__(self, members: dict[str, tuple[Any, list[str]]], total_steps: int):
        owner: dict[str, str] = {}
        for name, (_, groups) in members.items():
            for g in groups:
                if g in owner:
                    raise ValueError(f"group {g!r} belongs to both member {owner[g]!r} and member {name!r}")
                owner[g] = name
        self.members = {name: MemberPolicy(lrn, groups) for name, (lrn, groups) in members.items()}
        self.planned_steps = total_steps
        self.eval_modes = tuple(dict.fromkeys(m for p in self.members.values() for m in p.learner.eval_modes))
        self.ts: TimeStep | None = None

    def policy(self, name: str) -> MemberPolicy:
        """Member ``name`` alone, as a Policy of its groups."""
        return self.members[name]

    # -- the Learner protocol -----------------------------------------------------------
    def begin(self, env, seed: int) -> None:
        owned = {g for m in self.members.values() for g in m.groups}
        missing = [g for g in env.spec.groups if g not in owned]
        if missing or owned - set(env.spec.groups):
            raise ValueError(f"the members' groups {sorted(owned)} must be the env's groups {list(env.spec.groups)}: "
                             f"no member acts for {missing}" if missing else
                             f"{sorted(owned - set(env.spec.groups))} are not groups of {env.spec.env_id}")
        self.ts = env.reset(seed=seed)
        for m in self.members.values():
            m.learner.start(select_groups(self.ts, m.groups), env)

    @torch.no_grad()
    def collect(self, env, tracker) -> int:
        acted = {name: m.learner.act_step() for name, m in self.members.items()}
        next_ts = env.step({g: a for actions in acted.values() for g, a in actions.items()})
        tracker(next_ts)
        for name, m in self.members.items():
            m.learner.record_step(acted[name], select_groups(next_ts, m.groups), env)
        self.ts = next_ts
        return env.num_envs

    def update(self, progress: float) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for m in self.members.values():  # members' metrics are named by group (loss/adversary, ...)
            out.update(m.learner.update(progress))
        return out

    def log_info(self) -> dict[str, float]:
        return {f"{name}/{k}": v for name, m in self.members.items() for k, v in m.learner.log_info().items()}

    # -- acting --------------------------------------------------------------------------
    def initial_carry(self, num_envs: int) -> dict[str, Any]:
        return {name: m.initial_carry(num_envs) for name, m in self.members.items()}

    def act(self, ts: TimeStep, carry: dict[str, Any], deterministic: bool = False,
            generator: torch.Generator | None = None) -> tuple[dict[str, Tensor], dict[str, Any]]:
        actions, new = {}, {}
        for name, m in self.members.items():
            a, new[name] = m.act(ts, carry[name], deterministic, generator)
            actions.update(a)
        return actions, new

    # -- checkpoints ---------------------------------------------------------------------
    def weights(self) -> dict[str, Tensor]:
        return {f"{name}/{k}": v for name, m in self.members.items() for k, v in m.learner.weights().items()}

    def load_weights(self, tensors: dict[str, Tensor]) -> None:
        for name, m in self.members.items():
            m.learner.load_weights({k[len(name) + 1:]: v for k, v in tensors.items() if k.startswith(f"{name}/")})

    def trainer_state(self) -> dict[str, Any]:
        return {name: m.learner.trainer_state() for name, m in self.members.items()}

    def load_trainer_state(self, state: dict[str, Any]) -> None:
        for name, m in self.members.items():
            m.learner.load_trainer_state(state[name])

    def extra_tensors(self) -> dict[str, dict[str, Tensor]]:
        return {f"{name}.{f}": t for name, m in self.members.items() for f, t in m.learner.extra_tensors().items()}

    def load_extra_tensors(self, read: ExtraReader) -> None:
        for name, m in self.members.items():
            m.learner.load_extra_tensors(lambda f, what, name=name: read(f"{name}.{f}", what))
