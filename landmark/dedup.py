"""Duplicates in the index: files that hold the same recording, and recordings that hold part of another.

Two songs share audio when many of their landmarks share a hash *and* one time offset: Δt = t_b − t_a is the
same for every landmark of the shared stretch (or drifts along a line, in a copy played a little faster). So the
index is joined with itself, key by key, without comparing songs pair by pair: each key's postings give every
pair of songs holding it, with its Δt, and the (song a, song b, Δt) that many keys agree on, each Δt within a
frame of the next, are the overlaps.

A common key holds thousands of postings and so millions of pairs, nearly all chance. Only keys with at most
`max_postings_per_key` postings are joined (rare keys carry most of the evidence anyway, `landmark.vote`), the
bound chosen from the index's own key sizes so that the join forms at most `max_pairs` pairs: cost and memory
stay bounded however large the library, and at 10,000 songs about one landmark in twenty still takes part.

An overlap's extent is where its agreeing landmarks lie in song a, mapped into song b along their Δt
(`offset_line`); stretches further apart than `min_gap_s`, and than `gap_spacings` times their mean spacing, are
reported apart (a song cut in two by an edit), and a stretch that a stronger overlap of the same two songs covers
for the most part is not reported again (`strongest_per_stretch`). Two songs are copies of one recording when the
overlap covers nearly all of both (`same_recording_coverage`).

An overlap must also be shared audio, not similar music: its agreeing landmarks must be a good share of those
either song has there among the keys joined (`min_shared_share`). Then the two songs' stored peaks are read
(`confirmed`): an overlap stands only where they confirm it (landmarks agree on music that repeats, too; where
no peaks are stored, `min_shared` landmarks, twice what chance gives), and they place its ends, from peaks some
18 a second rather than landmarks seconds apart. docs/design.md ("Duplicates") has the measurements behind the
thresholds.

A copy played more than about 1 % faster or slower shares too few hashes for the join. Where asked
(`max_speed_change`), each song's middle is searched at every speed as `match` searches a clip, and the songs it
finds are read along the line their peaks fit (`speed_overlaps`); those overlaps are confirmed and placed as the
join's are.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from lmprint.errors import SettingsError

from . import vote, warp
from .arrays import run_starts
from .settings import MAX_WARP, FingerprintSettings, MatchSettings
from .verify import SongPeaks, best_run, held_by, peaks_between, played_at, run_edges, shared_peaks

SONG_BITS = 20
DELTA_BITS = 23
DELTA_OFFSET = 1 << (DELTA_BITS - 1)
"""A (song a, song b, Δt) pair packs into one int64: 20 bits per song index, Δt + 2^22 in 23 bits (±18 h)."""


@dataclass(frozen=True)
class DedupSettings:
    """How `Index.duplicates` joins the index with itself, searches copies at another speed, and what it reports."""

    max_pairs: int = 20_000_000
    """The most (posting, posting) pairs the join forms; the rarest keys are joined first up to this. Sorting and
    clustering them takes about 100 bytes a pair: up to 2 GB of memory."""

    max_postings_per_key: int = 64
    """Keys with more postings than this are never joined, whatever the budget: they are chance's."""

    min_shared: int = 12
    """Where the two songs have no stored peaks, an overlap needs at least this many landmarks agreeing on one Δt
    (± `delta_tolerance_frames`): twice the most that chance gave two unrelated songs of the public corpus..."""

    min_shared_verified: int = 6
    """...and where they have, at least this many, the peaks then reading whether it is shared audio
    (`placed_by_peaks`): in a large library only its rarer keys are joined, and a short excerpt keeps few of them
    (30 s MP3 cuts at 10,000 songs: 11 to 48). Chance reaches 6 too: the peaks tell it apart."""

    min_shared_peaks: float = 0.5
    """The share of each song's stored peaks over the stretch that the other holds at the overlap's offset (a bin
    either side, ± 1 frame): an MP3 excerpt cut between two frames keeps 0.7–0.85 of them, two unrelated songs
    share 0.01–0.03 by chance (`placed_by_peaks`)."""

    place_reach_s: float = 10.0
    """How far beyond its landmarks' stretch an overlap's peaks are read for where the shared audio begins and
    ends: in a large library the landmarks joined lie seconds apart."""

    min_shared_share: float = 0.1
    """An overlap's agreeing landmarks must be at least this share of those either song has, in that stretch,
    among the keys joined: shared audio, not merely similar music. A transcode keeps most; an MP3 of an excerpt
    cut between two frames re-picks its peaks and keeps 0.14–0.26 (generated songs); a re-orchestration of a
    theme or a sparse chance alignment across a whole song keeps 2–3 % (public corpus)."""

    delta_tolerance_frames: int = 1
    """Landmarks whose Δt differ by at most this count as one offset: a re-encoded copy moves a peak by a frame."""

    min_overlap_s: float = 5.0
    """Shorter shared stretches are not reported."""

    min_gap_s: float = 20.0
    """Agreeing landmarks further apart than this, and than `gap_spacings` times the overlap's mean spacing between
    them, start another overlap..."""

    gap_spacings: float = 10.0
    """...so that in a large library, where only the rarer landmarks take part and they lie further apart, a
    quiet passage does not split a copy in two."""

    same_recording_coverage: float = 0.9
    """Two songs are the same recording when their overlap covers at least this share of each one's fingerprinted
    span (first landmark to last)."""

    max_speed_change: float = 0.0
    """How much faster or slower (± this fraction) a copy may play and still be found by the speed search
    (`speed_overlaps`): each song's middle searched at every speed within it, as `match` searches a clip. 0 leaves
    copies to the join, whose hashes hold within about 0.5–1 %; `lmprint dedup --speed` searches ± 8 %, a tape's
    or a turntable's error and a film's 4 % (25 frames a second for 24)."""

    speed_excerpt_s: float = 10.0
    """Seconds from each song's middle that the speed search looks up: twice a query clip, as a copy is heard
    clean."""

    speed_candidates: int = 3
    """The best-voted songs of each excerpt that the speed search reads along the line their peaks fit."""

    def __post_init__(self) -> None:  # refused before the join's minutes, not after them
        if not 0 <= self.max_speed_change < MAX_WARP:
            raise SettingsError(f"max_speed_change must be in [0, {MAX_WARP}), not {self.max_speed_change!r}")
        if not (self.speed_excerpt_s > 0 and self.speed_candidates >= 1):
            raise SettingsError("speed_excerpt_s must be over 0 and speed_candidates at least 1")

    @classmethod
    def searching_speeds(cls, matching: MatchSettings, speed: bool = True) -> DedupSettings:
        """The defaults, with `speed` the speed search as far as `match` searches speeds (`dedup --speed`)."""
        return cls(max_speed_change=matching.max_speed_change) if speed else cls()


