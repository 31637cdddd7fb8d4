"""Measures of emergent communication, from rollouts or from a policy.

All information quantities are in **nats** (a perfectly informative bit scores
``log 2 = 0.693``; divide by ``log 2`` for bits). Messages and actions are
integer tensors; a multi-digit message is one integer (see
:func:`fastmarl.envs.comm.message_index`).

Estimators. From N samples, the plug-in entropy ``H = -sum p_hat log p_hat``
under-estimates the entropy by about ``(m - 1) / (2N)`` (m = number of values
with non-zero probability). We add the **Miller-Madow** correction ``(m_hat -
1) / (2N)`` (m_hat = values seen), and estimate mutual information as
``I(X;Y) = H(X) + H(Y) - H(X,Y)`` with each entropy corrected, i.e. the
plug-in MI plus ``(m_x + m_y - m_xy - 1) / (2N)``. For independent X, Y the
plug-in MI is biased upwards by about ``(m_x - 1)(m_y - 1) / (2N)``; the
correction removes that term (e.g. ``-1/(2N)`` for two bits, exactly the
bias). ``correction=None`` gives the plug-in estimates. Remaining bias is
O(1/N^2) for well-sampled distributions; with fewer samples than values the
estimates are unreliable whatever the correction.

Measures (Lowe et al., 2019, "On the pitfalls of measuring emergent communication"):

- :func:`message_entropy`: entropy of each agent's messages.
- :func:`speaker_consistency`: I(m_i,t ; a_i,t+lag), an agent's message and its own next action.
- :func:`instantaneous_coordination`: I(m_i,t ; a_j,t+lag), a message and the
  other agents' next actions (a speaker x listener matrix).
- :func:`causal_influence`: intervene on the message a listener receives (every
  value), read its action distribution, and compute the MI between the
  intervened message and the action, weighted by the speaker's message
  distribution; exact (no sampling), averaged over the given states.
- :func:`message_ablation`: the return with messages intact, zeroed, shuffled or
  random, from an evaluation callable that applies a message transform.
- :func:`attention_entropy`: entropy of attention weights (TarMAC).
"""

from __future__ import annotations

import math
from typing import Callable, Literal

import torch
from torch import Tensor

__all__ = [
    "entropy", "mutual_information", "message_entropy", "speaker_consistency", "instantaneous_coordination",
    "lagged_pairs", "causal_influence", "zero_messages", "shuffle_messages", "random_messages", "message_ablation",
    "attention_entropy",
]

Correction = Literal["miller_madow"] | None


def _entropy_from_counts(counts: Tensor, correction: Correction) -> Tensor:
    """counts (..., n) -> entropy (...) in nats."""
    counts = counts.double()
    n = counts.sum(-1)
    p = counts / n.clamp_min(1)[..., None]
    h = -torch.where(p > 0, p * p.clamp_min(1e-300).log(), 0.0).sum(-1)
    if correction == "miller_madow":
        h = h + ((counts > 0).sum(-1) - 1).clamp_min(0) / (2 * n.clamp_min(1))
    elif correction is not None:
        raise ValueError(f"correction must be 'miller_madow' or None, got {correction!r}")
    return h


def _columns(x: Tensor) -> Tensor:
    """(N,) or (N, P) integer samples -> (N, P) long, checked non-negative."""
    x = x.long()
    if x.dim() == 1:
        x = x[:, None]
    if x.dim() != 2:
        raise ValueError(f"expected samples shaped (N,) or (N, P), got {tuple(x.shape)}")
    if x.numel() and int(x.min()) < 0:
        raise ValueError("samples must be non-negative integers (message / action indices)")
    return x


def _counts(x: Tensor, num_values: int) -> Tensor:
    """(N, P) in [0, num_values) -> (P, num_values) counts, one bincount for all columns."""
    N, P = x.shape
    offset = torch.arange(P, device=x.device) * num_values
    return torch.bincount((x + offset).reshape(-1), minlength=P * num_values).view(P, num_values)


def entropy(x: Tensor, num_values: int | None = None, correction: Correction = "miller_madow") -> Tensor:
    """Entropy (nats) of integer samples ``x`` (N,) -> () or (N, P) -> (P,) per column."""
    squeeze = x.dim() == 1
    x = _columns(x)
    n = int(x.max()) + 1 if num_values is None and x.numel() else int(num_values or 1)
    h = _entropy_from_counts(_counts(x, n), correction)
    return h[0] if squeeze else h


def mutual_information(x: Tensor, y: Tensor, correction: Correction = "miller_madow") -> Tensor:
    """I(X;Y) in nats from paired integer samples: x, y (N,) -> (), or (N, P) -> (P,)
    (column p of x paired with column p of y). See the module docstring for the estimator."""
    squeeze = x.dim() == 1 and y.dim() == 1
    x, y = _columns(x), _columns(y)
    x, y = torch.broadcast_tensors(x, y)
    if x.shape[0] == 0:
        raise ValueError("mutual_information needs at least one sample")
    nx, ny = int(x.max()) + 1, int(y.max()) + 1
    hx = _entropy_from_counts(_counts(x, nx), correction)
    hy = _entropy_from_counts(_counts(y, ny), correction)
    hxy = _entropy_from_counts(_counts(x * ny + y, nx * ny), correction)
    mi = hx + hy - hxy
    return mi[0] if squeeze else mi


