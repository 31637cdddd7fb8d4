"""Multi-agent soft actor-critic in one file: MASAC and ISAC differ only in what the critics see.

Every agent ``i`` has a stochastic actor ``pi_i(a | o_i)`` (decentralised
execution) and twin critics ``Q_i^1, Q_i^2`` with Polyak-averaged targets
``Q'``; per group, one temperature ``alpha = exp(log_alpha)``. Critics:

- MASAC: ``Q_i(s, a_1..a_N)``, the global state and the joint action of every agent
  (and the agent's own observation with ``critic_obs``);
- ISAC: ``Q_i(o_i, a_i)``, the agent's own observation and action.

Continuous actions (Haarnoja et al., 2018): a tanh-squashed Gaussian,
``u = tanh(x)``, ``x ~ N(mu(o), sigma(o))``, with the change-of-variables correction

    log pi(u | o) = log N(x; mu, sigma) - sum_d log(1 - tanh(x_d)^2),

(``log(1 - tanh(x)^2) = 2 (log 2 - x - softplus(-2x))``, stable); ``u`` in
``[-1, 1]^D`` is mapped onto the env's box. Per transition (``d`` = terminated;
truncated episodes bootstrap from their final observation):

    y_i = r_i + gamma (1 - d) (min_k Q'^k_i(s', a') - alpha log pi_i(a'_i | o'_i)),  a'_j ~ pi_j(o'_j)
    critic loss = sum_k (Q^k_i(s, a) - y_i)^2
    actor loss  = alpha log pi_i(u_i | o_i) - min_k Q^k_i(s, a_{-i}, u_i),  u_i ~ pi_i (reparameterised)

with the other agents' actions ``a_{-i}`` from the replay buffer (as MADDPG).

Discrete actions (the discrete SAC form, Christodoulou, 2019): the critic of agent
``i`` outputs a value for each of its ``n`` actions, ``Q_i(s, a_{-i}, .)`` (ISAC:
``Q_i(o_i, .)``), and the expectations over ``a_i`` are exact sums:

    y_i = r_i + gamma (1 - d) sum_a pi_i(a | o'_i) (min_k Q'^k_i(s', a'_{-i}, a) - alpha log pi_i(a | o'_i))
    actor loss = sum_a pi_i(a | o_i) (alpha log pi_i(a | o_i) - min_k Q^k_i(s, a_{-i}, a))

Temperature (``autotune_alpha``): ``loss = log_alpha * (H - H_target)``, with
``H = -log pi(u)`` of the sampled action (continuous) or the exact entropy of
``pi_i`` (discrete), so alpha falls while the policy is more random than
``target_entropy`` and rises while it is less.

Replay: transitions of the one episode buffer (:mod:`fastmarl.algos.offpolicy` has
the table); networks shared per group or one per agent (``share_params``).
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import Tensor, nn

from fastmarl.algos.offpolicy import (
    ActionCodec,
    Critics,
    GroupMLP,
    ReplayFeed,
    clipped_step,
    critic_input_dim,
    critic_inputs,
    load_module_weights,
    module_weights,
    polyak,
    sample_categorical,
)
from fastmarl.config.offpolicy import OffPolicyDerived, SACConfig
from fastmarl.envs.api import EnvSpec, TimeStep

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0
LOG_2 = math.log(2.0)


def sac_target(reward: Tensor, terminated: Tensor, gamma: float, q1_next: Tensor, q2_next: Tensor, alpha: Tensor | float,
               logp_next: Tensor, probs_next: Tensor | None = None) -> Tensor:
    """The soft TD target per agent.

    Continuous (``probs_next`` None): ``q*_next`` and ``logp_next`` are (B, A), of the sampled next action:
    ``y = r + gamma (1 - d) (min(q1, q2) - alpha logp)``. Discrete: ``q*_next``, ``logp_next`` and
    ``probs_next`` are (B, A, n): ``y = r + gamma (1 - d) sum_a p (min(q1, q2) - alpha logp)``.
    ``reward`` (B, A), ``terminated`` (B,) bool or 0/1."""
    v = torch.minimum(q1_next, q2_next) - alpha * logp_next
    if probs_next is not None:
        v = (probs_next * v).sum(-1)
    return reward + gamma * (1.0 - terminated.float())[..., None] * v


def alpha_loss(log_alpha: Tensor, entropy: Tensor, target_entropy: float) -> Tensor:
    """``mean(log_alpha * (H - H_target))``: its gradient lowers alpha while the entropy ``H`` (any shape)
    is above the target."""
    return (log_alpha * (entropy.detach() - target_entropy)).mean()


def squashed_gaussian(out: Tensor, generator: torch.Generator | None, deterministic: bool = False
                      ) -> tuple[Tensor, Tensor]:
    """Actor output (..., 2D) = (mean, log_std) -> (u (..., D) in [-1, 1], log pi(u) (...)); reparameterised.
    ``deterministic``: u = tanh(mean) (its log-prob is still that of the Gaussian's mode)."""
    mean, log_std = out.chunk(2, -1)
    log_std = log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)
    eps = (torch.zeros_like(mean) if deterministic
           else torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype))
    x = mean + log_std.exp() * eps
    logp = (-0.5 * eps ** 2 - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
    logp = logp - (2.0 * (LOG_2 - x - nn.functional.softplus(-2.0 * x))).sum(-1)
    return torch.tanh(x), logp


class SACLearner:
    """Actors, twin critics, targets, temperatures and optimizers of every group behind the
    :class:`~fastmarl.algos.learner.Learner` protocol. ``collect`` steps every env once (uniform random
    actions for the first ``learning_starts`` env steps, then sampled from the actors) into the replay
    buffer; ``update`` does one ``learn`` per ``update_interval`` env steps."""

    eval_modes = ("det", "stoch")  # the mean action (tanh(mu) / argmax) and samples of the policy

    def __init__(self, spec: EnvSpec, cfg: SACConfig, derived: OffPolicyDerived, device: torch.device | str = "cpu"):
        self.spec, self.cfg, self.derived = spec, cfg, derived
        self.device = torch.device(device)
        self.centralized = derived.centralized
        actors, critics = {}, {}
        for n, g in spec.groups.items():
            out = g.action_dim if g.discrete else 2 * g.action_dim
            actors[n] = GroupMLP(g.num_agents, g.obs_dim, out, cfg, head_gain=0.01)
            in_dim = critic_input_dim(spec, g, self.centralized, cfg.critic_obs, own_action=not g.discrete)
            critics[n] = Critics(2, g.num_agents, in_dim, g.action_dim if g.discrete else 1, cfg)
        self.actors = nn.ModuleDict(actors).to(self.device)
        self.critics = nn.ModuleDict(critics).to(self.device)
        self.target_critics = copy.deepcopy(self.critics).requires_grad_(False)
        self.log_alpha = nn.ParameterDict({n: nn.Parameter(torch.tensor(math.log(cfg.alpha_init)))
                                           for n in spec.groups}).to(self.device)
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        for n in spec.groups:
            self.optimizers[f"actor/{n}"] = torch.optim.Adam(self.actors[n].parameters(), lr=cfg.actor_lr)
            self.optimizers[f"critic/{n}"] = torch.optim.Adam(self.critics[n].parameters(), lr=cfg.critic_lr)
            self.optimizers[f"alpha/{n}"] = torch.optim.Adam([self.log_alpha[n]], lr=cfg.alpha_lr)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(cfg.seed)
        self.codec = ActionCodec(spec, self.device)
        self.feed = ReplayFeed(spec, cfg, derived, self.codec, self.device)
        self.num_updates = 0
        self.planned_steps = -(-cfg.total_steps // cfg.num_envs) * cfg.num_envs

    # -- the policy ---------------------------------------------------------------------
    def policy(self, name: str, obs: Tensor, generator: torch.Generator | None, deterministic: bool = False
               ) -> tuple[Tensor, Tensor]:
        """Group ``name``'s actions for obs (..., A, D), network space. Continuous: (u (..., A, D),
        log pi(u) (..., A)); discrete: (indices (..., A), log pi(.) (..., A, n))."""
        out = self.actors[name](obs)
        if not self.spec.groups[name].discrete:
            return squashed_gaussian(out, generator, deterministic)
        logp = torch.log_softmax(out, -1)
        return (out.argmax(-1) if deterministic else sample_categorical(out, generator)), logp

    @torch.no_grad()
    def _explore(self, ts: TimeStep, deterministic: bool = False,
                 generator: torch.Generator | None = None) -> dict[str, Tensor]:
        return {n: self.policy(n, ts.obs[n], generator or self.generator, deterministic)[0] for n in self.spec.groups}

    def initial_carry(self, num_envs: int) -> dict:
        return {}

    @torch.no_grad()
    def act(self, ts: TimeStep, carry: dict, deterministic: bool = False,
            generator: torch.Generator | None = None) -> tuple[dict[str, Tensor], dict]:
        """Env actions group -> (E, A) indices or (E, A, D) in the env's box."""
        return self.codec.to_env(self._explore(ts, deterministic, generator)), carry

    # -- the Learner protocol -------------------------------------------------------------
    def begin(self, env, seed: int) -> None:
        self.feed.begin(env, seed)

    def collect(self, env, tracker) -> int:
        return self.feed.collect(env, tracker, self._explore, self.generator)

    def update(self, progress: float) -> dict[str, list[Tensor]]:
        return self.feed.update(self.learn, self.generator)

    def log_info(self) -> dict[str, float]:
        alphas = {f"alpha/{n}": a.exp().item() for n, a in self.log_alpha.items()}
        return {"updates": self.num_updates, **alphas}

    # -- the update -----------------------------------------------------------------------
    def _inputs(self, name: str, obs: Tensor, own: Tensor | None, state: Tensor | None,
                joint: dict[str, Tensor]) -> Tensor:
        if self.centralized:
            return critic_inputs(name, obs, own, state, joint, self.cfg.critic_obs)
        return critic_inputs(name, obs, own)

    def targets(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """group -> y (B, A), the soft TD targets of a sampled batch (module docstring)."""
        cfg, groups = self.cfg, self.spec.groups
        state1 = batch["state"][:, 1] if self.centralized else None
        nxt = {n: self.policy(n, batch[f"obs/{n}"][:, 1], self.generator) for n in groups}  # a'_j ~ pi_j(o'_j)
        joint1 = self.codec.encode({n: a for n, (a, _) in nxt.items()})
        out = {}
        for n, g in groups.items():
            a1, logp1 = nxt[n]
            alpha = self.log_alpha[n].detach().exp()
            x = self._inputs(n, batch[f"obs/{n}"][:, 1], None if g.discrete else a1, state1, joint1)
            q1, q2 = self.target_critics[n](x)
            if g.discrete:
                out[n] = sac_target(batch[f"reward/{n}"], batch["terminated"], cfg.gamma, q1, q2, alpha, logp1,
                                    logp1.exp())
            else:
                out[n] = sac_target(batch[f"reward/{n}"], batch["terminated"], cfg.gamma, q1[..., 0], q2[..., 0],
                                    alpha, logp1)
        return out

    def learn(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """One gradient step of every group's critics, actor and temperature on a sampled batch, then
        the target update. Returns tensors (no sync)."""
        cfg, stats = self.cfg, {}
        state0 = batch["state"][:, 0] if self.centralized else None
        taken = {n: batch[f"action/{n}"] for n in self.spec.groups}
        joint0 = self.codec.encode(taken)
        with torch.no_grad():
            y = self.targets(batch)
        for n, g in self.spec.groups.items():
            obs0 = batch[f"obs/{n}"][:, 0]
            critics = self.critics[n]
            q1, q2 = critics(self._inputs(n, obs0, None if g.discrete else taken[n], state0, joint0))
            if g.discrete:
                idx = taken[n][..., None]
                q1, q2 = q1.gather(-1, idx)[..., 0], q2.gather(-1, idx)[..., 0]
            else:
                q1, q2 = q1[..., 0], q2[..., 0]
            critic_loss = ((q1 - y[n]) ** 2).mean() + ((q2 - y[n]) ** 2).mean()
            stats[f"critic_grad_norm/{n}"] = clipped_step(self.optimizers[f"critic/{n}"], critic_loss, cfg.grad_clip)

            alpha = self.log_alpha[n].detach().exp()
            critics.requires_grad_(False)  # the actor's gradient flows through the critics into its action only
            a, logp = self.policy(n, obs0, self.generator)
            if g.discrete:
                qa, qb = critics(self._inputs(n, obs0, None, state0, joint0))
                probs = logp.exp()
                actor_loss = (probs * (alpha * logp - torch.minimum(qa, qb))).sum(-1).mean()
                entropy = -(probs * logp).sum(-1)
            else:
                qa, qb = critics(self._inputs(n, obs0, a, state0, joint0))
                actor_loss = (alpha * logp - torch.minimum(qa, qb)[..., 0]).mean()
                entropy = -logp
            critics.requires_grad_(True)
            stats[f"actor_grad_norm/{n}"] = clipped_step(self.optimizers[f"actor/{n}"], actor_loss, cfg.grad_clip)
            if cfg.autotune_alpha:
                a_loss = alpha_loss(self.log_alpha[n], entropy, self.derived.target_entropy[n])
                opt = self.optimizers[f"alpha/{n}"]
                opt.zero_grad(set_to_none=True)
                a_loss.backward()
                opt.step()
                stats[f"alpha_loss/{n}"] = a_loss.detach()
            stats.update({f"critic_loss/{n}": critic_loss.detach(), f"actor_loss/{n}": actor_loss.detach(),
                          f"entropy/{n}": entropy.detach().mean(), f"q/{n}": q1.detach().mean(),
                          f"target/{n}": y[n].mean()})
        polyak(self.target_critics, self.critics, cfg.tau)
        self.num_updates += 1
        return stats

    # -- checkpoints ------------------------------------------------------------------------
    def _modules(self) -> dict[str, nn.Module]:
        return {"actors": self.actors, "critics": self.critics, "target_critics": self.target_critics,
                "log_alpha": self.log_alpha}

    def weights(self) -> dict[str, Tensor]:
        """Actors, critics, target critics and temperatures, by name (sharing storage with the live modules)."""
        return module_weights(self._modules())

    def load_weights(self, tensors: dict[str, Tensor]) -> None:
        load_module_weights(self._modules(), tensors, optional=("target_critics",))

    def trainer_state(self) -> dict[str, Any]:
        """Optimizers, the sampling generator, the update count, the rollout's position and the replay
        buffer's counters (its tensors are ``extra_tensors``)."""
        return {"optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
                "generator": self.generator.get_state(), "num_updates": self.num_updates,
                "rollout": self.feed.state_dict()}

    def load_trainer_state(self, s: dict[str, Any]) -> None:
        for k, o in self.optimizers.items():
            o.load_state_dict(s["optimizers"][k])
        self.generator.set_state(s["generator"])
        self.num_updates = int(s["num_updates"])
        self.feed.load_state_dict(s["rollout"])

    def extra_tensors(self) -> dict[str, dict[str, Tensor]]:
        """The replay buffer (``replay.safetensors``), unless ``checkpoint_replay`` is off."""
        return self.feed.extra_tensors()

    def load_extra_tensors(self, read) -> None:
        self.feed.load_extra_tensors(read)


__all__ = ["SACLearner", "alpha_loss", "sac_target", "squashed_gaussian"]
