"""Competitive and mixed training as opponent scheduling over the one training loop.

Every group of the env gets a :class:`~fastmarl.config.competitive.GroupSetup`: trained by its
own PPO learner (``algo`` ``"mappo"`` or ``"ippo"`` with its own hyper-parameters, e.g. MAPPO
predators vs IPPO prey), ``"frozen"`` (a saved policy that never changes), ``"scripted"`` (a
hand-written policy, :mod:`fastmarl.train.pool`) or ``"random"``. :class:`SelfPlay` is the
:class:`~fastmarl.algos.learner.Learner` that :func:`fastmarl.train.loop.run_loop` drives: it
holds one PPO learner per trained group, the snapshot pool and the opponent draw, and shares
one batched env between them in lockstep (each samples its own groups' actions, the env steps
once with every group's actions, each records its own groups' data). The loop does the rest:
log rows, evaluation, checkpoints and exact resume, TensorBoard, the progress bar, the GIF.

Self-play (``schedule``):

- ``"alternate"`` (default): training proceeds in phases of ``phase_steps`` env steps; in each
  phase one trained group learns (in group order, cyclically) while every other trained group
  plays a *snapshot from its pool*, resampled at every iteration (``num_envs * num_steps`` env
  steps) with ``opponent_sampling``: ``"latest"`` (iterated best response), ``"uniform"`` over
  the newest ``pool_size`` snapshots (fictitious-play-like), or ``"prioritised"``, which favours
  the snapshots the learner currently does worst against (weights ``exp(-(R_i - min R) / std R)``
  of the learner's running mean return ``R_i`` against snapshot ``i``; unseen snapshots count as
  the worst).
- ``"simultaneous"``: every trained group learns at every iteration against the others' current
  policies; the pool only feeds the evaluation.

Snapshots of a trained group are saved at step 0, every ``snapshot_interval`` env steps, at the
end of each of its phases and at the end of training; only groups whose weights changed since
their last snapshot are saved.

The run directory (``runs/<name>/``, :class:`~fastmarl.train.rundir.RunDir`): ``config.json``
(``"kind": "competitive"``), ``meta.json``, ``metrics.csv`` (one row per iteration: which group
learned, the sampled opponents' snapshot steps, per-group returns and losses), ``eval.csv``
(per-group returns of the current policies, sampled actions, and of each trained group against
random opponents), ``checkpoints/`` (``train(resume=run_dir)`` continues exactly: on CPU it
equals an uninterrupted run), ``pool/<group>/step_<step>/`` and ``returns.png``. The matrix,
ratings and exploitability are :mod:`fastmarl.analysis.competitive`'s.

Limits: learners are PPO-family only (a value-based learner keeps whole episodes in a replay
buffer, which the phases of the alternate schedule would cut); the learners of one run share
``num_envs`` and ``ppo.num_steps`` (lockstep); frozen, pool and scripted policies act
stochastically (sampled, as they were trained) and a recurrent one restarts its hidden state at
every iteration.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from fastmarl.algos.ppo import PPO
from fastmarl.config import ConfigError, Derived, TrainConfig, check_env_settings, resolve
from fastmarl.config.competitive import (
    RESUMABLE_COMPETITIVE,
    CompetitiveConfig,
    GroupSetup,
    check_competitive,
)
from fastmarl.envs import make
from fastmarl.envs.api import EnvSpec, JointPolicy, Policy, TimeStep, check_known_keys
from fastmarl.envs.episodes import EpisodeTracker
from fastmarl.envs.scripted import RandomPolicy
from fastmarl.train.loop import Callback, Loop, LoopSettings, crossed
from fastmarl.train.pool import (
    PRIORITY_EMA,
    episode_returns,
    list_snapshots,
    load_group_policy,
    load_snapshot,
    sample_snapshot,
    save_snapshot,
    scripted_policy,
    snapshot_step,
    sub_spec,
)
from fastmarl.train.rundir import RunDir, plot_returns
from fastmarl.train.runner import resume_checkpoint

LEARNER_SEED_STRIDE = 7919  # learners of one run sample with different generators


# -- validation -----------------------------------------------------------------------

def learner_config(cfg: CompetitiveConfig, group: str, setup: GroupSetup, index: int) -> TrainConfig:
    """The TrainConfig of one group's learner (its own algo, PPO settings and sampling seed)."""
    ppo = dataclasses.replace(cfg.ppo, **setup.ppo)
    return TrainConfig(algo=setup.algo, env=cfg.env, env_kwargs=dict(cfg.env_kwargs), total_steps=cfg.total_steps,
                       num_envs=cfg.num_envs, seed=cfg.seed + LEARNER_SEED_STRIDE * (index + 1), device=cfg.device,
                       gif=False, tensorboard=False, progress=False, ppo=ppo)


