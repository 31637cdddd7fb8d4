"""Does a learned channel get used in simple_spread? MAPPO with and without communication.

Variants (same MAPPO defaults and budget; ``fastmarl.train`` on simple_spread_v3, N=3):

- ``none``: no channel (the baseline);
- ``bit``: a 1-bit broadcast channel in the env (``message_bits=1``,
  :class:`fastmarl.envs.comm_wrappers.BroadcastChannel`): each agent's action is
  (move, bit), trained by the RL loss; the others read it at the next step;
- ``dial``: a 1-bit DIAL channel inside the actor (``ppo.comm="dial"``): a
  straight-through Gumbel-softmax bit delivered in the same step, trained by
  backpropagation from the listeners' losses;
- ``commnet`` / ``tarmac``: continuous communication between the actors' hidden
  states (``ppo.comm``), one round per step.

Each run keeps a checkpoint every ``steps / points`` env steps; every checkpoint
(and the initial weights, step 0) is evaluated on the same start states:

- return (deterministic actions and messages, ``--episodes`` episodes), with the
  messages intact, zeroed, shuffled (moved to random other senders, the marginal
  kept) and random (:func:`fastmarl.analysis.comm.message_ablation`). For CommNet
  / TarMAC the "message" is the sender's hidden state: zeroed = every receiver
  hears only itself, shuffled = the others' states come from random other
  (env, agent) senders, random = Gaussian states with the batch's per-feature
  mean and std;
- for the discrete channels (bit, dial), on stochastic rollouts: message entropy,
  speaker consistency and instantaneous coordination (lag = the delivery delay: 1
  for the env channel, 0 for DIAL), the causal influence of each speaker's message
  on each listener's move distribution (exact interventions, weighted by the
  speaker's p(m | s) and uniform), and message statistics (how often each agent
  says 1, the mutual information between its bit and its nearest landmark, the
  sign of its x / y position, and correlations with x / y);
- for TarMAC, the entropy of the attention weights (normalised: 1 = uniform).

Writes docs/comm_spread.md and docs/figures/comm_spread_*.png. Runs one process
at a time, one torch thread; finished runs and measurements are kept under
runs/spread_comm, so an interrupted invocation continues where it stopped.

    python experiments/spread_comm.py                  # 5 variants x 5 seeds
    python experiments/spread_comm.py --report-only    # rebuild the report from runs/spread_comm
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from fastmarl.envs.mpe.geometry import N_MOVES

ENV = "simple_spread_v3"
ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "runs" / "spread_comm"
FIGURES = ROOT / "docs" / "figures"
VARIANTS = ("none", "bit", "dial", "commnet", "tarmac")
DISCRETE = ("bit", "dial")
ABLATIONS = ("intact", "zeroed", "shuffled", "random")
CI_LEVEL = 0.95
WEAK_SHARE = 0.05  # a used channel whose scrambling costs less than this share of the training gain is "weak"
LABEL = {"none": "no channel", "bit": "1-bit env channel", "dial": "1-bit DIAL", "commnet": "CommNet",
         "tarmac": "TarMAC"}


# -- configs and training -------------------------------------------------------------

def make_config(variant: str, seed: int, steps: int, points: int, runs_dir: Path | None = None):
    from fastmarl.config import PPOConfig, TrainConfig

    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose from {VARIANTS}")
    ppo = PPOConfig(comm=variant) if variant in ("dial", "commnet", "tarmac") else PPOConfig()
    return TrainConfig(algo="mappo", env=ENV, total_steps=steps, seed=seed, name=f"{variant}_s{seed}",
                       runs_dir=str(runs_dir or OUT), eval_interval=0, checkpoint_interval=max(1, steps // points),
                       keep_checkpoints=points + 2, gif=False, tensorboard=False, progress=False, threads=1,
                       message_bits=1 if variant == "bit" else 0, ppo=ppo)


def train_run(variant: str, seed: int, steps: int, points: int) -> Path:
    import shutil

    import fastmarl

    run = OUT / f"{variant}_s{seed}"
    if (run / "done.json").exists():
        return run
    if run.exists():
        shutil.rmtree(run)
    t0 = time.perf_counter()
    res = fastmarl.train(make_config(variant, seed, steps, points))
    (run / "done.json").write_text(json.dumps({"wall_s": time.perf_counter() - t0, "step": res.global_step}))
    return run


def checkpoints(run: Path) -> list[Path]:
    from fastmarl.train.checkpoint import list_checkpoints

    return sorted(list_checkpoints(run / "checkpoints"), key=lambda p: int(p.name.split("_")[-1]))


def load_at(run: Path, ckpt: Path | None, episodes: int):
    """(policy, config, eval env with ``episodes`` envs); ``ckpt`` None: the run's initial weights."""
    from fastmarl.algos.ppo import PPO
    from fastmarl.config import resolve
    from fastmarl.train.runner import load_run

    ck = ckpt if ckpt is not None else checkpoints(run)[-1]
    policy, cfg, env, _ = load_run(run, ck, num_envs=episodes)
    if ckpt is None:  # the runner seeds the initialisation with torch.manual_seed(seed) before building PPO
        torch.manual_seed(cfg.seed)
        policy = PPO(env.spec, cfg, resolve(cfg, env.spec))
    return policy, cfg, env


