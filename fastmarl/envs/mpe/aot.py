"""Ahead-of-time compiled MPE steps: ``make(..., compile="aot")``.

``compile=True`` wraps the pure step ``MPEEnv._advance`` in ``torch.compile``;
every call then goes through dynamo's frame hooks and guard checks, about 20 us
of Python per step. That is most of a step at 64 envs (profile of simple_tag at
64 envs, 1 thread: 50 us per call of which ~30 us is the compiled kernel).
``compile="aot"`` instead exports the same function once with ``torch.export``,
compiles it with AOTInductor into a shared library and calls it directly: the
same fused kernels, no guards (simple_tag at 64 envs: 23 us per call).

What makes that safe here: the graph depends only on the env's construction
arguments (scenario kwargs, ``num_envs``, dtype, device, action mode,
``validate``), all of which go into the cache key, and on tensors passed in.
Scenario state that changes at run time (e.g. simple_tag's curriculum) lives in
``MPEState.extra`` tensors, written by the eager reset. The wrapper checks the
action tensors' shapes and devices before every call (a compiled library does
not), and casts their dtypes to the exported ones.

Compiled libraries are cached on disk under ``$FASTMARL_CACHE_DIR/aot`` (default
``~/.cache/fastmarl/aot``), keyed by a hash of the construction arguments, the
example inputs' shapes/strides/dtypes, torch's thread count, the torch version and
the source of the files that define the step; a cache entry is written atomically, so an
interrupted compile never leaves a broken file behind. CPU only for now (on
CUDA use ``compile=True``).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import sys
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import torch
from torch import Tensor

from fastmarl.envs.mpe import geometry
from fastmarl.version import __version__

if TYPE_CHECKING:  # annotations only: core imports this module, and this one takes MPEState from the env it gets
    from fastmarl.envs.mpe.core import MPEEnv, MPEState


def cache_dir() -> Path:
    root = os.environ.get("FASTMARL_CACHE_DIR") or Path.home() / ".cache" / "fastmarl"
    return Path(root) / "aot"


def _describe(t: Tensor) -> str:
    return f"{tuple(t.shape)}:{tuple(t.stride())}:{t.dtype}:{t.device}"


def _cache_key(env: MPEEnv, leaves: list[Tensor]) -> str:
    h = hashlib.sha256()
    scenario = env.scenario
    settings = {k: v for k, v in sorted(vars(scenario).items()) if not k.startswith("_")}
    parts = [
        torch.__version__, __version__, sys.version, type(scenario).__module__, repr(settings),
        repr(env.world.wd), env.num_envs, str(env.dtype), str(env.device), env.continuous_actions, env.validate,
        env._env_last, env._store_in_graph, [_describe(t) for t in leaves],
        torch.get_num_threads(),  # inductor emits parallel loops only when compiling for > 1 thread
    ]
    h.update(repr(parts).encode())
    core = inspect.getmodule(type(env.world_state))  # fastmarl.envs.mpe.core: MPEState and the step
    for module in (core, geometry, sys.modules[__name__], sys.modules[type(scenario).__module__]):
        h.update(inspect.getsource(module).encode())
    return h.hexdigest()[:32]


def _atomic_write(path: Path, write: Callable[[str], object]) -> None:
    fd, tmp = tempfile.mkstemp(suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def aot_advance(env: MPEEnv) -> Callable[[MPEState, dict[str, Tensor]], tuple]:
    """A drop-in for ``env._advance`` (same inputs and outputs), compiled ahead of time."""
    if env.device.type != "cpu":
        raise ValueError(f"compile='aot' supports CPU envs only (got device {env.device}); use compile=True on "
                         f"{env.device.type}")
    groups = list(env.spec.groups)
    s0 = env._state
    state_type = type(s0)  # MPEState
    extra_keys = sorted(s0.extra)
    example_actions = {}
    for name, g in env.spec.groups.items():
        if g.discrete:
            example_actions[name] = torch.zeros(env.num_envs, g.num_agents, dtype=torch.long, device=env.device)
        else:
            example_actions[name] = torch.zeros(env.num_envs, g.num_agents, g.action_dim, dtype=env.dtype,
                                                device=env.device)
    n_state = 4 + len(extra_keys)

    def pack_state(s: MPEState) -> list[Tensor]:
        return [s.pos, s.vel, s.comm, s.t, *(s.extra[k] for k in extra_keys)]

    def unpack_state(leaves) -> MPEState:
        return state_type(leaves[0], leaves[1], leaves[2], leaves[3], dict(zip(extra_keys, leaves[4:n_state])))

    # State leaves the step returns unchanged (the same tensor object, e.g. an episode's goal in
    # ``extra``) are not outputs of the library: an output aliasing an input does not come back
    # intact from an AOTInductor call. The wrapper passes those inputs through itself.
    passthrough: list[bool] = []

    class Step(torch.nn.Module):
        def forward(self, *leaves: Tensor):
            s = unpack_state(leaves[:n_state])
            actions = dict(zip(groups, leaves[n_state:]))
            s2, rew, term, trunc, obs, flags = env._advance(s, actions)
            if sorted(s2.extra) != extra_keys:
                raise RuntimeError("compile='aot': the scenario's step changed the keys of MPEState.extra")
            new = pack_state(s2)
            passthrough[:] = [a is b for a, b in zip(new, leaves[:n_state])]
            changed = [t for t, same in zip(new, passthrough) if not same]
            return (*changed, rew, term, trunc, *(obs[g] for g in groups), flags)

    # A compiled library assumes the strides of its example inputs. Example state leaves are
    # contiguous, except pos/vel/comm, which the env may store env-innermost (then every step
    # returns them that way too); the wrapper re-strides any input that differs (rare: e.g. an
    # ``extra`` tensor that a reset made as a view).
    state0 = [t if i < 3 else t.contiguous() for i, t in enumerate(pack_state(s0))]
    example = [*state0, *(example_actions[g] for g in groups)]
    strides = [t.stride() for t in example]
    path = cache_dir() / f"{env.spec.env_id}-{_cache_key(env, example)}.pt2"
    sidecar = path.with_suffix(".json")  # which state leaves pass through; written before the library
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch-internal pytree deprecation notices
        loader = None
        if path.exists() and sidecar.exists():
            try:
                passthrough[:] = json.loads(sidecar.read_text())["passthrough"]
                loader = torch._inductor.aoti_load_package(str(path)).loader
            except Exception as e:  # a damaged cache entry is rebuilt, never trusted
                warnings.warn(f"compile='aot': rebuilding unreadable cache entry {path.name} ({e})")
                loader = None
        if loader is None:
            path.parent.mkdir(parents=True, exist_ok=True)
            exported = torch.export.export(Step(), tuple(example), strict=False)
            _atomic_write(sidecar, lambda tmp: Path(tmp).write_text(json.dumps({"passthrough": passthrough})))
            _atomic_write(path, lambda tmp: torch._inductor.aoti_compile_and_package(exported, package_path=tmp))
            loader = torch._inductor.aoti_load_package(str(path)).loader
    n_changed = passthrough.count(False)
    expect = [(tuple(example_actions[g].shape), example_actions[g].dtype) for g in groups]
    n_obs = len(groups)

    def advance(s: MPEState, actions: dict[str, Tensor]):
        leaves = pack_state(s)
        for g, (shape, dtype) in zip(groups, expect):
            a = actions[g]
            if a.shape != shape or a.device != env.device:
                raise ValueError(f"compile='aot': actions[{g!r}] must have shape {shape} on {env.device}, got "
                                 f"{tuple(a.shape)} on {a.device}")
            leaves.append(a if a.dtype == dtype else a.to(dtype))
        for i, (leaf, stride) in enumerate(zip(leaves, strides)):
            if leaf.stride() != stride:
                leaves[i] = torch.empty_strided(leaf.shape, stride, dtype=leaf.dtype, device=leaf.device).copy_(leaf)
        out = loader.run(leaves)
        changed = iter(out[:n_changed])
        s2 = unpack_state([leaf if same else next(changed) for leaf, same in zip(leaves, passthrough)])
        rew, term, trunc = out[n_changed:n_changed + 3]
        obs = dict(zip(groups, out[n_changed + 3:n_changed + 3 + n_obs]))
        return s2, rew, term, trunc, obs, out[-1]

    return advance
