"""fastmarl: fast, batched multi-agent reinforcement learning in PyTorch."""

from fastmarl.envs import make

__version__ = "0.1.0"
__all__ = ["make", "__version__"]
