"""Identification end to end, through the Python API, on generated music."""

from pathlib import Path

import numpy as np
import pytest

from bench import queries
from bench.audio_io import codec_round_trip
from landmark import FingerprintSettings, Index, MatchSettings, audio
from landmark.fingerprint import extract_peaks, fingerprint
from landmark.verify import CopyCheck, ProminenceMap, agreement_at
from landmark.vote import Candidate
from lmprint.errors import AudioError
from tests.conftest import FORMATS, rendered

RATE = 8000
CONFIG = FingerprintSettings()
MATCHING = MatchSettings()


@pytest.fixture(scope="module")
def index(built_index):
    with Index(built_index) as opened:
        yield opened


def test_clean_clips_from_random_offsets_name_the_song_and_where_it_starts(index):
    rng = np.random.default_rng(7)
    for seed in range(len(FORMATS)):
        clip, start_s = queries.cut(rendered(seed, 40.0, RATE), RATE, 5.0, rng)
        found = index.match_samples(clip)
        assert found is not None, seed
        assert found.song.title == f"song{seed}"
        assert abs(found.offset_s - start_s) < 0.1, (seed, found.offset_s, start_s)
        assert found.confidence > 0.999 and found.false_match_probability < 1e-3  # clean: overwhelming evidence


def test_a_clip_that_begins_before_the_song_says_how_long_before(index):
    """A clip started in silence or in other music reads offset 0, and its lead-in says where the song begins in
    it, at the speed it plays; a clip within the song has none."""
    song = rendered(3, 40.0, RATE)
    for lead_s, before, speed in ((2.4, np.zeros(int(2.4 * RATE), np.float32), 1.0),
                                  (1.3, rendered(100, 1.3, RATE), 1.0), (2.0, np.zeros(2 * RATE, np.float32), 1.06)):
        played = queries.change_speed(song[:6 * RATE], speed)
        found = index.match_samples(np.concatenate([before, played])[:int((lead_s + 5) * RATE)])  # 5 s of song
        assert found is not None and found.song.title == "song3" and found.offset_s == 0.0, (lead_s, found)
        assert found.lead_in_s == pytest.approx(lead_s, abs=0.05), (lead_s, found)
    found = index.match_samples(song[8 * RATE:13 * RATE])
    assert found is not None and found.lead_in_s == 0.0 and found.offset_s == pytest.approx(8.0, abs=0.05)


def test_noisy_clips_still_match(index):
    rng = np.random.default_rng(8)
    hits = 0
    for seed in range(len(FORMATS)):
        clip, _ = queries.cut(rendered(seed, 40.0, RATE), RATE, 5.0, rng)
        noisy = queries.add_noise(clip, queries.pink_noise(clip.size, rng), 5.0, rng)
        found = index.match_samples(noisy)
        hits += found is not None and found.song.title == f"song{seed}"
    assert hits >= len(FORMATS) - 1


def test_an_mp3_round_trip_still_matches(index, tmp_path):
    rng = np.random.default_rng(9)
    clip, _ = queries.cut(rendered(2, 40.0, RATE), RATE, 5.0, rng)
    found = index.match_samples(codec_round_trip(clip, RATE, ".mp3", 48_000, str(tmp_path)))
    assert found is not None and found.song.title == "song2"


def test_songs_that_are_not_indexed_give_no_match(index):
    # Generated songs share one synthesizer's timbres, a diatonic scale and sometimes a tempo, so they are far
    # more alike than real recordings (where the bench measures under 1 % false matches): a note repeated on
    # the beat gives the same landmark in two such songs. Without the no-match decision most of these clips
    # would name an indexed song; with it, at most one in twenty may.
    rng = np.random.default_rng(10)
    false_matches = 0
    for seed in range(100, 120):
        clip, _ = queries.cut(rendered(seed, 20.0, RATE), RATE, 5.0, rng)
        false_matches += index.match_samples(clip) is not None
    assert false_matches <= 1


def test_match_refuses_bad_queries(index):
    with pytest.raises(AudioError, match="too short"):
        index.match_samples(np.ones(int(0.2 * RATE), np.float32))
    with pytest.raises(AudioError, match="silent"):
        index.match_samples(np.zeros(5 * RATE, np.float32))
    clip = rendered(2, 40.0, RATE)[10 * RATE:15 * RATE]
    with pytest.raises(AudioError, match=r"samples of shape \(2, 40000\): one channel's are one-dimensional"):
        index.match_samples(np.stack([clip, clip]))


