"""Writing audio files (PyAV), for generated corpora, test fixtures and codec round trips."""

from __future__ import annotations

import os

import numpy as np

CODECS = {
    ".wav": ("pcm_s16le", "s16", None),
    ".flac": ("flac", "s16", None),
    ".ogg": ("vorbis", "fltp", None),
    ".mp3": ("libmp3lame", "s16p", None),
    ".m4a": ("aac", "fltp", None),
    ".opus": ("libopus", "s16", 48000),
}
"""Extension → (FFmpeg encoder, sample format, required sample rate or None)."""


def write(path: str | os.PathLike, samples: np.ndarray, sample_rate_hz: int, bit_rate: int | None = None,
          channels: int = 1, title: str | None = None, tags: dict[str, str] | None = None) -> None:
    """Encode mono float samples in [-1, 1] to `path`; the extension picks the codec. `title` sets the title tag,
    `tags` others (an MP3's ID3 frames by their ids: {"TLEN": "40000"})."""
    import av
    import soxr

    path = os.fspath(path)
    codec, sample_format, required_rate = CODECS[os.path.splitext(path)[1].lower()]
    samples = np.clip(np.asarray(samples, np.float32), -1.0, 1.0)
    if required_rate and required_rate != sample_rate_hz:
        samples = soxr.resample(samples, sample_rate_hz, required_rate).astype(np.float32)
        sample_rate_hz = required_rate
    if codec == "vorbis":
        channels = 2  # FFmpeg's own Vorbis encoder writes stereo only
    layout = "mono" if channels == 1 else "stereo"
    with av.open(path, "w") as container:
        if title:
            container.metadata["title"] = title
        container.metadata.update(tags or {})
        stream = container.add_stream(codec, rate=sample_rate_hz, layout=layout,
                                      options={"strict": "experimental"})
        assert isinstance(stream, av.audio.stream.AudioStream)
        if bit_rate:
            stream.bit_rate = bit_rate
        frame_size = stream.codec_context.frame_size or 1024
        planar = np.tile(samples, (channels, 1))
        for start in range(0, samples.size, frame_size):
            block = planar[:, start:start + frame_size]
            frame = av.AudioFrame.from_ndarray(_to_format(block, sample_format), format=sample_format, layout=layout)
            frame.sample_rate = sample_rate_hz
            frame.pts = start  # in samples: without it an Ogg file declared 2.5 s of 40 (its granule positions),
            # and an AAC one kept its encoder's priming as 46 ms of silence at its start
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def _to_format(block: np.ndarray, sample_format: str) -> np.ndarray:
    if sample_format.startswith("s16"):
        block = (block * 32767).astype(np.int16)
    if not sample_format.endswith("p"):  # packed: one row, channels interleaved
        block = block.T.reshape(1, -1)
    return np.ascontiguousarray(block)


def codec_round_trip(samples: np.ndarray, sample_rate_hz: int, extension: str, bit_rate: int, workdir: str
                     ) -> np.ndarray:
    """`samples` after encoding to `extension` at `bit_rate` and decoding back (same rate, mono)."""
    from landmark import audio

    path = os.path.join(workdir, f"roundtrip-{os.getpid()}{extension}")
    write(path, samples, sample_rate_hz, bit_rate=bit_rate)
    try:
        return audio.load(path, sample_rate_hz)
    finally:
        os.unlink(path)
