"""What a real library and real use throw at `lmprint`: hostile files, kill -9, concurrent processes, damaged
index files, property tests of what parses or packs, and bounded resources."""

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np
import pytest
import soxr
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.audio_io import write
from landmark import Index, audio
from landmark.batch import fingerprint_song
from lmprint.catalogue import Catalogue
from lmprint.errors import AudioError, IndexFileError, IndexLocked, LmprintError
from tests.conftest import (
    SYNTH_RATE,
    all_gone,
    children_of,
    laid_out,
    listed_songs,
    read_only_folder,
    rendered,
    run_cli,
    run_cli_process,
    write_surround_flac,
)


@pytest.fixture(scope="module")
def many_songs(tmp_path_factory):
    """Sixteen 45 s songs: enough work that `add` can be interrupted or overlapped halfway."""
    folder = tmp_path_factory.mktemp("many")
    for seed in range(200, 216):
        write(folder / f"track {seed} é.flac", rendered(seed, 45.0, SYNTH_RATE), SYNTH_RATE)
    return folder


SMALL_SEALING = ("import landmark.store as store; store.ONE_HASH_TAIL_FROM, store.TAIL_POSTINGS, store.MERGE_RATIO = "
                 "4000, 2000, 2; from lmprint.cli import main; main()")
"""`lmprint` with segments sealed and merged at sizes these songs reach (16 songs of about 1,600 postings)."""


