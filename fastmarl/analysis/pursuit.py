"""Pursuit measures for predator-prey tasks (simple_tag): captures and coordination.

Trajectories are stacked tensors, time first. Entry ``t - 1`` holds the world
*after* env step ``t`` (``t = 1..T``), which is what simple_tag's rewards see:
a contact in the initial placement is not a capture, one after the 7th step
is "a capture at step 7".

==================  =====================  ======================================
tensor              shape                  meaning
==================  =====================  ======================================
pred_pos            (T, E, P, 2)           predator positions
pred_vel            (T, E, P, 2)           predator velocities
prey_pos            (T, E, G, 2)           prey positions (``(T, E, 2)``: one prey)
contact             (T, E, G, P) bool      prey g touches predator p
==================  =====================  ======================================

Capture (simple_tag's collision test): ``|p_prey - p_pred| < size_prey +
size_pred`` = 0.05 + 0.075 = 0.125. Per episode (:func:`capture_stats`):

- ``captured``: at least one capture in the episode; the *capture rate* is its mean;
- ``capture_events``: contact onsets summed over prey (a prey touched at ``t``
  but by no predator at ``t - 1``; touched at step 1 counts), i.e. separate
  captures, not steps of one long contact;
- ``contact_steps``: steps in which some prey is touched;
- ``contact_pairs``: (step, prey, predator) contacts, what the predators are
  paid for (their reward / 10);
- ``first_capture``: the step ``t`` of the first contact, NaN if none.

Coordination:

- :func:`resultant_length` of the predators' bearings seen from the prey,
  ``R = |mean_p (p_pred - p_prey) / |p_pred - p_prey||`` in [0, 1]: 0 when the
  predators surround the prey evenly (e.g. at 0, 120, 240 degrees), 1 when all
  come from one side. For P bearings drawn independently and uniformly,
  ``E[R^2] = 1 / P`` (:func:`random_resultant_length` gives ``E[R]`` by sampling);
  :func:`spread_at_capture` takes R at each episode's first capture.
- :func:`predator_profiles`: per predator and step, the distance to the prey,
  the cosine between its velocity and the direction to the prey (``heading``: 1
  = running straight at it) and to where the prey will be ``lead`` steps later
  (``heading_lead``: a predator cutting off the prey's path scores higher on
  this than on ``heading``).
- :func:`role_shares`: how often each predator is the closest one (the chaser)
  over an episode; ``1 / P`` each when roles are not tied to the predator's identity.

:func:`tag_positions` recovers positions and velocities from the predators'
own observations (simple_tag's full observations), so episode ends are covered
(``final_obs``) and no privileged state is needed.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["CAPTURE_DISTANCE", "tag_positions", "contacts", "capture_stats", "summarise_captures",
           "resultant_length", "spread_at_capture", "random_resultant_length", "predator_profiles", "role_shares"]

CAPTURE_DISTANCE = 0.05 + 0.075  # simple_tag: prey size + adversary size


def tag_positions(adversary_obs: Tensor, num_adversaries: int, num_good: int, num_obstacles: int
                  ) -> dict[str, Tensor]:
    """Positions and velocities from simple_tag's adversary observations.

    Args:
        adversary_obs: (..., P, D) with ``D = 4 + 2 L + 2 (P + G - 1) + 2 G``
            (``[vel, pos, obstacles rel, other agents rel, prey vel]``, full observations).

    Returns:
        ``pred_pos``, ``pred_vel`` (..., P, 2); ``prey_pos``, ``prey_vel`` (..., G, 2).
    """
    P, G, L = num_adversaries, num_good, num_obstacles
    D = 4 + 2 * L + 2 * (P + G - 1) + 2 * G
    if P < 1 or adversary_obs.shape[-1] != D or adversary_obs.shape[-2] != P:
        raise ValueError(f"expected adversary observations (..., {P}, {D}) of simple_tag with {P} adversaries, {G} "
                         f"prey and {L} obstacles (full observations), got {tuple(adversary_obs.shape)}")
    o = adversary_obs
    pred_pos, pred_vel = o[..., 2:4], o[..., 0:2]
    # adversary 0 sees the others in agent order: adversaries 1..P-1, then the prey
    start = 4 + 2 * L + 2 * (P - 1)
    prey_rel = o[..., 0, start:start + 2 * G].reshape(*o.shape[:-2], G, 2)
    prey_pos = o[..., 0, None, 2:4] + prey_rel
    prey_vel = o[..., 0, D - 2 * G:].reshape(*o.shape[:-2], G, 2)
    return {"pred_pos": pred_pos, "pred_vel": pred_vel, "prey_pos": prey_pos, "prey_vel": prey_vel}


def contacts(pred_pos: Tensor, prey_pos: Tensor, capture_distance: float = CAPTURE_DISTANCE) -> Tensor:
    """(..., P, 2), (..., G, 2) -> (..., G, P) bool: prey g within ``capture_distance`` of predator p."""
    if pred_pos.shape[-1] != 2 or prey_pos.shape[-1] != 2 or pred_pos.shape[:-2] != prey_pos.shape[:-2]:
        raise ValueError(f"expected pred_pos (..., P, 2) and prey_pos (..., G, 2) with the same leading shape, got "
                         f"{tuple(pred_pos.shape)} and {tuple(prey_pos.shape)}")
    d = torch.linalg.vector_norm(prey_pos[..., :, None, :] - pred_pos[..., None, :, :], dim=-1)
    return d < capture_distance


def capture_stats(contact: Tensor) -> dict[str, Tensor]:
    """Per-episode capture numbers from ``contact`` (T, E, G, P) bool; see the module docstring.

    Returns ``captured`` (E,) bool, ``capture_events``, ``contact_steps``,
    ``contact_pairs`` (E,) float, ``first_capture`` (E,) float (1-based step, NaN if none)."""
    if contact.dim() != 4 or contact.dtype != torch.bool:
        raise ValueError(f"contact must be a (T, E, G, P) bool tensor, got {contact.dtype} {tuple(contact.shape)}")
    T = contact.shape[0]
    touched = contact.any(-1)  # (T, E, G)
    before = torch.cat([torch.zeros_like(touched[:1]), touched[:-1]], 0)
    onsets = (touched & ~before).sum((0, 2))
    any_t = touched.any(-1)  # (T, E)
    captured = any_t.any(0)
    steps = torch.arange(1, T + 1, device=contact.device, dtype=torch.float32)[:, None].expand_as(any_t)
    first = torch.where(any_t, steps, math.inf).amin(0)
    first = torch.where(captured, first, math.nan)
    return {"captured": captured, "capture_events": onsets.float(), "contact_steps": any_t.sum(0).float(),
            "contact_pairs": contact.sum((0, 2, 3)).float(), "first_capture": first}


def summarise_captures(stats: dict[str, Tensor]) -> dict[str, float]:
    """Means over episodes: ``capture_rate``, ``captures_per_episode`` (events),
    ``contact_steps``, ``contact_pairs`` and ``time_to_first_capture`` (mean
    over the episodes with a capture; NaN if none)."""
    first = stats["first_capture"]
    hit = ~torch.isnan(first)
    return {"capture_rate": stats["captured"].float().mean().item(),
            "captures_per_episode": stats["capture_events"].mean().item(),
            "contact_steps": stats["contact_steps"].mean().item(),
            "contact_pairs": stats["contact_pairs"].mean().item(),
            "time_to_first_capture": first[hit].mean().item() if bool(hit.any()) else math.nan}


def resultant_length(pred_pos: Tensor, prey_pos: Tensor) -> Tensor:
    """Circular resultant length of the predators' bearings from the prey.

    pred_pos (..., P, 2), prey_pos (..., 2) -> (...) in [0, 1]; a predator on
    top of the prey (distance < 1e-9) has no bearing and is left out."""
    rel = pred_pos - prey_pos[..., None, :]
    d = torch.linalg.vector_norm(rel, dim=-1, keepdim=True)
    valid = d > 1e-9
    unit = torch.where(valid, rel / d.clamp_min(1e-9), 0.0)
    n = valid.sum(-2).clamp_min(1)
    return torch.linalg.vector_norm(unit.sum(-2) / n, dim=-1)


def spread_at_capture(pred_pos: Tensor, prey_pos: Tensor, first_capture: Tensor) -> Tensor:
    """R (:func:`resultant_length`) at each episode's first capture.

    pred_pos (T, E, P, 2), prey_pos (T, E, 2), first_capture (E,) 1-based steps
    (NaN: no capture) -> (E,) float, NaN where no capture."""
    T, E = pred_pos.shape[:2]
    if prey_pos.shape != (T, E, 2) or first_capture.shape != (E,):
        raise ValueError(f"expected pred_pos (T, E, P, 2), prey_pos (T, E, 2), first_capture (E,); got "
                         f"{tuple(pred_pos.shape)}, {tuple(prey_pos.shape)}, {tuple(first_capture.shape)}")
    hit = ~torch.isnan(first_capture)
    t = torch.where(hit, first_capture, 1.0).long() - 1  # (E,)
    env = torch.arange(E, device=pred_pos.device)
    r = resultant_length(pred_pos[t, env], prey_pos[t, env])
    return torch.where(hit, r, math.nan)


def random_resultant_length(num_predators: int, samples: int = 100_000, seed: int = 0) -> float:
    """E[R] for ``num_predators`` independent uniform bearings (Monte Carlo)."""
    g = torch.Generator().manual_seed(seed)
    theta = torch.rand(samples, num_predators, generator=g, dtype=torch.float64) * 2 * math.pi
    return torch.stack([theta.cos().mean(-1), theta.sin().mean(-1)], -1).norm(dim=-1).mean().item()


def _cosine(a: Tensor, b: Tensor) -> Tensor:
    na, nb = torch.linalg.vector_norm(a, dim=-1), torch.linalg.vector_norm(b, dim=-1)
    ok = (na > 1e-6) & (nb > 1e-6)
    return torch.where(ok, (a * b).sum(-1) / (na * nb).clamp_min(1e-12), math.nan)


def predator_profiles(pred_pos: Tensor, pred_vel: Tensor, prey_pos: Tensor, lead: int = 3) -> dict[str, Tensor]:
    """Per predator and step: ``distance`` to the prey, ``heading`` (cosine of
    velocity vs direction to the prey) and ``heading_lead`` (vs the direction to
    the prey's position ``lead`` steps later, its last position near the end).

    pred_pos, pred_vel (T, E, P, 2), prey_pos (T, E, 2) -> each (T, E, P);
    headings are NaN where the predator (almost) stands still."""
    T = pred_pos.shape[0]
    if pred_vel.shape != pred_pos.shape or prey_pos.shape != pred_pos.shape[:2] + (2,):
        raise ValueError(f"expected pred_pos/pred_vel (T, E, P, 2) and prey_pos (T, E, 2), got "
                         f"{tuple(pred_pos.shape)}, {tuple(pred_vel.shape)}, {tuple(prey_pos.shape)}")
    if lead < 0:
        raise ValueError(f"lead must be >= 0, got {lead}")
    to_prey = prey_pos[:, :, None] - pred_pos
    later = prey_pos[torch.clamp(torch.arange(T, device=prey_pos.device) + lead, max=T - 1)]
    return {"distance": torch.linalg.vector_norm(to_prey, dim=-1),
            "heading": _cosine(pred_vel, to_prey),
            "heading_lead": _cosine(pred_vel, later[:, :, None] - pred_pos)}


def role_shares(distance: Tensor) -> Tensor:
    """distance (T, E, P) -> (P,) share of episodes in which predator p has the
    smallest mean distance to the prey (the chaser); sums to 1."""
    if distance.dim() != 3:
        raise ValueError(f"distance must be (T, E, P), got {tuple(distance.shape)}")
    closest = distance.mean(0).argmin(-1)  # (E,)
    return torch.bincount(closest, minlength=distance.shape[-1]).float() / distance.shape[1]
