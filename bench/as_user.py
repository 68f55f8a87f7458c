"""`bench as-user`: the bench's queries as audio files, identified through the `lmprint` CLI as a user runs it.

`bench compare` hands each method samples in process. This check goes the way a user does: the indexed songs are
added with `lmprint add`, each query is written to an audio file (AAC in .m4a by default, as a phone records),
and the files are named with one `lmprint match --json` batch. Recall, false matches and the clip offsets are
read from its JSON lines, so the figures cover decoding, resampling, the CLI and the index file too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from . import queries as query_module
from .metrics import Outcome, summarise
from .run import load_inputs

LMPRINT = [sys.executable, "-m", "lmprint"]
"""The CLI, run with this Python (the same code as the `lmprint` console script)."""

CLIPS_PER_CALL = 400
"""Clip paths per `lmprint match` call: keeps each command line well under the system's limit."""

OFFSET_TOLERANCE_S = 0.1
"""A right song's reported offset counts as right within this many seconds of where the clip was cut."""


def run(corpus: str, out: str, *, noise_dir: str | None = None, rir_dir: str | None = None, seed: int = 0,
        limit: int | None = None, full: bool = False, jobs: int = 2, clip_format: str = "m4a") -> dict:
    """Index the corpus's indexed songs and match every query of the bench's set through the CLI; write
    results.json and report.md under `out` and return the results."""
    from .audio_io import write

    os.makedirs(out, exist_ok=True)
    tracks, degraders = load_inputs(corpus, limit, noise_dir, rir_dir)
    with tempfile.TemporaryDirectory(prefix="lmprint-as-user-") as workdir:
        query_set = query_module.build(tracks, degraders, seed, workdir, full=full)
        clip_paths = []
        for number, query in enumerate(query_set):
            path = os.path.join(workdir, f"clip{number:05d}.{clip_format}")
            peak = float(np.max(np.abs(query.samples))) if query.samples.size else 0.0
            write(path, query.samples / max(1.0, peak), query_module.BENCH_RATE_HZ)
            clip_paths.append(path)
        db = os.path.join(workdir, "library.db")
        songs = [t.path for t in tracks if t.indexed]
        started = time.perf_counter()
        added = _lmprint(db, "add", "--quiet", "--jobs", str(jobs), *songs)
        add_s = time.perf_counter() - started
        audio_s = sum(json.loads(line)["duration_s"] for line in _lmprint(db, "list", "--json").stdout.splitlines())
        answers: dict[str, dict | None] = {}
        failed: list[str] = []
        match_s = 0.0
        for start in range(0, len(clip_paths), CLIPS_PER_CALL):
            started = time.perf_counter()
            batch = _lmprint(db, "match", "--json", *clip_paths[start:start + CLIPS_PER_CALL])
            match_s += time.perf_counter() - started
            answers.update((item["query"], item["match"]) for item in map(json.loads, batch.stdout.splitlines()))
            failed += [line for line in batch.stderr.splitlines() if line.startswith("lmprint: ") and
                       " queries failed" not in line]
        db_bytes = json.loads(_lmprint(db, "stats", "--json").stdout)["file_bytes"]  # the segments' folder too
    per_clip_s = match_s / max(1, len(clip_paths))
    outcomes: list[Outcome] = []
    offsets_right: dict[str, list[bool]] = {}
    false_matches: list[dict] = []
    for query, path in zip(query_set, clip_paths):
        found = answers.get(path)
        answer = found["path"] if found else None
        heard = None
        if found is not None and found["speed"] is not None:
            heard = (found["speed"], found["speed"])
        elif found is not None and found["tempo"] is not None:
            heard = (found["tempo"], found["pitch"])
        outcomes.append(Outcome(query.condition, query.indexed, query.song, answer, per_clip_s, heard))
        if not query.indexed and found is not None:
            false_matches.append({"condition": query.condition, "song": query.song, "start_s": query.start_s,
                                  "named": answer, "offset_s": found["offset_s"], "score": found["score"]})
        if query.indexed and answer == query.song and found is not None:
            offsets_right.setdefault(query.condition, []).append(
                abs(found["offset_s"] - query.start_s) <= OFFSET_TOLERANCE_S)
    figures = summarise(outcomes)
    for key in ("query_ms_p50", "query_ms_p95"):  # one batch time per clip: no per-query latency here
        figures.pop(key, None)
    results = {
        "corpus": os.path.abspath(corpus), "seed": seed, "songs": len(tracks), "indexed_songs": len(songs),
        "queries": len(query_set), "clip_format": clip_format, "conditions": query_module.conditions(degraders, full),
        "add_exit_status": added.returncode, "add_s": round(add_s, 1),
        "add_x_realtime": round(audio_s / max(add_s, 1e-9), 1),
        "match_ms_per_clip": round(per_clip_s * 1000, 1), "failed_clips": failed, "false_matches": false_matches,
        "offset_right_rate": {name: round(float(np.mean(right)), 4) for name, right in offsets_right.items()},
        "db_bytes_per_audio_s": round(db_bytes / max(audio_s, 1e-9), 1), **figures,
    }
    with open(os.path.join(out, "results.json"), "w") as handle:
        json.dump(results, handle, indent=2)
    with open(os.path.join(out, "report.md"), "w") as handle:
        handle.write(markdown(results))
    return results


def _lmprint(db: str, *args: str) -> subprocess.CompletedProcess:
    """Run `lmprint --db DB ARGS...`; its exit status is kept (a failed clip makes `match` exit 1)."""
    return subprocess.run([*LMPRINT, "--db", db, *args], capture_output=True, text=True, check=False)


def markdown(results: dict) -> str:
    """The figures as Markdown tables, printed as `bench compare` prints its own (`report.cell`)."""
    from .report import cell

    lines = [f"Corpus: {results['songs']} songs ({results['indexed_songs']} indexed), {results['queries']} clips "
             f"as .{results['clip_format']} files, seed {results['seed']}, through the lmprint CLI.", "",
             f"| condition | recall | right offset (±{OFFSET_TOLERANCE_S:g} s) of right songs | right warp (±0.5 %) |",
             "|---|---|---|---|"]
    lines += [f"| {name} | {cell(recall)} | {cell(results['offset_right_rate'].get(name))} | "
              f"{cell(results.get('factor_right', {}).get(name))} |" for name, recall in results["recall"].items()]
    rows = [("false-match rate (songs not indexed)", results["false_match_rate"]),
            ("false-match rate, sped-up clips", results["false_match_rate_by_condition"].get("unindexed_speed")),
            ("wrong-song rate (indexed songs)", results["wrong_match_rate"]),
            ("clips that failed", len(results["failed_clips"])),
            ("database bytes / s of audio", results["db_bytes_per_audio_s"]),
            ("`lmprint add` × realtime", results["add_x_realtime"]),
            ("`lmprint match` ms per clip, in batches", results["match_ms_per_clip"])]
    lines += ["", "| figure | value |", "|---|---|"] + [f"| {name} | {cell(v)} |" for name, v in rows]
    return "\n".join(lines) + "\n"
