"""`bench scale`: how recall, false matches, latency and storage change from 100 to 10,000+ songs.

Distractors are made from the real songs' landmark fingerprints: each distractor takes one real song's
stored peaks, plays each of its 10 s segments backwards and shuffles them, scales their times and frequencies by a
few percent and shifts them by a few bins, the source's distractors each at another of these variants
(`DistractorVariant`), and pairs them as the index pairs a song's. Hash statistics stay those of real music (unlike
uniform random hashes, which would flatter the engine), while no distractor lines up with any real clip, as recorded
or played faster or slower, nor with another distractor: twins would tie in every vote they lead, and so never be
named, right or wrong. (Played forwards, a distractor's moved peaks were partly lined up with its source again by the
search across speeds and pitches.)
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from . import corpus as corpus_module
from . import queries as query_module
from .metrics import Outcome, summarise

if TYPE_CHECKING:
    from landmark import MatchSettings

SEGMENT_S = 10.0
"""Distractors play each segment of their source song of this length backwards, and shuffle them."""

DISTRACTORS_PER_BATCH = 100
"""Distractors stored per transaction at least (the bulk path: a batch is sealed into one segment at once)."""
BATCH_SHARE = 0.05
"""...and at most this share of the songs already indexed: batches that grow with the index keep the merges per
song flat (each posting rewritten a few times, `landmark.store.MERGE_RATIO`)."""
ONE_BY_ONE = 5
"""Songs then added one a transaction at each size, as `lmprint add` adds them, timed for "add one ms"."""

WARPED_CONDITIONS = ("speed_-3%", "speed_+5%")
"""Clips of indexed songs played faster or slower, whose recall the table shows at each size: the warped search
reads its own budget of postings (`MatchSettings.warp_max_postings_read`), so it loses evidence as keys fill up.
They are left out of the latency figures, which stay those of the clean, noisy and held-out clips."""

STARTUP_RUNS = 3
"""Fresh `lmprint match` processes timed at each size, for the cold start and the query process's memory."""


DISTRACTOR_SHIFTS_BINS = (*range(-11, -2), *range(3, 12))
"""A distractor's peaks lie this many frequency bins from where its scaling puts them: never 0, so that none holds
its source's frequencies (played backwards, none lines up with its source either way)."""
DISTRACTOR_SCALES = tuple(float(scale) for scale in 1 + 0.035 * np.arange(-4, 5))
"""A distractor's peaks lie this many times further apart than its source's in time, and as many times in
frequency: 3.5 % apart, so that a typical pair (10–60 frames, 10–60 bins apart) rounds to another hash from one
scale to the next."""


@dataclass(frozen=True)
class DistractorVariant:
    """How a distractor differs from its source song, other than in the order and direction of its segments."""

    shift_bins: int
    time_scale: float
    """Every peak's time, × this (a tempo change: the source's pairs over a longer or shorter song)."""
    interval_scale: float
    """Every peak's frequency, × this about the band's middle (so Δf × this too)."""


def distractor_variants(seed: int = 0) -> list[DistractorVariant]:
    """Every variant (`DISTRACTOR_SHIFTS_BINS` × `DISTRACTOR_SCALES`², 1,458), in an order of their own: the k-th
    distractor of a source is the k-th variant, so that a source's first 1,458 distractors are all unlike (its ~740
    at 100,000 songs from 135 sources). Drawn at random, a source's distractors shared a variant, and so every hash,
    with 40 others at 100,000 songs (18 shifts, no scaling). Some variants' shift nearly undoes their scaling about
    the band's middle, which makes them their source at another pitch: played backwards, as every distractor is,
    that lines up with no clip."""
    grid = [DistractorVariant(shift, time_scale, interval_scale) for shift in DISTRACTOR_SHIFTS_BINS
            for time_scale in DISTRACTOR_SCALES for interval_scale in DISTRACTOR_SCALES]
    return [grid[i] for i in np.random.default_rng(seed).permutation(len(grid))]


def _band_bins(settings) -> tuple[int, int]:
    """The fingerprinted band's lowest and highest FFT bins: a distractor's frequencies are scaled about their
    middle, and its peaks moved outside them are dropped."""
    return (int(settings.min_freq_hz * settings.fft_size / settings.sample_rate_hz),
            int(settings.max_freq_hz * settings.fft_size / settings.sample_rate_hz))


