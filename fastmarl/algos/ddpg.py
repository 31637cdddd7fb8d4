"""Multi-agent DDPG in one file: MADDPG and IDDPG differ only in what the critics see.

Every agent ``i`` has a deterministic actor ``mu_i(o_i)`` (decentralised execution)
and a critic ``Q_i`` with Polyak-averaged targets ``mu'``, ``Q'`` (Lillicrap et al.,
2016; Lowe et al., 2017):

- MADDPG: ``Q_i(s, a_1..a_N)``, the global state and the joint action of every agent
  (and the agent's own observation with ``critic_obs``);
- IDDPG: ``Q_i(o_i, a_i)``, the agent's own observation and action.

Per transition (``d`` = terminated; truncated episodes bootstrap from their final
observation):

    y_i = r_i + gamma (1 - d) Q'_i(s', mu'_1(o'_1), .., mu'_N(o'_N))
    critic loss = (Q_i(s, a) - y_i)^2
    actor loss  = -Q_i(s, a_{-i}, mu_i(o_i))     (the others' actions a_{-i} from the replay buffer)

Continuous actions: ``mu = tanh(.)`` in ``[-1, 1]^D`` (mapped onto the env's box);
while collecting, Gaussian noise of std ``exploration_noise`` (a fraction of the
box's half-width) is added and the result clipped to the box. Discrete actions
(MADDPG's Gumbel-softmax form): the actor outputs logits; it acts by sampling
``argmax(logits + Gumbel)`` (a sample of softmax(logits): the exploration) or,
deterministically, ``argmax(logits)``; the critic sees one-hot actions, the target's
``mu'`` is a one-hot sample of the target actor, and the actor loss is taken through
the straight-through Gumbel-softmax (one-hot forward, softmax gradient at
``gumbel_temperature``).
"""

from __future__ import annotations

import copy
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
    gumbel_softmax,
    load_module_weights,
    module_weights,
    polyak,
    sample_categorical,
)
from fastmarl.config.offpolicy import DDPGConfig, OffPolicyDerived
from fastmarl.envs.api import EnvSpec, TimeStep


def ddpg_target(reward: Tensor, terminated: Tensor, gamma: float, q_next: Tensor) -> Tensor:
    """``y = r + gamma (1 - d) Q'(s', mu'(o'))`` per agent: ``reward``, ``q_next`` (B, A), ``terminated`` (B,)."""
    return reward + gamma * (1.0 - terminated.float())[..., None] * q_next