def lmprint_process(*args, db, sealing=False):
    start = [sys.executable, "-c", SMALL_SEALING] if sealing else [sys.executable, "-m", "lmprint"]
    return subprocess.Popen([*start, "--db", str(db), *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def song_count(db) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            return conn.execute("SELECT COUNT(*) FROM songs").fetchone()[0]
    except sqlite3.Error:
        return 0


def postings_per_song(db) -> dict[int, int]:
    """Count every song's postings by decoding the whole tail and every listed segment."""
    from landmark import Index

    with Index(db) as index:
        _, timeline_frames = index.postings._tail_range(0, 1 << 21, *index.postings._layout())
        timeline_frames = np.concatenate([timeline_frames, *(segment.hash_range(0, 1 << 21)[1]
                                                             for segment in index.postings._segments())])
        inside, songs, _ = index.postings.timeline().locate(timeline_frames)
    counts = {int(song): int(n) for song, n in zip(*np.unique(songs, return_counts=True))}
    if not inside.all():
        counts[-1] = int((~inside).sum())  # postings of no song
    return counts


def assert_consistent(db) -> list[dict]:
    """No half songs: each song's postings are all there, and nothing belongs to a song that is not."""
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    songs = {row[0]: row[1] for row in conn.execute("SELECT id, n_hashes FROM songs")}
    hashes = [row[0] for row in conn.execute("SELECT content_sha1 FROM songs")]
    conn.close()
    assert len(hashes) == len(set(hashes)), "a song was indexed twice"
    assert postings_per_song(db) == {song: n for song, n in songs.items() if n}
    listed = listed_songs(db)
    return listed


# --- 1. hostile files --------------------------------------------------------------------------------------------

def test_a_hostile_library_indexes_every_good_song_and_names_every_bad_file(tmp_path, library_dir):
    lib = tmp_path / "library with spaces"
    (lib / "sub dir ünïcødé").mkdir(parents=True)
    good = {"good one.flac": 1, "sub dir ünïcødé/日本語の歌.ogg": 2, "emoji 🎵.mp3": 3}
    for name, seed in good.items():
        write(lib / name, rendered(seed, 20.0, SYNTH_RATE), SYNTH_RATE)
    (lib / "empty.mp3").write_bytes(b"")
    (lib / "random.mp3").write_bytes(np.random.default_rng(0).bytes(30_000))
    (lib / "text.wav").write_text("RIFF? no, just text\n" * 40)
    ogg = (lib / "sub dir ünïcødé/日本語の歌.ogg").read_bytes()
    (lib / "truncated.ogg").write_bytes(ogg[:2000])
    mp3 = (lib / "emoji 🎵.mp3").read_bytes()
    (lib / "truncated.mp3").write_bytes(mp3[:1500])
    write(lib / "short.flac", rendered(4, 0.3, SYNTH_RATE), SYNTH_RATE)
    write(lib / "silence.flac", np.zeros(SYNTH_RATE * 30, np.float32), SYNTH_RATE)
    write_surround_flac(lib / "surround 96k.flac", rendered(5, 12.0, 96000), 96000)
    os.symlink(lib / "good one.flac", lib / "link to good.flac")  # same content: indexed once
    os.symlink(lib, lib / "sub dir ünïcødé" / "loop")  # a symlink loop
    os.symlink(lib / "nowhere.flac", lib / "dangling.flac")
    db = tmp_path / "index.db"
    result = run_cli("add", lib, db=db)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    stderr = result.stderr
    for bad in ("empty.mp3", "random.mp3", "text.wav", "short.flac", "silence.flac", "dangling.flac"):
        line = next((l for l in stderr.splitlines() if bad in l), None)
        assert line and line.startswith("lmprint: ") and ": " in line[9:], (bad, stderr)
    listed = assert_consistent(db)
    titles = {song["title"] for song in listed}
    assert {"good one", "日本語の歌", "emoji 🎵", "surround 96k"} <= titles
    assert sum(song["title"] == "good one" for song in listed) == 1  # the symlink did not add it twice
    # a truncated file either yields what it holds (a warning may say so) or fails, said; it never stops the batch
    for cut in ("truncated.ogg", "truncated.mp3"):
        failed = [line for line in stderr.splitlines() if line.startswith("lmprint: ") and cut in line
                  and ": warning: " not in line]
        assert bool(failed) != (cut.removesuffix(cut[-4:]) in titles), (cut, stderr)
    summary = stderr.strip().splitlines()[-1]
    failures = [line for line in stderr.splitlines()[:-1] if ": warning: " not in line]
    assert summary.startswith(f"added {len(listed)}, skipped 1 (already indexed), failed {len(failures)} ("), stderr


def test_a_walk_passes_over_hidden_files_and_links_up_its_own_tree(tmp_path):
    """A Mac's resource forks (`._song.mp3`), hidden folders and a link to a folder above (`loop -> ..`, which
    would walk everything there, and file the songs named next under the link) are passed over; a hidden file
    named explicitly, and a link to a folder elsewhere, are taken."""
    from lmprint.files import find_audio_files

    (tmp_path / "music" / "album").mkdir(parents=True)
    (tmp_path / "music" / ".Trash").mkdir()
    (tmp_path / "elsewhere").mkdir()
    for name in ("music/album/song.mp3", "music/album/._song.mp3", "music/.Trash/old.mp3", "elsewhere/other.mp3",
                 "outside.mp3", "music/album/...Ready for It.mp3"):
        (tmp_path / name).write_bytes(b"")
    os.symlink("..", tmp_path / "music" / "album" / "up")
    os.symlink(tmp_path, tmp_path / "music" / "root")
    os.symlink(tmp_path / "elsewhere", tmp_path / "music" / "linked")
    found = [path for path, _ in find_audio_files([tmp_path / "music", tmp_path / "music/album/._song.mp3"])]
    assert found == [str(tmp_path / p) for p in ("music/album/...Ready for It.mp3", "music/album/song.mp3",
                                                 "music/album/._song.mp3", "music/linked/other.mp3")], found

    # a link to a folder that the walk also reaches itself, met first ("A favourites" sorts before "Z real"):
    # the files are found at their own paths, which outlive the link
    (tmp_path / "lib" / "Z real").mkdir(parents=True)
    (tmp_path / "lib" / "Z real" / "song.flac").write_bytes(b"")
    (tmp_path / "lib" / "B").mkdir()
    os.symlink("../Z real", tmp_path / "lib" / "B" / "A favourites")
    os.symlink("../Z real/song.flac", tmp_path / "lib" / "B" / "linked.flac")
    assert list(find_audio_files([tmp_path / "lib"])) == [
        (str(tmp_path / "lib" / "Z real" / "song.flac"), None), (str(tmp_path / "lib" / "B" / "linked.flac"), None)]
    # the same, the link named first on the command line (`add favourites lib`), or a folder named through it:
    # it is followed last too
    (tmp_path / "lib" / "Z real" / "disc 2").mkdir()
    (tmp_path / "lib" / "Z real" / "disc 2" / "other.flac").write_bytes(b"")
    os.symlink(tmp_path, tmp_path / "home")  # a library under a linked home: every path named differs from its own
    for lib in (tmp_path / "lib", tmp_path / "home" / "lib"):
        for favourites in (lib / "B" / "A favourites", lib / "B" / "A favourites" / "disc 2"):
            assert [path for path, _ in find_audio_files([favourites, lib / "Z real"])] == [
                str(lib / "Z real" / name) for name in ("disc 2/other.flac", "song.flac")], (lib, favourites)

    # a pipe (its open would wait for a writer) and a link to a device (never ending) in a folder are named, not
    # handed on to be read; a pipe named explicitly is read (`lmprint match <(ffmpeg …)`)
    os.mkfifo(tmp_path / "elsewhere" / "stray.ogg")
    os.symlink("/dev/zero", tmp_path / "elsewhere" / "zero.mp3")
    found = dict(find_audio_files([tmp_path / "elsewhere"]))
    assert found == {str(tmp_path / "elsewhere" / name): error for name, error in (
        ("other.mp3", None), ("stray.ogg", "not a regular file (a pipe or a device)"),
        ("zero.mp3", "not a regular file (a pipe or a device)"))}, found
    assert list(find_audio_files([tmp_path / "elsewhere" / "stray.ogg"])) == [
        (str(tmp_path / "elsewhere" / "stray.ogg"), None)]
    # folders named one inside the other, neither through a link: walked in the order named
    (tmp_path / "lib" / "C.flac").write_bytes(b"")
    assert [path for path, _ in find_audio_files([tmp_path / "lib" / "Z real", tmp_path / "lib"])] == [
        str(tmp_path / "lib" / p) for p in ("Z real/disc 2/other.flac", "Z real/song.flac", "C.flac", "B/linked.flac")]
    # a phone's recordings are audio too: a folder of them is walked
    (tmp_path / "phone").mkdir()
    for name in ("voice.3gp", "memo.amr", "notes.txt"):
        (tmp_path / "phone" / name).write_bytes(b"")
    assert [path for path, _ in find_audio_files([tmp_path / "phone"])] == [
        str(tmp_path / "phone" / name) for name in ("memo.amr", "voice.3gp")]
    long_name = str(tmp_path / ("a" * 300 + ".mp3"))  # longer than a file system's names
    assert list(find_audio_files([long_name, tmp_path / "gone.mp3"])) == [
        (long_name, "file name too long"), (str(tmp_path / "gone.mp3"), "no such file")]


def test_a_folder_made_while_the_paths_named_are_read_is_walked(tmp_path, monkeypatch):
    """A path named that is no folder when the folders named are listed, and one when it is walked (made meanwhile),
    is walked like the others; it ended the generator with a StopIteration, a traceback."""
    from lmprint import files

    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "song.mp3").write_bytes(b"")
    is_dir, asked = os.path.isdir, []

    def made_after_the_first_look(path) -> bool:
        asked.append(path)
        return is_dir(path) and len(asked) > 1

    monkeypatch.setattr(files.os.path, "isdir", made_after_the_first_look)
    assert list(files.find_audio_files([tmp_path / "new"])) == [(str(tmp_path / "new" / "song.mp3"), None)]


def bound_by_file_modes() -> list[str]:
    """A command prefix under which file permissions hold: none for a user; for root, which reads any file,
    `setpriv` dropping its capabilities to override them (skipped where it cannot)."""
    if os.geteuid() != 0:
        return []
    prefix = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]
    with tempfile.NamedTemporaryFile() as locked:
        os.chmod(locked.name, 0)
        try:
            probe = subprocess.run([*prefix, sys.executable, "-c", f"open({locked.name!r}).read()"],
                                   capture_output=True, text=True, timeout=60)
        except OSError:
            pytest.skip("root reads files whatever their permissions, and setpriv is not there")
    if "PermissionError" not in probe.stderr:
        pytest.skip("root reads files whatever their permissions, and cannot drop that here")
    return prefix


