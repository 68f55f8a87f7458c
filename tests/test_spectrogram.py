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


def test_a_frame_range_equals_the_same_rows_of_the_whole():
    signal = np.random.default_rng(0).standard_normal(8000 * 3).astype(np.float32)
    whole = log_spectrogram(signal, CONFIG)
    part = log_spectrogram(signal, CONFIG, first_frame=40, n_frames=25)
    np.testing.assert_allclose(part, whole[40:65], atol=1e-3)


def test_signals_shorter_than_one_frame_give_no_frames():
    assert log_spectrogram(np.zeros(100, np.float32), CONFIG).shape[0] == 0
