"""`lmprint dedup`: copies of one recording and shared parts, found by joining the index with itself."""

import json

import numpy as np
import pytest

from bench.audio_io import write
from landmark import dedup
from landmark.verify import held_by as verify_held_by
from tests.conftest import SYNTH_RATE, listed_songs, rendered, run_cli


def test_dedup_finds_copies_and_a_cut_and_nothing_else(tmp_path):
    """A FLAC with an MP3 and a retagged copy of it, an MP3 of 20 s of another song (cut between two of the
    engine's frames, at 64 kbit/s: its peaks are picked anew, and it keeps under a fifth of its landmarks), and
    five unrelated songs."""
    folder = tmp_path / "music"
    folder.mkdir()
    for seed in range(7):
        write(folder / f"song{seed}.flac", rendered(seed, 40.0, SYNTH_RATE), SYNTH_RATE, title=f"Song {seed}")
    write(folder / "song0 copy.mp3", rendered(0, 40.0, SYNTH_RATE), SYNTH_RATE, bit_rate=96_000)
    write(folder / "song0 retagged.flac", rendered(0, 40.0, SYNTH_RATE), SYNTH_RATE, title="Another Title")
    cut = rendered(2, 40.0, SYNTH_RATE)[int(15.05 * SYNTH_RATE):int(35.05 * SYNTH_RATE)]
    write(folder / "song2 edit.mp3", cut, SYNTH_RATE, bit_rate=64_000)
    db = tmp_path / "index.db"
    run_cli("add", folder, db=db, check=True)
    result = run_cli("dedup", "--json", db=db, check=True)
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    groups = [sorted(entry["path"].rsplit("/", 1)[1] for entry in line["same_recording"])
              for line in lines if "same_recording" in line]
    assert groups == [["song0 copy.mp3", "song0 retagged.flac", "song0.flac"]]
    parts = [line["shared_part"] for line in lines if "shared_part" in line]
    assert len(parts) == 1, parts
    ranges = {side["path"].rsplit("/", 1)[1]: (side["start_s"], side["end_s"]) for side in parts[0]}
    assert set(ranges) == {"song2.flac", "song2 edit.mp3"}
    (song_start, song_end), (edit_start, edit_end) = ranges["song2.flac"], ranges["song2 edit.mp3"]
    assert abs(song_start - 15.05) < 2 and abs(song_end - 35.05) < 2  # where the edit lies in the song
    assert abs(edit_start - 0) < 2 and abs(edit_end - 20) < 2
    assert np.isclose(song_start - edit_start, 15.05, atol=0.1)  # the offset itself is exact to a frame or two
    assert "1 recording held by several files, 1 shared part" in result.stderr
    text = run_cli("dedup", db=db, check=True).stdout
    assert text.startswith("same recording:\n") and "shared part:\n" in text


def test_dedup_of_a_library_without_duplicates_reports_none(built_index):
    result = run_cli("dedup", db=built_index, check=True)
    assert result.stdout == "" and "0 recordings held by several files, 0 shared parts" in result.stderr


def test_list_recordings_shows_each_recording_with_its_files(tmp_path):
    folder = tmp_path / "music"
    folder.mkdir()
    write(folder / "a.flac", rendered(3, 30.0, SYNTH_RATE), SYNTH_RATE, title="Tide")
    write(folder / "a.mp3", rendered(3, 30.0, SYNTH_RATE), SYNTH_RATE, title="Tide")
    write(folder / "b.flac", rendered(4, 30.0, SYNTH_RATE), SYNTH_RATE, title="Reef")
    db = tmp_path / "index.db"
    run_cli("add", folder, db=db, check=True)
    assert len(run_cli("list", db=db, check=True).stdout.splitlines()) == 3  # plain list: one line a file
    recordings = [json.loads(line) for line in run_cli("list", "--recordings", "--json", db=db,
                                                       check=True).stdout.splitlines()]
    files = sorted(sorted(song["path"].rsplit("/", 1)[1] for song in line["files"]) for line in recordings)
    assert files == [["a.flac", "a.mp3"], ["b.flac"]]
    ids = {song["path"].rsplit("/", 1)[1]: song["id"] for song in listed_songs(db)}
    text = run_cli("list", "--recordings", db=db, check=True).stdout  # each file under its recording, its own id
    assert text == (f"Tide\t30.0 s\t2 files\n  {ids['a.flac']}\t{folder / 'a.flac'}\n  {ids['a.mp3']}\t"
                    f"{folder / 'a.mp3'}\nReef\t30.0 s\t1 file\n  {ids['b.flac']}\t{folder / 'b.flac'}\n"), text


def test_a_copy_with_silence_before_it_is_the_same_recording(tmp_path):
    """A padded rip: the song's span runs from its first landmark, not from the file's start."""
    folder = tmp_path / "music"
    folder.mkdir()
    song = rendered(5, 40.0, SYNTH_RATE)
    write(folder / "album.flac", song, SYNTH_RATE)
    write(folder / "padded.flac", np.r_[np.zeros(8 * SYNTH_RATE, np.float32), song], SYNTH_RATE)
    write(folder / "other.flac", rendered(6, 40.0, SYNTH_RATE), SYNTH_RATE)
    db = tmp_path / "index.db"
    run_cli("add", folder, db=db, check=True)
    lines = [json.loads(line) for line in run_cli("dedup", "--json", db=db, check=True).stdout.splitlines()]
    assert [sorted(e["path"].rsplit("/", 1)[1] for e in line["same_recording"]) for line in lines] == [
        ["album.flac", "padded.flac"]]


