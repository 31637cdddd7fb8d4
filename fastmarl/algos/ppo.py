"""PPO for groups of agents: IPPO and MAPPO in one file.

IPPO and MAPPO share everything but the critic's input: an IPPO critic sees its
agent's observation, a MAPPO critic sees the global ``state()`` (optionally with
the agent's own observation appended). Actors see their own observation only
(decentralised execution), plus, with ``ppo.comm``, what the other actors of
their group communicate: a CommNet, TarMAC or DIAL module between the actor's body
and head (:mod:`fastmarl.nn.comm`). Both add an optional one-hot agent id.

DIAL (``ppo.comm="dial"``): each actor says a discrete message in the step, a
straight-through Gumbel-softmax sample, so the listeners' policy losses train
the speakers' messages by backpropagation. The rollout stores the Gumbel (and
link) noise of every message, and the update replays it: under the rollout's
weights the update's forward equals the rollout's, so the PPO ratio starts at 1
and treats the message noise as part of the (exogenous) randomness of the policy.

Range-limited topology (``TrainConfig.comm_range`` with ``ppo.comm``): an agent
hears only the agents of its group within ``comm_range`` of it (itself included),
``range_mask`` of the positions the env reports in ``TimeStep.info["positions"]``
(:class:`fastmarl.envs.comm_wrappers.AgentPositions`). Acting (rollouts and
``act``) and the update use the same mask: the rollout stores it per step.

Each group of the env (e.g. ``adversary`` and ``agent``) has its own actor,
critic, optimizer and value normaliser, so competing teams learn at once. Inside
a group, parameters are shared by default; ``share_params=False`` gives every
agent its own weights, stacked and applied in one batched matmul.

Rollout storage is preallocated on the device (``T`` steps, ``E`` envs, ``A_g``
agents of group ``g``):

==================  =========================  ==========================================
buffer              shape                      meaning
==================  =========================  ==========================================
obs[g]              (T, E, A_g, obs_dim)       observation the action was taken from
actions[g]          (T, E, A_g) or (.., D)     sampled action (before clipping to the box)
logp[g]             (T, E, A_g)                its log-probability
values[g]           (T, E, A_g)                V(s_t), de-normalised
rewards[g]          (T, E, A_g)                reward after the action
final_values[g]     (T, E, A_g)                V(final_obs) where the episode was truncated
masks[g]            (T, E, A_g, n)             action masks (if used)
state               (T, E, state_dim)          global state (MAPPO)
terminated          (T, E)                     the episode ended at t (no bootstrap)
truncated           (T, E)                     the episode hit its time limit at t (bootstrap)
starts              (T, E)                     obs_t is the first of an episode (GRU reset)
comm_noise[g]       (T, E, R, A_g, L, V) ...   dial: message samples' noise (DialNoise)
comm_mask[g]        (T, E, A_g, A_g) bool      comm_range: receiver i heard sender j at t
==================  =========================  ==========================================

The networks and action distributions are in :mod:`fastmarl.algos.actor_critic`.
The update (per iteration): GAE with exact bootstrapping, targets folded into
the value normaliser, then ``num_epochs`` passes of ``num_minibatches``
minibatches of the clipped PPO loss, with per-network gradient clipping and a
linearly annealed learning rate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from fastmarl.algos.actor_critic import Carry, GroupActorCritic, logp_entropy, sample_action
from fastmarl.config import ALGORITHMS, Derived, TrainConfig
from fastmarl.envs.api import EnvSpec, TimeStep
from fastmarl.envs.comm import range_mask
from fastmarl.nn.comm import DialNoise

# -- shared maths ---------------------------------------------------------------

def gae(rewards: Tensor, values: Tensor, next_values: Tensor, dones: Tensor, gamma: float, lam: float) -> Tensor:
    """Generalised advantage estimates, computed backwards in time.

    rewards, values, next_values: (T, ...). ``next_values[t]`` is the value of the
    state *after* step t: ``values[t + 1]`` inside an episode, ``V(final_obs)``
    where the episode was truncated, 0 where it terminated. dones (T, ...) bool,
    broadcastable: the episode ended at step t, so the recursion does not carry
    advantages from the next episode back into this one.

    ``delta_t = r_t + gamma * next_values[t] - values[t]``;
    ``A_t = delta_t + gamma * lam * (1 - done_t) * A_{t+1}``.
    """
    not_done = (~dones).to(values.dtype)
    while not_done.dim() < values.dim():
        not_done = not_done.unsqueeze(-1)
    deltas = rewards + gamma * next_values - values
    adv = torch.empty_like(values)
    last = torch.zeros_like(values[0])
    for t in range(values.shape[0] - 1, -1, -1):
        last = deltas[t] + gamma * lam * not_done[t] * last
        adv[t] = last
    return adv


def masked_mean(x: Tensor, mask: Tensor | None) -> Tensor:
    if mask is None:
        return x.mean()
    m = mask.to(x.dtype)
    return (x * m).sum() / m.sum().clamp_min(1.0)


def clipped_surrogate(new_logp: Tensor, old_logp: Tensor, advantages: Tensor, clip_coef: float,
                      mask: Tensor | None = None) -> dict[str, Tensor]:
    """PPO's clipped policy loss, elementwise over any shape, with its diagnostics.

    ``policy = mean(max(-A * r, -A * clip(r, 1 - eps, 1 + eps)))`` with ``r = exp(new_logp - old_logp)``
    (HAPPO passes ``A`` already weighted by the earlier agents' ratios).
    """
    log_ratio = new_logp - old_logp
    ratio = log_ratio.exp()
    pg = torch.maximum(-advantages * ratio, -advantages * ratio.clamp(1 - clip_coef, 1 + clip_coef))
    with torch.no_grad():
        approx_kl = masked_mean((ratio - 1) - log_ratio, mask)  # Schulman's k3 estimator
        clipfrac = masked_mean(((ratio - 1).abs() > clip_coef).to(ratio.dtype), mask)
    return {"policy_loss": masked_mean(pg, mask), "approx_kl": approx_kl, "clipfrac": clipfrac}


def value_loss(new_values: Tensor, old_values: Tensor, returns: Tensor, clip_coef: float, clip_vloss: bool,
               mask: Tensor | None = None) -> Tensor:
    """``0.5 * mean(max((V - R)^2, (V_old + clip(V - V_old, -eps, eps) - R)^2))`` (or the plain squared
    error); values and returns on the same (normalised) scale."""
    v_err = (new_values - returns) ** 2
    if clip_vloss:
        v_clipped = old_values + (new_values - old_values).clamp(-clip_coef, clip_coef)
        v_err = torch.maximum(v_err, (v_clipped - returns) ** 2)
    return 0.5 * masked_mean(v_err, mask)


def ppo_losses(new_logp: Tensor, old_logp: Tensor, advantages: Tensor, new_values: Tensor, old_values: Tensor,
               returns: Tensor, clip_coef: float, clip_vloss: bool, mask: Tensor | None = None) -> dict[str, Tensor]:
    """The clipped surrogate and value losses (:func:`clipped_surrogate`, :func:`value_loss`)."""
    out = clipped_surrogate(new_logp, old_logp, advantages, clip_coef, mask)
    out["value_loss"] = value_loss(new_values, old_values, returns, clip_coef, clip_vloss, mask)
    return {k: out[k] for k in ("policy_loss", "value_loss", "approx_kl", "clipfrac")}


def normalize_advantages(adv: Tensor, alive: Tensor | None) -> Tensor:
    """Standardise a minibatch's advantages (over the alive entries where agents can die)."""
    return (adv - masked_mean(adv, alive)) / (adv[alive] if alive is not None else adv).std().clamp_min(1e-8)


# -- the learner ----------------------------------------------------------------

@dataclass
class Rollout:
    """Preallocated rollout storage; see the module docstring for shapes."""

    obs: dict[str, Tensor]
    actions: dict[str, Tensor]
    logp: dict[str, Tensor]
    values: dict[str, Tensor]
    rewards: dict[str, Tensor]
    final_values: dict[str, Tensor]
    masks: dict[str, Tensor]
    alive: dict[str, Tensor]
    state: Tensor | None
    terminated: Tensor
    truncated: Tensor
    starts: Tensor
    h0: Carry  # hidden states before step 0 (recurrent)
    last_values: dict[str, Tensor]  # (E, A_g) V(obs_T) for the bootstrap of the last step
    comm_noise: dict[str, DialNoise] = field(default_factory=dict)  # dial groups: (T, E, R, A_g, ...) samples
    comm_mask: dict[str, Tensor] = field(default_factory=dict)  # comm_range: (T, E, A_g, A_g) bool receive masks


class PPO:
    """IPPO/MAPPO learner (the :class:`~fastmarl.algos.learner.Learner` protocol): networks,
    optimizers, rollout collection and the update.

    Use: ``begin(env, seed)`` (or ``start(env.reset(...))``) once, then per iteration
    ``collect(env)`` (``num_steps`` steps of every env) and ``update(progress)``. ``act``
    is the policy for evaluation (actors only).
    """

    eval_modes = ("det", "stoch")

    def __init__(self, spec: EnvSpec, cfg: TrainConfig, derived: Derived, device: torch.device | str = "cpu"):
        self.spec, self.cfg, self.p, self.derived = spec, cfg, cfg.ppo, derived
        self.device = torch.device(device)
        self.centralized = ALGORITHMS[cfg.algo].centralized_critic
        self.nets = nn.ModuleDict({
            name: GroupActorCritic(g, spec.state_dim, cfg.ppo, self.centralized) for name, g in spec.groups.items()
        }).to(self.device)
        self.optimizers = {name: torch.optim.Adam(net.parameters(), lr=self.p.lr, eps=1e-5)
                           for name, net in self.nets.items()}
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(cfg.seed)
        self.use_masks = derived.action_masks
        # range-limited learned communication: groups whose actors talk (ppo.comm), with a radius
        self.comm_range = cfg.comm_range if cfg.ppo.comm != "none" else None
        self.ranged_groups = ([n for n, net in self.nets.items() if net.actor_comm is not None]
                              if self.comm_range is not None else [])
        self.buffer: Rollout | None = None
        self.ts: TimeStep | None = None  # the TimeStep the next action is taken from
        self.starts: Tensor | None = None  # (E,) that TimeStep begins an episode
        self.carry: Carry = {}
        self.planned_steps = derived.num_iterations * derived.steps_per_iteration

    # -- acting ---------------------------------------------------------------
    def initial_carry(self, num_envs: int) -> Carry:
        if not self.p.recurrent:
            return {}
        H = self.p.hidden_size
        return {name: (torch.zeros(num_envs, g.num_agents, H, device=self.device),
                       torch.zeros(num_envs, g.num_agents, H, device=self.device))
                for name, g in self.spec.groups.items()}

    def _mask(self, ts: TimeStep, name: str) -> Tensor | None:
        return ts.action_mask[name] if self.use_masks.get(name) and ts.action_mask is not None else None

    def comm_mask(self, ts: TimeStep, name: str) -> Tensor | None:
        """(E, A_g, A_g) bool: who hears whom in group ``name`` when acting on ``ts``,
        ``range_mask(ts.info["positions"][name], comm_range)``; None: all-to-all."""
        if name not in self.ranged_groups:
            return None
        positions = ts.info.get("positions")
        if positions is None or name not in positions:
            raise ValueError(f"comm_range={self.comm_range} limits communication by distance, but the env's "
                             f"TimeStep has no info['positions'][{name!r}]; wrap the env in "
                             "fastmarl.envs.comm_wrappers.AgentPositions (the runner does this)")
        return range_mask(positions[name], self.comm_range)

    @torch.no_grad()
    def act(self, ts: TimeStep, carry: Carry, deterministic: bool = False,
            generator: torch.Generator | None = None) -> tuple[dict[str, Tensor], Carry]:
        """The policy alone (decentralised): actions for every group, new carry.
        Hidden states are reset where ``ts.done`` (``ts.obs`` starts an episode)."""
        actions, new_carry = {}, {}
        for name, net in self.nets.items():
            h = carry.get(name, (None, None))
            gen = generator or self.generator
            out, ha = net.actor_step(net.actor_input(ts.obs[name]), h[0], ts.done, deterministic, gen,
                                     comm_mask=self.comm_mask(ts, name))
            a, _ = sample_action(out, net.log_std, self._mask(ts, name), deterministic, gen)
            actions[name] = self._to_env(name, a)
            if self.p.recurrent:
                new_carry[name] = (ha, h[1])
        return actions, new_carry

    def _to_env(self, name: str, a: Tensor) -> Tensor:
        g = self.spec.groups[name]
        if g.discrete:
            return a
        low = torch.as_tensor(g.action_space.low, device=a.device, dtype=a.dtype)
        high = torch.as_tensor(g.action_space.high, device=a.device, dtype=a.dtype)
        return torch.clamp(a, low, high)  # the unclipped sample is stored for the log-probability

    # -- rollouts ---------------------------------------------------------------
    def begin(self, env, seed: int) -> None:
        """Start collecting from ``env.reset(seed=seed)``."""
        self.start(env.reset(seed=seed))

    def start(self, ts: TimeStep) -> None:
        """Start collecting from a freshly reset env's first TimeStep."""
        E = ts.terminated.shape[0]
        self.ts = ts
        self.starts = torch.ones(E, dtype=torch.bool, device=self.device)
        self.carry = self.initial_carry(E)
        self.buffer = self._allocate(E)

    def _allocate(self, E: int) -> Rollout:
        T, dev = self.p.num_steps, self.device
        f = dict(device=dev, dtype=torch.float32)

        def per_group(extra=lambda g: (), dtype=torch.float32, only=lambda g: True):
            return {n: torch.zeros(T, E, g.num_agents, *extra(g), device=dev, dtype=dtype)
                    for n, g in self.spec.groups.items() if only(g)}

        return Rollout(
            obs=per_group(lambda g: (g.obs_dim,)),
            actions={n: torch.zeros(T, E, g.num_agents, *(() if g.discrete else (g.action_dim,)), device=dev,
                                    dtype=torch.long if g.discrete else torch.float32)
                     for n, g in self.spec.groups.items()},
            logp=per_group(), values=per_group(), rewards=per_group(), final_values=per_group(),
            masks=per_group(lambda g: (g.action_dim,), torch.bool, lambda g: self.use_masks.get(g.name, False)),
            alive=per_group(dtype=torch.bool, only=lambda g: self.spec.has_alive_mask),
            state=torch.zeros(T, E, self.spec.state_dim, **f) if self.centralized else None,
            terminated=torch.zeros(T, E, dtype=torch.bool, device=dev),
            truncated=torch.zeros(T, E, dtype=torch.bool, device=dev),
            starts=torch.zeros(T, E, dtype=torch.bool, device=dev),
            h0={}, last_values=per_group(),
            comm_noise={n: net.actor_comm.empty_noise(T, E, device=dev) for n, net in self.nets.items() if net.dial},
            comm_mask=per_group(lambda g: (g.num_agents,), torch.bool, lambda g: g.name in self.ranged_groups),
        )

    @torch.no_grad()
    def collect(self, env, on_step=None) -> int:
        """Fill the rollout buffer with ``num_steps`` steps of ``env``; returns the env steps taken.

        ``on_step(ts)`` sees every TimeStep (episode statistics). The three steps
        below are public so that several learners (one per group, e.g. MAPPO
        predators and IPPO prey) can share one env in lockstep
        (:mod:`fastmarl.train.selfplay`): each acts for its own groups, the
        env steps once with every group's actions, each records its own groups."""
        self.start_rollout()
        for t in range(self.p.num_steps):
            actions = self.act_step(t, env.state() if self.centralized else None)
            ts = env.step(actions)
            if on_step is not None:
                on_step(ts)
            self.record_step(t, ts, env)
        self.end_rollout(env)
        return self.p.num_steps * self.starts.shape[0]

    def start_rollout(self) -> None:
        """Begin a rollout (after ``begin``): remember the hidden states it starts from."""
        self.buffer.h0 = {n: (h[0].clone(), h[1].clone()) for n, h in self.carry.items()}

    @torch.no_grad()
    def act_step(self, t: int, state: Tensor | None) -> dict[str, Tensor]:
        """Sample this learner's actions (group -> (E, A_g[, D])) from the current
        TimeStep and store obs, actions, log-probs and values at rollout step ``t``.
        ``state`` (E, state_dim) is ``env.state()`` (needed when centralized)."""
        b, ts, starts, carry = self.buffer, self.ts, self.starts, self.carry
        b.starts[t] = starts
        if self.centralized:
            b.state[t] = state
        actions = {}
        for name, net in self.nets.items():
            obs = ts.obs[name]
            h = carry.get(name, (None, None))
            mask = self._mask(ts, name)
            comm_mask = self.comm_mask(ts, name)
            if comm_mask is not None:  # the update replays exactly the topology the actions were taken with
                b.comm_mask[name][t] = comm_mask
            out, ha, trace = net.actor_step(net.actor_input(obs), h[0], starts, generator=self.generator,
                                            return_trace=True, comm_mask=comm_mask)
            if trace is not None:  # the message samples, replayed by the update
                b.comm_noise[name].write(t, trace.noise)
            a, logp = sample_action(out, net.log_std, mask, False, self.generator)
            v, hc = net.critic_step(net.critic_input(obs, state), h[1], starts)
            b.obs[name][t] = obs
            b.actions[name][t] = a
            b.logp[name][t] = logp
            b.values[name][t] = self._denorm(net, v)
            if mask is not None:
                b.masks[name][t] = mask
            if ts.alive is not None and name in b.alive:
                b.alive[name][t] = ts.alive[name]
            if self.p.recurrent:
                carry[name] = (ha, hc)
            actions[name] = self._to_env(name, a)
        return actions

    @torch.no_grad()
    def record_step(self, t: int, ts: TimeStep, env) -> None:
        """Store what the env returned for rollout step ``t`` (rewards, episode ends,
        bootstrap values at truncation); ``ts`` becomes the TimeStep of the next action."""
        b, carry = self.buffer, self.carry
        b.terminated[t] = ts.terminated
        b.truncated[t] = ts.truncated
        for name in self.nets:
            b.rewards[name][t] = ts.reward[name]
        if any(ts.final_obs[n] is not ts.obs[n] for n in self.nets):  # some episode ended: bootstrap values
            final_state = None
            if self.centralized:
                final_state = ts.final_state if ts.final_state is not None else env.state()
            for name, net in self.nets.items():
                h = carry.get(name, (None, None))
                no_reset = torch.zeros_like(ts.terminated)
                v, _ = net.critic_step(net.critic_input(ts.final_obs[name], final_state), h[1], no_reset)
                b.final_values[name][t] = self._denorm(net, v)
        self.ts, self.starts = ts, ts.done

    @torch.no_grad()
    def end_rollout(self, env) -> None:
        """V(obs_T) of the TimeStep after the rollout, for the last step's bootstrap."""
        b, ts, starts = self.buffer, self.ts, self.starts
        state = env.state() if self.centralized else None
        for name, net in self.nets.items():
            h = self.carry.get(name, (None, None))
            v, _ = net.critic_step(net.critic_input(ts.obs[name], state), h[1], starts)
            b.last_values[name] = self._denorm(net, v)

    def _denorm(self, net: GroupActorCritic, v: Tensor) -> Tensor:
        return net.value_norm.denormalize(v) if self.p.value_norm else v

    def advantages(self, name: str) -> tuple[Tensor, Tensor]:
        """(advantages, returns) of group ``name`` for the collected rollout, (T, E, A_g)."""
        b = self.buffer
        values = b.values[name]
        next_values = torch.cat([values[1:], b.last_values[name][None]], 0)
        trunc = (b.truncated & ~b.terminated)[..., None]
        next_values = torch.where(trunc, b.final_values[name], next_values)
        next_values = torch.where(b.terminated[..., None], 0.0, next_values)
        adv = gae(b.rewards[name], values, next_values, b.terminated | b.truncated, self.p.gamma, self.p.gae_lambda)
        return adv, adv + values

    # -- the update ---------------------------------------------------------------
    # The pieces below are shared with HAPPO (fastmarl.algos.happo), which updates the same
    # networks from the same rollout, one agent after another.
    def set_lr(self, progress: float) -> float:
        """The annealed learning rate at ``progress`` in [0, 1), set on every optimizer."""
        p = self.p
        lr = p.lr * (1.0 - progress) if p.anneal_lr else p.lr
        for opt in self.optimizers.values():
            for pg in opt.param_groups:
                pg["lr"] = lr
        return lr

    @torch.no_grad()
    def targets(self) -> dict[str, tuple[Tensor, Tensor, Tensor]]:
        """group -> (advantages, returns, rollout values), each (T, E, A_g): GAE of the collected
        rollout; with value normalisation the returns fold into the running statistics first and
        returns and values are on the normalised scale."""
        targets = {}
        for name, net in self.nets.items():
            adv, ret = self.advantages(name)
            if self.p.value_norm:
                net.value_norm.update(ret, self.buffer.alive.get(name))
                targets[name] = (adv, net.value_norm.normalize(ret), net.value_norm.normalize(self.buffer.values[name]))
            else:
                targets[name] = (adv, ret, self.buffer.values[name])
        return targets

    def minibatches(self) -> tuple[Tensor, ...]:
        """One epoch's minibatch indices, a fresh permutation from the learner's generator: env indices
        (recurrent: whole sequences) or flat (t, env) sample indices."""
        T, E = self.buffer.terminated.shape
        if self.p.recurrent:
            order = torch.randperm(E, generator=self.generator, device=self.device)
            return order.split(self.derived.envs_per_minibatch)
        order = torch.randperm(T * E, generator=self.generator, device=self.device)
        return order.split(self.derived.samples_per_minibatch)

    def picker(self, idx: Tensor):
        """``pick(x)``: minibatch ``idx`` of a rollout buffer (T, E, ...): (T, B, ...) whole sequences
        (recurrent) or (B, ...) independent samples."""
        if self.p.recurrent:
            return lambda x: x[:, idx]
        return lambda x: x.flatten(0, 1)[idx]

    def policy_logp(self, name: str, net: GroupActorCritic, idx: Tensor) -> tuple[Tensor, Tensor]:
        """(log-probability of the stored actions, entropy) under the current actor of group ``name``
        on minibatch ``idx``, each (T, B, A_g) or (B, A_g)."""
        b, pick = self.buffer, self.picker(idx)
        h0, starts = (b.h0[name][0][idx], pick(b.starts)) if self.p.recurrent else (None, None)
        noise = b.comm_noise[name].map(pick) if name in b.comm_noise else None
        cmask = pick(b.comm_mask[name]) if name in b.comm_mask else None
        out = net.actor_seq(net.actor_input(pick(b.obs[name])), h0, starts, noise, cmask)
        mask = pick(b.masks[name]) if name in b.masks else None
        return logp_entropy(out, net.log_std, mask, pick(b.actions[name]))

    def value_pred(self, name: str, net: GroupActorCritic, idx: Tensor) -> Tensor:
        """The current critic's (normalised) values on minibatch ``idx``, (T, B, A_g) or (B, A_g)."""
        b, pick = self.buffer, self.picker(idx)
        h0, starts = (b.h0[name][1][idx], pick(b.starts)) if self.p.recurrent else (None, None)
        state = pick(b.state) if b.state is not None else None
        return net.critic_seq(net.critic_input(pick(b.obs[name]), state), h0, starts)

    def explained_variance(self, targets: dict[str, tuple[Tensor, Tensor, Tensor]]) -> dict[str, float]:
        """Share of the return variance each group's critic explains."""
        out = {}
        for name, (adv, _, _) in targets.items():
            ret = adv + self.buffer.values[name]
            out[f"explained_variance/{name}"] = (1 - adv.var() / ret.var().clamp_min(1e-8)).item()
        return out

    def update(self, progress: float) -> dict[str, float]:
        """One PPO update on the collected rollout; ``progress`` in [0, 1) sets the
        annealed learning rate. Returns mean losses and diagnostics per group."""
        p = self.p
        lr = self.set_lr(progress)
        targets = self.targets()
        stats: dict[str, list[Tensor]] = {}
        for _ in range(p.num_epochs):
            for idx in self.minibatches():
                for name, net in self.nets.items():
                    out = self._minibatch_loss(name, net, idx, targets[name])
                    opt = self.optimizers[name]
                    opt.zero_grad(set_to_none=True)
                    out["loss"].backward()
                    out["actor_grad_norm"] = nn.utils.clip_grad_norm_(net.actor_parameters(), p.max_grad_norm)
                    out["critic_grad_norm"] = nn.utils.clip_grad_norm_(net.critic_parameters(), p.max_grad_norm)
                    opt.step()
                    for k, v in out.items():
                        stats.setdefault(f"{k}/{name}", []).append(v.detach())
        metrics = {k: torch.stack(v).mean().item() for k, v in stats.items()}
        metrics["lr"] = lr
        metrics.update(self.explained_variance(targets))
        return metrics

    def _minibatch_loss(self, name: str, net: GroupActorCritic, idx: Tensor,
                        targets: tuple[Tensor, Tensor, Tensor]) -> dict[str, Tensor]:
        p, b, pick = self.p, self.buffer, self.picker(idx)
        adv, ret, old_v = targets
        alive = pick(b.alive[name]) if name in b.alive else None
        new_logp, entropy = self.policy_logp(name, net, idx)
        v = self.value_pred(name, net, idx)
        a = pick(adv)
        if p.norm_adv:
            a = normalize_advantages(a, alive)
        losses = ppo_losses(new_logp, pick(b.logp[name]), a, v, pick(old_v), pick(ret), p.clip_coef, p.clip_vloss,
                            alive)
        losses["entropy"] = masked_mean(entropy, alive)
        losses["loss"] = losses["policy_loss"] - p.ent_coef * losses["entropy"] + p.vf_coef * losses["value_loss"]
        return losses

    def log_info(self) -> dict[str, float]:
        return {}

    # -- checkpoints ---------------------------------------------------------------
    def extra_tensors(self) -> dict[str, dict[str, Tensor]]:
        return {}

    def load_extra_tensors(self, read) -> None:
        pass

    def weights(self) -> dict[str, Tensor]:
        """Every parameter and buffer (value normalisers included), by name. Like ``state_dict()``, these
        share storage with the live networks: clone them to keep a snapshot while training goes on."""
        return {k: v.detach() for k, v in self.nets.state_dict().items()}

    def load_weights(self, tensors: dict[str, Tensor]) -> None:
        missing, unexpected = self.nets.load_state_dict(tensors, strict=False)
        if missing or unexpected:
            raise ValueError(f"checkpoint weights do not match this config's networks: missing {missing}, "
                             f"unexpected {unexpected}; was the run trained with other network settings?")

    def trainer_state(self) -> dict[str, Any]:
        """What resuming needs besides the weights: optimizers, RNG, the rollout's position."""
        ts = self.ts
        return {
            "optimizers": {n: o.state_dict() for n, o in self.optimizers.items()},
            "generator": self.generator.get_state(),
            "carry": self.carry,
            "starts": self.starts,
            "ts": {"obs": ts.obs, "terminated": ts.terminated, "truncated": ts.truncated,
                   "action_mask": ts.action_mask, "alive": ts.alive, "positions": ts.info.get("positions")},
        }

    def load_trainer_state(self, s: dict[str, Any]) -> None:
        for n, o in self.optimizers.items():
            o.load_state_dict(s["optimizers"][n])
        self.generator.set_state(s["generator"])
        t = s["ts"]
        positions = t.get("positions")  # absent in checkpoints from before comm_range
        self.ts = TimeStep(obs=t["obs"], reward={}, terminated=t["terminated"], truncated=t["truncated"],
                           final_obs=t["obs"], action_mask=t["action_mask"], alive=t["alive"],
                           info={} if positions is None else {"positions": positions})
        self.starts, self.carry = s["starts"], s["carry"]
        self.buffer = self._allocate(self.starts.shape[0])
