"""Peak-level verification: do a candidate song's stored peaks line up with energy in the clip?

Voting counts pairs of peaks, and a pair needs both its peaks among the clip's selected peaks. Under babble at
0 dB about 0.4 of a song's peaks are (0.4² of its pairs); through a room and a phone, fewer. So the true song often
leads the vote by too little to be told from chance. Yet its peaks still leave energy where they were: ranked below
the noise's, smeared by the room, but above the local background. Verification reads it. For each of the
best-voted songs it takes the song's stored peaks under the clip, at the voted offset, and sums the clip's
prominence (dB above the local background) at those points.

Chance is not uniform: music stays in a key, so two songs' peaks share bins, and it keeps a beat, so energy
crowds into the frames of note onsets; noise fills bands of its own. So the clip's prominence is standardised per
frame (over its bins) and then per bin (over its frames) before it is read: a point scores only for standing out
both within its frame and within its bin. The agreement is the sum over the song's n points divided by √n, a
z-score under chance, so one threshold holds for clips of any length or density. Digital silence (a recording
that starts late or stops early) is left out of both steps and of the n points: it is no evidence either way.

Measured (docs/tuning.md): reading the prominence instead of testing for a local maximum at each point keeps
the evidence of peaks that a room or a louder neighbour has demoted: phone recall 0.66 → 0.79 on the calibration
clips, at the same number of wrong candidates verified.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np

from .arrays import members
from .confidence import CALIBRATION
from .peaks import band_edges_bins
from .settings import FingerprintSettings, MatchSettings
from .vote import Candidate, vote_lead

FLAT = 1e-6
"""Standard deviation below which a frame or bin is flat (digital silence): it is then left at zero."""


@dataclass(frozen=True)
class ProminenceMap:
    """A clip's prominence within the peak band, standardised per frame and then per bin (over the frames that
    hold sound)."""

    standardised: np.ndarray  # float32, frames × bins of the peak band
    first_bin: int
    sounding: np.ndarray | None = None
    """Which frames hold sound (None: all). Digital silence is no evidence either way: a song's peaks there are not
    read, so neither a song that goes on where a recording stopped nor one that ends there gains or loses."""

    @classmethod
    def of(cls, prominence: np.ndarray, settings: FingerprintSettings) -> ProminenceMap:
        """From a clip's prominence map (frames × all bins, `peaks.prominence_db`)."""
        first_bin, end_bin = (int(edge) for edge in band_edges_bins(settings)[[0, -1]])
        values = np.array(prominence[:, first_bin:end_bin], np.float32)
        live = _standardise(values, axis=1)  # within each frame; in place, as every query pays for it
        sounding = None if live.all() else live
        if sounding is None:
            _standardise(values, axis=0)  # then within each bin
        elif sounding.any():
            # ...over the frames that hold sound: over silent ones too, a clip that is mostly digital silence
            # had the spread of its sound divided by √(its frames / sounding frames), and every z read there
            # multiplied by that (a second of a song before 5 s of silence: ×2.4, and another song's last
            # second, under it by chance, was named)
            heard = values[sounding]
            _standardise(heard, axis=0)
            values[sounding] = heard
        return cls(values, first_bin, sounding)


def _standardise(values: np.ndarray, axis: int) -> np.ndarray:
    """Standardise `values` along `axis` in place, a flat line (digital silence) left at zero; whether each line
    along the other axis holds anything."""
    values -= values.mean(axis=axis, keepdims=True)
    spread = np.sqrt(np.mean(np.square(values), axis=axis, keepdims=True))
    flat = spread <= FLAT
    values /= np.where(flat, np.float32(1.0), spread)
    values *= ~flat
    return ~flat.reshape(-1)


Reading = tuple[np.ndarray, np.ndarray, int | Sequence[int] | np.ndarray]
"""A song's peaks (frames sorted, bins) and the Δt to read them at: what `agreement` reads."""


def agreement(clip: ProminenceMap, song_frames: np.ndarray, song_bins: np.ndarray,
              delta_frames: int | Sequence[int], settings: MatchSettings) -> tuple[float, int]:
    """(z, Δt): how far above chance the clip's standardised prominence is at the song's peaks (sorted by frame),
    moved by −Δt into the clip's frames; the best over each of `delta_frames` ± `verify_shift_frames`. z is −inf when no
    peak of the song lies under the clip."""
    z, delta = agreements_of(clip, [(song_frames, song_bins, delta_frames)], settings)
    return float(z[0]), int(delta[0])


