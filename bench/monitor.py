"""`bench monitor`: does `lmprint monitor` find every song in an hour of radio, and where it plays?

A radio hour is made from the corpus: pieces of 20–180 s cut at random places from indexed songs, with one piece
in five from a held-out song (music the index does not know), each crossfaded into the next over 0–8 s, and a
DJ's voice (espeak-ng, when installed) over the first seconds of one piece in three. Conditions: `clean`,
`noise` (ambient recordings at 5 dB under each piece), `phone` (a room, the phone band and compression, noise at
5 dB), and `dj` (clean, each piece played at its own speed within ± 8 %, as on a DJ's pitch fader; there, 5 s
clips cut from the middle of each indexed piece are also matched one by one, for recall and the speed reported).
The monitor runs over the hour as a stream; each indexed piece is found when a segment names its song and
overlaps it. Reported: the share found; median and 95th percentile of the start, end and song-offset errors of
found pieces (a boundary is where a listener hears the change: the middle of a crossfade); phantom segments per
hour (a song named where none of it plays); and speed in × realtime. Each hour is written as a file (a 44.1 kHz
stereo MP3 by default, as a recorded stream is) and the monitor reads it as `lmprint monitor FILE` does, so the
speed counts decoding too; `file_format=None` hands it the decoded samples instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from . import corpus as corpus_module
from . import queries as query_module
from .audio_io import CODECS, write
from .metrics import FACTOR_TOLERANCE
from .scale import add_distractors, distractor_bases

CONDITIONS = ("clean", "noise", "phone")
ALL_CONDITIONS = (*CONDITIONS, "dj")
DJ_MAX_SPEED_CHANGE = 0.08
"""In the `dj` condition each piece plays at a speed drawn uniformly within ± this fraction."""
RATE = query_module.BENCH_RATE_HZ
FILE_RATE_HZ = 44100
"""An hour written as a file (`file_format`) is at this rate, in stereo, as a recording of a broadcast is."""
FILE_BIT_RATES = {"mp3": 128_000}
"""An hour written in one of these formats is encoded at this bit rate, a broadcast's; any other format that
`audio_io.write` knows (the file's extension), at its encoder's default."""
LINES = ["you are listening to the afternoon show", "and here is the next one", "stay tuned, more music after this",
         "that was a good one", "coming up next on the radio"]


@dataclass(frozen=True)
class Piece:
    path: str
    indexed: bool
    start_s: float  # in the hour
    end_s: float
    offset_s: float  # in the song, at start_s
    fade_in_s: float  # the crossfade from the piece before: a listener hears the change at its middle
    speed: float = 1.0  # how many times faster than the recording it plays


def radio_hour(tracks, duration_s: float, rng: np.random.Generator, condition: str,
               degraders: query_module.Degraders, workdir: str) -> tuple[np.ndarray, list[Piece]]:
    """The hour's samples (mono float32 at RATE) and what plays when."""
    from landmark import audio

    indexed = [t for t in tracks if t.indexed]
    held_out = [t for t in tracks if not t.indexed]
    response = (degraders.impulse_responses[int(rng.integers(len(degraders.impulse_responses)))]
                if degraders.impulse_responses else None)
    kind = sorted(degraders.noises)[0]
    out = np.zeros(int((duration_s + 200) * RATE), np.float32)
    pieces: list[Piece] = []
    at = 0.0
    while at < duration_s:
        pool = held_out if held_out and rng.random() < 0.2 else indexed
        track = pool[int(rng.integers(len(pool)))]
        signal = audio.load(track.path, RATE)
        length_s = min(float(rng.uniform(20, 180)), signal.size / RATE)
        if length_s < 20:  # too short to be a piece: never drawn again
            pool.remove(track)
            if not indexed:
                raise SystemExit("bench monitor: no song to index of 20 s or more")
            continue
        offset_s = float(rng.uniform(0, signal.size / RATE - length_s))
        piece = signal[int(offset_s * RATE):int((offset_s + length_s) * RATE)].copy()
        speed = 1.0
        if condition == "dj":
            speed = 1 + float(rng.uniform(-DJ_MAX_SPEED_CHANGE, DJ_MAX_SPEED_CHANGE))
            piece = query_module.change_speed(piece, speed)
        if rng.random() < 1 / 3:
            piece = _with_voice(piece, rng, workdir)
        noise = degraders.noises[kind][int(rng.integers(len(degraders.noises[kind])))]
        if condition == "noise":
            piece = query_module.add_noise(piece, noise, 5.0, rng)
        elif condition == "phone":
            if response is not None:
                piece = query_module.reverb(piece, response)
            piece = query_module.phone(piece, RATE, noise, 5.0, rng)
        fade_s = float(rng.uniform(0, 8)) if pieces else 0.0
        start_s = max(0.0, at - fade_s)
        _mix_in(out, piece, int(start_s * RATE), int(fade_s * RATE))
        pieces.append(Piece(track.path, track.indexed, start_s, start_s + piece.size / RATE, offset_s, fade_s,
                            speed))
        at = start_s + piece.size / RATE
    return out[:int(at * RATE)], pieces


def _mix_in(out: np.ndarray, piece: np.ndarray, start: int, fade: int) -> None:
    """Add `piece` at `start`, both sides faded linearly over its first `fade` samples (a crossfade)."""
    piece = piece.astype(np.float32) / (np.std(piece) + 1e-9) * 0.1  # radio levels: every song as loud
    if fade:
        ramp = np.linspace(0, 1, fade, dtype=np.float32)
        piece[:fade] *= ramp
        out[start:start + fade] *= 1 - ramp
        out[start + fade:start + piece.size] = 0.0
    out[start:start + piece.size] += piece


def _with_voice(piece: np.ndarray, rng: np.random.Generator, workdir: str) -> np.ndarray:
    """The piece with a DJ's voice over its start (espeak-ng), as loud as the music; unchanged without it."""
    from landmark import audio

    if shutil.which("espeak-ng") is None:
        return piece
    path = os.path.join(workdir, "voice.wav")
    subprocess.run(["espeak-ng", "-w", path, LINES[int(rng.integers(len(LINES)))]], check=True,
                   capture_output=True)
    voice = audio.load(path, RATE)
    voice = voice / (np.std(voice) + 1e-9) * (np.std(piece) + 1e-9)
    out = piece.copy()
    out[:voice.size] += voice[:out.size]
    return out


def score(pieces: list[Piece], segments: list, audio_s: float, announced_start_s: list[float | None] | None = None
          ) -> dict:
    """Found share, boundary and offset errors, phantoms per hour; with `announced_start_s` (each segment's start as
    its open line gave it, while the song played), the error of that start too."""
    # boundaries at the middle of each crossfade
    fade_out = {n: pieces[n + 1].fade_in_s for n in range(len(pieces) - 1)}
    pieces = [Piece(p.path, p.indexed, p.start_s + p.fade_in_s / 2, p.end_s - fade_out.get(n, 0.0) / 2,
                    p.offset_s + p.speed * p.fade_in_s / 2, p.fade_in_s, p.speed) for n, p in enumerate(pieces)]
    truth = [p for p in pieces if p.indexed]
    found, start_errors, end_errors, offset_errors, announced_errors = 0, [], [], [], []
    announced = dict(zip(map(id, segments), announced_start_s or []))
    for piece in truth:
        overlapping = [s for s in segments if s.song.path == piece.path and s.start_s < piece.end_s
                       and s.end_s > piece.start_s]
        if not overlapping:
            continue
        found += 1
        best = max(overlapping, key=lambda s: min(s.end_s, piece.end_s) - max(s.start_s, piece.start_s))
        start_errors.append(abs(best.start_s - piece.start_s))
        if (announced_s := announced.get(id(best))) is not None:
            announced_errors.append(abs(announced_s - piece.start_s))
        end_errors.append(abs(best.end_s - piece.end_s))
        if best.song_offset_s is not None:
            offset_errors.append(abs(best.song_offset_s - (piece.offset_s
                                                           + piece.speed * (best.start_s - piece.start_s))))
    phantoms = sum(not any(p.path == s.song.path and s.start_s < p.end_s and s.end_s > p.start_s for p in pieces)
                   for s in segments)

    def percentiles(values):
        return [round(float(np.percentile(values, q)), 1) for q in (50, 95)] if values else [None, None]

    return {"pieces": len(truth), "found": found, "found_share": round(found / max(1, len(truth)), 3),
            "start_error_s": percentiles(start_errors), "announced_start_error_s": percentiles(announced_errors),
            "end_error_s": percentiles(end_errors),
            "offset_error_s": percentiles(offset_errors), "segments": len(segments),
            "phantoms_per_hour": round(phantoms * 3600 / audio_s, 2)}


def run(corpus: str, noise_dir: str | None, rir_dir: str | None, conditions=CONDITIONS, hours: float = 1.0,
        seed: int = 0, jobs: int = 2, workdir: str | None = None, songs: int = 0, follow: bool = True,
        file_format: str | None = "mp3") -> dict:
    """Score the monitor on one radio hour per condition (`hours` long): the hour read from a file written in
    `file_format` (an extension `audio_io.write` knows; None: its decoded samples handed over), among `songs` songs
    (0: the corpus)."""
    from functools import partial

    import soxr

    from landmark import Index, audio
    from lmprint.monitor import Looks, MonitorSettings, monitor

    tracks = corpus_module.require(corpus_module.load(corpus), corpus)
    degraders = query_module.Degraders.load(noise_dir, rir_dir)
    rows = []
    with tempfile.TemporaryDirectory(prefix="lmprint-monitor-", dir=workdir) as tmp:
        index = Index(os.path.join(tmp, "monitor.db"), create=True)
        index.add([t.path for t in tracks if t.indexed], jobs=jobs)
        if songs > index.catalogue.song_count():  # a large library: the corpus among distractors
            add_distractors(index, distractor_bases(index), songs, np.random.default_rng(seed), show_progress=True)
        for condition in conditions:
            # seeded by the condition, not by its place in this run's list: `--conditions phone` plays the hour
            # the default run's phone row does
            rng = np.random.default_rng([seed, ALL_CONDITIONS.index(condition)])
            hour, pieces = radio_hour(tracks, hours * 3600, rng, condition, degraders, tmp)
            samples = soxr.resample(hour, RATE, index.sample_rate_hz).astype(np.float32)
            chunks: Iterable[np.ndarray]
            if file_format is None:
                chunk = index.sample_rate_hz  # one second at a time, as a stream arrives
                chunks = (samples[i:i + chunk] for i in range(0, samples.size, chunk))
            else:
                path = os.path.join(tmp, f"{condition}.{file_format}")
                write(path, soxr.resample(hour, RATE, FILE_RATE_HZ), FILE_RATE_HZ,
                      bit_rate=FILE_BIT_RATES.get(file_format), channels=2)
                chunks = audio.stream(path, index.sample_rate_hz)
            del hour
            started = time.perf_counter()
            looks = Looks(partial(Index, index.catalogue.path), jobs) if jobs > 1 else None
            try:
                events = list(monitor(index, chunks, MonitorSettings(follow=follow), looks=looks,
                                      ahead_of_looks=file_format is not None))
            finally:
                if looks:
                    looks.close()
            seconds = time.perf_counter() - started
            audio_s = samples.size / index.sample_rate_hz
            segments, announced_start_s = closed_with_announced_starts(events)
            row = {"condition": condition, "audio_s": round(audio_s, 1),
                   **score(pieces, segments, audio_s, announced_start_s),
                   "x_realtime": round(audio_s / seconds, 1)}
            if condition == "dj":
                row.update(clips_from_mix(index, samples, pieces))
            print(row, file=sys.stderr, flush=True)
            rows.append(row)
        indexed = index.catalogue.song_count()
        index.close()
    return {"corpus": os.path.abspath(corpus), "seed": seed, "songs_indexed": indexed, "follow": follow,
            "file_format": file_format, "rows": rows}


def closed_with_announced_starts(events: list) -> tuple[list, list[float | None]]:
    """A monitor's closed segments, each with the start its open line gave (None where it had none): a segment is
    followed alone, so its open line is the last one of its song before it closes."""
    closed, announced_start_s, opened = [], [], {}
    for event in events:
        if event.open:
            opened[event.song.id] = event.start_s
        else:
            closed.append(event)
            announced_start_s.append(opened.pop(event.song.id, None))
    return closed, announced_start_s


CLIP_S = 5.0
"""Seconds of each clip cut from a mix; the piece must be longer by both crossfades (at most 8 s each)."""


def clips_from_mix(index, samples: np.ndarray, pieces: list[Piece]) -> dict:
    """A 5 s clip from the middle of each indexed piece of a mix (clear of its crossfades), matched on its own:
    the share named right, and of those the share whose reported speed is within 0.5 % of the piece's."""
    rate = index.sample_rate_hz
    named, speed_right, total = 0, 0, 0
    for piece in pieces:
        if not piece.indexed or piece.end_s - piece.start_s < CLIP_S + 2 * 8:
            continue
        middle = 0.5 * (piece.start_s + piece.end_s)
        clip = samples[int((middle - CLIP_S / 2) * rate):int((middle + CLIP_S / 2) * rate)]
        found = index.match_samples(clip)
        total += 1
        if found is not None and found.song.path == piece.path:
            named += 1
            speed_right += found.speed is not None and abs(found.speed / piece.speed - 1) <= FACTOR_TOLERANCE
    return {"clips": total, "clips_named": named, "clips_speed_right": speed_right}


def markdown(result: dict) -> str:
    looks = "looks follow the song heard" if result.get("follow", True) else "every look searches"
    source = "decoded samples handed over"
    if result.get("file_format"):  # at FILE_RATE_HZ, unless the format has a rate of its own (Opus)
        rate_hz = CODECS[f".{result['file_format']}"][2] or FILE_RATE_HZ
        source = f"read from a {rate_hz / 1000:g} kHz stereo {result['file_format'].upper()} file"
    lines = [f"{result['songs_indexed']} songs indexed; seed {result['seed']}; {looks}; each hour {source}.", "",
             "| condition | hours | songs found | start error s (p50 / p95) | as announced | end error s | "
             "offset error s | phantoms / hour | × realtime |", "|---|---|---|---|---|---|---|---|---|"]
    for row in result["rows"]:
        lines.append(f"| {row['condition']} | {row['audio_s'] / 3600:.2f} | {row['found']} / {row['pieces']} "
                     f"({row['found_share']}) | {' / '.join(map(str, row['start_error_s']))} | "
                     f"{' / '.join(map(str, row.get('announced_start_error_s', ['–'])))} | "
                     f"{' / '.join(map(str, row['end_error_s']))} | {' / '.join(map(str, row['offset_error_s']))} | "
                     f"{row['phantoms_per_hour']} | {row['x_realtime']} |")
    for row in result["rows"]:
        if "clips" in row:
            lines.append(f"\n{row['condition']}: 5 s clips cut from the middle of each indexed piece, matched one by "
                         f"one: {row['clips_named']} of {row['clips']} named right, {row['clips_speed_right']} of "
                         "those with the speed within 0.5 %.")
    return "\n".join(lines) + "\n"