def message_entropy(messages: Tensor, correction: Correction = "miller_madow") -> Tensor:
    """messages (..., A) long -> (A,) entropy of each agent's messages (nats),
    pooled over the leading (time, env) dims."""
    return entropy(messages.reshape(-1, messages.shape[-1]), correction=correction)


def lagged_pairs(messages: Tensor, actions: Tensor, lag: int = 1,
                 dones: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Pair each message with the action ``lag`` steps later, within episodes.

    messages (T, E, A_s), actions (T, E, A_l); dones (T, E) bool, True where the
    episode ended at step t (so step t + 1 starts a new one). Returns (N, A_s) and
    (N, A_l) for the N (t, env) pairs whose steps t..t+lag lie in one episode.
    """
    T = messages.shape[0]
    if actions.shape[:2] != messages.shape[:2]:
        raise ValueError(f"messages {tuple(messages.shape)} and actions {tuple(actions.shape)} must share (T, E)")
    if not 0 <= lag < T:
        raise ValueError(f"lag must be in [0, T={T}), got {lag}")
    m, a = messages[: T - lag], actions[lag:]
    if dones is not None and lag > 0:
        crossed = torch.zeros_like(dones[: T - lag])
        for k in range(lag):  # an episode end at t .. t+lag-1 separates m_t from a_{t+lag}
            crossed |= dones[k: T - lag + k]
        keep = ~crossed
        return m[keep], a[keep]
    return m.reshape(-1, m.shape[-1]), a.reshape(-1, a.shape[-1])


def _pair_mi(m: Tensor, a: Tensor, correction: Correction) -> Tensor:
    """m (N, A_s), a (N, A_l) -> (A_s, A_l) MI of every (speaker, actor) pair."""
    N, As = m.shape
    Al = a.shape[1]
    x = m[:, :, None].expand(N, As, Al).reshape(N, As * Al)
    y = a[:, None, :].expand(N, As, Al).reshape(N, As * Al)
    return mutual_information(x, y, correction).view(As, Al)


def speaker_consistency(messages: Tensor, actions: Tensor, lag: int = 1, dones: Tensor | None = None,
                        correction: Correction = "miller_madow") -> Tensor:
    """(A,) I(m_i,t ; a_i,t+lag): does an agent act on what it says? messages and
    actions (T, E, A) of the same agents; ``dones`` as in :func:`lagged_pairs`."""
    m, a = lagged_pairs(messages, actions, lag, dones)
    if m.shape[1] != a.shape[1]:
        raise ValueError("speaker_consistency needs messages and actions of the same agents")
    return mutual_information(m, a, correction)


def instantaneous_coordination(messages: Tensor, actions: Tensor, lag: int = 1, dones: Tensor | None = None,
                               exclude_self: bool | None = None,
                               correction: Correction = "miller_madow") -> Tensor:
    """(A_s, A_l) I(m_i,t ; a_j,t+lag) for speaker i and actor j: do the others act
    on what i says? messages (T, E, A_s), actions (T, E, A_l). ``exclude_self``
    (default: when A_s == A_l, i.e. the same agents) sets the diagonal to NaN
    (that is :func:`speaker_consistency`)."""
    m, a = lagged_pairs(messages, actions, lag, dones)
    mi = _pair_mi(m, a, correction)
    if exclude_self is None:
        exclude_self = m.shape[1] == a.shape[1]
    if exclude_self:
        mi = mi.masked_fill(torch.eye(mi.shape[0], dtype=torch.bool, device=mi.device), float("nan"))
    return mi


def causal_influence(listener: Callable[[Tensor, Tensor], Tensor], states: Tensor, num_messages: int,
                     message_probs: Tensor | None = None, logits: bool = False) -> Tensor:
    """Causal influence of communication, per state (nats).

    For each state s, every message m in [0, M) is given to the listener in turn
    (an intervention): ``listener(states_rep, messages) -> (N * M, ..., n_actions)``
    action probabilities (or logits with ``logits=True``), with ``states_rep``
    the states repeated M times (state-major: rows ``s * M + m``) and
    ``messages`` (N * M,) long. With the speaker's distribution ``p(m | s)``
    (``message_probs`` (N, M); None = uniform),

        CI(s) = sum_m p(m|s) KL( pi(.|s, m) || sum_m' p(m'|s) pi(.|s, m') ),

    the mutual information between the intervened message and the action in
    state s. Returns (N, ...) (extra dims: e.g. several listeners); take ``.mean()``.
    """
    N = states.shape[0]
    M = int(num_messages)
    rep = states.repeat_interleave(M, 0)
    msgs = torch.arange(M, device=states.device).repeat(N)
    with torch.no_grad():
        out = listener(rep, msgs)
    logp = torch.log_softmax(out.double(), -1) if logits else out.double().clamp_min(1e-300).log()
    logp = logp.view(N, M, *out.shape[1:])  # (N, M, ..., n_actions)
    if message_probs is None:
        w = torch.full((N, M), 1.0 / M, dtype=torch.float64, device=logp.device)
    else:
        w = message_probs.double()
        if tuple(w.shape) != (N, M):
            raise ValueError(f"message_probs must be (N, M) = ({N}, {M}), got {tuple(w.shape)}")
    w = w.view(N, M, *([1] * (logp.dim() - 2)))
    marginal = (w * logp.exp()).sum(1, keepdim=True).clamp_min(1e-300).log()
    kl = (logp.exp() * (logp - marginal)).sum(-1)  # (N, M, ...)
    return (w[..., 0] * kl).sum(1)


# -- ablations ------------------------------------------------------------------

def zero_messages(m: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """All zeros: for one-hot messages, "nothing received"."""
    return torch.zeros_like(m)


def shuffle_messages(m: Tensor, generator: torch.Generator | None = None, within_env: bool = False,
                     message_dims: int = 2) -> Tensor:
    """Messages moved to other senders: the marginal distribution is kept, their
    link to the sender's state is broken. m (..., A, *message) with
    ``message_dims`` trailing message dims (2 for one-hot (L, V)).

    ``within_env=False``: a random permutation over all (batch, agent) senders;
    ``within_env=True``: each agent gets another agent's message from the same
    env (a random cyclic shift by 1..A-1 per env), A >= 2."""
    lead = m.shape[: m.dim() - message_dims]
    if within_env:
        A = lead[-1]
        if A < 2:
            raise ValueError("shuffling within an env needs at least two senders; use within_env=False")
        flat = m.reshape(-1, A, *m.shape[m.dim() - message_dims:])
        shift = torch.randint(1, A, (flat.shape[0], 1), generator=generator, device=m.device)
        src = (torch.arange(A, device=m.device) + shift) % A
        return flat[torch.arange(flat.shape[0], device=m.device)[:, None], src].reshape(m.shape)
    flat = m.reshape(-1, *m.shape[m.dim() - message_dims:])
    perm = torch.randperm(flat.shape[0], generator=generator, device=m.device)
    return flat[perm].reshape(m.shape)


def random_messages(m: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Uniformly random one-hot messages shaped like m (..., V): one random value per digit."""
    V = m.shape[-1]
    idx = torch.randint(0, V, m.shape[:-1], generator=generator, device=m.device)
    return torch.nn.functional.one_hot(idx, V).to(m.dtype)


ABLATIONS: dict[str, Callable[..., Tensor] | None] = {
    "intact": None, "zeroed": zero_messages, "shuffled": shuffle_messages, "random": random_messages,
}


def message_ablation(evaluate: Callable[[Callable[[Tensor], Tensor] | None], float], seed: int = 0,
                     ablations: tuple[str, ...] = ("intact", "zeroed", "shuffled", "random")) -> dict[str, float]:
    """Returns (or any score) with the messages intact vs ablated.

    ``evaluate(transform)`` runs an evaluation in which every batch of sent
    one-hot messages ``(..., A, L, V)`` goes through ``transform`` before it is
    delivered (``transform`` is None for "intact"); e.g. set
    :attr:`fastmarl.envs.comm_wrappers.BroadcastChannel.message_transform`.
    Each ablation uses its own generator seeded with ``seed``. Returns name ->
    score, plus ``"drop/<name>"`` = intact - ablated when "intact" is included.
    """
    out: dict[str, float] = {}
    for name in ablations:
        if name not in ABLATIONS:
            raise ValueError(f"unknown ablation {name!r}; choose from {list(ABLATIONS)}")
        fn = ABLATIONS[name]
        if fn is None:
            out[name] = float(evaluate(None))
            continue
        gen = torch.Generator().manual_seed(seed)

        def transform(m: Tensor, fn=fn, gen=gen) -> Tensor:
            g = gen if m.device.type == "cpu" else None  # a CPU generator cannot drive device sampling
            return fn(m, generator=g)

        out[name] = float(evaluate(transform))
    if "intact" in out:
        for name in ablations:
            if name != "intact":
                out[f"drop/{name}"] = out["intact"] - out[name]
    return out


# -- continuous channels ------------------------------------------------------------

def attention_entropy(attn: Tensor, normalized: bool = False) -> Tensor:
    """Entropy (nats) of each receiver's attention over senders: attn (..., A, A)
    (rows: receivers, summing to 1, or all zero when nothing was heard) -> (..., A).

    ``normalized``: divided by log(number of senders with non-zero weight), so 1
    is uniform (broadcast-like) and 0 is fully targeted; receivers with at most
    one such sender score 0. Rows of zeros score 0."""
    p = attn.double()
    h = -torch.where(p > 0, p * p.clamp_min(1e-300).log(), 0.0).sum(-1)
    if normalized:
        n = (p > 0).sum(-1)
        h = torch.where(n > 1, h / n.clamp_min(2).double().log(), 0.0)
    return h.to(attn.dtype) if attn.dtype.is_floating_point else h


# Log 2: the mutual information of a perfectly informative bit, in nats.
LOG2 = math.log(2.0)
