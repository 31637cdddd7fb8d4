"""Helpers shared by the MPE-style envs and their scripted policies
(fastmarl.envs.mpe.core): the five-move table, the direction -> move rule and
the "every other agent" index."""

from __future__ import annotations

import torch

from fastmarl.envs.mpe.geometry import MOVES, N_MOVES, axis_move, others_index


def test_move_table_is_mpe2s():
    # mpe2's discrete action: 0 no-op, 1 left (-x), 2 right (+x), 3 down (-y), 4 up (+y)
    assert MOVES == ((0.0, 0.0), (-1.0, 0.0), (1.0, 0.0), (0.0, -1.0), (0.0, 1.0)) and N_MOVES == 5


def test_axis_move_by_hand():
    d = torch.tensor([[0.3, -0.1], [-0.3, 0.1], [0.1, 0.3], [0.1, -0.3], [0.2, 0.2], [-0.2, 0.2], [0.0, 0.0],
                      [0.0, -0.0], [0.0, 0.5], [-0.5, 0.0]])
    assert axis_move(d).tolist() == [2, 1, 4, 3, 2, 1, 1, 1, 4, 1]  # ties: x; a zero component: the - move
    # within the deadband (of the largest component): no-op; the deadband itself is outside
    assert axis_move(torch.tensor([[0.009, -0.005], [0.01, 0.0], [0.0, -0.02]]), 0.01).tolist() == [0, 2, 3]
    assert axis_move(torch.zeros(2, 2), 1e-9).tolist() == [0, 0]


def test_axis_move_is_the_best_aligned_move():
    """Leading dims are kept; the move's direction has the largest dot product with
    the direction among the four moves, and it is the sign of that component."""
    d = torch.randn(64, 3, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    a = axis_move(d)
    assert a.shape == (64, 3) and a.dtype == torch.long and bool(((a >= 1) & (a < N_MOVES)).all())
    table = torch.tensor(MOVES, dtype=torch.float64)
    score = d @ table.T  # (64, 3, 5)
    torch.testing.assert_close(score.gather(-1, a[..., None])[..., 0], score[..., 1:].amax(-1), rtol=0, atol=0)
    torch.testing.assert_close(table[a], torch.where(d.abs() == d.abs().amax(-1, keepdim=True), d.sign(), 0.0))
    big = d.abs().amax(-1)
    torch.testing.assert_close(axis_move(d, 0.5), torch.where(big < 0.5, 0, a))


def test_others_index():
    assert others_index(4).tolist() == [[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]]
    assert others_index(2).tolist() == [[1], [0]]
    for n in (0, 1):
        assert others_index(n).shape == (n, 0) and others_index(n).dtype == torch.long
    idx = others_index(7)  # row i: every j != i once, in increasing order
    eye = torch.eye(7, dtype=torch.bool)
    assert torch.equal(idx, torch.arange(7).expand(7, 7)[~eye].view(7, 6))
