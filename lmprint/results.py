"""What the API hands back, whichever engine made it: songs, matches, and the report of an `add` batch."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Song:
    """A row of the songs catalogue."""

    id: int
    path: str
    """The file's absolute path, as it was given to `add`."""
    title: str
    """The file's title tag, else its name without the extension."""
    duration_s: float
    content_sha1: str
    """SHA-1 of the file's bytes: a file already indexed is skipped."""
    n_hashes: int
    """Landmark hashes stored for the song (0 when only another engine has it)."""
    added_at: str
    """UTC time the song was first added, ISO 8601."""

    def to_dict(self) -> dict:
        return {"id": self.id, "path": self.path, "title": self.title, "duration_s": round(self.duration_s, 3),
                "content_sha1": self.content_sha1, "n_hashes": self.n_hashes, "added_at": self.added_at}


@dataclass(frozen=True)
class Match:
    """The song a query was identified as."""

    song: Song
    score: float
    """The engine's own measure of the evidence: the landmark engine's summed weight of aligned hashes (higher is
    better; for a look that followed a song, "followed", its peaks' agreement z), or the MERT engine's Hamming
    distance in bits (lower is better)."""
    offset_s: float | None
    """Where in the song the query starts, in seconds; None when the engine cannot tell (MERT)."""
    confidence: float
    """In [0, 1]. The landmark engine's is 1 − `false_match_probability`, whatever rule decided the match; the
    MERT engine's is its margin over the runner-up, uncalibrated."""
    decided_by: str = ""
    """How the engine decided: the landmark engine's "vote", "confirmed" (the vote's leader, its peaks agreeing),
    "verified" (peaks alone) or "followed" (a monitor's look at the song it follows: `Method.follow`); the MERT
    engine's "hamming"."""
    copies: tuple[Song, ...] = ()
    """The other indexed files that hold what the clip plays: the song's own copies (the same bytes elsewhere, under
    its id), and other songs holding the same recording (another file of it: a FLAC and an MP3, a compilation's
    track, a download cut short) or the stretch the clip covers (an edit, an excerpt, a mix), which count as one
    candidate with the match, so they never tie with it."""
    false_match_probability: float | None = None
    """The chance that a clip of a song the index does not hold brings evidence this strong (`landmark.confidence`);
    None where the engine is not calibrated (MERT)."""
    speed: float | None = None
    """How many times faster than the recording the query plays, tempo and pitch together (1.0: as recorded);
    None where the engine cannot tell (MERT) or when tempo and pitch changed apart (`tempo`, `pitch`)."""
    tempo: float | None = None
    """How many times faster the query's music runs, its pitch kept apart (a time-stretch); else None."""
    pitch: float | None = None
    """How many times higher the query sounds, its tempo kept apart (a pitch shift); else None."""
    lead_in_s: float | None = None
    """Seconds of the query before the song begins (it started in silence or in another song, and `offset_s` reads
    0); 0.0 when it starts within the song; None where the engine cannot tell (MERT). A monitor places a song's
    start by it."""

    def to_dict(self) -> dict:
        """The `match` object of `lmprint match --json`."""
        return {"song_id": self.song.id, "path": self.song.path, "title": self.song.title,
                "score": round(self.score, 1), "offset_s": None if self.offset_s is None else round(self.offset_s, 3),
                "lead_in_s": None if self.lead_in_s is None else round(self.lead_in_s, 3),
                "confidence": round(self.confidence, 4), "decided_by": self.decided_by,
                "copies": [song.path for song in self.copies],
                "false_match_probability": (None if self.false_match_probability is None
                                            else float(f"{self.false_match_probability:.2g}")),
                **{name: None if value is None else round(value, 4) for name, value in  # every key, always
                   (("speed", self.speed), ("tempo", self.tempo), ("pitch", self.pitch))}}


@dataclass(frozen=True)
class Contender:
    """A song among a query's best candidates, with the engine's score for it (see `Match.score`)."""

    song: Song
    score: float

    def to_dict(self) -> dict:
        return {"song_id": self.song.id, "path": self.song.path, "title": self.song.title,
                "score": round(self.score, 1)}


