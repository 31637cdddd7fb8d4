"""Learned communication between agents: CommNet, TarMAC and a discrete message channel.

Every module works on a team's features ``h`` shaped ``(..., A, H)`` (any leading
batch dims such as ``(E,)`` or ``(T, E)``, then the agent axis) and an optional
*communication mask*:

    mask (..., A, A) bool, broadcastable to h's leading dims;
    mask[..., i, j] is True when receiver i hears sender j (the diagonal is "self").

``None`` means everyone hears everyone. :mod:`fastmarl.envs.comm` builds masks
(``all_to_all_mask``; ``range_mask``: senders within a radius), says who can
influence whom after several rounds (``reachability``) and codes discrete messages:
envs need those too, so they live in the env layer.

Execution stays decentralized *by construction*: every layer is applied per agent
(:class:`~fastmarl.nn.layers.AgentLinear`), and the only operation that mixes
agents is a matrix product with weights that are exactly zero where the mask is
False. So agent i's output depends on agent j's input only through what j sent
and i heard (after R rounds: through a path of at most R hops of the mask).

- :class:`CommNet` (Sukhbaatar et al., 2016): each round, an agent's state is
  updated from itself and the *mean* of the states of the other agents it hears
  (zeros if it hears nobody), with a skip connection:
  ``h <- h + tanh(W_r [h, c])``, ``c_i = mean_{j != i, mask[i, j]} h_j``.
- :class:`TarMAC` (Das et al., 2019): each agent emits a signature (key), a query
  and a value; a receiver attends over the senders it hears with scaled
  dot-product attention (softmax over senders) and updates its state from the
  attended value, ``h <- h + tanh(W_r [h, c])``. ``targeted=False`` gives the
  broadcast baseline (uniform weights over heard senders). Attention weights
  ``(..., R, A, A)`` come back for analysis with ``return_attention=True``.
- :class:`DiscreteChannel`: an agent emits a message of ``message_length`` digits
  of ``vocab_size`` values (B bits: ``vocab_size=2, message_length=B``; one of K
  symbols: ``vocab_size=K, message_length=1``), learned differentiably
  (straight-through Gumbel-softmax with a temperature, DIAL-like: the listeners'
  losses train the speaker through the channel). :meth:`DiscreteChannel.deliver`
  hands each agent the messages of the others it hears, through an optionally
  unreliable link (per-link digit flips with probability ``flip_prob``, per-link
  drops with probability ``drop_prob``). Messages learned as extra actions by a
  policy gradient, delivered at the next step, are an env wrapper instead
  (:class:`fastmarl.envs.comm_wrappers.BroadcastChannel`).
- :class:`DialComm`: the channel as a layer between an actor's body and head,
  ``(..., A, H) -> (..., A, H)`` like CommNet, learned DIAL-style (straight-through
  Gumbel-softmax, same-step delivery, ``rounds`` messages per step); it returns
  the noise it drew so that PPO can replay a rollout's messages exactly.

Messages are one-hot tensors ``(..., A, L, V)`` (L = message_length, V =
vocab_size); an all-zero message means "nothing received" (out of range,
dropped, or ablated), which the receiver can tell apart from any symbol.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from fastmarl.envs.comm import message_index
from fastmarl.envs.mpe.geometry import others_index
from fastmarl.nn.layers import ACTIVATIONS, AgentLinear

__all__ = [
    "masked_softmax", "CommNet", "TarMAC", "make_comm",
    "gumbel_softmax_st", "Message", "DiscreteChannel", "sample_gumbel",
    "LinkNoise", "DialNoise", "DialTrace", "DialComm",
]


# -- mixing under a mask (the masks: fastmarl.envs.comm) ----------------------------

def _mean_weights(mask: Tensor | None, A: int, like: Tensor) -> Tensor:
    """(..., A, A) row-stochastic weights of the mean over the *other* agents heard
    (rows of zeros for an agent that hears nobody)."""
    offdiag = ~torch.eye(A, dtype=torch.bool, device=like.device)
    m = offdiag if mask is None else mask & offdiag
    w = m.to(like.dtype)
    return w / w.sum(-1, keepdim=True).clamp_min(1.0)


def masked_softmax(scores: Tensor, mask: Tensor | None) -> Tensor:
    """Softmax over the last axis (senders) restricted to ``mask``; a row with no
    True entry gives all zeros. Masked entries get exactly zero weight and zero
    gradient, which is what makes the decentralization exact."""
    if mask is None:
        return torch.softmax(scores, -1)
    scores = torch.where(mask, scores, torch.finfo(scores.dtype).min)
    return torch.softmax(scores, -1) * mask.to(scores.dtype)


# -- continuous communication ------------------------------------------------------

class CommNet(nn.Module):
    """CommNet: ``rounds`` rounds of mean-communication, ``(..., A, H) -> (..., A, H)``.

    Round r: ``c_i = mean of h_j over the senders j != i that i hears`` (zeros if
    none), ``h_i <- h_i + act(W_r [h_i, c_i] + b_r)``. With ``num_nets=1`` (shared
    weights) the module is permutation-equivariant over agents.

    Args:
        hidden: H, the feature size (input = output).
        rounds: communication rounds per forward (information travels this many hops).
        num_nets: 1 (weights shared by the agents) or A (one set per agent).
        activation: "tanh" or "relu".
    """

    def __init__(self, hidden: int, rounds: int = 2, num_nets: int = 1, activation: str = "tanh"):
        super().__init__()
        if rounds < 1:
            raise ValueError(f"CommNet needs rounds >= 1, got {rounds}")
        self.hidden, self.rounds = hidden, rounds
        self.layers = nn.ModuleList(AgentLinear(num_nets, 2 * hidden, hidden, gain=1.0) for _ in range(rounds))
        self.act = ACTIVATIONS[activation]()

    def forward(self, h: Tensor, mask: Tensor | None = None) -> Tensor:
        """h (..., A, H), mask (..., A, A) bool or None -> (..., A, H)."""
        w = _mean_weights(mask, h.shape[-2], h)
        for layer in self.layers:
            c = w @ h  # (..., A, A) @ (..., A, H): the only op that mixes agents
            h = h + self.act(layer(torch.cat([h, c], -1)))
        return h


class TarMAC(nn.Module):
    """TarMAC: targeted multi-agent communication by attention, ``(..., A, H) -> (..., A, H)``.

    Round r: every agent emits a query ``q``, a signature ``k`` (both ``key_dim``)
    and a value ``v`` (``value_dim``); receiver i weights sender j by
    ``softmax_j(q_i . k_j / sqrt(key_dim))`` over the senders it hears (uniform
    weights when ``targeted=False``), aggregates ``c_i = sum_j a_ij v_j`` and
    updates ``h_i <- h_i + tanh(W_r [h_i, c_i] + b_r)``. Whether an agent attends
    to itself is the mask's diagonal (``None``: everyone, self included).

    ``forward(h, mask, return_attention=True)`` also returns the weights
    ``(..., R, A, A)`` (round, receiver, sender); zero rows: heard nobody.
    """

    def __init__(self, hidden: int, key_dim: int = 16, value_dim: int | None = None, rounds: int = 1,
                 targeted: bool = True, num_nets: int = 1):
        super().__init__()
        if rounds < 1:
            raise ValueError(f"TarMAC needs rounds >= 1, got {rounds}")
        self.hidden, self.key_dim, self.rounds, self.targeted = hidden, key_dim, rounds, targeted
        self.value_dim = value_dim = hidden if value_dim is None else value_dim
        out = 2 * key_dim + value_dim if targeted else value_dim
        self.emit = nn.ModuleList(AgentLinear(num_nets, hidden, out, gain=1.0) for _ in range(rounds))
        self.update = nn.ModuleList(AgentLinear(num_nets, hidden + value_dim, hidden, gain=1.0)
                                    for _ in range(rounds))

    def forward(self, h: Tensor, mask: Tensor | None = None,
                return_attention: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """h (..., A, H), mask (..., A, A) bool or None -> h' (..., A, H)
        [, attention (..., R, A, A)]."""
        A = h.shape[-2]
        attns = []
        for emit, update in zip(self.emit, self.update):
            e = emit(h)
            if self.targeted:
                q, k, v = e.split([self.key_dim, self.key_dim, self.value_dim], -1)
                scores = q @ k.transpose(-1, -2) * (1.0 / math.sqrt(self.key_dim))  # (..., A recv, A send)
            else:
                v = e
                scores = h.new_zeros(*h.shape[:-2], A, A)
            attn = masked_softmax(scores, mask)
            c = attn @ v
            h = h + torch.tanh(update(torch.cat([h, c], -1)))
            attns.append(attn)
        if return_attention:
            return h, torch.stack(attns, -3)
        return h


def make_comm(kind: Literal["commnet", "tarmac", "tarmac_broadcast"], hidden: int, rounds: int = 1,
              num_nets: int = 1) -> nn.Module:
    """The communication module named by a config string: ``(..., A, H) -> (..., A, H)``."""
    if kind == "commnet":
        return CommNet(hidden, rounds=rounds, num_nets=num_nets)
    if kind in ("tarmac", "tarmac_broadcast"):
        return TarMAC(hidden, rounds=rounds, num_nets=num_nets, targeted=kind == "tarmac")
    raise ValueError(f"unknown communication module {kind!r}; choose 'commnet', 'tarmac' or 'tarmac_broadcast'")


# -- discrete messages ------------------------------------------------------------

def sample_gumbel(shape: tuple[int, ...] | torch.Size, generator: torch.Generator | None = None,
                  device: torch.device | str | None = None, dtype: torch.dtype = torch.float32) -> Tensor:
    """Standard Gumbel(0, 1) noise shaped ``shape``."""
    u = torch.rand(shape, generator=generator, device=device, dtype=dtype)
    return -torch.log((-torch.log(u.clamp_min(1e-20))).clamp_min(1e-20))


def gumbel_softmax_st(logits: Tensor, temperature: float = 1.0, generator: torch.Generator | None = None,
                      gumbel: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Straight-through Gumbel-softmax over the last axis: ``(one_hot, index)``.

    The forward value is the one-hot of ``argmax(logits + g)`` (g ~ Gumbel(0, 1)),
    a true discrete sample; the gradient is that of the relaxed sample
    ``softmax((logits + g) / temperature)`` (Jang et al., 2017; Maddison et al., 2017).
    ``gumbel`` (shaped like ``logits``) supplies g instead of drawing it: PPO
    replays a rollout's message samples under updated weights this way.
    """
    g = sample_gumbel(logits.shape, generator, logits.device, logits.dtype) if gumbel is None else gumbel
    y = logits + g
    soft = torch.softmax(y / temperature, -1)
    index = y.argmax(-1)
    hard = nn.functional.one_hot(index, logits.shape[-1]).to(logits.dtype)
    return hard + (soft - soft.detach()), index  # (soft - soft) is exactly 0: the forward value is exactly one-hot


