"""What the off-policy actor-critics share: MASAC/ISAC (:mod:`fastmarl.algos.sac`) and
MADDPG/IDDPG (:mod:`fastmarl.algos.ddpg`) differ in their losses only.

- **Actions in the networks.** A box action is ``u`` in ``[-1, 1]^D`` (a tanh's
  range); the env gets ``low + (u + 1) / 2 * (high - low)`` (:meth:`ActionCodec.to_env`)
  and the replay buffer stores ``u``. A discrete action is an index; critics see
  its one-hot vector. ``enc`` below is ``D`` (box) or ``n`` (discrete).
- **Networks.** :class:`GroupMLP`: a ReLU MLP per agent of a group, shared or one
  per agent (batched, :mod:`fastmarl.nn.layers`), with optional one-hot agent ids:
  ``(..., A, F) -> (..., A, out)``. A group's critics are ``num_q`` of them.
- **What a critic sees** (:func:`critic_inputs`), per agent ``i`` of group ``g``:
  centralised (MASAC, MADDPG): the global state ``(..., S)`` (and the agent's own
  observation with ``critic_obs``) and the joint action of every agent of every
  group, ``(..., J)`` with ``J = sum_h A_h * enc_h``, where agent ``i``'s own slot
  holds ``own[i]`` (the action being valued) or zeros (discrete SAC, whose critic
  outputs one value per own action); independent (ISAC, IDDPG): its own
  observation and, unless zeroed, its own action.
- **Experience.** :class:`ReplayFeed` steps the env, stores transitions in the one
  episode replay buffer (:class:`~fastmarl.algos.replay.EpisodeBuffer`, sampled by
  transition), counts the update credit and saves all of it in checkpoints.

Replay fields, per group ``g`` (``B`` sampled transitions):

=================  =====================  ======================================
field              shape                  meaning
=================  =====================  ======================================
obs/g              (B, 2, A, D)           observation at t and after the step
state              (B, 2, S)              global state at t and after (centralised)
action/g           (B, A, enc) / (B, A)   u in [-1, 1] (box) / index (discrete)
reward/g           (B, A)                 rewards received
terminated         (B,)                   the episode terminated at t (no bootstrap)
=================  =====================  ======================================
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor, nn

from fastmarl.algos.learner import check_finite
from fastmarl.algos.replay import EpisodeBuffer
from fastmarl.config.offpolicy import OffPolicyConfig, OffPolicyDerived
from fastmarl.envs.api import EnvSpec, GroupSpec, TimeStep
from fastmarl.nn.layers import AgentLinear, AgentMLP, agent_id_onehot

REPLAY_FILE = "replay.safetensors"
LOSS_KEYS = ("critic_loss", "actor_loss", "alpha_loss")  # metrics checked for NaN / inf every update


# -- actions ----------------------------------------------------------------------------

class ActionCodec:
    """Network-space actions <-> env actions and critic encodings, per group."""

    def __init__(self, spec: EnvSpec, device: torch.device):
        self.spec = spec
        self.box: dict[str, tuple[Tensor, Tensor]] = {}
        for n, g in spec.groups.items():
            if not g.discrete:
                low = torch.as_tensor(g.action_space.low, dtype=torch.float32, device=device).flatten()
                high = torch.as_tensor(g.action_space.high, dtype=torch.float32, device=device).flatten()
                self.box[n] = (low, high)

    def to_env(self, actions: dict[str, Tensor]) -> dict[str, Tensor]:
        """u in [-1, 1] (box groups) -> the env's box; discrete indices unchanged."""
        out = {}
        for n, a in actions.items():
            if n in self.box:
                low, high = self.box[n]
                a = torch.minimum(torch.maximum(low + (a + 1.0) * 0.5 * (high - low), low), high)
            out[n] = a
        return out

    def encode(self, actions: dict[str, Tensor]) -> dict[str, Tensor]:
        """What critics see: u (..., A, D) as is, indices (..., A) as one-hot (..., A, n) floats."""
        return {n: nn.functional.one_hot(a.long(), self.spec.groups[n].action_dim).float()
                if self.spec.groups[n].discrete else a for n, a in actions.items()}

    def random(self, num_envs: int, generator: torch.Generator, device: torch.device) -> dict[str, Tensor]:
        """Uniform random actions, network space: u ~ U[-1, 1]^D, indices ~ U{0..n-1}."""
        out = {}
        for n, g in self.spec.groups.items():
            if g.discrete:
                out[n] = torch.randint(0, g.action_dim, (num_envs, g.num_agents), generator=generator, device=device)
            else:
                out[n] = torch.rand(num_envs, g.num_agents, g.action_dim, generator=generator, device=device) * 2 - 1
        return out


