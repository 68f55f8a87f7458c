"""`lmprint`: arguments in, text or JSON out. Each command opens an engine (`lmprint.method.Method`) or the songs
catalogue, makes one API call, and prints.

Errors a user can cause are printed as one line, `lmprint: PATH: reason`, never as a traceback.
"""

from __future__ import annotations

import codecs
import contextlib
import dataclasses
import functools
import json
import os
import signal
import stat
import sys
import time
from collections.abc import Callable, Generator, Iterator
from copy import deepcopy
from typing import Any, BinaryIO

import click

from .errors import (
    AudioError,
    ChangedWhileRead,
    IndexFileError,
    LmprintError,
    ModelError,
    NoIndex,
    SettingsError,
    Terminated,
    os_reason,
)
from .results import Song

METHODS = ("landmark", "mert")


def _count(number: int, noun: str) -> str:
    """"1 song", "2 songs"."""
    return f"{number} {noun}{'' if number == 1 else 's'}"


_CONTROL_SHOWN = {**{code: f"\\x{code:02x}" for code in (*range(32), *range(127, 160))}, 9: "\\t", 10: "\\n",
                  13: "\\r"}
"""How a control character (C0, DEL, C1) of a name or a title is shown in a line of text (`_one_line`)..."""

_CONTROL_SHOWN_IN_CSV = {code: shown for code, shown in _CONTROL_SHOWN.items() if chr(code) not in "\t\n\r"}
"""...in a CSV field, whose quotes keep a tab or a line break whole: every other one..."""

_C1_ESCAPED = {code: f"\\u{code:04x}" for code in range(127, 160)}
"""...and in a line of JSON, which escapes C0 itself: DEL and C1 (U+009B would steer a terminal)."""


def _one_line(text: str) -> str:
    """A line of text output: a tab, a line break or another control character in a file's name or a title is
    shown escaped (\\t, \\n, \\x1b), so that lines and tab-separated fields stay whole and a name cannot steer
    the terminal, and so is a byte of a name that is not UTF-8 (\\xe9). `--json` gives names as they are, but for
    such bytes (`_as_text`)."""
    return _as_text(text).translate(_CONTROL_SHOWN)


def _as_text(name: str) -> str:
    """A file name as text: the bytes of a name that is not UTF-8 (which Python keeps as lone surrogates, and no
    strict JSON parser takes) shown escaped, `\\xe9`, as a name may spell out itself. Such a file is matched, never
    indexed (`add` refuses it)."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _json_line(value: Any) -> str:
    """`value` as a line of JSON, a title's letters as they are, so that `lmprint list --json | grep Jüngle` finds
    it. Control characters are escaped, those JSON leaves as they are too (DEL and C1, `_C1_ESCAPED`)."""
    return json.dumps(value, ensure_ascii=False).translate(_C1_ESCAPED)


def _echo_json(value: Any) -> None:
    """Print `value` as a line of JSON (`_json_line`) in UTF-8, as RFC 8259 asks, whatever the terminal's encoding
    (written as bytes where standard output encodes otherwise)."""
    line = _json_line(value)
    try:
        utf_8 = codecs.lookup(getattr(sys.stdout, "encoding", None) or "utf-8").name == "utf-8"
    except LookupError:
        utf_8 = False
    click.echo(line if utf_8 or not hasattr(sys.stdout, "buffer") else line.encode("utf-8", "backslashreplace"))


def _fail(message: str) -> None:
    click.echo(_one_line(f"lmprint: {message}"), err=True)
    raise SystemExit(1)


def _guard(function: Callable) -> Callable:
    """Turn the project's own errors and Ctrl-C into one line and a non-zero exit."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except NoIndex as error:  # the command that makes one
            _fail(f"{error} (`lmprint add` creates one)")
        except LmprintError as error:
            _fail(str(error))
        except KeyboardInterrupt as interrupt:  # a command or an engine may say what an interruption leaves
            left = f" ({interrupt.args[0]})" if interrupt.args else ""
            click.echo(f"lmprint: {'stopped' if isinstance(interrupt, Terminated) else 'interrupted'}{left}", err=True)
            if isinstance(interrupt, Terminated):
                _end_by_sigterm()
            raise SystemExit(130) from None
        except BrokenPipeError:
            raise SystemExit(0) from None
        except OSError as error:  # what nothing turned into an error of its own: a full disk under standard output
            _silence_stdout()
            _fail(f"{error.filename}: {os_reason(error)}" if error.filename else os_reason(error))
    return wrapper


def _terminate(signal_number: int, frame: object) -> None:
    raise Terminated


def _end_by_sigterm() -> None:
    """End this process by SIGTERM itself, once what it wrote is flushed: a service manager then sees it stopped as
    asked, where an exit status of 143 would read as a failure. A container's first process ignores a signal it
    has no handler for: it exits 143 (128 + SIGTERM), as a shell reports a process ended so."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)
    raise SystemExit(128 + signal.SIGTERM)


def _sigterm_as_interrupt(function: Callable) -> Callable:
    """Run a command with SIGTERM raised as `Terminated`, which `_guard` handles as Ctrl-C, and the handler before
    put back after; outside the main thread, where no handler can be set, as it is."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            previous = signal.signal(signal.SIGTERM, _terminate)
        except ValueError:  # not the main thread
            return function(*args, **kwargs)
        try:
            return function(*args, **kwargs)
        finally:
            signal.signal(signal.SIGTERM, previous)
    return wrapper


def _closed_by(generator: Generator, stop: BaseException) -> Iterator:
    """What a generator suspended at a yield still yields once `stop` is raised there (its handler's last words),
    `stop` itself swallowed where the generator raises it on: the caller raises it. Anything else it raises (a
    second signal meanwhile) goes on."""
    try:
        yield generator.throw(stop)
        yield from generator
    except StopIteration:  # from `throw`: the generator ended without a word
        return
    except BaseException as raised:
        if raised is not stop:
            raise


