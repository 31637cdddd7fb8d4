"""Layers applied per agent, with weights shared across agents or one set per agent.

Every module here maps inputs shaped ``(..., A, features)`` (any leading batch
dims, then the agent axis) to ``(..., A, out)``. ``num_nets`` is 1 when all
agents of a group share one network (the broadcast is a plain matmul), or ``A``
when each agent has its own weights: the weights are then stacked as
``(A, in, out)`` and applied to all agents at once with one batched matmul
(``einsum``), never a Python loop over agents.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class AgentLinear(nn.Module):
    """``y[..., a, :] = x[..., a, :] @ W[k(a)] + b[k(a)]`` with ``k(a) = 0`` (shared) or ``a``."""

    def __init__(self, num_nets: int, in_features: int, out_features: int, gain: float = math.sqrt(2)):
        super().__init__()
        self.num_nets, self.in_features, self.out_features = num_nets, in_features, out_features
        self.weight = nn.Parameter(torch.empty(num_nets, in_features, out_features))
        self.bias = nn.Parameter(torch.zeros(num_nets, out_features))
        for k in range(num_nets):  # orthogonal init, as CleanRL and MAPPO do
            w = torch.empty(out_features, in_features)
            nn.init.orthogonal_(w, gain)
            self.weight.data[k] = w.T

    def forward(self, x: Tensor) -> Tensor:
        if self.num_nets == 1:
            return torch.addmm(self.bias[0], x.reshape(-1, self.in_features), self.weight[0]).view(
                *x.shape[:-1], self.out_features)
        return torch.einsum("...ai,aio->...ao", x, self.weight) + self.bias

    def extra_repr(self) -> str:
        return f"num_nets={self.num_nets}, in={self.in_features}, out={self.out_features}"


ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU}


class AgentMLP(nn.Module):
    """``num_layers`` hidden AgentLinear layers with an activation after each: (..., A, in) -> (..., A, hidden)."""

    def __init__(self, num_nets: int, in_features: int, hidden: int, num_layers: int, activation: str = "tanh"):
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(num_layers):
            layers += [AgentLinear(num_nets, in_features if i == 0 else hidden, hidden), ACTIVATIONS[activation]()]
        self.net = nn.Sequential(*layers)
        self.out_features = hidden if num_layers else in_features

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class AgentGRU(nn.Module):
    """A GRU cell per agent (shared or not): ``step(x (..., A, in), h (..., A, H)) -> h'``.

    The equations are torch.nn.GRUCell's (gates r, z, n). ``unroll`` runs a
    stored sequence and zeroes the hidden state where an episode starts, which
    is how rollouts and training see the same hidden states.
    """

    def __init__(self, num_nets: int, in_features: int, hidden: int):
        super().__init__()
        self.hidden = hidden
        self.ih = AgentLinear(num_nets, in_features, 3 * hidden, gain=1.0)
        self.hh = AgentLinear(num_nets, hidden, 3 * hidden, gain=1.0)

    def step(self, x: Tensor, h: Tensor) -> Tensor:
        gi, gh = self.ih(x), self.hh(h)
        i_r, i_z, i_n = gi.chunk(3, -1)
        h_r, h_z, h_n = gh.chunk(3, -1)
        r = torch.sigmoid(i_r + h_r)
        z = torch.sigmoid(i_z + h_z)
        n = torch.tanh(i_n + r * h_n)
        return n + z * (h - n)  # = (1 - z) * n + z * h

    def unroll(self, x: Tensor, h0: Tensor, starts: Tensor) -> tuple[Tensor, Tensor]:
        """x (T, B, A, in); h0 (B, A, H) the state before step 0; starts (T, B) bool:
        step t begins a new episode (hidden state reset to zero before it).
        Returns outputs (T, B, A, H) and the last hidden state (B, A, H)."""
        h, out = h0, []
        for t in range(x.shape[0]):
            h = torch.where(starts[t, :, None, None], 0.0, h)
            h = self.step(x[t], h)
            out.append(h)
        return torch.stack(out), h


def agent_id_onehot(num_agents: int, like: Tensor) -> Tensor:
    """(A, A) identity, broadcastable onto (..., A, A) inputs."""
    return torch.eye(num_agents, dtype=like.dtype, device=like.device)
