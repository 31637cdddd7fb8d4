"""``fastmarl.make``: env ids and keyword arguments as in the mpe2 package.

``make("simple_spread_v3", num_envs=1024, device="cpu", seed=0, N=3)`` builds a
batched env. Scenario keyword arguments are the mpe2 ones; fastmarl adds
``dtype`` (float32 default, float64 for exact parity work), ``compile``
(True: ``torch.compile`` the step; ``"aot"``: compile it ahead of time, least
per-step overhead, CPU), ``validate`` (check actions; on by default).
Unknown ids and unknown keyword arguments are errors that list close matches.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass
from typing import Any, Callable

import torch

from fastmarl.envs.api import check_device, check_known_keys
from fastmarl.envs.influence import make_influence
from fastmarl.envs.lbf import Foraging, lbf_defaults, lbf_ids
from fastmarl.envs.market import make_market
from fastmarl.envs.matrix import GAMES, matrix_factory
from fastmarl.envs.mpe.core import MPEEnv, check_kwargs
from fastmarl.envs.rware import Warehouse, rware_defaults, rware_ids
from fastmarl.envs.swarm.coverage import make_swarm_coverage
from fastmarl.envs.swarm.formation import make_formation
from fastmarl.envs.swarm.jammer import make_jammer
from fastmarl.envs.swarm.pursuit_evasion import make_pursuit_evasion
from fastmarl.envs.swarm.relay import make_relay
from fastmarl.envs.swarm.swarm_defense import make_swarm_defense
from fastmarl.envs.swarm.waterworld import make_waterworld
from fastmarl.envs.traffic import make_traffic_grid


@dataclass(frozen=True)
class EnvEntry:
    env_id: str
    family: str
    description: str
    factory: Callable[..., Any]
    listed: bool = True  # False: a variant id that make() knows but list_envs() (and the per-env test suites) skip


_REGISTRY: dict[str, EnvEntry] = {}

# kwargs of mpe2's SimpleEnv that every MPE scenario accepts, plus fastmarl's own
_MPE_ENV_KWARGS = dict(continuous_actions=False, render_mode=None, dynamic_rescaling=True, benchmark_data=False,
                       dtype=torch.float32, compile=False, validate=True)


def register(env_id: str, factory: Callable[..., Any], family: str, description: str, listed: bool = True) -> None:
    """Register ``factory(num_envs=, device=, seed=, **kwargs)`` under ``env_id``."""
    if env_id in _REGISTRY:
        raise ValueError(f"env id {env_id!r} is already registered")
    _REGISTRY[env_id] = EnvEntry(env_id, family, description, factory, listed)


def kwargs_factory(cls: Callable[..., Any], env_id: str, defaults: dict[str, Any]) -> Callable[..., Any]:
    """``make``'s factory for an id that is one class with fixed keyword arguments (the LBF and RWARE
    ids): ``cls(num_envs, device, seed, env_id=env_id, **defaults)`` with the user's keyword arguments
    over ``defaults``; one that is not among them is a TypeError naming the closest valid ones."""

    def factory(num_envs: int = 1, device: str | torch.device = "cpu", seed: int | None = None, **kw: Any):
        check_known_keys(kw, defaults, f"{env_id} keyword argument", TypeError)
        return cls(num_envs=num_envs, device=device, seed=seed, env_id=env_id, **{**defaults, **kw})

    return factory


def mpe_factory(module: str) -> Callable[..., MPEEnv]:
    """Factory for a scenario module in fastmarl.envs.mpe exposing ``Scenario`` and ``KWARGS``."""

    def factory(num_envs: int = 1, device: str | torch.device = "cpu", seed: int | None = None, **kwargs: Any) -> MPEEnv:
        mod = importlib.import_module(f"fastmarl.envs.mpe.{module}")
        env_id = mod.Scenario.env_id
        merged = check_kwargs(env_id, kwargs, {**mod.KWARGS, **_MPE_ENV_KWARGS})
        if merged.pop("benchmark_data"):
            raise ValueError(f"{env_id}: benchmark_data=True is not supported; compute metrics from the "
                             "batched state instead (fastmarl.analysis)")
        env_kw = {k: merged.pop(k) for k in list(_MPE_ENV_KWARGS) if k in merged}
        scenario = mod.Scenario(**merged)
        return MPEEnv(scenario, num_envs=num_envs, device=device, seed=seed, **env_kw)

    return factory


_MPE = {
    "simple_v3": ("simple", "one agent reaches a landmark (debugging task)"),
    "simple_spread_v3": ("simple_spread", "N agents cover N landmarks, avoiding collisions (cooperative)"),
    "simple_tag_v3": ("simple_tag", "predators chase faster prey among obstacles (competitive)"),
    "simple_adversary_v3": ("simple_adversary", "good agents reach the goal while hiding it from an adversary"),
    "simple_speaker_listener_v4": ("simple_speaker_listener", "a speaker guides a listener to a landmark (communication)"),
    "simple_reference_v3": ("simple_reference", "two agents tell each other which landmark to reach (communication)"),
    "simple_push_v3": ("simple_push", "an adversary pushes the agent away from the goal"),
    "simple_crypto_v3": ("simple_crypto", "Alice and Bob share a key; Eve eavesdrops (communication)"),
    "simple_world_comm_v3": ("simple_world_comm", "leader-led predators, prey, forests and food"),
}
for _id, (_mod, _desc) in _MPE.items():
    register(_id, mpe_factory(_mod), "mpe", _desc)


def make(env_id: str, num_envs: int = 1, device: str | torch.device = "cpu", seed: int | None = None, **kwargs: Any):
    """Build a registered batched env; see the module docstring."""
    if env_id not in _REGISTRY:
        raise KeyError(_unknown_id_message(env_id))
    check_device(device)
    return _REGISTRY[env_id].factory(num_envs=num_envs, device=device, seed=seed, **kwargs)


def _unknown_id_message(env_id: str) -> str:
    """The closest id over every registered one, but only the listed ids spelled out: the variant ids
    (every RWARE/LBF size and option) number in the thousands."""
    close = difflib.get_close_matches(str(env_id), list(_REGISTRY), n=1)
    listed = sorted(e.env_id for e in _REGISTRY.values() if e.listed)
    variants = sorted({e.family for e in _REGISTRY.values() if not e.listed})
    more = (f"; plus {len(_REGISTRY) - len(listed):,} variant ids ({', '.join(variants)}: their "
            "reference packages' ids, e.g. 'rware-small-4ag-v2', 'Foraging-2s-10x10-3p-3f-v3')") if variants else ""
    return (f"unknown env id (`fastmarl envs` describes them): {env_id!r}"
            + (f" (did you mean {close[0]!r}?)" if close else "") + f"; valid: {listed}{more}")


def list_envs() -> list[EnvEntry]:
    return sorted((e for e in _REGISTRY.values() if e.listed), key=lambda e: (e.family, e.env_id))


def env_family(env_id: str) -> str | None:
    """The family a registered env id belongs to (``mpe``, ``applications``, ...); None if unregistered."""
    entry = _REGISTRY.get(env_id)
    return entry.family if entry is not None else None


# -- matrix games (family "matrix"; fastmarl.envs.matrix) ---------------------------
for _id, (_, _, _desc) in GAMES.items():
    register(_id, matrix_factory(_id), "matrix", _desc)

# -- applications (family "applications"; fastmarl.envs.swarm, fastmarl.envs.traffic, ...) --
register("swarm_coverage_v0", make_swarm_coverage, "applications",
         "battery-limited drones cover a grid and find hidden targets, sharing scarce chargers (cooperative)")
register("waterworld_v0", make_waterworld, "applications",
         "SISL waterworld, vectorized: pursuers with range sensors eat food (n_coop at once) and avoid poison")
register("pursuit_evasion_v0", make_pursuit_evasion, "applications",
         "pursuers with limited sensing chase (learning or scripted) evaders among obstacles")
register("traffic_grid_v0", make_traffic_grid, "applications",
         "signalised intersections on a grid choose phases to keep queues short (cooperative)")
register("relay_v0", make_relay, "applications",
         "relay drones keep a multi-hop radio link between a base and a moving remote node (cooperative)")
register("formation_v0", make_formation, "applications",
         "agents hold a line, wedge or circle formation around a reference travelling to a goal (cooperative)")
register("jammer_v0", make_jammer, "applications",
         "jammers choose position, channel and power to cut transmitter-receiver links (competitive, SINR model)")
register("swarm_defense_v0", make_swarm_defense, "applications",
         "an attacking swarm tries to reach a protected zone past interceptors (competitive)")
register("influence_v0", make_influence, "applications",
         "blue and red agents push node opinions on a random graph toward their side (zero-sum, opinion dynamics)")
register("market_v0", make_market, "applications",
         "market makers quote bid/ask around a moving fair price for arriving traders (mixed-motive, inventory risk)")

# -- multi-robot warehouse (family "rware"; fastmarl.envs.rware): every id rware==2.0.0 registers;
# one is listed, the others (sizes, robots, -easy/-hard, image observations) are variants make() builds
for _id, _kw in rware_ids().items():
    register(_id, kwargs_factory(Warehouse, _id, rware_defaults(_kw)), "rware", "robots fetch requested shelves to the goals of a warehouse (RWARE; "
             "rware[-img|-imgdict][-Nd]-{tiny,small,medium,large}-{1..19}ag[-easy|-hard]-v2)", listed=_id == "rware-tiny-2ag-v2")

# -- level-based foraging (family "lbf"; fastmarl.envs.lbf): every id lbforaging==2.0.0 registers; one listed
for _id, _kw in lbf_ids().items():
    register(_id, kwargs_factory(Foraging, _id, lbf_defaults(_kw)), "lbf", "levelled players load levelled food together (LBF; "
             "Foraging[-2s]-{5..19}x{5..19}-{2..9}p-{1..4}f[-coop]-v3)", listed=_id == "Foraging-8x8-2p-2f-coop-v3")