def _silence_stdout() -> None:
    """Point standard output at /dev/null, so that the interpreter's flush at exit cannot fail on it again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # no file descriptor behind it (a test's capture)
        pass


def open_method(db: str, method: str, *, create: bool = False, model: str | None = None, device: str | None = None,
                matching: Any = None, with_model: bool = False):
    """The engine `method` on the index file `db` (imported lazily: numpy, FFmpeg and torch load only when a
    command needs them). `with_model`: load the MERT model now, so a wrong folder is one error, not one per file."""
    if method != "mert" and (model is not None or device is not None):  # `--method mert` forgotten
        raise LmprintError(f"--{'model' if model is not None else 'device'} applies to --method mert (this is "
                           f"--method {method})")
    try:
        if method == "mert":
            from neural import mert
            from neural.library import MertIndex

            encoder = mert.load(model, device=device) if with_model else None  # before the file is made or changed
            return MertIndex(db, model, create=create, device=device, encoder=encoder)
        from landmark.library import Index

        return Index(db, create=create, matching=matching)
    except IndexFileError as error:
        raise _with_the_other_engine(error, db, method) from None


ENGINE_DATA = {"landmark": "landmark fingerprints", "mert": "MERT codes"}
"""What each engine keeps in an index file, as a refusal names it."""


def _with_the_other_engine(error: IndexFileError, db: str, method: str) -> IndexFileError:
    """A refusal to open `db` with an engine that holds nothing there, pointing to the engine that does (the
    default engine on a MERT index, or `--method mert` on a landmark one); any other refusal as it is."""
    if isinstance(error, NoIndex):
        return error
    try:
        held = engines_in(db)
    except LmprintError:  # damaged or locked: the engine's own refusal says so
        return error
    if method in held or not held:
        return error
    other = held[0]
    ask_other = "leave out --method mert" if other == "landmark" else f"add --method {other}"
    add = "lmprint add" if method == "landmark" else f"lmprint add --method {method}"
    return IndexFileError(f"{db} holds {ENGINE_DATA[other]}, not {ENGINE_DATA[method]}: {ask_other}, or index it "
                          f"with `{add}` first")


def _say_if_empty(catalogue, db: str) -> None:
    """One line on standard error where the index holds no songs: every query would find nothing, and a list would
    be empty, silently."""
    if not catalogue.holds_songs():
        click.echo(f"lmprint: {db} holds no songs yet: add some first (lmprint add FOLDER)", err=True)


def match_settings(settings_file: str | None, assignments: tuple[str, ...]):
    """Landmark `MatchSettings` from a TOML or JSON file (by its name's extension; otherwise whichever it parses
    as) and `NAME=VALUE` options (later ones win), or None."""
    if not settings_file and not assignments:
        return None
    from landmark.settings import MatchSettings

    values: dict[str, Any] = {}
    from_file: dict[str, Any] = {}
    if settings_file:
        try:
            with open(settings_file, "rb") as handle:
                contents = handle.read()
        except OSError as error:
            raise SettingsError(f"cannot read settings file {settings_file}: {os_reason(error)}") from None
        values = _settings_from(contents, settings_file)
        if not isinstance(values, dict):
            raise SettingsError(f"{settings_file}: expected a table of settings, e.g. max_postings_read = 200000")
        from_file = deepcopy(values)  # kept as the file has them, to name the file with an error of its own
    for assignment in assignments:
        name, equals, text = assignment.partition("=")
        if not equals:
            raise SettingsError(f"--set {assignment!r}: expected NAME=VALUE, e.g. --set max_postings_read=200000")
        try:
            value = json.loads(text)
        except ValueError:
            value = _number_or_text(text)
        if "." in name:  # query.fanout=10
            outer, inner = name.split(".", 1)
            table = values.setdefault(outer, {})
            if not isinstance(table, dict):
                raise SettingsError(f"--set {assignment!r}: {outer} is not a table of settings")
            table[inner] = value
        else:
            values[name] = value
    try:
        return MatchSettings().with_values(values)
    except (TypeError, AttributeError, SettingsError) as error:
        if settings_file:  # a wrong name or value in the file is named with the file
            try:
                MatchSettings().with_values(from_file)
            except (TypeError, AttributeError, SettingsError) as in_file:
                if str(in_file) == str(error):  # the file's own error, which no --set mended or hid
                    raise SettingsError(f"{settings_file}: {in_file}") from None
        raise SettingsError(str(error)) from None


NOT_NUMBERS = frozenset({"nan", "inf", "infinity"})
"""`--set` values that JSON does not read but that mean a float (signed or not): the checks refuse them as numbers
that are not a number or not finite, rather than as text."""


def _number_or_text(text: str) -> Any:
    """A `--set` value that is not JSON: `nan` or `inf` as the float it spells (`NOT_NUMBERS`), else the text."""
    return float(text) if text.strip().lower().lstrip("+-") in NOT_NUMBERS else text


def _settings_from(text: bytes, name: str) -> Any:
    """A settings file's values: TOML or JSON as its name says (.toml, .json), else whichever it parses as."""
    import tomllib

    formats = {".toml": ("TOML",), ".json": ("JSON",)}.get(os.path.splitext(name)[1].lower(), ("TOML", "JSON"))
    errors = []
    for format_name in formats:
        try:
            return tomllib.loads(text.decode()) if format_name == "TOML" else json.loads(text)
        except ValueError as error:  # UnicodeDecodeError and TOMLDecodeError are ValueErrors
            errors.append(f"as {format_name}: {error}")
    raise SettingsError(f"{name}: cannot read it {'; '.join(errors)}")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--db", type=click.Path(readable=False), metavar="FILE", envvar="LMPRINT_DB", show_envvar=True,
              help="Index file. Default: $XDG_DATA_HOME/lmprint/index.db (~/.local/share/lmprint/index.db).")
@click.version_option(package_name="lmprint")
@click.pass_context
def main(ctx: click.Context, db: str | None) -> None:
    """Offline song identification: index your music once, then name a song from a few seconds of audio."""
    from .allocator import keep_freed_memory
    from .catalogue import default_db_path

    keep_freed_memory()
    _say_library_notices()

    ctx.obj = {"db": os.path.abspath(db) if db else str(default_db_path()), "db_named": bool(db)}


