"""Drawing an MPE world as mpe2 does, without a display: entities as filled discs with a dark rim.

mpe2's camera: the view spans the largest absolute coordinate of any entity
(``cam``), entity ``e`` at ``pos / cam * 0.9`` of the half-width from the centre,
radius ``size * 350`` pixels at a 700-pixel canvas; agents are drawn on top of
landmarks; colours are mpe2's RGB in [0, 1] times 200.
"""

from __future__ import annotations

import numpy as np
from torch import Tensor


def draw_discs(pos: Tensor, colors: Tensor, sizes: Tensor, num_agents: int, size: int = 700,
               zoom: float = 1.0) -> np.ndarray:
    """One env's frame: ``pos`` (N, 2), ``colors`` (N, 3), ``sizes`` (N,), the first ``num_agents``
    entities are agents -> (size, size, 3) uint8. ``zoom`` scales the radii (mpe2's dynamic rescaling)."""
    pos = pos.detach().cpu().double().numpy()
    colors = colors.detach().cpu().double().numpy()
    sizes = sizes.detach().cpu().double().numpy()
    cam = max(float(np.abs(pos).max()), 1e-6)
    img = np.full((size, size, 3), 255, dtype=np.uint8)
    scale = size / 700.0 * zoom
    ys, xs = np.mgrid[0:size, 0:size]
    draw_order = list(range(num_agents, len(pos))) + list(range(num_agents))  # agents on top
    for e in draw_order:  # a handful of entities; each disc is one vectorized mask over the pixels
        x = pos[e, 0] / cam * (size // 2) * 0.9 + size // 2
        y = -pos[e, 1] / cam * (size // 2) * 0.9 + size // 2
        r = sizes[e] * 350 * scale
        d2 = (xs - x) ** 2 + (ys - y) ** 2
        inside = d2 <= r * r
        img[inside] = (np.clip(colors[e], 0, 1) * 200).astype(np.uint8)
        ring = inside & (d2 >= (r - 1.5) ** 2)
        img[ring] = 0
    return img
