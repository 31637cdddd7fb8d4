"""Small run directories of every learner family, trained once per test session (load_policy, export).

``trained(name, tmp_path_factory)`` trains run ``name`` of ``RUNS`` on first use and returns its
folder; later calls (any test module) reuse it. Only ``mappo`` trains long enough to learn a little
(40k env steps, about 3 s on one thread: the parity test needs a policy, not a good one); the
others take a few hundred steps, enough to write a checkpoint whose networks load and act.
"""

from __future__ import annotations

from pathlib import Path

import torch

from fastmarl.config import DDPGConfig, HAPPOTrainConfig, PPOConfig, QConfig, SACConfig, TrainConfig
from fastmarl.train.runner import train

QUIET = dict(gif=False, tensorboard=False, progress=False, threads=1)
SPREAD = "simple_spread_v3"
CONT = {"continuous_actions": True}

# name -> a config factory (runs_dir and name are filled in)
RUNS = {
    "mappo": lambda: TrainConfig(algo="mappo", env=SPREAD, total_steps=40_000, num_envs=64, eval_interval=0,
                                 eval_episodes=100, **QUIET),
    "mappo_gru_box": lambda: TrainConfig(algo="mappo", env=SPREAD, env_kwargs=CONT, total_steps=800, num_envs=8,
                                         eval_interval=0, eval_episodes=8,
                                         ppo=PPOConfig(recurrent=True, num_steps=25), **QUIET),
    "ippo_tarmac": lambda: TrainConfig(algo="ippo", env="simple_reference_v3", total_steps=400, num_envs=8,
                                       eval_interval=0, eval_episodes=8, ppo=PPOConfig(comm="tarmac", share_params=False),
                                       **QUIET),
    "mappo_dial": lambda: TrainConfig(algo="mappo", env="simple_reference_v3", total_steps=400, num_envs=8,
                                      eval_interval=0, eval_episodes=8, ppo=PPOConfig(comm="dial"), **QUIET),
    "happo": lambda: HAPPOTrainConfig(algo="happo", env=SPREAD, total_steps=400, num_envs=8, eval_interval=0,
                                      eval_episodes=8, **QUIET),
    "iql_gru": lambda: QConfig(algo="iql", env=SPREAD, total_steps=400, eval_episodes=8, **QUIET),
    "qmix": lambda: QConfig(algo="qmix", env=SPREAD, total_steps=400, eval_episodes=8, recurrent=False, **QUIET),
    "masac_box": lambda: SACConfig(algo="masac", env=SPREAD, env_kwargs=CONT, total_steps=400, eval_episodes=8,
                                   learning_starts=100, **QUIET),
    "isac": lambda: SACConfig(algo="isac", env=SPREAD, total_steps=400, eval_episodes=8, learning_starts=100, **QUIET),
    "maddpg_box": lambda: DDPGConfig(algo="maddpg", env="simple_adversary_v3", env_kwargs=CONT, total_steps=400,
                                     eval_episodes=8, learning_starts=100, **QUIET),
    "ippo_tictactoe": lambda: TrainConfig(algo="ippo", env="pz:pettingzoo.classic.tictactoe_v3", total_steps=200,
                                          num_envs=4, eval_interval=0, eval_episodes=4, ppo=PPOConfig(num_steps=25),
                                          **QUIET),
    "iddpg": lambda: DDPGConfig(algo="iddpg", env=SPREAD, total_steps=400, eval_episodes=8, learning_starts=100,
                                **QUIET),
}

_DONE: dict[str, Path] = {}


def trained(name: str, tmp_path_factory) -> Path:
    """The run directory of ``RUNS[name]``, trained on first use in this session."""
    if name not in _DONE:
        cfg = RUNS[name]()
        cfg.runs_dir, cfg.name = str(tmp_path_factory.mktemp("deployruns")), name
        threads = torch.get_num_threads()
        try:
            _DONE[name] = train(cfg).run_dir
        finally:
            torch.set_num_threads(threads)
    return _DONE[name]
