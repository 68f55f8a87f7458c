"""Δt voting: which indexed song, if any, the query's landmarks line up with.

Every query hash found in the index gives a vote (song, Δt = t_song − t_query). For the true song the votes pile
up in one Δt bin, the clip's offset; for other songs they scatter. A song's score is its count in the best Δt
bin ± `vote_tolerance_frames`. A match must reach `min_score` and beat the runner-up song by `min_margin`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from .config import Config

_DELTA_OFFSET = 1 << 24
"""Added to Δt (frames) so it is non-negative in the combined (song, Δt) key: ±16.7 M frames = ±74 h at 16 ms."""

MAX_VOTES = 20_000_000
"""A query that would cast more votes than this (a pathological, hugely repetitive input) is cut there."""


@dataclass(frozen=True)
class Candidate:
    """A song's best alignment with the query."""

    song_id: int
    score: int
    delta_frames: int


@njit(cache=True)
def join_votes(query_hashes, query_frames, posting_hashes, posting_songs, posting_frames, max_votes):
    """(song, Δt) for every (query hash, posting) pair with equal hashes. Both sides must be sorted by hash."""
    songs = np.empty(min(max_votes, query_hashes.size * 8 + 1024), np.int64)
    deltas = np.empty(songs.size, np.int64)
    count = 0
    j = 0
    n_postings = posting_hashes.size
    for i in range(query_hashes.size):
        h = query_hashes[i]
        while j < n_postings and posting_hashes[j] < h:
            j += 1
        k = j
        while k < n_postings and posting_hashes[k] == h:
            if count == songs.size:
                if count >= max_votes:
                    return songs[:count], deltas[:count]
                grown = min(max_votes, songs.size * 2)
                songs = np.concatenate((songs, np.empty(grown - songs.size, np.int64)))
                deltas = np.concatenate((deltas, np.empty(grown - deltas.size, np.int64)))
            songs[count] = posting_songs[k]
            deltas[count] = np.int64(posting_frames[k]) - np.int64(query_frames[i])
            count += 1
            k += 1
    return songs[:count], deltas[:count]


@njit(cache=True)
def best_alignments(songs, deltas, tolerance):
    """Per song: the largest count of votes within ±tolerance frames of one Δt, and that Δt.

    Returns (song_ids, scores, best_deltas), one entry per song that got any vote.
    """
    keys = songs * (2 * (1 << 24)) + deltas + (1 << 24)
    keys = np.sort(keys)
    n = keys.size
    unique = np.empty(n, np.int64)
    counts = np.empty(n, np.int64)
    m = 0
    for i in range(n):
        if m > 0 and keys[i] == unique[m - 1]:
            counts[m - 1] += 1
        else:
            unique[m] = keys[i]
            counts[m] = 1
            m += 1
    out_songs = np.empty(m, np.int64)
    out_scores = np.empty(m, np.int64)
    out_deltas = np.empty(m, np.int64)
    n_songs = 0
    lo = 0
    for i in range(m):
        song = unique[i] // (2 * (1 << 24))
        # slide a window of keys within ±tolerance of unique[i]
        while unique[lo] < unique[i] - tolerance:
            lo += 1
        total = 0
        k = lo
        while k < m and unique[k] <= unique[i] + tolerance:
            total += counts[k]
            k += 1
        delta = unique[i] - song * (2 * (1 << 24)) - (1 << 24)
        if n_songs > 0 and out_songs[n_songs - 1] == song:
            if total > out_scores[n_songs - 1]:
                out_scores[n_songs - 1] = total
                out_deltas[n_songs - 1] = delta
        else:
            out_songs[n_songs] = song
            out_scores[n_songs] = total
            out_deltas[n_songs] = delta
            n_songs += 1
    return out_songs[:n_songs], out_scores[:n_songs], out_deltas[:n_songs]


def rank(query_hashes: np.ndarray, query_frames: np.ndarray, posting_hashes: np.ndarray,
         posting_songs: np.ndarray, posting_frames: np.ndarray, config: Config, top: int = 5) -> list[Candidate]:
    """The `top` songs by aligned score, best first."""
    order = np.argsort(query_hashes, kind="stable")
    posting_order = np.argsort(posting_hashes, kind="stable")
    songs, deltas = join_votes(query_hashes[order].astype(np.int64), query_frames[order].astype(np.int64),
                               posting_hashes[posting_order].astype(np.int64),
                               posting_songs[posting_order].astype(np.int64),
                               posting_frames[posting_order].astype(np.int64), MAX_VOTES)
    if songs.size == 0:
        return []
    song_ids, scores, best_deltas = best_alignments(songs, deltas, config.vote_tolerance_frames)
    best = np.argsort(-scores, kind="stable")[:top]
    return [Candidate(int(song_ids[i]), int(scores[i]), int(best_deltas[i])) for i in best]


def decide(candidates: list[Candidate], config: Config) -> tuple[Candidate | None, float]:
    """The winning candidate, or None for "no match", and a confidence in [0, 1].

    Confidence is the winner's lead over the runner-up as a fraction of its score: near 1 when only one song
    lines up, near 0 when two songs are equally likely.
    """
    if not candidates:
        return None, 0.0
    best = candidates[0]
    runner_up = candidates[1].score if len(candidates) > 1 else 0
    confidence = (best.score - runner_up) / best.score
    if best.score < config.min_score or best.score - runner_up < config.min_margin:
        return None, confidence
    return best, confidence