def _say_library_notices() -> None:
    """What the library logs as a warning (a writer waiting for another) becomes a line on standard error."""
    import logging

    class ToStandardError(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            click.echo(f"lmprint: {record.getMessage()}", err=True)  # the standard error of the moment

    logger = logging.getLogger("lmprint")
    if not logger.handlers:
        logger.addHandler(ToStandardError(logging.WARNING))
        logger.propagate = False


def _db_after_command(ctx: click.Context, parameter: click.Parameter, value: str | None) -> None:
    if value:  # the group's --db (or $LMPRINT_DB) was read first; this one, after the command, wins
        ctx.ensure_object(dict).update(db=os.path.abspath(value), db_named=True)


def _refuse_missing_folder(ctx: click.Context) -> None:
    """An index named (`--db`, $LMPRINT_DB) in a folder that is not there is refused: a typo would make folders
    anywhere. The default place's folder is made on first use."""
    db = ctx.obj["db"]
    if ctx.obj.get("db_named") and not os.path.isdir(os.path.dirname(db)):
        raise LmprintError(f"cannot create {db}: there is no folder {os.path.dirname(db)}")


_db_option = click.option("--db", type=click.Path(readable=False), metavar="FILE", expose_value=False,
                          callback=_db_after_command,
                          help="Index file, as `lmprint --db PATH` before the command.")
_method_option = click.option("--method", type=click.Choice(METHODS), default="landmark", show_default=True,
                              help="Which engine.")
_model_option = click.option("--model", type=click.Path(), help="MERT checkpoint folder (--method mert; default: "
                             "$LMPRINT_MERT_MODEL).")
_device_option = click.option("--device", default=None, help="Torch device for --method mert (default: cuda if "
                              "present, else cpu).")


def _engine_options(command: Callable) -> Callable:
    """--db, --method, --model and --device: which index and engine a command reads."""
    for option in (_device_option, _model_option, _method_option, _db_option):
        command = option(command)
    return command


@main.command()
# no path is checked by click (readable=False): one unreadable file is one failed file, not a usage error that
# stops the batch; the index file and a monitored recording get lmprint's own one-line errors too
@click.argument("paths", nargs=-1, required=True, type=click.Path(readable=False))
@click.option("--jobs", "-j", type=click.IntRange(1), default=os.cpu_count() or 1,
              help="Fingerprint this many files in parallel (processes). Default: the number of cores.")
@_db_option
@_method_option
@_model_option
@_device_option
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.pass_context
@_guard
def add(ctx, paths, jobs, method, model, device, quiet):
    """Index audio files and folders (recursively). Files whose content is already indexed are skipped."""
    from .files import find_audio_files

    from_stdin = "-" in paths and not os.path.exists("-")
    if from_stdin:  # one failed path, and the batch goes on
        click.echo("lmprint: -: add indexes files and folders, not standard input (`lmprint match -` reads it)",
                   err=True)
        paths = tuple(path for path in paths if path != "-")
        if not paths:
            raise SystemExit(1)
    files = [path for path, _ in find_audio_files(paths)]  # counted first, for the progress bar's total
    if not files:
        raise LmprintError(f"no audio files in {', '.join(paths)}")
    _refuse_missing_folder(ctx)
    index = open_method(ctx.obj["db"], method, create=True, model=model, device=device, with_model=True)
    progress, report = progress_reporter(quiet, unit="file", desc="add", total=len(files))
    added: set[str] = set()  # the files whose songs were committed, for an interruption to count

    def songs_kept() -> int:
        """How many of the songs said to be added the index holds: a MERT engine's first batch is said before its
        PCA fit stores it, and an interruption or an error there keeps none of it."""
        with contextlib.suppress(LmprintError):  # an index that cannot be read: as many as were said
            return sum(1 for path in added if index.catalogue.songs_at(path))
        return len(added)

    def kept(count: int) -> str:
        return f"{_count(count, 'song')} added before it {'is' if count == 1 else 'are'} kept"

    def reported(outcome) -> None:
        if outcome.counted_as == "added" and not outcome.replaced:  # a replaced entry's file was said before
            added.add(outcome.path)
        report(outcome)

    started = time.perf_counter()
    try:
        index.catalogue.add_library_folders(  # for `prune`: a folder missing later may be a drive not mounted
            path if os.path.isdir(path) else os.path.dirname(path) for path in map(os.path.abspath, paths)
            if path != os.path.abspath("-") and os.path.exists(path))
        result = index.add(files, jobs=jobs, on_outcome=reported)
    except KeyboardInterrupt as interrupt:
        raise type(interrupt)(*(interrupt.args or (kept(songs_kept()),))) from None
    except LmprintError as error:  # met mid-batch (damage a merge read): what came before stays
        count = songs_kept() if added else 0
        if not count:
            raise
        raise LmprintError(f"{error} ({kept(count)})") from None
    finally:
        if progress is not None:
            progress.close()
        index.close()
    elapsed = time.perf_counter() - started
    for note in result.notes:
        click.echo(f"lmprint: note: {note}", err=True)
    speed = f", {result.audio_s / elapsed:.0f}x realtime" if result.audio_s and elapsed > 0 else ""
    changes = "".join(f", {name} {count}" for name, count in (
        ("moved", result.moved), ("copies", result.copies), ("replaced", result.replaced)) if count)
    click.echo(f"added {result.added}, skipped {result.skipped} (already indexed), failed {len(result.failed)}"
               f"{changes} ({result.audio_s:.0f} s of audio in {elapsed:.1f} s{speed})", err=True)
    if result.failed or from_stdin:
        raise SystemExit(1)


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(allow_dash=True, readable=False))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per query, one per line.")
@click.option("--top", type=click.IntRange(0), default=0, help="Also list the best N candidates with their scores "
              "(at most the 80 a landmark decision looks at).")
@_db_option
@_method_option
@_model_option
@_device_option
@click.option("--settings", "settings_file", type=click.Path(dir_okay=False),
              help="Landmark matching settings to change, from a TOML or JSON file (names as in "
              "landmark/settings.py, MatchSettings).")
@click.option("--set", "assignments", multiple=True, metavar="NAME=VALUE",
              help="Change one landmark matching setting, e.g. --set max_postings_read=200000 or --set "
              "query.fanout=10. Repeatable; wins over --settings.")
@click.pass_context
@_guard
def match(ctx, files, as_json, top, method, model, device, settings_file, assignments):
    """Identify each audio FILE (a folder: every audio file under it; -: standard input, any format, a pipe's first
    64 MiB). Prints the song, where in it the clip starts (or how far into the clip the song begins), a score, and
    the chance that a song the index does not hold would match as well (the false-match probability; MERT: a
    confidence)."""
    import tempfile

    from .files import find_audio_files

    matching = match_settings(settings_file, assignments)
    if matching is not None and method != "landmark":
        raise SettingsError("--settings and --set apply to --method landmark")
    queries: list[tuple[str, str | None]] = []  # (query, why it cannot be read, if known already)
    if "-" in files and sys.stdin is None:  # `<&-`: Python gives no stream at all
        raise LmprintError("-: standard input is closed")
    for given in files:
        if given != "-" and os.path.isdir(given):
            found = list(find_audio_files([given]))  # a folder it cannot read is a failed query, with its reason
            queries += found or [(given, "no audio files in this folder")]
        else:
            queries.append((given, None))
    index = open_method(ctx.obj["db"], method, model=model, device=device, matching=matching, with_model=True)
    _say_if_empty(index.catalogue, ctx.obj["db"])
    stdin_copy, stdin_note, stdin_path = None, "", "-"
    try:
        if any(q == "-" for q, _ in queries):  # read once; PyAV then probes its format like any file's
            opened_file = _opened_file(sys.stdin)
            if opened_file is not None:  # `< FILE`: read where it lies, as a file given by name
                stdin_path = opened_file
            else:
                stdin_copy = tempfile.NamedTemporaryFile(prefix="lmprint-stdin-")
                if not copy_start(sys.stdin.buffer, stdin_copy, STDIN_KEPT_BYTES):
                    stdin_note = (f"standard input was read to its first {STDIN_KEPT_BYTES >> 20} MiB (a stream); "
                                  "for a container that keeps its index at its end (MP4), give the file")
                stdin_copy.flush()
                stdin_path = stdin_copy.name
    except OSError as error:
        index.close()
        raise LmprintError(f"cannot keep standard input in a temporary file: {os_reason(error)}") from None
    try:
        failed = print_matches(index, queries, as_json, stdin_path, top, stdin_note)
    finally:
        if stdin_copy is not None:
            stdin_copy.close()
        index.close()
    if failed:
        raise SystemExit(1)