# -- policies with their messages transformed ----------------------------------------------

class CommPolicy:
    """A feed-forward PPO policy whose actors' communication can be transformed.

    ``transform``: for DIAL, maps the sent one-hots (E, A, L, V) (as
    :func:`fastmarl.analysis.comm.message_ablation` transforms do); for CommNet /
    TarMAC one of "zeroed" / "shuffled" / "random" (see the module docstring).
    ``self.trace`` keeps the last DIAL trace (messages of the step)."""

    def __init__(self, ppo, transform=None, generator: torch.Generator | None = None):
        self.ppo, self.transform, self.trace = ppo, transform, None
        self.gen = generator or torch.Generator().manual_seed(0)

    def initial_carry(self, n):
        return {}

    def act(self, ts, carry, deterministic=False, generator=None):
        from fastmarl.algos.actor_critic import sample_action

        gen = generator or self.ppo.generator
        actions = {}
        for name, net in self.ppo.nets.items():
            x = net.actor_input(ts.obs[name])
            if net.dial:
                out, _, self.trace = net.actor_step(x, None, ts.done, deterministic, gen,
                                                    message_transform=self.transform, return_trace=True)
            else:
                f = net.actor_body(x)
                if net.actor_comm is not None:
                    f = continuous_comm(net.actor_comm, f, self.transform, self.gen)
                out = net.actor_head(f)
            mask = self.ppo._mask(ts, name)
            actions[name], _ = sample_action(out, net.log_std, mask, deterministic, gen)
        return actions, carry


def substitute_senders(comm, h: Tensor, senders: Tensor) -> Tensor:
    """CommNet / TarMAC where receiver i keeps its own state h_i but hears the
    states ``senders`` (E, A, H) from the others: (E, A, H) -> (E, A, H). Every
    receiver gets its own copy of the team, ``(E, A_recv, A, H)``, with row i's
    agent i replaced by its real state; the module runs on that and receiver i
    reads its own output."""
    E, A, H = h.shape
    team = senders[:, None].expand(E, A, A, H).clone()
    idx = torch.arange(A)
    team[:, idx, idx] = h
    return comm(team)[:, idx, idx]


def continuous_comm(comm, f: Tensor, mode: str | None, gen: torch.Generator) -> Tensor:
    if mode is None:
        return comm(f)
    if mode == "zeroed":  # everyone hears only itself
        return comm(f, torch.eye(f.shape[-2], dtype=torch.bool))
    flat = f.reshape(-1, f.shape[-1])
    if mode == "shuffled":
        senders = flat[torch.randperm(flat.shape[0], generator=gen)].view_as(f)
    elif mode == "random":
        noise = torch.randn(flat.shape, generator=gen)
        senders = (flat.mean(0) + flat.std(0) * noise).view_as(f)
    else:
        raise ValueError(f"unknown ablation {mode!r}")
    return substitute_senders(comm, f, senders)


# -- measurements ---------------------------------------------------------------------------

def ablation_returns(variant: str, policy, env, seed: int) -> dict[str, float]:
    """Deterministic return per agent with the messages intact / zeroed / shuffled / random."""
    from fastmarl.analysis.comm import message_ablation
    from fastmarl.envs.episodes import evaluate_policy

    def ev(p):
        return evaluate_policy(p, env, deterministic=True, seed=seed)["return"]

    if variant == "none":
        return {"intact": ev(CommPolicy(policy))}
    if variant == "bit":
        def evaluate(transform):
            env.message_transform = transform
            try:
                return ev(CommPolicy(policy))
            finally:
                env.message_transform = None
        return message_ablation(evaluate, seed=seed)
    if variant == "dial":
        return message_ablation(lambda t: ev(CommPolicy(policy, t)), seed=seed)
    out = {name: ev(CommPolicy(policy, None if name == "intact" else name, torch.Generator().manual_seed(seed)))
           for name in ABLATIONS}
    out.update({f"drop/{k}": out["intact"] - out[k] for k in ABLATIONS[1:]})
    return out


@torch.no_grad()
def rollout(variant: str, policy, env, seed: int) -> dict[str, Tensor]:
    """One stochastic episode per env: obs (T, E, A, O), messages and moves (T, E, A),
    dones (T, E), agent / landmark positions (T, E, A, 2) / (T, E, L, 2)."""
    gen = torch.Generator().manual_seed(seed)
    pol = CommPolicy(policy)
    ts = env.reset(seed=seed)
    inner = env.env if variant == "bit" else env
    out: dict[str, list] = {k: [] for k in ("obs", "msg", "move", "done", "pos", "lm")}
    for _ in range(env.spec.max_episode_steps):
        s = inner.world_state
        out["pos"].append(s.pos[:, : inner.world.A].clone())
        out["lm"].append(s.pos[:, inner.world.A:].clone())
        out["obs"].append(ts.obs["agent"].clone())
        actions, _ = pol.act(ts, {}, False, gen)
        if variant == "bit":
            moves, msgs = env.decode(actions)
            out["move"].append(moves["agent"])
            out["msg"].append(msgs["agent"])
        else:
            out["move"].append(actions["agent"])
            if variant == "dial":
                out["msg"].append(pol.trace.index[:, 0].clone())  # round 0: (E, A)
        ts = env.step(actions)
        out["done"].append(ts.done.clone())
    return {k: torch.stack(v) for k, v in out.items() if v}


