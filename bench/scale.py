"""`bench scale`: how recall, false matches, latency and storage change from 100 to 10,000+ songs.

Distractors are made from the real songs' landmark fingerprints: each distractor takes one real song's
postings, shuffles its 10 s segments and shifts every anchor frequency by a few bins. Hash statistics stay
those of real music (unlike uniform random hashes, which would flatter the engine), while no distractor
lines up with any real clip.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

import numpy as np

from landmark.arrays import run_starts

from . import corpus as corpus_module
from . import queries as query_module
from .metrics import Outcome, summarise

SEGMENT_S = 10.0


def song_fingerprints(postings) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Every song's (hashes, frames), read back from the postings table."""
    hashes, songs, frames = postings.all_postings()
    order = np.argsort(songs, kind="stable")
    hashes, songs, frames = hashes[order], songs[order], frames[order]
    starts = run_starts(songs)
    return {int(songs[a]): (hashes[a:b], frames[a:b]) for a, b in zip(starts, np.r_[starts[1:], songs.size])}


def distractor(hashes: np.ndarray, frames: np.ndarray, settings, rng: np.random.Generator
               ) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """A new song's fingerprint from a real one: 10 s segments shuffled, anchor frequencies shifted. Returns
    (hashes, anchor frames, peaks), the peaks being those its pairs join, as `add` stores them."""
    from landmark.hashes import pack, unpack

    segment = int(SEGMENT_S / settings.frame_s)
    pieces = frames // segment
    order = rng.permutation(int(pieces.max()) + 1)
    new_frames = (order[pieces] * segment + frames % segment).astype(np.uint32)
    anchor, delta_bins, delta_frames = unpack(hashes)
    low = int(settings.min_freq_hz * settings.fft_size / settings.sample_rate_hz)
    high = int(settings.max_freq_hz * settings.fft_size / settings.sample_rate_hz)
    shifted = np.clip(anchor + int(rng.integers(3, 12)) * (1 if rng.random() < 0.5 else -1), low, high)
    peak_frames = np.r_[new_frames, new_frames + delta_frames].astype(np.int64)
    peak_bins = np.r_[shifted, shifted + delta_bins]
    points = np.unique((peak_frames << 16 | peak_bins)[(peak_bins >= low) & (peak_bins <= high)])
    peaks = (points >> 16, points & 0xFFFF)
    return pack(shifted, delta_bins, delta_frames).astype(np.uint32), new_frames, peaks


def scale(corpus: str, sizes: list[int], noise_dir: str | None, seed: int = 0, limit: int | None = None,
          jobs: int = 2, workdir: str | None = None, show_progress: bool = True) -> dict:
    import soxr
    from tqdm import tqdm

    from landmark import Index
    from landmark.batch import SongFingerprint

    tracks = corpus_module.load(corpus, limit=limit)
    degraders = query_module.Degraders.load(noise_dir, None)
    kind = sorted(degraders.noises)[0]
    with tempfile.TemporaryDirectory(prefix="lmprint-scale-", dir=workdir) as tmp:
        queries = [q for q in query_module.build(tracks, degraders, seed, tmp, full=False)
                   if q.condition in ("clean_5s", f"noise_{kind}_0dB") or not q.indexed]
        db = os.path.join(tmp, "scale.db")
        index = Index(db, create=True)
        clips = [soxr.resample(q.samples, query_module.BENCH_RATE_HZ, index.sample_rate_hz).astype(np.float32)
                 for q in queries]  # once, for every index size
        index.add([t.path for t in tracks if t.indexed], jobs=jobs)
        real = song_fingerprints(index.postings)
        bases = list(real.values())
        rng = np.random.default_rng(seed)
        rows = []
        for size in sorted(sizes):
            have = len(index.catalogue.songs())
            started = time.perf_counter()
            for number in tqdm(range(have, size), desc=f"distractors to {size}", disable=not show_progress,
                               file=sys.stderr):
                base_hashes, base_frames = bases[number % len(bases)]
                hashes, frames, peaks = distractor(base_hashes, base_frames, index.fingerprint_settings, rng)
                index.add_fingerprint(SongFingerprint(f"distractor:{number}", f"distractor {number}", 180.0,
                                                      f"distractor-{number}", hashes, frames, *peaks))
            insert_s = time.perf_counter() - started
            outcomes = []
            for query, samples in zip(queries, clips):
                began = time.perf_counter()
                found = index.match_samples(samples)
                outcomes.append(Outcome(query.condition, query.indexed, query.song,
                                        found.song.path if found else None, time.perf_counter() - began))
            figures = summarise(outcomes)
            index.catalogue.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            songs = len(index.catalogue.songs())
            rows.append({"songs": songs, "recall": figures["recall"], "false_match_rate": figures["false_match_rate"],
                         "query_ms_p50": figures["query_ms_p50"], "query_ms_p95": figures["query_ms_p95"],
                         "db_bytes_per_song": round(os.path.getsize(db) / songs, 1),
                         "db_mb": round(os.path.getsize(db) / 2**20, 1),
                         "insert_ms_per_distractor": (round(1000 * insert_s / (size - have), 2) if size > have
                                                      else None)})
            print(rows[-1], file=sys.stderr, flush=True)
        index.close()
    return {"corpus": os.path.abspath(corpus), "seed": seed, "method": "landmark", "rows": rows}


def markdown(result: dict) -> str:
    conditions = sorted({c for row in result["rows"] for c in row["recall"]})
    lines = ["| songs | " + " | ".join(f"recall {c}" for c in conditions) +
             " | false matches | query ms p50 | p95 | DB bytes/song | DB MB | insert ms/song |",
             "|---" * (len(conditions) + 7) + "|"]
    for row in result["rows"]:
        lines.append(f"| {row['songs']:,} | " + " | ".join(f"{row['recall'].get(c, 0):.3f}" for c in conditions) +
                     f" | {row['false_match_rate']} | {row['query_ms_p50']} | {row['query_ms_p95']} | "
                     f"{row['db_bytes_per_song']:,.0f} | {row['db_mb']} | {row['insert_ms_per_distractor'] or '–'} |")
    return "\n".join(lines) + "\n"
