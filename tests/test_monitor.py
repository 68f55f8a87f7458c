"""`lmprint monitor`: every song in a long recording, with where it plays."""

import contextlib
import dataclasses
import functools
import json
import math
import os
import queue
import re
import shutil
import signal as signal_module
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from bench.audio_io import write
from landmark import Index
from lmprint.errors import AudioError, SettingsError
from lmprint.monitor import Looks, Monitor, MonitorSettings, Segment, look, monitor
from lmprint.results import Match
from tests.conftest import SYNTH_RATE, all_gone, children_of, rendered, run_cli

RATE = SYNTH_RATE


def radio(pieces):
    """A recording of song pieces back to back: (seed, from s, to s) of each song, and the true segments
    (seed, start s, end s in the recording, offset s in the song)."""
    signal, truth, at = [], [], 0.0
    for seed, start_s, end_s in pieces:
        piece = rendered(seed, 40.0, RATE)[int(start_s * RATE):int(end_s * RATE)]
        signal.append(piece)
        truth.append((seed, at, at + end_s - start_s, start_s))
        at += end_s - start_s
    return np.concatenate(signal), truth


PIECES = [(0, 10.0, 30.0), (100, 0.0, 8.0), (2, 5.0, 32.0), (0, 0.0, 16.0)]
"""Song 0, a song that is not indexed, song 2, and song 0 again from its start."""


def check(segments, truth):
    found = [(s["title"], s["start_s"], s["end_s"], s["song_offset_s"]) for s in segments]
    expected = [(f"song{seed}", start, end, offset) for seed, start, end, offset in truth if seed < 100]
    assert [f[0] for f in found] == [e[0] for e in expected], found
    for (_, start, end, offset), (_, true_start, true_end, true_offset) in zip(found, expected):
        # within a second (0.7 at most here): a boundary read from the looks' grid alone is 1-2 s off
        assert abs(start - true_start) <= 0.9 and abs(end - true_end) <= 0.9, (found, expected)
        assert abs(offset - true_offset) <= 0.9, (found, expected)


def test_monitor_names_every_indexed_song_with_where_it_plays(built_index, tmp_path):
    signal, truth = radio(PIECES)
    path = tmp_path / "an hour of radio.flac"
    write(path, signal, RATE)
    result = run_cli("monitor", "--json", path, db=built_index, check=True)
    events = [json.loads(line) for line in result.stdout.splitlines()]
    closed = [e for e in events if not e["open"]]
    check(closed, truth)
    assert [e["event"] for e in events] == ["open", "closed"] * 3  # each song announced, then ended
    for announced, ended in zip(events[::2], events[1::2]):  # announced where it began, as it was closed
        assert abs(announced["start_s"] - ended["start_s"]) <= 0.9, (announced, ended)
        assert abs(announced["song_offset_s"] - ended["song_offset_s"]) <= 0.9, (announced, ended)
    assert all(e["confidence"] > 0.99 for e in closed)
    assert "3 segments" in result.stderr


def test_an_interruption_while_a_line_is_written_still_closes_the_song_playing(built_index, tmp_path, monkeypatch):
    """Ctrl-C or SIGTERM may land while the command writes a segment's line, outside the monitor that closes the
    song playing when it is interrupted: the monitor is then interrupted where it waits, and still closes it."""
    import signal as signal_module

    import lmprint.cli

    signal, _ = radio(PIECES[:1])
    path = tmp_path / "radio.flac"
    write(path, signal, RATE)
    written = lmprint.cli._json_line

    def interrupted_after_the_first_open(value):
        line = written(value)
        if value["event"] == "open":
            monkeypatch.setattr(lmprint.cli, "_json_line", written)
            raise KeyboardInterrupt  # as its handler raises, after the line is made (and here, before it is out)
        return line

    monkeypatch.setattr(lmprint.cli, "_json_line", interrupted_after_the_first_open)
    before = signal_module.getsignal(signal_module.SIGTERM)
    result = run_cli("monitor", "--json", "--jobs", "1", path, db=built_index)
    assert signal_module.getsignal(signal_module.SIGTERM) is before  # the command's own handler, put back
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert [event["event"] for event in events] == ["closed"] and events[0]["title"] == "song0", result.stdout
    assert result.returncode == 130 and result.stderr == "lmprint: interrupted (1 segment)\n", result.stderr


def test_a_csv_row_shows_a_names_control_characters_escaped(library_dir, tmp_path):
    """A title or a path may hold control characters (a file name may): in a CSV field, whose quotes keep a tab or
    a line break whole, the others are shown escaped, as in a line of text, so that a name cannot steer the
    terminal (ESC, and C1's CSI, U+009B)."""
    import csv
    import io

    named = tmp_path / "a\x1b[31mred\x9b31m\tsong.flac"
    shutil.copy(library_dir / "song1.flac", named)
    db = tmp_path / "index.db"
    run_cli("add", named, db=db, check=True)
    result = run_cli("monitor", "--csv", "--jobs", "1", named, db=db, check=True)
    assert "\x1b" not in result.stdout and "\x9b" not in result.stdout
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert rows and rows[0]["title"] == "a\\x1b[31mred\\x9b31m\tsong", rows


def test_an_interruption_thrown_into_a_monitor_yields_its_last_words_and_nothing_else_is_swallowed():
    """`_closed_by`: what a generator yields once interrupted where it waits, the interruption itself left to the
    caller; a generator done already yields nothing; another interruption meanwhile (SIGTERM during a Ctrl-C's
    close) goes on, as does an error of the close."""
    from lmprint.cli import _closed_by
    from lmprint.errors import Terminated

    def monitor(on_stop):
        try:
            yield "open"
            yield "never"
        except KeyboardInterrupt:
            yield "closed"
            on_stop()
            raise

    def reraise():
        pass

    playing, stop = monitor(reraise), KeyboardInterrupt()
    assert next(playing) == "open" and list(_closed_by(playing, stop)) == ["closed"]
    assert list(_closed_by(playing, stop)) == []  # done already
    started = monitor(reraise)
    assert list(_closed_by(started, stop)) == []  # not started: nothing to close

    def terminated():
        raise Terminated

    for meanwhile, error in ((terminated, Terminated), (lambda: 1 / 0, ZeroDivisionError)):
        playing = monitor(meanwhile)
        next(playing)
        with pytest.raises(error):
            list(_closed_by(playing, KeyboardInterrupt()))


@pytest.mark.parametrize("jobs", [[], ["--jobs", "2"]])
def test_monitor_follows_raw_pcm_on_standard_input(built_index, jobs):
    """Standard input is read as it arrives, through a pipe that is slow to start, also with looks in worker
    processes (forked while nothing else reads it: a process forked while a thread is inside a read of standard
    input hangs on its lock)."""
    import signal as signal_module
    import threading

    import soxr

    signal, truth = radio(PIECES[:3])
    pcm = (soxr.resample(signal, RATE, 44100) * 0.8 * 32767).astype("<i2")
    stereo = np.repeat(pcm[:, None], 2, axis=1).tobytes()
    monitor = subprocess.Popen([sys.executable, "-m", "lmprint", "--db", str(built_index), "monitor", "--csv",
                                "--format", "s16le", "--rate", "44100", "--channels", "2", *jobs, "-"],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               start_new_session=True)  # its workers are killed with it if it hangs

    def feed():  # nothing for a second (the monitor waits inside a read), then the stream
        time.sleep(1.0)
        for start in range(0, len(stereo), 1 << 16):
            monitor.stdin.write(stereo[start:start + (1 << 16)])
        monitor.stdin.close()

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        monitor.wait(timeout=120)  # its few lines fit in the pipes meanwhile
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(monitor.pid, signal_module.SIGKILL)
    with monitor.stdout, monitor.stderr:
        stdout, stderr = monitor.stdout.read().decode(), monitor.stderr.read().decode()
    assert monitor.returncode == 0, stderr
    rows = [line.split(",") for line in stdout.splitlines()]
    assert rows[0] == ["event", "start_s", "end_s", "song_id", "title", "path", "song_offset_s", "confidence", "rate"]
    closed = [dict(zip(rows[0], row)) for row in rows[1:] if row[0] == "closed"]
    check([{**r, "start_s": float(r["start_s"]), "end_s": float(r["end_s"]),
            "song_offset_s": float(r["song_offset_s"])} for r in closed], truth)


def test_a_pipe_named_as_the_source_is_heard_live_as_standard_input_is(built_index, tmp_path):
    """`lmprint monitor <(ffmpeg …)` or a named pipe arrives as standard input does: looked at every hop and in
    this process, so its events are those of `monitor -` on the same bytes (read as a file, with idle looks 4 s
    apart, the song after 9 s of unknown music was announced 4 s later)."""
    import threading

    signal, _ = radio([(100, 0.0, 9.0), (1, 3.0, 20.0)])
    write(tmp_path / "stream.wav", signal, RATE)
    stream = (tmp_path / "stream.wav").read_bytes()
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)

    def feed():
        with open(fifo, "wb") as pipe:
            pipe.write(stream)
    writer = threading.Thread(target=feed)
    writer.start()
    via_pipe = run_cli("monitor", "--json", fifo, db=built_index, check=True)
    writer.join()
    via_stdin = run_cli("monitor", "--json", "-", db=built_index, input=stream, check=True)
    events = [json.loads(line) for line in via_pipe.stdout.splitlines()]
    assert [(e["event"], e["title"]) for e in events] == [("open", "song1"), ("closed", "song1")]
    assert via_pipe.stdout == via_stdin.stdout


def test_a_stream_tuned_in_mid_song_starts_it_at_zero_where_it_plays_from(built_index):
    """A stream that begins partway through a song: the song is heard from the stream's own start, whose first
    peaks read less clearly at a window's edge (it was dated 0.2–1.4 s late, its offset as late)."""
    import soxr

    with Index(built_index) as index:
        for seed, from_s in ((1, 8.1), (2, 5.0), (2, 20.7), (3, 8.1), (3, 20.7)):
            signal, _ = radio([(seed, from_s, from_s + 12.0), ((seed + 1) % 6, 0.0, 15.0)])
            samples = soxr.resample(signal, RATE, index.sample_rate_hz).astype(np.float32)
            closed = [e for e in monitor(index, [samples[i:i + 8000] for i in range(0, samples.size, 8000)])
                      if not e.open]
            assert closed[0].song.title == f"song{seed}" and closed[0].start_s == 0.0, (seed, from_s, closed)
            assert closed[0].song_offset_s == pytest.approx(from_s, abs=0.25), (seed, from_s, closed)


def test_memory_stays_bounded_however_long_the_stream(built_index):
    """The monitor keeps a window of samples, the windows its next look may look back at and `heard_back_s` before
    (where a song it names began), and while it follows a song the looks that may still close it, whatever it has
    been fed: nothing to name, or a song playing on."""
    import soxr

    with Index(built_index) as index:
        watcher = Monitor(index, MonitorSettings())
        bound = (watcher._window_samples + watcher._heard_back_samples + watcher._idle_hop_samples
                 - watcher._hop_samples)
        rng = np.random.default_rng(0)
        for _ in range(40):  # 40 chunks of 3 s of faint noise: 2 minutes, nothing to name
            watcher.feed((rng.standard_normal(3 * index.sample_rate_hz) * 1e-3).astype(np.float32))
            assert watcher._buffer.size <= bound
        assert watcher.finish() == []
        watcher = Monitor(index, MonitorSettings())
        song, _ = radio([(0, 0.0, 40.0)] * 3)  # two minutes of one song played over and over, followed throughout
        song = soxr.resample(song, RATE, index.sample_rate_hz).astype(np.float32)
        followed = 0
        for chunk in np.array_split(song, 40):
            watcher.feed(chunk)
            if watcher.current is not None:
                followed += 1
                assert watcher._buffer.size <= bound + watcher.settings.close_after_misses * watcher._hop_samples
        assert followed >= 30


