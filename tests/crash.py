"""Simulated crashes for resume tests, through the training loop's public callback."""


class Crash(Exception):
    """Raised by a ``crash_after`` callback: the run dies as if killed."""


def crash_after(n: int, count=lambda info: info.iteration):
    """A ``fastmarl.train(..., callback=...)`` that raises Crash once ``count(info) >= n``
    (default: n collect/update iterations; e.g. ``lambda i: i.learner.num_updates``)."""

    def callback(info):
        if count(info) >= n:
            raise Crash(count(info))

    return callback


def updates(info) -> int:
    return info.learner.num_updates
