"""What the landmark engine asks of any posting store (`landmark.store.PostingStore`), held against each
implementation: the embedded one, and one in memory that stands for a backend kept elsewhere (a distributed
key-value store). A new backend joins the `STORES` below and must pass the same tests."""

import numpy as np
import pytest

from landmark import Index
from landmark.batch import SongFingerprint
from landmark.store import SongPostings, all_postings
from tests.conftest import SYNTH_RATE, rendered
from tests.memory_store import MemoryPostingStore
from tests.test_store import _random_songs, insert

STORES = {"embedded": None, "in memory": MemoryPostingStore}


@pytest.fixture(params=list(STORES))
def index(request, tmp_path):
    with Index(tmp_path / "index.db", create=True, postings=STORES[request.param]) as opened:
        yield opened


def postings_of(index, keys):
    """(key, song id, frame) of every posting of `keys`, sorted."""
    keys = np.unique(np.asarray(keys, np.uint32))
    found = index.postings.lookup(keys)
    return sorted(zip(keys[found.key_index].tolist(), found.song_ids.tolist(), found.frames.tolist()))


def test_a_lookup_returns_every_posting_of_the_keys_asked_and_no_other(index):
    songs = _random_songs(1, 4)
    ids = [insert(index, f"/{n}", f"sha-{n}", hashes, frames) for n, (hashes, frames) in enumerate(songs)]
    stored = sorted((h, song_id, f) for song_id, (hashes, frames) in zip(ids, songs)
                    for h, f in zip(hashes.tolist(), frames.tolist()))
    asked = np.unique(np.concatenate([songs[0][0], songs[2][0][:10]]))
    assert postings_of(index, asked) == [posting for posting in stored if posting[0] in set(asked.tolist())]
    assert postings_of(index, np.unique(np.concatenate([h for h, _ in songs]))) == stored
    held_by_none = np.setdiff1d(np.arange(5000, dtype=np.uint32), np.concatenate([h for h, _ in songs]))[:20]
    assert held_by_none.size == 20 and postings_of(index, held_by_none) == []
    with pytest.raises(ValueError):
        index.postings.lookup(np.array([5, 3], np.uint32))
    assert index.postings.song_count() == 4


def test_a_batch_of_songs_is_stored_as_one_song_at_a_time_would_be(index):
    """A bulk load (`add_fingerprints`: one transaction, one `add` of several songs), a song without hashes among
    them."""
    songs = _random_songs(4, 5)
    none = np.zeros(0, np.int64)
    batch = [SongFingerprint(f"/{n}", str(n), 10.0, f"sha-{n}", hashes, frames, none, none)
             for n, (hashes, frames) in enumerate(songs)]
    batch.insert(2, SongFingerprint("/quiet", "quiet", 10.0, "sha-quiet", np.zeros(0, np.uint32),
                                    np.zeros(0, np.uint32), none, none))
    ids = index.add_fingerprints(batch)
    assert len(set(ids)) == 6 and None not in ids
    every_key = np.unique(np.concatenate([h for h, _ in songs]))
    stored = sorted((h, song_id, f) for song_id, (hashes, frames) in zip(ids[:2] + ids[3:], songs)
                    for h, f in zip(hashes.tolist(), frames.tolist()))
    assert postings_of(index, every_key) == stored
    assert index.postings.song_count() == 5  # the song without hashes has no postings


def test_a_transaction_rolled_back_leaves_no_postings_for_the_next_song_to_inherit(index):
    """The id of a song whose transaction rolled back is given again: its postings must be gone, or a clip of it
    would name the next song."""
    first, second = _random_songs(5, 2)
    with pytest.raises(RuntimeError), index.catalogue.write():
        song_id = index.catalogue.add_song("/gone", "gone", 10.0, "sha-gone")
        index.postings.add([SongPostings(song_id, *first)])
        raise RuntimeError("the transaction fails after its postings were written")
    next_id = insert(index, "/next", "sha-next", *second)
    assert next_id == song_id
    assert postings_of(index, np.unique(first[0])) == sorted(
        (h, next_id, f) for h, f in zip(second[0].tolist(), second[1].tolist()) if h in set(first[0].tolist()))
    assert index.postings.song_count() == 1


