import numpy as np

from landmark.settings import FingerprintSettings
from landmark.spectrogram import frame_count, log_spectrogram

CONFIG = FingerprintSettings()


def tone(freq_hz, seconds=1.0, rate=8000):
    return np.sin(2 * np.pi * freq_hz * np.arange(int(seconds * rate)) / rate).astype(np.float32)


def test_a_pure_tone_peaks_in_its_bin_in_every_frame():
    spectrogram_db = log_spectrogram(tone(1000.0), CONFIG)
    assert spectrogram_db.shape == (frame_count(8000, CONFIG), CONFIG.fft_size // 2 + 1)
    assert np.all(np.argmax(spectrogram_db, axis=1) == round(1000.0 / (8000 / 512)))
    assert spectrogram_db.shape[0] == 59  # 1 + (8000 − 512) // 128: every whole frame, no more


def test_a_tone_between_two_bins_leaks_little_into_bins_further_off():
    """Frames are windowed (Hann): a tone half a bin off 1 kHz reads some 80 dB lower 16 bins away, where an
    unwindowed frame's edges leak it at about 30 dB lower."""
    spectrogram_db = log_spectrogram(tone(1000.0 + 8000 / 512 / 2), CONFIG)
    assert np.all(spectrogram_db[:, 64] - spectrogram_db[:, 80] > 60)


def test_a_frame_range_equals_the_same_rows_of_the_whole():
    signal = np.random.default_rng(0).standard_normal(8000 * 3).astype(np.float32)
    whole = log_spectrogram(signal, CONFIG)
    part = log_spectrogram(signal, CONFIG, first_frame=40, n_frames=25)
    np.testing.assert_allclose(part, whole[40:65], atol=1e-3)


def test_signals_shorter_than_one_frame_give_no_frames():
    assert log_spectrogram(np.zeros(100, np.float32), CONFIG).shape[0] == 0
    assert [frame_count(n, CONFIG) for n in (511, 512, 639, 640)] == [0, 1, 1, 2]  # fft 512, hop 128
