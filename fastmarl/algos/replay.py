"""An episode replay buffer on the device, fed from a batched env's auto-reset stream.

Off-policy learners with recurrent agents (QMIX and friends) train on whole
episodes, so the buffer stores episodes, not transitions: every field is a
stacked tensor ``(capacity, T, ...)`` where ``T`` is the longest episode (or
chunk) it holds, with a ``filled`` mask ``(capacity, T)`` marking real steps;
padded steps are zero. Sampling draws whole episodes uniformly.

Fields come in two kinds, declared up front as ``name -> (shape, dtype)``:

- ``step_fields``, one value per step ``t = 0..L-1`` (actions, rewards,
  terminated, ...), stored ``(capacity, T, *shape)``;
- ``obs_fields``, one value per step plus the one after the last step
  (observations, states, action masks: what a bootstrap needs at ``t + 1``),
  stored ``(capacity, T + 1, *shape)``. Entry ``L`` of an episode of length
  ``L`` is its final observation (``TimeStep.final_obs``).

Feeding from E envs at once (``add``): each env writes into its own row of a
staging area ``(E, T(+1), ...)`` at its own step counter; when an env's episode
ends (``done``), its row is copied into the ring buffer (overwriting the oldest
episode when full) and the row starts over. Episodes longer than ``T`` are cut
into chunks of ``T`` steps: a chunk ends at the step limit with the next
observation as its final entry and *without* ``done``, and the next chunk starts
from that observation (a recurrent learner then starts the chunk with a zero
hidden state: ``chunk_start`` (capacity,) tells which stored sequences begin an
episode).

Feed-forward off-policy learners (the actor-critics of :mod:`fastmarl.algos.sac`
and :mod:`fastmarl.algos.ddpg`) train on single transitions instead:
``sample_steps`` draws stored steps uniformly (every real step of every stored
episode equally likely) and returns each with the observation fields at ``t``
and ``t + 1``. Continuous actions are just float step fields, e.g.
``"action/agent": ((A, D), torch.float32)``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

FieldSpecs = dict[str, tuple[tuple[int, ...], torch.dtype]]


class EpisodeBuffer:
    """Whole episodes as stacked tensors; see the module docstring.

    Args:
        capacity: episodes (or chunks) kept; the oldest is overwritten first.
        max_len: T, the longest stored sequence (e.g. the env's max_episode_steps).
        num_envs: E, envs writing at once through ``add``.
        step_fields: name -> (shape, dtype) of per-step values.
        obs_fields: name -> (shape, dtype) of per-observation values (T + 1 of them).
        device: where everything lives.
    """

    def __init__(self, capacity: int, max_len: int, num_envs: int, step_fields: FieldSpecs, obs_fields: FieldSpecs,
                 device: torch.device | str = "cpu"):
        if capacity < 1 or max_len < 1 or num_envs < 1:
            raise ValueError(f"capacity, max_len and num_envs must be >= 1, got {capacity}, {max_len}, {num_envs}")
        clash = set(step_fields) & set(obs_fields)
        if clash or {"filled", "length", "chunk_start"} & (set(step_fields) | set(obs_fields)):
            raise ValueError(f"field names must be unique and not 'filled', 'length' or 'chunk_start': {sorted(clash)}")
        self.capacity, self.max_len, self.num_envs = capacity, max_len, num_envs
        self.device = torch.device(device)
        self.step_fields, self.obs_fields = dict(step_fields), dict(obs_fields)
        T = max_len

        def alloc(n: int, specs: FieldSpecs, extra: int) -> dict[str, Tensor]:
            return {k: torch.zeros(n, T + extra, *shape, dtype=dtype, device=self.device)
                    for k, (shape, dtype) in specs.items()}

        self.data = {**alloc(capacity, step_fields, 0), **alloc(capacity, obs_fields, 1)}
        self.length = torch.zeros(capacity, dtype=torch.long, device=self.device)
        self.chunk_start = torch.zeros(capacity, dtype=torch.bool, device=self.device)
        self._stage = {**alloc(num_envs, step_fields, 0), **alloc(num_envs, obs_fields, 1)}
        self._t = torch.zeros(num_envs, dtype=torch.long, device=self.device)  # steps written per env
        self._starts_episode = torch.ones(num_envs, dtype=torch.bool, device=self.device)
        self._env_idx = torch.arange(num_envs, device=self.device)
        self.pos = 0  # next slot to write
        self.size = 0  # episodes stored
        self.episodes_added = 0

    def __len__(self) -> int:
        return self.size

    # -- writing ---------------------------------------------------------------
    def add(self, obs: dict[str, Tensor], step: dict[str, Tensor], next_obs: dict[str, Tensor], done: Tensor) -> int:
        """Record one step of all E envs.

        Args:
            obs: obs-field name -> (E, ...) values *before* the step (what the action saw).
            step: step-field name -> (E, ...) values of the step (action, reward, terminated...).
            next_obs: obs-field name -> (E, ...) values *after* the step: ``final_obs``
                (and ``final_state`` ...) so that ended envs store their true last entry.
            done: (E,) bool, the episode ended at this step (terminated or truncated).

        Returns:
            The number of sequences committed to the buffer by this call.
        """
        t, e = self._t, self._env_idx
        for k in self.obs_fields:
            self._stage[k][e, t] = obs[k].to(self._stage[k].dtype)
        for k in self.step_fields:
            self._stage[k][e, t] = step[k].to(self._stage[k].dtype)
        t = t + 1
        full = t >= self.max_len
        commit = done | full
        self._t = t
        if not bool(commit.any()):
            return 0
        idx = torch.nonzero(commit).reshape(-1)
        for k in self.obs_fields:  # the entry after the last step
            self._stage[k][idx, t[idx]] = next_obs[k][idx].to(self._stage[k].dtype)
        n = self._commit(idx)
        self._starts_episode = torch.where(commit, done, self._starts_episode)
        # (a cut env's next chunk begins with next_obs, which the next add() writes as its obs)
        return n

    def _commit(self, idx: Tensor) -> int:
        keep = idx[-self.capacity:]  # more finished episodes than room: keep the last ones
        n = keep.numel()
        slots = (self.pos + torch.arange(n, device=self.device)) % self.capacity
        for k, v in self._stage.items():
            self.data[k][slots] = v[keep]
            v[idx] = 0  # padded steps of the next episode in these rows stay zero
        self.length[slots] = self._t[keep]
        self.chunk_start[slots] = self._starts_episode[keep]
        self._t = self._t.index_fill(0, idx, 0)
        self.pos = (self.pos + n) % self.capacity
        self.size = min(self.size + n, self.capacity)
        self.episodes_added += n
        return n

    def reset_envs(self, mask: Tensor | None = None) -> None:
        """Drop the unfinished episodes of the envs in ``mask`` (all if None), e.g. after
        an explicit env.reset()."""
        mask = torch.ones(self.num_envs, dtype=torch.bool, device=self.device) if mask is None else mask
        for v in self._stage.values():
            v[mask] = 0
        self._t = torch.where(mask, 0, self._t)
        self._starts_episode = torch.where(mask, True, self._starts_episode)

    # -- reading ---------------------------------------------------------------
    def sample(self, batch_size: int, generator: torch.Generator | None = None, trim: bool = True) -> dict[str, Tensor]:
        """``batch_size`` stored sequences drawn uniformly (with replacement).

        Returns every field ``(B, T', ...)`` (obs fields ``(B, T' + 1, ...)``), plus
        ``filled`` (B, T') bool, ``length`` (B,) and ``chunk_start`` (B,). With ``trim``,
        ``T'`` is the longest sampled sequence instead of T (less padded compute).
        """
        if self.size == 0:
            raise RuntimeError("the replay buffer is empty; add episodes before sampling")
        idx = torch.randint(0, self.size, (batch_size,), generator=generator, device=self.device)
        return self.gather(idx, trim)

    def sample_steps(self, batch_size: int, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """``batch_size`` stored transitions drawn uniformly over every real step of the buffer
        (with replacement): step fields ``(B, ...)``, obs fields ``(B, 2, ...)`` (entry 0 at the
        step, entry 1 after it: the next observation, or the final one where the episode ended)."""
        if self.size == 0:
            raise RuntimeError("the replay buffer is empty; add episodes before sampling")
        length = self.length[:self.size]
        ends = torch.cumsum(length, 0)  # step k of the buffer lies in the episode whose end is the first > k
        k = torch.randint(0, int(ends[-1]), (batch_size,), generator=generator, device=self.device)
        ep = torch.searchsorted(ends, k, right=True)
        t = k - (ends[ep] - length[ep])
        out = {name: self.data[name][ep, t] for name in self.step_fields}
        t2 = torch.stack([t, t + 1], 1)  # (B, 2)
        out.update({name: self.data[name][ep[:, None], t2] for name in self.obs_fields})
        return out

    def gather(self, idx: Tensor, trim: bool = True) -> dict[str, Tensor]:
        """The stored sequences ``idx`` (B,), as ``sample`` returns them."""
        length = self.length[idx]
        T = int(length.max()) if trim else self.max_len
        out = {k: self.data[k][idx, :T] for k in self.step_fields}
        out.update({k: self.data[k][idx, :T + 1] for k in self.obs_fields})
        out["filled"] = torch.arange(T, device=self.device)[None, :] < length[:, None]
        out["length"] = length
        out["chunk_start"] = self.chunk_start[idx]
        return out

    # -- checkpoints ---------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"data": self.data, "length": self.length, "chunk_start": self.chunk_start, "stage": self._stage,
                "t": self._t, "starts_episode": self._starts_episode, "pos": self.pos, "size": self.size,
                "episodes_added": self.episodes_added}

    def load_state_dict(self, s: dict[str, Any]) -> None:
        self.data = {k: v.to(self.device) for k, v in s["data"].items()}
        self._stage = {k: v.to(self.device) for k, v in s["stage"].items()}
        self.length, self.chunk_start = s["length"].to(self.device), s["chunk_start"].to(self.device)
        self._t, self._starts_episode = s["t"].to(self.device), s["starts_episode"].to(self.device)
        self.pos, self.size, self.episodes_added = int(s["pos"]), int(s["size"]), int(s["episodes_added"])

    def to_tensors(self) -> tuple[dict[str, Tensor], dict[str, int]]:
        """(flat name -> tensor, counters) for a safetensors file: the stored sequences
        (only the ``size`` slots written so far: slots fill from 0 before the ring wraps),
        the staging rows (the unfinished episodes) and their step counters."""
        n = self.size
        tensors = {f"data.{k}": v[:n] for k, v in self.data.items()}
        tensors.update({f"stage.{k}": v for k, v in self._stage.items()})
        tensors.update({"length": self.length[:n], "chunk_start": self.chunk_start[:n], "t": self._t,
                        "starts_episode": self._starts_episode})
        return tensors, {"pos": self.pos, "size": self.size, "episodes_added": self.episodes_added}

    def load_tensors(self, tensors: dict[str, Tensor], counters: dict[str, int]) -> None:
        """Restore what ``to_tensors`` returned, into this buffer (same fields, capacity,
        max_len and num_envs). Raises ValueError naming what does not fit."""
        n = int(counters["size"])
        want = {f"data.{k}": (n, *v.shape[1:]) for k, v in self.data.items()}
        want.update({f"stage.{k}": tuple(v.shape) for k, v in self._stage.items()})
        want.update({"length": (n,), "chunk_start": (n,), "t": (self.num_envs,), "starts_episode": (self.num_envs,)})
        got = {k: tuple(v.shape) for k, v in tensors.items()}
        if n > self.capacity or got != want:
            diff = sorted(k for k in set(want) | set(got) if want.get(k) != got.get(k))
            raise ValueError(f"the saved replay buffer does not fit this one (size {n}, capacity {self.capacity}); "
                             f"mismatched entries: {diff[:6]}")
        for k, v in self.data.items():
            v.zero_()
            v[:n] = tensors[f"data.{k}"].to(self.device, v.dtype)
        for k, v in self._stage.items():
            v.copy_(tensors[f"stage.{k}"])
        self.length.zero_()
        self.length[:n] = tensors["length"]
        self.chunk_start.zero_()
        self.chunk_start[:n] = tensors["chunk_start"]
        self._t = tensors["t"].to(self.device, torch.long).clone()
        self._starts_episode = tensors["starts_episode"].to(self.device, torch.bool).clone()
        self.pos, self.size, self.episodes_added = int(counters["pos"]), n, int(counters["episodes_added"])


__all__ = ["EpisodeBuffer"]
