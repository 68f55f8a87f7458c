"""Every setting of the landmark engine, as two typed, documented objects.

- `FingerprintSettings` decide what is stored: the index records them (as JSON) and refuses to mix
  fingerprints made with other settings, since a hash only means something next to hashes made the same way.
- `MatchSettings` decide how a query is answered. They are not stored: they can change between two queries
  without re-indexing (`lmprint match --settings FILE` or `--set NAME=VALUE`).

Index side and query side share the spectrogram and hash layout, but the query extracts more peaks and more
pairs per anchor than the index stores (`MatchSettings.query`, "query-side density"). Extra query hashes cost
nothing on disk and raise the chance that every indexed pair of a noisy clip is found.

Where a value was chosen by measurement, its docstring says so briefly; the measurements are in
docs/tuning.md.
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from lmprint.errors import SettingsError


@dataclass(frozen=True)
class Density:
    """How many peaks and pairs one side (index or query) extracts."""

    peaks_per_s: float
    """Peaks kept per second of audio, the strongest by rank within each `peak_block_s` block, split evenly over
    its `frequency_bands` as whole peaks (rounded half to even): the index's 18 keeps 4 a band, at most 16 a
    second; the query's 60 keeps 15."""

    fanout: int
    """Pairs formed per anchor peak: the anchor with each of its next `fanout` peaks in the target zone."""

    neighbourhood_bins: int
    """Half-width in frequency bins of the local-maximum test: a peak is the largest value within ± this many bins."""

    neighbourhood_frames: int
    """Half-width in frames of the local-maximum test."""

    def __post_init__(self) -> None:
        _check_types(self)
        if (not 0 < self.peaks_per_s < math.inf or self.fanout < 1
                or min(self.neighbourhood_bins, self.neighbourhood_frames) < 0):  # inf: no budget an int can hold
            raise SettingsError("need peaks_per_s > 0 and finite, fanout >= 1, and neighbourhood_bins and "
                                "neighbourhood_frames >= 0")


@dataclass(frozen=True)
class FingerprintSettings:
    """What a song's fingerprint is made of; stored in the index. Units are in the names."""

    # --- decoding -------------------------------------------------------------------------------------------
    sample_rate_hz: int = 8000
    """Everything is resampled to this rate. 8 kHz keeps the band a phone microphone passes (300–3400 Hz)."""

    # --- spectrogram ----------------------------------------------------------------------------------------
    fft_size: int = 512
    """Samples per STFT frame: 64 ms at 8 kHz, giving 15.6 Hz bins."""

    hop_size: int = 128
    """Samples between frames: 16 ms at 8 kHz. Offsets and Δt are counted in these frames."""

    min_freq_hz: float = 150.0
    """Peaks below this are ignored: rumble, hum and handling noise live there."""

    max_freq_hz: float = 3800.0
    """Peaks above this are ignored (must be below sample_rate_hz / 2)."""

    # --- peaks ----------------------------------------------------------------------------------------------
    background_frames: int = 31
    """Time span (frames) of the moving average subtracted from the log spectrogram before peak picking, so that
    a peak's prominence does not depend on loudness or on steady noise."""

    background_bins: int = 15
    """Frequency span (bins) of that moving average."""

    min_prominence_db: float = 3.0
    """A peak must stand this far above its local background."""

    dynamic_range_db: float = 45.0
    """A peak must be within this many dB of the loudest bin of its frame: quiet noise beside loud music is
    not music."""

    peak_rank_frames: int = 9
    """Peaks compete for the density budget by the mean of their prominence and their bin's mean prominence over
    this many frames around them (1: by their own prominence). A sustained partial then outranks a brief peak of
    equal height: music holds its notes, a crowd's syllables are short. Chosen by measurement (docs/tuning.md)."""

    peak_block_s: float = 1.0
    """Peak budgets are enforced per block of this length, so density is even along the song."""

    frequency_bands: int = 4
    """The peak budget of a block is split evenly across this many frequency bands (equal widths on a log
    scale), so bass-heavy music still yields peaks higher up, where a phone still hears them."""

    index: Density = field(default_factory=lambda: Density(peaks_per_s=18.0, fanout=2, neighbourhood_bins=5,
                                                           neighbourhood_frames=5))
    """Density of the stored fingerprints; it sets the database size. Many distinct peaks with few pairs each
    survive noise and rooms better than fewer peaks with more pairs, at equal size (docs/tuning.md)."""

    # --- hashes ---------------------------------------------------------------------------------------------
    min_delta_frames: int = 2
    """Smallest Δt between anchor and target peak, in frames (a target zone starting too close to the anchor
    pairs peaks of the same note)."""

    max_delta_frames: int = 63
    """Largest Δt, in frames (6 bits in the hash): about 1 s at 16 ms frames."""

    max_delta_bins: int = 63
    """Largest |Δf| in bins (7 bits signed in the hash)."""

    def __post_init__(self) -> None:
        from .hashes import fits_hash_layout

        _check_types(self)
        if not 0 < self.min_freq_hz < self.max_freq_hz < self.sample_rate_hz / 2:
            raise SettingsError("need 0 < min_freq_hz < max_freq_hz < sample_rate_hz / 2")
        if not 0 < self.hop_size <= self.fft_size:
            raise SettingsError("need 0 < hop_size <= fft_size")
        if not 1 <= self.min_delta_frames <= self.max_delta_frames:
            raise SettingsError("need 1 <= min_delta_frames <= max_delta_frames")
        if not fits_hash_layout(self):
            raise SettingsError("max_delta_frames, max_delta_bins or the highest frequency bin do not fit the "
                                "hash's bit layout (landmark/hashes.py)")

    @property
    def frame_s(self) -> float:
        """Seconds per spectrogram frame."""
        return self.hop_size / self.sample_rate_hz

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> FingerprintSettings:
        """Settings from `to_dict`'s output. Raises SettingsError for an unknown name or a wrong type."""
        return _build(cls, values)

    @classmethod
    def from_stored(cls, text: str) -> FingerprintSettings:
        """The settings an index recorded. Older indexes recorded matching settings beside them, which are
        dropped; a fingerprint setting added since gets the value that reproduces what they stored."""
        values = json.loads(text)
        for name in set(values) & (MATCH_SETTING_NAMES | RETIRED_MATCH_SETTINGS):
            del values[name]
        for added, before in FINGERPRINT_SETTINGS_ADDED.items():
            values.setdefault(added, before)
        return cls.from_dict(values)


