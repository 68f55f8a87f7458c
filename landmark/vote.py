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
`min_score`, beat the runner-up song by `min_margin`, and score `min_ratio` times the runner-up's. Every window
is kept (`Alignments`): music repeats, so a song's next-best windows are where verification looks as well.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from . import plan
from .arrays import largest, run_starts, sort_runs
from .hashes import widen_delta_time
from .settings import MatchSettings

PACKED_KEY_BITS = 63
"""Width of the packed sort key of `_heaviest_per_anchor` (a signed 64-bit integer)."""


@dataclass(frozen=True)
class Candidate:
    """A song's best alignment with the query, and where else the song lines up."""

    song_id: int
    score: float
    delta_frames: int
    other_delta_frames: tuple[int, ...] = ()
    """The song's next-best Δt windows, strongest first, each clear of the others by more than twice the vote
    tolerance. Music repeats itself: a clip of a refrain lines up with every return of it, and under noise the
    best window may be another return's, or chance's. Verification reads the peaks at these offsets too."""


@dataclass(frozen=True)
class Votes:
    """One entry per (query pair, posting) pair with equal hashes: vote i pairs posting `posting_index[i]` with
    query pair `query_index[i]`. The postings' and query pairs' columns are kept once and the votes' gathered
    when asked for: the vote itself packs its key from the columns directly. A vote's weight is stored as its
    level: the rank of its weight among the distinct weights of the query, 0 for the heaviest (weights come from a
    few hundred distinct posting counts, so levels are small integers that pack into a sort key)."""

    posting_songs: np.ndarray  # int64, per posting
    posting_frames: np.ndarray  # int64, per posting: t_song
    posting_levels: np.ndarray  # int64, per posting: an index into level_weights
    pair_frames: np.ndarray  # int64, per query pair: t_query, its anchor frame
    posting_index: np.ndarray  # int64, per vote
    query_index: np.ndarray  # int64, per vote: its query pair, an index into its `QueryHashes` entries
    level_weights: np.ndarray  # float64, strictly decreasing

    @cached_property
    def songs(self) -> np.ndarray:
        return self.posting_songs[self.posting_index]

    @cached_property
    def deltas(self) -> np.ndarray:
        """t_song − t_query in frames."""
        return self.posting_frames[self.posting_index] - self.query_frames

    @cached_property
    def query_frames(self) -> np.ndarray:
        return self.pair_frames[self.query_index]

    @cached_property
    def levels(self) -> np.ndarray:
        return self.posting_levels[self.posting_index]

    @property
    def weights(self) -> np.ndarray:
        return self.level_weights[self.levels]

    @classmethod
    def from_weights(cls, songs: np.ndarray, deltas: np.ndarray, query_frames: np.ndarray,
                     weights: np.ndarray) -> Votes:
        """Votes given one by one (each its own posting and query pair)."""
        negated, levels = np.unique(-np.asarray(weights, np.float64), return_inverse=True)
        query_frames = np.asarray(query_frames, np.int64)
        every = np.arange(query_frames.size)
        return cls(np.asarray(songs, np.int64), np.asarray(deltas, np.int64) + query_frames,
                   levels.astype(np.int64), query_frames, every, every, -negated)


def hash_weights(postings_per_hash: np.ndarray, n_songs: int, settings: MatchSettings) -> np.ndarray:
    """Evidence of one matching hash, from how many postings the index holds for it (see the module docstring)."""
    scale = settings.rare_hash_scale * max(n_songs, 1)
    return np.log2(1.0 + scale / np.maximum(postings_per_hash, 1))