def test_a_bad_source_is_one_line(built_index, tmp_path):
    (tmp_path / "notes.txt").write_text("not audio")
    (tmp_path / "empty.wav").write_bytes(b"")
    for arguments in ([tmp_path / "notes.txt"], ["--format", "s16le", tmp_path / "missing.pcm"],
                      [tmp_path / "missing.flac"], [tmp_path / "empty.wav"], [tmp_path]):
        result = run_cli("monitor", *arguments, db=built_index)
        assert result.returncode == 1 and result.stderr.count("\n") == 1 and "lmprint:" in result.stderr, arguments
        assert str(arguments[-1]) in result.stderr, result.stderr  # which source it was
    assert "empty file" in run_cli("monitor", tmp_path / "empty.wav", db=built_index).stderr  # as `match` says
    # a recording too short to name anything, or silent throughout, is refused as `match` refuses it
    write(tmp_path / "short.flac", np.full(SYNTH_RATE // 5, 0.1, np.float32), SYNTH_RATE)
    write(tmp_path / "silence.flac", np.zeros(10 * SYNTH_RATE, np.float32), SYNTH_RATE)
    (tmp_path / "nothing.pcm").write_bytes(b"")
    for arguments, reason in (([tmp_path / "short.flac"], "too short (0.2 s"), ([tmp_path / "silence.flac"], "silent"),
                              (["--format", "s16le", tmp_path / "nothing.pcm"], "no audio"),
                              (["--rate", "8000", tmp_path / "silence.flac"], "--rate is for raw PCM: give its --format"),
                              ([tmp_path / "nothing.pcm"], "raw PCM has no header: give its --format")):
        result = run_cli("monitor", *arguments, db=built_index)
        assert result.returncode == 1 and result.stderr.count("\n") == 1 and reason in result.stderr, result.stderr
    closed = subprocess.run([sys.executable, "-m", "lmprint", "--db", str(built_index), "monitor", "-"],
                            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    assert closed.returncode == 1 and closed.stderr == "lmprint: standard input: empty file\n"  # as `match` says
    for wrong in ({"hop_s": 0.0}, {"idle_hop_s": 3.0}, {"idle_hop_s": 6.0}, {"confirm_chance": 0.0},
                  {"heard_back_s": -1.0}, {"heard_precision_s": -0.1}, {"same_play_lead": -1.0}):
        with pytest.raises(SettingsError, match=next(iter(wrong))):
            MonitorSettings(**wrong)


@pytest.mark.parametrize("hop_s", [1.0, 2.0])
def test_the_api_yields_each_segment_open_then_closed(built_index, hop_s):
    signal, truth = radio(PIECES[2:3])
    import soxr

    with Index(built_index) as index:
        samples = soxr.resample(signal, RATE, index.sample_rate_hz).astype(np.float32)
        chunks = [samples[i:i + 4000] for i in range(0, samples.size, 4000)]
        events = list(monitor(index, chunks, MonitorSettings(hop_s=hop_s)))
    assert [e.open for e in events] == [True, False]
    assert events[0].song.title == events[1].song.title == "song2"
    assert abs(events[0].start_s - events[1].start_s) <= 0.9 and events[0].song_offset_s is not None
    assert abs(events[0].song_offset_s - events[1].song_offset_s) <= 0.9, events
    check([{"title": e.song.title, "start_s": e.start_s, "end_s": e.end_s, "song_offset_s": e.song_offset_s}
           for e in events[1:]], truth)


def test_the_apis_chunks_are_taken_as_match_samples_takes_samples(built_index):
    """int16 chunks (or a list of floats) are a decoder's samples; stereo chunks and bytes are refused in one line,
    where they failed deep in numpy."""
    signal, _ = radio(PIECES[2:3])
    import soxr

    with Index(built_index) as index:
        samples = soxr.resample(signal, RATE, index.sample_rate_hz).astype(np.float32)
        pcm = np.round(samples / np.abs(samples).max() * 32767).astype(np.int16)

        class Heard:  # the index, noting the loudest sample of every window it is handed
            loudest = 0.0

            def __getattr__(self, name):
                found = getattr(index, name)
                if name not in ("match_samples", "follow", "heard_span"):
                    return found

                def noted(samples, *args, **kwargs):
                    Heard.loudest = max(Heard.loudest, float(np.abs(samples).max()))
                    return found(samples, *args, **kwargs)
                return noted

        events = list(monitor(Heard(), [pcm[i:i + 4000] for i in range(0, pcm.size, 4000)]))
        assert [(e.open, e.song.title) for e in events] == [(True, "song2"), (False, "song2")]
        assert 0.9 < Heard.loudest <= 1.0  # PCM at full scale 1.0, as a decoder gives it
        # a sound card's chunks at 44.1 kHz, given their rate: the same song, where it plays
        card = rendered(2, 40.0, 44_100)[5 * 44_100:32 * 44_100]
        heard = list(monitor(index, [card[i:i + 4410] for i in range(0, card.size, 4410)], sample_rate_hz=44_100))
        assert [(e.open, e.song.title) for e in heard] == [(True, "song2"), (False, "song2")]
        assert abs(heard[1].end_s - 27.0) < 1.0 and abs(heard[1].song_offset_s - 5.0) < 1.0
        with pytest.raises(AudioError, match="a sample rate of 10 Hz: give the rate of the samples in Hz"):
            list(monitor(index, [card], sample_rate_hz=10))
        stereo = np.stack([samples, samples], axis=1)
        for chunks, why in (([stereo[i:i + 4000] for i in range(0, len(stereo), 4000)], "samples of shape"),
                            ([samples[i:i + 4000].tobytes() for i in range(0, samples.size, 4000)],
                             "samples of type bytes")):
            with pytest.raises(AudioError, match=why):
                list(monitor(index, chunks))


@pytest.mark.parametrize("pieces", [[(1, 0.0, 40.0), (1, 0.0, 40.0)], [(1, 0.0, 15.0), (1, 0.0, 40.0)],
                                    [(1, 0.0, 40.0), (100, 0.0, 3.0), (1, 0.0, 40.0)],
                                    [(1, 16.0, 40.0), (1, 24.0, 40.0)], [(1, 16.0, 30.0), (1, 20.0, 40.0)]],
                         ids=["back to back", "cut, then from its start", "after a pause",
                              "tuned in mid-song, then again from later in it", "cut, then again from earlier"])
def test_a_song_played_again_is_a_segment_of_its_own(built_index, pieces):
    """A song cannot be heard past its own end: a look naming it where the followed segment's clock has run out,
    at another anchor, hears it play again. (A segment followed any look naming its song: a song played twice was
    one segment of twice its length, or the second play vanished at the first's end.)"""
    signal, truth = radio(pieces)
    import soxr

    with Index(built_index) as index:
        samples = soxr.resample(signal, RATE, index.sample_rate_hz).astype(np.float32)
        events = list(monitor(index, [samples[i:i + 8000] for i in range(0, samples.size, 8000)]))
    check([{"title": e.song.title, "start_s": e.start_s, "end_s": e.end_s, "song_offset_s": e.song_offset_s}
           for e in events if not e.open], truth)


def test_an_extended_mix_past_the_files_end_keeps_the_play_heard_until_then(built_index):
    """A version longer than the file indexed (it repeats 10 s of the song after the song's end): what it repeats
    names the song at another anchor once the file's clock has run out, and may be reported as a play of its own,
    but the play heard until then is not cut back to where the repeat's anchor would put its start (20 s)."""
    import soxr

    signal = np.concatenate([rendered(1, 40.0, RATE), rendered(1, 40.0, RATE)[20 * RATE:30 * RATE]])
    with Index(built_index) as index:
        samples = soxr.resample(signal, RATE, index.sample_rate_hz).astype(np.float32)
        closed = [e for e in monitor(index, [samples[i:i + 8000] for i in range(0, samples.size, 8000)])
                  if not e.open]
    assert closed[0].song.title == "song1" and closed[0].start_s == 0.0 and abs(closed[0].end_s - 40.0) <= 0.9
    assert all(e.song.title == "song1" and e.start_s >= closed[0].end_s - 0.5 for e in closed[1:]), closed


def test_a_song_first_heard_at_a_passage_that_returns_later_is_one_segment(tmp_path):
    """A radio edit opens with the chorus the song itself brings only later: the first looks put the stream at
    that later passage, so the segment's clock says the song ends soon. When looks then place the song from its
    start, that is the same play, placed anew, not the song played again (and no empty segment is left)."""
    import soxr

    chorus = rendered(7, 12.0, RATE)
    song = np.concatenate([rendered(8, 12.0, RATE), rendered(9, 18.0, RATE), chorus, rendered(10, 10.0, RATE)])
    write(tmp_path / "song.flac", song, RATE)  # its own intro, a verse, the chorus at 30 s, an outro: 52 s
    edit = np.concatenate([chorus, song[12 * RATE:]])  # the chorus for the intro
    with Index(tmp_path / "i.db", create=True) as index:
        index.add(tmp_path / "song.flac")
        samples = soxr.resample(edit, RATE, index.sample_rate_hz).astype(np.float32)
        events = list(monitor(index, [samples[i:i + 8000] for i in range(0, samples.size, 8000)]))
    assert events[0].open and events[0].song_offset_s > 25  # first heard at the chorus, 30 s into the song
    closed = [e for e in events if not e.open]
    assert len(closed) == 1, closed
    assert closed[0].start_s <= 0.5 and closed[0].song_offset_s <= 0.5 and abs(closed[0].end_s - 52.0) <= 2.5


def test_a_stream_from_mid_song_first_heard_at_a_later_return_is_one_segment(tmp_path):
    """A looping track: the stream begins 12 s into the song, at a passage the song brings twice, and plays the
    song from there. Its first seconds match the later return better (the first one is mixed with another
    part), so the clock runs out 24 s in while the song is still heard; the looks then place it 12 s in from the
    stream's start, which explains the whole play. One segment, not a play cut short and another begun."""
    import soxr

    loop = rendered(7, 20.0, RATE)
    song = np.concatenate([rendered(8, 12.0, RATE), loop + 0.5 * rendered(11, 20.0, RATE), rendered(9, 10.0, RATE),
                           loop, rendered(10, 4.0, RATE)])  # the passage at 12 s and at 42 s: 66 s
    write(tmp_path / "song.flac", song, RATE)
    stream = np.concatenate([loop, song[32 * RATE:]])  # from 12 s into the song, the passage as it comes later
    with Index(tmp_path / "i.db", create=True) as index:
        index.add(tmp_path / "song.flac")
        samples = soxr.resample(stream, RATE, index.sample_rate_hz).astype(np.float32)
        events = list(monitor(index, [samples[i:i + 8000] for i in range(0, samples.size, 8000)]))
    assert events[0].open and events[0].song_offset_s > 35  # first heard at the later return, 42 s in
    closed = [e for e in events if not e.open]
    assert len(closed) == 1, closed
    assert closed[0].start_s <= 0.5 and abs(closed[0].song_offset_s - 12.0) <= 0.5 and abs(closed[0].end_s - 54.0) <= 2.5


def test_a_quiet_passage_under_noise_that_no_look_names_does_not_split_the_play(tmp_path):
    """12 s of a song at −20 dB under steady noise: the looks there name nothing, but the song's peaks are still
    heard where its clock puts it, so the play goes on through them (it was closed after four looks that named
    nothing, and the song's return made a second segment)."""
    import soxr

    song = rendered(2, 40.0, RATE)
    write(tmp_path / "song.flac", song, RATE)
    stream = song.copy()
    stream[14 * RATE:26 * RATE] *= 0.1
    stream += 0.1 * np.random.default_rng(0).standard_normal(stream.size).astype(np.float32)
    with Index(tmp_path / "i.db", create=True) as index:
        index.add(tmp_path / "song.flac")
        samples = soxr.resample(stream, RATE, index.sample_rate_hz).astype(np.float32)
        closed = [e for e in monitor(index, [samples[i:i + 8000] for i in range(0, samples.size, 8000)])
                  if not e.open]
    assert len(closed) == 1 and closed[0].start_s <= 0.5 and closed[0].end_s >= 39.5, closed
    assert abs(closed[0].song_offset_s - closed[0].start_s) <= 0.5, closed


def test_a_song_held_beside_an_mp3_of_its_first_seconds_is_one_play_of_the_whole_file(tmp_path):
    """An MP3 of a song's first 10 s (a partial download) is a copy of it cut short: the song played whole is one
    segment of the whole file (the MP3 was named first and closed at 0.0-5.0 s, and the whole file opened after)."""
    import soxr

    song = rendered(0, 40.0, RATE)
    write(tmp_path / "song.flac", song, RATE)
    write(tmp_path / "start.mp3", song[:10 * RATE], RATE)
    with Index(tmp_path / "i.db", create=True) as index:
        index.add(tmp_path)
        samples = soxr.resample(song, RATE, index.sample_rate_hz).astype(np.float32)
        events = list(monitor(index, [samples[i:i + 8000] for i in range(0, samples.size, 8000)]))
    assert [(e.open, os.path.basename(e.song.path)) for e in events] == [(True, "song.flac"), (False, "song.flac")]
    assert events[1].start_s <= 0.5 and events[1].end_s >= 39.5, events


def test_songs_played_faster_or_slower_are_followed_at_their_own_rate(built_index):
    # a DJ's mix: song 1 at +6 % from 4 s into it, then song 3 at −5 % from 10 s
    import soxr

    from bench.queries import change_speed

    parts, truth, at = [], [], 0.0
    for seed, start_s, speed in ((1, 4.0, 1.06), (3, 10.0, 0.95)):
        piece = change_speed(rendered(seed, 40.0, RATE)[int(start_s * RATE):int((start_s + 26) * RATE)], speed)
        parts.append(piece)
        truth.append((seed, at, at + piece.size / RATE, start_s, speed))
        at += piece.size / RATE
    with Index(built_index) as index:
        samples = soxr.resample(np.concatenate(parts), RATE, index.sample_rate_hz).astype(np.float32)
        segments = [e for e in monitor(index, [samples[i:i + 8000] for i in range(0, samples.size, 8000)])
                    if not e.open]
    assert [s.song.title for s in segments] == ["song1", "song3"]
    for segment, (_, start, end, offset, speed) in zip(segments, truth):
        assert abs(segment.rate - speed) <= 0.005, (segment, speed)
        assert abs(segment.start_s - start) <= 2.5 and abs(segment.end_s - end) <= 2.5, (segment, start, end)
        # the offset at the segment's start, as the song runs at its speed from the piece's start
        assert abs(segment.song_offset_s - (offset + speed * (segment.start_s - start))) <= 0.5, segment


def test_an_hour_into_a_stream_two_looks_of_a_song_still_agree_though_their_rates_differ_a_little(built_index):
    from lmprint.monitor import Segment
    from lmprint.results import Match

    with Index(built_index) as index:
        watcher = Monitor(index)
        song = index.catalogue.songs()[0]
        segment = Segment(song, 3600.0, 3606.0, 12.0, 0.99, 1, anchor_s=12.0 - 1.05 * 3600.0, rate=1.05)
        # 2 s later the song has moved on by 2.1 s; this look measured the rate 0.1 % higher
        look = Match(song, 50.0, 12.0 + 1.05 * 2.0, 0.99, "vote", speed=1.0511)
        assert watcher._agrees(segment, look, 3602.0)
        far = Match(song, 50.0, 12.0 + 1.05 * 2.0 + 5.0, 0.99, "vote", speed=1.05)  # another return of the passage
        assert not watcher._agrees(segment, far, 3602.0)


def test_match_of_a_long_recording_says_only_its_start_was_matched_and_points_to_monitor(built_index, tmp_path):
    signal, _ = radio([(0, 0.0, 35.0), (2, 0.0, 35.0)])  # two songs, 70 s: match reads the first 30 s
    path = tmp_path / "two songs.flac"
    write(path, signal, RATE)
    result = run_cli("match", "--json", path, db=built_index, check=True)
    answer = json.loads(result.stdout)
    assert answer["match"]["title"] == "song0"
    assert answer["note"].startswith("70 s long: only its first 30 s were matched") and "lmprint monitor" in answer["note"]
    assert f"lmprint: {path}: 70 s long" in result.stderr
    short = tmp_path / "short.flac"
    write(short, signal[:RATE * 10], RATE)
    assert "note" not in json.loads(run_cli("match", "--json", short, db=built_index, check=True).stdout)


def test_looks_in_worker_processes_give_the_same_segments_as_one_process(built_index):
    """A file's looks are independent: matched two at a time in two processes, each with its own open index,
    they make the same segments one process makes, while the file is read ahead in a thread."""
    import functools
    import threading

    import soxr

    from lmprint.monitor import Looks

    signal, truth = radio(PIECES)
    readers = set()

    def read(chunks):  # as a file is decoded, noting the thread that reads it
        for chunk in chunks:
            readers.add(threading.current_thread())
            yield chunk

    with Index(built_index) as index:
        samples = soxr.resample(signal, RATE, index.sample_rate_hz).astype(np.float32)
        chunks = [samples[i:i + 4000] for i in range(0, samples.size, 4000)]
        alone = [e.to_dict() for e in monitor(index, read(chunks))]
        assert readers == {threading.main_thread()}
        readers.clear()
        looks = Looks(functools.partial(Index, built_index), jobs=2)
        try:
            together = [e.to_dict() for e in monitor(index, read(chunks), looks=looks, ahead_of_looks=True)]
        finally:
            looks.close()
    assert threading.main_thread() not in readers and len(readers) == 1  # read ahead, while the workers looked
    def without_looks(events):
        """What a user reads, but for how far a song had got when it was confirmed and how many looks it took:
        a worker's look is sent before the answers ahead of it are in, so its hop (`idle_hop_s` or not) may
        differ by a look."""
        return [{key: value for key, value in event.items()
                 if key != "looks" and not (event["open"] and key == "end_s")} for event in events]

    assert without_looks(together) == without_looks(alone)
    check([e for e in alone if not e["open"]], truth)


def test_following_a_song_checks_it_where_its_clock_says_at_its_speed_and_nothing_else(built_index):
    """`Index.follow`: a monitor's cheap look at the song it is following. It names the song only where the
    song's own peaks, played at the speed heard, agree with the clip at the offset its clock predicts."""
    import soxr

    from bench.queries import change_speed, time_stretch
    from lmprint.results import Match

    with Index(built_index) as index:
        rate = index.sample_rate_hz
        songs = {song.title: song for song in index.catalogue.songs()}
        plain = rendered(2, 40.0, rate)[12 * rate:18 * rate]
        heard = Match(songs["song2"], 50.0, 6.0, 0.99, "vote", speed=1.0)
        followed = index.follow(plain, heard, 12.0)
        assert followed is not None and followed.song.title == "song2" and followed.decided_by == "followed"
        assert followed.offset_s == 12.0 and followed.confidence > 0.99 and followed.speed == 1.0
        assert index.follow(plain, heard, 12.0 + 0.6) is None  # not where its clock says
        assert index.follow(plain, heard, 12.0, min_score=followed.score + 0.1) is None  # fainter than asked
        assert index.follow(rendered(3, 40.0, rate)[12 * rate:18 * rate], heard, 12.0) is None  # another song
        fast = change_speed(rendered(1, 40.0, rate)[10 * rate:17 * rate], 1.06)
        fast_heard = Match(songs["song1"], 50.0, 4.0, 0.99, "vote", speed=1.06)
        followed = index.follow(fast, fast_heard, 10.0)
        assert followed is not None and followed.speed == 1.06
        assert index.follow(fast, Match(songs["song1"], 50.0, 4.0, 0.99, "vote", speed=1.0), 10.0) is None
        # a time-stretch keeps its pitch, so its peaks are found only where the tempo alone moves them
        stretched = time_stretch(rendered(4, 40.0, SYNTH_RATE)[10 * SYNTH_RATE:17 * SYNTH_RATE], SYNTH_RATE, 1.08)
        stretched = soxr.resample(stretched, SYNTH_RATE, rate).astype(np.float32)
        as_stretched = Match(songs["song4"], 50.0, 4.0, 0.99, "vote", tempo=1.08, pitch=1.0)
        assert index.follow(stretched, as_stretched, 10.0) is not None
        assert index.follow(stretched, Match(songs["song4"], 50.0, 4.0, 0.99, "vote", speed=1.08), 10.0) is None


def test_a_monitor_searches_only_when_the_song_it_follows_is_not_clearly_there(built_index):
    """Most looks at a radio hour hear the song of the look before: they check it (`follow`), and search only at
    a change of song. They find the songs a monitor that searches every look finds, as well placed."""
    import soxr

    class Counting:
        def __init__(self, index, can_follow):
            self.index, self.can_follow, self.searches = index, can_follow, 0
            self.sample_rate_hz = index.sample_rate_hz

        def match_samples(self, samples):
            self.searches += 1
            return self.index.match_samples(samples)

        def follow(self, samples, previous, offset_s, min_score=0.0):
            return self.index.follow(samples, previous, offset_s, min_score) if self.can_follow else None

        def heard_span(self, samples, previous, offset_s):
            return self.index.heard_span(samples, previous, offset_s)

    signal, truth = radio(PIECES)
    with Index(built_index) as index:
        samples = soxr.resample(signal, RATE, index.sample_rate_hz).astype(np.float32)
        chunks = [samples[i:i + 4000] for i in range(0, samples.size, 4000)]
        runs = {}
        for can_follow in (False, True):
            method = Counting(index, can_follow)
            segments = [e for e in monitor(method, chunks) if not e.open]
            runs[can_follow] = method.searches, [
                {"title": s.song.title, "start_s": s.start_s, "end_s": s.end_s, "song_offset_s": s.song_offset_s}
                for s in segments]
    assert [s["title"] for s in runs[True][1]] == [s["title"] for s in runs[False][1]]
    check(runs[True][1], truth)
    assert runs[True][0] < 0.5 * runs[False][0], runs


def test_a_look_that_followed_a_song_a_look_before_it_saw_end_is_set_aside(built_index):
    """Looks in worker processes are sent before the answers of the looks ahead of them are taken: each checks
    the song followed as of its sending. When the first look hands over to the next song, the second look's check
    of the old song says nothing about the new one: it must neither count as the new song's miss nor start the
    old song again."""
    from concurrent.futures import Future

    from lmprint.monitor import Segment
    from lmprint.results import Match

    class Workers:
        jobs = 2

        def __init__(self, answers):
            self.answers, self.hints = list(answers), []

        def submit(self, window, hint):
            self.hints.append(hint[0].song.id if hint else None)
            future: Future = Future()
            future.set_result(self.answers.pop(0))
            return future

    with Index(built_index) as index:
        old, new = index.catalogue.songs()[:2]
        heard_old = Match(old, 9.0, 30.0, 0.99, "followed", speed=1.0)
        workers = Workers([Match(new, 60.0, 12.0, 0.99, "vote", false_match_probability=1e-6, speed=1.0),
                           Match(old, 7.0, 34.0, 0.99, "followed", speed=1.0)])
        watcher = Monitor(index, looks=workers)
        watcher.current = Segment(old, 0.0, 30.0, 0.0, 0.99, 10, anchor_s=0.0, heard=heard_old, best_follow=9.0,
                                  last_look_s=24.0)
        watcher._candidate = Segment(new, 26.0, 32.0, None, 0.99, 1)
        window = int(watcher.settings.window_s * index.sample_rate_hz)
        hop = int(watcher.settings.hop_s * index.sample_rate_hz)
        events = watcher.feed(np.zeros(window + hop, np.float32))
        events += watcher._look(finishing=True)  # the second answer too
        assert not watcher._in_flight
    assert workers.hints == [old.id, old.id]  # both sent before either answer was taken
    assert [(e.song.id, e.open) for e in events] == [(old.id, False), (new.id, True)]
    assert watcher.current is not None and watcher.current.song.id == new.id and watcher.current.misses == 0
    assert watcher._candidate is None


def test_while_nothing_is_heard_looks_come_further_apart_and_a_song_after_it_is_placed_as_well(built_index):
    """`idle_hop_s`: unknown music between songs is searched half as often, and a look that then names a song
    looks back at the window it skipped, so the song starts where a look at every hop starts it, and is announced
    as soon."""
    import soxr

    pieces = [(100, 0.0, 38.0), (101, 0.0, 36.0), (2, 5.0, 25.0), (102, 3.0, 37.0), (103, 0.0, 38.0), (0, 9.0, 30.0)]
    signal, truth = radio(pieces)
    with Index(built_index) as index:
        samples = soxr.resample(signal, RATE, index.sample_rate_hz).astype(np.float32)
        chunks = [samples[i:i + 4000] for i in range(0, samples.size, 4000)]
        runs = {}
        announced = {}
        for idle_hop_s in (2.0, 4.0):
            method = Counting(index)
            events = list(monitor(method, chunks, MonitorSettings(idle_hop_s=idle_hop_s)))
            runs[idle_hop_s] = method, [{"title": s.song.title, "start_s": s.start_s, "end_s": s.end_s,
                                         "song_offset_s": s.song_offset_s} for s in events if not s.open]
            announced[idle_hop_s] = [(e.song.title, e.end_s) for e in events if e.open]
    every_hop, idle = runs[2.0][1], runs[4.0][1]
    check(idle, truth)
    assert [s["title"] for s in idle] == [s["title"] for s in every_hop]
    for a, b in zip(idle, every_hop):
        assert abs(a["start_s"] - b["start_s"]) <= 1.0 and abs(a["end_s"] - b["end_s"]) <= 1.0, (idle, every_hop)
    # once a look names a song, the looks that confirm it come a hop apart, not an idle hop: it is announced as
    # soon (its first look may fall a hop later on the idle grid)
    assert [t for t, _ in announced[4.0]] == [t for t, _ in announced[2.0]] == ["song2", "song0"]
    for (_, idle_s), (_, every_s) in zip(announced[4.0], announced[2.0]):
        assert idle_s <= every_s + 2.0, announced
    # unknown music is three quarters of this radio: its searches halve, those around the songs stay
    assert runs[4.0][0].searches <= 0.7 * runs[2.0][0].searches, (runs[4.0][0].searches, runs[2.0][0].searches)


def test_agreeing_looks_report_a_song_only_once_one_of_them_is_sure(built_index):
    """Overlapping looks share most of their audio: two fooled by one passage agree. A segment is reported once
    `confirm_looks` looks agree and one of them is unlikely by chance (`confirm_chance`); an engine that is not
    calibrated (no false-match probability) needs the looks alone."""
    from lmprint.results import Match

    with Index(built_index) as index:
        song = index.catalogue.songs()[0]

        def looked(chance, time_s):
            return Match(song, 60.0, 20.0 + time_s, 1.0 - (chance or 0.0), "vote", false_match_probability=chance,
                         speed=1.0)

        for chances, reported_at in (([1e-3, 1e-3, 1e-3], None), ([1e-3, 1e-3, 2e-5], 2), ([2e-5, 1e-3], 1),
                                     ([None, None], 1)):
            watcher = Monitor(index, MonitorSettings())
            opened = [n for n, chance in enumerate(chances)
                      if any(e.open for e in watcher._update(looked(chance, 2.0 * n), 2.0 * n, 6.0))]
            assert opened == ([] if reported_at is None else [reported_at]), chances


def test_a_recording_too_short_for_two_looks_names_its_song_if_its_one_look_is_sure(built_index, tmp_path):
    """A stream of a few seconds holds one look: it names its song as `match` would, when that look is sure; a
    song that is not indexed stays unnamed."""
    for seed, start_s, expected in ((2, 10.0, ["song2"]), (100, 10.0, [])):
        path = tmp_path / f"short{seed}.flac"
        write(path, rendered(seed, 40.0, RATE)[int(start_s * RATE):int((start_s + 5.5) * RATE)], RATE)
        result = run_cli("monitor", "--json", path, db=built_index, check=True)
        events = [json.loads(line) for line in result.stdout.splitlines()]
        assert [e["title"] for e in events if not e["open"]] == expected, events
        if expected:
            assert [e["event"] for e in events] == ["open", "closed"]
            assert abs(events[1]["song_offset_s"] - start_s) <= 1.0 and events[1]["start_s"] == 0.0, events


def test_a_segment_whose_looks_began_before_the_song_starts_with_the_song(built_index):
    """A look whose window began before the song reads offset 0 and tells no anchor; the segment it starts is
    reported from the song's start (offset 0), not without an offset."""
    from lmprint.results import Match

    with Index(built_index) as index:
        song = index.catalogue.songs()[0]
        watcher = Monitor(index, MonitorSettings())
        events = [e for time_s in (30.0, 32.0) for e in watcher._update(
            Match(song, 60.0, 0.0, 0.99999, "vote", false_match_probability=1e-5, speed=1.0), time_s, 6.0)]
    assert [e.open for e in events] == [True] and events[0].song_offset_s == 0.0, events


def test_a_song_after_silence_or_unknown_music_is_announced_from_where_it_begins(built_index):
    """A look whose window began before the song says how long before (`Match.lead_in_s`): the open line, printed
    while the song plays, starts where the song begins, as the closed line does. (It started `audible_s` before
    the end of the look's window, up to a second early or late; and 2.1 s late, at 2.1 s into the song, where
    that guess fell more than a hop from the song's start.) A surer look's lead-in wins over a first look that
    put the song earlier by chance (17.7 s: a window holding 0.3 s of the song named it 6 s into the song, at a
    chance of 0.006). Silence after the song does not lengthen it: it cannot be heard past its own end."""
    import soxr

    with Index(built_index) as index:
        for before_s, before in ((33.0, None), (31.3, None), (17.7, None), (20.7, 100), (21.9, 100)):
            lead = (np.zeros(int(before_s * RATE), np.float32) if before is None
                    else rendered(before, before_s, RATE))
            signal = np.concatenate([lead, rendered(1, 40.0, RATE), np.zeros(3 * RATE, np.float32)])
            samples = soxr.resample(signal, RATE, index.sample_rate_hz).astype(np.float32)
            events = list(monitor(index, [samples[i:i + 4000] for i in range(0, samples.size, 4000)]))
            assert [(e.open, e.song.title) for e in events] == [(True, "song1"), (False, "song1")], events
            for event in events:
                assert abs(event.start_s - before_s) <= 0.1 and event.song_offset_s == 0.0, (before_s, events)
            assert abs(events[1].end_s - (before_s + 40.0)) <= 0.1, (before_s, events)


def test_a_song_whose_opening_is_not_heard_is_announced_as_far_into_it_as_where_it_is_heard(built_index):
    """A song whose first second is lost under noise starts its segment where it is heard. The open line said 0.0 s
    into the song there (looks whose windows began before the song tell no anchor), and the closed line, from
    later looks' anchor, 1.0 s: the open line now reads it from where the looks heard the song begin (their
    lead-in), so both agree."""
    import soxr

    rng = np.random.default_rng(0)
    with Index(built_index) as index:
        for before_s, lost_s in ((23.0, 1.0), (21.0, 1.5)):
            song = rendered(1, 40.0, RATE)
            song[:int(lost_s * RATE)] *= 0.01
            signal = np.concatenate([np.zeros(int(before_s * RATE), np.float32), song, np.zeros(3 * RATE, np.float32)])
            signal += 0.03 * rng.standard_normal(signal.size).astype(np.float32)
            samples = soxr.resample(signal, RATE, index.sample_rate_hz).astype(np.float32)
            said = [(e.open, e.song.title, e.start_s, e.song_offset_s)  # as each line is printed
                    for e in monitor(index, [samples[i:i + 4000] for i in range(0, samples.size, 4000)])]
            assert [(opened, title) for opened, title, _, _ in said] == [(True, "song1"), (False, "song1")], said
            (_, _, open_start_s, open_offset_s), (_, _, start_s, offset_s) = said
            assert open_start_s == start_s and abs(start_s - (before_s + offset_s)) <= 0.1, said
            assert abs(offset_s - lost_s) <= 0.5 and abs(open_offset_s - offset_s) <= 0.1, said


def _crossfaded(first: np.ndarray, second: np.ndarray, fade_s: float) -> np.ndarray:
    """`first` then `second`, the one faded out while the other fades in over `fade_s` (linearly)."""
    fade = int(fade_s * RATE)
    ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32)
    mixed = np.concatenate([first, np.zeros(second.size - fade, np.float32)])
    mixed[first.size - fade:first.size] *= 1.0 - ramp
    mixed[first.size - fade:] += np.concatenate([second[:fade] * ramp, second[fade:]])
    return mixed


@pytest.mark.parametrize("before, fade_s, change_s", [
    ((0, 10.0, 23.3), 0.0, 13.3),  # a hard cut from one song to another, both mid-song
    ((100, 0.0, 2.7), 0.0, 2.7),  # a song cutting in mid-song within the stream's first window
    ((0, 10.0, 26.0), 6.0, 13.0),  # a crossfade over 6 s: a listener hears the change at its middle
])
def test_a_boundary_is_where_one_song_stops_being_heard_and_the_next_starts(built_index, before, fade_s, change_s):
    """Boundaries are read from the songs' peaks around them (`Index.heard_span`), not guessed from where a window
    names a song (on the grid of looks, 2 s apart: at a hard cut the song before ended up to 1 s early and the next
    began up to 1 s late; a song that cut in within the stream's first window was dated to 0 s; a crossfade's
    middle was missed by seconds). In a crossfade both songs are heard over its middle: both boundaries go there."""
    import soxr

    seed, from_s, to_s = before
    signal = _crossfaded(rendered(seed, 40.0, RATE)[int(from_s * RATE):int(to_s * RATE)],
                         rendered(2, 40.0, RATE)[5 * RATE:25 * RATE], fade_s)
    with Index(built_index) as index:
        samples = soxr.resample(signal, RATE, index.sample_rate_hz).astype(np.float32)
        closed = [e for e in monitor(index, [samples[i:i + 4000] for i in range(0, samples.size, 4000)])
                  if not e.open]
    assert [e.song.title for e in closed] == ["song0", "song2"][seed == 100:], closed
    assert abs(closed[-1].start_s - change_s) <= 0.5, closed  # from 13.3 s: 14.0; from 2.7 s: 0.0; 13.0 s: 16.0
    assert abs(closed[-1].song_offset_s - (5.0 + closed[-1].start_s - (change_s - fade_s / 2))) <= 0.1, closed
    if seed != 100:
        assert abs(closed[0].end_s - change_s) <= 0.5, closed


@pytest.mark.parametrize("after_s", [2.9, 8.9])
def test_a_song_cut_shortly_before_the_stream_ends_ends_where_it_stops_being_heard(built_index, after_s):
    """A recording whose last song is cut into other audio a few seconds before it ends (talk, a jingle, the next
    track): its last look still names the song, and the play ends where the song stops being heard, as at any
    other close (it ended at the stream's end, 2.9 s late, when the last look held under a window after the cut)."""
    import soxr

    signal = np.concatenate([rendered(0, 40.0, RATE)[:33 * RATE], rendered(100, 20.0, RATE)[:int(after_s * RATE)]])
    with Index(built_index) as index:
        samples = soxr.resample(signal, RATE, index.sample_rate_hz).astype(np.float32)
        closed = [e for e in monitor(index, [samples[i:i + 4000] for i in range(0, samples.size, 4000)])
                  if not e.open]
    assert [e.song.title for e in closed] == ["song0"] and abs(closed[0].end_s - 33.0) <= 0.5, closed


def test_a_song_playing_when_the_stream_ends_or_is_stopped_ends_there(built_index):
    """A recording cut mid-song ends with the song (read where it stops being heard, its last moments read 0.7 s
    short); and a stream stopped (Ctrl-C) while looks are still out in workers ends the song playing where the
    stream stopped, not where the last look taken reads it to (10 s short, with six looks out), and a song that
    ended before the stop where it ended (read two windows from the last look taken, it was put at the stop)."""
    from concurrent.futures import Future

    from lmprint.monitor import look

    class Workers:  # answered at once, but taken `jobs` at a time, as worker processes' are
        def __init__(self, method, jobs):
            self.method, self.jobs = method, jobs

        def submit(self, window, hint):
            answer: Future = Future()
            answer.set_result(look(self.method, window, hint))
            return answer

    import soxr

    with Index(built_index) as index:
        rate = index.sample_rate_hz
        for seed, cut_s in ((3, 15.3), (3, 33.9), (0, 21.7)):
            samples = soxr.resample(rendered(seed, 40.0, RATE)[:int(cut_s * RATE)], RATE, rate).astype(np.float32)
            closed = [e for e in monitor(index, [samples[i:i + 4000] for i in range(0, samples.size, 4000)])
                      if not e.open]
            assert len(closed) == 1 and closed[0].end_s == pytest.approx(cut_s, abs=0.02), (seed, cut_s, closed)
        song = soxr.resample(rendered(0, 40.0, RATE), RATE, rate).astype(np.float32)
        samples = song[:30 * rate]
        watcher = Monitor(index, MonitorSettings(), Workers(index, 6))
        events = [e for i in range(0, samples.size, 12 * rate) for e in watcher.feed(samples[i:i + 12 * rate])]
        closed = [e for e in events + watcher.stop() if not e.open]
        assert len(closed) == 1 and closed[0].end_s == pytest.approx(30.0, abs=0.02), closed
        other = soxr.resample(rendered(57, 40.0, RATE), RATE, rate).astype(np.float32)
        for jobs, cut_s in ((6, 35.3), (8, 31.3)):
            samples = np.concatenate([song[:int(cut_s * rate)], 0.3 * other[int(cut_s * rate):]])
            watcher = Monitor(index, MonitorSettings(), Workers(index, jobs))
            closed = [e for e in watcher.feed(samples) + watcher.stop() if not e.open]
            assert [e.song.title for e in closed] == ["song0"] and abs(closed[0].end_s - cut_s) <= 0.5, closed


def test_a_boundary_beside_digital_silence_is_where_the_sound_begins_or_stops(built_index):
    """The song's peaks in digital silence are not read, and a song is not heard there either: a song from mid-song
    after 10 s of zeros starts at 10 s (it was read from the stream's start, 0 s), and one stopping mid-song before
    12 s of zeros ends where it stops (it was read to the end of what was read, 30 s)."""
    import soxr

    silence = np.zeros(int(10.0 * RATE), np.float32)
    with Index(built_index) as index:
        for signal, title, start_s, end_s in (
                (np.concatenate([silence, rendered(1, 40.0, RATE)[15 * RATE:]]), "song1", 10.0, 35.0),
                (np.concatenate([rendered(0, 40.0, RATE)[5 * RATE:25 * RATE], silence, silence]), "song0", 0.0, 20.0)):
            samples = soxr.resample(signal, RATE, index.sample_rate_hz).astype(np.float32)
            closed = [e for e in monitor(index, [samples[i:i + 4000] for i in range(0, samples.size, 4000)])
                      if not e.open]
            assert [e.song.title for e in closed] == [title], closed
            assert abs(closed[0].start_s - start_s) <= 0.5 and abs(closed[0].end_s - end_s) <= 0.5, closed


@pytest.mark.parametrize("pieces, expected, within_s", [
    ([(4, 0.0, 20.0), (None, 0.0, 5.0), (4, 20.0, 40.0), (5, 0.0, 20.0)],
     [("song4", 0.0, 20.0, 0.0), ("song4", 25.0, 45.0, 20.0), ("song5", 45.0, 65.0, 0.0)], 0.5),
    ([(4, 0.0, 20.0), (None, 0.0, 2.0), (4, 20.0, 40.0), (5, 0.0, 20.0)],
     [("song4", 0.0, 42.0, 0.0), ("song5", 42.0, 62.0, 0.0)], 0.5),
    ([(1, 0.0, 30.0), (1, 5.0, 40.0)], [("song1", 0.0, 30.0, 0.0), ("song1", 30.0, 65.0, 5.0)], 1.0),
    ([(1, 0.0, 10.0), (1, 0.0, 40.0)], [("song1", 0.0, 10.0, 0.0), ("song1", 10.0, 50.0, 0.0)], 0.5),
    ([(2, 0.0, 20.0), (2, 30.0, 40.0), (0, 0.0, 20.0)], [("song2", 0.0, 30.0, 0.0), ("song0", 30.0, 50.0, 0.0)],
     0.5),
], ids=["paused 5 s, then on", "paused 2 s", "skipped back", "started over from far back", "skipped forward"])
def test_a_song_paused_or_skipped_within_is_placed_where_it_plays(built_index, pieces, expected, within_s):
    """A stream that pauses (5 s of digital silence) and goes on where it stopped, or that skips back, plays the
    song again from there: the play before ends where it stops being heard, the next begins where it is heard
    again (the next began at the first play's last look, 2–5 s early; within a second now where the generated
    song repeats its notes). Through a 2 s pause and a skip forward the play goes on, and ends with the song's
    end as the looks after it place it (it ended where the first play's clock put the song's end: 2 s early,
    or 1 s). A song started over 30 s back is heard from the new play's start, not from as far back as a
    reading reached (24 s)."""
    import soxr

    signal = np.concatenate([np.zeros(int((end - start) * RATE), np.float32) if seed is None
                             else rendered(seed, 40.0, RATE)[int(start * RATE):int(end * RATE)]
                             for seed, start, end in pieces])
    with Index(built_index) as index:
        samples = soxr.resample(signal, RATE, index.sample_rate_hz).astype(np.float32)
        closed = [e for e in monitor(index, [samples[i:i + 8000] for i in range(0, samples.size, 8000)])
                  if not e.open]
    found = [(e.song.title, e.start_s, e.end_s, e.song_offset_s) for e in closed]
    assert [f[0] for f in found] == [e[0] for e in expected], found
    for (_, start, end, offset), (_, true_start, true_end, true_offset) in zip(found, expected):
        assert abs(start - true_start) <= within_s and abs(end - true_end) <= within_s, found
        assert abs(offset - true_offset) <= within_s, found


def test_boundaries_do_not_depend_on_how_the_stream_arrives(built_index):
    """A hard cut read in chunks of 0.5 s, of 18 s, and with looks in two worker processes: the same segments (the
    end read up to what the stream had delivered moved with the chunks, by 0.2 s)."""
    import soxr

    from lmprint.monitor import Looks

    signal = np.concatenate([rendered(1, 40.0, RATE)[3 * RATE:int(21.5 * RATE)], rendered(5, 40.0, RATE)[9 * RATE:]])
    with Index(built_index) as index:
        samples = soxr.resample(signal, RATE, index.sample_rate_hz).astype(np.float32)
        found = []
        for chunk, jobs in ((4000, 0), (144_000, 0), (4000, 2)):
            looks = Looks(lambda: Index(built_index), jobs) if jobs else None
            try:
                events = monitor(index, [samples[i:i + chunk] for i in range(0, samples.size, chunk)], looks=looks)
                found.append([(e.song.title, round(e.start_s, 3), round(e.end_s, 3)) for e in events if not e.open])
            finally:
                if looks is not None:
                    looks.close()
    assert found[0] == found[1] == found[2] and len(found[0]) == 2, found


def test_a_start_the_engine_cannot_hear_comes_from_where_a_look_heard_the_song_begin(built_index, monkeypatch):
    """Where `heard_span` reads nothing (an engine that cannot tell, a song not clearly heard), a window that heard
    the song begin still places its start (`Match.lead_in_s`), not a guess `audible_s` before the window's end."""
    import soxr

    monkeypatch.setattr(Index, "heard_span", lambda self, samples, previous, offset_s: None)
    signal = np.concatenate([np.zeros(int(17.7 * RATE), np.float32), rendered(1, 40.0, RATE)])
    with Index(built_index) as index:
        samples = soxr.resample(signal, RATE, index.sample_rate_hz).astype(np.float32)
        events = list(monitor(index, [samples[i:i + 4000] for i in range(0, samples.size, 4000)]))
    assert [e.song.title for e in events] == ["song1", "song1"], events
    assert all(abs(e.start_s - 17.7) <= 0.1 and e.song_offset_s == 0.0 for e in events), events


def test_a_segments_end_is_read_at_its_clock_only_from_a_last_look_that_heard_it_there(built_index):
    """A song followed from 0 s, its last look at its clock at 10 s, and looks naming it elsewhere in the song (a
    passage that returns) until one at 24 s: its clock tells its end no more, and the end is placed from the last
    look, as when it cannot be heard (read at the clock from 10 s, it ended where the reading stopped, 22 s: on a
    noisy radio hour, ends 6 s early). Where the last look was at its clock, the end is heard."""
    import soxr

    from lmprint.monitor import Segment

    with Index(built_index) as index:
        rate = index.sample_rate_hz
        samples = soxr.resample(rendered(1, 40.0, RATE), RATE, rate).astype(np.float32)
        heard = index.match_samples(samples[10 * rate:16 * rate])
        assert heard is not None and heard.song.title == "song1"
        ends = []
        for last_look_s, last_window_end_s in ((10.0, 30.0), (30.0, 36.0)):
            watcher = Monitor(index, MonitorSettings())
            watcher._buffer, watcher._heard_samples = samples, samples.size
            segment = Segment(heard.song, 0.0, last_window_end_s, 0.0, heard.confidence, 10, anchor_s=0.0,
                              heard=heard, last_look_s=last_look_s, named_elsewhere=last_look_s == 10.0)
            ends.append(watcher._close(segment, watcher.heard_s).end_s)
    assert ends[0] == pytest.approx(24.0 + 2.0 + 1.0)  # `audible_s` and half a hop past its last look's start
    assert ends[1] == pytest.approx(40.0, abs=0.3)  # its last look at its clock: heard to the song's end


def test_a_song_held_as_two_files_is_one_segment_for_as_long_as_it_plays(tmp_path):
    """Which of two files of one recording (a WAV and an MP3 of it) a look names is chance: a look naming the
    other extends the segment, and the segment goes on following its own file (following the other file, whose
    followed looks then named no segment, cut a 40 s song to 9 s)."""
    library = tmp_path / "music"
    library.mkdir()
    for seed in (1, 2, 3):
        write(library / f"song{seed}.wav", rendered(seed, 40.0, RATE), RATE)
    write(library / "song3.mp3", rendered(3, 40.0, RATE), RATE)
    from lmprint.monitor import _names
    from lmprint.results import Match

    with Index(tmp_path / "i.db", create=True) as index:
        index.add([str(library)])
        rate = index.sample_rate_hz
        stream = np.r_[rendered(3, 40.0, rate), np.zeros(20 * rate, np.float32), rendered(1, 40.0, rate)]
        events = list(monitor(index, [stream[i:i + rate] for i in range(0, stream.size, rate)]))
        by_name = {os.path.basename(song.path): song for song in index.catalogue.songs()}
    # a look that the MP3 led, the WAV among its copies, names the WAV's segment too (here every look may name
    # one file: which leads is chance)
    led_by_mp3 = Match(by_name["song3.mp3"], 60.0, 10.0, 0.999, "vote", copies=(by_name["song3.wav"],))
    assert _names(led_by_mp3, by_name["song3.wav"]) and _names(led_by_mp3, by_name["song3.mp3"])
    assert not _names(led_by_mp3, by_name["song1.wav"])
    closed = [(e.song.title, e.start_s, e.end_s) for e in events if not e.open]
    assert [title for title, _, _ in closed] in (["song3", "song1"],), closed
    assert [abs(start - true) <= 2.5 and abs(end - true_end) <= 2.5 for (_, start, end), (true, true_end)
            in zip(closed, ((0.0, 40.0), (60.0, 100.0)))] == [True, True], closed


def test_a_segment_keeps_the_rate_of_the_look_that_placed_its_anchor(built_index):
    """A first look that began before the song tells no anchor (its offset reads 0) and may misjudge the rate from
    the song's first seconds; the look that fixes the anchor fixes the rate with it. Mixing them put a song that
    started an hour into a stream a minute late (2.3 % of an hour). Until then the rate is the latest look's, which
    heard the most of the song: a song announced from two such looks was "played at rate −2.3 %" until it closed."""
    from lmprint.results import Match

    with Index(built_index) as index:
        song = index.catalogue.songs()[0]
        watcher = Monitor(index, MonitorSettings())
        # the song starts at 3374.5 s: the looks at 3372 and 3374 began before it, the one at 3376 places it
        for time_s, offset_s, factors in ((3372.0, 0.0, {"tempo": 0.977, "pitch": 1.0}), (3374.0, 0.0, {"speed": 1.0}),
                                          (3376.0, 1.5, {"speed": 1.0})):
            watcher._update(Match(song, 60.0, offset_s, 0.99999, "vote", false_match_probability=1e-5, **factors),
                            time_s, 6.0)
            assert (watcher.current or watcher._candidate).rate == factors.get("speed", factors.get("tempo")), time_s
        segment = watcher.current
        assert segment is not None and segment.rate == 1.0
        assert abs(segment.start_s - 3374.5) <= 0.01 and segment.song_offset_s == 0.0, segment


def test_a_song_that_starts_the_stream_starts_at_zero_not_minus_zero(built_index):
    """A look back can place a segment of a song that starts the stream within a hop of it, with an anchor of
    exactly 0 (the song's time minus the stream's): its start is then the song's own start, 0.0, which every
    output prints as 0.0, never as -0.0 (as a monitor of real music did)."""
    from lmprint.monitor import Segment

    with Index(built_index) as index:
        song = index.catalogue.songs()[0]
        watcher = Monitor(index, MonitorSettings())
    segment = Segment(song, 2.0, 10.0, None, 1.0, 2)
    watcher._place(segment, 0.0)
    assert segment.start_s == 0.0 and math.copysign(1.0, segment.start_s) == 1.0, segment
    assert segment.to_dict()["start_s"] == 0.0 and segment.song_offset_s == 0.0, segment
    assert math.copysign(1.0, segment.to_dict()["start_s"]) == math.copysign(1.0, segment.song_offset_s) == 1.0


def test_a_look_after_an_idle_hop_looks_back_at_the_window_it_skipped(built_index):
    """A song heard under talk until 10 s of a stream: the idle looks at 0 and 4 s miss it, the one at 8 s names
    it, and its look back searches the window at 6 s, which names it too, so the segment starts at 10 s, as a
    look every hop would have started it. A look back places the start only: it is not a look that confirms."""
    from lmprint.results import Match

    with Index(built_index) as index:
        song = index.catalogue.songs()[0]

    class Talk:
        """Names the song in a window holding at least `needed_s` of it after 10 s (its samples are its time)."""
        sample_rate_hz = 100

        def __init__(self, needed_s):
            self.needed_s, self.searched = needed_s, []

        def match_samples(self, window):
            start_s = round(float(window[0]), 2)
            self.searched.append(start_s)
            if start_s + window.size / 100 - max(start_s, 10.0) < self.needed_s:
                return None
            return Match(song, 60.0, 30.0 + start_s, 1.0, "vote", false_match_probability=1e-6, speed=1.0)

        def follow(self, samples, previous, offset_s, min_score=0.0):
            return None  # it cannot tell: every look searches

        def heard_span(self, samples, previous, offset_s):
            return None  # it cannot tell: boundaries come from the looks

    clock = (np.arange(1400) / 100).astype(np.float32)
    for needed_s, start_s in ((2.0, 10.0), (3.0, 12.0)):
        talk = Talk(needed_s)
        watcher = Monitor(talk, MonitorSettings())
        watcher.feed(clock)
        assert talk.searched == [0.0, 4.0, 8.0, 6.0]  # the look at 8 s, then its look back at the window skipped
        segment = watcher._candidate or watcher.current
        assert segment is not None and segment.start_s == start_s and segment.looks == 1, (needed_s, segment)


def test_a_stream_read_ahead_gives_its_chunks_in_order_then_the_error_that_ended_it():
    """Read in a thread, a stream still reaches the monitor chunk by chunk, in order, and an error met decoding
    it (a file cut off) is raised where the reader met it, after the chunks before it."""
    from lmprint.errors import AudioError
    from lmprint.monitor import read_ahead

    def stream():
        for i in range(10):
            yield np.full(3, i, np.float32)
        raise AudioError("cut off")

    taken = []
    with pytest.raises(AudioError, match="cut off"):
        for chunk in read_ahead(stream(), depth=4):
            taken.append(chunk)
    assert [chunk.tolist() for chunk in taken] == [[i] * 3 for i in range(10)]


def test_a_stream_is_read_ahead_while_the_caller_waits_up_to_its_depth_and_no_further_and_closing_stops_it():
    import threading
    import time

    from lmprint.monitor import read_ahead

    pulled = []
    closed = threading.Event()

    def stream():
        try:
            for i in range(1000):
                pulled.append(i)
                yield np.zeros(1, np.float32)
        finally:
            closed.set()

    ahead = read_ahead(stream(), depth=5)
    next(ahead)
    deadline = time.monotonic() + 10
    while len(pulled) < 7 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)
    assert len(pulled) == 7  # the one taken, five waiting and one in the reader's hand
    ahead.close()
    assert closed.is_set()  # the reader stopped before close returned, and closed the stream (a decoder's file)
    assert not [t for t in threading.enumerate() if t.name == "lmprint-read-ahead"]
    assert len(pulled) == 7


@pytest.mark.parametrize("stop", ["SIGINT", "SIGTERM"])
def test_ctrl_c_stops_a_monitor_and_its_workers_in_one_line(built_index, stop):
    """Ctrl-C in a terminal interrupts every process of the command: the workers leave it to the monitor, which
    closes the song playing where the stream stopped, says so in one line (no worker's traceback) and exits 130,
    leaving no worker behind. A service manager's SIGTERM (systemd's, to every process of the service) is handled
    alike, and the monitor then ends by the signal, as a service stopped as asked."""
    import signal
    import time

    import soxr

    signal_, _ = radio(PIECES[:2])
    pcm = (soxr.resample(signal_, RATE, 44100) * 0.5 * 32767).astype("<i2").tobytes()
    process = subprocess.Popen([sys.executable, "-m", "lmprint", "--db", str(built_index), "monitor", "--jobs", "2",
                                "--csv", "--format", "s16le", "--rate", "44100", "--channels", "1", "-"],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               start_new_session=True)
    assert process.stdin is not None
    process.stdin.write(pcm)  # a live stream: heard, then nothing more for now
    process.stdin.flush()
    deadline = time.time() + 60
    while len(children_of(process.pid)) < 2 and time.time() < deadline:
        time.sleep(0.1)
    workers = children_of(process.pid)
    assert len(workers) >= 2, "the looks run in worker processes"
    time.sleep(3)
    os.killpg(process.pid, getattr(signal, stop))
    stdout, stderr = process.communicate(timeout=60)
    events = [line.split(",")[:2] for line in stdout.decode().splitlines()[1:]]
    opened, closed = ([start for event, start in events if event == kind] for kind in ("open", "closed"))
    assert opened and closed == opened, events  # each song confirmed is closed, the one playing too
    segments = f"{len(closed)} segment{'' if len(closed) == 1 else 's'}"
    said, status = ("interrupted", 130) if stop == "SIGINT" else ("stopped", -signal.SIGTERM)
    assert process.returncode == status and stderr.decode() == f"lmprint: {said} ({segments})\n", stderr.decode()
    assert all_gone(workers, within_s=30)


@pytest.mark.parametrize("stop", ["SIGINT", "SIGTERM"])
def test_a_monitor_waiting_for_a_named_pipe_to_be_opened_stops_as_it_is_told(built_index, tmp_path, stop):
    """A named pipe no writer has opened yet: FFmpeg's open waited for one where a signal's handler could not stop
    it, and Ctrl-C or SIGTERM ended the monitor with `cannot decode: Interrupted system call`. The pipe is opened
    in Python now, and the monitor stops as it does during a stream."""
    import signal
    import time

    fifo = tmp_path / "radio.ogg"
    os.mkfifo(fifo)
    process = subprocess.Popen([sys.executable, "-m", "lmprint", "--db", str(built_index), "monitor", str(fifo)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    time.sleep(3)  # started, and waiting for the pipe's writer
    os.killpg(process.pid, getattr(signal, stop))
    _, stderr = process.communicate(timeout=60)
    said, status = ("interrupted", 130) if stop == "SIGINT" else ("stopped", -signal.SIGTERM)
    assert process.returncode == status and stderr.decode() == f"lmprint: {said} (0 segments)\n", stderr.decode()


class Unsure:
    """The index, every search's false-match probability replaced by `chance`."""

    def __init__(self, index, chance):
        self.index, self.chance, self.sample_rate_hz = index, chance, index.sample_rate_hz

    def match_samples(self, samples):
        found = self.index.match_samples(samples)
        return None if found is None else dataclasses.replace(found, false_match_probability=self.chance)

    def follow(self, *args, **kwargs):
        return self.index.follow(*args, **kwargs)

    def heard_span(self, *args, **kwargs):
        return self.index.heard_span(*args, **kwargs)


def test_one_look_names_its_song_only_if_it_is_sure(built_index):
    """A recording too short for a second look names the song of its one look only where that look's
    false-match probability is within `confirm_chance`."""
    import soxr

    with Index(built_index) as index:
        clip = soxr.resample(rendered(2, 40.0, RATE)[10 * RATE:int(15.5 * RATE)], RATE,
                             index.sample_rate_hz).astype(np.float32)
        named = {}
        for chance in (1e-5, 1e-3):
            events = list(monitor(Unsure(index, chance), [clip[i:i + 4000] for i in range(0, clip.size, 4000)]))
            named[chance] = [(e.open, e.song.title) for e in events]
    assert named[1e-5] == [(True, "song2"), (False, "song2")]
    assert named[1e-3] == []


class Counting:
    """The index, counting searches and the follows that named the song."""

    def __init__(self, index):
        self.index, self.searches, self.follows, self.followed = index, 0, 0, 0
        self.sample_rate_hz = index.sample_rate_hz

    def match_samples(self, samples):
        self.searches += 1
        return self.index.match_samples(samples)

    def follow(self, samples, previous, offset_s, min_score=0.0):
        self.follows += 1
        found = self.index.follow(samples, previous, offset_s, min_score)
        self.followed += found is not None
        return found

    def heard_span(self, samples, previous, offset_s):
        return self.index.heard_span(samples, previous, offset_s)


def test_songs_at_another_speed_are_followed_at_their_clock(built_index):
    """A song at +6 % / -5 % is followed (Method.follow) where its clock at its rate puts it: few searches."""
    import soxr

    from bench.queries import change_speed

    parts = [change_speed(rendered(seed, 40.0, RATE)[int(s * RATE):int((s + 26) * RATE)], speed)
             for seed, s, speed in ((1, 4.0, 1.06), (3, 10.0, 0.95))]
    with Index(built_index) as index:
        samples = soxr.resample(np.concatenate(parts), RATE, index.sample_rate_hz).astype(np.float32)
        method = Counting(index)
        segments = [e for e in monitor(method, [samples[i:i + 8000] for i in range(0, samples.size, 8000)])
                    if not e.open]
    assert [s.song.title for s in segments] == ["song1", "song3"]
    assert method.followed >= 0.8 * method.follows and method.searches <= 10, (method.searches, method.follows,
                                                                                method.followed)


def test_looks_more_than_the_tolerance_apart_do_not_agree(built_index):
    """`anchor_tolerance_s` (1.0): a look 0.9 s off the clock agrees, one 1.5 s off does not."""
    from lmprint.monitor import Segment
    from lmprint.results import Match

    with Index(built_index) as index:
        watcher = Monitor(index)
        song = index.catalogue.songs()[0]
        segment = Segment(song, 3600.0, 3606.0, 12.0, 0.99, 1, anchor_s=12.0 - 1.05 * 3600.0, rate=1.05)
        results = [watcher._agrees(segment, Match(song, 50.0, 12.0 + 1.05 * 2.0 + off, 0.99, "vote", speed=1.0511),
                                   3602.0) for off in (0.9, -0.9, 1.5, -1.5)]
    assert results == [True, True, False, False]


@pytest.mark.parametrize("wrong", [{"close_after_misses": 0}, {"confirm_looks": 0}, {"follow_keep": 1.5},
                                   {"follow_keep": -0.1}, {"confirm_chance": 1.5}, {"hop_s": 7.0}])
def test_every_settings_bound_is_refused(wrong):
    """Each of `MonitorSettings`' bounds refuses a value past it."""
    from lmprint.errors import SettingsError

    with pytest.raises(SettingsError, match=next(iter(wrong))):
        MonitorSettings(**wrong)


def test_a_followed_song_must_keep_a_share_of_its_best_agreement(built_index):
    """A look checks the song followed asking `follow_keep` of its best followed agreement (`min_score`), so that a
    song fading under the next one is searched past. Checked at the hint: the generated songs' agreement stays
    near its best (about 12) even 14 dB under another song."""
    from lmprint.monitor import Segment
    from lmprint.results import Match

    with Index(built_index) as index:
        song = index.catalogue.songs()[0]
        heard = Match(song, 12.0, 20.0, 0.99, "followed", speed=1.0)
        hints = []
        for keep in (0.5, 0.8):
            watcher = Monitor(index, MonitorSettings(follow_keep=keep))
            watcher.current = Segment(song, 0.0, 26.0, 0.0, 0.99, 5, anchor_s=0.0, heard=heard, best_follow=12.0,
                                      last_look_s=20.0)
            hint = watcher._hint(22.0)
            hints.append((round(hint.song_s, 3), round(hint.min_score, 3)))
    assert hints == [(22.0, 6.0), (22.0, 9.6)]


def test_a_shorter_hop_looks_more_often(built_index):
    """`hop_s` sets the looks' grid while a song plays: at 1 s a segment is looked at twice as often as at 2 s."""
    import soxr

    signal, _ = radio([(2, 5.0, 32.0)])
    with Index(built_index) as index:
        samples = soxr.resample(signal, RATE, index.sample_rate_hz).astype(np.float32)
        chunks = [samples[i:i + 4000] for i in range(0, samples.size, 4000)]
        looks = {}
        for hop_s in (1.0, 2.0):
            closed = [e for e in monitor(index, chunks, MonitorSettings(hop_s=hop_s)) if not e.open]
            looks[hop_s] = [e.looks for e in closed]
    assert len(looks[1.0]) == len(looks[2.0]) == 1
    assert looks[1.0][0] >= 1.8 * looks[2.0][0], looks


def test_a_song_that_stopped_a_second_and_a_half_before_the_stream_ends_there(built_index):
    """At the stream's end a song heard to within `audible_s / 2` (1 s) of it still played then; one that stopped
    1.5 s before (other music after it) ends where it stopped."""
    import soxr

    with Index(built_index) as index:
        rate = index.sample_rate_hz
        song = soxr.resample(rendered(0, 40.0, RATE), RATE, rate).astype(np.float32)
        other = soxr.resample(rendered(57, 40.0, RATE), RATE, rate).astype(np.float32)
        ends = []
        for cut_s, stream_s in ((20.5, 22.0), (24.5, 26.0), (28.5, 30.0)):
            samples = np.concatenate([song[:int(cut_s * rate)], 0.3 * other[int(cut_s * rate):int(stream_s * rate)]])
            closed = [e for e in monitor(index, [samples[i:i + 4000] for i in range(0, samples.size, 4000)])
                      if not e.open]
            ends.append([(e.song.title, round(e.end_s, 2)) for e in closed])
    assert [[t for t, _ in e] for e in ends] == [["song0"]] * 3
    assert [abs(e[0][1] - cut_s) <= 0.5 for e, cut_s in zip(ends, (20.5, 24.5, 28.5))] == [True] * 3, ends


def test_a_followed_song_is_held_to_its_best_agreement_not_its_latest(built_index):
    """`best_follow` is the best followed agreement so far: after looks agreeing 12 then 8 (a fade), the next
    look asks half of 12, not of 8."""
    from lmprint.monitor import Segment
    from lmprint.results import Match

    with Index(built_index) as index:
        song = index.catalogue.songs()[0]
        watcher = Monitor(index, MonitorSettings())
        watcher.current = Segment(song, 0.0, 26.0, 0.0, 0.99, 5, anchor_s=0.0,
                                  heard=Match(song, 60.0, 20.0, 0.99, "vote", speed=1.0), last_look_s=20.0)
        for time_s, score in ((20.0, 12.0), (22.0, 8.0)):
            assert watcher._update(Match(song, score, time_s, 0.99, "followed", speed=1.0), time_s, 6.0) == []
        hint = watcher._hint(24.0)
    assert hint.min_score == pytest.approx(6.0)


def test_a_song_whose_last_looks_missed_does_not_run_to_the_streams_end(built_index, monkeypatch):
    """At the stream's end, a song whose last looks no longer named it (misses > 0) is not still playing: where
    its end cannot be heard (an engine without `heard_span`) it ends from its last agreeing look, not at the stream's
    end."""
    import soxr

    monkeypatch.setattr(Index, "heard_span", lambda self, samples, previous, offset_s: None)
    with Index(built_index) as index:
        rate = index.sample_rate_hz
        song = soxr.resample(rendered(0, 40.0, RATE), RATE, rate).astype(np.float32)
        other = soxr.resample(rendered(57, 40.0, RATE), RATE, rate).astype(np.float32)
        samples = np.concatenate([song[:25 * rate], other[25 * rate:31 * rate]])
        closed = [e for e in monitor(index, [samples[i:i + 4000] for i in range(0, samples.size, 4000)])
                  if not e.open]
    assert [e.song.title for e in closed] == ["song0"] and abs(closed[0].end_s - 25.0) <= 2.0, closed


@pytest.mark.parametrize("cut_s", [38.3, 38.7])
def test_a_song_cut_a_second_and_more_before_its_own_end_is_not_run_to_it(built_index, cut_s):
    """An end heard is put at the song's own end only within `heard_precision_s` (0.25 s); a song cut 1.3-1.7 s
    before its end (other music after it) ends where it was cut."""
    import soxr

    with Index(built_index) as index:
        rate = index.sample_rate_hz
        song = soxr.resample(rendered(1, 40.0, RATE), RATE, rate).astype(np.float32)
        other = soxr.resample(rendered(100, 40.0, RATE), RATE, rate).astype(np.float32)
        samples = np.concatenate([song[:int(cut_s * rate)], other[:15 * rate]])
        closed = [e for e in monitor(index, [samples[i:i + 4000] for i in range(0, samples.size, 4000)])
                  if not e.open]
    assert [e.song.title for e in closed] == ["song1"] and abs(closed[0].end_s - cut_s) <= 0.5, closed


def test_a_followed_look_of_a_song_closed_meanwhile_starts_nothing(built_index):
    """Looks sent two at a time; the first misses the old song a last time and closes it (no song followed now),
    the second followed the old song as of its sending: it is set aside, not the old song's next candidate."""
    from concurrent.futures import Future

    from lmprint.monitor import Segment
    from lmprint.results import Match

    class Workers:
        jobs = 2

        def __init__(self, answers):
            self.answers = list(answers)

        def submit(self, window, hint):
            future: Future = Future()
            future.set_result(self.answers.pop(0))
            return future

    with Index(built_index) as index:
        old = index.catalogue.songs()[0]
        heard_old = Match(old, 9.0, 30.0, 0.99, "followed", speed=1.0)
        watcher = Monitor(index, looks=Workers([None, Match(old, 7.0, 34.0, 0.99, "followed", speed=1.0)]))
        watcher.current = Segment(old, 0.0, 30.0, 0.0, 0.99, 10, anchor_s=0.0, heard=heard_old, best_follow=9.0,
                                  last_look_s=24.0, misses=watcher.settings.close_after_misses - 1)
        window = int(watcher.settings.window_s * index.sample_rate_hz)
        hop = int(watcher.settings.hop_s * index.sample_rate_hz)
        events = watcher.feed(np.zeros(window + hop, np.float32))
        events += watcher._look(finishing=True)
    assert [(e.song.id, e.open) for e in events] == [(old.id, False)]
    assert watcher.current is None and watcher._candidate is None


def test_a_segments_clock_ends_the_song_at_its_rate(built_index):
    """`clock_end_s`: a 40 s song played at 0.95 from 10 s into it at 24.5 s of the stream ends at
    24.5 + 30 / 0.95 s."""
    from lmprint.monitor import Segment

    with Index(built_index) as index:
        song = index.catalogue.songs()[0]
    segment = Segment(song, 24.5, 30.5, 10.0, 0.99, 2, anchor_s=10.0 - 0.95 * 24.5, rate=0.95)
    assert segment.clock_end_s == pytest.approx(24.5 + (song.duration_s - 10.0) / 0.95)


def test_a_segments_confidence_is_the_surest_looks(built_index):
    """A segment's confidence is that of its surest look, not of its latest: looks less sure later in the song
    (a fade, noise) do not lower what its open and closed lines report."""
    with Index(built_index) as index:
        song = index.catalogue.songs()[0]
        watcher = Monitor(index, MonitorSettings())
        watcher._heard_samples = 40 * index.sample_rate_hz
        events = []
        for n, chance in enumerate((1e-3, 1e-6, 1e-4, 1e-3)):
            events += watcher._update(Match(song, 60.0, 20.0 + 2.0 * n, 1.0 - chance, "vote",
                                            false_match_probability=chance, speed=1.0), 2.0 * n, 6.0)
        events += watcher.stop()
    assert [(e.open, e.looks, round(e.confidence, 6)) for e in events] == [(True, 2, 0.999999),
                                                                           (False, 4, 0.999999)], events


def test_a_json_line_gives_the_rate_a_song_plays_at(built_index, tmp_path):
    """`monitor --json` reports each segment's rate (its speed) as measured, to within half a percent: song 1 at
    +6 %, song 3 at −5 %."""
    from bench.queries import change_speed

    parts = [change_speed(rendered(seed, 40.0, RATE)[int(s * RATE):int((s + 26) * RATE)], speed)
             for seed, s, speed in ((1, 4.0, 1.06), (3, 10.0, 0.95))]
    path = tmp_path / "a dj mix.flac"
    write(path, np.concatenate(parts), RATE)
    result = run_cli("monitor", "--json", "--jobs", "1", path, db=built_index, check=True)
    closed = [json.loads(line) for line in result.stdout.splitlines() if json.loads(line)["event"] == "closed"]
    assert [e["title"] for e in closed] == ["song1", "song3"], closed
    assert abs(closed[0]["rate"] - 1.06) <= 0.005 and abs(closed[1]["rate"] - 0.95) <= 0.005, closed


def test_looks_in_worker_processes_differ_by_at_most_a_look(built_index):
    """Looks in two worker processes are taken in stream order: each segment is announced at most a look later
    than one process announces it, with at most one look more or fewer, and closed at the same place."""
    import soxr

    signal, _ = radio(PIECES)
    with Index(built_index) as index:
        samples = soxr.resample(signal, RATE, index.sample_rate_hz).astype(np.float32)
        chunks = [samples[i:i + 4000] for i in range(0, samples.size, 4000)]
        alone = [e.to_dict() for e in monitor(index, iter(chunks))]
        looks = Looks(functools.partial(Index, built_index), jobs=2)
        try:
            together = [e.to_dict() for e in monitor(index, iter(chunks), looks=looks, ahead_of_looks=True)]
        finally:
            looks.close()
    assert [(e["title"], e["open"]) for e in together] == [(e["title"], e["open"]) for e in alone]
    hop_s = MonitorSettings().hop_s
    for a, t in zip(alone, together):
        assert (t["start_s"], t["song_offset_s"]) == (a["start_s"], a["song_offset_s"]), (alone, together)
        assert abs(t["looks"] - a["looks"]) <= 1, (alone, together)
        assert 0 <= t["end_s"] - a["end_s"] <= hop_s if t["open"] else t["end_s"] == a["end_s"], (alone, together)


def test_a_live_stream_announces_a_song_without_waiting_for_more_of_it(built_index):
    """Standard input is live: its looks are made one at a time in this process however many cores the machine
    has (made to say 4 here), and each look runs as soon as its window is whole: a song is announced while the
    stream is still open once it holds the looks that confirm it (9.5 s of a song from its start: confirmed by
    the look whose window ends at 8 s; fed 2 s at a time, as looks in workers are, it waited for 10.5 s)."""
    import soxr

    signal = rendered(1, 40.0, RATE)[:int(9.5 * RATE)]
    pcm = (soxr.resample(signal, RATE, 44100) * 0.8 * 32767).astype("<i2").tobytes()
    as_four_cores = ("import os, runpy; os.cpu_count = lambda: 4; "
                     "runpy.run_module('lmprint', run_name='__main__')")
    process = subprocess.Popen([sys.executable, "-c", as_four_cores, "--db", str(built_index), "monitor", "--csv",
                                "--format", "s16le", "--rate", "44100", "--channels", "1", "-"],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               start_new_session=True, env={**os.environ, "PYTHONPATH": os.getcwd()})
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line.decode()) for line in process.stdout], daemon=True).start()
    try:
        process.stdin.write(pcm)  # 9.5 s of the song, and the stream stays open
        process.stdin.flush()
        announced = None
        while announced is None:
            line = lines.get(timeout=45)  # raises queue.Empty: nothing announced while the stream is open
            if line.startswith("open,"):
                announced = line.split(",")
        assert announced[4] == "song1" and float(announced[1]) == 0.0, announced
        process.stdin.close()
        assert process.wait(timeout=60) == 0, process.stderr.read().decode()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal_module.SIGKILL)
            process.wait()