@dataclass
class LinkNoise:
    """One draw of a channel's link noise for a delivery to ``(..., A)`` receivers.

    Attributes:
        alive: (..., A, A-1) bool, False where the link dropped the message; None: no drops.
        shift: (..., A, A-1, L) long in [0, V), the value shift of each digit on
            each link (0: arrived intact); None: no flips.
    """

    alive: Tensor | None
    shift: Tensor | None


@dataclass
class Message:
    """What :class:`DiscreteChannel` emits for every agent (leading dims ``...``, agents ``A``).

    Attributes:
        onehot: (..., A, L, V) float, a straight-through sample (forward: exactly
            one-hot, backward: the relaxed sample's gradient).
        digits: (..., A, L) long, the symbol of each digit.
        index: (..., A) long in [0, V^L), the whole message as one integer.
        logits: (..., A, L, V).
    """

    onehot: Tensor
    digits: Tensor
    index: Tensor
    logits: Tensor


class DiscreteChannel(nn.Module):
    """A learned discrete message per agent and its (unreliable) delivery.

    Args:
        in_features: size of the per-agent features the message is computed from.
        vocab_size: V, values per digit (2: bits).
        message_length: L, digits per message (B bits: V=2, L=B; K symbols: V=K, L=1).
        temperature: Gumbel-softmax temperature of the straight-through gradient.
        flip_prob: per link and digit, the probability that the receiver gets a
            uniformly random *other* value (a symmetric noisy channel; for bits, a flip).
        drop_prob: per link, the probability that the message is lost (the
            receiver gets zeros, "nothing heard").
        num_nets: 1 (shared message head) or A (one per agent).
    """

    def __init__(self, in_features: int, vocab_size: int = 2, message_length: int = 1, temperature: float = 1.0,
                 flip_prob: float = 0.0, drop_prob: float = 0.0, num_nets: int = 1):
        super().__init__()
        if vocab_size < 2 or message_length < 1:
            raise ValueError(f"a message needs vocab_size >= 2 and message_length >= 1, got {vocab_size}, "
                             f"{message_length}")
        for name, p in (("flip_prob", flip_prob), ("drop_prob", drop_prob)):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} is a probability in [0, 1], got {p}")
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.vocab_size, self.message_length = vocab_size, message_length
        self.temperature, self.flip_prob, self.drop_prob = float(temperature), float(flip_prob), float(drop_prob)
        self.head = AgentLinear(num_nets, in_features, message_length * vocab_size, gain=0.01)

    @property
    def num_messages(self) -> int:
        """V^L distinct messages."""
        return self.vocab_size ** self.message_length

    @property
    def message_dim(self) -> int:
        """L * V floats: one message as a flattened one-hot."""
        return self.message_length * self.vocab_size

    def logits(self, h: Tensor) -> Tensor:
        """h (..., A, in) -> (..., A, L, V)."""
        return self.head(h).unflatten(-1, (self.message_length, self.vocab_size))

    def forward(self, h: Tensor, deterministic: bool = False, generator: torch.Generator | None = None,
                gumbel: Tensor | None = None) -> Message:
        """Emit one message per agent from its own features h (..., A, in).
        ``gumbel`` (..., A, L, V): the Gumbel noise of the sample (default: drawn
        from ``generator``), e.g. a stored sample to replay."""
        logits = self.logits(h)
        if deterministic:
            digits = logits.argmax(-1)
            onehot = nn.functional.one_hot(digits, self.vocab_size).to(logits.dtype)
        else:
            onehot, digits = gumbel_softmax_st(logits, self.temperature, generator, gumbel)
        return Message(onehot, digits, message_index(digits, self.vocab_size), logits)

    def received_dim(self, num_agents: int) -> int:
        """Features :meth:`deliver` gives each receiver: (A - 1) messages of L * V."""
        return (num_agents - 1) * self.message_dim

    def sample_link_noise(self, batch: tuple[int, ...] | torch.Size, num_agents: int,
                          generator: torch.Generator | None = None,
                          device: torch.device | str | None = None) -> LinkNoise:
        """Draw the link noise of one delivery to ``(*batch, A)`` receivers (see :class:`LinkNoise`)."""
        links = (*batch, num_agents, num_agents - 1)
        alive = shift = None
        if self.drop_prob > 0:
            alive = torch.rand(links, generator=generator, device=device) >= self.drop_prob
        if self.flip_prob > 0:
            flip = torch.rand((*links, self.message_length), generator=generator, device=device) < self.flip_prob
            shift = torch.randint(1, self.vocab_size, flip.shape, generator=generator, device=device) * flip
        return LinkNoise(alive, shift)

    def deliver(self, onehot: Tensor, mask: Tensor | None = None, generator: torch.Generator | None = None,
                noisy: bool = True, link_noise: LinkNoise | None = None) -> Tensor:
        """Hand every receiver the messages of the other agents.

        onehot (..., A, L, V) -> received (..., A, (A - 1) * L * V): receiver i gets
        the messages of the senders j != i in increasing order of j, each flattened;
        zeros where i does not hear j (mask False) or the link dropped it. With
        ``noisy`` (default) the link noise (``flip_prob``, ``drop_prob``) is drawn
        independently per (receiver, sender) link, or taken from ``link_noise``
        (a stored draw, :meth:`sample_link_noise`). Flips permute the one-hot
        entries, so a straight-through gradient still reaches the speaker.
        """
        A, L, V = onehot.shape[-3:]
        others = _others(A, onehot.device)  # (A, A-1)
        x = onehot[..., others, :, :]  # (..., A recv, A-1 senders, L, V)
        keep = None
        if mask is not None:
            mask = torch.broadcast_to(mask, (*onehot.shape[:-3], A, A))
            keep = mask.gather(-1, others.expand(*mask.shape[:-2], A, A - 1))
        if noisy and link_noise is None:
            link_noise = self.sample_link_noise(onehot.shape[:-3], A, generator, x.device)
        if noisy and link_noise.alive is not None:
            keep = link_noise.alive if keep is None else keep & link_noise.alive
        if noisy and link_noise.shift is not None:
            shift = link_noise.shift
            # noisy[v] = x[(v - shift) mod V]: the one-hot moves by `shift` (a permutation, so differentiable)
            idx = (torch.arange(V, device=x.device) - shift[..., None]) % V
            x = x.gather(-1, idx)
        if keep is not None:
            x = x * keep[..., None, None].to(x.dtype)
        return x.flatten(-3)


