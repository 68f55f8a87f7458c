"""Queries: clips cut at random, sample-accurate offsets, and the degradations a real query meets.

Every function is deterministic given its `rng`, so the same seed gives the same query set for every method.
Signals are mono float32 at the rate given.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass

import numpy as np


def cut(signal: np.ndarray, sample_rate_hz: int, duration_s: float, rng: np.random.Generator
        ) -> tuple[np.ndarray, float]:
    """A clip of `duration_s` starting at a random sample (not on any grid), and its start in seconds."""
    length = int(round(duration_s * sample_rate_hz))
    start = int(rng.integers(0, max(1, signal.size - length)))
    return signal[start:start + length].copy(), start / sample_rate_hz


def add_noise(signal: np.ndarray, noise: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """`signal` plus a random stretch of `noise` (looped if short), scaled to `snr_db` signal-to-noise ratio."""
    if noise.size < signal.size:
        noise = np.tile(noise, int(np.ceil(signal.size / max(1, noise.size))) + 1)
    start = int(rng.integers(0, noise.size - signal.size + 1))
    piece = noise[start:start + signal.size].astype(np.float64)
    signal_power = np.mean(np.square(signal, dtype=np.float64)) + 1e-12
    noise_power = np.mean(np.square(piece)) + 1e-12
    gain = np.sqrt(signal_power / (noise_power * 10 ** (snr_db / 10)))
    return (signal + gain * piece).astype(np.float32)


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """Pink (1/f) noise, a stand-in for ambient noise when no recordings are at hand."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    spectrum /= np.sqrt(np.maximum(1, np.arange(spectrum.size)))
    return np.fft.irfft(spectrum, n).astype(np.float32)


def reverb(signal: np.ndarray, impulse_response: np.ndarray) -> np.ndarray:
    """Convolution with a room impulse response, level kept."""
    from scipy.signal import fftconvolve

    wet = fftconvolve(signal, impulse_response / (np.max(np.abs(impulse_response)) + 1e-12))[:signal.size]
    return (wet * (np.std(signal) / (np.std(wet) + 1e-12))).astype(np.float32)


def band_pass(signal: np.ndarray, sample_rate_hz: int, low_hz: float = 300.0, high_hz: float = 3400.0
              ) -> np.ndarray:
    """A telephone band: 4th-order Butterworth band-pass."""
    from scipy.signal import butter, sosfilt

    sos = butter(4, [low_hz, min(high_hz, 0.45 * sample_rate_hz)], btype="bandpass", fs=sample_rate_hz,
                 output="sos")
    return sosfilt(sos, signal).astype(np.float32)


def compress(signal: np.ndarray, sample_rate_hz: int, threshold_db: float = -25.0, ratio: float = 4.0
             ) -> np.ndarray:
    """A simple feed-forward dynamic range compressor (10 ms attack/release envelope), as phones apply."""
    from scipy.signal import lfilter

    alpha = np.exp(-1.0 / (0.01 * sample_rate_hz))
    envelope = np.sqrt(lfilter([1 - alpha], [1, -alpha], np.square(signal, dtype=np.float64)) + 1e-12)
    level_db = 20 * np.log10(envelope / (np.max(envelope) + 1e-12) + 1e-12)
    gain_db = np.minimum(0.0, (threshold_db - level_db) * (1 - 1 / ratio))
    return (signal * 10 ** (gain_db / 20)).astype(np.float32)


def phone(signal: np.ndarray, sample_rate_hz: int, noise: np.ndarray, snr_db: float, rng: np.random.Generator
          ) -> np.ndarray:
    """Phone chain: band-pass 300–3400 Hz, compression, then noise at `snr_db`."""
    return add_noise(compress(band_pass(signal, sample_rate_hz), sample_rate_hz), noise, snr_db, rng)


def change_speed(signal: np.ndarray, factor: float) -> np.ndarray:
    """Play `factor` times faster: pitch and tempo together (resampling)."""
    import soxr

    return soxr.resample(signal, 1000 * factor, 1000).astype(np.float32)


def time_stretch(signal: np.ndarray, sample_rate_hz: int, factor: float) -> np.ndarray:
    """Tempo × `factor`, pitch kept: FFmpeg's `atempo` (WSOLA)."""
    return ffmpeg_filter(signal, sample_rate_hz, [("atempo", f"{factor:.6f}")])


def pitch_shift(signal: np.ndarray, sample_rate_hz: int, factor: float) -> np.ndarray:
    """Pitch × `factor`, tempo kept: a speed change (asetrate + aresample) undone in time by `atempo`."""
    return ffmpeg_filter(signal, sample_rate_hz, [("asetrate", str(int(round(sample_rate_hz * factor)))),
                                                  ("aresample", str(sample_rate_hz)), ("atempo", f"{1 / factor:.6f}")])