def test_samples_handed_to_match_samples_are_taken_as_a_decoder_gives_them(index):
    """A list, float64, int16 PCM, or a NaN among them: one NaN read the whole clip as silent (the loudest
    second's energy compared against NaN), a list had no `.size`, and PCM was read at 32,767 times full scale."""
    clip = rendered(2, 40.0, RATE)[10 * RATE:15 * RATE]
    damaged = clip.copy()
    damaged[[100, 20_000]] = np.nan, np.inf
    pcm = np.round(clip / np.abs(clip).max() * 32767).astype(np.int16)  # full scale at the type's largest value
    for samples in (clip.tolist(), clip.astype(np.float64), damaged, pcm):
        found = index.match_samples(samples)
        assert found is not None and found.song.title == "song2" and abs(found.offset_s - 10.0) < 0.1
    assert np.isnan(damaged[100])  # the caller's samples as they were


def test_samples_at_another_rate_are_matched_at_the_rate_given(index):
    """A sound card's 44.1 kHz read as the engine's 8 kHz plays 5.5 times slower and names nothing; given its
    rate, it is resampled and named where it starts."""
    clip = rendered(4, 40.0, 44_100)[12 * 44_100:17 * 44_100]
    assert index.match_samples(clip) is None
    for samples in (clip, np.round(clip * 32767).astype(np.int16)):
        found = index.match_samples(samples, sample_rate_hz=44_100)
        assert found is not None and found.song.title == "song4" and abs(found.offset_s - 12.0) < 0.1
        assert found.speed == 1.0
    for rate in (np.int64(44_100), np.float32(44_100)):  # a rate read from a file's header by numpy
        assert index.match_samples(clip, sample_rate_hz=rate).song.title == "song4"
    for rate in (0, -8000, 0.5, 1000, 1e14, float("nan"), float("inf"), "44100", True):  # none of audio's
        with pytest.raises(AudioError, match=r"give the rate of the samples in Hz, audio's \(4,000 to 768,000 Hz\)"):
            index.match_samples(clip, sample_rate_hz=rate)


def test_samples_at_another_rate_are_matched_over_their_first_30_s_not_the_engines_share_of_them(index):
    """The query's first `max_query_s` seconds are counted at the samples' rate: at 44.1 kHz, 30 s of the
    engine's 8 kHz samples would be 5.4 s, all of them the unknown music before the song."""
    rate = 44_100
    before = rendered(100, 8.0, rate)
    clip = np.concatenate([before, rendered(4, 40.0, rate)[12 * rate:40 * rate]])
    found = index.match_samples(clip, sample_rate_hz=rate)
    assert found is not None and found.song.title == "song4"
    assert found.offset_s == pytest.approx(4.0, abs=0.1)  # where the clip's start falls in the song's time


def test_samples_that_are_not_numbers_are_refused_in_one_line(index):
    clip = rendered(2, 40.0, RATE)[10 * RATE:15 * RATE]
    for samples, kind in ((clip.tobytes(), "bytes"), (None, "NoneType"), (clip.astype(np.complex64), "complex64")):
        with pytest.raises(AudioError, match=f"^samples of type {kind}: samples are real numbers"):
            index.match_samples(samples)


