from collections import Counter

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from landmark.hashes import HASH_BITS, pack, pair_peaks, unpack, widen_delta_time
from landmark.settings import FingerprintSettings

CONFIG = FingerprintSettings()


@given(st.integers(0, 255), st.integers(-63, 63), st.integers(0, 63))
def test_pack_then_unpack_gives_the_fields_back(anchor_bin, delta_bins, delta_frames):
    packed = pack(anchor_bin, delta_bins, delta_frames)
    assert 0 <= packed < (1 << HASH_BITS)
    fields = unpack(np.array([packed]))
    assert [int(f[0]) for f in fields] == [anchor_bin, delta_bins, delta_frames]


@given(st.lists(st.tuples(st.integers(0, 300), st.integers(10, 240)), min_size=2, max_size=60, unique=True))
def test_pairs_respect_the_target_zone_and_the_fanout(peaks):
    peaks = sorted(peaks)
    frames = np.array([p[0] for p in peaks])
    bins = np.array([p[1] for p in peaks])
    hashes, anchor_frames = pair_peaks(frames, bins, CONFIG, CONFIG.index)
    anchor_bin, delta_bins, delta_frames = unpack(hashes)
    assert np.all((delta_frames >= CONFIG.min_delta_frames) & (delta_frames <= CONFIG.max_delta_frames))
    assert np.all(np.abs(delta_bins) <= CONFIG.max_delta_bins)
    # every pair is made of two real peaks
    peak_set = set(peaks)
    for a, f, df, dt in zip(anchor_frames.tolist(), anchor_bin.tolist(), delta_bins.tolist(), delta_frames.tolist()):
        assert (a, f) in peak_set and (a + dt, f + df) in peak_set
    # and each anchor pairs with the first `fanout` peaks of its zone, in the peaks' order: no more, no fewer
    expected = Counter()
    for i, (t1, f1) in enumerate(peaks):
        in_zone = [(t2, f2) for t2, f2 in peaks[i + 1:] if CONFIG.min_delta_frames <= t2 - t1 <= CONFIG.max_delta_frames
                   and abs(f2 - f1) <= CONFIG.max_delta_bins]
        expected.update((t1, f1, t2, f2) for t2, f2 in in_zone[:CONFIG.index.fanout])
    made = zip(anchor_frames.tolist(), anchor_bin.tolist(), (anchor_frames + delta_frames).tolist(),
               (anchor_bin + delta_bins).tolist())
    assert Counter(made) == expected


def test_widening_adds_neighbouring_delta_times_at_the_same_anchor():
    """Each hash is asked again at Δt ± 1..tolerance with its anchor bin and Δf as they are; a Δt that would leave
    its 6 bits (0, or 64 and more, which would carry into Δf) is not asked."""
    hashes = np.array([pack(100, 5, 10), pack(100, 5, 63), pack(90, 3, 1)], np.uint32)
    wide, sources, shifts = widen_delta_time(hashes, 2)
    assert sorted(zip(sources.tolist(), *(field.tolist() for field in unpack(wide)), shifts.tolist())) == [
        (0, 100, 5, 8, 2), (0, 100, 5, 9, 1), (0, 100, 5, 10, 0), (0, 100, 5, 11, 1), (0, 100, 5, 12, 2),
        (1, 100, 5, 61, 2), (1, 100, 5, 62, 1), (1, 100, 5, 63, 0),
        (2, 90, 3, 1, 0), (2, 90, 3, 2, 1), (2, 90, 3, 3, 2)]


def test_pairing_in_anchor_blocks_equals_pairing_all_at_once(monkeypatch):
    """Pairs near a block boundary still reach targets in the next block."""
    import landmark.hashes as hashing

    rng = np.random.default_rng(3)
    frames = np.sort(rng.integers(0, 3000, 900))
    bins = rng.integers(10, 240, 900)
    config = FingerprintSettings()
    whole = hashing.pair_peaks(frames, bins, config, config.index)
    monkeypatch.setattr(hashing, "ANCHOR_BLOCK", 7)
    blocked = hashing.pair_peaks(frames, bins, config, config.index)
    assert whole[0].size > 1000
    assert np.array_equal(whole[0], blocked[0]) and np.array_equal(whole[1], blocked[1])


def _pairs(peaks):
    frames = np.array([p[0] for p in peaks])
    bins = np.array([p[1] for p in peaks])
    hashes, anchor_frames = pair_peaks(frames, bins, CONFIG, CONFIG.index)
    anchor_bin, delta_bins, delta_frames = unpack(hashes)
    return sorted(zip(anchor_frames.tolist(), anchor_bin.tolist(), (anchor_frames + delta_frames).tolist(),
                      (anchor_bin + delta_bins).tolist()))


def test_the_target_zone_holds_its_edges_in_time_and_frequency():
    """Targets exactly min_delta_frames and max_delta_frames after the anchor, and exactly max_delta_bins above or
    below it, are in the zone; one frame or one bin further is not."""
    lo, hi, reach = CONFIG.min_delta_frames, CONFIG.max_delta_frames, CONFIG.max_delta_bins
    # in time: the anchor at frame 0 pairs with the targets at lo and hi only (fanout 2), not at lo - 1 or hi + 1
    assert [pair for pair in _pairs([(0, 100), (lo - 1, 110), (lo, 120), (hi, 130), (hi + 1, 140)])
            if pair[0] == 0] == [(0, 100, lo, 120), (0, 100, hi, 130)]
    assert _pairs([(0, 100), (hi, 130)]) == [(0, 100, hi, 130)]
    assert _pairs([(0, 100), (hi + 1, 130)]) == [] and _pairs([(0, 100), (lo - 1, 130)]) == []
    # in frequency: targets at ± reach and ± (reach + 1) bins, each in a frame of its own
    for target_bin, paired in ((100 + reach, True), (100 - reach, True), (100 + reach + 1, False),
                               (100 - reach - 1, False)):
        assert _pairs([(0, 100), (5, target_bin)]) == ([(0, 100, 5, target_bin)] if paired else [])