def ffmpeg_filter(signal: np.ndarray, sample_rate_hz: int, chain: list[tuple[str, str]]) -> np.ndarray:
    """Mono float32 `signal` through a chain of FFmpeg audio filters (PyAV's filter graph), in process."""
    from fractions import Fraction

    import av

    graph = av.filter.Graph()
    nodes = [graph.add_abuffer(format="flt", sample_rate=sample_rate_hz, layout="mono")]
    nodes += [graph.add(name, arguments) for name, arguments in chain]
    nodes.append(graph.add("abuffersink"))
    for upstream, downstream in zip(nodes, nodes[1:]):
        upstream.link_to(downstream)
    graph.configure()
    out = []

    def drain() -> None:
        while True:
            try:
                out.append(graph.pull().to_ndarray().reshape(-1))
            except (av.error.BlockingIOError, av.error.EOFError):
                return

    for start in range(0, signal.size, 4096):
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(signal[None, start:start + 4096], np.float32),
                                           format="flt", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = sample_rate_hz, start, Fraction(1, sample_rate_hz)
        graph.push(frame)
        drain()
    graph.push(None)
    drain()
    return np.concatenate(out).astype(np.float32) if out else np.zeros(0, np.float32)


# --- the query set ---------------------------------------------------------------------------------------------

BENCH_RATE_HZ = 22050
"""Queries are made at this rate; each method resamples to its own."""

CLIP_LENGTHS_S = (1.0, 2.0, 3.0, 5.0, 10.0)
SNRS_DB = (-5, 0, 5, 10)
SPEEDS = (-8, -5, -3, -2, -1, 1, 2, 3, 5, 8)
TEMPOS = (-10, -5, 5, 10)
PITCHES = (-3, -2, 2, 3)
UNINDEXED_SPEEDS = (3, -5, 8)
"""Speed changes of the three sped-up clips of each song kept out of the index (`unindexed_speed`)."""


@dataclass(frozen=True)
class Query:
    song: str
    indexed: bool
    condition: str
    start_s: float
    samples: np.ndarray


@dataclass
class Degraders:
    """Recorded material for degradations: noise recordings by kind, and room impulse responses."""

    noises: dict[str, list[np.ndarray]]
    impulse_responses: list[np.ndarray]

    @classmethod
    def load(cls, noise_dir: str | None, rir_dir: str | None, max_files: int = 12) -> Degraders:
        from landmark import audio
        from lmprint.files import find_audio_files

        noises: dict[str, list[np.ndarray]] = {}
        if noise_dir and os.path.isdir(noise_dir):
            for path, error in find_audio_files([noise_dir]):
                kind = "babble" if "babble" in os.path.relpath(path, noise_dir) else "ambient"
                if error is None and len(noises.setdefault(kind, [])) < max_files:
                    try:
                        noises[kind].append(audio.load(path, BENCH_RATE_HZ, max_duration_s=60))
                    except Exception:  # noqa: BLE001 - a broken noise file just isn't used
                        pass
        if not any(noises.values()):
            noises = {"pink": [pink_noise(BENCH_RATE_HZ * 30, np.random.default_rng(0))]}
        responses = []
        if rir_dir and os.path.isdir(rir_dir):
            for path, error in find_audio_files([rir_dir]):
                if error is None:
                    responses.append(audio.load(path, BENCH_RATE_HZ, max_duration_s=3))
        return cls({k: v for k, v in noises.items() if v}, responses)


def conditions(degraders: Degraders, full: bool = True) -> list[str]:
    """Names of the conditions of indexed-song queries, in report order."""
    names = [f"clean_{length:g}s" for length in CLIP_LENGTHS_S] if full else ["clean_5s"]
    names += [f"noise_{kind}_{snr}dB" for kind in degraders.noises for snr in (SNRS_DB if full else (0,))]
    if degraders.impulse_responses:
        names.append("reverb")
    names += ["phone", "mp3_48k"]
    if full:
        names += (["opus_16k"] + [f"speed_{s:+d}%" for s in SPEEDS] + [f"tempo_{s:+d}%" for s in TEMPOS]
                  + [f"pitch_{s:+d}%" for s in PITCHES] + ["musicprint"])
    return names


WARPS = ("speed_", "tempo_", "pitch_")
"""Conditions that play a clip faster or slower: `speed_+5%` (tempo and pitch together), `tempo_…`, `pitch_…`."""


