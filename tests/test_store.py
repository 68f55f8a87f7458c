import os
import shutil
import sqlite3
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from landmark import Index, segments
from landmark.batch import SongFingerprint
from landmark.peak_codec import PEAK_GAP_LIMIT
from landmark.peak_codec import decode as decode_peaks
from landmark.peak_codec import encode as encode_peaks
from landmark.postings import ESCAPE, RowLayout, decode_rows, encode_words
from landmark.postings import decode as decode_postings
from landmark.postings import encode as encode_postings
from landmark.settings import Density, FingerprintSettings, MatchSettings
from landmark.store import SongPostings, all_postings
from lmprint.catalogue import SCHEMA_VERSION, UPGRADABLE_FROM
from lmprint.errors import IndexFileError, NoIndex
from tests.conftest import read_only_folder


def Store(path, create=False, **settings):
    """The landmark engine's store, through its index."""
    return Index(path, create=create, **settings)


def insert(index, path, sha1, hashes, frames, peaks=None, duration_s=10.0):
    """Store a song's postings (and peaks) as `add` does; its id, or None if its content has postings already."""
    peak_frames, peak_bins = peaks if peaks is not None else (np.zeros(0, np.int64), np.zeros(0, np.int64))
    return index.add_fingerprint(SongFingerprint(path, path.strip("/"), duration_s, sha1,
                                                 np.asarray(hashes, np.uint32), np.asarray(frames, np.uint32),
                                                 np.asarray(peak_frames), np.asarray(peak_bins)))


def _postings_of(index, hashes):
    """(hash, song id, frame) of every posting of these hashes, sorted: `lookup` names each posting's key by its
    index among the (ascending, distinct) keys asked for."""
    hashes = np.unique(np.asarray(hashes, np.uint32))
    found = index.postings.lookup(hashes)
    return sorted(zip(hashes[found.key_index].tolist(), found.song_ids.tolist(), found.frames.tolist()))


def _sorted_postings(hashes, frames):
    order = np.lexsort((frames, hashes))
    return np.asarray(hashes)[order].tolist(), np.asarray(frames)[order].tolist()


def test_postings_round_trip_through_the_gap_encoding():
    rng = np.random.default_rng(0)
    hashes = rng.integers(0, 1 << 21, 5000).astype(np.uint32)
    timeline_frames = rng.integers(0, 1 << 36, 5000)
    # the largest frame, and gaps on both sides of the escape threshold within one row
    timeline_frames[:5] = [0, (1 << 36) - 1, ESCAPE - 1, 2 * ESCAPE - 1, 3 * ESCAPE]
    hashes[:5] = [7, 8, 9, 9, 9]
    buckets, blobs = encode_postings(hashes, timeline_frames)
    assert _sorted_postings(*decode_postings(buckets, blobs)) == _sorted_postings(hashes, timeline_frames)


def test_appended_postings_continue_the_row():
    """A song's postings are appended to rows that already hold earlier songs' postings: their first gap counts
    from the row's last posting."""
    rng = np.random.default_rng(1)
    first = rng.integers(0, 1 << 12, 3000).astype(np.uint32), rng.integers(0, 500_000, 3000)
    buckets, blobs = encode_postings(*first)
    ends = {b: int(f) for b, f in zip(*(x.tolist() for x in _row_last(buckets, blobs)))}
    second = rng.integers(0, 1 << 12, 3000).astype(np.uint32), rng.integers(500_000, 900_000, 3000)
    touched = np.unique(second[0] >> 4)
    more_buckets, more_blobs = encode_postings(*second, np.array([ends.get(b, 0) for b in touched.tolist()]))
    rows = dict(zip(buckets.tolist(), blobs))
    for bucket, blob in zip(more_buckets.tolist(), more_blobs):
        rows[bucket] = rows.get(bucket, b"") + blob
    got = decode_postings(np.array(list(rows)), list(rows.values()))
    both = np.r_[first[0], second[0]], np.r_[first[1], second[1]]
    assert _sorted_postings(*got) == _sorted_postings(*both)


def _row_last(buckets, blobs):
    hashes, frames = decode_postings(buckets, blobs)
    last = {}
    for h, f in zip(hashes.tolist(), frames.tolist()):
        last[h >> 4] = max(last.get(h >> 4, 0), f)
    return np.array(list(last)), np.array(list(last.values()))


def test_postings_of_an_index_take_about_three_bytes():
    """134 songs' worth of postings (21 per second of audio, 62.5 frames per second): 3 bytes per posting and
    a little for escapes, against 5 for a plain timeline frame."""
    rng = np.random.default_rng(2)
    n = 420_000
    hashes = (rng.zipf(1.3, n) * 7919 % (1 << 21)).astype(np.uint32)
    frames = np.sort(rng.integers(0, int(n / 21 * 62.5), n))
    _, blobs = encode_postings(hashes, frames)
    assert 3.0 <= sum(map(len, blobs)) / n < 3.4


def test_peaks_round_trip_across_long_pauses_and_wide_bins():
    rng = np.random.default_rng(5)
    frames = np.sort(rng.integers(0, 20_000, 3000))
    frames[1000:] += 4 * PEAK_GAP_LIMIT  # a pause of four gap limits, and gaps of exactly one limit or a multiple
    frames[2000:] += PEAK_GAP_LIMIT - (frames[2000] - frames[1999])
    frames[2500:] += 3 * PEAK_GAP_LIMIT - (frames[2500] - frames[2499])
    for bins in (rng.integers(10, 244, 3000), rng.integers(1, 257, 3000)):  # bytes; a Nyquist bin needs two
        decoded = decode_peaks(encode_peaks(frames, bins))
        np.testing.assert_array_equal(decoded[0], frames)
        np.testing.assert_array_equal(decoded[1], bins)
    assert [a.size for a in decode_peaks(encode_peaks(np.zeros(0, int), np.zeros(0, int)))] == [0, 0]


def test_peaks_written_before_schema_7_in_lzma2_still_decode():
    """Files before schema 7 hold peaks as raw LZMA2 of the same bytes: the first byte tells the codecs apart."""
    import lzma
    import zlib

    from landmark.peak_codec import LZMA_CODER

    rng = np.random.default_rng(8)
    frames, bins = np.sort(rng.integers(0, 9000, 2000)), rng.integers(1, 256, 2000)
    old = lzma.compress(zlib.decompress(encode_peaks(frames, bins)), format=lzma.FORMAT_RAW, filters=LZMA_CODER)
    decoded = decode_peaks(old)
    np.testing.assert_array_equal(decoded[0], frames)
    np.testing.assert_array_equal(decoded[1], bins)


def test_songs_follow_each_other_on_the_timeline_and_a_stale_reader_catches_up(tmp_path):
    """Postings name a song by its place on the timeline. A reader that cached the song list before another
    process added a song still attributes the new song's postings to it, and counts it (votes weigh by it)."""
    writer = Store(tmp_path / "i.db", create=True)
    reader = Store(tmp_path / "i.db")
    a = insert(writer, "/a", "sha-a", np.array([5, 6], np.uint32), np.array([0, 600], np.uint32))
    assert _postings_of(reader, [5, 6, 7]) == [(5, a, 0), (6, a, 600)]
    assert reader.postings.song_count() == 1
    b = insert(writer, "/b", "sha-b", np.array([5, 7], np.uint32), np.array([3, 4], np.uint32))
    assert _postings_of(reader, [5, 6, 7]) == [(5, a, 0), (5, b, 3), (6, a, 600), (7, b, 4)]
    assert (reader.postings.song_count(), writer.postings.song_count()) == (2, 2)
    writer.remove([a])
    assert (reader.postings.song_count(), writer.postings.song_count()) == (1, 1)
    c = insert(writer, "/c", "sha-c", np.array([6], np.uint32), np.array([9], np.uint32))
    assert _postings_of(reader, [5, 6, 7]) == [(5, b, 3), (6, c, 9), (7, b, 4)]
    assert (reader.postings.song_count(), writer.postings.song_count()) == (2, 2)


def test_two_writers_taking_turns_keep_every_row_consistent(tmp_path):
    """A writer remembers where its rows end between its own inserts; when another connection has appended to
    the same rows in between, it must notice and read them again, or its postings land at wrong frames."""
    first, second = Store(tmp_path / "i.db", create=True), Store(tmp_path / "i.db")
    hashes = np.array([16, 17, 40], np.uint32)  # two share a row
    a = insert(first, "/a", "sha-a", hashes, np.array([1, 2, 3], np.uint32))
    b = insert(second, "/b", "sha-b", hashes, np.array([4, 5, 6], np.uint32))
    c = insert(first, "/c", "sha-c", hashes, np.array([7, 8, 9], np.uint32))
    first.remove([c])  # the rows end earlier now
    d = insert(first, "/d", "sha-d", hashes, np.array([10, 11, 12], np.uint32))
    assert _postings_of(Store(tmp_path / "i.db"), hashes) == sorted((int(h), song, frame) for song, frames in ((a, [1, 2, 3]), (b, [4, 5, 6]), (d, [10, 11, 12]))
                         for h, frame in zip(hashes, frames))


def test_times_of_a_two_hour_song_do_not_wrap(tmp_path):
    store = Store(tmp_path / "i.db", create=True)
    frames = np.array([0, 200_000, 449_999], np.uint32)  # 2 h at 16 ms frames is 450,000 frames
    hashes = np.array([11, 12, 13], np.uint32)
    insert(store, "/a", "sha-a", hashes, frames)
    assert [(h, frame) for h, _, frame in _postings_of(store, hashes)] == [(11, 0), (12, 200_000), (13, 449_999)]


def test_lookup_returns_exactly_the_postings_of_the_asked_hashes(tmp_path):
    store = Store(tmp_path / "i.db", create=True)
    insert(store, "/a", "sha-a", np.array([16, 17, 33], np.uint32), np.array([1, 2, 3], np.uint32))
    insert(store, "/b", "sha-b", np.array([17, 18], np.uint32), np.array([5, 6], np.uint32))
    assert _postings_of(store, [17, 33, 999]) == [(17, 1, 2), (17, 2, 5), (33, 1, 3)]
    with pytest.raises(ValueError):
        store.postings.lookup(np.array([33, 17], np.uint32))  # the index of a posting's hash needs them ascending


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(0, 95), min_size=1, max_size=60), st.sets(st.integers(0, 100), max_size=40))
def test_lookup_names_each_postings_hash_among_those_asked(tmp_path_factory, stored, asked):
    """Six rows of 16 hashes, postings on any of them, any subset asked: each posting found is attributed to the
    right asked hash (by its row's first asked hash plus the asked ones below it in the row), and none is missed."""
    store = Store(tmp_path_factory.mktemp("lookup") / "i.db", create=True)
    insert(store, "/a", "sha-a", np.array(stored, np.uint32), np.arange(len(stored), dtype=np.uint32))
    expected = sorted((h, 1, frame) for frame, h in enumerate(stored) if h in asked)
    assert _postings_of(store, sorted(asked)) == expected


def test_the_same_content_is_stored_once(tmp_path):
    store = Store(tmp_path / "i.db", create=True)
    assert insert(store, "/a", "same", np.array([1], np.uint32), np.array([1], np.uint32)) == 1
    assert insert(store, "/b", "same", np.array([1], np.uint32), np.array([1], np.uint32)) is None
    assert len(store.catalogue.songs()) == 1 and len(_postings_of(store, [1])) == 1


def test_a_failure_mid_song_leaves_no_trace(tmp_path, monkeypatch):
    from landmark import postings

    store = Store(tmp_path / "i.db", create=True)

    def broken(*args):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(postings, "encode", broken)
    with pytest.raises(RuntimeError):
        insert(store, "/a", "x", np.array([1], np.uint32), np.array([1], np.uint32),
                          (np.array([1]), np.array([20])))
    assert store.catalogue.songs() == [] and store.peaks.get([1]) == {}


def test_delete_removes_the_song_and_only_its_postings(tmp_path):
    store = Store(tmp_path / "i.db", create=True)
    a = insert(store, "/a", "a", np.array([16, 17], np.uint32), np.array([1, 2], np.uint32),
                          (np.array([1, 2, 5]), np.array([20, 30, 25])))
    b = insert(store, "/b", "b", np.array([17, 40], np.uint32), np.array([3, 4], np.uint32),
                          (np.array([3, 4]), np.array([40, 41])))
    store.remove([a])
    assert [(h, song) for h, song, _ in _postings_of(store, [16, 17, 40])] == [(17, 2), (40, 2)]
    assert [s.path for s in store.catalogue.songs()] == ["/b"]
    peaks = store.peaks.get([a, b])
    assert list(peaks) == [b] and peaks[b][1].tolist() == [40, 41]


def test_remove_takes_song_ids_as_ints_and_refuses_a_string(tmp_path):
    store = Store(tmp_path / "i.db", create=True)
    ids = [insert(store, f"/{n}", str(n), np.array([16 + n], np.uint32), np.array([1], np.uint32),
                  (np.array([1]), np.array([20]))) for n in range(4)]
    assert ids[1:3] == [2, 3]
    with pytest.raises(TypeError, match="not '23'"):
        store.remove("23")  # not songs 2 and 3
    with pytest.raises(TypeError, match="a song id is an int"):
        store.remove(["2"])
    assert len(store.catalogue.songs()) == 4
    store.remove(np.int64(ids[0]))  # one id, of any integer type
    store.remove([ids[3]])
    assert [s.path for s in store.catalogue.songs()] == ["/1", "/2"]


def test_an_index_refuses_fingerprints_made_with_other_settings(tmp_path):
    Store(tmp_path / "i.db", create=True).close()
    other = FingerprintSettings(index=Density(peaks_per_s=20, fanout=5, neighbourhood_bins=5, neighbourhood_frames=5))
    with pytest.raises(IndexFileError, match="other fingerprint settings"):
        Store(tmp_path / "i.db", fingerprint=other)
    Store(tmp_path / "i.db", matching=MatchSettings(min_margin=9)).close()  # matching thresholds may differ


def test_missing_foreign_random_newer_and_older_files_get_one_clear_error(tmp_path):
    with pytest.raises(NoIndex, match=r"^no index at \S+missing.db$"):
        Store(tmp_path / "missing.db")
    (tmp_path / "empty.db").write_bytes(b"")  # cut to nothing: there, but no index
    with pytest.raises(NoIndex, match=r"^no index at \S+empty.db: the file is empty$"):
        Store(tmp_path / "empty.db")
    (tmp_path / "random.db").write_bytes(np.random.default_rng(0).bytes(50_000))
    with pytest.raises(IndexFileError, match="not an lmprint index"):
        Store(tmp_path / "random.db")
    foreign = sqlite3.connect(tmp_path / "foreign.db")
    foreign.execute("CREATE TABLE t(x)")
    foreign.commit()
    foreign.close()
    with pytest.raises(IndexFileError, match="not an lmprint index"):
        Store(tmp_path / "foreign.db")
    blank = sqlite3.connect(tmp_path / "blank.db")  # as another process leaves it while it creates an index
    blank.execute("PRAGMA journal_mode=WAL")
    blank.close()
    with pytest.raises(NoIndex, match="no index at .* yet: another process may be creating it now"):
        Store(tmp_path / "blank.db")
    Store(tmp_path / "blank.db", create=True).close()
    Store(tmp_path / "blank.db").close()
    Store(tmp_path / "new.db", create=True).close()
    for version, complaint in ((SCHEMA_VERSION + 1, "newer"), (UPGRADABLE_FROM - 1, "older lmprint")):
        other = sqlite3.connect(tmp_path / "new.db")
        other.execute(f"PRAGMA user_version={version}")
        other.commit()
        other.close()
        with pytest.raises(IndexFileError, match=complaint):
            Store(tmp_path / "new.db")