def agreements_of(clip: ProminenceMap, readings: Sequence[Reading], settings: MatchSettings
                  ) -> tuple[np.ndarray, np.ndarray]:
    """`agreement` of each (song frames, song bins, deltas) in `readings`, in one pass: (z, Δt) arrays. A query
    reads tens of candidates at several offsets and warps, a few hundred peaks each: numpy's cost per call, paid
    once for them all rather than once a reading, was most of verification's time."""
    n_frames, n_bins = clip.standardised.shape
    shift = settings.verify_shift_frames
    shifts = np.arange(-shift, shift + 1)
    offsets_of = [(np.atleast_1d(np.asarray(deltas, np.int64))[:, None] + shifts).ravel() for _, _, deltas in readings]
    offsets_per_reading = np.fromiter((offsets.size for offsets in offsets_of), np.int64, len(readings))
    assert offsets_per_reading.all(), "a reading without a Δt"
    frames_of = [np.asarray(frames, np.int64) for frames, _, _ in readings]
    offsets = np.concatenate(offsets_of)
    song_frames = np.concatenate(frames_of)
    song_bins = np.concatenate([np.asarray(bins, np.int64) for _, bins, _ in readings])
    # each reading on a stretch of one axis of its own, so that one search finds every reading's peaks
    low = min(int(offsets.min()), int(song_frames.min(initial=0)))
    stride = max(int(offsets.max()) + n_frames, int(song_frames.max(initial=0))) - low + 1
    bases = np.arange(len(readings), dtype=np.int64) * stride - low
    song_frames += np.repeat(bases, [frames.size for frames in frames_of])
    offsets += np.repeat(bases, offsets_per_reading)
    # the song's peaks under the clip at each offset (a few seconds of a song: cut before anything else is done)
    starts, ends = np.searchsorted(song_frames, offsets), np.searchsorted(song_frames, offsets + n_frames)
    spans = ends - starts
    which = np.repeat(np.arange(offsets.size), spans)
    points = np.arange(which.size) - np.repeat(np.cumsum(spans) - spans - starts, spans)
    bins = song_bins[points] - clip.first_bin
    in_band = (bins >= 0) & (bins < n_bins)
    which, points, bins = which[in_band], points[in_band], bins[in_band]
    clip_frames = song_frames[points] - offsets[which]
    if clip.sounding is not None:  # where the clip is digitally silent, a song's peaks are not read
        heard = clip.sounding[clip_frames]
        which, clip_frames, bins = which[heard], clip_frames[heard], bins[heard]
    counts = np.bincount(which, minlength=offsets.size)
    values = clip.standardised[clip_frames, bins]
    sums = np.bincount(which, values, offsets.size)
    z = np.where(counts > 0, sums / np.sqrt(np.maximum(counts, 1)), -np.inf)
    firsts = np.cumsum(offsets_per_reading) - offsets_per_reading
    best_z = np.maximum.reduceat(z, firsts)
    at_best = np.flatnonzero(z == np.repeat(best_z, offsets_per_reading))
    best = at_best[np.searchsorted(at_best, firsts)]  # each reading's first offset at its best, as argmax picks
    best = np.where(best_z > -np.inf, best, firsts + shift)  # no peak under the clip: the first Δt as voted
    return best_z, offsets[best] - np.repeat(bases, offsets_per_reading)[best]


HEARD_SPAN_ROUNDS = 3
"""Rounds of `heard_span`'s estimate of how strongly the song is heard and where: it settles within two."""