def test_an_unreadable_file_is_named(tmp_path, library_dir):
    """A file the user may not read: one line naming it, and the rest of the batch goes on (as root, run with the
    capability to read any file dropped)."""
    prefix = bound_by_file_modes()
    locked = tmp_path / "locked.flac"
    write(locked, rendered(1, 5.0, SYNTH_RATE), SYNTH_RATE)
    locked.chmod(0)
    good = tmp_path / "good.flac"
    write(good, rendered(2, 20.0, SYNTH_RATE), SYNTH_RATE)

    def lmprint(*args):
        return subprocess.run([*prefix, sys.executable, "-m", "lmprint", "--db", str(tmp_path / "i.db"),
                               *map(str, args)], capture_output=True, text=True, timeout=300)

    result = lmprint("add", locked, good)  # the batch goes on past it
    assert result.returncode == 1 and f"{locked}: permission denied" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert [song["title"] for song in assert_consistent(tmp_path / "i.db")] == ["good"]
    result = lmprint("match", "--json", locked, good)
    assert result.returncode == 1 and "permission denied" in result.stderr, result.stderr
    answers = [json.loads(line) for line in result.stdout.splitlines()]
    assert [answer["query"] for answer in answers] == [str(locked), str(good)]
    assert "permission denied" in answers[0]["error"] and answers[1]["match"]["title"] == "good"


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_output_to_a_full_disk_is_one_line(built_index, library_dir):
    """Results redirected to a file on a full disk (here /dev/full): one line and exit 1, never a traceback (nor
    a second error from the interpreter's flush at exit)."""
    song = sorted(library_dir.iterdir())[0]
    for command in (["list"], ["match", song], ["match", "--json", song]):
        with open("/dev/full", "w") as full:
            result = subprocess.run([sys.executable, "-m", "lmprint", "--db", str(built_index), *map(str, command)],
                                    stdout=full, stderr=subprocess.PIPE, text=True, timeout=120)
        assert result.returncode == 1 and "Traceback" not in result.stderr, (command, result.stderr)
        assert result.stderr.splitlines()[-1] == "lmprint: no space left on device", (command, result.stderr)


def test_pipes_devices_folders_and_a_full_disk_get_one_line_each(tmp_path, library_dir, built_index):
    """Not files to read to their end: a FIFO (opening it would wait for a writer) and an endless device are
    refused, and the batch goes on; a folder without audio among queries is one failed query; a folder as the
    index or as a recording to monitor is one line; a disk that fills during `add` keeps what was indexed."""
    pipe = tmp_path / "pipe.wav"
    os.mkfifo(pipe)
    db = tmp_path / "i.db"
    song0, song1 = sorted(library_dir.iterdir())[:2]
    result = run_cli("add", pipe, "/dev/zero", song0, db=db)
    assert result.returncode == 1 and result.stderr.count("not a regular file") == 2
    assert [song["title"] for song in assert_consistent(db)] == ["song0"]
    (tmp_path / "empty").mkdir()
    result = run_cli("match", "--json", song0, tmp_path / "empty", song1, db=built_index)
    answers = [json.loads(line) for line in result.stdout.splitlines()]
    assert result.returncode == 1 and [a["match"]["title"] for a in (answers[0], answers[2])] == ["song0", "song1"]
    assert answers[1]["error"] == "no audio files in this folder"
    for command, db_path in ((["list"], tmp_path / "empty"), (["monitor", tmp_path / "empty"], built_index)):
        result = run_cli(*command, db=db_path)
        assert result.returncode == 1 and len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr
        assert str(tmp_path / "empty") in result.stderr

    index = Index(db)
    pages = index.catalogue.conn.execute("PRAGMA page_count").fetchone()[0]
    index.catalogue.conn.execute(f"PRAGMA max_page_count={pages}")  # a disk with no room left
    with pytest.raises(IndexFileError, match="full"):
        index.add_fingerprints([fingerprint_song(str(song1), index.fingerprint_settings, 1.0)[1]])
    index.close()
    assert [song["title"] for song in assert_consistent(db)] == ["song0"]


def test_an_index_in_a_read_only_folder_answers_queries_and_refuses_changes_in_one_line(built_index, library_dir,
                                                                                        tmp_path, monkeypatch):
    """Read-only media or a read-only mount: SQLite cannot make its -wal and -shm files beside the index, so the
    file is read as it is (through its log, when one is there with its -shm file): queries are answered, nothing
    is written, and a change is refused in one line."""
    from landmark.segments import folder_of

    media = tmp_path / "media"
    media.mkdir()
    shutil.copy(built_index, media / "i.db")
    if folder_of(built_index).is_dir():
        shutil.copytree(folder_of(built_index), folder_of(media / "i.db"))
    read_only_folder(monkeypatch, media)
    before = sorted(os.listdir(media))
    song = sorted(library_dir.iterdir())[2]
    with Index(media / "i.db") as index:
        assert index.catalogue.read_only
        assert index.match(song).song.path == str(song)
        with pytest.raises(IndexFileError, match="read-only folder .* matched against, not changed"):
            index.remove([1])
    assert sorted(os.listdir(media)) == before  # no -wal, no -shm
    with pytest.raises(IndexFileError, match="matched against, not changed"):
        Index(media / "i.db", create=True)  # as `add` opens it: refused at once
    pytest.importorskip("starlette")
    from lmprint.serve import ServeSettings, create_app

    with pytest.raises(LmprintError, match="--allow-add: .* not changed"):  # at start-up, not a 500 per upload
        create_app(lambda: Index(media / "i.db"), ServeSettings(allow_add=True, token="t"))
    assert sorted(os.listdir(media)) == before
    with Index(media / "i.db") as reader:  # another process, which may write the folder, adds a song meanwhile
        assert reader.match(song).song.path == str(song)
        new_song = tmp_path / "new.flac"
        write(new_song, rendered(77, 20.0, SYNTH_RATE), SYNTH_RATE)
        songs = reader.catalogue.song_count()
        run_cli_process("add", new_song, db=media / "i.db", check=True)
        assert reader.catalogue.song_count() == songs + 1  # opened again: an immutable reader sees nothing
        assert reader.match(new_song).song.path == str(new_song)
    with pytest.raises(IndexFileError, match="cannot create .* read-only"):
        Index(media / "new.db", create=True)
    writer = sqlite3.connect(media / "i.db", isolation_level=None)  # a change still in the log, beside its -shm
    try:
        writer.execute("PRAGMA wal_autocheckpoint=0")
        writer.execute("UPDATE songs SET title = 'renamed in the log' WHERE id = 1")
        assert (media / "i.db-wal").stat().st_size > 0 and (media / "i.db-shm").exists()
        with Index(media / "i.db") as reader:
            assert reader.catalogue.read_only
            assert "renamed in the log" in [song.title for song in reader.catalogue.songs()]
    finally:
        writer.close()
    (media / "i.db-wal").write_bytes(bytes(100))  # a log left there without its -shm file
    with pytest.raises(IndexFileError, match="changes still in its -wal file"):
        Index(media / "i.db")


