"""Multi-Robot Warehouse (RWARE, ``rware==2.0.0``), batched in torch.

Robots drive on a grid of shelves and corridors ("highways"). A robot faces one
of four directions (UP=0, DOWN=1, LEFT=2, RIGHT=3, as the reference's
``Direction``) and acts with NOOP=0, FORWARD=1, LEFT=2, RIGHT=3 (turns), TOGGLE_LOAD=4
(pick up the shelf under it, or put its shelf down, off the highways only). ``R``
shelves are requested at a time; carrying a requested shelf onto a goal cell
delivers it (reward 1 to the carrier; 1 to everyone with ``reward_type="global"``;
0.5 for the delivery and 0.5 for putting the shelf back down off the highways with
``"two_stage"``) and a new request, uniform over the shelves not requested, takes
its queue slot.

Moves are resolved as in the reference, which builds a graph of intended moves
(cell -> target cell) and commits per weakly connected component: a component
with a cycle commits the robots on the cycle (a stationary robot is a cycle of
length 1) unless the cycle has length 2 (two robots swapping: nobody moves); an
acyclic component (robots queued toward one free cell) commits its longest chain.
Ties between equally long chains go to the robot whose start cell comes first in
networkx's node order; that order is the graph's insertion order (the default
here) except for components less than half the graph's size, which networkx
iterates in Python set order (a hash artefact): ``step(..., tie_priority=...)``
takes that order from outside (the parity tests inject the reference's). Loaded
robots never drive into a cell holding a shelf unless a loaded robot stands there.
Vectorized over envs: the per-component rules become reachability over the
(E, A, A) "moves into" relation, by repeated squaring (log2 A rounds).

Shapes (E envs, A robots, S shelves, R requests, k = 2 sensor_range + 1, K = k^2):
obs ``{"agent": (E, A, D)}`` with, by ``observation_type``:

- ``"flattened"`` (default), D = 8 + 7 K: ``[x, y, carrying, direction one-hot (4),
  on_highway]`` then per sensor cell (row-major) ``[has_agent, its direction one-hot
  (4; [1,0,0,0] when empty), has_shelf, requested]``.
- ``"dict"``: the reference's dict observation flattened by ``gymnasium.spaces.flatten``:
  the same vector, except that normalised coordinates are cast to int as the
  reference's int32 location does (0, or 1 on the far edge).
- ``"image"``, D = L K: the reference's (L, k, k) image (one layer per
  ``image_observation_layers``, rotated to the robot's heading when
  ``image_observation_directional``), flattened C-order. Its AGENT_DIRECTION and
  AGENT_LOAD layers are written transposed (cell row x, column y), as the reference
  writes them; a robot whose transposed cell is off the grid is left out there (the
  reference raises IndexError).
- ``"image_dict"``, D = 6 + L K: ``gymnasium.spaces.flatten`` of the reference's
  ``{"features": [direction one-hot (4), on_highway, carrying], "image": ...}``.

reward ``(E, A)``; actions ``(E, A)`` in [0, 5); state ``(E, A * D)``.
The reference reports its 500-step limit as ``done``; here it is ``truncated``
(``max_inactivity_steps`` ends are ``terminated``). ``info["conflicts"]``: per env,
how many robots met each kind of conflict this step (``blocked_loaded``, ``same_target``
pairs, ``tie`` (equal queues contesting a cell), ``chain``, ``cycle``, ``swap`` pairs).
"""

from __future__ import annotations

import itertools
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from fastmarl.envs.api import (
    EnvSpec,
    FieldsState,
    GroupSpec,
    TimeStep,
    require_reset,
    reset_mask,
    reset_timestep,
    validate_actions,
)

GROUP = "agent"
NOOP, FORWARD, LEFT, RIGHT, TOGGLE_LOAD = range(5)
_DXY = ((0, -1), (0, 1), (-1, 0), (1, 0))  # UP, DOWN, LEFT, RIGHT as (dx, dy)
_CW = (0, 2, 3, 1)  # direction -> index in the clockwise order UP, RIGHT, DOWN, LEFT
_FROM_CW = (0, 3, 1, 2)
_ROT90 = (0, 2, 3, 1)  # direction -> the reference's np.rot90 k for directional images
REWARD_TYPES = {"GLOBAL": 0, "INDIVIDUAL": 1, "TWO_STAGE": 2}
OBSERVATION_TYPES = {"DICT": 0, "FLATTENED": 1, "IMAGE": 2, "IMAGE_DICT": 3}
IMAGE_LAYERS = {"SHELVES": 0, "REQUESTS": 1, "AGENTS": 2, "AGENT_DIRECTION": 3, "AGENT_LOAD": 4, "GOALS": 5,
                "ACCESSIBLE": 6}
