"""Elo ratings: the classic sequential update and the maximum-likelihood (Bradley-Terry) fit, and the
scores of a matrix of paired episodes whose outcomes are returns, not wins.

:func:`matrix_scores`: the *score* of side A's entry ``a`` against side B's entry ``b`` is
defined from A's advantage ``x = return_A - return_B`` (per-agent returns of one episode): for
every episode seed, the cells of the matrix are ranked by ``x`` and the cell's percentile rank
(0: worst cell for A, 1: best; ties count half) is its score for that seed; the score is the
mean over seeds and B's score is ``1 - score``.

:func:`fit_elo`: the maximum-likelihood logistic Elo (``P(a beats b) = 1 / (1 + 10^((R_b - R_a) /
400))``) fitted to such scores, with a weak prior (``prior_games`` virtual draws per player
against a reference), reported with mean 1500. :func:`elo_update` is the classic sequential update.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

ELO_SCALE = 400.0 / math.log(10.0)  # rating points per logit


def expected_score(r_a: float, r_b: float) -> float:
    """Elo's expected score of A against B: ``1 / (1 + 10^((r_b - r_a) / 400))``."""
    return 1.0 / (1.0 + 10.0 ** ((r_b - r_a) / 400.0))


def elo_update(r_a: float, r_b: float, score_a: float, k: float = 32.0) -> tuple[float, float]:
    """One game: A scored ``score_a`` (1 win, 0.5 draw, 0 loss, or any value in
    between) against B. Returns the new (r_a, r_b); the sum of ratings is conserved."""
    delta = k * (score_a - expected_score(r_a, r_b))
    return r_a + delta, r_b - delta


def elo_sequence(games: list[tuple[str, str, float]], initial: float = 1500.0, k: float = 32.0) -> dict[str, float]:
    """Sequential Elo over ``(player_a, player_b, score_a)`` games, in order."""
    ratings: dict[str, float] = {}
    for a, b, s in games:
        ra, rb = ratings.get(a, initial), ratings.get(b, initial)
        ratings[a], ratings[b] = elo_update(ra, rb, s, k)
    return ratings


def fit_elo(scores: np.ndarray, games: np.ndarray, prior_games: float = 1.0, mean: float = 1500.0,
            iterations: int = 100) -> np.ndarray:
    """Maximum-likelihood Elo ratings (P,) from pairwise results.

    ``scores[i, j]``: total score of i against j (wins + half draws, or fractional
    scores), ``games[i, j]`` (symmetric): games between them. Maximises
    ``sum_ij scores_ij log p_ij`` with ``p_ij = 1 / (1 + 10^((R_j - R_i) / 400))``
    by Newton's method; ``prior_games`` virtual draws of every player against a
    reference at the mean keep ratings finite when someone wins every game
    (0: the pure MLE, which needs every player to have won and lost something).
    Returned with mean ``mean``.
    """
    s = np.asarray(scores, dtype=np.float64)
    n = np.asarray(games, dtype=np.float64)
    if s.shape != n.shape or s.ndim != 2 or s.shape[0] != s.shape[1]:
        raise ValueError(f"scores and games must be square matrices of the same shape, got {s.shape}, {n.shape}")
    if not np.allclose(n, n.T):
        raise ValueError("games must be symmetric (games[i, j] = games[j, i])")
    P = s.shape[0]
    r = np.zeros(P)
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-(r[:, None] - r[None, :])))  # (P, P)
        q = 1.0 / (1.0 + np.exp(-r))  # against the reference at 0
        grad = (s - n * p).sum(1) + prior_games * (0.5 - q)
        w = n * p * (1 - p)
        hess = w - np.diag(w.sum(1) + prior_games * q * (1 - q))  # negative semi-definite
        step = np.linalg.lstsq(hess, -grad, rcond=None)[0]
        r = r + np.clip(step, -2.0, 2.0)  # damped: large logit steps overshoot on lopsided data
        if prior_games == 0:
            r -= r.mean()
        if np.abs(step).max() < 1e-10:
            break
    return mean + ELO_SCALE * (r - r.mean())


def matrix_scores(ret_a: Tensor, ret_b: Tensor) -> Tensor:
    """(N_a, N_b) score of A's entry i against B's entry j in [0, 1] (B's is 1 - it):
    per episode seed, the percentile rank of the cell's ``ret_a - ret_b`` among all
    cells (ties count half), averaged over seeds. Inputs (N_a, N_b, E)."""
    na, nb, E = ret_a.shape
    x = (ret_a - ret_b).reshape(na * nb, E).double()
    n = na * nb
    if n == 1:
        return torch.full((na, nb), 0.5)
    less = (x[:, None] > x[None, :]).sum(1).double()  # (n, E): cells this one beats
    ties = (x[:, None] == x[None, :]).sum(1).double() - 1
    return ((less + 0.5 * ties) / (n - 1)).mean(-1).reshape(na, nb).float()
