"""Samples as the engines take them: finite, and bounded. A damaged file, a float stream or a live listener can
hand over NaN, infinities or samples far past full scale, and a resampler's filter spreads a NaN over its length
or overflows to NaN. Every decoder (a file's, standard input's, the server's live stream) passes its samples
through here before resampling, and samples handed to an engine's `match_samples` pass `mono_samples`."""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Iterator

import numpy as np

from .errors import AudioError

MIN_SAMPLE_RATE_HZ = 4000
"""A sample rate below this is a damaged header, not audio (telephony's is 8 kHz, the lowest in use 5.5 kHz):
resampled to the engine's rate, each second of a file saying 1 Hz would become hours of audio."""
MAX_SAMPLE_RATE_HZ = 768_000
"""The highest sample rate samples are taken at (the highest in use: 768 kHz)."""

SAMPLE_BOUND = 1e3
"""Samples are kept within ± this many full scales before resampling: far past it the resampler's filter overflows
to NaN, and a float stream that loud is noise anyway."""


def finite_samples(chunk: np.ndarray) -> np.ndarray:
    """The chunk with NaN and infinite samples (a damaged or float stream) set to 0, and the rest within
    ± `SAMPLE_BOUND`, before the resampler spreads a NaN over its filter's length."""
    if not np.isfinite(chunk).all():
        chunk = np.where(np.isfinite(chunk), chunk, np.float32(0.0))
    return np.clip(chunk, -SAMPLE_BOUND, SAMPLE_BOUND, out=chunk if chunk.flags.writeable else None)


def mono_samples(samples: np.ndarray, limit: int | None = None) -> np.ndarray:
    """Samples handed to an engine as they come (a list, another dtype, integer PCM, NaN), as a decoder's are: a
    float32 copy of the first `limit` (all: None), full scale at 1.0, finite and bounded (`finite_samples`).
    Refused in one line when not one channel's: a stereo array's two rows would be read as one long signal, or
    fail deep in the spectrogram."""
    given = samples.dtype.name if isinstance(samples, np.ndarray) else type(samples).__name__
    samples = np.asarray(samples)
    if samples.dtype.kind not in "iuf":  # bytes, text, complex or objects: no samples a decoder gives
        raise AudioError(f"samples of type {given}: samples are real numbers, e.g. a numpy array of float32 at "
                         "full scale 1.0, or of int16")
    if samples.ndim != 1:
        raise AudioError(f"samples of shape {samples.shape}: one channel's are one-dimensional (mix a stereo array, "
                         "or pick a channel)")
    samples = samples[:limit]
    if np.issubdtype(samples.dtype, np.integer):  # PCM: full scale at the type's largest value
        return finite_samples((samples / np.iinfo(samples.dtype).max).astype(np.float32))
    return finite_samples(np.array(samples, np.float32))


def at_engine_rate(samples: np.ndarray, sample_rate_hz: float | None, engine_rate_hz: int,
                   max_duration_s: float | None = None) -> np.ndarray:
    """Samples recorded at `sample_rate_hz` (None: at the engine's already), as `mono_samples` at `engine_rate_hz`:
    the first `max_duration_s` (all: None) resampled as the decoders resample (soxr, high quality). Samples at
    another rate than the engine's would be read faster or slower, and name nothing."""
    if sample_rate_hz is None or sample_rate_hz == engine_rate_hz:
        return samples
    _check_rate(sample_rate_hz)
    import soxr  # lazy, as the decoders' (`lmprint list` never resamples)

    limit = None if max_duration_s is None else math.ceil(max_duration_s * sample_rate_hz)
    mono = mono_samples(samples, limit)
    return soxr.resample(mono, float(sample_rate_hz), engine_rate_hz, quality="HQ").astype(np.float32, copy=False)


def chunks_at_engine_rate(chunks: Iterable[np.ndarray], sample_rate_hz: float | None, engine_rate_hz: int
                          ) -> Iterator[np.ndarray]:
    """A stream's chunks recorded at `sample_rate_hz` (None: at the engine's already), each as `mono_samples`, at
    `engine_rate_hz`: resampled as one stream (soxr), so that no chunk's edges ring."""
    if sample_rate_hz is None or sample_rate_hz == engine_rate_hz:
        yield from (mono_samples(chunk) for chunk in chunks)
        return
    _check_rate(sample_rate_hz)
    import soxr

    resampler = soxr.ResampleStream(float(sample_rate_hz), engine_rate_hz, 1, dtype="float32", quality="HQ")
    for chunk in chunks:
        resampled = resampler.resample_chunk(mono_samples(chunk))
        if resampled.size:
            yield resampled
    last = resampler.resample_chunk(np.zeros(0, np.float32), last=True)
    if last.size:
        yield last


def _check_rate(sample_rate_hz: float) -> None:
    """Refuse, in one line, a sample rate that is not audio's."""
    a_number = isinstance(sample_rate_hz, numbers.Real) and not isinstance(sample_rate_hz, (bool, np.bool_))
    if not (a_number and MIN_SAMPLE_RATE_HZ <= sample_rate_hz <= MAX_SAMPLE_RATE_HZ):
        shown = f"{float(sample_rate_hz):g} Hz" if a_number else repr(sample_rate_hz)
        raise AudioError(f"a sample rate of {shown}: give the rate of the samples in Hz, audio's "
                         f"({MIN_SAMPLE_RATE_HZ:,} to {MAX_SAMPLE_RATE_HZ:,} Hz)")
