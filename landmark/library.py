"""`Index`: the landmark engine's API, behind the `lmprint` commands (add, match, remove, stats)."""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from lmprint.catalogue import BUSY_TIMEOUT_S, Catalogue, song_list
from lmprint.errors import REBUILD, AudioError, CannotWrite, IndexFileError, IndexLocked, SettingsError
from lmprint.files import find_audio_files, unstorable_name
from lmprint.moves import follow_before_adding, followed, recorder, settle_paths
from lmprint.results import AddReport, Answer, Contender, Match, Outcome, Song
from lmprint.samples import at_engine_rate, mono_samples
from lmprint.workers import checked_jobs

from . import audio, vote, warp
from .batch import SongFingerprint, fingerprint_song, fingerprint_songs
from .confidence import CALIBRATION
from .fingerprint import Fingerprint, fingerprint, prominence_map
from .settings import FingerprintSettings, MatchSettings
from .store import PeakStore, PostingStore, SongPostings, SQLitePostingStore
from .verify import (
    CopyCheck,
    ProminenceMap,
    SongPeaks,
    agreement,
    agreement_at,
    agreements,
    confirms_vote,
    heard_span,
    remembered,
    verify,
    within_chance_bound,
    without_copies_of_leader,
)

if TYPE_CHECKING:  # imported where used: `match` never needs it, and a cold start pays for each import
    from . import dedup

SETTINGS_KEY = "config"
"""The `meta` key under which an index records its `FingerprintSettings` (JSON)."""

COMPACT_AFTER_CHANGE = 0.2
"""`add` and `remove` compact the index (its segments merged into one, `SQLitePostingStore.compact`; the file,
`Catalogue.compact`) after a batch that added or removed at least this fraction of the audio now indexed: a bulk
add then leaves one segment and a file about 10 % smaller, removing songs gives the space back, and small changes
to a large index stay cheap."""


def _copies_voted_apart(best: vote.Candidate, candidates: list[vote.Candidate], is_copy: CopyCheck) -> None:
    """Add to `is_copy.copies` the files of the named song's recording that the vote ranked behind it by more
    than copies' votes differ (`copy_min_score_ratio`), read by their peaks where the clip plays, from the
    best-voted other song on, until one is another recording: two identical files split a rare key's weight
    between them, so a third file of it, lossy, can outvote both by a third. They are listed as its copies, and
    the runner-up is the nearest other recording. Whether the song is named, and its confidence, stay as voted."""
    for candidate in candidates:
        if candidate.song_id != best.song_id and candidate.song_id not in is_copy.copies.get(best.song_id, set()):
            if not is_copy.same_recording(best, candidate):
                return


@dataclass
class _Decision:
    """What `Index._decide` found: the song named (None: no match), how (`Match.decided_by`), its peaks'
    agreement z (None where not read), the warp the warped search found it at, the ranked candidates behind it,
    and the clip's prominence map (None without verification)."""

    best: vote.Candidate | None
    decided_by: str
    z: float | None
    found_warp: warp.Warp | None
    candidates: list[vote.Candidate]
    clip: ProminenceMap | None


