"""The one protocol every learning algorithm implements, so one loop trains them all.

:func:`fastmarl.train.loop.run_loop` drives any :class:`Learner`: it calls
``begin`` once on a fresh env (or restores the learner from a checkpoint), then
repeats ``collect`` (advance the batched env, store what the algorithm needs)
and ``update`` (learn from it when there is enough), and around those it does
everything that is not the algorithm's: episode statistics, log rows, evaluation,
checkpoints, exact resume, the progress bar, callbacks, the GIF.

What one ``collect`` call covers is the algorithm's choice: PPO collects a whole
rollout of ``num_steps`` steps of every env and updates once on it; the
Q-learning family steps every env once, stores the transitions in its episode
replay buffer and does as many gradient updates as its ``update_interval``
credits. The loop only counts env steps.

Tensors crossing the protocol: a :class:`~fastmarl.envs.api.TimeStep` (group ->
``(E, A_g, ...)``), actions group -> ``(E, A_g)`` (discrete) or ``(E, A_g, D)``.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol, runtime_checkable

import torch
from torch import Tensor

from fastmarl.envs.api import TimeStep


class NonFiniteLoss(RuntimeError):
    """A learner's loss became NaN or infinite: training cannot go on from these weights. The loop
    adds the last good checkpoint (``with_checkpoint``) before it stops the run."""

    def __init__(self, step: int, loss: str, value: float, checkpoint: str | None = None):
        self.step, self.loss, self.value, self.checkpoint = step, loss, value, checkpoint
        where = (f"the last good checkpoint is {checkpoint} (resume from it with `fastmarl train --resume`, or "
                 "start again with a lower learning rate)") if checkpoint else "no checkpoint was saved before it"
        super().__init__(f"loss {loss!r} is {value} at env step {step:,}; the run stopped: {where}")

    def with_checkpoint(self, checkpoint: str | None) -> "NonFiniteLoss":
        return NonFiniteLoss(self.step, self.loss, self.value, checkpoint)


def check_finite(metrics: dict[str, list[Tensor]], step: int, keys: tuple[str, ...] = ("loss",)) -> None:
    """Raise :class:`NonFiniteLoss` if a metric whose name starts with one of ``keys`` (e.g.
    ``critic_loss/agent``) holds a NaN or infinite value; one device sync for all of them."""
    names = [k for k in metrics if k.startswith(keys) and metrics[k]]
    if not names:
        return
    values = torch.stack([torch.stack([torch.as_tensor(v) for v in metrics[k]]).float() for k in names])
    if bool(torch.isfinite(values).all()):
        return
    i, j = (~torch.isfinite(values)).nonzero()[0].tolist()
    raise NonFiniteLoss(step, names[i], values[i, j].item())


# reads one extra tensor file of the checkpoint being restored: (file name, what it holds) -> tensors
ExtraReader = Callable[[str, str], dict[str, Tensor]]


@runtime_checkable
class Learner(Protocol):
    """An algorithm the training loop can drive (PPO, the Q family, tabular IQL, ...)."""

    eval_modes: tuple[str, ...]
    """evaluation modes the loop runs: ``"det"`` (greedy / most likely action) and, for
    stochastic policies, ``"stoch"`` (sampled actions); results are keyed ``return_det`` etc."""

    planned_steps: int
    """env steps the run will take (``total_steps`` rounded up to whole ``collect`` calls);
    ``update`` is passed the fraction done, ``step / planned_steps``"""

    def begin(self, env, seed: int) -> None:
        """Start from a fresh ``env.reset(seed=seed)``; called once per run (and on resume
        when the env cannot restore its saved state: then from a new reset)."""
        ...

    def collect(self, env, tracker: Callable[[TimeStep], None]) -> int:
        """Advance ``env`` and store the experience; ``tracker(ts)`` sees every TimeStep the
        env returns (episode statistics). Returns the env steps taken (steps x envs)."""
        ...

    def update(self, progress: float) -> dict[str, float | Tensor]:
        """Learn from what was collected, if the algorithm is ready to; ``progress`` in
        [0, 1) is the fraction of the run done before this collect (schedules). Returns
        metrics (floats or 0-d tensors; the loop averages them over each log interval)."""
        ...

    def log_info(self) -> dict[str, float]:
        """Extra columns of each log row (e.g. epsilon, gradient updates so far)."""
        ...

    # -- acting (the Policy protocol of evaluation and rendering) ------------------------
    def initial_carry(self, num_envs: int) -> Any:
        ...

    def act(self, ts: TimeStep, carry: Any, deterministic: bool = False,
            generator: torch.Generator | None = None) -> tuple[dict[str, Tensor], Any]:
        ...

    # -- checkpoints --------------------------------------------------------------------
    def weights(self) -> dict[str, Tensor]:
        """Every network tensor by name (``model.safetensors``; enough to act)."""
        ...

    def load_weights(self, tensors: dict[str, Tensor]) -> None:
        ...

    def trainer_state(self) -> dict[str, Any]:
        """Everything else an exact resume needs (optimizers, RNG, the rollout's position):
        tensors, numbers, strings, lists and dicts of them (``torch.load(weights_only=True)``)."""
        ...

    def load_trainer_state(self, state: dict[str, Any]) -> None:
        ...

    def extra_tensors(self) -> dict[str, dict[str, Tensor]]:
        """Large tensor files saved next to the weights (file name -> tensors), e.g. the replay
        buffer; ``{}`` when none."""
        ...

    def load_extra_tensors(self, read: ExtraReader) -> None:
        """Restore what ``extra_tensors`` saved, reading each file with ``read(name, what)``."""
        ...