def test_a_dry_run_of_prune_on_a_read_only_index_exits_as_the_run_would(tmp_path, monkeypatch):
    """`prune --dry-run` says it exits as the run would: on an index in a read-only folder, with a song whose file
    is gone, the run is refused in one line and exits 1, where the dry run listed the song and exited 0."""
    music, media = tmp_path / "music", tmp_path / "media"
    music.mkdir()
    media.mkdir()
    for seed in (1, 2):
        write(music / f"song{seed}.flac", rendered(seed, 15.0, SYNTH_RATE), SYNTH_RATE)
    run_cli("add", music, db=media / "i.db", check=True)
    (music / "song1.flac").unlink()
    read_only_folder(monkeypatch, media)
    run = run_cli("prune", db=media / "i.db")
    assert run.returncode == 1 and "read-only folder" in run.stderr, run.stderr
    dry = run_cli("prune", "--dry-run", db=media / "i.db")
    assert dry.returncode == 1, dry.stderr
    assert f"would remove 1\t{music / 'song1.flac'}" in dry.stdout
    assert "read-only folder" in dry.stderr.splitlines()[-1], dry.stderr
    monkeypatch.undo()  # writable again: the run would go through
    assert run_cli("prune", "--dry-run", db=media / "i.db").returncode == 0


def test_an_empty_log_made_by_another_opener_is_no_change_to_a_read_only_reader(tmp_path, monkeypatch):
    """Another process merely opening the file makes an empty -wal: a read-only reader's read that overlaps it
    holds, where a log with content is a change."""
    media = tmp_path / "media"
    media.mkdir()
    with Catalogue(media / "i.db", create=True) as writer, writer.write():
        writer.add_song("/a.flac", "a", 10.0, "sha-a")
    assert not (media / "i.db-wal").exists()  # closed: the log folded in and gone
    read_only_folder(monkeypatch, media)
    reader = Catalogue(media / "i.db")
    assert reader.immutable
    songs = reader.song_count()
    with reader.snapshot():
        assert reader.song_count() == songs
        (media / "i.db-wal").write_bytes(b"")
    assert reader.song_count() == songs and reader.generation == 0 and reader.immutable
    reader.close()


def test_a_log_file_of_another_user_is_named_with_its_owner(tmp_path, monkeypatch):
    """A -wal or -shm file that another account's reader made is theirs: the refusal says whose, not to chmod it."""
    import pwd

    with Catalogue(tmp_path / "i.db", create=True) as catalogue:
        side = str(tmp_path / "i.db-wal")  # SQLite's, made as the file opened
        assert os.path.exists(side)
        writable = os.access
        monkeypatch.setattr(os, "access", lambda path, mode, **kw: os.fspath(path) != side and writable(path, mode))
        monkeypatch.setattr(os, "geteuid", lambda: os.stat(side).st_uid + 1)  # this process is another user
        message = catalogue.read_only_message()
        owner = pwd.getpwuid(os.stat(side).st_uid).pw_name
    assert message.startswith(f"{side} belongs to user {owner}") and "chmod u+w" not in message, message


def test_a_read_only_log_left_by_a_reader_is_named_when_a_change_is_refused(built_index, library_dir, tmp_path):
    """A reader of an index whose file was read-only leaves its -shm (and -wal) file read-only too, as SQLite makes
    them. The file made writable again, a change is refused because of them: the refusal names the file to make
    writable, not the index, which is writable (as root, run without the capability to write any file)."""
    from landmark.segments import folder_of

    prefix = bound_by_file_modes()
    shutil.copy(built_index, tmp_path / "i.db")
    if folder_of(built_index).is_dir():
        shutil.copytree(folder_of(built_index), folder_of(tmp_path / "i.db"))

    def lmprint(*args):
        return subprocess.run([*prefix, sys.executable, "-m", "lmprint", "--db", str(tmp_path / "i.db"),
                               *map(str, args)], capture_output=True, text=True, timeout=300)

    (tmp_path / "i.db").chmod(0o444)
    assert lmprint("match", sorted(library_dir.iterdir())[0]).returncode == 0
    (tmp_path / "i.db").chmod(0o644)
    left = [side for side in ("i.db-wal", "i.db-shm") if (tmp_path / side).exists()
            and not os.stat(tmp_path / side).st_mode & 0o200]
    if not left:
        pytest.skip("this SQLite leaves no read-only -wal or -shm file")
    refused = lmprint("remove", "1")
    assert refused.returncode == 1 and any(f"{tmp_path / side} is read-only" in refused.stderr for side in left), (
        refused.stderr)
    assert "chmod u+w" in refused.stderr and len(refused.stderr.splitlines()) == 1
    for side in left:
        (tmp_path / side).chmod(0o644)
    assert lmprint("remove", "1").returncode == 0


