"""Batched geometry the MPE scenarios share: the discrete move table, norms, "every other agent"
indices, relative positions, the k nearest entities and seeded uniform draws.

Shapes: ``E`` envs, ``M`` observers, ``K`` candidates; positions are ``(..., 2)``.
"""

from __future__ import annotations

import torch
from torch import Tensor

# Discrete movement actions (mpe2's): 0 no-op, 1 left (-x), 2 right (+x), 3 down (-y), 4 up (+y), as unit
# directions; every env with MPE-style discrete moves uses this table.
MOVES = ((0.0, 0.0), (-1.0, 0.0), (1.0, 0.0), (0.0, -1.0), (0.0, 1.0))
N_MOVES = len(MOVES)


def axis_move(direction: Tensor, deadband: float = 0.0) -> Tensor:
    """direction (..., 2) -> (...) long: the move of :data:`MOVES` along the axis where
    ``direction`` is largest in absolute value (x on a tie), toward its sign (-
    when it is 0); 0 (no-op) where that largest component is below ``deadband``."""
    axis = direction.abs().argmax(-1)
    comp = torch.gather(direction, -1, axis[..., None])[..., 0]
    return torch.where(comp.abs() < deadband, 0, 1 + 2 * axis + (comp > 0).long())


def norm2(v: Tensor) -> Tensor:
    """Euclidean norm over the last axis of length 2, written as mpe2 writes it."""
    return torch.sqrt(v[..., 0] * v[..., 0] + v[..., 1] * v[..., 1])


def others_index(n: int, device: torch.device | str | None = None) -> Tensor:
    """(n, n-1) long: row i lists every j != i in increasing order (slot k holds k, or k + 1 from k = i on)."""
    idx = torch.arange(n, device=device)
    return idx[None, :-1] + (idx[None, :-1] >= idx[:, None]).long()


def relative_to_self(self_pos: Tensor, targets: Tensor) -> Tensor:
    """targets (E, K, 2) relative to each of self_pos (E, M, 2): (E, M, K, 2)."""
    return targets[:, None, :, :] - self_pos[:, :, None, :]


def nearest_k(rel: Tensor, k: int, *values: Tensor) -> tuple[Tensor, ...]:
    """Keep the k nearest of K candidates per row, closest first, zero-padded to k.

    rel (E, M, K, 2) relative positions; each of ``values`` (E, M, K, D) is
    gathered in the same order (e.g. communication). mpe2's partial
    observability uses the same rule (argsort of distances, then zero-pad).
    """
    E, M, K, _ = rel.shape
    if K == 0:
        return tuple(torch.zeros(E, M, k, v.shape[-1], dtype=v.dtype, device=v.device) for v in (rel, *values))
    order = torch.argsort(norm2(rel), dim=-1, stable=True)[..., :k]  # (E, M, min(k, K))
    out = []
    for v in (rel, *values):
        g = torch.gather(v, 2, order[..., None].expand(*order.shape, v.shape[-1]))
        if g.shape[2] < k:
            g = torch.cat([g, g.new_zeros(E, M, k - g.shape[2], v.shape[-1])], dim=2)
        out.append(g)
    return tuple(out)


def uniform(gen: torch.Generator, shape: tuple[int, ...], low: float, high: float, like: Tensor) -> Tensor:
    """Uniform samples in [low, high) with the dtype/device of ``like``."""
    return torch.rand(shape, generator=gen, dtype=like.dtype, device=like.device) * (high - low) + low


__all__ = ["MOVES", "N_MOVES", "axis_move", "norm2", "others_index", "relative_to_self", "nearest_k", "uniform"]