@dataclass(frozen=True)
class MatchSettings:
    """How a query is answered; not stored, so changing one needs no re-indexing. Units are in the names."""

    query: Density = field(default_factory=lambda: Density(peaks_per_s=60.0, fanout=20, neighbourhood_bins=3,
                                                           neighbourhood_frames=3))
    """Density of the query fingerprints: over 3× the index's peaks and 10× its pairs per anchor, so that an indexed
    pair is found even when noise has moved its anchor or target down the ranking."""

    min_duration_s: float = 1.0
    """Shorter audio is refused, as a query or as a song to add: it cannot hold enough landmarks to identify
    anything."""

    max_query_s: float = 30.0
    """Only the first this many seconds of a query are decoded and used: 30 s identifies anything that can
    be identified, and a 10-minute query then costs no more than a 30 s one."""

    # --- lookup and vote ------------------------------------------------------------------------------------
    query_delta_tolerance_frames: int = 2
    """The query also looks up each hash with Δt ± this many frames: peak times of a clip cut at an arbitrary
    sample jitter by a frame, and reverberation smears them further."""

    query_retry_tolerance_frames: int = 0
    """When above `query_delta_tolerance_frames`, a query that finds no match is looked up once more with Δt ± this
    many frames (0: no second look). Off: it helps rooms and phones but lets more chance matches through
    (docs/tuning.md)."""

    query_retry_min_ratio: float = 1.5
    """The second look's winner must score this many times the runner-up's (the first look's: `min_ratio`)."""

    max_postings_read: int = 100_000
    """A query reads at most this many postings, its keys' most likely evidence per posting first
    (`landmark.plan`), so its cost stops growing with the library; 0: no limit. A 5 s clip asks for about 30,000
    postings at 150 songs, all of which this reads, and 1.9 M at 10,000 songs. Chosen by measurement
    (docs/tuning.md)."""

    vote_tolerance_frames: int = 2
    """The score of a song sums the votes in its best Δt bin ± this many frames."""

    rare_hash_scale: float = 0.75
    """A vote weighs log2(1 + K / n) for a hash the index holds n times, with K = this × songs in the index.
    Scaling K with the library keeps weights, and so the thresholds below, steady as it grows."""

    max_votes: int = 20_000_000
    """A query that would cast more votes than this (a pathological, hugely repetitive input) is cut there."""

    min_score: float = 20.0
    """A match by vote needs at least this much aligned weight (a few strong hashes or many common ones)."""

    min_margin: float = 20.0
    """...and must beat the runner-up song by at least this much: chance alignments grow with query density, so
    the lead separates true matches from chance better than a raw score."""

    min_ratio: float = 1.4
    """...and score at least this many times the runner-up's: chance scores grow with the library, and the ratio
    scales with them where a fixed lead would not."""

    # --- verification ---------------------------------------------------------------------------------------
    verify_candidates: int = 80
    """When the vote finds no match, up to this many of the best songs by vote are checked peak by peak
    (`landmark.verify`): single peaks survive noise and rooms far more often than pairs. Under noise a large
    library's chance leaders outvote a song's weak evidence, pushing it down the ranking (21st to 200th at 100,000
    songs); a candidate costs about 0.15–0.25 ms, paid in full by clips that name nothing. Chosen by measurement
    (docs/tuning.md): 320 names a few more noisy clips at 100,000 songs, for 1.2–1.4× the time of clips that name
    nothing; the confidence is calibrated for 80 (refit it with `bench calibrate`: with 320 it understates the
    false-match probability about 1.4× at z 6). 0: the vote alone decides, and no peak is read: no confirmation,
    no verification, no warped search and no measured warp."""

    verify_first_candidates: int = 20
    """Of those, the best this many by vote decide first, and each tier four times deeper (`verify.TIER_GROWTH`: 80,
    then 320 where `verify_candidates` allows) is weighed only when the ones before single out no song: every
    candidate more raises chance's best agreement, and so the lead a song needs, so a song near the top of the vote
    keeps the decision it had."""

    verify_other_offsets: int = 4
    """Verification also reads each candidate at up to this many next-best Δt windows of its vote, keeping the
    best agreement: music repeats, and under noise the best window is often another return of the passage."""

    verify_shift_frames: int = 1
    """The voted offset is also tried ± this many frames, keeping the best: votes fix it only to ± vote
    tolerance."""

    min_vote_agreement_z: float = 2.0
    """A match by vote is checked too: its peaks must agree with the clip with at least this z, else the vote's
    winner is dropped and the candidates are verified."""

    min_agreement_z: float = 6.25
    """A song is verified when the clip's standardised prominence at its peaks sums to this many standard
    deviations above chance."""

    min_agreement_lead: float = 3.0
    """...and leads every other candidate's agreement by this much. Pieces rendered from identical samples on a
    quantised grid share whole passages note for note; a true match stands out from them."""

    confirm_min_ratio: float = 1.25
    """The vote's leader is *confirmed* by verification with less agreement than a song needs alone
    (`confirm_min_z`, `confirm_min_lead`) when it scores at least this many times the runner-up: pairs and single
    peaks then name the same song."""

    confirm_min_z: float = 4.0
    """The agreement z that confirms the vote's leader (see `confirm_min_ratio`)."""

    confirm_close_min_z: float = 5.5
    """The agreement z that confirms the vote's leader when it leads the vote by less than `confirm_min_ratio`:
    single peaks then carry more of the evidence."""

    confirm_min_lead: float = 2.0
    """...and by how much a confirmed leader's z must lead every other candidate's."""

    max_false_match_probability: float = 0.2
    """Each rule that singles a song out (the vote, a confirmation, verification, the warped search's) names it only
    where its false-match probability (`landmark.confidence`) is at most this, else leaves the decision to the
    others. At 0.2 (the chance tails' `tail_share`), at least one kind of its evidence (vote lead, agreement z) must
    reach what only one clip in five of songs the index does not hold reaches: evidence within chance's range on
    both counts (probability 1) is none. Lower: fewer false matches for less recall (docs/design.md,
    "Confidence", has what each keeps). A monitor following a song asks instead whether it goes on (`follow`)."""

    follow_reach_s: float = 0.25
    """A song being followed (`Index.follow`: a monitor's next look at the song it hears) is looked for this far
    either side of where its clock puts it: a rate measured to 0.1 % drifts 0.18 s over three minutes."""

    heard_pause_s: float = 1.0
    """Frames of digital silence this long, where the song's own peaks go on, split where it is heard
    (`Index.heard_span`): the stream paused, and what it holds either side are two plays (through a shorter
    dropout the song plays on). The frames either side of zeros hold some of the sound: 1.5 s of zeros read
    about 0.9 s silent."""

    # --- speed, tempo and pitch (`landmark.warp`) -------------------------------------------------------------
    max_speed_change: float = 0.08
    """A clip that matches nothing as it is, or that its song's peaks barely confirm (z < `min_agreement_z`), is
    searched again as played up to ± this fraction faster or slower, tempo and pitch together (a radio station,
    a DJ's pitch fader, a turntable); 0: not searched. Below 0.3 (`landmark.warp`)."""

    max_tempo_change: float = 0.10
    """...as time-stretched up to ± this fraction, its pitch kept; 0: not searched."""

    max_pitch_change: float = 0.04
    """...and as pitch-shifted up to ± this fraction, its tempo kept; 0: not searched."""

    warp_candidates: int = 20
    """The warped search verifies this many of its vote's leaders (2 at least: its leader is weighed against a
    runner-up): each costs a warp estimate and refinement, some six times what a candidate of the search as
    recorded costs."""

    warp_max_postings_read: int = 100_000
    """The warped search reads at most this many postings, as `max_postings_read` bounds the search as recorded
    (0: no limit). Its query asks about half the keys, and only clips that the search as recorded did not name
    pay for it. It sets how far speed changes are named in a large library: at 100,000 songs this names a quarter
    of clips 5 % fast, and 300,000 three quarters, at some 20 ms more for a clip that names nothing; where noisy
    clips matter more, budget moved from it to the search as recorded names more of them (docs/tuning.md,
    2026-12-07)."""

    warp_fanout: int = 2
    """Pairs per anchor of the clip's index-density peaks that the warped search hashes again at each factor."""

    # --- copies of one recording ----------------------------------------------------------------------------
    copy_min_score_ratio: float = 0.8
    """Two candidates may be copies of one recording (a FLAC and an MP3 of it, a compilation's track) when the
    weaker scores at least this share of the stronger's: copies line up with a clip almost equally."""

    copy_max_duration_ratio: float = 1.02
    """...their durations differ by at most this factor (a transfer up to 2 % fast or slow, or a little more or
    less silence; for one cut short, see `copy_cut_max_unshared_peaks`)..."""

    copy_min_shared_peaks: float = 0.5
    """...and this share of the stronger's stored peaks, moved by the difference of their voted offsets, are the
    weaker's too (same bin, ± 1 frame), over the frames both cover; for copies at different speeds, at the speed
    their lengths imply (a bin either side, as peaks fall between bins). Copies share most peaks (0.57-0.83 at
    0.3-2 % apart); two different songs share about 0.4 % by chance (3 % with a bin either side). Copies count as
    one candidate, so they never tie with each other."""

    copy_cut_max_unshared_peaks: int = 20
    """Files of different lengths are copies when one is the other cut short (a partial download): they start
    together (offsets within `vote_tolerance_frames`), each holds `copy_min_shared_peaks` of the other's where both
    play, and neither leaves more than this many of the other's peaks in a row unheld (about a second of music at
    the index's density). Lossy cuts of the corpus's songs leave at most 13 in a row, radio edits that skip 1-5 s
    24 or more (every peak past the skip until chance holds one): a share alone cannot tell a lossy cut (0.79-0.99
    of the corpus's peaks shared, 0.64-0.94 of generated songs') from an edit that skips a few seconds near its
    end (0.86). The whole file is named, whichever led."""

    def __post_init__(self) -> None:
        _check_types(self)
        if not all(0 <= change < MAX_WARP for change in (self.max_speed_change, self.max_tempo_change,
                                                          self.max_pitch_change)):
            raise SettingsError(f"max_speed_change, max_tempo_change and max_pitch_change must be in [0, {MAX_WARP})")
        if self.warp_fanout < 1:
            raise SettingsError("warp_fanout must be at least 1")
        negative = [name for name in COUNTS_AND_REACHES if getattr(self, name) < 0]
        if negative:
            raise SettingsError(f"{', '.join(negative)} must be at least 0")
        for name in ("max_query_s", "rare_hash_scale"):  # no clip, or votes that weigh nothing (or less)
            if getattr(self, name) <= 0:
                raise SettingsError(f"{name} must be more than 0")
        infinite = [(item.name, value) for item in dataclasses.fields(self)
                    if isinstance(value := getattr(self, item.name), float) and math.isinf(value)]
        if infinite:  # a threshold, a reach or a length of inf makes every rule pass or fail alike, or no buffer fit
            raise SettingsError(f"{infinite[0][0]} must be a finite number, not {infinite[0][1]!r}")
        if not 0 <= self.max_false_match_probability <= 1:
            raise SettingsError("max_false_match_probability must be in [0, 1]")
        if self.max_query_s < self.min_duration_s:  # else every query would be cut to "too short"
            raise SettingsError(f"max_query_s ({self.max_query_s:g} s) must be at least min_duration_s "
                                f"({self.min_duration_s:g} s)")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> MatchSettings:
        """Settings from a mapping such as a settings file's; names left out keep their defaults. Raises
        SettingsError for an unknown name or a wrong type."""
        return _build(cls, values)

    def with_values(self, values: Mapping[str, Any]) -> MatchSettings:
        """A copy with some settings changed; `query` may be given in part, e.g. {"query": {"fanout": 10}}."""
        merged = self.to_dict()
        for name, value in values.items():
            merged[name] = {**merged[name], **value} if name == "query" and isinstance(value, Mapping) else value
        return _build(type(self), merged)