def test_a_read_only_reader_survives_a_writer_closing_and_never_mixes_two_versions(built_index, tmp_path,
                                                                                   monkeypatch):
    """A read-only folder that another process writes (a read-only mount of the host's folder). A writer closing
    its last connection deletes the -shm file, then the -wal: a reader opening the file again in between must not
    take the log for one left without its -shm, nor lose its connection when opening fails. And a file read as
    immutable takes no lock: a read that another process's write overlaps is refused, not mixed."""
    from lmprint.errors import ChangedWhileRead

    media = tmp_path / "media"
    media.mkdir()
    shutil.copy(built_index, media / "i.db")
    read_only_folder(monkeypatch, media)
    reader = Catalogue(media / "i.db")
    assert reader.immutable
    songs = reader.song_count()
    wal = media / "i.db-wal"
    wal.write_bytes(bytes(100))  # the writer between its two deletes, which it finishes while the reader waits
    sleep = time.sleep
    monkeypatch.setattr("lmprint.catalogue.time.sleep", lambda s: wal.unlink(missing_ok=True) or sleep(s))
    assert reader.song_count() == songs  # waited for the log to go, then opened the file anew
    monkeypatch.setattr("lmprint.catalogue.time.sleep", sleep)
    assert reader.generation == 1 and reader.immutable
    assert reader.song_count() == songs and reader.generation == 1  # nothing changed since: not opened again
    wal.write_bytes(bytes(100))  # a log that stays without its -shm: that read fails, in one line
    with pytest.raises(IndexFileError, match="changes still in its -wal file"):
        reader.song_count()
    wal.unlink()
    assert reader.song_count() == songs  # the connection it had was kept, and it opens again
    with pytest.raises(ChangedWhileRead, match="changed while it was read"):
        with reader.snapshot():
            reader.song_count()
            host = sqlite3.connect(media / "i.db")  # another process commits meanwhile
            host.execute("DELETE FROM songs WHERE id = (SELECT MAX(id) FROM songs)")
            host.commit()
            host.close()
    assert reader.song_count() == songs - 1  # read anew
    reader.close()


def test_a_file_that_vanishes_mid_batch_is_named_and_the_rest_indexed(tmp_path):
    folder = tmp_path / "music"
    folder.mkdir()
    for seed in range(3):
        write(folder / f"s{seed}.flac", rendered(seed, 10.0, SYNTH_RATE), SYNTH_RATE)

    def delete_next(outcome):
        if outcome.path.endswith("s0.flac"):
            os.unlink(folder / "s1.flac")

    with Index(tmp_path / "i.db", create=True) as index:
        report = index.add([str(folder)], on_outcome=delete_next)
    assert report.added == 2
    assert [(os.path.basename(p), e) for p, e in report.failed] == [("s1.flac", "no such file (vanished?)")]


# --- 2. kill -9 mid-batch -------------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("sealing", [False, True], ids=["rows", "segments"])
def test_kill_9_mid_add_leaves_no_half_song_and_a_rerun_completes(many_songs, tmp_path, sealing):
    db = tmp_path / "index.db"
    process = lmprint_process("add", many_songs, db=db, sealing=sealing)
    deadline = time.time() + 120
    while song_count(db) < 3 and time.time() < deadline and process.poll() is None:
        time.sleep(0.02)
    assert process.poll() is None, "add finished before it could be interrupted"
    workers = children_of(process.pid)
    assert workers or (os.cpu_count() or 1) == 1, "add fingerprints in worker processes, one per core"
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert all_gone(workers, within_s=30), "the workers outlived the process that started them"
    survivors = assert_consistent(db)
    assert 3 <= len(survivors) < 16
    rerun = lmprint_process("add", many_songs, db=db, sealing=sealing)
    _, rerun_stderr = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, rerun_stderr
    assert f"skipped {len(survivors)}" in rerun_stderr
    interrupted = assert_consistent(db)
    assert (Index(db).postings.stats()["segments"] >= 1) == sealing
    clean_db = tmp_path / "clean.db"
    run_cli("add", many_songs, db=clean_db, check=True)
    uninterrupted = assert_consistent(clean_db)
    assert sorted((s["path"], s["n_hashes"]) for s in interrupted) == sorted(
        (s["path"], s["n_hashes"]) for s in uninterrupted)
    clip = tmp_path / "clip.flac"
    write(clip, rendered(207, 45.0, SYNTH_RATE)[SYNTH_RATE * 20:SYNTH_RATE * 26], SYNTH_RATE)
    answers = [json.loads(run_cli("match", "--json", clip, db=d, check=True).stdout)["match"] for d in (db, clean_db)]
    assert answers[0]["path"] == answers[1]["path"] == str(many_songs / "track 207 é.flac")
    assert answers[0]["score"] == answers[1]["score"]


# --- 3. concurrency ------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_match_keeps_working_while_another_process_adds(many_songs, built_index, tmp_path):
    db = tmp_path / "busy.db"
    db.write_bytes(built_index.read_bytes())
    clip = tmp_path / "clip.flac"
    write(clip, rendered(2, 40.0, SYNTH_RATE)[SYNTH_RATE * 10:SYNTH_RATE * 15], SYNTH_RATE)
    adder = lmprint_process("add", many_songs, db=db)
    answers = []
    while adder.poll() is None and len(answers) < 8:
        result = run_cli("match", "--json", clip, db=db)
        assert result.returncode == 0, result.stderr
        answers.append(json.loads(result.stdout)["match"])
    adder.wait(timeout=300)
    assert adder.returncode == 0, adder.stderr.read()
    assert len(answers) >= 2 and all(a is not None and a["title"] == "song2" for a in answers)


