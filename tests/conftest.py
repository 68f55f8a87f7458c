"""Shared fixtures: a few generated songs written in every container format users have, and an index of them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
import soxr

from bench.audio_io import write
from bench.synth import song

SYNTH_RATE = 22050
FORMATS = ["wav", "flac", "ogg", "mp3", "m4a", "opus"]


def rendered(seed: int, duration_s: float, rate: int) -> np.ndarray:
    """Generated song `seed` as the engine sees it: rendered at SYNTH_RATE, then resampled to `rate`."""
    signal = song(seed, duration_s, SYNTH_RATE)
    return signal if rate == SYNTH_RATE else soxr.resample(signal, SYNTH_RATE, rate).astype(np.float32)


def held_chords(seed: int, duration_s: float, rate: int) -> np.ndarray:
    """A generated piece of held chords (2-4 s each, slowly fading) under a sparse melody, no drums: music whose
    peaks last, so that it agrees nearly as well played a little faster or slower."""
    from bench.synth import add_note

    rng = np.random.default_rng(100 + seed)
    out = np.zeros(int(duration_s * rate), np.float32)
    root, major, t = 45 + int(rng.integers(0, 12)), (0, 2, 4, 5, 7, 9, 11), 0.0
    while t < duration_s:
        length_s, degree = rng.uniform(2.0, 4.0), int(rng.integers(0, 7))
        start, n = int(t * rate), min(int(length_s * rate), out.size - int(t * rate))
        if n <= 0:
            break
        seconds = np.arange(n) / rate
        for k in (0, 2, 4):
            f0 = 440 * 2 ** ((root + 12 + major[(degree + k) % 7] + 12 * ((degree + k) // 7) - 69) / 12)
            tone = sum(0.5 ** (h - 1) * np.sin(2 * np.pi * f0 * h * seconds + rng.uniform(0, 6.28)) for h in range(1, 6))
            envelope = np.minimum(1, seconds / 0.05) * np.exp(-seconds * 0.3)
            out[start:start + n] += (0.1 * tone * envelope).astype(np.float32)
        melody = root + 24 + major[int(rng.integers(0, 7))]
        add_note(out, rate, t + rng.uniform(0, 0.5), length_s, melody, 0.15, 0.5, rng)
        t += length_s
    return (0.8 * out / np.abs(out).max()).astype(np.float32)


@pytest.fixture(scope="session")
def library_dir(tmp_path_factory):
    """Six 40 s songs, seeds 0..5, one per format."""
    folder = tmp_path_factory.mktemp("library")
    for seed, extension in enumerate(FORMATS):
        write(folder / f"song{seed}.{extension}", song(seed, 40.0, SYNTH_RATE), SYNTH_RATE)
    return folder


@pytest.fixture(scope="session")
def built_index(library_dir, tmp_path_factory):
    """Path of an index holding the six songs of `library_dir`."""
    from landmark import Index

    path = tmp_path_factory.mktemp("db") / "index.db"
    with Index(path, create=True) as index:
        report = index.add([str(library_dir)])
    assert report.added == len(FORMATS) and not report.failed
    return path


def write_surround_flac(path, mono: np.ndarray, rate: int) -> None:
    """A 6-channel (5.1) 32-bit FLAC of `mono` on every channel: what a hi-res surround rip looks like."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("flac", rate=rate, layout="5.1")
        for start in range(0, mono.size, 4096):
            block = np.tile((mono[start:start + 4096] * 0.5 * 2 ** 31).astype(np.int32), (6, 1))
            frame = av.AudioFrame.from_ndarray(block.T.reshape(1, -1).copy(), format="s32", layout="5.1")
            frame.sample_rate = rate
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def children_of(pid: int) -> list[int]:
    """The processes whose parent is `pid` (Linux's /proc)."""
    children = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/stat") as stat:
                parent = int(stat.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if parent == pid:
            children.append(int(entry))
    return children


def running(pid: int) -> bool:
    """Whether process `pid` still runs (a zombie, waiting to be reaped, does not)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def all_gone(pids: list[int], within_s: float) -> bool:
    """Whether every process of `pids` stops running within `within_s` seconds."""
    deadline = time.time() + within_s
    while any(map(running, pids)) and time.time() < deadline:
        time.sleep(0.1)
    return not any(map(running, pids))


def read_only_folder(monkeypatch, folder) -> None:
    """Let no process write in `folder`, as a read-only mount does: `os.access` says so (run as root, the tests
    could otherwise write anywhere)."""
    writable = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: (mode != os.W_OK or os.fspath(path) != str(folder))
                        and writable(path, mode, **kw))


def run_cli(*args, db=None, check=False, env=None, input=None):
    """Run `lmprint` in this process, as a user's shell would (click's CliRunner): a result with `returncode`,
    `stdout` and `stderr`, like a finished process."""
    from click.testing import CliRunner

    from lmprint.cli import main

    command = (["--db", str(db)] if db is not None else []) + [str(a) for a in args]
    result = CliRunner().invoke(main, command, env=env, input=input, catch_exceptions=False)
    result.returncode = result.exit_code
    if check:
        assert result.returncode == 0, result.stderr
    return result


def listed_songs(db) -> list[dict]:
    """The index's songs as `lmprint list --json` gives them, a dict each."""
    return [json.loads(line) for line in run_cli("list", "--json", db=db, check=True).stdout.splitlines()]


def laid_out(root, library_dir, files: dict[str, str]):
    """A user's music folder: `root`, with a copy of a generated song at each path under it (`files`: path under
    `root` → the song's file name in `library_dir`), and the folders they need. Returns `root`."""
    root.mkdir(parents=True, exist_ok=True)
    for relative, name in files.items():
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(library_dir / name, target)
    return root


def run_cli_process(*args, db=None, check=False, timeout=300, env=None):
    """Run `lmprint` in a fresh process (for what needs one: a terminal, signals, concurrency)."""
    command = [sys.executable, "-m", "lmprint"]
    if db is not None:
        command += ["--db", str(db)]
    result = subprocess.run(command + [str(a) for a in args], capture_output=True, text=True, timeout=timeout,
                            env={**os.environ, **(env or {})})
    if check:
        assert result.returncode == 0, result.stderr
    return result


def tiny_config() -> dict:
    """MERT-v1-95M's config (MERT-only keys included), shrunk: same conv front end, small transformer."""
    from neural.mert import ARCHITECTURE

    return {**ARCHITECTURE, "hidden_size": 384, "num_hidden_layers": 2, "num_attention_heads": 4,
            "intermediate_size": 128, "conv_dim": [32] * 7, "num_conv_pos_embeddings": 16,
            "num_conv_pos_embedding_groups": 4}


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A checkpoint folder as MERT ships it: config.json with MERT-only keys, and weights under the real names."""
    folder = tmp_path_factory.mktemp("tiny-mert")
    values = tiny_config()
    (folder / "config.json").write_text(json.dumps(values))
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from neural import mert

    torch.manual_seed(0)
    model = transformers.HubertModel(mert.hubert_config(values))
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    (folder / "RANDOM_WEIGHTS").write_text("random stand-in for tests")
    return folder