def gumbel(shape: torch.Size | tuple[int, ...], generator: torch.Generator, device: torch.device) -> Tensor:
    """Standard Gumbel noise ``-log(-log U)``."""
    u = torch.rand(shape, generator=generator, device=device)
    return -torch.log(-torch.log(u.clamp_min(1e-20)))


def sample_categorical(logits: Tensor, generator: torch.Generator) -> Tensor:
    """One index per row of ``logits`` (..., n), drawn from softmax(logits) (Gumbel-max): (...)."""
    return (logits + gumbel(logits.shape, generator, logits.device)).argmax(-1)


def gumbel_softmax(logits: Tensor, temperature: float, generator: torch.Generator) -> Tensor:
    """Straight-through Gumbel-softmax (Jang et al., 2017): a one-hot sample (..., n) in the forward
    pass, the gradient of softmax((logits + G) / temperature) in the backward pass."""
    soft = torch.softmax((logits + gumbel(logits.shape, generator, logits.device)) / temperature, -1)
    hard = nn.functional.one_hot(soft.argmax(-1), soft.shape[-1]).to(soft.dtype)
    return hard + soft - soft.detach()


# -- networks ---------------------------------------------------------------------------

class GroupMLP(nn.Module):
    """``num_layers`` ReLU layers and a linear head, per agent: (..., A, in_dim) -> (..., A, out_dim);
    one set of weights for the group (``share``; with one-hot agent ids if ``agent_id``) or one per agent."""

    def __init__(self, num_agents: int, in_dim: int, out_dim: int, cfg: OffPolicyConfig, head_gain: float = 1.0):
        super().__init__()
        self.num_agents = num_agents
        self.use_id = cfg.agent_id and cfg.share_params and num_agents > 1
        K = 1 if cfg.share_params else num_agents
        self.body = AgentMLP(K, in_dim + (num_agents if self.use_id else 0), cfg.hidden_size, cfg.num_layers, "relu")
        self.head = AgentLinear(K, self.body.out_features, out_dim, gain=head_gain)

    def forward(self, x: Tensor) -> Tensor:
        if self.use_id:
            eye = agent_id_onehot(self.num_agents, x)
            x = torch.cat([x, eye.expand(*x.shape[:-1], self.num_agents)], -1)
        return self.head(self.body(x))


class Critics(nn.Module):
    """``num_q`` critics of one group (twin critics: 2): (..., A, F) -> a tuple of (..., A, out_dim)."""

    def __init__(self, num_q: int, num_agents: int, in_dim: int, out_dim: int, cfg: OffPolicyConfig):
        super().__init__()
        self.nets = nn.ModuleList([GroupMLP(num_agents, in_dim, out_dim, cfg) for _ in range(num_q)])

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        return tuple(net(x) for net in self.nets)


def critic_input_dim(spec: EnvSpec, group: GroupSpec, centralized: bool, critic_obs: bool, own_action: bool) -> int:
    """Width of :func:`critic_inputs` for ``group`` (``own_action``: independent critics see their action)."""
    if centralized:
        joint = sum(g.num_agents * g.action_dim for g in spec.groups.values())
        return spec.state_dim + (group.obs_dim if critic_obs else 0) + joint
    return group.obs_dim + (group.action_dim if own_action else 0)