def test_copies_of_a_recording_with_a_long_silence_inside_are_the_same_recording(tmp_path):
    """An album's last track with a hidden track after 25 s of digital silence, as FLAC and MP3: the silence holds
    no landmarks, so the join finds two stretches, and the peaks that place them read no further than 10 s
    beyond each. They were two shared parts; silence is no evidence either way, so the peaks are read on across
    it, and the two files are one recording."""
    folder = tmp_path / "music"
    folder.mkdir()
    track = np.concatenate([rendered(5, 60.0, SYNTH_RATE), np.zeros(25 * SYNTH_RATE, np.float32),
                            rendered(6, 30.0, SYNTH_RATE)])
    write(folder / "last track.flac", track, SYNTH_RATE)
    write(folder / "last track.mp3", track, SYNTH_RATE, bit_rate=128_000)
    write(folder / "other.flac", rendered(7, 40.0, SYNTH_RATE), SYNTH_RATE)
    db = tmp_path / "index.db"
    run_cli("add", folder, db=db, check=True)
    result = run_cli("dedup", "--json", db=db, check=True)
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [sorted(entry["path"].rsplit("/", 1)[1] for entry in line["same_recording"])
            for line in lines if "same_recording" in line] == [["last track.flac", "last track.mp3"]], lines
    assert not any("shared_part" in line for line in lines), lines


def test_an_overlap_the_join_barely_finds_is_confirmed_and_placed_by_the_songs_peaks(tmp_path):
    """In a large library only rare keys are joined, so an excerpt's stretch may come out of the join with a few
    landmarks, placed seconds off: the songs' stored peaks confirm it and say where the shared audio lies. The
    same offset between two songs that share nothing is not confirmed, and without stored peaks the count alone
    decides."""
    from dataclasses import replace

    from landmark import Index, dedup

    folder = tmp_path / "music"
    folder.mkdir()
    for seed in range(4):
        write(folder / f"song{seed}.wav", rendered(seed, 40.0, SYNTH_RATE), SYNTH_RATE)
    edit = rendered(2, 40.0, SYNTH_RATE)[int(12.05 * SYNTH_RATE):int(24.05 * SYNTH_RATE)]
    write(folder / "edit.mp3", edit, SYNTH_RATE, bit_rate=64_000)
    settings = dedup.DedupSettings()
    with Index(tmp_path / "index.db", create=True) as index:
        index.add([str(folder)])
        ids = {song.path.rsplit("/", 1)[1]: song.id for song in index.catalogue.songs()}
        [found] = index.overlaps()
        assert {found.song_a, found.song_b} == {ids["song2.wav"], ids["edit.mp3"]}
        # as a large library's join would give it: 8 landmarks, 4 s in from either end
        weak = replace(found, shared=8, a_start_s=found.a_start_s + 4, a_end_s=found.a_end_s - 4,
                       b_start_s=found.b_start_s + 4, b_end_s=found.b_end_s - 4)
        frame_s = index.fingerprint_settings.frame_s
        [placed] = dedup.confirmed([weak], index.peaks.get, frame_s, settings)
        song_side, edit_side = (((placed.a_start_s, placed.a_end_s), (placed.b_start_s, placed.b_end_s))
                                if placed.song_a == ids["song2.wav"] else
                                ((placed.b_start_s, placed.b_end_s), (placed.a_start_s, placed.a_end_s)))
        assert abs(song_side[0] - 12.05) < 0.5 and abs(song_side[1] - 24.05) < 0.5, song_side
        assert abs(edit_side[0]) < 0.5 and abs(edit_side[1] - 12.0) < 0.5, edit_side
        unrelated = dedup.Overlap(ids["song0.wav"], ids["song1.wav"], 5.0, 15.0, 17.0, 27.0, shared=8)
        assert dedup.confirmed([unrelated], index.peaks.get, frame_s, settings) == []
        assert dedup.confirmed([weak], lambda song_ids: {}, frame_s, settings) == []
        strong = replace(weak, shared=settings.min_shared)
        assert dedup.confirmed([strong], lambda song_ids: {}, frame_s, settings) == [strong]


def test_a_radio_edit_and_an_extended_mix_each_share_two_stretches_and_both_are_listed(tmp_path):
    """A radio edit (a song less 15 s of its middle) and an extended mix (a stretch played twice) each hold two
    stretches of their song that meet, or overlap in one of the two songs: both are listed (once an overlap's
    ends were placed by its peaks, they met, and the second was dropped as the same stretch again)."""
    folder = tmp_path / "music"
    folder.mkdir()
    song, other = rendered(3, 60.0, SYNTH_RATE), rendered(4, 50.0, SYNTH_RATE)
    write(folder / "song.flac", song, SYNTH_RATE)
    write(folder / "other.flac", other, SYNTH_RATE)
    write(folder / "radio edit.mp3", np.r_[song[:20 * SYNTH_RATE], song[35 * SYNTH_RATE:]], SYNTH_RATE,
          bit_rate=128_000)
    write(folder / "extended.flac", np.r_[other[:30 * SYNTH_RATE], other[15 * SYNTH_RATE:]], SYNTH_RATE)
    db = tmp_path / "index.db"
    run_cli("add", folder, db=db, check=True)
    parts = [line["shared_part"] for line in map(json.loads, run_cli("dedup", "--json", db=db,
                                                                      check=True).stdout.splitlines())
             if "shared_part" in line]
    found = sorted(tuple((side["path"].rsplit("/", 1)[1], side["start_s"], side["end_s"]) for side in part)
                   for part in parts)
    expected = {("radio edit.mp3", "song.flac"): [((0, 20), (0, 20)), ((20, 45), (35, 60))],
                ("extended.flac", "other.flac"): [((0, 30), (0, 30)), ((30, 65), (15, 50))]}
    for names, stretches in expected.items():
        mine = sorted(sorted(part) for part in found if {side[0] for side in part} == set(names))
        assert len(mine) == 2, found
        for part, stretch in zip(sorted(mine, key=lambda part: part[0][1]), stretches):
            for (_, start, end), (true_start, true_end) in zip(part, stretch):
                assert abs(start - true_start) < 1.0 and abs(end - true_end) < 1.0, (part, stretch)


