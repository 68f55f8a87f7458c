"""Synthetic noises and rooms unlike the public ones, to check that settings tuned on the public set hold elsewhere.

The public bench adds recorded ambience and babble and convolves with recorded rooms. These are made instead:
brown noise (traffic rumble), a band-limited fan with a slow swell, a crowd of six espeak-ng voices reading other
texts in five languages, and three synthetic rooms (exponentially decaying noise after a few early reflections,
RT60 0.3, 0.6 and 1.0 s). Deterministic from the seed.
"""

from __future__ import annotations

import os
import subprocess
import tempfile

import numpy as np

from .audio_io import write

RATE_HZ = 22050
NOISE_S = 60.0
CROWD = (("en-us+f3", 0), ("de+m2", 1), ("en-gb+m5", 2), ("fr+f2", 0), ("es+m1", 1), ("it+f4", 2))
"""(espeak-ng voice, text number) of each talker of the crowd."""
TEXTS = ("/usr/share/common-licenses/Apache-2.0", "/usr/share/common-licenses/MPL-2.0",
         "/usr/share/common-licenses/LGPL-2.1")
"""What the crowd reads: texts every Debian system has, 1,500 characters a talker."""
ROOMS_RT60_S = (0.3, 0.6, 1.0)
EARLY_REFLECTIONS = ((0.007, 0.6), (0.013, 0.4), (0.021, 0.3))
"""(delay in seconds, gain) of the early reflections of each synthetic room."""


def brown_noise(rng: np.random.Generator) -> np.ndarray:
    """Integrated white noise with its slow drift removed: a rumble like distant traffic."""
    brown = np.cumsum(rng.standard_normal(int(RATE_HZ * NOISE_S)))
    return brown - np.convolve(brown, np.ones(2001) / 2001, "same")


def fan_noise(rng: np.random.Generator) -> np.ndarray:
    """Noise band-limited around 900 Hz, swelling by ± 30 % at 0.7 Hz: a fan or a vacuum cleaner."""
    t = np.arange(int(RATE_HZ * NOISE_S)) / RATE_HZ
    shape = np.exp(-((np.fft.rfftfreq(t.size, 1 / RATE_HZ) - 900.0) / 500.0) ** 2)
    fan = np.fft.irfft(np.fft.rfft(rng.standard_normal(t.size)) * shape, t.size)
    return fan * (1.0 + 0.3 * np.sin(2 * np.pi * 0.7 * t))


def crowd(path: str) -> None:
    """Six synthetic talkers mixed into one minute of babble at `path` (needs espeak-ng and sox)."""
    with tempfile.TemporaryDirectory() as work:
        talkers = []
        for number, (voice, text) in enumerate(CROWD):
            with open(TEXTS[text]) as handle:
                words = handle.read()[number * 1500:(number + 1) * 1500]
            talkers.append(os.path.join(work, f"talker{number}.wav"))
            subprocess.run(["espeak-ng", "-v", voice, "-s", str(150 + 10 * number), "-w", talkers[-1], words],
                           check=True, capture_output=True)
        subprocess.run(["sox", "-R", "-m", *talkers, "-r", str(RATE_HZ), "-c", "1", path, "trim", "0", str(NOISE_S),
                        "norm", "-3"], check=True, capture_output=True)


def synthetic_room(rt60_s: float, rng: np.random.Generator) -> np.ndarray:
    """Impulse response: the direct sound, a few early reflections and a tail decaying 60 dB in `rt60_s`."""
    t = np.arange(int(RATE_HZ * rt60_s * 1.5)) / RATE_HZ
    response = rng.standard_normal(t.size) * np.exp(-6.9 * t / rt60_s)
    response[0] = 1.0
    for delay_s, gain in EARLY_REFLECTIONS:
        response[int(delay_s * RATE_HZ)] += gain
    return response


def make(outdir: str, seed: int = 123) -> tuple[str, str]:
    """Write OUTDIR/noise (brown, fan, crowd_babble) and OUTDIR/rir (three rooms); returns the two folders."""
    rng = np.random.default_rng(seed)
    noise_dir, rir_dir = os.path.join(outdir, "noise"), os.path.join(outdir, "rir")
    os.makedirs(noise_dir, exist_ok=True)
    os.makedirs(rir_dir, exist_ok=True)
    for name, noise in (("brown", brown_noise(rng)), ("fan", fan_noise(rng))):
        write(os.path.join(noise_dir, f"{name}.flac"), 0.5 * noise / np.abs(noise).max(), RATE_HZ)
    crowd(os.path.join(noise_dir, "crowd_babble.flac"))
    for rt60_s in ROOMS_RT60_S:
        response = synthetic_room(rt60_s, rng)
        write(os.path.join(rir_dir, f"synthetic_rt{rt60_s:.1f}.wav"), 0.9 * response / np.abs(response).max(),
              RATE_HZ)
    return noise_dir, rir_dir