@pytest.mark.parametrize("speed", [1.06, 0.95])
def test_heard_span_ends_a_song_played_faster_or_slower_where_it_ends(built_index, speed):
    """`Index.heard_span` of a song's last 10 s played at another speed, then other music: the song is heard to
    where its end plays at that speed (9.43 s at +6 %, 10.53 at −5 %), within a quarter of a second."""
    import soxr

    from bench.queries import change_speed

    with Index(built_index) as index:
        rate = index.sample_rate_hz
        song = next(s for s in index.catalogue.songs() if s.title == "song1")
        piece = change_speed(rendered(1, 40.0, RATE)[30 * RATE:], speed)
        other = 0.3 * rendered(100, 40.0, RATE)[:6 * RATE]
        clip = soxr.resample(np.r_[piece, other], RATE, rate).astype(np.float32)
        span = index.heard_span(clip, Match(song, 50.0, 30.0, 0.99, "vote", speed=speed), 30.0)
    assert span is not None and span[0] == 0.0, span
    assert abs(span[1] - piece.size / RATE) <= 0.25, (span, piece.size / RATE)


def test_a_song_closed_by_misses_does_not_end_at_a_candidate_the_closing_look_does_not_name(built_index):
    """A song followed closes after `close_after_misses` looks in a row that do not name it; a candidate that an
    earlier of those looks named, and the closing look does not (it names nothing), did not follow it: the song
    ends from its last look (where its end cannot be heard), not where that candidate would have begun."""
    with Index(built_index) as index:
        a, b = index.catalogue.songs()[:2]
        watcher = Monitor(index, MonitorSettings())
        watcher._heard_samples = 60 * index.sample_rate_hz
        watcher.current = Segment(a, 0.0, 30.0, 0.0, 0.99, 10, anchor_s=0.0,
                                  heard=Match(a, 9.0, 24.0, 0.99, "followed", speed=1.0), last_look_s=24.0,
                                  misses=watcher.settings.close_after_misses - 1)
        watcher._candidate = Segment(b, 25.5, 32.0, None, 0.99, 1)
        events = watcher._update(None, 30.0, 6.0)
    # `audible_s` and half a hop past its last look's start, 24 s
    assert [(e.song.id, e.open, e.end_s) for e in events] == [(a.id, False, 27.0)], events
    assert watcher.current is None