class DDPGLearner:
    """Actors, critics, their targets and optimizers of every group behind the
    :class:`~fastmarl.algos.learner.Learner` protocol. ``collect`` steps every env once (uniform random
    actions for the first ``learning_starts`` env steps, then the actors' with exploration noise) into the
    replay buffer; ``update`` does one ``learn`` per ``update_interval`` env steps."""

    eval_modes = ("det",)  # the deterministic policy (the noise is exploration, not the policy)

    def __init__(self, spec: EnvSpec, cfg: DDPGConfig, derived: OffPolicyDerived, device: torch.device | str = "cpu"):
        self.spec, self.cfg, self.derived = spec, cfg, derived
        self.device = torch.device(device)
        self.centralized = derived.centralized
        actors, critics = {}, {}
        for n, g in spec.groups.items():
            actors[n] = GroupMLP(g.num_agents, g.obs_dim, g.action_dim, cfg, head_gain=0.01)
            in_dim = critic_input_dim(spec, g, self.centralized, cfg.critic_obs, own_action=True)
            critics[n] = Critics(1, g.num_agents, in_dim, 1, cfg)
        self.actors = nn.ModuleDict(actors).to(self.device)
        self.critics = nn.ModuleDict(critics).to(self.device)
        self.target_actors = copy.deepcopy(self.actors).requires_grad_(False)
        self.target_critics = copy.deepcopy(self.critics).requires_grad_(False)
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        for n in spec.groups:
            self.optimizers[f"actor/{n}"] = torch.optim.Adam(self.actors[n].parameters(), lr=cfg.actor_lr)
            self.optimizers[f"critic/{n}"] = torch.optim.Adam(self.critics[n].parameters(), lr=cfg.critic_lr)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(cfg.seed)
        self.codec = ActionCodec(spec, self.device)
        self.feed = ReplayFeed(spec, cfg, derived, self.codec, self.device)
        self.num_updates = 0
        self.planned_steps = -(-cfg.total_steps // cfg.num_envs) * cfg.num_envs

    # -- the policy ---------------------------------------------------------------------
    def policy(self, name: str, obs: Tensor, actors: nn.ModuleDict | None = None) -> Tensor:
        """The deterministic action of group ``name`` for obs (..., A, D): u (..., A, D) in [-1, 1], or the
        logits (..., A, n) of a discrete group."""
        out = (actors or self.actors)[name](obs)
        return out if self.spec.groups[name].discrete else torch.tanh(out)

    @torch.no_grad()
    def _explore(self, ts: TimeStep, deterministic: bool = False,
                 generator: torch.Generator | None = None) -> dict[str, Tensor]:
        gen, out = generator or self.generator, {}
        for n, g in self.spec.groups.items():
            a = self.policy(n, ts.obs[n])
            if g.discrete:
                out[n] = a.argmax(-1) if deterministic else sample_categorical(a, gen)
            elif deterministic or self.cfg.exploration_noise == 0:
                out[n] = a
            else:
                noise = torch.randn(a.shape, generator=gen, device=a.device, dtype=a.dtype)
                out[n] = (a + self.cfg.exploration_noise * noise).clamp(-1.0, 1.0)
        return out

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
        return {"updates": self.num_updates}

    # -- the update -----------------------------------------------------------------------
    def _inputs(self, name: str, obs: Tensor, own: Tensor, state: Tensor | None, joint: dict[str, Tensor]) -> Tensor:
        if self.centralized:
            return critic_inputs(name, obs, own, state, joint, self.cfg.critic_obs)
        return critic_inputs(name, obs, own)

    def _target_actions(self, obs: dict[str, Tensor]) -> dict[str, Tensor]:
        """mu'_j(o'_j) of every group, encoded for the critics (discrete: a one-hot sample of the target actor)."""
        out = {}
        for n, g in self.spec.groups.items():
            a = self.policy(n, obs[n], self.target_actors)
            out[n] = (nn.functional.one_hot(sample_categorical(a, self.generator), g.action_dim).to(a.dtype)
                      if g.discrete else a)
        return out

    def targets(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """group -> y (B, A), the TD targets of a sampled batch (module docstring)."""
        state1 = batch["state"][:, 1] if self.centralized else None
        obs1 = {n: batch[f"obs/{n}"][:, 1] for n in self.spec.groups}
        joint1 = self._target_actions(obs1)
        out = {}
        for n in self.spec.groups:
            (q,) = self.target_critics[n](self._inputs(n, obs1[n], joint1[n], state1, joint1))
            out[n] = ddpg_target(batch[f"reward/{n}"], batch["terminated"], self.cfg.gamma, q[..., 0])
        return out

    def learn(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """One gradient step of every group's critic and actor on a sampled batch, then the target
        updates. Returns tensors (no sync)."""
        cfg, stats = self.cfg, {}
        state0 = batch["state"][:, 0] if self.centralized else None
        joint0 = self.codec.encode({n: batch[f"action/{n}"] for n in self.spec.groups})
        with torch.no_grad():
            y = self.targets(batch)
        for n, g in self.spec.groups.items():
            obs0 = batch[f"obs/{n}"][:, 0]
            critic = self.critics[n]
            (q,) = critic(self._inputs(n, obs0, joint0[n], state0, joint0))
            critic_loss = ((q[..., 0] - y[n]) ** 2).mean()
            stats[f"critic_grad_norm/{n}"] = clipped_step(self.optimizers[f"critic/{n}"], critic_loss, cfg.grad_clip)

            a = self.policy(n, obs0)
            if g.discrete:
                a = gumbel_softmax(a, cfg.gumbel_temperature, self.generator)
            critic.requires_grad_(False)  # the actor's gradient flows through the critic into its action only
            (q_pi,) = critic(self._inputs(n, obs0, a, state0, joint0))
            critic.requires_grad_(True)
            actor_loss = -q_pi.mean()
            stats[f"actor_grad_norm/{n}"] = clipped_step(self.optimizers[f"actor/{n}"], actor_loss, cfg.grad_clip)
            stats.update({f"critic_loss/{n}": critic_loss.detach(), f"actor_loss/{n}": actor_loss.detach(),
                          f"q/{n}": q.detach().mean(), f"target/{n}": y[n].mean()})
        polyak(self.target_critics, self.critics, cfg.tau)
        polyak(self.target_actors, self.actors, cfg.tau)
        self.num_updates += 1
        return stats

    # -- checkpoints ------------------------------------------------------------------------
    def _modules(self) -> dict[str, nn.Module]:
        return {"actors": self.actors, "critics": self.critics, "target_actors": self.target_actors,
                "target_critics": self.target_critics}

    def weights(self) -> dict[str, Tensor]:
        """Actors, critics and their targets, by name (sharing storage with the live modules)."""
        return module_weights(self._modules())

    def load_weights(self, tensors: dict[str, Tensor]) -> None:
        load_module_weights(self._modules(), tensors, optional=("target_actors", "target_critics"))

    def trainer_state(self) -> dict[str, Any]:
        """Optimizers, the noise/sampling generator, the update count, the rollout's position and the
        replay buffer's counters (its tensors are ``extra_tensors``)."""
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


__all__ = ["DDPGLearner", "ddpg_target"]
