"""`bench serve`: `lmprint serve` under load on loopback.

Starts the real `lmprint serve` (its worker processes too) on an index of generated songs, then `clients` threads
each send `requests` `POST /match` of 5 s clips (WAV, with noise), every `oversize_every`-th one an upload over
the size cap. Reports latency percentiles of the answered requests, the count of every status (413 and 503 are
the server keeping its limits; anything else but 200 is an error), wrong answers, and the server's resident
memory sampled through the run, its processes together (flat memory: the last quarter's peak against the first
quarter's).
"""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter

import numpy as np

from .audio_io import write
from .synth import song

SONGS = 8
SONG_S = 40.0
SYNTH_RATE = 22050
UPLOAD_CAP_MB = 1.0


def wav_bytes(samples: np.ndarray, rate: int) -> bytes:
    """Mono 16-bit WAV bytes of float samples in [-1, 1], as a client would upload them."""
    import wave

    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return buffer.getvalue()


def _rss_mb(pid: int) -> float:
    """Resident memory of a process and its children (the server's worker processes), in MB."""
    total = 0.0
    try:
        with open(f"/proc/{pid}/status") as status:
            total += next((int(line.split()[1]) for line in status if line.startswith("VmRSS:")), 0) / 1024
        with open(f"/proc/{pid}/task/{pid}/children") as children:
            total += sum(_rss_mb(int(child)) for child in children.read().split())
    except OSError:  # it ended meanwhile
        pass
    return total


def load_test(clients: int = 16, requests: int = 200, workers: int = 2, queue: int = 14, oversize_every: int = 50,
              seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory(prefix="lmprint-serve-load-") as tmp:
        paths = []
        for number in range(SONGS):
            path = os.path.join(tmp, f"song{number}.flac")
            write(path, song(100 + number, SONG_S, SYNTH_RATE), SYNTH_RATE)
            paths.append(path)
        db = os.path.join(tmp, "index.db")
        subprocess.run([sys.executable, "-m", "lmprint.cli", "--db", db, "add", "-q", *paths], check=True)
        clips = []
        for number, path in enumerate(paths):
            signal = song(100 + number, SONG_S, SYNTH_RATE)
            for start_s in (3.0, 15.0, 27.0):
                piece = signal[int(start_s * SYNTH_RATE):int((start_s + 5) * SYNTH_RATE)]
                piece = piece + 0.05 * rng.standard_normal(piece.size).astype(np.float32)
                clips.append((path, wav_bytes(piece, SYNTH_RATE)))
        oversize = bytes(int(UPLOAD_CAP_MB * 2**20) + 1)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        server = subprocess.Popen([sys.executable, "-m", "lmprint.cli", "--db", db, "serve", "--port", str(port),
                                   "--workers", str(workers), "--queue", str(queue),
                                   "--max-upload-mb", str(UPLOAD_CAP_MB)], stderr=subprocess.DEVNULL)
        base = f"http://127.0.0.1:{port}"
        try:
            _wait_until_up(base)
            latencies: list[float] = []
            statuses: Counter = Counter()
            wrong = [0]
            lock = threading.Lock()
            memory: list[tuple[float, float]] = []
            done = threading.Event()

            def sample_memory() -> None:
                while not done.wait(0.25):
                    memory.append((time.monotonic(), _rss_mb(server.pid)))

            def client(number: int) -> None:
                for request in range(requests):
                    big = oversize_every and (number * requests + request) % oversize_every == oversize_every - 1
                    expected, body = (None, oversize) if big else clips[(number * 7 + request) % len(clips)]
                    began = time.perf_counter()
                    status, answer = _post(f"{base}/match", body)
                    took = time.perf_counter() - began
                    with lock:
                        statuses[status] += 1
                        if status == 200:
                            latencies.append(took)
                            if (answer.get("match") or {}).get("path") != expected:
                                wrong[0] += 1

            sampler = threading.Thread(target=sample_memory, daemon=True)
            sampler.start()
            began = time.monotonic()
            threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            wall_s = time.monotonic() - began
            done.set()
            sampler.join()
        finally:
            server.terminate()
            server.wait(30)
    return {"clients": clients, "requests_per_client": requests, "workers": workers, "queue": queue,
            **summary(statuses, latencies, wrong[0], [mb for _, mb in memory], wall_s)}


def summary(statuses: Counter, latencies_s: list[float], wrong_answers: int, server_rss_mb: list[float],
            wall_s: float) -> dict:
    """A run's figures: the count of each status (413 and 503 are the server keeping its limits, any other but
    200 an error), the answered requests' latency percentiles, matches answered (200, right or wrong) a second (a
    refusal is quick and would flatter it), and the peak of the server's memory samples (in order) in the first
    and in the last quarter of the run."""
    quarter = max(1, len(server_rss_mb) // 4)
    errors = sum(count for status, count in statuses.items() if status not in (200, 413, 503))
    return {"statuses": {str(status): count for status, count in sorted(statuses.items())},
            "errors": errors, "wrong_answers": wrong_answers,
            "latency_ms_p50": round(1000 * float(np.percentile(latencies_s, 50)), 1) if latencies_s else None,
            "latency_ms_p99": round(1000 * float(np.percentile(latencies_s, 99)), 1) if latencies_s else None,
            "answers_per_s": round(statuses.get(200, 0) / wall_s, 1),
            "server_rss_mb_first_quarter_peak": round(max(server_rss_mb[:quarter]), 1) if server_rss_mb else None,
            "server_rss_mb_last_quarter_peak": round(max(server_rss_mb[-quarter:]), 1) if server_rss_mb else None}


def _wait_until_up(base: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("lmprint serve did not come up")


def _post(url: str, body: bytes) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "audio/wav"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, {}
    except OSError:
        return -1, {}


def markdown(result: dict) -> str:
    return ("| clients × requests | workers + queue | statuses | errors | wrong answers | p50 ms | p99 ms | answers/s "
            "| server MB, first quarter → last quarter |\n|---|---|---|---|---|---|---|---|---|\n"
            f"| {result['clients']} × {result['requests_per_client']} | {result['workers']} + {result['queue']} | "
            + ", ".join(f"{status}: {count}" for status, count in result["statuses"].items())
            + f" | {result['errors']} | {result['wrong_answers']} | {result['latency_ms_p50']} | "
            f"{result['latency_ms_p99']} | {result['answers_per_s']} | "
            f"{result['server_rss_mb_first_quarter_peak']} → {result['server_rss_mb_last_quarter_peak']} |\n")