def at_index_rate(signal, index):
    """A generated signal resampled to the index's rate, as a decoder hands it on."""
    import soxr

    return soxr.resample(signal, RATE, index.sample_rate_hz).astype(np.float32)


def chunks_of(samples, size=8000):
    return [samples[i:i + size] for i in range(0, samples.size, size)]


def test_standard_input_is_looked_at_every_hop_as_the_api_does_with_idle_hop_at_hop(built_index, tmp_path):
    """`monitor -` is live: looked at every hop even while nothing is heard, so its events (the open line's end_s,
    when it was announced, included) are those of the API with `idle_hop_s = hop_s` on the same samples; a file
    is looked at with idle hops."""
    from landmark import audio

    signal, _ = radio([(100, 0.0, 9.0), (1, 3.0, 20.0)])
    path = tmp_path / "stream.wav"
    write(path, signal, RATE)
    via_stdin = run_cli("monitor", "--json", "-", db=built_index, input=path.read_bytes(), check=True)
    heard = [json.loads(line) for line in via_stdin.stdout.splitlines()]
    with Index(built_index) as index:
        chunks = list(audio.stream(str(path), index.sample_rate_hz))
        settings = MonitorSettings()
        expected = {}
        for idle_hop_s in (settings.hop_s, settings.idle_hop_s):
            expected[idle_hop_s] = [{"event": "open" if e.open else "closed", **e.to_dict()}
                                    for e in monitor(index, chunks, dataclasses.replace(settings, idle_hop_s=idle_hop_s))]
    assert expected[settings.hop_s] != expected[settings.idle_hop_s]  # the stream tells the two apart
    assert heard == expected[settings.hop_s], (heard, expected)


