"""Speed, tempo and pitch: naming a clip played faster or slower than its recording, from the same index.

A clip played at speed s holds the song's peaks at (t / s, f · s): time and frequency scale together. A
time-stretch (tempo) scales time only, a pitch shift frequency only. A stored hash (f1, Δf, Δt) then shows up under
other values, and beyond ± 1 % not at all. The query needs no other hashes in the index for that: it warps its own
peaks back by each candidate factor and hashes them again, without decoding or resampling.

- **Which peaks**: the clip's peaks at the index's own density (`Fingerprint.index_peaks`), at sub-bin and
  sub-frame positions (`peaks.refine`), so that a peak warped back rounds to the bin the song's peak has.
- **Which factors**: along three lines of (tempo T, pitch P): speed (T = P = s), tempo (P = 1) and pitch (T = 1),
  each across its range (`MatchSettings.max_speed_change` …). A pair's hash changes only where a warped
  coordinate crosses a bin or a frame, so across ± 8 % a pair has a few dozen distinct keys, each asked once and
  remembered with the factors that make it.
- **Votes** go to (song, Δt) as at factor 1, with Δt in the song's frames (t_song − T · t_clip), so the votes of one
  alignment pile up whichever of its nearby factors brought them. The factors of the winning window's votes
  estimate the warp.
- **Verification** reads the song's stored peaks moved into the clip's coordinates (t / T, f · P) at factors
  around that estimate and keeps the best: it confirms the song, and it fixes the factor.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from . import hashes as hashing
from . import vote
from .arrays import covered, members, run_starts
from .settings import MAX_WARP, FingerprintSettings, MatchSettings
from .verify import (
    CopyCheck,
    ProminenceMap,
    SameRecording,
    SongPeaks,
    agreement,
    agreements_of,
    verify,
    without_copies_of_leader,
)

LINES = {"speed": (1, 1), "tempo": (1, 0), "pitch": (0, 1)}
"""Each kind of change as the exponents (a, b) of its factor s in (T, P) = (s^a, s^b)."""

KINDS = tuple(LINES)
"""The kinds of change in `LINES` order: a line's index (`WarpedQuery.line`) names its kind."""

SAMPLE_STEP = 0.001
"""Factors are sampled this far apart to find every distinct key of a pair: a key holds over a span of about
0.4 % or more (a bin at the top of the band), so few are missed."""

RANGE_MARGIN = 0.01
"""Each line is searched this much beyond its range: a factor at the edge of the range then still lies inside
the spans of its keys (`estimates`), not at their end."""

REFINE_STEPS = np.arange(-2, 3) * 0.002
"""Verification reads a candidate at its estimated factor times (1 + each of these), keeping the best: the vote's
estimate is good to about ± 0.5 %."""

COARSE_STEP = 0.01
"""`measure` first reads the song along each line this far apart: a clip's peaks agree with the song's within
about ± 1 % of the true factor..."""

FINE_STEP = 0.0025
"""...then around the best of them this far apart, ± `COARSE_STEP`; `fit` does the rest."""

AS_RECORDED_REACH = {"speed": 0.03, "pitch": 0.03}
"""How far from 1.0 a clip that matched as recorded can be played at a speed or pitch and still match so (its
peaks' bins move by a bin at 1 %); a tempo change keeps the bins, and matches so across its whole range."""

MIN_WARP_GAIN = 2.0
"""`measure` leaves a match as recorded unless its peaks agree with the clip by this much more z at another warp
(the fit then measures from there): every warp tried is another chance for a higher z, and music that holds its
notes agrees nearly as well a little faster or slower."""