def listener_fn(variant: str, policy, env, speaker: int, listener: int):
    """(obs (N, A, O), messages (N,)) -> listener's move probabilities (N, 5), with the
    speaker's message to the listener set to each value (an intervention)."""
    net = policy.nets["agent"]

    def f(obs: Tensor, msgs: Tensor) -> Tensor:
        onehot = torch.nn.functional.one_hot(msgs, 2).float()
        if variant == "bit":
            obs = obs.clone()
            sl = env.message_features("agent")
            slots = env.slot_senders("agent")[listener].tolist()  # the sender in each of the listener's slots
            k = slots.index(speaker)
            view = obs[:, listener, sl].unflatten(-1, (len(slots), 2))
            view[:, k] = onehot
            obs[:, listener, sl] = view.flatten(-2)
            out, _ = net.actor_step(net.actor_input(obs), None, None)
            p = torch.softmax(out[:, listener].double(), -1).view(-1, 2, N_MOVES)
            return p.sum(1)  # the move's marginal over the listener's own bit

        def force(m):
            m = m.clone()
            m[:, speaker] = onehot[:, None]
            return m

        out, _ = net.actor_step(net.actor_input(obs), None, None, deterministic=True, message_transform=force)
        return torch.softmax(out[:, listener].double(), -1)

    return f


@torch.no_grad()
def speaker_probs(variant: str, policy, obs: Tensor) -> Tensor:
    """(N, A, O) -> (N, A, 2): each agent's distribution over its bit in these states."""
    net = policy.nets["agent"]
    if variant == "bit":
        out, _ = net.actor_step(net.actor_input(obs), None, None)
        return torch.softmax(out.double(), -1).view(*out.shape[:-1], 2, N_MOVES).sum(-1)
    _, _, trace = net.actor_step(net.actor_input(obs), None, None, deterministic=True, return_trace=True)
    return torch.softmax(trace.logits[:, 0, :, 0].double(), -1)


def causal_influences(variant: str, policy, env, obs: Tensor) -> dict[str, float]:
    """Mean over (speaker, listener) pairs of the causal influence at the states ``obs`` (N, A, O)."""
    from fastmarl.analysis.comm import causal_influence

    A = obs.shape[1]
    probs = speaker_probs(variant, policy, obs)
    ci, ci_u = [], []
    for j in range(A):
        for i in range(A):
            if i == j:
                continue
            f = listener_fn(variant, policy, env, j, i)
            ci.append(float(causal_influence(f, obs, 2, probs[:, j]).mean()))
            ci_u.append(float(causal_influence(f, obs, 2, None).mean()))
    return {"ci": float(np.mean(ci)), "ci_uniform": float(np.mean(ci_u)), "ci_pairs": ci, "ci_uniform_pairs": ci_u}


def message_stats(data: dict[str, Tensor], lag: int) -> dict:
    """Entropy, consistency, coordination and per-agent message statistics (nats)."""
    from fastmarl.analysis.comm import (
        instantaneous_coordination,
        message_entropy,
        mutual_information,
        speaker_consistency,
    )

    m, a, d = data["msg"], data["move"], data["done"]
    A = m.shape[-1]
    ic = instantaneous_coordination(m, a, lag=lag, dones=d)
    pos = data["pos"]  # (T, E, A, 2)
    dist = (pos[:, :, :, None] - data["lm"][:, :, None]).norm(dim=-1)  # (T, E, A, L)
    nearest = dist.argmin(-1)
    flat = lambda x: x.reshape(-1, A)  # noqa: E731
    mf = flat(m).double()

    def corr(x):
        x = flat(x).double()
        xc, mc = x - x.mean(0), mf - mf.mean(0)
        den = (xc.pow(2).sum(0) * mc.pow(2).sum(0)).sqrt()
        return torch.where(den > 0, (xc * mc).sum(0) / den.clamp_min(1e-300), 0.0).tolist()

    return {
        "entropy": message_entropy(m).tolist(),
        "p_one": flat(m).float().mean(0).tolist(),
        "consistency": speaker_consistency(m, a, lag=lag, dones=d).tolist(),
        "coordination": float(ic[~torch.eye(A, dtype=torch.bool)].mean()),
        "coordination_pairs": ic.nan_to_num(0.0).tolist(),
        "mi_nearest_landmark": mutual_information(flat(m), flat(nearest)).tolist(),
        "mi_x_sign": mutual_information(flat(m), flat((pos[..., 0] > 0).long())).tolist(),
        "mi_y_sign": mutual_information(flat(m), flat((pos[..., 1] > 0).long())).tolist(),
        "corr_x": corr(pos[..., 0]),
        "corr_y": corr(pos[..., 1]),
    }