@pytest.mark.slow
@pytest.mark.parametrize("sealing", [False, True], ids=["rows", "segments"])
def test_two_adds_at_once_neither_corrupt_nor_duplicate(many_songs, tmp_path, sealing):
    db = tmp_path / "shared.db"
    first, second = (lmprint_process("add", many_songs, db=db, sealing=sealing) for _ in range(2))
    for process in (first, second):
        process.wait(timeout=300)
        assert process.returncode == 0, process.stderr.read()
    listed = assert_consistent(db)
    assert len(listed) == 16
    if sealing:
        assert Index(db).postings.stats()["segments"] >= 1


@pytest.mark.slow
def test_match_keeps_working_while_another_process_seals_and_merges(many_songs, built_index, tmp_path):
    """A reader keeps its segments mapped while a writer merges them away and deletes their files."""
    db = tmp_path / "busy.db"
    db.write_bytes(built_index.read_bytes())
    clip = rendered(2, 40.0, SYNTH_RATE)[SYNTH_RATE * 10:SYNTH_RATE * 15]
    reader = Index(db)
    import soxr

    samples = soxr.resample(clip, SYNTH_RATE, reader.sample_rate_hz).astype(np.float32)
    adder = lmprint_process("add", many_songs, db=db, sealing=True)
    answers = []
    while adder.poll() is None:
        found = reader.match_samples(samples)
        answers.append(found.song.title if found else None)
    adder.wait(timeout=300)
    assert adder.returncode == 0, adder.stderr.read()
    assert reader.postings.stats()["segments"] >= 1
    answers.append(reader.match_samples(samples).song.title)
    assert len(answers) >= 3 and set(answers) == {"song2"}


@pytest.mark.slow
def test_a_writer_waiting_for_another_says_so_once_and_goes_on_when_it_is_done(library_dir, tmp_path):
    """Another process holds the write lock for a few seconds: `remove` says it waits (a minute of silence before
    `locked` looked like a hang), then does its work."""

    db = tmp_path / "i.db"
    run_cli("add", library_dir / "song0.wav", library_dir / "song1.flac", db=db, check=True)
    holder = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    release = threading.Timer(4.0, lambda: holder.execute("COMMIT"))
    release.start()
    try:
        result = run_cli("remove", "1", db=db)
    finally:
        release.join()
        holder.close()
    assert result.returncode == 0, result.stderr
    assert result.stderr.count(f"lmprint: {db}: waiting for another process that is writing to it\n") == 1
    assert len(run_cli("list", db=db, check=True).stdout.splitlines()) == 1


def test_a_writer_that_waits_less_than_the_notice_time_says_nothing(tmp_path):
    """Locks are met all the time and most are brief: only a wait past `WAIT_NOTICE_S` is worth a line."""
    import logging

    from lmprint.catalogue import WAIT_NOTICE_S

    path = tmp_path / "i.db"
    Catalogue(path, create=True).close()
    said = []
    handler = logging.Handler()
    handler.emit = lambda record: said.append(record.getMessage())  # type: ignore[method-assign]
    logging.getLogger("lmprint").addHandler(handler)
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        with Catalogue(path) as catalogue:
            holder.execute("BEGIN IMMEDIATE")
            release = threading.Timer(0.5, lambda: holder.execute("COMMIT"))
            started = time.monotonic()
            release.start()
            with catalogue.write():
                waited = time.monotonic() - started
            release.join()
    finally:
        logging.getLogger("lmprint").removeHandler(handler)
        holder.close()
    assert 0.3 <= waited < WAIT_NOTICE_S and said == []


@pytest.mark.slow
def test_processes_racing_to_create_the_same_index_all_succeed(library_dir, tmp_path):
    for attempt in range(3):
        db = tmp_path / f"race{attempt}.db"
        racers = [lmprint_process("add", library_dir / "song0.wav", db=db) for _ in range(4)]
        for racer in racers:
            racer.wait(timeout=120)
            assert racer.returncode == 0, racer.stderr.read()
        assert len(assert_consistent(db)) == 1


def test_every_undo_of_a_rolled_back_write_runs_though_one_fails(tmp_path):
    """What a write did outside the file (a segment written) is undone if it rolls back, each part by its own
    callback: one that fails (a disk error) does not leave the others undone (the first failure skipped every
    undo after it), and is logged, while the error that rolled the write back is the one raised."""
    undone = []

    def undo(name, fails=False):
        def run():
            undone.append(name)
            if fails:
                raise OSError(f"cannot undo {name}")
        return run

    import logging

    logged = logging.Handler()
    logged.emit = undone.append  # type: ignore[method-assign]
    logging.getLogger("lmprint").addHandler(logged)
    try:
        with Catalogue(tmp_path / "i.db", create=True) as catalogue:
            with catalogue.write():
                catalogue.after_rollback(undo("committed"))  # a write that commits is never undone, then or later
            with pytest.raises(ValueError, match="the write failed"), catalogue.write():
                for name in "abc":
                    catalogue.after_rollback(undo(name, fails=name == "b"))
                raise ValueError("the write failed")
    finally:
        logging.getLogger("lmprint").removeHandler(logged)
    assert undone[:3] == ["c", "b", "a"] and "committed" not in undone  # newest first, every one, and only its own
    assert [record.getMessage() for record in undone[3:]] == [
        f"{tmp_path / 'i.db'}: could not undo part of a write that failed: cannot undo b"]


def test_a_removed_songs_id_is_never_given_again(library_dir, tmp_path):
    """A query reads a song's row by the id its votes name, after voting: were the id of a song removed meanwhile
    given to one added meanwhile, the query would name that other song. SQLite gives the largest id again once
    its row is deleted; lmprint keeps the largest it gave."""
    db = tmp_path / "i.db"
    run_cli("add", library_dir / "song0.wav", library_dir / "song1.flac", db=db, check=True)
    newest = max(int(line.split("\t")[0]) for line in run_cli("list", db=db).stdout.splitlines())
    run_cli("remove", str(newest), db=db, check=True)
    run_cli("add", library_dir / "song2.ogg", db=db, check=True)  # another process
    listed = [int(line.split("\t")[0]) for line in run_cli("list", db=db).stdout.splitlines()]
    assert newest not in listed and max(listed) == newest + 1
    # the newest removed, then an older one in a removal of its own: the largest given is still the newest's
    run_cli("remove", str(newest + 1), db=db, check=True)
    run_cli("remove", str(min(listed)), db=db, check=True)
    run_cli("add", library_dir / "song0.wav", db=db, check=True)
    listed = [int(line.split("\t")[0]) for line in run_cli("list", db=db).stdout.splitlines()]
    assert sorted(listed) == [newest + 2]


