"""Worker processes die with the scorer, even when it is killed with SIGKILL (nothing runs in it then).

Two guards, because decode workers started by a forkserver are its children, not the scorer's:

* ``die_with_parent``: Linux ``prctl(PR_SET_PDEATHSIG, SIGKILL)``: the kernel kills this process when its
  parent exits. Set in the forkserver (imported as its preload module, so it dies with the scorer) and
  in each worker (so it dies with the forkserver, or with the scorer under the fork context).
* ``watch_parent``: a daemon thread in each worker that exits the process once the scorer's pid is gone
  or a zombie, for platforms without prctl and for any chain the kernel signal misses.

The resource tracker then sees every writer of its pipe close and exits by itself.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time

_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGKILL) -> bool:
    """Ask the kernel to send ``sig`` to this process when its parent exits (Linux only); True if set."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie, killed but not yet reaped, counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            state = fh.read().rsplit(b")", 1)[1].split()[0]
        return state not in (b"Z", b"X")
    except FileNotFoundError:
        return False
    except (OSError, IndexError):
        try:
            os.kill(pid, 0)
            return True
        except ProcessLookupError:
            return False
        except PermissionError:
            return True


def watch_parent(pid: int, interval_s: float = 0.5) -> threading.Thread:
    """Start a daemon thread that ends this process (``os._exit``) once ``pid`` has died."""

    def run() -> None:
        while pid_alive(pid):
            time.sleep(interval_s)
        os._exit(1)

    thread = threading.Thread(target=run, name="epi-spineage-parent-watch", daemon=True)
    thread.start()
    return thread