def test_an_index_without_stored_peaks_is_upgraded_in_place_and_its_songs_still_match(built_index, tmp_path):
    """Schema 3 had no peaks table. Opening such an index adds the table: its songs are matched by vote alone
    (verification skips songs without peaks), and songs added afterwards get peaks."""
    import shutil

    from bench import queries
    from landmark import Index
    from tests.conftest import rendered

    path = tmp_path / "old.db"
    shutil.copy(built_index, path)
    old = sqlite3.connect(path)
    old.execute("DROP TABLE peaks")
    old.execute("PRAGMA user_version=3")
    old.commit()
    old.close()
    from lmprint.catalogue import Catalogue

    Catalogue(path).close()  # `lmprint list` reads it as it is: only the landmark engine knows what schema 3 lacks
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == 3
    import logging

    said: list[str] = []
    handler = logging.Handler(logging.WARNING)  # on lmprint's own logger: the CLI stops it propagating to the root
    handler.emit = lambda record: said.append(record.getMessage())  # type: ignore[method-assign]
    logging.getLogger("lmprint").addHandler(handler)
    with Index(path) as index:
        assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert said == [
            f"{path}: upgraded from an older lmprint; its 6 songs have no stored peaks, so they are named by their "
            "vote alone, without the check of their peaks that confirms a match under noise and tells two files of "
            "one recording apart: for that, index the music again into a new file (lmprint --db NEW.db add FOLDER)"]
        clip, _ = queries.cut(rendered(1, 40.0, 8000), 8000, 5.0, np.random.default_rng(0))
        assert index.match_samples(clip).song.title == "song1"
        assert index.peaks.get([s.id for s in index.catalogue.songs()]) == {}
        insert(index, "/n", "sha-n", np.array([5], np.uint32), np.array([1], np.uint32),
                                (np.array([1]), np.array([20])))
        assert len(index.peaks.get([s.id for s in index.catalogue.songs()])) == 1
    said.clear()
    with Index(path):
        assert said == []  # said once
    logging.getLogger("lmprint").removeHandler(handler)


def test_decoded_peaks_are_kept_within_their_bound_and_a_reused_song_id_reads_its_new_peaks(tmp_path, monkeypatch):
    """Verification reads the same songs' peaks query after query: they are decoded once, kept up to a bound, and
    keyed by what is stored, so a song removed and its id given to another never hands out the old song's peaks."""
    from landmark import Index, store

    with Index(tmp_path / "index.db", create=True) as index:
        rng = np.random.default_rng(0)
        stored = {}
        for k in range(4):
            frames = np.sort(rng.choice(20_000, 1000, replace=False)).astype(np.int64)
            stored[k] = (frames, rng.integers(1, 256, 1000).astype(np.int64))
            insert(index, f"/s{k}", f"sha-{k}", np.array([k + 1], np.uint32), np.array([1], np.uint32), stored[k])
        ids = {song.path: song.id for song in index.catalogue.songs()}
        first = index.peaks.get([ids["/s0"]])[ids["/s0"]]
        assert all(np.array_equal(a, b) for a, b in zip(first, stored[0]))
        assert index.peaks.get([ids["/s0"]])[ids["/s0"]][0] is first[0]  # decoded once
        with pytest.raises(ValueError):
            first[0][0] = 5  # shared by every later read: nobody may change it

        last = max(ids.values())
        assert all(np.array_equal(a, b) for a, b in zip(index.peaks.get([last])[last], stored[3]))
        index.remove(last)
        assert insert(index, "/new", "sha-new", np.array([9], np.uint32), np.array([1], np.uint32),
                      stored[1]) == last + 1  # an id is never given twice
        # an lmprint before `last_song_id` gave the largest id again: the old song's kept peaks are not handed out
        index.remove(last + 1)
        index.catalogue.conn.execute("DELETE FROM meta WHERE key='last_song_id'")
        assert insert(index, "/newer", "sha-newer", np.array([9], np.uint32), np.array([1], np.uint32),
                      stored[0]) == last
        assert all(np.array_equal(a, b) for a, b in zip(index.peaks.get([last])[last], stored[0]))

        one_song_bytes = store._kept_bytes(index.catalogue.read("SELECT data FROM peaks LIMIT 1")[0][0], first)
        monkeypatch.setattr(store, "DECODED_PEAKS_KEPT_BYTES", 2 * one_song_bytes + 100)
        index.peaks.get(list(ids.values()))
        assert len(index.peaks._decoded) == 2 and index.peaks._decoded_bytes <= store.DECODED_PEAKS_KEPT_BYTES
        a, b, c, d = sorted(ids.values())
        held = {i: index.peaks.get([i])[i][0] for i in (a, b, c)}  # read in this order: two fit the bound
        assert index.peaks.get([b])[b][0] is held[b] and index.peaks.get([c])[c][0] is held[c]  # the last two read
        index.peaks.get([b])  # now the most recently read
        index.peaks.get([d])  # puts out the least recently read, c
        assert index.peaks.get([b])[b][0] is held[b] and index.peaks.get([c])[c][0] is not held[c]


def test_removing_songs_gives_the_space_back_and_the_rest_still_match(built_index, library_dir, tmp_path):
    """Removing half the songs compacts the file: it shrinks, and the remaining songs are still identified."""
    import shutil

    from landmark import Index, audio

    path = tmp_path / "copy.db"
    shutil.copy(built_index, path)
    before = path.stat().st_size
    with Index(path) as index:
        songs = index.catalogue.songs()
        index.remove([song.id for song in songs[:3]])
        assert len(index.catalogue.songs()) == len(songs) - 3
        kept = songs[3]
        clip = audio.load(kept.path, index.sample_rate_hz)[8000 * 4: 8000 * 9]
        assert index.match_samples(clip).song.path == kept.path
    assert path.stat().st_size < 0.75 * before
    assert not (tmp_path / "copy.db-wal").exists() or (tmp_path / "copy.db-wal").stat().st_size == 0


def test_a_file_a_newer_lmprint_wrote_since_it_was_opened_is_refused_not_misread_nor_marked_back(built_index, tmp_path,
                                                                                                  monkeypatch):
    """The version was read once, on opening: a long `add`, or a server, went on reading a file a newer lmprint
    had since written, as this schema, and its next seal marked the file back down. Each read and write now
    looks again (one line); and a schema 3 file on read-only media, which could not be upgraded, is read as it is
    (it was refused, with a message saying it could be matched)."""
    import shutil

    from lmprint.catalogue import Catalogue

    path = tmp_path / "i.db"
    shutil.copy(built_index, path)
    if segments.folder_of(built_index).is_dir():
        shutil.copytree(segments.folder_of(built_index), segments.folder_of(path))
    with Store(path) as index:
        _postings_of(index, [1, 2, 3])  # read without an error before another lmprint marks the file as its own
        with sqlite3.connect(path) as newer:
            newer.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
        for use in (lambda: index.postings.lookup(np.arange(100, dtype=np.uint32)),
                    lambda: insert(index, "/x", "sha-x", *_random_songs(1, 1)[0]), lambda: index.remove([1])):
            with pytest.raises(IndexFileError, match=f"schema version {SCHEMA_VERSION + 1}, newer than this"):
                use()
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1

    old = tmp_path / "old.db"
    shutil.copy(built_index, old)
    if segments.folder_of(built_index).is_dir():
        shutil.copytree(segments.folder_of(built_index), segments.folder_of(old))
    with sqlite3.connect(old) as conn:
        conn.execute("DROP TABLE peaks")
        conn.execute("PRAGMA user_version=3")
    read_only_folder(monkeypatch, tmp_path)
    with Store(old) as index:
        assert index.catalogue.read_only and index.catalogue.schema_version == 3
        assert index.peaks.get([1, 2]) == {} and index.stats()["peaks_bytes"] == 0
        assert len(_postings_of(index, np.arange(1 << 21, dtype=np.uint32))) == index.stats()["hashes"] > 1000
    assert Catalogue(old).schema_version == 3


def test_a_file_damaged_while_it_is_open_is_one_line_at_the_next_read(built_index, tmp_path):
    """Each read now first asks the file's version: an error there (the header written over) is the file's one
    line, as any read's is, not SQLite's own."""
    import shutil

    path = tmp_path / "i.db"
    shutil.copy(built_index, path)
    if segments.folder_of(built_index).is_dir():
        shutil.copytree(segments.folder_of(built_index), segments.folder_of(path))
    with Store(path) as index:
        index.postings.lookup(np.arange(100, dtype=np.uint32))
        with sqlite3.connect(path) as other:  # another process's commit, folded into the file
            other.execute("INSERT INTO meta(key, value) VALUES ('written', '1')")
        sqlite3.connect(path).execute("PRAGMA wal_checkpoint(TRUNCATE)").close()
        for name, size in ((path, 100), (f"{path}-shm", 200)):  # then the header and the log's index written over
            with open(name, "r+b") as file:
                file.write(bytes(size))
        with pytest.raises(IndexFileError, match="not an lmprint index, or it is damaged"):
            index.postings.lookup(np.arange(100, dtype=np.uint32))


def test_opening_waits_for_another_process_to_switch_the_file_to_wal(tmp_path):
    """SQLite may answer "locked" at once, without its busy timeout, to a switch to WAL mode while another
    connection holds a write lock on the new file (two `lmprint add` creating the same index hit this); opening
    waits for such a lock, and retries a switch refused at once instead of failing."""
    import threading

    path = tmp_path / "i.db"
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # a process that is about to create the index, still in rollback-journal mode
    release = threading.Timer(0.5, lambda: other.execute("COMMIT"))
    started = time.monotonic()
    release.start()
    try:
        Store(path, create=True).close()
        waited_s = time.monotonic() - started
    finally:
        release.join()
        other.close()
    assert waited_s >= 0.3  # it met the lock, and waited for it
    with sqlite3.connect(path) as check:
        assert check.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    # the "locked" at once (this SQLite waits its busy timeout in the case above; the race that met it did not):
    # the switch is tried again, not given up
    import lmprint.catalogue

    switches = []

    class LockedOnce:
        def __init__(self, connection):
            self._connection = connection

        def execute(self, sql, *args):
            if sql == "PRAGMA journal_mode=WAL":
                switches.append(sql)
                if len(switches) == 1:
                    raise sqlite3.OperationalError("database is locked")
            return self._connection.execute(sql, *args)

        def __getattr__(self, name):
            return getattr(self._connection, name)

    connect = sqlite3.connect
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(lmprint.catalogue.sqlite3, "connect",
                      lambda *args, **kwargs: LockedOnce(connect(*args, **kwargs)))
        Store(tmp_path / "j.db", create=True).close()
    assert len(switches) == 2
    with sqlite3.connect(tmp_path / "j.db") as check:
        assert check.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_song_coded_by_mert_first_gets_its_place_on_the_timeline_when_fingerprinted(tmp_path):
    """A song row made by the MERT path has no postings and no timeline place; landmark postings added later
    get one, and are attributed to that same row."""
    from neural.settings import MertSettings
    from neural.store import CodeStore

    store = Store(tmp_path / "i.db", create=True)
    codes = CodeStore(store.catalogue, MertSettings(), create=True)
    insert(store, "/a", "sha-a", np.array([5], np.uint32), np.array([7], np.uint32))
    coded = codes.add("/b", "b", 10.0, "sha-b", np.zeros((10, 32), np.uint8), 6)
    assert store.postings.timeline().song_ids.tolist() == [1]  # /b has no postings yet
    assert insert(store, "/b", "sha-b", np.array([5], np.uint32), np.array([3], np.uint32)) == coded
    assert _postings_of(store, [5]) == [(5, 1, 7), (5, coded, 3)]


def test_removing_a_song_removes_its_codes_because_the_schema_says_so(tmp_path):
    """Per-song tables reference the catalogue's songs with ON DELETE CASCADE, and foreign keys are enforced: the
    landmark engine's `remove` deletes the song and the MERT codes go with it, with no table named."""
    from neural.settings import MertSettings
    from neural.store import CodeStore

    store = Store(tmp_path / "i.db", create=True)
    codes = CodeStore(store.catalogue, MertSettings(), create=True)
    song = insert(store, "/a", "sha-a", np.array([5], np.uint32), np.array([7], np.uint32), (np.array([7]), np.array([20])))
    assert codes.add("/a", "a", 10.0, "sha-a", np.zeros((10, 32), np.uint8), 6) == song  # one row, two engines
    assert codes.stats()["songs"] == 1
    store.remove([song])
    assert codes.stats()["songs"] == 0 and store.peaks.get([song]) == {} and store.catalogue.songs() == []


def test_a_batch_of_songs_lands_whole_and_reads_as_songs_added_one_by_one(tmp_path):
    """The bulk path (one transaction, one append per row) stores what one song at a time stores."""
    rng = np.random.default_rng(9)
    songs = [(f"/s{i}", f"sha-{i}", rng.integers(0, 4000, 300).astype(np.uint32),
              np.sort(rng.integers(0, 9000, 300)).astype(np.uint32)) for i in range(6)]
    one_by_one, batched = Store(tmp_path / "a.db", create=True), Store(tmp_path / "b.db", create=True)
    for path, sha1, hashes, frames in songs:
        insert(one_by_one, path, sha1, hashes, frames)
    ids = batched.add_fingerprints([SongFingerprint(p, p, 10.0, s, h, f, np.zeros(0, np.int64), np.zeros(0, np.int64))
                                    for p, s, h, f in songs + songs[:1]])  # the same content twice: stored once
    assert ids == [1, 2, 3, 4, 5, 6, None]
    everything = np.arange(4000, dtype=np.uint32)
    assert _postings_of(batched, everything) == _postings_of(one_by_one, everything)
    insert(batched, "/later", "sha-later", songs[0][2], songs[0][3])  # appends after a batch continue the rows
    assert [p for p in _postings_of(batched, everything) if p[1] == 7] == [(h, 7, f) for h, _, f in _postings_of(one_by_one, everything) if _ == 1]
    failing = Store(tmp_path / "c.db", create=True)  # a batch that fails at its fourth song keeps none of it
    counting = failing.catalogue.set_hash_count

    def fourth_fails(song_id, count):
        if song_id == 4:
            raise OSError("disk full")
        counting(song_id, count)

    failing.catalogue.set_hash_count = fourth_fails
    with pytest.raises(OSError):
        failing.add_fingerprints([SongFingerprint(p, p, 10.0, s, h, f, np.zeros(0, np.int64), np.zeros(0, np.int64))
                                  for p, s, h, f in songs])
    assert failing.catalogue.songs() == [] and _postings_of(failing, everything) == []