def test_prune_leaves_a_song_that_add_moved_after_prune_looked(library_dir, tmp_path):
    """`prune` decides from the file system which songs are gone, then removes them: a song that another
    process's `add` followed to its new place in between is not removed."""
    old_place, new_place = tmp_path / "a" / "song.wav", tmp_path / "b" / "song.wav"
    old_place.parent.mkdir()
    new_place.parent.mkdir()
    shutil.copy(library_dir / "song0.wav", old_place)
    with Index(tmp_path / "i.db", create=True) as index:
        index.add(old_place)
        old_place.rename(new_place)
        gone, _, _ = index.catalogue.files_gone()  # what `prune` decided
        assert [song.path for song in gone] == [str(old_place)]
        with Index(tmp_path / "i.db") as other:
            assert other.add(new_place).moved == 1
        assert index.remove(gone) == []
        assert [song.path for song in index.catalogue.songs()] == [str(new_place)]
        assert index.remove([song.id for song in gone]) == [gone[0].id]  # by id: the song, wherever it is now


def test_a_moved_song_that_prune_removes_while_add_reads_its_new_place_is_indexed_anew(library_dir, tmp_path,
                                                                                     monkeypatch):
    """`add` of a moved album knows its songs when it begins, and skips their files as indexed; a `prune`
    meanwhile removes those songs, their old files being gone. The files are indexed anew, not reported skipped
    with nothing indexed (the songs were lost until the next `add`)."""
    import landmark.library

    old_place, new_place = tmp_path / "a" / "song.wav", tmp_path / "b" / "song.wav"
    old_place.parent.mkdir()
    shutil.copy(library_dir / "song0.wav", old_place)
    with Index(tmp_path / "i.db", create=True) as index:
        index.add(old_place)
    old_place.parent.rename(new_place.parent)
    fingerprint_songs = landmark.library.fingerprint_songs

    def pruned_meanwhile(*args, **kwargs):
        for result in fingerprint_songs(*args, **kwargs):
            with Index(tmp_path / "i.db") as other:  # what another process's `prune` does now
                gone, _, _ = other.catalogue.files_gone()
                assert len(other.remove(gone)) == 1
            yield result

    monkeypatch.setattr(landmark.library, "fingerprint_songs", pruned_meanwhile)
    with Index(tmp_path / "i.db") as index:
        report = index.add(new_place.parent)
        assert (report.added, report.skipped) == (1, 0), report
        assert [song.path for song in index.catalogue.songs()] == [str(new_place)]
        assert index.match(new_place).song.path == str(new_place)


# --- 4. damaged index files --------------------------------------------------------------------------------------

