"""docs/api.md runs as written: every Python block, in order, in one namespace, on a small library of generated
songs, and each does what the page says it does."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import numpy as np
import pytest

from bench.audio_io import write
from bench.synth import song
from tests.conftest import SYNTH_RATE

API_PAGE = Path(__file__).resolve().parent.parent / "docs" / "api.md"


def blocks(engine: str) -> list[str]:
    """The page's Python blocks of one engine's: "mert" (those using `neural`) or "landmark" (the others)."""
    found = re.findall(r"```python\n(.*?)```", API_PAGE.read_text(), flags=re.DOTALL)
    return [block for block in found if ("neural" in block) == (engine == "mert")]


def run(code: list[str]) -> tuple[dict, list[str]]:
    """Run the blocks in order in one namespace: the namespace, and what each printed."""
    names: dict = {}
    said = []
    for block in code:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(block, str(API_PAGE), "exec"), names)  # noqa: S102 - the page's own examples
        said.append(out.getvalue())
    return names, said


@pytest.fixture()
def music_folder(tmp_path, monkeypatch):
    """The folder the page's examples run in: music/ (four songs, one of them in two files), clip.wav (5 s of
    "03 meadow" under a little noise) and radio.wav ("01 harbour" then "03 meadow")."""
    songs = {seed: song(seed, 40.0, SYNTH_RATE) for seed in range(4)}
    music = tmp_path / "music"
    music.mkdir()
    for name, seed in (("01 harbour.wav", 0), ("02 lantern.flac", 1), ("02 lantern.mp3", 1), ("03 meadow.ogg", 2),
                       ("04 spare.wav", 3)):
        write(music / name, songs[seed], SYNTH_RATE)
    noise = np.random.default_rng(0).normal(0, 0.02, 5 * SYNTH_RATE).astype(np.float32)
    write(tmp_path / "clip.wav", songs[2][12 * SYNTH_RATE:17 * SYNTH_RATE] + noise, SYNTH_RATE)
    write(tmp_path / "radio.wav", np.concatenate([songs[0], songs[2]]), SYNTH_RATE)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_api_page_runs_as_written(music_folder):
    names, said = run(blocks("landmark"))
    assert len(said) == 8, "a block was added or removed: say here what it should do"
    assert names["report"].added == 5 and not names["report"].failed
    assert names["match"].song.title == "03 meadow" and abs(names["match"].offset_s - 12.0) < 0.1
    assert said[0].splitlines() == ["5 added, 0 already there, 0 failed", said[0].splitlines()[1]]
    assert said[0].splitlines()[1].startswith("03 meadow: 12.0 s in, confidence ")
    assert said[1] == "03 meadow\n"  # the same clip as samples at 44.1 kHz
    contenders = [line.split("\t") for line in said[2].splitlines()]  # the best-voted songs, best first
    assert contenders[0][0] == "03 meadow" and len(contenders) == 3
    assert [float(score) for _, score in contenders] == sorted((float(score) for _, score in contenders), reverse=True)
    assert names["answer"].match.song.id == names["match"].song.id
    assert names["line"]["match"]["title"] == "03 meadow" and len(names["line"]["candidates"]) >= 1
    assert said[3] == "True\n"  # named with other matching settings too
    assert sorted(song.title for song in names["songs"]) == ["01 harbour", "02 lantern", "02 lantern", "03 meadow",
                                                             "04 spare"]
    assert names["removed"] == [names["spare"][0].id] and names["figures"]["songs"] == 4
    figures = names["figures"]
    assert figures["file_bytes_per_audio_s"] == pytest.approx(figures["file_bytes"] / figures["duration_s"], rel=0.01)
    assert said[4].splitlines()[-1] == f"4 songs, {figures['file_bytes_per_audio_s']} bytes a second of audio"
    assert len(said[4].splitlines()) == 6  # the five songs listed before the removal, then the figures
    lantern = sorted(s.id for s in names["songs"] if s.title == "02 lantern")
    assert names["found"].recordings == [lantern]  # the FLAC and the MP3 of one recording
    heard = [line.split(": ", 1)[1] for line in said[6].splitlines()]
    assert heard == ["01 harbour", "03 meadow"]
    assert said[7].startswith("notes.txt: not an audio file")


@pytest.mark.slow  # it imports torch (15-20 s on 2 cores)
def test_the_api_pages_mert_block_runs_as_written(music_folder, tiny_model_dir):
    (music_folder / "models").mkdir()
    (music_folder / "models" / "MERT-v1-95M").symlink_to(tiny_model_dir)
    mert = blocks("mert")
    assert len(mert) == 1
    names, said = run(blocks("landmark")[:1] + mert)  # the landmark engine's index first, as on the page
    assert said[0].startswith("5 added")
    from lmprint.catalogue import Catalogue

    with Catalogue(music_folder / "library.db") as catalogue:  # the MERT engine's codes beside the postings
        assert catalogue.read("SELECT COUNT(*) FROM mert_codes")[0][0] == len(catalogue.songs()) == 5
    # its answer (random weights here: any of the songs, or none)
    assert said[1].strip() in {"no match", "01 harbour", "02 lantern", "03 meadow", "04 spare"}
