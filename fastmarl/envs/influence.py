"""influence_v0: two teams push the opinions of a population on a graph toward their side.

An abstract model of competition over an information environment. A population
of ``num_nodes`` (N) nodes holds opinions ``x`` in [-1, 1] on a random undirected
graph drawn per episode and env (kwarg ``graph``):

- ``"geometric"``: nodes uniform in the unit square, linked when closer than
  ``r = sqrt(mean_degree / ((N - 1) pi))`` (mean degree about ``mean_degree``,
  a little less near the border);
- ``"erdos_renyi"``: every pair linked with probability ``mean_degree / (N - 1)``;
- ``"small_world"``: a ring where each node links its ``mean_degree / 2`` next
  nodes clockwise, each such link rewired to a uniform random node with
  probability ``rewire_prob`` (Watts-Strogatz style; duplicate links merge).

Influence weights ``W = rownorm(A + I)`` (E, N, N): each node averages itself
and its neighbours equally. Two groups, ``"blue"`` (wants +1) and ``"red"``
(wants -1), ``num_agents_per_side`` (A) agents each. Every step each agent picks
one node of its view and an effort ``e`` from ``effort_levels``; the update is
Friedkin-Johnsen with pushes::

    x' = clip((1 - s) W x + s x0 + eta (B - R), -1, 1)

``s = stubbornness``, ``x0`` the opinions at the episode start, ``eta =
push_strength``, ``B`` / ``R`` (E, N) the summed efforts of blue / red on each
node this step: pushes add, equal opposing pushes cancel exactly. With
``budget`` set, each agent can spend that much effort per episode; an effort
above what is left is cut to what is left (then 0).

View: agent ``i`` sees and targets ``K = view_size`` nodes (all N when None),
drawn per episode (a random K-subset per agent, or all nodes), ordered by degree
(highest first, ties by index). Actions ``Discrete(K * L)`` with ``L =
len(effort_levels)``: ``a = slot * L + level``. Default: ``effort_levels=(1.0,)``
so an action is just a slot. With ``continuous_actions=True`` an action is a
``Box(0, 1, (K * L,))`` weight vector and its argmax is the discrete action.

Observation of one agent, (E, A, 4 K + 3) in [-1, 1]::

    K x [opinion, degree / max degree in the graph, blue effort on it last step
         (clipped at 1), red effort on it last step (clipped at 1)],
    mean opinion, own budget left / budget (1 without budget), t / max_cycles

Reward per step: team term ``m = mean(x') - mean(x0)`` (``reward="level"``,
opinion gained since the start) or ``mean(x') - mean(x)`` (``"change"``); blue
agents get ``m - effort_cost * e``, red agents ``-m - effort_cost * e``
(zero-sum when ``effort_cost = 0``). No termination; truncation after
``max_cycles`` steps. State (E, 5 N + 2 A + 1): opinions, x0, degree / max
degree, blue and red efforts per node last step, budget fractions (blue then
red agents), t / max_cycles.

Baseline (:func:`baseline_policy`): both sides push the most central node of
their view that is not yet aligned (``side * x < 0.5``); agent ``i`` of a side
takes its ``i``-th best such node (mod K) so teammates spread, at full effort.
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from fastmarl.envs.api import (
    EnvSpec,
    FieldsState,
    GroupSpec,
    TimeStep,
    require_reset,
    reset_mask,
    reset_timestep,
    validate_actions,
)
from fastmarl.envs.mpe.core import check_kwargs

BASELINE = "scripted on both sides: push the highest-degree node in view that is not yet aligned (degree heuristic)"
GRAPHS = ("geometric", "erdos_renyi", "small_world")
ALIGNED = 0.5  # the baseline leaves nodes with side * opinion >= this alone
KWARGS: dict[str, Any] = dict(num_agents_per_side=2, num_nodes=16, graph="geometric", mean_degree=4.0,
                              rewire_prob=0.1, view_size=None, stubbornness=0.1, push_strength=0.2,
                              effort_levels=(1.0,), effort_cost=0.0, budget=None, reward="level", max_cycles=30,
                              continuous_actions=False, dtype=torch.float32, validate=True, render_mode=None)


def random_graph(kind: str, E: int, N: int, mean_degree: float, rewire_prob: float, gen: torch.Generator,
                 device: torch.device) -> tuple[Tensor, Tensor]:
    """(adjacency (E, N, N) bool symmetric without self-loops, layout positions (E, N, 2) in [0, 1])."""
    idx = torch.arange(N, device=device)
    angle = 2 * math.pi * idx / N
    ring = 0.5 + 0.45 * torch.stack([torch.cos(angle), torch.sin(angle)], -1)
    if kind == "geometric":
        pos = torch.rand(E, N, 2, generator=gen, device=device)
        r = math.sqrt(mean_degree / ((N - 1) * math.pi))
        adj = torch.cdist(pos, pos) < r
    elif kind == "erdos_renyi":
        pos = ring.expand(E, N, 2)
        upper = torch.rand(E, N, N, generator=gen, device=device) < mean_degree / (N - 1)
        adj = torch.triu(upper, 1)
    else:
        pos = ring.expand(E, N, 2)
        h = int(mean_degree) // 2
        target = (idx[:, None] + torch.arange(1, h + 1, device=device)) % N  # (N, h) clockwise lattice links
        rewire = torch.rand(E, N, h, generator=gen, device=device) < rewire_prob
        shift = torch.randint(1, N, (E, N, h), generator=gen, device=device)  # never a self-loop
        target = torch.where(rewire, (idx[:, None] + shift) % N, target.expand(E, N, h))
        adj = torch.zeros(E, N, N, dtype=torch.bool, device=device).scatter_(2, target, True)
    adj = (adj | adj.transpose(1, 2)) & ~torch.eye(N, dtype=torch.bool, device=device)
    return adj, pos.contiguous()


def influence_weights(adj: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """adj (E, N, N) bool -> (W = rownorm(A + I) (E, N, N), degree (E, N))."""
    w = adj.to(dtype) + torch.eye(adj.shape[-1], dtype=dtype, device=adj.device)
    return w / w.sum(-1, keepdim=True), adj.sum(-1).to(dtype)


def opinion_update(x: Tensor, x0: Tensor, weights: Tensor, net_push: Tensor, stubbornness: float) -> Tensor:
    """One Friedkin-Johnsen step with pushes: x, x0, net_push (E, N); weights (E, N, N) -> (E, N)."""
    avg = torch.bmm(weights, x[..., None])[..., 0]
    return ((1.0 - stubbornness) * avg + stubbornness * x0 + net_push).clamp(-1.0, 1.0)


class InfluenceEnv(FieldsState):
    """``num_envs`` copies of the influence game; see the module docstring."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}

    def __init__(self, num_envs: int = 1, device: str | torch.device = "cpu", seed: int | None = None, **kw: Any):
        env_id = self.env_id = "influence_v0"
        for name in ("num_agents_per_side", "num_nodes", "max_cycles"):
            v = kw[name]
            if not isinstance(v, int) or isinstance(v, bool) or v < (2 if name == "num_nodes" else 1):
                raise ValueError(f"{env_id}: {name} must be a positive int (num_nodes >= 2), got {v!r}")
        if not isinstance(num_envs, int) or num_envs < 1:
            raise ValueError(f"{env_id}: num_envs must be a positive int, got {num_envs!r}")
        N, A = kw["num_nodes"], kw["num_agents_per_side"]
        if kw["graph"] not in GRAPHS:
            raise ValueError(f"{env_id}: graph must be one of {GRAPHS}, got {kw['graph']!r}")
        md = kw["mean_degree"]
        if not isinstance(md, (int, float)) or not 0 < md <= N - 1:
            raise ValueError(f"{env_id}: mean_degree must be in (0, num_nodes - 1], got {md!r}")
        if kw["graph"] == "small_world" and (int(md) != md or md % 2 or md < 2):
            raise ValueError(f"{env_id}: mean_degree must be an even int >= 2 for graph='small_world', got {md!r}")
        for name, lo, hi in (("rewire_prob", 0, 1), ("stubbornness", 0, 1), ("push_strength", 0, 2),
                             ("effort_cost", 0, math.inf)):
            v = kw[name]
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not lo <= v <= hi:
                raise ValueError(f"{env_id}: {name} must be a number in [{lo}, {hi}], got {v!r}")
        K = kw["view_size"] if kw["view_size"] is not None else N
        if not isinstance(K, int) or isinstance(K, bool) or not 1 <= K <= N:
            raise ValueError(f"{env_id}: view_size must be None or an int in [1, num_nodes], got {kw['view_size']!r}")
        levels = kw["effort_levels"]
        if (not isinstance(levels, (tuple, list)) or not levels
                or not all(isinstance(v, (int, float)) and 0 <= v <= 1 for v in levels)):
            raise ValueError(f"{env_id}: effort_levels must be a non-empty tuple of numbers in [0, 1], got {levels!r}")
        b = kw["budget"]
        if b is not None and (not isinstance(b, (int, float)) or b <= 0):
            raise ValueError(f"{env_id}: budget must be None (unlimited) or a positive number, got {b!r}")
        if kw["reward"] not in ("level", "change"):
            raise ValueError(f"{env_id}: reward must be 'level' or 'change', got {kw['reward']!r}")
        if kw["dtype"] not in (torch.float32, torch.float64):
            raise ValueError(f"{env_id}: dtype must be torch.float32 or torch.float64, got {kw['dtype']}")
        if kw["render_mode"] not in (None, "rgb_array"):
            raise ValueError(f"{env_id}: render_mode {kw['render_mode']!r} is not supported: use None or 'rgb_array'")
        self.device = torch.empty(0, device=device).device
        self.num_envs, self.N, self.A, self.K, self.T = num_envs, N, A, K, kw["max_cycles"]
        self.graph, self.mean_degree, self.rewire_prob = kw["graph"], float(md), float(kw["rewire_prob"])
        self.s, self.eta, self.cost = float(kw["stubbornness"]), float(kw["push_strength"]), float(kw["effort_cost"])
        self.budget, self.reward_kind = (None if b is None else float(b)), kw["reward"]
        self.dtype, self.validate, self.render_mode = kw["dtype"], kw["validate"], kw["render_mode"]
        self.continuous_actions = bool(kw["continuous_actions"])
        self.levels = torch.tensor([float(v) for v in levels], dtype=self.dtype, device=self.device)
        L, obs_dim = len(levels), 4 * K + 3
        box = gym.spaces.Box(-1.0, 1.0, (obs_dim,), np.float32)
        act = gym.spaces.Box(0.0, 1.0, (K * L,), np.float32) if self.continuous_actions else gym.spaces.Discrete(K * L)
        self.spec = EnvSpec(env_id, {side: GroupSpec(side, tuple(f"{side}_{i}" for i in range(A)), box,
                                                     act) for side in ("blue", "red")},
                            state_dim=5 * N + 2 * A + 1, max_episode_steps=self.T, teams=(("blue",), ("red",)))
        self.side = torch.cat([torch.ones(A), -torch.ones(A)]).to(self.device, self.dtype)  # (2A,) blue then red
        self._gen = torch.Generator(device=self.device)
        self._gen.manual_seed(seed if seed is not None else int(torch.randint(0, 2**62, (1,)).item()))
        E, f = num_envs, dict(dtype=self.dtype, device=self.device)
        self.x, self.x0 = torch.zeros(E, N, **f), torch.zeros(E, N, **f)
        self.weights, self.degree = torch.zeros(E, N, N, **f), torch.zeros(E, N, **f)
        self.adj = torch.zeros(E, N, N, dtype=torch.bool, device=self.device)
        self.pos = torch.zeros(E, N, 2, **f)
        self.view = torch.zeros(E, 2 * A, K, dtype=torch.long, device=self.device)  # node of each slot
        self.pushed = torch.zeros(E, 2, N, **f)  # blue, red effort per node last step
        self.left = torch.zeros(E, 2 * A, **f)  # budget left (inf without budget)
        self.t = torch.zeros(E, dtype=torch.long, device=self.device)
        self.reset()  # allocates the state; step() still needs a reset() of its own
        self._was_reset = False

    # -- observations and state -----------------------------------------------------
    def _obs(self) -> dict[str, Tensor]:
        E, A, K = self.num_envs, self.A, self.K
        deg = self.degree / self.degree.amax(1, keepdim=True).clamp(min=1.0)
        node = torch.stack([self.x, deg, self.pushed[:, 0].clamp(max=1.0), self.pushed[:, 1].clamp(max=1.0)], -1)
        slots = torch.gather(node[:, None].expand(E, 2 * A, self.N, 4), 2, self.view[..., None].expand(E, 2 * A, K, 4))
        frac = self.left / self.budget if self.budget is not None else torch.ones_like(self.left)
        glob = torch.stack([self.x.mean(1, keepdim=True).expand(E, 2 * A), frac,
                            (self.t.to(self.dtype) / self.T)[:, None].expand(E, 2 * A)], -1)
        o = torch.cat([slots.flatten(2), glob], -1)
        return {"blue": o[:, :A], "red": o[:, A:]}

    def state(self) -> Tensor:
        """(E, 5 N + 2 A + 1); layout in the module docstring."""
        deg = self.degree / self.degree.amax(1, keepdim=True).clamp(min=1.0)
        frac = self.left / self.budget if self.budget is not None else torch.ones_like(self.left)
        return torch.cat([self.x, self.x0, deg, self.pushed.clamp(max=1.0).flatten(1), frac,
                          (self.t.to(self.dtype) / self.T)[:, None]], 1)

    # -- dynamics ---------------------------------------------------------------------
    def _reset_where(self, mask: Tensor) -> None:
        E, N, A, K, g = self.num_envs, self.N, self.A, self.K, self._gen
        adj, pos = random_graph(self.graph, E, N, self.mean_degree, self.rewire_prob, g, self.device)
        x0 = torch.rand(E, N, generator=g, device=self.device, dtype=self.dtype) * 2 - 1
        weights, degree = influence_weights(adj, self.dtype)
        pick = torch.rand(E, 2 * A, N, generator=g, device=self.device).argsort(-1)[..., :K] if K < N else \
            torch.arange(N, device=self.device).expand(E, 2 * A, N)
        # order each view by degree (highest first), ties by node index: degree * (N + 1) - index is exact
        key = torch.gather(degree[:, None].expand(E, 2 * A, N), 2, pick) * (N + 1) - pick.to(self.dtype)
        view = torch.gather(pick, 2, key.argsort(-1, descending=True))
        m1, m2 = mask[:, None], mask[:, None, None]
        self.adj = torch.where(m2, adj, self.adj)
        self.weights = torch.where(m2, weights, self.weights)
        self.degree, self.pos = torch.where(m1, degree, self.degree), torch.where(m2, pos.to(self.dtype), self.pos)
        self.x0 = torch.where(m1, x0, self.x0)
        self.x = torch.where(m1, x0, self.x)
        self.view = torch.where(m2, view, self.view)
        self.pushed = torch.where(m2, 0.0, self.pushed)
        self.left = torch.where(m1, self.budget if self.budget is not None else math.inf, self.left)
        self.t = torch.where(mask, 0, self.t)

    def reset(self, seed: int | None = None, mask: Tensor | None = None) -> TimeStep:
        """Reset all envs (mask None) or those where ``mask`` (E,) bool is True."""
        if seed is not None:
            self._gen.manual_seed(int(seed))
        self._reset_where(reset_mask(mask, self.num_envs, self.device))
        self._was_reset = True
        return reset_timestep(self.spec, self._obs(), self.dtype)

    def apply(self, node: Tensor, effort: Tensor) -> Tensor:
        """Push ``node`` (E, 2A) long with requested ``effort`` (E, 2A), blue agents then red;
        update opinions, budgets and last pushes. Returns the effort spent (E, 2A)."""
        spent = torch.minimum(effort, self.left)
        self.left = self.left - spent
        pushed = torch.zeros(self.num_envs, 2, self.N, dtype=self.dtype, device=self.device)
        pushed[:, 0].scatter_add_(1, node[:, :self.A], spent[:, :self.A])
        pushed[:, 1].scatter_add_(1, node[:, self.A:], spent[:, self.A:])
        self.x = opinion_update(self.x, self.x0, self.weights, self.eta * (pushed[:, 0] - pushed[:, 1]), self.s)
        self.pushed = pushed
        return spent

    def step(self, actions: dict[str, Tensor]) -> TimeStep:
        """Step every env; see :mod:`fastmarl.envs.api`. Auto-resets ended episodes."""
        require_reset(self)
        if self.validate:
            validate_actions(self.spec, actions, self.num_envs, self.device)
        a = torch.cat([actions["blue"], actions["red"]], 1)  # (E, 2A) or (E, 2A, K L) weights
        a = a.argmax(-1) if self.continuous_actions else a.long()
        L = self.levels.numel()
        node = torch.gather(self.view, 2, (a // L)[..., None])[..., 0]
        before = self.x.mean(1)
        spent = self.apply(node, self.levels[a % L])
        team = self.x.mean(1) - (self.x0.mean(1) if self.reward_kind == "level" else before)  # (E,)
        r = team[:, None] * self.side - self.cost * spent
        self.t = self.t + 1
        trunc = self.t >= self.T
        obs = final_obs = self._obs()
        final_state, info = None, {"mean_opinion": self.x.mean(1)}  # (E,) before any auto-reset
        if bool(trunc.any()):
            final_state = self.state()
            self._reset_where(trunc)
            obs = self._obs()
        return TimeStep(obs=obs, reward={"blue": r[:, :self.A], "red": r[:, self.A:]},
                        terminated=torch.zeros_like(trunc), truncated=trunc, final_obs=final_obs,
                        final_state=final_state, info=info)

    # -- rendering and exact resume -----------------------------------------------------
    def render(self, env_index: int = 0, size: int = 256) -> np.ndarray:
        """RGB (size, size, 3): grey links; nodes coloured by opinion (red -1, white 0, blue +1),
        ringed blue / red where that side pushed last step."""
        if not 0 <= env_index < self.num_envs:
            raise IndexError(f"env_index {env_index} out of range for num_envs={self.num_envs}")
        img = np.full((size, size, 3), 250, np.uint8)
        p = (8 + self.pos[env_index].double().cpu().numpy() * (size - 16)).astype(int)
        i, j = np.nonzero(np.triu(self.adj[env_index].cpu().numpy(), 1))
        u = np.linspace(0.0, 1.0, size // 4)[:, None]
        pts = (p[i][None] * (1 - u[..., None]) + p[j][None] * u[..., None]).astype(int)  # points along every link
        img[pts[..., 1].clip(0, size - 1), pts[..., 0].clip(0, size - 1)] = (190, 190, 190)
        x = self.x[env_index].double().cpu().numpy()
        pushed = self.pushed[env_index].cpu().numpy() > 0
        xc = x[:, None]
        col = np.where(xc >= 0, 255 - xc * np.array([220, 160, 0]), 255 + xc * np.array([0, 220, 220]))
        r = max(2, size // (4 * int(math.sqrt(self.N)) + 8))
        for n in range(self.N):
            cx, cy = p[n]
            if pushed[0, n] or pushed[1, n]:
                ring = (30, 60, 220) if pushed[0, n] and not pushed[1, n] else (
                    (220, 30, 30) if pushed[1, n] and not pushed[0, n] else (120, 30, 160))
                img[max(cy - r - 2, 0):cy + r + 3, max(cx - r - 2, 0):cx + r + 3] = ring
            img[max(cy - r, 0):cy + r + 1, max(cx - r, 0):cx + r + 1] = col[n].astype(np.uint8)
        return img

    _STATE = ("x", "x0", "weights", "degree", "adj", "pos", "view", "pushed", "left", "t")


def make_influence(num_envs: int = 1, device: str | torch.device = "cpu", seed: int | None = None,
                   **kwargs: Any) -> InfluenceEnv:
    return InfluenceEnv(num_envs, device, seed, **check_kwargs("influence_v0", kwargs, KWARGS))


class DegreeHeuristic:
    """Both sides push the most central not-yet-aligned node of their view (``Policy`` protocol)."""

    def __init__(self, spec: EnvSpec):
        g = spec.groups["blue"]
        self.K = (g.obs_dim - 3) // 4
        self.L = g.action_dim // self.K
        self.continuous = not g.discrete

    def initial_carry(self, num_envs: int) -> dict:
        return {}

    def act(self, ts: TimeStep, carry: dict, deterministic: bool = True,
            generator: torch.Generator | None = None) -> tuple[dict[str, Tensor], dict]:
        out = {}
        for name, side in (("blue", 1.0), ("red", -1.0)):
            o = ts.obs[name]
            E, A = o.shape[:2]
            slots = o[..., :4 * self.K].reshape(E, A, self.K, 4)
            score = slots[..., 1] - 2.0 * (side * slots[..., 0] >= ALIGNED).to(o.dtype)  # degree in [0, 1]
            rank = score.argsort(dim=-1, descending=True, stable=True)
            pick = torch.arange(A, device=o.device) % self.K
            slot = torch.gather(rank, 2, pick.expand(E, A)[..., None])[..., 0]
            out[name] = slot * self.L + (self.L - 1)
            if self.continuous:
                out[name] = torch.nn.functional.one_hot(out[name], self.K * self.L).to(o.dtype)
        return out, carry


def baseline_policy(spec: EnvSpec) -> DegreeHeuristic:
    return DegreeHeuristic(spec)