def test_a_truncated_index_file_gets_one_clear_error(built_index, tmp_path):
    damaged = tmp_path / "damaged.db"
    data = built_index.read_bytes()
    damaged.write_bytes(data[:4096] + np.random.default_rng(2).bytes(len(data) // 2))
    for command in (["list"], ["stats"]):
        result = run_cli(*command, db=damaged)
        assert result.returncode == 1 and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
        assert f"{damaged} is not an lmprint index, or it is damaged" in result.stderr, result.stderr


# --- 5. property tests --------------------------------------------------------------------------------------------

@settings(max_examples=40, deadline=None)
@given(st.binary(min_size=0, max_size=4000), st.sampled_from([".mp3", ".wav", ".ogg", ".flac", ".m4a", ""]))
def test_decoding_random_bytes_raises_only_the_projects_error(tmp_path_factory, data, extension):
    path = tmp_path_factory.mktemp("random") / f"blob{extension}"
    path.write_bytes(data)
    try:
        samples = audio.load(path, 8000)
    except AudioError:
        return
    # some byte soup is valid raw audio to a lenient demuxer: it comes out as any audio does
    assert samples.dtype == np.float32 and samples.ndim == 1 and np.isfinite(samples).all()


# --- 6. bounded resources ----------------------------------------------------------------------------------------

@pytest.mark.slow
def test_a_long_file_is_fingerprinted_in_bounded_memory(tmp_path):
    """A 40-minute file: peak memory stays under 300 MB (interpreter, FFmpeg, one block's spectrogram) plus
    40 KB per second of audio (the decoded samples at 8 kHz are 32 KB/s; the spectrogram is made in blocks)."""
    long_file = tmp_path / "long.flac"
    minute = rendered(300, 60.0, 8000)
    write(long_file, np.tile(minute, 40) * np.linspace(0.5, 1.0, minute.size * 40, dtype=np.float32), 8000)
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss of the forking parent (pytest) across exec
    code = ("from landmark.batch import fingerprint_song\nfrom landmark import FingerprintSettings\n"
            f"outcome, song = fingerprint_song({str(long_file)!r}, FingerprintSettings(), 1.0)\n"
            "assert song is not None, outcome.error\n"
            "peak_kb = next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM'))\n"
            "print(peak_kb // 1024, song.hashes.size)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    peak_mb, n_hashes = map(int, result.stdout.split())
    assert n_hashes > 40 * 60 * 10
    assert peak_mb < 300 + 40 * 60 * 40 / 1024, peak_mb


def test_a_10_minute_query_is_answered_from_its_first_30_s(built_index, tmp_path, monkeypatch):
    """A long query is decoded and fingerprinted only as far as its first `max_query_s`, and the answer says so;
    samples handed to the API are cut there too."""
    import landmark.audio
    import landmark.library

    query = tmp_path / "long query.flac"
    song = rendered(3, 40.0, SYNTH_RATE)
    long_query = np.concatenate([song[SYNTH_RATE * 5:], np.tile(rendered(400, 60.0, SYNTH_RATE), 10)])
    write(query, long_query, SYNTH_RATE)
    fingerprinted = []
    real_fingerprint = landmark.library.fingerprint

    def counting(samples, *args, **kwargs):
        fingerprinted.append(samples.size)
        return real_fingerprint(samples, *args, **kwargs)

    monkeypatch.setattr(landmark.library, "fingerprint", counting)
    decoded = []
    real_resampled = landmark.audio._resampled

    def counted(*args):
        for chunk in real_resampled(*args):
            decoded.append(chunk.size)
            yield chunk

    monkeypatch.setattr(landmark.audio, "_resampled", counted)
    answer = json.loads(run_cli("match", "--json", query, db=built_index, check=True).stdout)
    assert answer["match"]["title"] == "song3"
    assert answer["note"].startswith("635 s long: only its first 30 s were matched")  # the length the file declares
    with Index(built_index) as index:
        limit = int(index.matching.max_query_s * index.sample_rate_hz)
        assert fingerprinted and max(fingerprinted) <= limit
        # decoding stopped at the chunk that reached the limit, not at the end of the 10 minutes
        assert limit <= sum(decoded) < limit + max(decoded)
        fingerprinted.clear()
        samples = soxr.resample(long_query, SYNTH_RATE, index.sample_rate_hz).astype(np.float32)
        assert index.match_samples(samples).song.title == "song3"
    assert fingerprinted and max(fingerprinted) == limit


def test_a_disk_that_fills_during_add_says_to_free_space_and_that_what_was_indexed_is_kept(tmp_path, library_dir):
    """An add that meets a full disk says, in its one line, to free space and that what was indexed is kept."""
    db = tmp_path / "i.db"
    song0, song1 = sorted(library_dir.iterdir())[:2]
    run_cli("add", song0, db=db, check=True)
    index = Index(db)
    pages = index.catalogue.conn.execute("PRAGMA page_count").fetchone()[0]
    index.catalogue.conn.execute(f"PRAGMA max_page_count={pages}")
    try:
        with pytest.raises(IndexFileError) as failed:
            index.add_fingerprints([fingerprint_song(str(song1), index.fingerprint_settings, 1.0)[1]])
    finally:
        index.close()
    assert str(failed.value).startswith(f"{db}: ") and str(failed.value).endswith(
        "full; free some space and run the command again: what was indexed is kept"), str(failed.value)


def test_a_writer_gives_up_after_its_busy_timeout_in_all(tmp_path):
    """A write that waits for another process's lock gives up after its busy timeout counted from the start, the
    notice's wait included (3 s here, not 3 s after the notice)."""
    path = tmp_path / "i.db"
    Catalogue(path, create=True).close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with Catalogue(path, busy_timeout_s=3.0) as catalogue:
            started = time.monotonic()
            with pytest.raises(IndexLocked, match=r"gave up after 3 s"), catalogue.write():
                pass
            waited = time.monotonic() - started
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert 2.7 <= waited < 4.0, waited



def test_a_file_in_a_folder_that_cannot_be_looked_into_is_not_pruned(library_dir, tmp_path, monkeypatch):
    """A file the file system will not say anything about (a folder without permission: `stat` refuses, as it does
    for any user but root) is not gone: `prune` keeps its song."""
    music = laid_out(tmp_path / "music", library_dir, {"open/zero.wav": "song0.wav", "locked/one.flac": "song1.flac"})
    db = tmp_path / "index.db"
    run_cli("add", music, db=db, check=True)
    stat, inside = os.stat, str(music / "locked") + os.sep

    def refused_inside(path, *args, **kwargs):
        if isinstance(path, (str, os.PathLike)) and os.fspath(path).startswith(inside):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", refused_inside)
    pruned = run_cli("prune", db=db)
    dry = run_cli("prune", "--dry-run", db=db)
    monkeypatch.undo()
    assert pruned.returncode == 0 and pruned.stdout == "", pruned.stdout
    assert pruned.stderr == "0 songs whose files are gone\n", pruned.stderr
    assert dry.returncode == 0 and dry.stdout == "", dry.stdout
    assert sorted(song["path"] for song in listed_songs(db)) == [str(music / "locked" / "one.flac"),
                                                            str(music / "open" / "zero.wav")]


def test_a_file_recorded_as_a_copy_that_its_song_then_moves_to_counts_once(library_dir, tmp_path,
                                                                                      monkeypatch):
    """A new copy of a song is recorded; later in the same batch the song's own file turns out to hold other music
    (a tagger rewrote it while `add` read the folder), so the song moves to the copy: that file is one move, not a
    copy as well."""
    import landmark.library

    music = laid_out(tmp_path / "music", library_dir, {"b.flac": "song1.flac"})
    with Index(tmp_path / "i.db", create=True) as index:
        index.add(music)
    shutil.copy(library_dir / "song1.flac", music / "a.flac")  # a copy, read before b.flac
    fingerprint_songs = landmark.library.fingerprint_songs

    def rewritten_meanwhile(*args, **kwargs):
        for result in fingerprint_songs(*args, **kwargs):
            yield result
            if result[0].path == str(music / "a.flac"):  # recorded as a copy by now
                write(music / "b.flac", rendered(2, 20.0, 22050), 22050)

    monkeypatch.setattr(landmark.library, "fingerprint_songs", rewritten_meanwhile)
    outcomes = []
    with Index(tmp_path / "i.db") as index:
        report = index.add(music, jobs=1, on_outcome=outcomes.append)
        songs = sorted(song.path for song in index.catalogue.songs())
        copies = index.catalogue.copies_of()
    assert [o.counted_as for o in outcomes] == ["copies", "added", "moved"], outcomes
    assert (report.added, report.skipped, report.moved, report.copies, report.replaced) == (1, 0, 1, 0, 0), report
    assert songs == [str(music / "a.flac"), str(music / "b.flac")] and copies == {}
