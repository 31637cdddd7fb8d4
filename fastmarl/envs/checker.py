"""``check_env``: conformance checker for any batched env (ours or a user's).

The batched counterpart of PettingZoo's ``api_test``: it drives an env through
the contract of :mod:`fastmarl.envs.api` and raises :class:`EnvCheckError`
(an ``AssertionError``) naming what is wrong and what was expected.

Checked, in order: the spec (groups, unique agent names, spaces); ``reset``
(TimeStep shapes, dtypes, devices, observation bounds, masks); ``state()``;
``steps`` steps of random valid actions (rewards finite, bool episode flags,
``final_obs`` / ``final_state`` semantics); determinism (same seed and actions,
same trajectory); partial reset by mask; rejection of invalid actions with
``ActionError`` leaving the env usable and unchanged; ``render``.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from fastmarl.envs.api import ActionError, EnvSpec, TimeStep

__all__ = ["check_env", "EnvCheckError"]


class EnvCheckError(AssertionError):
    """The env breaks the batched API contract; the message says how."""


def _fail(msg: str) -> None:
    raise EnvCheckError(msg)


def _same_device(a: torch.device, b: torch.device) -> bool:
    if a.type != b.type:
        return False
    return a.index is None or b.index is None or a.index == b.index


def _check_tensor(name: str, t: Any, shape: tuple[int, ...], device: torch.device, kind: str) -> None:
    """kind: 'float', 'bool' or 'int'."""
    if not isinstance(t, Tensor):
        _fail(f"{name}: expected a torch.Tensor of shape {shape}, got {type(t).__name__}")
    if tuple(t.shape) != shape:
        _fail(f"{name}: expected shape {shape}, got {tuple(t.shape)}")
    if not _same_device(t.device, device):
        _fail(f"{name}: expected a tensor on the env device {device}, got {t.device}")
    ok = {"float": t.dtype.is_floating_point, "bool": t.dtype == torch.bool,
          "int": not t.dtype.is_floating_point and not t.dtype.is_complex and t.dtype != torch.bool}[kind]
    if not ok:
        want = {"float": "a floating dtype", "bool": "torch.bool", "int": "an integer dtype"}[kind]
        _fail(f"{name}: expected {want}, got {t.dtype}")


def _check_spec(env: Any) -> EnvSpec:
    spec = getattr(env, "spec", None)
    if not isinstance(spec, EnvSpec):
        _fail(f"env.spec: expected a fastmarl.envs.EnvSpec, got {type(spec).__name__}")
    n = getattr(env, "num_envs", None)
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        _fail(f"env.num_envs: expected a positive int, got {n!r}")
    if not isinstance(getattr(env, "device", None), torch.device):
        _fail(f"env.device: expected a torch.device, got {type(getattr(env, 'device', None)).__name__}")
    for meth in ("reset", "step", "state", "render"):
        if not callable(getattr(env, meth, None)):
            _fail(f"env.{meth}: missing; the VecEnv protocol needs reset, step, state and render")
    if not isinstance(spec.groups, dict) or not spec.groups:
        _fail(f"spec.groups: expected a non-empty dict group name -> GroupSpec, got {spec.groups!r}")
    seen: set[str] = set()
    for key, g in spec.groups.items():
        if g.name != key:
            _fail(f"spec.groups[{key!r}].name is {g.name!r}; expected the dict key {key!r}")
        if not isinstance(g.agents, tuple) or not g.agents or not all(isinstance(a, str) for a in g.agents):
            _fail(f"group {key!r}: agents must be a non-empty tuple of str, got {g.agents!r}")
        dup = seen.intersection(g.agents) | {a for a in g.agents if g.agents.count(a) > 1}
        if dup:
            _fail(f"group {key!r}: agent names {sorted(dup)} are not unique; expected every agent name once")
        seen.update(g.agents)
        os_ = g.observation_space
        if not isinstance(os_, gym.spaces.Box) or len(os_.shape) != 1:
            _fail(f"group {key!r}: observation_space must be a 1-D gymnasium Box (one agent's vector), got {os_}")
        if np.any(np.asarray(os_.low) > np.asarray(os_.high)):
            _fail(f"group {key!r}: observation_space has low > high")
        sp = g.action_space
        if isinstance(sp, gym.spaces.Discrete):
            if int(sp.n) < 1 or int(sp.start) != 0:
                _fail(f"group {key!r}: Discrete action space must be Discrete(n >= 1) starting at 0, got {sp}")
        elif isinstance(sp, gym.spaces.Box):
            if len(sp.shape) != 1:
                _fail(f"group {key!r}: Box action space must be 1-D, got shape {sp.shape}")
            if np.any(np.asarray(sp.low) > np.asarray(sp.high)):
                _fail(f"group {key!r}: action_space has low > high")
        else:
            _fail(f"group {key!r}: action_space must be Discrete or Box, got {sp}")
    if not isinstance(spec.state_dim, int) or spec.state_dim < 0:
        _fail(f"spec.state_dim: expected an int >= 0, got {spec.state_dim!r}")
    if spec.max_episode_steps is not None and (not isinstance(spec.max_episode_steps, int) or spec.max_episode_steps < 1):
        _fail(f"spec.max_episode_steps: expected None or a positive int, got {spec.max_episode_steps!r}")
    return spec


def _check_obs(name: str, obs: Any, spec: EnvSpec, E: int, device: torch.device) -> None:
    if not isinstance(obs, dict) or set(obs) != set(spec.groups):
        got = sorted(obs) if isinstance(obs, dict) else type(obs).__name__
        _fail(f"{name}: expected a dict with exactly the groups {list(spec.groups)}, got {got}")
    for g, gs in spec.groups.items():
        o = obs[g]
        _check_tensor(f"{name}[{g!r}]", o, (E, gs.num_agents, gs.obs_dim), device, "float")
        if not bool(torch.isfinite(o).all()):
            _fail(f"{name}[{g!r}]: contains NaN or inf; expected finite observations")
        low = torch.as_tensor(np.asarray(gs.observation_space.low, dtype=np.float64), device=o.device)
        high = torch.as_tensor(np.asarray(gs.observation_space.high, dtype=np.float64), device=o.device)
        od = o.double()
        below = (od < low) & torch.isfinite(low)
        above = (od > high) & torch.isfinite(high)
        if bool(below.any()) or bool(above.any()):
            idx = torch.nonzero(below | above)[0].tolist()
            _fail(f"{name}[{g!r}]: value {od[tuple(idx)].item()} at (env, agent, feature) {tuple(idx)} is outside "
                  f"the observation space bounds [{low[idx[2]].item()}, {high[idx[2]].item()}]")


def _check_timestep(ts: Any, spec: EnvSpec, E: int, device: torch.device, where: str) -> None:
    if not isinstance(ts, TimeStep):
        _fail(f"{where}: expected a fastmarl.envs.TimeStep, got {type(ts).__name__}")
    _check_obs(f"{where}: obs", ts.obs, spec, E, device)
    _check_obs(f"{where}: final_obs", ts.final_obs, spec, E, device)
    if not isinstance(ts.reward, dict) or set(ts.reward) != set(spec.groups):
        _fail(f"{where}: reward: expected a dict with exactly the groups {list(spec.groups)}")
    for g, gs in spec.groups.items():
        r = ts.reward[g]
        _check_tensor(f"{where}: reward[{g!r}]", r, (E, gs.num_agents), device, "float")
        if not bool(torch.isfinite(r).all()):
            _fail(f"{where}: reward[{g!r}] contains NaN or inf; expected finite rewards")
    _check_tensor(f"{where}: terminated", ts.terminated, (E,), device, "bool")
    _check_tensor(f"{where}: truncated", ts.truncated, (E,), device, "bool")
    if spec.has_action_mask:
        if not isinstance(ts.action_mask, dict) or not ts.action_mask:
            _fail(f"{where}: spec.has_action_mask is True but action_mask is {ts.action_mask!r}; expected a dict "
                  "group -> (E, A_g, n) bool")
        for g, m in ts.action_mask.items():
            if g not in spec.groups or not spec.groups[g].discrete:
                _fail(f"{where}: action_mask[{g!r}]: expected masks only for discrete groups of the spec")
            gs = spec.groups[g]
            _check_tensor(f"{where}: action_mask[{g!r}]", m, (E, gs.num_agents, gs.action_dim), device, "bool")
    elif ts.action_mask is not None:
        _fail(f"{where}: action_mask is given but spec.has_action_mask is False; set has_action_mask=True")
    if spec.has_alive_mask:
        if not isinstance(ts.alive, dict) or set(ts.alive) != set(spec.groups):
            _fail(f"{where}: spec.has_alive_mask is True; expected alive as a dict with the groups {list(spec.groups)}")
        for g, gs in spec.groups.items():
            _check_tensor(f"{where}: alive[{g!r}]", ts.alive[g], (E, gs.num_agents), device, "bool")
    elif ts.alive is not None:
        _fail(f"{where}: alive is given but spec.has_alive_mask is False; set has_alive_mask=True")


def _check_state(env: Any, spec: EnvSpec, E: int, where: str) -> Tensor | None:
    if spec.state_dim == 0:
        return None
    s = env.state()
    _check_tensor(f"{where}: state()", s, (E, spec.state_dim), env.device, "float")
    if not bool(torch.isfinite(s).all()):
        _fail(f"{where}: state() contains NaN or inf")
    return s


def random_actions(spec: EnvSpec, ts: TimeStep, E: int, device: torch.device, gen: torch.Generator) -> dict[str, Tensor]:
    """Valid random actions: uniform over legal discrete actions (action 0 where a
    mask row is all False), uniform in the Box bounds (clipped to [-1, 1] where a
    bound is infinite)."""
    out = {}
    for g, gs in spec.groups.items():
        A = gs.num_agents
        if gs.discrete:
            n = gs.action_dim
            w = torch.ones(E * A, n)
            if ts.action_mask is not None and g in ts.action_mask:
                m = ts.action_mask[g].reshape(E * A, n).cpu().float()
                w = torch.where(m.sum(-1, keepdim=True) > 0, m, torch.nn.functional.one_hot(
                    torch.zeros(E * A, dtype=torch.long), n).float())
            a = torch.multinomial(w, 1, generator=gen).reshape(E, A)
            out[g] = a.to(device)
        else:
            sp = gs.action_space
            low = np.where(np.isfinite(sp.low), sp.low, -1.0).astype(np.float64)
            high = np.where(np.isfinite(sp.high), sp.high, 1.0).astype(np.float64)
            u = torch.rand(E, A, gs.action_dim, generator=gen, dtype=torch.float64)
            a = torch.as_tensor(low) + u * torch.as_tensor(high - low)
            dtype = torch.from_numpy(np.zeros(0, dtype=sp.dtype)).dtype if np.issubdtype(sp.dtype, np.floating) else torch.float32
            out[g] = a.clamp(torch.as_tensor(low), torch.as_tensor(high)).to(dtype).to(device)
    return out


def _equal(a: dict[str, Tensor], b: dict[str, Tensor]) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


def _rollout(env: Any, spec: EnvSpec, seed: int, n: int) -> list[tuple]:
    ts = env.reset(seed=seed)
    gen = torch.Generator().manual_seed(1234)
    out = [({g: o.clone() for g, o in ts.obs.items()},)]
    for _ in range(n):
        ts = env.step(random_actions(spec, ts, env.num_envs, env.device, gen))
        out.append(({g: o.clone() for g, o in ts.obs.items()}, {g: r.clone() for g, r in ts.reward.items()},
                    ts.terminated.clone(), ts.truncated.clone()))
    return out


def _snapshot(env: Any, spec: EnvSpec) -> Tensor | None:
    return env.state().clone() if spec.state_dim > 0 else None


def _invalid_actions(spec: EnvSpec, good: dict[str, Tensor]) -> list[tuple[str, Any]]:
    g0 = next(iter(spec.groups))
    gs = spec.groups[g0]
    a = good[g0]
    cases: list[tuple[str, Any]] = [
        ("a list instead of a dict", list(good.values())),
        (f"group {g0!r} missing", {k: v for k, v in good.items() if k != g0}),
        ("an extra group", {**good, "__not_a_group__": a}),
        (f"group {g0!r} with an extra leading axis", {**good, g0: a[None]}),
    ]
    if gs.discrete:
        cases.append((f"group {g0!r} out of range (action {gs.action_dim})",
                      {**good, g0: torch.full_like(a, gs.action_dim)}))
        cases.append((f"group {g0!r} with a float dtype", {**good, g0: a.float()}))
    else:
        bad = a.clone()
        bad.view(-1)[0] = float("nan")
        cases.append((f"group {g0!r} containing NaN", {**good, g0: bad}))
    return cases


def check_env(env: Any, steps: int = 50, seed: int = 0, check_render: bool = True) -> None:
    """Check that ``env`` follows the batched API of :mod:`fastmarl.envs.api`.

    Args:
        env: an object implementing the VecEnv protocol (``spec``, ``num_envs``,
            ``device``, ``reset``, ``step``, ``state``, ``render``).
        steps: random-action steps to take (episodes that end are checked too).
        seed: the seed given to ``reset``.
        check_render: also check ``render(0)`` returns (H, W, 3) uint8.

    Raises:
        EnvCheckError: on the first violation, with what is wrong and what was expected.

    The env is left reset with ``seed``; its RNG state is consumed.
    """
    spec = _check_spec(env)
    E, dev = env.num_envs, env.device

    # reset --------------------------------------------------------------------
    ts = env.reset(seed=seed)
    _check_timestep(ts, spec, E, dev, "reset()")
    if bool(ts.terminated.any()) or bool(ts.truncated.any()):
        _fail("reset(): terminated/truncated must be all False after a reset")
    if not _equal(ts.final_obs, ts.obs):
        _fail("reset(): final_obs must equal obs after a reset (no episode ended)")
    _check_state(env, spec, E, "after reset()")

    # random steps ---------------------------------------------------------------
    gen = torch.Generator().manual_seed(seed)
    episodes_ended = 0
    for t in range(steps):
        where = f"step {t}"
        ts_new = env.step(random_actions(spec, ts, E, dev, gen))
        _check_timestep(ts_new, spec, E, dev, where)
        done = ts_new.terminated | ts_new.truncated
        state = _check_state(env, spec, E, f"after {where}")
        if not bool(done.any()):
            if not _equal(ts_new.final_obs, ts_new.obs):
                _fail(f"{where}: no episode ended, so final_obs must equal obs (the same tensors); they differ")
            if ts_new.final_state is not None and state is not None and not torch.equal(ts_new.final_state, state):
                _fail(f"{where}: no episode ended; final_state must be None (or equal state())")
        else:
            episodes_ended += int(done.sum())
            keep = ~done
            for g in spec.groups:
                if not torch.equal(ts_new.final_obs[g][keep], ts_new.obs[g][keep]):
                    _fail(f"{where}: final_obs[{g!r}] differs from obs in envs whose episode did not end; "
                          "expected them equal (only ended envs hold their last observation)")
            if spec.state_dim > 0:
                fs = ts_new.final_state
                if fs is None:
                    _fail(f"{where}: an episode ended (envs {torch.nonzero(done).reshape(-1).tolist()}) but "
                          f"final_state is None; expected the (E, {spec.state_dim}) state before the auto-reset")
                _check_tensor(f"{where}: final_state", fs, (E, spec.state_dim), dev, "float")
                if not torch.equal(fs[keep], state[keep]):
                    _fail(f"{where}: final_state differs from state() in envs whose episode did not end")
        ts = ts_new

    # determinism ----------------------------------------------------------------
    n_det = min(5, max(steps, 1))
    r1, r2 = _rollout(env, spec, seed + 1, n_det), _rollout(env, spec, seed + 1, n_det)
    for t, (a, b) in enumerate(zip(r1, r2)):
        for x, y, what in zip(a, b, ("obs", "reward", "terminated", "truncated")):
            same = _equal(x, y) if isinstance(x, dict) else torch.equal(x, y)
            if not same:
                _fail(f"not deterministic: with the same seed ({seed + 1}) and actions, {what} differs at "
                      f"{'reset' if t == 0 else f'step {t - 1}'}; expected reset(seed=s) to fix the whole trajectory")

    # partial reset ----------------------------------------------------------------
    ts = env.reset(seed=seed)
    gen = torch.Generator().manual_seed(seed + 2)
    for _ in range(min(3, steps)):
        ts = env.step(random_actions(spec, ts, E, dev, gen))
    before_obs = {g: o.clone() for g, o in ts.obs.items()}
    before_state = _snapshot(env, spec)
    mask = torch.zeros(E, dtype=torch.bool, device=dev)
    mask[0] = True
    ts_r = env.reset(mask=mask)
    _check_timestep(ts_r, spec, E, dev, "reset(mask=...)")
    keep = ~mask
    for g in spec.groups:
        if not torch.equal(ts_r.obs[g][keep], before_obs[g][keep]):
            _fail(f"reset(mask=...): obs[{g!r}] changed in envs where mask is False; expected only masked envs reset")
    st = _check_state(env, spec, E, "after reset(mask=...)")
    if st is not None and not torch.equal(st[keep], before_state[keep]):
        _fail("reset(mask=...): state() changed in envs where mask is False; expected only masked envs reset")
    ts = ts_r

    # invalid actions ---------------------------------------------------------------
    good = random_actions(spec, ts, E, dev, gen)
    for what, bad in _invalid_actions(spec, good):
        snap_state = _snapshot(env, spec)
        try:
            env.step(bad)
        except ActionError:
            pass
        except Exception as exc:  # noqa: BLE001 - we report what was raised
            _fail(f"step() with invalid actions ({what}) raised {type(exc).__name__}: {exc}; "
                  "expected fastmarl.envs.ActionError")
        else:
            _fail(f"step() accepted invalid actions ({what}); expected it to raise fastmarl.envs.ActionError")
        if snap_state is not None and not torch.equal(env.state(), snap_state):
            _fail(f"step() with invalid actions ({what}) changed state(); expected the env unchanged")
    try:
        ts_ok = env.step(good)
    except Exception as exc:  # noqa: BLE001
        _fail(f"step() with valid actions failed after rejected invalid ones: {type(exc).__name__}: {exc}")
    _check_timestep(ts_ok, spec, E, dev, "step after invalid actions")

    # render --------------------------------------------------------------------
    if check_render:
        img = env.render(0)
        if not isinstance(img, np.ndarray) or img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            got = f"{img.dtype} {img.shape}" if isinstance(img, np.ndarray) else type(img).__name__
            _fail(f"render(0): expected an RGB array (H, W, 3) uint8, got {got}")
    env.reset(seed=seed)
