"""Worker processes (`add --jobs`, a monitor's looks): each ends once the process that started it is gone.

A pool's workers wait on a queue whose other end they hold themselves, so when their parent is killed outright
(`kill -9`, the out-of-memory killer: no cleanup runs) they would wait for ever, each holding its memory."""

from __future__ import annotations

import os
import threading
import time

PARENT_CHECK_S = 1.0
"""Seconds between a worker's checks that its parent still runs."""


def exit_with_parent() -> None:
    """Called in a worker process as it starts (a pool's initializer): a daemon thread ends the process once its
    parent is gone, which it sees as its parent id changing (an orphan is adopted by another process). Nothing in
    a process that is not a multiprocessing child."""
    import multiprocessing

    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        while os.getppid() == parent.pid:
            time.sleep(PARENT_CHECK_S)
        os._exit(1)

    threading.Thread(target=watch, name="lmprint-parent-watch", daemon=True).start()
