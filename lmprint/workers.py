"""Worker processes (`add --jobs`, a monitor's looks): Ctrl-C is their parent's to handle, SIGTERM ends them, and
each ends once the process that started it is gone.

Ctrl-C in a terminal interrupts every process of the command: a worker would print a traceback of its own while
the parent says in one line what was interrupted and stops the pool. And a pool's workers wait on a queue whose
other end they hold themselves, so when their parent is killed outright (`kill -9`, the out-of-memory killer: no
cleanup runs) they would wait for ever, each holding its memory."""

from __future__ import annotations

import numbers
import os
import signal
import threading
import time

PARENT_CHECK_S = 1.0
"""Seconds between a worker's checks that its parent still runs."""


def checked_jobs(jobs: int) -> int:
    """`jobs`, a count of worker processes, as an int: a whole number of at least 1. Anything else is a program's
    mistake, refused in one line rather than run as one job (`add(jobs=0)` did) or failing later in the pool."""
    if isinstance(jobs, bool) or not isinstance(jobs, numbers.Integral) or jobs < 1:
        raise ValueError(f"jobs must be a whole number of worker processes, 1 or more, not {jobs!r}")
    return int(jobs)


def worker_started() -> None:
    """Called in a worker process as it starts (a pool's initializer): it ignores Ctrl-C, and a daemon thread ends
    it once its parent is gone, which it sees as its parent id changing (an orphan is adopted by another process).
    Nothing in a process that is not a multiprocessing child."""
    import multiprocessing

    parent = multiprocessing.parent_process()
    if parent is None:
        return
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # SIGTERM ends a worker, as a broken pool ends the rest by it; not the handler a forked worker inherits
    signal.signal(signal.SIGTERM, signal.SIG_DFL)

    def watch() -> None:
        while os.getppid() == parent.pid:
            time.sleep(PARENT_CHECK_S)
        os._exit(1)

    threading.Thread(target=watch, name="lmprint-parent-watch", daemon=True).start()
