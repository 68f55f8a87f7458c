"""The landmark engine: Shazam-style spectrogram-peak pairs in an inverted index, matched by Δt voting.

Data flows one way: audio → spectrogram → peaks → hashes → index → vote. `Index` is the API. Attributes load
lazily: importing `landmark` for `Config` (or `lmprint --help`) does not pull in numpy and FFmpeg.
"""

from .config import Config, Density
from .errors import AudioError, IndexFileError, LmprintError

__all__ = ["Config", "Density", "Index", "Match", "AddReport", "LmprintError", "AudioError", "IndexFileError"]


def __getattr__(name):
    if name in ("Index", "Match", "AddReport"):
        from . import library

        return getattr(library, name)
    raise AttributeError(name)
