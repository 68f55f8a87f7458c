"""Decode any audio file to mono float32 at the engine's rate: the only place that reads audio files.

PyAV (FFmpeg's libraries, in-process) decodes every format a user has: wav, flac, ogg/vorbis, opus, mp3, m4a/aac.
Frames are mixed to mono as FFmpeg mixes them (`_Mixer`) and soxr resamples, streamed batch by batch, so memory is
bounded by the *output* (4 bytes per output sample: 32 KB per second at 8 kHz, 115 MB for an hour), never by the
decoded source rate or channel count.
"""

from __future__ import annotations

import io
import math
import os
import shutil
import stat
import struct
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np

from lmprint.errors import AudioError, os_reason, reading_file
from lmprint.files import AUDIO_DEMUXERS, title_from_path
from lmprint.samples import MAX_SAMPLE_RATE_HZ, MIN_SAMPLE_RATE_HZ, finite_samples

SILENCE_RMS = 1e-4
"""Audio quieter than this (about -80 dBFS RMS) is treated as silence."""

LEVEL_SECOND_S = 1.0
"""Audio is silent when no stretch this long of it reaches `SILENCE_RMS`: silent throughout, not on average (a
hidden track after ten minutes of silence averages under it)."""

SHORTFALL_RATIO = 0.9
"""A file that decodes to less than this share of the duration its container declares is reported (a truncated
download, a damaged copy): it is still indexed, but most of the song could never be found."""


@dataclass(frozen=True)
class Decoded:
    """Mono float32 samples at `sample_rate_hz`, the title tag if the file has one, the duration the container
    declares (None if it declares none) and the packets FFmpeg could not decode, which were skipped."""

    samples: np.ndarray
    sample_rate_hz: int
    title: str | None
    declared_s: float | None = None
    bad_packets: int = 0
    whole: bool = True
    """False when only the start was decoded (`max_duration_s`)."""

    @property
    def duration_s(self) -> float:
        return self.samples.size / self.sample_rate_hz

    @property
    def warning(self) -> str | None:
        """A line for a file that decoded to much less than its container declares (`SHORTFALL_RATIO`)."""
        if not self.whole or self.declared_s is None or self.duration_s >= SHORTFALL_RATIO * self.declared_s:
            return None
        skipped = f", {self.bad_packets} bad packets skipped" if self.bad_packets else ""
        return (f"decoded only {self.duration_s:.1f} s of the {self.declared_s:.1f} s it declares (truncated or "
                f"damaged{skipped})")


AudioSource = str | bytes | os.PathLike | BinaryIO
"""A file's path, or a binary file object holding a whole file (an upload's bytes in `io.BytesIO`, standard input)."""


def load(source: AudioSource, sample_rate_hz: int, max_duration_s: float | None = None) -> np.ndarray:
    """Mono float32 samples of `source` at `sample_rate_hz` (see `decode`)."""
    return decode(source, sample_rate_hz, max_duration_s).samples


def decode(source: AudioSource, sample_rate_hz: int, max_duration_s: float | None = None) -> Decoded:
    """Decode a file (a path, or a binary file object: `_readable`) to mono float32 at `sample_rate_hz`, optionally
    only its first `max_duration_s` seconds.

    Raises AudioError with a reason a person can act on for anything that is not usable audio.
    """
    path, readable = _readable(source)
    buffer = _Growing()
    bad: list[Exception] = []  # the errors of packets that did not decode
    limit = None if max_duration_s is None else int(max_duration_s * sample_rate_hz)
    with readable as opened, _opened(opened) as (container, stream, title):
        if container.duration:  # microseconds; lets the buffer be allocated once, to what is read at most
            reserved_s = min(container.duration / 1e6, MAX_DECLARED_S if max_duration_s is None else max_duration_s)
            buffer.reserve(int(reserved_s * sample_rate_hz * 1.01) + sample_rate_hz)
        declared_s = _declared_s(path, container)
        whole = True
        for chunk in _resampled(container, stream, sample_rate_hz, bad):
            buffer.append(chunk)
            if limit is not None and buffer.size >= limit:
                # stopped early, unless the container says nothing (more than a packet) follows
                whole = declared_s is not None and declared_s * sample_rate_hz <= limit + sample_rate_hz // 10
                break
    signal = buffer.samples()
    if limit is not None:
        signal = signal[:limit]
    if signal.size == 0:
        if bad:
            raise AudioError(f"cannot decode: {_reason(bad[0])}")
        raise AudioError("no audio samples decoded (corrupt or truncated)")
    return Decoded(signal, sample_rate_hz, title, declared_s, len(bad), whole)


