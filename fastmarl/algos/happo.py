"""HAPPO: heterogeneous-agent PPO (Zhong et al., "Heterogeneous-Agent Reinforcement Learning", JMLR 2024).

HAPPO keeps everything of MAPPO but the actors' update. The rollout, GAE, the
centralized critics (on the global state, plus the agent's own observation), value
normalisation and the networks are PPO's (:class:`~fastmarl.algos.ppo.PPO`, whose
update pieces this learner calls); actors are one per agent by default
(``ppo.share_params=False``).

The update, per iteration, on the collected rollout:

1. Draw a random order of the agents (``happo.fixed_order``: the env's agent order)
   from the learner's seeded generator; ``order`` keeps it (also in the checkpoint).
2. Start the ratio product ``M = 1`` (one value per sample, ``(T, E)``). For each
   agent ``i_m`` in turn: ``num_epochs`` passes of ``num_minibatches`` minibatches of
   the clipped surrogate with agent ``i_m``'s (standardised) advantage ``A`` weighted
   by the product of the agents already updated this iteration::

       L(theta_i) = -mean(min(r_i * M * A, clip(r_i, 1 - eps, 1 + eps) * M * A))
       r_i = pi_i^new(a_i | o_i) / pi_i^old(a_i | o_i),
       M = prod_{j updated before i} pi_j^new(a_j | o_j) / pi_j^old(a_j | o_j)   (no gradient)

   then fold agent ``i_m``'s updated ratio, on the whole rollout, into ``M``. Only
   agent ``i_m``'s actor moves: per-agent weights are stacked ``(A, ...)``, so its
   optimizer (:class:`AgentAdam`) steps one agent's slice with that agent's own Adam
   moments and step count.
3. The critics: PPO's clipped value loss, ``num_epochs`` x ``num_minibatches``, all
   agents at once.

``happo.order_scope="all"`` runs one sequence (and one product) over every agent of
every group, so a team whose groups differ (speaker and listener) is updated as one
team; ``"group"`` runs each group's own sequence (groups with their own rewards).
Advantages are each agent's own (its critic's GAE): with a shared team reward they
estimate the same joint advantage as the paper's single critic. Agents that are not
alive at a sample contribute a ratio of 1 there. Learned communication (``ppo.comm``)
is refused: it couples the actors' policies, which the sequential update holds apart.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from fastmarl.algos.actor_critic import GroupActorCritic
from fastmarl.algos.ppo import PPO, clipped_surrogate, masked_mean, normalize_advantages, value_loss
from fastmarl.config import Derived, HAPPOTrainConfig
from fastmarl.envs.api import EnvSpec


class AgentAdam(torch.optim.Optimizer):
    """Adam over agent-stacked parameters (leading dim ``num_nets``: 1 shared, or one per agent)
    that steps one agent's slice at a time: ``step(agent)`` updates ``p[agent]`` (``p[0]`` when
    shared) and that slice's moments, with that agent's own step count for the bias correction,
    and leaves every other slice as it is. The arithmetic is torch.optim.Adam's (no weight decay,
    no amsgrad), so with ``num_nets=1`` it equals Adam."""

    def __init__(self, params, num_nets: int, lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-5):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps))
        self.num_nets = num_nets
        for group in self.param_groups:
            for p in group["params"]:
                if p.shape[0] != num_nets:
                    raise ValueError(f"AgentAdam: a parameter of shape {tuple(p.shape)} is not stacked over "
                                     f"num_nets={num_nets} networks")
        self.agent_steps = [0] * num_nets  # Adam steps taken by each slice

    @torch.no_grad()
    def step(self, agent: int = 0) -> None:  # type: ignore[override]
        k = agent if self.num_nets > 1 else 0
        self.agent_steps[k] += 1
        t = self.agent_steps[k]
        for group in self.param_groups:
            lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
            step_size = lr / (1 - beta1 ** t)
            bias_correction2_sqrt = math.sqrt(1 - beta2 ** t)
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                g, m, v = p.grad[k], state["exp_avg"][k], state["exp_avg_sq"][k]
                m.lerp_(g, 1 - beta1)
                v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
                p[k].addcdiv_(m, (v.sqrt() / bias_correction2_sqrt).add_(eps), value=-step_size)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "agent_steps": list(self.agent_steps)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        self.agent_steps = [int(s) for s in state_dict.pop("agent_steps")]
        super().load_state_dict(state_dict)


class HAPPO(PPO):
    """The HAPPO learner (the :class:`~fastmarl.algos.learner.Learner` protocol): PPO's rollouts,
    acting and checkpoints, HAPPO's sequential update (see the module docstring)."""

    def __init__(self, spec: EnvSpec, cfg: HAPPOTrainConfig, derived: Derived, device: torch.device | str = "cpu"):
        super().__init__(spec, cfg, derived, device)
        self.h = cfg.happo
        p = self.p
        self.actor_optimizers = {
            name: AgentAdam(net.actor_parameters(), 1 if p.share_params else spec.groups[name].num_agents, p.lr)
            for name, net in self.nets.items()}
        self.critic_optimizers = {name: torch.optim.Adam(net.critic_parameters(), lr=p.lr, eps=1e-5)
                                  for name, net in self.nets.items()}
        self.optimizers = {**{f"{n}/actor": o for n, o in self.actor_optimizers.items()},
                           **{f"{n}/critic": o for n, o in self.critic_optimizers.items()}}
        self.order: list[str] = []  # agent names in the order of the last update

    def sequences(self) -> list[list[tuple[str, int]]]:
        """This iteration's update order: sequences of (group, agent index); the ratio product runs
        along each sequence. Draws from the learner's generator unless ``fixed_order``."""
        if self.h.order_scope == "all":
            seqs = [[(n, i) for n, g in self.spec.groups.items() for i in range(g.num_agents)]]
        else:
            seqs = [[(n, i) for i in range(g.num_agents)] for n, g in self.spec.groups.items()]
        if not self.h.fixed_order:
            seqs = [[s[j] for j in torch.randperm(len(s), generator=self.generator, device=self.device).tolist()]
                    for s in seqs]
        return seqs

    @torch.no_grad()
    def ratio(self, name: str, net: GroupActorCritic, i: int) -> Tensor:
        """(T, E) ``pi_i^new(a_i) / pi_i^old(a_i)`` of agent ``i`` of group ``name`` on the whole rollout
        (1 where the agent is not alive)."""
        b = self.buffer
        T, E = b.terminated.shape
        logp, _ = self.policy_logp(name, net, torch.arange(E if self.p.recurrent else T * E, device=self.device))
        r = (logp.reshape(T, E, -1)[..., i] - b.logp[name][..., i]).exp()
        if name in b.alive:
            r = torch.where(b.alive[name][..., i], r, 1.0)
        return r

    def agent_loss(self, name: str, net: GroupActorCritic, i: int, idx: Tensor, adv: Tensor,
                   factor: Tensor) -> dict[str, Tensor]:
        """Agent ``i``'s HAPPO actor loss on minibatch ``idx``: the clipped surrogate of its ratio with
        its advantage (``adv`` (T, E, A_g), standardised over the minibatch) times ``factor`` (T, E),
        the product of the earlier agents' ratios, minus the entropy bonus."""
        p, b, pick = self.p, self.buffer, self.picker(idx)
        alive = pick(b.alive[name])[..., i] if name in b.alive else None
        new_logp, entropy = self.policy_logp(name, net, idx)
        a = pick(adv)[..., i]
        if p.norm_adv:
            a = normalize_advantages(a, alive)
        out = clipped_surrogate(new_logp[..., i], pick(b.logp[name])[..., i], pick(factor) * a, p.clip_coef, alive)
        out["entropy"] = masked_mean(entropy[..., i], alive)
        out["loss"] = out["policy_loss"] - p.ent_coef * out["entropy"]
        return out

    def update(self, progress: float) -> dict[str, float]:
        """One HAPPO update on the collected rollout; returns mean losses and diagnostics per group
        and ``ratio_product_dev``, the mean |M - 1| of each sequence's final ratio product."""
        p, b = self.p, self.buffer
        lr = self.set_lr(progress)
        targets = self.targets()
        T, E = b.terminated.shape
        stats: dict[str, list[Tensor]] = {}

        def record(out: dict[str, Tensor], name: str) -> None:
            for k, v in out.items():
                stats.setdefault(f"{k}/{name}", []).append(v.detach())

        order, deviations = [], []
        for seq in self.sequences():
            factor = torch.ones(T, E, device=self.device)
            for name, i in seq:
                net, opt = self.nets[name], self.actor_optimizers[name]
                order.append(self.spec.groups[name].agents[i])
                for _ in range(p.num_epochs):
                    for idx in self.minibatches():
                        out = self.agent_loss(name, net, i, idx, targets[name][0], factor)
                        opt.zero_grad(set_to_none=True)
                        out["loss"].backward()
                        out["actor_grad_norm"] = nn.utils.clip_grad_norm_(net.actor_parameters(), p.max_grad_norm)
                        opt.step(i)
                        del out["loss"]
                        record(out, name)
                factor = factor * self.ratio(name, net, i)
            deviations.append((factor - 1).abs().mean())
        self.order = order
        for _ in range(p.num_epochs):
            for idx in self.minibatches():
                for name, net in self.nets.items():
                    _, ret, old_v = targets[name]
                    pick = self.picker(idx)
                    alive = pick(b.alive[name]) if name in b.alive else None
                    loss = value_loss(self.value_pred(name, net, idx), pick(old_v), pick(ret), p.clip_coef,
                                      p.clip_vloss, alive)
                    opt = self.critic_optimizers[name]
                    opt.zero_grad(set_to_none=True)
                    (p.vf_coef * loss).backward()
                    grad_norm = nn.utils.clip_grad_norm_(net.critic_parameters(), p.max_grad_norm)
                    opt.step()
                    record({"value_loss": loss, "critic_grad_norm": grad_norm}, name)
        metrics = {k: torch.stack(v).mean().item() for k, v in stats.items()}
        metrics["lr"] = lr
        metrics["ratio_product_dev"] = torch.stack(deviations).mean().item()
        metrics.update(self.explained_variance(targets))
        return metrics

    # -- checkpoints: PPO's, with the last update order ---------------------------------
    def trainer_state(self) -> dict[str, Any]:
        return {**super().trainer_state(), "order": list(self.order)}

    def load_trainer_state(self, s: dict[str, Any]) -> None:
        super().load_trainer_state(s)
        self.order = list(s["order"])