def test_a_recording_that_ends_in_silence_is_not_silent(built_index, tmp_path):
    """`silent` means silent throughout: the loudest stretch decides, not the last chunk read (most recordings
    end in a few seconds of silence)."""
    path = tmp_path / "ends quietly.flac"
    write(path, np.concatenate([rendered(1, 40.0, RATE)[:20 * RATE], np.zeros(3 * RATE, np.float32)]), RATE)
    result = run_cli("monitor", "--json", path, db=built_index)
    assert result.returncode == 0 and result.stderr == "1 segment\n", result.stderr
    closed = [json.loads(line) for line in result.stdout.splitlines() if json.loads(line)["event"] == "closed"]
    assert [e["title"] for e in closed] == ["song1"]


def test_a_text_line_gives_the_rate_and_offset_its_json_line_gives(built_index, tmp_path):
    """The plain lines say what --json says: `from X s in the song`, `played at rate +N %` (N the percent by which
    the rate differs from 1), the same segments."""
    from bench.queries import change_speed

    parts = [change_speed(rendered(seed, 40.0, RATE)[int(s * RATE):int((s + 26) * RATE)], speed)
             for seed, s, speed in ((1, 4.0, 1.06), (3, 10.0, 0.95))]
    path = tmp_path / "a dj mix.flac"
    write(path, np.concatenate(parts), RATE)
    as_json = run_cli("monitor", "--json", "--jobs", "1", path, db=built_index, check=True)
    as_text = run_cli("monitor", "--jobs", "1", path, db=built_index, check=True)
    events = [json.loads(line) for line in as_json.stdout.splitlines()]
    lines = as_text.stdout.splitlines()
    assert len(lines) == len(events) == 4, (lines, events)
    for line, event in zip(lines, events):
        assert event["title"] in line and ("playing" in line) == event["open"], (line, event)
        offset = re.search(r"from (\d+\.\d) s in the song", line)
        assert offset and abs(float(offset.group(1)) - event["song_offset_s"]) <= 0.051, (line, event)
        rate = re.search(r"played at rate ([+-]\d+\.\d) %", line)
        assert rate and abs(float(rate.group(1)) - 100 * (event["rate"] - 1)) <= 0.051, (line, event)