STDIN_KEPT_BYTES = 64 << 20
"""How much of a stream on standard input (a pipe) `match -` keeps to match: more than `max_query_s` (30 s) of any
PCM up to 8 channels of 32-bit samples at 48 kHz, or 2 at 192 kHz, so that a long or endless stream (a whole talk
piped from ffmpeg) is not held whole, nor read to its end. A live source is matched once this much has come, or it
ends: `lmprint monitor -` names songs as they play."""


def _opened_file(stream: Any) -> str | None:
    """A path that opens the regular file a stream reads (a shell's `< FILE`: `/dev/fd/N`), or None for a pipe, a
    terminal, or a stream without a file descriptor (a test's)."""
    try:
        descriptor = stream.fileno()
        regular = stat.S_ISREG(os.fstat(descriptor).st_mode)
    except (OSError, ValueError):
        return None
    path = f"/dev/fd/{descriptor}"
    return path if regular and os.path.exists(path) else None


def copy_start(source: BinaryIO, target: BinaryIO, limit_bytes: int | None, chunk_bytes: int = 1 << 20) -> bool:
    """Copy `source` to `target` a chunk at a time, until it ends or `limit_bytes` are copied (None: no limit).
    Whether it was copied to its end."""
    copied = 0
    while limit_bytes is None or copied < limit_bytes:
        chunk = source.read(chunk_bytes if limit_bytes is None else min(chunk_bytes, limit_bytes - copied))
        if not chunk:
            return True
        target.write(chunk)
        copied += len(chunk)
    return not source.read(1)


def progress_reporter(quiet: bool, unit: str, desc: str, total: int | None = None):
    """A progress bar on a terminal (None otherwise, or with --quiet), with the time left when `total` is known, and
    a per-file callback that names each failed file on stderr above the bar and advances the bar by one file."""
    progress = None
    if not quiet and sys.stderr.isatty():
        from tqdm import tqdm

        progress = tqdm(unit=unit, desc=desc, total=total, file=sys.stderr)

    def report(outcome) -> None:
        line = None
        if outcome.error:
            line = f"lmprint: {_named(outcome.path)}: {outcome.error}"
        elif outcome.moved_from:
            line = f"moved {_one_line(str(outcome.moved_from))} -> {_one_line(outcome.path)}"
        elif outcome.replaced:
            line = f"replaced {_one_line(outcome.path)}: its content changed since it was indexed"
        elif outcome.warning:
            line = f"lmprint: {outcome.path}: warning: {outcome.warning}"
        if line:
            line = _one_line(line)
            progress.write(line, file=sys.stderr) if progress is not None else click.echo(line, err=True)
        if progress is not None and not outcome.replaced and (progress.total is None or progress.n < progress.total):
            progress.update(1)  # a song moved once the batch is done is not another file

    return progress, report


AS_RECORDED = 0.005
"""A clip heard within this fraction of the recording's speed, tempo and pitch is described as played as recorded."""


def _warp_text(found) -> str:
    """", played 5.0 % faster" and the like, or "" for a clip played as recorded (or an engine that cannot tell)."""
    changes = [(name, value) for name, value in (("speed", found.speed), ("tempo", found.tempo),
                                                 ("pitch", found.pitch)) if value is not None
               and abs(value - 1) >= AS_RECORDED]
    if not changes:
        return ""
    return ", played at " + " and ".join(f"{name} {100 * (value - 1):+.1f} %" for name, value in changes)


def describe(found, method: str) -> str:
    """One line for a match: the song, where the clip starts in it (or where the song begins in the clip), its
    score, and its false-match probability (a confidence where the engine has none)."""
    if method == "mert":
        evidence = f"Hamming distance {found.score:.1f}"
    else:
        began_s = found.lead_in_s or 0.0  # the clip started before the song: where in the clip it begins
        where = f"from its start, {began_s:.1f} s into the clip" if began_s >= 0.05 else f"at {found.offset_s:.1f} s"
        evidence = f"{where}{_warp_text(found)}, score {found.score:.0f}"
    song = f"{_one_line(found.song.title)} ({_one_line(found.song.path)})"
    if found.false_match_probability is None:
        return f"{song}, {evidence}, confidence {found.confidence:.2f}"
    return f"{song}, {evidence}, false-match probability {found.false_match_probability:.1g}"


def print_matches(index, files: list[tuple[str, str | None]], as_json: bool, stdin_path: str = "-", top: int = 0,
                  stdin_note: str = "") -> int:
    """Identify each file with `index.answer` (`-`: the copy of standard input at `stdin_path`, whose failure
    ends with `stdin_note`: how it was read), print one answer
    per query (text, or a JSON line for every query, failed ones with "error"; the runner-up, and the best `top`
    candidates), and name each failed file on stderr. A file given with a reason (a folder that could not be
    read) fails with it. Returns the number of failed files (a summary line is printed if any)."""
    failed = 0
    for path, unreadable in files:
        try:
            if unreadable is not None:
                raise LmprintError(unreadable)
            answer = index.answer(stdin_path if path == "-" else path)
        except LmprintError as error:
            if isinstance(error, (ModelError, IndexFileError)) and not isinstance(error, ChangedWhileRead):
                raise  # the model or the index (damaged, locked), not this query: said once, as none would fare better
            if path == "-" and stdin_note and isinstance(error, AudioError):
                error = LmprintError(f"{error} ({stdin_note})")
            click.echo(_one_line(f"lmprint: {_named(path)}: {error}"), err=True)
            if as_json:
                _echo_json({"query": _as_text(path), "match": None, "runner_up": None,
                            "error": _as_text(str(error))})
            failed += 1
            continue
        found = answer.match
        if answer.note:
            click.echo(_one_line(f"lmprint: {path}: {answer.note}"), err=True)
        if as_json:
            _echo_json(answer.to_dict(_as_text(path), top))
        else:
            click.echo(f"{_one_line(path)}: {describe(found, index.name)}" if found else f"{_one_line(path)}: no match")
            for rank, contender in enumerate(answer.contenders[:top], start=1):
                click.echo(f"  {rank}. {_one_line(contender.song.title)} ({_one_line(contender.song.path)}), score "
                           f"{contender.score:.1f}")
    if failed:
        click.echo(f"lmprint: {failed} of {len(files)} queries failed", err=True)
    return failed