def test_dedup_marks_a_listed_file_that_is_gone(tmp_path):
    """A file deleted since it was indexed is still an indexed song: dedup says it is gone, and what forgets it,
    so that the copy a user is about to delete as the duplicate is not the last one left."""
    folder = tmp_path / "music"
    folder.mkdir()
    write(folder / "song.flac", rendered(5, 30.0, SYNTH_RATE), SYNTH_RATE)
    write(folder / "song.mp3", rendered(5, 30.0, SYNTH_RATE), SYNTH_RATE)
    db = tmp_path / "index.db"
    run_cli("add", folder, db=db, check=True)
    (folder / "song.mp3").unlink()
    result = run_cli("dedup", db=db, check=True)
    assert "song.mp3 (gone)" in result.stdout and "song.flac\n" in result.stdout, result.stdout
    assert "1 file listed is gone (`lmprint prune`" in result.stderr, result.stderr
    [line] = [json.loads(line) for line in run_cli("dedup", "--json", db=db, check=True).stdout.splitlines()]
    assert {entry["path"].rsplit("/", 1)[1]: entry["gone"] for entry in line["same_recording"]} == {
        "song.flac": False, "song.mp3": True}


def test_a_radio_edit_of_music_that_repeats_is_never_the_same_recording(tmp_path):
    """A song built on a 5 s loop (a melody over it changes): a radio edit that cuts 5 s of it lines up, landmark by
    landmark, at its second part's offset over the first part too, so that one overlap spanned the whole edit and
    dedup called it the same recording as the song, which a user would take as leave to delete one. Read by the
    songs' peaks, the two parts are told apart, each where it lies."""
    folder = tmp_path / "music"
    folder.mkdir()
    loop = rendered(3, 5.0, SYNTH_RATE)
    song = np.tile(loop, 18) + 0.5 * rendered(4, 90.0, SYNTH_RATE)
    write(folder / "song.flac", song, SYNTH_RATE)
    write(folder / "radio edit.mp3", np.r_[song[:20 * SYNTH_RATE], song[25 * SYNTH_RATE:]], SYNTH_RATE,
          bit_rate=128_000)
    write(folder / "other.flac", rendered(5, 60.0, SYNTH_RATE), SYNTH_RATE)
    db = tmp_path / "index.db"
    run_cli("add", folder, db=db, check=True)
    lines = [json.loads(line) for line in run_cli("dedup", "--json", db=db, check=True).stdout.splitlines()]
    assert not [line for line in lines if "same_recording" in line]
    parts = sorted(sorted((side["path"].rsplit("/", 1)[1], side["start_s"], side["end_s"]) for side in
                          line["shared_part"]) for line in lines if "shared_part" in line)
    assert len(parts) == 2, parts
    for part, truth in zip(parts, [((0, 20), (0, 20)), ((20, 85), (25, 90))]):  # (edit, song) each
        for (_, start, end), (true_start, true_end) in zip(part, truth):
            assert abs(start - true_start) < 1.0 and abs(end - true_end) < 1.0, parts


def test_copies_played_a_little_faster_are_the_same_recording(tmp_path):
    """Transfers of one recording 0.3 % and 0.7 % fast: their landmarks' Δt drift along the song (0.7 % is 4 frames
    every 10 s), so each overlap is read along its drift, at its speed: one recording of three files. Another song
    is none of it."""
    from bench.queries import change_speed

    folder = tmp_path / "music"
    folder.mkdir()
    song = rendered(3, 90.0, SYNTH_RATE)
    write(folder / "song.flac", song, SYNTH_RATE)
    write(folder / "fast 0.3.flac", change_speed(song, 1.003), SYNTH_RATE)
    write(folder / "fast 0.7.flac", change_speed(song, 1.007), SYNTH_RATE)
    write(folder / "other.flac", rendered(4, 90.0, SYNTH_RATE), SYNTH_RATE)
    db = tmp_path / "index.db"
    run_cli("add", folder, db=db, check=True)
    lines = [json.loads(line) for line in run_cli("dedup", "--json", db=db, check=True).stdout.splitlines()]
    groups = [sorted(e["path"].rsplit("/", 1)[1] for e in line["same_recording"]) for line in lines
              if "same_recording" in line]
    assert groups == [["fast 0.3.flac", "fast 0.7.flac", "song.flac"]], lines


