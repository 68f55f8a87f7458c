"""The corpus: any folder of audio (or a manifest.tsv listing paths), split deterministically into songs that
are indexed and songs kept out of the index (for the false-match rate)."""

from __future__ import annotations

import csv
import hashlib
import os
from dataclasses import dataclass

from lmprint.files import find_audio_files


@dataclass(frozen=True)
class Track:
    path: str
    indexed: bool


def load(corpus: str, held_out_fraction: float = 0.2, limit: int | None = None) -> list[Track]:
    """Tracks of a folder (recursive) or of a manifest.tsv (column `path`, relative to the manifest).

    A track is held out when the hash of its path relative to the corpus falls in the first
    `held_out_fraction` of the hash range: stable across runs and machines, independent of file order.
    `limit` keeps the first tracks in that same hash order (a deterministic subset).
    """
    if os.path.isfile(corpus):
        root = os.path.dirname(os.path.abspath(corpus))
        with open(corpus, newline="") as handle:
            # normalised as `lmprint add` stores paths ("./a.ogg" is "a.ogg"): answers are compared by path
            paths = [os.path.normpath(os.path.join(root, row["path"]))
                     for row in csv.DictReader(handle, delimiter="\t")]
    else:
        root = os.path.abspath(corpus)
        paths = [path for path, error in find_audio_files([root]) if error is None]
    ranked = sorted(paths, key=lambda p: _unit_hash(os.path.relpath(p, root)))
    if limit is not None:
        ranked = ranked[:limit]
    return [Track(p, _unit_hash("split:" + os.path.relpath(p, root)) >= held_out_fraction) for p in ranked]


def require(tracks: list[Track], corpus: str, indexed: int = 1, held_out: int = 0) -> list[Track]:
    """`tracks`, or an exit with one line when they hold fewer than `indexed` songs to index or `held_out` kept out
    (a bench of a small folder: a fifth of it, by a hash of each path, is kept out)."""
    n_indexed = sum(track.indexed for track in tracks)
    if not tracks:
        raise SystemExit(f"bench: no audio files in {corpus}")
    if n_indexed < indexed or len(tracks) - n_indexed < held_out:
        raise SystemExit(f"bench: {corpus} has {n_indexed} songs to index and {len(tracks) - n_indexed} kept out; "
                         f"this bench needs at least {indexed} and {held_out}")
    return tracks


def _unit_hash(text: str) -> float:
    return int(hashlib.sha1(text.encode()).hexdigest()[:12], 16) / float(1 << 48)
