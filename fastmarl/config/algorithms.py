"""Every algorithm ``fastmarl train --algo`` offers, and what each can do.

``ALGORITHMS[name]`` is an :class:`AlgoSpec`: its config family (``"ppo"``:
:class:`~fastmarl.config.ppo.TrainConfig`; ``"q"``: :class:`~fastmarl.config.q.QConfig`),
one line of help and its capabilities, which the validators check against the env.
Adding an algorithm: its config (a dataclass in this package), one entry here, its
learner in :mod:`fastmarl.algos` and one line in ``fastmarl.train.runner.LEARNERS``.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastmarl.config.base import ConfigError
from fastmarl.envs.api import check_known_keys


@dataclass(frozen=True)
class AlgoSpec:
    name: str
    family: str
    """the config family: "ppo" (TrainConfig) or "q" (QConfig)"""
    help: str
    """one line for `fastmarl train --help`"""
    needs_state: bool
    """reads the env's global state (a centralized critic or mixer)"""
    centralized_critic: bool = False
    discrete: bool = True
    """supports discrete action spaces"""
    continuous: bool = True
    """supports continuous (Box) action spaces"""
    off_policy: bool = False


ALGORITHMS: dict[str, AlgoSpec] = {spec.name: spec for spec in [
    AlgoSpec("mappo", "ppo", "PPO with a centralized critic on the global state (on-policy; discrete or continuous)",
             needs_state=True, centralized_critic=True),
    AlgoSpec("ippo", "ppo", "independent PPO: each critic sees its agent's observation", needs_state=False),
    AlgoSpec("iql", "q", "independent Q-learning, recurrent by default (off-policy; discrete actions)",
             needs_state=False, continuous=False, off_policy=True),
    AlgoSpec("vdn", "q", "value decomposition: Q_tot = sum of the agents' utilities", needs_state=False,
             continuous=False, off_policy=True),
    AlgoSpec("qmix", "q", "monotonic mixing of the utilities, conditioned on the global state", needs_state=True,
             continuous=False, off_policy=True),
]}
DEFAULT_ALGO = "mappo"


def algo_spec(name: str, family: str | None = None) -> AlgoSpec:
    """The spec of algorithm ``name`` (of ``family`` if given); a ConfigError names the closest one."""
    names = [n for n, s in ALGORITHMS.items() if family is None or s.family == family]
    if name not in names and name in ALGORITHMS:
        other = ALGORITHMS[name].family
        raise ConfigError(f"algo {name!r} belongs to the {other!r} config family, not {family!r}: configure it with "
                          f"{ {'ppo': 'TrainConfig', 'q': 'QConfig'}.get(other, other) }(algo={name!r}, ...)")
    check_known_keys([name], names, "algo", ConfigError)
    return ALGORITHMS[name]