def test_a_drifting_overlap_is_read_along_its_line_at_its_speed():
    """A copy 1 % fast, read by its peaks along the line its landmarks' Δt draw: its peaks sit 1 % higher, so song
    a's are read a bin either side of where they land (read at their own bins, or moved the other way, fewer than
    half are held at the song's ends). The line is drawn robustly: landmarks tens of frames off it (music that
    repeats, chained in by the join) do not pull it."""
    from bench.queries import change_speed
    from landmark import FingerprintSettings
    from landmark.fingerprint import extract_peaks

    config = FingerprintSettings()
    song = rendered(3, 90.0, config.sample_rate_hz)
    peaks_a = extract_peaks(song, config, config.index)
    peaks_b = extract_peaks(change_speed(song, 1.01), config, config.index)
    frame_s, end_s = config.frame_s, 89.0
    overlap = dedup.Overlap(1, 2, 0.0, end_s, 0.0, end_s / 1.01, shared=100)
    placed = dedup.placed_by_peaks(overlap, peaks_a, peaks_b, frame_s, dedup.DedupSettings())
    assert placed is not None and placed.a_start_s < 1.0 and placed.a_end_s > end_s - 1.0, placed
    assert abs(placed.speed - 1.01) < 0.002, placed
    rng = np.random.default_rng(0)
    frames = np.sort(rng.integers(0, 5000, 600))
    deltas = np.round(-0.01 * frames).astype(np.int64) + rng.integers(-1, 2, frames.size)
    off = (rng.random(frames.size) < 0.1) & (frames > 2500)  # a passage that returns, 10-30 frames later
    deltas[off] += rng.integers(10, 31, int(off.sum()))
    line = dedup.offset_line(frames, deltas)
    assert abs(line(5000.0) - line(0.0) + 50.0) < 1.0  # the drift over 5,000 frames, to a frame (least squares: 3)
    # an MP3 excerpt 1.2 % slower than a copy (a corpus track's join): three landmarks over 60 frames, then fifteen
    # on nine frames (pairs half the landmarks apart fell among those, and read a slope of 0)
    landmarks = [(352, 1538), (377, 1538), (410, 1537), (506, 1536), (506, 1536),
                 (516, 1536), (516, 1545), (516, 1536), (525, 1536), (525, 1536), (525, 1536), (525, 1536),
                 (534, 1536), (534, 1536), (544, 1536), (544, 1536), (548, 1536), (591, 1536)]
    line = dedup.offset_line(*(np.array(column, np.int64) for column in zip(*landmarks)))
    assert abs(line(591.0) - line(196.0) + 0.012 * 395) < 1.0, (line(196.0), line(591.0))


def test_a_stretch_is_read_on_across_a_silence_only_as_far_as_both_songs_share_it():
    """Song a: 60 s of music, 25 s of digital silence, a hidden track. Its copy shares all of it; another file,
    the same 60 s, 5 s of silence and other music, shares the 60 s alone. Silence holds no peaks: the copy's
    stretch is read on across it (forwards, and backwards from landmarks in the hidden track alone), and the other
    file's ends halfway across the silence both hold, not halfway across song a's, into music of its own that song
    a lacks; the same where the silences come before the shared music."""
    from landmark import FingerprintSettings
    from landmark.fingerprint import extract_peaks

    config = FingerprintSettings()
    rate, frame_s = config.sample_rate_hz, config.frame_s
    music, hidden, other = (rendered(seed, 30.0 + 30.0 * (seed == 5), rate) for seed in (5, 6, 7))
    track = np.concatenate([music, np.zeros(25 * rate, np.float32), hidden])
    peaks_a = extract_peaks(track, config, config.index)
    overlap = dedup.Overlap(1, 2, 10.0, 50.0, 10.0, 50.0, shared=100)  # where a large library's landmarks agree
    copy = dedup.placed_by_peaks(overlap, peaks_a, peaks_a, frame_s, dedup.DedupSettings())
    assert copy is not None and copy.a_start_s < 0.5 and copy.a_end_s > 114.0, copy
    peaks_b = extract_peaks(np.concatenate([music, np.zeros(5 * rate, np.float32), other]), config, config.index)
    part = dedup.placed_by_peaks(overlap, peaks_a, peaks_b, frame_s, dedup.DedupSettings())
    assert part is not None and part.a_start_s < 0.5 and 59.0 < part.a_end_s < 63.0 and part.b_end_s < 63.0, part
    # read on backwards too: landmarks in the hidden track alone place the copy from its start
    late = dedup.Overlap(1, 2, 95.0, 110.0, 95.0, 110.0, shared=100)
    copy = dedup.placed_by_peaks(late, peaks_a, peaks_a, frame_s, dedup.DedupSettings())
    assert copy is not None and copy.a_start_s < 0.5 and copy.a_end_s > 114.0, copy
    # and the mirror: shared music after a silence of 25 s in song a and of 5 s in song b starts halfway across
    # the silence both hold, 2.5 s before the music
    intro_a, intro_b = rendered(6, 30.0, rate), rendered(7, 30.0, rate)
    peaks_a = extract_peaks(np.concatenate([intro_a, np.zeros(25 * rate, np.float32), music]), config, config.index)
    peaks_b = extract_peaks(np.concatenate([intro_b, np.zeros(5 * rate, np.float32), music]), config, config.index)
    part = dedup.placed_by_peaks(dedup.Overlap(1, 2, 70.0, 110.0, 50.0, 90.0, shared=100), peaks_a, peaks_b, frame_s,
                                 dedup.DedupSettings())
    assert part is not None and 52.0 < part.a_start_s < 55.5 and 32.0 < part.b_start_s < 35.5, part


def test_an_hour_long_copy_whose_landmarks_lie_in_its_first_seconds_reads_each_peak_once(monkeypatch):
    """An hour's copy (a DJ mix twice) whose agreeing landmarks the join found in its first 20 s only: its peaks
    are read on 10 s further at a time, and each step read every peak from the start again, some 360 reads of up
    to 65,000 peaks (9 s). Each peak is now read once; the stretch is placed as before."""
    rng = np.random.default_rng(0)
    frame_s = 0.016
    frames = np.sort(rng.choice(int(3600 / frame_s), 18 * 3600, replace=False)).astype(np.int64)
    peaks = (frames, rng.integers(0, 256, frames.size).astype(np.int64))
    read = []

    def counted(song_peaks, other, shift_frames, bin_reach=0):
        read.append(song_peaks[0].size)
        return verify_held_by(song_peaks, other, shift_frames, bin_reach)

    monkeypatch.setattr(dedup, "held_by", counted)
    placed = dedup.placed_by_peaks(dedup.Overlap(1, 2, 0.0, 20.0, 0.0, 20.0, shared=50), peaks, peaks, frame_s,
                                   dedup.DedupSettings())
    assert placed is not None and placed.a_start_s < 1.0 and placed.a_end_s > 3599.0, placed
    assert sum(read) == frames.size, (len(read), sum(read))


