"""Hamming search over packed binary codes. A song's distance to a query window is the minimum over its codes."""

from __future__ import annotations

import numpy as np
from numba import njit, types
from numba.extending import intrinsic

from landmark.arrays import largest

from .settings import RULES


@intrinsic
def _popcount64(typingctx, word):
    """LLVM's ctpop: one POPCNT instruction on CPUs that have it."""
    signature = types.uint64(types.uint64)

    def codegen(context, builder, sig, args):
        return builder.ctpop(args[0])

    return signature, codegen


BLOCK_CODES = 4096
"""Codes per block: a block (4096 × 32 B = 128 KB) stays in cache while every query window is compared with it,
so the codes are read from memory once per query, not once per query window."""


@njit(cache=True)
def song_distances_kernel(query_words, code_columns, code_song, n_songs, block):
    """(windows, n_songs) minimum Hamming distance from each query window to each song's codes.

    query_words: (q, w) uint64; code_columns: (w, n_codes) uint64, word-major so the inner loop over codes is
    contiguous and vectorises (POPCNT, or VPOPCNTQ where the CPU has it); code_song: song row of each code.
    """
    q = query_words.shape[0]
    n_words, n_codes = code_columns.shape
    out = np.full((q, n_songs), 1 << 30, np.int32)
    buffer = np.empty(block, np.int32)
    for start in range(0, n_codes, block):
        stop = min(n_codes, start + block)
        songs = code_song[start:stop]
        for i in range(q):
            distances = buffer[:stop - start]  # 1-D slices: no index wraparound checks, so LLVM vectorises
            distances[:] = 0
            for w in range(n_words):
                column = code_columns[w, start:stop]
                word = query_words[i, w]
                for c in range(stop - start):
                    distances[c] += np.int32(_popcount64(word ^ column[c]))
            nearest = out[i]
            for c in range(stop - start):
                if distances[c] < nearest[songs[c]]:
                    nearest[songs[c]] = distances[c]
    return out


def song_distances(query_words: np.ndarray, code_columns: np.ndarray, code_song: np.ndarray, n_songs: int
                   ) -> np.ndarray:
    """See `song_distances_kernel`; `code_columns` is `as_columns(codes)`."""
    return song_distances_kernel(np.ascontiguousarray(query_words), code_columns, code_song, n_songs, BLOCK_CODES)


def as_words(codes: np.ndarray) -> np.ndarray:
    """Packed uint8 codes (n, bytes) → (n, bytes / 8) uint64 words."""
    return np.ascontiguousarray(codes).view("<u8")


def as_columns(codes: np.ndarray) -> np.ndarray:
    """Packed uint8 codes (n, bytes) → word-major (bytes / 8, n) uint64: the search's layout."""
    return np.ascontiguousarray(as_words(codes).T)


def rank(query_codes: np.ndarray, code_columns: np.ndarray, code_song: np.ndarray, n_songs: int, rule: str = "mean",
         top: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """(song rows, distances) of the `top` nearest songs, nearest first, under the combination `rule`."""
    if rule not in RULES:
        raise ValueError(f"unknown rule {rule!r}; one of {RULES}")
    if rule == "single":
        query_codes = query_codes[query_codes.shape[0] // 2:query_codes.shape[0] // 2 + 1]
    per_window = song_distances(as_words(query_codes), code_columns, code_song, n_songs)
    combined = per_window.min(axis=0) if rule == "min" else per_window.mean(axis=0, dtype=np.float32)
    order = largest(-combined, top)  # nearest first, the earliest stored first among equals, across the cut too
    return order, combined[order].astype(np.float64)
