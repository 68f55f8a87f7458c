"""Generated music: short, deterministic, distinct songs for tests, the demo and scale distractors.

Each seed gives a different song: its own tempo, key, chord progression, melody, timbres and drum pattern.
It has what real music has for a landmark fingerprint (harmonic notes with onsets, sustained chords, percussive
noise), so tests exercise the engine on real signals rather than on hand-made peaks.
"""

from __future__ import annotations

import numpy as np

_MAJOR = np.array([0, 2, 4, 5, 7, 9, 11])


def song(seed: int, duration_s: float = 30.0, sample_rate_hz: int = 22050) -> np.ndarray:
    """Mono float32 song in [-1, 1]."""
    rng = np.random.default_rng(seed)
    n = int(duration_s * sample_rate_hz)
    out = np.zeros(n, np.float32)
    t_beat = 60.0 / rng.uniform(60, 180)
    root = 45 + int(rng.integers(0, 12))  # MIDI note of the key
    progression = rng.integers(0, 7, size=8)
    brightness = rng.uniform(0.3, 0.8, size=3)
    kick_hz = rng.uniform(45, 90)
    kick_pattern = rng.random(8) < 0.6  # which beats of a two-bar phrase get a kick, and which a snare
    snare_pattern = rng.random(8) < 0.5
    tuning_hz = 440.0 * 2 ** (rng.uniform(-0.5, 0.5) / 12)  # concert pitch varies by up to a quarter tone
    n_beats = int(duration_s / t_beat) + 1
    # Rubato: each beat lasts ±4 % of the nominal beat, so two songs of the same tempo do not stay in step
    # (strictly periodic generated songs of equal tempo share aligned landmarks; played music drifts).
    beat_starts = np.concatenate([[0.0], np.cumsum(t_beat * (1 + 0.04 * rng.uniform(-1, 1, n_beats)))])
    for beat in range(n_beats):
        start = beat_starts[beat] + rng.uniform(0, 0.03)  # a human does not play on a grid
        if beat % 4 == 0:  # a chord every bar
            degree = progression[(beat // 4) % progression.size]
            for k in (0, 2, 4):
                note = root + 12 + _MAJOR[(degree + k) % 7] + 12 * ((degree + k) // 7)
                add_note(out, sample_rate_hz, start, 4 * t_beat, note, 0.10, brightness[0], rng, tuning_hz)
        for sub in range(int(rng.integers(1, 3))):  # melody: one or two notes a beat
            note = root + 24 + _MAJOR[int(rng.integers(0, 7))] + 12 * int(rng.integers(0, 2))
            add_note(out, sample_rate_hz, start + sub * t_beat / 2 + rng.uniform(-0.02, 0.02), t_beat / 2, note, 0.2,
                      brightness[1], rng, tuning_hz)
        if beat % 2 == 0:  # bass
            note = root + _MAJOR[progression[(beat // 4) % progression.size]]
            add_note(out, sample_rate_hz, start, t_beat, note, 0.25, brightness[2], rng, tuning_hz)
        if kick_pattern[beat % 8]:
            _add_drum(out, sample_rate_hz, start, rng, kick_hz, snare=False)
        if snare_pattern[beat % 8]:
            _add_drum(out, sample_rate_hz, start, rng, kick_hz, snare=True)
    return (0.8 * out / (np.max(np.abs(out)) + 1e-9)).astype(np.float32)


def add_note(out, rate, start_s, length_s, midi_note, level, brightness, rng, tuning_hz=440.0) -> None:
    """Add one note to `out`: its harmonics each `brightness` times the one below, a 10 ms attack, then a decay."""
    i0 = max(0, int(start_s * rate))
    if i0 >= out.size:
        return
    length = min(int(length_s * rate), out.size - i0)
    t = np.arange(length) / rate
    f0 = tuning_hz * 2 ** ((midi_note - 69) / 12)
    tone = np.zeros(length)
    for harmonic in range(1, 9):
        if f0 * harmonic > rate / 2:
            break
        tone += brightness ** (harmonic - 1) * np.sin(2 * np.pi * f0 * harmonic * t + rng.uniform(0, 2 * np.pi))
    envelope = np.minimum(1.0, t / 0.01) * np.exp(-t * rng.uniform(1.0, 4.0))
    out[i0:i0 + length] += (level * tone * envelope).astype(np.float32)


def _add_drum(out, rate, start_s, rng, kick_hz: float, snare: bool) -> None:
    i0 = int(start_s * rate)
    length = min(int(0.15 * rate), out.size - i0)
    if length <= 0:
        return
    t = np.arange(length) / rate
    if snare:
        hit = rng.standard_normal(length) * np.exp(-t * 30) * 0.15
    else:
        hit = np.sin(2 * np.pi * (kick_hz + 80 * np.exp(-t * 40)) * t) * np.exp(-t * 20) * 0.4
    out[i0:i0 + length] += hit.astype(np.float32)
