"""Who hears whom, and how a discrete message is coded: the parts of agent
communication that envs need too (:mod:`fastmarl.envs.comm_wrappers` puts a channel
into any env; :mod:`fastmarl.nn.comm` learns to use one).

A *communication mask* ``(..., A, A)`` bool has ``mask[..., i, j]`` True when
receiver i hears sender j (the diagonal is "self"). A message of ``L`` digits of
``V`` values is one index in ``[0, V^L)``, digit 0 least significant.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["all_to_all_mask", "range_mask", "reachability", "message_index", "message_digits"]


# -- topology ---------------------------------------------------------------------

def all_to_all_mask(num_agents: int, device: torch.device | str | None = None, self_loops: bool = True) -> Tensor:
    """(A, A) bool: everyone hears everyone (the diagonal is ``self_loops``)."""
    m = torch.ones(num_agents, num_agents, dtype=torch.bool, device=device)
    if not self_loops:
        m &= ~torch.eye(num_agents, dtype=torch.bool, device=device)
    return m


def range_mask(pos: Tensor, radius: float | Tensor, self_loops: bool = True) -> Tensor:
    """Range-limited topology: ``pos (..., A, 2)`` -> ``(..., A, A)`` bool,
    ``mask[..., i, j] = |pos_i - pos_j| <= radius`` (symmetric). ``radius`` a number
    or a tensor broadcastable to ``(..., 1, 1)`` (e.g. one radius per env)."""
    d = pos[..., :, None, :] - pos[..., None, :, :]
    within = (d * d).sum(-1) <= torch.as_tensor(radius, dtype=pos.dtype, device=pos.device) ** 2
    eye = torch.eye(pos.shape[-2], dtype=torch.bool, device=pos.device)
    return within | eye if self_loops else within & ~eye


def reachability(mask: Tensor, rounds: int) -> Tensor:
    """(..., A, A) bool: receiver i can be influenced by sender j within ``rounds``
    communication rounds (a path of at most ``rounds`` hops, plus i itself)."""
    eye = torch.eye(mask.shape[-1], dtype=torch.bool, device=mask.device)
    step = (mask | eye).float()
    r = step
    for _ in range(rounds - 1):
        r = ((r @ step) > 0).float()
    return r > 0


# -- message coding -----------------------------------------------------------------

def message_index(digits: Tensor, vocab_size: int) -> Tensor:
    """(..., L) digits in [0, V) -> (...) index in [0, V^L), digit 0 least significant."""
    radix = vocab_size ** torch.arange(digits.shape[-1], device=digits.device)
    return (digits.long() * radix).sum(-1)


def message_digits(index: Tensor, vocab_size: int, message_length: int) -> Tensor:
    """Inverse of :func:`message_index`: (...) -> (..., L)."""
    radix = vocab_size ** torch.arange(message_length, device=index.device)
    return (index.long()[..., None] // radix) % vocab_size