@torch.no_grad()
def attention_stats(policy, obs: Tensor) -> float:
    from fastmarl.analysis.comm import attention_entropy

    net = policy.nets["agent"]
    _, attn = net.actor_comm(net.actor_body(net.actor_input(obs)), return_attention=True)
    return float(attention_entropy(attn, normalized=True).mean())


def measure_point(variant: str, run: Path, ckpt: Path | None, episodes: int, states: int, seed: int) -> dict:
    policy, cfg, env = load_at(run, ckpt, episodes)
    eval_seed = 2_000_003 + seed  # the same start states for every variant and checkpoint of a seed
    res: dict = {"returns": ablation_returns(variant, policy, env, eval_seed)}
    if variant in DISCRETE or variant == "tarmac":
        data = rollout(variant, policy, env, eval_seed + 1)
        obs = data["obs"].reshape(-1, *data["obs"].shape[2:])
        pick = torch.randperm(obs.shape[0], generator=torch.Generator().manual_seed(seed))[:states]
        if variant in DISCRETE:
            res["messages"] = message_stats(data, lag=1 if variant == "bit" else 0)
            res["causal"] = causal_influences(variant, policy, env, obs[pick])
        else:
            res["attention_entropy"] = attention_stats(policy, obs[pick])
    return res


def measure_run(variant: str, seed: int, episodes: int, states: int) -> dict:
    path = OUT / f"measure_{variant}_s{seed}.json"
    if path.exists():
        return json.loads(path.read_text())
    run = OUT / f"{variant}_s{seed}"
    points = [(0, None)] + [(int(c.name.split("_")[-1]), c) for c in checkpoints(run)]
    res = {"variant": variant, "seed": seed,
           "points": [{"step": step, **measure_point(variant, run, c, episodes, states, seed)} for step, c in points]}
    path.write_text(json.dumps(res))
    return res


# -- statistics and the report ---------------------------------------------------------------

def boot_ci(x, reps: int = 5000, seed: int = 0) -> tuple[float, float, float]:
    """Mean and percentile-bootstrap CI over seeds."""
    x = np.asarray(x, dtype=float)
    if len(x) < 2 or np.allclose(x, x[0]):
        return float(x.mean()), float(x.min()), float(x.max())
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), (reps, len(x)))].mean(1)
    lo, hi = np.quantile(means, [(1 - CI_LEVEL) / 2, (1 + CI_LEVEL) / 2])
    return float(x.mean()), float(lo), float(hi)


def iqm_stats(scores: dict[str, np.ndarray], reps: int = 20000) -> dict[str, dict]:
    """rliable: IQM and mean with 95% stratified-bootstrap CIs per variant (one task)."""
    try:
        from rliable import library as rly
        from rliable import metrics
    except ImportError as e:
        raise SystemExit(f"the report's statistics need rliable ({e}): pip install rliable==1.2.0 'pandas<3'")
    np.random.seed(0)  # rliable's bootstrap draws from numpy's global RNG
    cols = {a: np.asarray(s, dtype=np.float64)[:, None] for a, s in scores.items()}
    fn = lambda x: np.array([metrics.aggregate_iqm(x), metrics.aggregate_mean(x)])  # noqa: E731
    point, ci = rly.get_interval_estimates(cols, fn, reps=reps, confidence_interval_size=CI_LEVEL)
    return {a: {"iqm": float(point[a][0]), "iqm_ci": [float(ci[a][0, 0]), float(ci[a][1, 0])],
                "mean": float(point[a][1]), "mean_ci": [float(ci[a][0, 1]), float(ci[a][1, 1])]} for a in cols}


def _fmt(m, lo, hi, f="{:.2f}"):
    return f"{f.format(m)} [{f.format(lo)}, {f.format(hi)}]"


def load_measures(variants, seeds) -> dict[str, list[dict]]:
    out = {}
    for v in variants:
        got = [json.loads(p.read_text()) for s in seeds if (p := OUT / f"measure_{v}_s{s}.json").exists()]
        if got:
            out[v] = got
    return out


def series(runs: list[dict], get) -> tuple[np.ndarray, np.ndarray]:
    """(steps (P,), values (runs, P)) over the checkpoints every run has."""
    steps = sorted(set.intersection(*[{p["step"] for p in r["points"]} for r in runs]))
    vals = np.array([[get(next(p for p in r["points"] if p["step"] == s)) for s in steps] for r in runs], float)
    return np.array(steps), vals


