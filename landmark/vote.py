"""Δt voting: which indexed song, if any, the query's landmarks line up with.

Every query hash found in the index gives a vote (song, Δt = t_song − t_query). For the true song the votes pile
up in one Δt bin, the clip's offset; for other songs they scatter. Two refinements make the pile stand out:

- **Rare hashes weigh more.** A vote weighs log2(1 + K / postings of its hash), K = `rare_hash_scale` × songs in
  the index. Hashes that every song holds (a held note, a chord the genre shares) are what line up by chance
  between unrelated songs; a hash stored a few times is strong evidence.
- **One vote per query anchor frame and Δt.** A query anchor matching a song through several pairs (query-side
  density and Δt widening make that common) counts once, with its heaviest pair: chance agreements in dense,
  repetitive passages then no longer pile up.

A song's score is the summed weight in its best Δt bin ± `vote_tolerance_frames`. A match must reach
`min_score`, beat the runner-up song by `min_margin`, and score `min_ratio` times the runner-up's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import Config

DELTA_BITS = 25
"""Bits of Δt + DELTA_OFFSET in a (song, Δt) key: ±16.7 M frames = ±74 h at 16 ms."""

DELTA_OFFSET = 1 << (DELTA_BITS - 1)

MAX_VOTES = 20_000_000
"""A query that would cast more votes than this (a pathological, hugely repetitive input) is cut there."""


@dataclass(frozen=True)
class Candidate:
    """A song's best alignment with the query."""

    song_id: int
    score: float
    delta_frames: int


@dataclass(frozen=True)
class Votes:
    """One entry per (query hash, posting) pair with equal hashes."""

    songs: np.ndarray  # int64
    deltas: np.ndarray  # int64, t_song − t_query in frames
    query_frames: np.ndarray  # int64
    weights: np.ndarray  # float64


def hash_weights(postings_per_hash: np.ndarray, n_songs: int, config: Config) -> np.ndarray:
    """Evidence of one matching hash, from how many postings the index holds for it (see the module docstring)."""
    scale = config.rare_hash_scale * max(n_songs, 1)
    return np.log2(1.0 + scale / np.maximum(postings_per_hash, 1))


def join(query_hashes: np.ndarray, query_frames: np.ndarray, posting_hashes: np.ndarray,
         posting_songs: np.ndarray, posting_frames: np.ndarray, n_songs: int, config: Config) -> Votes:
    """Every (query hash, posting) pair with equal hashes, as a weighted vote."""
    order = np.argsort(posting_hashes, kind="stable")
    posting_hashes = posting_hashes[order]
    first = np.searchsorted(posting_hashes, query_hashes, side="left")
    found = np.searchsorted(posting_hashes, query_hashes, side="right") - first
    ends = np.cumsum(found)
    kept = np.searchsorted(ends, MAX_VOTES, side="right")  # query hashes within the vote budget
    first, found, ends = first[:kept], found[:kept], ends[:kept]
    query_index = np.repeat(np.arange(kept), found)
    within = np.arange(query_index.size) - np.repeat(ends - found, found)
    posting_index = order[np.repeat(first, found) + within]
    frames = query_frames[query_index].astype(np.int64)
    return Votes(songs=posting_songs[posting_index].astype(np.int64),
                 deltas=posting_frames[posting_index].astype(np.int64) - frames,
                 query_frames=frames,
                 weights=hash_weights(found, n_songs, config)[query_index])


def _run_starts(sorted_keys: np.ndarray) -> np.ndarray:
    return np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])


def best_alignments(votes: Votes, tolerance: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per song: the largest summed weight within ±tolerance frames of one Δt, and that Δt.

    Each (song, Δt, query anchor frame) counts once, with its heaviest vote. Returns (song_ids, scores,
    best_deltas), one entry per song that got any vote.
    """
    if votes.songs.size == 0:
        empty = np.zeros(0, np.int64)
        return empty, np.zeros(0), empty
    frame_bits = max(1, int(votes.query_frames.max()).bit_length())
    bin_keys = (votes.songs << DELTA_BITS) | (votes.deltas + DELTA_OFFSET)
    keys = (bin_keys << frame_bits) | votes.query_frames
    order = np.argsort(keys)
    keys = keys[order]
    starts = _run_starts(keys)
    weights = np.maximum.reduceat(votes.weights[order], starts)  # one vote per anchor frame and Δt
    bin_keys = keys[starts] >> frame_bits
    starts = _run_starts(bin_keys)
    bin_weights = np.add.reduceat(weights, starts)
    bin_keys = bin_keys[starts]
    window = bin_weights.copy()
    for step in range(1, tolerance + 1):  # keys are distinct, so a bin's neighbours within ±tolerance are this close
        near = (bin_keys[step:] - bin_keys[:-step]) <= tolerance
        window[:-step] += np.where(near, bin_weights[step:], 0.0)
        window[step:] += np.where(near, bin_weights[:-step], 0.0)
    songs = bin_keys >> DELTA_BITS
    song_starts = _run_starts(songs)  # bins are sorted by song, then Δt
    best_scores = np.maximum.reduceat(window, song_starts)
    at_best = np.flatnonzero(window == np.repeat(best_scores, np.diff(np.r_[song_starts, songs.size])))
    best = at_best[_run_starts(songs[at_best])]  # the earliest best Δt of each song
    return songs[best], window[best], (bin_keys[best] & ((1 << DELTA_BITS) - 1)) - DELTA_OFFSET


def rank(query_hashes: np.ndarray, query_frames: np.ndarray, posting_hashes: np.ndarray,
         posting_songs: np.ndarray, posting_frames: np.ndarray, n_songs: int, config: Config,
         top: int = 5) -> list[Candidate]:
    """The `top` songs by aligned score, best first. `n_songs` is the size of the index (for hash weights)."""
    votes = join(query_hashes, query_frames, posting_hashes, posting_songs, posting_frames, n_songs, config)
    song_ids, scores, best_deltas = best_alignments(votes, config.vote_tolerance_frames)
    best = np.argsort(-scores, kind="stable")[:top]
    return [Candidate(int(song_ids[i]), float(scores[i]), int(best_deltas[i])) for i in best]


def decide(candidates: list[Candidate], config: Config) -> tuple[Candidate | None, float]:
    """The winning candidate, or None for "no match", and a confidence in [0, 1].

    Confidence is the winner's lead over the runner-up as a fraction of its score: near 1 when only one song
    lines up, near 0 when two songs are equally likely.
    """
    if not candidates:
        return None, 0.0
    best = candidates[0]
    runner_up = candidates[1].score if len(candidates) > 1 else 0.0
    confidence = (best.score - runner_up) / best.score if best.score > 0 else 0.0
    if (best.score < config.min_score or best.score - runner_up < config.min_margin
            or best.score < config.min_ratio * runner_up):
        return None, confidence
    return best, confidence