def test_a_song_sharing_a_stretch_with_a_recording_in_several_files_is_listed_once_per_stretch(tmp_path):
    """A recording in three files (a FLAC, an MP3, the FLAC with 2 s of silence first) and a radio edit of it
    (15 s of its middle cut): each of the edit's two stretches is one shared part, with where each of the three
    files holds it, rather than one part per file."""
    folder = tmp_path / "music"
    folder.mkdir()
    song = rendered(3, 60.0, SYNTH_RATE)
    write(folder / "song.flac", song, SYNTH_RATE)
    write(folder / "song.mp3", song, SYNTH_RATE, bit_rate=128_000)
    write(folder / "padded.flac", np.r_[np.zeros(2 * SYNTH_RATE, np.float32), song], SYNTH_RATE)
    write(folder / "radio edit.mp3", np.r_[song[:20 * SYNTH_RATE], song[35 * SYNTH_RATE:]], SYNTH_RATE,
          bit_rate=128_000)
    db = tmp_path / "index.db"
    run_cli("add", folder, db=db, check=True)
    result = run_cli("dedup", "--json", db=db, check=True)
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    [group] = [sorted(e["path"].rsplit("/", 1)[1] for e in line["same_recording"]) for line in lines
               if "same_recording" in line]
    assert group == ["padded.flac", "song.flac", "song.mp3"]
    parts = sorted((line["shared_part"] for line in lines if "shared_part" in line),
                   key=lambda sides: sides[0]["start_s"])
    assert len(parts) == 2, parts
    for sides, (edit_at, song_at) in zip(parts, [((0, 20), (0, 20)), ((20, 45), (35, 60))]):
        assert sides[0]["path"].endswith("radio edit.mp3")
        assert abs(sides[0]["start_s"] - edit_at[0]) < 1.0 and abs(sides[0]["end_s"] - edit_at[1]) < 1.0, sides
        held = {side["path"].rsplit("/", 1)[1]: (side["start_s"], side["end_s"]) for side in sides[1:]}
        assert set(held) == {"padded.flac", "song.flac", "song.mp3"}, sides
        for name, (start, end) in held.items():
            lead = 2.0 if name == "padded.flac" else 0.0
            assert abs(start - song_at[0] - lead) < 1.0 and abs(end - song_at[1] - lead) < 1.0, sides
    assert "1 recording held by several files, 2 shared parts" in result.stderr


def test_a_file_holding_a_stretch_in_two_pieces_keeps_both_in_the_shared_part():
    """Listed once per stretch, a song's part shared with a recording of two files keeps every overlap: the
    second file holds it in two pieces (two sides), and the song's stretch is all of it that any file holds. A
    weaker overlap that holds the strongest's whole stretch joins its part."""
    parts = [dedup.Overlap(9, 1, 0.0, 60.0, 0.0, 60.0, shared=80),
             dedup.Overlap(9, 2, 0.0, 30.0, 0.0, 30.0, shared=40),
             dedup.Overlap(9, 2, 28.0, 61.0, 30.0, 63.0, shared=35)]
    [part] = dedup.shared_parts_by_recording(parts, [[1, 2]])
    assert part.sides == ((9, 0.0, 61.0), (1, 0.0, 60.0), (2, 0.0, 30.0), (2, 30.0, 63.0)) and part.landmarks == 80
    # a weaker overlap of the other file that holds the stronger's whole stretch of song 9 joins the same part
    holding = [dedup.Overlap(9, 1, 10.0, 40.0, 10.0, 40.0, shared=80), dedup.Overlap(9, 2, 0.0, 70.0, 0.0, 70.0,
                                                                                      shared=40)]
    assert dedup.shared_parts_by_recording(holding, [[1, 2]]) == [
        dedup.SharedPart(((9, 0.0, 70.0), (1, 10.0, 40.0), (2, 0.0, 70.0)), 80)]
    other = dedup.Overlap(9, 3, 70.0, 90.0, 0.0, 20.0, shared=30)  # a song of one file: a part of two sides
    assert dedup.shared_parts_by_recording([other], [[1, 2]]) == [dedup.SharedPart(((9, 70.0, 90.0), (3, 0.0, 20.0)),
                                                                                   30)]


def test_an_overlap_whose_landmarks_cover_a_little_of_it_is_read_on_as_far_as_the_peaks_hold(tmp_path):
    """A large library joins one landmark in twenty: a 30 s excerpt's may all lie in its first seconds. Its peaks
    are read from 10 s around the landmarks, and on while the shared stretch reaches the end of what was read:
    the whole excerpt, where its song goes on playing other music after it."""
    from dataclasses import replace

    from landmark import Index

    folder = tmp_path / "music"
    folder.mkdir()
    song = rendered(3, 80.0, SYNTH_RATE)
    write(folder / "song.wav", song, SYNTH_RATE)
    write(folder / "excerpt.mp3", song[int(20.05 * SYNTH_RATE):int(50.05 * SYNTH_RATE)], SYNTH_RATE,
          bit_rate=128_000)
    with Index(tmp_path / "index.db", create=True) as index:
        index.add([str(folder)])
        ids = {song.path.rsplit("/", 1)[1]: song.id for song in index.catalogue.songs()}
        [found] = index.overlaps()
        in_excerpt = "a" if found.song_a == ids["excerpt.mp3"] else "b"
        start = getattr(found, f"{in_excerpt}_start_s")
        shift = found.b_start_s - found.a_start_s
        few = replace(found, shared=8, a_end_s=found.a_start_s + 4, b_end_s=found.a_start_s + 4 + shift)
        [placed] = dedup.confirmed([few], index.peaks.get, index.fingerprint_settings.frame_s, dedup.DedupSettings())
        excerpt_side = (getattr(placed, f"{in_excerpt}_start_s"), getattr(placed, f"{in_excerpt}_end_s"))
        assert abs(excerpt_side[0] - start) < 0.5 and abs(excerpt_side[1] - 30.0) < 0.5, (few, placed)