@main.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per song (per recording with --recordings), "
              "one per line.")
@click.option("--recordings", is_flag=True, help="Group the files that hold one recording (found as `dedup` finds "
              "them: it reads the whole index; copies of one file share its song id).")
@click.option("--speed", is_flag=True, help="With --recordings: group copies played faster or slower too, as `dedup "
              "--speed` does.")
@_db_option
@click.pass_context
@_guard
def list_(ctx, as_json, recordings, speed):
    """List indexed songs, or with --recordings each recording with its files. A song's copies (files of the same
    bytes) are in its JSON object's "copies"."""
    from .catalogue import Catalogue

    if speed and not recordings:
        raise LmprintError("--speed is for --recordings: it finds copies played faster or slower")
    with Catalogue(ctx.obj["db"]) as catalogue:
        _say_if_empty(catalogue, ctx.obj["db"])
        if as_json and not recordings:  # each song with its copies, as `GET /songs` gives them
            for entry in catalogue.listed():
                _echo_json(entry)
            return
        songs = catalogue.songs()
        copies = catalogue.copies_of() if recordings else {}
    groups = [[song] for song in songs]
    speeds: dict[int, float] = {}
    if recordings and "landmark" not in engines_in(ctx.obj["db"]):
        raise LmprintError(f"{ctx.obj['db']} has no landmark index: recordings are found by comparing landmarks")
    if recordings:
        from landmark.dedup import DedupSettings

        index = open_method(ctx.obj["db"], "landmark")
        try:
            found = index.duplicates(DedupSettings.searching_speeds(index.matching, speed))
        finally:
            index.close()
        groups = _by_recording(songs, found.recordings)
        speeds = found.speeds
    for files in _with_copies(groups, copies):
        first = files[0][0]
        relative = _relative_speeds(files, speeds)
        if as_json:
            _echo_json({"files": [{**file.to_dict(), "copy": copy,
                                   **({"speed": round(relative[file.id], 4)} if recordings else {})}
                                  for file, copy in files]})
        elif recordings:
            count = f"{len(files)} file{'s' * (len(files) > 1)}"
            click.echo(f"{_one_line(first.title)}\t{first.duration_s:.1f} s\t{count}\n" +
                       "".join(f"  {file.id}\t{_one_line(file.path)}{_speed_note(relative[file.id])}"
                               f"{' (copy)' * copy}\n" for file, copy in files), nl=False)
        else:
            click.echo(f"{first.id}\t{first.duration_s:7.1f} s\t{_one_line(first.title)}\t{_one_line(first.path)}")


def _named(path: str) -> str:
    """A path as an error line shows it: an empty one (a script's empty variable) as `""`."""
    return path or '""'


def _by_recording(songs: list[Song], recordings: list[list[int]]) -> list[list[Song]]:
    """`songs` grouped by the recordings `dedup` found (song ids, ascending), each song not in one a group of its
    own, in order of their first song's id. Songs removed since the recordings were found are left out, and songs
    added since stand alone."""
    by_id = {song.id: song for song in songs}
    grouped = {song_id for group in recordings for song_id in group}
    listed = [[by_id[i] for i in group if i in by_id] for group in recordings]
    return sorted([group for group in listed if group] + [[song] for song in songs if song.id not in grouped],
                  key=lambda group: group[0].id)


def _relative_speeds(files: list[tuple[Song, bool]], speeds: dict[int, float]) -> dict[int, float]:
    """Each file's speed against the first file listed of its recording: a copy played faster or slower (1.0 for
    most; a song's copies share its speed)."""
    first = speeds.get(files[0][0].id, 1.0)
    return {file.id: speeds.get(file.id, 1.0) / first for file, _ in files}


def _speed_note(speed: float) -> str:
    """The note " (4.0 % faster)" for a file that plays its recording at another speed than its group's first;
    none at 1.0 to the tenth of a percent."""
    change = 100 * (speed - 1)
    return f" ({abs(change):.1f} % {'faster' if change > 0 else 'slower'})" if round(abs(change), 1) > 0 else ""


def _with_copies(groups: list[list[Song]], copies: dict[int, list[str]]) -> list[list[tuple[Song, bool]]]:
    """Each group of songs as its files: each song, then its copies (files of the same bytes, named by the song's
    id), each with whether it is a copy."""
    return [[(file, file is not song) for song in group
             for file in (song, *(dataclasses.replace(song, path=path) for path in copies.get(song.id, ())))]
            for group in groups]


def engines_in(db: str) -> list[str]:
    """The engines that hold data in the index file `db`, landmark first."""
    from .catalogue import Catalogue

    with Catalogue(db) as catalogue:
        return [name for name, present in (("landmark", catalogue.meta("config") is not None),
                                            ("mert", catalogue.has_table("mert_codes"))) if present]


def remove_songs(db: str, songs: list, dry_run: bool, copies: dict[int, list[str]] | None = None) -> int:
    """Remove songs as read (`Method.remove`) with all their data (or, with `dry_run`, nothing), print each (and
    the recorded `copies` of each, which go with it), and return how many were (or would be) removed. Through the
    landmark engine when the file has its postings: they are the only data a song's removal from the catalogue does
    not take along (every per-song table cascades)."""
    def say(removed: set[int]) -> None:
        for song in songs:
            if song.id in removed:
                click.echo(f"{'would remove' if dry_run else 'removed'} {song.id}\t{_one_line(song.path)}")
                for path in (copies or {}).get(song.id, []):
                    click.echo(f"{'would forget' if dry_run else 'forgot'} copy\t{_one_line(path)}")
            else:
                click.echo(_one_line(f"lmprint: {song.path}: not removed: another process moved or removed it "
                                     "meanwhile"), err=True)

    if not songs or dry_run:
        say({song.id for song in songs})
        return len(songs)
    said: list[int] = []

    def removal_made(ids: list[int]) -> None:  # said before the compaction a large removal starts
        said.extend(ids)
        say(set(ids))

    index = open_method(db, (engines_in(db) or ["mert"])[0])
    try:
        return len(index.remove(songs, on_removed=removal_made))  # as read: one another process moved stays
    except KeyboardInterrupt as interrupt:
        if said and not interrupt.args:  # in the compaction after it, which is left for the next large change
            raise type(interrupt)(f"{_count(len(said), 'song')} removed before it") from None
        raise
    finally:
        index.close()


@main.command()
@click.argument("songs", nargs=-1, required=True)
@click.option("--all", "remove_all", is_flag=True, help="Remove every song a reference names (a title several "
              "songs share, a folder); without it such a reference is refused.")
