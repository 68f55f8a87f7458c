"""`bench compare`: build every method's index on the same songs, ask the same queries, measure."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import resource
import sys
import tempfile
import time

import numpy as np

from . import corpus as corpus_module
from . import queries as query_module
from .metrics import Outcome, summarise


def _peak_rss_mb() -> float:
    """Peak resident memory of this process (VmHWM: unlike ru_maxrss, it does not inherit the parent's across
    exec)."""
    try:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmHWM")) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_method(name: str, workdir: str, jobs: int, mert_model: str | None, mert_device: str | None,
                landmark_settings: str | None = None):
    """A method under test by name; `landmark_settings` is JSON of landmark settings to change, fingerprint or
    matching (see landmark/settings.py)."""
    from .methods import LandmarkMethod, MertMethod

    if name == "landmark":
        fingerprint, matching = split_landmark_settings(landmark_settings)
        return LandmarkMethod(workdir, jobs=jobs, fingerprint=fingerprint, matching=matching)
    if name == "mert":
        return MertMethod(workdir, mert_model, device=mert_device)
    raise ValueError(f"unknown method {name!r} (known: landmark, mert)")


def split_landmark_settings(text: str | None):
    """(FingerprintSettings or None, MatchSettings or None) from JSON naming settings of either kind."""
    import json

    from landmark.settings import MATCH_SETTING_NAMES, FingerprintSettings, MatchSettings

    if not text:
        return None, None
    values = json.loads(text)
    matching = {k: v for k, v in values.items() if k in MATCH_SETTING_NAMES}
    fingerprint = {k: v for k, v in values.items() if k not in MATCH_SETTING_NAMES}
    stored = FingerprintSettings().to_dict()
    for key, value in fingerprint.items():
        stored[key] = {**stored[key], **value} if isinstance(value, dict) else value
    return (FingerprintSettings.from_dict(stored) if fingerprint else None,
            MatchSettings().with_values(matching) if matching else None)


def save_queries(queries: list, path: str) -> None:
    """The query set on disk: every query's samples, raw float32 one after another, and their descriptions."""
    offsets = np.r_[0, np.cumsum([q.samples.size for q in queries])]
    with open(path + ".f32", "wb") as handle:
        for query in queries:
            np.asarray(query.samples, np.float32).tofile(handle)
    meta = [(q.song, q.indexed, q.condition, q.start_s) for q in queries]
    with open(path + ".meta", "wb") as handle:
        pickle.dump((meta, offsets), handle)


def load_queries(path: str):
    """Yield the saved queries one by one, each read from disk on its own: a method's peak memory is then its
    own, not the query set's."""
    with open(path + ".meta", "rb") as handle:
        meta, offsets = pickle.load(handle)
    with open(path + ".f32", "rb") as samples:
        for (song, indexed, condition, start_s), a, b in zip(meta, offsets[:-1], offsets[1:]):
            samples.seek(4 * int(a))
            yield query_module.Query(song, indexed, condition, start_s, np.fromfile(samples, np.float32, int(b - a)))


