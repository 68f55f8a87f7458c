"""The project's own exceptions: errors a user can cause, each with a message a person can act on."""


class LmprintError(Exception):
    """Base class: the CLI prints these as one line, never as a traceback."""


class AudioError(LmprintError):
    """A file could not be turned into usable audio (unreadable, corrupt, not audio, too short, silent)."""


class IndexFileError(LmprintError):
    """The database is missing, foreign, damaged, locked, or from another schema or settings."""


class ModelError(LmprintError):
    """A neural model could not be loaded from the given place."""


class SettingsError(LmprintError):
    """A settings file or option names an unknown setting or gives it a value of the wrong type."""