def report(variants, seeds, args) -> str:
    ms = load_measures(variants, seeds)
    if not ms:
        raise SystemExit(f"no measurements under {OUT}; run without --report-only first")
    final = {v: [r["points"][-1] for r in runs] for v, runs in ms.items()}
    stats = iqm_stats({v: np.array([p["returns"]["intact"] for p in pts]) for v, pts in final.items()})
    walls = {v: np.mean([json.loads((OUT / f"{v}_s{r['seed']}" / "done.json").read_text())["wall_s"]
                         for r in runs]) for v, runs in ms.items()}
    final_step = {v: runs[0]["points"][-1]["step"] for v, runs in ms.items()}
    nseeds = {v: len(runs) for v, runs in ms.items()}
    L = [
        "# Learned communication in simple_spread: is the channel used?",
        "",
        "```bash",
        f"python experiments/spread_comm.py --seeds {' '.join(map(str, seeds))} --steps {args.steps} "
        f"--points {args.points} --episodes {args.episodes} --states {args.states}",
        "python experiments/spread_comm.py --report-only   # rebuild this page from runs/spread_comm",
        "```",
        "",
        f"MAPPO (`fastmarl.train`, default hyper-parameters) on `{ENV}` (N=3, local_ratio 0.5, 25 steps), "
        f"{args.steps:,} env steps per run, seeds {', '.join(map(str, seeds))}, one run at a time on 1 torch "
        "thread. Variants: " + "; ".join(f"`{v}` = {LABEL[v]} ({nseeds[v]} seeds, {walls[v]:.0f} s per run)"
                                          for v in ms) + ". "
        "The bit channel is an env wrapper (`message_bits=1`: the action is (move, bit), the bit is learned by "
        "the policy gradient and heard at the next step); DIAL is a 1-bit straight-through Gumbel-softmax "
        "message inside the actor, heard in the same step and learned by backpropagation "
        "(`ppo.comm=\"dial\"`); CommNet and TarMAC pass hidden states (one round). Wall times are noisy: "
        "the 2-core machine was shared with other jobs.",
        "",
        f"Every checkpoint (every {args.steps // args.points:,} steps, plus the initial weights) is evaluated "
        f"on the same {args.episodes:,} start states per seed with deterministic actions and messages: return "
        "per agent (the mpe2 convention) with the messages intact, zeroed, shuffled (moved to random other "
        "senders: the marginal is kept, the link to the sender's state is broken) and random. For CommNet / "
        "TarMAC the message is the sender's hidden state: zeroed = each receiver hears only itself; shuffled = "
        "the others' states come from random other (env, agent) pairs; random = Gaussian states with the "
        f"batch's per-feature mean and std. Discrete-channel measures come from {args.episodes:,} stochastic "
        f"episodes; the causal influence is computed exactly at {args.states:,} states sampled from them, for "
        "every ordered (speaker, listener) pair, with the speaker's bit set to 0 and to 1 in the listener's "
        "input and the listener's move distribution read off (the listener's own bit marginalised), weighted by "
        "the speaker's p(bit | its current state) and, second value, uniformly. Information is in nats (one "
        f"bit carries at most log 2 = {math.log(2):.3f}); estimates are Miller-Madow corrected. "
        "Lag for consistency / coordination: 1 for the env channel (heard next step), 0 for DIAL.",
        "",
        f"Intervals: the final-return IQM and mean with 95% stratified-bootstrap CIs from `rliable` (as in "
        "[mappo_vs_ippo.md](mappo_vs_ippo.md)); every other interval is a 95% percentile bootstrap over seeds. "
        f"With {min(nseeds.values())} seeds per variant the intervals are rough. {args.steps:,} steps is short of "
        "convergence (default MAPPO reaches about -16 after about 700k steps; see "
        "[experiments/README.md](../experiments/README.md)): the budget of a shared 2-core machine.",
        "",
        "## Final returns and message ablations",
        "",
        "| variant | final step | return IQM [95% CI] | mean [95% CI] | drop if zeroed | drop if shuffled "
        "| drop if random |",
        "|---|---|---|---|---|---|---|",
    ]
    drops = {}
    for v, pts in final.items():
        st = stats[v]
        cells = []
        for k in ABLATIONS[1:]:
            vals = [p["returns"].get(f"drop/{k}") for p in pts]
            if all(x is not None for x in vals):
                drops[(v, k)] = boot_ci(vals)
                cells.append(_fmt(*drops[(v, k)]))
            else:
                cells.append("-")
        L.append(f"| {LABEL[v]} | {final_step[v]:,} | {_fmt(st['iqm'], *st['iqm_ci'])} | "
                 f"{_fmt(st['mean'], *st['mean_ci'])} | " + " | ".join(cells) + " |")
    init0 = [np.mean([r["points"][0]["returns"]["intact"] for r in runs]) for runs in ms.values()]
    L += ["", "Drop = return intact - return ablated (positive: the ablation hurts).", "",
          "Left: return of the training episodes (stochastic policy, every iteration); right: the checkpoints' "
          "deterministic evaluation with the messages intact (the initial weights, "
          f"{min(init0):.1f} to {max(init0):.1f} on average per variant, are in the table under *Against training "
          "progress*).", "",
          "![returns](figures/comm_spread_returns.png)", ""]

    disc = [v for v in DISCRETE if v in ms]
    if disc:
        L += ["## Discrete channels: measures at the end of training vs at initialisation", "",
              "| measure | " + " | ".join(f"{LABEL[v]} final | {LABEL[v]} step 0" for v in disc) + " |",
              "|---|" + "---|" * (2 * len(disc))]
        rows = [("message entropy (mean over agents)", lambda p: np.mean(p["messages"]["entropy"]), "{:.3f}"),
                ("P(bit = 1) (mean over agents)", lambda p: np.mean(p["messages"]["p_one"]), "{:.2f}"),
                ("speaker consistency (mean over agents)", lambda p: np.mean(p["messages"]["consistency"]),
                 "{:.4f}"),
                ("instantaneous coordination (mean over pairs)", lambda p: p["messages"]["coordination"], "{:.4f}"),
                ("causal influence, speaker-weighted", lambda p: p["causal"]["ci"], "{:.4f}"),
                ("causal influence, uniform p(m)", lambda p: p["causal"]["ci_uniform"], "{:.4f}")]
        for label, get, f in rows:
            cells = []
            for v in disc:
                cells.append(_fmt(*boot_ci([get(r["points"][-1]) for r in ms[v]]), f))
                cells.append(_fmt(*boot_ci([get(r["points"][0]) for r in ms[v]]), f))
            L.append(f"| {label} | " + " | ".join(cells) + " |")
        L += ["", "### What the bit says (end of training, per agent, per seed)", "",
              "P(1): how often the agent says 1; MI with its nearest landmark (index), the sign of its x and of "
              "its y position (nats; at most log 2); Pearson correlation of the bit with x and with y.", "",
              "| variant | seed | agent | P(1) | MI nearest landmark | MI sign x | MI sign y | corr x | corr y |",
              "|---|---|---|---|---|---|---|---|---|"]
        for v in disc:
            for r in ms[v]:
                s = r["points"][-1]["messages"]
                for i in range(len(s["p_one"])):
                    L.append(f"| {LABEL[v]} | {r['seed']} | {i} | {s['p_one'][i]:.2f} | "
                             f"{s['mi_nearest_landmark'][i]:.3f} | {s['mi_x_sign'][i]:.3f} | {s['mi_y_sign'][i]:.3f} "
                             f"| {s['corr_x'][i]:+.2f} | {s['corr_y'][i]:+.2f} |")
        L.append("")
    if "tarmac" in ms:
        m, lo, hi = boot_ci([r["points"][-1]["attention_entropy"] for r in ms["tarmac"]])
        m0, lo0, hi0 = boot_ci([r["points"][0]["attention_entropy"] for r in ms["tarmac"]])
        L += ["## TarMAC attention", "",
              f"Normalised attention entropy (1 = uniform over the 3 senders, self included; 0 = one sender): "
              f"{_fmt(m, lo, hi, '{:.3f}')} at the end of training, {_fmt(m0, lo0, hi0, '{:.3f}')} at "
              "initialisation.", ""]
    L += ["## Against training progress", "",
          "Mean over seeds at each checkpoint (step 0 = the initial weights); bands in the figure are 95% "
          "bootstrap intervals over seeds.", "",
          "| variant | quantity | " + " | ".join(f"{st / 1e3:.0f}k" for st in series(next(iter(ms.values())),
                                                                              lambda p: 0.0)[0]) + " |",
          "|---|---|" + "---|" * len(series(next(iter(ms.values())), lambda p: 0.0)[0])]
    for v, runs in ms.items():
        rows = [("return", lambda p: p["returns"]["intact"], "{:.2f}")]
        if v != "none":
            rows.append(("drop, shuffled", lambda p: p["returns"]["drop/shuffled"], "{:.2f}"))
        if v in DISCRETE:
            rows.append(("causal infl. (uniform)", lambda p: p["causal"]["ci_uniform"], "{:.4f}"))
            rows.append(("message entropy", lambda p: np.mean(p["messages"]["entropy"]), "{:.3f}"))
        if v == "tarmac":
            rows.append(("attention entropy", lambda p: p["attention_entropy"], "{:.3f}"))
        for label, get, f in rows:
            _, vals = series(runs, get)
            L.append(f"| {LABEL[v]} | {label} | " + " | ".join(f.format(x) for x in vals.mean(0)) + " |")
    L += ["", "![measures vs training](figures/comm_spread_progress.png)", ""]
    L += conclusion(ms, stats, drops)
    _figures(ms)
    return "\n".join(L) + "\n"


