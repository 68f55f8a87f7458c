"""Hamming search over packed binary codes. A song's distance to a query window is the minimum over its codes."""

from __future__ import annotations

import numpy as np
from numba import njit

RULES = ("mean", "min", "single")
"""How the windows of a multi-window query combine into a song's distance:
mean   - the mean over query windows of each window's distance to the song (every window must agree);
min    - the smallest distance of any window to the song;
single - the middle window alone (the MusicPrint protocol's single-window query)."""


@njit(cache=True, inline="always")
def _popcount64(x):
    x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
    x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
    x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return (x * np.uint64(0x0101010101010101)) >> np.uint64(56)


@njit(cache=True)
def song_distances(query_words, code_words, code_song, n_songs):
    """(windows, n_songs) minimum Hamming distance from each query window to each song's codes.

    query_words: (q, w) uint64; code_words: (n_codes, w) uint64; code_song: (n_codes,) song row of each code.
    """
    q = query_words.shape[0]
    out = np.full((q, n_songs), 1 << 30, np.int64)
    for i in range(q):
        for c in range(code_words.shape[0]):
            distance = 0
            for w in range(code_words.shape[1]):
                distance += _popcount64(query_words[i, w] ^ code_words[c, w])
            s = code_song[c]
            if distance < out[i, s]:
                out[i, s] = distance
    return out


def as_words(codes: np.ndarray) -> np.ndarray:
    """Packed uint8 codes (n, bytes) → (n, bytes / 8) uint64 words."""
    return np.ascontiguousarray(codes).view("<u8")


def rank(query_codes: np.ndarray, code_words: np.ndarray, code_song: np.ndarray, n_songs: int, rule: str = "mean",
         top: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """(song rows, distances) of the `top` nearest songs, nearest first, under the combination `rule`."""
    if rule not in RULES:
        raise ValueError(f"unknown rule {rule!r}; one of {RULES}")
    if rule == "single":
        query_codes = query_codes[query_codes.shape[0] // 2:query_codes.shape[0] // 2 + 1]
    per_window = song_distances(as_words(query_codes), code_words, code_song, n_songs).astype(np.float64)
    combined = per_window.min(axis=0) if rule == "min" else per_window.mean(axis=0)
    order = np.argsort(combined, kind="stable")[:top]
    return order, combined[order]