COUNTS_AND_REACHES = ("query_delta_tolerance_frames", "query_retry_tolerance_frames", "max_postings_read",
                      "vote_tolerance_frames", "max_votes", "verify_candidates", "verify_first_candidates",
                      "verify_other_offsets", "verify_shift_frames", "warp_candidates", "warp_max_postings_read",
                      "follow_reach_s", "heard_pause_s", "copy_cut_max_unshared_peaks", "min_duration_s")
"""Matching settings that count something, or reach or last some frames or seconds: never below 0 (a negative
tolerance would borrow across the fields of a packed vote key)."""

MAX_WARP = 0.3
"""The widest speed, tempo or pitch change a query may search: beyond it a hash's target zone no longer holds
its pairs (a Δt of 63 frames at 0.7 is 90) and the search is a different one."""

MATCH_SETTING_NAMES = frozenset(f.name for f in dataclasses.fields(MatchSettings))
RETIRED_MATCH_SETTINGS = frozenset({"verify_tolerance_frames", "verify_tolerance_bins", "shortlist_per_offset"})
"""Matching settings of earlier versions, still in the settings some indexes recorded; ignored when opened."""

FINGERPRINT_SETTINGS_ADDED = {"peak_rank_frames": 1}
"""Fingerprint settings added since the first index schema, with the value that reproduces what earlier versions
stored: an index that did not record one was built that way, and its queries must be fingerprinted alike."""


