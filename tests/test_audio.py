import io
import os
import re

import numpy as np
import pytest

from bench.audio_io import write
from landmark import audio
from lmprint.errors import AudioError
from tests.conftest import FORMATS, rendered, write_surround_flac


@pytest.mark.parametrize("extension", FORMATS)
def test_every_format_decodes_to_mono_float32_at_the_engine_rate(library_dir, extension):
    seed = FORMATS.index(extension)
    samples = audio.load(library_dir / f"song{seed}.{extension}", 8000)
    assert samples.dtype == np.float32 and samples.ndim == 1
    assert abs(samples.size / 8000 - 40.0) < 0.1  # codec padding is a few ms at most
    reference = rendered(seed, 40.0, 8000)
    # the decoded content is the song: correlation against the reference at the best small lag
    n = 8000 * 10
    best = max(np.corrcoef(samples[lag:lag + n], reference[:n])[0, 1] for lag in range(0, 400, 1))
    assert best > 0.8  # lossy codecs included


@pytest.mark.parametrize("extension", ["flac", "mp3", "ogg"])
def test_title_comes_from_the_tags(tmp_path, extension):
    tagged, untagged = tmp_path / f"tagged.{extension}", tmp_path / f"untagged.{extension}"
    write(tagged, rendered(1, 2.0, 22050), 22050, title="Song Of The Tides")
    write(untagged, rendered(1, 2.0, 22050), 22050)
    assert audio.decode(tagged, 8000).title == "Song Of The Tides"
    assert audio.decode(untagged, 8000).title is None


def test_surround_96k_flac_is_downmixed_and_resampled(tmp_path):
    path = tmp_path / "multi.flac"
    write_surround_flac(path, np.sin(2 * np.pi * 1000 * np.arange(96000 * 2) / 96000).astype(np.float32), 96000)
    samples = audio.load(path, 8000)
    assert abs(samples.size - 16000) < 50
    spectrum = np.abs(np.fft.rfft(samples[:8000]))
    assert abs(np.argmax(spectrum) - 1000) <= 2  # the 1 kHz tone survives, at the right frequency


def audio_frame(sample_format: str, layout: str, rate: int, count: int, seed: int):
    """A frame of distinct tones per channel (a channel swap or a wrong scale shows), in any FFmpeg sample format."""
    import av

    time_s = np.arange(count) / rate
    channels = len(av.AudioLayout(layout).channels)
    planes = np.stack([np.sin(2 * np.pi * (300 + 500 * c + 10 * seed) * time_s) * (0.9 - 0.1 * c)
                       for c in range(channels)])
    kind = sample_format.removesuffix("p")
    values = ((planes * 32767).astype(np.int16) if kind == "s16" else (planes * 2 ** 31 * 0.99).astype(np.int32)
              if kind == "s32" else (planes * 127 + 128).astype(np.uint8) if kind == "u8"
              else planes.astype(np.float32 if kind == "flt" else np.float64))
    frame = av.AudioFrame.from_ndarray(values if sample_format.endswith("p") else values.T.reshape(1, -1).copy(),
                                       format=sample_format, layout=layout)  # planar: a row a channel
    frame.sample_rate = rate
    return frame


def ffmpeg_mix(frames, rate: int) -> np.ndarray:
    import av

    resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
    mixed = [mono.to_ndarray().reshape(-1) for frame in frames for mono in resampler.resample(frame)]
    return np.concatenate(mixed + [mono.to_ndarray().reshape(-1) for mono in resampler.resample(None)])


@pytest.mark.parametrize("sample_format, layout", [("s16", "stereo"), ("fltp", "stereo"), ("s32p", "stereo"),
                                                    ("u8", "stereo"), ("u8p", "mono"),
                                                    ("dbl", "stereo"), ("flt", "mono"), ("s16p", "mono"),
                                                    ("fltp", "5.1"), ("fltp", "FC+LFE")])
def test_frames_are_mixed_to_mono_as_ffmpeg_mixes_them(sample_format, layout):
    mixer = audio._Mixer(44100)
    mixer.add(audio_frame(sample_format, layout, 44100, 1000, 0))
    mixed = mixer.take(last=True)
    assert mixed.dtype == np.float32 and mixed.size == 1000
    np.testing.assert_allclose(mixed, ffmpeg_mix([audio_frame(sample_format, layout, 44100, 1000, 0)], 44100),
                               atol=1e-6)
    in_numpy = layout in ("mono", "stereo")  # FFmpeg weighs the channels of other layouts (it drops an LFE)
    assert all((plan is not None) == in_numpy for plan in mixer._plans.values())


