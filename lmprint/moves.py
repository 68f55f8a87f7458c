"""Where a library's files went: an `add` batch's songs follow their content to moved files and copies, and a
path that holds other content now gives up the entry its old content left there.

A song is its content (`content_sha1`), not its path: a file moved or renamed is the same song under a new path,
and a second file of the same bytes is a copy of it. Both engines' `add` settle their batch's paths here, so a
library reorganised between two runs of `add` is followed by whichever engine indexes it.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable
from typing import Protocol

from .catalogue import Catalogue
from .files import holds_content
from .results import AddReport, Outcome, Song

TitleOf = Callable[[str], str]
"""A file's title as `add` takes it: its title tag, else its file name (the engines' decoder reads tags)."""


def followed(catalogue: Catalogue, outcome: Outcome, title_of: TitleOf) -> Outcome:
    """A skipped file's outcome, as a move when its content's song names a path that is gone (or that holds
    other content now), or as a copy (recorded) when that path still holds it."""
    if not outcome.skipped or outcome.content_sha1 is None:
        return outcome
    song_id = catalogue.song_id_of(outcome.content_sha1)
    song = catalogue.songs_by_id([song_id]).get(song_id) if song_id is not None else None
    if song is None or song.path == outcome.path:
        return outcome
    if os.path.exists(song.path):
        if outcome.path in catalogue.copies_of([song.id]).get(song.id, []):
            return outcome
        if os.path.realpath(song.path) == os.path.realpath(outcome.path):  # one file, one path through a link
            if _through_link(song.path) and not _through_link(outcome.path):  # its own path outlives the link
                catalogue.move_song(song.id, outcome.path, title_of(outcome.path))
                return Outcome(outcome.path, skipped=True, content_sha1=outcome.content_sha1, moved_from=song.path)
            return outcome
        if holds_content(song.path, outcome.content_sha1):  # read again: two files swapped
            # a copy whose file is gone was moved here (a folder of a song and its hard link, moved)
            gone = next((copy for copy in catalogue.copies_of([song.id]).get(song.id, [])
                         if not os.path.lexists(copy)), None)
            if gone is not None and catalogue.move_copy(song.id, gone, outcome.path):
                return Outcome(outcome.path, skipped=True, content_sha1=outcome.content_sha1, moved_from=gone)
            if not catalogue.add_copy(song.id, outcome.path):  # the song was removed meanwhile
                return outcome
            return Outcome(outcome.path, skipped=True, content_sha1=outcome.content_sha1, copy_of=song.path)
    catalogue.move_song(song.id, outcome.path, title_of(outcome.path))
    return Outcome(outcome.path, skipped=True, content_sha1=outcome.content_sha1, moved_from=song.path)


def identified(catalogue: Catalogue, outcome: Outcome) -> Outcome:
    """The outcome with the id of the song its content is indexed as (`Outcome.song_id`), where the catalogue holds
    that content now."""
    if outcome.song_id is not None or outcome.content_sha1 is None or outcome.error:
        return outcome
    song_id = catalogue.song_id_of(outcome.content_sha1)
    return outcome if song_id is None else dataclasses.replace(outcome, song_id=song_id)


class Record(Protocol):
    """Records one file's outcome of an `add` batch, with the seconds of audio it took."""

    def __call__(self, outcome: Outcome, audio_s: float = 0.0) -> None: ...


def recorder(catalogue: Catalogue, report: AddReport, on_outcome: Callable[[Outcome], None] | None) -> Record:
    """How an engine's `add` records a file: its outcome `identified`, counted in `report` with the seconds of
    audio it took, then told to `on_outcome`."""
    def record(outcome: Outcome, audio_s: float = 0.0) -> None:
        outcome = identified(catalogue, outcome)
        report.record(outcome, audio_s)
        if on_outcome:
            on_outcome(outcome)

    return record


def _through_link(path: str) -> bool:
    """Whether a path reaches its file through a symbolic link (the file's or a folder's above it)."""
    return os.path.realpath(path) != os.path.abspath(path)


def follow_before_adding(catalogue: Catalogue, path: str, content_sha1: str, title_of: TitleOf) -> None:
    """Before an engine adds a file whose content the catalogue holds already, from another engine's `add`
    under another path: that entry follows the file first (moved, or the file recorded as its copy), so that
    the engine's data joins an entry that names a file that is there (`followed` leaves content it does not hold)."""
    followed(catalogue, Outcome(path, skipped=True, content_sha1=content_sha1), title_of)


def settle_paths(catalogue: Catalogue, content_at: dict[str, str], remove: Callable[[list[Song]], Iterable[int]],
                 title_of: TitleOf, record: Callable[[Outcome], None],
                 on_outcome: Callable[[Outcome], None] | None = None) -> int:
    """A path names one song: each entry that names a path of this batch (`content_at`: path → the content the
    batch found there) but another content moves to a path where the batch found its content, or to a copy that
    still holds it (each move `record`ed), or is `remove`d (told to `on_outcome`, the file counted already).
    Returns how many were removed."""
    found_at = {content: path for path, content in content_at.items()}
    stale = [song for path, found in content_at.items() for song in catalogue.songs_at(path)
             if song.content_sha1 != found]
    if catalogue.has_table("copies"):  # a copy's path that holds other content now is no copy
        catalogue.forget_copies(path for path, content in content_at.items() for _ in catalogue.read(
            "SELECT 1 FROM copies JOIN songs ON songs.id = copies.song_id WHERE copies.path=? AND "
            "songs.content_sha1 != ?", (path, content)))
    copies = catalogue.copies_of(song.id for song in stale)
    gone = []
    for song in stale:
        path = found_at.get(song.content_sha1) or next((copy for copy in copies.get(song.id, [])
                                                        if holds_content(copy, song.content_sha1)), None)
        if path is not None:
            catalogue.move_song(song.id, path, title_of(path))
            record(Outcome(path, skipped=True, content_sha1=song.content_sha1, moved_from=song.path))
        else:
            gone.append(song)
    # as read: a song another process moved meanwhile stays; one removal for all of them
    removed = set(remove(gone)) if gone else set()
    if on_outcome is not None:
        for song in gone:
            if song.id in removed:
                on_outcome(Outcome(song.path, content_sha1=content_at[song.path], replaced=True))
    return len(removed)
