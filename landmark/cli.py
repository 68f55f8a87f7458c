"""`lmprint`: arguments in, text or JSON out. Each command is one call of the Python API plus printing.

Errors a user can cause are printed as one line, `lmprint: PATH: reason`, never as a traceback.
"""

from __future__ import annotations

import json
import os
import sys
import time

import click

from .errors import LmprintError

METHODS = ("landmark", "mert")


def _fail(message: str) -> None:
    click.echo(f"lmprint: {message}", err=True)
    raise SystemExit(1)


def _db_path(ctx: click.Context) -> str:
    return ctx.obj["db"]


def _open_index(ctx: click.Context, create: bool = False):
    from .library import Index  # lazy: numpy and the audio stack load only when a command opens an index

    try:
        return Index(_db_path(ctx), create=create)
    except LmprintError as error:
        _fail(str(error))


def _open_store(ctx: click.Context):
    from .index import Store

    try:
        return Store(_db_path(ctx))
    except LmprintError as error:
        _fail(str(error))


def _guard(function):
    """Turn the project's own errors and Ctrl-C into one line and a non-zero exit."""
    import functools

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except LmprintError as error:
            _fail(str(error))
        except KeyboardInterrupt:
            click.echo("lmprint: interrupted (songs already added are kept)", err=True)
            raise SystemExit(130)
        except BrokenPipeError:
            raise SystemExit(0)
    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--db", type=click.Path(dir_okay=False), envvar="LMPRINT_DB", show_envvar=True,
              help="Index file. Default: $XDG_DATA_HOME/lmprint/index.db (~/.local/share/lmprint/index.db).")
@click.version_option(package_name="lmprint")
@click.pass_context
def main(ctx: click.Context, db: str | None) -> None:
    """Offline song identification: index your music once, then name a song from a few seconds of audio."""
    from .index import default_db_path

    ctx.obj = {"db": os.path.abspath(db) if db else str(default_db_path())}


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--jobs", "-j", type=click.IntRange(1), default=1, show_default=True,
              help="Fingerprint this many files in parallel (processes).")
@click.option("--method", type=click.Choice(METHODS), default="landmark", show_default=True)
@click.option("--model", type=click.Path(), help="MERT checkpoint folder (--method mert).")
@click.option("--device", default=None, help="Torch device for --method mert (default: cuda if present, else cpu).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.pass_context
@_guard
def add(ctx, paths, jobs, method, model, device, quiet):
    """Index audio files and folders (recursively). Files whose content is already indexed are skipped."""
    if method == "mert":
        from neural.cli import add_mert

        raise SystemExit(add_mert(_db_path(ctx), paths, model, device, quiet))
    index = _open_index(ctx, create=True)
    progress, report = progress_reporter(quiet, unit="file", desc="add", count_files=True)

    started = time.perf_counter()
    result = index.add(paths, jobs=jobs, on_outcome=report)
    elapsed = time.perf_counter() - started
    if progress is not None:
        progress.close()
    speed = f", {result.audio_s / elapsed:.0f}x realtime" if result.audio_s and elapsed > 0 else ""
    click.echo(f"added {result.added}, skipped {result.skipped} (already indexed), failed {len(result.failed)}"
               f" ({result.audio_s:.0f} s of audio in {elapsed:.1f} s{speed})", err=True)
    index.close()
    if result.failed:
        raise SystemExit(1)


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="One JSON object per query, one per line.")
@click.option("--method", type=click.Choice(METHODS), default="landmark", show_default=True)
@click.option("--model", type=click.Path(), help="MERT checkpoint folder (--method mert).")
@click.option("--device", default=None, help="Torch device for --method mert.")
@click.pass_context
@_guard
def match(ctx, files, as_json, method, model, device):
    """Identify each audio FILE. Prints the song, where in it the clip starts, a score and a confidence."""
    if method == "mert":
        from neural.cli import match_mert

        raise SystemExit(match_mert(_db_path(ctx), files, model, device, as_json))
    index = _open_index(ctx)

    def describe(found) -> str:
        return (f"{found.song.title} ({found.song.path}) at {found.offset_s:.1f} s, score {found.score:.0f}, "
                f"confidence {found.confidence:.2f}")

    failed = print_matches(index, files, as_json, describe)
    index.close()
    if failed:
        raise SystemExit(1)


def progress_reporter(quiet: bool, unit: str, desc: str, count_files: bool):
    """A progress bar on a terminal (None otherwise, or with --quiet), and a per-file callback that names each
    failed file on stderr above the bar, advancing the bar by one file when `count_files`."""
    progress = None
    if not quiet and sys.stderr.isatty():
        from tqdm import tqdm

        progress = tqdm(unit=unit, desc=desc, file=sys.stderr)

    def report(outcome) -> None:
        if outcome.error:
            line = f"lmprint: {outcome.path}: {outcome.error}"
            progress.write(line, file=sys.stderr) if progress is not None else click.echo(line, err=True)
        if progress is not None and count_files:
            progress.update(1)

    return progress, report


def print_matches(index, files, as_json: bool, describe) -> int:
    """Identify each file with `index.match`, print one answer per query (text or JSON line), and name each
    failed file on stderr. Returns the number of failed files (a summary line is printed if any)."""
    failed = 0
    for path in files:
        try:
            found = index.match(path)
        except LmprintError as error:
            click.echo(f"lmprint: {path}: {error}", err=True)
            failed += 1
            continue
        if as_json:
            click.echo(json.dumps({"query": path, "match": found.to_dict() if found else None}))
        else:
            click.echo(f"{path}: {describe(found)}" if found else f"{path}: no match")
    if failed:
        click.echo(f"lmprint: {failed} of {len(files)} queries failed", err=True)
    return failed


@main.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per song, one per line.")
@click.pass_context
@_guard
def list_(ctx, as_json):
    """List indexed songs."""
    store = _open_store(ctx)
    for song in store.songs():
        if as_json:
            click.echo(json.dumps({"id": song.id, "path": song.path, "title": song.title,
                                   "duration_s": round(song.duration_s, 3), "content_sha1": song.content_sha1,
                                   "n_hashes": song.n_hashes, "added_at": song.added_at}))
        else:
            click.echo(f"{song.id}\t{song.duration_s:7.1f} s\t{song.title}\t{song.path}")


@main.command()
@click.argument("songs", nargs=-1, required=True)
@click.pass_context
@_guard
def remove(ctx, songs):
    """Remove songs, each named by id, path, title or content hash."""
    from .library import Index

    index = Index(_db_path(ctx))
    removed, missing = index.remove(songs)
    for song in removed:
        click.echo(f"removed {song.id}\t{song.path}")
    for reference in missing:
        click.echo(f"lmprint: {reference}: no such song in the index", err=True)
    if missing:
        raise SystemExit(1)


@main.command()
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@_guard
def stats(ctx, as_json):
    """Songs, hashes and storage of the index, per method."""
    store = _open_store(ctx)
    figures = store.stats()
    try:
        from neural.store import code_stats

        figures["mert"] = code_stats(store.conn)
    except ImportError:
        pass
    if as_json:
        click.echo(json.dumps(figures))
        return
    for key, value in figures.items():
        click.echo(f"{key}: {value}")


if __name__ == "__main__":
    main()