def _build(cls: type, values: Mapping[str, Any]) -> Any:
    """`cls(**values)`, with `Density` fields built from mappings and unknown names refused in one line."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise SettingsError(f"unknown setting {unknown[0]!r} (known: {', '.join(sorted(known))})")
    built = dict(values)
    for name, value in values.items():
        if isinstance(value, Mapping):
            try:
                built[name] = _build(Density, value)
            except SettingsError as error:
                raise SettingsError(f"{name}: {error}") from None
    try:
        return cls(**built)
    except TypeError as error:  # a Density's field left out, or a table where a value belongs
        raise SettingsError(str(error)) from None


def _check_types(settings: object) -> None:
    """Refuse a value of the wrong type (an int is accepted where a float is asked)."""
    hints = typing.get_type_hints(type(settings))
    for item in dataclasses.fields(settings):  # type: ignore[arg-type]
        value, wanted = getattr(settings, item.name), hints[item.name]
        ok = isinstance(value, wanted) and not (isinstance(value, bool) and wanted is not bool)
        if wanted is float and isinstance(value, int) and not isinstance(value, bool):
            ok = True
        if not ok and wanted is Density:  # a table of its own fields, not a value
            fields = [f.name for f in dataclasses.fields(Density)]
            raise SettingsError(f"{item.name} is a table of {', '.join(fields[:-1])} and {fields[-1]}, not "
                                f"{_shown(value)} (one of them: {item.name}.fanout)")
        if not ok:
            raise SettingsError(f"{item.name} must be {_kind(wanted)}, not {_shown(value)}")
        if wanted is float and math.isnan(value):  # compares false with everything: every rule would pass or fail
            raise SettingsError(f"{item.name} must be a number, not {value!r}")


def _kind(wanted: type) -> str:
    """A type as a settings file names its values."""
    return {int: "a whole number", float: "a number", bool: "true or false", str: "text"}.get(wanted, wanted.__name__)


def _shown(value: object) -> str:
    """A value as a settings file or `--set` writes it: `true`, `null`, `"text"`, `3.5`."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)  # nan, inf, -inf, as typed
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)
