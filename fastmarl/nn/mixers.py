"""Value-decomposition mixers: ``Q_tot = mix(Q_1..Q_A, s)``.

Both map the chosen-action values of a team ``q`` (..., A) and the global state
``state`` (..., S) to the team value ``(...)``, for any leading batch dims
(e.g. (B, T) over a batch of stored episodes).

- :class:`VDNMixer` (Sunehag et al., 2018): ``Q_tot = sum_i Q_i``.
- :class:`QMixer` (Rashid et al., 2018): a two-layer mixing network whose weights
  are produced from the state by hypernetworks,

      h     = elu(q @ |W1(s)| + b1(s))          W1(s): (A, embed), b1(s): (embed,)
      Q_tot = h @ |W2(s)| + V(s)                W2(s): (embed, 1),  V(s): scalar

  The absolute values make every mixing weight non-negative and ELU is
  increasing, so ``dQ_tot / dQ_i >= 0``: the argmax of Q_tot is the tuple of
  per-agent argmaxes (decentralised greedy execution stays consistent with the
  centralised value). ``hypernet_layers`` 1 makes W1 and W2 linear in s; 2
  (the default, as in PyMARL/EPyMARL) puts a ReLU layer of ``hypernet_embed``
  units in front of each. ``V(s)`` is a ReLU layer then a linear output.
"""

from __future__ import annotations

from torch import Tensor, nn


class VDNMixer(nn.Module):
    """``Q_tot = sum_i Q_i``: (..., A) -> (...). The state is accepted and ignored."""

    needs_state = False

    def forward(self, q: Tensor, state: Tensor | None = None) -> Tensor:
        return q.sum(-1)


def _hypernet(state_dim: int, out: int, layers: int, embed: int) -> nn.Module:
    if layers == 1:
        return nn.Linear(state_dim, out)
    if layers == 2:
        return nn.Sequential(nn.Linear(state_dim, embed), nn.ReLU(), nn.Linear(embed, out))
    raise ValueError(f"hypernet_layers must be 1 or 2, got {layers}")


class QMixer(nn.Module):
    """The QMIX monotonic mixer: q (..., A), state (..., S) -> Q_tot (...).

    Args:
        num_agents: A.
        state_dim: S.
        embed_dim: width of the mixing network's hidden layer (32 in the paper).
        hypernet_layers: 1 or 2 layers in the hypernetworks producing W1 and W2.
        hypernet_embed: hidden width of 2-layer hypernetworks (64 in PyMARL).
    """

    needs_state = True

    def __init__(self, num_agents: int, state_dim: int, embed_dim: int = 32, hypernet_layers: int = 2,
                 hypernet_embed: int = 64):
        super().__init__()
        if state_dim < 1:
            raise ValueError("QMixer needs a global state (state_dim >= 1); use VDNMixer for envs without one")
        self.num_agents, self.state_dim, self.embed_dim = num_agents, state_dim, embed_dim
        self.hyper_w1 = _hypernet(state_dim, num_agents * embed_dim, hypernet_layers, hypernet_embed)
        self.hyper_b1 = nn.Linear(state_dim, embed_dim)
        self.hyper_w2 = _hypernet(state_dim, embed_dim, hypernet_layers, hypernet_embed)
        self.hyper_v = nn.Sequential(nn.Linear(state_dim, embed_dim), nn.ReLU(), nn.Linear(embed_dim, 1))

    def forward(self, q: Tensor, state: Tensor) -> Tensor:
        lead = q.shape[:-1]
        q = q.reshape(-1, 1, self.num_agents)  # (N, 1, A)
        s = state.reshape(-1, self.state_dim)  # (N, S)
        w1 = self.hyper_w1(s).abs().view(-1, self.num_agents, self.embed_dim)  # (N, A, embed)
        b1 = self.hyper_b1(s).view(-1, 1, self.embed_dim)
        h = nn.functional.elu(q @ w1 + b1)  # (N, 1, embed)
        w2 = self.hyper_w2(s).abs().view(-1, self.embed_dim, 1)
        v = self.hyper_v(s).view(-1, 1, 1)
        return (h @ w2 + v).view(lead)

    def mixing_weights(self, state: Tensor) -> tuple[Tensor, Tensor]:
        """(|W1(s)| (..., A, embed), |W2(s)| (..., embed)) for inspection and tests."""
        lead = state.shape[:-1]
        s = state.reshape(-1, self.state_dim)
        return (self.hyper_w1(s).abs().view(*lead, self.num_agents, self.embed_dim),
                self.hyper_w2(s).abs().view(*lead, self.embed_dim))


__all__ = ["VDNMixer", "QMixer"]
