"""Imported by the decode workers' forkserver at its start: it dies with the scorer that started it, and
every process it forks dies with it (set in the child right after ``fork``, before it imports anything)."""

import os

from epi_spineage.score.lifetime import die_with_parent

die_with_parent()
_SERVER = os.getpid()


def _child() -> None:
    die_with_parent()
    if os.getppid() != _SERVER:  # the forkserver died before the signal was armed
        os._exit(1)


os.register_at_fork(after_in_child=_child)