@dataclass(frozen=True)
class Warp:
    """How a clip is played against the recording: its music runs `tempo` times as fast and sounds `pitch` times
    as high (1.0: as recorded). `kind` says which line it was found on: "speed" (the two together), "tempo" or
    "pitch"."""

    kind: str
    factor: float

    @property
    def tempo(self) -> float:
        return self.factor ** LINES[self.kind][0]

    @property
    def pitch(self) -> float:
        return self.factor ** LINES[self.kind][1]

    @classmethod
    def played(cls, speed: float | None, tempo: float | None, pitch: float | None) -> Warp:
        """The warp a match reports (`Match.speed`, or `tempo` and `pitch`; None: as recorded)."""
        if speed is not None:
            return cls("speed", speed)
        if tempo not in (None, 1.0):
            return cls("tempo", float(tempo))
        return cls("pitch", pitch) if pitch is not None else cls("speed", 1.0)

    def to_clip(self, song_frames: np.ndarray, song_bins: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A song's peaks (frames sorted) where the clip holds them, on the clip's frame and bin grid."""
        frames, bins = Warp.to_clip_at(self.kind, np.array([self.factor]), song_frames, song_bins)
        return frames[0], bins[0]

    @staticmethod
    def to_clip_at(kind: str, factors: np.ndarray, song_frames: np.ndarray, song_bins: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray]:
        """`to_clip` at each of several factors on one line: row i of each is at `factors[i]`."""
        a, b = LINES[kind]
        return (np.round(np.asarray(song_frames) / (factors ** a)[:, None]).astype(np.int64),
                np.round(np.asarray(song_bins) * (factors ** b)[:, None]).astype(np.int64))


MAX_TEMPO_SPAN = (1 + MAX_WARP + RANGE_MARGIN) * (1 + float(REFINE_STEPS.max()))
"""The most song frames per clip frame that a searched tempo gives: the settings' bound, the search's margin and
the refinement's last step."""

LINE_MARGIN = 0.003
"""A warp is put on the tempo or the pitch line only when it lies this much nearer to it (in log scale) than to the
speed line: a factor is measured to about 0.1 %, and a clip played as recorded lies near all three."""

AS_RECORDED = 0.002
"""A warp within this fraction of 1.0 in tempo and pitch is "as recorded", exactly 1.0: what a fit measures of a
clip played as recorded (± 0.1 %), so that 1.0 means 1.0 and a stream's anchors do not drift with it."""

AS_RECORDED_ERRORS = 5.0
"""...and so is one within this many standard errors of the fit of 1.0 (in tempo and in pitch): a warp is reported
only where the clip tells it from the recording. A fit's error grows as a clip gets shorter or noisier (tempo to
about ± 1 % on a clean 1 s clip, ± 0.1 % on a 5 s one). The errors come from the pairs' scatter about the fitted
line, and pairs are chosen near that line, so they understate it: on the calibration clips played as recorded,
50 of 1,048 right answers read more than 3 errors off 1.0 and 7 more than 5, where 804 of 809 clips played
faster or slower read more than 5 (docs/tuning.md, 2026-12-04)."""


def nearest_on_line(tempo: float, pitch: float, errors: tuple[float, float] = (0.0, 0.0)) -> Warp:
    """The warp on the line nearest to (tempo, pitch) in log scale, the speed line unless another is
    nearer by `LINE_MARGIN`, at the point of the line nearest to it; speed 1.0 where tempo and pitch are each
    within `AS_RECORDED`, or `AS_RECORDED_ERRORS` times their standard `errors` (in log scale), of 1.0."""
    log_tempo, log_pitch = np.log(tempo), np.log(pitch)
    if all(abs(value) <= max(AS_RECORDED, AS_RECORDED_ERRORS * error)
           for value, error in ((log_tempo, errors[0]), (log_pitch, errors[1]))):
        return Warp("speed", 1.0)
    off_line = {"speed": abs(log_tempo - log_pitch) / np.sqrt(2) - LINE_MARGIN, "tempo": abs(log_pitch),
                "pitch": abs(log_tempo)}
    kind = min(off_line, key=off_line.__getitem__)
    a, b = LINES[kind]
    return Warp(kind, float(np.exp((a * log_tempo + b * log_pitch) / (a + b))))


@dataclass(frozen=True)
class WarpedQuery:
    """A clip's index-density pairs hashed at every factor of the search: `hashes` to look up and vote with (their
    frames are the anchors' in song frames, t_clip · T), and for each entry in their order the line it was made on
    (an index into `LINES`) and the span of factors [`low`, `high`] on that line that make it."""

    hashes: vote.QueryHashes
    line: np.ndarray  # int64
    low: np.ndarray  # float64
    high: np.ndarray  # float64


def _limits(matching: MatchSettings) -> dict[str, float]:
    """Each line the settings search, with its range (± this fraction)."""
    return {kind: limit for kind, limit in zip(LINES, (matching.max_speed_change, matching.max_tempo_change,
                                                        matching.max_pitch_change)) if limit > 0}


def factor_samples(matching: MatchSettings) -> tuple[np.ndarray, np.ndarray]:
    """(line, factor) of every factor sampled along the lines the settings search (`line` indexes `LINES`)."""
    lines, factors = [], []
    for kind, limit in _limits(matching).items():
        reach = limit + RANGE_MARGIN
        s = np.arange(1 - reach, 1 + reach + SAMPLE_STEP / 2, SAMPLE_STEP)
        lines.append(np.full(s.size, list(LINES).index(kind)))
        factors.append(s)
    if not lines:
        return np.zeros(0, np.int64), np.zeros(0)
    return np.concatenate(lines), np.concatenate(factors)


EXPONENTS = np.array(list(LINES.values()))  # (a, b) per line, in `LINES` order


def warped_query(frames: np.ndarray, bins: np.ndarray, settings: FingerprintSettings, matching: MatchSettings
                 ) -> WarpedQuery:
    """The warped search's keys from a clip's refined peaks at index density (frames sorted)."""
    lines, factors = factor_samples(matching)
    empty = WarpedQuery(vote.QueryHashes.of(np.zeros(0, np.uint32), np.zeros(0, np.int64)),
                        np.zeros(0, np.int64), np.zeros(0), np.zeros(0))
    if factors.size == 0 or frames.size < 2:
        return empty
    tempo, pitch = factors ** EXPONENTS[lines, 0], factors ** EXPONENTS[lines, 1]
    density = dataclasses.replace(settings.index, fanout=matching.warp_fanout)
    # the song's target zone, as the clip holds it at any factor searched: pairs then keep their order
    zone = (settings.min_delta_frames / tempo.max(), settings.max_delta_frames / tempo.min(),
            settings.max_delta_bins * pitch.max())
    anchors, targets = hashing.pair_indices(frames, bins, settings, density, zone)
    anchor_bins = np.round(bins[anchors, None] / pitch).astype(np.int64)
    delta_bins = np.round(bins[targets, None] / pitch).astype(np.int64) - anchor_bins
    delta_frames = (frames[targets] - frames[anchors])[:, None] * tempo
    key_parts = []
    same_line = lines[1:] == lines[:-1]  # of each sample and the one before
    pair_bits, sample_bits = max(1, anchors.size.bit_length()), max(1, factors.size.bit_length())
    for rounded in (np.floor(delta_frames), np.ceil(delta_frames)):  # the song's grid may fall either way
        rounded = rounded.astype(np.int64)
        ok = ((rounded >= settings.min_delta_frames) & (rounded <= settings.max_delta_frames)
              & (np.abs(delta_bins) <= settings.max_delta_bins)
              & (anchor_bins >= 0) & (anchor_bins < 1 << hashing.FREQ_BITS))
        hashes = np.where(ok, hashing.pack(anchor_bins, delta_bins, rounded), -1)
        # a pair keeps a hash over runs of samples: only a run's first and last sample can bound a key's span, so
        # only they are sorted (a tenth of the samples)
        same = (hashes[:, 1:] == hashes[:, :-1]) & same_line
        inside_run = np.zeros(ok.shape, bool)
        inside_run[:, 1:-1] = same[:, :-1] & same[:, 1:]
        pair, sample = np.nonzero(ok & ~inside_run)
        key_parts.append((((lines[sample] << pair_bits | pair) << hashing.HASH_BITS | hashes[pair, sample])
                          << sample_bits) | sample)
    # one sort of (line, pair, hash, sample): samples ascend along a line, so each key's first and last bound its span
    keys = np.sort(np.concatenate(key_parts))
    if keys.size == 0:
        return empty
    samples = keys & ((1 << sample_bits) - 1)
    keys >>= sample_bits
    starts = run_starts(keys)
    ends = np.r_[starts[1:], keys.size] - 1
    low, high = factors[samples[starts]], factors[samples[ends]]
    line = lines[samples[starts]]
    middle = 0.5 * (low + high)
    entry_hashes = (keys[starts] & ((1 << hashing.HASH_BITS) - 1)).astype(np.uint32)
    anchor_frames = frames[anchors[(keys[starts] >> hashing.HASH_BITS) & ((1 << pair_bits) - 1)]]
    entry_frames = np.round(anchor_frames * middle ** EXPONENTS[line, 0]).astype(np.int64)
    by_hash = np.argsort(entry_hashes, kind="stable")
    grouped = entry_hashes[by_hash]
    firsts = run_starts(grouped)
    query = vote.QueryHashes(grouped[firsts], firsts, np.diff(np.r_[firsts, grouped.size]), entry_frames[by_hash],
                             np.ones(grouped.size))
    return WarpedQuery(query, line[by_hash], low[by_hash], high[by_hash])


class VotesBySong:
    """The votes of some songs (a search's candidates), sorted by song, each with its Δt and weight: what
    `estimates` reads of the candidates, without a pass over every vote per candidate."""

    def __init__(self, votes: vote.Votes, song_ids: list[int]):
        mine = np.flatnonzero(members(votes.posting_songs, song_ids)[votes.posting_index])
        postings = votes.posting_index[mine]
        by_song = np.argsort(votes.posting_songs[postings], kind="stable")
        postings, self.sources = postings[by_song], votes.query_index[mine[by_song]]
        self.songs = votes.posting_songs[postings]
        self.deltas = votes.posting_frames[postings] - votes.pair_frames[self.sources]
        self.weights = votes.level_weights[votes.posting_levels[postings]]


def estimates(votes: VotesBySong, warped: WarpedQuery, candidates: list[vote.Candidate], tolerance_frames: int
              ) -> list[Warp]:
    """Per candidate, the warp that its votes in its window agree on: the factor on one line that the most weight
    of their keys' spans cover (each key holds across a span of factors; the true one lies in nearly all), the
    first line in `LINES` order on a tie; speed 1.0 for a candidate without such votes. `votes` may hold other
    songs' votes too. All candidates in one sweep (`_best_covered_groups`)."""
    if not candidates:
        return []
    ids = np.array([c.song_id for c in candidates], np.int64)
    by_id = np.argsort(ids)
    owner = by_id[np.minimum(np.searchsorted(ids[by_id], votes.songs), ids.size - 1)]  # each vote's candidate
    voted_delta_frames = np.array([c.delta_frames for c in candidates], np.int64)
    near = np.flatnonzero((ids[owner] == votes.songs)
                          & (np.abs(votes.deltas - voted_delta_frames[owner]) <= tolerance_frames))
    entries = votes.sources[near]
    groups = owner[near] * len(KINDS) + warped.line[entries]  # (candidate, line)
    top, middle = _best_covered_groups(groups, warped.low[entries], warped.high[entries], votes.weights[near])
    found = [Warp("speed", 1.0)] * len(candidates)
    best_top = np.full(len(candidates), -1.0)
    for group in sorted(top):  # by candidate, then line in `LINES` order: the first line wins a tie
        candidate, line = divmod(group, len(KINDS))
        if top[group] > best_top[candidate]:
            best_top[candidate], found[candidate] = top[group], Warp(KINDS[line], middle[group])
    return found


def _best_covered_groups(groups: np.ndarray, low: np.ndarray, high: np.ndarray, weights: np.ndarray
                         ) -> tuple[dict[int, float], dict[int, float]]:
    """For each group of spans [low, high] with weights: the most weight covering one factor, and the middle of
    the first stretch of factors covered that much, as {group: weight} and {group: factor}. A sweep over each
    group's span ends, sorted (starts before ends at a tie), summed along the rows of a block padded with zero
    steps, so that a row's running sum is its group's alone, added in the same order (the block is groups ×
    the largest group's ends: a few dozen by a few hundred for a query's candidates)."""
    if groups.size == 0:
        return {}, {}
    ends, steps, of = np.r_[low, high], np.r_[weights, -weights], np.r_[groups, groups]
    order = np.lexsort((-steps, ends, of))  # by group; at equal factors, spans open before others close
    ends, steps, of = ends[order], steps[order], of[order]
    firsts = run_starts(of)
    lengths = np.diff(np.append(firsts, of.size))
    rows = np.repeat(np.arange(firsts.size), lengths)
    block = np.zeros((firsts.size, int(lengths.max())))
    block[rows, np.arange(of.size) - firsts[rows]] = steps
    cover = np.cumsum(block, axis=1)
    best = np.argmax(cover, axis=1)  # the first maximum; the padding repeats a row's last sum, never first
    after = firsts + np.minimum(best + 1, lengths - 1)
    middles = 0.5 * (ends[firsts + best] + ends[after])
    tops = cover[np.arange(firsts.size), best]
    keys = of[firsts].tolist()
    return dict(zip(keys, tops.tolist())), dict(zip(keys, middles.tolist()))


@dataclass(frozen=True)
class Found:
    """A warped search's outcome: the song's candidate (Δt in the song's frames), how it passed, its agreement z,
    and the warp; and the candidates behind it."""

    best: vote.Candidate | None
    decided_by: str
    z: float | None
    warp: Warp | None
    candidates: list[vote.Candidate]


Lookup = Callable[[vote.QueryHashes], tuple[vote.Votes, vote.Alignments]]
"""Reads a query's hashes from the index and votes (`Index._vote`): hashes in, their votes and per-song sums out."""


def identify(frames: np.ndarray, bins: np.ndarray, clip: ProminenceMap, lookup: Lookup, song_peaks: SongPeaks,
             is_copy: CopyCheck, settings: FingerprintSettings, matching: MatchSettings, candidate_count: int
             ) -> Found:
    """The song a clip comes from when played at another speed, tempo or pitch, or None (see the module
    docstring), from the clip's refined peaks at index density (`frames`, `bins`) and its prominence map."""
    warped = warped_query(frames, bins, settings, matching)
    if warped.hashes.distinct.size == 0:
        return Found(None, "", None, None, [])
    votes, alignments = lookup(warped.hashes)
    candidates = without_copies_of_leader(
        alignments.top(candidate_count, other_offsets=matching.verify_other_offsets), is_copy)
    if not candidates:
        return Found(None, "", None, None, candidates)
    # each candidate at the factor its peaks agree best with, in the clip's coordinates
    peaks = song_peaks([c.song_id for c in candidates])
    by_song = VotesBySong(votes, [c.song_id for c in candidates])
    warps: dict[int, Warp] = {}
    on_clip: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    clip_candidates = []
    held = [candidate for candidate in candidates if candidate.song_id in peaks]
    trials, readings = [], []
    guesses = estimates(by_song, warped, held, matching.vote_tolerance_frames)
    for candidate, guess in zip(held, guesses):
        # read here at Δt ± shift, then verified there ± shift again
        voted_delta_frames = (candidate.delta_frames, *candidate.other_delta_frames)
        near = under_clip(*peaks[candidate.song_id], voted_delta_frames,
                          clip.standardised.shape[0] + 2 * matching.verify_shift_frames)
        factors = guess.factor * (1 + REFINE_STEPS)  # every refinement step at once
        trial_frames, trial_bins = Warp.to_clip_at(guess.kind, factors, *near)
        trial_deltas, _ = Warp.to_clip_at(guess.kind, factors, np.array(voted_delta_frames), np.zeros(0))
        for k, factor in enumerate(factors):
            trials.append((Warp(guess.kind, factor), (trial_frames[k], trial_bins[k])))
            readings.append((trial_frames[k], trial_bins[k], trial_deltas[k]))
    zs, deltas = agreements_of(clip, readings, matching) if readings else (np.zeros(0), np.zeros(0, np.int64))
    for i, candidate in enumerate(held):
        steps = slice(i * REFINE_STEPS.size, (i + 1) * REFINE_STEPS.size)
        best = int(np.argmax(zs[steps]))  # the first step at the best z
        if zs[steps][best] == -np.inf:  # none of its peaks under the clip: the vote's guess, at its voted Δt
            best = int(np.flatnonzero(REFINE_STEPS == 0)[0])
        warps[candidate.song_id], on_clip[candidate.song_id] = trials[steps][best]
        clip_candidates.append(vote.Candidate(candidate.song_id, candidate.score, int(deltas[steps][best])))
    if not clip_candidates:
        return Found(None, "", None, None, candidates)
    leader = vote.decide(candidates, matching)
    chosen, decided_by = None, ""
    if leader is not None and leader.song_id == clip_candidates[0].song_id:
        z, _ = agreement(clip, *on_clip[leader.song_id], clip_candidates[0].delta_frames, matching)
        if z >= matching.confirm_min_z:  # confirmed, not merely not contradicted: tens of alignments were tried
            chosen, decided_by = clip_candidates[0], "vote"
    if chosen is None:
        chosen, decided_by = verify(clip_candidates, clip, lambda ids: {i: on_clip[i] for i in ids if i in on_clip},
                                    matching, same_recording_on_song_grid(is_copy, warps))
    if chosen is None:
        return Found(None, "", None, None, candidates)
    warp = warps[chosen.song_id]
    z, _ = agreement(clip, *on_clip[chosen.song_id], chosen.delta_frames, matching)
    in_song = vote.Candidate(chosen.song_id, chosen.score, int(round(chosen.delta_frames * warp.tempo)))
    return Found(in_song, decided_by, z, warp, candidates)


def same_recording_on_song_grid(is_copy: CopyCheck, warps: dict[int, Warp]) -> SameRecording:
    """`is_copy.same_recording` for candidates whose Δt are on the clip's grid, each song played at its warp: the
    songs' stored peaks, which it compares, are on the songs' grid (Δt × tempo). Two copies whose lead-ins differ
    by 2 s are 125 song frames apart, 116 clip frames at tempo 1.08: compared unscaled, no peak would meet."""
    def same_recording(stronger: vote.Candidate, weaker: vote.Candidate, where_clip_plays: bool = True) -> bool:
        on_song_grid = [dataclasses.replace(c, delta_frames=int(round(c.delta_frames * warps[c.song_id].tempo)))
                        for c in (stronger, weaker)]
        return is_copy.same_recording(on_song_grid[0], on_song_grid[1], where_clip_plays)
    return same_recording


def under_clip(song_frames: np.ndarray, song_bins: np.ndarray, delta_frames: tuple[int, ...], reach_frames: int
               ) -> tuple[np.ndarray, np.ndarray]:
    """The song's peaks (frames sorted) that a clip reaching `reach_frames` past its start can hold at any of these
    Δt (song frames), at any tempo the search reaches: the rest of a song lies outside every agreement read."""
    margin = MAX_TEMPO_SPAN * (reach_frames + 2)  # rounding moves a warped peak by a frame at most, either way
    starts = np.searchsorted(song_frames, [d - margin for d in delta_frames])
    ends = np.searchsorted(song_frames, [d + margin for d in delta_frames])
    index = covered(starts, ends, song_frames.size)
    return song_frames[index], song_bins[index]


def reading_near(clip: ProminenceMap, song_frames: np.ndarray, song_bins: np.ndarray, played: Warp,
                 start_frame: float, reach_frames: int, matching: MatchSettings
                 ) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """The song's peaks under a clip starting at song frame `start_frame`, played as `played` (on the clip's grid),
    and the Δt that read them there give or take `reach_frames` (clip frames): what `agreement` reads."""
    shift = matching.verify_shift_frames
    near = under_clip(song_frames, song_bins, (int(round(start_frame)),),
                      clip.standardised.shape[0] + reach_frames + 2 * shift)
    expected = int(round(start_frame / played.tempo))  # in the clip's frames
    return (*played.to_clip(*near), offsets_within(expected, reach_frames, shift))


def offsets_within(expected: int, reach_frames: int, shift_frames: int) -> list[int]:
    """Offsets 2·shift + 1 apart, centred on `expected`, whose readings (each ± `shift_frames`) cover every frame
    within ± `reach_frames` of it: the expected one at least."""
    step = 2 * shift_frames + 1
    count = -(-(2 * reach_frames + 1) // step)
    return (expected + (step * (2 * np.arange(count) - (count - 1))) // 2).tolist()


def measured(matching: MatchSettings) -> bool:
    """Whether the settings search any line, so that a match's warp is measured."""
    return bool(_limits(matching))


def measure(clip: ProminenceMap, song_frames: np.ndarray, song_bins: np.ndarray, delta_frames: int,
            matching: MatchSettings, around: Warp | None = None,
            clip_peaks: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[Warp, int]:
    """(warp, Δt): the warp at which a matched song's stored peaks agree best with the clip, and the song's frame
    at the clip's start (Δt in song frames at clip frame 0) there.

    `delta_frames` is t_song − t_clip · T of the alignment that matched, somewhere along the clip: at T = 1 for a
    match as recorded, at the warp `around` for a warped search's. Two stages: the warp the song's peaks agree at
    best (`_agreed`), then, with the clip's refined peaks (`clip_peaks`), the line through the peaks the two share
    (`_fitted`)."""
    n_frames = clip.standardised.shape[0]
    limits = _limits(matching)
    if not limits:
        return Warp("speed", 1.0), delta_frames
    widest = max(limits.values()) + RANGE_MARGIN  # the song frames a clip can span: n · (1 ± widest)
    window = ((song_frames >= delta_frames - widest * n_frames - START_SEARCH_FRAMES)
              & (song_frames <= delta_frames + (1 + widest) * n_frames + START_SEARCH_FRAMES))
    song = _SongUnderClip(clip, song_frames[window], song_bins[window], delta_frames, matching)
    agreed = _agreed(song, limits, around)
    if agreed is None:  # no peak of the song under the clip at any warp: nothing to measure
        return Warp("speed", 1.0), delta_frames
    if clip_peaks is None:
        return agreed.warp, agreed.start_frames
    matched_as_recorded = around is None or (around.tempo == 1.0 and around.pitch == 1.0)
    return _fitted(agreed, song, clip_peaks, matched_as_recorded)


@dataclass(frozen=True)
class _SongUnderClip:
    """A matched song's peaks (frames, bins) around where the clip plays, read against the clip at any warp."""

    clip: ProminenceMap
    frames: np.ndarray
    bins: np.ndarray
    delta_frames: int
    matching: MatchSettings

    def agreements(self, warps: list[Warp]) -> tuple[np.ndarray, np.ndarray]:
        """(z, clip start) of each warp, in one pass."""
        played: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for kind in LINES:  # the song's peaks at every factor of a line in one broadcast
            on_line = [i for i, warp in enumerate(warps) if warp.kind == kind]
            if on_line:
                at_frames, at_bins = Warp.to_clip_at(kind, np.array([warps[i].factor for i in on_line]),
                                                     self.frames, self.bins)
                played.update((i, (at_frames[row], at_bins[row])) for row, i in enumerate(on_line))
        starts = clip_starts(np.array([warp.tempo for warp in warps]), self.delta_frames,
                             self.clip.standardised.shape[0])
        return agreements_of(self.clip, [(*played[i], at) for i, at in enumerate(starts)], self.matching)

    def as_recorded(self) -> tuple[float, int]:
        """(z, song frame at the clip's start) of the recording as it is."""
        return agreement(self.clip, self.frames, self.bins, self.delta_frames, self.matching)


@dataclass(frozen=True)
class _Agreed:
    """The warp a song's peaks agree with a clip at best, and the song frame at the clip's start there; where the
    recording as it is was kept, the best other warp and its start too (`rival`), which a fit may yet prefer; and
    the recording's own start and agreement z."""

    warp: Warp
    start_frames: int
    rival: tuple[Warp, int] | None
    as_recorded_start_frames: int
    as_recorded_z: float


def _on_song_grid(clip_start: int, warp: Warp) -> int:
    """A start on the clip's grid (song frames ÷ tempo) as a song frame."""
    return int(round(clip_start * warp.tempo))


def _agreed(song: _SongUnderClip, limits: dict[str, float], around: Warp | None) -> _Agreed | None:
    """Each line read `COARSE_STEP` apart (for a match as recorded, only as far as it can be played and still match
    so: `AS_RECORDED_REACH`), and `around` projected on each line, at every clip start that Δt allows; then the
    best point finely. A warp must beat the recording as it is by `MIN_WARP_GAIN`. None where no peak of the song
    lies under the clip at any warp."""
    reaches = {kind: limit if around is not None else min(limit, AS_RECORDED_REACH.get(kind, limit))
               for kind, limit in limits.items()}
    trials = [Warp(kind, float(f)) for kind, reach in reaches.items()
              for f in np.arange(1 - reach, 1 + reach + COARSE_STEP / 2, COARSE_STEP)]
    if around is not None:
        log_tempo, log_pitch = np.log(around.tempo), np.log(around.pitch)
        projected = {"speed": np.exp(0.5 * (log_tempo + log_pitch)), "tempo": around.tempo, "pitch": around.pitch}
        trials += [Warp(kind, float(projected[kind])) for kind in limits]
    zs, starts = song.agreements(trials)
    first_best = int(np.argmax(zs))
    best_z, best_start, best = float(zs[first_best]), int(starts[first_best]), trials[first_best]
    if not np.isfinite(best_z):
        return None
    as_recorded_z, as_recorded_start = song.as_recorded()
    if best_z < as_recorded_z + MIN_WARP_GAIN:
        rival = (best, _on_song_grid(best_start, best)) if best.factor != 1.0 else None
        return _Agreed(Warp("speed", 1.0), as_recorded_start, rival, as_recorded_start, as_recorded_z)
    fine = [Warp(best.kind, best.factor * (1 + step))
            for step in np.arange(-COARSE_STEP, COARSE_STEP + FINE_STEP / 2, FINE_STEP)]
    zs, starts = song.agreements(fine)
    first_best = int(np.argmax(zs))
    if zs[first_best] > best_z:
        best_z, best_start = float(zs[first_best]), int(starts[first_best])
        best = Warp(best.kind, float(fine[first_best].factor))
    return _Agreed(best, _on_song_grid(best_start, best), None, as_recorded_start, as_recorded_z)


def _fitted(agreed: _Agreed, song: _SongUnderClip, clip_peaks: tuple[np.ndarray, np.ndarray],
            matched_as_recorded: bool) -> tuple[Warp, int]:
    """The agreed warp `fit`ted on the clip's refined peaks. Where the recording as it is was kept, its rival is
    fitted too, and kept where its fitted line pairs clearly more of the clip's peaks with the song's (by
    `min_agreement_lead` standard deviations of the count): music that holds its notes agrees as recorded over a
    stretch of a clip played 5 % slower nearly as well as at the true tempo over all of it, but only the right line
    pairs peaks across all of it (such clips were read as recorded, or 2 % off; their pairs rose from 11-22 to
    41-66, where an unwarped clip's two fits pair within a few of each other). A match as recorded stays so where a
    warp beat the recording but its fit fails (too few peaks pair, `MIN_FIT_PAIRS`, or it wanders off): a warp is
    told by its line, and held chords agree as well a few percent off, with few peaks. Nor is a warp kept that the
    song's peaks agree with less than with the recording as it is: a room's smearing tilts a line through a few
    dozen pairs by 1-2 % in tempo, within what their scatter calls certain (docs/tuning.md, 2026-12-07, fifth
    sitting). (A warped search's match has no such warp to fall back on: agreement refines the warp it was found
    at.)"""
    # a peak on the clip's first or last frame is a maximum because the clip stops there, wherever the note peaks:
    # seven such pairs at the last frame, a frame early, read 2 s of a song at tempo 1.016
    n_frames = song.clip.standardised.shape[0]
    inside = (clip_peaks[0] > 0) & (clip_peaks[0] < n_frames - 1)
    clip_peaks = (clip_peaks[0][inside], clip_peaks[1][inside])
    fitted, fitted_start, paired = fit(*clip_peaks, song.frames, song.bins, agreed.warp, agreed.start_frames)
    if matched_as_recorded and agreed.warp.factor != 1.0 and paired < MIN_FIT_PAIRS:  # no line to tell it by
        fitted, fitted_start = Warp("speed", 1.0), agreed.as_recorded_start_frames
    if agreed.rival is not None:
        other, other_start, other_paired = fit(*clip_peaks, song.frames, song.bins, *agreed.rival)
        # more pairs by the lead that tells two candidates apart, in standard deviations of a count
        if other_paired - paired > song.matching.min_agreement_lead * np.sqrt(max(paired, 1)):
            fitted, fitted_start = other, other_start
    if matched_as_recorded and fitted.factor != 1.0:
        (z_fitted,), _ = song.agreements([fitted])
        if z_fitted <= agreed.as_recorded_z:  # a line through a few pairs that the song's peaks do not bear out
            fitted, fitted_start = Warp("speed", 1.0), agreed.as_recorded_start_frames
    return fitted, fitted_start


def clip_starts(tempos: np.ndarray, delta_frames: int, n_frames: int) -> list[np.ndarray]:
    """For each tempo T, the starts on the clip's grid (song frames ÷ T; ascending, distinct) where a clip of
    `n_frames` may start when Δt = `delta_frames` is its alignment at T = 1 somewhere along it: (Δt − (T − 1)·u) / T
    for a clip frame u, read at `int(|T − 1| · n_frames) + 2` evenly spaced u from 0 to `n_frames` (the further T
    is from 1, the more starts it spans). One pass for every tempo: a match's warp is read at some forty."""
    tempos = np.asarray(tempos, np.float64)
    counts = (np.abs(tempos - 1) * n_frames).astype(np.int64) + 2
    firsts = np.cumsum(counts) - counts
    reading = np.repeat(np.arange(tempos.size), counts)
    step = np.arange(reading.size) - firsts[reading]  # u's index along its tempo's points
    positions = step * (n_frames / (counts - 1))[reading]  # as np.linspace spaces them, its last point exact
    positions[firsts + counts - 1] = n_frames
    tempo = tempos[reading]
    starts = np.round((delta_frames - (tempo - 1) * positions) / tempo).astype(np.int64)
    order = np.lexsort((starts, reading))
    reading, starts = reading[order], starts[order]
    kept = np.r_[True, (reading[1:] != reading[:-1]) | (starts[1:] != starts[:-1])]
    return np.split(starts[kept], np.cumsum(np.bincount(reading[kept], minlength=tempos.size))[:-1])


FIT_REACH_FRAMES = (4.0, 2.5, 1.5)
"""A clip peak and a song peak warped onto the clip pair up in `fit` within this many frames, one value per round
of pairing and fitting: agreement may leave the start a few frames off where notes are long, and each round's
line pairs the next more tightly."""

FIT_REACH_BINS = 1.0
"""...and within this many bins."""

MIN_FIT_PAIRS = 8
"""Fewer paired peaks than this leave the warp as agreement found it: two parameters from a handful of points
would follow their jitter."""

NEIGHBOURS = 64
"""Song peaks, in time order, looked at for each clip peak when pairing: more than a `START_SEARCH_FRAMES` span
holds at the index's density (18 a second)."""

MAX_FIT_MOVE = 0.05
"""A fit may move tempo or pitch this far (in log scale) from where agreement put them, and no further: far
enough to go from the speed line to the pitch line at the same pitch (music with long notes tells tempo apart
poorly by agreement), not so far that a bad pairing carries it off."""

START_SEARCH_FRAMES = 16
"""`fit` first moves the start to where the most peaks line up within ± this many frames: in music that repeats
itself bar by bar, agreement may settle a few frames off."""


def _song_neighbours(predicted_frames: np.ndarray, clip_frames: np.ndarray, reach: float) -> np.ndarray | None:
    """For each clip peak, the indices of the `NEIGHBOURS` song peaks (predicted on the clip's frames, sorted) from
    the first within `reach` frames before it on; None when the song has no peaks there."""
    if predicted_frames.size == 0:
        return None
    first = np.searchsorted(predicted_frames, clip_frames - reach)
    return np.minimum(first[:, None] + np.arange(NEIGHBOURS)[None, :], predicted_frames.size - 1)


def _start_shift(clip_frames: np.ndarray, clip_bins: np.ndarray, song_frames: np.ndarray, song_bins: np.ndarray,
                 warp: Warp, start_frames: int) -> int:
    """How many song frames to move the start so that the most clip peaks meet a song peak (same bin ± 1)."""
    predicted_frames = (song_frames - start_frames) / warp.tempo
    candidates = _song_neighbours(predicted_frames, clip_frames, START_SEARCH_FRAMES / warp.tempo)
    if candidates is None:
        return 0
    gaps = predicted_frames[candidates] - clip_frames[:, None]
    close = (np.abs(gaps * warp.tempo) <= START_SEARCH_FRAMES) & (np.abs(song_bins[candidates] * warp.pitch
                                                             - clip_bins[:, None]) <= FIT_REACH_BINS)
    if not close.any():
        return 0
    shifts = np.round(gaps[close] * warp.tempo).astype(np.int64) + START_SEARCH_FRAMES
    counts = np.bincount(shifts, minlength=2 * START_SEARCH_FRAMES + 1)
    smoothed = np.convolve(counts, np.ones(3), "same")  # a peak's time is known to a frame
    return int(np.argmax(smoothed)) - START_SEARCH_FRAMES


def fit(clip_frames: np.ndarray, clip_bins: np.ndarray, song_frames: np.ndarray, song_bins: np.ndarray,
        warp: Warp, start_frames: int) -> tuple[Warp, int, int]:
    """The warp and start refined by least squares on the peaks the clip and the song share.

    Agreement fixes a factor only to where the song's peaks drift by about a frame across the clip: ± 0.5 % in
    time for a 5 s clip. The clip's peaks at sub-frame positions (`peaks.refine`), paired with the song's peaks
    where the warp puts them, fix the line t_song = T · t_clip + start to about 0.1 %, and f_song = f_clip / P as
    well. The fitted point is then put on the nearest line (`nearest_on_line`), or read as recorded where it lies
    within its errors of 1.0: on any line, whichever the settings search, since the settings bound where a search
    looks, not what the clip is (a clip 5 % faster, found by the pitch search with speed not searched, read as
    pitch +5 %, beyond the pitch search's own ± 4 %). Returns the warp, the start, and how many clip
    peaks the last round paired. Where the fit fails, the warp and start are as given, with the pairs found if too
    few to fit (under `MIN_FIT_PAIRS`), and 0 where the fit wandered off: its pairs then speak against the warp
    given (a clip 5 % slower, fitted from the recording as is, leaves it)."""
    tempo, pitch = warp.tempo, warp.pitch
    start = start_frames + _start_shift(clip_frames, clip_bins, song_frames, song_bins, warp, start_frames)
    for reach in FIT_REACH_FRAMES:
        predicted_frames = (song_frames - start) / tempo
        candidates = _song_neighbours(predicted_frames, clip_frames, reach)
        if candidates is None:
            return warp, start_frames, 0
        frame_gaps = np.abs(predicted_frames[candidates] - clip_frames[:, None])
        bin_gaps = np.abs(song_bins[candidates] * pitch - clip_bins[:, None])
        distance = frame_gaps / reach + bin_gaps / FIT_REACH_BINS
        distance[(frame_gaps > reach) | (bin_gaps > FIT_REACH_BINS)] = np.inf
        nearest = np.argmin(distance, axis=1)
        paired = np.isfinite(distance[np.arange(clip_frames.size), nearest])
        if paired.sum() < MIN_FIT_PAIRS:
            return warp, start_frames, int(paired.sum())
        song = candidates[np.flatnonzero(paired), nearest[paired]]
        u, t = clip_frames[paired], song_frames[song].astype(np.float64)
        f, g = clip_bins[paired], song_bins[song].astype(np.float64)
        # least squares in closed form: a BLAS or LAPACK call would wake OpenBLAS's threads (see audio.check_usable)
        u_mean, t_mean = u.mean(), t.mean()
        spread = np.add.reduce((u - u_mean) ** 2)
        fitted_tempo = tempo
        if spread > 0:
            fitted_tempo = np.add.reduce((u - u_mean) * (t - t_mean)) / spread
            start = t_mean - fitted_tempo * u_mean
        f_f, f_g = np.add.reduce(f * f), np.add.reduce(f * g)
        fitted_pitch = float(f_f / f_g) if f_g > 0 else pitch
        tempo, pitch = float(fitted_tempo), fitted_pitch
    if not (tempo > 0 and pitch > 0 and np.isfinite(start)
            and max(abs(np.log(tempo / warp.tempo)), abs(np.log(pitch / warp.pitch))) <= MAX_FIT_MOVE):
        return warp, start_frames, 0  # a fit that wandered off (or degenerated): keep what agreement found
    fitted = nearest_on_line(tempo, pitch, _log_errors(u, t, f, g, tempo, pitch, start))
    if fitted.factor == 1.0:  # as recorded: the start where the line of slope 1 meets the pairs
        start = t_mean - u_mean
    return fitted, int(round(start)), int(paired.sum())


def _log_errors(clip_frames: np.ndarray, song_frames: np.ndarray, clip_bins: np.ndarray, song_bins: np.ndarray,
                tempo: float, pitch: float, start: float) -> tuple[float, float]:
    """The standard errors, relative (so in log scale), of a fit's tempo (the slope of song frames on clip frames)
    and pitch (from song bins = clip bins / pitch, a line through 0), from the scatter of the pairs about it."""
    n = clip_frames.size
    spread = np.add.reduce((clip_frames - clip_frames.mean()) ** 2)
    frame_scatter = np.add.reduce((song_frames - start - tempo * clip_frames) ** 2) / max(n - 2, 1)
    tempo_error = np.sqrt(frame_scatter / spread) / tempo if spread > 0 else np.inf
    bin_scatter = np.add.reduce((song_bins - clip_bins / pitch) ** 2) / max(n - 1, 1)
    clip_power = np.add.reduce(clip_bins ** 2)
    pitch_error = np.sqrt(bin_scatter / clip_power) * pitch if clip_power > 0 else np.inf
    return float(tempo_error), float(pitch_error)