def test_one_look_of_an_engine_that_is_not_calibrated_names_nothing_at_the_streams_end(built_index):
    """A recording too short for a second look names the song of its one look only where that look is sure (a
    false-match probability within `confirm_chance`); a look that tells none (an engine not calibrated) is not."""
    with Index(built_index) as index:
        clip = at_index_rate(rendered(2, 40.0, RATE)[10 * RATE:int(15.5 * RATE)], index)
        named = {chance: [(e.open, e.song.title) for e in monitor(Unsure(index, chance), chunks_of(clip, 4000))]
                 for chance in (1e-5, None)}
    assert named[1e-5] == [(True, "song2"), (False, "song2")]
    assert named[None] == []


def _played_at(index, seed, speed, lead_s=20.0):
    from bench.queries import change_speed

    piece = change_speed(rendered(seed, 40.0, RATE), speed)
    signal = np.concatenate([rendered(101, 40.0, RATE)[:int(lead_s * RATE)], piece, rendered(100, 40.0, RATE)[:10 * RATE]])
    closed = [e for e in monitor(index, chunks_of(at_index_rate(signal, index))) if not e.open]
    return closed, lead_s, lead_s + piece.size / RATE


@pytest.mark.parametrize("seed, speed", [(1, 1.06), (3, 0.95)])
def test_a_song_played_faster_or_slower_from_its_start_to_its_end_is_placed_where_it_plays(built_index, seed, speed):
    """A whole song at +6 % / −5 % after unknown music: its segment starts where the song begins, at offset 0 (its
    start in the stream is its anchor over its rate), and ends where its own end plays at that speed (its length
    over its rate), as closely as a song at 1.0 does (within 0.1 s)."""
    with Index(built_index) as index:
        closed, start_s, end_s = _played_at(index, seed, speed)
    assert [e.song.title for e in closed] == [f"song{seed}"], closed
    assert abs(closed[0].start_s - start_s) <= 0.5 and closed[0].song_offset_s <= 0.25, closed
    assert abs(closed[0].end_s - end_s) <= 0.1, (closed, end_s)