def distractor(peak_frames: np.ndarray, peak_bins: np.ndarray, settings, rng: np.random.Generator,
               variant: DistractorVariant) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """A new song's fingerprint from a real one's stored peaks: 10 s segments each played backwards and shuffled,
    then each peak moved as `variant` says (time × `time_scale`, frequency × `interval_scale` about the band's
    middle, then shifted), and the peaks paired as the index pairs a song's (`pair_peaks` with
    `FingerprintSettings.index`). A peak moved out of the band is dropped, and peaks moved onto one point are one.
    Returns (hashes, anchor frames, peaks), as `add` stores them."""
    from landmark.hashes import pair_peaks

    segment = int(SEGMENT_S / settings.frame_s)
    frames = np.asarray(peak_frames, np.int64)
    pieces = frames // segment
    order = rng.permutation(int(pieces.max()) + 1 if frames.size else 1)
    shuffled = order[pieces].astype(np.int64) * segment + (segment - 1 - frames % segment)  # each played backwards
    low, high = _band_bins(settings)
    middle = (low + high) / 2
    bins = (np.round(middle + (np.asarray(peak_bins, np.int64) - middle) * variant.interval_scale).astype(np.int64)
            + variant.shift_bins)
    frames = np.round(shuffled * variant.time_scale).astype(np.int64)
    kept = (bins >= low) & (bins <= high)
    points = np.unique(frames[kept] << 16 | bins[kept])
    frames, bins = points >> 16, points & 0xFFFF
    hashes, anchor_frames = pair_peaks(frames, bins, settings, settings.index)
    return hashes, anchor_frames, (frames, bins)


def distractor_bases(index) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """(peak frames, peak bins, duration in s) of every song in the index, to make distractors from."""
    songs = list(index.catalogue.songs())
    peaks = index.peaks.get([song.id for song in songs])
    return [(*peaks[song.id], song.duration_s) for song in songs if song.id in peaks]