@dataclass(frozen=True)
class Plan:
    """What a validated config resolves to against the env."""

    setups: dict[str, GroupSetup]  # every group of the env, in spec order
    trained: list[str]  # groups with mode train, in spec order
    learner_configs: dict[str, TrainConfig]
    learner_derived: dict[str, Derived]
    steps_per_iteration: int  # num_envs * num_steps (shared by all learners)
    num_iterations: int


def validate(cfg: CompetitiveConfig, env) -> Plan:
    """Check ``cfg`` against the env; every problem is a ConfigError naming the setting."""
    spec: EnvSpec = env.spec
    check_known_keys(cfg.groups, spec.groups, f"group of {spec.env_id}", ConfigError)
    check_competitive(cfg)
    setups = {g: cfg.groups.get(g, GroupSetup()) for g in spec.groups}
    for g, s in setups.items():
        if s.mode == "frozen" and not Path(s.checkpoint).exists():
            raise ConfigError(f"groups.{g}.checkpoint {s.checkpoint!r} does not exist")
        if s.mode == "scripted":
            scripted_policy(s.scripted, env, cfg.env_kwargs)  # raises for unknown names
    trained = [g for g, s in setups.items() if s.mode == "train"]
    if not trained:
        raise ConfigError("no group is trained (mode 'train'); to only compare fixed policies use "
                          "fastmarl.analysis.competitive.play_matrix")
    configs = {g: learner_config(cfg, g, setups[g], i) for i, g in enumerate(trained)}
    derived = {}
    for g, c in configs.items():
        try:
            derived[g] = resolve(c, sub_spec(spec, [g]))
        except ConfigError as e:
            raise ConfigError(f"group {g!r}: {e}") from None
    steps = {g: c.ppo.num_steps for g, c in configs.items()}
    if len(set(steps.values())) > 1:
        raise ConfigError(f"the learners share the env in lockstep, so their ppo.num_steps must be equal, got {steps}")
    spi = derived[trained[0]].steps_per_iteration
    if cfg.schedule == "alternate" and len(trained) > 1 and cfg.phase_steps < spi:
        raise ConfigError(f"phase_steps={cfg.phase_steps} is shorter than one iteration (num_envs * num_steps = {spi})")
    return Plan(setups, trained, configs, derived, spi, -(-cfg.total_steps // spi))


def fixed_policies(plan: Plan, env, device: str | torch.device,
                   env_kwargs: dict[str, Any] | None = None) -> dict[str, Policy]:
    """Policies of the frozen, scripted and random groups."""
    out: dict[str, Policy] = {}
    for g, s in plan.setups.items():
        if s.mode == "frozen":
            out[g] = load_group_policy(s.checkpoint, g, env.spec, device)
        elif s.mode == "scripted":
            out[g] = scripted_policy(s.scripted, env, env_kwargs)
        elif s.mode == "random":
            out[g] = RandomPolicy(sub_spec(env.spec, [g]))
    return out


# -- the learner ------------------------------------------------------------------------

def _return_key(group: str, spec: EnvSpec) -> str:
    return f"return/{group}" if len(spec.groups) > 1 else "return"


def _ts_state(ts: TimeStep) -> dict[str, Any]:
    return {"obs": ts.obs, "terminated": ts.terminated, "truncated": ts.truncated, "action_mask": ts.action_mask,
            "alive": ts.alive, "positions": ts.info.get("positions")}


def _ts_from_state(t: dict[str, Any]) -> TimeStep:
    positions = t.get("positions")
    return TimeStep(obs=t["obs"], reward={}, terminated=t["terminated"], truncated=t["truncated"], final_obs=t["obs"],
                    action_mask=t["action_mask"], alive=t["alive"], info={} if positions is None else
                    {"positions": positions})


class SelfPlay:
    """One PPO learner per trained group, the fixed groups' policies, the pool and the opponent draw,
    as one :class:`~fastmarl.algos.learner.Learner` (see the module docstring).

    ``collect`` is one iteration: at a phase change the groups that learned go to the pool and the
    next phase's learners start from the current TimeStep; the other trained groups' opponents are
    drawn; then ``num_steps`` lockstep steps of the env. ``update`` updates the learning groups and
    snapshots them when due. ``act`` is the joint policy of the current learners and the fixed
    groups; ``evaluate`` the competitive evaluation row the loop logs."""

    eval_modes = ("stoch",)  # the policies act sampled, as they were trained (see ``evaluate``)

    def __init__(self, cfg: CompetitiveConfig, plan: Plan, spec: EnvSpec, learners: dict[str, PPO],
                 fixed: dict[str, Policy], pool: Path | None, device: torch.device):
        self.cfg, self.plan, self.spec, self.learners, self.fixed = cfg, plan, spec, learners, fixed
        self.pool, self.device = pool, device
        self.planned_steps = plan.num_iterations * plan.steps_per_iteration
        self.num_steps = plan.learner_configs[plan.trained[0]].ppo.num_steps
        self.gen = torch.Generator(device=device)  # fixed policies' and opponents' sampling
        self.gen.manual_seed(cfg.seed + 1)
        self.pool_gen = torch.Generator()  # opponent draws
        self.pool_gen.manual_seed(cfg.seed + 2)
        self.vs_returns: dict[str, dict[str, float]] = {g: {} for g in plan.trained}  # opponent -> snapshot -> R
        self.tracker = EpisodeTracker(spec, cfg.num_envs, device)  # the learners' returns against their opponents
        self.loaded: dict[Path, PPO] = {}  # snapshots are immutable once written: load each once
        self.dirty: set[str] = set()
        self.active: list[str] = []
        self.step = 0
        self.ts: TimeStep | None = None
        self.opponents: dict[str, tuple[PPO, Path]] = {}
        self._info: dict[str, Any] = {}

    # -- scheduling ------------------------------------------------------------------------
    def active_at(self, step: int) -> list[str]:
        """The groups that learn in the iteration starting at ``step``."""
        tr = self.plan.trained
        if self.cfg.schedule == "simultaneous" or len(tr) == 1:
            return list(tr)
        return [tr[(step // self.cfg.phase_steps) % len(tr)]]

    def snapshot(self, groups) -> None:
        if self.pool is not None:
            for g in sorted(groups):
                save_snapshot(self.pool, g, self.step, self.learners[g], self.plan.learner_configs[g].algo)
        self.dirty -= set(groups)

    def draw_opponents(self, active: list[str]) -> dict[str, tuple[PPO, Path]]:
        """Trained groups that do not learn this iteration: (snapshot policy, its path)."""
        out = {}
        for g in self.plan.trained:
            if g in active:
                continue
            stats = self.vs_returns[g] if self.cfg.opponent_sampling == "prioritised" else None
            path = sample_snapshot(list_snapshots(self.pool, g), self.cfg.opponent_sampling, self.cfg.pool_size,
                                   self.pool_gen, stats)
            if path not in self.loaded:
                if len(self.loaded) >= 4 * len(self.plan.trained) * self.cfg.pool_size:
                    self.loaded.pop(next(iter(self.loaded)))  # the oldest loaded
                self.loaded[path] = load_snapshot(path, self.spec, self.device)[0]
            out[g] = (self.loaded[path], path)
        return out

    def credit(self, active: list[str], opponents: dict[str, tuple[PPO, Path]], stats: dict[str, float]) -> None:
        """Running mean of the learner's return against each opponent snapshot (prioritised sampling)."""
        for learner in active:
            r = stats.get(_return_key(learner, self.spec))
            if r is None:
                continue
            for g, (_, path) in opponents.items():
                old = self.vs_returns[g].get(path.name)
                self.vs_returns[g][path.name] = r if old is None else (1 - PRIORITY_EMA) * old + PRIORITY_EMA * r

    # -- the Learner protocol ------------------------------------------------------------------
    def begin(self, env, seed: int) -> None:
        self.ts = env.reset(seed=seed)
        if self.step == 0:
            self.snapshot(self.plan.trained)
        else:  # a resume whose env could not restore its state: the learning groups go on from a new reset
            for g in self.active:
                self.learners[g].start(self.ts)

    @torch.no_grad()
    def collect(self, env, tracker) -> int:
        new_active = self.active_at(self.step)
        if new_active != self.active:  # a phase ended: its learner goes to the pool, the next one starts
            self.snapshot(self.dirty)
            for g in new_active:
                self.learners[g].start(self.ts)
            self.active = new_active
        learners = [self.learners[g] for g in self.active]
        self.opponents = self.draw_opponents(self.active)
        joint = JointPolicy({**self.fixed, **{g: p for g, (p, _) in self.opponents.items()}})
        carry = joint.initial_carry(env.num_envs)
        centralized = any(lrn.centralized for lrn in learners)
        ts = self.ts
        for lrn in learners:
            lrn.start_rollout()
        for t in range(self.num_steps):
            state = env.state() if centralized else None
            actions, carry = joint.act(ts, carry, False, self.gen)
            for lrn in learners:
                actions.update(lrn.act_step(t, state))
            ts = env.step(actions)
            tracker(ts)
            self.tracker(ts)
            for lrn in learners:
                lrn.record_step(t, ts, env)
        for lrn in learners:
            lrn.end_rollout(env)
        self.ts = ts
        return self.plan.steps_per_iteration

    def update(self, progress: float) -> dict[str, float]:
        metrics: dict[str, float] = {}
        for g in self.active:
            metrics.update(self.learners[g].update(progress))
        self.dirty.update(self.active)
        prev, self.step = self.step, self.step + self.plan.steps_per_iteration
        self.credit(self.active, self.opponents, self.tracker.pop())
        self._info = {"learning": "+".join(self.active),
                      **{f"opponent/{g}": snapshot_step(p) for g, (_, p) in self.opponents.items()}}
        if self.step >= self.planned_steps or crossed(prev, self.step, self.cfg.snapshot_interval):
            self.snapshot(self.dirty)
        return metrics

    def log_info(self) -> dict[str, Any]:
        """The groups that learned in the last iteration (``learning``, e.g. ``"adversary"``) and the
        snapshot step of each opponent they played (``opponent/<group>``)."""
        return dict(self._info)

    @torch.no_grad()
    def evaluate(self, env, seed: int) -> dict[str, float]:
        """Per-group returns (``return/<group>``) of the current policies, sampled actions, one paired
        episode per env; with several trained groups also each one's return against random opponents
        (``return_vs_random/<group>``)."""
        current = {**self.fixed, **self.learners}
        rets = episode_returns(JointPolicy(current), env, seed)
        row = {_return_key(g, self.spec): v.mean().item() for g, v in rets.items()}
        for g in self.plan.trained:
            if len(self.plan.trained) == 1:
                break
            vs = {**current, **{o: RandomPolicy(sub_spec(self.spec, [o])) for o in self.plan.trained if o != g}}
            row[f"return_vs_random/{g}"] = episode_returns(JointPolicy(vs), env, seed)[g].mean().item()
        return row

    # -- acting -------------------------------------------------------------------------------
    def _joint(self) -> JointPolicy:
        return JointPolicy({g: self.fixed[g] if g in self.fixed else self.learners[g] for g in self.spec.groups})

    def initial_carry(self, num_envs: int) -> list:
        return self._joint().initial_carry(num_envs)

    def act(self, ts: TimeStep, carry: list, deterministic: bool = False,
            generator: torch.Generator | None = None) -> tuple[dict[str, Tensor], list]:
        return self._joint().act(ts, carry, deterministic, generator)

    # -- checkpoints ----------------------------------------------------------------------------
    def weights(self) -> dict[str, Tensor]:
        """The trained groups' weights (PPO names them ``<group>.<parameter>``)."""
        return {k: v for lrn in self.learners.values() for k, v in lrn.weights().items()}

    def load_weights(self, tensors: dict[str, Tensor]) -> None:
        for g, lrn in self.learners.items():
            lrn.load_weights({k: v for k, v in tensors.items() if k.startswith(f"{g}.")})

    def trainer_state(self) -> dict[str, Any]:
        # a learner whose phase has not come yet has no rollout position (nor state) to save
        return {"learners": {g: lrn.trainer_state() for g, lrn in self.learners.items() if lrn.ts is not None},
                "gen": self.gen.get_state(), "pool_gen": self.pool_gen.get_state(), "vs_returns": self.vs_returns,
                "tracker": self.tracker.state_dict(), "dirty": sorted(self.dirty), "active": list(self.active),
                "step": self.step, "ts": _ts_state(self.ts), "info": dict(self._info)}

    def load_trainer_state(self, s: dict[str, Any]) -> None:
        for g, state in s["learners"].items():
            self.learners[g].load_trainer_state(state)
        self.gen.set_state(s["gen"])
        self.pool_gen.set_state(s["pool_gen"])
        self.vs_returns = {g: dict(v) for g, v in s["vs_returns"].items()}
        self.tracker.load_state_dict(s["tracker"])
        self.dirty, self.active, self.step = set(s["dirty"]), list(s["active"]), int(s["step"])
        self.ts, self._info = _ts_from_state(s["ts"]), dict(s["info"])
        if self.pool is not None:
            prune_pool(self.pool, self.step)

    def extra_tensors(self) -> dict[str, dict[str, Tensor]]:
        return {}

    def load_extra_tensors(self, read) -> None:
        pass


def prune_pool(pool: Path, step: int) -> list[Path]:
    """Remove the snapshots saved after env step ``step`` (a run resumed from there writes them
    again, and its opponent draws must not see them before); returns what was removed."""
    removed = []
    for group in (sorted(p for p in pool.iterdir() if p.is_dir()) if pool.is_dir() else []):
        for snap in list_snapshots(pool, group.name):
            if snapshot_step(snap) > step:
                shutil.rmtree(snap)
                removed.append(snap)
    return removed


# -- training --------------------------------------------------------------------------------

@dataclass
class CompetitiveResult:
    run_dir: Path
    global_step: int
    learners: dict[str, PPO]  # trained group -> its learner (final weights)
    fixed: dict[str, Policy]  # frozen / scripted / random group -> its policy
    last_eval: dict[str, float] = field(default_factory=dict)
    """the last evaluation row (step, return/<group>, return_vs_random/<group>)"""
    last_train: dict[str, float] = field(default_factory=dict)
    """the last row of metrics.csv"""
    stopped: bool = False
    """a callback stopped the run before its budget was spent (resume it with ``train(resume=run_dir)``)"""


def read_config(run_dir: str | Path) -> CompetitiveConfig:
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise ConfigError(f"{run_dir} is not a run directory (no config.json)")
    d = json.loads(path.read_text())
    if d.get("kind") != "competitive":
        raise ConfigError(f"{run_dir} is not a competitive run (its config.json has no \"kind\": \"competitive\")")
    return CompetitiveConfig.from_dict(d)


def _check_resume(saved: CompetitiveConfig, new: CompetitiveConfig) -> None:
    a, b = saved.to_dict(), new.to_dict()
    changed = [k for k in a if a[k] != b.get(k) and k not in RESUMABLE_COMPETITIVE]
    if changed:
        diffs = ", ".join(f"{k}: {a[k]!r} -> {b.get(k)!r}" for k in changed)
        raise ConfigError(f"cannot change {diffs} when resuming a competitive run; only "
                          f"{sorted(RESUMABLE_COMPETITIVE)} may change. Start a new run instead.")


def loop_settings(cfg: CompetitiveConfig) -> LoopSettings:
    """The loop's part of a competitive config: a log row per iteration."""
    return LoopSettings(seed=cfg.seed, total_steps=cfg.total_steps, log_interval=0, eval_interval=cfg.eval_interval,
                        eval_episodes=cfg.eval_episodes, checkpoint_interval=cfg.checkpoint_interval,
                        keep_checkpoints=cfg.keep_checkpoints, gif=cfg.gif, tensorboard=cfg.tensorboard,
                        progress=cfg.progress, title=f"selfplay {cfg.env}", info={"algo": "selfplay", "env": cfg.env})


def train(config: CompetitiveConfig | None = None, env=None, *, resume: str | Path | None = None,
          callback: Callback | None = None) -> CompetitiveResult:
    """Train (see the module docstring) through :func:`fastmarl.train.loop.run_loop`, writing the run
    directory; ``env`` overrides the env built from the config (e.g. a wrapped one with the same
    spec). ``resume``: a competitive run directory to continue from its latest checkpoint (``config``
    may then change only RESUMABLE_COMPETITIVE settings). ``callback`` as in ``fastmarl.train``.
    The matrix, ratings and exploitability: :func:`fastmarl.analysis.competitive.train_and_evaluate`."""
    run = None
    if resume is not None:
        run = RunDir.open(resume)
        saved = read_config(run.path)
        cfg = config if config is not None else saved
        cfg = dataclasses.replace(cfg, name=saved.name, runs_dir=str(run.path.parent))
        _check_resume(saved, cfg)
    elif config is None:
        raise ConfigError("train() needs a CompetitiveConfig or resume=<run directory>")
    else:
        cfg = config
    cfg = dataclasses.replace(cfg, groups=dict(cfg.groups), ppo=dataclasses.replace(cfg.ppo))
    check_env_settings(cfg)  # first: a bad thread count, num_envs, seed or device is named as the setting
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = torch.device(cfg.device)

    def make_env(n: int, seed: int, render: bool = False):
        return make(cfg.env, num_envs=n, device=device, seed=seed, **cfg.env_kwargs)

    if env is None:
        env = make(cfg.env, num_envs=cfg.num_envs, device=device, seed=cfg.seed, **cfg.env_kwargs)
    elif env.num_envs != cfg.num_envs:
        raise ConfigError(f"the env given has {env.num_envs} envs, the config says num_envs={cfg.num_envs}")
    plan = validate(cfg, env)
    fixed = fixed_policies(plan, env, device, cfg.env_kwargs)
    if run is None:
        run = RunDir.create(cfg)
    torch.manual_seed(cfg.seed)  # network initialisation
    learners = {g: PPO(sub_spec(env.spec, [g]), plan.learner_configs[g], plan.learner_derived[g], device)
                for g in plan.trained}
    selfplay = SelfPlay(cfg, plan, env.spec, learners, fixed, run.path / "pool", device)
    loop = Loop(loop_settings(cfg), selfplay, env, make_env, run, callback)
    if resume is not None:
        loop.restore(resume_checkpoint(run), device)
        run.write_config(cfg)
    else:
        loop.start()
    res = loop.run()
    if cfg.plots:
        plot_returns(run, f"self-play on {cfg.env}")
    return CompetitiveResult(run.path, res.global_step, learners, fixed, res.evals[-1] if res.evals else {},
                             res.history[-1] if res.history else {}, res.stopped)