_OTHERS: dict[tuple[int, str], Tensor] = {}


def _others(A: int, device: torch.device) -> Tensor:
    """:func:`~fastmarl.envs.mpe.core.others_index`, built once per (A, device): it is
    half the cost of a small :meth:`DiscreteChannel.deliver`, which runs every forward."""
    key = (A, str(device))
    if key not in _OTHERS:
        _OTHERS[key] = others_index(A, device)
    return _OTHERS[key]


# -- DIAL inside a policy network ----------------------------------------------------

@dataclass
class DialNoise:
    """The randomness of one :class:`DialComm` forward (leading dims ``...``, R rounds, A agents).

    Attributes:
        gumbel: (..., R, A, L, V) the Gumbel noise of each round's message samples.
        alive: (..., R, A, A-1) bool link drops, or None (the channel drops nothing).
        shift: (..., R, A, A-1, L) long digit shifts (flips), or None (no flips).
    """

    gumbel: Tensor
    alive: Tensor | None
    shift: Tensor | None

    def map(self, fn) -> "DialNoise":
        """Apply ``fn`` to every tensor (e.g. index the leading dims)."""
        return DialNoise(fn(self.gumbel), None if self.alive is None else fn(self.alive),
                         None if self.shift is None else fn(self.shift))

    def write(self, index, other: "DialNoise") -> None:
        """``self[index] = other`` field by field (rollout storage)."""
        self.gumbel[index] = other.gumbel
        if self.alive is not None:
            self.alive[index] = other.alive
        if self.shift is not None:
            self.shift[index] = other.shift


