"""Level-Based Foraging (LBF, ``lbforaging==2.0.0``), batched in torch.

Players with levels walk a grid (actions NONE=0, NORTH=1 (row - 1), SOUTH=2, WEST=3
(column - 1), EAST=4, LOAD=5) and load food with levels. The reference's rules, all
reproduced here:

- An action is valid as the reference's ``_is_valid_action``: a move stays on the grid
  and does not enter food (other players do not block it); LOAD needs food in one of the
  four neighbouring cells. Invalid actions become NONE. ``action_mask`` (E, A, 6) marks
  the valid ones for the next step.
- Moves: every player claims a cell (its target, or its own cell for NONE/LOAD); a player
  moves only if no other player claims its target. A player can thus move onto a player
  whose own move failed, and the two share a cell (the reference does the same).
- Loads: the reference serves loaders one at a time (in ``set.pop()`` order), each with
  every loader next to its food. As spawned food is never closer than the 3x3 block and
  the +-2 cross of another, no cell touches two food, so that order never matters and
  each food's group is simply every loader next to it, all food at once: if the group's
  levels sum to at least the food's level the food is removed and each member gets
  ``level * food_level`` (divided by ``group_level * food_spawned`` with
  ``normalize_reward``, the sum of the levels spawned); else each gets ``-penalty``.
  (A state loaded by hand with a cell next to two food would sum both.)
- Episodes end when no food is left (``terminated``) or after ``max_episode_steps``
  (``truncated``; the reference reports both as ``done``).
- Spawn: player levels uniform in [min, max] (per-player ranges permuted), cells uniform
  over the grid, each avoiding the cells of the players placed before it and, at an
  auto-reset, the last cells of those not yet placed (the reference keeps old positions
  while it respawns; ``reset()`` draws like the reference's first reset). Food levels:
  ``max_food_level`` or the sum of the three lowest player levels (``force_coop``: that
  maximum, else uniform from ``min_food_level``), per-food ranges permuted; food cells
  uniform over the interior, away from players and off the 3x3 block and the +-2 cross of
  earlier food; when no cell is left the rest are not spawned (the reference's 1,000 tries).

Shapes (E envs, A players, F = max_num_food): obs ``{"agent": (E, A, 3 F + 3 A)}`` float
(``observe_agent_levels=False``: 3 F + 2 A): F food slots ``(row, col, level)`` of the food
within ``sight`` (Chebyshev) in row-major order, then the player slots: self first, then the
others in index order, of those inside the (2 sight + 1)-square window from the clipped
origin ``max(pos - sight, 0)``; coordinates relative to that origin; empty slots
``(-1, -1, 0)``. reward (E, A); actions (E, A) in [0, 6); state (E, A D) = every player's obs.
``info["conflicts"]`` counts per env: ``invalid`` actions, ``move_collision`` (moves that
failed on a contested cell), ``overlap`` (players that ended on a shared cell), ``load``,
``joint_load`` (by two or more), ``failed_load`` (groups too weak).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any, Sequence

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from fastmarl.envs.api import (
    ActionError,
    EnvSpec,
    FieldsState,
    GroupSpec,
    TimeStep,
    check_action_structure,
    require_reset,
    reset_mask,
    reset_timestep,
    validate_actions,
)

GROUP = "agent"
NONE, NORTH, SOUTH, WEST, EAST, LOAD = range(6)
CONFLICTS = ("invalid", "move_collision", "overlap", "load", "joint_load", "failed_load")  # info["conflicts"]
_DELTA = ((0, 0), (-1, 0), (1, 0), (0, -1), (0, 1), (0, 0))  # action -> (d_row, d_col)


class _Counts(Mapping):
    """``info["conflicts"]``: name (of CONFLICTS) -> (E,) long count, sliced from the (E, 6) tensor on access."""

    def __init__(self, stats: Tensor):
        self._stats = stats

    def __getitem__(self, name: str) -> Tensor:
        if name not in CONFLICTS:
            raise KeyError(f"no conflict count {name!r}; counted: {list(CONFLICTS)}")
        return self._stats[:, CONFLICTS.index(name)]

    def __iter__(self):
        return iter(CONFLICTS)

    def __len__(self) -> int:
        return len(CONFLICTS)


def _levels(v: Any, n: int, what: str, minimum: int) -> np.ndarray:
    """A scalar or a length-``n`` sequence of ints >= ``minimum`` -> (n,) int64."""
    arr = np.full(n, v) if np.isscalar(v) else np.asarray(list(v) if isinstance(v, Sequence) else v)
    if arr.shape != (n,) or arr.dtype.kind not in "iu" or (arr < minimum).any():
        raise ValueError(f"{what} must be an int >= {minimum} or a list of {n} such ints, got {v!r}")
    return arr.astype(np.int64)


class Foraging(FieldsState):
    """``num_envs`` copies of the reference's ``ForagingEnv``; see the module docstring.

    State tensors: ``agent_pos`` (E, A, 2) long [row, col]; ``agent_level`` (E, A) long;
    ``food_pos`` (E, F, 2) long [row, col] ((-1, -1) for food never spawned); ``food_level``
    (E, F) long (0: eaten or never spawned); ``food_spawned`` (E,) long; ``t`` (E,) long.
    The food slots may be in any order. ``compile=True`` runs the step and the auto-reset (all
    but the random draws) through ``torch.compile``, with scalar C++ loops on CPU.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 5}
    _STATE = ("agent_pos", "agent_level", "food_pos", "food_level", "food_spawned", "t")

    def __init__(self, num_envs: int = 1, device: str | torch.device = "cpu", seed: int | None = None,
                 players: int = 2, min_player_level: Any = 1, max_player_level: Any = 2, min_food_level: Any = 1,
                 max_food_level: Any = None, field_size: Any = (8, 8), max_num_food: int = 2, sight: int = 8,
                 max_episode_steps: int = 50, force_coop: bool = False, normalize_reward: bool = True,
                 grid_observation: bool = False, observe_agent_levels: bool = True, penalty: float = 0.0,
                 render_mode: str | None = None, dtype: torch.dtype = torch.float32, validate: bool = True,
                 compile: bool = False, env_id: str = "Foraging-8x8-2p-2f-v3"):
        self.env_id = env_id
        if isinstance(field_size, int) and not isinstance(field_size, bool):
            field_size = (field_size, field_size)
        if (not isinstance(field_size, (tuple, list)) or len(field_size) != 2
                or any(not isinstance(v, int) or isinstance(v, bool) or v < 3 for v in field_size)):
            raise ValueError(f"{env_id}: field_size must be (rows, cols) of ints >= 3 (food spawns off the border "
                             f"rows and columns), got {field_size!r}")
        for name, v, low in (("num_envs", num_envs, 1), ("players", players, 1), ("max_num_food", max_num_food, 1),
                             ("sight", sight, 0), ("max_episode_steps", max_episode_steps, 1)):
            if not isinstance(v, int) or isinstance(v, bool) or v < low:
                raise ValueError(f"{env_id}: {name} must be an int >= {low}, got {v!r}")
        if grid_observation:
            raise ValueError(f"{env_id}: grid_observation=True is not supported: lbforaging 2.0.0 cannot build it "
                             "either (its Box gets shape (3,) for a (3, k, k) grid); use the vector observations")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode {render_mode!r} is not supported: use None or 'rgb_array'")
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
        if compile not in (False, True):
            raise ValueError(f"compile must be False or True (torch.compile), got {compile!r}")
        if not isinstance(penalty, (int, float)) or isinstance(penalty, bool) or not np.isfinite(penalty):
            raise ValueError(f"{env_id}: penalty must be a finite number, got {penalty!r}")
        H, W = field_size
        A, F = players, max_num_food
        interior = (H - 2) * (W - 2)
        if A + F > H * W or F > interior:
            raise ValueError(f"{env_id}: {A} players and {F} food do not fit a {H}x{W} grid (players need a cell "
                             f"each, food one of the {interior} interior cells, all distinct)")
        pl_lo, pl_hi = (_levels(min_player_level, A, f"{env_id}: min_player_level", 0),
                        _levels(max_player_level, A, f"{env_id}: max_player_level", 0))
        f_lo = _levels(min_food_level, F, f"{env_id}: min_food_level", 1)
        f_hi = None if max_food_level is None else _levels(max_food_level, F, f"{env_id}: max_food_level", 1)
        if (pl_lo > pl_hi).any() or (f_hi is not None and (f_lo > f_hi).any()):
            raise ValueError(f"{env_id}: every min level must be <= its max level (players {pl_lo} / {pl_hi}, food "
                             f"{f_lo} / {f_hi})")
        if f_hi is None and not force_coop and f_lo.max() > np.sort(pl_lo)[:3].sum():
            raise ValueError(f"{env_id}: min_food_level {f_lo.max()} exceeds the food maximum (the sum of the three "
                             f"lowest player levels) of some resets; give max_food_level or lower min_food_level")
        self.H, self.W, self.num_agents, self.num_food, self.sight = H, W, A, F, sight
        self.num_envs, self.max_episode_steps, self.force_coop = num_envs, max_episode_steps, bool(force_coop)
        self.normalize_reward, self.observe_agent_levels = bool(normalize_reward), bool(observe_agent_levels)
        self.penalty, self.render_mode, self.dtype, self.validate = float(penalty), render_mode, dtype, validate
        self.device = dev = torch.empty(0, device=device).device
        self._pl_lo, self._pl_hi = torch.tensor(pl_lo, device=dev), torch.tensor(pl_hi, device=dev)
        self._pl_permute = bool((pl_lo != pl_lo[0]).any() or (pl_hi != pl_hi[0]).any())
        self._f_lo = torch.tensor(f_lo, device=dev)
        self._f_hi = None if f_hi is None else torch.tensor(f_hi, device=dev)
        self._PW = W + 2  # grids are kept padded by one cell (a wall) on every side
        wall = np.pad(np.zeros((H, W), bool), 1, constant_values=True)
        self._wall = torch.tensor(wall, device=dev).flatten()  # (P,)
        self._nb = torch.tensor([-self._PW, self._PW, -1, 1], device=dev)  # N, S, W, E in the padded grid
        self._delta = torch.tensor(_DELTA, device=dev)
        self._lower = torch.ones(A, A, dtype=torch.bool, device=dev).tril(-1)  # [b, c]: c < b
        r, c = np.indices((H, W))
        self._interior = torch.tensor(((r > 0) & (r < H - 1) & (c > 0) & (c < W - 1)).flatten(), device=dev)
        # food k + 1 avoids the 3x3 block and the +-2 cross of every earlier food (the reference's spawn check)
        dr, dc = np.abs(r.reshape(-1, 1) - r.reshape(1, -1)), np.abs(c.reshape(-1, 1) - c.reshape(1, -1))
        near = (np.maximum(dr, dc) <= 1) | ((dr == 0) & (dc <= 2)) | ((dc == 0) & (dr <= 2))
        self._near = torch.tensor(near, device=dev)  # (C, C)
        top = sum(sorted(pl_hi)[:3])
        self.max_food_level = int(f_hi.max()) if f_hi is not None else int(top)
        self.obs_dim = 3 * F + (3 if observe_agent_levels else 2) * A
        names = tuple(f"agent_{i}" for i in range(A))
        group = GroupSpec(GROUP, names, self._observation_space(int(pl_hi.max())), gym.spaces.Discrete(6))
        self.spec = EnvSpec(env_id, {GROUP: group}, state_dim=A * self.obs_dim, max_episode_steps=max_episode_steps,
                            has_action_mask=True)
        self._gen = torch.Generator(device=dev)
        self._gen.manual_seed(seed if seed is not None else int(torch.randint(0, 2**62, (1,)).item()))
        E, li = num_envs, dict(dtype=torch.long, device=dev)
        self.agent_pos, self.agent_level = torch.zeros(E, A, 2, **li), torch.zeros(E, A, **li)
        self.food_pos, self.food_level = torch.zeros(E, F, 2, **li), torch.zeros(E, F, **li)
        self.food_spawned, self.t = torch.zeros(E, **li), torch.zeros(E, **li)
        if compile:
            torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
        # scalar C++ loops: every inner axis here (players, food, 2 coordinates) is far shorter than a SIMD vector,
        # and inductor's masked vector loops over them were 8-10x slower at 1,024-8,192 envs
        # and a C++ wrapper around the kernels (CPU): a fifth less fixed cost per call, most of a step at few envs
        opts = {"assert_indirect_indexing": False, "cpp.simdlen": 1, "cpp_wrapper": dev.type == "cpu"}
        self._advance_fn = (torch.compile(self._advance, dynamic=False, fullgraph=True, options=opts) if compile
                            else self._advance)
        self._respawn_fn = (torch.compile(self._respawn, dynamic=True, fullgraph=True, options=opts) if compile
                            else self._respawn)  # any number of envs at once
        self.reset()
        self._was_reset = False  # the constructor's state is a placeholder, not a seeded episode start

    def _observation_space(self, max_player_level: int) -> gym.spaces.Box:
        # the reference's bounds; coordinates up to max(rows, cols) - 1 (equal to the reference's on square grids,
        # where its bounds hold every observation)
        hi = max(self.H, self.W) - 1
        food = [[-1, -1, 0], [hi, hi, self.max_food_level]]
        pl = [[-1, -1, 0], [hi, hi, max_player_level]] if self.observe_agent_levels else [[-1, -1], [hi, hi]]
        low = np.array(food[0] * self.num_food + pl[0] * self.num_agents, np.float32)
        high = np.array(food[1] * self.num_food + pl[1] * self.num_agents, np.float32)
        return gym.spaces.Box(low, high, dtype=np.float32)

    # -- observations and masks -------------------------------------------------------------
    def _pcells(self, pos: Tensor) -> Tensor:
        """(..., 2) [row, col] -> (...) index in the padded grid ((-1, -1) -> 0, a wall cell)."""
        return (pos[..., 0] + 1) * self._PW + pos[..., 1] + 1

    def _mask(self, agent_pos: Tensor, food_pos: Tensor, food_level: Tensor) -> tuple[Tensor, Tensor]:
        """(action mask (n, A, 6) bool, food level in the N, S, W, E neighbour cells (n, A, 4))."""
        nb = self._pcells(agent_pos)[..., None] + self._nb  # (n, A, 4); comparisons, not a grid: F is small
        food4 = ((nb[..., None] == self._pcells(food_pos)[:, None, None, :]) * food_level[:, None, None, :]).sum(-1)
        free = ~self._wall[nb] & (food4 == 0)
        mask = torch.cat([torch.ones_like(free[..., :1]), free, (food4 > 0).any(-1, keepdim=True)], -1)
        return mask, food4

    def _observe(self, agent_pos: Tensor, agent_level: Tensor, food_pos: Tensor, food_level: Tensor) -> Tensor:
        """(n, A, D) observations, any batch size n; see the module docstring."""
        n, A, F, s, dev = agent_pos.shape[0], self.num_agents, self.num_food, self.sight, self.device
        origin = (agent_pos - s).clamp(min=0)  # (n, A, 2)
        # food within sight, in row-major order (slot = how many visible food come first)
        vis_f = ((food_pos[:, None] - agent_pos[:, :, None]).abs() <= s).all(-1) & (food_level > 0)[:, None]
        cell = food_pos[..., 0] * self.W + food_pos[..., 1]  # (n, F)
        earlier = cell[:, None, :] < cell[:, :, None]  # (n, F, F): [f, g] g comes before f
        slot_f = (vis_f[:, :, None, :] & earlier[:, None]).sum(-1)  # (n, A, F)
        val_f = torch.cat([food_pos[:, None] - origin[:, :, None], food_level[:, None, :, None].expand(n, A, F, 1)], -1)
        out_f = self._place(vis_f, slot_f, val_f)
        # players inside the window from the clipped origin: self first, then the others in index order
        rel = agent_pos[:, None] - origin[:, :, None]  # (n, A_observer, A, 2)
        vis_p = ((rel >= 0) & (rel <= 2 * s)).all(-1)
        eye = torch.eye(A, dtype=torch.bool, device=dev)
        other = vis_p & ~eye
        slot_p = torch.where(eye, 0, 1 + (other[:, :, None, :] & self._lower).sum(-1))  # visible others before
        k = 3 if self.observe_agent_levels else 2
        val_p = rel if k == 2 else torch.cat([rel, agent_level[:, None, :, None].expand(n, A, A, 1)], -1)
        out_p = self._place(vis_p, slot_p, val_p)
        return torch.cat([out_f.reshape(n, A, 3 * F), out_p.reshape(n, A, k * A)], -1)

    def _place(self, visible: Tensor, slot: Tensor, value: Tensor) -> Tensor:
        """(n, A, S, k) slots: ``value[:, :, j]`` (n, A, S, k) in slot ``slot[:, :, j]`` where ``visible``, the empty
        slots ``(-1, -1, 0)``. A one-hot sum rather than a scatter, so a compiled step fuses it."""
        S = slot.shape[-1]
        hit = visible[:, :, None, :] & (slot[:, :, None, :] == torch.arange(S, device=self.device)[:, None])
        out = (hit[..., None] * value[:, :, None]).sum(3).to(self.dtype)  # (n, A, S slots, k)
        empty = torch.tensor([-1.0, -1.0, 0.0][:value.shape[-1]], dtype=self.dtype, device=self.device)
        return torch.where(hit.any(-1, keepdim=True), out, empty)

    def _obs_mask(self) -> tuple[Tensor, Tensor]:
        return (self._observe(self.agent_pos, self.agent_level, self.food_pos, self.food_level),
                self._mask(self.agent_pos, self.food_pos, self.food_level)[0])

    def state(self) -> Tensor:
        """(E, A * D): every player's observation, in player order."""
        return self._obs_mask()[0].flatten(1)

    def action_mask(self) -> Tensor:
        """(E, A, 6) bool: the actions valid in the current state (as ``TimeStep.action_mask``)."""
        return self._obs_mask()[1]

    # -- reset ------------------------------------------------------------------------------
    def _pick(self, allowed: Tensor, u: Tensor) -> tuple[Tensor, Tensor]:
        """(cell (n,), found (n,)): the ``floor(u * count)``-th allowed cell of ``allowed`` (n, C), i.e. uniform over
        them for ``u`` (n,) uniform in [0, 1) (the law of the reference's retries until a cell is allowed)."""
        count = allowed.sum(1, keepdim=True)
        k = torch.minimum((u[:, None] * count).long(), (count - 1).clamp(min=0))  # (float rounding at u -> 1)
        return (allowed.long().cumsum(1) > k).long().argmax(1), count[:, 0] > 0

    def _spawn(self, u: Tensor, old_pos: Tensor | None) -> tuple[Tensor, ...]:
        """A fresh episode start for ``n`` envs from ``u`` (n, 3 (A + F)) uniform draws: (agent_pos, agent_level,
        food_pos, food_level, food_spawned); ``old_pos`` (n, A, 2): the cells the players left (avoided as the
        reference does), None at a first reset. A pure function (``compile=True`` compiles it, shapes dynamic)."""
        A, F, W, dev = self.num_agents, self.num_food, self.W, self.device
        n, C = u.shape[0], self.H * W
        u_perm, u_lvl, u_cell = u[:, :A], u[:, A:2 * A], u[:, 2 * A:3 * A]
        lo, hi = self._pl_lo.expand(n, A), self._pl_hi.expand(n, A)
        if self._pl_permute:
            perm = u_perm.argsort(1)
            lo, hi = lo.gather(1, perm), hi.gather(1, perm)
        level = lo + (u_lvl * (hi - lo + 1)).long()
        # player i avoids the new cells of players < i and (auto-reset) the old cells of players >= i
        taken, cells = torch.zeros(n, C, dtype=torch.bool, device=dev), []
        if old_pos is not None:
            old = old_pos[..., 0] * W + old_pos[..., 1]
            left = (old[..., None] == torch.arange(C, device=dev)).long()  # (n, A, C)
        for i in range(A):  # sequential rounds of the reference's placement, batched over envs
            blocked = taken if old_pos is None else taken | (left[:, i:].sum(1) > 0)
            c = self._pick(~blocked, u_cell[:, i])[0]
            taken = taken | (torch.arange(C, device=dev) == c[:, None])
            cells.append(c)
        cells = torch.stack(cells, 1)
        pos = torch.stack([cells // W, cells % W], -1)
        u_perm, u_lvl, u_cell = u[:, 3 * A:3 * A + F], u[:, 3 * A + F:3 * A + 2 * F], u[:, 3 * A + 2 * F:]
        f_hi = (level.sort(1).values[:, :3].sum(1, keepdim=True).expand(n, F) if self._f_hi is None
                else self._f_hi.expand(n, F))
        f_lo = f_hi if self.force_coop else self._f_lo.expand(n, F)
        perm = u_perm.argsort(1)
        f_lo, f_hi = f_lo.gather(1, perm), f_hi.gather(1, perm)
        f_level = f_lo + (u_lvl * (f_hi - f_lo + 1)).long()
        allowed = self._interior & ~taken
        f_cells, placed = [], []
        for k in range(F):  # food one after another; a food without a free cell (and all after it) is not spawned
            c, ok = self._pick(allowed, u_cell[:, k])
            allowed = allowed & ~(self._near[c] & ok[:, None])
            f_cells.append(c)
            placed.append(ok)
        f_cells, placed = torch.stack(f_cells, 1), torch.stack(placed, 1)
        f_pos = torch.where(placed[..., None], torch.stack([f_cells // W, f_cells % W], -1), -1)
        f_level = torch.where(placed, f_level, 0)
        return pos, level, f_pos, f_level, f_level.sum(1)

    def _respawn(self, u: Tensor, old_pos: Tensor | None) -> tuple[Tensor, ...]:
        """:meth:`_spawn` and the new start's observations (n, A, D) and action masks (n, A, 6)."""
        new = self._spawn(u, old_pos)
        return new, self._observe(new[0], new[1], new[2], new[3]), self._mask(new[0], new[2], new[3])[0]

    def _reset_where(self, mask: Tensor, first: bool) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """Respawn the envs where ``mask``: (their indices (k,), their observations (k, A, D), masks (k, A, 6))."""
        idx = mask.nonzero()[:, 0]
        if not idx.numel():
            return idx, None, None
        # at least two rows (a second copy of the first env, discarded): a compiled respawn then never meets the
        # size-1 batch that torch.compile would specialise (and recompile) for
        rows = idx if idx.numel() > 1 else idx.repeat(2)
        u = torch.rand(rows.numel(), 3 * (self.num_agents + self.num_food), generator=self._gen, device=self.device)
        new, obs, amask = self._respawn_fn(u, None if first else self.agent_pos[rows])
        k = idx.numel()
        for name, v in zip(self._STATE, (*new, torch.zeros_like(idx))):
            getattr(self, name)[idx] = v[:k]
        return idx, obs[:k], amask[:k]

    def reset(self, seed: int | None = None, mask: Tensor | None = None) -> TimeStep:
        """Reset all envs (mask None) or those where ``mask`` (E,) bool is True; draws like the reference's
        first reset (a new env), so ``reset(seed=s)`` fixes the whole trajectory."""
        mask = reset_mask(mask, self.num_envs, self.device)
        if seed is not None:
            self._gen.manual_seed(int(seed))
        self._reset_where(mask, first=True)
        self._was_reset = True
        obs, amask = self._obs_mask()
        return reset_timestep(self.spec, {GROUP: obs}, self.dtype, action_mask={GROUP: amask})

    # -- dynamics ---------------------------------------------------------------------------
    def _advance(self, agent_pos: Tensor, agent_level: Tensor, food_pos: Tensor, food_level: Tensor,
                 food_spawned: Tensor, t: Tensor, action: Tensor) -> tuple:
        """One step of every env, a pure function of the state (no auto-reset): returns the new state (as
        :attr:`_STATE`), obs (E, A, D), action mask (E, A, 6), rewards (E, A), terminated, truncated (E,), the
        conflict counts (E, 6) and the flags (any action out of range, any episode ended)."""
        invalid = ((action < 0) | (action > LOAD)).any()
        action = action.long().clamp(0, LOAD)
        mask, _ = self._mask(agent_pos, food_pos, food_level)
        valid = mask.gather(2, action[..., None])[..., 0]
        action = torch.where(valid, action, NONE)
        claim = agent_pos + self._delta[action]  # (E, A, 2): the cell each player claims
        key = claim[..., 0] * self.W + claim[..., 1]
        unique = (key[:, :, None] == key[:, None, :]).sum(-1) == 1
        moving = (action >= NORTH) & (action <= EAST)
        agent_pos = torch.where(unique[..., None], claim, agent_pos)
        cell = agent_pos[..., 0] * self.W + agent_pos[..., 1]
        shared = (cell[:, :, None] == cell[:, None, :]).sum(-1) > 1
        # loads: the food spawn rule keeps food two cells apart off the diagonals, so no cell touches two food and
        # each food's group is every loader next to it, whatever order the reference serves them in
        loader = (action == LOAD)[..., None]
        alive = food_level > 0
        group = loader & alive[:, None] & ((food_pos[:, None] - agent_pos[:, :, None]).abs().sum(-1) == 1)
        total = (group * agent_level[..., None]).sum(1)  # (E, F)
        ok = group.any(1) & (total >= food_level)
        gain = (agent_level[..., None] * food_level[:, None]).double()  # (E, A, F)
        if self.normalize_reward:
            gain = gain / (total * food_spawned[:, None]).clamp(min=1)[:, None].double()
        ok_a = group & ok[:, None]
        failed = (group & ~ok_a).sum(-1).double()
        rewards = (torch.where(ok_a, gain, 0.0).sum(-1) - self.penalty * failed).to(self.dtype)
        food_level = torch.where(ok, 0, food_level)
        t = t + 1
        term = ~(food_level > 0).any(1)
        trunc = (t >= self.max_episode_steps) & ~term
        obs = self._observe(agent_pos, agent_level, food_pos, food_level)
        mask = self._mask(agent_pos, food_pos, food_level)[0]
        stats = torch.stack([(~valid).sum(1), (moving & valid & ~unique).sum(1), shared.sum(1), ok.sum(1),
                             (ok & (group.sum(1) > 1)).sum(1), (group.any(1) & ~ok).sum(1)], 1)  # as CONFLICTS
        state = (agent_pos, agent_level, food_pos, food_level, food_spawned, t)
        return state, obs, mask, rewards, term, trunc, stats, torch.stack([invalid, (term | trunc).any()])

    def step(self, actions: dict[str, Tensor]) -> TimeStep:
        """Step every env; see :mod:`fastmarl.envs.api`. Auto-resets ended episodes. Invalid actions raise
        ActionError before anything changes."""
        require_reset(self)
        if self.validate:
            check_action_structure(self.spec, actions, self.num_envs, self.device)
        state = tuple(getattr(self, k) for k in self._STATE)
        state, obs, mask, rewards, term, trunc, stats, flags = self._advance_fn(*state, actions[GROUP])
        invalid, any_done = flags.tolist()  # one device sync for both questions
        if invalid and self.validate:  # the step is pure: nothing was committed; explain the problem
            validate_actions(self.spec, actions, self.num_envs, self.device)
            raise ActionError(f"group {GROUP!r}: discrete action out of range, expected 0 <= a < 6")
        for k, v in zip(self._STATE, state):
            setattr(self, k, v)
        final_obs, final_state = {GROUP: obs}, None
        if any_done:
            final_state = obs.flatten(1)
            idx, new_obs, new_mask = self._reset_where(term | trunc, first=False)
            obs, mask = obs.index_put((idx,), new_obs), mask.index_put((idx,), new_mask)
        return TimeStep(obs={GROUP: obs}, reward={GROUP: rewards}, terminated=term, truncated=trunc,
                        final_obs=final_obs, final_state=final_state, action_mask={GROUP: mask},
                        info={"conflicts": _Counts(stats)})

    # -- rendering, checkpoints -------------------------------------------------------------
    def render(self, env_index: int = 0, cell: int = 16) -> np.ndarray:
        """RGB (H * cell, W * cell, 3): food red (darker: higher level), players blue (darker: higher level)."""
        if not 0 <= env_index < self.num_envs:
            raise IndexError(f"env_index {env_index} out of range for num_envs={self.num_envs}")
        img = np.full((self.H * cell, self.W * cell, 3), 235, np.uint8)
        img[::cell], img[:, ::cell] = 200, 200

        def paint(r: int, c: int, colour: tuple, margin: int) -> None:
            img[r * cell + margin:(r + 1) * cell - margin, c * cell + margin:(c + 1) * cell - margin] = colour
        top = max(self.max_food_level, 1)
        for (r, c), lv in zip(self.food_pos[env_index].tolist(), self.food_level[env_index].tolist()):
            if lv > 0:
                paint(r, c, (255 - 120 * lv // top, 40, 40), 2)
        top = max(int(self._pl_hi.max()), 1)
        for (r, c), lv in zip(self.agent_pos[env_index].tolist(), self.agent_level[env_index].tolist()):
            paint(r, c, (40, 40, 255 - 120 * lv // top), cell // 4)
        return img


# fastmarl's own kwargs, beside the reference's constructor arguments
_EXTRA = dict(dtype=torch.float32, validate=True, compile=False)
_REFERENCE = dict(players=2, min_player_level=1, max_player_level=2, min_food_level=1, max_food_level=None,
                  field_size=(8, 8), max_num_food=2, sight=8, max_episode_steps=50, force_coop=False,
                  normalize_reward=True, grid_observation=False, observe_agent_levels=True, penalty=0.0,
                  render_mode=None)


def lbf_ids() -> dict[str, dict[str, Any]]:
    """The ids ``lbforaging==2.0.0`` registers on import (``Foraging[-2s]-{s}x{s}-{p}p-{f}f[-coop]-v3``, s in
    5..19, p in 2..9, f in 1..4) -> their constructor kwargs (those that differ between ids)."""
    out = {}
    for s, p, f, coop, po in itertools.product(range(5, 20), range(2, 10), range(1, 5), (True, False), (True, False)):
        out[f"Foraging{'-2s' if po else ''}-{s}x{s}-{p}p-{f}f{'-coop' if coop else ''}-v3"] = dict(
            players=p, field_size=(s, s), max_num_food=f, sight=2 if po else s, force_coop=coop)
    return out


def lbf_defaults(kwargs: dict[str, Any]) -> dict[str, Any]:
    """One id's full constructor arguments: the reference's defaults, ``kwargs`` from :func:`lbf_ids`,
    and fastmarl's own options (``make`` passes them to :class:`Foraging` through the registry's
    ``kwargs_factory``)."""
    return {**_REFERENCE, **kwargs, **_EXTRA}
