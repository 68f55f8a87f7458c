"""Short-time Fourier transform to a log-magnitude spectrogram, in dB, frames × bins."""

from __future__ import annotations

import numpy as np

from .settings import FingerprintSettings

_DB_FLOOR = 1e-6
"""Magnitudes are floored here (their power at its square) before the log, -120 dB, so digital silence stays
finite."""

_DB_PER_NEPER_OF_POWER = np.float32(10.0 / np.log(10.0))
"""dB = 10 · log10(power) = this · ln(power): numpy's natural log of float32 is vectorised, its log10 is not
(4× faster on a clip's spectrogram)."""


def frame_count(n_samples: int, settings: FingerprintSettings) -> int:
    """Number of whole frames in a signal of `n_samples` samples."""
    if n_samples < settings.fft_size:
        return 0
    return 1 + (n_samples - settings.fft_size) // settings.hop_size


def log_spectrogram(signal: np.ndarray, settings: FingerprintSettings, first_frame: int = 0, n_frames: int | None = None
                    ) -> np.ndarray:
    """dB magnitude of frames `first_frame` .. `first_frame + n_frames` of `signal`, shape (frames, fft_size//2+1).

    Frame i covers samples [i * hop_size, i * hop_size + fft_size). Asking for a range lets long files be
    processed in blocks with bounded memory.
    """
    total = frame_count(signal.size, settings)
    if n_frames is None:
        n_frames = total - first_frame
    n_frames = max(0, min(n_frames, total - first_frame))
    if n_frames == 0:
        return np.zeros((0, settings.fft_size // 2 + 1), np.float32)
    start = first_frame * settings.hop_size
    stop = start + (n_frames - 1) * settings.hop_size + settings.fft_size
    frames = np.lib.stride_tricks.sliding_window_view(signal[start:stop], settings.fft_size)[::settings.hop_size]
    spectrum = np.fft.rfft(frames * _window(settings.fft_size), axis=1)  # complex64 from float32 samples (numpy 2)
    power = np.square(spectrum.real, dtype=np.float32)
    power += np.square(spectrum.imag, dtype=np.float32)
    np.maximum(power, np.float32(_DB_FLOOR ** 2), out=power)
    np.log(power, out=power)
    power *= _DB_PER_NEPER_OF_POWER
    return power


_WINDOWS: dict[int, np.ndarray] = {}


def _window(size: int) -> np.ndarray:
    if size not in _WINDOWS:
        _WINDOWS[size] = np.hanning(size + 2)[1:-1].astype(np.float32)
    return _WINDOWS[size]
