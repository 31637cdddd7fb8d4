"""The Q family's target maths (:mod:`fastmarl.algos.q_learning`): target-network updates, bootstrap
values (double Q, action masks) and TD(lambda) returns over stored sequences."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from fastmarl.algos.tabular import masked_greedy


@torch.no_grad()
def hard_update(target: nn.Module, online: nn.Module) -> None:
    """target <- online (parameters and buffers)."""
    target.load_state_dict(online.state_dict())


@torch.no_grad()
def soft_update(target: nn.Module, online: nn.Module, tau: float) -> None:
    """Polyak averaging: target <- tau * online + (1 - tau) * target."""
    for t, o in zip(target.parameters(), online.parameters()):
        t.lerp_(o, tau)


def bootstrap_values(q_online_next: Tensor, q_target_next: Tensor, mask_next: Tensor | None, double_q: bool) -> Tensor:
    """Per-agent next-state values (..., A) from Q-values (..., A, n).

    Double Q: the online network's greedy (legal) action valued by the target
    network; else the target network's max over legal actions. Rows with no
    legal action (e.g. a dead agent) are worth 0."""
    if double_q:
        a = masked_greedy(q_online_next, mask_next)
        v = q_target_next.gather(-1, a[..., None]).squeeze(-1)
    else:
        q = q_target_next if mask_next is None else q_target_next.masked_fill(~mask_next, float("-inf"))
        v = q.amax(-1)
    if mask_next is not None:
        v = torch.where(mask_next.any(-1), v, 0.0)
    return v


def lambda_returns(reward: Tensor, terminated: Tensor, filled: Tensor, next_value: Tensor, gamma: float,
                   td_lambda: float) -> Tensor:
    """TD(lambda) targets over stored sequences, time-major: every input (T, B, ...) -> (T, B, ...).

    ``next_value[t]`` is the (target network's) value of the state after step t.
    Backwards over the real steps (``filled``; padding sits after them),

        G_t = r_t + gamma * (1 - terminated_t) * ((1 - lambda) * V_{t+1} + lambda * G_{t+1}),

    with ``G_{t+1} = V_{t+1}`` at the last real step (a truncated episode or a cut
    chunk bootstraps from its final state). ``td_lambda = 0`` gives the one-step
    target ``r_t + gamma * (1 - terminated_t) * V_{t+1}``; 1 the discounted return
    bootstrapped once at the end. Padded steps get 0.
    """
    cont = gamma * (1.0 - terminated)
    if td_lambda == 0.0:
        return (reward + cont * next_value) * filled
    # G_t = x_t + a_t * G_{t+1}: everything but the recursion is computed for all t at once, so the loop over
    # time is one fused multiply-add per step. real_next_t = 1 where step t + 1 is real (not padding, not past
    # the end); where it is 0 the lambda share of the tail bootstraps from V_{t+1} too.
    real_next = torch.zeros_like(filled)
    real_next[:-1] = (filled[1:] > 0).to(filled.dtype)
    x = (reward + cont * next_value * (1.0 - td_lambda * real_next)) * filled
    a = cont * td_lambda * real_next * filled
    g = x[-1]
    outs = [g]
    for t in range(reward.shape[0] - 2, -1, -1):
        g = torch.addcmul(x[t], a[t], g)
        outs.append(g)
    return torch.stack(outs[::-1])