def test_a_file_object_is_matched_as_its_path_is(index, library_dir, tmp_path):
    """An upload's bytes in memory, or an open file: the same answer as the path's."""
    import io

    from bench.audio_io import write

    path = tmp_path / "clip.mp3"
    write(path, rendered(1, 40.0, 22_050)[9 * 22_050:15 * 22_050], 22_050)
    by_path = index.answer(path)
    assert by_path.match is not None and by_path.match.song.title == "song1"
    with open(path, "rb") as opened:
        for source in (io.BytesIO(path.read_bytes()), opened):
            answer = index.answer(source)
            assert answer.match == by_path.match and answer.contenders == by_path.contenders
    assert index.match(io.BytesIO(path.read_bytes())) == by_path.match
    written = io.BytesIO()
    written.write(path.read_bytes())  # left at its end, as an upload just written is: read from its start
    assert index.match(written) == by_path.match

    class ReadOnly:  # a file-like object with `read` alone, that cannot seek: read from where it stands
        def __init__(self, data: bytes):
            self._data = io.BytesIO(data)

        def read(self, size: int = -1) -> bytes:
            return self._data.read(size)

    streamed = index.match(ReadOnly(path.read_bytes()))  # an MP3 read as it comes may decode a few samples more
    assert streamed.song == by_path.match.song and abs(streamed.offset_s - by_path.match.offset_s) < 0.02
    m4a = tmp_path / "clip.m4a"  # its index (moov) after its media, as FFmpeg writes it: read from a copy
    write(m4a, rendered(1, 40.0, 22_050)[9 * 22_050:15 * 22_050], 22_050)
    assert m4a.read_bytes().find(b"moov") > m4a.read_bytes().find(b"mdat") > 0
    streamed = index.match(ReadOnly(m4a.read_bytes()))
    assert streamed is not None and streamed.song == by_path.match.song and abs(streamed.offset_s - 9.0) < 0.1
    with pytest.raises(AudioError, match="not an audio file, or corrupt"):
        index.match(io.BytesIO(b"not audio at all" * 100))
    closed = io.BytesIO(path.read_bytes())
    closed.close()
    with pytest.raises(AudioError, match="^the file object is closed$"):
        index.match(closed)
    with open(path, encoding="latin-1") as text, pytest.raises(AudioError, match=r"reads text: .* binary mode"):
        index.match(text)
    with pytest.raises(AudioError, match=r"not a file's path .*io\.BytesIO\(data\)"):
        index.match(path.read_bytes())  # the file's bytes, given as if they were its path
    with pytest.raises(TypeError, match="an audio file's path or a binary file object, not NoneType"):
        index.match(None)


