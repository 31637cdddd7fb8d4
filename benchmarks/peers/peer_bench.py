"""Environment-throughput benchmark for peer MPE implementations.

Run with the peers virtualenv created by ``benchmarks/setup_peers.sh``::

    benchmarks/.venv-peers/bin/python benchmarks/peers/peer_bench.py \
        --lib vmas --env simple_spread --num-envs 1024 --threads 1 --seconds 3

Prints exactly one JSON line on stdout::

    {"lib", "version", "env", "num_envs", "threads", "steps_per_s",
     "steps", "seconds", "compile_s", ...}

where ``steps`` is the number of timed vector steps (each advances every one of
the ``num_envs`` environments by one step, all agents acting), ``seconds`` the
timed wall time, and ``steps_per_s = num_envs * steps / seconds`` (env-steps/s).
``compile_s`` is the JAX compile time (``null`` for the other libraries).
With ``--repeats R`` the timed window is repeated R times and the median
window is reported (all rates in ``samples_steps_per_s``); useful because
multi-threaded runs on small shared VMs are noisy.
Extra keys (backend versions, JAX chunk length) may follow; diagnostics go to
stderr.

Protocol (identical for every library):
  * uniform random discrete actions, 5 per agent, drawn fresh every step with
    the library's own array library (numpy / torch / jax.random);
  * episodes of 25 steps, environments reset at episode end the way each
    library does it (see the per-library notes below);
  * simple_spread: 3 agents, 3 landmarks; simple_tag: 3 adversaries,
    1 good agent, 2 obstacles;
  * timing covers whole episodes only (a multiple of 25 vector steps) so
    resets are counted in the right proportion; it starts after a warm-up.

Thread control: the process is pinned to ``--threads`` cores with
``os.sched_setaffinity`` and the usual OpenMP/BLAS variables are set *before*
any numeric library is imported; VMAS additionally gets
``torch.set_num_threads``; JAX gets ``XLA_FLAGS``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time

EPISODE_LEN = 25
NUM_ACTIONS = 5

ENV_IDS = {
    # lib -> env -> identifier used by that library
    "mpe2": {"simple_spread": "simple_spread_v3", "simple_tag": "simple_tag_v3"},
    "vmas": {"simple_spread": "simple_spread", "simple_tag": "simple_tag"},
    "jaxmarl": {
        "simple_spread": "MPE_simple_spread_v3",
        "simple_tag": "MPE_simple_tag_v3",
    },
}


def _log(*args) -> None:
    print(*args, file=sys.stderr, flush=True)


def _pin_threads(threads: int, lib: str) -> None:
    """Restrict the process to `threads` cores and cap library thread pools.

    Must run before numpy / torch / jax are imported.
    """
    available = sorted(os.sched_getaffinity(0))
    if threads > len(available):
        _log(f"warning: asked for {threads} threads, only {len(available)} cores available")
    cores = set(available[:threads]) if threads <= len(available) else set(available)
    os.sched_setaffinity(0, cores)
    for var in (
        "OMP_NUM_THREADS",
        "MKL_NUM_THREADS",
        "OPENBLAS_NUM_THREADS",
        "NUMEXPR_NUM_THREADS",
    ):
        os.environ[var] = str(threads)
    if lib == "jaxmarl":
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
        if threads == 1:
            flags = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
        else:
            flags = f"--xla_cpu_multi_thread_eigen=true intra_op_parallelism_threads={threads}"
        prev = os.environ.get("XLA_FLAGS", "")
        os.environ["XLA_FLAGS"] = (prev + " " + flags).strip()


@contextlib.contextmanager
def _stdout_fd_to_stderr():
    """Send everything written to fd 1 (incl. sys.__stdout__) to stderr."""
    sys.stdout.flush()
    sys.__stdout__.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.__stdout__.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _pkg_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"


def _timed_episode_loop(run_episode, seconds: float, min_episodes: int = 1):
    """Call run_episode() (one full 25-step episode incl. reset) until about
    `seconds` of wall time have elapsed; returns (episodes, elapsed)."""
    episodes = 0
    t0 = time.perf_counter()
    while True:
        run_episode()
        episodes += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds and episodes >= min_episodes:
            return episodes, elapsed


# --------------------------------------------------------------------------- mpe2
def bench_mpe2(env_name: str, num_envs: int, seconds: float, repeats: int) -> dict:
    """PettingZoo parallel API, one Python loop per env instance.

    Each env is created with max_cycles=25: after 25 steps all agents are
    truncated, `env.agents` becomes empty and we call `env.reset()` (PettingZoo
    has no auto-reset).  For num_envs > 1 we simply loop over independent env
    instances (no vectorisation exists in mpe2)."""
    import numpy as np

    if env_name == "simple_spread":
        from mpe2 import simple_spread_v3 as mod

        kwargs = dict(N=3, local_ratio=0.5)
    else:
        from mpe2 import simple_tag_v3 as mod

        kwargs = dict(num_good=1, num_adversaries=3, num_obstacles=2)
    envs = [
        mod.parallel_env(max_cycles=EPISODE_LEN, continuous_actions=False, **kwargs)
        for _ in range(num_envs)
    ]
    for i, e in enumerate(envs):
        e.reset(seed=i)
    agents = list(envs[0].possible_agents)
    n_act = [envs[0].action_space(a).n for a in agents]
    assert all(n == NUM_ACTIONS for n in n_act), n_act
    rng = np.random.default_rng(0)

    def run_episode():
        for _ in range(EPISODE_LEN):
            acts = rng.integers(0, NUM_ACTIONS, size=(num_envs, len(agents)))
            for e, row in zip(envs, acts.tolist()):
                e.step(dict(zip(agents, row)))
                if not e.agents:  # all truncated at max_cycles -> reset
                    e.reset()

    run_episode()  # warm-up
    samples = []
    for _ in range(repeats):
        episodes, elapsed = _timed_episode_loop(run_episode, seconds)
        samples.append((episodes * EPISODE_LEN, elapsed))
    return dict(version=_pkg_version("mpe2"), samples=samples, compile_s=None)


# --------------------------------------------------------------------------- VMAS
def bench_vmas(
    env_name: str, num_envs: int, threads: int, seconds: float, repeats: int
) -> dict:
    """VMAS vectorised env in torch on CPU.

    Reset handling: VMAS has no auto-reset inside `step`; its `reset_at(i)`
    takes a single int index.  We do what a VMAS user (and TorchRL's VMAS
    wrapper) does: after each step, if any env is done, call the vectorised
    `env.reset()` when *all* envs are done, otherwise `env.reset_at(i)` for
    each done env.  With a fixed 25-step horizon and no early termination in
    these scenarios all envs finish together, so in practice this is exactly
    one batched `env.reset()` every 25 steps (no per-env Python loop)."""
    import torch

    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    import vmas

    if env_name == "simple_spread":
        kwargs = dict(n_agents=3)
    else:
        kwargs = dict(num_good_agents=1, num_adversaries=3, num_landmarks=2)
    env = vmas.make_env(
        env_name,
        num_envs=num_envs,
        device="cpu",
        continuous_actions=False,
        max_steps=EPISODE_LEN,
        seed=0,
        **kwargs,
    )
    n_agents = env.n_agents
    # VMAS's discrete space is the product of a 3-way choice (stay, -, +) per
    # axis, i.e. 9 actions (flat index = 3 * a_x + a_y, 0 = stay).  MPE's 5
    # actions (no-op, +-x, +-y) are the subset {0, 1, 2, 3, 6}; we sample
    # uniformly from it so the action distribution matches the other libs.
    for a in env.agents:
        assert list(a.discrete_action_nvec) == [3, 3], a.discrete_action_nvec
        assert env.get_agent_action_space(a).n == 9
    mpe_actions = torch.tensor([0, 1, 2, 3, 6])
    gen = torch.Generator().manual_seed(0)
    env.reset()
    stats = {"full_resets": 0, "partial_resets": 0}

    def run_episode():
        for _ in range(EPISODE_LEN):
            idx = torch.randint(0, NUM_ACTIONS, (n_agents, num_envs, 1), generator=gen)
            acts = mpe_actions[idx]
            _obs, _rews, dones, _info = env.step(list(acts.unbind(0)))
            if dones.any():
                if dones.all():
                    env.reset()
                    stats["full_resets"] += 1
                else:
                    for i in dones.nonzero().flatten().tolist():
                        env.reset_at(i)
                    stats["partial_resets"] += 1

    with torch.no_grad():
        run_episode()  # warm-up (2 episodes)
        run_episode()
        samples = []
        for _ in range(repeats):
            episodes, elapsed = _timed_episode_loop(run_episode, seconds)
            samples.append((episodes * EPISODE_LEN, elapsed))
    _log(f"vmas reset stats (incl. warm-up): {stats}")
    return dict(
        version=_pkg_version("vmas"),
        torch_version=torch.__version__,
        torch_threads=torch.get_num_threads(),
        samples=samples,
        compile_s=None,
    )


# ------------------------------------------------------------------------ JaxMARL
def bench_jaxmarl(
    env_name: str, num_envs: int, seconds: float, repeats: int, chunk_env_steps: int
) -> dict:
    """JaxMARL env, vmapped over num_envs, jit of a lax.scan over a chunk of steps.

    `env.step` auto-resets internally (it computes a reset state every step and
    selects it where done).  Random actions come from jax.random inside the
    scan.  To stop XLA from dead-code-eliminating observation/reward work
    (which the other libraries always do), the last observations and a running
    reward sum are carried through the scan and returned.  Compile time is
    measured separately via AOT lower().compile(); then one chunk is run as a
    warm-up and a number of chunks sized to fill --seconds is timed."""
    import jax
    import jax.numpy as jnp

    # jaxmarl prints "Importing submoduled environments..." on import (and
    # resets sys.stdout to sys.__stdout__ while importing), so redirect at the
    # file-descriptor level to keep stdout clean for the JSON result line.
    with _stdout_fd_to_stderr():
        import jaxmarl

        env = jaxmarl.make(ENV_IDS["jaxmarl"][env_name])
    assert env.max_steps == EPISODE_LEN, env.max_steps
    agents = list(env.agents)
    n_act = [env.action_space(a).n for a in agents]
    assert all(n == NUM_ACTIONS for n in n_act), n_act

    # chunk length: a multiple of the episode length, ~chunk_env_steps env-steps
    eps_per_chunk = max(1, round(chunk_env_steps / (num_envs * EPISODE_LEN)))
    chunk_len = eps_per_chunk * EPISODE_LEN

    v_reset = jax.vmap(env.reset)
    v_step = jax.vmap(env.step)

    def scan_body(carry, _):
        key, state, _obs, rsum = carry
        key, k_act, k_step = jax.random.split(key, 3)
        acts = jax.random.randint(k_act, (len(agents), num_envs), 0, NUM_ACTIONS)
        actions = {a: acts[i] for i, a in enumerate(agents)}
        obs, state, rew, _dones, _infos = v_step(jax.random.split(k_step, num_envs), state, actions)
        rsum = rsum + sum(rew[a].sum() for a in agents)
        return (key, state, obs, rsum), None

    def run_chunk(carry):
        carry, _ = jax.lax.scan(scan_body, carry, None, length=chunk_len)
        return carry

    key = jax.random.PRNGKey(0)
    key, k_reset = jax.random.split(key)
    obs, state = jax.jit(v_reset)(jax.random.split(k_reset, num_envs))
    carry = (key, state, obs, jnp.zeros((), jnp.float32))
    jax.block_until_ready(carry)

    t0 = time.perf_counter()
    compiled = jax.jit(run_chunk).lower(carry).compile()
    compile_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    carry = jax.block_until_ready(compiled(carry))  # warm-up chunk
    warm_s = time.perf_counter() - t0
    n_chunks = max(2, int(round(seconds / max(warm_s, 1e-9))))
    _log(f"jaxmarl chunk_len={chunk_len} warmup_chunk_s={warm_s:.4f} n_chunks={n_chunks}")

    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(n_chunks):
            carry = compiled(carry)
        jax.block_until_ready(carry)
        samples.append((n_chunks * chunk_len, time.perf_counter() - t0))
    return dict(
        version=_pkg_version("jaxmarl"),
        jax_version=jax.__version__,
        chunk_len=chunk_len,
        samples=samples,
        compile_s=compile_s,
    )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--lib", required=True, choices=sorted(ENV_IDS))
    p.add_argument("--env", required=True, choices=["simple_spread", "simple_tag"])
    p.add_argument("--num-envs", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seconds", type=float, default=3.0, help="approx. timed wall time")
    p.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="timed windows of --seconds each; the median one is reported",
    )
    p.add_argument(
        "--chunk-env-steps",
        type=int,
        default=50_000,
        help="jaxmarl: env-steps per jitted scan chunk (rounded to whole episodes)",
    )
    args = p.parse_args(argv)
    if args.num_envs < 1 or args.threads < 1 or args.repeats < 1 or args.seconds <= 0:
        p.error("--num-envs, --threads, --repeats must be >= 1, --seconds > 0")

    _pin_threads(args.threads, args.lib)

    if args.lib == "mpe2":
        res = bench_mpe2(args.env, args.num_envs, args.seconds, args.repeats)
    elif args.lib == "vmas":
        res = bench_vmas(args.env, args.num_envs, args.threads, args.seconds, args.repeats)
    else:
        res = bench_jaxmarl(
            args.env, args.num_envs, args.seconds, args.repeats, args.chunk_env_steps
        )

    samples = res.pop("samples")
    rates = [args.num_envs * st / sec for st, sec in samples]
    med = sorted(range(len(samples)), key=lambda i: rates[i])[len(samples) // 2]
    steps, seconds = samples[med]

    out = {
        "lib": args.lib,
        "version": res.pop("version"),
        "env": args.env,
        "num_envs": args.num_envs,
        "threads": args.threads,
        "steps_per_s": rates[med],
        "steps": steps,
        "seconds": seconds,
        "compile_s": res.pop("compile_s"),
    }
    if len(samples) > 1:
        out["samples_steps_per_s"] = rates
    out.update(res)  # extra diagnostics (backend versions, chunk length, ...)
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
