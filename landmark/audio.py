"""Decode any audio file to mono float32 at the engine's rate: the only place that reads audio files.

PyAV (FFmpeg's libraries, in-process) decodes every format a user has: wav, flac, ogg/vorbis, opus, mp3, m4a/aac.
soxr resamples, streamed chunk by chunk, so memory is bounded by the *output* (4 bytes per output sample:
32 KB per second at 8 kHz, 115 MB for an hour), never by the decoded source rate or channel count.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from .errors import AudioError

SILENCE_RMS = 1e-4
"""Audio quieter than this (about -80 dBFS RMS) is treated as silence."""


@dataclass(frozen=True)
class Decoded:
    """Mono float32 samples at `sample_rate_hz`, and the title tag if the file has one."""

    samples: np.ndarray
    sample_rate_hz: int
    title: str | None

    @property
    def duration_s(self) -> float:
        return self.samples.size / self.sample_rate_hz


def load(path: str | os.PathLike, sample_rate_hz: int, max_duration_s: float | None = None) -> np.ndarray:
    """Mono float32 samples of `path` at `sample_rate_hz` (see `decode`)."""
    return decode(path, sample_rate_hz, max_duration_s).samples


def decode(path: str | os.PathLike, sample_rate_hz: int, max_duration_s: float | None = None) -> Decoded:
    """Decode `path` to mono float32 at `sample_rate_hz`, optionally only its first `max_duration_s` seconds.

    Raises AudioError with a reason a person can act on for anything that is not usable audio.
    """
    import av  # lazy: PyAV loads FFmpeg's libraries, which `lmprint list` never needs
    import soxr

    path = os.fspath(path)
    if os.path.isdir(path):
        raise AudioError("is a directory")
    try:
        if os.path.getsize(path) == 0:
            raise AudioError("empty file")
    except FileNotFoundError:
        raise AudioError("no such file") from None
    except PermissionError:
        raise AudioError("permission denied") from None
    except OSError as error:
        raise AudioError(error.strerror or str(error)) from None

    chunks: list[np.ndarray] = []
    title = None
    kept = 0
    limit = None if max_duration_s is None else int(max_duration_s * sample_rate_hz)
    try:
        with av.open(path, metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise AudioError("no audio stream")
            stream = container.streams.audio[0]
            tags = {**{k.lower(): v for k, v in container.metadata.items()},
                    **{k.lower(): v for k, v in stream.metadata.items()}}
            title = (tags.get("title") or "").strip() or None
            stream.thread_type = "AUTO"
            source_rate = stream.codec_context.sample_rate or stream.rate
            if not source_rate:
                raise AudioError("unknown sample rate")
            # Downmix to mono float in FFmpeg (cheap, C), then resample with soxr in a stream.
            downmix = av.AudioResampler(format="flt", layout="mono", rate=source_rate)
            resampler = soxr.ResampleStream(source_rate, sample_rate_hz, 1, dtype="float32", quality="HQ")
            for frame in container.decode(stream):
                for mono in downmix.resample(frame):
                    samples = mono.to_ndarray().reshape(-1)
                    out = resampler.resample_chunk(samples)
                    if out.size:
                        chunks.append(out)
                        kept += out.size
                if limit is not None and kept >= limit:
                    break
            else:
                for mono in downmix.resample(None):
                    chunks.append(resampler.resample_chunk(mono.to_ndarray().reshape(-1)))
                chunks.append(resampler.resample_chunk(np.zeros(0, np.float32), last=True))
    except AudioError:
        raise
    except FileNotFoundError:
        raise AudioError("no such file") from None
    except PermissionError:
        raise AudioError("permission denied") from None
    except av.error.InvalidDataError:
        raise AudioError("not an audio file, or corrupt") from None
    except (av.error.FFmpegError, OSError, ValueError, RuntimeError) as error:
        reason = getattr(error, "strerror", None) or str(error) or type(error).__name__
        raise AudioError(f"cannot decode: {reason}") from None

    signal = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    if limit is not None:
        signal = signal[:limit]
    if signal.size == 0:
        raise AudioError("no audio samples decoded (corrupt or truncated)")
    if not np.all(np.isfinite(signal)):
        signal = np.nan_to_num(signal, nan=0.0, posinf=0.0, neginf=0.0)
    return Decoded(signal.astype(np.float32, copy=False), sample_rate_hz, title)


def check_usable(signal: np.ndarray, sample_rate_hz: int, min_duration_s: float) -> None:
    """Refuse audio that is too short or silent, with the reason."""
    duration_s = signal.size / sample_rate_hz
    if duration_s < min_duration_s:
        raise AudioError(f"too short ({duration_s:.1f} s; at least {min_duration_s:g} s needed)")
    if float(np.sqrt(np.mean(np.square(signal, dtype=np.float64)))) < SILENCE_RMS:
        raise AudioError("silent")
