"""fastmarl: fast, batched multi-agent reinforcement learning in PyTorch.

``fastmarl.make(env_id, num_envs, device, seed, **kwargs)`` builds a batched env;
``fastmarl.train(TrainConfig(...))`` trains and writes a run directory;
``fastmarl.evaluate("runs/NAME")`` evaluates a run's latest checkpoint;
``fastmarl.load_policy("runs/NAME").act({agent: obs})`` plays it in any PettingZoo-style loop.
"""

from fastmarl import train  # the package is callable: fastmarl.train(config)
from fastmarl.config import PPOConfig, TrainConfig
from fastmarl.envs import make
from fastmarl.train import evaluate_run as evaluate
from fastmarl.train.deploy import load_policy
from fastmarl.version import __version__

__all__ = ["make", "train", "evaluate", "load_policy", "TrainConfig", "PPOConfig", "__version__"]
