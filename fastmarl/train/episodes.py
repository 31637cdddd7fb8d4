"""Episode returns, evaluation and episode GIFs for the training loop.

They live in the env layer (:mod:`fastmarl.envs.episodes`, the ``Policy`` protocol
in :mod:`fastmarl.envs.api`), since they need only the env API; the loop's modules
import them from here.
"""

from fastmarl.envs.api import Policy
from fastmarl.envs.episodes import EpisodeTracker, evaluate_policy, record_episode

__all__ = ["Policy", "EpisodeTracker", "evaluate_policy", "record_episode"]
