"""`lmprint` as a user runs it: real processes, real files, the documented output."""

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys

import numpy as np
import pytest

from bench.audio_io import write
from tests.conftest import FORMATS, laid_out, listed_songs, rendered, run_cli


def clip_file(tmp_path, seed, start_s, name="clip.mp3"):
    signal = rendered(seed, 40.0, 22050)
    path = tmp_path / name
    write(path, signal[int(start_s * 22050):int((start_s + 5) * 22050)], 22050)
    return path


def test_add_match_list_stats_remove_round_trip(library_dir, tmp_path):
    db = tmp_path / "index.db"
    added = run_cli("add", "--jobs", "2", library_dir, db=db)
    assert added.returncode == 0, added.stderr
    assert f"added {len(FORMATS)}" in added.stderr

    listed = listed_songs(db)
    assert sorted(song["path"] for song in listed) == sorted(str(p) for p in library_dir.iterdir())

    clip = clip_file(tmp_path, 3, 12.5)
    result = run_cli("match", "--json", clip, db=db, check=True)
    answer = json.loads(result.stdout)
    assert answer["query"] == str(clip)
    assert answer["match"]["path"] == str(library_dir / "song3.mp3")
    assert abs(answer["match"]["offset_s"] - 12.5) < 0.2
    assert set(answer["match"]) == {"song_id", "path", "title", "score", "offset_s", "lead_in_s", "confidence",
                                   "decided_by", "copies", "false_match_probability", "speed", "tempo", "pitch"}
    assert answer["match"]["speed"] == 1.0 and answer["match"]["tempo"] is None and answer["match"]["pitch"] is None
    assert answer["match"]["lead_in_s"] == 0.0  # the clip starts within the song
    assert answer["match"]["decided_by"] == "vote"  # a clean clip: its song leads the vote by far
    assert answer["runner_up"]["song_id"] != answer["match"]["song_id"]  # the best of the other songs
    assert answer["runner_up"]["score"] < answer["match"]["score"]

    text = run_cli("match", clip, db=db, check=True).stdout
    assert "song3" in text and "12." in text

    stats = json.loads(run_cli("stats", "--json", db=db, check=True).stdout)
    assert stats["songs"] == len(FORMATS) and stats["file_bytes"] > 0

    removed = run_cli("remove", str(library_dir / "song3.mp3"), db=db, check=True)
    assert "song3" in removed.stdout
    after = json.loads(run_cli("match", "--json", clip, db=db, check=True).stdout)
    assert after["match"] is None
    assert run_cli("remove", "no-such-song", db=db).returncode == 1


def test_a_clip_that_begins_before_the_song_says_where_in_it_the_song_begins(built_index, tmp_path):
    path = tmp_path / "late.flac"
    write(path, np.concatenate([np.zeros(2 * 22050, np.float32), rendered(2, 40.0, 22050)[:4 * 22050]]), 22050)
    result = run_cli("match", path, db=built_index, check=True)
    assert re.search(r": song2 \(.*\), from its start, 2\.0 s into the clip, score \d+", result.stdout), result.stdout
    on_time = run_cli("match", clip_file(tmp_path, 2, 10.0), db=built_index, check=True)
    assert ", at 10.0 s, score" in on_time.stdout, on_time.stdout


def test_unknown_clip_says_no_match_and_exits_zero(built_index, tmp_path):
    path = tmp_path / "unknown.flac"
    write(path, rendered(555, 6.0, 22050), 22050)
    result = run_cli("match", path, db=built_index)
    assert result.returncode == 0 and result.stdout.strip() == f"{path}: no match"


def test_bad_inputs_get_one_line_each_and_the_batch_goes_on(library_dir, built_index, tmp_path):
    bad = {
        "empty.wav": b"",
        "random.mp3": np.random.default_rng(1).bytes(20_000),
        "text.wav": b"hello, I am not a wave file\n" * 20,
    }
    for name, content in bad.items():
        (tmp_path / name).write_bytes(content)
    write(tmp_path / "short.flac", rendered(1, 0.2, 22050), 22050)
    write(tmp_path / "silence.flac", np.zeros(22050 * 30, np.float32), 22050)
    good = clip_file(tmp_path, 1, 3.0, "good.mp3")
    names = list(bad) + ["short.flac", "silence.flac", "missing.ogg"]
    result = run_cli("match", "--json", *[tmp_path / n for n in names], good, db=built_index)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("lmprint: ")]
    assert len(errors) == len(names) + 1  # one line per bad file, then the summary
    assert errors[-1] == f"lmprint: {len(names)} of {len(names) + 1} queries failed"
    assert "too short" in result.stderr and "silent" in result.stderr and "no such file" in result.stderr
    answers = [json.loads(line) for line in result.stdout.splitlines()]  # one line per query, in order
    assert [a["query"] for a in answers] == [str(tmp_path / n) for n in names] + [str(good)]
    assert all(a["match"] is None and a["runner_up"] is None and a["error"] for a in answers[:-1]) and "error" not in answers[-1]
    assert answers[-1]["match"]["title"] == "song1" and "too short" in answers[names.index("short.flac")]["error"]


def test_a_query_of_an_index_that_holds_no_songs_says_so(library_dir, tmp_path):
    """Every song removed (or none added yet): each query is still "no match", exit 0, and one line on standard
    error says why (`monitor` and `list` too); where the index holds songs it says nothing."""
    db = tmp_path / "index.db"
    run_cli("add", library_dir / "song1.flac", db=db, check=True)
    clip = clip_file(tmp_path, 1, 10.0)
    assert "holds no songs" not in run_cli("match", clip, db=db, check=True).stderr
    assert "holds no songs" not in run_cli("list", db=db, check=True).stderr
    run_cli("remove", "song1", db=db, check=True)
    result = run_cli("match", "--json", clip, db=db, check=True)
    assert json.loads(result.stdout)["match"] is None
    assert result.stderr == f"lmprint: {db} holds no songs yet: add some first (lmprint add FOLDER)\n"
    monitored = run_cli("monitor", clip, db=db)  # it still listens, to the end, and names nothing
    assert monitored.returncode == 0 and monitored.stdout == "" and monitored.stderr == (
        f"lmprint: {db} holds no songs yet: add some first (lmprint add FOLDER)\n0 segments\n")
    listed = run_cli("list", db=db, check=True)  # exit 0: an empty list is an answer
    assert listed.stdout == "" and "holds no songs yet" in listed.stderr


def test_json_lines_are_utf_8_whatever_the_terminals_encoding(library_dir, tmp_path):
    """A title's letters as they are (they were escaped, `J\\u00fcngle`, so `list --json | grep Jüngle` found
    nothing), and in UTF-8, as JSON is, under a terminal of another encoding too."""
    from tests.conftest import run_cli_process

    song = tmp_path / "Jüngle – 日本.flac"
    shutil.copy(library_dir / "song1.flac", song)
    db = tmp_path / "index.db"
    run_cli("add", song, db=db, check=True)
    for encoding in ("utf-8", "latin-1"):
        listed = subprocess.run([sys.executable, "-m", "lmprint", "--db", str(db), "list", "--json"],
                                capture_output=True, timeout=120, env={**os.environ, "PYTHONIOENCODING": encoding})
        assert listed.returncode == 0 and "Jüngle – 日本".encode() in listed.stdout, listed
        assert json.loads(listed.stdout.decode())["title"] == "Jüngle – 日本"
    found = run_cli_process("match", "--json", song, db=db, check=True).stdout
    assert '"title": "Jüngle – 日本"' in found and json.loads(found)["match"]["title"] == "Jüngle – 日本"
    from lmprint.cli import _echo_json, _json_line  # control characters escaped, C1 too (U+009B: a terminal command)

    assert _json_line({"title": "a\x1b[31m\x9b31m\x7fé"}) == '{"title": "a\\u001b[31m\\u009b31m\\u007fé"}'
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()) as text:  # a program's own stream, of text alone
        _echo_json({"title": "Jüngle"})
    assert text.getvalue() == '{"title": "Jüngle"}\n'


def test_missing_and_foreign_databases_get_one_line(tmp_path, library_dir):
    missing = run_cli("list", db=tmp_path / "nope.db")
    assert missing.returncode == 1 and missing.stderr == f"lmprint: no index at {tmp_path / 'nope.db'} (`lmprint " \
        "add` creates one)\n"
    foreign = tmp_path / "foreign.db"
    foreign.write_bytes(b"definitely not sqlite" * 100)
    for command in (["list"], ["stats"], ["match", library_dir / "song0.wav"], ["add", library_dir]):
        result = run_cli(*command, db=foreign)
        assert result.returncode == 1 and "not an lmprint index" in result.stderr and "Traceback" not in result.stderr


def test_add_reports_bad_files_in_a_folder_and_indexes_the_rest(library_dir, tmp_path):
    folder = tmp_path / "music"
    shutil.copytree(library_dir, folder)
    (folder / "broken.mp3").write_bytes(b"\x00" * 5000)
    (folder / "notes.txt").write_text("not picked up: no audio extension")
    db = tmp_path / "index.db"
    result = run_cli("add", folder, db=db)
    assert result.returncode == 1
    assert f"added {len(FORMATS)}, skipped 0 (already indexed), failed 1" in result.stderr
    assert "broken.mp3" in result.stderr and "Traceback" not in result.stderr


def test_on_a_terminal_add_shows_a_progress_bar_and_still_names_bad_files(library_dir, tmp_path):
    """Run `lmprint add` under a pseudo-terminal, as a user at a shell would."""
    import fcntl
    import os
    import pty
    import struct
    import subprocess
    import sys
    import termios

    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a 100-column terminal
    process = subprocess.Popen([sys.executable, "-m", "lmprint", "--db", str(tmp_path / "i.db"), "add",
                                str(library_dir / "song0.wav"), str(tmp_path / "missing.mp3")],
                               stdin=terminal, stdout=terminal, stderr=terminal, close_fds=True)
    os.close(terminal)
    output = b""
    while True:
        try:
            chunk = os.read(controller, 4096)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
    process.wait(timeout=120)
    os.close(controller)
    text = output.decode(errors="replace")
    assert process.returncode == 1, text
    assert "Traceback" not in text
    assert "missing.mp3: no such file" in text
    assert "add: 100%" in text and "2/2" in text  # the files are counted first: the bar has a total
    assert "added 1, skipped 0 (already indexed), failed 1" in text


def test_matching_settings_from_options_and_a_file_change_the_answer(built_index, tmp_path):
    """A user can change a threshold without the bench: `--set NAME=VALUE`, or a TOML settings file."""
    clip = clip_file(tmp_path, 2, 9.0)
    found = json.loads(run_cli("match", "--json", clip, db=built_index, check=True).stdout)["match"]
    assert found["title"] == "song2"
    strict = run_cli("match", "--json", "--set", f"min_score={found['score'] * 2}", "--set", "verify_candidates=0",
                     clip, db=built_index, check=True)
    assert json.loads(strict.stdout)["match"] is None  # the same clip falls short of a score it cannot reach
    settings = tmp_path / "strict.toml"
    settings.write_text(f"min_score = {found['score'] * 2}\nverify_candidates = 0\n\n[query]\nfanout = 20\n")
    assert json.loads(run_cli("match", "--json", "--settings", settings, clip, db=built_index,
                              check=True).stdout)["match"] is None
    loose = run_cli("match", "--json", "--settings", settings, "--set", "min_score=20", clip, db=built_index,
                    check=True)  # an option wins over the file
    assert json.loads(loose.stdout)["match"]["title"] == "song2"


def test_an_unknown_or_mistyped_setting_gets_one_line(built_index, tmp_path):
    clip = clip_file(tmp_path, 2, 9.0)
    for option, complaint in (("fanout=3", "unknown setting 'fanout'"),
                              ("min_score=high", 'min_score must be a number, not "high"'),
                              ("min_score=nan", "min_score must be a number, not nan"),
                              ("verify_candidates=true", "verify_candidates must be a whole number, not true"),
                              ("max_query_s=inf", "max_query_s must be a finite number, not inf"),
                              ("min_score", "expected NAME=VALUE"),
                              ("query=5", "query is a table of peaks_per_s, fanout, neighbourhood_bins and "
                                          "neighbourhood_frames, not 5 (one of them: query.fanout)")):
        result = run_cli("match", "--set", option, clip, db=built_index)
        assert result.returncode == 1 and result.stderr.count("\n") == 1 and complaint in result.stderr, result.stderr
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "flat.toml").write_text("query = 5\n")
    (tmp_path / "wrong.toml").write_text('max_postings_read = "lots"\n')
    (tmp_path / "strict.txt").write_text("min_score = 1e9\nverify_candidates = 0\n")  # TOML, unless named .json
    assert json.loads(run_cli("match", "--json", "--settings", tmp_path / "strict.txt", clip, db=built_index,
                              check=True).stdout)["match"] is None
    for arguments, complaint in ((["--settings", tmp_path / "list.json"], "expected a table of settings"),
                                 (["--settings", tmp_path / "flat.toml", "--set", "query.fanout=3"], "not a table"),
                                 (["--settings", tmp_path / "flat.toml"], "query is a table of"),
                                 (["--settings", tmp_path / "wrong.toml"],  # the file named with its value
                                  f"{tmp_path / 'wrong.toml'}: max_postings_read must be a whole number, not \"lots\""),
                                 (["--settings", tmp_path / "wrong.toml", "--set", "max_postings_read=5",
                                   "--set", "min_score=x"], 'lmprint: min_score must be a number, not "x"'),
                                 (["--settings", tmp_path / "none.toml"],
                                  f"cannot read settings file {tmp_path / 'none.toml'}: no such file or directory")):
        result = run_cli("match", *arguments, clip, db=built_index)
        assert result.returncode == 1 and result.stderr.count("\n") == 1 and complaint in result.stderr, result.stderr