def _readable(source: AudioSource) -> tuple[str | None, Any]:
    """(the path, or None for a file object; a context giving what FFmpeg is to open) of a path or a binary file
    object, refused in one line where it cannot be read as one: a file object that is closed or reads text. A
    seekable one is read from its start (FFmpeg seeks it to absolute offsets: an upload's `BytesIO` left at its end
    after writing it reads as the whole file, not as nothing), any other from where it stands (a pipe)."""
    if isinstance(source, (str, bytes, os.PathLike)):
        path = os.fsdecode(source)
        return path, _pipe_or_path(path)
    if not hasattr(source, "read"):
        raise TypeError(f"an audio file's path or a binary file object, not {type(source).__name__}")
    if isinstance(source, io.TextIOBase):
        raise AudioError("the file object reads text: open the file in binary mode ('rb')")
    if getattr(source, "closed", False):
        raise AudioError("the file object is closed")
    seekable = getattr(source, "seekable", None)
    if seekable is not None and seekable():
        source.seek(0)
    return None, _index_first(source)


MAX_DECLARED_S = 24 * 3600.0
"""A tag declaring a longer duration than this is taken for a wrong one, not for a file cut short; nor is more
than this reserved for a file's samples before they are decoded (a header may claim years)."""

MAX_CHANNELS = 64
"""The most channels raw PCM is taken with (FFmpeg's channel layouts name at most 64)."""

WAV_UNKNOWN_SIZE = 0x7FFF0000
"""A WAV data size from here up is a placeholder (`_wav_cut_s`), not a length."""
WAV_CONSTANT_RATE_FORMATS = frozenset({1, 3, 6, 7})
"""WAV format tags whose bytes a second are the sample rate times the block size: integer PCM, float, A-law and
µ-law. For them the header's separate "average bytes a second" is a copy that a writer may get wrong."""
WAV_EXTENSIBLE = 0xFFFE
"""The WAV format tag that names its format in a sub-format GUID, whose first two bytes are the tag."""


def _declared_s(path: str | None, container) -> float | None:
    """The duration a file declares, None if none. A WAV cut short declares its header's data size over its bytes
    a second (`_wav_cut_s`): FFmpeg bounds a WAV's by the file's size, and estimates a cut one's from the header's
    "average bytes a second", a copy a writer may get wrong; an intact WAV's is FFmpeg's, as it decodes it. Other
    files declare the container's duration, or an ID3 `TLEN` tag's (in ms) where longer: FFmpeg estimates an
    MP3's from its size and bit rate."""
    if container.format.name == "wav" and path is not None and (cut_s := _wav_cut_s(path)) is not None:
        return cut_s
    declared = [container.duration / 1e6] if container.duration else []
    tlen = container.metadata.get("TLEN", "")
    if tlen.isascii() and tlen.isdigit() and 0 < int(tlen) <= MAX_DECLARED_S * 1000:
        declared.append(int(tlen) / 1000)
    return max(declared) if declared and max(declared) > 0 else None


def _wav_cut_s(path: str) -> float | None:
    """The seconds a WAV file's header says its data holds, where that data runs past the file's end (a download
    cut short): its `data` chunk's size over the bytes a second of its `fmt ` chunk (`_wav_bytes_per_s`). None
    for a file whose data is all there, or whose header does not say: a size of 0, or one of 2 GB or more
    (written to a pipe, a writer cannot go back to fill it in, so it puts 0, 2^32 − 1, or as sox does
    2^31 − 4096), or a file that is no regular file (a pipe's bytes are FFmpeg's)."""
    if not os.path.isfile(path):
        return None
    try:
        with open(path, "rb") as file:
            file_bytes = os.fstat(file.fileno()).st_size
            if file.read(12)[8:12] != b"WAVE":
                return None
            bytes_per_s = 0
            while len(chunk := file.read(8)) == 8:
                kind, size = chunk[:4], int.from_bytes(chunk[4:], "little")
                if kind == b"fmt ":
                    bytes_per_s = _wav_bytes_per_s(file.read(size + size % 2))
                    continue
                if kind == b"data":
                    cut = file.tell() + size > file_bytes
                    return size / bytes_per_s if cut and bytes_per_s and 0 < size < WAV_UNKNOWN_SIZE else None
                file.seek(size + size % 2, os.SEEK_CUR)  # chunks are padded to an even size
    except OSError:
        return None
    return None