def heard_span(clip: ProminenceMap, song_frames: np.ndarray, song_bins: np.ndarray, delta_frames: int,
               song_end_frame: int, settings: MatchSettings, pause_frames: int = 0) -> tuple[int, int] | None:
    """The clip frames [first, end) where a song's peaks (sorted by frame), moved by −`delta_frames` into the clip,
    stand out: where the song is heard, for a boundary between it and what plays either side. None when they do not
    agree there by `confirm_min_z` (the song is not clearly heard anywhere in the clip).

    Two levels, read peak by peak: where the song is not heard its peaks read chance (standardised prominence:
    mean 0, spread 1), where it is they read its level μ. A peak's log-likelihood ratio of heard to not is then
    μ·(v − μ/2), so the span is the run of peaks that maximises the sum of v − μ/2 (a change point either side),
    with μ read again over the span found, a few rounds. A span that holds the first or last of the song's peaks
    under the clip reaches the clip's edge, or the song's own start or end (frame 0, `song_end_frame`) where that
    lies within the clip. Digital silence is not read (`ProminenceMap.sounding`), and a span stops where it
    begins; where `pause_frames` of it lie within the run while the song's own peaks go on there (the stream
    paused), the run is the heavier part either side."""
    n_frames, n_bins = clip.standardised.shape
    frames, bins = np.asarray(song_frames, np.int64) - delta_frames, np.asarray(song_bins, np.int64) - clip.first_bin
    inside = (frames >= 0) & (frames < n_frames) & (bins >= 0) & (bins < n_bins)
    frames, bins = frames[inside], bins[inside]
    muted = np.zeros(0, np.int64)  # the song's peaks where the stream is digitally silent
    if clip.sounding is not None:
        heard = clip.sounding[frames]
        frames, bins, muted = frames[heard], bins[heard], frames[~heard]
    if frames.size == 0:
        return None
    values = clip.standardised[frames, bins].astype(np.float64)
    run = level_run(values)
    if run is None:
        return None
    first, last = run
    if clip.sounding is not None and pause_frames > 0 and muted.size:
        # a pause: `pause_frames` of silence between two peaks read, where the song's own peaks go on (at half
        # the rate they are read at over the run, or more; a song silent there itself did not pause)
        silent_before = np.concatenate([[0], np.cumsum(~clip.sounding)])  # silent frames before each frame
        silent = np.diff(silent_before[frames[first:last + 1]])
        muted_between = np.diff(np.searchsorted(muted, frames[first:last + 1]))
        sounding_frames = max(1, int(frames[last] - frames[first]) + 1 - int(silent.sum()))
        peaks_per_frame = (last + 1 - first) / sounding_frames
        paused = np.flatnonzero((silent >= pause_frames) & (muted_between >= 0.5 * peaks_per_frame * silent)) + first
        if paused.size:  # the run's parts between pauses: the heaviest one, at the run's level
            gains = values - values[first:last + 1].mean() / 2
            starts, ends = np.r_[first, paused + 1], np.r_[paused, last]
            heaviest = int(np.argmax([gains[a:b + 1].sum() for a, b in zip(starts, ends)]))
            first, last = int(starts[heaviest]), int(ends[heaviest])
    if values[first:last + 1].sum() / np.sqrt(last + 1 - first) < settings.confirm_min_z:
        return None
    start, end = run_edges(frames, first, last, max(0, -delta_frames), min(n_frames, song_end_frame - delta_frames))
    if clip.sounding is not None:  # nor is the song heard in digital silence beside the run
        silent = np.flatnonzero(~clip.sounding)
        before, after = silent[silent < frames[first]], silent[silent > frames[last]]
        if before.size:
            start = max(start, int(before[-1]) + 1)
        if after.size:
            end = min(end, int(after[0]))
    return start, end


def run_edges(frames: np.ndarray, first: int, last: int, first_edge: int, end_edge: int) -> tuple[int, int]:
    """The frames [start, end) a run of peaks (indices `first`..`last` of `frames`, sorted) covers: halfway to
    the peak before and the peak after it, or `first_edge` / `end_edge` where it holds the first / last peak."""
    start = first_edge if first == 0 else (int(frames[first - 1]) + int(frames[first]) + 1) // 2
    end = end_edge if last == frames.size - 1 else (int(frames[last]) + int(frames[last + 1]) + 1) // 2
    return start, end


def level_run(values: np.ndarray) -> tuple[int, int] | None:
    """(first, last) index of the run of `values` that reads a level μ against a background of 0 (the sum of
    v − μ/2 at its largest: a change point either side), μ read again over the run found, `HEARD_SPAN_ROUNDS`
    rounds; None where no level above 0 is read."""
    first, last = 0, values.size - 1
    for _ in range(HEARD_SPAN_ROUNDS):
        level = values[first:last + 1].mean()
        if level <= 0:
            return None
        first, last = best_run(values - level / 2)
    return first, last


def best_run(gains: np.ndarray) -> tuple[int, int]:
    """(first, last) index of the run of `gains` with the largest sum (at least one element)."""
    ends = np.cumsum(gains)
    before = np.concatenate([[0.0], ends[:-1]])  # the sum before each start
    lowest_before = np.minimum.accumulate(before)
    last = int(np.argmax(ends - lowest_before))
    first = int(np.argmin(before[:last + 1]))
    return first, last


SongPeaks = Callable[[list[int]], dict[int, tuple[np.ndarray, np.ndarray]]]
"""Reads songs' stored peaks: song ids in, (frames, bins) of each song that has them out."""

class SameRecording(Protocol):
    """Whether two candidates hold one recording at the offsets their Δt imply, or (`where_clip_plays`) the
    stretch of it the clip plays (`CopyCheck.same_recording`)."""

    def __call__(self, stronger: Candidate, weaker: Candidate, where_clip_plays: bool = True) -> bool: ...