def conclusion(ms, stats, drops) -> list[str]:
    """The verdict, from the measured numbers only: a channel counts as used when removing or
    scrambling it costs return (the ablation drop's CI excludes 0) and, for the discrete
    channels, when intervening on a message moves the listeners' actions beyond the
    initialisation's level."""
    L = ["## Conclusion", "",
         "Criterion: a channel is *used* when scrambling it costs return (the 95% CI of the drop for shuffled "
         "messages lies above 0; shuffling keeps the messages' marginal distribution, so unlike zeroing it does "
         "not feed the receivers an input they never saw in training); for the bit channels the causal "
         "influence must also exceed its value at initialisation (a random network whose listeners react to "
         "the bit by accident). Consistency and coordination alone are not evidence (a speaker can be "
         "consistent with nobody listening). A used channel is called weak when scrambling it costs less than "
         f"{100 * WEAK_SHARE:.0f}% of the return gained in training (initial weights -> final). The numbers "
         "below are computed from the measurements above.", ""]
    base = stats.get("none")
    if base is not None:
        better = [LABEL[v] for v in ms if v != "none" and stats[v]["iqm_ci"][0] > base["iqm_ci"][1]]
        worse = [LABEL[v] for v in ms if v != "none" and stats[v]["iqm_ci"][1] < base["iqm_ci"][0]]
        L.append("Returns: " + (f"{', '.join(better)} end above the no-channel baseline (IQM CIs disjoint). "
                                if better else "none of the communicating variants ends above the no-channel "
                                "baseline (every IQM CI overlaps it or lies below it); ")
                 + (f"{', '.join(worse)} end below it." if worse else "none ends below it either.")
                 + f" Final no-channel IQM {base['iqm']:.2f} [{base['iqm_ci'][0]:.2f}, {base['iqm_ci'][1]:.2f}].")
        L.append("")
    for v in ms:
        if v == "none":
            continue
        parts = [f"**{LABEL[v]}**: final return IQM {stats[v]['iqm']:.2f} "
                 f"[{stats[v]['iqm_ci'][0]:.2f}, {stats[v]['iqm_ci'][1]:.2f}]"]
        if base is not None:
            lo, hi = stats[v]["iqm_ci"]
            blo, bhi = base["iqm_ci"]
            rel = ("above" if lo > bhi else "below" if hi < blo else "overlapping")
            parts.append(f"{rel} the no-channel IQM {base['iqm']:.2f} [{blo:.2f}, {bhi:.2f}]")
        sh = drops.get((v, "shuffled"))
        zr = drops.get((v, "zeroed"))
        used = sh is not None and sh[1] > 0
        share = 0.0
        if sh is not None:
            gain = np.mean([r["points"][-1]["returns"]["intact"] - r["points"][0]["returns"]["intact"]
                            for r in ms[v]])
            parts.append(f"shuffling the messages costs {sh[0]:.2f} [{sh[1]:.2f}, {sh[2]:.2f}] return per agent "
                         f"({100 * sh[0] / gain:.1f}% of the {gain:.1f} gained in training), zeroing them "
                         f"{zr[0]:.2f} [{zr[1]:.2f}, {zr[2]:.2f}]")
            share = sh[0] / gain if gain > 0 else 0.0
        if v in DISCRETE:
            fin = boot_ci([r["points"][-1]["causal"]["ci_uniform"] for r in ms[v]])
            ini = boot_ci([r["points"][0]["causal"]["ci_uniform"] for r in ms[v]])
            parts.append(f"causal influence (uniform p(m)) {fin[0]:.4f} [{fin[1]:.4f}, {fin[2]:.4f}] nats vs "
                         f"{ini[0]:.4f} at initialisation (log 2 = {math.log(2):.3f})")
            reacts = fin[1] > ini[2]
            if reacts and not used:
                parts.append("so the listeners' moves do respond to the bit, but scrambling it costs no return: the "
                             "response does not help the task")
            used = used and reacts
            content = {k: max(x for r in ms[v] for x in r["points"][-1]["messages"][k])
                       for k in ("mi_nearest_landmark", "mi_x_sign", "mi_y_sign")}
            top = max(content.values())
            says = ("says little about" if top < 0.1 * math.log(2) else "carries some information on")
            parts.append(f"the bit {says} the speaker's situation: the largest MI over agents and seeds "
                         f"is {content['mi_nearest_landmark']:.3f} nats with its nearest landmark, "
                         f"{content['mi_x_sign']:.3f} with the sign of its x and {content['mi_y_sign']:.3f} with "
                         f"the sign of its y (of at most {math.log(2):.3f})")
        if not used:
            verdict = "no evidence that the agents use this channel for the task"
        elif share < WEAK_SHARE:
            verdict = (f"the channel is used, but weakly: scrambling it costs less than {100 * WEAK_SHARE:.0f}% of "
                       "what training gained")
        else:
            verdict = "the agents use this channel"
        L.append("- " + "; ".join(parts) + f". Verdict: {verdict}.")
    L.append("")
    return L