def write_wav_of_unknown_codec(path) -> None:
    """A RIFF/WAVE file whose format tag no decoder knows: FFmpeg opens it, but has nothing to decode it with."""
    import struct

    data = np.random.default_rng(0).integers(-1000, 1000, 8000 * 3).astype("<i2").tobytes()
    fmt = struct.pack("<HHIIHH", 0x1234, 1, 8000, 16000, 2, 16)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)


def test_a_wav_of_a_codec_ffmpeg_cannot_decode_is_one_line_and_the_batch_goes_on(library_dir, tmp_path):
    folder = tmp_path / "music"
    folder.mkdir()
    write_wav_of_unknown_codec(folder / "a odd.wav")
    shutil.copy(library_dir / "song1.flac", folder / "b good.flac")
    db = tmp_path / "index.db"
    added = run_cli("add", folder, db=db)
    assert added.returncode == 1 and "Traceback" not in added.stderr
    assert f"lmprint: {folder / 'a odd.wav'}: no decoder for its audio codec" in added.stderr
    assert "added 1, skipped 0 (already indexed), failed 1" in added.stderr  # the summary line
    matched = run_cli("match", "--json", folder / "a odd.wav", clip_file(tmp_path, 1, 4.0), db=db)
    assert matched.returncode == 1 and matched.stderr.count("no decoder") == 1
    odd, good = map(json.loads, matched.stdout.splitlines())
    assert "no decoder" in odd["error"] and good["match"]["path"] == str(folder / "b good.flac")


def test_match_of_an_endless_stream_on_standard_input_answers_from_its_start(built_index, tmp_path):
    """A recorder that never stops, or a whole talk piped from ffmpeg: `match -` keeps the stream's first 64 MiB
    and answers from its start (it read all of standard input into memory first, so an endless one never ended).
    The stream is a WAV of song 3 played over and over, its sizes the placeholders a pipe's writer leaves."""
    import struct
    import subprocess
    import sys

    from tests.conftest import SYNTH_RATE

    pcm = tmp_path / "song3.pcm"
    pcm.write_bytes((np.clip(rendered(3, 40.0, SYNTH_RATE), -1, 1) * 32767).astype("<i2").tobytes())
    header = (b"RIFF" + struct.pack("<I", 0xFFFFFFFF) + b"WAVEfmt " + struct.pack("<IHHIIHH", 16, 1, 1, SYNTH_RATE,
              2 * SYNTH_RATE, 2, 16) + b"data" + struct.pack("<I", 0xFFFFFFFF))
    writer = subprocess.Popen([sys.executable, "-c", (
        "import sys\nheader, song = bytes.fromhex(sys.argv[1]), open(sys.argv[2], 'rb').read()\n"
        "try:\n    sys.stdout.buffer.write(header)\n    while True:\n        sys.stdout.buffer.write(song)\n"
        "except (BrokenPipeError, OSError):\n    pass\n"), header.hex(), str(pcm)], stdout=subprocess.PIPE)
    try:
        matched = subprocess.run([sys.executable, "-m", "lmprint", "--db", str(built_index), "match", "--json", "-"],
                                 stdin=writer.stdout, capture_output=True, text=True, timeout=120)
    finally:
        writer.kill()
        writer.wait()
    assert matched.returncode == 0, matched.stderr
    answer = json.loads(matched.stdout)
    assert answer["match"]["title"] == "song3" and answer["match"]["offset_s"] < 0.2, answer


