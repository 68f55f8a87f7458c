"""The one interface both engines implement, so that the CLI, the bench and a server drive either the same way.

An engine is opened on an index file (`lmprint.catalogue`) and keeps its own data there beside the shared songs
catalogue. `lmprint add --method NAME` and `lmprint match --method NAME` pick one; `lmprint list` reads the
catalogue alone, and `lmprint remove` goes through the landmark engine when the file has its postings.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import BinaryIO, Protocol

import numpy as np

from .catalogue import Catalogue
from .results import AddReport, Answer, Match, Outcome, Song


class Method(Protocol):
    """An identification engine over an index file."""

    name: str
    """What `--method` calls it."""

    catalogue: Catalogue
    """The open index file, with the songs catalogue."""

    @property
    def sample_rate_hz(self) -> int:
        """The rate of the samples `match_samples` takes."""

    def add(self, paths: str | os.PathLike | Iterable[str | os.PathLike], jobs: int = 1,
            on_outcome: Callable[[Outcome], None] | None = None) -> AddReport:
        """Index the audio files under `paths`; already indexed content is skipped, bad files are reported."""

    def match(self, path: str | bytes | os.PathLike | BinaryIO) -> Match | None:
        """The indexed song an audio file comes from (a path, or a binary file object), or None. Raises AudioError
        for a bad file."""

    def match_samples(self, samples: np.ndarray, sample_rate_hz: float | None = None) -> Match | None:
        """Like `match`, for mono samples at `sample_rate_hz` (None: at the engine's, `Method.sample_rate_hz`)."""

    def follow(self, samples: np.ndarray, previous: Match, offset_s: float, min_score: float = 0.0) -> Match | None:
        """`previous`'s song again if the samples continue it about `offset_s` into the song, without a search,
        with a score of at least `min_score`; None when it is not clearly there, or when the engine cannot tell
        (then search: `match_samples`)."""

    def heard_span(self, samples: np.ndarray, previous: Match, offset_s: float) -> tuple[float, float] | None:
        """Where in the samples (seconds from their start: first, end) `previous`'s song is heard, `offset_s` into
        the song at their start; None when it is not clearly heard, or when the engine cannot tell (a monitor
        then guesses its boundaries from its looks)."""

    def answer(self, path: str | bytes | os.PathLike | BinaryIO) -> Answer:
        """`match`'s answer with the best candidates behind it, for diagnostics (`lmprint match --top`)."""

    def remove(self, songs: int | Song | Iterable[int | Song],
               on_removed: Callable[[list[int]], None] | None = None) -> list[int]:
        """Remove songs with every engine's data of them, by id (an int, or several; a str is refused) or as read
        (a `Song`: removed only while its row still names the file and content it was read with, since another
        process may have moved it meanwhile). Returns the ids removed; `on_removed` gets them as soon as the removal
        is made, before any housekeeping after it (which can be interrupted, or meet damage)."""

    def stats(self) -> dict:
        """Sizes and settings, for `lmprint stats`."""

    def close(self) -> None:
        """Close the index file."""

    def __enter__(self) -> Method: ...

    def __exit__(self, *exc: object) -> None: ...