@dataclass(frozen=True)
class Overlap:
    """Song `song_b` holds `a_start_s`..`a_end_s` of song `song_a` at `b_start_s`..`b_end_s`."""

    song_a: int
    song_b: int
    a_start_s: float
    a_end_s: float
    b_start_s: float
    b_end_s: float
    shared: int
    """Landmarks that agree on it (rare keys only: a lower bound on the landmarks the songs share); for an overlap
    of the speed search, the excerpt's votes for it."""

    @property
    def speed(self) -> float:
        """How many times as fast song b plays the stretch as song a: 1.0 for a copy as it is, 1.04 for one 4 %
        faster (shorter and higher)."""
        b_s = self.b_end_s - self.b_start_s
        return (self.a_end_s - self.a_start_s) / b_s if b_s > 0 else 1.0


def key_size_bound(key_sizes: Iterable[np.ndarray], settings: DedupSettings) -> int:
    """The largest key size (at most `max_postings_per_key`) whose keys, with every smaller one, make at most
    `max_pairs` pairs. `key_sizes` are the postings per key, in any batches."""
    top = settings.max_postings_per_key
    histogram = np.zeros(top + 2, np.int64)  # the last cell counts every larger key
    for sizes in key_sizes:
        histogram += np.bincount(np.minimum(sizes, top + 1), minlength=histogram.size)
    sizes = np.arange(top + 1)
    pairs = np.cumsum(histogram[:top + 1] * sizes * (sizes - 1) // 2)
    within = np.flatnonzero(pairs <= settings.max_pairs)
    return int(within[-1]) if within.size else 1


def key_sizes(hashes: np.ndarray) -> np.ndarray:
    """Postings per key among `hashes` (a batch holding whole keys)."""
    return np.diff(np.r_[run_starts(np.sort(hashes)), hashes.size])


@dataclass
class SongCounts:
    """Per song (by dense index), gathered while the postings are read: its postings in the keys joined, and its
    first and last landmark's frame (none yet: the largest int64, and −1)."""

    joined: np.ndarray
    first_frame: np.ndarray
    last_frame: np.ndarray

    @classmethod
    def of(cls, n_songs: int) -> SongCounts:
        return cls(np.zeros(n_songs, np.int64), np.full(n_songs, np.iinfo(np.int64).max), np.full(n_songs, -1))

    def add(self, songs: np.ndarray, frames: np.ndarray, joined: np.ndarray) -> None:
        """Count a batch: postings of dense song indices `songs` at `frames`, `joined` marking those joined."""
        self.joined += np.bincount(songs[joined], minlength=self.joined.size)
        np.minimum.at(self.first_frame, songs, frames)
        np.maximum.at(self.last_frame, songs, frames)


def pairs_of_batch(hashes: np.ndarray, songs: np.ndarray, frames: np.ndarray, song_index: np.ndarray,
                   max_key_size: int, counts: SongCounts) -> tuple[np.ndarray, np.ndarray]:
    """(packed (a, b, Δt) keys, frames in song a) of every pair of postings of one key, over the keys with 2 to
    `max_key_size` postings; a < b by song index, Δt = frame in b − frame in a. `song_index` maps song ids to
    dense indices. Every posting is counted into `counts`."""
    order = np.argsort(hashes, kind="stable")
    hashes, songs, frames = hashes[order], song_index[songs[order]], frames[order]
    starts = run_starts(hashes)
    sizes = np.diff(np.r_[starts, hashes.size])
    counts.add(songs, frames, np.repeat(sizes, sizes) <= max_key_size)
    keys, first_frames = [], []
    for size in range(2, max_key_size + 1):
        of_size = starts[sizes == size]
        if of_size.size == 0:
            continue
        left, right = np.triu_indices(size, 1)
        i = (of_size[:, None] + left).ravel()
        j = (of_size[:, None] + right).ravel()
        swap = songs[i] > songs[j]
        i, j = np.where(swap, j, i), np.where(swap, i, j)
        other = songs[i] != songs[j]
        i, j = i[other], j[other]
        delta = frames[j] - frames[i] + DELTA_OFFSET
        keys.append((songs[i] << (SONG_BITS + DELTA_BITS)) | (songs[j] << DELTA_BITS) | delta)
        first_frames.append(frames[i])
    if not keys:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(keys), np.concatenate(first_frames)


def overlaps_of_pairs(keys: np.ndarray, frames_a: np.ndarray, song_ids: np.ndarray, joined_per_frame: np.ndarray,
                      frame_s: float, settings: DedupSettings) -> Iterator[Overlap]:
    """The overlaps that the joined pairs show (see the module docstring). `song_ids[i]` is dense index i's id,
    `joined_per_frame[i]` its landmarks that took part in the join per frame of its span."""
    if keys.size == 0:
        return
    order = np.lexsort((frames_a, keys))
    keys, frames_a = keys[order], frames_a[order]
    songs_ab = keys >> DELTA_BITS
    delta = (keys & ((1 << DELTA_BITS) - 1)) - DELTA_OFFSET
    # a cluster: one pair of songs, Δt within the tolerance of the previous pair's (sorted, so chained)
    new = np.r_[True, (songs_ab[1:] != songs_ab[:-1]) | (delta[1:] - delta[:-1] > settings.delta_tolerance_frames)]
    starts = np.flatnonzero(new)
    sizes = np.diff(np.r_[starts, keys.size])
    min_gap = settings.min_gap_s / frame_s
    least = min(settings.min_shared, settings.min_shared_verified)
    for start, size in zip(starts[sizes >= least], sizes[sizes >= least]):
        by_frame = start + np.argsort(frames_a[start:start + size], kind="stable")
        frames, deltas = frames_a[by_frame], delta[by_frame]
        a = int(songs_ab[start] >> SONG_BITS)
        b = int(songs_ab[start] & ((1 << SONG_BITS) - 1))
        gaps = np.diff(frames)
        mean_gap = float(gaps.mean()) if gaps.size else 0.0
        pieces = np.flatnonzero(gaps > max(min_gap, settings.gap_spacings * mean_gap)) + 1
        for piece, piece_deltas in zip(np.split(frames, pieces), np.split(deltas, pieces)):
            if piece.size < least:
                continue
            at = offset_line(piece, piece_deltas)
            # the stretch reaches about one landmark spacing beyond its first and last landmark
            spacing = (piece[-1] - piece[0]) / (piece.size - 1)
            first = max(piece[0] - spacing, 0.0, -at(piece[0] - spacing))  # within both songs
            last = piece[-1] + spacing
            expected = min(joined_per_frame[a], joined_per_frame[b]) * (last - first)  # had it all been shared
            long_enough = (last - first) * frame_s >= settings.min_overlap_s
            if long_enough and piece.size >= settings.min_shared_share * expected:
                yield Overlap(int(song_ids[a]), int(song_ids[b]), first * frame_s, last * frame_s,
                              max(first + at(first), 0.0) * frame_s, (last + at(last)) * frame_s, int(piece.size))


OFFSET_LINE_POINTS = 200
"""`offset_line` reads the slopes between at most this many of an overlap's landmarks, evenly spaced in it."""


def offset_line(frames: np.ndarray, deltas: np.ndarray) -> Callable[[float], float]:
    """Δt (frames) along an overlap's landmarks (`frames` in song a, ascending; each one's Δt): about constant for
    most overlaps, whose Δt jitter by a frame, while a copy played 0.2 % fast drifts a frame every 8 s (the join
    chains such Δt into one overlap). A robust line (Theil-Sen): the median slope between landmarks at least a
    quarter of the overlap apart (tens of landmarks may share a few frames), then the median intercept. The chain
    also takes in landmarks of music that repeats, tens of frames off the line, which pulled a least-squares fit a
    tenth off a copy's true drift, 3 frames at a song's ends."""
    points = np.unique(np.linspace(0, frames.size - 1, min(frames.size, OFFSET_LINE_POINTS)).round().astype(int))
    f, d = frames[points].astype(np.float64), deltas[points].astype(np.float64)
    first, second = np.triu_indices(f.size, 1)
    apart = f[second] - f[first]
    far = apart >= max(1.0, (f[-1] - f[0]) / 4)
    slope = float(np.median((d[second] - d[first])[far] / apart[far])) if far.any() else 0.0
    intercept = float(np.median(deltas - slope * frames))
    return lambda frame: intercept + slope * frame


def confirmed(overlaps: list[Overlap], song_peaks: SongPeaks, frame_s: float, settings: DedupSettings,
              batch: int = 256) -> list[Overlap]:
    """The overlaps that the songs' stored peaks confirm, each where they place it (`placed_by_peaks`); where the
    two songs have no stored peaks, those of at least `min_shared` landmarks as the join found them. Landmarks
    that agree may be music that repeats (a loop lines up at every bar) or similar music; peaks held one by one
    say whether it is the same audio. Peaks are read `batch` overlaps at a time, so that memory stays bounded
    however many the join found."""
    ordered = sorted(overlaps, key=lambda overlap: (overlap.song_a, overlap.song_b))
    kept = []
    for first in range(0, len(ordered), batch):
        chunk = ordered[first:first + batch]
        peaks = song_peaks(sorted({song for overlap in chunk for song in (overlap.song_a, overlap.song_b)}))
        for overlap in chunk:
            if overlap.song_a in peaks and overlap.song_b in peaks:
                placed = placed_by_peaks(overlap, peaks[overlap.song_a], peaks[overlap.song_b], frame_s, settings)
                if placed is not None:
                    kept.append(placed)
            elif overlap.shared >= settings.min_shared:
                kept.append(overlap)
    return kept


SPEED_WIDENING = 3.0
"""Each round of `speed_overlap` pairs peaks this many times as far from the excerpt's middle as the round before:
a line fitted through a stretch's peaks predicts those of a stretch three times as long to well within a frame."""

PAIR_REACH_FRAMES = 2
"""How far from the line (frames) `pairs_along` looks for song b's peak: a peak moves a frame either way in a copy,
and the line a round starts from is a frame or so off at the far ends of what it reads."""


def speed_overlaps(song_ids: list[int], song_peaks: SongPeaks, lookup: warp.Lookup,
                   fingerprint: FingerprintSettings, matching: MatchSettings, settings: DedupSettings,
                   batch: int = 256) -> Iterator[Overlap]:
    """Overlaps of songs with copies played at another speed, which share too few hashes for the join: each
    song's middle (`speed_excerpt_s` of its stored peaks, which are the index's, about its median peak: a silence
    in the middle of a song holds none) hashed at every speed within `max_speed_change` (`warp.warped_query`, as
    `match` warps a clip) and looked up (`lookup`: keys in, votes and their sums out), and each of its
    `speed_candidates` best-voted other songs of `song_ids` read along the line their peaks fit (`speed_overlap`).
    Each pair of songs may come twice, once from each; `confirmed` reads these as it reads the join's, and
    `strongest_per_stretch` keeps one of each stretch."""
    search = matching.with_values({"max_speed_change": settings.max_speed_change, "max_tempo_change": 0.0,
                                   "max_pitch_change": 0.0})
    half_frames = settings.speed_excerpt_s / fingerprint.frame_s / 2
    listed = set(song_ids)  # songs added meanwhile wait for the next run, as the join's do
    for first in range(0, len(song_ids), batch):
        peaks = song_peaks(song_ids[first:first + batch])
        for song in song_ids[first:first + batch]:
            if song not in peaks or peaks[song][0].size < 2:
                continue
            middle = int(peaks[song][0][peaks[song][0].size // 2])  # its median peak: never in a silence
            excerpt = peaks_between(peaks[song], int(middle - half_frames), int(middle + half_frames))
            # its frames from the excerpt's start, as a clip's are: a key's frame is its anchor's at the middle of
            # the key's span of speeds, off by as much more as the anchor is further on
            query = warp.warped_query((excerpt[0] - excerpt[0][0]).astype(np.float64),
                                      excerpt[1].astype(np.float64), fingerprint, search)
            if query.hashes.distinct.size == 0:
                continue
            votes, alignments = lookup(query.hashes)
            best = [c for c in alignments.top(settings.speed_candidates + 1, other_offsets=search.verify_other_offsets)
                    if c.song_id != song and c.song_id in listed][:settings.speed_candidates]
            by_song = warp.VotesBySong(votes, [c.song_id for c in best])
            speeds = warp.estimates(by_song, query, best, search.vote_tolerance_frames)
            # each song at its best Δt, then at its next-best, at the speed its best window's votes say (music that
            # repeats: the excerpt lines up with another return of itself too, maybe more strongly than with its
            # own, and a window of few votes says little of the speed)
            tries = [(vote.Candidate(c.song_id, c.score, delta), speed) for c, speed in zip(best, speeds)
                     for delta in (c.delta_frames, *c.other_delta_frames)]
            # the batch's songs are read already; only the others are read here
            others = {c.song_id: peaks[c.song_id] for c in best if c.song_id in peaks}
            others.update(song_peaks([c.song_id for c in best if c.song_id not in peaks]))
            found: set[int] = set()
            for candidate, guess in tries:
                if candidate.song_id not in others or candidate.song_id in found:
                    continue
                landmarks = int(np.count_nonzero((by_song.songs == candidate.song_id) & (
                    np.abs(by_song.deltas - candidate.delta_frames) <= search.vote_tolerance_frames)))
                overlap = speed_overlap(song, candidate.song_id, peaks[song], others[candidate.song_id], excerpt,
                                        guess, candidate.delta_frames, landmarks, fingerprint.frame_s, settings)
                if overlap is not None:
                    found.add(candidate.song_id)
                    yield overlap


def speed_overlap(song_a: int, song_b: int, peaks_a: tuple[np.ndarray, np.ndarray],
                  peaks_b: tuple[np.ndarray, np.ndarray], excerpt: tuple[np.ndarray, np.ndarray], guess: warp.Warp,
                  start_frames: int, landmarks: int, frame_s: float, settings: DedupSettings) -> Overlap | None:
    """Song a as song b holds it at another speed, along the line t_b = T · t_a + start that their peaks fit, or
    None where song b does not hold `min_shared_peaks` of the excerpt's peaks on it. `warp.fit` finishes the
    vote's guess on the excerpt, to about 1e-3; then each round pairs song a's peaks further out from the
    excerpt (`pairs_along`) and fits the line again through the pairs (`offset_line`, robust to chance's pairs),
    until it has read all of song a: over a song of minutes the factor must hold to 1e-4 for the last peaks to
    meet. The line spans song a where song b lies on it; `confirmed` then places the shared stretch by its
    peaks. `start_frames` is the vote's Δt, t_b − T · (t_a − the excerpt's first frame); the songs are put in id
    order (the join's), and `landmarks` is the excerpt's votes for it."""
    # the fit's line starts at the excerpt, as at a clip's start (`start_frames` is the vote's Δt so): its factor
    # is put on the speed line after the fit, tempo and pitch weighed together, a little off the pairs' slope
    first = float(excerpt[0][0])
    fitted, start, _ = warp.fit(excerpt[0] - first, excerpt[1].astype(np.float64), *peaks_b, guess, start_frames)
    # a change of tempo or pitch alone is not a copy at another speed, and one as recorded is the join's
    if fitted.kind != "speed" or fitted.factor == 1.0:
        return None
    tempo = fitted.tempo
    offset = start - tempo * first
    _, held = held_by(played_at(excerpt, 1.0 / tempo, 0.0, offset), peaks_b, 0, bin_reach=1)
    if held.size == 0 or held.mean() < settings.min_shared_peaks:
        return None
    frames_a = peaks_a[0]
    middle = 0.5 * (float(excerpt[0][0]) + float(excerpt[0][-1]))
    reach = max(0.5 * (float(excerpt[0][-1]) - float(excerpt[0][0])), 1.0)
    while True:
        reach *= SPEED_WIDENING
        paired_a, paired_b = pairs_along(peaks_between(peaks_a, int(middle - reach), int(middle + reach) + 1),
                                         peaks_b, tempo, offset)
        if paired_a.size < 2:
            return None
        line = offset_line(paired_a, paired_b - paired_a)  # Δ = t_b − t_a along song a
        offset = line(0.0)
        tempo = 1.0 + line(1.0) - offset
        if not tempo > 0:  # a line of chance's pairs
            return None
        if middle - reach <= frames_a[0] and middle + reach >= frames_a[-1]:
            break
    a_start = max(float(frames_a[0]), (float(peaks_b[0][0]) - offset) / tempo)
    a_end = min(float(frames_a[-1]), (float(peaks_b[0][-1]) - offset) / tempo)
    if a_end <= a_start:
        return None
    b_start, b_end = tempo * a_start + offset, tempo * a_end + offset
    if song_a > song_b:  # the join's order: the same pair's overlaps meet in `strongest_per_stretch`
        return Overlap(song_b, song_a, b_start * frame_s, b_end * frame_s, a_start * frame_s, a_end * frame_s,
                       landmarks)
    return Overlap(song_a, song_b, a_start * frame_s, a_end * frame_s, b_start * frame_s, b_end * frame_s,
                   landmarks)


def pairs_along(peaks_a: tuple[np.ndarray, np.ndarray], peaks_b: tuple[np.ndarray, np.ndarray], tempo: float,
                offset_frames: float) -> tuple[np.ndarray, np.ndarray]:
    """(frames in song a, frames in song b) of song a's peaks that song b holds near the line t_b = tempo · t_a +
    offset, in the bin song a's is moved to (bins / tempo) ± 1, and within `PAIR_REACH_FRAMES`: each with song b's
    nearest the line."""
    (frames_a, bins_a), (frames_b, bins_b) = peaks_a, peaks_b
    nothing = np.zeros(0, np.int64), np.zeros(0, np.int64)
    if frames_a.size == 0 or frames_b.size == 0:
        return nothing
    predicted = frames_a * tempo + offset_frames
    moved_bins = np.round(bins_a / tempo)
    first = np.searchsorted(frames_b, predicted - PAIR_REACH_FRAMES)
    end = np.searchsorted(frames_b, predicted + PAIR_REACH_FRAMES, side="right")
    most = int((end - first).max())
    if most == 0:
        return nothing
    near = first[:, None] + np.arange(most)[None, :]
    inside = near < end[:, None]
    near = np.minimum(near, frames_b.size - 1)
    gaps = np.abs(frames_b[near] - predicted[:, None])
    gaps[~inside | (np.abs(bins_b[near] - moved_bins[:, None]) > 1)] = np.inf
    nearest = np.argmin(gaps, axis=1)
    rows = np.flatnonzero(np.isfinite(gaps[np.arange(frames_a.size), nearest]))
    return frames_a[rows].astype(np.int64), frames_b[near[rows, nearest[rows]]].astype(np.int64)


UNREAD, OUTSIDE_B = -1, 2
"""`placed_by_peaks`' marks of a peak of song a not yet read, and of one beyond song b's span."""


def placed_by_peaks(overlap: Overlap, peaks_a: tuple[np.ndarray, np.ndarray], peaks_b: tuple[np.ndarray, np.ndarray],
                    frame_s: float, settings: DedupSettings) -> Overlap | None:
    """The overlap where its songs' stored peaks (frames, bins) say the audio is shared, or None where they do not
    agree. Song a's peaks, from `place_reach_s` before the landmarks' stretch to as far after (and on, as far
    beyond song a's next peak each time, while the shared stretch ends within half that of what was read or at its
    last peak: digital silence holds no peaks, and is no evidence either way), are read one by one
    at the overlap's offset (a line through its two ends' offsets, for a copy that drifts, whose peaks sit as
    much higher or lower: a bin either side holds one): held by song b where the audio is shared (most of them),
    by chance elsewhere (0.01-0.03), so the shared stretch is the run with
    the most peaks held beyond `min_shared_peaks` of them (`verify.best_run`), reaching halfway to the peaks
    either side of it, song a's and song b's. A level read from the peaks themselves, as a monitor reads where a
    song is heard, would take in music that shares part of its peaks at this offset (a loop that repeats, next to
    the stretch truly shared). It must hold `min_shared_peaks` of each song's peaks and last `min_overlap_s`."""
    a_start, a_end = overlap.a_start_s / frame_s, overlap.a_end_s / frame_s
    start_offset, end_offset = overlap.b_start_s / frame_s - a_start, overlap.b_end_s / frame_s - a_end
    slope = (end_offset - start_offset) / (a_end - a_start) if a_end > a_start else 0.0

    def offset_of(frames):  # song a's frames to song b's: the shift along the line
        return start_offset + slope * (frames - a_start)

    stretch = 1.0 + slope  # song b's frames per song a's: b plays that much slower, so its peaks sit as much lower

    def back_from_b(frames: np.ndarray) -> np.ndarray:  # the inverse: song b's frames' shifts to song a's, whole
        return np.round((frames - start_offset + slope * a_start) / stretch - frames).astype(np.int64)

    reach = settings.place_reach_s / frame_s
    low, high, read = a_start - reach, a_end + reach, -1
    # per peak of song a, once read: 1 held by song b, 0 not, OUTSIDE_B beyond song b's span (each read once: an
    # hour's copy whose landmarks lie in its first seconds is read on some 360 times)
    state = np.full(peaks_a[0].size, UNREAD, np.int8)
    while True:
        read_from, read_to = np.searchsorted(peaks_a[0], [int(low), int(high)])  # indices of the peaks read
        unread = read_from + np.flatnonzero(state[read_from:read_to] == UNREAD)
        if unread.size:
            near_a = (peaks_a[0][unread], peaks_a[1][unread])
            inside_b, held_new = held_by(played_at(near_a, 1.0 / stretch, a_start, start_offset), peaks_b, 0,
                                         bin_reach=1)
            state[unread] = OUTSIDE_B
            state[unread[inside_b]] = held_new
        where = np.flatnonzero(state[read_from:read_to] != OUTSIDE_B)
        held = state[read_from:read_to][where] == 1
        if held.size == 0:
            return None
        run = best_run(held - settings.min_shared_peaks)
        frames = peaks_a[0][read_from:read_to][where]  # song a's peaks that song b's span covers at the offset
        # a run ending within half the reach of what was read, or at the last peak read (silence lies beyond it),
        # may go on past it: read on to a reach beyond the next peak of song a, while that adds peaks within song b
        earlier = (run[0] == 0 or frames[run[0]] - low < reach / 2) and low > peaks_a[0][0]
        later = (run[1] == frames.size - 1 or high - frames[run[1]] < reach / 2) and high <= peaks_a[0][-1]
        if not (earlier or later) or held.size == read:
            break
        if earlier:
            low = peaks_a[0][np.searchsorted(peaks_a[0], low, side="right") - 1] - reach
        if later:
            high = peaks_a[0][np.searchsorted(peaks_a[0], high, side="left")] + reach
        read = held.size
    first, end = run_edges(frames, *run, int(frames[0]), int(frames[-1]) + 1)
    # ...and halfway to song b's peaks either side of it (in song a's frames): across a silence in song a alone,
    # song b's music beyond the stretch is not shared
    b_in_a = peaks_b[0] + back_from_b(peaks_b[0])
    before = b_in_a[b_in_a < frames[run[0]] - 1]
    after = b_in_a[b_in_a > frames[run[1]] + 1]
    first = max(first, (int(before.max()) + int(frames[run[0]]) + 1) // 2) if before.size else first
    end = min(end, (int(frames[run[1]]) + int(after.min()) + 1) // 2) if after.size else end
    # on the line, unrounded: the overlap's speed is read from its ends (a peak held ± 1 frame: never before b begins)
    first_b = max(first + offset_of(first), 0.0)
    end_b = end + offset_of(end)
    b_frames, b_bins = peaks_between(peaks_b, int(round(first_b)), int(round(end_b)))
    back = back_from_b(b_frames)  # song b's frames to song a's
    if ((end - first) * frame_s < settings.min_overlap_s or held[run[0]:run[1] + 1].mean() < settings.min_shared_peaks
            or shared_peaks((b_frames, np.round(b_bins * stretch).astype(np.int64)), peaks_a, back,
                            bin_reach=1) < settings.min_shared_peaks):
        return None
    return dataclasses.replace(overlap, a_start_s=first * frame_s, a_end_s=end * frame_s,
                               b_start_s=first_b * frame_s, b_end_s=end_b * frame_s)


ALIGNMENT_TOLERANCE_S = 0.1
"""Two overlaps of a pair of songs whose lines put the shorter's ends within this of each other (about 6 frames)
are one alignment, read twice."""


def strongest_per_stretch(overlaps: list[Overlap]) -> list[Overlap]:
    """Each pair of songs' overlaps, less those whose stretch of either song a stronger overlap of the same pair
    covers for the most part. Music repeats: a chorus shared by two songs also lines up, more weakly, at every
    other return of it; a medley's quotations of different stretches all stay, and so do the two parts of a radio
    edit or an extended mix, which meet or share a few seconds in one song. First, an overlap that a longer one
    reads at the same alignment is that one's part, whatever their landmarks: the join chains a copy 1 % fast
    over part of it, the speed search reads all of it from a few of the excerpt's votes."""
    by_pair: dict[tuple[int, int], list[Overlap]] = {}
    for overlap in overlaps:
        by_pair.setdefault((overlap.song_a, overlap.song_b), []).append(overlap)
    kept: list[Overlap] = []
    for pair in by_pair.values():
        whole = [overlap for overlap in pair if not any(_longer_at_one_alignment(other, overlap) for other in pair)]
        same_pair: list[Overlap] = []
        for overlap in sorted(whole, key=lambda o: -o.shared):
            if not any(_mostly_within(overlap.a_start_s, overlap.a_end_s, k.a_start_s, k.a_end_s)
                       or _mostly_within(overlap.b_start_s, overlap.b_end_s, k.b_start_s, k.b_end_s)
                       for k in same_pair):
                same_pair.append(overlap)
        kept += same_pair
    return sorted(kept, key=lambda o: (o.song_a, o.song_b, o.a_start_s))


def _longer_at_one_alignment(outer: Overlap, inner: Overlap) -> bool:
    """Whether `outer` is longer than `inner` in song a, holds most of its stretch, and its line puts `inner`'s ends
    in song b where `inner` has them (within `ALIGNMENT_TOLERANCE_S`)."""
    length_s = outer.a_end_s - outer.a_start_s
    if not (length_s > inner.a_end_s - inner.a_start_s
            and _mostly_within(inner.a_start_s, inner.a_end_s, outer.a_start_s, outer.a_end_s)):
        return False
    b_per_a = (outer.b_end_s - outer.b_start_s) / length_s
    return all(abs(outer.b_start_s + (a_s - outer.a_start_s) * b_per_a - b_s) <= ALIGNMENT_TOLERANCE_S
               for a_s, b_s in ((inner.a_start_s, inner.b_start_s), (inner.a_end_s, inner.b_end_s)))


def _mostly_within(start: float, end: float, other_start: float, other_end: float) -> bool:
    """Whether more than half of [start, end) lies within [other_start, other_end)."""
    return min(end, other_end) - max(start, other_start) > (end - start) / 2


@dataclass(frozen=True)
class Duplicates:
    """What `lmprint dedup` reports: groups of songs holding one recording, and the other shared stretches."""

    recordings: list[list[int]]
    """Song ids (ascending) of each recording held by several files."""
    shared_parts: list[Overlap]
    """Overlaps between songs of different recordings."""
    speeds: dict[int, float] = dataclasses.field(default_factory=dict)
    """How many times as fast each grouped song plays its recording as the group's first song (1.0 for most:
    a copy at another speed is found where `DedupSettings.max_speed_change` lets the speed search look)."""


def duplicates(overlaps: list[Overlap], spans_s: dict[int, float], settings: DedupSettings) -> Duplicates:
    """Group songs whose overlap covers nearly all of both (transitively); `spans_s` is each song's fingerprinted
    span (from its first landmark to its last: a fade or silence at either end holds none, in any copy)."""
    parent: dict[int, int] = {}

    def root(song: int) -> int:
        while parent.get(song, song) != song:
            song = parent[song]
        return song

    def same_recording(overlap: Overlap) -> bool:
        # each song's stretch against its own span: a copy at another speed is longer or shorter
        return all(end_s - start_s >= settings.same_recording_coverage * spans_s.get(song, np.inf)
                   for song, start_s, end_s in ((overlap.song_a, overlap.a_start_s, overlap.a_end_s),
                                                (overlap.song_b, overlap.b_start_s, overlap.b_end_s)))

    linking = [overlap for overlap in overlaps if same_recording(overlap)]
    for overlap in linking:
        a, b = root(overlap.song_a), root(overlap.song_b)
        parent[max(a, b)] = min(a, b)
    groups: dict[int, list[int]] = {}
    for song in {s for o in overlaps for s in (o.song_a, o.song_b)}:
        groups.setdefault(root(song), []).append(song)
    parts = [o for o in overlaps if root(o.song_a) != root(o.song_b)]
    recordings = sorted(sorted(group) for group in groups.values() if len(group) > 1)
    return Duplicates(recordings, parts, _speeds(recordings, linking))


def _speeds(recordings: list[list[int]], linking: list[Overlap]) -> dict[int, float]:
    """Each grouped song's speed against its group's first song, along the overlaps that linked the group (from
    the first song out, each song reached once)."""
    neighbours: dict[int, list[tuple[int, float]]] = {}
    for overlap in linking:
        neighbours.setdefault(overlap.song_a, []).append((overlap.song_b, overlap.speed))
        neighbours.setdefault(overlap.song_b, []).append((overlap.song_a, 1.0 / overlap.speed))
    speeds: dict[int, float] = {}
    for group in recordings:
        speeds[group[0]] = 1.0
        todo = [group[0]]
        while todo:
            song = todo.pop()
            for other, speed in neighbours.get(song, ()):
                if other not in speeds:
                    speeds[other] = speeds[song] * speed
                    todo.append(other)
    return speeds


@dataclass(frozen=True)
class SharedPart:
    """A stretch of one song that another recording holds, as `lmprint dedup` lists it: `sides` are (song id,
    start s, end s), the song's stretch first (all of it that any of the files holds), then where each file of the
    other recording holds it (one file, or each of a recording's several; a file holding it in two pieces, twice);
    `landmarks`, the most that agree on one of them."""

    sides: tuple[tuple[int, float, float], ...]
    landmarks: int


def shared_parts_by_recording(parts: list[Overlap], recordings: list[list[int]]) -> list[SharedPart]:
    """`Duplicates.shared_parts` listed once per stretch and recording: an edit of a recording held in four files
    shares each of its stretches with all four, one part with five sides rather than four of two. Only where a
    song of one file shares with a recording of several: the song's stretches, in its own time, tell which
    overlaps are one stretch (more than half of one within the strongest's); two recordings of several files
    each keep their overlaps pair by pair."""
    group_of = {song: min(group) for group in recordings if len(group) > 1 for song in group}
    listed: list[SharedPart] = []
    by_song_and_group: dict[tuple[int, int], list[tuple[tuple[int, float, float], tuple[int, float, float], int]]] = {}
    for part in parts:
        a_side, b_side = (part.song_a, part.a_start_s, part.a_end_s), (part.song_b, part.b_start_s, part.b_end_s)
        if (part.song_a in group_of) == (part.song_b in group_of):
            listed.append(SharedPart((a_side, b_side), part.shared))
            continue
        single, held = (b_side, a_side) if part.song_a in group_of else (a_side, b_side)
        by_song_and_group.setdefault((single[0], group_of[held[0]]), []).append((single, held, part.shared))
    for overlaps in by_song_and_group.values():
        stretches: list[tuple[list[tuple[int, float, float]], list[tuple[int, float, float]], int]] = []
        for single, held, shared in sorted(overlaps, key=lambda o: -o[2]):  # strongest first: it sets the stretch
            _, start, end = single
            home = next((s for s in stretches if _mostly_within(start, end, s[0][0][1], s[0][0][2])
                         or _mostly_within(s[0][0][1], s[0][0][2], start, end)), None)
            if home is None:
                stretches.append(([single], [held], shared))
            else:
                home[0].append(single)
                home[1].append(held)
        for singles, files, shared in stretches:  # the song's stretch: all of it that any file holds
            whole = (singles[0][0], min(s[1] for s in singles), max(s[2] for s in singles))
            listed.append(SharedPart((whole, *sorted(files)), shared))
    return sorted(listed, key=lambda part: part.sides)