DEFAULT_IMAGE_LAYERS = ("SHELVES", "REQUESTS", "AGENTS", "GOALS", "ACCESSIBLE")
SIZES = {"tiny": (1, 3), "small": (2, 3), "medium": (2, 5), "large": (3, 5)}  # (shelf_rows, shelf_columns)
DIFFICULTY = {"-easy": 2.0, "": 1.0, "-hard": 0.5}  # request queue size per robot


def _enum_value(v: Any, names: dict[str, int], what: str) -> int:
    """An rware enum member, its name (any case) or its value -> its value."""
    name = getattr(v, "name", v)
    if isinstance(name, str) and name.upper() in names:
        return names[name.upper()]
    if isinstance(v, int) and not isinstance(v, bool) and v in names.values():
        return v
    raise ValueError(f"{what} must be one of {list(names)} (or the rware enum), got {v!r}")


def layout_from_params(shelf_columns: int, shelf_rows: int, column_height: int) -> tuple[np.ndarray, list]:
    """(highway (H, W) bool, goals [(x, y)]) of the reference's parametric warehouse."""
    if shelf_columns % 2 != 1:
        raise ValueError(f"rware: shelf_columns must be odd (the reference supports only odd), got {shelf_columns}")
    H, W = (column_height + 1) * shelf_rows + 2, 3 * shelf_columns + 1
    y, x = np.indices((H, W))
    queue = (y > H - (column_height + 3)) & ((x == W // 2 - 1) | (x == W // 2))
    highway = (x % 3 == 0) | (y % (column_height + 1) == 0) | (y == H - 1) | queue
    return highway, [(W // 2 - 1, H - 1), (W // 2, H - 1)]


def layout_from_str(layout: str) -> tuple[np.ndarray, list]:
    """A layout string ('x' shelf, '.' corridor, 'g' goal; one line a row) -> (highway, goals)."""
    lines = layout.strip().replace(" ", "").split("\n")
    if any(len(line) != len(lines[0]) for line in lines):
        raise ValueError("rware: layout must be rectangular (every line as long as the first)")
    bad = sorted({c for line in lines for c in line.lower()} - set("gx."))
    if bad:
        raise ValueError(f"rware: layout may hold only 'x', '.', 'g', got {bad}")
    grid = np.array([list(line.lower()) for line in lines])
    goals = [(int(x), int(y)) for y, x in zip(*np.nonzero(grid == "g"))]
    if not goals:
        raise ValueError("rware: layout needs at least one goal 'g'")
    return grid != "x", goals


class Warehouse(FieldsState):
    """``num_envs`` copies of the reference's ``Warehouse``; see the module docstring.

    State tensors: ``agent_pos`` (E, A, 2) long [x, y]; ``agent_dir`` (E, A) long;
    ``carrying`` (E, A) long shelf index or -1; ``has_delivered`` (E, A) bool
    (two-stage rewards); ``shelf_pos`` (E, S, 2) long; ``requests`` (E, R) long shelf
    indices (the queue); ``t`` / ``inactive`` (E,) long steps / steps since a delivery.
    Shelves are numbered row-major over the non-highway cells, as the reference's ids - 1.
    ``compile=True`` runs the step (everything but auto-reset and the random draws)
    through ``torch.compile``.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}
    _STATE = ("agent_pos", "agent_dir", "carrying", "has_delivered", "shelf_pos", "requests", "t", "inactive")

    def __init__(self, num_envs: int = 1, device: str | torch.device = "cpu", seed: int | None = None,
                 shelf_columns: int = 3, column_height: int = 8, shelf_rows: int = 1, n_agents: int = 2,
                 msg_bits: int = 0, sensor_range: int = 1, request_queue_size: int = 2,
                 max_inactivity_steps: int | None = None, max_steps: int | None = 500, reward_type: Any = "individual",
                 layout: str | None = None, observation_type: Any = "flattened", image_observation_layers: Any = None,
                 image_observation_directional: bool = True, normalised_coordinates: bool = False,
                 render_mode: str | None = None, dtype: torch.dtype = torch.float32, validate: bool = True,
                 compile: bool = False, env_id: str = "rware-tiny-2ag-v2"):
        self.env_id = env_id
        for name, v in (("num_envs", num_envs), ("n_agents", n_agents), ("sensor_range", sensor_range),
                        ("request_queue_size + 1", request_queue_size + 1 if type(request_queue_size) is int else None),
                        ("max_steps", max_steps or 1), ("max_inactivity_steps", max_inactivity_steps or 1),
                        ("column_height", column_height), ("shelf_rows", shelf_rows), ("shelf_columns", shelf_columns)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{env_id}: {name} must be a positive int (request_queue_size >= 0), got {v!r}")
        if msg_bits != 0:
            raise ValueError(f"{env_id}: msg_bits={msg_bits!r} is not supported (its MultiDiscrete actions do not "
                             "fit a Discrete group); every registered rware id uses msg_bits=0")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode {render_mode!r} is not supported: use None or 'rgb_array'")
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
        if compile not in (False, True):
            raise ValueError(f"compile must be False or True (torch.compile), got {compile!r}")
        self.reward_type = _enum_value(reward_type, REWARD_TYPES, f"{env_id}: reward_type")
        self.observation_type = _enum_value(observation_type, OBSERVATION_TYPES, f"{env_id}: observation_type")
        layers = DEFAULT_IMAGE_LAYERS if image_observation_layers is None else image_observation_layers
        if isinstance(layers, str) or not len(layers):
            raise ValueError(f"{env_id}: image_observation_layers must be a non-empty list of layers, got {layers!r}")
        self.image_layers = [_enum_value(v, IMAGE_LAYERS, f"{env_id}: image layer") for v in layers]
        self.image_directional = bool(image_observation_directional)
        highway, goals = layout_from_str(layout) if layout else layout_from_params(shelf_columns, shelf_rows,
                                                                                   column_height)
        self.H, self.W = H, W = highway.shape
        self.num_envs, self.num_agents, self.sensor_range = num_envs, n_agents, sensor_range
        self.max_steps, self.max_inactivity_steps = max_steps, max_inactivity_steps
        self.normalised_coordinates, self.dtype, self.validate = normalised_coordinates, dtype, validate
        self.render_mode = render_mode
        self.device = dev = torch.empty(0, device=device).device
        homes = np.stack(np.nonzero(~highway)[::-1], -1).reshape(-1, 2)  # (S, 2) [x, y], row-major like the ids
        self.num_shelves, self.num_requests = S, R = len(homes), request_queue_size
        if n_agents > H * W or R > S:
            raise ValueError(f"{env_id}: {n_agents} robots / {R} requests do not fit {H * W} cells / {S} shelves")
        r = sensor_range
        # Grids are kept padded by r empty cells on every side (P cells), so a sensor window never leaves them.
        self._pW, P = W + 2 * r, (H + 2 * r) * (W + 2 * r)
        inside = np.pad(np.ones((H, W), bool), r)
        self.highway = torch.tensor(highway, device=dev).flatten()  # (C,) bool
        self._p_highway = torch.tensor(np.pad(highway, r), device=dev).flatten()  # (P,) bool
        self._p_inside = torch.tensor(inside, device=dev).flatten()  # (P,) bool: on the map
        self.goal_cells = torch.tensor([y * W + x for x, y in goals], device=dev)  # (G,)
        self._goal_list = [y * W + x for x, y in goals]
        self._goal_p = [(y + r) * self._pW + x + r for x, y in goals]
        self._p_goals = torch.zeros(P, dtype=dtype, device=dev)
        self._p_goals[self._goal_p] = 1.0
        self.shelf_home = torch.tensor(homes, device=dev)
        self._grid_dtype = torch.int16 if len(homes) < 2**15 else torch.int32
        k = 2 * r + 1
        self.K = K = k * k
        oy, ox = np.indices((k, k))
        window = torch.tensor((oy * self._pW + ox).flatten(), device=dev)  # (K,) offsets from the window's corner
        # one sensor cell's 7 values by code 3 * (0 no robot, else its direction + 1) + (0 no shelf, 1 shelf,
        # 2 requested shelf)
        codes = [[float(a > 0), *np.eye(4)[max(a - 1, 0)], float(sc > 0), float(sc == 2)]
                 for a in range(5) for sc in range(3)]
        self._cell_table = torch.tensor(codes, dtype=dtype, device=dev)  # (15, 7)
        # per heading, the window cells in the order of the reference's rotated image (rot90 by k = _ROT90[d])
        perm = torch.arange(K).view(k, k)
        rot = [torch.rot90(perm, _ROT90[d] if self.image_directional else 0, (0, 1)).flatten() for d in range(4)]
        self._window, self._image_window = window, window[torch.stack(rot).to(dev)]  # (K,), (4, K)
        self.obs_dim = {1: 8 + 7 * K, 0: 8 + 7 * K, 2: len(self.image_layers) * K,
                        3: 6 + len(self.image_layers) * K}[self.observation_type]
        names = tuple(f"agent_{i}" for i in range(n_agents))
        group = GroupSpec(GROUP, names, self._observation_space(), gym.spaces.Discrete(5))
        self.spec = EnvSpec(env_id, {GROUP: group}, state_dim=n_agents * self.obs_dim, max_episode_steps=max_steps)
        self._dxy = torch.tensor(_DXY, device=dev)
        self._cw, self._from_cw = torch.tensor(_CW, device=dev), torch.tensor(_FROM_CW, device=dev)
        self._gen = torch.Generator(device=dev)
        self._was_reset = False  # step() before the first reset() is refused (api.require_reset)
        self._gen.manual_seed(seed if seed is not None else int(torch.randint(0, 2**62, (1,)).item()))
        E, A, li = num_envs, n_agents, dict(dtype=torch.long, device=dev)
        self.agent_pos, self.agent_dir = torch.zeros(E, A, 2, **li), torch.zeros(E, A, **li)
        self.carrying = torch.full((E, A), -1, **li)
        self.has_delivered = torch.zeros(E, A, dtype=torch.bool, device=dev)
        self.shelf_pos = self.shelf_home.expand(E, S, 2).clone()
        self.requests = torch.zeros(E, R, **li)
        self.t, self.inactive = torch.zeros(E, **li), torch.zeros(E, **li)
        if compile:
            # every env's step is one code object to dynamo, specialised per env (sizes, kwargs): a process that
            # builds many compiled envs (tests, benchmarks, evaluation envs) needs more than the default 8 entries
            torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
        self._advance_fn = (torch.compile(self._advance, dynamic=False, fullgraph=True,
                                          options={"assert_indirect_indexing": False}) if compile
                            else self._advance)
        self.reset()
        self._was_reset = False  # the constructor's state is a placeholder, not a seeded episode start

    def _observation_space(self) -> gym.spaces.Box:
        if self.observation_type in (0, 1):
            return gym.spaces.Box(-np.inf, np.inf, (self.obs_dim,), np.float32)
        high = np.repeat([4.0 if la == IMAGE_LAYERS["AGENT_DIRECTION"] else 1.0 for la in self.image_layers], self.K)
        low = np.zeros_like(high)
        if self.observation_type == 3:
            low, high = np.concatenate([np.full(6, -np.inf), low]), np.concatenate([np.full(6, np.inf), high])
        return gym.spaces.Box(low.astype(np.float32), high.astype(np.float32), dtype=np.float32)

    # -- grids and observations -----------------------------------------------------------
    def _cells(self, pos: Tensor) -> Tensor:
        """(..., 2) [x, y] -> (...) cell index y W + x."""
        return pos[..., 1] * self.W + pos[..., 0]

    def _pcells(self, pos: Tensor) -> Tensor:
        """(..., 2) [x, y] -> (...) index in the padded grids."""
        r = self.sensor_range
        return (pos[..., 1] + r) * self._pW + pos[..., 0] + r

    def _grids(self, agent_pos: Tensor, shelf_pos: Tensor) -> tuple[Tensor, Tensor]:
        """(agent grid, shelf grid), each (E, P) int16 over the padded grid: index + 1 of what stands on a
        cell, 0 if nothing."""
        E, A, S, dev, gd = self.num_envs, self.num_agents, self.num_shelves, self.device, self._grid_dtype
        P = self._p_inside.shape[0]
        ag = torch.zeros(E, P, dtype=gd, device=dev).scatter_(
            1, self._pcells(agent_pos), torch.arange(1, A + 1, dtype=gd, device=dev).expand(E, -1))
        sh = torch.zeros(E, P, dtype=gd, device=dev).scatter_(
            1, self._pcells(shelf_pos), torch.arange(1, S + 1, dtype=gd, device=dev).expand(E, -1))
        return ag, sh

    def _observe(self, agent_pos: Tensor, agent_dir: Tensor, carrying: Tensor, requests: Tensor, ag: Tensor,
                 sh: Tensor) -> Tensor:
        """(E, A, D) observations of the state given (``ag``/``sh`` its grids, see :meth:`_grids`)."""
        E, A, S, K, H, W, dt, dev = (self.num_envs, self.num_agents, self.num_shelves, self.K, self.H, self.W,
                                     self.dtype, self.device)
        requested = torch.zeros(E, S + 1, dtype=torch.bool, device=dev).scatter_(1, requests + 1, True)
        requested[:, 0] = False  # (E, S + 1): index 0 is "no shelf"
        x, y = agent_pos[..., 0], agent_pos[..., 1]
        base = y * self._pW + x  # (E, A) top-left corner of the window in the padded grid
        dir1h = (agent_dir[..., None] == torch.arange(4, device=dev)).to(dt)  # (one_hot asserts; this fuses)
        highway = self._p_highway[self._pcells(agent_pos)].to(dt)[..., None]
        loaded = (carrying >= 0).to(dt)[..., None]
        if self.observation_type in (0, 1):
            idx = (base[..., None] + self._window).view(E, A * K)
            a, s = ag.gather(1, idx).long(), sh.gather(1, idx).long()  # (E, A K)
            code_a = torch.cat([torch.zeros(E, 1, dtype=torch.long, device=dev), agent_dir + 1], 1).gather(1, a)
            code_s = torch.where(s > 0, 1 + requested.gather(1, s).long(), 0)
            cell = self._cell_table[3 * code_a + code_s].view(E, A, 7 * K)
            xy = agent_pos.to(dt)
            if self.normalised_coordinates:
                # the reference divides in float64 and stores float32
                xy = (agent_pos.double() / torch.tensor([W - 1, H - 1], device=dev)).float().to(dt)
                if self.observation_type == 0:
                    xy = xy.floor()  # the reference's dict location is int32
            return torch.cat([xy, loaded, dir1h, highway, cell], -1)
        layers = []  # (E, P) each, over the padded grid (the padding reads 0 in every layer, as the reference's)
        P, r = self._p_inside.shape[0], self.sensor_range
        for la in self.image_layers:
            if la == IMAGE_LAYERS["SHELVES"]:
                layers.append((sh > 0).to(dt))
            elif la == IMAGE_LAYERS["REQUESTS"]:
                layers.append(requested.gather(1, sh.long()).to(dt))
            elif la == IMAGE_LAYERS["AGENTS"]:
                layers.append((ag > 0).to(dt))
            elif la in (IMAGE_LAYERS["AGENT_DIRECTION"], IMAGE_LAYERS["AGENT_LOAD"]):
                value = (agent_dir + 1).to(dt) if la == IMAGE_LAYERS["AGENT_DIRECTION"] else loaded[..., 0]
                fits = (x < H) & (y < W)  # the reference writes layer[x, y]
                t_cell = torch.where(fits, (x + r) * self._pW + y + r, P)
                grid = torch.zeros(E, P + 1, dtype=dt, device=dev).scatter_(1, t_cell, value * fits)
                layers.append(grid[:, :-1])
            elif la == IMAGE_LAYERS["GOALS"]:
                layers.append(self._p_goals.expand(E, -1))
            else:  # ACCESSIBLE
                layers.append(((ag == 0) & self._p_inside).to(dt))
        L = len(layers)
        idx = (base[..., None] + self._image_window[agent_dir]).view(E, 1, A * K).expand(-1, L, -1)
        image = torch.stack(layers, 1).gather(2, idx).view(E, L, A, K).transpose(1, 2).reshape(E, A, L * K)
        if self.observation_type == 2:
            return image
        return torch.cat([dir1h, highway, loaded, image], -1)

    def _obs(self) -> dict[str, Tensor]:
        ag, sh = self._grids(self.agent_pos, self.shelf_pos)
        return {GROUP: self._observe(self.agent_pos, self.agent_dir, self.carrying, self.requests, ag, sh)}

    def state(self) -> Tensor:
        """(E, A * D): every robot's observation, in agent order."""
        return self._obs()[GROUP].flatten(1)

    # -- reset ------------------------------------------------------------------------------
    def _reset_where(self, mask: Tensor) -> None:
        E, A, S, R, C, g, dev = self.num_envs, self.num_agents, self.num_shelves, self.num_requests, self.H * self.W, \
            self._gen, self.device
        cells = torch.rand(E, C, generator=g, device=dev).argsort(1)[:, :A]  # distinct cells, anywhere
        pos = torch.stack([cells % self.W, cells // self.W], -1)
        dirs = torch.randint(0, 4, (E, A), generator=g, device=dev)
        req = torch.rand(E, S, generator=g, device=dev).argsort(1)[:, :R]  # distinct shelves
        m1, m2 = mask[:, None], mask[:, None, None]
        self.agent_pos = torch.where(m2, pos, self.agent_pos)
        self.agent_dir = torch.where(m1, dirs, self.agent_dir)
        self.carrying = torch.where(m1, -1, self.carrying)
        self.has_delivered = self.has_delivered & ~m1
        self.shelf_pos = torch.where(m2, self.shelf_home, self.shelf_pos)
        self.requests = torch.where(m1, req, self.requests)
        self.t, self.inactive = torch.where(mask, 0, self.t), torch.where(mask, 0, self.inactive)

    def reset(self, seed: int | None = None, mask: Tensor | None = None) -> TimeStep:
        """Reset all envs (mask None) or those where ``mask`` (E,) bool is True."""
        mask = reset_mask(mask, self.num_envs, self.device)
        if seed is not None:
            self._gen.manual_seed(int(seed))
        self._reset_where(mask)
        self._was_reset = True
        return reset_timestep(self.spec, self._obs(), self.dtype)

    # -- dynamics ---------------------------------------------------------------------------
    def _resolve(self, agent_pos: Tensor, agent_dir: Tensor, carrying: Tensor, ag: Tensor, sh: Tensor,
                 action: Tensor, tie_priority: Tensor | None) -> tuple[Tensor, Tensor, dict]:
        """Which robots' actions go ahead: (action (E, A) with cancelled and failed moves set to NOOP, target
        cell (E, A) in the padded grid, conflict counts {name: (E,) long}); ``ag``/``sh`` the grids before the step."""
        A, W, H, dev = self.num_agents, self.W, self.H, self.device
        cell = self._pcells(agent_pos)
        step = self._dxy[agent_dir] * (action == FORWARD)[..., None]
        tpos = torch.stack([(agent_pos[..., 0] + step[..., 0]).clamp(0, W - 1),
                            (agent_pos[..., 1] + step[..., 1]).clamp(0, H - 1)], -1)
        target = self._pcells(tpos)  # (E, A) in the padded grid
        moving = target != cell
        occupant = ag.gather(1, target).long() - 1  # (E, A) robot standing on the target, -1 if none
        loaded = carrying >= 0
        occupant_loaded = (occupant >= 0) & loaded.gather(1, occupant.clamp(min=0))
        blocked = loaded & moving & (sh.gather(1, target) > 0) & ~occupant_loaded
        action = torch.where(blocked, NOOP, action)
        target, moving = torch.where(blocked, cell, target), moving & ~blocked
        ar = torch.arange(A, device=dev)
        # nxt[i]: the robot i drives into (itself when standing still), A when the target cell is free
        nxt = torch.where(moving, torch.where(occupant >= 0, occupant, A), ar)
        reach = ((nxt[..., None] == ar) | (ar[:, None] == ar)).float()  # (E, A, A): j lies on i's path (or j = i)
        for _ in range(max(1, (A - 1).bit_length())):
            reach = (reach @ reach).clamp(max=1.0)
        reach = reach > 0
        tree = (reach & (nxt == A)[:, None, :]).any(-1)  # i's chain ends at a free cell
        on_cycle = ~tree & reach.gather(1, nxt.clamp(max=A - 1)[..., None].expand(-1, -1, A)).diagonal(0, 1, 2)
        cycle_len = (reach & on_cycle[:, None, :]).sum(-1)
        depth = reach.sum(-1)  # robots from i to the free cell, i included
        behind = torch.where(reach, depth[:, :, None], 0).amax(1) - depth  # longest queue of robots behind i
        if tie_priority is None:
            # networkx adds cells in the order start_0, target_0, start_1, ...: a start cell is first seen as a
            # start or as an earlier robot's target
            seen_as_target = (cell[:, :, None] == target[:, None, :]) & (ar[None, :] < ar[:, None])  # [i, j]
            tie_priority = torch.where(seen_as_target, 2 * ar + 1, 2 * A).amin(-1).clamp(max=2 * ar)
        rivals = moving[:, None, :] & (target[:, None, :] == target[:, :, None]) & (ar[:, None] != ar[None, :])
        level = behind[:, None, :] == behind[:, :, None]
        beats = (behind[:, None, :] > behind[:, :, None]) | (
            level & (tie_priority[:, None, :] < tie_priority[:, :, None]))
        wins = ~(rivals & beats).any(-1)  # (E, A): best of the robots wanting the same cell
        commit = torch.where(tree, ~(reach & ~wins[:, None, :]).any(-1), on_cycle & (cycle_len != 2))
        action = torch.where(commit, action, NOOP)
        stats = {"blocked_loaded": blocked.sum(1), "same_target": (rivals.any(-1) & moving).sum(1) // 2,
                 "tie": (moving & (rivals & level).any(-1)).sum(1),
                 "chain": (moving & (occupant >= 0) & tree).sum(1), "cycle": (on_cycle & (cycle_len > 2)).sum(1),
                 "swap": (on_cycle & (cycle_len == 2)).sum(1) // 2}
        return action, target, stats

    def _advance(self, agent_pos: Tensor, agent_dir: Tensor, carrying: Tensor, has_delivered: Tensor,
                 shelf_pos: Tensor, requests: Tensor, t: Tensor, inactive: Tensor, action: Tensor,
                 request_draws: Tensor, tie_priority: Tensor | None) -> tuple:
        """One step of every env, a pure function of the state (no auto-reset): returns the new state
        (as :attr:`_STATE`), obs (E, A, D), rewards (E, A), terminated, truncated (E,) and the conflict counts."""
        E, A, S, dev, dt = self.num_envs, self.num_agents, self.num_shelves, self.device, self.dtype
        ag, sh = self._grids(agent_pos, shelf_pos)
        action, target, stats = self._resolve(agent_pos, agent_dir, carrying, ag, sh, action, tie_priority)
        cell = self._pcells(agent_pos)
        fwd = action == FORWARD
        r = self.sensor_range
        tpos = torch.stack([target % self._pW - r, target // self._pW - r], -1)
        agent_pos = torch.where(fwd[..., None], tpos, agent_pos)
        turn = torch.where(action == RIGHT, 1, torch.where(action == LEFT, -1, 0))
        agent_dir = self._from_cw[(self._cw[agent_dir] + turn) % 4]
        toggle, loaded, under = action == TOGGLE_LOAD, carrying >= 0, sh.gather(1, cell).long()
        pick = toggle & ~loaded & (under > 0)
        drop = toggle & loaded & ~self._p_highway[cell]
        rewards = torch.zeros(E, A, dtype=dt, device=dev)
        if self.reward_type == REWARD_TYPES["TWO_STAGE"]:
            rewards = rewards + 0.5 * (drop & has_delivered).to(dt)
        has_delivered = has_delivered & ~drop
        carrying = torch.where(pick, under - 1, torch.where(drop, -1, carrying))
        # carried shelves ride along; row S of the padded copy takes the robots that carry nothing
        pad = torch.cat([shelf_pos, shelf_pos.new_zeros(E, 1, 2)], 1)
        pad = pad.scatter(1, torch.where(carrying >= 0, carrying, S)[..., None].expand(-1, -1, 2), agent_pos)
        shelf_pos = pad[:, :S]
        ag, sh = self._grids(agent_pos, shelf_pos)
        delivered = torch.zeros(E, dtype=torch.bool, device=dev)
        n_hits = torch.zeros(E, 1, dtype=torch.long, device=dev)
        G = len(self._goal_list)
        for goal in self._goal_p:  # goals in order: a new request may be the shelf on a later goal
            shelf = sh[:, goal].long() - 1
            slot_hit = requests == shelf[:, None]
            hit = (shelf >= 0) & slot_hit.any(1)
            draw = request_draws.gather(1, n_hits.clamp(max=G - 1))  # the d-th delivery of the step takes draw d
            # the draw-th shelf not requested: the least fixpoint of new = draw + #(requests <= new), reached from
            # new = draw in at most R rounds
            new = draw
            for _ in range(self.num_requests):
                new = draw + (requests <= new).sum(1, keepdim=True)
            new = new[:, 0]
            requests = torch.where(hit[:, None] & slot_hit, new[:, None], requests)
            who = (ag[:, goal, None].long() - 1 == torch.arange(A, device=dev)) & hit[:, None]
            if self.reward_type == REWARD_TYPES["GLOBAL"]:
                rewards = rewards + hit[:, None].to(dt)
            elif self.reward_type == REWARD_TYPES["INDIVIDUAL"]:
                rewards = rewards + who.to(dt)
            else:
                rewards = rewards + 0.5 * who.to(dt)
                has_delivered = has_delivered | who
            delivered = delivered | hit
            n_hits = n_hits + hit[:, None]
        inactive = torch.where(delivered, 0, inactive + 1)
        t = t + 1
        never = torch.zeros(E, dtype=torch.bool, device=dev)
        term = inactive >= self.max_inactivity_steps if self.max_inactivity_steps else never
        trunc = (t >= self.max_steps if self.max_steps else never) & ~term
        obs = self._observe(agent_pos, agent_dir, carrying, requests, ag, sh)
        state = (agent_pos, agent_dir, carrying, has_delivered, shelf_pos, requests, t, inactive)
        return state, obs, rewards, term, trunc, stats

    def step(self, actions: dict[str, Tensor], tie_priority: Tensor | None = None,
             request_draws: Tensor | None = None) -> TimeStep:
        """Step every env; see :mod:`fastmarl.envs.api`. Auto-resets ended episodes. For parity tests with the
        reference: ``tie_priority`` (E, A) long, lower wins a tie between equally long queues (default: networkx's
        insertion order of the start cells); ``request_draws`` (E, G) long in [0, S - R): for the d-th delivery of
        the step (goals in order), the index among the unrequested shelves (in shelf order) of the new request
        (default: uniform draws from the env's generator)."""
        require_reset(self)
        if self.validate:
            validate_actions(self.spec, actions, self.num_envs, self.device)
        if request_draws is None:
            n_free = max(self.num_shelves - self.num_requests, 1)
            request_draws = torch.randint(0, n_free, (self.num_envs, len(self._goal_list)), generator=self._gen,
                                          device=self.device)
        state = tuple(getattr(self, k) for k in self._STATE)
        state, obs, rewards, term, trunc, stats = self._advance_fn(*state, actions[GROUP].long(), request_draws,
                                                                    tie_priority)
        for k, v in zip(self._STATE, state):
            setattr(self, k, v)
        done = term | trunc
        final_obs, final_state = {GROUP: obs}, None
        if bool(done.any()):
            final_state = obs.flatten(1)
            self._reset_where(done)
            obs = self._obs()[GROUP]
        return TimeStep(obs={GROUP: obs}, reward={GROUP: rewards}, terminated=term, truncated=trunc,
                        final_obs=final_obs, final_state=final_state, info={"conflicts": stats})

    # -- rendering, checkpoints -------------------------------------------------------------
    def render(self, env_index: int = 0, cell: int = 16) -> np.ndarray:
        """RGB (H * cell, W * cell, 3): corridors light, goals green, shelves brown (requested: red), robots
        blue (loaded: dark) with a white dot on their front side."""
        if not 0 <= env_index < self.num_envs:
            raise IndexError(f"env_index {env_index} out of range for num_envs={self.num_envs}")
        img = np.full((self.H * cell, self.W * cell, 3), 235, np.uint8)

        def paint(c: int, colour: tuple, margin: int) -> None:
            y, x = divmod(int(c), self.W)
            img[y * cell + margin:(y + 1) * cell - margin, x * cell + margin:(x + 1) * cell - margin] = colour
        for c in self._goal_list:
            paint(c, (60, 180, 60), 0)
        req = set(self.requests[env_index].tolist())
        for s, c in enumerate(self._cells(self.shelf_pos[env_index]).tolist()):
            paint(c, (200, 40, 40) if s in req else (150, 100, 50), 1)
        for a, c in enumerate(self._cells(self.agent_pos[env_index]).tolist()):
            paint(c, (20, 40, 120) if self.carrying[env_index, a] >= 0 else (60, 110, 230), cell // 4)
            dx, dy = _DXY[int(self.agent_dir[env_index, a])]
            y, x = divmod(int(c), self.W)
            cy, cx = y * cell + cell // 2 + dy * cell // 4, x * cell + cell // 2 + dx * cell // 4
            img[cy - 1:cy + 1, cx - 1:cx + 1] = 255
        return img


# fastmarl's own kwargs, beside the reference's constructor arguments
_EXTRA = dict(dtype=torch.float32, validate=True, compile=False)
_REFERENCE = dict(shelf_columns=3, column_height=8, shelf_rows=1, n_agents=2, msg_bits=0, sensor_range=1,
                  request_queue_size=2, max_inactivity_steps=None, max_steps=500, reward_type="individual",
                  layout=None, observation_type="flattened", image_observation_layers=None,
                  image_observation_directional=True, normalised_coordinates=False, render_mode=None)
_IMAGE_IDS = {"-img": ("image", True), "-imgdict": ("image_dict", True), "-img-Nd": ("image", False),
              "-imgdict-Nd": ("image_dict", False)}


def rware_ids() -> dict[str, dict[str, Any]]:
    """The ids ``rware==2.0.0`` registers on import (``rware-{size}-{n}ag{diff}-v2``) and those its
    ``image_registration()`` adds (``rware-img[dict][-Nd]-...``) -> their constructor kwargs (non-default ones)."""
    out = {}
    for prefix, size, diff, n in itertools.product(["", *_IMAGE_IDS], SIZES, DIFFICULTY, range(1, 20)):
        rows, cols = SIZES[size]
        kw = dict(shelf_rows=rows, shelf_columns=cols, n_agents=n, request_queue_size=int(n * DIFFICULTY[diff]))
        if prefix:
            kw.update(observation_type=_IMAGE_IDS[prefix][0], image_observation_directional=_IMAGE_IDS[prefix][1])
        out[f"rware{prefix}-{size}-{n}ag{diff}-v2"] = kw
    return out


def rware_defaults(kwargs: dict[str, Any]) -> dict[str, Any]:
    """One id's full constructor arguments: the reference's defaults, ``kwargs`` from :func:`rware_ids`,
    and fastmarl's own options (``make`` passes them to :class:`Warehouse` through the registry's
    ``kwargs_factory``)."""
    return {**_REFERENCE, **kwargs, **_EXTRA}
