"""Every algorithm ``fastmarl train --algo`` offers, and what each can do.

``ALGORITHMS[name]`` is an :class:`AlgoSpec`: its config family (``"ppo"``:
:class:`~fastmarl.config.ppo.TrainConfig`; ``"q"``: :class:`~fastmarl.config.q.QConfig`; ``"sac"`` /
``"ddpg"``: :class:`~fastmarl.config.offpolicy.SACConfig` / ``DDPGConfig``),
one line of help and its capabilities, which the validators check against the env
(``applicable_algorithms(spec)`` lists the algorithms that fit an env, for the
messages that refuse one).
Adding an algorithm: its config (a dataclass in this package), one entry here, its
learner in :mod:`fastmarl.algos` and one line in ``fastmarl.train.runner.LEARNERS``.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastmarl.config.base import ConfigError
from fastmarl.envs.api import EnvSpec, check_known_keys


@dataclass(frozen=True)
class AlgoSpec:
    name: str
    family: str
    """the config family: "ppo" (TrainConfig), "happo" (HAPPOTrainConfig), "q" (QConfig), "sac" (SACConfig) or
    "ddpg" (DDPGConfig)"""
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
    action_masks: bool = True
    """applies the env's action masks (False: refuses envs that have them)"""


ALGORITHMS: dict[str, AlgoSpec] = {spec.name: spec for spec in [
    AlgoSpec("mappo", "ppo", "PPO with a centralized critic on the global state (on-policy; discrete or continuous)",
             needs_state=True, centralized_critic=True),
    AlgoSpec("ippo", "ppo", "independent PPO: each critic sees its agent's observation", needs_state=False),
    AlgoSpec("happo", "happo", "heterogeneous-agent PPO: per-agent actors updated one after another in a random "
             "order, each on its advantage times the already-updated agents' probability ratios (on-policy)",
             needs_state=True, centralized_critic=True),
    AlgoSpec("iql", "q", "independent Q-learning, recurrent by default (off-policy; discrete actions)",
             needs_state=False, continuous=False, off_policy=True),
    AlgoSpec("vdn", "q", "value decomposition: Q_tot = sum of the agents' utilities", needs_state=False,
             continuous=False, off_policy=True),
    AlgoSpec("qmix", "q", "monotonic mixing of the utilities, conditioned on the global state", needs_state=True,
             continuous=False, off_policy=True),
    AlgoSpec("masac", "sac", "soft actor-critic, twin critics on the global state and joint action (off-policy; "
             "continuous or discrete)", needs_state=True, centralized_critic=True, off_policy=True,
             action_masks=False),
    AlgoSpec("isac", "sac", "independent soft actor-critic: each critic sees its agent's observation and action",
             needs_state=False, off_policy=True, action_masks=False),
    AlgoSpec("maddpg", "ddpg", "deterministic actors, a critic per agent on the global state and joint action "
             "(off-policy; continuous, or discrete via Gumbel-softmax)", needs_state=True, centralized_critic=True,
             off_policy=True, action_masks=False),
    AlgoSpec("iddpg", "ddpg", "independent DDPG: each critic sees its agent's observation and action",
             needs_state=False, off_policy=True, action_masks=False),
]}
DEFAULT_ALGO = "mappo"
CONFIG_CLASS_NAMES = {"ppo": "TrainConfig", "happo": "HAPPOTrainConfig", "q": "QConfig", "sac": "SACConfig",
                      "ddpg": "DDPGConfig"}  # for error messages


def algo_spec(name: str, family: str | None = None) -> AlgoSpec:
    """The spec of algorithm ``name`` (of ``family`` if given); a ConfigError names the closest one."""
    names = [n for n, s in ALGORITHMS.items() if family is None or s.family == family]
    if name not in names and name in ALGORITHMS:
        other = ALGORITHMS[name].family
        raise ConfigError(f"algo {name!r} belongs to the {other!r} config family, not {family!r}: configure it with "
                          f"{CONFIG_CLASS_NAMES.get(other, other)}(algo={name!r}, ...)")
    check_known_keys([name], names, "algo", ConfigError)
    return ALGORITHMS[name]


def applicable_algorithms(spec: EnvSpec) -> list[str]:
    """The algorithms whose capabilities fit an env of ``spec`` (its action spaces, its state and action
    masks), in ``ALGORITHMS`` order."""
    def fits(a: AlgoSpec) -> bool:
        return (all(a.discrete if g.discrete else a.continuous for g in spec.groups.values())
                and (spec.state_dim > 0 or not a.needs_state) and (a.action_masks or not spec.has_action_mask))
    return [n for n, a in ALGORITHMS.items() if fits(a)]
