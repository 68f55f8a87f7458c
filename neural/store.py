"""MERT codes and the frozen PCA basis, in the index file beside the songs catalogue. No torch here.

- `mert_codes`: a song's codes, one row per song; rows go with their song (`ON DELETE CASCADE`).
- `mert_projection`: the PCA basis, fit once on the first batch's centroids and frozen.
- `meta` `mert_settings`: the `MertSettings` the codes were made with.
"""

from __future__ import annotations

import json

import numpy as np

from lmprint.catalogue import Catalogue, now_utc
from lmprint.errors import IndexFileError

from .codes import Projection
from .settings import MertSettings

SETTINGS_KEY = "mert_settings"
"""The `meta` key under which the settings that made the codes are recorded (JSON)."""
DIGEST_KEY = "mert_model_digest"
"""The `meta` key under which the digest of the weights that made the codes is recorded (`mert.weights_digest`;
absent in an index made before it was)."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS mert_codes (
    song_id INTEGER PRIMARY KEY REFERENCES songs(id) ON DELETE CASCADE,
    codes BLOB NOT NULL,
    n_windows INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS mert_projection (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    model TEXT NOT NULL,
    dims INTEGER NOT NULL,
    bits INTEGER NOT NULL,
    mean BLOB NOT NULL,
    components BLOB NOT NULL,
    fitted_on INTEGER NOT NULL,
    created_at TEXT NOT NULL
);
"""


class CodeStore:
    """The MERT engine's tables in an open index file."""

    def __init__(self, catalogue: Catalogue, settings: MertSettings, create: bool = False):
        self.catalogue = catalogue
        if not catalogue.has_table("mert_codes"):
            if not create:
                raise IndexFileError(f"{catalogue.path} has no MERT codes yet (lmprint add --method mert)")
            with catalogue.write():
                for statement in _SCHEMA.strip().split(";"):
                    if statement.strip():
                        catalogue.conn.execute(statement)
        if catalogue.meta(SETTINGS_KEY) is None and create:
            with catalogue.write():
                if catalogue.meta(SETTINGS_KEY) is None:
                    catalogue.set_meta(SETTINGS_KEY, json.dumps(settings.stored(), sort_keys=True))
        stored = catalogue.meta(SETTINGS_KEY)  # None: codes made before settings were recorded, with the defaults
        recorded = json.loads(stored) if stored else MertSettings().stored()
        if recorded != settings.stored():
            raise IndexFileError(f"{catalogue.path} holds MERT codes made with other settings ({recorded}); codes "
                                 "made differently cannot be compared")

    def projection(self) -> Projection | None:
        row = self.catalogue.read("SELECT mean, components, bits FROM mert_projection WHERE id=1")
        return Projection.from_blobs(*row[0]) if row else None

    def save_projection(self, fitted: Projection, model: str, fitted_on: int, digest: str | None = None) -> bool:
        """Store the PCA basis once, with the digest of the model's weights; both are frozen from then on (a second
        call keeps the first). Whether this call stored it: two processes' first batches race for it."""
        mean, components = fitted.to_blobs()
        with self.catalogue.write():
            saved = self.catalogue.conn.execute(
                "INSERT OR IGNORE INTO mert_projection VALUES (1, ?, ?, ?, ?, ?, ?, ?)",
                (model, fitted.mean.size, fitted.bits, mean, components, fitted_on, now_utc())).rowcount
            if saved and digest is not None:
                self.catalogue.set_meta(DIGEST_KEY, digest)
        return bool(saved)

    def model_digest(self) -> str | None:
        """The digest of the weights whose codes the index holds; None when it was not recorded."""
        return self.catalogue.meta(DIGEST_KEY)

    def coded_content(self) -> set[str]:
        """Content hashes of songs that already have MERT codes."""
        return {row[0] for row in self.catalogue.read(
            "SELECT s.content_sha1 FROM songs s JOIN mert_codes c ON c.song_id = s.id")}

    def add(self, path: str, title: str, duration_s: float, content_sha1: str, codes: np.ndarray,
            n_windows: int) -> int | None:
        """Store a song's codes, adding its catalogue row if no other engine has. None if already coded."""
        with self.catalogue.write():
            song_id = self.catalogue.add_song(path, title, duration_s, content_sha1)
            if self.catalogue.read("SELECT 1 FROM mert_codes WHERE song_id=?", (song_id,)):
                return None
            self.catalogue.conn.execute("INSERT INTO mert_codes VALUES (?, ?, ?)",
                                        (song_id, np.ascontiguousarray(codes, np.uint8).tobytes(), n_windows))
            return song_id

    def load(self, bits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(song ids, codes in the search's word-major layout (bits/64, n_codes) uint64, row of each code's song)."""
        from .search import as_columns

        rows = self.catalogue.read("SELECT song_id, codes FROM mert_codes ORDER BY song_id")
        width = bits // 8
        song_ids = np.array([r[0] for r in rows], np.int64)
        counts = np.array([len(r[1]) // width for r in rows], np.int64)
        raw = (np.frombuffer(b"".join(r[1] for r in rows), np.uint8).reshape(-1, width) if rows
               else np.zeros((0, width), np.uint8))
        return song_ids, as_columns(raw), np.repeat(np.arange(len(rows)), counts)

    def stats(self) -> dict:
        """Songs with codes and code bytes per song (for `lmprint stats`)."""
        songs, total = self.catalogue.read("SELECT COUNT(*), COALESCE(SUM(LENGTH(codes)), 0) FROM mert_codes")[0]
        row = self.catalogue.read("SELECT model, dims, bits, fitted_on FROM mert_projection WHERE id=1")
        return {"songs": songs, "code_bytes": total, "code_bytes_per_song": round(total / songs, 1) if songs else None,
                "projection": dict(zip(("model", "dims", "bits", "fitted_on_centroids"), row[0])) if row else None}
