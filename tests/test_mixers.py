"""VDN and QMIX mixers: VDN is the sum; QMIX is monotonic in every agent's value."""

from __future__ import annotations

import pytest
import torch

from fastmarl.nn.mixers import QMixer, VDNMixer


def test_vdn_is_the_sum():
    q = torch.randn(5, 7, 4)
    out = VDNMixer()(q, torch.randn(5, 7, 10))
    assert out.shape == (5, 7)
    torch.testing.assert_close(out, q[..., 0] + q[..., 1] + q[..., 2] + q[..., 3])
    assert VDNMixer()(torch.tensor([1.0, -2.0, 4.5])).item() == pytest.approx(3.5)


@pytest.mark.parametrize("hypernet_layers", [1, 2])
def test_qmix_is_monotonic_everywhere(hypernet_layers):
    """dQ_tot/dQ_i >= 0 at random inputs (values spread over several scales, so
    the ELU is probed on both sides), for several random initialisations and after
    the weights were pushed around by gradient steps towards a non-monotonic target."""
    torch.manual_seed(0)
    A, S = 5, 12
    for trial in range(3):
        mixer = QMixer(A, S, embed_dim=16, hypernet_layers=hypernet_layers, hypernet_embed=32)
        if trial == 2:  # train it to fit Q_tot = -sum(q): the best it can do is stay monotonic
            opt = torch.optim.Adam(mixer.parameters(), lr=1e-2)
            for _ in range(50):
                q, s = torch.randn(64, A), torch.randn(64, S)
                loss = ((mixer(q, s) + q.sum(-1)) ** 2).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
        q = (torch.randn(4096, A) * torch.tensor([0.1, 1.0, 10.0, 100.0]).repeat_interleave(1024)[:, None])
        q.requires_grad_(True)
        s = torch.randn(4096, S) * 3
        q_tot = mixer(q, s)
        (grad,) = torch.autograd.grad(q_tot.sum(), q)
        assert grad.shape == (4096, A)
        assert (grad >= 0).all(), f"negative dQtot/dQi: min {grad.min().item()}"
        assert (grad > 0).float().mean() > 0.5  # not trivially flat


def test_qmix_shapes_and_weights():
    mixer = QMixer(3, 6, embed_dim=8)
    q, s = torch.randn(4, 9, 3), torch.randn(4, 9, 6)
    assert mixer(q, s).shape == (4, 9)
    w1, w2 = mixer.mixing_weights(s)
    assert w1.shape == (4, 9, 3, 8) and w2.shape == (4, 9, 8)
    assert (w1 >= 0).all() and (w2 >= 0).all()
    # the output matches the formula written out
    h = torch.nn.functional.elu(torch.einsum("bta,btae->bte", q, w1) + mixer.hyper_b1(s))
    want = (h * w2).sum(-1) + mixer.hyper_v(s).squeeze(-1)
    torch.testing.assert_close(mixer(q, s), want)


def test_qmix_state_dependence_and_argmax_consistency():
    """Different states give different mixes; with a monotonic mix, raising one
    agent's value never lowers Q_tot (the decentralised argmax is consistent)."""
    torch.manual_seed(1)
    mixer = QMixer(2, 4)
    s1, s2 = torch.randn(1, 4), torch.randn(1, 4)
    q = torch.tensor([[0.3, -0.7]])
    assert mixer(q, s1).item() != pytest.approx(mixer(q, s2).item())
    grid = torch.linspace(-5, 5, 101)
    qs = torch.stack([grid, torch.full_like(grid, 0.2)], -1)
    out = mixer(qs, s1.expand(101, 4))
    assert (out[1:] - out[:-1] >= -1e-6).all()


def test_qmix_needs_a_state():
    with pytest.raises(ValueError, match="VDNMixer"):
        QMixer(3, 0)
