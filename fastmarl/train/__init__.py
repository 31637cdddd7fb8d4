"""Training: the one loop, run directories, checkpoints, evaluation, self-play (:mod:`fastmarl.train.selfplay`),
deployment (:mod:`fastmarl.train.deploy`, :mod:`fastmarl.train.export`).

``fastmarl.train`` is both this package and the training function:
``fastmarl.train(TrainConfig(...))`` calls :func:`fastmarl.train.runner.train`
(the module is made callable so that ``import fastmarl.train.runner`` keeps working).
``load_policy(run_dir)`` (:mod:`fastmarl.train.deploy`) is a run's policy for PettingZoo-style dicts.
"""

import sys
import types

from fastmarl.train.deploy import DeployedPolicy, load_policy
from fastmarl.train.runner import TrainResult, evaluate_run, load_run, render_run, train

__all__ = ["train", "TrainResult", "evaluate_run", "render_run", "load_run", "load_policy", "DeployedPolicy"]


class _CallableModule(types.ModuleType):
    def __call__(self, *args, **kwargs):
        return train(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
