"""A PettingZoo env module for the sweep tests, named ``pz:sweep_envs`` in a trial (the trials
import it through the driver's PYTHONPATH): mpe2's simple_spread that raises after
``fail_after`` steps, so that a trial passes the sweep's checks and then fails while training."""

from mpe2 import simple_spread_v3


def parallel_env(fail_after: int | None = None, **kwargs):
    env = simple_spread_v3.parallel_env(**kwargs)
    if fail_after is None:
        return env
    step, count = env.step, [0]

    def failing_step(actions):
        count[0] += 1
        if count[0] > fail_after:
            raise RuntimeError(f"sweep_envs: failing on purpose after {fail_after} steps")
        return step(actions)

    env.step = failing_step
    return env
