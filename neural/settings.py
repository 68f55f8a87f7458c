"""Every setting of the MERT engine, in one typed, documented object, recorded in the index with its codes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lmprint.errors import SettingsError

RULES = ("mean", "min", "single")
"""How the windows of a multi-window query combine into a song's distance:
mean   - the mean over query windows of each window's distance to the song (every window must agree);
min    - the smallest distance of any window to the song;
single - the middle window alone (the MusicPrint protocol's single-window query)."""


@dataclass(frozen=True)
class MertSettings:
    """How songs become codes, and how a query's codes are judged. Units are in the names."""

    window_s: float = 5.0
    """Seconds per embedded window (the MusicPrint protocol)."""

    hop_s: float = 1.0
    """Seconds between window starts."""

    centroids: int = 10
    """Centroids per song (k of k-means). Songs with this many windows or fewer keep their windows."""

    code_bits: int = 256
    """Bits per code: PCA dimensions kept, one sign bit each (32 bytes)."""

    batch_size: int = 16
    """Windows embedded per forward pass."""

    min_clip_s: float = 1.0
    """Shorter audio is refused: a second of audio is under 75 MERT frames."""

    rule: str = "mean"
    """How a multi-window query's windows combine into a song's distance (see `RULES`)."""

    max_distance_fraction: float = 0.25
    """No match when the nearest song is further than this fraction of the code bits (64 of 256), or..."""

    min_margin_bits: float = 4.0
    """...when it beats the runner-up by fewer bits than this. Both are provisional: they must be calibrated with
    the real weights on clips of songs that are not indexed (`bench compare`)."""

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise SettingsError(f"unknown rule {self.rule!r}; one of {RULES}")
        if self.code_bits % 64:
            raise SettingsError("code_bits must be a multiple of 64 (codes are searched as 64-bit words)")
        if not (self.window_s > 0 and self.hop_s > 0 and self.centroids >= 1):
            raise SettingsError("window_s and hop_s must be above 0, centroids at least 1")

    def stored(self) -> dict[str, Any]:
        """The settings that decide what the codes are: recorded with them, so codes are only ever compared with
        codes made the same way."""
        return {name: getattr(self, name) for name in ("window_s", "hop_s", "centroids", "code_bits")}
