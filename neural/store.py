"""MERT codes and the frozen PCA basis, in the same SQLite file as the landmark index. No torch here."""

from __future__ import annotations

import datetime as _dt
import sqlite3

import numpy as np

from landmark.index import Store

from .codes import Projection

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


def ensure_tables(store: Store) -> None:
    with store.write():
        for statement in _SCHEMA.strip().split(";"):
            if statement.strip():
                store.conn.execute(statement)


def _has_tables(conn: sqlite3.Connection) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE name='mert_codes'").fetchone() is not None


def projection(store: Store) -> Projection | None:
    if not _has_tables(store.conn):
        return None
    row = store.conn.execute("SELECT mean, components, bits FROM mert_projection WHERE id=1").fetchone()
    return Projection.from_blobs(*row) if row else None


def save_projection(store: Store, fitted: Projection, model: str, fitted_on: int) -> None:
    """Store the PCA basis once; it is frozen from then on (a second call keeps the first)."""
    mean, components = fitted.to_blobs()
    with store.write():
        store.conn.execute("INSERT OR IGNORE INTO mert_projection VALUES (1, ?, ?, ?, ?, ?, ?, ?)",
                           (model, fitted.mean.size, fitted.bits, mean, components, fitted_on,
                            _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")))


def coded_content(store: Store) -> set[str]:
    """Content hashes of songs that already have MERT codes."""
    if not _has_tables(store.conn):
        return set()
    return {row[0] for row in store.conn.execute(
        "SELECT s.content_sha1 FROM songs s JOIN mert_codes c ON c.song_id = s.id")}


def add_codes(store: Store, path: str, title: str, duration_s: float, content_sha1: str, codes: np.ndarray,
              n_windows: int) -> int | None:
    """Store a song's codes, creating its song row if the landmark method has not. None if already coded."""
    with store.write():
        row = store.conn.execute("SELECT id FROM songs WHERE content_sha1=?", (content_sha1,)).fetchone()
        if row is None:
            song_id = int(store.conn.execute(
                "INSERT INTO songs(path, title, duration_s, content_sha1, n_hashes, added_at) VALUES (?,?,?,?,0,?)",
                (path, title, duration_s, content_sha1,
                 _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))).lastrowid)
        else:
            song_id = int(row[0])
        if store.conn.execute("SELECT 1 FROM mert_codes WHERE song_id=?", (song_id,)).fetchone():
            return None
        store.conn.execute("INSERT INTO mert_codes VALUES (?, ?, ?)",
                           (song_id, np.ascontiguousarray(codes, np.uint8).tobytes(), n_windows))
        return song_id


def load_codes(store: Store, bits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(song ids, codes in the search's word-major layout (bits/64, n_codes) uint64, row of each code's song)."""
    rows = store.conn.execute("SELECT song_id, codes FROM mert_codes ORDER BY song_id").fetchall()
    width = bits // 8
    song_ids = np.array([r[0] for r in rows], np.int64)
    counts = np.array([len(r[1]) // width for r in rows], np.int64)
    raw = np.frombuffer(b"".join(r[1] for r in rows), np.uint8).reshape(-1, width) if rows else np.zeros((0, width),
                                                                                                        np.uint8)
    code_song = np.repeat(np.arange(len(rows)), counts)
    from .search import as_columns

    return song_ids, as_columns(raw), code_song


def code_stats(conn: sqlite3.Connection) -> dict:
    """Songs with codes and code bytes per song (for `lmprint stats`)."""
    if not _has_tables(conn):
        return {"songs": 0, "code_bytes_per_song": None, "projection": None}
    songs, total = conn.execute("SELECT COUNT(*), COALESCE(SUM(LENGTH(codes)), 0) FROM mert_codes").fetchone()
    row = conn.execute("SELECT model, dims, bits, fitted_on FROM mert_projection WHERE id=1").fetchone()
    return {"songs": songs, "code_bytes_per_song": round(total / songs, 1) if songs else None,
            "projection": dict(zip(("model", "dims", "bits", "fitted_on_centroids"), row)) if row else None}