def training_curve(run: Path) -> tuple[np.ndarray, np.ndarray]:
    """(steps, training return) per iteration from a run's metrics.csv."""
    import csv

    with open(run / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("return")]
    return np.array([float(r["step"]) for r in rows]), np.array([float(r["return"]) for r in rows])


def _figures(ms):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figdir = FIGURES
    figdir.mkdir(parents=True, exist_ok=True)
    colors = {v: f"C{i}" for i, v in enumerate(VARIANTS)}

    def band(ax, runs, get, v, label=None):
        steps, vals = series(runs, get)
        mean = vals.mean(0)
        lo_hi = np.array([boot_ci(vals[:, k])[1:] for k in range(vals.shape[1])])
        ax.plot(steps / 1e6, mean, "o-", color=colors[v], label=label or LABEL[v], ms=3)
        ax.fill_between(steps / 1e6, lo_hi[:, 0], lo_hi[:, 1], color=colors[v], alpha=0.2)

    fig, (ax0, ax) = plt.subplots(1, 2, figsize=(10, 3.6))
    for v, runs in ms.items():  # training return of every iteration (stochastic policy), from metrics.csv
        curves = [training_curve(OUT / f"{v}_s{r['seed']}") for r in runs]
        n = min(len(c[0]) for c in curves)
        steps, vals = curves[0][0][:n], np.array([c[1][:n] for c in curves])
        lo_hi = np.array([boot_ci(vals[:, k])[1:] for k in range(n)])
        ax0.plot(steps / 1e6, vals.mean(0), color=colors[v], label=LABEL[v], lw=1)
        ax0.fill_between(steps / 1e6, lo_hi[:, 0], lo_hi[:, 1], color=colors[v], alpha=0.2)
    ax0.set_ylim(-30, None)
    ax0.set_xlabel("env steps (M)")
    ax0.set_ylabel("return per agent")
    ax0.set_title("training episodes (stochastic)", fontsize=10)
    ax0.legend(fontsize=8)
    for v, runs in ms.items():
        band(ax, [{**r, "points": r["points"][1:]} for r in runs], lambda p: p["returns"]["intact"], v)
    ax.set_xlabel("env steps (M)")
    ax.set_title("checkpoints, deterministic, messages intact", fontsize=10)
    fig.suptitle("simple_spread_v3: mean over seeds, 95% bootstrap band", fontsize=10)
    fig.tight_layout()
    fig.savefig(figdir / "comm_spread_returns.png", dpi=80)
    plt.close(fig)

    fig, axes = plt.subplots(3, 3, figsize=(12, 9.0))
    for ax, k in zip(axes[0], ABLATIONS[1:]):
        for v, runs in ms.items():
            if v != "none":
                band(ax, runs, lambda p, k=k: p["returns"][f"drop/{k}"], v)
        ax.axhline(0, c="k", lw=0.6)
        ax.set_title(f"return drop, messages {k}")
    discrete_panels = [
        (axes[1, 0], "causal influence, uniform p(m) (nats)", lambda p: p["causal"]["ci_uniform"]),
        (axes[1, 1], "causal influence, speaker-weighted (nats)", lambda p: p["causal"]["ci"]),
        (axes[1, 2], "message entropy, mean over agents (nats)", lambda p: np.mean(p["messages"]["entropy"])),
        (axes[2, 0], "speaker consistency, mean over agents (nats)",
         lambda p: np.mean(p["messages"]["consistency"])),
        (axes[2, 1], "instantaneous coordination, mean over pairs (nats)", lambda p: p["messages"]["coordination"]),
    ]
    for ax, title, get in discrete_panels:
        for v in DISCRETE:
            if v in ms:
                band(ax, ms[v], get, v)
        ax.set_title(title, fontsize=9)
    ax = axes[2, 2]
    if "tarmac" in ms:
        band(ax, ms["tarmac"], lambda p: p["attention_entropy"], "tarmac")
    ax.set_title("TarMAC attention entropy (normalised)")
    for a in axes.flat:
        a.set_xlabel("env steps (M)")
    axes[0, 0].legend(fontsize=7)
    axes[1, 0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(figdir / "comm_spread_progress.png", dpi=70)
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    ap.add_argument("--steps", type=int, default=400_000)
    ap.add_argument("--points", type=int, default=5, help="checkpoints per run (evenly spaced)")
    ap.add_argument("--episodes", type=int, default=400, help="evaluation episodes per measurement")
    ap.add_argument("--states", type=int, default=800, help="states for the causal influence")
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "docs" / "comm_spread.md"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    if not args.report_only:
        OUT.mkdir(parents=True, exist_ok=True)
        for s in args.seeds:  # seed-major: an interrupted invocation leaves whole seeds
            for v in args.variants:
                train_run(v, s, args.steps, args.points)
                r = measure_run(v, s, args.episodes, args.states)
                fin = r["points"][-1]
                extra = ""
                if "causal" in fin:
                    extra = f" CI {fin['causal']['ci']:.4f} / uniform {fin['causal']['ci_uniform']:.4f}"
                print(f"[{time.perf_counter() - t0:6.0f}s] {v} seed {s}: "
                      + " ".join(f"{k} {x:.2f}" for k, x in fin["returns"].items() if "/" not in k) + extra,
                      flush=True)
    text = report(args.variants, args.seeds, args)
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