def test_copies_played_several_percent_faster_or_slower_are_found_at_their_speed_with_speed(tmp_path):
    """A transfer 3 % fast (an MP3) and one 5 % slow hold too few of the song's hashes for the join; `dedup
    --speed` searches each song's middle at every speed and reads the copies along their lines: one recording of
    three files, each at its speed, and another song none of it."""
    from bench.queries import change_speed

    folder = tmp_path / "music"
    folder.mkdir()
    song = rendered(5, 90.0, SYNTH_RATE)
    write(folder / "song.flac", song, SYNTH_RATE)
    write(folder / "fast 3.mp3", change_speed(song, 1.03), SYNTH_RATE, bit_rate=128_000)
    write(folder / "slow 5.flac", change_speed(song, 0.95), SYNTH_RATE)
    write(folder / "other.flac", rendered(6, 90.0, SYNTH_RATE), SYNTH_RATE)
    db = tmp_path / "index.db"
    run_cli("add", folder, db=db, check=True)
    lines = [json.loads(line) for line in run_cli("dedup", "--speed", "--json", db=db, check=True).stdout.splitlines()]
    groups = [{e["path"].rsplit("/", 1)[1]: e["speed"] for e in line["same_recording"]} for line in lines
              if "same_recording" in line]
    assert len(groups) == 1 and len(lines) == 1, lines
    speeds = groups[0]
    assert set(speeds) == {"song.flac", "fast 3.mp3", "slow 5.flac"}
    speed_of_song = speeds["song.flac"]
    assert abs(speeds["fast 3.mp3"] / speed_of_song - 1.03) < 0.002, speeds
    assert abs(speeds["slow 5.flac"] / speed_of_song - 0.95) < 0.002, speeds
    assert speeds["fast 3.mp3"] == 1.0  # the group's first file (files are added in name order): the others at
    text = run_cli("dedup", "--speed", db=db, check=True).stdout  # 1 / 1.03 and 0.95 / 1.03 of its speed
    assert [line.rsplit("/", 1)[1] for line in text.splitlines()[1:]] == [
        "fast 3.mp3", "slow 5.flac (7.8 % slower)", "song.flac (2.9 % slower)"], text
    listed = [json.loads(line)["files"] for line in
              run_cli("list", "--recordings", "--speed", "--json", db=db, check=True).stdout.splitlines()]
    assert sorted(({f["path"].rsplit("/", 1)[1]: f["speed"] for f in files} for files in listed), key=str) == sorted(
        [{"fast 3.mp3": 1.0, "slow 5.flac": speeds["slow 5.flac"], "song.flac": speeds["song.flac"]},
         {"other.flac": 1.0}], key=str)
    alone = run_cli("list", "--speed", db=db)
    assert alone.returncode == 1 and alone.stderr == "lmprint: --speed is for --recordings: it finds copies played " \
        "faster or slower\n"


def test_a_copy_at_another_speed_is_placed_along_its_line_to_its_ends():
    """Song b's peaks are read back into song a's frames along the inverse of the overlap's line: for a copy 5 %
    fast, taking the line's offset at song b's frames (as for a drift of 0.2 %) is some 13 frames off at the end of
    90 s, and the stretch stopped short of it."""
    from bench.queries import change_speed
    from landmark import FingerprintSettings
    from landmark.fingerprint import extract_peaks

    config = FingerprintSettings()
    song = rendered(3, 90.0, config.sample_rate_hz)
    peaks_a = extract_peaks(song, config, config.index)
    peaks_b = extract_peaks(change_speed(song, 1.05), config, config.index)
    end_s = 89.0
    overlap = dedup.Overlap(1, 2, 0.0, end_s, 0.0, end_s / 1.05, shared=100)
    placed = dedup.placed_by_peaks(overlap, peaks_a, peaks_b, config.frame_s, dedup.DedupSettings())
    assert placed is not None and placed.a_start_s < 1.0 and placed.a_end_s > end_s - 1.0, placed
    assert abs(placed.speed - 1.05) < 0.002, placed.speed


def test_songs_at_other_speeds_are_one_recording_by_each_one_s_own_stretch_and_speeds_compose():
    """Coverage is each song's stretch against its own span: a copy 7 % fast covering 95 % of each is the same
    recording, where its stretch in the slower song (longer) measured against the faster one's span, or the
    reverse, would not be. A recording found as a chain (1.05 from the first, 1.03 from that) gives each file's
    speed against the first."""
    settings = dedup.DedupSettings()
    overlap = dedup.Overlap(1, 2, 2.0, 97.0, 2.0 / 1.07, 97.0 / 1.07, shared=40)  # song 2 plays 7 % faster
    found = dedup.duplicates([overlap], {1: 100.0, 2: 100.0 / 1.07}, settings)
    assert found.recordings == [[1, 2]] and abs(found.speeds[2] - 1.07) < 1e-9
    reverse = dedup.Overlap(1, 2, 2.0 / 1.07, 97.0 / 1.07, 2.0, 97.0, shared=40)  # song 1 the faster
    found = dedup.duplicates([reverse], {1: 100.0 / 1.07, 2: 100.0}, settings)
    assert found.recordings == [[1, 2]] and abs(found.speeds[2] - 1 / 1.07) < 1e-9
    short = dedup.Overlap(1, 2, 2.0, 80.0, 2.0 / 1.07, 80.0 / 1.07, shared=40)  # 78 % of each: a shared part
    found = dedup.duplicates([short], {1: 100.0, 2: 100.0 / 1.07}, settings)
    assert found.recordings == [] and found.shared_parts == [short]
    chain = [dedup.Overlap(3, 5, 0.0, 100.0, 0.0, 100.0 / 1.05, shared=40),
             dedup.Overlap(5, 9, 0.0, 100.0 / 1.05, 0.0, 100.0 / 1.05 / 1.03, shared=40)]
    found = dedup.duplicates(chain, {3: 100.0, 5: 100.0 / 1.05, 9: 100.0 / 1.05 / 1.03}, settings)
    assert found.recordings == [[3, 5, 9]]
    assert found.speeds == {3: 1.0, 5: pytest.approx(1.05), 9: pytest.approx(1.05 * 1.03)}
    backwards = [dedup.Overlap(3, 9, 0.0, 100.0, 0.0, 100.0 / 1.05, shared=40),  # 5 reached from 9, against
                 dedup.Overlap(5, 9, 0.0, 100.0 / 1.05 * 1.03, 0.0, 100.0 / 1.05, shared=40)]  # its overlap
    found = dedup.duplicates(backwards, {3: 100.0, 5: 100.0 / 1.05 * 1.03, 9: 100.0 / 1.05}, settings)
    assert found.recordings == [[3, 5, 9]]
    assert found.speeds == {3: 1.0, 9: pytest.approx(1.05), 5: pytest.approx(1.05 / 1.03)}


