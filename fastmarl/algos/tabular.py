"""Independent tabular Q-learning, vectorized over envs and agents.

Each group of agents has one table ``Q[k, s, a]`` shaped ``(K, S, n)``: ``K = A_g``
(one table per agent) or ``K = 1`` (a table shared by the group's agents), ``S``
states (observation indices from a :class:`~fastmarl.envs.wrappers.Discretizer`),
``n`` actions. Every env step updates all ``E x A_g`` (state, action) pairs at once
with the textbook rule

    Q[k, s, a] += lr * (r + gamma * (1 - terminated) * max_a' Q[k, s', a'] - Q[k, s, a])

where ``s'`` is the index of ``final_obs`` (the real next observation: at a
truncation the bootstrap uses the episode's last observation, not the first one
of the next episode). Several samples of one step that hit the same entry
(e.g. two envs in the same state taking the same action) are averaged: the entry
moves by ``lr`` times their mean TD error, so a batch of E identical samples
moves it as far as one sample would, and a batch of one is exactly the textbook
update.

Exploration is epsilon-greedy (ties broken uniformly at random, legal actions
only when the env gives action masks) with epsilon decayed linearly.
``fastmarl.train.runner.train_tabular(env, TabularConfig(...))`` runs it (through the
one training loop) on any batched env with discrete actions and returns the
per-episode returns.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from fastmarl.config.tabular import TabularConfig
from fastmarl.envs.api import EnvSpec, TimeStep
from fastmarl.envs.wrappers import Discretizer, check_table_size

# -- shared maths (also used by fastmarl.algos.q_learning) ------------------------

def linear_schedule(start: float, end: float, duration: int, t: int) -> float:
    """``start`` at t = 0, linearly to ``end`` at t = duration, then ``end``."""
    if duration <= 0:
        return end
    frac = min(max(t / duration, 0.0), 1.0)
    return start + frac * (end - start)


def masked_greedy(q: Tensor, mask: Tensor | None, generator: torch.Generator | None = None,
                  random_ties: bool = False) -> Tensor:
    """argmax over the last axis restricted to legal actions (``mask`` True).
    ``random_ties``: break ties uniformly at random (tables start all equal)."""
    if mask is not None:
        q = q.masked_fill(~mask, float("-inf"))
    if not random_ties:
        return q.argmax(-1)
    best = q == q.amax(-1, keepdim=True)
    noise = torch.rand(q.shape, generator=generator, device=q.device)
    return torch.where(best, noise + 1.0, noise - 1.0).argmax(-1)


def epsilon_greedy(q: Tensor, epsilon: float, mask: Tensor | None = None, generator: torch.Generator | None = None,
                   random_ties: bool = False) -> Tensor:
    """Actions (...,) long from values ``q`` (..., n): greedy with probability
    1 - epsilon, else uniform over the legal actions (``mask`` (..., n) bool)."""
    greedy = masked_greedy(q, mask, generator, random_ties)
    if epsilon <= 0.0:
        return greedy
    scores = torch.rand(q.shape, generator=generator, device=q.device)
    if mask is not None:
        scores = scores.masked_fill(~mask, -1.0)
    random = scores.argmax(-1)
    explore = torch.rand(greedy.shape, generator=generator, device=q.device) < epsilon
    return torch.where(explore, random, greedy)


def tabular_q_update(table: Tensor, table_of_agent: Tensor, s: Tensor, a: Tensor, r: Tensor, s_next: Tensor,
                     terminated: Tensor, lr: float, gamma: float, next_mask: Tensor | None = None) -> Tensor:
    """One batched Q-learning update of ``table`` (K, S, n) in place; returns the TD errors.

    Args:
        table_of_agent: (A,) long, the table each agent uses (``arange(A)`` or zeros).
        s, a, s_next: (E, A) long state indices, actions, next-state indices.
        r: (E, A) rewards. terminated: (E,) bool (no bootstrap).
        next_mask: optional (E, A, n) legal actions in ``s_next`` (the max runs over them).

    Returns:
        (E, A) TD errors ``r + gamma * (1 - terminated) * max Q[s'] - Q[s, a]`` (before the update).
    """
    K, S, n = table.shape
    k = table_of_agent[None, :].expand_as(s)
    q_next = table[k, s_next]  # (E, A, n)
    if next_mask is not None:
        q_next = q_next.masked_fill(~next_mask, float("-inf"))
        q_next = torch.where(next_mask.any(-1, keepdim=True), q_next, 0.0)
    bootstrap = q_next.amax(-1) * (~terminated).to(table.dtype)[:, None]
    flat = ((k * S + s) * n + a).reshape(-1)
    td = r.to(table.dtype) + gamma * bootstrap - table.view(-1)[flat].view_as(r)
    # average the TD errors of samples hitting the same entry (see the module docstring)
    total = torch.zeros(K * S * n, dtype=table.dtype, device=table.device).index_add_(0, flat, td.reshape(-1))
    count = torch.zeros(K * S * n, dtype=table.dtype, device=table.device).index_add_(
        0, flat, torch.ones_like(td.reshape(-1)))
    table.view(-1).add_(lr * total / count.clamp_min(1.0))
    return td


# -- the learner ------------------------------------------------------------------

class TabularQ:
    """Tables, acting and the update for every group of a discrete-action env, behind the
    :class:`~fastmarl.algos.learner.Learner` protocol of the training loop.

    ``tables[g]``: (K, S_g, n_g) with K = A_g or 1. ``act`` follows the
    :class:`~fastmarl.envs.api.Policy` protocol (so ``evaluate_policy`` works):
    deterministic = greedy, else epsilon-greedy with the current ``epsilon``.
    ``collect`` takes one epsilon-greedy step of every env, ``update`` applies its
    TD update (``learn``); ``episode_returns`` keeps the return of every finished
    training episode (the mean over agents of each agent's summed reward).
    """

    eval_modes = ("det",)

    def __init__(self, spec: EnvSpec, cfg: TabularConfig, device: torch.device | str = "cpu",
                 discretizers: dict[str, Discretizer] | None = None):
        self.spec, self.cfg, self.device = spec, cfg, torch.device(device)
        self.discretizers: dict[str, Discretizer] = {}
        self.tables: dict[str, Tensor] = {}
        self.table_of_agent: dict[str, Tensor] = {}
        for name, g in spec.groups.items():
            if not g.discrete:
                raise ValueError(f"tabular Q-learning needs discrete actions, but group {name!r} has {g.action_space}; "
                                 "create the env with discrete actions (e.g. continuous_actions=False)")
            d = (discretizers or {}).get(name) or Discretizer.for_space(
                g.observation_space, cfg.obs_encoding, cfg.bins if cfg.obs_encoding == "bins" else None,
                cfg.low, cfg.high)
            K = 1 if cfg.shared_table else g.num_agents
            check_table_size(d.num_states, g.action_dim, K, warn_entries=cfg.warn_entries,
                             what=f"Q-table of group {name!r}")
            self.discretizers[name] = d
            self.tables[name] = torch.full((K, d.num_states, g.action_dim), float(cfg.init_value), device=self.device)
            self.table_of_agent[name] = (torch.zeros(g.num_agents, dtype=torch.long, device=self.device)
                                         if cfg.shared_table else torch.arange(g.num_agents, device=self.device))
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(cfg.seed)
        self.epsilon = cfg.epsilon_start
        self.planned_steps = cfg.total_steps
        self.ts: TimeStep | None = None
        self.env_steps = 0
        self._step: tuple[TimeStep, dict[str, Tensor], TimeStep] | None = None  # collected, not yet learned
        self._running: Tensor | None = None  # (E,) return of the unfinished episodes
        self._finished: list[Tensor] = []

    # -- the Learner protocol ----------------------------------------------------------
    def begin(self, env, seed: int) -> None:
        self.start(env.reset(seed=seed), env)

    def start(self, ts: TimeStep, env) -> None:
        """Start from ``ts``, the first TimeStep of a freshly reset ``env``."""
        self.ts = ts
        self._running = torch.zeros(env.num_envs, device=self.device)

    @torch.no_grad()
    def collect(self, env, tracker) -> int:
        actions = self.act_step()
        next_ts = env.step(actions)
        tracker(next_ts)
        return self.record_step(actions, next_ts, env)

    def set_step(self, step: int) -> None:
        """The exploration rate of env step ``step`` (epsilon's linear schedule)."""
        self.epsilon = linear_schedule(self.cfg.epsilon_start, self.cfg.epsilon_end, self.cfg.epsilon_decay_steps,
                                       step)

    # ``collect`` in two halves, for several learners sharing one env (fastmarl.algos.lockstep)
    @torch.no_grad()
    def act_step(self) -> dict[str, Tensor]:
        """Epsilon-greedy actions group -> (E, A_g) at the current TimeStep (epsilon of this env step)."""
        self.set_step(self.env_steps)
        return self.act(self.ts)[0]

    @torch.no_grad()
    def record_step(self, actions: dict[str, Tensor], next_ts: TimeStep, env) -> int:
        """Keep the step ``actions -> next_ts`` for ``update``; returns the env steps."""
        self._running += sum(r.sum(-1) for r in next_ts.reward.values()) / self.spec.num_agents
        self._finished.append(self._running[next_ts.done])
        self._running = torch.where(next_ts.done, 0.0, self._running)
        self._step = (self.ts, actions, next_ts)
        self.ts = next_ts
        self.env_steps += env.num_envs
        return env.num_envs

    def update(self, progress: float) -> dict[str, Tensor]:
        td = self.learn(*self._step)
        self._step = None
        return {f"td_abs/{n}": v.abs().mean() for n, v in td.items()}

    def log_info(self) -> dict[str, float]:
        return {"epsilon": self.epsilon}

    @property
    def episode_returns(self) -> Tensor:
        return torch.cat(self._finished) if self._finished else torch.zeros(0, device=self.device)

    def weights(self) -> dict[str, Tensor]:
        return {f"tables.{n}": t for n, t in self.tables.items()}

    def load_weights(self, tensors: dict[str, Tensor]) -> None:
        for n, t in self.tables.items():
            t.copy_(tensors[f"tables.{n}"])

    def trainer_state(self) -> dict[str, Any]:
        ts = self.ts
        return {"generator": self.generator.get_state(), "epsilon": self.epsilon, "env_steps": self.env_steps,
                "running": self._running, "ts": {"obs": ts.obs, "terminated": ts.terminated,
                                                  "truncated": ts.truncated, "action_mask": ts.action_mask}}

    def load_trainer_state(self, s: dict[str, Any]) -> None:
        self.generator.set_state(s["generator"])
        self.epsilon, self.env_steps, self._running = float(s["epsilon"]), int(s["env_steps"]), s["running"]
        t = s["ts"]
        self.ts = TimeStep(obs=t["obs"], reward={}, terminated=t["terminated"], truncated=t["truncated"],
                           final_obs=t["obs"], action_mask=t["action_mask"])

    def extra_tensors(self) -> dict[str, dict[str, Tensor]]:
        return {}

    def load_extra_tensors(self, read) -> None:
        pass

    def state_index(self, obs: dict[str, Tensor]) -> dict[str, Tensor]:
        """group -> (E, A_g) long state indices."""
        return {g: self.discretizers[g](o) for g, o in obs.items()}

    def values(self, name: str, s: Tensor) -> Tensor:
        """Q-values (E, A_g, n) of group ``name`` in states ``s`` (E, A_g)."""
        return self.tables[name][self.table_of_agent[name][None, :].expand_as(s), s]

    def initial_carry(self, num_envs: int) -> dict:
        return {}

    @torch.no_grad()
    def act(self, ts: TimeStep, carry: Any = None, deterministic: bool = False,
            generator: torch.Generator | None = None) -> tuple[dict[str, Tensor], dict]:
        gen = generator or self.generator
        eps = 0.0 if deterministic else self.epsilon
        out = {}
        for name, s in self.state_index(ts.obs).items():
            mask = ts.action_mask.get(name) if ts.action_mask is not None else None
            out[name] = epsilon_greedy(self.values(name, s), eps, mask, gen, random_ties=True)
        return out, {}

    @torch.no_grad()
    def learn(self, ts: TimeStep, actions: dict[str, Tensor], next_ts: TimeStep) -> dict[str, Tensor]:
        """Learn from the step ``ts --actions--> next_ts``; returns group -> (E, A_g) TD errors."""
        s, s_next = self.state_index(ts.obs), self.state_index(next_ts.final_obs)
        td = {}
        for name in self.tables:
            # the mask of the next *state*: next_ts.action_mask belongs to next_ts.obs, which differs
            # from final_obs where an episode ended; there the bootstrap is either cut (terminated)
            # or its legal set is unknown, so we only use it where no episode ended
            nm = None
            if next_ts.action_mask is not None and name in next_ts.action_mask:
                nm = next_ts.action_mask[name] | next_ts.done[:, None, None]
            td[name] = tabular_q_update(self.tables[name], self.table_of_agent[name], s[name], actions[name].long(),
                                        next_ts.reward[name], s_next[name], next_ts.terminated, self.cfg.lr,
                                        self.cfg.gamma, nm)
        return td


__all__ = ["TabularConfig", "TabularQ", "tabular_q_update", "epsilon_greedy",
           "masked_greedy", "linear_schedule"]