@dataclass(frozen=True)
class QueryHashes:
    """A query's hashes grouped by value: `distinct` (ascending, what the index is asked for), and for the i-th of
    them the anchor frames `frames[starts[i]:starts[i] + counts[i]]` of the query pairs that hash to it, and
    each pair's `likelihood` of being an indexed one (`landmark.plan`)."""

    distinct: np.ndarray  # uint32, ascending
    starts: np.ndarray  # int64
    counts: np.ndarray  # int64
    frames: np.ndarray  # int64, grouped by hash
    likelihood: np.ndarray  # float64, grouped by hash

    @classmethod
    def of(cls, hashes: np.ndarray, anchor_frames: np.ndarray, tolerance_frames: int = 0,
           pair_kind: np.ndarray | None = None, target_rank: np.ndarray | None = None) -> QueryHashes:
        """Group a fingerprint's hashes, each also looked up with Δt ± 1..tolerance_frames (`widen_delta_time`).
        `pair_kind` and `target_rank` (`Fingerprint`'s) give each pair's likelihood (`landmark.plan`); None counts
        every pair as kind 0 at rank 0, so that only its Δt shift tells pairs apart."""
        by_hash = np.argsort(hashes, kind="stable")
        hashes, sources, shifts = widen_delta_time(np.asarray(hashes, np.uint32)[by_hash], tolerance_frames)
        order = np.argsort(hashes, kind="stable")  # the widened copies are sorted runs, which timsort merges fast
        hashes, sources, shifts = hashes[order], by_hash[sources[order]], shifts[order]
        kinds = np.zeros(sources.size, np.int64) if pair_kind is None else np.asarray(pair_kind, np.int64)[sources]
        ranks = np.zeros(sources.size, np.int64) if target_rank is None else np.asarray(target_rank, np.int64)[sources]
        starts = run_starts(hashes)
        return cls(hashes[starts], starts, np.diff(np.r_[starts, hashes.size]),
                   np.asarray(anchor_frames, np.int64)[sources], plan.likelihood(kinds, ranks, shifts))

    def key_likelihood(self) -> np.ndarray:
        """Per distinct hash, the summed likelihood of its query pairs: the indexed pairs expected among them."""
        if self.likelihood.size == 0:
            return np.zeros(self.distinct.size)
        return np.add.reduceat(self.likelihood, self.starts)


def join(query: QueryHashes, hash_index: np.ndarray, posting_songs: np.ndarray, posting_frames: np.ndarray,
         n_songs: int, settings: MatchSettings) -> Votes:
    """Every (query pair, posting) with equal hashes, as a weighted vote. `hash_index` is each posting's hash as
    an index into `query.distinct` (a posting store's `Postings.key_index` when `query.distinct` are the keys
    looked up), so no hashes are compared here."""
    per_posting = query.counts[hash_index]
    ends = np.cumsum(per_posting)
    kept = np.searchsorted(ends, settings.max_votes, side="right")  # postings within the vote budget
    hash_index, per_posting, ends = hash_index[:kept], per_posting[:kept], ends[:kept]
    posting_index = np.repeat(np.arange(kept), per_posting)  # one repeat, then gathers: np.repeat is 3× slower
    # the k-th vote of a posting pairs it with the k-th query pair of its hash
    query_index = (query.starts[hash_index] - (ends - per_posting))[posting_index] + np.arange(posting_index.size)
    found = np.bincount(hash_index, minlength=query.distinct.size)  # postings per distinct hash
    has_count = np.bincount(found) > 0  # the distinct posting counts, fewest (heaviest) first
    counts, level_of_hash = np.flatnonzero(has_count), (np.cumsum(has_count) - 1)[found]
    return Votes(posting_songs=np.asarray(posting_songs[:kept], np.int64),
                 posting_frames=np.asarray(posting_frames[:kept], np.int64),
                 posting_levels=level_of_hash[hash_index].astype(np.int64), pair_frames=query.frames,
                 posting_index=posting_index, query_index=query_index,
                 level_weights=hash_weights(counts, n_songs, settings))


