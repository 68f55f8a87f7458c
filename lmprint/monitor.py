"""Monitoring: every song in a long recording or a live stream, with where each one plays.

The stream is read in chunks and looked at through a sliding window: every `hop_s` seconds the last `window_s`
seconds are matched like a clip (`Method.match_samples`). Once a song is confirmed, a look first checks that song
where its clock puts it (`Method.follow`: no search, a few milliseconds) and searches only when the song is not
clearly there. While nothing is heard, looks come every `idle_hop_s` instead. State stays bounded: the samples
from the oldest look still out (less the windows it may look back at, and `heard_back_s` where a start is read)
and the segments being followed.

A look that names a song gives its *anchor*, the song's time at the stream's start (the offset in the song minus the
window's start times the song's rate: its speed or tempo, 1.0 as recorded), which stays constant while the song
plays. Looks that name one song with one anchor (within `anchor_tolerance_s`) start a segment. It is reported
(`open`) once `confirm_looks` looks agree and one of them is sure (`confirm_chance`), so a chance match never
becomes a song (where the stream ends before another look can agree, one sure look will do); from then on any look
naming its song extends it (music repeats: a look may line up with another return of the passage), until the
song's own clock has run out: then a look naming it at another anchor hears it play again (started over,
skipped back, or paused and gone on; a skip forward stays one play). It closes once
`close_after_misses` looks in a row no longer name it, or when another song is confirmed (a crossfade hands
over, and so does the same song played again, from after the last look that heard the play followed; a look that
puts the song's start where the segment began is the same play, which its first looks placed at a passage that
returns later). A song that returns later gets a new segment.

Boundaries are heard (`Method.heard_span`): the song's peaks, where the looks put it, are read against the
stream around a boundary, the start over the first window naming the song and up to `heard_back_s` before it,
the end over two windows from the last look that heard it at its clock (or, after a skip or a pause, where the
last look naming it put it). Where both songs of a crossfade are
heard into each other, both boundaries go to the middle of the overlap, where a listener hears the change.
Where that cannot be read (an engine that cannot tell, a song not clearly heard), a window that heard the song
begin says where (`Match.lead_in_s`); otherwise a window names a song once it holds about `audible_s` of it, so
a segment starts about that long before the end of its first agreeing window, and ends about that long after
the start of its last. The song's own clock bounds both (it cannot start before its offset 0, nor run past its
end), and where its own start or end lies within a hop of such a guess (`heard_precision_s` of a boundary
heard), the boundary is put there: songs are mostly played from start to end.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Callable, Generator, Iterable
from concurrent.futures import BrokenExecutor, Future
from dataclasses import dataclass, field, replace
from typing import NamedTuple

import numpy as np

from .errors import AudioError, LmprintError, SettingsError
from .method import Method
from .results import Match, Song
from .samples import chunks_at_engine_rate
from .workers import checked_jobs


@dataclass(frozen=True)
class MonitorSettings:
    """How the stream is looked at and how looks become segments."""

    window_s: float = 6.0
    """Seconds of audio in each look: enough to name a song under noise, short enough to follow a crossfade."""

    hop_s: float = 2.0
    """Seconds between looks: the resolution of segment boundaries, and (× window / hop) the work per second."""

    idle_hop_s: float = 4.0
    """Seconds between looks while nothing is heard (no song followed or being confirmed): every `audible_s` of
    the stream still lies whole in some window while it is at most `window_s − audible_s`, and a look that then
    names a song looks back at the windows skipped, so its start is placed as finely as with `hop_s`. Searches
    that find nothing (unknown music, talk) are most of a monitor's work; this halves them. Set it to `hop_s`
    to look at every hop (a live page: its answers come sooner)."""

    confirm_looks: int = 2
    """Looks that must agree (song and anchor) before a segment is reported."""

    confirm_chance: float = 1e-4
    """...and one of them must be this unlikely by chance (`Match.false_match_probability`, where the engine is
    calibrated). Looks overlap, so their agreement is not independent evidence: two looks fooled by one passage of
    unknown music agree. An hour holds about 600 windows of distinct audio, so at 1e-4 unknown music makes a
    segment about once in 16 hours; through a phone, 93 % of looks that name a song are this sure."""

    close_after_misses: int = 4
    """A segment closes after this many looks in a row that do not name it. A single look misses now and then
    under noise or through a phone (one 5 s clip in seven, on the bench), a quiet bar or talk over the music
    too; with 2 a song was split into several segments about once a song through a phone. A look that names
    nothing while the song's peaks are still heard at its clock does not count (`Monitor._heard_through`). Its end
    does not depend on this: it is read where the song stops being heard after its last agreeing look."""

    anchor_tolerance_s: float = 1.0
    """Looks whose anchors differ by at most this belong to one segment."""

    audible_s: float = 2.0
    """About how much of a song a look must hold to name it (2 s names every clean clip on the bench): where
    boundaries are placed within a look."""

    heard_back_s: float = 24.0
    """How far before the window that first names a song its start is read (`Method.heard_span`): a look may
    name a song seconds after it began (a crossfade, while the song before was still followed; looks through a
    phone that missed it). The samples kept reach this far back."""

    heard_precision_s: float = 0.25
    """How closely a window tells where a song begins or stops being heard (`Method.heard_span`; a song's peaks
    come at most 16 a second, and its first and last read less clearly at a window's edge): a boundary heard this
    close to the song's own start or end is put there."""

    follow: bool = True
    """Once a song is confirmed, a look checks it where its clock puts it before searching the index
    (`Method.follow`); False: every look searches."""

    follow_keep: float = 0.5
    """A followed look must agree at least this share of the best agreement a followed look of the song had;
    below it, the look searches. A song fading out under the next one (a crossfade) still agrees clearly for a few
    looks, and following it alone would hold the next song's start back by as much."""

    same_play_lead: float = 3.0
    """Once a song's clock has run out, a look naming it at another anchor that also explains the play so far is
    the same play placed anew only where the song's peaks agree at the new anchor no more than this much z less
    than at the clock, before the clock ran out (`Monitor._placed_early`); otherwise the song was played again.
    It is the lead by which verification tells two candidates apart (`min_agreement_lead`): a looping track's
    returns agree alike, a verse that returns over the same chords agrees less."""

    def __post_init__(self) -> None:
        if not 0 < self.hop_s <= self.window_s:
            raise SettingsError("need 0 < hop_s <= window_s: every stretch of the stream is looked at")
        steps = self.idle_hop_s / self.hop_s
        if self.idle_hop_s != self.hop_s and not (
                abs(steps - round(steps)) < 1e-9 and self.hop_s < self.idle_hop_s <= self.window_s - self.audible_s):
            raise SettingsError("idle_hop_s is hop_s, or a whole number of hops up to window_s - audible_s: every "
                                "audible stretch of a song then lies whole in some window, and a look back is a hop")
        if self.confirm_looks < 1 or self.close_after_misses < 1:
            raise SettingsError("confirm_looks and close_after_misses must be at least 1")
        if not 0 < self.confirm_chance <= 1:
            raise SettingsError("confirm_chance is a probability: above 0, at most 1")
        if self.heard_back_s < 0 or self.heard_precision_s < 0:
            raise SettingsError("heard_back_s and heard_precision_s must be at least 0")
        if not 0 <= self.follow_keep <= 1:
            raise SettingsError("follow_keep is a share of the best agreement: between 0 and 1")
        if self.same_play_lead < 0:
            raise SettingsError("same_play_lead is a lead in z: at least 0")


@dataclass
class Segment:
    """A song heard from `start_s` to `end_s` of the stream, `song_offset_s` into the song at `start_s`."""

    song: Song
    start_s: float
    end_s: float
    song_offset_s: float | None
    confidence: float
    looks: int
    open: bool = True
    anchor_s: float | None = field(default=None, repr=False)
    misses: int = field(default=0, repr=False)
    rate: float = 1.0
    """Seconds of the song that play per second of the stream: its speed or tempo (1.0: as recorded)."""
    heard: Match | None = field(default=None, repr=False, compare=False)
    """The last look that named it: how a look that follows the song plays it."""
    best_follow: float = field(default=0.0, repr=False, compare=False)
    """The best agreement of a look that followed it (`Method.follow`'s score)."""
    chance: float | None = field(default=None, repr=False, compare=False)
    """The least false-match probability of its looks (None where the engine is not calibrated)."""
    last_look_s: float = field(default=0.0, repr=False, compare=False)
    """Where in the stream the window of the last look that heard it where its clock puts it began: where its end
    is read from; a play of the song heard again began `audible_s` after it at the earliest (a window holds about
    that much of what it names)."""
    named_elsewhere: bool = field(default=False, repr=False, compare=False)
    """Whether a look since the last that heard it at its clock named it elsewhere in the song (a skip, a pause, a
    passage that returns) or as a copy: its clock tells its end no more."""
    heard_at_s: float = field(default=0.0, repr=False, compare=False)
    """Where in the stream the window of `heard` began: where the song's end falls as that look plays it, when
    looks named it elsewhere than its clock (a skip within the song, a pause in the stream)."""
    start_heard: bool = field(default=False, repr=False, compare=False)
    """Whether its start was heard in a window (`Method.heard_span`, or the song's beginning), not guessed from
    `audible_s`: a start heard is moved to the song's own start only within `heard_precision_s`, a guess within a
    hop."""

    @property
    def clock_end_s(self) -> float | None:
        """Where in the stream the song ends by the segment's clock (its anchor, at its rate); None before a look
        tells the anchor."""
        return None if self.anchor_s is None else (self.song.duration_s - self.anchor_s) / self.rate

    def to_dict(self) -> dict:
        return {"song_id": self.song.id, "path": self.song.path, "title": self.song.title,
                "start_s": round(self.start_s, 2), "end_s": round(self.end_s, 2),
                "song_offset_s": None if self.song_offset_s is None else round(self.song_offset_s, 2),
                "confidence": round(self.confidence, 4), "looks": self.looks, "open": self.open,
                "rate": round(self.rate, 4)}


def _names(match: Match, song: Song) -> bool:
    """Whether a look names `song`: as its match, or as a copy of its match's recording (which of two files of one
    recording leads a look is chance, and a song does not end because the other one led)."""
    return match.song.id == song.id or any(copy.id == song.id for copy in match.copies)


def _rate(match: Match) -> float:
    """Seconds of the song per second of the stream, as the match heard it (1.0 where the engine cannot tell)."""
    return match.speed or match.tempo or 1.0


def _lead_in_s(match: Match) -> float | None:
    """How far into a look's window the song began, when the window heard it begin (`Match.lead_in_s`); else None.
    It places a segment's start, not its anchor: a window holding only the song's first seconds, faded in under
    the song before, is where a bar that repeats can put the vote a bar off, and the looks after hear more."""
    return match.lead_in_s if match.offset_s == 0.0 else None


class Monitor:
    """Feed it chunks of mono float32 samples at the method's rate; it returns segments as they are confirmed
    (`open`) and as they end."""

    def __init__(self, method: Method, settings: MonitorSettings | None = None, looks: Looks | None = None):
        self.method = method
        self.settings = settings or MonitorSettings()
        self._looks = looks
        rate = method.sample_rate_hz
        self._window_samples = int(self.settings.window_s * rate)
        self._hop_samples = max(1, int(self.settings.hop_s * rate))
        self._idle_hop_samples = self._hop_samples * round(self.settings.idle_hop_s / self.settings.hop_s)
        self._heard_back_samples = int(self.settings.heard_back_s * rate)
        self._buffer = np.zeros(0, np.float32)
        self._buffer_start = 0  # stream sample of _buffer[0]
        self._last_look_sample: int | None = None  # stream sample where the last look's window started
        self._last_tracked_sample: int | None = None  # ...and the last whose answer was tracked
        self._heard_samples = 0  # samples received
        self._in_flight: deque[_Pending] = deque()  # looks sent, their answers taken in stream order
        self.current: Segment | None = None
        self._candidate: Segment | None = None

    @property
    def heard_s(self) -> float:
        """Seconds of the stream received so far."""
        return self._heard_samples / self.method.sample_rate_hz

    def feed(self, samples: np.ndarray) -> list[Segment]:
        """Take the next chunk; the segments confirmed or closed by the looks it completes."""
        self._buffer = np.concatenate([self._buffer, np.asarray(samples, np.float32)])
        self._heard_samples += len(samples)
        events = self._look()
        # nothing before the oldest look still to be taken is needed again, but for the windows it may look back
        # at (with none out, the next look's look back reaches one hop past the last look at most), and
        # `heard_back_s` before, where the start of a song a look names is read (`_heard_from_s`)
        keep_from = (self._in_flight[0].start_sample - (self._idle_hop_samples - self._hop_samples) if self._in_flight
                     else self._start_after(self._hop_samples)) - self._heard_back_samples
        if self.current is not None:  # ...and the end of the song followed, from the last look that heard it, if
            # that is recent (looks naming it elsewhere in the song may extend it for long: a song started over)
            keep_from = max(min(keep_from, self._sample_at(self.current.last_look_s)),
                            keep_from - self.settings.close_after_misses * self._hop_samples)
        keep_from -= self._buffer_start
        if keep_from > 0:
            self._buffer, self._buffer_start = self._buffer[keep_from:], self._buffer_start + keep_from
        return events

    def finish(self) -> list[Segment]:
        """The stream ended: the looks still out taken, a last look at what is left, and every segment closed."""
        events = self._look(finishing=True)
        rate = self.method.sample_rate_hz
        # at most a window, a hop on
        start = max(self._start_after(self._hop_samples), self._heard_samples - self._window_samples)
        if self._heard_samples - start >= self.settings.audible_s * rate:
            window = self._samples(start, self._heard_samples - start)
            events += self._update(look(self.method, window, self._hint(start / rate)), start / rate,
                                   (self._heard_samples - start) / rate)
        candidate = self._candidate
        if candidate is not None and candidate.chance is not None and candidate.chance <= self.settings.confirm_chance:
            # the stream ended before another look could agree (a short recording, a song in its last seconds):
            # a look this sure names the song, as `match` would
            events += self._confirm(candidate, self.heard_s)
        return events + self.stop()

    def stop(self) -> list[Segment]:
        """The stream was stopped (Ctrl-C), or ended (`finish`): the segment playing closed where the stream stops
        hearing it, with no look more (a stopped stream's worker processes are being stopped too). A last look
        that names the song may hold only its last seconds, and other audio after them: the end is read there as
        at any close, and only where it cannot be read is it the stream's end."""
        if self.current is None:
            return []
        still_playing = self.current.misses == 0  # its last look agreed: it may have run to the end of the stream
        closed = self._close(self.current, self.heard_s, until_end=still_playing)
        self.current = None
        return [closed]

    # --- internals ----------------------------------------------------------------------------------------
    def _look(self, finishing: bool = False) -> list[Segment]:
        """Look at every window due, and track what the looks name. With `looks`, `looks.jobs` looks are kept in
        worker processes at once and their answers taken in stream order, each checking the song followed as of
        the answers taken when it was sent: a followed look (a few ms) is not held back by a search sent with it
        (tens of ms), as it was when looks went in lockstep batches. Without, one look after another, each as of
        the look before."""
        events: list[Segment] = []
        jobs = self._looks.jobs if self._looks is not None else 1
        rate = self.method.sample_rate_hz
        while True:
            while len(self._in_flight) < jobs and (claimed := self._claim_next_window()) is not None:
                start, after_idle_hop = claimed
                window, hint = self._samples(start, self._window_samples), self._hint(start / rate)
                if self._looks is None:
                    answer: Future = Future()
                    answer.set_result(look(self.method, window, hint))
                else:
                    answer = self._looks.submit(window, hint)
                self._in_flight.append(_Pending(start, after_idle_hop, answer))
            if not self._in_flight or (len(self._in_flight) < jobs and not finishing):
                return events  # the next look waits for more of the stream
            pending = self._in_flight.popleft()
            events += self._look_at_skipped_hops(pending.start_sample)
            # after an idle hop still, unless the hops it skipped were looked at since
            after_idle_hop = pending.after_idle_hop and (
                self._last_tracked_sample is None
                or self._last_tracked_sample + self._hop_samples < pending.start_sample)
            try:
                match = pending.answer.result()
            except BrokenExecutor as error:
                raise LmprintError(f"a monitor's worker process stopped: {error}") from None
            self._last_tracked_sample = pending.start_sample
            if match is not None and match.decided_by == "followed" and (
                    self.current is None or match.song.id != self.current.song.id):
                continue  # it followed a song that a look taken before it saw end: it says nothing now
            events += self._update(match, pending.start_sample / rate, self._window_samples / rate, after_idle_hop)

    def _look_at_skipped_hops(self, before_sample: int) -> list[Segment]:
        """Look here, in stream order, at the windows a hop apart that an idle hop skipped before `before_sample`,
        while a song is heard or being confirmed; the segments they confirm or close. Windows sent to workers went
        an idle hop apart while nothing was heard, before the answer that heard a song was taken, where one look
        after another would have looked a hop on: a piece of a few seconds then had one look, not the two that
        confirm it, and went unreported with `--jobs` 2 where one look after another reported it. (Where looks
        fall after a song ends still depends on the windows sent meanwhile.)"""
        rate = self.method.sample_rate_hz
        events: list[Segment] = []
        while (self._last_tracked_sample is not None and (self.current is not None or self._candidate is not None)
               and self._last_tracked_sample + self._hop_samples < before_sample):
            start = self._last_tracked_sample = self._last_tracked_sample + self._hop_samples
            match = look(self.method, self._samples(start, self._window_samples), self._hint(start / rate))
            events += self._update(match, start / rate, self._window_samples / rate)
        return events

    def samples_before_next_look(self) -> int:
        """How many more samples the stream must bring before the next look's window is whole: a live stream fed
        no later than that is looked at as soon as it can be."""
        start, _ = self._next_window()
        return max(0, start + self._window_samples - self._heard_samples)

    def _next_window(self) -> tuple[int, bool]:
        """The start of the next window, and whether it is an idle hop's: the hop is chosen by what the looks taken
        so far heard."""
        idle = self.current is None and self._candidate is None
        return self._start_after(self._idle_hop_samples if idle else self._hop_samples), idle

    def _claim_next_window(self) -> tuple[int, bool] | None:
        """The start of the next window, counted as looked at, if the stream holds it all, and whether an idle
        hop led to it; None if not yet."""
        start, idle = self._next_window()
        if start + self._window_samples > self._heard_samples:
            return None
        self._last_look_sample = start
        return start, idle and self._idle_hop_samples > self._hop_samples and start > 0

    def _start_after(self, step: int) -> int:
        return 0 if self._last_look_sample is None else self._last_look_sample + step

    def _samples(self, start: int, length: int) -> np.ndarray:
        return self._buffer[start - self._buffer_start:start - self._buffer_start + length]

    def _sample_at(self, time_s: float) -> int:
        """The stream's sample at `time_s`, the nearest: every reading between two times rounds both alike."""
        return int(round(time_s * self.method.sample_rate_hz))

    def _samples_between(self, from_s: float, to_s: float) -> np.ndarray:
        start = self._sample_at(from_s)
        return self._samples(start, self._sample_at(to_s) - start)

    def _update(self, match: Match | None, time_s: float, length_s: float,
                after_idle_hop: bool = False) -> list[Segment]:
        """Track one look's answer (its window at `time_s`, `length_s` long), in stream order: the song followed
        goes on, or misses a look and ends after `close_after_misses`; a song it does not follow becomes the
        candidate, reported once its looks agree. The segments confirmed and closed by it."""
        current, replay = self.current, None
        if current is not None and match is not None:
            if self._agrees(current, match, time_s):
                self._extend(current, match, time_s, length_s)
                self._candidate = None
                return []
            if self._plays_again(current, match, time_s):
                if self._placed_early(current, match, time_s, length_s):
                    # its first looks put it at a passage that returns later in the song, so its clock ran out
                    # early: the same play, placed anew
                    current.anchor_s = None
                    self._extend(current, match, time_s, length_s)
                    self._candidate = None
                    return []
                replay = self._replay(current, match, time_s)
        events = [] if current is None else self._miss(current, match, time_s, length_s)
        if match is None:
            if self._candidate is not None:
                self._candidate.misses += 1
                if self._candidate.misses >= self.settings.confirm_looks:  # its looks must come close together
                    self._candidate = None
            return events
        candidate = self._track_candidate(match, time_s, length_s, after_idle_hop, replay)
        if candidate.looks >= self.settings.confirm_looks and (
                candidate.chance is None or candidate.chance <= self.settings.confirm_chance):
            events += self._confirm(candidate, time_s + length_s)
        return events

    def _replay(self, current: Segment, match: Match, time_s: float) -> tuple[float, bool]:
        """The song followed heard again (`_plays_again`): where its new play began at the earliest (`audible_s`
        after the last look that heard the play before at its clock), and whether the looks since heard it already,
        extending the play followed while its clock had not run out (a skip back, a pause): the last of them
        agrees with this look."""
        heard_before = (current.named_elsewhere and current.heard is not None
                        and self._plays_on(current.heard, current.heard_at_s, match, time_s))
        return current.last_look_s + self.settings.audible_s, heard_before

    def _miss(self, current: Segment, match: Match | None, time_s: float, length_s: float) -> list[Segment]:
        """A look that does not name the song followed: the segment closed (in the list returned) once
        `close_after_misses` looks in a row have not, unless this one named nothing while the song is still heard
        at its clock (`_heard_through`). Where the candidate this look names too was being heard, the song
        followed ended there (`_close`)."""
        current.misses += 1
        if (current.misses >= self.settings.close_after_misses and match is None
                and self._heard_through(current, time_s, length_s)):
            current.misses -= 1  # a quiet passage under noise: no look names it, but it is heard at its clock
        if current.misses < self.settings.close_after_misses:
            return []
        # not a candidate an earlier look named and this one does not
        following = self._candidate if self._candidate is not None and self._agrees(
            self._candidate, match, time_s) else None
        self.current = None
        return [self._close(current, time_s + length_s, following)]

    def _track_candidate(self, match: Match, time_s: float, length_s: float, after_idle_hop: bool,
                         replay: tuple[float, bool] | None) -> Segment:
        """The segment being confirmed, after a look that names a song other than where the one followed goes on:
        the candidate's next look if it agrees, else a new candidate (its start looked back for after an idle
        hop, and, for the song followed heard again (`_replay`), not before its new play could have begun)."""
        candidate = self._candidate
        if candidate is not None and self._agrees(candidate, match, time_s):
            self._extend(candidate, match, time_s, length_s)
            return candidate
        candidate = self._candidate = self._start(match, time_s, length_s)
        if after_idle_hop:
            self._look_back(candidate, match, time_s, length_s)
        if replay is not None and candidate.anchor_s is not None:
            replay_after_s, heard_before = replay
            # from where it was heard to begin, or else where the anchor puts the song's start
            began_s = candidate.start_s if candidate.start_heard else -candidate.anchor_s / candidate.rate
            candidate.start_s = max(replay_after_s, began_s, 0.0)
            self._place(candidate, candidate.anchor_s)
            candidate.looks += heard_before
        return candidate

    def _confirm(self, candidate: Segment, heard_to_s: float) -> list[Segment]:
        """Report the segment being confirmed as the one followed: the song followed until then, if any, ends where
        it starts (another song took over: a crossfade)."""
        events = []
        if self.current is not None:
            events.append(self._close(self.current, heard_to_s, candidate))
        self.current, self._candidate = candidate, None
        events.append(replace(candidate))  # a copy: the segment followed changes as looks come
        return events

    def _hint(self, time_s: float) -> Hint | None:
        """What a look at `time_s` checks first (`Method.follow`): the song being followed, where its clock puts
        it. None while no confirmed segment knows its anchor."""
        current = self.current
        if not self.settings.follow or current is None or current.anchor_s is None or current.heard is None:
            return None
        return Hint(current.heard, current.anchor_s + current.rate * time_s,
                    self.settings.follow_keep * current.best_follow)

    def _anchor(self, match: Match, time_s: float) -> float | None:
        """The song's time at the stream's start, as the song plays at its rate (`_rate`): the song's time minus
        the rate times the stream's; None when the match does not tell it (MERT), or when the window began before
        the song did (the offset then reads 0: the anchor is only bounded)."""
        if match.offset_s is None or match.offset_s <= 0.0:
            return None
        return match.offset_s - _rate(match) * time_s

    def _agrees(self, segment: Segment, match: Match | None, time_s: float) -> bool:
        """Whether a look names the segment's song. For a segment being confirmed, at its anchor too; once it
        is confirmed, any anchor of its song will do: music repeats, and a look may line up with another
        return of the passage playing (a song that comes back after another has a new segment anyway), unless
        the song's clock has run out (`_plays_again`)."""
        if match is None or not _names(match, segment.song):
            return False
        if segment is self.current:
            return not self._plays_again(segment, match, time_s)
        if match.offset_s is None or match.offset_s <= 0.0 or segment.anchor_s is None:
            return True
        return self._at_anchor(segment, match, time_s)

    def _at_anchor(self, segment: Segment, match: Match, time_s: float) -> bool:
        """Whether a look places the segment's song where the segment's clock puts it: at the segment's own rate,
        since two looks' rates differ a little, and that difference times the stream's whole length would grow
        past any tolerance."""
        return segment.anchor_s is not None and self._puts_song_at(match, segment.anchor_s + segment.rate * time_s)

    def _puts_song_at(self, match: Match, song_s: float) -> bool:
        """Whether a look's offset is `song_s` into the song, within `anchor_tolerance_s` (False where the look
        tells none: its window began before the song)."""
        return (match.offset_s is not None and match.offset_s > 0.0
                and abs(match.offset_s - song_s) <= self.settings.anchor_tolerance_s)

    def _plays_again(self, segment: Segment, match: Match, time_s: float) -> bool:
        """Whether a look naming the followed segment's song hears it play again (the song repeated, back to back
        or after a pause): by the segment's clock the song has ended before the window holds `audible_s` of it,
        and the look puts the song elsewhere (another anchor, or its start within the window). A song cannot be
        heard past its own end; a passage that returns within the song still extends the segment."""
        clock_end_s = segment.clock_end_s
        if clock_end_s is None or match.offset_s is None or match.song.id != segment.song.id:
            return False
        if clock_end_s - time_s >= self.settings.audible_s:  # of the song by its clock, from the window's start
            return False
        return not self._at_anchor(segment, match, time_s)

    def _heard_through(self, segment: Segment, time_s: float, length_s: float) -> bool:
        """Whether the followed segment's song is still heard, for at least `audible_s` of a look's window that named
        nothing, where its clock puts it (read as its end is, `_end_heard_s`): its peaks can stand out over a
        stretch where noise leaves a look too little to name it by (a quiet passage at 5 dB), and closing there
        split one play in two, the second begun where the first was still heard."""
        end_s = self._end_heard_s(segment, time_s + length_s)
        return end_s is not None and end_s - time_s >= self.settings.audible_s

    def _placed_early(self, segment: Segment, match: Match, time_s: float, length_s: float) -> bool:
        """Whether a look that hears the followed segment's song past its clock's end (`_plays_again`) places the
        same play anew: the clock was set by a passage that returns later in the song. Its anchor must put the
        whole segment within the song (its start no more than a hop before the song's, its end not past the
        song's end), the song must be heard there past where the clock ended it, and over the window before the
        clock's end the song's peaks must agree at the new anchor no more than `same_play_lead` worse than at the
        clock. Then either the anchor puts the song's start within a hop of the segment's (a radio edit that opens
        with the chorus), or over the window of the segment's last look at its clock the peaks agree at it as
        well (a looping track: its returns play the same music).

        A play heard again cannot have begun before the one followed; a look in the song's last seconds can name
        an earlier return of what plays there (hence heard past the clock's end); a play tuned in mid-song and
        heard again from later in the song puts the whole segment within the song too, but before the clock's end
        the clock's music plays there, not the new anchor's; and a play cut short and heard again from an
        earlier point plays the new anchor's music before the clock's end, but not where the clock was last
        heard. Left, as one play: a song heard again (after a cut, a pause or other music) from where the new
        anchor puts its start at the segment's, as a radio edit's does; and one heard again from a point a return
        of a passage away, whose music the clock's then resembles as a looping track's does."""
        anchor, rate, clock_end_s = self._anchor(match, time_s), _rate(match), segment.clock_end_s
        if anchor is None or clock_end_s is None or segment.heard is None:
            return False
        end_s = time_s + length_s
        if anchor + rate * segment.start_s < -rate * self.settings.hop_s or anchor + rate * end_s > (
                segment.song.duration_s + rate * self.settings.anchor_tolerance_s):
            return False
        past_s = max(clock_end_s, time_s)
        if end_s - past_s < self.settings.audible_s or not self._heard_at(match, anchor, past_s, end_s):
            return False
        if not self._agrees_as_well(segment, match, anchor, clock_end_s - self.settings.window_s, clock_end_s):
            return False
        last_s = segment.last_look_s  # the last look at the clock
        return abs(-anchor / rate - segment.start_s) <= self.settings.hop_s or self._agrees_as_well(
            segment, match, anchor, last_s, min(last_s + self.settings.window_s, clock_end_s))

    def _agrees_as_well(self, segment: Segment, match: Match, anchor: float, from_s: float, to_s: float) -> bool:
        """Whether, from `from_s` to `to_s` of the stream (within the segment and the samples kept), the song's
        peaks agree with it where `anchor` puts the song at least as clearly as `Method.follow` needs, and no more
        than `same_play_lead` less than where the segment's clock (its anchor and rate) puts it."""
        assert segment.anchor_s is not None and segment.heard is not None
        rate_hz = self.method.sample_rate_hz
        from_s = max(from_s, segment.start_s, self._buffer_start / rate_hz)
        if to_s - from_s < self.settings.audible_s:
            return False
        samples = self._samples_between(from_s, to_s)
        anew = self._follow(samples, match, anchor + _rate(match) * from_s)
        by_clock = self._follow(samples, segment.heard, segment.anchor_s + segment.rate * from_s)
        return anew is not None and (by_clock is None or anew.score >= by_clock.score - self.settings.same_play_lead)

    def _follow(self, samples: np.ndarray, match: Match, song_s: float) -> Match | None:
        """`Method.follow`; None for samples it cannot read (too short)."""
        try:
            return self.method.follow(samples, match, song_s)
        except AudioError:
            return None

    def _heard_at(self, match: Match, anchor: float, from_s: float, to_s: float) -> bool:
        """Whether the stream from `from_s` to `to_s` hears at least `audible_s` of the song a look names, played
        from `anchor` at the look's rate (`Method.heard_span`)."""
        span = self._heard_span(self._samples_between(from_s, to_s), match, anchor + _rate(match) * from_s)
        return span is not None and span[1] - span[0] >= self.settings.audible_s

    def _start(self, match: Match, time_s: float, length_s: float) -> Segment:
        settings = self.settings
        # after another song's look, this one needed about half the window to win it; after silence, `audible_s`
        held_s = length_s / 2 + settings.hop_s / 2 if self.current is not None else settings.audible_s
        start_s = max(0.0, time_s + length_s - held_s) if time_s > 0 else 0.0
        heard_from, lead_in_s = self._heard_from_s(match, time_s, length_s), _lead_in_s(match)
        if heard_from is not None:
            start_s = heard_from[0]
        elif lead_in_s is not None:  # the window heard the song begin
            start_s = time_s + lead_in_s
        segment = Segment(match.song, start_s, time_s + length_s, None, match.confidence, 1, rate=_rate(match),
                          heard=match, heard_at_s=time_s, chance=match.false_match_probability,
                          last_look_s=time_s,
                          start_heard=(heard_from is not None and not heard_from[1]) or lead_in_s is not None)
        self._place(segment, self._anchor(match, time_s))
        if segment.song_offset_s is None and match.offset_s is not None:  # the song began within the window
            self._begin_after_lead_in(segment, time_s, lead_in_s, segment.rate)
        return segment

    def _look_back(self, segment: Segment, match: Match, time_s: float, length_s: float) -> None:
        """A look after an idle hop named `segment`'s song: the windows skipped since the look before are looked
        at, latest first, and the segment starts as the earliest that names the song at its anchor would have
        started it. They only place its start (a look back is not one of the looks that confirm it), and they are
        searched, not followed: a window that holds only the song's first seconds names it by its vote, where
        its peaks agree too little to follow it. They are made in this process, while the workers take the looks
        still out."""
        if match.offset_s is None or match.offset_s <= 0.0 or (segment.start_heard and segment.start_s > time_s):
            return  # the song began within this window: no window before it holds more of it
        rate_hz = self.method.sample_rate_hz
        start = self._sample_at(time_s)
        length = self._sample_at(time_s + length_s) - start
        for earlier in range(start - self._hop_samples, start - self._idle_hop_samples, -self._hop_samples):
            if earlier < self._buffer_start:
                return
            earlier_s = earlier / rate_hz
            heard = look(self.method, self._samples(earlier, length))
            if not self._agrees(segment, heard, earlier_s):
                return
            assert heard is not None
            heard_from = self._heard_from_s(heard, earlier_s, length_s)
            if heard_from is not None:
                segment.start_s = min(segment.start_s, heard_from[0])
                segment.start_heard = segment.start_heard or not heard_from[1]
            elif not segment.start_heard:
                segment.start_s = min(segment.start_s, max(0.0, earlier_s + length_s - self.settings.audible_s))
            self._place(segment, segment.anchor_s)

    def _extend(self, segment: Segment, match: Match, time_s: float, length_s: float) -> None:
        surer = match.false_match_probability is not None and (
            segment.chance is None or match.false_match_probability < segment.chance)
        segment.looks += 1
        segment.misses = 0
        segment.end_s = time_s + length_s
        segment.confidence = max(segment.confidence, match.confidence)
        if match.false_match_probability is not None:
            segment.chance = min(segment.chance if segment.chance is not None else 1.0, match.false_match_probability)
        if match.song.id != segment.song.id:  # it named another file of the recording: its offsets are that file's
            segment.named_elsewhere = True
            return
        segment.heard, segment.heard_at_s = match, time_s
        lead_in_s = _lead_in_s(match)
        if lead_in_s is not None and surer and segment is not self.current:
            # a surer look heard the song begin here: the looks before it, which put the song earlier, were chance's
            # or heard too little of it. The next look that hears more places the anchor.
            heard_from = self._heard_from_s(match, time_s, length_s)
            segment.start_s = time_s + lead_in_s if heard_from is None else heard_from[0]
            segment.anchor_s, segment.start_heard = None, True
            self._begin_after_lead_in(segment, time_s, lead_in_s, _rate(match))  # the rate becomes this look's below
        if match.decided_by == "followed":
            segment.best_follow = max(segment.best_follow, match.score)
        at_clock = match.decided_by == "followed" or self._at_anchor(segment, match, time_s) or segment.anchor_s is None
        if at_clock:
            segment.last_look_s = time_s
        segment.named_elsewhere = not at_clock
        if segment.anchor_s is None:
            # the anchor is this look's, at this look's rate; until a look places it, the rate is the latest look's,
            # which heard the most of the song (a look that heard it begin measures its rate on the rest)
            segment.rate = _rate(match)
            self._place(segment, self._anchor(match, time_s))

    def _begin_after_lead_in(self, segment: Segment, time_s: float, lead_in_s: float | None, rate: float) -> None:
        """The song's time at the start of a segment whose song began within the look at `time_s`, `lead_in_s` into
        its window (None: the look did not tell where, and the segment starts with the song), the song playing at
        `rate`. A start heard later (an opening lost under noise or under the song before) is that far into the
        song, as the anchor of later looks, which lie within the song, will say; one within `_place`'s reach of the
        song's start either way is put at it, as `_place` will. A start heard earlier than that stays (a lead-in
        can be a bar off: `_lead_in_s`), at the song's start."""
        began_s = segment.start_s if lead_in_s is None else time_s + lead_in_s
        if abs(rate * (segment.start_s - began_s)) <= self._start_reach_s(segment):
            segment.start_s = max(0.0, began_s)
        segment.song_offset_s = max(0.0, rate * (segment.start_s - began_s))

    def _start_reach_s(self, segment: Segment) -> float:
        """How close to its song's own start a segment's start is put at it: a start heard is told that well, one
        guessed to a hop."""
        return self.settings.heard_precision_s if segment.start_heard else self.settings.hop_s

    def _place(self, segment: Segment, anchor: float | None) -> None:
        """Fix a segment's anchor once a look tells it, and bound its start by the song's own start: not before
        it, and, for a start guessed rather than heard, at it when it is within a hop (songs mostly play from
        their start)."""
        if anchor is None:
            return
        segment.anchor_s = anchor
        song_start_s = max(0.0, -anchor / segment.rate)  # 0.0 first: max keeps the first of equals, not -0.0
        if anchor + segment.rate * segment.start_s <= self._start_reach_s(segment):  # the song's own offset there
            segment.start_s = song_start_s
        segment.song_offset_s = max(0.0, anchor + segment.rate * segment.start_s)

    def _heard_from_s(self, match: Match, time_s: float, length_s: float) -> tuple[float, bool] | None:
        """Where the stream begins to hear the song a look names (`Method.heard_span`), read where the look puts
        the song over its window (from `time_s`, `length_s` long) and the window before it, and, if the song is
        heard from the start of that, up to `heard_back_s` before (as far as the samples kept reach): a reading
        costs in step with its length. With it, whether that is only a bound: the song heard from the start of
        all that was read, after the stream's start (it began there or before), or heard by the shorter reading
        only (its peaks standardised over the longer one may not stand out). None where the engine cannot tell or
        the song is not clearly heard."""
        if match.offset_s is None:
            return None
        rate_hz = self.method.sample_rate_hz
        start, end = self._sample_at(time_s), self._sample_at(time_s + length_s)
        song_s = match.offset_s if match.offset_s > 0 else -_rate(match) * (match.lead_in_s or 0.0)
        heard_from: tuple[float, bool] | None = None
        first = None
        for back in sorted({min(self._window_samples, self._heard_back_samples), self._heard_back_samples}):
            reach = max(self._buffer_start, start - back)
            if reach == first:
                break  # the samples kept reach no further back
            first = reach
            first_s = first / rate_hz
            span = self._heard_span(self._samples(first, end - first), match,
                                    song_s - _rate(match) * (time_s - first_s))
            if span is None:  # a longer reading need not hear it where a shorter one did: that one stands
                break
            # heard to begin within what was read (its first seconds read less clearly), or only a bound; heard so
            # from the stream's own start (tuned in mid-song), it plays from there
            began_within = span[0] > self.settings.audible_s
            heard_from = (0.0, False) if first == 0 and not began_within else (first_s + span[0], not began_within)
            if began_within:
                break
        return heard_from

    def _heard_span(self, samples: np.ndarray, match: Match, song_s: float) -> tuple[float, float] | None:
        """`Method.heard_span`; None for samples it cannot read (too short)."""
        try:
            return self.method.heard_span(samples, match, song_s)
        except AudioError:
            return None

    def _end_heard_s(self, segment: Segment, heard_to_s: float, played_again: bool = False,
                     playing_to_s: float | None = None) -> float | None:
        """Where the stream stops hearing a segment's song, read where its clock puts the song from its last
        look's window on, over two windows (`Method.heard_span`), if that look heard it there; None where that
        cannot be read. The reading stops at `heard_to_s`, the end of the window of the look being taken, not at
        what the stream has delivered so far: a boundary does not depend on how the stream arrives. Where looks
        since named the song elsewhere (a skip, a pause), it is read where the last of them puts the song, from
        its window on; unless the song is `played_again`: a new segment follows from there, and the play before
        ended where its clock stops being heard. With `playing_to_s` (the stream stopped there), it is read to
        `heard_to_s` however far (looks still out when a stream is stopped leave the last look taken far behind),
        and a song heard to within `audible_s / 2` of that still played then: a song's last moments read less
        clearly."""
        heard = segment.heard
        placed = self._song_placed(segment, by_clock=played_again)
        if heard is None or segment.anchor_s is None or placed is None:
            return None
        from_s, song_s, _ = placed
        rate_hz = self.method.sample_rate_hz
        start = self._sample_at(from_s)
        if start < self._buffer_start:
            return None
        reach = self._sample_at(heard_to_s) - start  # at a stop, all the stream holds: looks may be out
        samples = self._samples(start, reach if playing_to_s is not None else min(reach, 2 * self._window_samples))
        span = self._heard_span(samples, heard, song_s)
        if span is None or span[0] >= self.settings.window_s:  # not heard in the look that named it: not this play
            return None
        if playing_to_s is not None and span[1] >= samples.size / rate_hz - self.settings.audible_s / 2:
            return playing_to_s
        return from_s + span[1]

    def _plays_on(self, earlier: Match, earlier_s: float, match: Match, time_s: float) -> bool:
        """Whether a look at `time_s` places the song where an earlier look (its window at `earlier_s`) playing on
        would: its offset then, at the earlier look's rate, within `anchor_tolerance_s`."""
        return (earlier.offset_s is not None and earlier.offset_s > 0.0
                and self._puts_song_at(match, earlier.offset_s + _rate(earlier) * (time_s - earlier_s)))

    def _song_end_s(self, segment: Segment) -> float | None:
        """Where in the stream the segment's song ends by its own length, as `_song_placed` plays it (by its clock
        where looks since named it elsewhere tell nothing); None where neither tells."""
        placed = self._song_placed(segment)
        if placed is None:
            return segment.clock_end_s
        stream_s, song_s, rate = placed
        return stream_s + (segment.song.duration_s - song_s) / rate

    def _song_placed(self, segment: Segment, by_clock: bool = False) -> tuple[float, float, float] | None:
        """(stream_s, song_s, rate): a moment of the stream, the second of the segment's song playing then, and how
        fast it plays. By the segment's clock at its last agreeing look; or, unless `by_clock`, where looks since
        named the song elsewhere (a skip, a pause), as the last of them plays it. None where that does not tell."""
        heard = segment.heard
        if not by_clock and segment.named_elsewhere:
            if heard is None or heard.offset_s is None or heard.offset_s <= 0.0:
                return None
            return segment.heard_at_s, heard.offset_s, _rate(heard)
        if segment.anchor_s is None:
            return None
        return segment.last_look_s, segment.anchor_s + segment.rate * segment.last_look_s, segment.rate

    def _close(self, segment: Segment, heard_to_s: float, following: Segment | None = None,
               until_end: bool = False) -> Segment:
        """The segment ended: where the stream stops hearing its song (`_end_heard_s`), or else about `audible_s`
        past the start of its last agreeing look (`until_end`: at the stream's end), within the song's length
        and the stream heard. Where the `following` song began, it ended there; where the two songs were heard into
        each other (a crossfade), both boundaries go to the middle of that overlap, where a listener hears the
        change."""
        heard_s = self._heard_samples / self.method.sample_rate_hz
        played_again = following is not None and following.song.id == segment.song.id
        if played_again and following is not None and following.start_heard:
            heard_to_s = min(heard_to_s, following.start_s)  # the same music cannot play twice at once
        heard_end_s = self._end_heard_s(segment, heard_to_s, played_again, heard_s if until_end else None)
        if heard_end_s is not None:
            end_s = min(heard_end_s, heard_s)
        elif until_end:
            end_s = heard_s
        else:
            last_look_start = segment.end_s - self.settings.window_s
            end_s = min(segment.end_s, last_look_start + self.settings.audible_s + self.settings.hop_s / 2, heard_s)
        song_end_s = self._song_end_s(segment)
        if song_end_s is not None:
            end_s = min(end_s, song_end_s)  # not past the song's own end, and at it if that close
            near_s = self.settings.hop_s if heard_end_s is None else self.settings.heard_precision_s
            if 0 <= song_end_s - end_s <= near_s:
                end_s = min(song_end_s, heard_s)
        if following is not None:  # another song began: it ended there, or both at the middle of their overlap
            # (a song played again cannot overlap its play before: what its clock heard there was the same music)
            if (heard_end_s is not None and following.start_heard and end_s > following.start_s
                    and following.song.id != segment.song.id):
                end_s = following.start_s = max((end_s + following.start_s) / 2, segment.start_s)
                if following.anchor_s is not None:
                    following.song_offset_s = max(0.0, following.anchor_s + following.rate * following.start_s)
            end_s = min(end_s, max(following.start_s, segment.start_s))
        segment.end_s = max(end_s, segment.start_s)
        segment.open = False
        return segment


@dataclass(frozen=True)
class _Pending:
    """A look sent: its window's start (stream sample), whether an idle hop led to it, and the future of its
    match (done already where the look was made in this process)."""

    start_sample: int
    after_idle_hop: bool
    answer: Future


class Hint(NamedTuple):
    """What a look checks first (`Method.follow`'s arguments after the window)."""

    previous: Match
    """The last look naming the song followed."""
    song_s: float
    """The song's time at the window's start, by the segment's clock."""
    min_score: float
    """The least agreement that keeps following it."""


def look(method: Method, window: np.ndarray, hint: Hint | None = None) -> Match | None:
    """One look: what the window names, None for silence or too little audio (nothing is playing). With a hint,
    the song followed is checked first (`Method.follow`), and the index searched only if it is not clearly there:
    most looks at a radio hour hear the song of the look before, and checking it costs a few milliseconds where
    a search costs tens."""
    try:
        if hint is not None and (followed := method.follow(window, *hint)) is not None:
            return followed
        return method.match_samples(window)
    except AudioError:
        return None


class Looks:
    """Looks matched in worker processes, each with its own open index (`open_method`, picklable): a look depends
    only on what the monitor followed before it was sent, so on N cores N run at once. A monitor keeps `jobs` of
    them out, so a live stream's answers come up to `jobs − 1` looks later each."""

    def __init__(self, open_method: Callable[[], Method], jobs: int):
        from concurrent.futures import ProcessPoolExecutor

        self.jobs = checked_jobs(jobs)
        self._pool = ProcessPoolExecutor(self.jobs, initializer=_open_worker, initargs=(open_method,))
        # the workers start now, before the monitor's reader thread (`read_ahead`): a process forked while another
        # thread holds a lock (a file's, mid-read) would wait on it for ever. Forking starts them all at once.
        self._pool.submit(int)

    def submit(self, window: np.ndarray, hint: Hint | None) -> Future:
        """A look at `window` in a worker (`look`): a future of its match."""
        return self._pool.submit(_worker_look, window, hint)

    def close(self) -> None:
        self._pool.shutdown(cancel_futures=True)


_worker_method: Method | None = None


def _open_worker(open_method: Callable[[], Method]) -> None:
    """A worker's index, and one BLAS thread: processes are the parallelism here (two processes of two OpenBLAS
    threads each on 2 cores took as long as one process)."""
    from threadpoolctl import threadpool_limits

    from .workers import worker_started

    global _worker_method
    worker_started()
    threadpool_limits(1)
    _worker_method = open_method()


def _worker_look(window: np.ndarray, hint: Hint | None) -> Match | None:
    assert _worker_method is not None
    return look(_worker_method, window, hint)


READ_AHEAD_CHUNKS = 64
"""Chunks of a file read ahead in a thread while worker processes look (`monitor`'s `ahead_of_looks`), so that
decoding overlaps the looks instead of holding them up (the main process otherwise decoded the next window only
once an answer was in, while both workers waited: docs/tuning.md). A file's chunks from `landmark.audio.stream`
are about 0.25 s of audio, so this holds some 16 s."""


def monitor(method: Method, chunks: Iterable[np.ndarray], settings: MonitorSettings | None = None,
            looks: Looks | None = None, ahead_of_looks: bool = False, sample_rate_hz: float | None = None
            ) -> Generator[Segment, None, None]:
    """Every segment event of a stream of chunks (one channel's samples at `sample_rate_hz`, as `match_samples`
    takes them; None: at `method.sample_rate_hz`): each segment once when confirmed (open), once when closed. An
    interruption (Ctrl-C) raised in it, or thrown into it where it waits, closes the segment playing first. With
    `looks`, `looks.jobs` windows are matched at once in its worker processes; with `ahead_of_looks` too, `chunks`
    are read in a thread meanwhile (`read_ahead`): for a file, whose decoding then overlaps the looks. Not for a
    live stream or a pipe: it arrives no faster for it, and a thread blocked reading one cannot be stopped."""
    watcher = Monitor(method, settings, looks)
    jobs = looks.jobs if looks else 1
    hop = max(1, int(watcher.settings.hop_s * method.sample_rate_hz))
    chunks = chunks_at_engine_rate(chunks, sample_rate_hz, method.sample_rate_hz)  # refused or taken as samples are
    ahead = read_ahead(chunks, READ_AHEAD_CHUNKS) if looks and ahead_of_looks else None
    pending: list[np.ndarray] = []
    pending_samples = 0
    try:
        for chunk in chunks if ahead is None else ahead:
            pending.append(chunk)
            pending_samples += len(chunk)
            # looks in worker processes: fed a look's worth per worker at once, so that they run side by side; looks
            # made here (a live stream's): fed once the next look's window is whole, so it runs then, not a hop later
            if pending_samples >= (jobs * hop if jobs > 1 else max(1, watcher.samples_before_next_look())):
                yield from watcher.feed(np.concatenate(pending))
                pending, pending_samples = [], 0
        if pending:
            yield from watcher.feed(np.concatenate(pending))
        yield from watcher.finish()
    except KeyboardInterrupt:  # a live stream is stopped this way: the song playing still gets its end
        yield from watcher.stop()
        raise
    finally:
        if ahead is not None:
            ahead.close()  # stops its reader


READER_STOP_S = 5.0
"""Seconds `read_ahead` waits for its reader to stop when closed: a file's next chunk decodes in milliseconds."""


def read_ahead(chunks: Iterable[np.ndarray], depth: int) -> Generator[np.ndarray, None, None]:
    """`chunks`, read in a thread up to `depth` ahead of the caller. Decoding (FFmpeg, numpy, soxr) mostly runs
    without the GIL, so it proceeds while the caller waits on worker processes. An error met reading is raised
    here, after the chunks read before it; closing this iterator stops the reader at its next chunk (a reader
    blocked reading is not: hence files only, see `monitor`)."""
    if depth < 1:
        raise ValueError("read_ahead needs a depth of at least one chunk")
    ready: queue.Queue = queue.Queue(depth)
    stop = threading.Event()
    end = object()

    def hand_over(item: object) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def read() -> None:
        last: object = end
        try:
            for chunk in chunks:
                if not hand_over(chunk):
                    break
            close = getattr(chunks, "close", None)
            if close is not None:
                close()  # a generator left early: its file is closed here, in the thread that read it
        except BaseException as error:  # noqa: BLE001 - handed to the caller, who meets it as if reading itself
            last = error
        hand_over(last)

    reader = threading.Thread(target=read, name="lmprint-read-ahead", daemon=True)
    reader.start()
    try:
        while (item := ready.get()) is not end:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        # a file's reader stops within its next chunk; waited for, so that the decoder it holds is released
        # before the interpreter exits (left running, its native objects were reported leaked at exit)
        reader.join(timeout=READER_STOP_S)
