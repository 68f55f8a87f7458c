"""The landmark engine: Shazam-style spectrogram-peak pairs in an inverted index, matched by Δt voting.

Data flows one way: audio → spectrogram → peaks → hashes → store → vote → verify. `Index` is the API. Attributes
load lazily: importing `landmark` for its settings (or `lmprint --help`) does not pull in numpy and FFmpeg.
"""

from .settings import Density, FingerprintSettings, MatchSettings

__all__ = ["Density", "FingerprintSettings", "MatchSettings", "Index"]


def __getattr__(name: str):
    if name == "Index":
        from .library import Index

        return Index
    raise AttributeError(name)