class Index:
    """A landmark index in an lmprint index file. `Index(path, create=True)` makes the file if it does not exist.

    `fingerprint` is checked against the settings the file was built with (None: take the file's); `matching`
    applies to this reader's queries only (None: the defaults). `postings` makes the posting store from the
    opened catalogue (None: the embedded one, in the file and the segments beside it); any `PostingStore`
    will do, such as a distributed one. `busy_timeout_s`: how long a read or write waits for another process's
    lock before it gives up (`IndexLocked`)."""

    name = "landmark"

    def __init__(self, path: str | os.PathLike, *, create: bool = False,
                 fingerprint: FingerprintSettings | None = None, matching: MatchSettings | None = None,
                 postings: Callable[[Catalogue], PostingStore] | None = None, busy_timeout_s: float = BUSY_TIMEOUT_S):
        self.catalogue = Catalogue(path, create=create, busy_timeout_s=busy_timeout_s)
        try:
            self.fingerprint_settings = self._settings(fingerprint, create)
            self.postings: PostingStore = (postings or SQLitePostingStore)(self.catalogue)
        except BaseException:
            self.catalogue.close()
            raise
        self.matching = matching or MatchSettings()
        self.peaks = PeakStore(self.catalogue)

    def _settings(self, wanted: FingerprintSettings | None, create: bool) -> FingerprintSettings:
        """The fingerprint settings the file records, after creating this engine's tables if they are missing."""
        catalogue = self.catalogue
        recorded = catalogue.meta(SETTINGS_KEY) is not None
        # a new file, or one of schema 3 (no peaks table), made current; where it cannot be written, read as it
        # is (its songs named by their vote alone, as once upgraded)
        if not recorded or not (catalogue.has_table("peaks") or catalogue.read_only):
            if not recorded and not create:
                raise IndexFileError(f"{catalogue.path} holds no landmark fingerprints yet (add songs with "
                                     "`lmprint add`)")
            with catalogue.write():
                # as of this transaction: another process may have upgraded it, or created it and added songs
                upgraded = (catalogue.meta(SETTINGS_KEY) is not None and not catalogue.has_table("peaks")
                            and catalogue.song_count())
                if catalogue.meta(SETTINGS_KEY) is None:
                    catalogue.set_meta(SETTINGS_KEY, (wanted or FingerprintSettings()).to_json())
                SQLitePostingStore.create(catalogue)
                PeakStore.create(catalogue)
                catalogue.mark_current_schema()
            if upgraded:  # said once: the file is of the current schema now
                logging.getLogger("lmprint").warning(
                    "%s: upgraded from an older lmprint; its %d songs have no stored peaks, so they are named by "
                    "their vote alone, without the check of their peaks that confirms a match under noise and tells "
                    "two files of one recording apart: for that, %s",
                    catalogue.path, upgraded, REBUILD)
        try:
            stored = FingerprintSettings.from_stored(catalogue.meta(SETTINGS_KEY) or "")
        except (ValueError, SettingsError):
            raise IndexFileError(f"{catalogue.path} holds fingerprint settings this lmprint does not know "
                                 "(made by a newer version?)") from None
        if wanted is not None and wanted != stored:
            raise IndexFileError(f"{catalogue.path} was built with other fingerprint settings; "
                                 "fingerprints made with different settings cannot be mixed")
        return stored

    @property
    def sample_rate_hz(self) -> int:
        """The rate `match_samples` expects."""
        return self.fingerprint_settings.sample_rate_hz

    def close(self) -> None:
        """Unmap the postings and close the file; the index is not used after."""
        self.postings.close()
        self.catalogue.close()

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- add --------------------------------------------------------------------------------------------------
    def add(self, paths: str | os.PathLike | Iterable[str | os.PathLike], jobs: int = 1,
            on_outcome: Callable[[Outcome], None] | None = None) -> AddReport:
        """Index every audio file in `paths` (files and folders, recursively; one path or several), skipping
        content already indexed. Content indexed under a path that is gone is recorded as moved to the new path. A
        path that now holds other content (a retagged or re-encoded file) is indexed again; once the batch is done,
        the entry its old content left there moves to wherever the batch found that content, or is removed.

        Each song is committed on its own, so an interrupted batch keeps every song finished before it.
        `on_outcome` is called once per file, e.g. to report errors as they happen.
        """
        jobs = checked_jobs(jobs)
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        report = AddReport()
        record = recorder(self.catalogue, report, on_outcome)

        todo = []
        for path, error in find_audio_files(paths):
            error = error or unstorable_name(path)
            if error:
                record(Outcome(path, error=error))
            else:
                todo.append(path)
        known = frozenset(row[0] for row in self.catalogue.read("SELECT content_sha1 FROM songs WHERE n_hashes > 0"))
        content_at: dict[str, str] = {}  # path → the content this batch found there
        for outcome, song in fingerprint_songs(todo, self.fingerprint_settings, self.matching.min_duration_s,
                                               jobs=jobs, known_sha1=known):
            if song is None and outcome.skipped and outcome.content_sha1 and not self._indexed(outcome.content_sha1):
                # indexed when the batch began, removed since (a `prune` or `remove` meanwhile): indexed anew
                outcome, song = fingerprint_song(outcome.path, self.fingerprint_settings, self.matching.min_duration_s)
            if song is None:
                if outcome.content_sha1:
                    content_at[outcome.path] = outcome.content_sha1
                record(followed(self.catalogue, outcome, audio.title_of))
                continue
            content_at[song.path] = song.content_sha1
            if not self._indexed(song.content_sha1):  # the MERT engine's entry of it, if any, follows it first
                follow_before_adding(self.catalogue, song.path, song.content_sha1, audio.title_of)
            song_id = self.add_fingerprint(song)
            if song_id is None:  # the same content earlier in this batch
                skipped = Outcome(song.path, skipped=True, content_sha1=song.content_sha1)
                record(followed(self.catalogue, skipped, audio.title_of))
            else:  # its id as stored, not looked up again (`identified`)
                record(replace(outcome, content_sha1=song.content_sha1, song_id=song_id), song.duration_s)
        report.replaced = settle_paths(self.catalogue, content_at, self.remove, audio.title_of, record, on_outcome)
        note = self._compact_after_change(report.audio_s)
        if note is not None:
            report.notes.append(note)
        return report

    def _indexed(self, content_sha1: str) -> bool:
        """Whether a song of this content has postings now."""
        return bool(self.catalogue.read("SELECT 1 FROM songs WHERE content_sha1=? AND n_hashes > 0", (content_sha1,)))

    def add_fingerprint(self, song: SongFingerprint) -> int | None:
        """Store one fingerprinted song in one transaction: its catalogue row (kept if another engine made it),
        postings and peaks. Its id, or None if its content already has postings."""
        return self.add_fingerprints([song])[0]

    def add_fingerprints(self, songs: Sequence[SongFingerprint]) -> list[int | None]:
        """Store fingerprinted songs in one transaction, all or none (a bulk load: each posting row is appended
        to once per batch, not once per song). Each song's id, or None if its content already has postings."""
        ids: list[int | None] = []
        batch: list[SongPostings] = []
        with self.catalogue.write():
            for song in songs:
                song_id = self.catalogue.add_song(song.path, song.title, song.duration_s, song.content_sha1)
                known = self.catalogue.read("SELECT n_hashes FROM songs WHERE id=?", (song_id,))[0][0] > 0
                if known or song_id in ids:  # the same content twice in one batch
                    ids.append(None)
                    continue
                ids.append(song_id)
                self.catalogue.set_hash_count(song_id, int(song.hashes.size))
                batch.append(SongPostings(song_id, song.hashes, song.anchor_frames))
                if song.peak_frames.size:  # a fingerprint without peaks is matched by vote alone, as schema 3's
                    self.peaks.put(song_id, song.peak_frames, song.peak_bins)
            self.postings.add(batch)
        return ids

    def _compact_after_change(self, changed_audio_s: float) -> str | None:
        """Housekeeping after the change has committed: skipped when another process is writing, or when the disk
        has no room for the merged segment (a nearly full disk meets it here first: a merge writes its postings
        anew before it deletes the old), so that it never fails a change that is made; the next large change
        compacts. Returns a note for the user where there was no room, else None."""
        if changed_audio_s > 0 and changed_audio_s >= COMPACT_AFTER_CHANGE * self.catalogue.audio_s():
            try:
                with self.catalogue.waiting_briefly():
                    self.postings.compact()
            except IndexLocked:
                return None
            except CannotWrite as error:
                return (f"the change is made, but the index could not be compacted ({error.reason}): free some "
                        "space, and the next large change compacts it")
            self.catalogue.compact()
        return None

    # --- match ------------------------------------------------------------------------------------------------
    def match(self, path: audio.AudioSource) -> Match | None:
        """The indexed song that the audio file `path` comes from (a path, or a binary file object holding a whole
        file: an upload's bytes in `io.BytesIO`), or None. Raises AudioError for bad input."""
        return self.match_samples(self._load_query(path).samples)

    def _load_query(self, path: audio.AudioSource) -> audio.Decoded:
        """A query file's first `max_query_s` seconds, at the engine's rate."""
        return audio.decode(path, self.sample_rate_hz, max_duration_s=self.matching.max_query_s)

    def match_samples(self, samples: np.ndarray, sample_rate_hz: float | None = None) -> Match | None:
        """Like `match`, for mono samples (float at full scale 1.0, or integer PCM) at `sample_rate_hz`, resampled
        to the engine's where it differs (None: they are at the engine's, `Index.sample_rate_hz`)."""
        match, _ = self.identify(at_engine_rate(samples, sample_rate_hz, self.sample_rate_hz,
                                                self.matching.max_query_s))
        return match

    def answer(self, path: audio.AudioSource) -> Answer:
        """The match of the audio file `path` and the best-voted songs behind it, best first, with their vote
        scores; and a note when the file is longer than the part matched."""
        decoded = self._load_query(path)
        match, candidates = self.identify(decoded.samples)
        songs = self.catalogue.songs_by_id([c.song_id for c in candidates])
        note = None
        if not decoded.whole:
            length = f"{decoded.declared_s:.0f} s long" if decoded.declared_s else "longer"
            note = (f"{length}: only its first {self.matching.max_query_s:g} s were matched; for every song in a "
                    "long recording, use `lmprint monitor`")
        return Answer(match, tuple(Contender(songs[c.song_id], c.score) for c in candidates if c.song_id in songs),
                      note)

    def identify(self, samples: np.ndarray) -> tuple[Match | None, list[vote.Candidate]]:
        """The decision and the ranked candidates behind it (for diagnostics and the bench)."""
        query = self._fingerprint_query(samples)
        song_peaks = remembered(self.peaks.get)  # the winner's peaks are read to confirm, verify and measure
        assert query.prominence is not None  # a query's fingerprint holds its prominence map
        is_copy = CopyCheck(song_peaks, self._durations_s, self.matching, clip_frames=query.prominence.shape[0])
        decision = self._decide(query, song_peaks, is_copy)
        if decision.best is None:
            return None, decision.candidates
        return self._match_of(decision, query, song_peaks, is_copy), decision.candidates

    def _decide(self, query: Fingerprint, song_peaks: SongPeaks, is_copy: CopyCheck) -> _Decision:
        """Which song the clip holds, if any: the vote's leader where its peaks confirm it, else the candidate
        verification finds, else, where none is found or its peaks barely agree, the warped search's (the clip may
        be played faster or slower)."""
        matching = self.matching
        alignments = self._align(query, matching.query_delta_tolerance_frames)
        candidates = without_copies_of_leader(alignments.top(self._candidate_count), is_copy)
        best = vote.decide(candidates, matching)
        if best is None and matching.query_retry_tolerance_frames > matching.query_delta_tolerance_frames:
            alignments = self._align(query, matching.query_retry_tolerance_frames)
            candidates = without_copies_of_leader(alignments.top(self._candidate_count), is_copy)
            best = vote.decide(candidates, matching, min_ratio=matching.query_retry_min_ratio)
        decision = _Decision(best, "vote", None, None, candidates, None)
        if matching.verify_candidates == 0:
            return decision
        assert query.prominence is not None
        clip = decision.clip = ProminenceMap.of(query.prominence, self.fingerprint_settings)
        if best is not None:
            z = agreement_at(best, clip, song_peaks, matching)
            if not (confirms_vote(z, matching) and within_chance_bound(vote.vote_lead(best, candidates), z, matching)):
                decision.best = None  # the vote lined up pairs, but the song's peaks are not in the clip
            else:
                decision.best, decision.z = self._best_agreeing_copy(
                    best, z, alignments.top(self._candidate_count), is_copy, clip, song_peaks)
        if decision.best is None:
            decision.candidates = without_copies_of_leader(
                alignments.top(self._candidate_count, other_offsets=matching.verify_other_offsets), is_copy)
            decision.best, decision.decided_by = verify(decision.candidates, clip, song_peaks, matching,
                                                        is_copy.same_recording)
            decision.z = None if decision.best is None else agreement_at(decision.best, clip, song_peaks, matching)
        best, z = decision.best, decision.z
        if query.index_peaks is not None and (best is None or (z is not None and z < matching.min_agreement_z)):
            lookup = functools.partial(self._vote, max_postings=matching.warp_max_postings_read)
            warped = warp.identify(*query.index_peaks, clip, lookup, song_peaks, is_copy, self.fingerprint_settings,
                                   matching, max(2, matching.warp_candidates))
            if warped.best is not None and warped.z is not None and (
                    best is None or z is None or warped.z >= z + (
                        0.0 if warped.best.song_id == best.song_id else matching.min_agreement_lead)):
                decision.best, decision.decided_by, decision.z = warped.best, warped.decided_by, warped.z
                decision.found_warp, decision.candidates = warped.warp, warped.candidates
        return decision

    def _match_of(self, decision: _Decision, query: Fingerprint, song_peaks: SongPeaks,
                  is_copy: CopyCheck) -> Match | None:
        """The match the decision names: its warp and start measured from its peaks, its whole file named where
        the vote led with a cut copy, its files and copies, and its confidence. None where its false-match
        probability is over `max_false_match_probability`, or the song was removed meanwhile."""
        matching, best, found_warp = self.matching, decision.best, decision.found_warp
        assert best is not None
        vote_lead = vote.vote_lead(best, decision.candidates, is_copy.copies.get(best.song_id, set()))
        chance = CALIBRATION.false_match_probability(vote_lead, decision.z)
        if chance > matching.max_false_match_probability:
            return None
        _copies_voted_apart(best, decision.candidates, is_copy)
        peaks = song_peaks([best.song_id]).get(best.song_id) if decision.z is not None else None
        if peaks is not None and decision.clip is not None and warp.measured(matching):
            # how fast the clip plays, and its start in the song
            found_warp, start = warp.measure(decision.clip, *peaks, best.delta_frames, matching, around=found_warp,
                                             clip_peaks=query.index_peaks)
            best = vote.Candidate(best.song_id, best.score, start)
        songs = self.catalogue.songs_by_id([best.song_id, *sorted(is_copy.copies.get(best.song_id, ()))])
        song = songs.pop(best.song_id, None)
        if song is None:  # removed between lookup and now
            return None
        whole = max((songs[i] for i in is_copy.cut_copies.get(best.song_id, ()) if i in songs),
                    key=lambda copy: copy.duration_s, default=song)
        if whole.duration_s > matching.copy_max_duration_ratio * song.duration_s:  # the vote led with a cut copy:
            songs[song.id], song = song, songs.pop(whole.id)  # name the whole file (they start together)
        files = self.catalogue.files_of(song)  # its file first (a copy if the file is gone), then its copies
        song_time_s = best.delta_frames * self.fingerprint_settings.frame_s  # at the clip's start; < 0: not begun
        tempo = found_warp.tempo if found_warp is not None else 1.0
        factors = ({} if found_warp is None  # not measured: an index without peaks, or no warp searched
                   else {"speed": found_warp.factor} if found_warp.kind == "speed"
                   else {"tempo": found_warp.tempo, "pitch": found_warp.pitch})
        copy_files = [file for copy in songs.values() for file in self.catalogue.files_of(copy)]  # theirs too
        return Match(files[0], best.score, max(0.0, song_time_s), 1.0 - chance, decision.decided_by,
                     (*files[1:], *copy_files), chance, **factors, lead_in_s=max(0.0, -song_time_s / tempo))

    def _best_agreeing_copy(self, leader: vote.Candidate, z: float | None, ranked: list[vote.Candidate],
                            is_copy: CopyCheck, clip: ProminenceMap, song_peaks: SongPeaks
                            ) -> tuple[vote.Candidate, float | None]:
        """Of the vote's leader and the copies of its recording that it stood for, the one whose peaks agree best
        with the clip, and its z: copies tie in the vote by chance (a FLAC and an MP3 of one song), and the file
        that holds what the clip plays most closely is the one to name, as verification would (its copies then
        listed with it). A file cut short is left to the rule that names the whole one."""
        first, copies = leader, is_copy.copies.get(leader.song_id, set())
        cut = is_copy.cut_copies.get(leader.song_id, set())  # the whole file of those is named, whichever led
        for rival in (c for c in ranked if c.song_id in copies - cut):
            rival_z = agreement_at(rival, clip, song_peaks, self.matching)
            if z is not None and rival_z is not None and rival_z > z:
                leader, z = rival, rival_z
        if leader is not first:  # its copies: the others, the vote's leader among them
            is_copy.copies.setdefault(leader.song_id, set()).update((copies - {leader.song_id}) | {first.song_id})
        return leader, z

    def follow(self, samples: np.ndarray, previous: Match, offset_s: float, min_score: float = 0.0) -> Match | None:
        """`previous`'s song again, if the clip continues it: its stored peaks, played at `previous`'s speed (or
        tempo and pitch), agree with the clip `offset_s` into the song (± `follow_reach_s`) by z ≥
        `min_agreement_z` (the agreement that names a song on its own) and ≥ `min_score`. A monitor following a
        song looks this way first: no lookup and no vote, a few milliseconds where a search takes tens. The match's
        score is that z, its offset `offset_s`. None: the song is not clearly there (search instead)."""
        matching = self.matching
        near = self._song_near(self._usable_query(samples), previous, offset_s)
        song = self.catalogue.songs_by_id([previous.song.id]).get(previous.song.id)
        if near is None or song is None:
            return None
        clip, played, reading = near
        z, _ = agreement(clip, *reading, matching)
        if z < max(matching.min_agreement_z, min_score):
            return None
        # the offset is the clock's: agreement peaks broadly where notes are held, and a vote placed the clock
        chance = CALIBRATION.false_match_probability(0.0, z)
        return Match(song, z, max(0.0, offset_s), 1.0 - chance, "followed", (), chance, previous.speed,
                     previous.tempo, previous.pitch, max(0.0, -offset_s / played.tempo))

    def heard_span(self, samples: np.ndarray, previous: Match, offset_s: float) -> tuple[float, float] | None:
        """Where in the samples (seconds from their start, [first, end)) `previous`'s song is heard, played as
        `previous` heard it and `offset_s` into the song at their start (± `follow_reach_s`): a monitor places a
        song's boundaries with it. None when the song is not clearly heard in them (`verify.heard_span`)."""
        matching, settings = self.matching, self.fingerprint_settings
        audio.check_usable(samples, self.sample_rate_hz, matching.min_duration_s)
        near = self._song_near(samples, previous, offset_s)
        if near is None:
            return None
        clip, played, (song_frames, song_bins, deltas) = near
        _, delta = agreement(clip, song_frames, song_bins, deltas, matching)
        song_end_frame = int(round(previous.song.duration_s / settings.frame_s / played.tempo))
        span = heard_span(clip, song_frames, song_bins, delta, song_end_frame, matching,
                          int(round(matching.heard_pause_s / settings.frame_s)))
        return None if span is None else (span[0] * settings.frame_s, span[1] * settings.frame_s)

    def _song_near(self, samples: np.ndarray, previous: Match, offset_s: float
                   ) -> tuple[ProminenceMap, warp.Warp, tuple[np.ndarray, np.ndarray, list[int]]] | None:
        """What `follow` and `heard_span` read: the samples' prominence map, how `previous` plays its song, and the
        song's stored peaks under the samples `offset_s` into it, with the Δt within ± `follow_reach_s` that read
        them (`warp.reading_near`). None where the song's peaks are not stored."""
        settings = self.fingerprint_settings
        peaks = self.peaks.get([previous.song.id]).get(previous.song.id)
        if peaks is None:
            return None
        played = warp.Warp.played(previous.speed, previous.tempo, previous.pitch)
        clip = ProminenceMap.of(prominence_map(samples, settings), settings)
        return clip, played, warp.reading_near(clip, *peaks, played, offset_s / settings.frame_s,
                                               int(round(self.matching.follow_reach_s / settings.frame_s)),
                                               self.matching)

    def strongest_evidence(self, samples: np.ndarray) -> tuple[float, float | None]:
        """(vote lead, agreement z): the vote leader's lead over the runner-up, and the best agreement among the
        candidates verification would read, whatever the decision. On clips of songs that are not indexed this is
        what chance reaches, which `bench calibrate` measures for `landmark.confidence`."""
        matching = self.matching
        query = self._fingerprint_query(samples)
        is_copy = CopyCheck(self.peaks.get, self._durations_s, matching)
        alignments = self._align(query, matching.query_delta_tolerance_frames)
        candidates = without_copies_of_leader(
            alignments.top(self._candidate_count, other_offsets=matching.verify_other_offsets), is_copy)
        if not candidates:
            return 0.0, None
        lead = vote.vote_lead(candidates[0], candidates)
        assert query.prominence is not None
        clip = ProminenceMap.of(query.prominence, self.fingerprint_settings)
        zs = [z for z, _ in agreements(candidates[:matching.verify_candidates], clip, self.peaks.get, matching)]
        return lead, max(zs, default=None)

    def _usable_query(self, samples: np.ndarray) -> np.ndarray:
        """A query's first `max_query_s` as a decoder gives them (`mono_samples`: samples handed to `match_samples`
        from elsewhere), refused in one line when not mono, too short or silent."""
        samples = mono_samples(samples, limit=int(self.matching.max_query_s * self.sample_rate_hz))
        audio.check_usable(samples, self.sample_rate_hz, self.matching.min_duration_s)
        return samples

    def _fingerprint_query(self, samples: np.ndarray) -> Fingerprint:
        """A query's fingerprint at query density, with its prominence map: its first `max_query_s`, refused in
        one line when too short, silent or featureless."""
        query = fingerprint(self._usable_query(samples), self.fingerprint_settings, self.matching.query,
                            with_prominence=True, index_density=self.fingerprint_settings.index)
        if query.hashes.size == 0:
            raise AudioError("no landmarks found (silent or featureless)")
        return query

    def _durations_s(self, song_ids: list[int]) -> dict[int, float]:
        return {song_id: song.duration_s for song_id, song in self.catalogue.songs_by_id(song_ids).items()}

    def _align(self, query: Fingerprint, tolerance_frames: int) -> vote.Alignments:
        """The query fingerprint's votes per song and Δt, its hashes looked up with Δt ± tolerance_frames."""
        return self._vote(vote.QueryHashes.of(query.hashes, query.anchor_frames, tolerance_frames,
                                              query.pair_kind, query.target_rank))[1]

    def _vote(self, query_hashes: vote.QueryHashes, max_postings: int | None = None
              ) -> tuple[vote.Votes, vote.Alignments]:
        """The votes of a query's hashes and their sums per song and Δt: those of its keys that a budget
        (`max_postings`, else `max_postings_read`) reads, the likeliest evidence per posting first
        (`landmark.plan`)."""
        found = self.postings.lookup(query_hashes.distinct, query_hashes.key_likelihood(),
                                     self.matching.max_postings_read if max_postings is None else max_postings)
        return vote.align(query_hashes, found.key_index, found.song_ids, found.frames, self.postings.song_count(),
                          self.matching)

    @property
    def _candidate_count(self) -> int:
        """How many of the best-voted songs a decision looks at: the runner-up, and those verification reads."""
        return max(2, self.matching.verify_candidates)

    # --- duplicates -------------------------------------------------------------------------------------------
    def overlaps(self, settings: dedup.DedupSettings | None = None) -> list[dedup.Overlap]:
        """The stretches of audio that two indexed songs share, each at its strongest alignment, found by joining
        the index with itself on its rarer keys (`landmark.dedup`): two reads of the postings, never a comparison
        of every pair of songs."""
        from . import dedup

        return self._join(settings or dedup.DedupSettings())[0]

    def duplicates(self, settings: dedup.DedupSettings | None = None) -> dedup.Duplicates:
        """The songs that hold one recording, grouped, and the other stretches of audio songs share
        (`overlaps`)."""
        from . import dedup

        settings = settings or dedup.DedupSettings()
        overlaps, spans_s = self._join(settings)
        return dedup.duplicates(overlaps, spans_s, settings)

    def _join(self, settings: dedup.DedupSettings) -> tuple[list[dedup.Overlap], dict[int, float]]:
        """(overlaps, each song's fingerprinted span in s: its first landmark to its last)."""
        from . import dedup

        song_ids = np.array(sorted(song.id for song in self.catalogue.songs()), np.int64)
        if song_ids.size < 2:
            return [], {}
        bound = dedup.key_size_bound((dedup.key_sizes(hashes) for hashes, _, _ in self.postings.scan()), settings)
        if song_ids.size >= 1 << dedup.SONG_BITS:
            raise IndexFileError(f"dedup handles at most {1 << dedup.SONG_BITS:,} songs")
        song_index = np.full(int(song_ids.max()) + 1, -1, np.int64)
        song_index[song_ids] = np.arange(song_ids.size)
        counts = dedup.SongCounts.of(song_ids.size)
        keys, frames = [], []
        for hashes, songs, song_frames in self.postings.scan():
            listed = songs < song_index.size  # songs added since the list was read wait for the next run
            listed[listed] = song_index[songs[listed]] >= 0
            batch_keys, batch_frames = dedup.pairs_of_batch(hashes[listed], songs[listed], song_frames[listed],
                                                            song_index, bound, counts)
            keys.append(batch_keys)
            frames.append(batch_frames)
        if not keys:  # songs without landmarks (another engine's alone)
            return [], {}
        all_keys, all_frames = np.concatenate(keys), np.concatenate(frames)
        del keys, frames  # the join's pairs are held once
        frame_s = self.fingerprint_settings.frame_s
        spans = np.maximum(counts.last_frame - counts.first_frame + 1, 1)
        # every overlap is read by its peaks, then the strongest of each stretch kept: in music that repeats, a
        # stretch's landmarks line up at other offsets too, and stretch across what the peaks place apart
        found = list(dedup.overlaps_of_pairs(all_keys, all_frames, song_ids, counts.joined / spans, frame_s, settings))
        del all_keys, all_frames
        if settings.max_speed_change > 0:  # copies at another speed, whose hashes the join cannot pair
            lookup = functools.partial(self._vote, max_postings=self.matching.warp_max_postings_read)
            found += dedup.speed_overlaps(song_ids.tolist(), self.peaks.get, lookup, self.fingerprint_settings,
                                          self.matching, settings)
        overlaps = dedup.strongest_per_stretch(dedup.confirmed(found, self.peaks.get, frame_s, settings))
        has_landmarks = counts.last_frame >= 0
        return overlaps, dict(zip(song_ids[has_landmarks].tolist(), (spans[has_landmarks] * frame_s).tolist()))

    # --- remove, stats ----------------------------------------------------------------------------------------
    def remove(self, songs: int | Song | Iterable[int | Song],
               on_removed: Callable[[list[int]], None] | None = None) -> list[int]:
        """Remove songs, by id or as read (`Song`; one, or several): their catalogue rows, postings and peaks,
        and any other engine's data of them. A `Song` is removed only while its row still names the file and
        content it was read with (`Catalogue.still_as_read`). Returns the ids removed; `on_removed` gets them once
        the removal commits, before the compaction a large one starts (which Ctrl-C, or damage inside a segment
        that only reading its postings finds, can stop after the removal is made)."""
        wanted = song_list(songs)
        if not wanted:
            return []
        with self.catalogue.write():
            song_ids = self.catalogue.still_as_read(wanted)
            removed_s = sum(song.duration_s for song in self.catalogue.songs_by_id(song_ids).values())
            self.postings.remove(song_ids)
            self.peaks.remove(song_ids)
            self.catalogue.delete_songs(song_ids)
        if on_removed is not None:
            on_removed(song_ids)
        self._compact_after_change(removed_s)  # skipped for want of room, the removal still stands
        return song_ids

    def stats(self) -> dict:
        """Songs, postings and stored-peak bytes, storage per song and per second of audio, and the settings."""
        n_songs, total_s = self.catalogue.read("SELECT COUNT(*), COALESCE(SUM(duration_s), 0) FROM songs")[0]
        postings = self.postings.stats()
        file_bytes = self.catalogue.file_bytes() + postings["segment_bytes"]  # the file and the segments beside it
        return {
            "path": str(self.catalogue.path),
            "songs": n_songs,
            "duration_s": round(total_s, 1),
            **postings,
            **self.peaks.stats(),
            "file_bytes": file_bytes,
            "file_bytes_per_song": round(file_bytes / n_songs, 1) if n_songs else None,
            "file_bytes_per_audio_s": round(file_bytes / total_s, 1) if total_s else None,
            "schema_version": self.catalogue.schema_version,
            "settings": self.fingerprint_settings.to_dict(),
        }