def warp_factor(condition: str) -> float | None:
    """The factor a condition plays its clips at (1.05 for `speed_+5%`), None for one that does not."""
    if not condition.startswith(WARPS):
        return None
    return 1 + float(condition.split("_")[1].rstrip("%")) / 100


def make_query(signal: np.ndarray, condition: str, degraders: Degraders, rng: np.random.Generator,
               workdir: str) -> tuple[np.ndarray, float]:
    """One query of `condition` from a song: (samples at BENCH_RATE_HZ, start in the song in seconds)."""
    from .audio_io import codec_round_trip

    rate = BENCH_RATE_HZ
    if condition == "musicprint":  # the MusicPrint protocol: clean 5 s windows on the 1 s grid
        start = int(rng.integers(0, max(1, int(signal.size / rate) - 5)))
        return signal[start * rate:(start + 5) * rate].copy(), float(start)
    length_s = float(condition.split("_")[1][:-1]) if condition.startswith("clean_") else 5.0
    if condition.startswith(WARPS):
        factor = warp_factor(condition)
        assert factor is not None
        clip, start_s = cut(signal, rate, length_s * 1.15, rng)
        if condition.startswith("speed_"):
            clip = change_speed(clip, factor)
        elif condition.startswith("tempo_"):
            clip = time_stretch(clip, rate, factor)
        else:
            clip = pitch_shift(clip, rate, factor)
        return clip[:int(length_s * rate)], start_s
    clip, start_s = cut(signal, rate, length_s, rng)
    if condition.startswith("noise_"):
        _, kind, snr = condition.split("_")
        noise = degraders.noises[kind][int(rng.integers(0, len(degraders.noises[kind])))]
        return add_noise(clip, noise, float(snr[:-2]), rng), start_s
    if condition == "reverb":
        response = degraders.impulse_responses[int(rng.integers(0, len(degraders.impulse_responses)))]
        return reverb(clip, response), start_s
    if condition == "phone":  # a phone in a room: room response, phone band and compression, noise at 5 dB
        if degraders.impulse_responses:
            clip = reverb(clip, degraders.impulse_responses[int(rng.integers(0, len(degraders.impulse_responses)))])
        kind = sorted(degraders.noises)[0]
        noise = degraders.noises[kind][int(rng.integers(0, len(degraders.noises[kind])))]
        return phone(clip, rate, noise, 5.0, rng), start_s
    if condition == "mp3_48k":
        return codec_round_trip(clip, rate, ".mp3", 48_000, workdir), start_s
    if condition == "opus_16k":
        return codec_round_trip(clip, rate, ".opus", 16_000, workdir), start_s
    if condition.startswith("clean_"):
        return clip, start_s
    raise ValueError(f"unknown condition {condition}")


def build(tracks, degraders: Degraders, seed: int, workdir: str, full: bool = True, progress=None,
          also: tuple[str, ...] = ()) -> list[Query]:
    """The whole query set, deterministic from `seed`.

    Indexed songs get one query per condition (`conditions`, then `also`); songs kept out of the index get three
    clean, three noisy (0 dB) and three phone-chain 5 s clips (`unindexed_clean`, `unindexed_noise`,
    `unindexed_phone`), and with `full` three sped-up ones (`unindexed_speed`), for the false-match rate. A query
    is the same whatever other conditions are asked (its generator is seeded by its song and condition).
    """
    from landmark import audio
    from lmprint.errors import AudioError

    names = conditions(degraders, full)
    names += [name for name in also if name not in names]
    result = []
    for number, track in enumerate(tracks):
        try:
            signal = audio.load(track.path, BENCH_RATE_HZ)
        except AudioError:
            continue
        if signal.size < 12 * BENCH_RATE_HZ:
            continue
        kind = sorted(degraders.noises)[0]
        held_out = {"unindexed_clean": ["clean_5s"] * 3, "unindexed_noise": [f"noise_{kind}_0dB"] * 3,
                    "unindexed_phone": ["phone"] * 3}
        if full:
            held_out["unindexed_speed"] = [f"speed_{s:+d}%" for s in UNINDEXED_SPEEDS]
        wanted = [(name, name, 0) for name in names] if track.indexed else [
            (name, condition, repeat) for name, conditions_of in held_out.items()
            for repeat, condition in enumerate(conditions_of)]
        for name, condition, repeat in wanted:
            rng = np.random.default_rng([seed, number, zlib.crc32(name.encode()), repeat])
            samples, start_s = make_query(signal, condition, degraders, rng, workdir)
            result.append(Query(track.path, track.indexed, name, start_s, samples.astype(np.float32)))
        if progress:
            progress.update(1)
    return result
