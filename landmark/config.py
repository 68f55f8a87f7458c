"""Every setting of the landmark engine, in one typed, documented object.

The index stores the `Config` it was built with (as JSON) and refuses to mix fingerprints made with other
settings: a hash only means something next to hashes made the same way.

Index side and query side share the spectrogram and hash layout, but the query extracts more peaks and more
pairs per anchor than the index stores ("query-side density"). Extra query hashes cost nothing on disk and
raise the chance that every indexed pair of a noisy clip is found.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Density:
    """How many peaks and pairs one side (index or query) extracts."""

    peaks_per_s: float
    """Peaks kept per second of audio, the strongest by prominence within each `peak_block_s` block."""

    fanout: int
    """Pairs formed per anchor peak: the anchor with each of its next `fanout` peaks in the target zone."""

    neighbourhood_bins: int
    """Half-width in frequency bins of the local-maximum test: a peak is the largest value within ± this many bins."""

    neighbourhood_frames: int
    """Half-width in frames of the local-maximum test."""


@dataclass(frozen=True)
class Config:
    """Landmark fingerprint settings. Units are in the names: `_hz`, `_s`, `_bins`, `_frames`, `_db`."""

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
    """Time span (frames) of the moving average subtracted from the log spectrogram before peak picking.
    Subtracting a local background makes peak prominence independent of loudness and of steady noise."""

    background_bins: int = 15
    """Frequency span (bins) of that moving average."""

    min_prominence_db: float = 3.0
    """A peak must stand this far above its local background."""

    dynamic_range_db: float = 45.0
    """A peak must be within this many dB of the loudest bin of its frame: quiet noise beside loud music is
    not music."""

    peak_rank_frames: int = 9
    """Peaks compete for the density budget by the mean of their prominence and their bin's mean prominence over
    this many frames around them (1: by their prominence alone, as in indexes made before this setting). A
    sustained partial then outranks a brief peak of equal height: music holds its notes, while a crowd's syllables
    are short and its harmonics glide. Measured (README, "Tuning"; calibration clips, index and query ranked
    alike): babble at 0 dB 0.77 → 0.83, ambient 0.96 → 0.99, reverb 0.98 → 0.97, phone 0.85 → 0.84, and no clip
    of a song not in the index matched (4 of 576 before); 5 frames gave babble 0.78, 13 frames 0.83."""

    peak_block_s: float = 1.0
    """Peak budgets are enforced per block of this length, so density is even along the song."""

    frequency_bands: int = 4
    """The peak budget of a block is split evenly across this many frequency bands (equal widths on a log
    scale), so bass-heavy music still yields peaks higher up, where a phone still hears them."""

    index: Density = field(default_factory=lambda: Density(peaks_per_s=18.0, fanout=2, neighbourhood_bins=5,
                                                           neighbourhood_frames=5))
    """Density of the stored fingerprints; it sets the database size. Measured (README, "Tuning"): more distinct
    peaks with fewer pairs each survive noise and reverb better than fewer peaks with more pairs, at equal size;
    at 18 peaks/s (against 12 with a ±6 neighbourhood, before postings were stored as gaps) phone recall rose
    0.52 → 0.64 and reverb 0.76 → 0.90 at the same false-match rate, for 124 instead of 95 B/s."""

    query: Density = field(default_factory=lambda: Density(peaks_per_s=60.0, fanout=20, neighbourhood_bins=3,
                                                           neighbourhood_frames=3))
    """Density of the query fingerprints: over 3× the index's peaks and 10× its pairs per anchor, so that an indexed
    pair is found even when noise has moved its anchor or target down the ranking."""

    # --- hashes ---------------------------------------------------------------------------------------------
    min_delta_frames: int = 2
    """Smallest Δt between anchor and target peak, in frames (a target zone starting too close to the anchor
    pairs peaks of the same note)."""

    max_delta_frames: int = 63
    """Largest Δt, in frames (6 bits in the hash): about 1 s at 16 ms frames."""

    max_delta_bins: int = 63
    """Largest |Δf| in bins (7 bits signed in the hash)."""

    # --- matching -------------------------------------------------------------------------------------------
    query_delta_tolerance_frames: int = 2
    """The query also looks up each hash with Δt ± this many frames, because peak times of a clip cut at an
    arbitrary sample jitter by a frame, and reverberation smears them further, changing Δt of a pair."""

    query_retry_tolerance_frames: int = 0
    """When above `query_delta_tolerance_frames`, a query that finds no match is looked up once more with Δt ± this
    many frames (4 is the measured choice; 0: no second look). Rooms and phone speakers smear peaks further than
    ± 2 frames. Off by default: on the bench (README, "Tuning") a second look at ± 4 raised phone 0.55 → 0.62 and
    reverb 0.81 → 0.87, but false matches rose 0.35 % → 1.04 % and the median query 26 → 34 ms, over two
    targets."""

    query_retry_min_ratio: float = 1.5
    """The second look's winner must score this many times the runner-up's (the first look's: `min_ratio`). A
    second look is a second chance for chance alignments too; with the stricter ratio, held-out clips pass as
    rarely as with one look: 4 of 640 at 134 songs, 6 of 640 at 10,000 (with 1.4: 5 and 7)."""

    vote_tolerance_frames: int = 2
    """The score of a song sums the votes in its best Δt bin ± this many frames."""

    rare_hash_scale: float = 0.75
    """A vote weighs log2(1 + K / n) for a hash the index holds n times, with K = this × songs in the index:
    about 6.7 for a hash stored once in 134 songs, under 0.1 for one stored in every song. Scaling K with the
    library keeps weights, and so the thresholds below, steady as it grows. Measured (README, "Tuning"): top-1
    through a phone in a room rose from 0.72 to 0.90 against unweighted counting."""

    min_score: float = 20.0
    """A match needs at least this much aligned weight (a few strong hashes or many common ones)."""

    min_margin: float = 20.0
    """...and must beat the runner-up song by at least this much. Chance alignments grow with query density, so
    the lead over the runner-up separates true matches from chance better than a raw score. Chosen from 640 clips
    of songs not in the index (clean, noisy, reverberant, phone, MP3): 4 of them (0.6 %) reach a lead of 20."""

    min_ratio: float = 1.4
    """...and score at least this many times the runner-up's. Chance scores grow with the library (more songs to
    line up by chance with), so a fixed lead lets more chance matches through in a large one: on the same 640
    clips against 10,000 songs, a lead of 20 passed 3.3 % of them. The ratio scales with the runner-up: with it,
    0.5 % pass at 134 songs and 0.9 % at 10,000, at almost no cost in recall (README, "Tuning"; measured with the
    12 peaks/s index; at 18 peaks/s, 0.6 % at 134 songs and 2 of 288 bench clips at 10,000)."""

    verify_candidates: int = 20
    """When the vote finds no match, the best `verify_candidates` songs by vote are checked peak by peak
    (`landmark.verify`): the clip's prominence at each of a song's stored peaks under it, at its voted offset.
    Voting needs both peaks of a pair to survive; verification reads single peaks, whose energy survives noise and
    rooms far more often. The true song is among the top 10 by vote for 0.89 of babble clips at 0 dB (top 5: 0.84)
    and 0.99 of phone clips, but first and clear of the runner-up for only 0.54 and 0.64 of them. Verifying 10
    instead of 5 raised babble 0.75 → 0.78 on the calibration clips, and 20 instead of 10 bench babble 0.851 →
    0.866 (two clips whose song the vote ranked 16th agree with z ≈ 10), with no clip of a song not in the index
    passing; a candidate costs a decode of its peaks (0.15 ms). 0: no verification."""

    verify_other_offsets: int = 4
    """Verification also reads each candidate's peaks at up to this many next-best Δt windows of its vote
    (`Candidate.other_deltas`), keeping the best agreement. Music repeats: under a phone or a room the true song's
    best window is often another return of the passage, or chance, and its peaks agree at a weaker window instead
    (one bench clip: z 1.2 at the voted offset, 8.1 two seconds later). Measured on the bench split (README,
    "Tuning"): reverb + 4 clips of 134, babble and ambient + 1, no clip of a song not in the index added; with the
    close-vote confirmation below, the phone clips it finds pass too."""

    min_vote_agreement_z: float = 2.0
    """A match by vote is checked too: its peaks must agree with the clip with at least this z (`verify.agrees`),
    else the vote's winner is dropped and the candidates are verified. Of 1,458 true matches by vote on the
    calibration clips and MIDI renders none agreed below 2.4; of the 10 wrong songs and false matches the vote
    made there, 6 agreed below 2 (README, "Tuning"). 3 would stop the two held-out clips that pass the vote at
    10,000 songs (z 2.7 and 2.9, vote ratios 1.4–1.5), but on real music that is not in `../shared` true matches
    by vote agree at 2.4–2.9 too, at ratios of 1.6–2.6: it cost 3 of the 612 clips of two such runs."""

    verify_shift_frames: int = 1
    """The voted offset is also tried ± this many frames, keeping the best: votes fix it only to ± vote
    tolerance."""

    min_agreement_z: float = 6.25
    """A song is verified when the clip's standardised prominence at its peaks sums to this many standard
    deviations above chance (`landmark.verify`). Chosen on the calibration clips (README, "Tuning"): of the 6,441
    wrong candidates among the top 5 of all 1,444 clips, 4 reach 6.25 (14 reach 5.5); the best of the 640 clips
    of songs not in the index reaches 5.9. With `min_agreement_lead` (4), over 5 candidates (vote alone → with
    verification): babble 0.54 → 0.75, ambient 0.90 → 0.94, phone 0.64 → 0.79, reverb 0.90 → 0.93."""

    min_agreement_lead: float = 3.0
    """...and lead every other candidate's agreement by this much. Pieces rendered with identical instrument
    samples on a quantised grid (MIDI renders, much electronic music) share whole passages note for note: such a
    clip agrees with several songs of its ensemble at once, where a true match stands out. A wrong name costs a
    user more than no name: without the lead, the earlier local-maximum test verified 16 clips of the 81 of
    unindexed MIDI renders (the vote alone: 4). With prominence and the confirmation rules below, 3 instead of 4
    gives bench phone + 3 clips and babble + 2, at one more MIDI clip (README, "Tuning")."""

    confirm_min_ratio: float = 1.25
    """The vote's leader is *confirmed* by verification with less agreement than a song needs alone
    (`confirm_min_z`, `confirm_min_lead`) when it scores at least this many times the runner-up: pairs and single
    peaks then name the same song. Through a phone in a room the true song leads the vote in 0.93 of calibration
    clips but by too little (often a ratio of 1.3–1.4) to match by vote, and its peaks agree with z 4–6, below
    `min_agreement_z`. Chosen on the calibration clips (README, "Tuning"): phone 0.79 → 0.85, reverb 0.93 → 0.98,
    ambient 0.94 → 0.96, and no clip of the 576 of songs not in the index passes that did not already; results
    hold for a ratio of 1.2–1.3 and a z of 3.5–4."""

    confirm_min_z: float = 4.0
    """The agreement z that confirms the vote's leader (see `confirm_min_ratio`)."""

    confirm_close_min_z: float = 5.5
    """The agreement z that confirms the vote's leader when it leads the vote by less than `confirm_min_ratio`:
    single peaks then carry more of the evidence, still short of what a song needs alone (`min_agreement_z`).
    Through a phone the true song leads many clips by a ratio of only 1.05–1.2 and agrees with z 5–7. Measured
    (README, "Tuning"): bench phone + 4 clips of 134, babble + 2; calibration phone + 5, and one held-out clip of
    640 passes (z 5.8, two unrelated tracks of one soundtrack); at 10,000 songs phone + 7, none passes."""

    confirm_min_lead: float = 2.0
    """...and by how much it must lead every other candidate's z. With 1.5, one clip of an unindexed MIDI render
    (a Haydn movement, taken for another movement of the same quartet, which the vote alone also confuses) was
    confirmed; 2.0 stops it, costing one babble clip of 134 on the calibration clips."""

    min_duration_s: float = 1.0
    """Shorter inputs are refused: they cannot hold enough landmarks to identify anything."""

    max_query_s: float = 30.0
    """Only the first this many seconds of a query are used (and decoded): 30 s identifies anything that can
    be identified, and a 10-minute query then costs no more than a 30 s one."""

    # --- helpers --------------------------------------------------------------------------------------------
    @property
    def frame_s(self) -> float:
        """Seconds per spectrogram frame."""
        return self.hop_size / self.sample_rate_hz

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Config":
        values = json.loads(text)
        for retired in RETIRED_MATCHING_SETTINGS:
            values.pop(retired, None)
        for added, before in FINGERPRINT_SETTINGS_ADDED.items():
            values.setdefault(added, before)
        for side in ("index", "query"):
            values[side] = Density(**values[side])
        return cls(**values)

    def with_overrides(self, overrides: dict) -> "Config":
        """A copy with some settings changed, e.g. {"min_margin": 7, "index": {"fanout": 3}} (JSON-friendly)."""
        values = {}
        for key, value in overrides.items():
            if key not in {f.name for f in dataclasses.fields(self)}:
                raise ValueError(f"unknown setting {key!r}")
            values[key] = dataclasses.replace(getattr(self, key), **value) if key in ("index", "query") else value
        return dataclasses.replace(self, **values)

    def fingerprint_settings(self) -> dict:
        """The settings that decide what is stored; two indexes with equal settings hold comparable hashes."""
        values = dataclasses.asdict(self)
        for key in MATCHING_SETTINGS:
            values.pop(key)
        return values

    def with_matching_settings_of(self, other: "Config") -> "Config":
        """These fingerprint settings with `other`'s matching settings: an index keeps the settings it was built
        with, and takes the matcher's from the lmprint reading it, so a better matcher applies to old indexes."""
        return dataclasses.replace(self, **{key: getattr(other, key) for key in MATCHING_SETTINGS})


MATCHING_SETTINGS = ("query", "query_delta_tolerance_frames", "query_retry_tolerance_frames",
                     "query_retry_min_ratio", "vote_tolerance_frames", "rare_hash_scale", "min_score", "min_margin",
                     "min_ratio", "verify_candidates", "min_vote_agreement_z", "verify_shift_frames",
                     "verify_other_offsets", "min_agreement_z", "min_agreement_lead", "confirm_min_ratio",
                     "confirm_min_z", "confirm_close_min_z", "confirm_min_lead", "min_duration_s", "max_query_s")
"""Settings used only when matching: they can change without re-indexing."""

RETIRED_MATCHING_SETTINGS = ("verify_tolerance_frames", "verify_tolerance_bins")
"""Matching settings of earlier versions, still in the settings an index recorded; ignored when it is opened."""

FINGERPRINT_SETTINGS_ADDED = {"peak_rank_frames": 1}
"""Fingerprint settings added since the first index schema, with the value that reproduces what earlier versions
stored: an index that did not record one was built that way, and its queries must be fingerprinted alike."""
