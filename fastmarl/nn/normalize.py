"""Running statistics for normalising value targets (MAPPO's "value normalisation"),
rewards, and per-feature inputs (QMIX's mixer state)."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class RunningMeanStd(nn.Module):
    """Mean and variance of every value seen so far (Chan et al.'s parallel update).

    The critic predicts ``normalize(V)``; targets are normalised with the same
    statistics, so the value loss keeps a stable scale while returns drift.
    ``shape`` () keeps one statistic over all elements; a feature shape, e.g.
    ``(S,)``, keeps one per feature, over every leading dim of the inputs.
    Buffers (saved in checkpoints): ``mean``, ``var`` (of ``shape``), ``count``.
    """

    def __init__(self, epsilon: float = 1e-5, shape: tuple[int, ...] = ()):
        super().__init__()
        self.epsilon, self.shape = epsilon, tuple(shape)
        self.register_buffer("mean", torch.zeros(self.shape, dtype=torch.float64))
        self.register_buffer("var", torch.ones(self.shape, dtype=torch.float64))
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))

    @torch.no_grad()
    def update(self, x: Tensor, mask: Tensor | None = None) -> None:
        """Fold in ``x`` (..., *shape): every element (or, per feature, every leading
        index) or only those where ``mask`` (the leading dims of ``x``) is True."""
        x = x.double()
        nd = len(self.shape)
        if tuple(x.shape[x.dim() - nd:]) != self.shape:
            raise ValueError(f"RunningMeanStd of shape {self.shape} got a tensor of shape {tuple(x.shape)}")
        if mask is not None:
            x = x[mask]
        x = x.reshape(-1, *self.shape)
        n = x.shape[0]
        if n == 0:
            return
        b_mean, b_var = x.mean(0), x.var(0, unbiased=False)
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