def test_a_budget_reads_whole_keys_by_priority_per_posting(index):
    """Keys 3, 20 and 40 hold 40, 10 and 300 postings, each in a row of its own (16 keys a row in a small embedded
    store: every key of the rows is asked, so a row and its key are read alike)."""
    hashes = np.r_[np.full(40, 3), np.full(10, 20), np.full(300, 40)].astype(np.uint32)
    insert(index, "/a", "sha-a", hashes, np.arange(hashes.size, dtype=np.uint32))
    every_key = np.arange(48, dtype=np.uint32)

    def read(priority_of_key, budget):
        priority = np.repeat(np.asarray(priority_of_key, float), 16) / 16
        found = index.postings.lookup(every_key, priority, budget)
        return sorted(set((every_key[found.key_index] // 16).tolist()))

    assert read([1.0, 1.0, 1.0], 60) == [0, 1]  # per posting: 1/40, 1/10, 1/300
    assert read([1.0, 0.01, 1.0], 45) == [0]  # key 3 first; then neither 40 nor 20 fits
    assert read([1.0, 0.01, 1.0], 50) == [0, 1]
    assert read([0.1, 1.0, 50.0], 60) == [0, 1]  # key 40 is worth most per posting, but 300 do not fit in 60
    assert read([0.1, 1.0, 50.0], 320) == [1, 2]
    assert read([1.0, 0.01, 10.0], 310) == [1, 2]  # key 40 first; key 3 no longer fits, key 20, worth least, does
    assert read([1.0, 1.0, 1.0], 350) == [0, 1, 2]  # everything fits
    assert read([1.0, 1.0, 1.0], 0) == [0, 1, 2]  # no budget


def test_a_removed_songs_postings_are_gone_and_the_others_stay(index):
    songs = _random_songs(2, 3)
    ids = [insert(index, f"/{n}", f"sha-{n}", hashes, frames) for n, (hashes, frames) in enumerate(songs)]
    every_key = np.unique(np.concatenate([h for h, _ in songs]))
    before = postings_of(index, every_key)
    bytes_before = index.postings.stats()["postings_bytes"]
    assert index.remove([ids[1]]) == [ids[1]]
    assert postings_of(index, every_key) == [posting for posting in before if posting[1] != ids[1]]
    assert index.postings.song_count() == 2
    # gone from what is stored, not only from what a lookup hands out (one song in three, of as many postings)
    assert index.postings.stats()["postings_bytes"] == pytest.approx(bytes_before * 2 / 3, rel=0.1)
    index.postings.compact()
    assert postings_of(index, every_key) == [posting for posting in before if posting[1] != ids[1]]


def test_a_scan_yields_every_posting_in_key_order_without_splitting_a_key(index, monkeypatch):
    """Every store's scan comes in several batches here (the in-memory store's a few hundred keys each), so that
    their order is checked."""
    from tests import memory_store

    monkeypatch.setattr(memory_store, "KEYS_PER_SCAN", 256)
    assert [column.size for column in all_postings(index.postings)] == [0, 0, 0]  # an empty store: nothing
    songs = _random_songs(3, 5, n_postings=400)
    ids = [insert(index, f"/{n}", f"sha-{n}", hashes, frames) for n, (hashes, frames) in enumerate(songs)]
    batches = list(index.postings.scan())
    assert len(batches) > 1
    scanned = sorted((h, s, f) for hashes, song_ids, frames in batches
                     for h, s, f in zip(hashes.tolist(), song_ids.tolist(), frames.tolist()))
    assert scanned == sorted((h, song_id, f) for song_id, (hashes, frames) in zip(ids, songs)
                             for h, f in zip(hashes.tolist(), frames.tolist()))
    ranges = [(int(hashes.min()), int(hashes.max())) for hashes, _, _ in batches]
    assert all(last < first for (_, last), (first, _) in zip(ranges, ranges[1:]))  # in order, no key in two
    assert index.postings.stats()["postings_bytes"] > 0
    assert sorted(zip(*(column.tolist() for column in all_postings(index.postings)))) == scanned


def test_songs_are_named_and_removed_through_either_store(index, tmp_path):
    """The engine end to end: add, match a noisy clip, `dedup`'s scan, remove, and the file's stats."""
    from bench.audio_io import write

    paths = []
    for seed in range(3):
        path = tmp_path / f"song {seed}.wav"
        write(path, rendered(60 + seed, 30.0, SYNTH_RATE), SYNTH_RATE)
        paths.append(str(path))
    excerpt = tmp_path / "an excerpt of song 0.wav"
    write(excerpt, rendered(60, 30.0, SYNTH_RATE)[5 * SYNTH_RATE:20 * SYNTH_RATE], SYNTH_RATE)
    assert index.add([*paths, str(excerpt)]).added == 4
    shared = index.overlaps()
    assert [{overlap.song_a, overlap.song_b} for overlap in shared] == [
        {song.id for song in index.catalogue.songs() if song.path in (paths[0], str(excerpt))}]
    rate = index.sample_rate_hz
    clip = rendered(61, 30.0, rate)[10 * rate:15 * rate]
    clip = clip + 0.05 * np.random.default_rng(0).standard_normal(clip.size).astype(np.float32)
    found = index.match_samples(clip)
    assert found is not None and found.song.path == paths[1] and found.offset_s == pytest.approx(10.0, abs=0.1)
    assert index.stats()["songs"] == 4 and index.stats()["file_bytes"] > 0
    index.remove([found.song.id])
    assert index.match_samples(clip) is None


def test_a_removal_rolled_back_leaves_the_songs_postings_in_place(index):
    """A removal inside a transaction that rolls back removes nothing: the song's postings still answer, and it
    still counts."""
    songs = _random_songs(6, 3)
    ids = [insert(index, f"/{n}", f"sha-{n}", hashes, frames) for n, (hashes, frames) in enumerate(songs)]
    every_key = np.unique(np.concatenate([h for h, _ in songs]))
    before = postings_of(index, every_key)
    with pytest.raises(RuntimeError), index.catalogue.write():
        index.postings.remove([ids[1]])
        raise RuntimeError("the transaction fails after the removal")
    assert postings_of(index, every_key) == before
    assert index.postings.song_count() == 3


def test_a_lookup_that_asks_a_key_twice_is_refused_by_every_store(index):
    """Keys asked must be ascending and distinct, in every store."""
    insert(index, "/a", "sha-a", np.array([16, 17, 33], np.uint32), np.array([1, 2, 3], np.uint32))
    with pytest.raises(ValueError):
        index.postings.lookup(np.array([17, 17], np.uint32))