def test_a_stream_of_frames_of_several_kinds_is_mixed_in_order():
    import gc

    # runs of frames of one kind: stereo at the stream's rate (numpy), at another rate, in 5.1 (both FFmpeg's)
    runs = [("s16", "stereo", 44100), ("fltp", "stereo", 48000), ("fltp", "5.1", 44100), ("s16", "stereo", 44100)]
    mixer, taken = audio._Mixer(44100), []
    for run, (sample_format, layout, rate) in enumerate(runs):
        for seed in range(3):
            mixer.add(audio_frame(sample_format, layout, rate, 1024, 3 * run + seed))  # the frame is dropped after
            gc.collect()
        taken.append(mixer.take())  # a batch ends mid-stream
    mixed = np.concatenate(taken + [mixer.take(last=True)])
    expected = np.concatenate([ffmpeg_mix([audio_frame(f, layout, rate, 1024, 3 * run + seed) for seed in range(3)],
                                          44100) for run, (f, layout, rate) in enumerate(runs)])
    assert mixed.size == expected.size
    np.testing.assert_allclose(mixed, expected, atol=1e-6)


@pytest.mark.parametrize(("channels", "rf64"), [(1, False), (2, False), (6, False), (2, True)])
def test_a_wav_file_read_with_a_short_probe_decodes_as_a_stream_of_it_does(tmp_path, channels, rf64):
    """A WAV (and an RF64 WAV, the 64-bit one broadcast recorders write) is probed in a few KB, and decodes as a
    stream of it does."""
    import av

    path = tmp_path / "clip.wav"
    tones = np.stack([np.sin(2 * np.pi * (200 + 300 * c) * np.arange(48000 * 3) / 48000) for c in range(channels)])
    with av.open(str(path), "w", format="wav", options={"rf64": "always" if rf64 else "never"}) as container:
        stream = container.add_stream("pcm_s16le", rate=48000, layout={1: "mono", 2: "stereo", 6: "5.1"}[channels])
        frame = av.AudioFrame.from_ndarray((tones.T.reshape(1, -1) * 20000).astype(np.int16), format="s16",
                                           layout=stream.layout)
        frame.sample_rate = 48000
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    assert path.read_bytes()[:4] == (b"RF64" if rf64 else b"RIFF")
    probes = []
    real_open = av.open

    def opened(source, *args, **kwargs):  # what FFmpeg is asked to probe, by what it opens
        probes.append(kwargs.get("options", {}).get("probesize"))
        return real_open(source, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(av, "open", opened)
        decoded = audio.decode(path, 8000)
    assert probes == [str(audio.WAV_PROBE_BYTES)]
    with open(path, "rb") as file:  # a file object is opened with FFmpeg's default probe
        streamed = np.concatenate(list(audio.stream(file, 8000)))
    assert decoded.declared_s == 3.0 and decoded.samples.size == 24000
    np.testing.assert_array_equal(decoded.samples, streamed)


@pytest.mark.parametrize("content, name, reason", [
    (b"", "empty.wav", "empty file"),
    (bytes(range(256)) * 40, "noise.mp3", "not an audio file, or corrupt"),
    (b"this is a text file, not audio\n" * 50, "text.wav", "not an audio file, or corrupt"),
    (np.random.default_rng(0).bytes(20_000), "random.flac", "not an audio file, or corrupt"),  # probed as FLAC
])
def test_bad_files_raise_audio_error_with_a_reason(tmp_path, content, name, reason):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(AudioError) as caught:
        audio.load(path, 8000)
    assert reason in str(caught.value) and str(caught.value)


def test_missing_file_and_directory_are_audio_errors(tmp_path):
    with pytest.raises(AudioError, match="no such file"):
        audio.load(tmp_path / "nope.flac", 8000)
    with pytest.raises(AudioError, match="directory"):
        audio.load(tmp_path, 8000)


def test_a_truncated_file_decodes_up_to_the_damage(library_dir, tmp_path):
    for extension in ("ogg", "mp3"):
        data = (library_dir / f"song{FORMATS.index(extension)}.{extension}").read_bytes()
        cut = tmp_path / f"cut.{extension}"
        cut.write_bytes(data[: len(data) // 3])
        samples = audio.load(cut, 8000)
        assert 5 * 8000 < samples.size < 20 * 8000  # a third of the bytes of 40 s (Vorbis spends them unevenly)
        whole = audio.load(library_dir / f"song{FORMATS.index(extension)}.{extension}", 8000)
        kept = samples.size - 8000  # the song's own start, up to a second before the cut
        assert np.corrcoef(samples[:kept], whole[:kept])[0, 1] > 0.99, extension


def test_a_wav_or_an_mp3_cut_short_says_how_long_it_declares_where_ffmpeg_does_not(tmp_path):
    """FFmpeg bounds a WAV's duration by the file's size and estimates an MP3's from its size: a download cut short
    then decodes "whole". Its header's data size, or an ID3 TLEN tag, says how long the file was written, so it
    gets the same warning as a cut FLAC; an intact file gets none."""
    song = rendered(3, 40.0, 22050)
    for name, tags in (("song.wav", None), ("song.mp3", {"TLEN": "40000"})):
        whole = tmp_path / name
        write(whole, song, 22050, tags=tags)
        assert audio.decode(whole, 8000).warning is None
        cut = tmp_path / f"cut-{name}"
        cut.write_bytes(whole.read_bytes()[:whole.stat().st_size // 3])
        warning = audio.decode(cut, 8000).warning
        assert warning is not None and re.search(r"decoded only 1\d\.\d s of the 40\.0 s it declares", warning), warning
    # what a file declares that says nothing of its length: a WAV written to a pipe by sox (it cannot go back to
    # fill in the data size, and leaves 2^31 - 4096), a TLEN tag that is no number of ms, or an absurd one
    piped = bytearray((tmp_path / "song.wav").read_bytes())
    at = piped.index(b"data") + 4
    piped[at:at + 4] = (0x7FFFF000).to_bytes(4, "little")
    (tmp_path / "piped.wav").write_bytes(piped)
    assert audio.decode(tmp_path / "piped.wav", 8000).warning is None
    for tlen in ("\u00b2", "999999999999999"):
        write(tmp_path / "tagged.mp3", song, 22050, tags={"TLEN": tlen})
        decoded = audio.decode(tmp_path / "tagged.mp3", 8000)
        assert decoded.warning is None and abs(decoded.duration_s - 40.0) < 0.2


def test_a_wav_cut_short_declares_the_length_its_header_says_whichever_of_its_rates_is_wrong(tmp_path):
    """A PCM WAV's "average bytes a second" copies its sample rate times its block size, and a writer may get it
    wrong: an intact file then got a false "decoded only" warning, and a cut one declared the length its size
    and that figure made. An intact WAV declares what FFmpeg decodes; a cut one its data's size over the sample
    rate times the block size, in a plain header as in an extensible one, or over the average where the block
    size is the wrong one instead."""
    import struct

    song = rendered(3, 20.0, 22050)
    data = (song * 2 ** 14).astype("<i2").tobytes()
    guid = bytes.fromhex("0100000000001000800000aa00389b71")  # KSDATAFORMAT_SUBTYPE_PCM
    for extensible, channels, average, block in ((False, 1, 22050, 2), (False, 1, 1000, 2), (False, 1, 0, 2),
                                                 (True, 1, 1000, 2), (False, 2, 88200, 2), (False, 2, 88200, 8)):
        fmt = struct.pack("<HHIIHH", 0xFFFE if extensible else 1, channels, 22050, average, block, 16)
        if extensible:
            fmt += struct.pack("<HHI", 22, 16, 4) + guid
        body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data))
        wav = b"RIFF" + struct.pack("<I", len(body) + len(data)) + body + data
        (tmp_path / "lying.wav").write_bytes(wav)
        decoded = audio.decode(tmp_path / "lying.wav", 8000)
        case = (extensible, channels, average, block)
        assert decoded.warning is None and abs(decoded.duration_s * channels - 20.0) < 0.01, (case, decoded.warning)
        (tmp_path / "cut.wav").write_bytes(wav[:len(wav) // 3])
        warning = audio.decode(tmp_path / "cut.wav", 8000).warning
        assert warning is not None and f"of the {20.0 / channels:.1f} s it declares" in warning, (case, warning)
    # a chunk of odd size before the data (a title of 5 bytes) is padded to an even one: the data's header follows
    fmt = struct.pack("<HHIIHH", 1, 1, 22050, 44100, 2, 16)
    info = b"INFO" + b"INAM" + struct.pack("<I", 5) + b"Title"
    body = (b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"LIST" + struct.pack("<I", len(info)) + info
            + b"\0" + b"data" + struct.pack("<I", len(data)))
    wav = b"RIFF" + struct.pack("<I", len(body) + len(data)) + body + data
    (tmp_path / "cut.wav").write_bytes(wav[:len(wav) // 3])
    decoded = audio.decode(tmp_path / "cut.wav", 8000)
    assert decoded.declared_s == pytest.approx(20.0, abs=0.01) and "of the 20.0 s it declares" in decoded.warning


def test_a_header_that_lies_about_length_or_rate_is_neither_allocated_nor_resampled_into_hours(tmp_path):
    """An MP3 whose Xing header claims 2^32 frames (FFmpeg takes a duration of 31 years from it) decodes as the
    20 s it holds: the buffer was sized from the claim (3 TiB) and the file refused for want of memory. A WAV
    whose header says 1 Hz is refused in one line: resampled, each second of it became hours of audio."""
    import wave

    song = rendered(2, 20.0, 22050)
    write(tmp_path / "song.mp3", song, 22050)
    lying = bytearray((tmp_path / "song.mp3").read_bytes())
    at = max(lying.find(b"Xing"), lying.find(b"Info"))
    assert at > 0 and int.from_bytes(lying[at + 4:at + 8], "big") & 1  # its frame count is there
    lying[at + 8:at + 12] = (0xFFFFFFFF).to_bytes(4, "big")
    (tmp_path / "lying.mp3").write_bytes(lying)
    for limit_s in (None, 5.0):
        decoded = audio.decode(tmp_path / "lying.mp3", 8000, limit_s)
        assert abs(decoded.samples.size / 8000 - (limit_s or 20.0)) < 0.2
    with wave.open(str(tmp_path / "one-hz.wav"), "wb") as slow:
        slow.setnchannels(1)
        slow.setsampwidth(2)
        slow.setframerate(1)
        slow.writeframes((song * 2 ** 14).astype("<i2").tobytes())
    with pytest.raises(AudioError, match=r"its sample rate, 1 Hz, is below any audio's \(4000 Hz\)"):
        audio.decode(tmp_path / "one-hz.wav", 8000)
    for rate, channels in ((1, 2), (2 ** 31, 2), (44100, 2_000_000)):  # raw PCM: what it is read with
        with pytest.raises(AudioError, match="raw"):
            next(audio.stream_raw(io.BytesIO(bytes(1000)), "s16le", rate, channels, 8000))


def test_a_file_none_of_whose_packets_decode_says_why_when_streamed_as_when_decoded(tmp_path):
    """A WAV of 0 channels: FFmpeg opens it and refuses every packet. `monitor`, which streams, said only "no audio
    in it"; it now gives the packets' reason, as `match` and `add` do."""
    import struct

    pcm = (rendered(1, 3.0, 16000) * 2 ** 14).astype("<i2").tobytes()
    fmt = struct.pack("<HHIIHH", 1, 0, 16000, 0, 0, 16)  # PCM, 0 channels, 16 kHz, 16 bits
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(pcm)) + pcm
    (tmp_path / "none.wav").write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    with pytest.raises(AudioError, match="cannot decode") as decoded:
        audio.decode(tmp_path / "none.wav", 8000)
    with pytest.raises(AudioError) as streamed:
        list(audio.stream(tmp_path / "none.wav", 8000))
    assert str(streamed.value) == str(decoded.value)


def write_opus_with_a_bad_packet(path, signal: np.ndarray, rate: int, bad_packet: int = 100) -> None:
    """An Ogg/Opus file of `signal` whose packet number `bad_packet` is garbage inside a valid Ogg page: what one
    damaged packet in a file looks like to the decoder (FFmpeg's player skips it)."""
    import os

    import av

    clean = str(path) + ".clean.ogg"
    with av.open(clean, "w") as container:
        stream = container.add_stream("libopus", rate=rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(signal[None, :].astype(np.float32), format="flt", layout="mono")
        frame.sample_rate = rate
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    with av.open(clean) as source, av.open(str(path), "w", format="ogg") as target:
        inbound = source.streams.audio[0]
        outbound = target.add_stream_from_template(inbound)
        for number, packet in enumerate(p for p in source.demux(inbound) if p.dts is not None):
            if number == bad_packet:
                packet = av.Packet(b"\xff" * 5 + bytes(range(50)))
            packet.stream = outbound
            target.mux(packet)
    os.remove(clean)


def test_a_bad_packet_is_skipped_not_fatal(tmp_path):
    path = tmp_path / "one bad packet.opus"
    write_opus_with_a_bad_packet(path, rendered(2, 20.0, 48000), 48000)
    decoded = audio.decode(path, 8000)
    assert decoded.bad_packets == 1 and decoded.warning is None
    assert abs(decoded.duration_s - 20.0) < 0.1  # all of it but the 20 ms of the bad packet
    reference = rendered(2, 20.0, 8000)
    n = 8000 * 4  # the audio after the bad packet (at 2 s) is the song's
    best = max(np.corrcoef(decoded.samples[-n - lag:decoded.samples.size - lag], reference[-n:])[0, 1]
               for lag in range(0, 400))
    assert best > 0.8


def test_a_file_much_shorter_than_it_declares_decodes_with_a_warning(library_dir, tmp_path):
    data = (library_dir / f"song{FORMATS.index('flac')}.flac").read_bytes()
    cut = tmp_path / "cut.flac"
    cut.write_bytes(data[: len(data) // 10])
    decoded = audio.decode(cut, 8000)
    assert decoded.declared_s == pytest.approx(40.0, abs=0.1) and decoded.duration_s < 8
    assert decoded.warning and "of the 40.0 s it declares" in decoded.warning
    assert audio.decode(library_dir / f"song{FORMATS.index('flac')}.flac", 8000).warning is None
    assert audio.decode(cut, 8000, max_duration_s=2.0).warning is None  # only the start was asked for
    cut.write_bytes(data[: len(data) * 3 // 4])  # three quarters: still short of 0.9 of it
    decoded = audio.decode(cut, 8000)
    assert 25 < decoded.duration_s < 35 and decoded.warning and "of the 40.0 s it declares" in decoded.warning


def write_stereo_flac(path, left: np.ndarray, right: np.ndarray, rate: int, codec: str = "flac") -> None:
    """Two channels as a FLAC file, 16-bit (or with `codec` "pcm_u8" or "pcm_f32le", an 8-bit or float WAV)."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate, layout="stereo")
        interleaved = np.stack([left, right]).T.reshape(1, -1)
        if codec == "pcm_u8":
            samples, sample_format = (interleaved * 127 + 128).astype(np.uint8), "u8"
        elif codec == "pcm_f32le":
            samples, sample_format = interleaved.astype(np.float32), "flt"
        else:
            samples, sample_format = (interleaved * 30000).astype(np.int16), "s16"
        frame = av.AudioFrame.from_ndarray(samples, format=sample_format, layout="stereo")
        frame.sample_rate = rate
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)


def test_stereo_of_inverted_polarity_decodes_as_its_music_not_as_silence(tmp_path):
    """One channel's polarity inverted (R = −L, a mastering or transfer fault): mixed as L + R it is digital silence,
    and `add` refused the file as "silent". Where the sum cancels, the difference is the music. A stereo mix whose
    channels differ (here L and R a song and another, the song over its own echo, or over itself inverted at 0.6)
    is mixed as before."""
    import av

    music, other = rendered(0, 6.0, 22050), rendered(1, 6.0, 22050)
    hiss = 1e-3 * np.random.default_rng(5).standard_normal(music.size).astype(np.float32)  # 60 dB down
    write_stereo_flac(tmp_path / "inverted.flac", music, -music + hiss, 22050)
    decoded = audio.load(tmp_path / "inverted.flac", 22050)
    assert np.corrcoef(decoded, music[:decoded.size])[0, 1] > 0.999
    audio.check_usable(decoded, 22050, 1.0)
    write_stereo_flac(tmp_path / "inverted.wav", music, -music, 22050, codec="pcm_u8")  # 8-bit samples too
    decoded = audio.load(tmp_path / "inverted.wav", 22050)
    assert np.corrcoef(decoded, music[:decoded.size])[0, 1] > 0.99
    # a transfer's channels with their own DC offsets, and damaged float samples: neither decides a batch's mix
    left, right = music * 0.5 + 0.05, -music * 0.5 + 0.02
    right[[100, 30000, 60000]] = [np.nan, np.inf, -np.inf]
    left[[10000, 40000, 70000]] = right[[10000, 40000, 70000]] = [1.0, -1.0, 3e4]  # clicks, in and out of range
    write_stereo_flac(tmp_path / "damaged.wav", left, right, 22050, codec="pcm_f32le")
    decoded = audio.load(tmp_path / "damaged.wav", 22050)
    assert np.isfinite(decoded).all()
    clicks = np.zeros(decoded.size, bool)
    for at in (10000, 40000, 70000):
        clicks[at - 50:at + 50] = True  # the resampler's filter spreads a click
    parts = [part[~clicks[part]] for part in np.array_split(np.arange(decoded.size), 24)]
    assert min(np.corrcoef(decoded[part], music[part])[0, 1] for part in parts) > 0.99  # every quarter second
    raw = (np.stack([music, -music]).T.reshape(-1) * 0.5).astype("<f4").tobytes()  # `monitor -` of raw PCM
    streamed = np.concatenate(list(audio.stream_raw(io.BytesIO(raw), "f32le", 22050, 2, 22050)))
    assert np.corrcoef(streamed, music[:streamed.size])[0, 1] > 0.999
    echo = np.r_[np.zeros(441, np.float32), music[:-441]]  # 20 ms later: wide, but far from cancelling
    opposed = -0.6 * music  # the sum 12 dB under the difference (the corpus's widest, 12.9 dB): not cancelled
    for right in (other, echo, opposed):
        write_stereo_flac(tmp_path / "stereo.flac", music, right, 22050)
        with av.open(str(tmp_path / "stereo.flac")) as container:
            expected = ffmpeg_mix(list(container.decode(audio=0)), 22050)
        np.testing.assert_allclose(audio.load(tmp_path / "stereo.flac", 22050), expected, atol=1e-5)


def test_too_short_and_silent_audio_are_refused():
    with pytest.raises(AudioError, match="too short"):
        audio.check_usable(np.ones(1600, np.float32) * 0.1, 8000, 1.0)
    with pytest.raises(AudioError, match="silent"):
        audio.check_usable(np.zeros(8000 * 30, np.float32), 8000, 1.0)
    audio.check_usable(rendered(0, 2.0, 8000), 8000, 1.0)  # real music passes
    with pytest.raises(AudioError, match=r"too short \(0\.5 s"):  # counted at the samples' own rate
        audio.check_usable(rendered(0, 0.5, 44100), 44100, 1.0)


def test_quiet_music_after_a_long_silence_is_not_silent(built_index, tmp_path):
    """A hidden track: 10 s of quiet music (−64 dBFS RMS) after 600 s of silence averages under the silence level
    (−82 dBFS over the file), and was refused as "silent" by `add` and, after naming its song, by `monitor`. Silent
    means silent throughout: the loudest second decides, however the file is read."""
    music = rendered(0, 10.0, 8000)
    music *= 6e-4 / np.sqrt(np.mean(music.astype(np.float64) ** 2))
    hidden = np.concatenate([np.zeros(600 * 8000, np.float32), music])
    assert np.sqrt(np.mean(hidden.astype(np.float64) ** 2)) < audio.SILENCE_RMS
    audio.check_usable(hidden, 8000, 1.0)
    assert audio.loudest_rms(hidden, 8000) == pytest.approx(max(
        np.sqrt(np.mean(hidden[start:start + 8000].astype(np.float64) ** 2)) for start in range(0, hidden.size, 8000)))
    with pytest.raises(AudioError, match="silent"):
        audio.check_usable(hidden * 0.1, 8000, 1.0)  # −84 dBFS at its loudest
    first = np.concatenate([music, np.zeros(600 * 8000, np.float32)])  # the other way round: its start decides
    audio.check_usable(first, 8000, 1.0)
    assert audio.loudest_rms(first, 8000) == pytest.approx(max(
        np.sqrt(np.mean(first[start:start + 8000].astype(np.float64) ** 2)) for start in range(0, first.size, 8000)))
    from tests.conftest import run_cli

    write(tmp_path / "hidden.flac", hidden, 8000)  # a monitor reads it a chunk at a time
    result = run_cli("monitor", tmp_path / "hidden.flac", db=built_index)
    assert result.returncode == 0 and "silent" not in result.stderr, result.stderr


def test_raw_float_pcm_of_any_bytes_streams_finite_samples_without_warnings():
    """Random bytes as f32le hold NaNs, infinities and values near float32's largest: two channels of those
    overflowed a float32 mean (numpy warned on every block), and resampled they overflowed the filter to NaN. They
    come out finite, and a real signal unchanged."""
    import io
    import warnings

    stereo = np.stack([rendered(0, 2.0, 8000)] * 2, axis=1).astype("<f4")
    soup = np.random.default_rng(3).bytes(200_000)
    extremes = np.array([[3e38, 3e38], [np.nan, 1.0], [-np.inf, 0.5]] * 1000, "<f4")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = {name: np.concatenate(list(audio.stream_raw(io.BytesIO(data), "f32le", 8000, 2, 8000)))
               for name, data in (("soup", soup), ("extremes", extremes.tobytes()), ("real", stereo.tobytes()))}
        resampled = np.concatenate(list(audio.stream_raw(io.BytesIO(soup), "f32le", 44100, 2, 8000)))
    assert all(np.isfinite(samples).all() for samples in [*out.values(), resampled]) and resampled.size > 4000
    assert out["soup"].size == 200_000 // 8 and out["extremes"].size == 3000
    assert np.allclose(out["real"], stereo[:, 0], atol=1e-3)
    as_s16 = np.round(stereo * 32767).astype("<i2").tobytes()  # integer PCM is bounded in full scales, not counts
    s16 = np.concatenate(list(audio.stream_raw(io.BytesIO(as_s16), "s16le", 8000, 2, 8000)))
    assert np.allclose(s16, stereo[:, 0], atol=1e-3)


def test_music_with_scattered_nan_samples_decodes_as_the_music_not_as_silence(tmp_path):
    """A float WAV with a NaN every 1,000 samples (a damaged file, a buggy plug-in): a NaN reaching the resampler
    spread over its filter, so nearly everything came out NaN, was zeroed, and the song was "silent". Zeroed before
    resampling, each costs one sample."""
    import struct

    clean = rendered(3, 20.0, 22050)
    damaged = clean.copy()
    damaged[::1000] = np.nan
    data = damaged.astype("<f4").tobytes()
    fmt = struct.pack("<HHIIHH", 3, 1, 22050, 22050 * 4, 4, 32)  # WAVE_FORMAT_IEEE_FLOAT, mono
    (tmp_path / "nan.wav").write_bytes(b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVEfmt "
                                       + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data))
                                       + data)
    decoded, reference = audio.load(tmp_path / "nan.wav", 8000), rendered(3, 20.0, 8000)
    assert np.isfinite(decoded).all() and decoded.size == reference.size
    assert np.corrcoef(decoded, reference)[0, 1] > 0.99


def test_a_tag_that_is_not_utf8_neither_stops_decoding_nor_hides_the_declared_duration(tmp_path):
    """A WAV with a Latin-1 title: the engine decodes it, and the duration a server caps uploads by is read."""
    import struct

    from lmprint.files import declared_duration_s

    path = tmp_path / "tagged.wav"
    write(path, rendered(3, 3.0, 8000), 8000)
    data = bytearray(path.read_bytes())
    text = b"caf\xe9 \xff\x00"  # not UTF-8
    tag = b"INAM" + struct.pack("<I", len(text)) + text
    data += b"LIST" + struct.pack("<I", 4 + len(tag)) + b"INFO" + tag
    data[4:8] = struct.pack("<I", len(data) - 8)
    path.write_bytes(data)
    assert declared_duration_s(path) == pytest.approx(3.0, abs=0.05)
    assert audio.load(path, 8000).size == pytest.approx(3 * 8000, abs=100)


def test_an_mp4_whose_index_follows_its_media_decodes_from_a_pipe_and_a_named_pipe(tmp_path):
    """FFmpeg, recorders and phones write an MP4's index (`moov`) after its media: from a pipe FFmpeg cannot seek
    back to it, so `cat clip.m4a | lmprint monitor -` and `lmprint match <(cat clip.m4a)` said "not an audio file,
    or corrupt" while the file itself decoded. Such a stream is copied to a temporary file first."""
    import subprocess
    import threading

    path = tmp_path / "recording.m4a"
    write(path, rendered(3, 12.0, 8000), 8000)
    head = path.read_bytes()[:64]
    assert head[4:8] == b"ftyp" and head.find(b"mdat") > 0 and head.find(b"moov") < 0  # the index comes last
    expected = audio.decode(path, 8000).samples
    with subprocess.Popen(["cat", str(path)], stdout=subprocess.PIPE) as cat:
        assert cat.stdout is not None
        streamed = np.concatenate(list(audio.stream(cat.stdout, 8000)))
    assert np.array_equal(streamed, expected)
    fifo = tmp_path / "fifo"
    for read in (lambda: audio.decode(fifo, 8000).samples, lambda: np.concatenate(list(audio.stream(fifo, 8000)))):
        os.mkfifo(fifo)
        writer = threading.Thread(target=lambda: fifo.write_bytes(path.read_bytes()))
        writer.start()
        try:
            assert np.array_equal(read(), expected)
        finally:
            writer.join()
            fifo.unlink()


def test_only_an_mp4_whose_index_follows_its_media_is_copied_before_a_pipe_is_read():
    """`_index_first` reads a pipe's first boxes, not what its first read holds (4 KB: a recorder may leave room for
    the index in a `free` box of kilobytes, and a writer's first write may be a few bytes), and gives back every
    byte it read. An MP4 with its index first, a fragmented (live) one and other formats are read as they come, and
    so is one whose head boxes run past `MAX_HEAD_BYTES` (1 MiB): no more of a pipe is held in memory to look."""
    import threading
    import time

    def box(kind, payload=b""):
        return (8 + len(payload)).to_bytes(4, "big") + kind + payload

    head = box(b"ftyp", b"M4A \x00\x00\x00\x00isomM4A ")
    cases = {"index last, after 8 KB of room": (head + box(b"free", bytes(8192)) + box(b"mdat", b"\x01" * 5000)
                                                + box(b"moov", b"\x02" * 300), True),
             "index last": (head + box(b"mdat", b"\x01" * 100) + box(b"moov"), True),
             "index first": (head + box(b"moov", b"\x02" * 300) + box(b"mdat", b"\x01" * 100), False),
             "fragmented": (head + box(b"moov") + box(b"moof") + box(b"mdat", b"\x01" * 100), False),
             "a WAV": (b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(200), False),
             "a few bytes": (b"ID3", False),
             "index last, after half the head's limit": (head + box(b"free", bytes(audio.MAX_HEAD_BYTES // 2))
                                                         + box(b"mdat", b"\x01" * 100) + box(b"moov"), True),
             "room past the head's limit": (head + box(b"free", bytes(audio.MAX_HEAD_BYTES + 4096))  # read as it is
                                            + box(b"mdat", b"\x01" * 100) + box(b"moov"), False)}
    for name, (data, copied) in cases.items():
        read_end, write_end = os.pipe()

        def write_slowly(data=data, write_end=write_end):
            with open(write_end, "wb", buffering=0) as pipe:
                pipe.write(data[:3])  # a first write of a few bytes
                time.sleep(0.05)
                pipe.write(data[3:])

        writer = threading.Thread(target=write_slowly)
        writer.start()
        with open(read_end, "rb") as pipe, audio._index_first(pipe) as readable:
            assert readable.seekable() == copied, name
            assert readable.read() == data, name
        writer.join()


def test_audio_of_exactly_the_minimum_duration_is_usable():
    """Audio exactly `min_duration_s` long has the length asked for and is not refused as too short; a sample less is."""
    music = rendered(0, 2.0, 8000)
    audio.check_usable(music[:8000], 8000, 1.0)
    audio.check_level(8000, 0.1, 8000, 1.0)
    with pytest.raises(AudioError, match="too short"):
        audio.check_usable(music[:7999], 8000, 1.0)


def test_music_only_in_a_partial_last_second_is_heard_and_not_silent():
    """Music that lies only in a file's last, partial second (after seconds of silence) sets its loudest level."""
    music = rendered(0, 0.6, 8000)
    tail = np.concatenate([np.zeros(5 * 8000, np.float32), music])  # 5.6 s: the music in the partial sixth second
    expected = np.sqrt(np.sum(music.astype(np.float64) ** 2) / 8000)  # as loud as it is over a whole second
    assert expected > 10 * audio.SILENCE_RMS
    assert audio.loudest_rms(tail, 8000) == pytest.approx(expected)
    audio.check_usable(tail, 8000, 1.0)


@pytest.mark.parametrize("extension", ["flac", "mp3", "ogg"])
def test_title_tag_of_blanks_is_no_title_and_a_padded_one_is_trimmed(tmp_path, extension):
    """A title tag's surrounding blanks are not part of the title, and a tag of blanks alone names no title."""
    padded, blank = tmp_path / f"padded.{extension}", tmp_path / f"blank.{extension}"
    write(padded, rendered(1, 2.0, 22050), 22050, title="  Song Of The Tides \t")
    write(blank, rendered(1, 2.0, 22050), 22050, title="   ")
    assert audio.decode(padded, 8000).title == "Song Of The Tides"
    assert audio.decode(blank, 8000).title is None
    assert audio.title_of(str(blank)) == "blank"  # the file's name stands in


@pytest.mark.parametrize("sample_format, dtype, scale", [("f32le", "<f4", 1.0), ("s16le", "<i2", 32767.0),
                                                         ("s32le", "<i4", 2 ** 31 - 1.0)])
def test_raw_pcm_of_several_channels_is_mixed_from_every_channel(sample_format, dtype, scale):
    """Raw PCM of more than two channels comes out as the mean of its channels, in full scales, in any format."""
    rate, channels = 8000, 4
    time_s = np.arange(rate * 2) / rate
    tones = np.stack([0.4 * np.sin(2 * np.pi * (300 + 450 * c) * time_s) for c in range(channels)], axis=1)
    raw = (tones.astype(dtype) if dtype == "<f4" else np.round(tones * scale).astype(dtype)).tobytes()
    mixed = np.concatenate(list(audio.stream_raw(io.BytesIO(raw), sample_format, rate, channels, rate)))
    assert mixed.size == tones.shape[0]
    np.testing.assert_allclose(mixed, tones.mean(axis=1), atol=2e-3)


def test_raw_pcm_read_in_pieces_that_split_its_frames_keeps_every_sample_in_its_channel():
    """Raw PCM from a stream whose reads end mid-frame (a pipe, a socket) decodes to the same samples as read whole."""

    class Trickle(io.RawIOBase):  # each read gives at most 1,001 bytes: frames of 4 bytes split across reads
        def __init__(self, data: bytes):
            self._data = memoryview(data)

        def readable(self) -> bool:
            return True

        def read(self, size: int = -1) -> bytes:
            size = min(1001, len(self._data) if size < 0 else size)
            piece, self._data = bytes(self._data[:size]), self._data[size:]
            return piece

    music = rendered(0, 2.0, 8000)
    stereo = np.stack([music, 0.5 * music], axis=1)
    raw = np.round(stereo * 32767).astype("<i2").tobytes()
    whole = np.concatenate(list(audio.stream_raw(io.BytesIO(raw), "s16le", 8000, 2, 8000)))
    pieces = np.concatenate(list(audio.stream_raw(Trickle(raw), "s16le", 8000, 2, 8000)))
    assert pieces.size == whole.size == music.size
    np.testing.assert_allclose(pieces, whole, atol=1e-6)


def test_raw_pcm_channel_bounds_take_64_channels_and_refuse_65_and_0():
    """Raw PCM is read with 1 to `MAX_CHANNELS` (64) channels, and refused in one line beyond that or with none."""
    frames = np.zeros((800, audio.MAX_CHANNELS), "<i2")
    frames[:, -1] = (rendered(0, 0.1, 8000) * 20000).astype("<i2")
    mixed = np.concatenate(list(audio.stream_raw(io.BytesIO(frames.tobytes()), "s16le", 8000, audio.MAX_CHANNELS,
                                                 8000)))
    assert mixed.size == 800 and np.abs(mixed).max() > 0
    for channels in (0, audio.MAX_CHANNELS + 1):
        with pytest.raises(AudioError, match="raw PCM of"):
            next(audio.stream_raw(io.BytesIO(bytes(1000)), "s16le", 8000, channels, 8000))