def test_an_index_gives_up_on_another_processs_lock_after_its_busy_timeout(built_index, tmp_path):
    """A program that would rather fail fast than wait the default minute for a writer."""
    import shutil
    import sqlite3
    import time

    from bench.audio_io import write
    from lmprint.errors import IndexLocked

    db = tmp_path / "copy.db"
    shutil.copy(built_index, db)
    song = tmp_path / "new.flac"
    write(song, rendered(44, 20.0, 22_050), 22_050)
    writer = sqlite3.connect(db, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    try:
        with Index(db, busy_timeout_s=0.5) as impatient:
            began = time.monotonic()
            with pytest.raises(IndexLocked, match=r"locked by another process \(gave up after 0.5 s\)"):
                impatient.add(song)
            assert 0.45 <= time.monotonic() - began < 4  # the timeout waited, then the song's fingerprint's time
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    with Index(db) as index:
        assert index.add(song).added == 1
    for wrong in (-1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="busy_timeout_s must be a number of seconds, 0 or more"):
            Index(db, busy_timeout_s=wrong)


def test_a_count_of_jobs_that_is_not_a_whole_number_of_at_least_one_is_refused_before_anything_changes(
        tmp_path, built_index):
    """`add(jobs=0)` ran as one job without a word, as `jobs=-3` did; the command line refuses them (click)."""
    import functools
    import shutil

    from bench.audio_io import write
    from lmprint.monitor import Looks

    db = tmp_path / "copy.db"
    shutil.copy(built_index, db)
    song = tmp_path / "new.flac"
    write(song, rendered(45, 20.0, 22_050), 22_050)
    with Index(db) as index:
        songs = index.catalogue.song_count()
        for wrong in (0, -3, 1.5, True, "2"):
            with pytest.raises(ValueError, match="jobs must be a whole number of worker processes, 1 or more"):
                index.add(song, jobs=wrong)
            with pytest.raises(ValueError, match="jobs must be a whole number of worker processes, 1 or more"):
                Looks(functools.partial(Index, db), jobs=wrong)
        assert index.catalogue.song_count() == songs
        assert index.add(song, jobs=np.int64(2)).added == 1


def test_each_files_outcome_names_the_song_its_content_is_indexed_as(tmp_path):
    """Added, skipped, a copy (the same bytes elsewhere) or moved: the song id a program keeps; none for a failure."""
    import shutil

    from bench.audio_io import write

    music = tmp_path / "music"
    music.mkdir()
    for seed in range(2):
        write(music / f"s{seed}.flac", rendered(seed, 12.0, 22_050), 22_050)
    (music / "notes.txt.mp3").write_text("not audio")
    with Index(tmp_path / "index.db", create=True) as index:
        outcomes = []
        index.add(music, on_outcome=outcomes.append)
        ids = {Path(song.path).name: song.id for song in index.catalogue.songs()}
        assert {Path(o.path).name: o.song_id for o in outcomes} == {**ids, "notes.txt.mp3": None}
        shutil.copy(music / "s0.flac", music / "s0 copy.flac")
        (music / "s1.flac").rename(music / "s1 moved.flac")
        outcomes.clear()
        index.add(music, on_outcome=outcomes.append)
        by_name = {Path(o.path).name: (o.counted_as, o.song_id) for o in outcomes}
        assert by_name == {"s0.flac": ("skipped", ids["s0.flac"]), "s0 copy.flac": ("copies", ids["s0.flac"]),
                           "s1 moved.flac": ("moved", ids["s1.flac"]), "notes.txt.mp3": ("failed", None)}


def test_adding_the_same_files_again_skips_them(built_index, library_dir, monkeypatch):
    """Known by their bytes' hash: none is decoded or fingerprinted again."""
    from landmark import batch

    work = []
    real_decode, real_fingerprint = batch.audio.decode, batch.fingerprint
    monkeypatch.setattr(batch.audio, "decode", lambda *args, **kwargs: work.append("decoded") or real_decode(
        *args, **kwargs))
    monkeypatch.setattr(batch, "fingerprint", lambda *args, **kwargs: work.append("fingerprinted") or real_fingerprint(
        *args, **kwargs))
    with Index(built_index) as opened:
        report = opened.add([str(library_dir)])
        assert (report.added, report.skipped, report.failed) == (0, len(FORMATS), []) and work == []


def stored_by_title(index: Index) -> tuple[list[tuple[str, int, int]], dict[str, list[list[int]]]]:
    """Every posting as (song title, hash, frame in the song), sorted, and every song's stored peaks by title."""
    from landmark.store import all_postings

    titles = {song.id: song.title for song in index.catalogue.songs()}
    keys = np.unique(all_postings(index.postings)[0])
    found = index.postings.lookup(keys)  # frames in each song's own time, wherever the song lies in the index
    postings = sorted(zip([titles[i] for i in found.song_ids.tolist()], keys[found.key_index].tolist(),
                          found.frames.tolist()))
    peaks = {titles[i]: [frames.tolist(), bins.tolist()] for i, (frames, bins) in index.peaks.get(list(titles)).items()}
    return postings, peaks


def test_parallel_add_indexes_the_same_fingerprints(library_dir, tmp_path, built_index):
    """Songs fingerprinted in worker processes store the same postings and peaks as songs fingerprinted here, by
    the index's settings (here not the defaults)."""
    from landmark.settings import Density, FingerprintSettings

    settings = FingerprintSettings(index=Density(peaks_per_s=12.0, fanout=3, neighbourhood_bins=5,
                                                 neighbourhood_frames=5))
    with Index(tmp_path / "parallel.db", create=True, fingerprint=settings) as parallel:
        report = parallel.add([str(library_dir)], jobs=2)
        assert report.added == len(FORMATS)
        with Index(tmp_path / "serial.db", create=True, fingerprint=settings) as serial, Index(built_index) as default:
            serial.add([str(library_dir)])
            postings, peaks = stored_by_title(parallel)
            assert len(postings) > 1000 and len(peaks) == len(FORMATS)
            assert (postings, peaks) == stored_by_title(serial) != stored_by_title(default)


def test_a_query_that_finds_nothing_looks_again_with_a_wider_delta_time(tmp_path, monkeypatch):
    """A room stretches the time between two peaks: here every pair of the clip is 3 frames longer than the
    song's. The first look (Δt ± 2) finds nothing; the second (Δt ± 4) finds the song at its offset."""
    from landmark import library
    from landmark.batch import SongFingerprint
    from landmark.fingerprint import Fingerprint
    from landmark.hashes import pack

    anchors = np.arange(60)
    song_hashes = pack(40 + anchors, np.full(60, 5), np.full(60, 20)).astype(np.uint32)
    clip_hashes = pack(40 + anchors, np.full(60, 5), np.full(60, 23)).astype(np.uint32)
    path = tmp_path / "i.db"
    with Index(path, create=True) as index:
        index.add_fingerprint(SongFingerprint("/s", "s", 60.0, "sha", song_hashes, (500 + 5 * anchors).astype(np.uint32),
                                              np.zeros(0, np.int64), np.zeros(0, np.int64)))
    monkeypatch.setattr(library, "fingerprint",
                        lambda *args, **kwargs: Fingerprint(clip_hashes, (5 * anchors).astype(np.uint32),
                                                            *[np.zeros(0, np.int64)] * 2, np.zeros((300, 257))))
    tolerances = []
    real_align = Index._align

    def align(self, query, tolerance_frames):  # which looks the query took
        tolerances.append(tolerance_frames)
        return real_align(self, query, tolerance_frames)

    monkeypatch.setattr(Index, "_align", align)
    noise = np.random.default_rng(0).standard_normal(8000 * 5).astype(np.float32)
    with Index(path, matching=MatchSettings(query_retry_tolerance_frames=0)) as index:
        assert index.match_samples(noise) is None and tolerances == [2]
    tolerances.clear()
    with Index(path, matching=MatchSettings(query_retry_tolerance_frames=4)) as index:
        found = index.match_samples(noise)
        assert found.song.path == "/s" and found.offset_s == pytest.approx(500 * index.fingerprint_settings.frame_s)
        assert tolerances == [2, 4]
        tolerances.clear()  # a clip the first look names looks once
        monkeypatch.setattr(library, "fingerprint",
                            lambda *args, **kwargs: Fingerprint(song_hashes, (5 * anchors).astype(np.uint32),
                                                                *[np.zeros(0, np.int64)] * 2, np.zeros((300, 257))))
        assert index.match_samples(noise).song.path == "/s" and tolerances == [2]


def test_a_query_on_a_budget_still_names_the_song_and_reads_a_fraction_of_the_postings(built_index, monkeypatch):
    """With a budget far below what the query asks for, the likeliest evidence per posting is read first: the
    index-style pairs of a clean clip. That is enough to name the song, and most of the rest stays unread (the
    budget counts a row's asked postings as its share of the row, an estimate)."""
    from landmark.store import SQLitePostingStore

    read = []
    plain_lookup = SQLitePostingStore.lookup

    def counting_lookup(self, keys, priority=None, max_postings=0):
        found = plain_lookup(self, keys, priority, max_postings)
        read.append(found.song_ids.size)
        return found

    monkeypatch.setattr(SQLitePostingStore, "lookup", counting_lookup)
    full = Index(built_index)
    song = full.catalogue.songs()[2]
    clip = audio.load(song.path, full.sample_rate_hz)[8000 * 11:8000 * 16]
    assert full.match_samples(clip).song.path == song.path
    asked = read[-1]
    budget = asked // 20
    lean = Index(built_index, matching=MatchSettings(max_postings_read=budget))
    match = lean.match_samples(clip)
    assert read[-1] <= 3 * budget
    assert match.song.path == song.path and match.offset_s == pytest.approx(11.0, abs=0.1)
    # a twentieth of the postings, the likeliest first, holds much more than a twentieth of the song's score (0.44;
    # read in key order 0.16)
    assert match.score > 0.3 * full.match_samples(clip).score


def test_the_warped_search_reads_within_its_own_budget(built_index, monkeypatch):
    """A clip played faster names nothing as recorded and is searched warped: each search's lookup is bounded by
    its own budget (`max_postings_read`, `warp_max_postings_read`), and the song is found."""
    from bench import queries
    from landmark.store import SQLitePostingStore

    budgets = []
    plain_lookup = SQLitePostingStore.lookup

    def counting_lookup(self, keys, priority=None, max_postings=0):
        found = plain_lookup(self, keys, priority, max_postings)
        budgets.append((max_postings, found.song_ids.size))
        return found

    monkeypatch.setattr(SQLitePostingStore, "lookup", counting_lookup)
    song = Index(built_index).catalogue.songs()[2]
    clip = queries.change_speed(audio.load(song.path, 8000)[8000 * 11:8000 * 17], 1.05)

    def warped_read(warp_budget: int) -> int:
        budgets.clear()
        matching = MatchSettings(max_postings_read=50_000, warp_max_postings_read=warp_budget)
        match = Index(built_index, matching=matching).match_samples(clip)
        assert [budget for budget, _ in budgets] == [50_000, warp_budget]
        assert match.song.path == song.path and match.speed == pytest.approx(1.05, abs=0.005)
        return budgets[1][1]

    asked = warped_read(0)  # no limit: every posting the warped search asks for
    assert warped_read(asked // 4) <= 2 * (asked // 4) < asked


def test_the_wider_look_needs_its_own_ratio_over_the_runner_up(tmp_path, monkeypatch):
    """Widened to Δt ± 4, a clip lines up with more songs by chance, so the second look asks a ratio of its own
    (`query_retry_min_ratio`): a rival holding 41 of the song's 60 pairs 4 frames off, the song leading by 1.46
    times, is named at a ratio of 1.4 and not at the default."""
    from landmark import library
    from landmark.batch import SongFingerprint
    from landmark.fingerprint import Fingerprint
    from landmark.hashes import pack

    anchors, empty = np.arange(60), np.zeros(0, np.int64)
    song_hashes = pack(40 + anchors, np.full(60, 5), np.full(60, 20)).astype(np.uint32)
    rival_hashes = pack(40 + anchors[:41], np.full(41, 5), np.full(41, 19)).astype(np.uint32)
    clip_hashes = pack(40 + anchors, np.full(60, 5), np.full(60, 23)).astype(np.uint32)
    path = tmp_path / "i.db"
    with Index(path, create=True) as index:
        index.add_fingerprint(SongFingerprint("/s", "s", 60.0, "sha", song_hashes,
                                              (500 + 5 * anchors).astype(np.uint32), empty, empty))
        index.add_fingerprint(SongFingerprint("/r", "r", 60.0, "shr", rival_hashes,
                                              (700 + 5 * anchors[:41]).astype(np.uint32), empty, empty))
    monkeypatch.setattr(library, "fingerprint", lambda *args, **kwargs: Fingerprint(
        clip_hashes, (5 * anchors).astype(np.uint32), empty, empty, np.zeros((300, 257))))
    noise = np.random.default_rng(0).standard_normal(8000 * 5).astype(np.float32)
    with Index(path, matching=MatchSettings(query_retry_tolerance_frames=4)) as index:
        found, candidates = index.identify(noise)
        assert candidates[0].score / candidates[1].score == pytest.approx(60 / 41, rel=0.01) and found is None
    with Index(path, matching=MatchSettings(query_retry_tolerance_frames=4, query_retry_min_ratio=1.4)) as index:
        assert index.match_samples(noise).song.path == "/s"


def test_a_query_pair_is_likelier_an_indexed_pair_the_more_of_it_the_index_density_holds(index):
    """The query tells each pair's kind: made by the index's own density from the clip, or holding 2, 1 or 0 of
    the clip's peaks at index density; and its target's rank. The plan reads them in that order, on the grounds
    that the song holds pairs of each kind more often than of the next, and early targets more often than late
    ones. Counted over clips of every song at three offsets, a hit being the song's pair at the clip's offset
    ± 1 frame."""
    from landmark.fingerprint import INDEX_STYLE, PAIR_KINDS, fingerprint
    from landmark.hashes import unpack

    settings = index.fingerprint_settings
    clip_frames = 5 * 8000 // settings.hop_size
    kinds, ranks, hits = [], [], []
    for song in index.catalogue.songs():
        samples = audio.load(song.path, index.sample_rate_hz)
        stored = fingerprint(samples, settings, settings.index)
        indexed = set(zip(stored.hashes.tolist(), stored.anchor_frames.tolist()))
        for start_frames in (300, 700, 1500):
            clip = samples[start_frames * settings.hop_size:(start_frames + clip_frames) * settings.hop_size]
            query = fingerprint(clip, settings, index.matching.query, index_density=settings.index)
            hits += [any((h, f + start_frames + shift) in indexed for shift in (-1, 0, 1))
                     for h, f in zip(query.hashes.tolist(), query.anchor_frames.tolist())]
            kinds.append(query.pair_kind)
            ranks.append(query.target_rank)
            # an anchor's targets are ranked 0, 1, 2, ... in the order it pairs them
            anchor_ids = query.anchor_frames.astype(np.int64) << 16 | unpack(query.hashes)[0].astype(np.int64)
            firsts = np.flatnonzero(np.r_[True, np.diff(anchor_ids) != 0])
            ordinal = np.arange(anchor_ids.size) - np.repeat(firsts, np.diff(np.r_[firsts, anchor_ids.size]))
            assert np.array_equal(query.target_rank, ordinal)
    kind, rank, hit = np.concatenate(kinds), np.concatenate(ranks), np.array(hits)
    rates = [hit[kind == k].mean() for k in range(PAIR_KINDS)]
    assert (kind == INDEX_STYLE).sum() > 1000
    assert rates[INDEX_STYLE] > 0.3
    assert rates[INDEX_STYLE] > 3 * rates[2] and rates[2] > rates[1] > 3 * rates[0] > 0
    early, late = rank < 4, rank >= 8
    for k in (0, 1):
        assert hit[early & (kind == k)].mean() > 2 * hit[late & (kind == k)].mean()


def test_a_clip_mostly_of_a_passage_two_songs_share_names_the_song_that_holds_all_of_it(tmp_path):
    """Song A plays a passage, then its own music; song B plays the same passage after an intro, then other
    music. A noisy clip of A whose last seconds are A's own names A: two files sharing most of the clip's stretch
    are not one candidate in the vote, and a rival that agrees better with the whole clip is never passed over
    as a copy of the stretch (B was named for 6 of 48 such clips, and 2 of 48 before stretches counted)."""
    from bench.audio_io import write

    rate = 22050
    passage, own, other = rendered(3, 40.0, rate), rendered(4, 40.0, rate), rendered(5, 40.0, rate)
    song_a = np.r_[passage[:20 * rate], own[:20 * rate]]
    library = tmp_path / "music"
    library.mkdir()
    write(library / "A.wav", song_a, rate)
    write(library / "B.wav", np.r_[other[:10 * rate], passage[:20 * rate], other[20 * rate:35 * rate]], rate)
    for seed in (0, 1, 2):
        write(library / f"o{seed}.wav", rendered(seed, 40.0, rate), rate)
    rng = np.random.default_rng(1)
    with Index(tmp_path / "i.db", create=True) as index:
        index.add([str(library)])
        import soxr

        clean = soxr.resample(song_a, rate, index.sample_rate_hz).astype(np.float32)
        named = []
        for clip_s, shared in ((8.0, 0.9), (8.0, 0.95), (10.0, 0.9), (10.0, 0.95)):
            start = int((20 - shared * clip_s) * index.sample_rate_hz)
            clip = clean[start:start + int(clip_s * index.sample_rate_hz)]
            for snr_db in (10.0, -5.0):
                noisy = queries.add_noise(clip, queries.pink_noise(clip.size, rng), snr_db, rng)
                found = index.match_samples(noisy)
                named.append(None if found is None else found.song.title)
    assert "B" not in named and named.count("A") >= len(named) - 1, named


def test_a_file_that_kills_its_worker_fails_alone_and_the_batch_goes_on(library_dir, monkeypatch):
    """A worker killed while it reads a file (as the out-of-memory killer kills one) broke the pool: `add --jobs`
    ended in a traceback and the files after it were never added. That file is now read again in a worker of its
    own, fails in one line, and the rest of the batch is fingerprinted, in order."""
    import multiprocessing
    import os

    from landmark import batch
    from landmark.settings import FingerprintSettings

    if multiprocessing.get_start_method() != "fork":
        pytest.skip("the killing stand-in reaches the workers through fork")
    paths = [str(library_dir / f"song{seed}.{extension}") for seed, extension in enumerate(FORMATS)]
    killer, real = paths[2], batch.fingerprint_song

    def killed_by_one(path, *arguments):
        if path == killer:
            os._exit(9)
        return real(path, *arguments)

    monkeypatch.setattr(batch, "fingerprint_song", killed_by_one)
    results = list(batch.fingerprint_songs(paths, FingerprintSettings(), 1.0, jobs=2))
    assert [outcome.path for outcome, _ in results] == paths
    assert [(outcome.path, outcome.error) for outcome, song in results if song is None] == [
        (killer, "its worker process was killed (out of memory?)")]
    assert all(song is not None and song.hashes.size > 500 for outcome, song in results if outcome.path != killer)


def test_files_of_one_recording_voted_far_apart_are_listed_as_copies_not_as_the_runner_up(tmp_path):
    """A song as a WAV, the same at half the gain and as an MP3: the two WAVs hold the same keys, so each of their
    rare keys weighs as one held twice, and the MP3 outvotes both by a third, past what copies' votes differ by.
    The match lists the other two as its copies, and the runner-up is another recording."""
    from bench.audio_io import write
    from bench.synth import song

    rate = 22050
    music = song(0, 20.0, rate)
    files = {"song.wav": music, "quiet.wav": music * 0.5, "song.mp3": music}
    for seed in (1, 2):
        files[f"other{seed}.wav"] = song(seed, 20.0, rate)
    for name, samples in files.items():
        write(tmp_path / name, samples, rate)
    index = Index(tmp_path / "i.db", create=True)
    index.add([str(tmp_path / name) for name in files])
    write(tmp_path / "clip.wav", music[2 * rate:8 * rate], rate)
    answer = index.answer(tmp_path / "clip.wav")
    one_recording = {str(tmp_path / name) for name in ("song.wav", "quiet.wav", "song.mp3")}
    assert answer.match is not None and {answer.match.song.path, *(copy.path for copy in answer.match.copies)} == \
        one_recording
    assert answer.runner_up is None or answer.runner_up.song.path not in one_recording


def test_the_copy_whose_peaks_agree_best_is_named_and_the_vote_leader_listed_as_its_copy(tmp_path):
    """Of the vote's leader and the copies of its recording, the file whose peaks agree best with the clip is
    named (`_best_agreeing_copy`), with the leader among its copies; a lossy file holding two peaks in five leads
    the vote here, and the whole one agrees better."""
    rng = np.random.default_rng(4)
    song = rendered(3, 40.0, RATE)
    start = 15 * RATE + 5 * CONFIG.hop_size
    delta = start // CONFIG.hop_size
    clip = queries.add_noise(song[start:start + 5 * RATE], queries.pink_noise(5 * RATE, rng), 0.0, rng)
    prominence = ProminenceMap.of(fingerprint(clip, CONFIG, MATCHING.query, with_prominence=True).prominence, CONFIG)
    frames, bins = extract_peaks(song, CONFIG, CONFIG.index)
    part = np.arange(frames.size) % 5 < 2
    stored = {1: (frames[part], bins[part]), 2: (frames, bins)}

    def song_peaks(ids):
        return {i: stored[i] for i in ids if i in stored}

    leader, other = Candidate(1, 30.0, delta), Candidate(2, 26.0, delta)
    is_copy = CopyCheck(song_peaks, lambda ids: {i: 40.0 for i in ids}, MATCHING, clip_frames=prominence.standardised.shape[0])
    assert is_copy(leader, other) and is_copy.copies == {1: {2}}
    z = agreement_at(leader, prominence, song_peaks, MATCHING)
    better = agreement_at(other, prominence, song_peaks, MATCHING)
    assert better > z + 1, (z, better)
    with Index(tmp_path / "i.db", create=True) as index:
        named, named_z = index._best_agreeing_copy(leader, z, [leader, other], is_copy, prominence, song_peaks)
    assert named.song_id == 2 and named_z == better, (z, better)
    assert is_copy.copies[2] == {1}


def test_an_answers_contenders_are_the_best_voted_songs_best_first(built_index, tmp_path):
    """`Index.answer` lists the songs behind the match best first: the named song first, and their vote scores
    never rising."""
    from bench.audio_io import write

    with Index(built_index) as index:
        for seed in (1, 4):
            path = tmp_path / f"clip{seed}.wav"
            write(path, rendered(seed, 40.0, RATE)[9 * RATE:15 * RATE], RATE)
            answer = index.answer(path)
            assert answer.match is not None and answer.match.song.title == f"song{seed}"
            scores = [contender.score for contender in answer.contenders]
            assert len(scores) >= 2 and answer.contenders[0].song.title == f"song{seed}", answer.contenders
            assert scores == sorted(scores, reverse=True), scores



def test_a_retry_tolerance_equal_to_the_first_looks_takes_no_second_look(tmp_path, monkeypatch):
    """The second look is taken only where `query_retry_tolerance_frames` is *above* the first look's tolerance:
    at the same tolerance it would read the same postings again, and could only name a song under another ratio."""
    from landmark import library
    from landmark.batch import SongFingerprint
    from landmark.fingerprint import Fingerprint
    from landmark.hashes import pack

    anchors, empty = np.arange(60), np.zeros(0, np.int64)
    song_hashes = pack(40 + anchors, np.full(60, 5), np.full(60, 20)).astype(np.uint32)
    clip_hashes = pack(40 + anchors, np.full(60, 5), np.full(60, 25)).astype(np.uint32)  # 5 frames longer: no match
    path = tmp_path / "i.db"
    with Index(path, create=True) as index:
        index.add_fingerprint(SongFingerprint("/s", "s", 60.0, "sha", song_hashes,
                                              (500 + 5 * anchors).astype(np.uint32), empty, empty))
    monkeypatch.setattr(library, "fingerprint", lambda *args, **kwargs: Fingerprint(
        clip_hashes, (5 * anchors).astype(np.uint32), empty, empty, np.zeros((300, 257))))
    tolerances = []
    real_align = Index._align

    def align(self, query, tolerance_frames):
        tolerances.append(tolerance_frames)
        return real_align(self, query, tolerance_frames)

    monkeypatch.setattr(Index, "_align", align)
    noise = np.random.default_rng(0).standard_normal(8000 * 5).astype(np.float32)
    first = MatchSettings().query_delta_tolerance_frames
    with Index(path, matching=MatchSettings(query_retry_tolerance_frames=first)) as index:
        assert index.match_samples(noise) is None
    assert tolerances == [first]