def add_distractors(index, bases, size: int, rng: np.random.Generator, show_progress: bool = False) -> float:
    """Grow the index to `size` songs with distractors made from `bases`, through the bulk path. Returns the
    seconds spent storing them (making them is the bench's work, not an insert's)."""
    from tqdm import tqdm

    from landmark.batch import SongFingerprint

    stored_s = 0.0
    variants = distractor_variants()
    firsts = [index.catalogue.song_count()]
    while firsts[-1] < size:
        firsts.append(firsts[-1] + max(DISTRACTORS_PER_BATCH, int(BATCH_SHARE * firsts[-1])))
    for first, end in tqdm(list(zip(firsts[:-1], firsts[1:])), desc=f"distractors to {size}", unit="batch",
                           disable=not show_progress, file=sys.stderr):
        batch = []
        for number in range(first, min(size, end)):
            base_frames, base_bins, base_s = bases[number % len(bases)]
            variant = variants[number // len(bases) % len(variants)]  # twins again past 1,458 a source
            hashes, frames, peaks = distractor(base_frames, base_bins, index.fingerprint_settings, rng, variant)
            # as long as its source's density of peaks makes it: the peaks dropped at the band's edges are no
            # evidence of a sparser song
            length_s = base_s * variant.time_scale * peaks[0].size / max(1, base_frames.size)
            batch.append(SongFingerprint(f"distractor:{number}", f"distractor {number}", length_s,
                                         f"distractor-{number}", hashes, frames, *peaks))
        began = time.perf_counter()
        index.add_fingerprints(batch)
        stored_s += time.perf_counter() - began
    return stored_s


def scale(corpus: str, sizes: list[int], noise_dir: str | None, seed: int = 0, limit: int | None = None,
          jobs: int = 2, workdir: str | None = None, show_progress: bool = True, matching: dict | None = None
          ) -> dict:
    """The table of `bench scale` (docs/bench.md); `matching`: matching settings the queries use instead of the
    defaults (`MatchSettings.with_values`)."""
    import soxr

    from landmark import Index, MatchSettings

    from .audio_io import write
    from .startup import measure

    match_settings = MatchSettings().with_values(matching or {})

    tracks = corpus_module.require(corpus_module.load(corpus, limit=limit), corpus)
    degraders = query_module.Degraders.load(noise_dir, None)
    kind = sorted(degraders.noises)[0]
    with tempfile.TemporaryDirectory(prefix="lmprint-scale-", dir=workdir) as tmp:
        queries = [q for q in query_module.build(tracks, degraders, seed, tmp, full=False, also=WARPED_CONDITIONS)
                   if q.condition in ("clean_5s", f"noise_{kind}_0dB", *WARPED_CONDITIONS) or not q.indexed]
        db = os.path.join(tmp, "scale.db")
        index = Index(db, create=True)
        clips = [soxr.resample(q.samples, query_module.BENCH_RATE_HZ, index.sample_rate_hz).astype(np.float32)
                 for q in queries]  # once, for every index size
        cold_clip = os.path.join(tmp, "cold-start.wav")  # a clip of an indexed song, as a user would pass it
        write(cold_clip, next(q.samples for q in queries if q.indexed), query_module.BENCH_RATE_HZ)
        index.add([t.path for t in tracks if t.indexed], jobs=jobs)
        bases = distractor_bases(index)
        rng = np.random.default_rng(seed)
        rows, at_size = [], []
        for number, size in enumerate(sorted(sizes)):
            have = index.catalogue.song_count()
            insert_s = add_distractors(index, bases, size, rng, show_progress)
            one_by_one_s = [add_distractors(index, bases, index.catalogue.song_count() + 1, rng)
                            for _ in range(ONE_BY_ONE)]
            index.catalogue.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            songs = index.catalogue.song_count()
            stats = index.stats()  # the file and its segments
            cold = measure(db, cold_clip, runs=STARTUP_RUNS, settings=matching)
            last = number == len(sizes) - 1
            at_size.append(db if last else snapshot(db, os.path.join(tmp, f"at-{songs}")))
            rows.append({"songs": songs,
                         "db_bytes_per_song": round(stats["file_bytes"] / songs, 1),
                         "db_bytes_per_audio_s": round(stats["file_bytes"] / index.catalogue.audio_s(), 1),
                         "db_mb": round(stats["file_bytes"] / 2**20, 1),
                         "segments": stats.get("segments"),  # the default store's; another may have none
                         "cold_start_s": cold["wall_s_median"], "query_process_peak_mb": cold["peak_rss_mb"],
                         "insert_ms_per_distractor": (round(1000 * insert_s / (size - have), 2) if size > have
                                                      else None),
                         "add_one_ms": round(1000 * float(np.median(one_by_one_s)), 1),
                         "hashes_per_row": stats.get("hashes_per_row")})
            print(rows[-1], file=sys.stderr, flush=True)
        index.close()  # then every size's clips, the sizes taking turns
        for row, outcomes in zip(rows, interleaved(at_size, queries, clips, match_settings)):
            row.update(size_figures(outcomes))
    return {"corpus": os.path.abspath(corpus), "seed": seed, "method": "landmark", "matching": matching or {},
            "rows": rows}


def size_figures(outcomes: list[Outcome]) -> dict:
    """One size's answers and latencies: recall of every condition, the false-match rate and the distractors
    named, and the latencies of the clean, noisy and held-out clips alone (`WARPED_CONDITIONS` are there for their
    recall). A clip of a song the index holds stops at its match; one of a held-out song searches on, warped too:
    the two medians, the overall one falling between them."""
    figures = summarise(outcomes)
    timed = [o for o in outcomes if o.condition not in WARPED_CONDITIONS]
    latencies = summarise(timed)
    return {"recall": figures["recall"], "false_match_rate": figures["false_match_rate"],
            "distractors_named": sum(1 for o in outcomes if o.answer and o.answer.startswith("distractor:")),
            "query_ms_p50": latencies["query_ms_p50"], "query_ms_p95": latencies["query_ms_p95"],
            "query_ms_p50_indexed": _median_ms([1000 * o.seconds for o in timed if o.indexed]),
            "query_ms_p50_held_out": _median_ms([1000 * o.seconds for o in timed if not o.indexed])}


def snapshot(db: str, folder: str) -> str:
    """A copy of a closed-for-writing index (its file, checkpointed, and its segments), to query later."""
    from landmark.segments import folder_of

    os.makedirs(folder)
    copy = os.path.join(folder, os.path.basename(db))
    shutil.copyfile(db, copy)
    if folder_of(db).is_dir():
        shutil.copytree(folder_of(db), folder_of(copy))
    return copy


def interleaved(index_paths: list[str], queries: list, clips: list[np.ndarray], matching: MatchSettings | None = None
                ) -> list[list[Outcome]]:
    """Every clip matched against every index, timed, the indexes taking turns clip by clip (each first in turn):
    the sizes' latencies are measured over the same minutes, so a machine that slows down or speeds up during a
    run moves them together and their ratio holds (measured one size after another, one run's ratio moved by
    more than 1.6×)."""
    from landmark import Index

    indexes = [Index(path, matching=matching) for path in index_paths]
    outcomes: list[list[Outcome]] = [[] for _ in indexes]
    try:
        for number, (query, samples) in enumerate(zip(queries, clips)):
            for turn in range(len(indexes)):
                which = (number + turn) % len(indexes)
                began = time.perf_counter()
                found = indexes[which].match_samples(samples)
                outcomes[which].append(Outcome(query.condition, query.indexed, query.song,
                                               found.song.path if found else None, time.perf_counter() - began))
    finally:
        for index in indexes:
            index.close()
    return outcomes


def _median_ms(values: list[float]) -> float | None:
    return round(float(np.median(values)), 1) if values else None


def markdown(result: dict) -> str:
    conditions = sorted({c for row in result["rows"] for c in row["recall"]})
    lines = ["| songs | " + " | ".join(f"recall {c}" for c in conditions) +
             " | false-match rate | distractors named | query ms p50 | p95 | p50 indexed / held-out | insert ms/song "
             "| add one ms | DB B/s of audio | DB MB | cold start s | query process MB |",
             "|---" * (len(conditions) + 12) + "|"]
    for row in result["rows"]:
        split = f"{row.get('query_ms_p50_indexed', '–')} / {row.get('query_ms_p50_held_out', '–')}"
        lines.append(f"| {row['songs']:,} | " + " | ".join(f"{row['recall'].get(c, 0):.3f}" for c in conditions) +
                     f" | {row['false_match_rate']} | {row.get('distractors_named', '–')} | "
                     f"{row['query_ms_p50']} | {row['query_ms_p95']} | {split} | "
                     f"{row['insert_ms_per_distractor'] or '–'} | {row.get('add_one_ms', '–')} | "
                     f"{row['db_bytes_per_audio_s']:,.0f} | "
                     f"{row['db_mb']} | {row['cold_start_s']} | {row['query_process_peak_mb']} |")
    return "\n".join(lines) + "\n"