def evaluate(name: str, tracks, queries_path: str, workdir: str, jobs: int, mert_model, mert_device,
             show_progress: bool, landmark_settings: str | None = None) -> dict:
    """Build one method's index and run every query through it. Runs in a child process, for a clean peak RSS."""
    from tqdm import tqdm

    with open(queries_path + ".meta", "rb") as handle:
        n_queries = len(pickle.load(handle)[0])
    baseline_mb = _peak_rss_mb()
    try:
        method = make_method(name, workdir, jobs, mert_model, mert_device, landmark_settings)
    except Exception as error:  # noqa: BLE001 - a method that cannot start is reported, not fatal
        return {"skipped": str(error)}
    indexed = [t.path for t in tracks if t.indexed]
    build = method.build(indexed)
    outcomes = []
    for query in tqdm(load_queries(queries_path), total=n_queries, desc=f"{name}: queries", unit="query",
                      disable=not show_progress, file=sys.stderr):
        started = time.perf_counter()
        answer, _, heard = method.query(query.samples, query_module.BENCH_RATE_HZ)
        outcomes.append(Outcome(query.condition, query.indexed, query.song, answer, time.perf_counter() - started,
                                heard))
    figures = summarise(outcomes)
    songs = max(1, build.songs)
    figures.update({
        "songs_indexed": build.songs,
        "audio_s_indexed": round(build.audio_s, 1),
        "fingerprint_bytes_per_song": round(build.fingerprint_bytes / songs, 1),
        "db_bytes_per_song": round(build.db_bytes / songs, 1),
        "db_bytes_per_audio_s": round(build.db_bytes / max(build.audio_s, 1e-9), 1),
        "index_x_realtime": round(build.audio_s / max(build.seconds, 1e-9), 1),
        "index_x_realtime_per_core": round(build.audio_s / max(build.seconds, 1e-9) / method.cores, 1),
        "peak_rss_mb": round(_peak_rss_mb() - baseline_mb, 1),
        "meaningful": getattr(method, "meaningful", True),
        "build_notes": build.notes[:20],
    })
    return figures


def _child(connection, *args) -> None:
    try:
        connection.send(evaluate(*args))
    except Exception as error:  # noqa: BLE001
        import traceback

        connection.send({"skipped": f"failed: {error}", "traceback": traceback.format_exc()})
    finally:
        connection.close()


def load_inputs(corpus: str, limit: int | None, noise_dir: str | None, rir_dir: str | None
                ) -> tuple[list, query_module.Degraders]:
    """The corpus's tracks (exiting with a message when it has none) and the noises and rooms for its queries."""
    tracks = corpus_module.require(corpus_module.load(corpus, limit=limit), corpus)
    return tracks, query_module.Degraders.load(noise_dir, rir_dir)


def compare(methods: list[str], corpus: str, out: str, *, mert_model: str | None = None, mert_device=None,
            noise_dir: str | None = None, rir_dir: str | None = None, seed: int = 0, limit: int | None = None,
            full: bool = True, jobs: int = 2, show_progress: bool = True, landmark_settings: str | None = None) -> dict:
    """Run the comparison and write results.json, report.md and plots under `out`."""
    from tqdm import tqdm

    from . import report

    report.check_plotting()
    tracks, degraders = load_inputs(corpus, limit, noise_dir, rir_dir)
    os.makedirs(out, exist_ok=True)  # once there is something to write: a refused corpus leaves no folder
    with tempfile.TemporaryDirectory(prefix="lmprint-bench-") as workdir:
        with tqdm(total=len(tracks), desc="queries", unit="song", disable=not show_progress, file=sys.stderr) as bar:
            queries = query_module.build(tracks, degraders, seed, workdir, full=full, progress=bar)
        results = {"corpus": os.path.abspath(corpus), "seed": seed, "songs": len(tracks),
                   "indexed_songs": sum(t.indexed for t in tracks), "queries": len(queries),
                   "conditions": query_module.conditions(degraders, full), "noise_kinds": sorted(degraders.noises),
                   "impulse_responses": len(degraders.impulse_responses), "jobs": jobs,
                   "landmark_settings": landmark_settings, "methods": {}}
        queries_path = os.path.join(workdir, "queries")
        save_queries(queries, queries_path)
        del queries
        # spawn, not fork: a forked child of a process whose torch/OpenMP threads are running can deadlock
        context = multiprocessing.get_context("spawn")
        for name in methods:
            method_dir = os.path.join(workdir, name)
            os.makedirs(method_dir, exist_ok=True)
            parent, child = context.Pipe(duplex=False)
            process = context.Process(target=_child, args=(child, name, tracks, queries_path, method_dir, jobs,
                                                            mert_model, mert_device, show_progress,
                                                            landmark_settings))
            process.start()
            child.close()
            try:
                results["methods"][name] = parent.recv()
            except EOFError:
                results["methods"][name] = {"skipped": "failed: the method's process died"}
            process.join()
    report.write(results, out)
    return results
