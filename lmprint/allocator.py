"""The process's memory allocator, set for a query's many large, short-lived arrays.

A query builds and frees dozens of numpy arrays of 0.1–10 MB. glibc's `malloc` serves blocks above its mmap
threshold from the kernel directly and hands the free top of its heap back to the kernel past its trim threshold;
both start at 128 KB, and rise only to the largest mmapped block freed so far and twice that. So the next query
faults much of the same memory in again, page by page. Where a page fault is dear (a virtual machine whose host
reclaims the memory its guest frees) that is a large share of a query's time (docs/tuning.md). Keeping freed memory
in the process removes it and leaves peak memory as it was: the high-water mark is the same either way.
"""

from __future__ import annotations

import os

MMAP_THRESHOLD_BYTES = 32 << 20
"""Blocks below this come from the heap, where a freed one is reused: glibc's largest allowed value on 64-bit
systems, above any array of a query."""

TRIM_THRESHOLD_BYTES = 512 << 20
"""The heap keeps up to this much free memory at its top before returning any to the kernel: more than a query,
a monitor's look or a song being indexed frees at once."""

_SETTINGS = {"MALLOC_MMAP_THRESHOLD_": MMAP_THRESHOLD_BYTES, "MALLOC_TRIM_THRESHOLD_": TRIM_THRESHOLD_BYTES}
"""glibc's environment variables for the two settings, read when a process starts."""

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
"""`mallopt` parameter numbers (glibc's malloc.h)."""


def keep_freed_memory() -> bool:
    """Set this process's allocator to reuse freed memory (see the module docstring), and the environment so that
    worker processes it starts do too. Settings already in the environment win (a user's, or those a parent
    process passed on: glibc applied them at start); elsewhere than glibc this does nothing. Returns whether this
    call set the allocator."""
    if any(name in os.environ for name in _SETTINGS) or "glibc.malloc" in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    try:
        import ctypes

        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError, TypeError):  # no C library to load, or no mallopt in it
        return False
    # the mmap threshold first: a trim threshold alone stops glibc raising its mmap threshold, which is worse than
    # neither (a 32-bit glibc refuses 32 MB; musl's mallopt is a stub)
    if not mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) or not mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES):
        return False
    for name, value in _SETTINGS.items():
        os.environ[name] = str(value)
    return True
