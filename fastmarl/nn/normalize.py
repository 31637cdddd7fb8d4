"""Running statistics for normalising value targets (MAPPO's "value normalisation")."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class RunningMeanStd(nn.Module):
    """Mean and variance of every value seen so far (Chan et al.'s parallel update).

    The critic predicts ``normalize(V)``; targets are normalised with the same
    statistics, so the value loss keeps a stable scale while returns drift.
    Buffers (saved in checkpoints): ``mean``, ``var`` (scalars), ``count``.
    """

    def __init__(self, epsilon: float = 1e-5):
        super().__init__()
        self.epsilon = epsilon
        self.register_buffer("mean", torch.zeros((), dtype=torch.float64))
        self.register_buffer("var", torch.ones((), dtype=torch.float64))
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))

    @torch.no_grad()
    def update(self, x: Tensor, mask: Tensor | None = None) -> None:
        """Fold in every element of ``x`` (or those where ``mask`` is True)."""
        x = x.double()
        if mask is not None:
            x = x[mask]
        n = x.numel()
        if n == 0:
            return
        b_mean, b_var = x.mean(), x.var(unbiased=False)
        total = self.count + n
        delta = b_mean - self.mean
        m2 = self.var * self.count + b_var * n + delta * delta * self.count * n / total
        self.mean.copy_(self.mean + delta * n / total)
        self.var.copy_(m2 / total)
        self.count.copy_(total)

    @property
    def std(self) -> Tensor:
        return torch.sqrt(self.var + self.epsilon)

    def normalize(self, x: Tensor) -> Tensor:
        return ((x - self.mean) / self.std).to(x.dtype)

    def denormalize(self, x: Tensor) -> Tensor:
        return (x * self.std + self.mean).to(x.dtype)