def test_six_seconds_of_other_music_over_a_song_do_not_split_its_play(built_index):
    """A segment closes after `close_after_misses` (4) looks in a row that do not name it: 6 s of unknown music in
    place of a song (talk over it, a jingle), the song going on at its clock after, is one play."""
    signal, _ = radio([(2, 0.0, 14.0), (100, 0.0, 6.0), (2, 20.0, 40.0)])
    with Index(built_index) as index:
        closed = [e for e in monitor(index, chunks_of(at_index_rate(signal, index))) if not e.open]
    assert [(e.song.title, e.start_s, e.song_offset_s) for e in closed] == [("song2", 0.0, 0.0)], closed
    assert abs(closed[0].end_s - 40.0) <= 0.5, closed


@pytest.mark.parametrize("first_s", [9.0, 10.0, 12.0])
def test_two_snippets_of_a_song_far_apart_are_not_one_play(built_index, first_s):
    """Two 2.5 s snippets of song 2 at one anchor with 6 s of unknown music between: the looks naming the first and
    those naming the second are two misses apart, so they do not confirm a segment together, and no segment spans
    the other music."""
    snippet_s, gap_s = 2.5, 6.0
    signal, truth = radio([(100, 0.0, first_s), (2, 10.0, 10.0 + snippet_s), (101, 0.0, gap_s),
                           (2, 10.0 + snippet_s + gap_s, 10.0 + 2 * snippet_s + gap_s), (102, 0.0, 12.0)])
    second_s = truth[3][1]
    with Index(built_index) as index:
        closed = [e for e in monitor(index, chunks_of(at_index_rate(signal, index))) if not e.open]
    assert all(e.start_s >= second_s - 0.5 for e in closed), (closed, second_s)