def critic_inputs(group: str, obs: Tensor, own: Tensor | None, state: Tensor | None = None,
                  joint: dict[str, Tensor] | None = None, critic_obs: bool = True) -> Tensor:
    """What the critics of ``group`` see, per agent (see the module docstring).

    Args:
        obs: (..., A, D) the group's observations.
        own: (..., A, enc) the action each agent's critic values in its own slot, or None (zeros;
            independent critics: no action at all).
        state: (..., S) global state, for centralised critics (None: independent).
        joint: group -> (..., A_h, enc_h) every agent's encoded action (centralised critics).
        critic_obs: centralised critics also see the agent's own observation.

    Returns:
        (..., A, F) with F = :func:`critic_input_dim`.
    """
    A = obs.shape[-2]
    if state is None:
        return obs if own is None else torch.cat([obs, own], -1)
    parts = [state.unsqueeze(-2).expand(*state.shape[:-1], A, state.shape[-1])]
    if critic_obs:
        parts.append(obs)
    for name, a in joint.items():
        if name == group:  # agent i sees the others' actions and, in its own slot, own[i]
            d = a.shape[-1]
            others = a.unsqueeze(-3).expand(*a.shape[:-2], A, A, d)  # (..., i, j, d)
            fill = own.unsqueeze(-2) if own is not None else torch.zeros_like(a).unsqueeze(-2)
            eye = torch.eye(A, dtype=torch.bool, device=a.device)[..., None]
            parts.append(torch.where(eye, fill, others).flatten(-2))
        else:
            flat = a.flatten(-2)
            parts.append(flat.unsqueeze(-2).expand(*flat.shape[:-1], A, flat.shape[-1]))
    return torch.cat(parts, -1)


@torch.no_grad()
def polyak(target: nn.Module, online: nn.Module, tau: float) -> None:
    """target <- tau * online + (1 - tau) * target, every parameter."""
    for t, o in zip(target.parameters(), online.parameters()):
        t.lerp_(o, tau)


