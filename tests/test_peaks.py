import numpy as np
import pytest

from landmark import fingerprint as fingerprint_module
from landmark.fingerprint import extract_peaks
from landmark.peaks import band_edges_bins, candidate_peaks, prominence_db
from landmark.settings import Density, FingerprintSettings, MatchSettings
from landmark.spectrogram import log_spectrogram
from tests.conftest import rendered

CONFIG = FingerprintSettings()
BINS = CONFIG.fft_size // 2 + 1


def test_peaks_of_two_tones_sit_at_their_frequencies():
    rate = 8000
    t = np.arange(rate * 3) / rate
    signal = (np.sin(2 * np.pi * 500 * t) + 0.5 * np.sin(2 * np.pi * 2000 * t)) * (1.5 + np.sin(2 * np.pi * 3 * t))  # never silent
    signal = signal.astype(np.float32) + 0.001 * np.random.default_rng(0).standard_normal(t.size).astype(np.float32)
    frames, bins = extract_peaks(signal, CONFIG, CONFIG.index)
    assert frames.size > 0
    found = set(np.round(bins * rate / CONFIG.fft_size / 100).astype(int).tolist())
    assert found == {5, 20}, found  # at 500 Hz and at 2000 Hz (in 100 Hz units), and nowhere else


def test_density_is_bounded_per_second_and_spread_across_bands():
    signal = rendered(3, 30.0, 8000)
    frames, bins = extract_peaks(signal, CONFIG, CONFIG.index)
    from landmark.peaks import band_edges_bins

    # each block of `peak_block_s` keeps at most its share of the budget in each band, and music fills some
    block_frames = round(CONFIG.peak_block_s * CONFIG.sample_rate_hz / CONFIG.hop_size)
    band = np.searchsorted(band_edges_bins(CONFIG), bins, side="right") - 1
    per_block_and_band = np.bincount(frames // block_frames * CONFIG.frequency_bands + band)
    assert per_block_and_band.max() == round(CONFIG.index.peaks_per_s * CONFIG.peak_block_s / CONFIG.frequency_bands)
    assert per_block_and_band.max() == 4  # the index's 18 a second over 4 bands, in whole peaks: 16 at most (settings)
    assert frames.size / 30.0 > 0.5 * CONFIG.index.peaks_per_s  # music yields close to the budget
    hz = bins * 8000 / CONFIG.fft_size
    assert (hz < 600).any() and (hz > 1200).any()


def test_query_density_is_higher_than_index_density():
    signal = rendered(4, 20.0, 8000)
    index_frames, _ = extract_peaks(signal, CONFIG, CONFIG.index)
    query_frames, _ = extract_peaks(signal, CONFIG, MatchSettings().query)
    assert query_frames.size > 2 * index_frames.size


@pytest.mark.parametrize(("seed", "tight", "block_s"), [(5, False, 7.0), (2, False, 2.0), (1, True, 2.0),
                                                      (1, True, 7.0)])
def test_block_processing_gives_the_same_peaks_as_one_block(monkeypatch, seed, tight, block_s):
    """Each block reads its neighbours' frames as far as a peak's background and rank reach: peaks near a block's
    edge rank as in one pass (a tight budget, one peak a block and band, shows a rank that differs)."""
    density = Density(4.0, 2, 5, 5) if tight else CONFIG.index
    signal = rendered(seed, 40.0, 8000)
    whole = extract_peaks(signal, CONFIG, density)
    monkeypatch.setattr(fingerprint_module, "BLOCK_S", block_s)
    blocked = extract_peaks(signal, CONFIG, density)
    np.testing.assert_array_equal(whole[0], blocked[0])
    np.testing.assert_array_equal(whole[1], blocked[1])


def test_silence_has_no_peaks():
    frames, _ = extract_peaks(np.zeros(8000 * 5, np.float32), CONFIG, CONFIG.index)
    assert frames.size == 0


def test_running_max_equals_a_brute_force_window_maximum():
    from landmark.peaks import running_max

    values = np.random.default_rng(5).standard_normal((40, 23)).astype(np.float32)
    for axis, radius in ((0, 3), (1, 6), (0, 50)):
        expected = np.empty_like(values)
        for t in range(values.shape[0]):
            for f in range(values.shape[1]):
                lo_t, hi_t = (max(0, t - radius), t + radius + 1) if axis == 0 else (t, t + 1)
                lo_f, hi_f = (max(0, f - radius), f + radius + 1) if axis == 1 else (f, f + 1)
                expected[t, f] = values[lo_t:hi_t, lo_f:hi_f].max()
        assert np.array_equal(running_max(values, radius, axis), expected)


def test_a_held_partial_outranks_a_brief_peak_of_equal_height():
    """`peak_rank_frames`: a peak's rank also counts how long its bin stays prominent, so a held note wins the
    budget over a click or a syllable that stands as high for a moment; by prominence alone (1 frame) the brief
    one ranks higher, its background being quieter."""
    import dataclasses

    from landmark.peaks import select_peaks

    one_a_band = Density(4.0, 2, 5, 5)  # 4 a second over 4 bands: one peak a block and band
    spectrogram_db = np.zeros((80, CONFIG.fft_size // 2 + 1), np.float32)
    spectrogram_db[20:60, 60] = 30.0  # held for 40 frames
    spectrogram_db[40, 100] = 30.0  # one frame
    for rank_frames, held_wins in ((CONFIG.peak_rank_frames, True), (1, False)):  # 28 against 16.6; 28 against 29.9
        config = dataclasses.replace(CONFIG, peak_rank_frames=rank_frames)
        frames, bins, rank = candidate_peaks(spectrogram_db, prominence_db(spectrogram_db, config), config,
                                             config.index)
        held = rank[(bins == 60) & (frames == 40)]
        brief = rank[(bins == 100) & (frames == 40)]
        assert held.size == 1 and brief.size == 1
        assert (held[0] > brief[0] + 3.0) == held_wins
        at_40 = frames == 40  # both in one block and band: the budget keeps the better ranked
        _, kept_bins = select_peaks(frames[at_40], bins[at_40], rank[at_40], config, one_a_band)
        assert kept_bins.tolist() == [60 if held_wins else 100]


def _candidates(spectrogram_db, density=CONFIG.index, settings=CONFIG):
    frames, bins, _ = candidate_peaks(spectrogram_db, prominence_db(spectrogram_db, settings), settings, density)
    return set(zip(frames.tolist(), bins.tolist()))


def test_the_local_maximum_test_reaches_its_own_width_in_frames_and_in_bins():
    """A peak must be the largest within ± neighbourhood_frames frames and ± neighbourhood_bins bins, each along
    its own axis: with a reach of 1 bin and 6 frames, two maxima 3 bins apart in one frame both count, and of two
    4 frames apart in one bin only the higher."""
    spectrogram_db = np.full((80, BINS), -100.0, np.float32)
    spectrogram_db[40, 60], spectrogram_db[40, 63] = 30.0, 28.0  # 3 bins apart
    spectrogram_db[40, 150], spectrogram_db[44, 150] = 30.0, 28.0  # 4 frames apart
    found = _candidates(spectrogram_db, Density(18.0, 2, 1, 6))
    assert found == {(40, 60), (40, 63), (40, 150)}
    found = _candidates(spectrogram_db, Density(18.0, 2, 6, 1))  # the other way round
    assert found == {(40, 60), (40, 150), (44, 150)}


def test_a_peak_within_the_dynamic_range_of_its_frames_loudest_is_kept_and_one_below_it_is_not():
    """`dynamic_range_db` is measured from the loudest bin of the peak's own frame: a peak 5 dB inside it counts,
    one 5 dB outside it does not, whatever their prominence."""
    floor = CONFIG.dynamic_range_db
    spectrogram_db = np.full((80, BINS), -200.0, np.float32)
    spectrogram_db[40, 60] = 30.0
    spectrogram_db[40, 120] = 30.0 - (floor - 5)
    spectrogram_db[40, 200] = 30.0 - (floor + 5)
    spectrogram_db[60, 200] = 30.0 - (floor + 5)  # alone in its frame: its frame's loudest
    assert _candidates(spectrogram_db) == {(40, 60), (40, 120), (60, 200)}


def test_peaks_at_the_band_edges_are_kept_inside_and_dropped_outside():
    """Peaks lie in [min_freq_hz, max_freq_hz) as binned: the first band's lowest bin and the last band's highest
    count, the bins just outside do not."""
    edges = band_edges_bins(CONFIG)
    spectrogram_db = np.full((120, BINS), -100.0, np.float32)
    placed = {20: edges[0] - 1, 40: edges[0], 60: edges[-1] - 1, 80: edges[-1]}
    for frame, bin_ in placed.items():
        spectrogram_db[frame, bin_] = 30.0
    assert _candidates(spectrogram_db) == {(40, int(edges[0])), (60, int(edges[-1]) - 1)}



def test_a_peaks_rank_reads_as_many_frames_after_it_as_before_it():
    """`peak_rank_frames` is a window centred on the peak: played backwards, a song's spectrogram gives the same
    peaks with the same ranks."""
    spectrogram_db = log_spectrogram(rendered(6, 8.0, 8000), CONFIG)
    n = spectrogram_db.shape[0]
    frames, bins, rank = candidate_peaks(spectrogram_db, prominence_db(spectrogram_db, CONFIG), CONFIG,
                                         CONFIG.index)
    reversed_db = np.ascontiguousarray(spectrogram_db[::-1])
    r_frames, r_bins, r_rank = candidate_peaks(reversed_db, prominence_db(reversed_db, CONFIG), CONFIG,
                                               CONFIG.index)
    forward = dict(zip(zip(frames.tolist(), bins.tolist()), rank.tolist()))
    backward = dict(zip(zip((n - 1 - r_frames).tolist(), r_bins.tolist()), r_rank.tolist()))
    shared = forward.keys() & backward.keys()
    assert len(shared) > 0.95 * max(len(forward), len(backward)) and len(shared) > 200
    worst = max(abs(forward[p] - backward[p]) for p in shared)
    assert worst < 1e-3, worst


def test_a_lone_peak_counts_where_its_bin_lies_within_half_a_bin_of_the_frequency_range():
    """Bands span [min_freq_hz, max_freq_hz) in Hz, binned to the nearest bin: a lone peak counts where its bin's
    frequency is within half a bin of that range, and not where it lies further out."""
    bin_hz = CONFIG.sample_rate_hz / CONFIG.fft_size
    near = sorted({b for hz in (CONFIG.min_freq_hz, CONFIG.max_freq_hz)
                   for b in range(int(hz / bin_hz) - 3, int(hz / bin_hz) + 4)})
    spacing = 20
    spectrogram_db = np.full((spacing * (len(near) + 2), BINS), -100.0, np.float32)
    for i, bin_ in enumerate(near):
        spectrogram_db[spacing * (i + 1), bin_] = 30.0
    frames, bins, _ = candidate_peaks(spectrogram_db, prominence_db(spectrogram_db, CONFIG), CONFIG,
                                      CONFIG.index)
    expected = {b for b in near
                if CONFIG.min_freq_hz - bin_hz / 2 <= b * bin_hz < CONFIG.max_freq_hz - bin_hz / 2}
    assert set(bins.tolist()) == expected


def test_a_peak_exactly_the_dynamic_range_below_its_frames_loudest_is_kept():
    """`dynamic_range_db` is a reach the peak may use in full: at exactly that many dB below its frame's loudest
    bin it counts."""
    spectrogram_db = np.full((80, BINS), -200.0, np.float32)
    spectrogram_db[40, 60] = 30.0
    spectrogram_db[40, 150] = 30.0 - CONFIG.dynamic_range_db
    frames, bins, _ = candidate_peaks(spectrogram_db, prominence_db(spectrogram_db, CONFIG), CONFIG,
                                      CONFIG.index)
    assert set(zip(frames.tolist(), bins.tolist())) == {(40, 60), (40, 150)}
