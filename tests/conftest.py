"""Shared fixtures: a few generated songs written in every container format users have, and an index of them."""

from __future__ import annotations

import os
import subprocess
import sys

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


def run_cli(*args, db=None, check=False, timeout=300, env=None):
    """Run the installed `lmprint` console script as a user would; returns the CompletedProcess."""
    command = [sys.executable, "-m", "landmark.cli"]
    if db is not None:
        command += ["--db", str(db)]
    result = subprocess.run(command + [str(a) for a in args], capture_output=True, text=True, timeout=timeout,
                            env={**os.environ, **(env or {})})
    if check:
        assert result.returncode == 0, result.stderr
    return result