def _wav_bytes_per_s(fmt: bytes) -> int:
    """A WAV `fmt ` chunk's bytes per second of audio: for a format of whole samples (`WAV_CONSTANT_RATE_FORMATS`)
    whose block size is its channels' samples, the sample rate times that; else the average it declares; 0 for a
    chunk too short to say."""
    if len(fmt) < 16:  # a WAVEFORMAT of 14 bytes says its average, and no sample size
        return int.from_bytes(fmt[8:12], "little") if len(fmt) >= 12 else 0
    tag, channels, rate, average, block, bits = struct.unpack("<HHIIHH", fmt[:16])
    if tag == WAV_EXTENSIBLE and len(fmt) >= 26:
        tag = int.from_bytes(fmt[24:26], "little")
    consistent = block > 0 and block == channels * -(-bits // 8)
    return rate * block if tag in WAV_CONSTANT_RATE_FORMATS and consistent else average


def title_tag(path: str | os.PathLike) -> str | None:
    """The file's title tag, if it has one (its header alone is read); None also for a file that cannot be read."""
    try:
        with _opened(str(path)) as (_, _, title):
            return title
    except AudioError:
        return None


def title_of(path: str) -> str:
    """A file's title as `add` takes it: its title tag, else its file name."""
    return title_tag(path) or title_from_path(path)


@contextmanager
def _pipe_or_path(path: str) -> Iterator[Any]:
    """`path` as FFmpeg is to open it, refused first, in words FFmpeg would not find, where it is a folder, missing,
    unreadable or an empty file. A named pipe (`<(ffmpeg …)`) is opened here, and read as standard input is
    (`_index_first`): FFmpeg's own open of a pipe waits for a writer where Ctrl-C or SIGTERM cannot stop it (PyAV
    drops what their handler raises, and FFmpeg reports the interrupted call as a decoding error)."""
    if "\0" in path:  # no path holds one: a file's bytes given as its path
        raise AudioError("not a file's path (it holds a NUL byte): give a file's bytes as io.BytesIO(data)")
    if os.path.isdir(path):
        raise AudioError("is a directory")
    with reading_file():
        info = os.stat(path)
        if stat.S_ISREG(info.st_mode) and info.st_size == 0:  # a pipe has no size to tell
            raise AudioError("empty file")
        pipe = open(path, "rb") if stat.S_ISFIFO(info.st_mode) else None  # noqa: SIM115 - closed below
    if pipe is None:
        yield path
        return
    with pipe, _index_first(pipe) as readable:
        yield readable


ISO_MEDIA_HEADS = (b"ftyp", b"free", b"skip", b"wide", b"pdin", b"uuid")
"""Boxes that may come before an MP4's (M4A's, MOV's, 3GP's) index or media: what `_index_first` reads past."""

MAX_HEAD_BYTES = 1 << 20
"""`_index_first` reads at most this much of a stream to find the box after an MP4's head (a recorder may reserve
room for its index in a `free` box of some kilobytes); past it the stream is read as it comes."""


@contextmanager
def _index_first(source) -> Iterator[Any]:
    """`source` as FFmpeg can read it: where it is a stream that cannot seek (a pipe, standard input) holding an
    MP4 whose index (its `moov` box) follows its media (`mdat`), as FFmpeg, recorders and phones write them, a
    temporary copy of it (FFmpeg needs the index to decode, and cannot seek a pipe back to it once it has read to
    the end; such a stream is a whole file, its index written last, so the copy ends); otherwise the stream, the
    boxes read to tell given back first (`_Replayed`): an MP4 with its index first, a fragmented (live) one and
    every other format are read as they come. Raises AudioError for a stream that ends before its first byte (one
    that can seek, such as `< /dev/null`, too)."""
    if hasattr(source, "peek") and not source.peek(1):
        raise AudioError("empty file")
    seekable = getattr(source, "seekable", None)
    if not hasattr(source, "read") or (seekable and seekable()):
        yield source
        return
    with reading_file():
        parts, read, index_last = [source.read(8)], 0, False
        if parts[0][4:8] == b"ftyp":  # an MP4: its boxes up to the first that is neither its head's nor media
            while len(parts[-1]) == 8 and parts[-1][4:8] in ISO_MEDIA_HEADS:
                size = int.from_bytes(parts[-1][:4], "big")
                if size < 8 or read + size > MAX_HEAD_BYTES:  # to the end (0), 64-bit (1), damaged, or too long
                    break
                parts += [source.read(size - 8), source.read(8)]
                read += size
                index_last = parts[-1][4:8] == b"mdat"
    head = b"".join(parts)
    if not index_last:
        yield _Replayed(head, source)
        return
    try:
        copy = tempfile.TemporaryFile(prefix="lmprint-stream-")
        with copy:
            copy.write(head)
            shutil.copyfileobj(source, copy, 1 << 20)
            copy.seek(0)
            yield copy
    except OSError as error:
        raise AudioError(f"an MP4 whose index follows its media is read from a temporary copy of the stream, which "
                         f"could not be made: {os_reason(error)}") from None


class _Replayed(io.RawIOBase):
    """The bytes of a stream read already (`head`), then the rest of it: what `_index_first` read to tell a format,
    given back to FFmpeg. Past the head, a read returns what one read of the stream gives (`readinto1`), so a live
    stream is decoded as it arrives."""

    def __init__(self, head: bytes, rest: Any):
        self._head, self._rest = memoryview(head), rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._head:
            count = min(len(buffer), len(self._head))
            buffer[:count], self._head = self._head[:count], self._head[count:]
            return count
        read = getattr(self._rest, "readinto1", None) or getattr(self._rest, "readinto", None)
        if read is not None:
            return read(buffer)
        data = self._rest.read(len(buffer))  # a file-like object that has `read` alone
        buffer[:len(data)] = data
        return len(data)


WAV_PROBE_BYTES = 32768
"""FFmpeg reads this much of a WAV file (known by its RIFF header) to probe its format, not its default 5 MB: a WAV's
header says all there is, and probing 16-bit stereo PCM took 45–50 ms of every file's decoding (docs/tuning.md)."""


def _probe_options(source) -> dict[str, str]:
    """FFmpeg's options for opening `source`: audio containers only (`AUDIO_DEMUXERS`), and a smaller probe for a
    WAV file (`WAV_PROBE_BYTES`)."""
    only_audio = {"format_whitelist": AUDIO_DEMUXERS}
    if not isinstance(source, (str, os.PathLike)) or not os.path.isfile(source):
        return only_audio  # a pipe's first bytes are FFmpeg's to read
    try:
        with open(source, "rb") as file:
            header = file.read(12)
    except OSError:
        return only_audio  # FFmpeg says why, below
    is_wav = header[:4] in (b"RIFF", b"RF64") and header[8:12] == b"WAVE"
    return {**only_audio, "probesize": str(WAV_PROBE_BYTES)} if is_wav else only_audio


@contextmanager
def _opened(source):
    """(container, its first audio stream, its title tag) of a path or binary file, with every error FFmpeg or the
    file system raises meanwhile turned into an AudioError."""
    import av  # lazy: PyAV loads FFmpeg's libraries, which `lmprint list` never needs

    try:
        with av.open(source, metadata_errors="ignore", options=_probe_options(source)) as container:
            if not container.streams.audio:
                raise AudioError("no audio stream")
            stream = container.streams.audio[0]
            tags = {**{k.lower(): v for k, v in container.metadata.items()},
                    **{k.lower(): v for k, v in stream.metadata.items()}}
            if stream.codec_context is None:  # FFmpeg reads the container but has no decoder for the codec
                raise AudioError("no decoder for its audio codec (FFmpeg reads the file but cannot decode it)")
            stream.codec_context.thread_type = "AUTO"
            rate_hz = stream.codec_context.sample_rate or stream.rate
            if not rate_hz:
                raise AudioError("not an audio file, or corrupt: its audio stream has no sample rate")
            if rate_hz < MIN_SAMPLE_RATE_HZ:
                raise AudioError(f"its sample rate, {rate_hz} Hz, is below any audio's ({MIN_SAMPLE_RATE_HZ} Hz): "
                                 "a damaged header")
            yield container, stream, (tags.get("title") or "").strip() or None
    except AudioError:
        raise
    except FileNotFoundError:
        raise AudioError("no such file") from None
    except PermissionError:
        raise AudioError("permission denied") from None
    except av.error.InvalidDataError:
        raise AudioError("not an audio file, or corrupt") from None
    except (av.error.FFmpegError, OSError, ValueError, RuntimeError) as error:
        raise AudioError(f"cannot decode: {_reason(error)}") from None
    except Exception as error:  # noqa: BLE001 - whatever a file holds, the user gets one line, never a traceback
        raise AudioError(f"cannot decode: {type(error).__name__}: {error}") from None


STEREO_TO_MONO = np.float32(np.sqrt(0.5))
"""Each channel's weight when stereo is mixed to mono: FFmpeg's, so a mix made here equals its resampler's."""

CANCELLED_MIX_DB = 20.0
"""Two channels whose sum is this many dB under their difference cancel each other when mixed: one channel's
polarity is inverted (a fault of the mastering or the transfer), and their sum is silence or noise. Their
difference is then the music, and it is taken instead, a batch of the stream at a time (`mix_stereo`). Levels are
mean magnitudes, not energies, so that a few clicks or damaged samples cannot outweigh a batch of music. On the
bench corpus's 167 stereo tracks a quarter second's sum is a median 6.4 dB over its difference, and at worst 12.9
dB under it (wide effects that play out of phase): never 20."""


def mix_stereo(left: np.ndarray, right: np.ndarray, full_scale: float = 1.0) -> np.ndarray:
    """L + R of two float32 channels (samples of `full_scale`), or L − R where the sum cancels
    (`CANCELLED_MIX_DB`): one batch of a stream at a time (a quarter second of a file, a block of raw PCM), so that
    a file of inverted polarity is mixed alike wherever a clip of it starts."""
    with np.errstate(over="ignore", invalid="ignore"):  # a float stream out of range: `finite_samples` bounds the mix
        mixed, difference = left + right, left - right
        cancelled = (_summed_magnitude(mixed, 2 * full_scale) * 10 ** (CANCELLED_MIX_DB / 20)
                     < _summed_magnitude(difference, 2 * full_scale))
    return difference if cancelled else mixed


def _summed_magnitude(samples: np.ndarray, bound: float) -> float:
    """The samples' summed magnitudes about their mean (a DC offset is no music: the two channels of a transfer
    each have their own), each sample within ± `bound` (a damaged float sample counts as full scale) and NaNs
    left out, summed without BLAS (see `loudest_rms`)."""
    bounded = np.clip(samples, np.float32(-bound), np.float32(bound))
    total = float(np.add.reduce(bounded, dtype=np.float64))
    if not math.isfinite(total):
        bounded = bounded[~np.isnan(bounded)]
        total = float(np.add.reduce(bounded, dtype=np.float64))
    if bounded.size == 0:
        return 0.0
    return float(np.add.reduce(np.abs(bounded - np.float32(total / bounded.size)), dtype=np.float64))


SAMPLE_FORMATS = {"flt": ("f4", 1.0), "dbl": ("f8", 1.0), "s16": ("i2", 32768.0), "s32": ("i4", 2147483648.0),
                  "u8": ("u1", 128.0)}
"""FFmpeg's sample formats read here (by their names without the planar `p`): numpy dtype (native byte order, as in a
decoded frame) and full scale. Unsigned 8-bit samples are offset by 128 (silence), taken off as they are read."""

BATCH_S = 0.25
"""Decoded frames are gathered into batches of this much audio, then mixed and resampled at once: a frame is 10–100
ms, and each step has a fixed cost per call."""

Plan = tuple[np.dtype, float, int, bool]
"""How frames of one format are mixed here: (sample dtype, scale to full scale 1, channels, planar)."""


def _resampled(container, stream, sample_rate_hz: int, bad: list[Exception]) -> Iterator[np.ndarray]:
    """The stream's audio as mono float32 chunks at `sample_rate_hz`: gathered into batches of `BATCH_S`, mixed to
    mono (`_Mixer`), made finite and bounded (`finite_samples`), then resampled by soxr in a stream, so memory
    never holds more than a batch of the source."""
    import soxr

    source_rate = stream.codec_context.sample_rate or stream.rate
    resampler = soxr.ResampleStream(source_rate, sample_rate_hz, 1, dtype="float32", quality="HQ")
    mixer = _Mixer(source_rate)
    batch_samples = max(1, int(BATCH_S * source_rate))
    for frame in _frames(container, stream, bad):
        mixer.add(frame)
        if mixer.gathered >= batch_samples:
            yield resampler.resample_chunk(finite_samples(mixer.take()))
    yield resampler.resample_chunk(finite_samples(mixer.take(last=True)), last=True)


class _Mixer:
    """Decoded frames, gathered and mixed to mono float32 at the stream's rate. Mono and stereo frames of FFmpeg's
    float and 16- or 32-bit integer formats are mixed in numpy as FFmpeg's resampler mixes them (stereo: (L + R) ·
    √½; L − R where the channels cancel, `mix_stereo`), a batch at a time: PyAV's resampler, frame by frame, cost
    several times the decoding itself (docs/tuning.md). Other layouts (FFmpeg weighs centre, surround and LFE
    channels), other formats, and frames at another rate than the stream's go through FFmpeg's resampler, one for
    each kind of frame in a row, flushed when the kind changes, so samples stay in order."""

    NUMPY_LAYOUTS = frozenset({"mono", "stereo", "1 channels", "2 channels"})
    """Layouts mixed here: one channel, or two that FFmpeg weighs alike (an unnamed pair included)."""

    def __init__(self, source_rate: int):
        self.source_rate = source_rate
        self.gathered = 0
        """Samples (per channel) gathered since the last `take`."""
        self._plans: dict[tuple[str, str, int], Plan | None] = {}
        self._kind: tuple[str, str, int] | None = None  # of the frames added last
        self._planes: list[list[np.ndarray]] = []  # per frame not yet mixed, its channels (views of its planes)
        self._mixed: list[np.ndarray] = []
        self._ffmpeg: Any = None  # av.AudioResampler, made when a frame needs it

    def add(self, frame) -> None:
        if frame.samples == 0:
            return
        kind = (frame.format.name, frame.layout.name, frame.sample_rate)
        if kind != self._kind:
            self._finish_kind()
            self._kind = kind
        if kind not in self._plans:
            self._plans[kind] = self._plan(frame)
        plan = self._plans[kind]
        self.gathered += frame.samples
        if plan is None:
            if self._ffmpeg is None:
                import av

                self._ffmpeg = av.AudioResampler(format="flt", layout="mono", rate=self.source_rate)
            self._through_ffmpeg(frame)
            return
        dtype, _, channels, planar = plan
        planes = frame.planes
        if planar:
            channel_planes = [np.frombuffer(planes[c], dtype, frame.samples) for c in range(channels)]
        else:
            interleaved = np.frombuffer(planes[0], dtype, frame.samples * channels)
            channel_planes = [interleaved[c::channels] for c in range(channels)]
        if dtype == np.uint8:  # silence at 128
            channel_planes = [plane.astype(np.int16) - 128 for plane in channel_planes]
        self._planes.append(channel_planes)

    def take(self, last: bool = False) -> np.ndarray:
        """The mono samples of the frames added since the last call (if `last`, with what FFmpeg still holds)."""
        if last:
            self._finish_kind()
        else:
            self._mix_planes()
        mixed = np.concatenate(self._mixed) if self._mixed else np.zeros(0, np.float32)
        self._mixed, self.gathered = [], 0
        return mixed

    def _finish_kind(self) -> None:
        """Mix what the frames of the kind added last left: numpy's planes, or FFmpeg's resampler's tail."""
        self._mix_planes()
        if self._ffmpeg is not None:
            self._through_ffmpeg(None)
            self._ffmpeg = None

    def _through_ffmpeg(self, frame) -> None:
        """FFmpeg's resampler's mono output for `frame` (None: its tail), after what is mixed already."""
        self._mixed.extend(mono.to_ndarray().reshape(-1) for mono in self._ffmpeg.resample(frame))

    def _mix_planes(self) -> None:
        if not self._planes:
            return
        assert self._kind is not None
        plan = self._plans[self._kind]
        assert plan is not None  # planes are gathered only for frames mixed here
        _, scale, channels, _ = plan
        with np.errstate(over="ignore", invalid="ignore"):  # a float stream out of range: `finite_samples` bounds it
            mono = np.concatenate([frame[0] for frame in self._planes]).astype(np.float32)
            if channels == 2:
                mono = mix_stereo(mono, np.concatenate([frame[1] for frame in self._planes]).astype(np.float32),
                                  full_scale=1.0 / scale)
            if channels == 2 or scale != 1.0:
                mono *= np.float32(scale) * (STEREO_TO_MONO if channels == 2 else np.float32(1.0))
        self._mixed.append(mono)
        self._planes = []

    def _plan(self, frame) -> Plan | None:
        """How frames like this one are mixed here; None: by FFmpeg."""
        kind, channels = frame.format.name.removesuffix("p"), len(frame.layout.channels)
        if (frame.layout.name not in self.NUMPY_LAYOUTS or frame.sample_rate != self.source_rate
                or kind not in SAMPLE_FORMATS):
            return None
        dtype, full_scale = SAMPLE_FORMATS[kind]
        return np.dtype(dtype), 1.0 / full_scale, channels, frame.format.is_planar


def stream(source: AudioSource, sample_rate_hz: int) -> Iterator[np.ndarray]:
    """Mono float32 chunks of a path or a binary file (standard input: any format FFmpeg can read from a pipe) at
    `sample_rate_hz`, as they decode: for inputs of any length, in bounded memory. Raises AudioError."""
    _, readable = _readable(source)
    bad: list[Exception] = []  # the errors of packets that did not decode
    decoded = False
    with readable as opened, _opened(opened) as (container, audio_stream, _):
        for chunk in _resampled(container, audio_stream, sample_rate_hz, bad):
            if chunk.size:
                decoded = True
                yield chunk
    if not decoded and bad:  # not one packet decoded: why, as `decode` says
        raise AudioError(f"cannot decode: {_reason(bad[0])}")


RAW_FORMATS = {"s16le": "s16", "s32le": "s32", "f32le": "flt"}
"""Raw PCM sample formats `stream_raw` reads (FFmpeg's names), little-endian, as their `SAMPLE_FORMATS` kind."""


def stream_raw(file, sample_format: str, source_rate_hz: int, channels: int, sample_rate_hz: int,
               block_s: float = 0.5) -> Iterator[np.ndarray]:
    """Mono float32 chunks at `sample_rate_hz` of headerless PCM read from a binary file (what `ffmpeg -f s16le -`
    writes), `block_s` seconds of it at a time."""
    import soxr

    if sample_format not in RAW_FORMATS:
        raise AudioError(f"unknown raw format {sample_format!r} (known: {', '.join(RAW_FORMATS)})")
    if not MIN_SAMPLE_RATE_HZ <= source_rate_hz <= MAX_SAMPLE_RATE_HZ:
        raise AudioError(f"a raw sample rate of {source_rate_hz} Hz is not audio's "
                         f"({MIN_SAMPLE_RATE_HZ:,} to {MAX_SAMPLE_RATE_HZ:,} Hz)")
    if not 1 <= channels <= MAX_CHANNELS:
        raise AudioError(f"raw PCM of {channels} channels: at most {MAX_CHANNELS}")
    native, full_scale = SAMPLE_FORMATS[RAW_FORMATS[sample_format]]
    dtype = "<" + native
    frame_bytes = np.dtype(dtype).itemsize * channels
    block_bytes = max(1, int(block_s * source_rate_hz)) * frame_bytes
    resampler = soxr.ResampleStream(source_rate_hz, sample_rate_hz, 1, dtype="float32", quality="HQ")
    pending = b""
    while True:
        data = file.read(block_bytes)
        if not data:
            break
        data = pending + data
        usable = len(data) - len(data) % frame_bytes
        data, pending = data[:usable], data[usable:]
        # in full scales, then made finite and bounded, before channels are mixed: float samples near float32's
        # largest would overflow their sum (NaNs of any bytes are dropped just after, so scaling them is quiet)
        with np.errstate(invalid="ignore"):
            interleaved = finite_samples(np.frombuffer(data, dtype).astype(np.float32) / np.float32(full_scale))
        frames = interleaved.reshape(-1, channels)
        yield resampler.resample_chunk(mix_stereo(frames[:, 0], frames[:, 1]) * np.float32(0.5) if channels == 2
                                       else frames.mean(axis=1))
    yield resampler.resample_chunk(np.zeros(0, np.float32), last=True)


def _frames(container, stream, bad: list[Exception]):
    """The stream's decoded frames, packet by packet. A packet FFmpeg cannot decode is skipped and its error kept
    in `bad`, as FFmpeg's own player does: one damaged packet must not cost the whole song."""
    import av

    for packet in container.demux(stream):
        try:
            yield from packet.decode()
        except av.error.FFmpegError as error:
            bad.append(error)


def _reason(error: Exception) -> str:
    return getattr(error, "strerror", None) or str(error) or type(error).__name__


class _Growing:
    """A float32 array that grows by appending, without keeping a list of chunks and a concatenated copy."""

    def __init__(self) -> None:
        self._data = np.zeros(0, np.float32)
        self.size = 0

    def reserve(self, capacity: int) -> None:
        if capacity > self._data.size:
            grown = np.empty(capacity, np.float32)
            grown[:self.size] = self._data[:self.size]
            self._data = grown

    def append(self, chunk: np.ndarray) -> None:
        if chunk.size == 0:
            return
        if self.size + chunk.size > self._data.size:
            self.reserve(max(self.size + chunk.size, int(self._data.size * 1.5) + 65536))
        self._data[self.size:self.size + chunk.size] = chunk
        self.size += chunk.size

    def samples(self) -> np.ndarray:
        return self._data[:self.size]


def check_usable(signal: np.ndarray, sample_rate_hz: int, min_duration_s: float) -> None:
    """Refuse audio that is too short or silent throughout, with the reason."""
    check_level(signal.size, loudest_rms(signal, sample_rate_hz), sample_rate_hz, min_duration_s)


def loudest_rms(samples: np.ndarray, sample_rate_hz: int) -> float:
    """The RMS of the loudest `LEVEL_SECOND_S` of the samples (all of them, if shorter), from blocks of whole
    seconds, so that a 2-hour file needs no second full-size copy. Squares summed, not np.dot: a BLAS dot wakes
    OpenBLAS's threads, which then spin on the other cores for a while after every query."""
    second = max(1, int(LEVEL_SECOND_S * sample_rate_hz))
    if samples.size <= second:
        return float(np.sqrt(np.add.reduce(np.square(samples, dtype=np.float64)) / max(samples.size, 1)))
    block = second * max(1, (1 << 20) // second)
    loudest = 0.0
    for start in range(0, samples.size, block):
        part = samples[start:start + block]
        whole = part[:part.size // second * second].reshape(-1, second)
        energies = np.add.reduce(np.square(whole, dtype=np.float64), axis=1)
        if part.size % second:  # the last, partial second: as loud as it is over a whole one at most
            energies = np.r_[energies, np.add.reduce(np.square(part[whole.size:], dtype=np.float64))]
        loudest = max(loudest, float(energies.max(initial=0.0)))
    return float(np.sqrt(loudest / second))


def check_level(n_samples: int, loudest: float, sample_rate_hz: int, min_duration_s: float) -> None:
    """`check_usable` from a signal's length and its loudest second's RMS (`loudest_rms`): for a stream, never held
    whole."""
    duration_s = n_samples / sample_rate_hz
    if duration_s < min_duration_s:
        raise AudioError(f"too short ({duration_s:.1f} s; at least {min_duration_s:g} s needed)")
    if loudest < SILENCE_RMS:
        raise AudioError("silent")