def test_a_stop_closes_the_song_playing_without_waiting_for_looks_its_stopped_workers_had(built_index):
    """SIGTERM stops a monitor and its worker processes at once: the looks still out in them never answer (their
    futures raise BrokenProcessPool). Thrown into the monitor where it waits, the interruption still closes the
    song playing, taking no look more, and goes on as the interruption."""
    from concurrent.futures import Future
    from concurrent.futures.process import BrokenProcessPool

    stopped = []

    class Answer(Future):
        def result(self, timeout=None):
            if stopped:
                raise BrokenProcessPool("a worker was terminated")
            return super().result(timeout)

    class Workers:  # answered at once, taken `jobs` at a time, as worker processes' are, until stopped
        jobs = 3

        def __init__(self, method):
            self.method = method

        def submit(self, window, hint):
            answer = Answer()
            answer.set_result(look(self.method, window, hint))
            return answer

    signal, _ = radio([(0, 0.0, 40.0)])
    with Index(built_index) as index:
        events = monitor(index, chunks_of(at_index_rate(signal, index), 4000), looks=Workers(index))
        opened = next(events)
        assert opened.open and opened.song.title == "song0"
        stopped.append(True)
        last_words = []
        with pytest.raises(KeyboardInterrupt):
            last_words.append(events.throw(KeyboardInterrupt()))
            last_words.extend(events)
    assert [(e.open, e.song.title) for e in last_words] == [(False, "song0")], last_words


def test_a_song_cut_and_started_over_after_other_music_ends_where_it_was_cut(built_index):
    """Song 1 for 12 s, 7 s of unknown music, then song 1 from its start: the looks naming the new play extend the
    first until its clock runs out, 40 s on; the first play then ends where it was cut (read at its clock from its
    last look there, whose samples are kept for it), not where the new play begins."""
    signal, truth = radio([(1, 0.0, 12.0), (100, 0.0, 7.0), (1, 0.0, 40.0)])
    with Index(built_index) as index:
        closed = [e for e in monitor(index, chunks_of(at_index_rate(signal, index))) if not e.open]
    check([{"title": e.song.title, "start_s": e.start_s, "end_s": e.end_s, "song_offset_s": e.song_offset_s}
           for e in closed], truth)


def test_ctrl_c_stops_a_monitor_of_standard_input_with_workers_at_once_though_the_pipe_stays_open(built_index):
    """`monitor --jobs 2 -`: standard input is read in the main thread, never in a reader thread that a blocked
    read would hold (it cannot be stopped, and is waited for on the way out). Ctrl-C while the writer keeps the
    pipe open: the closing line, one line on standard error and exit 130 within a couple of seconds."""
    signal, _ = radio([(0, 0.0, 20.0)])
    import soxr

    pcm = (soxr.resample(signal, RATE, 44100) * 0.5 * 32767).astype("<i2").tobytes()
    process = subprocess.Popen([sys.executable, "-m", "lmprint", "--db", str(built_index), "monitor", "--jobs", "2",
                                "--csv", "--format", "s16le", "--rate", "44100", "--channels", "1", "-"],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               start_new_session=True)
    try:
        process.stdin.write(pcm)
        process.stdin.flush()
        deadline = time.time() + 60
        while len(children_of(process.pid)) < 2 and time.time() < deadline:
            time.sleep(0.1)
        time.sleep(3)
        os.killpg(process.pid, signal_module.SIGINT)
        stopped_at = time.monotonic()
        process.wait(timeout=30)  # the pipe stays open: its writer has not closed it
        took_s = time.monotonic() - stopped_at
        stdout, stderr = process.stdout.read().decode(), process.stderr.read().decode()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal_module.SIGKILL)
        process.wait()
        with contextlib.suppress(OSError):
            process.stdin.close()
    events = [line.split(",")[0] for line in stdout.splitlines()[1:]]
    assert events == ["open", "closed"], stdout
    assert process.returncode == 130 and stderr == "lmprint: interrupted (1 segment)\n", stderr
    assert took_s < 4.0, took_s  # a reader thread held it some 5 s, and Python's shutdown then failed


def test_a_piece_of_a_few_seconds_is_found_whatever_the_looks_in_worker_processes(built_index):
    """3 s of a song between music the index does not hold: one look after another confirms it with the look a hop
    after the first that names it, and looks in worker processes (2 or 3), sent an idle hop apart before that first
    answer came, look at the hop they skipped too (they reported nothing): a short piece is found with workers as
    without."""
    import soxr

    from lmprint.monitor import Looks

    signal = np.concatenate([rendered(100, 40.0, RATE)[:21 * RATE], rendered(2, 40.0, RATE)[10 * RATE:13 * RATE],
                             rendered(101, 40.0, RATE)[:15 * RATE]])
    with Index(built_index) as index:
        samples = soxr.resample(signal, RATE, index.sample_rate_hz).astype(np.float32)
        found = []
        for jobs in (0, 2, 3):
            looks = Looks(lambda: Index(built_index), jobs) if jobs else None
            try:
                events = monitor(index, [samples[i:i + 4000] for i in range(0, samples.size, 4000)], looks=looks)
                found.append([(e.song.title, round(e.start_s, 1), round(e.end_s, 1)) for e in events if not e.open])
            finally:
                if looks is not None:
                    looks.close()
    assert found[0] == found[1] == found[2], found
    [(title, start_s, end_s)] = found[0]
    assert title == "song2" and abs(start_s - 21.0) <= 0.5 and abs(end_s - 24.0) <= 0.5, found