def _heaviest_per_anchor(votes: Votes, tolerance_frames: int) -> tuple[np.ndarray, int, int, np.ndarray]:
    """One entry per (song, Δt, query anchor frame) with its heaviest vote's weight, sorted by (song, Δt).

    Returns (bin_keys, delta_bits, delta_floor, weights) with bin_key = song << delta_bits | (Δt − delta_floor).
    The fast way sorts one packed integer, song | Δt | frame | level, and takes the first of each run (the lowest
    level is the heaviest vote): twice as fast as an argsort and gathers at millions of votes. Where it would not fit
    in 63 bits (song ids past about 2^40, or songs days long), the columns are sorted together instead."""
    # Bounds from the columns, not the votes: Δt lies in [min t_song − max t_query, max t_song − min t_query]. The
    # tolerance is a margin, so that bins of two songs are never within ± the tolerance of each other.
    song_frames, query_frames = votes.posting_frames, votes.pair_frames
    delta_floor = int(song_frames.min()) - int(query_frames.max()) - tolerance_frames
    delta_bits = (int(song_frames.max()) - int(query_frames.min()) - delta_floor + tolerance_frames + 1).bit_length()
    frame_bits = max(1, int(query_frames.max()).bit_length())
    level_bits = max(1, int(votes.posting_levels.max()).bit_length())
    song_bits = max(1, int(votes.posting_songs.max()).bit_length())
    if song_bits + delta_bits + frame_bits + level_bits <= PACKED_KEY_BITS:
        # key = song | Δt − floor | t_query | level, as a posting's part plus a query pair's part: the Δt field
        # never borrows, so one add per vote packs it
        low_bits = frame_bits + level_bits
        of_posting = (((votes.posting_songs << delta_bits) + (song_frames - delta_floor)) << low_bits
                      | votes.posting_levels)
        of_pair = (query_frames << level_bits) - (query_frames << low_bits)
        keys = of_posting[votes.posting_index] + of_pair[votes.query_index]
        sort_runs(keys)  # the votes come in runs by song: a key's postings are in timeline order
        heaviest = keys[run_starts(keys >> level_bits)]
        weights = votes.level_weights[heaviest & ((1 << level_bits) - 1)]
        anchor_keys = heaviest >> level_bits
        return anchor_keys >> frame_bits, delta_bits, delta_floor, weights
    # the columns sorted together, where a packed key would not fit: the bin key packs song and Δt alone
    songs, deltas, frames = votes.songs, votes.deltas, votes.query_frames
    order = np.lexsort((frames, deltas, songs))
    songs, deltas, frames = songs[order], deltas[order], frames[order]
    firsts = np.flatnonzero(np.r_[True, (songs[1:] != songs[:-1]) | (deltas[1:] != deltas[:-1])
                                  | (frames[1:] != frames[:-1])])
    weights = np.maximum.reduceat(votes.weights[order], firsts)
    return songs[firsts] << delta_bits | (deltas[firsts] - delta_floor), delta_bits, delta_floor, weights


