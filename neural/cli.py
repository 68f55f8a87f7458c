"""`lmprint add/match --method mert`: the MERT path behind the same CLI and index file."""

from __future__ import annotations

import time

import click


def _open(db: str, model: str | None, device: str | None, create: bool):
    from . import mert
    from .library import MertIndex

    encoder = mert.load(model, device=device)
    return MertIndex(db, encoder, create=create)


def add_mert(db: str, paths, model: str | None, device: str | None, quiet: bool) -> int:
    """Returns the exit status. A model or index that cannot be opened raises LmprintError, which the calling
    command turns into one line (landmark.cli._guard)."""
    index = _open(db, model, device, create=True)
    from landmark.cli import progress_reporter

    progress, report = progress_reporter(quiet, unit="window", desc="mert", count_files=False)

    started = time.perf_counter()
    added, skipped, failed = index.add(paths, on_outcome=report, progress=progress)
    if progress is not None:
        progress.close()
    click.echo(f"added {added}, skipped {skipped} (already coded), failed {len(failed)} "
               f"({time.perf_counter() - started:.1f} s)", err=True)
    index.close()
    return 1 if failed else 0


def match_mert(db: str, files, model: str | None, device: str | None, as_json: bool) -> int:
    """Returns the exit status (errors opening the model or index: as add_mert)."""
    index = _open(db, model, device, create=False)
    from landmark.cli import print_matches

    def describe(found) -> str:
        return (f"{found.song.title} ({found.song.path}), Hamming distance {found.distance:.1f}, "
                f"confidence {found.confidence:.2f}")

    failed = print_matches(index, files, as_json, describe)
    index.close()
    return 1 if failed else 0
