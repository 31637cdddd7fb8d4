"""The actor-critic networks and action distributions of the PPO family.

:class:`GroupActorCritic` is one group's actor and critic (MLP bodies, optional GRU,
optional communication module between the actor's body and head); ``sample_action``
and ``logp_entropy`` are the policy's distributions: categorical over (masked) logits
for discrete actions, a diagonal Gaussian with a learned state-independent
``log_std`` for continuous ones. :mod:`fastmarl.algos.ppo` (IPPO, MAPPO) builds its
learner on them; other on-policy learners can share them.

Shapes: inputs ``(..., A, features)`` with any leading dims (``(E,)`` acting,
``(T, E)`` or ``(T, B)`` in the update); outputs keep them.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from fastmarl.config import PPOConfig
from fastmarl.config.images import downsample_of, frame_scale, frame_shape, uses_cnn
from fastmarl.envs.api import GroupSpec
from fastmarl.nn import AgentGRU, AgentLinear, AgentMLP, RunningMeanStd, agent_id_onehot
from fastmarl.nn.comm import DialComm, DialNoise, DialTrace, make_comm
from fastmarl.nn.encoders import ImageEncoder

MASKED_LOGIT = -1e8  # finite, so masked entries give p = 0 and p * log p = 0, never NaN

Carry = dict[str, tuple[Tensor, Tensor]]  # group -> (actor h, critic h), each (E, A_g, H)


# -- action distributions ---------------------------------------------------------

def _discrete_logp_all(logits: Tensor, mask: Tensor | None) -> Tensor:
    if mask is not None:
        logits = torch.where(mask, logits, MASKED_LOGIT)
    return torch.log_softmax(logits, -1)


def sample_action(out: Tensor, log_std: Tensor | None, mask: Tensor | None, deterministic: bool,
                  generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
    """Actor head output -> (action, log-probability).

    Discrete: ``out`` are logits (..., n); sampling is Gumbel-max with the given
    generator (so runs are reproducible and resumable); deterministic = argmax.
    Continuous: ``out`` is the Gaussian mean (..., D), ``log_std`` (K, D).
    """
    if log_std is None:
        logp_all = _discrete_logp_all(out, mask)
        if deterministic:
            a = logp_all.argmax(-1)
        else:
            u = torch.rand(logp_all.shape, generator=generator, device=out.device, dtype=out.dtype)
            gumbel = -torch.log(-torch.log(u.clamp_min(1e-20)))
            a = (logp_all + gumbel).argmax(-1)
        return a, logp_all.gather(-1, a[..., None])[..., 0]
    if deterministic:
        a = out
    else:
        a = out + log_std.exp() * torch.randn(out.shape, generator=generator, device=out.device, dtype=out.dtype)
    return a, _gaussian_logp(out, log_std, a)


def _gaussian_logp(mean: Tensor, log_std: Tensor, a: Tensor) -> Tensor:
    z = (a - mean) * torch.exp(-log_std)
    return (-0.5 * z * z - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)


def logp_entropy(out: Tensor, log_std: Tensor | None, mask: Tensor | None, actions: Tensor) -> tuple[Tensor, Tensor]:
    """Log-probability of ``actions`` and the entropy of the distribution."""
    if log_std is None:
        logp_all = _discrete_logp_all(out, mask)
        entropy = -(logp_all.exp() * logp_all).sum(-1)
        return logp_all.gather(-1, actions[..., None].long())[..., 0], entropy
    entropy = (0.5 + 0.5 * math.log(2 * math.pi) + log_std).sum(-1).expand(out.shape[:-1])
    return _gaussian_logp(out, log_std, actions), entropy


# -- networks -----------------------------------------------------------------

class GroupActorCritic(nn.Module):
    """Actor and critic of one group: separate MLP (+ GRU) bodies, linear heads.

    Inputs are (..., A, features); ``num_nets`` is 1 (shared) or A (per agent).
    The critic predicts the *normalised* value when value normalisation is on;
    ``value_norm`` holds the running statistics (a buffer, saved with the weights).

    Image observations (``ppo.images``, :func:`fastmarl.config.images.uses_cnn`): one CNN torso
    per group (``encoder``, :class:`~fastmarl.nn.encoders.ImageEncoder`, (..., A, H*W*C) ->
    (..., A, F)) feeds both the actor body and the critic, and learns from both losses. A
    centralised critic then does not read the env's state (a frame, for pistonball: 1.5M values):
    it sees the mean of its group's frame features (plus, with ``critic_obs``, the agent's own), so
    its input is ``F`` or ``2F`` wide whatever the frame size and the number of agents.
    """

    def __init__(self, group: GroupSpec, state_dim: int, cfg: PPOConfig, centralized: bool):
        super().__init__()
        A, O, H = group.num_agents, group.obs_dim, cfg.hidden_size
        K = 1 if cfg.share_params else A
        self.num_agents, self.discrete, self.centralized = A, group.discrete, centralized
        self.use_id = cfg.agent_id and cfg.share_params and A > 1
        self.critic_obs = cfg.critic_obs and centralized
        ids = A if self.use_id else 0
        self.encoder: ImageEncoder | None = None
        if uses_cnn(cfg.images, group):
            im = cfg.images
            self.encoder = ImageEncoder(frame_shape(group), tuple(im.cnn_channels), tuple(im.cnn_kernels),
                                        tuple(im.cnn_strides), downsample_of(im, group), im.cnn_features,
                                        frame_scale(group))
            O = state_dim = im.cnn_features  # the critic's "state" is the group's mean frame feature
        self.reads_state = centralized and self.encoder is None  # the critic reads env.state()
        critic_in = (state_dim + (O if self.critic_obs else 0) if centralized else O) + ids
        self.actor_body = AgentMLP(K, O + ids, H, cfg.num_layers, cfg.activation)
        self.critic_body = AgentMLP(K, critic_in, H, cfg.num_layers, cfg.activation)
        # learned communication: the only path from one actor's input to another's policy
        self.dial = cfg.comm == "dial"
        if self.dial:  # discrete messages, learned through the straight-through estimator (DIAL)
            self.actor_comm = DialComm(self.actor_body.out_features, A, cfg.comm_rounds, K, cfg.dial_vocab_size,
                                       cfg.dial_message_length, cfg.dial_temperature, cfg.dial_flip_prob,
                                       cfg.dial_drop_prob)
        else:
            self.actor_comm = (make_comm(cfg.comm, self.actor_body.out_features, cfg.comm_rounds, K)
                               if cfg.comm != "none" else None)
        self.recurrent = cfg.recurrent
        if cfg.recurrent:
            self.actor_gru = AgentGRU(K, self.actor_body.out_features, H)
            self.critic_gru = AgentGRU(K, self.critic_body.out_features, H)
        feat = H if cfg.recurrent else self.actor_body.out_features
        self.actor_head = AgentLinear(K, feat, group.action_dim, gain=0.01)
        self.critic_head = AgentLinear(K, H if cfg.recurrent else self.critic_body.out_features, 1, gain=1.0)
        if group.discrete:
            self.log_std = None
        else:
            self.log_std = nn.Parameter(torch.full((K, group.action_dim), float(cfg.log_std_init)))
            low, high = group.action_space.low, group.action_space.high
            centre = torch.as_tensor((low + high) / 2, dtype=torch.float32).flatten()
            if torch.isfinite(centre).all():  # start the mean mid-box, so few actions get clipped
                self.actor_head.bias.data[:] = centre
        self.value_norm = RunningMeanStd()

    def actor_parameters(self) -> list[nn.Parameter]:
        return [p for n, p in self.named_parameters() if n.startswith("actor") or n == "log_std"]

    def critic_parameters(self) -> list[nn.Parameter]:
        return [p for n, p in self.named_parameters() if n.startswith("critic")]

    def encoder_parameters(self) -> list[nn.Parameter]:
        """The CNN torso's (shared by actor and critic; empty without image observations)."""
        return list(self.encoder.parameters()) if self.encoder is not None else []

    # inputs
    def _with_id(self, x: Tensor) -> Tensor:
        if not self.use_id:
            return x
        eye = agent_id_onehot(self.num_agents, x)
        return torch.cat([x, eye.expand(*x.shape[:-1], self.num_agents)], -1)

    def actor_input(self, obs: Tensor) -> Tensor:
        """obs (..., A, O) -> (..., A, actor_in); networks are float32 whatever the env dtype
        (``uint8`` frames become floats inside the CNN torso)."""
        if self.encoder is not None:
            return self._with_id(self.encoder(obs))
        return self._with_id(obs.float())

    def inputs(self, obs: Tensor, state: Tensor | None, subsampled: bool = False) -> tuple[Tensor, Tensor]:
        """(actor input, critic input) of the same observations: one CNN pass serves both.
        ``subsampled``: ``obs`` are frames already through ``encoder.subsample`` (..., A, C, h, w)."""
        if self.encoder is None:
            return self.actor_input(obs), self.critic_input(obs, state)
        f = self.encoder.encode(obs) if subsampled else self.encoder(obs)
        return self._with_id(f), self._critic_features(f)

    def _critic_features(self, f: Tensor) -> Tensor:
        """Frame features (..., A, F) -> the critic's input: the group's mean feature (centralised;
        with ``critic_obs`` the agent's own appended) or the agent's own (independent)."""
        if self.centralized:
            team = f.mean(-2, keepdim=True).expand_as(f)
            f = torch.cat([team, f], -1) if self.critic_obs else team
        return self._with_id(f)

    def critic_input(self, obs: Tensor, state: Tensor | None) -> Tensor:
        """obs (..., A, O), state (..., S) -> (..., A, critic_in); with the CNN torso the state is not read."""
        if self.encoder is not None:
            return self._critic_features(self.encoder(obs))
        obs = obs.float()
        if not self.centralized:
            return self._with_id(obs)
        x = state.float()[..., None, :].expand(*obs.shape[:-1], state.shape[-1])
        if self.critic_obs:
            x = torch.cat([x, obs], -1)
        return self._with_id(x)

    def communicate(self, f: Tensor, comm_noise: DialNoise | None = None, deterministic: bool = False,
                    generator: torch.Generator | None = None, message_transform=None,
                    comm_mask: Tensor | None = None) -> tuple[Tensor, DialTrace | None]:
        """The actors' features after communication, (..., A, H) -> (..., A, H), and
        for ``dial`` the :class:`~fastmarl.nn.comm.DialTrace` of the messages said.

        ``comm_mask`` (..., A, A) bool: receiver i hears sender j (None: all-to-all).

        dial only: ``comm_noise`` replays stored message samples (the update
        replays the rollout's), ``deterministic`` sends argmax messages,
        ``message_transform`` maps the sent one-hots (..., A, L, V) before delivery."""
        if self.actor_comm is None:
            return f, None
        if self.dial:
            return self.actor_comm(f, comm_mask, noise=comm_noise, deterministic=deterministic,
                                   generator=generator, message_transform=message_transform)
        if message_transform is not None:
            raise ValueError("message_transform applies to discrete (ppo.comm='dial') messages only")
        return self.actor_comm(f, comm_mask), None

    # one step (rollouts, evaluation): x (E, A, in), h (E, A, H), starts (E,)
    def actor_step(self, x: Tensor, h: Tensor | None, starts: Tensor | None, deterministic: bool = False,
                   generator: torch.Generator | None = None, comm_noise: DialNoise | None = None,
                   message_transform=None, return_trace: bool = False, comm_mask: Tensor | None = None):
        """-> (head output, new actor h) [, DialTrace or None with ``return_trace``];
        ``comm_mask`` (E, A, A) and the other arguments as in :meth:`communicate`."""
        f, trace = self.communicate(self.actor_body(x), comm_noise, deterministic, generator, message_transform,
                                    comm_mask)
        if self.recurrent:
            h = self.actor_gru.step(f, torch.where(starts[:, None, None], 0.0, h))
            f = h
        return (self.actor_head(f), h, trace) if return_trace else (self.actor_head(f), h)

    def critic_step(self, x: Tensor, h: Tensor | None, starts: Tensor | None) -> tuple[Tensor, Tensor | None]:
        f = self.critic_body(x)
        if self.recurrent:
            h = self.critic_gru.step(f, torch.where(starts[:, None, None], 0.0, h))
            f = h
        return self.critic_head(f)[..., 0], h

    # whole sequences (training): x (T, B, A, in), h0 (B, A, H), starts (T, B); or x (N, A, in) feed-forward
    def actor_seq(self, x: Tensor, h0: Tensor | None, starts: Tensor | None,
                  comm_noise: DialNoise | None = None, comm_mask: Tensor | None = None) -> Tensor:
        """``comm_noise`` (dial): the stored message samples of these steps, (T, B, ...) or (N, ...);
        ``comm_mask``: the stored receive masks, (T, B, A, A) or (N, A, A)."""
        f, _ = self.communicate(self.actor_body(x), comm_noise, comm_mask=comm_mask)
        if self.recurrent:
            f, _ = self.actor_gru.unroll(f, h0, starts)
        return self.actor_head(f)

    def critic_seq(self, x: Tensor, h0: Tensor | None, starts: Tensor | None) -> Tensor:
        f = self.critic_body(x)
        if self.recurrent:
            f, _ = self.critic_gru.unroll(f, h0, starts)
        return self.critic_head(f)[..., 0]