@dataclass(frozen=True)
class Answer:
    """A query's answer: the match or None, and the engine's best candidates behind it, best first."""

    match: Match | None
    contenders: tuple[Contender, ...] = ()
    note: str | None = None
    """Something the user should know about the query, e.g. that only its start was matched."""

    @property
    def runner_up(self) -> Contender | None:
        """The best candidate of another recording than the match's, its copies left out: how close the nearest
        other music came (None without a match)."""
        if self.match is None:
            return None
        same = {self.match.song.id, *(copy.id for copy in self.match.copies)}
        return next((c for c in self.contenders if c.song.id not in same), None)

    def to_dict(self, query: str, top: int = 0) -> dict:
        """One line of `lmprint match --json` (and `POST /match`'s body): the best `top` candidates too."""
        runner_up = self.runner_up
        line: dict[str, Any] = {"query": query, "match": self.match.to_dict() if self.match else None,
                "runner_up": runner_up.to_dict() if runner_up else None}
        if top:
            line["candidates"] = [c.to_dict() for c in self.contenders[:top]]
        if self.note:
            line["note"] = self.note
        return line


@dataclass(frozen=True)
class Outcome:
    """What happened to one file of an `add` batch: added, skipped (already indexed), moved (its content was
    indexed under a path that is gone), a copy (of a file indexed under a path that is there), or failed with a
    reason."""

    path: str
    skipped: bool = False
    error: str | None = None
    content_sha1: str | None = None
    moved_from: str | None = None
    """Set when the file's content was indexed under this path, which no longer exists or holds other music now:
    the song now names `path`."""
    copy_of: str | None = None
    """Set when the file holds the exact bytes of a song indexed under this path, which is still there: the file is
    recorded as the song's copy (`lmprint dedup` lists it)."""
    warning: str | None = None
    """Something a user should know about a file that was added anyway, e.g. that it decoded to much less than its
    container declares."""
    replaced: bool = False
    """Set, after the file was added, where it held other content when it was indexed before and no file holds that
    now: the song of that content is removed (a file re-encoded, retagged or cut short where it lies)."""
    song_id: int | None = None
    """The song the file's content is indexed as (added, skipped, moved or a copy); None where it failed, for a
    `replaced` entry's removal (the file's own outcome, told before, has its id), and for new content in a MERT
    index's first batch, whose songs are stored once its basis is fitted at the batch's end."""

    @property
    def counted_as(self) -> str:
        """Which count of `AddReport` the file's outcome goes to: failed, moved, copies, skipped or added."""
        return ("failed" if self.error else "moved" if self.moved_from else "copies" if self.copy_of
                else "skipped" if self.skipped else "added")


@dataclass
class AddReport:
    """Counts of a finished `add` batch, and each failed file with its reason."""

    added: int = 0
    skipped: int = 0
    moved: int = 0
    copies: int = 0
    """Files recorded as copies of an indexed file (the same bytes)."""
    replaced: int = 0
    """Entries removed because their path now holds other content (a retagged or re-encoded file)."""
    failed: list[tuple[str, str]] = field(default_factory=list)
    audio_s: float = 0.0
    """Seconds of audio added."""
    notes: list[str] = field(default_factory=list)
    """What the batch leaves that a user should know beyond its counts (a MERT basis fitted on too few songs)."""
    _counted_as: dict[str, str] = field(default_factory=dict, repr=False)
    """Each file's count so far: a file skipped that a song then moves to (once the batch is done) is a move."""

    def record(self, outcome: Outcome, audio_s: float = 0.0) -> None:
        """Count one file's outcome; a file counted before counts once, as its last outcome."""
        count = outcome.counted_as
        if count == "failed":
            assert outcome.error is not None
            self.failed.append((outcome.path, outcome.error))
            return
        before = self._counted_as.get(outcome.path)
        if before in ("skipped", "copies"):  # counted so before: now counted as this instead
            setattr(self, before, getattr(self, before) - 1)
        setattr(self, count, getattr(self, count) + 1)
        self._counted_as[outcome.path] = count
        if count == "added":
            self.audio_s += audio_s