@click.option("--dry-run", is_flag=True, help="Print what would be removed, and remove nothing.")
@_db_option
@click.pass_context
@_guard
def remove(ctx, songs, remove_all, dry_run):
    """Remove songs, each named by id, path, title or content hash (or its first 8 digits or more), with all their
    data. A folder names every song whose file lies under it (--all when there are several). A song's recorded
    copies go with it, each listed."""
    from .catalogue import MIN_HASH_PREFIX, Catalogue

    with Catalogue(ctx.obj["db"]) as catalogue:
        plan = catalogue.removal(songs, remove_all)
        if plan.ambiguous:  # nothing is removed: a destructive command does only what was meant
            for reference, why in plan.ambiguous:
                click.echo(_one_line(f"lmprint: {reference}: {why}"), err=True)
            raise SystemExit(1)
        _keep_in_copies(catalogue, plan.stand_ins, plan.copies, dry_run)
        forgotten = set(plan.copies)  # said already; a removed song's other recorded copies go with it
        going = {song_id: [path for path in paths if path not in forgotten]
                 for song_id, paths in catalogue.copies_of(plan.songs).items()}
    for reference in plan.missing:  # said first: a removal's compaction may yet be stopped (Ctrl-C, damage)
        short_hash = (4 <= len(reference) < MIN_HASH_PREFIX and not reference.isdigit()
                      and all(c in "0123456789abcdef" for c in reference.lower()))
        hint = f" (a content hash prefix needs {MIN_HASH_PREFIX} digits or more)" if short_hash else ""
        named = reference or '""'  # an empty name, shown as one
        click.echo(_one_line(f"lmprint: {named}: no such song in the index{hint}"), err=True)
    n_removed = remove_songs(ctx.obj["db"], list(plan.songs.values()), dry_run, going)
    if plan.missing or n_removed < len(plan.songs):  # named, but not removed: the user should know it is still there
        raise SystemExit(1)


def _keep_in_copies(catalogue, stand_ins: list, copies: list[str], dry_run: bool) -> None:
    """Make each copy in `stand_ins` its song's file, and forget `copies`, printing each (with `dry_run`, only what
    would be done)."""
    for song, copy in stand_ins:
        if not dry_run:
            catalogue.stand_in(song, copy)
        click.echo(f"{'would move' if dry_run else 'moved'} {song.id}\t{_one_line(song.path)} -> {_one_line(copy)}")
    if not dry_run:
        catalogue.forget_copies(copies)
    for path in copies:
        click.echo(f"{'would forget' if dry_run else 'forgot'} copy\t{_one_line(path)}")


@main.command()
@click.option("--dry-run", is_flag=True, help="Print what would be removed, and remove nothing; exit as the run "
              "would.")
@click.option("--force", is_flag=True, help="Remove them even when every indexed song's file is gone, or a folder "
              "given to `add` is missing or empty (kept without it: a drive that is not mounted looks like that).")
@_db_option
@click.pass_context
@_guard
def prune(ctx, dry_run, force):
    """Remove the songs whose files are gone (deleted, or moved without `lmprint add` seeing the new place). A song
    whose file is gone but a copy of it is there (the same bytes, recorded by `add`) names the copy instead."""
    from .catalogue import Catalogue

    with Catalogue(ctx.obj["db"]) as catalogue:
        plan = catalogue.pruning(force)
        own_gone = len(plan.songs) + len(plan.stand_ins)
        if plan.every and not (force or dry_run):
            songs = ("the file of the one indexed song is" if own_gone == 1
                     else f"the files of all {own_gone} indexed songs are")
            raise LmprintError(f"{songs} gone (is the drive mounted?): nothing removed; `lmprint prune --force` "
                               "removes them all")
        # a song whose file is gone lives on in a copy
        _keep_in_copies(catalogue, plan.stand_ins, plan.copies, dry_run)
        # a dry run exits as the run would: refused where it cannot write what the run would change
        refused = (catalogue.read_only_message() if dry_run and catalogue.read_only and (force or not plan.every)
                   and (plan.songs or plan.stand_ins or plan.copies) else None)
    for folder, songs_kept in plan.kept.items():  # said first: a removal's compaction may yet be stopped
        click.echo(_one_line(f"lmprint: {folder} is missing or empty (is the drive mounted?): its "
                             f"{_count(len(songs_kept), 'song')} {'would be ' if dry_run else ''}kept; "
                             "`lmprint prune --force` removes them"), err=True)
    n_removed = remove_songs(ctx.obj["db"], plan.songs, dry_run)
    note = ""
    if dry_run:
        note = (" (dry run: none removed; all of them: `prune` would refuse without --force)"
                if plan.every and not force else " (dry run: none removed)")
    songs = "1 song whose file is" if n_removed == 1 else f"{n_removed} songs whose files are"
    moved = f", {len(plan.stand_ins)} now named by a copy" if plan.stand_ins else ""
    forgotten = (f", {len(plan.copies)} cop{'y' if len(plan.copies) == 1 else 'ies'} gone" if plan.copies
                 else "")
    n_kept = sum(len(songs_kept) for songs_kept in plan.kept.values())
    held = f", {n_kept} more {'would be ' if dry_run else ''}kept (their folder is missing)" if n_kept else ""
    click.echo(f"{songs} gone{moved}{forgotten}{held}{note}", err=True)
    if refused:
        click.echo(_one_line(f"lmprint: {refused}"), err=True)
    if refused or plan.kept or (plan.every and not force):  # a dry run exits as the run would
        raise SystemExit(1)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object (what the text shows, in bytes and seconds).")
@_db_option
@click.pass_context
@_guard
def stats(ctx, as_json):
    """Songs, hashes and storage of the index: the first engine's figures at the top (landmark where it has
    landmarks), another engine's under its name (`mert`)."""
    engines = engines_in(ctx.obj["db"])
    figures: dict[str, Any] = {}
    for engine in engines:
        index = open_method(ctx.obj["db"], engine)
        try:
            engine_figures = index.stats()
        finally:
            index.close()
        if figures:
            figures[engine] = engine_figures
        else:
            figures = engine_figures
    if not engines:
        from .catalogue import Catalogue

        with Catalogue(ctx.obj["db"]) as catalogue:
            figures = {"path": str(catalogue.path), "songs": catalogue.song_count()}
    if as_json:
        _echo_json(figures)
        return
    for key, value in figures.items():
        click.echo(f"{key}: {json.dumps(value) if isinstance(value, dict) else value}")



@main.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object per group or overlap, one per line.")
@click.option("--speed", is_flag=True,
              help="Also find copies played up to 8 % faster or slower (a tape's, a turntable's or a film's speed; "
                   "the join alone finds those within about 1 %): each song's middle is searched at every speed, "
                   "some 18 ms a song in a large library.")