def test_a_budgeted_lookup_counts_a_row_for_the_share_of_it_asked_and_reads_what_fits_whole(tmp_path):
    """Rows of 16 keys: keys 0–15 (row 0) hold 40 postings, 16–31 (row 1) 10, 32–47 (row 2) 300 (the order of
    reading whole rows is the store contract's test). A row counts for the share of it that is asked for, and a
    budget that everything fits in reads what no budget reads."""
    store = Store(tmp_path / "i.db", create=True)
    hashes = np.r_[np.full(40, 3), np.full(10, 20), np.full(300, 40)].astype(np.uint32)
    insert(store, "/a", "sha-a", hashes, np.arange(hashes.size, dtype=np.uint32))
    one_key_a_row = np.array([3, 20, 40], np.uint32)  # 1/16 of each row asked: it counts for 1/16 of its postings
    found = store.postings.lookup(one_key_a_row, np.array([0.1, 1.0, 50.0]) / 16, 20)
    assert sorted(set((one_key_a_row[found.key_index] // 16).tolist())) == [1, 2]
    every_key = np.arange(48, dtype=np.uint32)
    everything = store.postings.lookup(every_key)
    budgeted = store.postings.lookup(every_key, np.ones(48), 10_000)
    assert sorted(zip(everything.key_index.tolist(), everything.frames.tolist())) == sorted(
        zip(budgeted.key_index.tolist(), budgeted.frames.tolist()))


def test_a_song_without_postings_never_hides_the_song_placed_where_it_ends(tmp_path, monkeypatch):
    """A song with no landmarks takes no frames, so the next song starts where it does. Where the next one's row
    is the older (coded by MERT first), it came first by id among songs of equal start, and every posting of it
    fell outside the song the timeline found; once sealed, the songs' places read as damage."""
    from neural.settings import MertSettings
    from neural.store import CodeStore

    _small_sealing(monkeypatch)
    path = tmp_path / "i.db"
    store = Store(path, create=True)
    codes = CodeStore(store.catalogue, MertSettings(), create=True)
    insert(store, "/a", "sha-a", *_random_songs(1, 1)[0])
    coded = codes.add("/b", "b", 10.0, "sha-b", np.zeros((10, 32), np.uint8), 6)
    hashes, frames = _random_songs(7, 1)[0]
    empty = np.zeros(0, np.int64)
    silent, b = store.add_fingerprints([SongFingerprint("/z", "z", 0.1, "sha-z", empty, empty, empty, empty),
                                        SongFingerprint("/b", "b", 10.0, "sha-b", hashes, frames, empty, empty)])
    assert b == coded < silent
    expected = sorted(zip(*_sorted_postings(hashes, frames), strict=True))
    found = [(key, frame) for key, song, frame in _postings_of(store, hashes) if song == b]
    assert sorted(found) == expected
    store.postings.compact()  # sealed: the songs' places kept in one blob
    found = [(key, frame) for key, song, frame in _postings_of(Store(path), hashes) if song == b]
    assert sorted(found) == expected
    with sqlite3.connect(path) as conn:  # as a seal before this order kept them: the song without postings last
        rows = np.frombuffer(conn.execute("SELECT songs FROM sealed_timeline").fetchone()[0], "<i8").reshape(-1, 3)
        kept = rows[np.lexsort((-rows[:, 1], rows[:, 0]))]
        assert not (kept[1:, 0] >= kept[:-1, 1]).all()
        conn.execute("UPDATE sealed_timeline SET songs=?", (kept.astype("<i8").tobytes(),))
    found = [(key, frame) for key, song, frame in _postings_of(Store(path), hashes) if song == b]
    assert sorted(found) == expected


def _small_sealing(monkeypatch, one_hash_from=200, tail=100, ratio=2):
    """Sealing and merging at sizes a test can reach."""
    import landmark.store as store_module

    monkeypatch.setattr(store_module, "ONE_HASH_TAIL_FROM", one_hash_from)
    monkeypatch.setattr(store_module, "TAIL_POSTINGS", tail)
    monkeypatch.setattr(store_module, "MERGE_RATIO", ratio)


def _random_songs(seed, n_songs, n_postings=120):
    rng = np.random.default_rng(seed)
    return [(rng.integers(0, 1 << 21, n_postings, dtype=np.uint32),
             np.sort(rng.integers(0, 5000, n_postings)).astype(np.uint32)) for _ in range(n_songs)]


def _sealed_store(tmp_path, monkeypatch, seed, n_songs, n_inserted):
    """(path, its index, the songs, every key they hold): `n_songs` random songs, the first `n_inserted` of them
    inserted into a new index that seals and merges at a test's sizes (`_small_sealing`)."""
    _small_sealing(monkeypatch)
    path = tmp_path / "i.db"
    store = Store(path, create=True)
    songs = _random_songs(seed, n_songs)
    for number, (hashes, frames) in enumerate(songs[:n_inserted]):
        insert(store, f"/{number}", f"sha-{number}", hashes, frames)
    return path, store, songs, np.unique(np.concatenate([hashes for hashes, _ in songs]))


def _segment_files(path):
    folder = segments.folder_of(path)
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def _kept_timeline_is_the_rows(store):
    """Whether the timeline a reader reads (the sealed songs' blob, then rows) is the one all songs' rows give,
    and the blob is there once a segment is."""
    timeline = store.postings.timeline()
    read = np.stack([timeline.starts, timeline.ends, timeline.song_ids], axis=1)
    blobs = store.catalogue.read("SELECT COUNT(*) FROM sealed_timeline")[0][0]
    return (read.tolist() == store.postings._timeline_rows("1", ()).tolist()
            and blobs == (store.postings.stats()["segments"] > 0))


def test_a_growing_index_seals_its_tail_into_merged_segments_and_reads_the_same_postings(tmp_path, monkeypatch):
    """Once it holds `TAIL_POSTINGS` the tail is sealed into segments, which merge level by level: every posting
    reads back the same after each song, through a reader that opened the file before any segment existed, with
    and without a budget; a removed song's postings are gone at once, and from the files after `compact`. The
    timeline kept for the sealed songs stays the one their rows give."""
    _small_sealing(monkeypatch, tail=300)
    path = tmp_path / "i.db"
    writer, reader = Store(path, create=True), None
    songs = _random_songs(5, 9)
    asked = np.unique(np.concatenate([hashes for hashes, _ in songs]))
    counts = []
    for number, (hashes, frames) in enumerate(songs):
        insert(writer, f"/{number}", f"sha-{number}", hashes, frames)
        reader = reader or Store(path)
        counts.append(writer.postings.stats()["segments"])
        expected = sorted((int(h), song + 1, int(f)) for song, (hs, fs) in enumerate(songs[:number + 1])
                          for h, f in zip(hs, fs))
        assert _postings_of(reader, asked) == expected
        budgeted = reader.postings.lookup(asked, np.ones(asked.size), 10 ** 6)
        assert sorted(zip(asked[budgeted.key_index].tolist(), budgeted.song_ids.tolist(),
                          budgeted.frames.tolist())) == expected
        assert _kept_timeline_is_the_rows(reader)
    # 120 postings a song: rows until 360, then a segment each time the tail reaches 300, merged two by two
    assert counts[:4] == [0, 0, 1, 1] and max(counts) <= 2 and len(_segment_files(path)) == counts[-1]
    assert writer.postings.stats()["hashes_per_row"] == 1
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    # `dedup`'s scan: the tail and every segment, by hash range
    scanned = all_postings(reader.postings)
    assert sorted(zip(*(column.tolist() for column in scanned))) == expected
    writer.remove([3])
    assert all(song != 3 for _, song, _ in _postings_of(reader, asked))
    assert len(_postings_of(reader, asked)) == 8 * 120
    assert all(3 not in songs for _, songs, _ in reader.postings.scan())
    assert _kept_timeline_is_the_rows(reader) and 3 not in reader.postings.timeline().song_ids.tolist()
    writer.postings.compact()
    assert writer.postings.stats()["segments"] == 1 and len(_segment_files(path)) == 1
    assert segments.Segment(segments.folder_of(path) / _segment_files(path)[0]).postings == 8 * 120
    assert len(_postings_of(reader, asked)) == 8 * 120


def test_an_index_whose_songs_are_all_removed_keeps_no_segment(tmp_path, monkeypatch):
    """A compaction after every song was removed leaves no segment file behind (an empty one was kept), and the
    emptied index takes new songs, sealing them anew."""
    path, store, songs, asked = _sealed_store(tmp_path, monkeypatch, 12, 6, 4)
    assert store.postings.stats()["segments"] >= 1
    store.remove(list(range(1, 5)))
    store.postings.compact()
    assert store.postings.stats()["segments"] == 0 and _segment_files(path) == []
    assert _postings_of(Store(path), asked) == [] and Store(path).postings.timeline().song_ids.size == 0
    ids = [insert(store, f"/{n}", f"sha-{n}", *songs[n]) for n in (4, 5)]
    assert store.postings.stats()["segments"] == 1 and len(_segment_files(path)) == 1
    assert _postings_of(Store(path), asked) == sorted(
        (int(h), song_id, int(f)) for song_id, n in zip(ids, (4, 5)) for h, f in zip(*songs[n]))
    assert _kept_timeline_is_the_rows(Store(path))


def test_a_compaction_keeps_the_one_song_left_whose_first_posting_comes_after_its_start(tmp_path, monkeypatch):
    """A segment's first frame is its first posting's: the songs a merge keeps are those overlapping its frames,
    not those starting within them (the first song left alone was counted as none, and its segment unlisted
    with nothing in its place)."""
    path, store, songs, asked = _sealed_store(tmp_path, monkeypatch, 12, 6, 4)
    assert int(songs[0][1].min()) > 0  # song 1's first posting comes after its start on the timeline
    store.remove([2, 3, 4])
    store.postings.compact()
    reopened = Store(path)
    assert reopened.postings.stats()["segments"] == 1
    assert _postings_of(reopened, asked) == sorted((int(h), 1, int(f)) for h, f in zip(*songs[0]))


def test_the_tail_counts_from_the_sealed_end_and_holds_one_hash_a_row_once_the_segments_are_large(tmp_path,
                                                                                                    monkeypatch):
    """After a seal the tail's rows count their first gaps from the end of the sealed timeline, so a late song's
    postings take a word each, not an escape's three; they read back the same through appends and a removal that
    rewrites rows. Its rows hold 16 hashes until the segments hold `ONE_HASH_TAIL_FROM`, one from then on, and a
    bulk batch sealed at once sets that too."""
    _small_sealing(monkeypatch, one_hash_from=1_000, tail=300)
    monkeypatch.setattr("landmark.library.COMPACT_AFTER_CHANGE", 2.0)  # a removal leaves the tail as it is
    rng = np.random.default_rng(8)
    songs = [(rng.integers(0, 1 << 12, 120, dtype=np.uint32),  # 256 rows of 16 hashes: songs share rows
              np.sort(rng.integers(0, 600_000, 120)).astype(np.uint32)) for _ in range(12)]
    asked = np.unique(np.concatenate([hashes for hashes, _ in songs]))
    path = tmp_path / "i.db"
    store = Store(path, create=True)
    ids = {}

    def add(index, number):
        ids[number] = insert(index, f"/{number}", f"sha-{number}", *songs[number])

    def expected(numbers):
        return sorted((int(h), ids[n], int(f)) for n in numbers for h, f in zip(*songs[n]))

    def tail_bytes():
        return store.catalogue.read("SELECT COALESCE(SUM(LENGTH(entries)), 0) FROM postings")[0][0]

    for number in range(4):  # the third seals 360 postings, over 1.2 M frames: past a gap's 2^20 - 1
        add(store, number)
    assert store.postings.stats()["segments"] == 1 and store.postings.stats()["hashes_per_row"] == 16
    assert tail_bytes() == 3 * 120  # a word a posting
    add(store, 4)
    store.remove([ids[3]])  # song 4's rows, rewritten without song 3's postings
    assert _postings_of(store, asked) == expected([0, 1, 2, 4])
    for number in range(5, 10):  # sealed at the seventh (720 postings) and tenth (1,080) songs
        add(store, number)
        assert store.postings.stats()["hashes_per_row"] == (1 if number == 9 else 16)
    add(store, 10)
    assert _postings_of(store, asked) == expected([0, 1, 2, *range(4, 11)])

    bulk = Store(tmp_path / "bulk.db", create=True)
    ids.update(enumerate(n + 1 for n in range(11)))
    bulk.add_fingerprints([SongFingerprint(f"/{n}", str(n), 10.0, f"sha-{n}", hashes, frames, np.zeros(0, np.int64),
                                           np.zeros(0, np.int64)) for n, (hashes, frames) in enumerate(songs[:10])])
    assert bulk.postings.stats()["segments"] == 1 and bulk.postings.stats()["hashes_per_row"] == 1 and _kept_timeline_is_the_rows(bulk)
    add(bulk, 10)
    assert _postings_of(bulk, asked) == expected(range(11))


def test_a_schema_8_tail_counted_from_0_is_read_appended_to_and_removed_from_until_its_seal(tmp_path, monkeypatch):
    """A file of schema 8 has segments and a tail whose rows count from frame 0 (no `tail_base_frame`): it reads
    back the same, takes appends and a removal in that form, and its next seal moves it to the new form (schema 9)."""
    _small_sealing(monkeypatch, one_hash_from=10_000, tail=300)
    monkeypatch.setattr("landmark.library.COMPACT_AFTER_CHANGE", 2.0)
    songs = _random_songs(11, 8)
    asked = np.unique(np.concatenate([hashes for hashes, _ in songs]))
    path = tmp_path / "i.db"
    store = Store(path, create=True)
    ids = [insert(store, f"/{n}", f"sha-{n}", *songs[n]) for n in range(4)]  # sealed at the third song
    layout, table = store.postings._layout()
    hashes, frames = store.postings._tail_range(0, 1 << 21, layout, table)
    with store.catalogue.write():  # the tail as schema 8 wrote it
        store.catalogue.conn.execute(f"DELETE FROM {table}")
        buckets, blobs = encode_postings(hashes, frames, layout=layout)
        store.catalogue.conn.executemany(f"INSERT INTO {table} VALUES (?, ?)", zip(buckets.tolist(), blobs))
        store.catalogue.conn.execute("DELETE FROM meta WHERE key='tail_base_frame'")
        store.catalogue.conn.execute("PRAGMA user_version=8")
    store.close()

    def expected(numbers):
        return sorted((int(h), ids[n], int(f)) for n in numbers for h, f in zip(*songs[n]))

    with Store(path) as store:
        assert _postings_of(store, asked) == expected(range(4))
        ids.append(insert(store, "/4", "sha-4", *songs[4]))
        store.remove([ids[3]])
        assert _postings_of(store, asked) == expected([0, 1, 2, 4])
        assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == 8
        ids += [insert(store, f"/{n}", f"sha-{n}", *songs[n]) for n in (5, 6)]  # the seal, at the seventh
        assert store.catalogue.meta("tail_base_frame") is not None and store.postings._tail_postings() == 0
        ids.append(insert(store, "/7", "sha-7", *songs[7]))
        assert _postings_of(store, asked) == expected([0, 1, 2, 4, 5, 6, 7])
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_an_add_an_older_lmprint_can_read_keeps_the_files_version_which_stats_reports(library_dir, tmp_path):
    """A schema 8 file (zlib peaks, a tail counted from 0) that takes a song without a seal stays schema 8, so the
    lmprint that made it still reads it (a song's peaks marked it 9), and `stats` says the file's version, not
    this lmprint's (it said 9 of every file)."""
    path = tmp_path / "i.db"
    with Index(path, create=True) as index:
        index.add([str(library_dir / "song0.wav")])
        assert index.catalogue.meta("tail_base_frame") is None and index.postings.stats()["segments"] == 0
        with index.catalogue.write():
            index.catalogue.conn.execute("PRAGMA user_version=8")
    with Index(path) as index:
        assert index.add([str(library_dir / "song1.flac")]).added == 1
        assert index.stats()["schema_version"] == 8
        assert index.match(library_dir / "song1.flac").song.title == "song1"
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == 8


def test_a_seal_gives_the_tails_pages_back_to_the_file_system(tmp_path, monkeypatch):
    """A seal moves the tail's rows into a segment: the pages they held go back to the file system rather than
    staying free in the file until the tail has filled again. A file made without that (`auto_vacuum` off) gets it
    at `compact`."""
    _small_sealing(monkeypatch, tail=41_000)
    path = tmp_path / "i.db"
    store = Store(path, create=True)
    songs = _random_songs(6, 21, n_postings=2000)  # 40,000 postings before the 21st song, which seals them
    for number, (hashes, frames) in enumerate(songs[:20]):
        insert(store, f"/{number}", f"sha-{number}", hashes, frames)
    conn = sqlite3.connect(path)

    def file_pages():
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return path.stat().st_size // conn.execute("PRAGMA page_size").fetchone()[0]

    before = file_pages()
    insert(store, "/20", "sha-20", *songs[20])
    assert store.postings.stats()["segments"] == 1
    assert file_pages() < before / 2 and conn.execute("PRAGMA freelist_count").fetchone()[0] == 0
    assert len(_postings_of(store, np.unique(songs[0][0]))) >= 2000
    conn.execute("PRAGMA auto_vacuum=NONE")
    conn.execute("VACUUM")
    assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 0
    assert store.catalogue.compact()
    assert sqlite3.connect(path).execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # incremental


def test_a_seal_commits_and_keeps_its_free_pages_when_another_writer_holds_the_file(tmp_path, monkeypatch):
    """Giving pages back is housekeeping after the seal's commit: with another writer holding the file it waits
    `COMPACT_BUSY_TIMEOUT_S`, not a writer's minute, raises nothing, and leaves the pages to a later call."""
    import time

    from lmprint.catalogue import COMPACT_BUSY_TIMEOUT_S

    _small_sealing(monkeypatch, tail=41_000)
    path = tmp_path / "i.db"
    store = Store(path, create=True)
    songs = _random_songs(6, 21, n_postings=2000)
    for number, (hashes, frames) in enumerate(songs[:20]):
        insert(store, f"/{number}", f"sha-{number}", hashes, frames)
    other = sqlite3.connect(path, isolation_level=None)
    release, waited = store.catalogue.release_free_pages, []

    def with_the_file_held():
        other.execute("BEGIN IMMEDIATE")
        started = time.monotonic()
        release()
        waited.append(time.monotonic() - started)
        other.execute("ROLLBACK")

    monkeypatch.setattr(store.catalogue, "release_free_pages", with_the_file_held)
    insert(store, "/20", "sha-20", *songs[20])
    assert store.postings.stats()["segments"] == 1 and store.catalogue.song_count() == 21
    assert len(waited) == 1 and COMPACT_BUSY_TIMEOUT_S <= waited[0] < COMPACT_BUSY_TIMEOUT_S + 5
    assert other.execute("PRAGMA freelist_count").fetchone()[0] > 0
    release()
    assert sqlite3.connect(path).execute("PRAGMA freelist_count").fetchone()[0] == 0


def test_a_sealed_song_deleted_from_the_catalogue_alone_is_dropped_and_a_rolled_back_add_is_not_counted(
        tmp_path, monkeypatch):
    """Another engine's removal deletes a song's catalogue row without the posting store: the kept timeline of
    sealed songs no longer matches their rows, so readers take the rows, and the next seal keeps them again. A song
    count read inside a write transaction that rolls back is not kept."""
    _small_sealing(monkeypatch, tail=300)
    path = tmp_path / "i.db"
    writer, reader = Store(path, create=True), Store(path)
    songs = _random_songs(6, 5)
    asked = np.unique(np.concatenate([hashes for hashes, _ in songs]))
    for number, (hashes, frames) in enumerate(songs[:4]):
        insert(writer, f"/{number}", f"sha-{number}", hashes, frames)
    assert writer.postings.stats()["segments"] > 0 and reader.postings.song_count() == 4
    with writer.catalogue.write():
        writer.catalogue.delete_songs([1])  # sealed: the first song
    assert 1 not in {song for _, song, _ in _postings_of(reader, asked)} and reader.postings.song_count() == 3
    assert 1 not in reader.postings.timeline().song_ids.tolist()
    insert(writer, "/4", "sha-4", *songs[4])
    writer.postings.compact()
    assert _kept_timeline_is_the_rows(reader) and reader.postings.song_count() == 4
    with pytest.raises(RuntimeError), writer.catalogue.write():
        song_id = writer.catalogue.add_song("/5", "5", 10.0, "sha-5")
        writer.postings.add([SongPostings(song_id, *_random_songs(7, 1)[0])])
        assert writer.postings.song_count() == 5  # as this transaction sees it
        raise RuntimeError("rolled back")
    assert writer.postings.song_count() == 4 and reader.postings.song_count() == 4


def _fingerprints(songs):
    no_peaks = np.zeros(0, np.int64)
    return [SongFingerprint(f"/{n}", str(n), 10.0, f"sha-{n}", hashes, frames, no_peaks, no_peaks)
            for n, (hashes, frames) in enumerate(songs)]


def test_a_bulk_load_into_a_new_file_writes_one_segment_and_merges_nothing(tmp_path, monkeypatch):
    """A batch large enough to seal goes straight into a segment; into a new file too, whose empty tail is not
    sealed into a segment of its own first (that one then merged with the batch's, rewriting all of it)."""
    import landmark.segments as segments_module

    _small_sealing(monkeypatch)
    written = []
    write = segments_module.write
    monkeypatch.setattr(segments_module, "write", lambda *given: written.append(write(*given)) or written[-1])
    store = Store(tmp_path / "i.db", create=True)
    songs = _random_songs(1, 3)
    store.add_fingerprints(_fingerprints(songs))
    assert [postings for _, postings in written] == [360] and _segment_files(tmp_path / "i.db") == [written[0][0]]
    second = next(song.id for song in store.catalogue.songs() if song.path == "/1")
    read = {(key, frame) for key, song_id, frame in _postings_of(store, songs[1][0]) if song_id == second}
    assert read == set(zip(songs[1][0].tolist(), songs[1][1].tolist()))


def test_lookups_after_the_last_song_is_removed_do_not_read_the_song_list_again(tmp_path, monkeypatch):
    """A removed song's postings stay in its segment until a merge, past the end of the songs listed; the
    timeline's end as the index recorded it tells a reader that they are no new song's, so the list it holds
    serves every lookup until the file changes."""
    _small_sealing(monkeypatch)
    path = tmp_path / "i.db"
    songs = _random_songs(3, 8)
    writer = Store(path, create=True)
    writer.add_fingerprints(_fingerprints(songs))
    writer.remove([8])  # the last on the timeline; the other songs hold more than the compaction threshold
    reader = Store(path)
    reads = []
    timeline = reader.postings.timeline
    monkeypatch.setattr(reader.postings, "timeline", lambda: reads.append(1) or timeline())
    for _ in range(5):
        found = reader.postings.lookup(np.unique(songs[7][0]))
    assert len(reads) == 1 and 8 not in found.song_ids.tolist()


def test_a_budget_over_segments_reads_the_rows_a_single_store_would(tmp_path, monkeypatch):
    """A key's priority is shared among the rows that hold it, by their sizes: the same postings split among the
    tail and several segments are read in about the same order as from one store (rows of other layouts and the
    budget's last row aside), so a budget keeps nearly the same keys. The songs' keys are drawn from 20,000, so
    each row is full and each key is held by most of the segments, as in a large library."""
    rng = np.random.default_rng(11)
    songs = [(hashes % 20_000, frames) for hashes, frames in _random_songs(12, 40, 2000)]
    asked = np.unique(np.concatenate([hashes for hashes, _ in songs]))[::3]
    priority = rng.random(asked.size)
    found = []
    for sealing in (False, True):
        if sealing:
            _small_sealing(monkeypatch, one_hash_from=12_000, tail=10_000, ratio=0)  # never merged
        store = Store(tmp_path / f"{sealing}.db", create=True)
        for number, (hashes, frames) in enumerate(songs):
            insert(store, f"/{number}", f"sha-{number}", hashes, frames)
        assert (store.postings.stats()["segments"] > 4) == sealing
        got = store.postings.lookup(asked, priority, 800)
        found.append(set(asked[got.key_index].tolist()))
    assert 0 < len(found[0]) < asked.size / 4 and len(found[0] & found[1]) >= 0.9 * max(map(len, found))


def test_a_failure_while_sealing_leaves_no_half_song_nor_its_segment_and_compact_deletes_a_crashs(tmp_path,
                                                                                                 monkeypatch):
    """A segment is written before the transaction that lists it commits. If that transaction fails, the song is
    not added, the tail and the segments stay as they were, and the file it wrote is deleted; one that a crash
    left (no rollback ran) is deleted by `compact`, or by the next seal."""
    import landmark.store as store_module

    path, store, songs, asked = _sealed_store(tmp_path, monkeypatch, 8, 4, 3)
    before, files_before = _postings_of(store, asked), _segment_files(path)

    def failing(self):
        raise OSError("disk full")

    monkeypatch.setattr(store_module.SQLitePostingStore, "_merge_outgrown", failing)
    with pytest.raises(OSError):
        insert(store, "/3", "sha-3", *songs[3])
    monkeypatch.undo()
    _small_sealing(monkeypatch)
    reopened = Store(path)
    assert [song.path for song in reopened.catalogue.songs()] == ["/0", "/1", "/2"]
    assert _postings_of(reopened, asked) == before
    assert _segment_files(path) == files_before  # the rolled-back transaction's segment is gone
    (segments.folder_of(path) / "0123456789abcdef.seg").write_bytes(b"written before a kill -9")
    reopened.postings.compact()
    assert len(_segment_files(path)) == 1 and _postings_of(reopened, asked) == before
    left = [segments.folder_of(path) / name for name in ("fedcba9876543210.seg", ".fedcba9876543210.seg.tmp")]
    for file in left:  # a crash again: then songs added, as a library grows (not enough for a compaction)
        file.write_bytes(b"written before a kill -9")
    insert(reopened, "/3", "sha-3", *songs[3])  # its seal deletes them (they stayed until a compaction)
    assert not any(file.exists() for file in left) and reopened.postings.stats()["segments"] >= 1
    assert _postings_of(reopened, asked) == _postings_of(Store(path), asked) != before


def test_what_a_crash_left_in_the_folder_goes_at_the_next_change_that_seals_nothing(tmp_path, monkeypatch):
    """A `kill -9` while a seal or a merge writes leaves a temporary file, or a segment no listing names. They went
    only at the next seal or compaction, so a library that grew by a few songs at a time kept them (a trial's were
    0.8-2 times the listed segment) where `stats` does not count them; an add into the tail, or a removal, now
    deletes them first. Files that are not segments are not the index's to delete."""
    path, store, songs, asked = _sealed_store(tmp_path, monkeypatch, 9, 7, 6)
    listed = _segment_files(path)
    folder = segments.folder_of(path)
    for step, change in enumerate((lambda: insert(Store(path), "/small", "sha-small", songs[6][0][:5],
                                                  songs[6][1][:5]),  # into the tail: no seal
                                   lambda: Store(path).remove([1]))):  # under a fifth of the audio: no compaction
        left = [folder / f"{step:016x}.seg", folder / f".{step:016x}.seg.tmp"]
        for file in left:
            file.write_bytes(b"written before a kill -9")
        (folder / "notes.txt").write_text("the user's")
        before = _postings_of(Store(path), asked)
        change()
        assert not any(file.exists() for file in left) and (folder / "notes.txt").exists()
        assert _segment_files(path) == sorted([*listed, "notes.txt"])  # no seal, no merge: the listed segments stay
        assert _postings_of(Store(path), asked) != before  # the change itself was made


def test_a_seal_after_a_merge_in_one_transaction_rolled_back_deletes_no_file_the_listing_names(tmp_path,
                                                                                             monkeypatch):
    """A seal deletes the files no listing names (a crash's); in a transaction that already merged, the merge's
    inputs are unlisted only in that transaction: they were deleted, and after a rollback the listing named files
    that were gone."""
    _small_sealing(monkeypatch)
    path = tmp_path / "i.db"
    store = Store(path, create=True)
    songs = _random_songs(1, 5)
    for number in range(3):
        insert(store, f"/{number}", f"sha-{number}", *songs[number])
    asked = np.unique(np.concatenate([hashes for hashes, _ in songs[:3]]))
    before, files_before = _postings_of(store, asked), _segment_files(path)
    with pytest.raises(RuntimeError), store.catalogue.write():
        for number in (3, 4):  # the first add merges, the second seals
            song_id = store.catalogue.add_song(f"/{number}", str(number), 10.0, f"sha-{number}")
            store.postings.add([SongPostings(song_id, *songs[number])])
        raise RuntimeError("a later step of the same transaction fails")
    store.close()
    assert _segment_files(path) == files_before and _postings_of(Store(path), asked) == before


def test_a_damaged_or_missing_segment_is_a_one_line_error(tmp_path, monkeypatch):
    """...to a lookup, and to an add, a removal, a compaction or the stats."""
    path, store, songs, _ = _sealed_store(tmp_path, monkeypatch, 2, 6, 3)
    name = _segment_files(path)[0]
    whole = (segments.folder_of(path) / name).read_bytes()
    for damaged in (b"not a segment", bytes(100), whole[:-8], whole[:64] + bytes(len(whole) - 64)):
        (segments.folder_of(path) / name).write_bytes(damaged)  # too short, a zero header, cut, no directory
        with pytest.raises(IndexFileError, match="damaged"):
            Store(path).postings.lookup(np.array([1, 2, 3], np.uint32))
        with pytest.raises(IndexFileError, match="damaged"):  # an add that merges nothing says so too
            insert(Store(path), "/new", "sha-new", songs[5][0][:5], songs[5][1][:5])  # into the tail
        with pytest.raises(IndexFileError, match="damaged"):  # a removal too, before it removes anything (it
            Store(path).remove([1])  # removed the songs, then its compaction failed: they were gone, unsaid)
        with pytest.raises(IndexFileError, match="damaged"):  # and `lmprint stats`, which read sizes alone
            Store(path).stats()
    (segments.folder_of(path) / name).write_bytes(whole)
    assert Store(path).catalogue.song_count() == 3  # nothing of the refused adds and removals stayed
    opened = Store(path)
    (segments.folder_of(path) / name).unlink()  # while an index has it open
    with pytest.raises(IndexFileError, match="missing a segment"):
        opened.postings.lookup(np.array([1, 2, 3], np.uint32))
    with pytest.raises(IndexFileError, match="missing a segment"):
        for number in range(3, 6):  # the tail is sealed, and the new segment merged with the missing one
            insert(opened, f"/{number}", f"sha-{number}", *songs[number])
    with pytest.raises(IndexFileError, match="missing a segment"):
        opened.postings.compact()
    with pytest.raises(IndexFileError, match="missing a segment"):  # opening it says so at once
        Store(path)
    shutil.rmtree(segments.folder_of(path))  # the file copied without its folder
    with pytest.raises(IndexFileError, match=r"i.db-postings is missing: an index is its file and this folder"):
        Store(path)
    segments.folder_of(path).write_bytes(b"")  # a file where the folder should be
    with pytest.raises(IndexFileError, match=r"i.db-postings is not a folder: an index is its file and the folder"):
        Store(path)


def test_an_index_that_lost_its_list_of_segments_is_refused_and_its_segments_kept(tmp_path, monkeypatch):
    """The listing of segments gone (a damaged table, a hand edit) while the songs sealed into them remain: every
    query named nothing, with no word, and the next seal would have deleted the files as a crash's leftovers."""
    _small_sealing(monkeypatch)
    path = tmp_path / "i.db"
    store = Store(path, create=True)
    for number, (hashes, frames) in enumerate(_random_songs(2, 3)):
        insert(store, f"/{number}", f"sha-{number}", hashes, frames)
    store.close()
    files = _segment_files(path)
    assert files
    with sqlite3.connect(path) as conn:
        conn.execute("DELETE FROM segments")
    with pytest.raises(IndexFileError, match=r"damaged \(its sealed songs' segments are not listed\)"):
        Store(path)
    assert _segment_files(path) == files


def test_a_tail_row_that_is_not_whole_words_is_damage_not_rows_read_a_byte_off(tmp_path):
    """The tail's rows are read end to end: a stray byte in one would shift every row read after it, and the
    songs' postings would silently go missing."""
    path = tmp_path / "i.db"
    store = Store(path, create=True)
    songs = _random_songs(4, 3)
    for number, (hashes, frames) in enumerate(songs):
        insert(store, f"/{number}", f"sha-{number}", hashes, frames)
    asked = np.concatenate([hashes for hashes, _ in songs])
    assert len(_postings_of(store, asked)) == 360
    store.close()
    with sqlite3.connect(path) as conn:
        table = next(name for name, in conn.execute("SELECT name FROM sqlite_master WHERE name LIKE 'postings%'"))
        bucket, entries = conn.execute(f"SELECT rowid, entries FROM [{table}] ORDER BY rowid LIMIT 1").fetchone()
        conn.execute(f"UPDATE [{table}] SET entries=? WHERE rowid=?", (entries + b"\0", bucket))
    with pytest.raises(IndexFileError, match=r"damaged \(a row of postings is not whole words\)"):
        _postings_of(Store(path), asked)


def test_a_flipped_bit_in_a_tail_row_is_damage_to_the_next_add_not_a_traceback(library_dir, tmp_path):
    """A row's recorded end read back larger than it was: the next add's postings would come before it."""
    from tests.conftest import run_cli

    db = tmp_path / "i.db"
    files = sorted(str(library_dir / name) for name in os.listdir(library_dir))
    run_cli("add", "--jobs", "1", *files[:3], db=db, check=True)
    with sqlite3.connect(db) as conn:
        table = next(name for name, in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
                     if name.startswith("postings"))
        for bucket, entries in conn.execute(f"SELECT bucket, entries FROM {table}").fetchall():
            conn.execute(f"UPDATE {table} SET entries=? WHERE bucket=?",
                         (entries[:1] + bytes([entries[1] ^ 0x80]) + entries[2:], bucket))
    added = run_cli("add", "--jobs", "1", *files[3:], db=db)
    assert added.returncode == 1 and added.stderr.count("\n") == 1 and "is damaged" in added.stderr, added.stderr


def test_damage_inside_whole_files_is_a_one_line_error_not_a_traceback(tmp_path, monkeypatch):
    """A segment whose row lengths were overwritten, a postings row that ends in an escape, peaks that do not
    decompress: each is named damaged, with how to rebuild, where numpy or zlib would have raised."""
    _small_sealing(monkeypatch)
    path = tmp_path / "i.db"
    store = Store(path, create=True)
    peaks = (np.arange(0, 400, 4), np.full(100, 40))
    for number, (hashes, frames) in enumerate(_random_songs(2, 3)):
        insert(store, f"/{number}", f"sha-{number}", hashes, frames, peaks)
    asked = np.arange(0, 1 << 21, 1 << 10, dtype=np.uint32)  # a key in every 1,024th hash: rows deep in blocks
    segment_file = segments.folder_of(path) / _segment_files(path)[0]
    whole = segment_file.read_bytes()
    header = np.frombuffer(whole, segments.HEADER, 1)[0]
    assert header["magic"] == segments.MAGIC  # row lengths a byte each, after the words
    directory_at = segments.HEADER.itemsize + segments._padded(3 * int(header["words"]))
    segment_file.write_bytes(whole[:directory_at] + b"\xfe" * 1024 + whole[directory_at + 1024:])
    with pytest.raises(IndexFileError, match=r"damaged \(its directory does not match its postings\); index the music "
                                             "again"):
        Store(path).postings.lookup(asked)
    assert int(header["long_rows"]) == 0
    segment_file.write_bytes(whole[:directory_at] + b"\xff" + whole[directory_at + 1:])  # bucket 0 "long"
    with pytest.raises(IndexFileError, match=r"damaged \(a row marked long has no length\)"):
        Store(path).postings.lookup(asked)
    segment_file.write_bytes(whole)
    with sqlite3.connect(path) as conn:
        kept = conn.execute("SELECT songs FROM sealed_timeline").fetchone()[0]
        conn.execute("UPDATE sealed_timeline SET songs=?", (kept[:20],))
    with pytest.raises(IndexFileError, match=r"damaged \(the sealed songs' places do not decode\)"):
        Store(path).postings.lookup(asked)
    rows = np.frombuffer(kept, "<i8").reshape(-1, 3)
    for damaged_rows in (np.zeros_like(rows), np.where(np.arange(rows.size).reshape(rows.shape) == 3, -(1 << 40), rows),
                         rows[::-1], np.where(rows == rows[0, 1], rows[-1, 1] + 10**6, rows)):
        with sqlite3.connect(path) as conn:  # zeroed, a negative start, out of order, a song past the end
            conn.execute("UPDATE sealed_timeline SET songs=?", (damaged_rows.astype("<i8").tobytes(),))
        with pytest.raises(IndexFileError, match=r"damaged \(the sealed songs' places do not decode\)"):
            Store(path).postings.lookup(asked)
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE sealed_timeline SET songs=?", (kept,))
    hashes, frames = _random_songs(3, 1, n_postings=50)[0]
    insert(Store(path), "/3", "sha-3", hashes, frames)  # into the tail's rows, under the seal

    conn = sqlite3.connect(path)
    rows = next(name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE name LIKE 'postings%'")
                if conn.execute(f"SELECT COUNT(*) FROM [{name}]").fetchone()[0] > 0)
    hashes_a_row = 16 if rows == "postings" else int(rows.split("_")[1])
    bucket = conn.execute(f"SELECT MIN(rowid) FROM [{rows}]").fetchone()[0]
    layout = RowLayout(hashes_a_row.bit_length() - 1)
    with conn:  # an escaped gap without its two digits
        conn.execute(f"UPDATE [{rows}] SET entries=? WHERE rowid=?", (layout.escape.to_bytes(3, "little"), bucket))
        conn.execute("UPDATE peaks SET data=? WHERE song_id=1", (b"\x78" + bytes(40),))
    conn.close()
    reopened = Store(path)
    with pytest.raises(IndexFileError, match=r"index is damaged \(postings that do not decode\); index the music"):
        reopened.postings.lookup(np.arange(bucket * hashes_a_row, (bucket + 1) * hashes_a_row, dtype=np.uint32))
    with pytest.raises(IndexFileError, match="a song.s peaks do not decode"):
        reopened.peaks.get([1])
    assert [p.tolist() for p in reopened.peaks.get([2])[2]] == [p.tolist() for p in peaks]  # the others read
    reopened.close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE meta SET value='abc' WHERE key='timeline_end'")
    with pytest.raises(IndexFileError, match="its timeline_end is 'abc', not a number"):
        insert(Store(path), "/4", "sha-4", hashes, frames)


def test_a_damaged_page_anywhere_in_the_file_is_a_one_line_error_whatever_reads_it(built_index, tmp_path):
    """A page overwritten anywhere in the index file: stats, the song list, a match and dedup each answer or say
    the index is damaged (an `IndexFileError`), never SQLite's own error: a read transaction's commit fails on
    such a file too, after the error that tells it."""
    from lmprint.errors import LmprintError
    from tests.conftest import rendered

    clip = rendered(2, 40.0, 8000)[10 * 8000:15 * 8000]
    page = 4096
    whole = built_index.read_bytes()
    told = 0
    for at in range(page, len(whole), page):
        damaged = tmp_path / f"damaged-{at}.db"  # a file of its own: no write-ahead log of the one before
        damaged.write_bytes(whole[:at] + b"\xaa" * page + whole[at + page:])
        for read in (lambda index: index.stats(), lambda index: index.catalogue.songs(),
                     lambda index: index.match_samples(clip), lambda index: index.duplicates()):
            try:
                with Index(damaged) as index:
                    read(index)
            except LmprintError as error:
                assert "damaged" in str(error) and "\n" not in str(error)
                told += 1
    assert told > 0  # pages that every read needs were hit


def test_a_song_row_edited_to_another_type_is_a_one_line_error(built_index, tmp_path, library_dir):
    """SQLite keeps a value's type as written: a title or a path edited by hand into bytes, or a duration into words, made
    `list` and `match` end in a traceback where the song was printed (a number written to a text column is
    stored as text: its affinity)."""
    from tests.conftest import run_cli

    clip = str(library_dir / sorted(os.listdir(library_dir))[0])
    for column, value in (("title", b"\x00\xffA"), ("path", b"/music/a.flac"), ("duration_s", "long")):
        path = tmp_path / f"{column}.db"
        shutil.copyfile(built_index, path)
        with sqlite3.connect(path) as conn:
            conn.execute(f"UPDATE songs SET {column}=?", (value,))
        for command in (("list",), ("list", "--json"), ("match", clip), ("remove", "--dry-run", "no such title")):
            told = run_cli(*command, db=path)
            assert told.returncode == 1 and told.stderr.count("\n") == 1, told.stderr
            assert f"is damaged (song 1 has a {column} of type {type(value).__name__})" in told.stderr, told.stderr


def test_a_read_whose_commit_fails_is_never_left_open(built_index, tmp_path):
    """A read transaction whose COMMIT fails (a damaged file) is rolled back: left open, every later read on that
    connection (a server's, a monitor's) would join it and see the file as it was, whatever another process
    wrote since."""
    from lmprint.errors import IndexFileError

    path = tmp_path / "index.db"
    shutil.copyfile(built_index, path)
    with Index(path) as index:
        catalogue = index.catalogue
        real = catalogue.conn

        class FailingCommit:  # the connection, but its next COMMIT fails as on a malformed file
            def __getattr__(self, name):
                return getattr(real, name)

            def execute(self, sql, *args):
                if sql == "COMMIT":
                    catalogue.conn = real
                    raise sqlite3.DatabaseError("database disk image is malformed")
                return real.execute(sql, *args)

        catalogue.conn = FailingCommit()
        with pytest.raises(IndexFileError, match="damaged"), catalogue.snapshot():
            catalogue.songs()
        assert not real.in_transaction
        with sqlite3.connect(path) as other:  # another process changes the file
            other.execute("UPDATE songs SET title='Renamed' WHERE id=1")
        assert next(song.title for song in catalogue.songs() if song.id == 1) == "Renamed"


def test_a_segment_the_disk_has_no_room_for_is_one_line_and_the_index_keeps_what_it_held(tmp_path, monkeypatch):
    import errno

    import landmark.segments as segments_module

    _small_sealing(monkeypatch)
    path = tmp_path / "i.db"
    store = Store(path, create=True)
    songs = _random_songs(4, 3)
    insert(store, "/0", "sha-0", *songs[0])
    before = _postings_of(store, songs[0][0])

    def no_room(folder, name, temporary, *rest):  # the disk fills halfway through the file
        temporary.write_bytes(b"part of a segment")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(segments_module, "_write", no_room)
    with pytest.raises(IndexFileError, match="no space left on device; free some space"):
        for number in (1, 2):  # the tail fills and is sealed into a segment
            insert(store, f"/{number}", f"sha-{number}", *songs[number])
    assert not [name for name in os.listdir(segments.folder_of(path)) if name.endswith(".tmp")]
    reopened = Store(path)
    assert "/0" in [song.path for song in reopened.catalogue.songs()] and _postings_of(reopened, songs[0][0]) == before

    def read_only(folder, name, temporary, *rest):  # a read-only file system: nothing can be written or deleted
        raise OSError(errno.EROFS, "Read-only file system", str(temporary))

    def cannot_delete(self, missing_ok=False):
        raise OSError(errno.EROFS, "Read-only file system", str(self))

    monkeypatch.setattr(segments_module, "_write", read_only)
    monkeypatch.setattr(segments_module.Path, "unlink", cannot_delete)
    with pytest.raises(IndexFileError, match="cannot write a segment in .*: read-only file system; free some space"):
        for number in (1, 2):  # the error about the segment, not the one about its temporary file
            insert(reopened, f"/{number}", f"sha-{number}", *songs[number])


def test_a_compaction_the_disk_has_no_room_for_leaves_the_change_made_and_says_so(library_dir, tmp_path,
                                                                                   monkeypatch):
    """The merge after a large change writes the postings anew before it deletes the old, so a nearly full disk
    meets it first: the songs were added (or removed) and committed, yet the command ended in an error that said
    to run it again, which then added nothing or found no such song. Housekeeping never fails a change made."""
    import errno

    import landmark.segments as segments_module
    from landmark.store import SQLitePostingStore
    from tests.conftest import run_cli

    _small_sealing(monkeypatch, one_hash_from=2000, tail=3000)  # the first add seals; the second leaves a tail
    compact = SQLitePostingStore.compact

    def compact_on_a_full_disk(self):
        def no_room(*_):
            raise OSError(errno.ENOSPC, "No space left on device")
        with monkeypatch.context() as patch:
            patch.setattr(segments_module, "_write", no_room)
            compact(self)

    db = tmp_path / "i.db"
    files = sorted(str(library_dir / name) for name in os.listdir(library_dir))
    run_cli("add", "--jobs", "1", *files[:4], db=db, check=True)
    monkeypatch.setattr(SQLitePostingStore, "compact", compact_on_a_full_disk)
    added = run_cli("add", "--jobs", "1", *files[4:], db=db)  # a third of the library: its tail is sealed
    assert added.returncode == 0, added.stderr
    assert ("lmprint: note: the change is made, but the index could not be compacted (no space left on device): "
            "free some space, and the next large change compacts it") in added.stderr
    assert "added 2," in added.stderr
    with Index(db) as index:
        songs = index.catalogue.songs()
        assert len(songs) == 6 and index.match(songs[2].path).song.id == songs[2].id
    removed = run_cli("remove", songs[0].id, songs[1].id, db=db)
    assert removed.returncode == 0 and removed.stdout.count("removed ") == 2, removed.stderr
    with Index(db) as index:
        assert len(index.catalogue.songs()) == 4 and index.match(songs[2].path).song.id == songs[2].id


def test_an_index_reached_through_a_symbolic_link_keeps_its_segments_beside_the_file(library_dir, tmp_path,
                                                                                    monkeypatch):
    """`~/index.db` linking to a larger disk: the segments went beside the link, so the disk the link was made to
    spare took them, and the file opened where it lies said its postings were missing. A folder beside the link
    (from an older lmprint) is still found."""
    _small_sealing(monkeypatch, one_hash_from=2000, tail=3000)
    (tmp_path / "disk").mkdir()
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "index.db").symlink_to(tmp_path / "disk" / "index.db")
    with Store(tmp_path / "home" / "index.db", create=True) as index:
        index.add([str(library_dir)])
        assert index.postings.stats()["segments"] > 0
    assert (tmp_path / "disk" / "index.db-postings").is_dir() and not (tmp_path / "home" / "index.db-postings").exists()
    with Store(tmp_path / "disk" / "index.db") as index:
        song = index.catalogue.songs()[3]
        assert index.match(song.path).song.id == song.id
    (tmp_path / "disk" / "index.db-postings").rename(tmp_path / "home" / "index.db-postings")
    with Store(tmp_path / "home" / "index.db") as index:
        assert index.match(song.path).song.id == song.id


def test_the_file_and_its_folder_copied_without_its_log_while_in_use_still_open(tmp_path, monkeypatch):
    """A merge deletes its inputs once it commits. The commit sat in the write-ahead log while the index was
    open (no compaction follows a small add), so the file copied with its folder but not its `-wal` listed
    segments that were gone, and every song was lost. The log is folded in first: such a copy lacks only the
    latest commits, as any SQLite file copied without its log does."""
    from bench.audio_io import write
    from bench.synth import song
    from tests.conftest import SYNTH_RATE

    _small_sealing(monkeypatch, one_hash_from=2000, tail=1000)
    files = []
    for seed in range(14):
        files.append(str(tmp_path / f"song{seed}.wav"))
        write(files[-1], song(200 + seed, 20.0, SYNTH_RATE), SYNTH_RATE)
    db = tmp_path / "i.db"
    with Store(db, create=True) as writer, Store(db) as reader:  # a server's, say, open meanwhile
        writer.add(files[:8])
        for number, path in enumerate(files[8:]):
            writer.add([path])  # a small change: no compaction
            copy = tmp_path / f"copy{number}"
            copy.mkdir()
            shutil.copy(db, copy / "i.db")
            shutil.copytree(segments.folder_of(db), copy / "i.db-postings")
            with Store(copy / "i.db") as copied:
                assert copied.catalogue.song_count() >= 8
        assert reader.catalogue.song_count() == 14


def test_match_of_many_clips_on_a_damaged_index_says_so_once(built_index, library_dir, tmp_path):
    """The index, not a query, is at fault: one line, not one per clip and a count of failed queries (a folder of
    500 clips read the broken index 500 times)."""
    from tests.conftest import run_cli

    db = tmp_path / "i.db"
    shutil.copy(built_index, db)
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE peaks SET data = X'00ff00ff'")
    clips = sorted(str(library_dir / name) for name in os.listdir(library_dir))[:3]
    result = run_cli("match", *clips, db=db)
    assert result.returncode == 1 and result.stderr.count("\n") == 1 and "damaged" in result.stderr, result.stderr


def _segment_postings(bits, row_sizes, rng):
    """Sorted (hash, timeline frame) postings with about `row_sizes[i]` words in each of some buckets' rows (a
    run of neighbours or scattered; an escaped gap, from a frame far on, takes three), at `bits` suffix bits."""
    n_buckets = 1 << (21 - bits)
    buckets = (int(rng.integers(0, n_buckets - len(row_sizes))) + np.arange(len(row_sizes))  # neighbours in a block
               if rng.random() < 0.5 else rng.choice(n_buckets, len(row_sizes), replace=False))
    hashes = np.concatenate([(b << bits) + rng.integers(0, 1 << bits, n) for b, n in zip(buckets, row_sizes)])
    frames = rng.integers(0, 1 << 21, hashes.size)
    frames[rng.random(hashes.size) < 0.05] += 1 << 30
    order = np.lexsort((frames, hashes))
    return hashes[order].astype(np.int64), frames[order].astype(np.int64)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2 ** 32 - 1), st.sampled_from([0, 2, 4]),
       st.lists(st.integers(1, 600), min_size=1, max_size=60))
