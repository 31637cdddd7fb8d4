"""Reference policies: a scripted controller for simple_spread, and uniform random.

Both follow the ``Policy`` protocol (:class:`fastmarl.envs.api.Policy`),
so they are scored exactly like a trained policy::

    env = fastmarl.make("simple_spread_v3", num_envs=1000, seed=0)
    evaluate_policy(SpreadScripted(env.spec), env)   # return about -8 per agent
    evaluate_policy(RandomPolicy(env.spec), env)     # about -27

``python -m fastmarl.envs.scripted`` prints both.

The scripted policy reads everything from the observations (no privileged
state): each agent's own position and velocity, and the landmarks' positions
relative to agent 0. Agents are matched to landmarks by the assignment that
minimises the summed distance (``scipy.optimize.linear_sum_assignment``, per env),
then each agent steers to its landmark with the 5 discrete moves.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from fastmarl.envs.api import EnvSpec, GroupSpec, TimeStep
from fastmarl.envs.episodes import evaluate_policy
from fastmarl.envs.mpe import simple_spread
from fastmarl.envs.mpe.core import MPEEnv
from fastmarl.envs.mpe.geometry import N_MOVES, axis_move

# mpe2 physics of a spread agent: v' = (1 - damping) v + accel dt u;  p' = p + v dt
_DAMPING, _DT = 0.25, 0.1
# coasting from velocity v still travels v dt (1 - d) / d: aim at target - that
_COAST = _DT * (1 - _DAMPING) / _DAMPING
_DEADBAND = 0.01  # distance below which an axis is left alone (avoids dithering)


class SpreadScripted:
    """Landmark assignment + steering for ``simple_spread_v3`` (discrete actions, full observations)."""

    def __init__(self, spec: EnvSpec):
        if set(spec.groups) != {"agent"} or not spec.groups["agent"].discrete:
            raise ValueError("SpreadScripted drives simple_spread_v3 with discrete actions (one group 'agent')")
        g = spec.groups["agent"]
        self.N = g.num_agents
        expected = 4 + 2 * self.N + 4 * (self.N - 1)
        if g.obs_dim != expected:
            raise ValueError(f"SpreadScripted needs full observations of size {expected} (N={self.N}), got "
                             f"{g.obs_dim}; num_agent_neighbors / num_landmark_neighbors are not supported")

    def initial_carry(self, num_envs: int) -> dict:
        return {}

    def targets(self, obs: Tensor) -> Tensor:
        """obs (E, N, O) -> (E, N, 2) the landmark position each agent is assigned to."""
        N = self.N
        pos = obs[:, :, 2:4]  # (E, N, 2)
        landmarks = obs[:, 0, 2:4][:, None] + obs[:, 0, 4:4 + 2 * N].reshape(-1, N, 2)  # (E, L, 2)
        # scipy.optimize takes ~0.3 s to import, and this module is imported with every swarm env (steer,
        # COAST) and so with `import fastmarl`: loaded here, where the spread policy first needs it
        from scipy.optimize import linear_sum_assignment

        dist = torch.linalg.vector_norm(pos[:, :, None] - landmarks[:, None], dim=-1).cpu().numpy()
        assign = np.empty((dist.shape[0], N), dtype=np.int64)
        for e in range(dist.shape[0]):  # reference policy, not a hot path
            rows, cols = linear_sum_assignment(dist[e])
            assign[e, rows] = cols
        idx = torch.as_tensor(assign, device=obs.device)
        return torch.gather(landmarks, 1, idx[..., None].expand(-1, -1, 2))

    def act(self, ts: TimeStep, carry: dict, deterministic: bool = True,
            generator: torch.Generator | None = None) -> tuple[dict[str, Tensor], dict]:
        obs = ts.obs["agent"]
        vel, pos = obs[:, :, 0:2], obs[:, :, 2:4]
        d = self.targets(obs) - pos - vel * _COAST  # (E, N, 2) displacement still needed after coasting
        return {"agent": axis_move(d, _DEADBAND)}, carry  # push along the axis that is furthest off


def steer(displacement: Tensor, group: GroupSpec, deadband: float = _DEADBAND) -> Tensor:
    """Actions of an MPE group that push each agent along ``displacement`` (E, A, 2).

    Discrete: the move (0 no-op, 1 -x, 2 +x, 3 -y, 4 +y) along the axis that is
    furthest off, no-op within ``deadband``; continuous (``Box(5)``: no-op, -x, +x,
    -y, +y in [0, 1]): full push on both axes, scaled down inside ``deadband``.
    Callers subtract the coasting distance ``vel * COAST`` from the displacement
    they want so agents brake in time. Returns (E, A) long or (E, A, 5)."""
    if group.discrete:
        return axis_move(displacement, deadband)
    if group.action_dim != N_MOVES:
        raise ValueError(f"steer drives MPE movement actions (Box(5)), group {group.name!r} has "
                         f"{group.action_dim} action dimensions")
    u = (displacement / deadband).clamp(-1.0, 1.0)
    z = torch.zeros_like(u[..., :1])
    return torch.cat([z, (-u[..., :1]).clamp_min(0), u[..., :1].clamp_min(0), (-u[..., 1:]).clamp_min(0),
                     u[..., 1:].clamp_min(0)], -1)


COAST = _COAST  # distance an MPE agent (damping 0.25, dt 0.1) still travels per unit of velocity


class RandomPolicy:
    """Uniform random actions (valid ones only, where the env gives action masks)."""

    def __init__(self, spec: EnvSpec):
        self.spec = spec

    def initial_carry(self, num_envs: int) -> dict:
        return {}

    def act(self, ts: TimeStep, carry: dict, deterministic: bool = False,
            generator: torch.Generator | None = None) -> tuple[dict[str, Tensor], dict]:
        out = {}
        for name, g in self.spec.groups.items():
            obs = ts.obs[name]
            E, A = obs.shape[:2]
            if g.discrete:
                w = torch.ones(E, A, g.action_dim, device=obs.device)
                if ts.action_mask is not None and name in ts.action_mask:
                    w = w * ts.action_mask[name]
                    # a row without legal actions (a dead agent, or not its turn): its action is ignored
                    w = torch.where(w.sum(-1, keepdim=True) > 0, w, 1.0)
                out[name] = torch.multinomial(w.view(E * A, -1), 1, generator=generator).view(E, A)
            else:
                low = torch.as_tensor(g.action_space.low, device=obs.device, dtype=obs.dtype)
                high = torch.as_tensor(g.action_space.high, device=obs.device, dtype=obs.dtype)
                u = torch.rand(E, A, g.action_dim, generator=generator, device=obs.device, dtype=obs.dtype)
                out[name] = low + (high - low) * u
        return out, carry


def main() -> None:
    # the env is built without the registry, which imports this module (its swarm envs use steer and COAST);
    # it is the env make("simple_spread_v3", num_envs=1000, seed=0, N=3, local_ratio=0.5, max_cycles=25) builds
    env = MPEEnv(simple_spread.Scenario(N=3, local_ratio=0.5, max_cycles=25), num_envs=1000, seed=0)
    for name, policy in (("scripted", SpreadScripted(env.spec)), ("random", RandomPolicy(env.spec))):
        r = evaluate_policy(policy, env, deterministic=True, seed=0)
        print(f"simple_spread_v3 N=3, 1000 episodes, {name:>8}: return per agent {r['return']:.2f} "
              f"(std {r['return_std']:.2f})")


if __name__ == "__main__":
    main()