@_db_option
@click.pass_context
@_guard
def dedup(ctx, as_json, speed):
    """List files that hold the same recording (copies of one file share its song id), and recordings that hold
    part of another, with the time ranges."""
    from landmark.dedup import DedupSettings, shared_parts_by_recording

    if "landmark" not in engines_in(ctx.obj["db"]):
        raise LmprintError(f"{ctx.obj['db']} has no landmark index: dedup compares landmarks")
    index = open_method(ctx.obj["db"], "landmark")
    try:
        found = index.duplicates(DedupSettings.searching_speeds(index.matching, speed))
        copies = index.catalogue.copies_of()  # files of the same bytes: one song, indexed once
        every_song = index.catalogue.songs()
    finally:
        index.close()
    # songs removed since the join are left out (an `add` or `remove` may run meanwhile)
    songs = {song.id: song for song in every_song}
    groups = [files for files in _with_copies(_by_recording(every_song, found.recordings), copies) if len(files) > 1]
    parts = shared_parts_by_recording([part for part in found.shared_parts
                                       if part.song_a in songs and part.song_b in songs], found.recordings)
    gone = {path for path in {file.path for files in groups for file, _ in files}
            | {songs[i].path for part in parts for i, _, _ in part.sides} if not os.path.lexists(path)}
    for files in groups:
        speeds = _relative_speeds(files, found.speeds)
        if as_json:
            _echo_json({"same_recording": [{"song_id": file.id, "path": file.path, "copy": copy,
                                            "gone": file.path in gone, "speed": round(speeds[file.id], 4)}
                                           for file, copy in files]})
        else:
            click.echo("same recording:\n" + "".join(
                f"  {file.id}\t{_one_line(file.path)}{_speed_note(speeds[file.id])}{' (copy)' * copy}"
                f"{' (gone)' * (file.path in gone)}\n" for file, copy in files), nl=False)
    for part in parts:
        if as_json:
            _echo_json({"shared_part": [{"song_id": i, "path": songs[i].path, "start_s": round(start, 1),
                                         "end_s": round(end, 1), "gone": songs[i].path in gone}
                                        for i, start, end in part.sides], "landmarks": part.landmarks})
        else:
            click.echo("shared part:\n" + "".join(f"  {i}\t{start:7.1f}–{end:7.1f} s\t{_one_line(songs[i].path)}"
                                                  f"{' (gone)' * (songs[i].path in gone)}\n"
                                                  for i, start, end in part.sides), nl=False)
    click.echo(f"{_count(len(groups), 'recording')} held by several files, {_count(len(parts), 'shared part')}"
               + (f"; {_count(len(gone), 'file')} listed {'are' if len(gone) > 1 else 'is'} gone (`lmprint prune` "
                  "forgets the songs whose files are all gone)" if gone else ""), err=True)


@main.command()
@click.argument("source", type=click.Path(allow_dash=True, readable=False))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per segment event, one per line.")
@click.option("--csv", "as_csv", is_flag=True, help="CSV: one row per segment event, with a header.")
@click.option("--format", "raw_format", type=click.Choice(["s16le", "s32le", "f32le"]),
              help="SOURCE is headerless PCM in this sample format, at --rate and --channels (e.g. `ffmpeg ... -f "
              "s16le -ar 44100 -ac 2 -`: without -ar and -ac ffmpeg keeps the source's, which nothing in raw PCM "
              "tells).")
@click.option("--rate", "raw_rate", type=click.IntRange(1), default=44100, show_default=True,
              help="Sample rate of raw PCM (with --format).")
@click.option("--channels", "raw_channels", type=click.IntRange(1), default=2, show_default=True,
              help="Channels of raw PCM (with --format).")
@click.option("--jobs", type=click.IntRange(1), default=None,
              help="Looks matched at once, in as many processes [default: one per core for a file (not a "
                   "pipe) with the landmark engine, else 1: a live stream then answers without waiting for a "
                   "second look].")
@_engine_options
@click.pass_context
@_guard
@_sigterm_as_interrupt  # a service manager stops a monitor so: the song playing is closed, as on Ctrl-C
def monitor(ctx, source, as_json, as_csv, raw_format, raw_rate, raw_channels, jobs, method, model, device):
    """Name every song in a long recording or a live stream (a file, or - for standard input), with where each
    plays: a line when a song is confirmed (open), and one when it ends.

    A song is confirmed once two looks at the stream name it, so in a file (6 s windows, 2 s apart) a piece of a
    song between others is reported from about 4 s on; one of 3 s may be, one of 2.5 s or less is not (`match`
    names such a clip)."""
    import csv

    from landmark import audio

    from .monitor import Looks, MonitorSettings
    from .monitor import monitor as follow

    if as_json and as_csv:
        raise LmprintError("--json or --csv, not both")
    raw_only = [f"--{name}" for name in ("rate", "channels")
                if ctx.get_parameter_source(f"raw_{name}") is not click.core.ParameterSource.DEFAULT]
    if raw_only and not raw_format:  # a container says its own rate and channels
        raise LmprintError(f"{' and '.join(raw_only)} {'are' if len(raw_only) > 1 else 'is'} for raw PCM: give its "
                           "--format too")
    if source != "-" and os.path.isdir(source):
        raise LmprintError(f"{_named(source)}: is a folder; monitor reads one recording or stream")
    extension = os.path.splitext(source)[1].lower().lstrip(".")
    if not raw_format and extension in (*audio.RAW_FORMATS, "raw", "pcm"):  # no container says how to read it
        raise LmprintError(f"{_named(source)}: raw PCM has no header: give its --format (and --rate, --channels)")
    raw_input = None
    if raw_format and source != "-":
        try:
            raw_input = open(source, "rb")  # noqa: SIM115 - closed below
        except OSError as error:
            raise LmprintError(f"{_named(source)}: {os_reason(error)}") from None
    index = open_method(ctx.obj["db"], method, model=model, device=device, with_model=True)
    _say_if_empty(index.catalogue, ctx.obj["db"])
    rate = index.sample_rate_hz
    # standard input, a pipe or a device is heard as it comes (live, it may be): a file is read as fast as it can be
    live = source == "-" or not os.path.isfile(source)
    if raw_format:
        chunks = audio.stream_raw(raw_input or sys.stdin.buffer, raw_format, raw_rate, raw_channels, rate)
    else:
        chunks = audio.stream(sys.stdin.buffer if source == "-" else source, rate)
    if jobs is None:
        jobs = (os.cpu_count() or 1) if not live and method == "landmark" else 1
    looks = Looks(functools.partial(open_method, ctx.obj["db"], method, model=model, device=device),
                  jobs) if jobs > 1 else None
    # a live stream is looked at every hop even while nothing is heard, so a song is named as soon as it can be
    settings = MonitorSettings()
    if live:
        settings = dataclasses.replace(settings, idle_hop_s=settings.hop_s)
    writer = csv.writer(sys.stdout) if as_csv else None
    columns = ["event", "start_s", "end_s", "song_id", "title", "path", "song_offset_s", "confidence", "rate"]
    if writer:
        writer.writerow(columns)
    segments = 0
    # samples, and the loudest chunk's level: a recording too short or silent throughout is refused, as `match` does
    heard = [0, 0.0]

    def counted(chunks: Iterator[Any]) -> Iterator[Any]:
        for chunk in chunks:
            heard[0] += chunk.size
            heard[1] = max(heard[1], audio.loudest_rms(chunk, rate))
            yield chunk

    def emit(segment: Any) -> None:
        nonlocal segments
        row = segment.to_dict()
        event = "open" if segment.open else "closed"
        segments += not segment.open
        if as_json:
            _echo_json({"event": event, **row})
        elif writer:
            writer.writerow([event] + [row[c].translate(_CONTROL_SHOWN_IN_CSV) if isinstance(row[c], str)
                                       else row[c] for c in columns[1:]])
            sys.stdout.flush()
        else:
            offset = "" if segment.song_offset_s is None else f", from {segment.song_offset_s:.1f} s in the song"
            if abs(segment.rate - 1) >= AS_RECORDED:
                offset += f", played at rate {100 * (segment.rate - 1):+.1f} %"  # speed or tempo (`rate`)
            span = (f"{segment.start_s:8.1f} s –  playing" if segment.open
                    else f"{segment.start_s:8.1f} s – {segment.end_s:.1f} s")
            click.echo(f"{span}  {_one_line(segment.song.title)} ({_one_line(segment.song.path)}){offset}, "
                       f"confidence {segment.confidence:.4f}")

    found = follow(index, counted(chunks), settings, looks=looks,
                   ahead_of_looks=not live)  # a pipe arrives no faster, and a blocked read cannot be stopped
    try:
        for segment in found:
            emit(segment)
        if heard[0] == 0:
            raise AudioError("no audio in it")
        audio.check_level(int(heard[0]), heard[1], rate, settings.audible_s)
    except AudioError as error:  # the source turned out not to be audio, or broke off: say which source
        raise AudioError(f"{'standard input' if source == '-' else _named(source)}: {error}") from None
    except KeyboardInterrupt as stop:  # the song playing was closed where the stream stopped
        # stopped here (writing a line), not in the monitor: thrown in where it waits, it still closes the song (a
        # monitor that stopped itself re-raises it at once); the interruption is what is reported, however it ends
        with contextlib.suppress(LmprintError):
            for segment in _closed_by(found, stop):
                emit(segment)
        raise type(stop)(_count(segments, "segment")) from None
    finally:
        index.close()
        if looks is not None:
            looks.close()
        if raw_input is not None:
            raw_input.close()
    click.echo(_count(segments, "segment"), err=True)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (0.0.0.0: every interface; the default lets in this machine alone).")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True,
              help="Port to listen on (0: a free one, printed).")