def test_an_overlap_a_longer_one_reads_at_the_same_alignment_is_its_part_whatever_its_landmarks():
    """The join chains a copy 1 % fast over part of it (130 landmarks), the speed search reads all of it from the
    excerpt's votes (8): one recording, not a shared part kept for its landmarks. A weaker stretch at another
    alignment within it (music that repeats), in either song, is still the stronger's, and a stronger one at
    another alignment stays beside it."""
    whole = dedup.Overlap(1, 2, 0.0, 409.6, 0.0, 409.6 / 1.0095, shared=8)
    part = dedup.Overlap(1, 2, 0.0, 289.2, 0.02, 289.2 / 1.0095 - 0.03, shared=130)
    assert dedup.strongest_per_stretch([part, whole]) == [whole]
    found = dedup.duplicates(dedup.strongest_per_stretch([part, whole]), {1: 409.6, 2: 409.6 / 1.0095},
                             dedup.DedupSettings())
    assert found.recordings == [[1, 2]] and found.shared_parts == []
    repeat = dedup.Overlap(1, 2, 100.0, 130.0, 150.0, 180.0, shared=5)
    assert dedup.strongest_per_stretch([part, whole, repeat]) == [whole]
    rival = dedup.Overlap(1, 2, 0.0, 100.0, 20.0, 120.0, shared=50)
    assert dedup.strongest_per_stretch([rival, part, whole]) == [rival, whole]
    within_b = dedup.Overlap(1, 2, 60.0, 90.0, 5.0, 35.0, shared=10)  # within the stronger in song b alone
    strong = dedup.Overlap(1, 2, 0.0, 30.0, 0.0, 30.0, shared=50)
    assert dedup.strongest_per_stretch([strong, within_b]) == [strong]


def test_a_song_whose_middle_is_silence_and_a_cut_at_another_speed_are_found_by_the_speed_search(tmp_path):
    """A song with 40 s of digital silence in its middle (a hidden track's shape) is searched about its median
    peak, so its copy 4 % fast is found; a 30 s cut of another song played 4 % slow is one shared part, found from
    either song's side, placed in each song's own time."""
    from bench.queries import change_speed
    from landmark import Index
    from landmark.dedup import DedupSettings

    folder = tmp_path / "music"
    folder.mkdir()
    hidden = np.concatenate([rendered(7, 30.0, SYNTH_RATE), np.zeros(40 * SYNTH_RATE, np.float32),
                             rendered(8, 30.0, SYNTH_RATE)])
    write(folder / "hidden.flac", hidden, SYNTH_RATE)
    write(folder / "hidden fast.flac", change_speed(hidden, 1.04), SYNTH_RATE)
    song = rendered(9, 90.0, SYNTH_RATE)
    write(folder / "song.flac", song, SYNTH_RATE)
    write(folder / "song cut slow.flac", change_speed(song[30 * SYNTH_RATE:60 * SYNTH_RATE], 0.96), SYNTH_RATE)
    with Index(tmp_path / "index.db", create=True) as index:
        index.add(folder)
        by_name = {song.path.rsplit("/", 1)[1]: song.id for song in index.catalogue.songs()}
        found = index.duplicates(DedupSettings(max_speed_change=0.08))
    assert found.recordings == [sorted([by_name["hidden.flac"], by_name["hidden fast.flac"]])], found
    assert len(found.shared_parts) == 1, found.shared_parts
    part = found.shared_parts[0]
    ends = {part.song_a: (part.a_start_s, part.a_end_s), part.song_b: (part.b_start_s, part.b_end_s)}
    (song_start, song_end), (cut_start, cut_end) = ends[by_name["song.flac"]], ends[by_name["song cut slow.flac"]]
    assert abs(song_start - 30) < 0.5 and abs(song_end - 60) < 0.5, ends
    assert abs(cut_start - 0) < 0.5 and abs(cut_end - 30 / 0.96) < 0.5, ends  # 1.25 s longer than its source
    cut_speed = part.speed if part.song_a == by_name["song.flac"] else 1 / part.speed
    assert abs(cut_speed - 0.96) < 0.005, part