def test_a_segment_reads_every_row_back_whatever_its_length(tmp_path_factory, seed, bits, row_sizes):
    """Rows of 255 words or more have their length apart from the byte a row of the directory: every row, of
    any length on either side of that, any run of them in a 16-row block, reads back as written, whole or by
    bucket."""
    rng = np.random.default_rng(seed)
    row_sizes = row_sizes + [254, 255, 256, 1]
    hashes, frames = _segment_postings(bits, row_sizes, rng)
    folder = tmp_path_factory.mktemp("seg")
    name, _ = segments.write(folder, [(hashes, frames)], 1 << (22 if bits == 0 else 20 if bits == 2 else 18), 0)
    segment = segments.Segment(folder / name)
    assert segment.layout.suffix_bits == bits
    whole = segment.hash_range(0, 1 << 21)  # a row in timeline order, rows in bucket order
    written = sorted(zip(hashes.tolist(), frames.tolist()))
    assert sorted(zip(whole[0].tolist(), whole[1].tolist())) == written
    assert (np.diff(whole[0] >> bits) >= 0).all()
    asked = np.unique(np.r_[hashes >> bits, rng.integers(0, 1 << (21 - bits), 50)])[::-1].copy()
    read = segment.read(asked)
    got = sorted(zip((asked[read.rows] << bits | read.suffixes).tolist(), read.frames.tolist()))
    assert got == written
    held = np.isin(asked, hashes >> bits)
    assert (segment.sizes(asked)[held] > 0).all() and (segment.sizes(asked)[~held] == 0).all()
    segment.close()


