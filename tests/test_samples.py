"""Samples as the engines take them (`lmprint.samples`): a stream's chunks at another rate, resampled as one."""

import numpy as np
import pytest
import soxr

from lmprint.errors import AudioError
from lmprint.samples import chunks_at_engine_rate


@pytest.mark.parametrize("chunk_size", [1, 7, 441, 4410, 100_000])
def test_a_streams_chunks_are_resampled_as_one_signal_whatever_their_sizes(chunk_size):
    """Chunk by chunk, the same samples as the whole signal resampled at once: no chunk's edges ring, and the
    resampler's last samples are given at the end."""
    signal = np.random.default_rng(0).normal(0, 0.1, 44_100).astype(np.float32)
    chunks = [signal[i:i + chunk_size] for i in range(0, signal.size, chunk_size)]
    streamed = np.concatenate(list(chunks_at_engine_rate(chunks, 44_100, 8000)))
    whole = soxr.resample(signal, 44_100, 8000, quality="HQ")
    assert streamed.dtype == np.float32 and streamed.size == whole.size == 8000
    assert np.max(np.abs(streamed - whole)) < 1e-5


def test_chunks_at_the_engines_rate_pass_as_samples_do():
    pcm = (np.arange(-5, 5) * 3000).astype(np.int16)
    assert np.allclose(next(chunks_at_engine_rate([pcm], None, 8000)), pcm / 32767)
    assert np.allclose(next(chunks_at_engine_rate([pcm], 8000, 8000)), pcm / 32767)
    with pytest.raises(AudioError, match="samples of shape"):
        next(chunks_at_engine_rate([np.zeros((10, 2))], 44_100, 8000))
    with pytest.raises(AudioError, match="a sample rate of 3000 Hz"):
        next(chunks_at_engine_rate([pcm], 3000, 8000))
    with pytest.raises(AudioError, match="a sample rate of 1e\\+06 Hz"):  # above 768,000 Hz
        next(chunks_at_engine_rate([pcm], 1_000_000, 8000))