@dataclass
class DialTrace:
    """What a :class:`DialComm` forward said (leading dims ``...``, R rounds, A agents).

    Attributes:
        index: (..., R, A) long in [0, V^L), each agent's message in each round (as sent,
            before any ``message_transform`` and link noise).
        logits: (..., R, A, L, V) the message logits.
        noise: the :class:`DialNoise` used (replay it to reproduce the forward);
            ``gumbel`` is zeros for deterministic (argmax) messages.
    """

    index: Tensor
    logits: Tensor
    noise: DialNoise


class DialComm(nn.Module):
    """DIAL-style discrete communication between the actors of a team, in one forward pass.

    ``(..., A, H) -> (..., A, H)``, like :class:`CommNet`. Round r: every agent
    says a message ``m_j`` of L digits of V values from its features
    (:class:`DiscreteChannel`: a straight-through Gumbel-softmax sample), the channel delivers the others' messages
    (``received_i``: (A - 1) * L * V floats, zeros where not heard), and
    ``h_i <- h_i + tanh(W_r [h_i, received_i] + b_r)``. The forward value of a
    message is exactly discrete; its gradient (straight-through) carries the
    receivers' losses into the senders' message heads and bodies (Foerster et
    al., 2016, "DIAL"). Messages are delivered within the step (same-step
    delivery); agent i's output depends on j != i only through what j said and
    i heard (``mask``, link noise).

    Args:
        hidden: H. num_agents: A (the received vector's size depends on it).
        rounds: messages per step (information travels this many hops).
        num_nets: 1 (shared weights) or A.
        vocab_size, message_length, temperature, flip_prob, drop_prob: the channel
            (see :class:`DiscreteChannel`).
    """

    def __init__(self, hidden: int, num_agents: int, rounds: int = 1, num_nets: int = 1, vocab_size: int = 2,
                 message_length: int = 1, temperature: float = 1.0, flip_prob: float = 0.0, drop_prob: float = 0.0):
        super().__init__()
        if rounds < 1:
            raise ValueError(f"DialComm needs rounds >= 1, got {rounds}")
        if num_agents < 2:
            raise ValueError(f"DialComm needs at least two agents to talk, got {num_agents}")
        self.hidden, self.num_agents, self.rounds = hidden, num_agents, rounds
        self.channels = nn.ModuleList(
            DiscreteChannel(hidden, vocab_size, message_length, temperature, flip_prob, drop_prob, num_nets)
            for _ in range(rounds))
        ch = self.channels[0]
        self.vocab_size, self.message_length, self.num_messages = vocab_size, message_length, ch.num_messages
        self.update = nn.ModuleList(AgentLinear(num_nets, hidden + ch.received_dim(num_agents), hidden, gain=1.0)
                                    for _ in range(rounds))

    def sample_noise(self, *batch: int, generator: torch.Generator | None = None,
                     device: torch.device | str | None = None) -> DialNoise:
        """Draw the noise of one forward for ``(*batch, A)`` agents."""
        R, A, L, V = self.rounds, self.num_agents, self.message_length, self.vocab_size
        gumbel = sample_gumbel((*batch, R, A, L, V), generator, device)
        link = self.channels[0].sample_link_noise((*batch, R), A, generator, device)
        return DialNoise(gumbel, link.alive, link.shift)

    def empty_noise(self, *batch: int, device: torch.device | str | None = None) -> DialNoise:
        """Zero-filled storage for ``(*batch)`` forwards' noise (e.g. ``(T, E)``)."""
        R, A, L, V = self.rounds, self.num_agents, self.message_length, self.vocab_size
        ch = self.channels[0]
        return DialNoise(torch.zeros(*batch, R, A, L, V, device=device),
                         torch.zeros(*batch, R, A, A - 1, dtype=torch.bool, device=device) if ch.drop_prob > 0
                         else None,
                         torch.zeros(*batch, R, A, A - 1, L, dtype=torch.long, device=device) if ch.flip_prob > 0
                         else None)

    def forward(self, h: Tensor, mask: Tensor | None = None, noise: DialNoise | None = None,
                deterministic: bool = False, generator: torch.Generator | None = None,
                message_transform=None) -> tuple[Tensor, DialTrace]:
        """h (..., A, H), mask (..., A, A) bool or None -> (h' (..., A, H), :class:`DialTrace`).

        ``noise``: replay these samples (default: draw them from ``generator``).
        ``deterministic``: every message is its argmax (link noise still applies).
        ``message_transform``: maps the sent one-hots (..., A, L, V) before delivery
        (ablations, interventions; see :mod:`fastmarl.analysis.comm`)."""
        batch = h.shape[:-2]
        if noise is None:
            noise = self.sample_noise(*batch, generator=generator, device=h.device)
            if deterministic:
                noise.gumbel = torch.zeros_like(noise.gumbel)
        index, logits = [], []
        for r, (channel, update) in enumerate(zip(self.channels, self.update)):
            msg = channel(h, deterministic=deterministic, gumbel=noise.gumbel[..., r, :, :, :])
            sent = msg.onehot if message_transform is None else message_transform(msg.onehot)
            link = LinkNoise(None if noise.alive is None else noise.alive[..., r, :, :],
                             None if noise.shift is None else noise.shift[..., r, :, :, :])
            received = channel.deliver(sent, mask, link_noise=link)
            h = h + torch.tanh(update(torch.cat([h, received.to(h.dtype)], -1)))
            index.append(msg.index)
            logits.append(msg.logits)
        return h, DialTrace(torch.stack(index, -2), torch.stack(logits, -4), noise)