def test_a_stream_on_standard_input_is_kept_to_its_limit_a_file_whole(built_index, tmp_path, monkeypatch):
    """A pipe is kept to `STDIN_KEPT_BYTES`; an MP4 cut there (its index is at its end) fails with a line that says
    so; a regular file given as standard input (`< FILE`) is read where it lies, whole and not copied; a closed
    standard input is one line."""
    import io

    import lmprint.cli as cli

    kept = io.BytesIO()
    assert not cli.copy_start(io.BytesIO(bytes(10)), kept, 4) and kept.getvalue() == bytes(4)
    assert cli.copy_start(io.BytesIO(bytes(4)), io.BytesIO(), 4) and cli.copy_start(io.BytesIO(bytes(9)), kept, None)
    clip = clip_file(tmp_path, 4, 7.0, "clip.m4a")
    with open(clip, "rb") as whole:
        assert cli._opened_file(whole) == f"/dev/fd/{whole.fileno()}" and cli._opened_file(io.BytesIO()) is None
    monkeypatch.setattr(cli, "STDIN_KEPT_BYTES", clip.stat().st_size * 9 // 10)
    cut = run_cli("match", "-", db=built_index, input=clip.read_bytes())
    assert cut.returncode == 1 and "standard input was read to its first" in cut.stderr, cut.stderr
    import subprocess
    import sys

    with open(clip, "rb") as whole:  # a regular file: read where it lies (`/dev/fd/0`), whole past the same limit
        given = subprocess.run([sys.executable, "-c", "import lmprint.cli as cli; cli.STDIN_KEPT_BYTES = "
                                f"{cli.STDIN_KEPT_BYTES}; cli.main()", "--db", str(built_index), "match", "-"],
                               stdin=whole, capture_output=True, text=True, timeout=120)
    assert given.returncode == 0 and "song4" in given.stdout, given.stderr
    closed = subprocess.run([sys.executable, "-m", "lmprint", "--db", str(built_index), "match", "-"],
                            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120,
                            preexec_fn=lambda: os.close(0))
    assert closed.returncode == 1 and closed.stderr == "lmprint: -: standard input is closed\n", closed.stderr


def test_the_conventions_of_command_line_tools(library_dir, built_index, tmp_path):
    """--db after the command, - for standard input, a folder of queries, and --jobs as many as the cores."""
    listed = run_cli("list", "--json", "--db", built_index, check=True)  # no --db before the command
    assert len(listed.stdout.splitlines()) == len(FORMATS)
    clip = clip_file(tmp_path, 4, 7.0, "from stdin.m4a")
    piped = run_cli("match", "--json", "-", "--db", built_index, input=clip.read_bytes(), check=True)
    answer = json.loads(piped.stdout)
    assert answer["query"] == "-" and answer["match"]["title"] == "song4" and abs(answer["match"]["offset_s"] - 7) < 0.2
    queries = tmp_path / "queries"
    queries.mkdir()
    for seed, start in ((0, 2.0), (5, 11.0)):
        shutil.copy(clip_file(tmp_path, seed, start, f"q{seed}.mp3"), queries / f"q{seed}.mp3")
    (queries / "notes.txt").write_text("not audio, and not an audio file's name: skipped")
    folder = run_cli("match", "--json", queries, db=built_index, check=True)
    assert [json.loads(line)["match"]["title"] for line in folder.stdout.splitlines()] == ["song0", "song5"]
    import landmark

    asked_jobs = []
    real_add = landmark.Index.add

    def recording_add(self, paths, jobs=1, **kwargs):  # the jobs `add` runs with, by default and when given
        asked_jobs.append(jobs)
        return real_add(self, paths, jobs=jobs, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(landmark.Index, "add", recording_add)
        for given in ([], ["--jobs", "1"]):
            run_cli("add", *given, library_dir / "song0.wav", db=tmp_path / f"jobs{len(given)}.db", check=True)
    assert asked_jobs == [os.cpu_count(), 1]
    # a MERT option without --method mert: refused in one line, not a landmark index made without a word
    for wrong in (["--model", tmp_path / "nowhere"], ["--device", "cpu"]):
        made = tmp_path / "forgot.db"
        forgot = run_cli("add", *wrong, library_dir, db=made)
        assert forgot.returncode == 1 and forgot.stderr == (f"lmprint: {wrong[0]} applies to --method mert (this is "
                                                            "--method landmark)\n") and not made.exists()


def test_adding_a_folder_without_audio_is_an_error(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no music here")
    result = run_cli("add", tmp_path / "empty", db=tmp_path / "i.db")
    assert result.returncode == 1 and result.stderr.strip() == f"lmprint: no audio files in {tmp_path / 'empty'}"
    assert not (tmp_path / "i.db").exists()


def test_remove_refuses_a_title_several_songs_share_and_dry_run_removes_nothing(library_dir, built_index, tmp_path):
    db = tmp_path / "copy.db"
    shutil.copy(built_index, db)
    twin = tmp_path / "twin"
    twin.mkdir()
    write(twin / "song2.flac", rendered(2, 20.0, 22050) * 0.5, 22050)  # other content, the same title
    run_cli("add", twin, db=db, check=True)
    refused = run_cli("remove", "song2", db=db)
    ids = sorted(song["id"] for song in listed_songs(db) if song["title"] == "song2")
    assert refused.returncode == 1 and refused.stderr == (
        f"lmprint: song2: names 2 songs (ids {ids[0]}, {ids[1]}); give an id or path, or --all\n")
    assert len(run_cli("list", db=db, check=True).stdout.splitlines()) == len(FORMATS) + 1  # nothing removed
    dry = run_cli("remove", "--all", "--dry-run", "song2", db=db, check=True)
    assert dry.stdout.count("would remove") == 2
    assert len(run_cli("list", db=db, check=True).stdout.splitlines()) == len(FORMATS) + 1
    done = run_cli("remove", "--all", "song2", db=db, check=True)
    assert done.stdout.count("removed") == 2
    assert len(run_cli("list", db=db, check=True).stdout.splitlines()) == len(FORMATS) - 1
    song = listed_songs(db)[0]
    for too_short in (song["content_sha1"][:7], song["content_sha1"][:7] + "z"):
        assert "no such song" in run_cli("remove", too_short, db=db).stderr  # 8 hexadecimal digits at least
    assert run_cli("remove", song["content_sha1"][:8].upper(), db=db, check=True).stdout.startswith(
        f"removed {song['id']}\t")  # a content hash's first digits, as git takes a commit's


def test_remove_of_a_folder_removes_the_songs_under_it_and_asks_for_all_when_there_are_several(library_dir,
                                                                                                 tmp_path):
    music = laid_out(tmp_path / "music", library_dir, {
        "old/one.flac": "song1.flac", "old/deeper/two.ogg": "song2.ogg",
        "older/three.mp3": "song3.mp3",  # "old" is a prefix of its folder's name
        "kept/four.m4a": "song4.m4a", "old/four (copy).m4a": "song4.m4a",
        "old/five.opus": "song5.opus", "other/five.opus": "song5.opus"})  # walked after: the copy
    db = tmp_path / "index.db"
    assert "copies 2" in run_cli("add", music, db=db, check=True).stderr

    refused = run_cli("remove", music / "old", db=db)
    assert refused.returncode == 1 and refused.stderr == f"lmprint: {music / 'old'}: a folder of 3 songs; give --all " \
        "to remove them all\n"  # the song a copy outside would name counts too: the index changes for it
    assert len(run_cli("list", db=db, check=True).stdout.splitlines()) == 5  # nothing removed, the copy kept
    removed = run_cli("remove", "--all", music / "old", db=db, check=True).stdout.splitlines()
    # a song whose file is under the folder but whose copy outside it holds its bytes is named by that copy now
    assert [line.split("\t")[-1] for line in removed[:2]] == [
        f"{music / 'old' / 'five.opus'} -> {music / 'other' / 'five.opus'}", str(music / "old" / "four (copy).m4a")]
    assert removed[0].startswith("moved ") and removed[1].startswith("forgot copy\t")
    assert sorted(line.split("\t")[-1] for line in removed[2:]) == sorted(
        [str(music / "old" / "one.flac"), str(music / "old" / "deeper" / "two.ogg")])
    listed = {song["path"] for song in listed_songs(db)}
    assert listed == {str(music / "older" / "three.mp3"), str(music / "kept" / "four.m4a"),
                      str(music / "other" / "five.opus")}
    empty = run_cli("remove", "--all", "", db=db)  # not the current folder: a script's empty variable
    assert empty.returncode == 1 and empty.stderr == 'lmprint: "": no such song in the index\n'
    nothing = run_cli("add", "", music / "older", db=db)
    assert nothing.returncode == 1 and 'lmprint: "": no such file\n' in nothing.stderr and "added 0," in nothing.stderr

    linked = tmp_path / "linked"  # a library added through a link, removed by the folder's real name
    linked.symlink_to(music / "kept")
    shutil.copy(library_dir / "song0.wav", music / "kept" / "zero.wav")
    run_cli("add", linked, db=db, check=True)
    assert run_cli("remove", "--dry-run", "--all", music / "kept", db=db, check=True).stdout.count("would remove") == 2
    assert run_cli("remove", "--dry-run", music / "kept" / "zero.wav", db=db, check=True).stdout.endswith(
        f"\t{linked / 'zero.wav'}\n")  # the file's real path names it too

    shutil.rmtree(music / "older")  # a folder deleted since: its song is still named by it, as prune would find
    assert run_cli("remove", music / "older", db=db, check=True).stdout.endswith(f"\t{music / 'older' / 'three.mp3'}\n")
    gone = run_cli("remove", music / "old", db=db)  # nothing indexed under it any more
    assert gone.returncode == 1 and "no such song" in gone.stderr


def test_a_song_named_and_under_a_folder_named_goes_though_a_copy_outside_would_name_it(library_dir, tmp_path):
    """`remove ID FOLDER`: the folder alone would leave the song to its copy outside it; named as well, it goes."""
    laid_out(tmp_path, library_dir, {"f/a.wav": "song0.wav", "y/a.wav": "song0.wav"})
    db = tmp_path / "index.db"
    run_cli("add", tmp_path / "f" / "a.wav", tmp_path / "y" / "a.wav", db=db, check=True)
    song_id = run_cli("list", db=db, check=True).stdout.split("\t")[0]
    result = run_cli("remove", song_id, tmp_path / "f", db=db)
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout == f"removed {song_id}\t{tmp_path / 'f' / 'a.wav'}\nforgot copy\t{tmp_path / 'y' / 'a.wav'}\n"
    assert run_cli("list", db=db, check=True).stdout == ""


def test_a_title_or_folder_typed_in_the_other_unicode_form_still_names_the_song(library_dir, tmp_path):
    """macOS spells "é" in file names as "e" and a combining accent (NFD); a user types one character (NFC)."""
    decomposed = laid_out(tmp_path / "Cafe\u0301", library_dir, {
        "Re\u0301sume\u0301.flac": "song1.flac", "other.ogg": "song2.ogg", "zcopy.flac": "song1.flac"})
    db = tmp_path / "index.db"
    assert "copies 1" in run_cli("add", decomposed, db=db, check=True).stderr
    by_title = run_cli("remove", "--dry-run", "R\u00e9sum\u00e9", db=db, check=True).stdout.splitlines()
    assert by_title[0].startswith("would remove ")  # and the copy that goes with it, said so
    assert by_title[1:] == [f"would forget copy\t{decomposed / 'zcopy.flac'}"], by_title
    for typed_title in ("r\u00e9sum\u00e9", "RE\u0301SUME\u0301"):  # in another case, and either form
        assert run_cli("remove", "--dry-run", typed_title, db=db, check=True).stdout.startswith("would remove ")
    typed = tmp_path / "Caf\u00e9"
    assert run_cli("remove", "--dry-run", typed / "R\u00e9sum\u00e9.flac", db=db, check=True).stdout.count(
        "would remove") == 1
    assert run_cli("remove", "--all", "--dry-run", typed, db=db, check=True).stdout.count("would remove") == 2
    assert run_cli("remove", "--dry-run", typed / "zcopy.flac", db=db, check=True).stdout.startswith(
        "would forget copy\t")
    (tmp_path / "to-copy.flac").symlink_to(decomposed / "zcopy.flac")  # a link to a copy names that copy
    assert run_cli("remove", "--dry-run", tmp_path / "to-copy.flac", db=db, check=True).stdout == \
        f"would forget copy\t{decomposed / 'zcopy.flac'}\n"
    clip = clip_file(tmp_path, 1, 8.0)
    found = json.loads(run_cli("match", "--json", clip, db=db, check=True).stdout)["match"]
    assert found["copies"] == [str(decomposed / "zcopy.flac")]
    (decomposed / "zcopy.flac").unlink()  # a copy deleted holds nothing the clip plays
    found = json.loads(run_cli("match", "--json", clip, db=db, check=True).stdout)["match"]
    assert found["copies"] == []


def test_a_moved_file_is_followed_a_retagged_one_replaces_its_entry_and_prune_drops_the_gone(library_dir, tmp_path):
    """A library's ordinary mess: files move, get new tags, get deleted."""
    from bench.audio_io import write as write_tagged

    music = laid_out(tmp_path / "music", library_dir, {name: name for name in ("song1.flac", "song3.mp3", "song5.opus")})
    db = tmp_path / "index.db"
    run_cli("add", music, db=db, check=True)

    (music / "moved").mkdir()
    (music / "song1.flac").rename(music / "moved" / "first song.flac")  # moved and renamed; it has no title tag
    moved = run_cli("add", music, db=db, check=True)
    assert f"moved {music / 'song1.flac'} -> {music / 'moved' / 'first song.flac'}" in moved.stderr
    assert "added 0, skipped 2 (already indexed), failed 0, moved 1" in moved.stderr
    clip = clip_file(tmp_path, 1, 6.0)
    found = json.loads(run_cli("match", "--json", clip, db=db, check=True).stdout)["match"]
    assert found["path"] == str(music / "moved" / "first song.flac") and found["title"] == "first song"

    write_tagged(music / "song3.mp3", rendered(3, 40.0, 22050), 22050, title="Song Three")  # retagged, re-encoded
    retagged = run_cli("add", music / "song3.mp3", db=db, check=True)
    assert "added 1, skipped 0 (already indexed), failed 0, replaced 1" in retagged.stderr
    assert retagged.stderr.startswith(  # which file, in a line of its own (a download cut short says it so too)
        f"replaced {music / 'song3.mp3'}: its content changed since it was indexed\n"), retagged.stderr
    listed = listed_songs(db)
    assert [song["title"] for song in listed if song["path"] == str(music / "song3.mp3")] == ["Song Three"]
    assert len(listed) == 3

    (music / "song5.opus").unlink()
    dry = run_cli("prune", "--dry-run", db=db, check=True)
    assert dry.stdout.strip().endswith(str(music / "song5.opus")) and "would remove" in dry.stdout
    assert dry.stderr == "1 song whose file is gone (dry run: none removed)\n"
    pruned = run_cli("prune", db=db, check=True)
    assert pruned.stdout.startswith("removed") and str(music / "song5.opus") in pruned.stdout
    (music / "song3.mp3").rename(music / "three.mp3")  # a title from its tag stays
    write_tagged(music / "Yesterday.flac", rendered(4, 20.0, 22050), 22050, title="Yesterday")  # as its name
    run_cli("add", music / "Yesterday.flac", db=db, check=True)
    (music / "Yesterday.flac").rename(music / "01 Yesterday.flac")
    assert "moved 2" in run_cli("add", music, db=db, check=True).stderr
    listed = listed_songs(db)
    assert sorted((song["path"], song["title"]) for song in listed) == [
        (str(music / "01 Yesterday.flac"), "Yesterday"), (str(music / "moved" / "first song.flac"), "first song"),
        (str(music / "three.mp3"), "Song Three")]

    music.rename(tmp_path / "unmounted")  # every file gone at once: a drive not mounted looks like that
    refused = run_cli("prune", db=db)
    assert refused.returncode != 0 and refused.stderr.count("\n") == 1 and "--force" in refused.stderr
    dry = run_cli("prune", "--dry-run", db=db)  # says that the real one would refuse, and exits as it would
    assert "3 songs whose files are gone" in dry.stderr and "would refuse without --force" in dry.stderr
    assert dry.returncode == 1 and dry.stdout.count("would remove") == 3
    assert len(run_cli("list", db=db, check=True).stdout.splitlines()) == 3
    assert "removed" in run_cli("prune", "--force", db=db, check=True).stdout
    assert run_cli("list", db=db, check=True).stdout == ""


def test_prune_keeps_the_songs_of_a_library_folder_that_is_missing_or_empty(library_dir, tmp_path):
    """A library on two drives, one not mounted: its folder given to `add` is gone (or an empty mount point), so
    `prune` keeps its songs, says so and exits 1 (a dry run too), and removes the songs deleted elsewhere; `--force` removes
    them too."""
    db = tmp_path / "index.db"
    for drive, names in (("internal", ("song0.wav", "song1.flac")), ("usb", ("song2.ogg", "song3.mp3"))):
        run_cli("add", laid_out(tmp_path / drive / "Music", library_dir, {name: name for name in names}), db=db,
                check=True)
    (tmp_path / "internal" / "Music" / "song0.wav").unlink()  # deleted
    shutil.rmtree(tmp_path / "usb" / "Music")  # not mounted: its folders gone...
    for mount_point in ("gone", "empty"):
        pruned = run_cli("prune", "--dry-run", db=db)
        assert pruned.returncode == 1, mount_point  # as the run exits
        assert pruned.stderr.splitlines()[0] == (f"lmprint: {tmp_path / 'usb' / 'Music'} is missing or empty (is the "
                                                 "drive mounted?): its 2 songs would be kept; `lmprint prune --force` "
                                                 "removes them"), (mount_point, pruned.stderr)
        assert pruned.stdout == f"would remove 1\t{tmp_path / 'internal' / 'Music' / 'song0.wav'}\n", mount_point
        (tmp_path / "usb" / "Music").mkdir(exist_ok=True)  # ...or its mount point left empty
    pruned = run_cli("prune", db=db)
    assert pruned.returncode == 1 and "its 2 songs kept" in pruned.stderr and pruned.stdout.startswith("removed 1\t")
    assert pruned.stderr.splitlines()[-1] == "1 song whose file is gone, 2 more kept (their folder is missing)"
    assert len(run_cli("list", db=db, check=True).stdout.splitlines()) == 3
    assert run_cli("prune", "--force", db=db, check=True).stdout.count("removed") == 2
    assert len(run_cli("list", db=db, check=True).stdout.splitlines()) == 1


@pytest.mark.parametrize("since", ["overwritten", "deleted"])
def test_a_folder_removed_whose_songs_copy_outside_holds_other_music_now_removes_the_song(library_dir, tmp_path,
                                                                                          since):
    """A song is named by its copy outside a removed folder only while the copy holds the song's bytes: one
    overwritten with other music since, or deleted, is forgotten with the song (which then names no file that is
    not there)."""
    music = laid_out(tmp_path / "music", library_dir, {"old/five.opus": "song5.opus", "other/five.opus": "song5.opus"})
    db = tmp_path / "index.db"
    assert "copies 1" in run_cli("add", music, db=db, check=True).stderr
    [song] = listed_songs(db)
    if since == "overwritten":
        shutil.copy(library_dir / "song3.mp3", music / "other" / "five.opus")  # the copy holds other music now
    else:
        (music / "other" / "five.opus").unlink()
    removed = run_cli("remove", music / "old", db=db, check=True)
    assert removed.stdout == (f"removed {song['id']}\t{music / 'old' / 'five.opus'}\n"
                              f"forgot copy\t{music / 'other' / 'five.opus'}\n"), removed.stdout
    assert run_cli("list", db=db, check=True).stdout == ""


def test_prune_keeps_a_file_added_by_name_and_a_copy_whose_drive_is_not_mounted(library_dir, tmp_path):
    """A file given to `add` by its name records its folder as a folder given does: that drive unmounted, its song
    is kept. A song's copy on an unmounted drive is kept as its copy, not forgotten."""
    db = tmp_path / "index.db"
    laid_out(tmp_path, library_dir, {"internal/Music/one.flac": "song1.flac", "usb/Music/one.flac": "song1.flac",
                                     "usb/Music/two.ogg": "song2.ogg"})
    run_cli("add", tmp_path / "internal" / "Music", db=db, check=True)
    run_cli("add", tmp_path / "usb" / "Music" / "one.flac", tmp_path / "usb" / "Music" / "two.ogg", db=db, check=True)
    shutil.rmtree(tmp_path / "usb" / "Music")
    pruned = run_cli("prune", db=db)
    assert pruned.returncode == 1 and pruned.stdout == "", pruned.stdout
    assert pruned.stderr.splitlines()[0].startswith(f"lmprint: {tmp_path / 'usb' / 'Music'} is missing or empty")
    songs = {song["title"]: song for song in listed_songs(db)}
    assert sorted(songs) == ["one", "two"]
    assert songs["one"]["copies"] == [str(tmp_path / "usb" / "Music" / "one.flac")]


def test_the_same_file_in_two_folders_is_indexed_once_listed_by_dedup_and_kept_while_either_is_there(
        library_dir, tmp_path):
    """A library's commonest duplicate: one file copied into a second folder. It is one song (indexed once); the
    copy is recorded, so `dedup` lists both files, `prune` keeps the song while either is there, and an `add`
    that finds the song's file holding other content moves it to the copy rather than dropping it."""
    music = laid_out(tmp_path / "music", library_dir, {
        "album/one.flac": "song1.flac", "playlist/one (copy).flac": "song1.flac", "album/two.ogg": "song2.ogg"})
    db = tmp_path / "index.db"
    first = run_cli("add", music, db=db, check=True)  # both files of song 1 in one batch
    assert "added 2, skipped 0 (already indexed), failed 0, copies 1" in first.stderr
    laid_out(music, library_dir, {"later/two.ogg": "song2.ogg"})
    again = run_cli("add", music, db=db, check=True)  # a copy in a later batch; a known copy is merely skipped
    assert "added 0, skipped 3 (already indexed), failed 0, copies 1" in again.stderr
    assert len(run_cli("list", db=db, check=True).stdout.splitlines()) == 2

    groups = [json.loads(line)["same_recording"] for line in run_cli("dedup", "--json", db=db, check=True).stdout
              .splitlines()]
    assert sorted(sorted(entry["path"] for entry in group) for group in groups) == sorted([
        sorted([str(music / "album" / "two.ogg"), str(music / "later" / "two.ogg")]),
        sorted([str(music / "album" / "one.flac"), str(music / "playlist" / "one (copy).flac")])])
    assert all(len({entry["song_id"] for entry in group}) == 1 for group in groups)  # one song each
    assert sorted(entry["copy"] for group in groups for entry in group) == [False, False, True, True]
    recordings = [json.loads(line)["files"] for line in run_cli("list", "--recordings", "--json", db=db, check=True)
                  .stdout.splitlines()]
    assert sorted(sorted((entry["path"], entry["copy"]) for entry in group) for group in recordings) == sorted(
        sorted((entry["path"], entry["copy"]) for entry in group) for group in groups)  # the same files, copies alike

    plain = {song["path"]: song["copies"] for song in
             listed_songs(db)}
    assert plain[str(music / "album" / "one.flac")] == [str(music / "playlist" / "one (copy).flac")]

    (music / "album" / "one.flac").unlink()
    (music / "later" / "two.ogg").unlink()
    dry = run_cli("prune", "--dry-run", db=db, check=True)
    assert "would move" in dry.stdout and "would forget copy" in dry.stdout and "would remove" not in dry.stdout
    pruned = run_cli("prune", db=db, check=True)
    assert pruned.stderr == "0 songs whose files are gone, 1 now named by a copy, 1 copy gone\n"
    listed = {song["path"]: song["title"] for song in
              listed_songs(db)}
    assert listed == {str(music / "playlist" / "one (copy).flac"): "one (copy)", str(music / "album" / "two.ogg"): "two"}
    clip = clip_file(tmp_path, 1, 8.0)
    found = json.loads(run_cli("match", "--json", clip, db=db, check=True).stdout)["match"]
    assert found["path"] == str(music / "playlist" / "one (copy).flac")
    assert run_cli("dedup", db=db, check=True).stdout == ""  # the copies are gone, or the song's file now

    shutil.copy(library_dir / "song2.ogg", music / "later" / "two.ogg")
    run_cli("add", music / "later", db=db, check=True)
    shutil.copy(library_dir / "song5.opus", music / "album" / "two.ogg")  # other music under the song's name
    replaced = run_cli("add", music / "album", db=db, check=True)
    assert "added 1" in replaced.stderr and "replaced" not in replaced.stderr
    assert f"moved {music / 'album' / 'two.ogg'} -> {music / 'later' / 'two.ogg'}\n" in replaced.stderr
    assert "moved 1" in replaced.stderr  # the song named by its copy now, said as any move is
    listed = {song["path"] for song in listed_songs(db)}
    assert str(music / "later" / "two.ogg") in listed and len(listed) == 3  # song 2 lives on in its copy
    # a copy named to `remove` is that file alone: the song stays
    shutil.copy(library_dir / "song1.flac", music / "album" / "one.flac")
    assert "copies 1" in run_cli("add", music / "album", db=db, check=True).stderr
    removed = run_cli("remove", music / "album" / "one.flac", db=db, check=True)
    assert removed.stdout == f"forgot copy\t{music / 'album' / 'one.flac'}\n"
    assert len(run_cli("list", db=db, check=True).stdout.splitlines()) == 3
    (music / "album" / "one.flac").unlink()  # as a user tidying up after `dedup` would (else `add` records it again)

    # a hard link is a second file of the song; a copy replaced by other music since is not
    os.link(music / "later" / "two.ogg", music / "album" / "two (link).ogg")
    assert "copies 1" in run_cli("add", music / "album", db=db, check=True).stderr
    shutil.copy(library_dir / "song3.mp3", music / "album" / "two (link).ogg")  # other bytes through the link
    (music / "later" / "two.ogg").unlink()  # the link's other name, and so the new bytes: both gone
    (music / "later" / "cover.jpg").write_bytes(b"")  # (a folder given to `add` left empty would keep its songs)
    (music / "playlist" / "one (copy).flac").rename(music / "playlist" / "one (moved).flac")
    pruned = run_cli("prune", "--dry-run", db=db, check=True)
    assert "would move" not in pruned.stdout and pruned.stdout.count("would remove") == 2


def test_a_copy_left_at_its_songs_own_path_by_an_older_lmprint_is_not_listed_as_a_second_file(library_dir, tmp_path):
    import sqlite3

    music = laid_out(tmp_path / "music", library_dir, {"a/one.flac": "song1.flac", "b/one.flac": "song1.flac"})
    db = tmp_path / "index.db"
    assert "copies 1" in run_cli("add", music, db=db, check=True).stderr
    (music / "a" / "one.flac").unlink()
    with sqlite3.connect(db) as conn:  # an lmprint that predates copies moves the song onto its copy's path
        conn.execute("UPDATE songs SET path=?", (str(music / "b" / "one.flac"),))
    [song] = listed_songs(db)
    assert song["path"] == str(music / "b" / "one.flac") and song["copies"] == []
    assert run_cli("dedup", db=db, check=True).stdout == ""


def test_a_song_following_its_content_to_a_copy_in_the_same_batch_counts_that_file_once(library_dir, tmp_path):
    music = laid_out(tmp_path / "music", library_dir, {"a.ogg": "song2.ogg", "c.ogg": "song2.ogg"})
    db = tmp_path / "index.db"
    assert "copies 1" in run_cli("add", music, db=db, check=True).stderr
    shutil.copy(library_dir / "song5.opus", music / "a.ogg")  # other music under the song's name
    again = run_cli("add", music, db=db, check=True).stderr
    assert f"moved {music / 'a.ogg'} -> {music / 'c.ogg'}\n" in again
    assert again.splitlines()[-1].startswith("added 1, skipped 0 (already indexed), failed 0, moved 1 (")


def test_a_folder_of_a_song_and_its_hard_link_moved_is_two_moves(library_dir, tmp_path):
    """A song and a hard link to it (its copy) moved together to another folder: `add` of the new folder moves
    both, the song and its copy, each with its line; the copy's old path is not left behind as a file of it."""
    laid_out(tmp_path / "old", library_dir, {"one.flac": "song1.flac"})
    os.link(tmp_path / "old" / "one.flac", tmp_path / "old" / "one (link).flac")
    db = tmp_path / "index.db"
    assert "copies 1" in run_cli("add", tmp_path / "old", db=db, check=True).stderr
    (tmp_path / "old").rename(tmp_path / "new")
    moved = run_cli("add", tmp_path / "new", db=db, check=True).stderr.splitlines()
    assert sorted(moved[:-1]) == sorted(f"moved {tmp_path / 'old' / name} -> {tmp_path / 'new' / name}"
                                        for name in ("one.flac", "one (link).flac")), moved
    assert moved[-1].startswith("added 0, skipped 0 (already indexed), failed 0, moved 2 (")
    [song] = listed_songs(db)
    assert sorted([song["path"], *song["copies"]]) == [str(tmp_path / "new" / name)
                                                       for name in ("one (link).flac", "one.flac")]


def test_a_match_lists_the_byte_copies_of_a_copy_that_did_not_win(tmp_path):
    """A library holding a FLAC of a song and a low-bitrate MP3 of it, the MP3 twice (the same bytes in two
    folders: one song, two files): a clip names the FLAC, and its copies are every other file holding the
    recording, the MP3's second file too; the runner-up is another recording."""
    music = tmp_path / "music"
    for folder in ("x", "y"):
        (music / folder).mkdir(parents=True)
    song = rendered(3, 40.0, 22050)
    write(music / "song.flac", song, 22050)
    write(music / "x" / "song.mp3", song, 22050, bit_rate=48_000)
    shutil.copy(music / "x" / "song.mp3", music / "y" / "song.mp3")
    write(music / "other.flac", rendered(4, 40.0, 22050), 22050)
    db = tmp_path / "index.db"
    assert "copies 1" in run_cli("add", music, db=db, check=True).stderr
    clip = tmp_path / "clip.wav"
    write(clip, song[12 * 22050:17 * 22050], 22050)
    answer = json.loads(run_cli("match", "--json", clip, db=db, check=True).stdout)
    found = answer["match"]
    assert found["path"] == str(music / "song.flac"), found
    assert sorted(found["copies"]) == [str(music / "x" / "song.mp3"), str(music / "y" / "song.mp3")], found
    assert answer["runner_up"]["path"] == str(music / "other.flac")  # another recording, not a copy


def test_files_swapped_a_folder_linked_a_name_not_utf8_and_an_id_that_is_also_a_title(library_dir, tmp_path):
    """More of a library tidied by hand: two files swapped are two moves (not copies); a file reached again through
    a linked folder is one file, listed once; a name that is not UTF-8 is refused in one line and the batch goes on;
    `match` names a copy that is there while the song's own file is gone, and lists byte copies; `remove 2` is
    song 2 even when another song is titled "2"."""
    music = laid_out(tmp_path / "music", library_dir, {"a/first.flac": "song1.flac", "a/second.ogg": "song2.ogg"})
    shutil.copy(library_dir / "song3.mp3", os.fsencode(music / "a") + b"/bad\xffbyte.mp3")
    db = tmp_path / "index.db"
    first = run_cli("add", music, db=db)
    assert first.returncode == 1 and "Traceback" not in first.stderr
    assert "not valid UTF-8" in first.stderr and "added 2," in first.stderr
    bad_name = os.fsdecode(os.fsencode(music / "a") + b"/bad\xffbyte.mp3")  # matched, with its byte shown escaped
    as_json = run_cli("match", "--json", bad_name, db=db, check=True).stdout
    assert "\\udc" not in as_json and json.loads(as_json)["query"] == str(music / "a") + "/bad\\xffbyte.mp3"
    assert run_cli("match", bad_name, db=db, check=True).stdout.startswith(str(music / "a") + "/bad\\xffbyte.mp3: ")

    (music / "a" / "first.flac").rename(music / "a" / "swap")
    (music / "a" / "second.ogg").rename(music / "a" / "first.flac")
    (music / "a" / "swap").rename(music / "a" / "second.ogg")
    os.remove(os.fsencode(music / "a") + b"/bad\xffbyte.mp3")
    swapped = run_cli("add", music, db=db, check=True)
    assert "moved 2" in swapped.stderr and "copies" not in swapped.stderr
    assert run_cli("dedup", db=db, check=True).stdout == ""

    laid_out(music, library_dir, {"b/one.flac": "song1.flac"})
    assert "copies 1" in run_cli("add", music / "b", db=db, check=True).stderr
    clip = clip_file(tmp_path, 1, 8.0)
    found = json.loads(run_cli("match", "--json", clip, db=db, check=True).stdout)["match"]
    assert found["path"] == str(music / "a" / "second.ogg") and found["copies"] == [str(music / "b" / "one.flac")]
    (music / "a" / "second.ogg").unlink()  # gone, before any prune: the copy that is there is named
    found = json.loads(run_cli("match", "--json", clip, db=db, check=True).stdout)["match"]
    assert found["path"] == str(music / "b" / "one.flac")
    (music / "linked").symlink_to(music / "b")
    run_cli("add", music / "linked", db=db, check=True)  # the song's file is gone: it now names the link's path
    groups = run_cli("dedup", db=db, check=True).stdout
    assert groups == "", groups  # ...and the copy, the same file, is not listed beside it

    write(music / "a" / "2.flac", rendered(4, 20.0, 22050), 22050)  # titled "2"
    run_cli("add", music / "a", db=db, check=True)
    ids = {song["title"]: song["id"] for song in
           listed_songs(db)}
    assert "2" in ids and ids["2"] != 2 and 2 in ids.values()
    removed = run_cli("remove", "2", db=db, check=True)
    assert removed.stdout.startswith("removed 2\t")
    (music / "to-two").symlink_to(music / "a" / "2.flac")  # a link to an indexed file names its song
    assert "would remove" in run_cli("remove", "--dry-run", music / "to-two", db=db, check=True).stdout
    (music / "c").mkdir()  # a file added through a link of another name is found by its real path too
    write(music / "c" / "real name.flac", rendered(5, 20.0, 22050), 22050)
    (music / "alias.flac").symlink_to(music / "c" / "real name.flac")
    run_cli("add", music / "alias.flac", db=db, check=True)
    dry = run_cli("remove", "--dry-run", music / "c" / "real name.flac", db=db, check=True).stdout
    assert dry.startswith("would remove") and "alias.flac" in dry, dry
    short = run_cli("remove", "abcdef1", db=db)
    assert short.returncode == 1 and "needs 8 digits" in short.stderr


def test_a_folder_not_utf8_a_copy_and_its_songs_folder_removed_together_and_a_link_added_first(library_dir,
                                                                                              tmp_path):
    """A folder whose name is not UTF-8 is refused file by file and the folders beside it are added (it was a
    traceback before any of them); `remove` of such a name is one line. A song's copy named and the song's folder
    named in one `remove` take the song: it was kept, named by the copy just forgotten. A song added through a
    link to its file, met before the file itself, takes the file's own path, so removing the link loses nothing."""
    music = tmp_path / "music"
    odd = os.fsencode(music) + b"/caf\xe9"
    os.makedirs(odd)
    (music / "lib").mkdir()
    shutil.copy(library_dir / "song1.flac", odd + b"/one.flac")
    shutil.copy(library_dir / "song2.ogg", music / "lib" / "two.ogg")
    db = tmp_path / "index.db"
    added = run_cli("add", os.fsdecode(odd), music / "lib", db=db)
    assert added.returncode == 1 and "Traceback" not in added.stderr, added.stderr
    assert "not valid UTF-8" in added.stderr and "added 1," in added.stderr
    gone = run_cli("remove", os.fsdecode(odd), db=db)
    assert gone.returncode == 1 and gone.stderr == "lmprint: " + str(music) + "/caf\\xe9: no such song in the index\n"

    laid_out(music, library_dir, {"A/x.mp3": "song3.mp3", "B/x.mp3": "song3.mp3"})
    assert "copies 1" in run_cli("add", music / "A", music / "B", db=db, check=True).stderr
    for named in ([music / "B" / "x.mp3", music / "A"], ["--all", music / "A", music / "B"]):
        dry = run_cli("remove", "--dry-run", *named, db=db, check=True).stdout
        assert "would move" not in dry and re.search(f"would remove \\d+\t{music / 'A' / 'x.mp3'}\n", dry), dry
    laid_out(music, library_dir, {"C/x.mp3": "song3.mp3"})  # a third file of it: the song moves there
    assert "copies 1" in run_cli("add", music / "C", db=db, check=True).stderr
    dry = run_cli("remove", "--dry-run", music / "B" / "x.mp3", music / "A", db=db, check=True).stdout
    assert f"{music / 'A' / 'x.mp3'} -> {music / 'C' / 'x.mp3'}" in dry and "would remove" not in dry, dry

    shutil.copy(library_dir / "song0.wav", music / "lib" / "four.wav")
    (music / "top.wav").symlink_to(music / "lib" / "four.wav")
    both = run_cli("add", music / "top.wav", music / "lib", db=db, check=True)  # the link named first
    assert f"moved {music / 'top.wav'} -> {music / 'lib' / 'four.wav'}" in both.stderr, both.stderr
    (music / "top.wav").unlink()
    pruned = run_cli("prune", db=db, check=True)
    assert "removed" not in pruned.stdout and "0 songs whose files are gone" in pruned.stderr, pruned
    listed = {song["path"] for song in listed_songs(db)}
    assert {str(music / "lib" / "four.wav"), str(music / "lib" / "two.ogg")} <= listed


def test_top_lists_the_best_candidates_with_their_scores_match_or_not(built_index, tmp_path):
    clip = clip_file(tmp_path, 2, 9.0)
    answer = json.loads(run_cli("match", "--json", "--top", "3", clip, db=built_index, check=True).stdout)
    candidates = answer["candidates"]
    assert len(candidates) == 3 and candidates[0]["song_id"] == answer["match"]["song_id"]
    assert [c["score"] for c in candidates] == sorted((c["score"] for c in candidates), reverse=True)
    assert answer["runner_up"] == candidates[1]
    unknown = tmp_path / "unknown.flac"
    write(unknown, rendered(555, 6.0, 22050), 22050)
    text = run_cli("match", "--top", "2", unknown, db=built_index, check=True).stdout.splitlines()
    listed = json.loads(run_cli("match", "--json", "--top", "2", unknown, db=built_index, check=True).stdout)
    assert text[0] == f"{unknown}: no match" and len(text) == 3
    matched = run_cli("match", "--top", "3", clip, db=built_index, check=True).stdout.splitlines()
    assert len(matched) == 4 and candidates[0]["score"] > candidates[1]["score"]
    for lines, shown in ((text[1:], listed["candidates"]), (matched[1:], candidates)):  # each with its own score
        for rank, (line, candidate) in enumerate(zip(lines, shown), start=1):
            assert line == f"  {rank}. {candidate['title']} ({candidate['path']}), score {candidate['score']:.1f}"
    assert "--top" not in run_cli("match", clip, db=built_index, check=True).stdout and "candidates" not in \
        run_cli("match", "--json", clip, db=built_index, check=True).stdout


def test_one_recording_as_flac_and_as_mp3_is_named_not_refused_as_a_tie(library_dir, tmp_path):
    """Two files of one recording line up with a clip equally: counted as one candidate, the clip is named,
    with the other file listed as a copy."""
    music = laid_out(tmp_path / "music", library_dir, {name: name for name in ("song0.wav", "song2.ogg", "song4.m4a")})
    signal = rendered(7, 40.0, 22050)
    write(music / "seven.flac", signal, 22050)
    write(music / "seven (128k).mp3", signal, 22050, bit_rate=128_000)
    db = tmp_path / "index.db"
    run_cli("add", music, db=db, check=True)
    clip = tmp_path / "clip.wav"
    write(clip, signal[22050 * 12:22050 * 17], 22050)
    answer = json.loads(run_cli("match", "--json", clip, db=db, check=True).stdout)
    named = {answer["match"]["path"], *answer["match"]["copies"]}
    assert named == {str(music / "seven.flac"), str(music / "seven (128k).mp3")}
    assert abs(answer["match"]["offset_s"] - 12.0) < 0.1
    assert answer["runner_up"]["path"] not in named  # the runner-up is another recording


def test_a_recording_and_its_first_half_name_either_where_both_play_and_the_whole_past_it(library_dir, tmp_path):
    """A partial copy (a download cut short) lines up with a clip of its part as well as the whole file does:
    counted as one recording, the clip is named (the whole file, whichever led the vote), not refused as a tie;
    past the cut the whole file alone."""
    music = laid_out(tmp_path / "music", library_dir, {name: name for name in ("song0.wav", "song2.ogg")})
    signal = rendered(7, 40.0, 22050)
    write(music / "seven.flac", signal, 22050)
    write(music / "seven (cut).flac", signal[:22050 * 14], 22050)
    db = tmp_path / "index.db"
    run_cli("add", music, db=db, check=True)
    for start_s, expected in ((2, {"seven.flac", "seven (cut).flac"}), (25, {"seven.flac"})):
        clip = tmp_path / f"clip{start_s}.wav"
        write(clip, signal[22050 * start_s:22050 * (start_s + 5)], 22050)
        found = json.loads(run_cli("match", "--json", clip, db=db, check=True).stdout)["match"]
        assert found is not None and {found["path"], *found["copies"]} == {str(music / n) for n in expected}
        assert found["path"] == str(music / "seven.flac")  # the whole file is named, the cut one a copy
        assert abs(found["offset_s"] - start_s) < 0.1


def test_a_clip_of_a_stretch_that_an_edit_or_a_mix_holds_too_is_named_not_refused_as_a_tie(library_dir, tmp_path):
    """A song, an edit of it (an MP3 of its 10-30 s) and a mix that plays it after another song's 8 s: a clip
    where they all play lines up with each about alike, and no file can be told from the others there. It is
    named (any of them: each holds what the clip plays) rather than refused as a tie, with the others listed
    (`copies`), none of them as the runner-up. Past the edit, the song or the mix."""
    music = laid_out(tmp_path / "music", library_dir, {name: name for name in ("song0.wav", "song2.ogg")})
    signal = rendered(7, 40.0, 22050)
    write(music / "seven.flac", signal, 22050)
    write(music / "seven (edit).mp3", signal[22050 * 10:22050 * 30], 22050, bit_rate=128_000)
    write(music / "mix.flac", np.r_[rendered(8, 8.0, 22050), signal], 22050)
    db = tmp_path / "index.db"
    run_cli("add", music, db=db, check=True)
    for start_s, holders in ((12, ("seven.flac", "seven (edit).mp3", "mix.flac")),
                             (17, ("seven.flac", "seven (edit).mp3", "mix.flac")),
                             (23, ("seven.flac", "seven (edit).mp3", "mix.flac")), (33, ("seven.flac", "mix.flac"))):
        clip = tmp_path / f"clip{start_s}.wav"
        write(clip, signal[22050 * start_s:22050 * (start_s + 5)], 22050)
        answer = json.loads(run_cli("match", "--json", clip, db=db, check=True).stdout)
        found, held_by = answer["match"], {str(music / n) for n in holders}
        assert found is not None, start_s
        named, runner_up = {found["path"], *found["copies"]}, answer["runner_up"]
        assert named == held_by and (runner_up is None or runner_up["path"] not in held_by), answer
        offset = {"seven.flac": start_s, "seven (edit).mp3": start_s - 10, "mix.flac": start_s + 8}
        assert abs(found["offset_s"] - offset[os.path.basename(found["path"])]) < 0.1, found


def test_a_file_moved_away_and_replaced_by_another_keeps_both_songs(library_dir, tmp_path):
    """P held song 1; song 1 moves to R and song 2 takes its place at P. One add of the folder: each path names
    the song it holds, and nothing is lost, whichever file the batch reads first."""
    music = laid_out(tmp_path / "music", library_dir, {"b.flac": "song1.flac"})
    db = tmp_path / "index.db"
    run_cli("add", music, db=db, check=True)
    (music / "b.flac").rename(music / "a.flac")  # read before b.flac in the folder's order
    shutil.copy(library_dir / "song2.ogg", music / "b.flac")  # another song's content under the old name
    result = run_cli("add", music, db=db, check=True)
    assert "added 1" in result.stderr and "replaced" not in result.stderr
    listed = sorted(song["path"] for song in listed_songs(db))
    assert listed == [str(music / "a.flac"), str(music / "b.flac")]
    for seed, path in ((1, "a.flac"), (2, "b.flac")):
        found = json.loads(run_cli("match", "--json", clip_file(tmp_path, seed, 5.0), db=db, check=True).stdout)
        assert found["match"]["path"] == str(music / path)


def test_add_indexes_a_damaged_file_and_says_how_much_decoded(library_dir, tmp_path):
    from tests.test_audio import write_opus_with_a_bad_packet

    folder = tmp_path / "music"
    folder.mkdir()
    data = (library_dir / "song1.flac").read_bytes()
    (folder / "cut.flac").write_bytes(data[: len(data) // 4])  # 10 s of its 40
    write_opus_with_a_bad_packet(folder / "bad packet.opus", rendered(2, 40.0, 48000), 48000)
    db = tmp_path / "index.db"
    added = run_cli("add", folder, db=db)
    assert added.returncode == 0, added.stderr  # both indexed: a nightly `add` does not fail for them
    assert "added 2, skipped 0 (already indexed), failed 0" in added.stderr
    warnings = [line for line in added.stderr.splitlines() if "warning" in line]
    said = re.fullmatch(
        rf"lmprint: {re.escape(str(folder / 'cut.flac'))}: warning: decoded only (\d+\.\d) s of the 40\.0 s it "
        r"declares \(truncated or damaged\)", warnings[0])
    assert len(warnings) == 1 and said, warnings
    assert 8.0 <= float(said[1]) <= 12.0, warnings  # about a quarter of it: what was decoded
    matched = run_cli("match", "--json", clip_file(tmp_path, 2, 12.0), db=db, check=True)
    assert json.loads(matched.stdout)["match"]["path"] == str(folder / "bad packet.opus")


def test_a_file_name_with_a_line_break_still_gets_one_line(library_dir, tmp_path):
    odd = tmp_path / "two\nlines.mp3"
    odd.write_bytes(np.random.default_rng(3).bytes(5000))
    result = run_cli("add", odd, sorted(library_dir.iterdir())[0], db=tmp_path / "i.db")
    lines = result.stderr.splitlines()
    assert result.returncode == 1 and len(lines) == 2 and lines[1].startswith("added 1"), result.stderr
    assert lines[0].startswith("lmprint: ") and "two\\nlines.mp3" in lines[0]


def test_names_with_tabs_line_breaks_and_escapes_keep_the_text_output_one_line_a_song(library_dir, tmp_path):
    """A title tag with a tab, a file name with a line break and an escape sequence: `list` and `match` print
    them escaped (one line a song, the same tab-separated fields); `--json` gives them as they are."""
    music = tmp_path / "music"
    music.mkdir()
    odd = music / "two\nlines \x1b[31mred.flac"
    write(odd, rendered(2, 40.0, 22050), 22050, title="a\ttabbed title")
    db = tmp_path / "index.db"
    run_cli("add", odd, library_dir / "song0.wav", db=db, check=True)
    listed = run_cli("list", db=db, check=True).stdout.splitlines()
    assert len(listed) == 2 and all(len(line.split("\t")) == 4 for line in listed), listed
    assert listed[0].endswith("a\\ttabbed title\t" + str(music) + "/two\\nlines \\x1b[31mred.flac"), listed
    songs = listed_songs(db)
    assert [line.split("\t")[:2] for line in listed] == [[str(song["id"]), f"{song['duration_s']:7.1f} s"]
                                                          for song in songs] == [["1", "   40.0 s"], ["2", "   40.0 s"]]
    found = run_cli("match", clip_file(tmp_path, 2, 6.0), db=db, check=True).stdout
    assert found.count("\n") == 1 and "\x1b" not in found and "a\\ttabbed title" in found, found
    as_json = json.loads(run_cli("match", "--json", clip_file(tmp_path, 2, 6.0), db=db, check=True).stdout)
    assert as_json["match"]["title"] == "a\ttabbed title" and as_json["match"]["path"] == str(odd)


def test_a_query_through_a_pipe_is_matched(built_index, tmp_path):
    """`lmprint match <(ffmpeg …)` hands over a pipe, which has no size: it is read, not refused as empty."""
    import os
    import threading

    pipe = tmp_path / "query.mp3"
    os.mkfifo(pipe)
    clip = clip_file(tmp_path, 1, 3.0).read_bytes()

    def feed():
        try:
            pipe.write_bytes(clip)
        except BrokenPipeError:
            pass

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    try:
        result = run_cli("match", "--json", pipe, db=built_index)
    finally:
        os.close(os.open(pipe, os.O_RDONLY | os.O_NONBLOCK))  # a writer still waiting for a reader is let go
        writer.join(timeout=10)
    assert json.loads(result.stdout)["match"]["title"] == "song1", result.stderr


def test_an_index_is_made_in_a_missing_folder_only_at_its_default_place(library_dir, tmp_path):
    """`--db` (or $LMPRINT_DB) in a folder that is not there is refused in one line, with no folder made: a typo
    would make folders anywhere. The default place, $XDG_DATA_HOME/lmprint/index.db, is made on first use."""
    song = sorted(library_dir.iterdir())[0]
    result = run_cli("add", song, db=tmp_path / "typo" / "music.db")
    assert result.returncode == 1 and result.stderr.strip() == (
        f"lmprint: cannot create {tmp_path / 'typo' / 'music.db'}: there is no folder {tmp_path / 'typo'}")
    assert not (tmp_path / "typo").exists()
    for named in (["add", "--db", tmp_path / "typo" / "music.db", song], ["add", song]):  # after it; in the env
        result = run_cli(*named, env={"LMPRINT_DB": str(tmp_path / "typo" / "music.db")})
        assert result.returncode == 1 and "there is no folder" in result.stderr and not (tmp_path / "typo").exists()
    env = {"XDG_DATA_HOME": str(tmp_path / "data"), "LMPRINT_DB": None}
    run_cli("add", song, env=env, check=True)
    assert json.loads(run_cli("list", "--json", env=env, check=True).stdout)["title"] == "song0"
    assert (tmp_path / "data" / "lmprint" / "index.db").is_file()


def test_add_says_it_does_not_read_standard_input_and_adds_the_rest(library_dir, tmp_path):
    song = sorted(library_dir.iterdir())[0]
    result = run_cli("add", "-", song, db=tmp_path / "i.db")
    assert result.returncode == 1 and "not standard input" in result.stderr.splitlines()[0]
    assert result.stderr.splitlines()[-1].startswith("added 1")
    alone = run_cli("add", "-", db=tmp_path / "i.db")
    assert alone.returncode == 1 and len(alone.stderr.splitlines()) == 1 and "not standard input" in alone.stderr


def test_an_add_interrupted_says_how_many_songs_it_kept(library_dir, tmp_path, monkeypatch):
    """Ctrl-C during `add` keeps every song committed before it; the line said only that songs "already added are
    kept", so a user could not tell whether any were. It now counts them, and `list` holds as many."""
    import lmprint.cli

    made = lmprint.cli.progress_reporter

    def interrupted_at_the_third_file(quiet, **kwargs):
        progress, report = made(quiet, **kwargs)
        seen = []

        def report_then_stop(outcome):
            seen.append(outcome)
            if len(seen) == 3:  # Ctrl-C while the third file's outcome is said: its song is in too
                raise KeyboardInterrupt
            report(outcome)

        return progress, report_then_stop

    monkeypatch.setattr(lmprint.cli, "progress_reporter", interrupted_at_the_third_file)
    db = tmp_path / "index.db"
    result = run_cli("add", "--jobs", "1", library_dir, db=db)
    assert result.returncode == 130, result.stderr
    assert result.stderr.strip().splitlines()[-1] == "lmprint: interrupted (3 songs added before it are kept)"
    monkeypatch.undo()
    assert len(run_cli("list", db=db, check=True).stdout.strip().splitlines()) == 3


def _sealed_index(tmp_path, monkeypatch, songs: int = 6):
    """(index path, song folder): `songs` generated 40 s songs added where segments seal at a test's sizes."""
    import landmark.store as store
    from tests.conftest import SYNTH_RATE

    monkeypatch.setattr(store, "ONE_HASH_TAIL_FROM", 4000)
    monkeypatch.setattr(store, "TAIL_POSTINGS", 2000)
    monkeypatch.setattr(store, "MERGE_RATIO", 2)
    music = tmp_path / "music"
    music.mkdir()
    for seed in range(songs):
        write(music / f"song{seed}.wav", rendered(seed, 40.0, SYNTH_RATE), SYNTH_RATE)
    db = tmp_path / "i.db"
    run_cli("add", "-q", music, db=db, check=True)
    return db, music


def _damage_inside_segments(db) -> dict:
    """Overwrite the middle third of every segment: its header and directory stay sound, so only reading its
    postings finds it. The segments as they were, to restore."""
    from landmark import segments

    whole = {path: path.read_bytes() for path in segments.folder_of(db).iterdir()}
    for path, data in whole.items():
        third = len(data) // 3
        path.write_bytes(data[:third] + b"\xff" * third + data[2 * third:])
    return whole


def test_a_removal_whose_compaction_meets_damage_or_ctrl_c_says_what_it_removed(tmp_path, monkeypatch):
    """A large removal commits, then compacts. Damage inside a segment, which only reading its postings finds, or
    Ctrl-C, stopped the compaction, and only the damage line or "interrupted" was said while the songs were gone.
    The removed lines now come as the removal is made (a name of no song is said before), and an interruption
    counts them."""
    import landmark.store as store

    db, _ = _sealed_index(tmp_path, monkeypatch)
    whole = _damage_inside_segments(db)
    assert run_cli("stats", db=db).returncode == 0  # its header and directory read as sound
    result = run_cli("remove", "1", "2", "3", "nothing-so-named", db=db)
    assert result.returncode == 1 and "is damaged" in result.stderr, result.stderr
    assert "lmprint: nothing-so-named: no such song in the index" in result.stderr  # said before the compaction
    assert [line.split("\t")[0] for line in result.stdout.splitlines()] == ["removed 1", "removed 2", "removed 3"]
    for path, data in whole.items():
        path.write_bytes(data)
    assert len(run_cli("list", db=db, check=True).stdout.splitlines()) == 3

    def interrupted(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(store.SQLitePostingStore, "compact", interrupted)
    result = run_cli("remove", "4", "5", db=db)
    assert result.returncode == 130
    assert result.stderr.strip() == "lmprint: interrupted (2 songs removed before it)", result.stderr
    assert [line.split("\t")[0] for line in result.stdout.splitlines()] == ["removed 4", "removed 5"]
    assert len(run_cli("list", db=db, check=True).stdout.splitlines()) == 1


def test_an_add_that_meets_damage_in_a_merge_says_how_many_songs_it_kept(tmp_path, monkeypatch):
    """Songs go into the index file's tail, which is sealed into a segment and merged with the older ones once it
    is large enough; damage inside an older segment is met there, mid-batch. The songs committed before stay, and
    the damage line now says how many."""
    from tests.conftest import SYNTH_RATE

    db, _ = _sealed_index(tmp_path, monkeypatch)
    _damage_inside_segments(db)
    more = tmp_path / "more"
    more.mkdir()
    for seed in range(10, 16):
        write(more / f"song{seed}.wav", rendered(seed, 40.0, SYNTH_RATE), SYNTH_RATE)
    result = run_cli("add", "-q", "--jobs", "1", more, db=db)
    assert result.returncode == 1, result.stderr
    kept = int(re.search(r"\((\d+) songs? added before it (?:is|are) kept\)$", result.stderr.strip()).group(1))
    assert "is damaged" in result.stderr and 1 <= kept < 6
    assert len(run_cli("list", db=db, check=True).stdout.splitlines()) == 6 + kept


def test_stats_text_shows_each_figure_of_the_json_one_per_line(built_index):
    """`stats` prints each figure of `stats --json` on a line of its own, "name: value", a table as JSON."""
    figures = json.loads(run_cli("stats", "--json", db=built_index, check=True).stdout)
    lines = run_cli("stats", db=built_index, check=True).stdout.splitlines()
    assert [line.split(": ", 1)[0] for line in lines] == list(figures)
    for line, value in zip(lines, figures.values()):
        shown = line.split(": ", 1)[1]
        if isinstance(value, dict):
            assert json.loads(shown) == value, line
        else:
            assert shown == str(value), line
    assert figures["songs"] == len(FORMATS) and isinstance(figures["settings"], dict)


def test_dedup_text_marks_copies_and_lists_every_file_of_a_recording(library_dir, tmp_path):
    """`dedup`'s text lists each file of a recording on its own line, id then path, a copy (the same bytes) marked so."""
    laid_out(tmp_path, library_dir, {"album/one.flac": "song1.flac", "playlist/one (copy).flac": "song1.flac",
                                     "album/two.ogg": "song2.ogg"})
    db = tmp_path / "index.db"
    run_cli("add", tmp_path / "album", tmp_path / "playlist", db=db, check=True)
    song_id = {song["path"]: song["id"] for song in listed_songs(db)}[str(tmp_path / "album" / "one.flac")]
    text = run_cli("dedup", db=db, check=True).stdout
    assert text == (f"same recording:\n  {song_id}\t{tmp_path / 'album' / 'one.flac'}\n"
                    f"  {song_id}\t{tmp_path / 'playlist' / 'one (copy).flac'} (copy)\n"), text


def test_a_clip_played_faster_says_how_much_faster_in_text_and_json(built_index, tmp_path):
    """A clip played 5 % fast is named with its speed: 1.05 in the JSON, "played at speed +5.0 %" in the text."""
    from bench.queries import change_speed

    clip = tmp_path / "fast.wav"
    write(clip, change_speed(rendered(3, 40.0, 22050)[10 * 22050:17 * 22050], 1.05), 22050)
    found = json.loads(run_cli("match", "--json", clip, db=built_index, check=True).stdout)["match"]
    assert found["title"] == "song3" and abs(found["speed"] - 1.05) < 0.01, found
    text = run_cli("match", clip, db=built_index, check=True).stdout
    assert f", played at speed +{100 * (found['speed'] - 1):.1f} %, score" in text, text
    assert re.search(r", played at speed \+(4\.[5-9]|5\.[0-5]) %, score", text), text


def test_a_song_whose_file_holds_other_music_moves_to_the_copy_that_holds_its_bytes(library_dir, tmp_path):
    """Of a song's copies, the song moves to one that still holds its bytes, not to one overwritten with other music."""
    music = laid_out(tmp_path / "music", library_dir, {name: "song2.ogg" for name in ("a.ogg", "b.ogg", "c.ogg")})
    db = tmp_path / "index.db"
    assert "copies 2" in run_cli("add", music, db=db, check=True).stderr
    shutil.copy(library_dir / "song3.mp3", music / "b.ogg")  # a copy overwritten with other music
    shutil.copy(library_dir / "song5.opus", music / "a.ogg")  # and other music under the song's own name
    moved = run_cli("add", music / "a.ogg", db=db, check=True).stderr
    assert f"moved {music / 'a.ogg'} -> {music / 'c.ogg'}\n" in moved, moved
    songs = {song["path"]: song for song in listed_songs(db)}
    assert str(music / "c.ogg") in songs and str(music / "b.ogg") not in songs, sorted(songs)


def test_match_json_confidence_is_one_less_the_false_match_probability(built_index, tmp_path):
    """A clean clip's `confidence` is 1 − its `false_match_probability`, near 1, and its runner-up scores below it."""
    clip = tmp_path / "clip.mp3"
    write(clip, rendered(3, 40.0, 22050)[int(12.5 * 22050):int(17.5 * 22050)], 22050)
    answer = json.loads(run_cli("match", "--json", clip, db=built_index, check=True).stdout)
    found = answer["match"]
    assert found["title"] == "song3" and 0 <= found["false_match_probability"] < 1e-3, found
    assert found["confidence"] > 0.999 and abs(found["confidence"] - (1 - found["false_match_probability"])) < 1e-4
    assert abs(found["offset_s"] - 12.5) < 0.05, found


def test_add_refuses_jobs_below_one_as_a_usage_error_before_making_an_index(library_dir, tmp_path):
    """`add --jobs 0` (or a negative count) is a usage error, exit 2, and no index file is made."""
    for wrong in ("0", "-2"):
        db = tmp_path / f"jobs{wrong}.db"
        result = run_cli("add", "--jobs", wrong, library_dir / "song0.wav", db=db)
        assert result.returncode == 2, (wrong, result.stderr)
        assert "Invalid value for '--jobs' / '-j'" in result.stderr and not db.exists(), result.stderr


def test_match_of_a_folder_takes_audio_files_whose_extensions_are_in_capitals(built_index, tmp_path):
    """A folder of queries named `Q0.MP3` and `Q5.Flac` (as a camera or an old system names them) is matched whole."""
    queries = tmp_path / "queries"
    queries.mkdir()
    for seed, start, name in ((0, 2.0, "Q0.MP3"), (5, 11.0, "Q5.Flac")):
        clip_file(tmp_path, seed, start, f"q{seed}{os.path.splitext(name)[1].lower()}").rename(queries / name)
    folder = run_cli("match", "--json", queries, db=built_index, check=True)
    answers = [json.loads(line) for line in folder.stdout.splitlines()]
    assert [a["query"] for a in answers] == [str(queries / "Q0.MP3"), str(queries / "Q5.Flac")], answers
    assert [a["match"]["title"] for a in answers] == ["song0", "song5"]


def test_a_clip_that_matches_nothing_has_no_runner_up_in_json(built_index, tmp_path):
    """With no match there is no runner-up (it is the best of the other recordings than the match's), even where
    `--top` lists candidates."""
    unknown = tmp_path / "unknown.flac"
    write(unknown, rendered(555, 6.0, 22050), 22050)
    plain = json.loads(run_cli("match", "--json", unknown, db=built_index, check=True).stdout)
    assert plain == {"query": str(unknown), "match": None, "runner_up": None}, plain
    top = json.loads(run_cli("match", "--json", "--top", "2", unknown, db=built_index, check=True).stdout)
    assert top["match"] is None and top["runner_up"] is None and len(top["candidates"]) == 2, top


def test_settings_with_another_engine_than_landmark_are_refused_in_one_line(built_index, tmp_path):
    """`--set` and `--settings` change landmark settings: with `--method mert` they are refused in one line."""
    clip = clip_file(tmp_path, 2, 9.0)
    settings = tmp_path / "s.toml"
    settings.write_text("min_score = 5\n")
    for given in (["--set", "min_score=5"], ["--settings", settings]):
        result = run_cli("match", "--method", "mert", *given, clip, db=built_index)
        assert result.returncode == 1 and result.stderr == (
            "lmprint: --settings and --set apply to --method landmark\n"), result.stderr


def test_the_commands_db_wins_over_the_groups_and_the_environments(built_index, library_dir, tmp_path):
    """`--db` after the command names the index read, whatever `--db` before it or $LMPRINT_DB name."""
    one = tmp_path / "one.db"
    run_cli("add", library_dir / "song1.flac", db=one, check=True)
    for before, env in (([], {"LMPRINT_DB": str(built_index)}), (["--db", str(built_index)], None)):
        listed = run_cli(*before, "list", "--json", "--db", one, env=env, check=True)
        assert [json.loads(line)["title"] for line in listed.stdout.splitlines()] == ["song1"], (before, env)
    from_env = run_cli("list", "--json", env={"LMPRINT_DB": str(one)}, check=True)  # and $LMPRINT_DB alone is read
    assert [json.loads(line)["title"] for line in from_env.stdout.splitlines()] == ["song1"]


def test_stats_json_figures_add_up_over_the_songs(built_index):
    """`stats --json`'s duration is the songs' total, and its storage per song and per second of audio are the
    file's bytes over those."""
    stats = json.loads(run_cli("stats", "--json", db=built_index, check=True).stdout)
    songs = [json.loads(line) for line in run_cli("list", "--json", db=built_index, check=True).stdout.splitlines()]
    assert stats["songs"] == len(songs) == len(FORMATS)
    assert stats["duration_s"] == round(sum(song["duration_s"] for song in songs), 1) == 240.0, stats
    assert stats["file_bytes_per_song"] == round(stats["file_bytes"] / stats["songs"], 1)
    assert stats["file_bytes_per_audio_s"] == round(stats["file_bytes"] / stats["duration_s"], 1)


def test_remove_of_a_song_and_a_name_of_none_removes_the_song_and_exits_one(built_index, tmp_path):
    """`remove ID NOSUCH`: the song named is removed and said, the other name is said on standard error, and the
    exit status is 1 (a name was not removed)."""
    db = tmp_path / "copy.db"
    shutil.copy(built_index, db)
    result = run_cli("remove", "3", "no-such-song", db=db)
    assert result.returncode == 1, result.stderr
    assert result.stderr == "lmprint: no-such-song: no such song in the index\n", result.stderr
    assert result.stdout.startswith("removed 3\t") and result.stdout.count("\n") == 1, result.stdout
    assert [song["id"] for song in listed_songs(db)] == [
        1, 2, 4, 5, 6]


def test_add_says_how_many_seconds_of_audio_it_added(library_dir, tmp_path):
    """`add`'s summary gives the seconds of audio the batch added: every new song's, none for a re-add."""
    db = tmp_path / "index.db"
    first = run_cli("add", "--jobs", "1", library_dir, db=db, check=True).stderr.splitlines()[-1]
    assert re.match(rf"added {len(FORMATS)}, skipped 0 \(already indexed\), failed 0 \(240 s of audio in ",
                    first), first
    again = run_cli("add", library_dir, db=db, check=True).stderr.splitlines()[-1]
    assert re.match(rf"added 0, skipped {len(FORMATS)} \(already indexed\), failed 0 \(0 s of audio in ", again), again


def test_list_json_gives_every_field_of_a_song_and_its_copies_sorted(library_dir, tmp_path):
    """`list --json` gives each song's id, path, title, duration, content hash, hash count and time added, and its
    copies' paths sorted, whatever order they were added in; the hash counts add up to `stats`' hashes."""
    music = laid_out(tmp_path / "music", library_dir, {"a.ogg": "song2.ogg", "z.ogg": "song2.ogg", "b.mp3": "song3.mp3"})
    db = tmp_path / "index.db"
    assert "copies 1" in run_cli("add", music, db=db, check=True).stderr
    shutil.copy(library_dir / "song2.ogg", music / "m.ogg")  # a copy recorded later, sorting between the two
    assert "copies 1" in run_cli("add", music, db=db, check=True).stderr
    songs = {song["path"]: song for song in listed_songs(db)}
    song = songs[str(music / "a.ogg")]
    assert set(song) == {"id", "path", "title", "duration_s", "content_sha1", "n_hashes", "added_at", "copies"}
    assert song["copies"] == [str(music / "m.ogg"), str(music / "z.ogg")], song["copies"]
    stats = json.loads(run_cli("stats", "--json", db=db, check=True).stdout)
    assert all(s["n_hashes"] > 0 for s in songs.values()) and sum(s["n_hashes"] for s in songs.values()) == \
        stats["hashes"], (songs, stats)


def test_prune_refuses_when_every_songs_own_file_is_gone_though_a_copy_of_one_is_there(library_dir, tmp_path):
    """Every indexed song's own file gone reads as a drive not mounted even where a copy of one of them is still
    there elsewhere: `prune` refuses without --force, moves and removes nothing; --force does both."""
    drive = laid_out(tmp_path / "usb", library_dir, {"one.flac": "song1.flac", "two.ogg": "song2.ogg"})
    elsewhere = laid_out(tmp_path / "internal", library_dir, {"one (copy).flac": "song1.flac"})
    db = tmp_path / "index.db"
    assert "copies 1" in run_cli("add", drive, elsewhere, db=db, check=True).stderr
    for name in ("one.flac", "two.ogg"):
        (drive / name).unlink()
    (drive / "cover.jpg").write_bytes(b"x")  # the folder is there and not empty: the files alone are gone
    refused = run_cli("prune", db=db)
    assert refused.returncode == 1 and refused.stdout == "" and refused.stderr == (
        "lmprint: the files of all 2 indexed songs are gone (is the drive mounted?): nothing removed; `lmprint prune "
        "--force` removes them all\n"), refused.stderr
    listed = sorted(song["path"] for song in listed_songs(db))
    assert listed == [str(drive / "one.flac"), str(drive / "two.ogg")]
    forced = run_cli("prune", "--force", db=db, check=True)
    assert forced.stdout.startswith("moved ") and "removed" in forced.stdout, forced.stdout
    assert [song["path"] for song in listed_songs(db)] == [
        str(elsewhere / "one (copy).flac")]


def test_a_copy_overwritten_with_other_music_is_no_longer_listed_as_the_songs_copy(library_dir, tmp_path):
    """A recorded copy whose file now holds other music is indexed as that music's song and forgotten as the old
    song's copy: `list --json` gives each file once, under the song it holds."""
    music = laid_out(tmp_path / "music", library_dir, {"a.ogg": "song2.ogg", "b.ogg": "song2.ogg"})
    db = tmp_path / "index.db"
    assert "copies 1" in run_cli("add", music, db=db, check=True).stderr
    shutil.copy(library_dir / "song3.mp3", music / "b.ogg")  # the copy holds other music now
    again = run_cli("add", music, db=db, check=True)
    assert "added 1, skipped 1 (already indexed), failed 0 (" in again.stderr, again.stderr
    songs = {song["path"]: song for song in listed_songs(db)}
    assert sorted(songs) == [str(music / "a.ogg"), str(music / "b.ogg")]
    assert songs[str(music / "a.ogg")]["copies"] == [] and songs[str(music / "b.ogg")]["copies"] == [], songs
    assert run_cli("dedup", db=db, check=True).stdout == ""


def test_top_refuses_a_negative_count_as_a_usage_error(built_index, tmp_path):
    """`match --top -1` is a usage error (exit 2), not a list of every candidate but the last."""
    clip = clip_file(tmp_path, 2, 9.0)
    result = run_cli("match", "--json", "--top", "-1", clip, db=built_index)
    assert result.returncode == 2 and "Invalid value for '--top'" in result.stderr and result.stdout == "", result


def test_remove_of_an_id_that_names_no_song_gets_no_hash_prefix_hint(built_index, tmp_path):
    """A number of four to seven digits that names no song is an id, said to name none; only a short hexadecimal
    prefix with a letter gets the hint that a content hash prefix needs 8 digits."""
    db = tmp_path / "copy.db"
    shutil.copy(built_index, db)
    for missing in ("1234", "9999999"):
        result = run_cli("remove", missing, db=db)
        assert result.returncode == 1 and result.stderr == f"lmprint: {missing}: no such song in the index\n", result
    short = run_cli("remove", "abcdef1", db=db)
    assert short.returncode == 1 and short.stderr == ("lmprint: abcdef1: no such song in the index (a content hash "
                                                      "prefix needs 8 digits or more)\n"), short.stderr


def _both_engines(built_index, tmp_path):
    """A copy of the landmark index with a (stand-in) MERT codes table beside it: a file both engines hold."""
    db = tmp_path / "both.db"
    shutil.copy(built_index, db)
    with sqlite3.connect(db) as connection:
        connection.execute("CREATE TABLE mert_codes (song_id INTEGER PRIMARY KEY, codes BLOB)")
    return db


class _Fake:
    """Stands in for an engine: records which one was opened, and answers stats and remove."""

    def __init__(self, name, opened):
        self.name = name
        opened.append(name)

    def stats(self):
        return {"engine": self.name}

    def remove(self, songs, on_removed=None):
        ids = [song.id for song in songs]
        if on_removed:
            on_removed(ids)
        return ids

    def close(self):
        pass


@pytest.fixture
def opened(monkeypatch):
    """The engines `open_method` was asked for, in order (each a `_Fake`)."""
    import lmprint.cli

    names = []
    monkeypatch.setattr(lmprint.cli, "open_method", lambda db, method, **kwargs: _Fake(method, names))
    return names


def test_engines_in_names_landmark_first_then_mert(built_index, tmp_path):
    """engines_in lists the engines a file holds, landmark before mert, and only landmark for a landmark index."""
    from lmprint.cli import engines_in

    assert engines_in(str(built_index)) == ["landmark"]
    assert engines_in(str(_both_engines(built_index, tmp_path))) == ["landmark", "mert"]


def test_stats_of_both_engines_puts_landmark_on_top_and_mert_under_its_name(built_index, tmp_path, opened):
    """`stats` on a file both engines hold gives landmark's figures at the top and mert's under "mert"."""
    from tests.conftest import run_cli

    figures = json.loads(run_cli("stats", "--json", db=_both_engines(built_index, tmp_path), check=True).stdout)
    assert opened == ["landmark", "mert"]
    assert figures["engine"] == "landmark" and figures["mert"] == {"engine": "mert"}


def test_remove_in_a_file_both_engines_hold_goes_through_the_landmark_engine(built_index, tmp_path, opened):
    """`remove` on a file with landmark postings removes through the landmark engine (it alone drops postings)."""
    from tests.conftest import run_cli

    result = run_cli("remove", "song0", db=_both_engines(built_index, tmp_path), check=True)
    assert opened == ["landmark"] and result.stdout.startswith("removed ")


def test_list_recordings_of_a_file_without_landmarks_is_refused_in_one_line(tmp_path):
    """`list --recordings` on an index with no landmark data says so in one line rather than opening landmark."""
    from lmprint.catalogue import Catalogue
    from tests.conftest import run_cli

    db = tmp_path / "catalogue-only.db"
    Catalogue(db, create=True).close()
    result = run_cli("list", "--recordings", db=db)
    assert result.returncode == 1
    assert result.stderr.endswith(f"lmprint: {db} has no landmark index: recordings are found by comparing "
                                  "landmarks\n"), result.stderr


def _mert_only(tmp_path):
    """A catalogue with a (stand-in) MERT codes table and no landmark data: a file only the MERT engine holds."""
    from lmprint.catalogue import Catalogue

    db = tmp_path / "mert-only.db"
    Catalogue(db, create=True).close()
    with sqlite3.connect(db) as connection:
        connection.execute("CREATE TABLE mert_codes (song_id INTEGER PRIMARY KEY, codes BLOB)")
    return db


def test_a_query_through_an_engine_the_file_lacks_names_the_engine_that_holds_it_and_changes_nothing(
        tmp_path, library_dir):
    """`match` (landmark by default) on a file only MERT holds is refused in one line that names the engine to
    ask, and leaves the file as it was: no landmark tables made."""
    from lmprint.cli import engines_in
    from tests.conftest import run_cli

    mert_only = _mert_only(tmp_path)
    result = run_cli("match", library_dir / "song0.wav", db=mert_only)
    assert result.returncode == 1 and result.stderr == (
        f"lmprint: {mert_only} holds MERT codes, not landmark fingerprints: add --method mert, or index it with "
        "`lmprint add` first\n"), result.stderr
    assert engines_in(str(mert_only)) == ["mert"]


@pytest.mark.slow
def test_a_mert_query_on_a_landmark_index_says_to_leave_out_the_method_and_changes_nothing(
        built_index, tmp_path, library_dir, tiny_model_dir):
    from lmprint.cli import engines_in
    from tests.conftest import run_cli

    landmark_only = tmp_path / "landmark.db"
    shutil.copy(built_index, landmark_only)
    result = run_cli("match", "--method", "mert", "--model", tiny_model_dir, "--device", "cpu",
                     library_dir / "song0.wav", db=landmark_only)
    assert result.returncode == 1 and result.stderr == (
        f"lmprint: {landmark_only} holds landmark fingerprints, not MERT codes: leave out --method mert, or index it "
        "with `lmprint add --method mert` first\n"), result.stderr
    assert engines_in(str(landmark_only)) == ["landmark"]


def test_dedup_of_a_file_without_landmarks_is_refused_in_one_line(tmp_path):
    from tests.conftest import run_cli

    db = _mert_only(tmp_path)
    result = run_cli("dedup", db=db)
    assert result.returncode == 1 and result.stderr == f"lmprint: {db} has no landmark index: dedup compares landmarks\n"



def test_a_song_deleted_beside_a_missing_folder_whose_name_begins_its_folders_is_pruned(library_dir,
                                                                                                  tmp_path):
    """`usb` not mounted keeps its songs; `usb2` is another folder, though its name begins with `usb`: its song
    deleted is removed, not kept as one of the missing folder's."""
    db = tmp_path / "index.db"
    for drive, names in (("usb", ("song0.wav",)), ("usb2", ("song1.flac", "song2.ogg"))):
        run_cli("add", laid_out(tmp_path / drive, library_dir, {name: name for name in names}), db=db, check=True)
    deleted = tmp_path / "usb2" / "song1.flac"
    [song_id] = [song["id"] for song in listed_songs(db) if song["path"] == str(deleted)]
    deleted.unlink()
    shutil.rmtree(tmp_path / "usb")  # not mounted
    pruned = run_cli("prune", db=db)
    assert pruned.returncode == 1, pruned.stderr  # a folder missing: its song kept, said
    assert pruned.stdout == f"removed {song_id}\t{deleted}\n", pruned.stdout
    assert pruned.stderr.splitlines() == [
        f"lmprint: {tmp_path / 'usb'} is missing or empty (is the drive mounted?): its 1 song kept; `lmprint prune "
        "--force` removes them", "1 song whose file is gone, 1 more kept (their folder is missing)"], pruned.stderr
    assert sorted(song["path"] for song in listed_songs(db)) == [str(tmp_path / "usb" / "song0.wav"),
                                                            str(tmp_path / "usb2" / "song2.ogg")]


def test_a_folder_of_two_songs_one_of_them_held_by_a_copy_outside_is_refused_without_all(library_dir,
                                                                                                   tmp_path):
    """A folder of two songs, one of which a copy outside would name: two songs the index changes for, so
    `remove FOLDER` is refused without --all, and nothing changes."""
    music = laid_out(tmp_path / "music", library_dir, {
        "old/one.flac": "song1.flac", "old/two.ogg": "song2.ogg",
        "other/two.ogg": "song2.ogg"})  # walked after: the copy
    db = tmp_path / "index.db"
    assert "copies 1" in run_cli("add", music, db=db, check=True).stderr
    before = listed_songs(db)
    refused = run_cli("remove", music / "old", db=db)
    assert refused.returncode == 1 and refused.stdout == "", refused.stdout
    assert refused.stderr == f"lmprint: {music / 'old'}: a folder of 2 songs; give --all to remove them all\n"
    assert listed_songs(db) == before


def test_eight_digits_from_inside_a_content_hash_name_no_song(library_dir, tmp_path):
    """A content hash names a song by its first digits, not by digits from its middle."""
    db = tmp_path / "index.db"
    run_cli("add", library_dir, db=db, check=True)
    songs = listed_songs(db)
    middle = songs[0]["content_sha1"][6:14]
    assert not any(song["content_sha1"].startswith(middle) for song in songs)
    result = run_cli("remove", middle, db=db)
    assert result.returncode == 1 and result.stdout == "", result.stdout
    assert result.stderr == f"lmprint: {middle}: no such song in the index\n", result.stderr
    assert listed_songs(db) == songs
    prefix = run_cli("remove", "--dry-run", songs[0]["content_sha1"][:8], db=db, check=True)
    assert prefix.stdout == f"would remove {songs[0]['id']}\t{songs[0]['path']}\n"


def test_a_copy_whose_songs_own_file_is_deleted_takes_over_when_added_again(library_dir, tmp_path):
    """The song's own file deleted, `add` of its copy's folder moves the song to the copy (`moved OLD -> COPY`):
    the song names a file that is there, and the copy is no longer a second file of it."""
    laid_out(tmp_path, library_dir, {"a/one.flac": "song1.flac", "b/one.flac": "song1.flac"})
    db = tmp_path / "index.db"
    assert "copies 1" in run_cli("add", tmp_path / "a", tmp_path / "b", db=db, check=True).stderr
    (tmp_path / "a" / "one.flac").unlink()
    again = run_cli("add", tmp_path / "b", db=db, check=True).stderr.splitlines()
    assert again[:-1] == [f"moved {tmp_path / 'a' / 'one.flac'} -> {tmp_path / 'b' / 'one.flac'}"], again
    assert again[-1].startswith("added 0, skipped 0 (already indexed), failed 0, moved 1 ("), again
    [song] = listed_songs(db)
    assert song["path"] == str(tmp_path / "b" / "one.flac") and song["copies"] == [], song
    pruned = run_cli("prune", db=db, check=True)
    assert pruned.stdout == "" and pruned.stderr == "0 songs whose files are gone\n", pruned.stderr


def test_a_song_added_through_a_link_stays_when_another_link_reaches_its_file(library_dir, tmp_path):
    """A song added through a linked folder takes its file's own path when `add` meets that path; met through
    another link to the same folder, it is the same file, skipped: no move from one link to another."""
    real = laid_out(tmp_path / "real", library_dir, {"zero.wav": "song0.wav"})
    for link in ("favourites", "playlist"):
        (tmp_path / link).symlink_to(real)
    db = tmp_path / "index.db"
    run_cli("add", tmp_path / "favourites", db=db, check=True)
    again = run_cli("add", tmp_path / "playlist", db=db, check=True).stderr
    assert "moved" not in again and again.splitlines()[-1].startswith(
        "added 0, skipped 1 (already indexed), failed 0 ("), again
    assert [song["path"] for song in listed_songs(db)] == [str(tmp_path / "favourites" / "zero.wav")]
    own = run_cli("add", real, db=db, check=True).stderr  # its own path: the song follows it there
    assert f"moved {tmp_path / 'favourites' / 'zero.wav'} -> {real / 'zero.wav'}" in own, own


def test_a_copy_named_with_its_song_is_said_forgotten_once(library_dir, tmp_path):
    """`remove COPY SONG`: the copy is forgotten, said once, and the song removed; the copy is not said again
    among the song's copies that go with it."""
    laid_out(tmp_path, library_dir, {"a/one.flac": "song1.flac", "b/one.flac": "song1.flac"})
    db = tmp_path / "index.db"
    assert "copies 1" in run_cli("add", tmp_path / "a", tmp_path / "b", db=db, check=True).stderr
    [song] = listed_songs(db)
    copy, own = tmp_path / "b" / "one.flac", tmp_path / "a" / "one.flac"
    dry = run_cli("remove", "--dry-run", copy, str(song["id"]), db=db, check=True)
    assert dry.stdout == f"would forget copy\t{copy}\nwould remove {song['id']}\t{own}\n", dry.stdout
    done = run_cli("remove", copy, str(song["id"]), db=db, check=True)
    assert done.stdout == f"forgot copy\t{copy}\nremoved {song['id']}\t{own}\n", done.stdout
    assert listed_songs(db) == []


def test_prune_of_an_index_whose_songs_were_all_removed_removes_nothing_and_exits_zero(library_dir,
                                                                                                 tmp_path):
    """No song left, no song's file is gone: `prune` (and its dry run) says 0 and exits 0, not "all of them gone"."""
    db = tmp_path / "index.db"
    run_cli("add", library_dir / "song0.wav", db=db, check=True)
    run_cli("remove", str(listed_songs(db)[0]["id"]), db=db, check=True)
    pruned = run_cli("prune", db=db)
    assert pruned.returncode == 0 and pruned.stdout == "", pruned.stderr
    assert pruned.stderr == "0 songs whose files are gone\n", pruned.stderr
    dry = run_cli("prune", "--dry-run", db=db)
    assert dry.returncode == 0 and dry.stderr == "0 songs whose files are gone (dry run: none removed)\n", dry.stderr


def test_a_file_not_indexed_that_holds_an_indexed_songs_bytes_names_no_song(library_dir, tmp_path):
    """`remove FILE` names the song of that file (by its path, or its real path through links), not any song of the
    same bytes: a copy that `add` never saw is no song of the index."""
    laid_out(tmp_path / "lib", library_dir, {"zero.wav": "song0.wav"})
    (tmp_path / "elsewhere").mkdir()
    db = tmp_path / "index.db"
    run_cli("add", tmp_path / "lib", db=db, check=True)
    before = listed_songs(db)
    for name in ("zero.wav", "other name.wav"):  # the same name, and another
        stray = tmp_path / "elsewhere" / name
        shutil.copy(library_dir / "song0.wav", stray)
        result = run_cli("remove", stray, db=db)
        assert result.returncode == 1 and result.stdout == "", result.stdout
        assert result.stderr == f"lmprint: {stray}: no such song in the index\n", result.stderr
    assert listed_songs(db) == before


def test_a_song_whose_copy_is_forgotten_moves_only_to_a_copy_that_holds_its_bytes(library_dir, tmp_path):
    """`remove COPY FOLDER`: the song under the folder would be named by that copy, forgotten now; its other copy
    holds other music since, so the song goes (with that copy) rather than naming a file of other music."""
    music = laid_out(tmp_path / "music", library_dir, {f"{folder}/x.mp3": "song3.mp3" for folder in "ABC"})
    db = tmp_path / "index.db"
    assert "copies 2" in run_cli("add", music, db=db, check=True).stderr
    [song] = listed_songs(db)
    shutil.copy(library_dir / "song4.m4a", music / "C" / "x.mp3")  # other music, not added again
    removed = run_cli("remove", music / "B" / "x.mp3", music / "A", db=db, check=True)
    assert removed.stdout == (f"forgot copy\t{music / 'B' / 'x.mp3'}\nremoved {song['id']}\t{music / 'A' / 'x.mp3'}\n"
                              f"forgot copy\t{music / 'C' / 'x.mp3'}\n"), removed.stdout
    assert listed_songs(db) == []


def test_cli_reference_is_current():
    """README.md's command table and docs/cli.md are generated from the commands' help (cog): a help text changed
    without `cog -r README.md docs/cli.md` fails here, not only in CI's last step."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    checked = subprocess.run([sys.executable, "-m", "cogapp", "--check", "README.md", "docs/cli.md"], cwd=root,
                             capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