def test_the_speed_search_votes_for_a_long_song_s_copy_and_reads_only_copies_at_another_speed(tmp_path):
    """Its excerpt is looked up with frames from the excerpt's start, as a clip's are: from the middle of a 5-minute
    song (frame 9,000 and more) a key's frame, its anchor's at the middle of the key's span of speeds, was tens of
    frames off, and the copy's votes spread too thin to stand out of a large library's chance (17 against some
    115). A copy as recorded is left to the join, and a bad setting is refused before any join."""
    import functools

    from bench.queries import change_speed
    from landmark import Index, warp
    from lmprint.errors import SettingsError

    song = rendered(11, 300.0, SYNTH_RATE)
    write(tmp_path / "song.flac", song, SYNTH_RATE)
    write(tmp_path / "fast.flac", change_speed(song, 1.05), SYNTH_RATE)
    with Index(tmp_path / "index.db", create=True) as index:
        index.add([tmp_path / "song.flac", tmp_path / "fast.flac"])
        ids = sorted(s.id for s in index.catalogue.songs())
        settings = dedup.DedupSettings.searching_speeds(index.matching)
        lookup = functools.partial(index._vote, max_postings=index.matching.warp_max_postings_read)
        overlaps = list(dedup.speed_overlaps(ids, index.peaks.get, lookup, index.fingerprint_settings,
                                             index.matching, settings))
        peaks = index.peaks.get(ids)[ids[0]]
        frame_s = index.fingerprint_settings.frame_s
    assert settings.max_speed_change > 0 and len(overlaps) == 2, overlaps  # one from each song
    assert all(o.shared >= 40 and abs(o.speed - 1.05) < 0.001 for o in overlaps), overlaps
    middle = int(peaks[0][peaks[0].size // 2])
    half = int(settings.speed_excerpt_s / frame_s / 2)
    excerpt = dedup.peaks_between(peaks, middle - half, middle + half)
    assert dedup.speed_overlap(1, 2, peaks, peaks, excerpt, warp.Warp("speed", 1.0), 0, 0, frame_s,
                               settings) is None  # as recorded: the join's
    for wrong in ({"max_speed_change": 0.3}, {"max_speed_change": float("nan")}, {"speed_candidates": 0}):
        with pytest.raises(SettingsError):
            dedup.DedupSettings(**wrong)


def test_a_file_s_speed_note_says_faster_or_slower_to_a_tenth_of_a_percent():
    from lmprint.cli import _speed_note

    assert _speed_note(1.04) == " (4.0 % faster)" and _speed_note(0.9612) == " (3.9 % slower)"
    assert _speed_note(1.0004) == "" and _speed_note(0.9996) == "" and _speed_note(1.0006) == " (0.1 % faster)"


def _song_and_its_edit(tmp_path):
    """(folder, index): song 2, an MP3 of its 15-35 s, and three unrelated songs, added."""
    folder = tmp_path / "music"
    folder.mkdir()
    for seed in (2, 4, 5, 6):
        write(folder / f"song{seed}.flac", rendered(seed, 40.0, SYNTH_RATE), SYNTH_RATE)
    cut = rendered(2, 40.0, SYNTH_RATE)[int(15.05 * SYNTH_RATE):int(35.05 * SYNTH_RATE)]
    write(folder / "song2 edit.mp3", cut, SYNTH_RATE, bit_rate=64_000)
    db = tmp_path / "index.db"
    run_cli("add", folder, db=db, check=True)
    return folder, db


def test_dedup_shared_part_text_gives_each_side_its_start_and_end(tmp_path):
    """`dedup`'s text shows each side of a shared part as its id, its start–end in seconds, and its path, as the JSON."""
    folder, db = _song_and_its_edit(tmp_path)
    [part] = [json.loads(line)["shared_part"] for line in run_cli("dedup", "--json", db=db, check=True).stdout
              .splitlines()]
    text = run_cli("dedup", db=db, check=True).stdout
    assert text == "shared part:\n" + "".join(f"  {side['song_id']}\t{side['start_s']:7.1f}–{side['end_s']:7.1f} s\t"
                                              f"{side['path']}\n" for side in part), text
    sides = {side["path"].rsplit("/", 1)[1]: side for side in part}
    assert sides["song2.flac"]["start_s"] < sides["song2.flac"]["end_s"]
    assert abs(sides["song2.flac"]["start_s"] - 15.05) < 2 and abs(sides["song2 edit.mp3"]["end_s"] - 20) < 2


def test_dedup_marks_a_gone_file_of_a_shared_part(tmp_path):
    """A file of a shared part deleted since it was indexed is marked gone, in the text and the JSON, and counted."""
    folder, db = _song_and_its_edit(tmp_path)
    (folder / "song2 edit.mp3").unlink()
    result = run_cli("dedup", db=db, check=True)
    assert "song2 edit.mp3 (gone)\n" in result.stdout and "song2.flac\n" in result.stdout, result.stdout
    assert "1 file listed is gone (`lmprint prune`" in result.stderr, result.stderr
    [part] = [json.loads(line)["shared_part"] for line in run_cli("dedup", "--json", db=db, check=True).stdout
              .splitlines()]
    assert {side["path"].rsplit("/", 1)[1]: side["gone"] for side in part} == {"song2.flac": False,
                                                                              "song2 edit.mp3": True}


@pytest.mark.parametrize("wrong", [{"speed_excerpt_s": 0.0}, {"speed_excerpt_s": -10.0},
                                   {"speed_excerpt_s": float("nan")}, {"max_speed_change": -0.05},
                                   {"speed_candidates": 0}])
def test_dedup_settings_refused_where_the_speed_search_could_not_run(wrong):
    """An excerpt of no length, a negative speed change or no candidates is refused before any join."""
    from lmprint.errors import SettingsError

    with pytest.raises(SettingsError):
        dedup.DedupSettings(**wrong)
    dedup.DedupSettings(max_speed_change=0.08, speed_excerpt_s=0.5, speed_candidates=1)  # the smallest that search