def clipped_step(opt: torch.optim.Optimizer, loss: Tensor, clip: float) -> Tensor:
    """zero_grad, backward, clip the gradient norm of ``opt``'s parameters, step; returns the norm."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    norm = nn.utils.clip_grad_norm_([p for pg in opt.param_groups for p in pg["params"]], clip)
    opt.step()
    return norm


# -- experience ---------------------------------------------------------------------------

class ReplayFeed:
    """One learner's rollout position (the TimeStep and state to act on next, env steps
    taken, the update credit) and its replay buffer, with their checkpoint state."""

    def __init__(self, spec: EnvSpec, cfg: OffPolicyConfig, derived: OffPolicyDerived, codec: ActionCodec,
                 device: torch.device):
        self.spec, self.cfg, self.derived, self.codec, self.device = spec, cfg, derived, codec, device
        self.use_state = derived.centralized
        self.buffer: EpisodeBuffer | None = None
        self.ts: TimeStep | None = None
        self.state: Tensor | None = None
        self.env_steps, self.credit = 0, 0.0
        self._counters: dict[str, int] | None = None

    def fields(self) -> tuple[dict, dict]:
        """(step_fields, obs_fields) of the buffer (the module docstring's table)."""
        step, obs = {"terminated": ((), torch.bool)}, {}
        for n, g in self.spec.groups.items():
            obs[f"obs/{n}"] = ((g.num_agents, g.obs_dim), torch.float32)
            step[f"action/{n}"] = (((g.num_agents,), torch.long) if g.discrete
                                   else ((g.num_agents, g.action_dim), torch.float32))
            step[f"reward/{n}"] = ((g.num_agents,), torch.float32)
        if self.use_state:
            obs["state"] = ((self.spec.state_dim,), torch.float32)
        return step, obs

    def ensure_buffer(self, num_envs: int) -> EpisodeBuffer:
        if self.buffer is None:
            self.buffer = EpisodeBuffer(self.cfg.buffer_size, self.derived.max_seq_len, num_envs, *self.fields(),
                                        self.device)
        return self.buffer

    def begin(self, env, seed: int) -> None:
        self.ensure_buffer(env.num_envs).reset_envs()
        self.ts = env.reset(seed=seed)
        self.state = env.state() if self.use_state else None

    @property
    def warming_up(self) -> bool:
        """Before ``learning_starts`` env steps: act uniformly at random."""
        return self.env_steps < self.cfg.learning_starts

    def step(self, env, tracker, actions: dict[str, Tensor], env_actions: dict[str, Tensor]) -> int:
        """Step ``env`` with ``env_actions``, store the transition (``actions`` in network space)."""
        ts = self.ts
        next_ts = env.step(env_actions)
        tracker(next_ts)
        done = next_ts.done
        obs = {f"obs/{n}": ts.obs[n] for n in self.spec.groups}
        nxt = {f"obs/{n}": next_ts.final_obs[n] for n in self.spec.groups}
        step: dict[str, Tensor] = {"terminated": next_ts.terminated}
        for n in self.spec.groups:
            step[f"action/{n}"] = actions[n]
            step[f"reward/{n}"] = next_ts.reward[n]
        next_state = None
        if self.use_state:
            next_state = env.state()
            obs["state"] = self.state
            nxt["state"] = next_ts.final_state if next_ts.final_state is not None else next_state
        self.buffer.add(obs, step, nxt, done)
        self.ts, self.state = next_ts, next_state
        E = env.num_envs
        self.env_steps += E
        self.credit += E / self.cfg.update_interval
        return E

    def collect(self, env, tracker, explore: Callable[[TimeStep], dict[str, Tensor]],
                generator: torch.Generator) -> int:
        """One step of every env: uniform random actions while warming up, else ``explore(ts)``
        (network-space actions group -> (E, A) indices or (E, A, D) u); stored in the buffer."""
        actions = self.codec.random(env.num_envs, generator, self.device) if self.warming_up else explore(self.ts)
        return self.step(env, tracker, actions, self.codec.to_env(actions))

    def update(self, learn: Callable[[dict[str, Tensor]], dict[str, Tensor]],
               generator: torch.Generator) -> dict[str, list[Tensor]]:
        """``learn(batch)`` once per gradient step owed, each on a fresh sample; every metric is the list
        of its values. A NaN or infinite loss raises NonFiniteLoss naming it and the env step."""
        out: dict[str, list[Tensor]] = {}
        for _ in range(self.updates_due()):
            for k, v in learn(self.sample(generator)).items():
                out.setdefault(k, []).append(v)
        check_finite(out, self.env_steps, LOSS_KEYS)
        return out

    def updates_due(self) -> int:
        """Gradient steps owed now (none while warming up: no backlog from before learning starts)."""
        if self.warming_up or len(self.buffer) == 0:
            self.credit = min(self.credit, 1.0)
            return 0
        n = int(self.credit)
        self.credit -= n
        return n

    def sample(self, generator: torch.Generator) -> dict[str, Tensor]:
        return self.buffer.sample_steps(self.cfg.batch_size, generator)

    # -- checkpoints ------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        ts = self.ts
        return {"ts": {"obs": ts.obs, "terminated": ts.terminated, "truncated": ts.truncated, "alive": ts.alive},
                "state": self.state, "env_steps": self.env_steps, "credit": self.credit,
                "replay": self.buffer.to_tensors()[1]}

    def load_state_dict(self, s: dict[str, Any]) -> None:
        t = s["ts"]
        # reward/final_obs of the step that produced ts are never read (step() reads the next step's)
        self.ts = TimeStep(obs=t["obs"], reward={}, terminated=t["terminated"], truncated=t["truncated"],
                           final_obs=t["obs"], alive=t["alive"])
        self.state = s["state"]
        self.env_steps, self.credit = int(s["env_steps"]), float(s["credit"])
        self._counters = s["replay"]
        self.ensure_buffer(self.ts.terminated.shape[0])

    def extra_tensors(self) -> dict[str, dict[str, Tensor]]:
        if not self.cfg.checkpoint_replay or self.buffer is None:
            return {}
        return {REPLAY_FILE: self.buffer.to_tensors()[0]}

    def load_extra_tensors(self, read) -> None:
        replay = read(REPLAY_FILE, "the replay buffer: the run was saved with checkpoint_replay=False")
        self.buffer.load_tensors(replay, self._counters)  # ValueError: does not fit this config


def module_weights(modules: dict[str, nn.Module]) -> dict[str, Tensor]:
    """prefix -> module  ->  "prefix.param" -> tensor (sharing storage with the live modules)."""
    return {f"{p}.{k}": v.detach() for p, m in modules.items() for k, v in m.state_dict().items()}


def load_module_weights(modules: dict[str, nn.Module], tensors: dict[str, Tensor],
                        optional: tuple[str, ...] = ()) -> None:
    """Inverse of :func:`module_weights`; the ``optional`` prefixes may be absent (e.g. targets)."""
    for p, m in modules.items():
        sd = {k[len(p) + 1:]: v for k, v in tensors.items() if k.startswith(p + ".")}
        if not sd and p in optional:
            continue
        m.load_state_dict(sd)


__all__ = ["ActionCodec", "Critics", "GroupMLP", "gumbel", "gumbel_softmax", "sample_categorical", "LOSS_KEYS", "REPLAY_FILE", "ReplayFeed", "clipped_step",
           "critic_input_dim", "critic_inputs", "load_module_weights", "module_weights", "polyak"]