def test_a_long_rows_length_that_does_not_fit_the_segment_is_damage_not_a_huge_allocation(tmp_path):
    """Row lengths of 255 words or more are kept apart, as 8-byte numbers, which opening a segment does not read
    (some 290,000 at 100,000 songs). One overwritten, whether to 2^40 words (a lookup tried to allocate
    terabytes) or to a length that still looks like one, is refused by a lookup that reads its 16-row block, and a
    merge reading it leaves no half-written segment; so is a row's length byte. Other blocks still read."""
    hashes, frames = _segment_postings(4, [300, 3], np.random.default_rng(5))
    name, _ = segments.write(tmp_path, [(hashes, frames)], 1000, 0)
    whole = (tmp_path / name).read_bytes()
    header = np.frombuffer(whole, segments.HEADER, 1)[0]
    assert header["long_rows"] == 1
    long_bucket, long_words = (int(value) for value in np.frombuffer(whole[-16:], "<u8"))
    short_bucket = int(np.unique(hashes >> 4)[np.unique(hashes >> 4) != long_bucket][0])
    elsewhere = np.array([(long_bucket // 16 + 1) % (1 << 17) * 16])  # an empty row of another block
    segment = segments.Segment(tmp_path / name)
    assert segment.sizes(np.array([long_bucket]))[0] == long_words >= segments.LONG_ROW
    segment.close()
    directory_at = segments.HEADER.itemsize + segments._padded(3 * int(header["words"]))
    short_byte = directory_at + short_bucket
    for damaged_file, damaged_bucket in (
            (whole[:-8] + (1 << 40).to_bytes(8, "little"), long_bucket),  # past the segment's words
            (whole[:-8] + (long_words - 40).to_bytes(8, "little"), long_bucket),  # still a long row's length
            (whole[:short_byte] + bytes([whole[short_byte] + 2]) + whole[short_byte + 1:], short_bucket)):
        (tmp_path / name).write_bytes(damaged_file)
        segment = segments.Segment(tmp_path / name)
        for asked in ([damaged_bucket], [long_bucket, short_bucket], [damaged_bucket // 16 * 16 + 15]):
            with pytest.raises(IndexFileError, match="its directory does not match its postings"):
                segment.read(np.array(asked))
        assert segment.read(elsewhere).frames.size == 0
        with pytest.raises(IndexFileError, match="its directory does not match its postings"):
            segments.write(tmp_path / "merged", segments.merged([segment], None, 1 << 21), 1000, 0)
        assert not [path.name for path in (tmp_path / "merged").iterdir()]  # no temporary file left
        segment.close()


def old_directory_segment(path, hashes, frames, start_bytes: int) -> bytes:
    """A segment as `LMPSEG02` wrote it (a start for every bucket, in 4 bytes, or 8 where its words needed them),
    written to `path`: its bytes."""
    buckets, data, starts = encode_words(hashes, frames, layout=RowLayout(4))
    row_words = np.zeros(1 << 17, np.int64)
    row_words[buckets] = np.diff(starts)
    header = np.zeros(1, segments.HEADER_DENSE)
    header[0] = (segments.MAGIC_DENSE, 4, start_bytes, 0, buckets.size, len(data) // 3, hashes.size, frames.min(),
                 frames.max() + 1)
    old = (header.tobytes() + data + bytes(-len(data) % 8)
           + np.r_[0, np.cumsum(row_words)].astype(f"<u{start_bytes}").tobytes())
    path.write_bytes(old)
    return old


def test_a_segment_written_with_a_start_for_every_row_is_read_still(tmp_path):
    """Segments written before the byte-a-row directory (`LMPSEG02`: a u32 start for every bucket) read the same
    postings as one written now, and so do those of u64 starts."""
    rng = np.random.default_rng(3)
    hashes, frames = _segment_postings(4, [3, 300, 40, 1, 255], rng)
    name, _ = segments.write(tmp_path, [(hashes, frames)], 1000, 0)
    old_directory_segment(tmp_path / "wide.seg", hashes, frames, 8)
    wide = segments.Segment(tmp_path / "wide.seg")
    read = wide.hash_range(0, 1 << 21)
    assert sorted(zip(*(part.tolist() for part in read))) == sorted(zip(hashes.tolist(), frames.tolist()))
    wide.close()
    old = old_directory_segment(tmp_path / "old.seg", hashes, frames, 4)
    new_segment, old_segment = segments.Segment(tmp_path / name), segments.Segment(tmp_path / "old.seg")
    for segment in (new_segment, old_segment):
        read = segment.hash_range(0, 1 << 21)
        assert sorted(zip(*(part.tolist() for part in read))) == sorted(zip(hashes.tolist(), frames.tolist()))
    asked = np.unique(hashes >> 4)
    assert np.array_equal(new_segment.sizes(asked), old_segment.sizes(asked))
    assert (tmp_path / name).stat().st_size < len(old)  # a byte a row, where the old directory took four
    old_segment.close()
    starts_at = len(old) - 4 * ((1 << 17) + 1)
    bucket = int(asked[1])  # its row's end written over with one before its start: a negative length
    cut = old[:starts_at + 4 * (bucket + 1)] + b"\0\0\0\0" + old[starts_at + 4 * (bucket + 2):]
    (tmp_path / "old.seg").write_bytes(cut)
    damaged_segment = segments.Segment(tmp_path / "old.seg")
    for read in (damaged_segment.read, damaged_segment.sizes):
        with pytest.raises(IndexFileError, match="its directory does not match its postings"):
            read(np.array([bucket]))
    damaged_segment.close()


def test_a_segment_header_whose_frames_do_not_fit_the_timeline_is_damage(tmp_path):
    """A segment's header says from which frame its gaps count and which frames its postings span. One written
    over (past the timeline, past its first posting, an end before its start, more postings than it holds) is one
    line of damage where
    opening it would have read postings at the wrong frames, dropped them, or failed a merge with a traceback."""
    hashes, frames = _segment_postings(4, [3, 40], np.random.default_rng(8))
    name, _ = segments.write(tmp_path, [(hashes, frames + 5000)], 1000, 5000)
    whole = (tmp_path / name).read_bytes()
    header = np.frombuffer(whole, segments.HEADER, 1)[0]
    segment = segments.Segment(tmp_path / name)
    read = segment.read(np.unique(hashes >> 4))
    assert sorted(read.frames.tolist()) == sorted((frames + 5000).tolist())
    segment.close()
    for field, value in (("base_frame", (1 << 63) + 1), ("base_frame", 1 << 40),
                         ("base_frame", int(header["first_frame"]) + 1), ("end_frame", (1 << 64) - 1),
                         ("end_frame", int(header["first_frame"])), ("postings", 0),
                         ("postings", int(header["words"]) + 1)):  # more postings than its words hold
        at = segments.HEADER.fields[field][1]
        (tmp_path / name).write_bytes(whole[:at] + value.to_bytes(8, "little") + whole[at + 8:])
        with pytest.raises(IndexFileError, match=r"damaged \(its header does not fit the timeline\)"):
            segments.Segment(tmp_path / name)


def test_a_schema_5_file_stays_5_until_its_tail_is_sealed_then_older_lmprints_refuse_it(tmp_path, monkeypatch):
    """A file made before segments, of rows alone (here at 4 hashes a row, as a mid-size one was), is read as it
    is; the first add past the thresholds seals all of it, and the version moves on."""
    path = tmp_path / "i.db"
    songs = _random_songs(9, 3)
    asked = np.unique(np.concatenate([hashes for hashes, _ in songs]))
    with Store(path, create=True) as store:
        insert(store, "/a", "sha-a", *songs[0])
        store.catalogue.conn.execute("CREATE TABLE postings_4 (bucket INTEGER PRIMARY KEY, entries BLOB NOT NULL)")
        buckets, blobs = encode_postings(songs[0][0], songs[0][1], layout=RowLayout(2))
        store.catalogue.conn.executemany("INSERT INTO postings_4 VALUES (?, ?)", zip(buckets.tolist(), blobs))
        store.catalogue.conn.execute("DROP TABLE postings")
        store.catalogue.conn.execute("DROP TABLE segments")
        store.catalogue.conn.execute("DROP TABLE sealed_timeline")
        store.catalogue.conn.execute("DROP INDEX idx_songs_timeline_start")
        store.catalogue.conn.execute("DELETE FROM meta WHERE key='tail_postings'")
        store.catalogue.set_meta("row_suffix_bits", "2")
        store.catalogue.conn.execute("PRAGMA user_version=5")
    with Store(path) as store:
        assert _postings_of(store, asked) == sorted((int(h), 1, int(f)) for h, f in zip(*songs[0]))
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == 5
    _small_sealing(monkeypatch)
    with Store(path) as store:
        insert(store, "/b", "sha-b", *songs[1])
        assert store.postings.stats()["segments"] == 1
        assert len(_postings_of(store, asked)) == 240
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 9


def test_the_timeline_names_the_same_song_and_frame_as_a_binary_search_would():
    """A posting's song is found through a table of timeline cells. Whatever the songs' lengths (dozens of short
    songs within one cell, long ones across many), the gaps removed songs leave, and postings past the last song,
    it names what a binary search over the songs' starts names."""
    from landmark.timeline import Timeline

    rng = np.random.default_rng(3)
    lengths = np.r_[rng.integers(1, 3, 60), rng.integers(5_000, 20_000, 40), rng.integers(1, 3, 60)]
    gaps = rng.integers(0, 2, lengths.size) * rng.integers(1, 500, lengths.size)  # removed songs' frames
    starts = np.cumsum(np.r_[0, (lengths + gaps)[:-1]])
    rows = [(int(a), int(a + n), 1000 + i) for i, (a, n) in enumerate(zip(starts, lengths)) if i % 7]
    timeline = Timeline.of(rows)
    frames = np.r_[rng.integers(0, timeline.end + 300, 5_000), [r[0] for r in rows], [r[1] - 1 for r in rows]]
    inside, song_ids, song_frames = timeline.locate(frames)
    table = np.array(rows)
    slot = np.searchsorted(table[:, 0], frames, side="right") - 1
    expected = (slot >= 0) & (frames < table[np.maximum(slot, 0), 1])
    np.testing.assert_array_equal(inside, expected)
    np.testing.assert_array_equal(song_ids, table[slot[expected], 2])
    np.testing.assert_array_equal(song_frames, frames[expected] - table[slot[expected], 0])


def test_thousands_of_songs_go_in_one_removal_where_sqlite_binds_999_values(tmp_path):
    """SQLite builds before 3.32 bind at most 999 values a statement, and `prune` may remove tens of thousands of
    songs at once: ids are bound in batches, and the timeline, postings and peaks of every one of them go."""
    index = Store(tmp_path / "i.db", create=True)
    index.catalogue.conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 999)
    rng = np.random.default_rng(3)
    fingerprints = [SongFingerprint(f"/s{n}", f"s{n}", 10.0, f"sha-{n}", rng.integers(0, 1 << 21, 8).astype(np.uint32),
                                    np.arange(8, dtype=np.uint32) * 60, np.array([1, 30]), np.array([40, 50]))
                    for n in range(1200)]
    ids = index.add_fingerprints(fingerprints)
    kept = ids[-1]
    assert len(index.catalogue.songs_by_id(ids)) == 1200 and len(index.peaks.get(ids)) == 1200
    index.remove(ids[:-1])
    assert [song.id for song in index.catalogue.songs()] == [kept] and list(index.peaks.get(ids)) == [kept]
    assert set(_postings_of(index, fingerprints[-1].hashes)) == {
        (int(h), kept, int(f)) for h, f in zip(fingerprints[-1].hashes, fingerprints[-1].anchor_frames)}
    assert index.postings.song_count() == 1
    index.close()


def test_dedup_of_songs_without_landmarks_finds_nothing(tmp_path):
    """Songs another engine holds alone have no postings for dedup's join: no overlaps, no error."""
    with Store(tmp_path / "i.db", create=True) as index:
        with index.catalogue.write():
            for n in range(2):
                index.catalogue.add_song(f"/m{n}.flac", f"m{n}", 30.0, f"sha-{n}")
        duplicates = index.duplicates()
        assert (duplicates.recordings, duplicates.shared_parts, index.overlaps()) == ([], [], [])


def test_compacting_after_an_add_is_skipped_while_another_process_writes(tmp_path, monkeypatch):
    """Compaction is housekeeping after the songs have committed: when another writer holds the file, `add` leaves
    it for a later change after a brief wait, rather than waiting a minute and then failing a change that is made."""
    from landmark.store import SQLitePostingStore

    path = tmp_path / "i.db"
    store = Store(path, create=True)
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    compact = SQLitePostingStore.compact

    def compact_once_another_writer_began(self):
        other.execute("BEGIN IMMEDIATE")  # another `add` takes the file just after this one's commit
        return compact(self)

    monkeypatch.setattr(SQLitePostingStore, "compact", compact_once_another_writer_began)
    began = time.monotonic()
    song_id = store.add_fingerprints([SongFingerprint("/a", "a", 10.0, "sha-a", *_random_songs(9, 1)[0],
                                                      np.zeros(0, np.int64), np.zeros(0, np.int64))])[0]
    store._compact_after_change(10.0)  # a fifth of the library and more: it compacts
    assert time.monotonic() - began < 10
    other.execute("ROLLBACK")
    assert [song.id for song in store.catalogue.songs()] == [song_id]
    assert store.catalogue.busy_timeout_s == 60.0  # as it was, and so is the connection's
    assert store.catalogue.conn.execute("PRAGMA busy_timeout").fetchone()[0] == 60_000


def test_every_segment_holds_twice_all_newer_ones_and_a_merge_takes_the_oldest_outgrown_at_once(tmp_path, monkeypatch):
    """Segments stay in a geometric series: each holds `MERGE_RATIO` times all newer ones together, and the merge
    that restores it takes the oldest outgrown segment and every newer one in one write (each posting is then
    rewritten about log(n) times, not once per seal)."""
    written = []
    write = segments.write

    def recorded(*given):
        result = write(*given)
        written.append(result[1])
        return result

    monkeypatch.setattr(segments, "write", recorded)
    _small_sealing(monkeypatch)  # tail 100, ratio 2: each 120-posting song is a segment of its own
    store = Store(tmp_path / "i.db", create=True)
    history = []
    for number, (hashes, frames) in enumerate(_random_songs(4, 7)):
        insert(store, f"/{number}", f"sha-{number}", hashes, frames)
        sizes = [postings for _, postings in store.postings._listed()]
        history.append(sizes)
        assert all(sizes[i] >= 2 * sum(sizes[i + 1:]) for i in range(len(sizes) - 1)), history
    assert history[3] == [480] and history[-1] == [840], history
    # [120] [240] [240, 120], then [240, 120, 120]: all three merged at once into [480]
    assert written[:6] == [120, 120, 240, 120, 120, 480], written


def test_segments_are_listed_in_the_order_they_were_written_whatever_their_names(tmp_path, monkeypatch):
    import itertools
    import secrets

    _small_sealing(monkeypatch)
    names = (f"{n:016x}" for n in itertools.count(0xFFFF, -1))  # each name sorts before the one before it
    monkeypatch.setattr(secrets, "token_hex", lambda n: next(names))
    path = tmp_path / "i.db"
    store = Store(path, create=True)
    for number, (hashes, frames) in enumerate(_random_songs(4, 3)):
        insert(store, f"/{number}", f"sha-{number}", hashes, frames)
    listed = store.postings._listed()
    assert [postings for _, postings in listed] == [240, 120]  # the first two merged, the third newer
    opened = [segments.Segment(segments.folder_of(path) / name) for name, _ in listed]
    assert opened[0].end_frame <= opened[1].first_frame
    for segment in opened:
        segment.close()


def test_the_tail_is_sealed_and_then_holds_one_hash_a_row_at_exactly_their_thresholds(tmp_path, monkeypatch):
    _small_sealing(monkeypatch, one_hash_from=240, tail=240)
    store = Store(tmp_path / "i.db", create=True)
    songs = _random_songs(5, 2)  # 120 postings each
    insert(store, "/0", "sha-0", *songs[0])
    assert store.postings.stats()["segments"] == 0 and store.postings._tail_postings() == 120
    insert(store, "/1", "sha-1", *songs[1])  # 240: exactly `TAIL_POSTINGS`, and the segments `ONE_HASH_TAIL_FROM`
    assert store.postings.stats()["segments"] == 1 and store.postings._tail_postings() == 0
    assert store.postings.stats()["hashes_per_row"] == 1


def test_a_removal_keeps_the_sealed_songs_timeline_without_the_removed_song(tmp_path, monkeypatch):
    """Readers locate a sealed posting's song through the kept timeline (one blob); a removal rewrites it without
    the song. Left with the song in it, it no longer matches the songs' rows, and every reader reads every row."""
    _small_sealing(monkeypatch, tail=300)
    monkeypatch.setattr("landmark.library.COMPACT_AFTER_CHANGE", 2.0)  # no compaction: the blob as the removal left it
    path = tmp_path / "i.db"
    store = Store(path, create=True)
    for number, song in enumerate(_random_songs(5, 4)):  # sealed at the third song
        insert(store, f"/{number}", f"sha-{number}", *song)
    store.remove([2])
    kept = Store(path).postings._sealed_timeline()
    assert kept is not None and kept[1][:, 2].tolist() == [1, 3]


def test_a_late_seal_counts_its_rows_from_its_own_start(tmp_path, monkeypatch):
    """A segment's gaps count from its base frame, the timeline's sealed end: counted from frame 0, a segment past
    2^20 frames would begin each row with an escape of three words."""
    _small_sealing(monkeypatch, tail=240, ratio=0)  # never merged: each seal stays a segment of its own
    rng = np.random.default_rng(3)
    path = tmp_path / "i.db"
    store = Store(path, create=True)
    for number in range(6):  # 300,000 frames a song: the third segment starts past 2^20 frames
        insert(store, f"/{number}", f"sha-{number}", rng.integers(0, 1 << 21, 120, dtype=np.uint32),
               np.sort(rng.integers(0, 300_000, 120)).astype(np.uint32))
    listed = store.postings._listed()
    assert len(listed) == 3
    last = segments.Segment(segments.folder_of(path) / listed[-1][0])
    assert 1 << 20 <= last.base_frame <= last.first_frame
    assert last.words.size == last.postings == 240  # a word a posting: no escapes
    last.close()


def test_compacting_an_index_of_one_segment_and_no_removal_rewrites_nothing(tmp_path, monkeypatch):
    _small_sealing(monkeypatch)
    path = tmp_path / "i.db"
    store = Store(path, create=True)
    for number, song in enumerate(_random_songs(5, 3)):
        insert(store, f"/{number}", f"sha-{number}", *song)
    store.postings.compact()
    files = _segment_files(path)
    assert len(files) == 1
    store.postings.compact()  # nothing removed since, one segment: nothing to do
    assert _segment_files(path) == files


def test_stats_count_the_segments_beside_the_file(tmp_path, monkeypatch):
    _small_sealing(monkeypatch, one_hash_from=10_000, tail=300)
    path = tmp_path / "i.db"
    store = Store(path, create=True)
    for number, song in enumerate(_random_songs(5, 4)):  # a segment of 360, and 120 in the tail
        insert(store, f"/{number}", f"sha-{number}", *song)
    on_disk = sum((segments.folder_of(path) / name).stat().st_size for name in _segment_files(path))
    tail = store.catalogue.read("SELECT COALESCE(SUM(LENGTH(entries)), 0) FROM postings")[0][0]
    stats = store.stats()
    assert on_disk > 0 and tail == 360
    assert stats["segment_bytes"] == on_disk and stats["postings_bytes"] == tail + on_disk
    assert stats["file_bytes"] == store.catalogue.file_bytes() + on_disk


def test_a_schema_6_file_that_takes_zlib_peaks_becomes_the_current_version(tmp_path):
    """An lmprint of schema 6 read peaks as LZMA2: a file it made, once it holds peaks in zlib, must be refused by
    it as newer, not read as damaged."""
    path = tmp_path / "i.db"
    peaks = (np.arange(0, 400, 4), np.full(100, 40))
    songs = _random_songs(3, 2)
    with Store(path, create=True) as store:
        insert(store, "/a", "sha-a", *songs[0], peaks)
        assert store.postings.stats()["segments"] == 0 and store.catalogue.meta("tail_base_frame") is None
        with store.catalogue.write():
            store.catalogue.conn.execute("PRAGMA user_version=6")
    with Store(path) as store:
        assert store.catalogue.schema_version == 6
        insert(store, "/b", "sha-b", *songs[1], peaks)  # into the tail: no seal, only the peaks' codec is new
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_peaks_not_sorted_by_frame_or_with_bin_0_are_refused():
    with pytest.raises(ValueError, match="sorted by frame"):
        encode_peaks(np.array([5, 3, 9]), np.array([10, 11, 12]))
    with pytest.raises(ValueError, match="bins above 0"):
        encode_peaks(np.array([3, 5, 9]), np.array([10, 0, 12]))
    frames, bins = decode_peaks(encode_peaks(np.array([3, 5, 5, 900]), np.array([10, 11, 12, 13])))  # ties, a pause
    assert frames.tolist() == [3, 5, 5, 900] and bins.tolist() == [10, 11, 12, 13]


def test_a_removal_of_a_fifth_of_the_audio_left_compacts(tmp_path, monkeypatch):
    """`COMPACT_AFTER_CHANGE`: a removal of a fifth of the audio left compacts the segments."""
    _small_sealing(monkeypatch, ratio=0)  # merged only by compaction; each 120-posting song is a segment
    store = Store(tmp_path / "i.db", create=True)
    for n, song in enumerate(_random_songs(2, 6)):  # 10 s each
        insert(store, f"/{n}", f"sha-{n}", *song)
    assert store.postings.stats()["segments"] == 6
    store.remove([6])  # 10 s of the 50 s left: exactly a fifth
    assert store.postings.stats()["segments"] == 1


def test_an_escaped_gap_whose_digits_would_come_from_the_next_row_is_damage():
    """Rows are decoded end to end: an escape at a row's end must find its two digits in its own row, not read
    them from the row after it (which would put a posting at a wrong frame and drop that row's postings)."""
    escape_only = ESCAPE.to_bytes(3, "little")
    next_row = (1).to_bytes(3, "little") + (2).to_bytes(3, "little")  # two postings, gaps 1 and 2
    assert decode_rows([next_row])[2].tolist() == [1, 3]  # whole on its own
    with pytest.raises(IndexFileError, match="postings that do not decode"):
        decode_rows([escape_only, next_row])


def test_the_timeline_ends_each_song_before_its_end_frame():
    """A song's frames are [start, end): the frame at its end belongs to the next song, or, in a removed song's
    gap, to none."""
    from landmark.timeline import Timeline

    timeline = Timeline.of([(0, 10, 1), (20, 30, 2), (30, 35, 3)])
    inside, song_ids, frames = timeline.locate(np.array([9, 10, 19, 20, 29, 30, 34, 35]))
    assert inside.tolist() == [True, False, False, True, True, True, True, False]
    assert song_ids.tolist() == [1, 2, 2, 3, 3] and frames.tolist() == [9, 0, 9, 0, 4]


def test_a_song_past_the_end_of_the_timeline_is_refused_as_the_index_being_full(tmp_path):
    """An index whose timeline has no room for a song's frames says it is full, in one line (not that it is
    damaged), and keeps what it held."""
    from landmark.timeline import TIMELINE_END

    path = tmp_path / "i.db"
    store = Store(path, create=True)
    a = insert(store, "/a", "sha-a", np.array([5, 6], np.uint32), np.array([0, 10], np.uint32))
    store.close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE meta SET value=? WHERE key='timeline_end'", (str(TIMELINE_END - 100),))
    store = Store(path)
    with pytest.raises(IndexFileError, match=r"is full \(68,719,476,736 frames of audio\)"):
        insert(store, "/b", "sha-b", np.array([7, 8], np.uint32), np.array([0, 150], np.uint32))
    found = store.postings.lookup(np.array([5, 6, 7, 8], np.uint32))
    assert found.song_ids.tolist() == [a, a] and found.frames.tolist() == [0, 10]


def _postings_in_segments(path) -> int:
    """Postings the index's segment files hold, as their headers say."""
    total = 0
    for name in _segment_files(path):
        segment = segments.Segment(segments.folder_of(path) / name)
        total += segment.postings
        segment.close()
    return total


def _expected(songs, ids):
    return sorted((int(h), song_id, int(f)) for song_id, (hashes, frames) in zip(ids, songs)
                  for h, f in zip(hashes, frames))


def test_a_merge_drops_a_removed_songs_postings_when_the_song_before_ends_where_its_segment_begins(
        tmp_path, monkeypatch):
    """A merge keeps the postings of songs still indexed that overlap its segments. A song whose first landmark is
    at its frame 0 starts its segment exactly where the song before it (in an older segment) ends: that song is no
    part of the merge, and counted as one, the merge took the removed song's postings for live and kept them."""
    _small_sealing(monkeypatch)  # tail 100, ratio 2: each 120-posting song is sealed as it comes
    monkeypatch.setattr("landmark.library.COMPACT_AFTER_CHANGE", 2.0)  # a removal leaves the segments as they are
    songs = _random_songs(21, 6)
    for _, frames in songs:
        frames[0] = 0  # a landmark at the song's first frame
    path = tmp_path / "i.db"
    store = Store(path, create=True)
    ids = [insert(store, f"/{n}", f"sha-{n}", *songs[n]) for n in range(5)]  # segments of 480 and 120
    store.remove([ids[4]])  # the newest segment's song
    ids.append(insert(store, "/5", "sha-5", *songs[5]))  # sealed, then merged with the removed song's segment
    assert store.postings.stats()["segments"] == 2
    assert _postings_in_segments(path) == 5 * 120  # the removed song's 120 are not rewritten
    asked = np.unique(np.concatenate([hashes for hashes, _ in songs]))
    kept = [0, 1, 2, 3, 5]
    assert _postings_of(Store(path), asked) == _expected([songs[n] for n in kept], [ids[n] for n in kept])


def test_a_compaction_after_the_oldest_segments_songs_are_removed_keeps_the_newer_songs(tmp_path, monkeypatch):
    """Every song of the oldest segment removed, the compaction that follows merges it with the newer ones: the
    songs of those are still indexed, and must come through the merge."""
    path, store, songs, asked = _sealed_store(tmp_path, monkeypatch, 31, 3, 3)  # segments of 240 (1, 2) and 120 (3)
    assert store.postings.stats()["segments"] == 2
    store.remove([1, 2])  # two thirds of the audio: compacted
    assert store.postings.stats()["segments"] == 1
    assert _postings_of(Store(path), asked) == _expected([songs[2]], [3])
    assert _postings_in_segments(path) == 120


def test_every_seal_keeps_the_sealed_songs_places_that_readers_read(tmp_path, monkeypatch):
    """The sealed songs' places are kept in one blob, so that a reader does not read every song's row: a second seal
    extends the blob with the songs sealed since, the first of them starting exactly at the previous sealed end.
    One left out, the blob no longer matches the songs' rows and every reader falls back to reading them all."""
    _small_sealing(monkeypatch, one_hash_from=10_000, tail=300)  # 120 postings a song: sealed every third song
    path = tmp_path / "i.db"
    store = Store(path, create=True)
    songs = _random_songs(41, 10)
    ids = []
    for number, song in enumerate(songs):
        ids.append(insert(store, f"/{number}", f"sha-{number}", *song))
        if number < 2:
            continue
        sealed = (number + 1) // 3 * 3  # songs sealed so far
        kept = Store(path).postings._sealed_timeline()
        assert kept is not None, f"no usable kept timeline after song {number + 1}"
        assert kept[1][:, 2].tolist() == ids[:sealed]


def test_a_seal_leaves_out_the_tail_postings_of_a_song_another_engine_deleted(tmp_path, monkeypatch):
    """Another engine's removal (`neural.Index.remove` on a file both engines hold) deletes a song's row without
    the posting store. Its postings in the tail are no song's; the seal that moves the tail into a segment leaves
    them out rather than writing them to the segment."""
    _small_sealing(monkeypatch, one_hash_from=10_000, tail=300, ratio=0)  # never merged
    path = tmp_path / "i.db"
    store = Store(path, create=True)
    songs = _random_songs(51, 6)
    ids = [insert(store, f"/{n}", f"sha-{n}", *songs[n]) for n in range(4)]  # 1-3 sealed, 4 in the tail
    assert store.postings.stats()["segments"] == 1
    with store.catalogue.write():
        store.catalogue.delete_songs([ids[3]])
    ids += [insert(store, f"/{n}", f"sha-{n}", *songs[n]) for n in (4, 5)]  # the tail sealed again
    assert store.postings.stats()["segments"] == 2
    assert _postings_in_segments(path) == 5 * 120
    kept = [0, 1, 2, 4, 5]
    asked = np.unique(np.concatenate([hashes for hashes, _ in songs]))
    assert _postings_of(Store(path), asked) == _expected([songs[n] for n in kept], [ids[n] for n in kept])


def test_a_bulk_batch_into_a_long_index_counts_its_gaps_from_its_own_first_frame(tmp_path, monkeypatch):
    """A batch large enough to seal goes straight into a segment; into an index whose timeline runs past 2^20
    frames its rows count from the batch's first frame, so each posting takes a word, not an escape's three."""
    _small_sealing(monkeypatch, tail=240, ratio=0)  # never merged: the batch's segment stays its own
    rng = np.random.default_rng(61)
    path = tmp_path / "i.db"
    store = Store(path, create=True)
    for number in range(5):  # 300,000 frames a song: 1.5 M frames before the batch
        insert(store, f"/{number}", f"sha-{number}", rng.integers(0, 1 << 21, 120, dtype=np.uint32),
               np.sort(rng.integers(0, 300_000, 120)).astype(np.uint32))
    batch = _random_songs(62, 3)
    no_peaks = np.zeros(0, np.int64)
    ids = store.add_fingerprints([SongFingerprint(f"/b{n}", f"b{n}", 10.0, f"sha-b{n}", hashes, frames, no_peaks,
                                                  no_peaks) for n, (hashes, frames) in enumerate(batch)])
    newest = segments.Segment(segments.folder_of(path) / store.postings._listed()[-1][0])
    assert newest.postings == 360 and newest.base_frame >= 1 << 20
    assert newest.words.size == newest.postings  # a word a posting: no escapes
    newest.close()
    asked = np.unique(np.concatenate([hashes for hashes, _ in batch]))
    assert [p for p in _postings_of(Store(path), asked) if p[1] in ids] == _expected(batch, ids)


def test_a_budget_over_a_segment_and_a_one_hash_tail_reads_what_one_store_would(tmp_path, monkeypatch):
    """Keys 0-15 hold 5 postings each in a segment (rows of 16 hashes) and 5 more each in a tail of one hash a row;
    keys 32-47 hold 10 each in the segment. A key's priority is shared among its rows by their sizes, a segment's
    row spread over its 16 hashes: the first keys, worth 1.5 against 1.0 per key (as much per posting), are read
    first, as a store of one layout reads them, and the budget then has no room for the others' row."""
    songs = [(np.r_[np.repeat(np.arange(16), 5), np.repeat(np.arange(32, 48), 10)].astype(np.uint32),
              np.arange(240, dtype=np.uint32)),
             (np.repeat(np.arange(16), 5).astype(np.uint32), np.arange(80, dtype=np.uint32))]
    asked = np.r_[np.arange(16), np.arange(32, 48)].astype(np.uint32)
    priority = np.r_[np.full(16, 1.5), np.full(16, 1.0)]
    read = []
    for sealing in (False, True):
        if sealing:
            _small_sealing(monkeypatch, one_hash_from=200, tail=200)  # the first song sealed, the tail one a row
        store = Store(tmp_path / f"{sealing}.db", create=True)
        for number, song in enumerate(songs):
            insert(store, f"/{number}", f"sha-{number}", *song)
        assert store.postings.stats()["hashes_per_row"] == (1 if sealing else 16)
        assert store.postings.stats()["segments"] == int(sealing)
        found = store.postings.lookup(asked, priority, 240)
        read.append(sorted(zip(asked[found.key_index].tolist(), found.song_ids.tolist(), found.frames.tolist())))
    assert read[0] == read[1]
    assert {key for key, _, _ in read[1]} == set(range(16)) and len(read[1]) == 160


def test_a_lookup_lists_the_segments_again_when_one_it_listed_was_merged_away_before_it_mapped_it(
        tmp_path, monkeypatch):
    """`match` reads while `add` writes: a reader lists the segments, and before it maps the first, a writer's merge
    commits and deletes it. The reader lists them again and answers from the merged segment."""
    path, writer, songs, asked = _sealed_store(tmp_path, monkeypatch, 71, 4, 3)  # segments of 240 and 120
    reader = Store(path)
    names_before = set(_segment_files(path))
    mapping = segments.Segment.__init__
    raced = []

    def merged_away_first(self, file):
        if not raced:
            raced.append(file.name)
            insert(writer, "/3", "sha-3", *songs[3])  # sealed, and all three merged into one
            assert not file.exists()
        mapping(self, file)

    monkeypatch.setattr(segments.Segment, "__init__", merged_away_first)
    found = _postings_of(reader, asked)
    assert raced and raced[0] in names_before
    assert found == _expected(songs, [1, 2, 3, 4])


def test_a_scan_after_a_removal_names_each_postings_hash_with_its_song(tmp_path, monkeypatch):
    """A removed song's postings stay in its segment until a merge: the scan (`dedup`) drops them, and every
    posting it hands out is its own hash's, song's and frame's."""
    path, store, songs, asked = _sealed_store(tmp_path, monkeypatch, 81, 5, 5)
    monkeypatch.setattr("landmark.library.COMPACT_AFTER_CHANGE", 2.0)  # the removed song's postings stay
    store.remove([2])
    hashes, song_ids, frames = all_postings(store.postings)
    assert hashes.size == song_ids.size == frames.size
    kept = [0, 2, 3, 4]
    assert sorted(zip(hashes.tolist(), song_ids.tolist(), frames.tolist())) == _expected(
        [songs[n] for n in kept], [n + 1 for n in kept])


def test_an_interrupt_while_a_segment_is_written_leaves_no_temporary_file(tmp_path):
    """Ctrl-C while a seal or merge writes its segment: the half-written temporary file goes with it."""
    hashes, frames = _random_songs(91, 1, n_postings=2000)[0]
    order = np.argsort(hashes, kind="stable")
    hashes, frames = hashes[order].astype(np.int64), frames[order].astype(np.int64)

    def parts():
        yield hashes[hashes < 1 << 20], frames[hashes < 1 << 20]
        raise KeyboardInterrupt

    folder = tmp_path / "postings"
    with pytest.raises(KeyboardInterrupt):
        segments.write(folder, parts(), hashes.size, 0)
    assert list(folder.iterdir()) == []


def test_a_segment_this_user_may_not_read_is_said_so_not_called_damaged(tmp_path, monkeypatch):
    """A segment file of another user's, mode 600 (an index on a shared disk): the error says it cannot be read,
    and why, rather than calling a sound index damaged and telling the user to index the music again."""
    path, store, songs, asked = _sealed_store(tmp_path, monkeypatch, 101, 3, 3)
    store.close()
    reader = Store(path)

    def not_permitted(file, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(file))

    monkeypatch.setattr(segments, "open", not_permitted, raising=False)  # as a file of mode 600 of another user
    with pytest.raises(IndexFileError) as refused:
        reader.postings.lookup(asked)
    assert "cannot read" in str(refused.value) and "permission denied" in str(refused.value)
    assert "damaged" not in str(refused.value)


def test_an_index_emptied_around_a_song_without_landmarks_opens_and_takes_songs(tmp_path, monkeypatch):
    """A song without landmarks (silence, a jingle of noise) takes no frames and holds no postings. Every other
    song removed, the compaction leaves no segment: the index is sound, opens, and takes new songs."""
    _small_sealing(monkeypatch)
    path = tmp_path / "i.db"
    store = Store(path, create=True)
    empty = np.zeros(0, np.int64)
    songs = _random_songs(111, 3)
    silent = store.add_fingerprints([SongFingerprint("/quiet", "quiet", 10.0, "sha-quiet", empty, empty, empty,
                                                     empty)])[0]
    ids = [insert(store, f"/{n}", f"sha-{n}", *songs[n]) for n in range(2)]
    assert store.postings.stats()["segments"] >= 1
    store.remove(ids)
    assert store.postings.stats()["segments"] == 0
    store.close()
    reopened = Store(path)
    assert [song.id for song in reopened.catalogue.songs()] == [silent]
    asked = np.unique(np.concatenate([hashes for hashes, _ in songs]))
    assert _postings_of(reopened, asked) == []
    added = insert(reopened, "/2", "sha-2", *songs[2])
    assert _postings_of(Store(path), asked) == _expected([songs[2]], [added])


def test_a_file_older_than_the_kept_timeline_that_gets_one_is_marked_the_current_version(tmp_path, monkeypatch):
    """A file of schema 6 has segments but no kept timeline of its sealed songs; a compaction writes one, and the
    file is then of this lmprint's version, which an lmprint of schema 6 refuses rather than leaves stale."""
    _small_sealing(monkeypatch)
    path = tmp_path / "i.db"
    store = Store(path, create=True)
    insert(store, "/0", "sha-0", *_random_songs(121, 1)[0])  # sealed at once: one segment, an empty tail
    assert store.postings.stats()["segments"] == 1
    store.close()
    with sqlite3.connect(path) as conn:  # as schema 6 left it
        conn.execute("DELETE FROM sealed_timeline")
        conn.execute("DELETE FROM meta WHERE key='tail_base_frame'")
        conn.execute("PRAGMA user_version=6")
    with Store(path) as store:
        assert store.catalogue.schema_version == 6
        store.postings.compact()
        assert store.postings._sealed_timeline() is not None
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
