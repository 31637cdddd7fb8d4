"""``BroadcastChannel``: add a discrete broadcast channel to any batched env.

Every agent of a *speaker* group (by default: every group with discrete actions)
says one message per step: ``message_length`` digits of ``vocab_size`` values
(B bits: ``vocab_size=2, message_length=B``; one of K symbols: ``vocab_size=K``),
``M = vocab_size ** message_length`` messages in all.

Design choice: **combined actions**. A speaker group's action space becomes
``Discrete(n_move * M)`` and an action ``a`` means ``move = a % n_move`` (the
wrapped env's action) and ``message = a // n_move``: the same convention as
MPE's speaking agents (``move + 5 * message``). So every learner that handles a
``Discrete`` action (our PPO included, unchanged) learns to talk; the price is a
joint (not factorised) distribution over (move, message), fine for a few bits.
Action masks of the wrapped env are tiled over the messages. (A separate group
of message actions would need every learner to know that two groups are the same
agents; the product keeps the one-agent-one-action contract of the API.)

Observations: every agent (of every group, speakers or not) gets, appended to its
own observation, the messages the other speakers sent in the *previous* step,
``n_slots * L * V`` features: one one-hot message of ``L * V`` floats per other
speaker, in global agent order (``slot_senders(group)`` lists them), zeros when
nothing was heard: out of ``comm_range`` (distances taken when the message was
sent, from the env's positions; MPE envs give them, other envs pass
``positions=``), dropped by the link (``drop_prob``), or at the first step of an
episode. ``flip_prob`` replaces a digit by a uniformly random other value,
independently per link. ``final_obs`` holds the messages of the episode's last
step; the next episode starts silent.

``state()`` (when the env has one) is the env's state with the messages sent in
the last step appended (one-hot, ``S * L * V`` features for ``S`` speakers), so a
centralized critic sees the whole channel. ``TimeStep.info["messages"]`` holds
each speaker group's sent messages ``(E, A_g)`` long in ``[0, M)`` (for
:mod:`fastmarl.analysis.comm`). ``message_transform`` (None by default) maps the
sent one-hot messages ``(E, S, L, V)`` before delivery, for ablations (see
:func:`fastmarl.analysis.comm.message_ablation`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from fastmarl.envs.api import (
    EnvSpec,
    GroupSpec,
    TimeStep,
    check_known_keys,
    env_state_dict,
    load_env_state_dict,
    validate_actions,
)
from fastmarl.envs.comm import message_digits, range_mask

__all__ = ["BroadcastChannel", "AgentPositions", "mpe_positions", "find_mpe"]

_SEED_OFFSET = 0x5EED  # the channel's noise stream differs from the env's


def find_mpe(env: Any) -> Any | None:
    """The MPE env inside ``env`` (``env`` itself or the first one found by following
    wrappers' ``.env``), or None when there is none."""
    seen = 0
    while env is not None and seen < 32:  # bounded: a wrapper chain is short, a cycle is a bug
        if hasattr(env, "world_state") and hasattr(env, "world"):
            return env
        env, seen = getattr(env, "env", None), seen + 1
    return None


def mpe_positions(env: Any) -> Tensor:
    """(E, A, 2) agent positions of an MPE env, or of the MPE env inside wrappers
    (agents come first among the entities, in the spec's agent order)."""
    inner = find_mpe(env)
    if inner is None:
        raise ValueError(f"{env.spec.env_id} is not an MPE env (nor wraps one), so it has no agent positions")
    return inner.world_state.pos[:, : inner.world.A]


class AgentPositions:
    """A VecEnv: ``env`` whose TimeSteps report where the agents are, for range-limited
    communication inside policies (``TrainConfig.comm_range`` with ``ppo.comm``).

    ``TimeStep.info["positions"]`` is a dict group -> ``(E, A_g, 2)`` positions of the
    state ``TimeStep.obs`` was taken in (after auto-reset: the new episode's first
    state), group-keyed like ``obs`` so a learner of a subset of groups finds its own.
    Everything else passes through unchanged.

    Args:
        env: any batched env of our API.
        positions: ``positions(env) -> (E, A_total, 2)`` in spec agent order; default
            :func:`mpe_positions` (MPE envs and wrappers of them). ValueError otherwise.
    """

    def __init__(self, env: Any, positions: Callable[[Any], Tensor] | None = None):
        if positions is None:
            if find_mpe(env) is None:
                raise ValueError(f"range-limited communication needs agent positions, but {env.spec.env_id} is not "
                                 "an MPE env; pass positions=lambda env: <(E, A, 2) tensor> or leave comm_range unset")
            positions = mpe_positions
        self.env, self.spec, self.num_envs, self.device = env, env.spec, env.num_envs, env.device
        self.positions = positions
        self.metadata = getattr(env, "metadata", {})
        start, self._slices = 0, {}
        for g, gs in self.spec.groups.items():  # groups are contiguous, in spec order
            self._slices[g] = slice(start, start + gs.num_agents)
            start += gs.num_agents

    def group_positions(self) -> dict[str, Tensor]:
        """group -> (E, A_g, 2) current agent positions."""
        pos = self.positions(self.env)
        return {g: pos[:, sl] for g, sl in self._slices.items()}

    def _with_positions(self, ts: TimeStep) -> TimeStep:
        return dataclasses.replace(ts, info={**ts.info, "positions": self.group_positions()})

    def reset(self, seed: int | None = None, mask: Tensor | None = None) -> TimeStep:
        return self._with_positions(self.env.reset(seed=seed, mask=mask))

    def step(self, actions: dict[str, Tensor]) -> TimeStep:
        return self._with_positions(self.env.step(actions))

    def state(self) -> Tensor:
        return self.env.state()

    def state_dict(self) -> dict[str, Any] | None:
        return env_state_dict(self.env)

    def load_state_dict(self, s: dict[str, Any]) -> None:
        if not load_env_state_dict(self.env, s):
            raise ValueError("the wrapped env's state could not be restored")

    def __getattr__(self, name: str) -> Any:
        # everything else (render, close, set_world_state, BroadcastChannel's helpers) is the wrapped env's
        if name == "env":  # not set yet (during __init__): no recursion
            raise AttributeError(name)
        return getattr(self.env, name)


class BroadcastChannel:
    """A VecEnv: ``env`` plus a discrete broadcast channel; see the module docstring.

    Args:
        env: any batched env of our API.
        vocab_size, message_length: the message alphabet and length (M = V^L messages).
        comm_range: None (everyone hears every speaker) or a radius: receivers
            farther than this from the speaker (when it spoke) hear nothing.
        flip_prob: per (receiver, sender) link and digit, probability of a random other value.
        drop_prob: per link, probability that the message is lost.
        speakers: groups that speak (default: every group with Discrete actions).
        positions: ``positions(env) -> (E, A_total, 2)`` agent positions in spec
            agent order, for ``comm_range``; default: :func:`mpe_positions` for MPE envs.
    """

    def __init__(self, env: Any, vocab_size: int = 2, message_length: int = 1, comm_range: float | None = None,
                 flip_prob: float = 0.0, drop_prob: float = 0.0, speakers: Sequence[str] | None = None,
                 positions: Callable[[Any], Tensor] | None = None):
        spec: EnvSpec = env.spec
        if vocab_size < 2 or message_length < 1:
            raise ValueError(f"messages need vocab_size >= 2 and message_length >= 1, got {vocab_size}, "
                             f"{message_length}")
        for name, p in (("flip_prob", flip_prob), ("drop_prob", drop_prob)):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} is a probability in [0, 1], got {p}")
        if speakers is None:
            speakers = [g for g, gs in spec.groups.items() if gs.discrete]
        check_known_keys(speakers, spec.groups, f"group of {spec.env_id} in speakers")
        boxy = [g for g in speakers if not spec.groups[g].discrete]
        if boxy:
            raise ValueError(f"group(s) {boxy} have continuous (Box) actions and cannot say a discrete message as "
                             "part of their action; leave them out of speakers= (they still hear)")
        if not speakers:
            raise ValueError(f"no group of {spec.env_id} can speak: a speaker group needs Discrete actions")
        if comm_range is not None:
            if not comm_range > 0:
                raise ValueError(f"comm_range must be a positive distance or None, got {comm_range}")
            if positions is None:
                if find_mpe(env) is None:
                    raise ValueError(f"comm_range needs agent positions: {spec.env_id} is not an MPE env, so pass "
                                     "positions=lambda env: <(E, A, 2) tensor>")
                positions = mpe_positions
        self.env, self.num_envs, self.device = env, env.num_envs, env.device
        self.vocab_size, self.message_length = int(vocab_size), int(message_length)
        self.num_messages = self.vocab_size ** self.message_length
        self.message_dim = self.vocab_size * self.message_length
        self.comm_range, self.flip_prob, self.drop_prob = comm_range, float(flip_prob), float(drop_prob)
        self.positions = positions
        self.speakers = [g for g in spec.groups if g in speakers]  # spec order
        self.message_transform: Callable[[Tensor], Tensor] | None = None
        self.metadata = getattr(env, "metadata", {})

        # global agent indexing (spec order) and who sits in which message slot
        start, self._start = 0, {}
        speaker_agents = []
        for g, gs in spec.groups.items():
            self._start[g] = start
            if g in self.speakers:
                speaker_agents += range(start, start + gs.num_agents)
            start += gs.num_agents
        self.num_agents_total, self.num_speakers = start, len(speaker_agents)
        self._speaker_agent = torch.tensor(speaker_agents, dtype=torch.long, device=self.device)  # (S,)
        self._slots: dict[str, Tensor] = {}  # group -> (A_g, n_slots) index into the S speakers
        groups = {}
        for g, gs in spec.groups.items():
            rows = []
            for a in range(gs.num_agents):
                me = self._start[g] + a
                rows.append([s for s, agent in enumerate(speaker_agents) if agent != me])
            self._slots[g] = torch.tensor(rows, dtype=torch.long, device=self.device).reshape(gs.num_agents, -1)
            n_feat = self._slots[g].shape[1] * self.message_dim
            osp = gs.observation_space
            low = np.concatenate([np.asarray(osp.low, dtype=osp.dtype).reshape(-1), np.zeros(n_feat, osp.dtype)])
            high = np.concatenate([np.asarray(osp.high, dtype=osp.dtype).reshape(-1), np.ones(n_feat, osp.dtype)])
            obs_space = gym.spaces.Box(low, high, dtype=osp.dtype)
            act_space = gym.spaces.Discrete(gs.action_dim * self.num_messages) if g in self.speakers \
                else gs.action_space
            groups[g] = GroupSpec(g, gs.agents, obs_space, act_space)
        S = self.num_speakers
        state_dim = spec.state_dim + S * self.message_dim if spec.state_dim > 0 else 0
        self.spec = EnvSpec(spec.env_id, groups, state_dim, spec.max_episode_steps, spec.has_action_mask,
                            spec.has_alive_mask, spec.teams)
        self._inner_spec = spec
        self._gen = torch.Generator(device=self.device)
        self._gen.manual_seed(_SEED_OFFSET)
        E = self.num_envs
        self._sent = torch.zeros(E, S * self.message_dim, device=self.device)  # last step's messages, one-hot
        self._received = {g: torch.zeros(E, gs.num_agents, self._slots[g].shape[1] * self.message_dim,
                                         device=self.device) for g, gs in spec.groups.items()}

    # -- layout helpers (analysis, interventions) ---------------------------------
    def slot_senders(self, group: str) -> Tensor:
        """(A_g, n_slots) long: the global agent index (spec order) of the speaker in
        each message slot of each agent of ``group``."""
        return self._speaker_agent[self._slots[group]]

    def message_features(self, group: str) -> slice:
        """Where the received messages sit in an observation of ``group``:
        ``obs[..., sl].unflatten(-1, (n_slots, L, V))``."""
        n = self._inner_spec.groups[group].obs_dim
        return slice(n, self.spec.groups[group].obs_dim)

    def decode(self, actions: dict[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Combined actions -> (the wrapped env's actions, messages group -> (E, A_g) in [0, M))."""
        inner, messages = {}, {}
        for g, a in actions.items():
            if g in self.speakers:
                n = self._inner_spec.groups[g].action_dim
                inner[g], messages[g] = a % n, a // n
            else:
                inner[g] = a
        return inner, messages

    def encode(self, inner_actions: dict[str, Tensor], messages: dict[str, Tensor]) -> dict[str, Tensor]:
        """Inverse of :meth:`decode`: ``a = move + n_move * message`` for speaker groups."""
        return {g: a + self._inner_spec.groups[g].action_dim * messages[g] if g in self.speakers else a
                for g, a in inner_actions.items()}

    # -- the channel -------------------------------------------------------------
    def _onehot(self, index: Tensor) -> Tensor:
        """(E, S) message indices -> (E, S, L, V) one-hot."""
        digits = message_digits(index, self.vocab_size, self.message_length)
        return torch.nn.functional.one_hot(digits, self.vocab_size).float()

    def _deliver(self, sent: Tensor, heard: Tensor | None) -> dict[str, Tensor]:
        """sent (E, S, L, V); heard (E, A_total, S) bool or None -> group -> (E, A_g, n_slots * L * V)."""
        E, S = sent.shape[:2]
        A = self.num_agents_total
        x = sent[:, None].expand(E, A, S, self.message_length, self.vocab_size)
        keep = heard
        if self.drop_prob > 0:
            alive = torch.rand(E, A, S, generator=self._gen, device=self.device) >= self.drop_prob
            keep = alive if keep is None else keep & alive
        if self.flip_prob > 0:
            V = self.vocab_size
            flip = torch.rand(E, A, S, self.message_length, generator=self._gen, device=self.device) < self.flip_prob
            shift = torch.randint(1, V, flip.shape, generator=self._gen, device=self.device) * flip
            x = x.gather(-1, (torch.arange(V, device=self.device) - shift[..., None]) % V)
        if keep is not None:
            x = x * keep[..., None, None].to(x.dtype)
        out = {}
        for g, slots in self._slots.items():
            rows = self._start[g] + torch.arange(slots.shape[0], device=self.device)[:, None]
            out[g] = x[:, rows, slots].flatten(2)  # (E, A_g, n_slots * L * V)
        return out

    def _heard(self) -> Tensor | None:
        if self.comm_range is None:
            return None
        pos = self.positions(self.env)
        E, A = self.num_envs, self.num_agents_total
        if tuple(pos.shape) != (E, A, 2):
            raise ValueError(f"positions(env) must give (E, A_total, 2) = ({E}, {A}, 2), got {tuple(pos.shape)}")
        return range_mask(pos, self.comm_range)[:, :, self._speaker_agent]  # (E, A recv, S)

    # -- the VecEnv API ----------------------------------------------------------
    def _cat(self, obs: dict[str, Tensor], received: dict[str, Tensor]) -> dict[str, Tensor]:
        return {g: torch.cat([o, received[g].to(o.dtype)], -1) for g, o in obs.items()}

    def _mask(self, mask: dict[str, Tensor] | None) -> dict[str, Tensor] | None:
        if mask is None:
            return None
        return {g: m.repeat(1, 1, self.num_messages) if g in self.speakers else m for g, m in mask.items()}

    def reset(self, seed: int | None = None, mask: Tensor | None = None) -> TimeStep:
        ts = self.env.reset(seed=seed, mask=mask)
        if seed is not None:
            self._gen.manual_seed(int(seed) + _SEED_OFFSET)
        if mask is None:
            self._sent = torch.zeros_like(self._sent)
            self._received = {g: torch.zeros_like(r) for g, r in self._received.items()}
        else:
            self._sent = torch.where(mask[:, None], 0.0, self._sent)
            self._received = {g: torch.where(mask[:, None, None], 0.0, r) for g, r in self._received.items()}
        obs = self._cat(ts.obs, self._received)
        return TimeStep(obs=obs, reward=ts.reward, terminated=ts.terminated, truncated=ts.truncated, final_obs=obs,
                        final_state=None, action_mask=self._mask(ts.action_mask), alive=ts.alive, info=ts.info)

    def step(self, actions: dict[str, Tensor]) -> TimeStep:
        validate_actions(self.spec, actions, self.num_envs, self.device)  # ActionError before anything changes
        inner, messages = self.decode(actions)
        heard = self._heard()  # ranges when the messages are said
        ts = self.env.step(inner)
        sent = self._onehot(torch.cat([messages[g] for g in self.speakers], 1))  # (E, S, L, V)
        if self.message_transform is not None:
            sent = self.message_transform(sent)
        delivered = self._deliver(sent, heard)
        done = ts.terminated | ts.truncated
        sent_flat = sent.flatten(1)
        final_state = None
        if ts.final_state is not None and self.spec.state_dim > 0:
            final_state = torch.cat([ts.final_state, sent_flat.to(ts.final_state.dtype)], -1)
        # a new episode starts silent; the ended one keeps its last messages in final_obs
        self._sent = torch.where(done[:, None], 0.0, sent_flat)
        self._received = {g: torch.where(done[:, None, None], 0.0, d) for g, d in delivered.items()}
        obs = self._cat(ts.obs, self._received)
        same = all(ts.final_obs[g] is ts.obs[g] for g in ts.obs)
        final_obs = obs if same else self._cat(ts.final_obs, delivered)
        info = {**ts.info, "messages": messages}
        return TimeStep(obs=obs, reward=ts.reward, terminated=ts.terminated, truncated=ts.truncated,
                        final_obs=final_obs, final_state=final_state, action_mask=self._mask(ts.action_mask),
                        alive=ts.alive, info=info)

    def state(self) -> Tensor:
        s = self.env.state()
        return torch.cat([s, self._sent.to(s.dtype)], -1)

    # -- checkpoints (exact resume) -------------------------------------------------
    def state_dict(self) -> dict[str, Any] | None:
        """The wrapped env's state, the channel's noise stream and the messages in
        flight; None when the wrapped env cannot be saved (the runner then resets)."""
        inner = env_state_dict(self.env)
        if inner is None:
            return None
        return {"env": inner, "generator": self._gen.get_state(), "sent": self._sent,
                "received": dict(self._received)}

    def load_state_dict(self, s: dict[str, Any]) -> None:
        if not load_env_state_dict(self.env, s["env"]):
            raise ValueError("the wrapped env's state could not be restored")
        self._gen.set_state(s["generator"])
        self._sent = s["sent"].to(self.device)
        self._received = {g: r.to(self.device) for g, r in s["received"].items()}

    def render(self, env_index: int = 0) -> np.ndarray:
        return self.env.render(env_index)

    def close(self) -> None:
        if hasattr(self.env, "close"):
            self.env.close()