@click.option("--workers", type=click.IntRange(1), default=2, show_default=True,
              help="Server processes, each answering one query at a time on its own open index (one per core "
                   "suits most machines).")
@click.option("--queue", type=click.IntRange(0), default=14, show_default=True,
              help="Uploads that may be read or wait while the workers are busy, per worker process; one more gets 503 "
                   "with Retry-After.")
@click.option("--max-upload-mb", type=click.FloatRange(0, min_open=True), default=32.0, show_default=True,
              help="Larger uploads get 413 (in MiB: 2^20 bytes).")
@click.option("--allow-add", is_flag=True, help="Let POST /songs add to the index, with the token.")
@click.option("--token", envvar="LMPRINT_TOKEN", help="Bearer token for POST /songs (default: $LMPRINT_TOKEN).")
@click.option("--certfile", type=click.Path(dir_okay=False), help="Serve HTTPS with this PEM certificate (and its "
              "key, unless --keyfile): browsers lend the microphone page a microphone only over HTTPS, or on "
              "localhost.")
@click.option("--keyfile", type=click.Path(dir_okay=False), help="The certificate's private key (PEM).")
@_engine_options
@click.pass_context
@_guard
def serve(ctx, host, port, workers, queue, max_upload_mb, allow_add, token, certfile, keyfile, method, model,
          device):
    """Serve the index over HTTP: POST /match (an audio file in, match --json's JSON out), GET /songs /stats
    /health, a WebSocket /listen for live audio, and at / a page that names what the microphone hears."""
    from importlib.util import find_spec

    missing = next((names[0] for names in SERVE_NEEDS if all(find_spec(name) is None for name in names)), None)
    try:  # the workers import the framework: check for it here, before the index opens
        if missing is not None:
            raise ImportError(name=missing)
        from .serve import TLS, check_can_listen, is_loopback, urls_of
        from .serve import serve as run
    except ImportError as error:
        raise LmprintError(f"serve needs the [serve] extra ({error.name} is missing): pip install -e '.[serve]' in "
                           "lmprint's folder") from None

    settings = {"queue": queue, "max_upload_bytes": int(max_upload_mb * 2**20),
                "allow_add": allow_add, "token": token}
    os.environ[SERVE_OPTIONS] = json.dumps({"db": ctx.obj["db"], "method": method, "model": model,
                                            "device": device, "settings": settings})
    serve_app()  # the index opens, or one line says why, before any worker starts
    port = check_can_listen(host, port)
    tls = TLS.of(certfile, keyfile)
    click.echo(f"lmprint: serving {ctx.obj['db']} at {', '.join(urls_of(host, port, tls is not None))} (Ctrl-C "
               "stops)", err=True)
    if tls is None and not is_loopback(host):
        click.echo("lmprint: other devices' browsers lend the microphone page no microphone over plain HTTP: give "
                   "--certfile (docs/cli.md, `lmprint serve`)", err=True)
    from .serve import ServeSettings

    run("lmprint.cli:serve_app", host, port, workers, ServeSettings(**settings), tls)


SERVE_NEEDS = (("starlette",), ("uvicorn",), ("python_multipart", "multipart"), ("websockets",))
"""What the [serve] extra installs, by module (any of each): the framework, its server, form uploads (the module's
name and its older one) and the live WebSocket."""

SERVE_OPTIONS = "LMPRINT_SERVE_OPTIONS"
"""How `lmprint serve` hands its options to the worker processes that uvicorn starts."""


def serve_app():
    """The application of one `lmprint serve` worker process, from the options the command put in the
    environment (uvicorn calls it by name in each process)."""
    from threadpoolctl import threadpool_limits

    from .serve import ServeSettings, create_app

    threadpool_limits(1)  # the worker processes are the parallelism; BLAS threads on top of them only contend
    options = json.loads(os.environ[SERVE_OPTIONS])
    return create_app(lambda: open_method(options["db"], options["method"], model=options["model"],
                                          device=options["device"]), ServeSettings(**options["settings"]))

if __name__ == "__main__":
    main()