@dataclass(frozen=True)
class Alignments:
    """The query's votes summed per song and Δt: every (song, Δt) bin that got a vote, sorted by song and then Δt,
    with its window, the summed weight within ± `tolerance_frames` of that Δt. Each (song, Δt, query anchor frame)
    counts once, with its heaviest vote."""

    songs: np.ndarray  # int64
    deltas: np.ndarray  # int64
    window: np.ndarray  # float64
    tolerance_frames: int

    @classmethod
    def of(cls, votes: Votes, tolerance_frames: int) -> Alignments:
        if votes.posting_index.size == 0:
            empty = np.zeros(0, np.int64)
            return cls(empty, empty, np.zeros(0), tolerance_frames)
        bin_keys, delta_bits, delta_floor, weights = _heaviest_per_anchor(votes, tolerance_frames)
        starts = run_starts(bin_keys)
        bin_weights = np.add.reduceat(weights, starts)
        bin_keys = bin_keys[starts]
        window = bin_weights.copy()
        for step in range(1, tolerance_frames + 1):  # keys are distinct: neighbours within the tolerance are this close
            near = (bin_keys[step:] - bin_keys[:-step]) <= tolerance_frames
            np.add(window[:-step], bin_weights[step:], out=window[:-step], where=near)
            np.add(window[step:], bin_weights[:-step], out=window[step:], where=near)
        return cls(bin_keys >> delta_bits, (bin_keys & ((1 << delta_bits) - 1)) + delta_floor, window,
                   tolerance_frames)

    @cached_property
    def _song_bins(self) -> tuple[np.ndarray, np.ndarray]:
        """Per song that got a vote: the index of its first bin, and of its best (the earliest on a tie)."""
        if self.songs.size == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        firsts = run_starts(self.songs)
        best_scores = np.maximum.reduceat(self.window, firsts)
        at_best = np.flatnonzero(self.window == np.repeat(best_scores, np.diff(np.r_[firsts, self.songs.size])))
        return firsts, at_best[run_starts(self.songs[at_best])]

    def best(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(song_ids, scores, best_deltas): each song's best window and its Δt, one entry per song."""
        _, best = self._song_bins
        return self.songs[best], self.window[best], self.deltas[best]

    def top(self, count: int, other_offsets: int = 0) -> list[Candidate]:
        """The `count` songs with the best windows, best first, each with up to `other_offsets` next-best Δt."""
        _, best = self._song_bins
        chosen = largest(self.window[best], count)
        others = self._other_offsets(chosen, other_offsets) if other_offsets else [()] * chosen.size
        return [Candidate(int(self.songs[best[i]]), float(self.window[best[i]]), int(self.deltas[best[i]]), more)
                for i, more in zip(chosen.tolist(), others)]

    def _other_offsets(self, chosen: np.ndarray, count: int) -> list[tuple[int, ...]]:
        """For each song in `chosen` (indices of `_song_bins`), up to `count` Δt of its bins by falling window
        weight (the earliest on a tie), each more than twice the tolerance from its best Δt and from each other (a
        window's neighbours share its votes). Taken greedily, one round for all the songs at once: a round takes
        each song's heaviest window still clear of those it has. A song can have thousands of bins, and a query
        asks this of its candidates (80 by default), so the rounds run over all their bins together."""
        if chosen.size == 0:
            return []
        firsts, best = self._song_bins
        sizes = np.r_[firsts[1:], self.songs.size][chosen] - firsts[chosen]
        starts = np.cumsum(sizes) - sizes  # each song's stretch of the gathered bins
        owner = np.repeat(np.arange(chosen.size), sizes)
        bins = np.arange(owner.size) + (firsts[chosen] - starts)[owner]
        deltas, window = self.deltas[bins], self.window[bins]
        separation = 2 * self.tolerance_frames
        clear = np.abs(deltas - self.deltas[best[chosen]][owner]) > separation
        taken: list[list[int]] = [[] for _ in range(chosen.size)]
        for _ in range(count):
            weights = np.where(clear, window, -np.inf)
            heaviest = np.maximum.reduceat(weights, starts)
            found = heaviest > -np.inf
            if not found.any():
                break
            at = np.flatnonzero((weights == heaviest[owner]) & found[owner])
            picked = deltas[at[np.searchsorted(at, starts[found])]]  # each song's first bin at its heaviest
            for song, delta in zip(np.flatnonzero(found).tolist(), picked.tolist()):
                taken[song].append(delta)
            near_pick = np.zeros(chosen.size, np.int64)
            near_pick[found] = picked
            clear &= ~(found[owner] & (np.abs(deltas - near_pick[owner]) <= separation))
        return [tuple(more) for more in taken]


def align(query: QueryHashes, hash_index: np.ndarray, posting_songs: np.ndarray, posting_frames: np.ndarray,
          n_songs: int, settings: MatchSettings) -> tuple[Votes, Alignments]:
    """The query's weighted votes, and their sums per song and Δt window. `n_songs` is the size of the index (for
    hash weights)."""
    votes = join(query, hash_index, posting_songs, posting_frames, n_songs, settings)
    return votes, Alignments.of(votes, settings.vote_tolerance_frames)


def vote_lead(candidate: Candidate, candidates: list[Candidate], aside: set[int] | frozenset[int] = frozenset()
              ) -> float:
    """The candidate's score less the best other song's among `candidates` (those in `aside`, its copies, left
    out): the vote lead its false-match probability weighs (`landmark.confidence`)."""
    return candidate.score - max((c.score for c in candidates if c.song_id != candidate.song_id
                                  and c.song_id not in aside), default=0.0)


def decide(candidates: list[Candidate], settings: MatchSettings, min_ratio: float | None = None) -> Candidate | None:
    """The winning candidate, or None for "no match". `min_ratio` overrides the settings' (the second look's)."""
    if not candidates:
        return None
    best = candidates[0]
    runner_up = candidates[1].score if len(candidates) > 1 else 0.0
    ratio = settings.min_ratio if min_ratio is None else min_ratio
    if (best.score < settings.min_score or best.score - runner_up < settings.min_margin
            or best.score < ratio * runner_up):
        return None
    return best
