"""Value-based MARL in one file: IQL, VDN and QMIX differ only in the mixer.

Every agent has a utility network ``Q_i(o_i, a)`` (feed-forward, or recurrent
over its observation history) and acts epsilon-greedily on it (decentralised
execution). Training (centralised) samples whole stored episodes and minimises
a TD error (one-step below; ``td_lambda`` > 0 uses TD(lambda) targets over the
stored sequence instead, see :func:`lambda_returns`; QMIX defaults to TD(0.6) on
standardised rewards, ``ALGO_DEFAULTS``, measured in docs/credit_assignment.md):

- IQL: each agent on its own reward, ``(Q_i(o_t, a_t) - y_i)^2`` with
  ``y_i = r_i + gamma * (1 - terminated) * Q_i'(o_{t+1}, a*)``;
- VDN: the team on the team reward, ``Q_tot = sum_i Q_i``;
- QMIX: ``Q_tot = mix(Q_1..Q_A, s_t)`` with the monotonic hypernetwork mixer,
  and the target ``y = r + gamma * (1 - terminated) * mix'(Q'_1..Q'_A, s_{t+1})``.

``Q'`` and ``mix'`` are target networks (hard copies every
``target_update_interval`` updates, or Polyak averaging with ``tau``).
``a*`` is the greedy next action of the target network, or with double Q-learning
(van Hasselt et al., 2016) that of the online network, evaluated by the target.
Illegal actions (env action masks) are never taken nor bootstrapped from.
With ``comm`` (commnet, tarmac, tarmac_broadcast) the agents of a group talk every
step before the GRU (:class:`GroupQNet`), so ``Q_i`` also sees what the others said.

Groups: every group of the env (e.g. predators and prey) has its own networks,
optimizer and, for the groups in ``QDerived.mixed_groups`` (``mixer_groups``), its
own mixer on its team reward (``team_reward`` of the group's agents' rewards); the
other groups learn as IQL. On a competitive env the mixed groups must be named
(``fastmarl.config.q``), so that a mixer is a choice there, not a default.

Episode storage (:class:`fastmarl.algos.replay.EpisodeBuffer`), per group ``g``
with ``A`` agents, ``T`` steps, ``n`` actions, ``D`` observation features:

=================  =====================  ======================================
field              shape                  meaning
=================  =====================  ======================================
obs/g              (B, T + 1, A, D)       observations, the last is final_obs
mask/g             (B, T + 1, A, n)       legal actions (if the env masks)
state              (B, T + 1, S)          global state (QMIX)
action/g           (B, T, A)              actions taken
reward/g           (B, T, A)              rewards received
terminated         (B, T)                 the episode terminated at t (no bootstrap)
filled             (B, T)                 real (not padded) steps
=================  =====================  ======================================

Python API: ``fastmarl.train(QConfig(algo="qmix", env="simple_spread_v3"))`` runs
:class:`QLearner` in the one training loop (:mod:`fastmarl.train.loop`) and returns its
``TrainResult``; the config is a typed dataclass in :mod:`fastmarl.config.q`, validated by
``validate_q_config`` (unknown keys in ``QConfig.from_dict`` are errors). ``fastmarl train --algo qmix ...``
does the same from the shell; with ``runs_dir`` set, ``fastmarl eval`` / ``fastmarl render`` load the run, and
``fastmarl train --resume runs/NAME`` continues it from its latest checkpoint, which
holds the replay buffer (``replay.safetensors``, checksummed in the manifest with the
rest), optimizers, target networks, RNG and env state and the unfinished episodes:
on CPU a resumed run ends with the weights of an uninterrupted one.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import Tensor, nn

from fastmarl.algos.q_targets import bootstrap_values, hard_update, lambda_returns, soft_update
from fastmarl.algos.replay import EpisodeBuffer
from fastmarl.algos.tabular import epsilon_greedy, linear_schedule
from fastmarl.config.q import QConfig, QDerived
from fastmarl.envs.api import EnvSpec, GroupSpec, TimeStep
from fastmarl.nn.comm import make_comm
from fastmarl.nn.layers import AgentGRU, AgentLinear, AgentMLP, agent_id_onehot
from fastmarl.nn.mixers import QMixer, VDNMixer
from fastmarl.nn.normalize import RunningMeanStd

# -- networks -----------------------------------------------------------------------

class GroupQNet(nn.Module):
    """Utility networks of one group: obs (..., A, D) -> Q (..., A, n).

    ``num_layers`` ReLU layers, then (``comm``) a communication module that mixes
    the agents' features ``(..., A, H) -> (..., A, H)`` within each time step
    (:func:`fastmarl.nn.comm.make_comm`, all-to-all: every agent of the group hears
    every other; no range masks), then a GRU (recurrent) and a linear head; one
    set of weights shared by the group's agents or one per agent (batched).
    Without ``comm`` agent i's Q-values depend on its own observations only."""

    def __init__(self, group: GroupSpec, cfg: QConfig):
        super().__init__()
        A = group.num_agents
        self.num_agents = A
        self.use_id = cfg.agent_id and cfg.share_params and A > 1
        K = 1 if cfg.share_params else A
        in_dim = group.obs_dim + (A if self.use_id else 0)
        self.body = AgentMLP(K, in_dim, cfg.hidden_size, cfg.num_layers, "relu")
        # the only path from one agent's observation to another's Q-values
        self.comm = make_comm(cfg.comm, self.body.out_features, cfg.comm_rounds, K) if cfg.comm != "none" else None
        self.gru = AgentGRU(K, self.body.out_features, cfg.hidden_size) if cfg.recurrent else None
        feat = cfg.hidden_size if cfg.recurrent else self.body.out_features
        self.head = AgentLinear(K, feat, group.action_dim, gain=1.0)
        self.hidden_size = cfg.hidden_size

    def inputs(self, obs: Tensor) -> Tensor:
        if not self.use_id:
            return obs
        eye = agent_id_onehot(self.num_agents, obs)
        return torch.cat([obs, eye.expand(*obs.shape[:-1], self.num_agents)], -1)

    def features(self, obs: Tensor) -> Tensor:
        """obs (..., A, D) -> the agents' features after the MLP and communication, (..., A, F)."""
        x = self.body(self.inputs(obs))
        return x if self.comm is None else self.comm(x)

    def step(self, obs: Tensor, h: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """One step: obs (E, A, D), h (E, A, H) or None -> (Q (E, A, n), h')."""
        x = self.features(obs)
        if self.gru is not None:
            h = self.gru.step(x, h)
            x = h
        return self.head(x), h

    def sequence(self, obs: Tensor) -> Tensor:
        """Whole sequences starting with a zero hidden state: obs (T, B, A, D) -> Q (T, B, A, n)."""
        x = self.features(obs)  # comm mixes agents within each (t, b) only: padded steps reach no real one
        if self.gru is not None:
            h = x.new_zeros(*x.shape[1:-1], self.hidden_size)
            outs = []
            for t in range(x.shape[0]):
                h = self.gru.step(x[t], h)
                outs.append(h)
            x = torch.stack(outs)
        return self.head(x)


def make_mixer(cfg: QConfig, group: GroupSpec, state_dim: int) -> nn.Module | None:
    if cfg.algo == "iql":
        return None
    if cfg.algo == "vdn":
        return VDNMixer()
    return QMixer(group.num_agents, state_dim, cfg.mixer_embed, cfg.hypernet_layers, cfg.hypernet_embed)


# -- the learner ----------------------------------------------------------------------

class QLearner:
    """Networks, target networks, optimizers, acting and the TD update of every group,
    behind the :class:`~fastmarl.algos.learner.Learner` protocol of the training loop.

    ``act`` follows the :class:`~fastmarl.envs.api.Policy` protocol
    (deterministic: greedy; else epsilon-greedy with the current ``epsilon``).
    ``collect`` steps every env once and stores the transitions in the episode
    replay buffer (:class:`EpisodeBuffer`); ``update`` then does one gradient step
    (``learn``) per ``update_interval`` env steps, once ``learning_starts`` episodes
    are stored. ``record`` and ``learn`` are the two halves on their own, for callers
    that keep their own buffer.
    """

    eval_modes = ("det",)  # greedy evaluation (epsilon-greedy is exploration, not the policy)

    def __init__(self, spec: EnvSpec, cfg: QConfig, derived: QDerived, device: torch.device | str = "cpu"):
        self.spec, self.cfg, self.derived = spec, cfg, derived
        self.device = torch.device(device)
        self.use_state = cfg.algo == "qmix"
        self.agents = nn.ModuleDict({n: GroupQNet(g, cfg) for n, g in spec.groups.items()}).to(self.device)
        mixers = {n: make_mixer(cfg, g, spec.state_dim) if n in derived.mixed_groups else None
                  for n, g in spec.groups.items()}
        self.mixers = nn.ModuleDict({n: m for n, m in mixers.items() if m is not None}).to(self.device)
        # running reward statistics per group (standardise_rewards), saved with the weights
        self.reward_norm = nn.ModuleDict({n: RunningMeanStd() for n in spec.groups}).to(self.device)
        # per-feature statistics of the replayed global states (QMIX with state_clip > 0)
        self.state_norm = (RunningMeanStd(shape=(spec.state_dim,)).to(self.device)
                           if self.use_state and derived.state_clip > 0 else None)
        self.target_agents = copy.deepcopy(self.agents).requires_grad_(False)
        self.target_mixers = copy.deepcopy(self.mixers).requires_grad_(False)
        self.optimizers = {}
        for n in spec.groups:
            params = list(self.agents[n].parameters()) + (list(self.mixers[n].parameters()) if n in self.mixers else [])
            self.optimizers[n] = (torch.optim.Adam(params, lr=cfg.lr) if cfg.optimizer == "adam"
                                  else torch.optim.RMSprop(params, lr=cfg.lr, alpha=0.99, eps=1e-5))
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(cfg.seed)
        self.epsilon = cfg.epsilon_start
        self.num_updates = 0
        self.planned_steps = cfg.total_steps
        # the rollout's position (begin / collect): the TimeStep and state to act on next, the GRU carry,
        # env steps taken, and the update credit (gradient steps owed, one per update_interval env steps)
        self.buffer: EpisodeBuffer | None = None
        self.ts: TimeStep | None = None
        self.state: Tensor | None = None
        self.carry: dict[str, Tensor] = {}
        self.env_steps, self.credit = 0, 0.0

    # -- acting -------------------------------------------------------------------
    def initial_carry(self, num_envs: int) -> dict[str, Tensor]:
        if not self.cfg.recurrent:
            return {}
        return {n: torch.zeros(num_envs, g.num_agents, self.cfg.hidden_size, device=self.device)
                for n, g in self.spec.groups.items()}

    def _mask(self, ts: TimeStep, name: str) -> Tensor | None:
        return ts.action_mask[name] if self.derived.action_masks[name] and ts.action_mask is not None else None

    @torch.no_grad()
    def act(self, ts: TimeStep, carry: dict[str, Tensor], deterministic: bool = False,
            generator: torch.Generator | None = None) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Epsilon-greedy actions group -> (E, A_g) for ``ts.obs``; hidden states are
        reset where ``ts.done`` (``ts.obs`` begins a new episode)."""
        eps = 0.0 if deterministic else self.epsilon
        actions, new_carry = {}, {}
        for name, net in self.agents.items():
            h = carry.get(name)
            if h is not None:
                h = torch.where(ts.done[:, None, None], 0.0, h)
            q, h = net.step(ts.obs[name], h)
            actions[name] = epsilon_greedy(q, eps, self._mask(ts, name), generator or self.generator)
            if h is not None:
                new_carry[name] = h
        return actions, new_carry

    def set_step(self, step: int) -> None:
        """The exploration rate of env step ``step`` (epsilon's linear schedule)."""
        c = self.cfg
        self.epsilon = linear_schedule(c.epsilon_start, c.epsilon_end, c.epsilon_anneal_steps, step)

    # -- the Learner protocol ---------------------------------------------------------
    def _ensure_buffer(self, num_envs: int) -> EpisodeBuffer:
        if self.buffer is None:
            self.buffer = EpisodeBuffer(self.cfg.buffer_size, self.derived.max_seq_len, num_envs,
                                        *self.buffer_fields(), self.device)
        return self.buffer

    def begin(self, env, seed: int) -> None:
        """Start from ``env.reset(seed=seed)`` (unfinished episodes in the buffer are dropped)."""
        self.start(env.reset(seed=seed), env)

    def start(self, ts: TimeStep, env) -> None:
        """Start from ``ts``, the first TimeStep of a freshly reset ``env``."""
        self._ensure_buffer(env.num_envs).reset_envs()
        self.ts = ts
        self.state = env.state() if self.use_state else None
        self.carry = self.initial_carry(env.num_envs)

    @torch.no_grad()
    def collect(self, env, tracker) -> int:
        """One epsilon-greedy step of every env, stored in the replay buffer."""
        actions = self.act_step()
        next_ts = env.step(actions)
        tracker(next_ts)
        return self.record_step(actions, next_ts, env)

    # ``collect`` in two halves, for several learners sharing one env (fastmarl.algos.lockstep)
    @torch.no_grad()
    def act_step(self) -> dict[str, Tensor]:
        """Epsilon-greedy actions group -> (E, A_g) at the current TimeStep (epsilon of this env step)."""
        self.set_step(self.env_steps)
        actions, self.carry = self.act(self.ts, self.carry)
        return actions

    @torch.no_grad()
    def record_step(self, actions: dict[str, Tensor], next_ts: TimeStep, env) -> int:
        """Store the step ``actions -> next_ts`` of every env in the replay buffer; returns the env steps."""
        next_state = final_state = None
        if self.use_state:
            next_state = env.state()
            final_state = next_ts.final_state if next_ts.final_state is not None else next_state
        self.record(self.buffer, self.ts, self.state, actions, next_ts, final_state)
        self.ts, self.state = next_ts, next_state
        E = env.num_envs
        self.env_steps += E
        self.credit += E / self.cfg.update_interval
        return E

    def update(self, progress: float) -> dict[str, list[Tensor]]:
        """The gradient steps the credit allows (none before ``learning_starts`` episodes are
        stored); each metric is the list of its values, one per gradient step."""
        cfg, out = self.cfg, {}
        if len(self.buffer) >= max(cfg.learning_starts, 1):
            while self.credit >= 1.0:
                self.credit -= 1.0
                for k, v in self.learn(self.buffer.sample(cfg.batch_size, self.generator)).items():
                    out.setdefault(k, []).append(v)
        else:
            self.credit = min(self.credit, 1.0)  # no backlog of updates from before learning starts
        return out

    def log_info(self) -> dict[str, float]:
        return {"epsilon": self.epsilon, "updates": self.num_updates,
                "episodes_stored": self.buffer.episodes_added if self.buffer is not None else 0}

    # -- replay layout -----------------------------------------------------------------
    def buffer_fields(self) -> tuple[dict, dict]:
        """(step_fields, obs_fields) for :class:`EpisodeBuffer`."""
        step, obs = {"terminated": ((), torch.bool)}, {}
        for n, g in self.spec.groups.items():
            obs[f"obs/{n}"] = ((g.num_agents, g.obs_dim), torch.float32)
            if self.derived.action_masks[n]:
                obs[f"mask/{n}"] = ((g.num_agents, g.action_dim), torch.bool)
            step[f"action/{n}"] = ((g.num_agents,), torch.long)
            step[f"reward/{n}"] = ((g.num_agents,), torch.float32)
        if self.use_state:
            obs["state"] = ((self.spec.state_dim,), torch.float32)
        return step, obs

    def record(self, buffer: EpisodeBuffer, ts: TimeStep, state: Tensor | None, actions: dict[str, Tensor],
               next_ts: TimeStep, next_state: Tensor | None) -> int:
        """Add the step ``ts --actions--> next_ts`` of all envs to ``buffer``.
        ``state``: env.state() of ``ts``; ``next_state``: the state after the step
        (``next_ts.final_state`` where an episode ended)."""
        done = next_ts.done
        obs = {f"obs/{n}": ts.obs[n] for n in self.spec.groups}
        nxt = {f"obs/{n}": next_ts.final_obs[n] for n in self.spec.groups}
        step: dict[str, Tensor] = {"terminated": next_ts.terminated}
        for n in self.spec.groups:
            step[f"action/{n}"] = actions[n]
            step[f"reward/{n}"] = next_ts.reward[n]
            if self.derived.action_masks[n]:
                obs[f"mask/{n}"] = ts.action_mask[n]
                # the mask after the last step is unknown (next_ts's mask belongs to the reset obs): all legal
                nxt[f"mask/{n}"] = next_ts.action_mask[n] | done[:, None, None]
        if self.use_state:
            obs["state"], nxt["state"] = state, next_state
        return buffer.add(obs, step, nxt, done)

    # -- the update ----------------------------------------------------------------------
    def loss(self, name: str, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """TD loss of group ``name`` on a sampled batch (see the module docstring)."""
        cfg, net = self.cfg, self.agents[name]
        obs = batch[f"obs/{name}"].transpose(0, 1)  # (T + 1, B, A, D): time-major for the GRU
        actions = batch[f"action/{name}"].transpose(0, 1)  # (T, B, A)
        reward = batch[f"reward/{name}"].transpose(0, 1)
        term = batch["terminated"].transpose(0, 1).float()  # (T, B)
        filled = batch["filled"].transpose(0, 1).float()
        mask = batch.get(f"mask/{name}")
        mask_next = mask.transpose(0, 1)[1:] if mask is not None else None
        q = net.sequence(obs)  # (T + 1, B, A, n)
        chosen = q[:-1].gather(-1, actions[..., None]).squeeze(-1)  # (T, B, A)
        with torch.no_grad():
            q_targ = self.target_agents[name].sequence(obs)
            v_next = bootstrap_values(q[1:].detach(), q_targ[1:], mask_next, cfg.double_q)  # (T, B, A)
        mixer = self.mixers[name] if name in self.mixers else None
        if mixer is None:  # IQL: every agent on its own reward
            reward = self._standardise(name, reward, filled[..., None].expand_as(reward))
            f = filled[..., None].expand_as(reward)
            target = lambda_returns(reward, term[..., None].expand_as(reward), f, v_next, cfg.gamma,
                                    self.derived.td_lambda)
            td = (chosen - target) * filled[..., None]
            loss = (td ** 2).sum() / (filled.sum() * td.shape[-1]).clamp_min(1.0)
            q_taken = chosen
        else:
            state = self._mixer_state(batch["state"].transpose(0, 1), filled) if self.use_state else None
            r = reward.mean(-1) if cfg.team_reward == "mean" else reward.sum(-1)
            r = self._standardise(name, r, filled)
            q_taken = mixer(chosen, state[:-1] if state is not None else None)  # (T, B)
            with torch.no_grad():
                v_tot = self.target_mixers[name](v_next, state[1:] if state is not None else None)
            target = lambda_returns(r, term, filled, v_tot, cfg.gamma, self.derived.td_lambda)
            td = (q_taken - target) * filled
            loss = (td ** 2).sum() / filled.sum().clamp_min(1.0)
        # diagnostics over real steps (and agents, for IQL): mean |TD error|, Q of the taken actions, the
        # target, and the discounted return actually received from t to the end of the stored sequence (no
        # bootstrap: with negative rewards and a time limit Q should sit below it, never far above)
        w = filled if q_taken.dim() == 2 else filled[..., None].expand_as(q_taken)
        n_real = w.sum().clamp_min(1.0)
        with torch.no_grad():
            r_used = reward if mixer is None else r
            mc = lambda_returns(r_used, torch.zeros_like(r_used), w, torch.zeros_like(r_used), cfg.gamma, 1.0)
        stats = {"loss": loss.detach(), "td_abs": td.detach().abs().sum() / n_real,
                 "q_taken": (q_taken.detach() * w).sum() / n_real, "target": (target * w).sum() / n_real,
                 "return_to_go": (mc * w).sum() / n_real}
        if isinstance(mixer, QMixer):
            with torch.no_grad():
                w1, w2 = mixer.mixing_weights(state[:-1])  # (T, B, A, embed), (T, B, embed)
                stats["mix_w1"] = (w1.mean((-2, -1)) * filled).sum() / n_real
                stats["mix_w2"] = (w2.mean(-1) * filled).sum() / n_real
                stats["q_agents"] = (chosen.detach().mean(-1) * filled).sum() / n_real  # utilities, before mixing
        return loss, stats

    def _mixer_state(self, state: Tensor, filled: Tensor) -> Tensor:
        """(T + 1, B, S) replayed states -> what the mixer sees: normalised per feature and clipped to
        +-state_clip (statistics from the real steps of every batch), or unchanged with state_clip 0."""
        if self.state_norm is None:
            return state
        self.state_norm.update(state[:-1], filled.bool())
        c = self.derived.state_clip
        return self.state_norm.normalize(state).clamp(-c, c)

    def _standardise(self, name: str, r: Tensor, filled: Tensor) -> Tensor:
        if not self.derived.standardise_rewards:
            return r
        norm = self.reward_norm[name]
        norm.update(r, filled.bool())
        return norm.normalize(r)

    def learn(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """One gradient step per group on a sampled batch, then the target update. Returns
        tensors (no sync)."""
        out: dict[str, Tensor] = {}
        for name in self.agents:
            loss, stats = self.loss(name, batch)
            opt = self.optimizers[name]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            params = [p for pg in opt.param_groups for p in pg["params"]]
            stats["grad_norm"] = nn.utils.clip_grad_norm_(params, self.cfg.grad_clip)
            opt.step()
            out.update({f"{k}/{name}": v for k, v in stats.items()})
        self.num_updates += 1
        if self.cfg.target_update == "soft":
            soft_update(self.target_agents, self.agents, self.cfg.tau)
            soft_update(self.target_mixers, self.mixers, self.cfg.tau)
        elif self.num_updates % self.cfg.target_update_interval == 0:
            hard_update(self.target_agents, self.agents)
            hard_update(self.target_mixers, self.mixers)
        return out

    # -- checkpoints --------------------------------------------------------------------
    def weights(self) -> dict[str, Tensor]:
        """Online and target networks, mixers and reward normaliser, by name. Like ``state_dict()``, these
        share storage with the live modules: clone them to keep a snapshot while training goes on."""
        out = {f"agents.{k}": v.detach() for k, v in self.agents.state_dict().items()}
        out.update({f"mixers.{k}": v.detach() for k, v in self.mixers.state_dict().items()})
        out.update({f"reward_norm.{k}": v.detach() for k, v in self.reward_norm.state_dict().items()})
        if self.state_norm is not None:
            out.update({f"state_norm.{k}": v.detach() for k, v in self.state_norm.state_dict().items()})
        out.update({f"target_agents.{k}": v.detach() for k, v in self.target_agents.state_dict().items()})
        out.update({f"target_mixers.{k}": v.detach() for k, v in self.target_mixers.state_dict().items()})
        return out

    def load_weights(self, tensors: dict[str, Tensor]) -> None:
        mods = [("agents.", self.agents), ("mixers.", self.mixers), ("reward_norm.", self.reward_norm),
                ("target_agents.", self.target_agents), ("target_mixers.", self.target_mixers)]
        if self.state_norm is not None:
            mods.append(("state_norm.", self.state_norm))
        for prefix, mod in mods:
            sd = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
            if prefix in ("target_agents.", "target_mixers.", "reward_norm.", "state_norm.") and not sd:
                continue  # weights exported without targets (or from before reward or state statistics)
            mod.load_state_dict(sd)

    def trainer_state(self) -> dict[str, Any]:
        """Optimizers, the sampling/exploration generator, update count, epsilon, the rollout's
        position and the replay buffer's counters (its tensors are ``extra_tensors``)."""
        ts = self.ts
        s = {"optimizers": {n: o.state_dict() for n, o in self.optimizers.items()},
             "generator": self.generator.get_state(), "num_updates": self.num_updates, "epsilon": self.epsilon}
        if ts is not None:
            s["rollout"] = {"ts": {"obs": ts.obs, "terminated": ts.terminated, "truncated": ts.truncated,
                                   "action_mask": ts.action_mask, "alive": ts.alive},
                            "state": self.state, "carry": self.carry, "env_steps": self.env_steps,
                            "credit": self.credit}
            s["replay"] = self.buffer.to_tensors()[1]
        return s

    def load_trainer_state(self, s: dict[str, Any]) -> None:
        for n, o in self.optimizers.items():
            o.load_state_dict(s["optimizers"][n])
        self.generator.set_state(s["generator"])
        self.num_updates, self.epsilon = int(s["num_updates"]), float(s["epsilon"])
        r = s["rollout"]
        t = r["ts"]
        # reward/final_obs of the step that produced ts are not read (record() reads the next step's)
        self.ts = TimeStep(obs=t["obs"], reward={}, terminated=t["terminated"], truncated=t["truncated"],
                           final_obs=t["obs"], action_mask=t["action_mask"], alive=t["alive"])
        self.state, self.carry = r["state"], r["carry"]
        self.env_steps, self.credit = int(r["env_steps"]), float(r["credit"])
        self._replay_counters = s["replay"]
        self._ensure_buffer(self.ts.terminated.shape[0])

    def extra_tensors(self) -> dict[str, dict[str, Tensor]]:
        """The replay buffer (``replay.safetensors``), unless ``checkpoint_replay`` is off."""
        if not self.cfg.checkpoint_replay or self.buffer is None:
            return {}
        return {REPLAY_FILE: self.buffer.to_tensors()[0]}

    def load_extra_tensors(self, read) -> None:
        replay = read(REPLAY_FILE, "the replay buffer: the run was saved with checkpoint_replay=False or by a "
                                   "fastmarl without Q-learning resume")
        self.buffer.load_tensors(replay, self._replay_counters)  # ValueError: does not fit this config


REPLAY_FILE = "replay.safetensors"


__all__ = ["QLearner", "GroupQNet", "make_mixer", "REPLAY_FILE"]
