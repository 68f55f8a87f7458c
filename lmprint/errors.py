"""The project's own exceptions: errors a user can cause, each with a message a person can act on."""

from collections.abc import Iterator
from contextlib import contextmanager


class LmprintError(Exception):
    """Base class: the CLI prints these as one line, never as a traceback."""


class AudioError(LmprintError):
    """A file could not be turned into usable audio (unreadable, corrupt, not audio, too short, silent)."""


class IndexFileError(LmprintError):
    """The database is missing, foreign, damaged, locked, or from another schema or settings."""


class NoIndex(IndexFileError):
    """No index at the path (no file, or an empty one). `create=True` makes one; the command line adds that
    `lmprint add` does."""


class IndexLocked(IndexFileError):
    """Another process held the database's lock for longer than the busy timeout: nothing is wrong with the file,
    and the same command can be run again."""


class CannotWrite(IndexFileError):
    """The disk or the folder refused the index a write (full, over a quota, not writable): what was committed
    before is kept. `reason` is the operating system's, for a caller that words its own message."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


class ChangedWhileRead(IndexFileError):
    """Another process changed a file read as immutable (a read-only folder) while it was being read: what was read
    may mix two versions of it. Reading again opens it anew."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, as a service manager (systemd, Docker) stops a long-running command: handled as Ctrl-C is, and then
    the process ends by the signal, as a stopped service is expected to (`lmprint monitor`)."""


REBUILD = "index the music again into a new file (lmprint --db NEW.db add FOLDER)"
"""What to do with an index that cannot be read: `add` skips songs an index already holds, so it cannot mend one."""


@contextmanager
def reading_file(missing: str = "no such file") -> Iterator[None]:
    """The operating system's errors of reading a file, as one-line AudioErrors (`missing` when it is not there)."""
    try:
        yield
    except FileNotFoundError:
        raise AudioError(missing) from None
    except PermissionError:
        raise AudioError("permission denied") from None
    except OSError as error:
        raise AudioError(os_reason(error)) from None


def os_reason(error: OSError) -> str:
    """The operating system's reason for an error, as a clause of a message ("file name too long"); an error
    without one (raised by a library, worded its own way) as it is."""
    if not error.strerror:
        return str(error)
    reason = error.strerror
    return reason if reason[:2].isupper() else reason[:1].lower() + reason[1:]


def damaged(where: object, why: str) -> IndexFileError:
    """The one-line error for an index file (or part of one) that does not read as lmprint wrote it."""
    return IndexFileError(f"{where} is damaged ({why}); {REBUILD}")


class ModelError(LmprintError):
    """A neural model could not be loaded from the given place."""


class SettingsError(LmprintError):
    """A settings file or option names an unknown setting or gives it a value of the wrong type."""