def remembered(song_peaks: SongPeaks) -> SongPeaks:
    """`song_peaks` reading and decoding each song at most once: one query reads its winner's peaks to confirm
    the vote, to verify and to measure its warp."""
    known: dict[int, tuple[np.ndarray, np.ndarray] | None] = {}

    def read(song_ids: list[int]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        missing = [song_id for song_id in song_ids if song_id not in known]
        if missing:
            found = song_peaks(missing)
            known.update((song_id, found.get(song_id)) for song_id in missing)
        return {song_id: peaks for song_id in song_ids if (peaks := known[song_id]) is not None}

    return read


def within_chance_bound(lead: float, z: float | None, settings: MatchSettings) -> bool:
    """Whether evidence this strong (a candidate's lead over the best other song's vote, its agreement z) comes
    by chance no more often than `max_false_match_probability` (`landmark.confidence`): every rule that singles
    a song out names it only then, so that one which would name it at chance's evidence leaves the decision to
    the others."""
    return CALIBRATION.false_match_probability(lead, z) <= settings.max_false_match_probability


def confirms_vote(z: float | None, settings: MatchSettings) -> bool:
    """Whether a song matched by vote shows its peaks in the clip too: its agreement z at its voted offset
    (`agreement_at`) is ≥ `min_vote_agreement_z`. Pairs can line up by chance in music that shares a grid and a
    sound; its peaks then do not agree. True for z None, a song whose peaks the index does not hold (indexes of
    schema 3: matched by vote alone)."""
    return z is None or z >= settings.min_vote_agreement_z


def agreement_at(candidate: Candidate, clip: ProminenceMap, song_peaks: SongPeaks, settings: MatchSettings
                 ) -> float | None:
    """The agreement z of a candidate's peaks with the clip at its Δt (± `verify_shift_frames`); None when the
    index does not hold its peaks."""
    peaks = song_peaks([candidate.song_id]).get(candidate.song_id)
    if peaks is None:
        return None
    z, _ = agreement(clip, *peaks, candidate.delta_frames, settings)
    return z


def agreements(candidates: list[Candidate], clip: ProminenceMap, song_peaks: SongPeaks, settings: MatchSettings
               ) -> list[tuple[float, Candidate]]:
    """(z, candidate at the Δt that agreed best) of each candidate whose peaks the index holds, in their order: the
    best agreement at its voted offset and at its other strong offsets (`Candidate.other_delta_frames`)."""
    peaks = song_peaks([c.song_id for c in candidates])
    held = [c for c in candidates if c.song_id in peaks]
    if not held:
        return []
    zs, deltas = agreements_of(clip, [(*peaks[c.song_id], (c.delta_frames, *c.other_delta_frames)) for c in held],
                               settings)
    return [(float(z), Candidate(c.song_id, c.score, int(delta))) for z, delta, c in zip(zs, deltas, held)]


TIER_GROWTH = 4
"""Each tier of verification reads this many times the candidates of the one before: 20, then 80 (where a
larger library's chance leaders push a noisy clip's song), then 320 where `verify_candidates` allows."""


def tiers(count: int, first: int) -> list[int]:
    """How deep each tier of verification reads, of `count` candidates: `first`, × `TIER_GROWTH` each tier, and
    `count` last (`count` alone where `first` is 0 or not below it)."""
    depths = []
    depth = first
    while 0 < depth < count:
        depths.append(depth)
        depth *= TIER_GROWTH
    return [*depths, count]


def verify(candidates: list[Candidate], clip: ProminenceMap,
           song_peaks: SongPeaks, settings: MatchSettings,
           same_recording: SameRecording | None = None) -> tuple[Candidate | None, str]:
    """The song that the first `verify_candidates` candidates' agreements single out, or None; and how it passed.

    Each candidate's agreement is the best at its voted offset and at its other strong offsets
    (`Candidate.other_delta_frames`). A song passes in one of two ways, its z leading every other candidate's in both:
    - **confirmed**: the vote's leader agrees with z ≥ `confirm_min_z` if it scores `confirm_min_ratio` times the
      runner-up (short of a match by vote), else with z ≥ `confirm_close_min_z`, and leads by `confirm_min_lead`:
      two kinds of evidence, pairs and single peaks, name the same song;
    - **alone**: any candidate agrees with z ≥ `min_agreement_z` and leads by `min_agreement_lead`.

    They are read in tiers (`tiers`): the first `verify_first_candidates` decide first, alone, and each tier
    `TIER_GROWTH` times deeper is weighed only when the ones before single out nothing: each candidate more raises
    chance's best agreement, and so the lead a song needs, so a song among the vote's best keeps the decision it
    had. The candidate returned carries the Δt that agreed best, with how it passed ("confirmed" or "verified").
    `song_peaks` reads songs' stored peaks. With `same_recording` (`CopyCheck.same_recording`), a copy of a song's
    recording, whatever the two copies' votes, does not count against its lead.
    """
    candidates = candidates[:settings.verify_candidates]
    agreed: list[tuple[float, Candidate]] = []
    read = 0
    for depth in tiers(len(candidates), settings.verify_first_candidates):
        agreed += agreements(candidates[read:depth], clip, song_peaks, settings)
        read = depth
        found, how = _single_out(candidates[:depth], agreed, settings, same_recording)
        if found is not None:
            break
    return found, how


def _single_out(candidates: list[Candidate], agreed: list[tuple[float, Candidate]], settings: MatchSettings,
                same_recording: SameRecording | None) -> tuple[Candidate | None, str]:
    """`verify`'s rule on these candidates and their agreements (those of candidates with stored peaks)."""
    if not agreed:
        return None, ""
    leader_z, leader = agreed[0]
    runner_up_score = candidates[1].score if len(candidates) > 1 else 0.0
    by_z = sorted(agreed, key=lambda pair: -pair[0])
    needed_z = (settings.confirm_min_z if leader.score >= settings.confirm_min_ratio * runner_up_score
                else settings.confirm_close_min_z)
    if (leader.song_id == candidates[0].song_id and leader_z >= needed_z
            and within_chance_bound(vote_lead(leader, candidates), leader_z, settings)
            and leader_z - _strongest_other(by_z, leader, settings.confirm_min_lead, same_recording)
            >= settings.confirm_min_lead):
        return leader, "confirmed"
    best_z, best = by_z[0]
    if best_z < settings.min_agreement_z:  # before its lead: a copy is looked for only where it would matter
        return None, ""
    if best_z - _strongest_other(by_z, best, settings.min_agreement_lead, same_recording) < settings.min_agreement_lead:
        return None, ""
    if not within_chance_bound(vote_lead(best, candidates), best_z, settings):  # its copies' votes count: stricter
        return None, ""
    return best, "verified"


def shared_peaks(stronger: tuple[np.ndarray, np.ndarray], weaker: tuple[np.ndarray, np.ndarray],
                 shift_frames: int | np.ndarray, bin_reach: int = 0) -> float:
    """The share of `stronger`'s peaks (frames, bins), moved by `shift_frames`, that `weaker` holds too (the same
    bin ± `bin_reach`, ± 1 frame), over the frames both songs cover; 0 when they do not overlap."""
    _, held = held_by(stronger, weaker, shift_frames, bin_reach)
    return float(held.mean()) if held.size else 0.0


def shared_throughout(stronger: tuple[np.ndarray, np.ndarray], weaker: tuple[np.ndarray, np.ndarray],
                      shift_frames: int, settings: MatchSettings) -> bool:
    """Whether `weaker` holds `stronger`'s peaks, moved by `shift_frames`, as a copy does over the frames both
    cover: at least `copy_min_shared_peaks` of them, and never more than `copy_cut_max_unshared_peaks` in a row
    that it does not hold."""
    _, held = held_by(stronger, weaker, shift_frames)
    if held.size == 0 or held.mean() < settings.copy_min_shared_peaks:
        return False
    unshared_runs = np.diff(np.flatnonzero(np.r_[True, held, True])) - 1
    return int(unshared_runs.max()) <= settings.copy_cut_max_unshared_peaks


def played_at(peaks: tuple[np.ndarray, np.ndarray], speed: float | np.ndarray, from_frame: float,
              shift_frames: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Peaks (frames, bins; by frame) where a copy played `speed` times as fast (higher and shorter) holds them:
    frame `from_frame` (where the two are put together) at `from_frame` + `shift_frames` in the copy, the rest
    on and back from it at the copy's speed (speeds as a column: a row of peaks each)."""
    frames, bins = peaks
    return (np.round(from_frame + shift_frames + (frames - from_frame) / speed).astype(np.int64),
            np.round(bins * speed).astype(np.int64))


def held_by(peaks: tuple[np.ndarray, np.ndarray], other: tuple[np.ndarray, np.ndarray],
            shift_frames: int | np.ndarray, bin_reach: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(indices, held): of `peaks` (frames, bins; by frame), moved by `shift_frames` (one for all, or one each,
    keeping them by frame), those within the frames `other` covers, and whether `other` holds each too (the same
    bin ± `bin_reach`, ± 1 frame)."""
    frames, bins = peaks[0] + shift_frames, peaks[1]
    other_frames, other_bins = other
    if frames.size == 0 or other_frames.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, bool)
    inside = np.flatnonzero((frames >= other_frames[0]) & (frames <= other_frames[-1]))
    if inside.size == 0:
        return inside, np.zeros(0, bool)
    other_frames, other_bins = peaks_between(other, int(frames[inside[0]]) - 1, int(frames[inside[-1]]) + 2)
    if other_frames.size == 0:
        return inside, np.zeros(inside.size, bool)
    width = int(max(bins.max(), other_bins.max())) + 1 + 2 * bin_reach  # a bin ± reach stays in its frame's keys
    keys = frames[inside] * width + bins[inside] + bin_reach
    other_keys = other_frames * width + other_bins + bin_reach
    return inside, np.asarray(members(keys + _key_steps(width, bin_reach)[:, None], other_keys).any(axis=0))


def _key_steps(width: int, bin_reach: int) -> np.ndarray:
    """What to add to a peak's key (frame × `width` + bin) for the keys of its frame and the frames either side,
    each at its bin ± `bin_reach`: where another song's peak counts as holding it."""
    return (np.array([-width, 0, width])[:, None] + np.arange(-bin_reach, bin_reach + 1)).reshape(-1)


COPY_MIN_PEAKS_WHERE_CLIP_PLAYS = 30
"""Peaks each file must hold where the clip plays for the two to be told the same audio there (a 5 s clip covers
about 90 at the index's density): a quiet stretch of a few peaks says nothing either way."""


SPEED_PROBE_FRAMES = (150, 600, 2400, 9600)
"""Copies played at slightly different speeds are lined up within these many frames of where the clip plays (about
2.4 s each way, then 10 s, 40 s and 2.6 min), each reach trying speeds a frame of drift apart at its ends around
the last one's best (`copy_speed`): most candidate pairs are no copies, and are told so within the first, and a
speed right to a frame over 10 s is still 4 frames off two minutes away."""


def copy_speed(peaks: tuple[np.ndarray, np.ndarray], other: tuple[np.ndarray, np.ndarray], from_frame: int,
               shift_frames: int, settings: MatchSettings) -> tuple[float, int] | None:
    """The speed at which `other` plays `peaks` (two transfers of a recording, up to `copy_max_duration_ratio`
    apart), and the step off `shift_frames` (within the vote's tolerance) that lines them up, read around
    `from_frame` (a frame of `peaks` known to lie at `from_frame` + `shift_frames` in `other`, within that
    tolerance); None when at no speed they share `copy_min_shared_peaks` of the peaks there. The speed comes from
    the peaks: the files' lengths tell it only as well as both start and end with the music (a lead-in of silence,
    a cut fade, a last second missing each move it by more than a frame a minute).

    A probe holding fewer than `COPY_MIN_PEAKS_WHERE_CLIP_PLAYS` peaks (the song's first seconds, a quiet stretch)
    says nothing: the next, wider one searches the whole range. Near either end of a song a probe holds peaks on
    one side of `from_frame` only, where a speed a step or two off and an offset that halves its drift agree as
    well: the middle of such a run of equal bests is kept, and the next probe searches two steps either side."""
    reach, least = settings.vote_tolerance_frames, settings.copy_min_shared_peaks
    around, half_width = 0.0, float(np.log(settings.copy_max_duration_ratio))  # of the speeds tried, in log scale
    found: tuple[float, int] | None = None
    offsets = np.arange(-reach, reach + 1)
    for probe_frames in SPEED_PROBE_FRAMES:
        near = peaks_between(peaks, from_frame - probe_frames, from_frame + probe_frames)
        if near[0].size < COPY_MIN_PEAKS_WHERE_CLIP_PLAYS and probe_frames != SPEED_PROBE_FRAMES[-1]:
            continue
        step = 1.0 / probe_frames  # a frame of drift at the probe's ends
        speeds = np.exp(around + np.linspace(-half_width, half_width, 2 * int(np.ceil(half_width / step)) + 1))
        shares = shared_at_speeds(near, other, from_frame, speeds, shift_frames + offsets)
        if shares.max() < least:
            return None
        speed_at = _middle_of_best(shares.max(axis=1))
        offset = int(offsets[_middle_of_best(shares[speed_at])])
        found = float(speeds[speed_at]), offset
        around, half_width = float(np.log(found[0])), 2 * step
        offsets = np.arange(max(-reach, offset - 1), min(reach, offset + 1) + 1)
    return found


def _middle_of_best(values: np.ndarray) -> int:
    """The index in the middle of the values that equal the largest (a tie's first would lean to one side)."""
    best = np.flatnonzero(values >= values.max() - 1e-12)
    return int(best[best.size // 2])


def shared_at_speeds(peaks: tuple[np.ndarray, np.ndarray], other: tuple[np.ndarray, np.ndarray], from_frame: float,
                     speeds: np.ndarray, shifts_frames: np.ndarray, bin_reach: int = 1) -> np.ndarray:
    """`shared_peaks(played_at(peaks, speed, from_frame), other, shift, bin_reach)` for each speed (rows) and
    shift (columns), in one pass: a search over a grid of them costs one lookup of every peak, not one per
    cell."""
    frames, bins = peaks
    other_frames, other_bins = other
    shares = np.zeros((speeds.size, shifts_frames.size))
    if frames.size == 0 or other_frames.size == 0:
        return shares
    played_frames, played_bins = played_at((frames, bins), speeds[:, None], from_frame)
    moved = played_frames[:, None, :] + shifts_frames[None, :, None]  # (speed, shift, peak)
    inside = (moved >= other_frames[0]) & (moved <= other_frames[-1])
    held_frames, held_bins = peaks_between(other, int(moved.min()) - 1, int(moved.max()) + 2)
    width = int(max(played_bins.max(), held_bins.max(initial=0))) + 1 + 2 * bin_reach
    keys = moved * width + (played_bins + bin_reach)[:, None, :]
    # what each of the other's peaks holds, spread once: one lookup a key, where the keys far outnumber the peaks
    reached = ((held_frames * width + held_bins + bin_reach)[:, None] - _key_steps(width, bin_reach)).ravel()
    held = members(keys, reached) & inside
    counted = inside.sum(axis=-1)
    np.divide(held.sum(axis=-1), counted, out=shares, where=counted > 0)
    return shares


class CopyCheck:
    """Whether a candidate holds another's audio where the clip plays, so that the clip cannot tell them apart and
    either is right: a copy of its recording (a FLAC and an MP3 of it, a compilation's track, a transfer a little
    faster or slower: the two last about as long and share most peaks at the offset their votes imply, or at the
    speed their peaks show, `copy_speed`), a download cut short (one is the other's start), or, with
    `clip_frames`, a file holding that stretch of it (an edit, an excerpt, a mix: each holds at least the share of
    the other's peaks over the stretch the clip covers that copies share over the whole). In the vote they score
    almost alike (`MatchSettings.copy_*`). Each pair and offset is decided once and each song's peaks are read once
    per query; the copies found are kept, per song, in `copies`, and those that start with it (one is the other cut
    short) in `cut_copies` too."""

    def __init__(self, song_peaks: SongPeaks, durations_s: Callable[[list[int]], dict[int, float]],
                 settings: MatchSettings, clip_frames: int = 0):
        self.song_peaks, self.durations_s, self.settings = song_peaks, durations_s, settings
        self.clip_frames = clip_frames
        self.copies: dict[int, set[int]] = {}
        self.cut_copies: dict[int, set[int]] = {}
        self._decided: dict[tuple[int, int, int, int, bool], bool] = {}
        self._peaks: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._lengths: dict[int, float] = {}

    def __call__(self, stronger: Candidate, weaker: Candidate) -> bool:
        """Whether two candidates of the vote are copies: their votes alike, then `same_recording`."""
        low, high = sorted((stronger.score, weaker.score))
        if high <= 0 or low < self.settings.copy_min_score_ratio * high:
            return False
        return self._decided_once(stronger, weaker, where_clip_plays=False)

    def same_recording(self, stronger: Candidate, weaker: Candidate, where_clip_plays: bool = True) -> bool:
        """Whether two candidates hold one recording at the offset their Δt imply, or the stretch the clip plays
        (`clip_frames`), whatever their votes. Under noise two copies' votes differ by chance (one file's pairs
        survive where the other's do not), while their peaks agree with the clip alike: verification, which
        weighs those agreements, asks this. The vote (`__call__`) leaves the clip's stretch to verification: two
        files sharing most but not all of it would otherwise be one candidate before their agreements, which weigh
        the whole clip, could tell them apart."""
        return self._decided_once(stronger, weaker, where_clip_plays)

    def _decided_once(self, stronger: Candidate, weaker: Candidate, where_clip_plays: bool) -> bool:
        # per offset: in repeating music two stages may align copies differently
        key = (stronger.song_id, weaker.song_id, stronger.delta_frames, weaker.delta_frames, where_clip_plays)
        if key not in self._decided:
            self._decided[key] = self._same_recording(stronger, weaker, where_clip_plays)
            if self._decided[key]:
                self.copies.setdefault(stronger.song_id, set()).add(weaker.song_id)
        return self._decided[key]

    def _same_recording(self, stronger: Candidate, weaker: Candidate, where_clip_plays: bool) -> bool:
        ids = [stronger.song_id, weaker.song_id]
        self._lengths.update(self.durations_s([i for i in ids if i not in self._lengths]))
        lengths = [self._lengths.get(i, 0.0) for i in ids]
        if min(lengths) <= 0:
            return False
        self._peaks.update(self.song_peaks([i for i in ids if i not in self._peaks]))
        if not all(i in self._peaks for i in ids):
            return False
        settings, shift = self.settings, weaker.delta_frames - stronger.delta_frames
        if max(lengths) <= settings.copy_max_duration_ratio * min(lengths):  # as long: a copy if it shares most
            peaks = self._peaks[ids[0]]
            if shared_peaks(peaks, self._peaks[ids[1]], shift) >= settings.copy_min_shared_peaks:
                return True
            # or from the same start (a transcode, a retag) where the votes put them apart: in music whose passages
            # return, a short clip's vote may place two copies at two returns of its passage. Then over the whole and
            # where the clip plays in the stronger one: a version that shares the rest but ends otherwise is no copy
            # for a clip of the ending
            if (shift != 0 and self.clip_frames > 0
                    and shared_peaks(peaks, self._peaks[ids[1]], 0) >= settings.copy_min_shared_peaks
                    and self._alike_where_clip_plays(stronger, replace(weaker, delta_frames=stronger.delta_frames))):
                return True
            # or played a little faster or slower (a transfer's speed; PAL's 4 % is past these lengths): at the
            # speed their peaks show around the middle of the clip's stretch of the song (a clip may begin before
            # the song), since at one offset they drift apart (0.2 % over a 4 min song is 30 frames); there the
            # vote places each to its tolerance, not to the frame (and a peak falls between two bins: either one
            # holds it)
            plays_from = max(stronger.delta_frames, 0)
            pivot = (plays_from + max(stronger.delta_frames + self.clip_frames, plays_from)) // 2
            found = copy_speed(peaks, self._peaks[ids[1]], pivot, shift, settings)
            if found is None:
                return False
            speed, step = found
            return shared_peaks(played_at(peaks, speed, pivot), self._peaks[ids[1]], shift + step,
                                bin_reach=1) >= settings.copy_min_shared_peaks
        # one cut short (a partial download): from the same start, each holds the other's peaks where both play, as
        # copies do, throughout; an edit, an extended mix or a medley starts elsewhere or holds other music within
        # that span (a lossy copy misses peaks here and there, an edit every peak past its cut)
        if abs(shift) <= settings.vote_tolerance_frames and all(
                shared_throughout(self._peaks[a], self._peaks[b], step, settings)
                for a, b, step in ((ids[0], ids[1], shift), (ids[1], ids[0], -shift))):
            self.cut_copies.setdefault(ids[0], set()).add(ids[1])
            return True
        if self.clip_frames <= 0 or not where_clip_plays:
            return False
        return self._alike_where_clip_plays(stronger, weaker)

    def _alike_where_clip_plays(self, stronger: Candidate, weaker: Candidate) -> bool:
        """Whether the two hold the same audio where the clip plays, at their Δt: each holds most of the other's
        peaks over that stretch, as copies do (an edit's frames fall between the song's, and its peaks are picked
        anew: 0.75-0.9 of them shared)."""
        shift, minimum = weaker.delta_frames - stronger.delta_frames, self.settings.copy_min_shared_peaks
        stretches = [peaks_between(self._peaks[c.song_id], c.delta_frames - 1, c.delta_frames + self.clip_frames + 1)
                     for c in (stronger, weaker)]
        return (min(s[0].size for s in stretches) >= COPY_MIN_PEAKS_WHERE_CLIP_PLAYS
                and shared_peaks(stretches[0], stretches[1], shift) >= minimum
                and shared_peaks(stretches[1], stretches[0], -shift) >= minimum)


def peaks_between(peaks: tuple[np.ndarray, np.ndarray], first_frame: int, end_frame: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    """The peaks (frames, bins; by frame) in [first_frame, end_frame)."""
    frames, bins = peaks
    start, end = np.searchsorted(frames, [first_frame, end_frame])
    return frames[start:end], bins[start:end]


def without_copies_of_leader(candidates: list[Candidate], is_copy: Callable[[Candidate, Candidate], bool]
                             ) -> list[Candidate]:
    """The candidates with the leader's copies left out, so that the runner-up is another recording. Only the
    candidates ahead of the first close one that is not a copy are looked at: behind it, none is the runner-up."""
    if not candidates:
        return candidates
    leader, rest = candidates[0], list(candidates[1:])
    while rest and is_copy(leader, rest[0]):
        rest.pop(0)
    return [leader, *rest]


def _strongest_other(agreed: list[tuple[float, Candidate]], of: Candidate, lead: float,
                     same_recording: SameRecording | None) -> float:
    """The best z among `agreed` (sorted by falling z, `of` left out) that is not a copy of `of`'s recording. A copy
    is looked for only where it would matter: a z within `lead` of `of`'s."""
    own_z = next(z for z, c in agreed if c.song_id == of.song_id)
    for z, candidate in agreed:
        if candidate.song_id == of.song_id:
            continue
        # a copy by its peaks, not its votes; one that agrees better must hold most of `of`'s peaks as well (an
        # instrumental holds most of its vocal version's peaks, not the other way round)
        # (the whole of it: over the clip's stretch alone the two are alike both ways, and one that agrees better
        # may hold the clip's last seconds where `of` does not)
        if (same_recording is not None and own_z - z < lead and same_recording(of, candidate)
                and (z <= own_z or same_recording(candidate, of, where_clip_plays=False))):
            continue
        return z
    return -np.inf
