"""Episode returns during training, evaluation of any policy, and episode GIFs.

Everything here runs a :class:`~fastmarl.envs.api.Policy` on a batched env and
needs nothing but the env API, so it serves every layer above (learners, the
training loop, experiments) and the scripted reference policies alike.

Return convention (mpe2's): an agent's return is its summed reward over the
episode; an episode's return is the mean over agents (``return``), or over the
agents of one group (``return/<group>``, the useful number on competitive tasks).
On a competitive env (``EnvSpec.competitive``: more than one team) there is no
``return`` (nor ``return_std``): a mean over opposing teams means nothing (+3.75
for the predators and -58.6 for the prey of simple_tag average to -11.84), so the
headline numbers are the groups' own (``headline``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import imageio.v3 as iio
import numpy as np
import torch

from fastmarl.envs.api import EnvSpec, Policy, TimeStep


def headline(row: dict[str, float], key: str = "return") -> dict[str, float]:
    """The headline returns of a metrics or evaluation row: ``{key: value}`` when it has ``key``
    (one team), else every per-group ``key/<group>`` (a competitive env); ``key`` e.g.
    ``"return"`` or ``"return_det"``."""
    if key in row:
        return {key: row[key]}
    return {k: v for k, v in row.items() if k.startswith(key + "/")}


def format_headline(row: dict[str, float], key: str = "return") -> str:
    """``headline`` in words: ``"-11.84"``, or ``"adversary 3.75, agent -58.60"`` per group; ``"-"`` if none."""
    rets = headline(row, key)
    if not rets:
        return "-"
    return ", ".join(f"{k.partition('/')[2] + ' ' if '/' in k else ''}{v:.2f}" for k, v in rets.items())


class EpisodeTracker:
    """Accumulates per-env returns on the device; ``pop()`` syncs once per call.

    Call it with every TimeStep of the training env (``tracker(ts)``).
    """

    def __init__(self, spec: EnvSpec, num_envs: int, device: torch.device | str):
        self.groups = {n: g.num_agents for n, g in spec.groups.items()}
        self.num_agents = spec.num_agents
        self.competitive = spec.competitive
        z = lambda *s: torch.zeros(*s, device=device)  # noqa: E731
        self.running = {n: z(num_envs) for n in self.groups}  # (E,) summed reward of all agents of the group
        self.length = z(num_envs)
        self.done_returns = {n: z(()) for n in self.groups}  # sums over completed episodes
        self.done_length, self.done_count = z(()), z(())

    def __call__(self, ts: TimeStep) -> None:
        d = ts.done.to(self.length.dtype)
        keep = 1.0 - d
        for n in self.groups:
            r = self.running[n] + ts.reward[n].sum(-1)
            self.done_returns[n] += (r * d).sum()
            self.running[n] = r * keep
        ln = self.length + 1
        self.done_length += (ln * d).sum()
        self.length = ln * keep
        self.done_count += d.sum()

    def pop(self) -> dict[str, float]:
        """Mean return (per agent; not on a competitive env), per-group returns and length of the
        episodes completed since the last call; ``{}`` if none completed."""
        count = self.done_count.item()
        out: dict[str, float] = {}
        if count > 0:
            total = sum(self.done_returns.values())
            if not self.competitive:
                out["return"] = float(total) / count / self.num_agents
            if len(self.groups) > 1:
                for n, a in self.groups.items():
                    out[f"return/{n}"] = self.done_returns[n].item() / count / a
            out["episode_length"] = self.done_length.item() / count
            out["episodes"] = count
        for v in (*self.done_returns.values(), self.done_length, self.done_count):
            v.zero_()
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"running": self.running, "length": self.length, "done_returns": self.done_returns,
                "done_length": self.done_length, "done_count": self.done_count}

    def load_state_dict(self, s: dict[str, Any]) -> None:
        self.running, self.length = dict(s["running"]), s["length"]
        self.done_returns, self.done_length, self.done_count = dict(s["done_returns"]), s["done_length"], s["done_count"]


@torch.no_grad()
def evaluate_policy(policy: Policy, env, deterministic: bool = True, seed: int = 0,
                    max_steps: int | None = None, episodes: dict[str, list[float]] | None = None) -> dict[str, float]:
    """Run one episode in each of ``env.num_envs`` envs (so N episodes = an env
    with num_envs=N); return mean/std of the per-agent return (on a competitive env: of each
    group's, ``return/<g>`` and ``return_std/<g>``, and no overall one), per-group means
    and the mean episode length. The env is reset with ``seed``, so the same seed
    gives the same start states: comparisons between checkpoints are paired.
    ``episodes``, if given, receives the per-episode values behind the means (``return``,
    ``return/<g>``, ``episode_length``: lists of ``num_envs`` floats)."""
    spec: EnvSpec = env.spec
    E = env.num_envs
    if max_steps is None:
        max_steps = spec.max_episode_steps or 10_000
    gen = torch.Generator(device=env.device)
    gen.manual_seed(seed)
    ts = env.reset(seed=seed)
    carry = policy.initial_carry(E)
    finished = torch.zeros(E, dtype=torch.bool, device=env.device)
    returns = {n: torch.zeros(E, device=env.device) for n in spec.groups}
    length = torch.zeros(E, device=env.device)
    for step in range(max_steps):
        actions, carry = policy.act(ts, carry, deterministic, gen)
        ts = env.step(actions)
        active = (~finished).float()
        for n in spec.groups:
            returns[n] += ts.reward[n].sum(-1) * active
        length += active
        finished |= ts.done
        if (step + 1) % 8 == 0 or step + 1 == spec.max_episode_steps:
            if bool(finished.all()):
                break
    out: dict[str, float] = {}
    values: dict[str, torch.Tensor] = {}
    if not spec.competitive:
        per_agent = values["return"] = sum(returns.values()) / spec.num_agents
        out = {"return": per_agent.mean().item(), "return_std": per_agent.std().item() if E > 1 else 0.0}
    out.update({"episode_length": length.mean().item(), "episodes": float(finished.sum().item())})
    if len(spec.groups) > 1:
        for n, g in spec.groups.items():
            group = values[f"return/{n}"] = returns[n] / g.num_agents
            out[f"return/{n}"] = group.mean().item()
            if spec.competitive:
                out[f"return_std/{n}"] = group.std().item() if E > 1 else 0.0
    if episodes is not None:
        episodes.update({k: v.tolist() for k, v in values.items()}, episode_length=length.tolist())
    return out


@torch.no_grad()
def record_episode(policy: Policy, env, path: str | Path, deterministic: bool = True, seed: int = 0,
                   fps: int = 10, max_steps: int | None = None) -> Path:
    """Render the first episode of env 0 to a GIF (``env.render(0)`` frames)."""
    spec: EnvSpec = env.spec
    max_steps = max_steps or spec.max_episode_steps or 1000
    gen = torch.Generator(device=env.device)
    gen.manual_seed(seed)
    ts = env.reset(seed=seed)
    carry = policy.initial_carry(env.num_envs)
    frames = []
    for _ in range(max_steps):
        frames.append(_shrink(env.render(0)))
        actions, carry = policy.act(ts, carry, deterministic, gen)
        ts = env.step(actions)
        if bool(ts.done[0]):  # the env has auto-reset: the last frame shown is the one before
            break
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(path, np.stack(frames), extension=".gif", duration=1000 // fps, loop=0)
    return path


def _shrink(frame: np.ndarray, target: int = 360) -> np.ndarray:
    step = max(1, round(frame.shape[0] / target))
    return np.ascontiguousarray(frame[::step, ::step])
