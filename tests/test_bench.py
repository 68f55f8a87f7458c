"""The bench: degradations do what their names say, and `bench compare` runs end to end on a tiny corpus."""

import json
import os
from collections import Counter

import numpy as np
import pytest

from bench import corpus, queries
from bench.audio_io import write
from tests.conftest import SYNTH_RATE, rendered

RATE = 22050


def tone(freq_hz, seconds=3.0):
    return np.sin(2 * np.pi * freq_hz * np.arange(int(seconds * RATE)) / RATE).astype(np.float32)


def dominant_hz(signal):
    spectrum = np.abs(np.fft.rfft(signal[RATE // 2:RATE // 2 + RATE]))
    return np.argmax(spectrum) * RATE / RATE  # 1 s of signal: bins are 1 Hz


@pytest.mark.parametrize("name, make, expected_hz, expected_s", [
    ("speed +2 %", lambda x: queries.change_speed(x, 1.02), 1020, 3 / 1.02),
    ("time stretch +2 %", lambda x: queries.time_stretch(x, RATE, 1.02), 1000, 3 / 1.02),
    ("pitch shift +2 %", lambda x: queries.pitch_shift(x, RATE, 1.02), 1020, 3.0),
])
def test_tempo_and_pitch_changes_do_what_their_names_say(name, make, expected_hz, expected_s):
    changed = make(tone(1000.0))
    assert abs(dominant_hz(changed) - expected_hz) <= 2, name
    assert abs(changed.size / RATE - expected_s) < 0.02, name


def test_noise_is_added_at_the_asked_snr():
    rng = np.random.default_rng(0)
    clean = tone(440.0)
    noise = queries.pink_noise(RATE * 10, rng)
    for snr_db in (-5, 0, 10):
        noisy = queries.add_noise(clean, noise, snr_db, rng)
        measured = 10 * np.log10(np.mean(clean ** 2) / np.mean((noisy - clean) ** 2))
        assert abs(measured - snr_db) < 0.1
    short = queries.pink_noise(RATE // 2, rng)  # half a second of noise under a 3 s clip: looped
    noisy = queries.add_noise(clean, short, 0, rng)
    assert abs(10 * np.log10(np.mean(clean ** 2) / np.mean((noisy - clean) ** 2))) < 0.1


def test_the_phone_band_removes_bass_and_treble():
    rng = np.random.default_rng(1)
    mixed = tone(100.0) + tone(1000.0) + tone(6000.0)
    spectrum = np.abs(np.fft.rfft(queries.band_pass(mixed, RATE)[RATE:2 * RATE]))
    assert spectrum[1000] > 10 * spectrum[100] and spectrum[1000] > 10 * spectrum[6000]
    phoned = queries.phone(mixed, RATE, queries.pink_noise(RATE * 4, rng), 5.0, rng)
    spectrum = np.abs(np.fft.rfft(phoned[RATE:2 * RATE]))  # the phone's chain holds the band too
    assert phoned.size == mixed.size and spectrum[1000] > 10 * spectrum[100] and spectrum[1000] > 10 * spectrum[6000]


def test_clips_are_cut_at_sample_accurate_offsets_off_any_grid():
    rng = np.random.default_rng(2)
    signal = np.arange(RATE * 60, dtype=np.float32)
    starts = []
    for _ in range(20):
        clip, start_s = queries.cut(signal, RATE, 5.0, rng)
        assert clip[0] == start_s * RATE and clip.size == 5 * RATE
        starts.append(int(clip[0]))
    assert len({s % RATE for s in starts}) == 20 and len({s % 128 for s in starts}) > 10


def test_the_split_is_deterministic_and_holds_songs_out(tmp_path):
    """Which songs are held out follows from their names within the corpus alone: the same in every run, process
    and folder (these 30 names hold out these 9, a fifth being expected)."""
    for folder in ("a", "b/c"):
        (tmp_path / folder).mkdir(parents=True)
        for i in range(30):
            (tmp_path / folder / f"s{i:02d}.flac").write_bytes(b"x")
    first, second = corpus.load(str(tmp_path / "a")), corpus.load(str(tmp_path / "b/c"))
    held_out = [sorted(os.path.basename(t.path) for t in tracks if not t.indexed) for tracks in (first, second)]
    assert held_out[0] == held_out[1] == ["s00.flac", "s02.flac", "s07.flac", "s11.flac", "s12.flac", "s13.flac",
                                          "s15.flac", "s22.flac", "s28.flac"]
    assert [os.path.basename(t.path) for t in first] == [os.path.basename(t.path) for t in second]  # one order


@pytest.mark.slow
def test_bench_compare_runs_end_to_end_on_a_tiny_corpus(tmp_path, tiny_model_dir):
    from bench.run import compare

    music = tmp_path / "music"
    music.mkdir()
    for seed in range(10):
        write(music / f"g{seed}.flac", rendered(seed + 50, 20.0, SYNTH_RATE), SYNTH_RATE)
    out = tmp_path / "out"
    results = compare(["landmark", "mert"], str(music), str(out), mert_model=str(tiny_model_dir), full=False,
                      show_progress=False)
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["methods"].keys() == {"landmark", "mert"}
    landmark = on_disk["methods"]["landmark"]
    assert landmark["recall"]["clean_5s"] >= 0.8
    for key in ("fingerprint_bytes_per_song", "db_bytes_per_song", "index_x_realtime", "query_ms_p50",
                "peak_rss_mb"):
        assert landmark[key] > 0, key
    assert landmark["query_ms_p50"] <= landmark["query_ms_p95"] and 0 <= landmark["false_match_rate"] <= 1
    assert landmark["db_bytes_per_song"] >= landmark["fingerprint_bytes_per_song"] * 0.5 and landmark["peak_rss_mb"] < 2000
    report = (out / "report.md").read_text()
    assert "recall clean_5s" in report
    assert "NOT meaningful" in report and "skipped" not in on_disk["methods"]["mert"]
    assert on_disk["methods"]["mert"]["fingerprint_bytes_per_song"] == 320
    # 7 indexed songs' 70 centroids, under the 256 bits a basis wants: the engine's note is the build's
    assert any(note.startswith("PCA fit on 70 centroids") for note in on_disk["methods"]["mert"]["build_notes"]), (
        on_disk["methods"]["mert"]["build_notes"])
    assert (out / "recall_vs_snr.png").stat().st_size > 1000 and (out / "recall_vs_storage.png").exists()
    assert results["queries"] == on_disk["queries"]


def test_the_bench_counts_an_index_on_disk_with_the_segments_beside_it(tmp_path, monkeypatch):
    import landmark.store
    from bench.methods import LandmarkMethod

    monkeypatch.setattr(landmark.store, "TAIL_POSTINGS", 1 << 9)  # sealed beside the file, as from 60 songs on
    paths = []
    for seed in range(3):
        paths.append(str(tmp_path / f"g{seed}.flac"))
        write(paths[-1], rendered(seed + 30, 15.0, SYNTH_RATE), SYNTH_RATE)
    method = LandmarkMethod(str(tmp_path), jobs=1)
    built = method.build(paths)
    segments = list((tmp_path / "landmark.db-postings").glob("*.seg"))
    on_disk = [tmp_path / name for name in ("landmark.db", "landmark.db-wal") if (tmp_path / name).exists()] + segments
    assert segments
    assert built.db_bytes == sum(path.stat().st_size for path in on_disk)
    method.index.close()


@pytest.mark.slow
def test_bench_as_user_names_clip_files_through_the_cli(tmp_path):
    """The same queries as compare, written to .m4a files and named by `lmprint add` and `lmprint match --json`
    in subprocesses: the right songs at the right offsets, and nothing for the songs kept out."""
    from bench.as_user import run

    music = tmp_path / "music"
    music.mkdir()
    for seed in range(8):
        write(music / f"g{seed}.flac", rendered(seed + 90, 15.0, SYNTH_RATE), SYNTH_RATE)
    results = run(str(music), str(tmp_path / "out"), seed=1)
    assert results["add_exit_status"] == 0 and results["failed_clips"] == []
    assert results["indexed_songs"] < results["songs"] and results["unindexed_queries"] > 0
    assert results["recall"]["clean_5s"] >= 0.8 and results["offset_right_rate"]["clean_5s"] >= 0.8
    assert results["false_match_rate"] == 0.0
    assert "| clean_5s |" in (tmp_path / "out" / "report.md").read_text()


def test_without_weights_the_mert_row_says_skipped(tmp_path):
    from bench.run import compare

    music = tmp_path / "music"
    music.mkdir()
    for seed in range(3):
        write(music / f"g{seed}.flac", rendered(seed + 70, 15.0, SYNTH_RATE), SYNTH_RATE)
    results = compare(["mert"], str(music), str(tmp_path / "out"), full=False, show_progress=False)
    assert "no weights" in results["methods"]["mert"]["skipped"]
    assert "skipped: no weights" in (tmp_path / "out" / "report.md").read_text()


def test_weights_given_that_do_not_load_fail_the_run_after_its_report(tmp_path):
    """A folder that looks like a checkpoint but does not load is skipped in the report, and the run exits 1: it
    did not do what was asked (it exited 0)."""
    from click.testing import CliRunner

    from bench.cli import main

    pytest.importorskip("torch")  # without it, the run stops before any work (a case of the test above)
    from tests.conftest import tiny_config

    music, model = tmp_path / "music", tmp_path / "model"
    music.mkdir()
    model.mkdir()
    (model / "config.json").write_text(json.dumps(tiny_config()))
    (model / "pytorch_model.bin").write_bytes(b"not a checkpoint")
    for seed in range(3):
        write(music / f"g{seed}.flac", rendered(seed + 70, 15.0, SYNTH_RATE), SYNTH_RATE)
    result = CliRunner().invoke(main, ["compare", "--methods", "mert", "--mert-model", str(model), "--quick",
                                       "--corpus", str(music), "--out", str(tmp_path / "out")])
    assert result.exit_code == 1 and "\nbench: mert: " in result.output, result.output
    assert "- **mert**: skipped: " in (tmp_path / "out" / "report.md").read_text()


def test_saved_queries_come_back_exactly(tmp_path):
    from bench.run import load_queries, save_queries

    rng = np.random.default_rng(3)
    saved = [queries.Query(f"s{i}", i % 2 == 0, "clean_5s", float(i), rng.standard_normal(100 + i).astype(np.float32))
             for i in range(5)]
    save_queries(saved, str(tmp_path / "q"))
    loaded = list(load_queries(str(tmp_path / "q")))
    assert [(q.song, q.indexed, q.condition, q.start_s) for q in loaded] == [
        (q.song, q.indexed, q.condition, q.start_s) for q in saved]
    for before, after in zip(saved, loaded):
        np.testing.assert_array_equal(before.samples, after.samples)


def test_a_distractor_keeps_the_shape_of_real_landmarks_but_moves_them():
    import soxr

    from bench.scale import DistractorVariant, distractor
    from landmark.fingerprint import fingerprint
    from landmark.hashes import pair_peaks, unpack
    from landmark.settings import FingerprintSettings

    config = FingerprintSettings()
    rng = np.random.default_rng(4)
    source = fingerprint(soxr.resample(rendered(3, 60.0, SYNTH_RATE), SYNTH_RATE, config.sample_rate_hz), config,
                         config.index)
    shifted = DistractorVariant(shift_bins=-7, time_scale=1.0, interval_scale=1.0)
    new_hashes, new_frames, (peak_frames, peak_bins) = distractor(source.peak_frames, source.peak_bins, config, rng,
                                                                  shifted)
    # the source's peaks, 7 bins lower, each 10 s segment played backwards and the segments shuffled; the ones
    # moved out of the band dropped
    assert peak_frames.size >= 0.9 * source.peak_frames.size
    segment = int(10.0 / config.frame_s)
    assert (Counter(zip((peak_frames % segment).tolist(), peak_bins.tolist()))
            <= Counter(zip((segment - 1 - source.peak_frames % segment).tolist(), (source.peak_bins - 7).tolist())))
    assert not np.array_equal(peak_frames, source.peak_frames)
    # paired as the index pairs a song's peaks: as many pairs, as far apart, and within a segment most of them the
    # source's played backwards (each target the anchor, 7 bins lower); the rest other targets in the anchor's zone
    made = pair_peaks(peak_frames, peak_bins, config, config.index)
    assert np.array_equal(made[0], new_hashes) and np.array_equal(made[1], new_frames)
    anchor, delta_bins, delta_frames = unpack(source.hashes)
    new_anchor, new_delta_bins, new_delta_frames = unpack(new_hashes)
    assert new_hashes.size == pytest.approx(source.hashes.size, rel=0.05)
    assert np.mean(new_delta_frames) == pytest.approx(np.mean(delta_frames), rel=0.1)
    assert np.mean(np.abs(new_delta_bins)) == pytest.approx(np.mean(np.abs(delta_bins)), rel=0.1)
    backwards = Counter(zip((anchor + delta_bins - 7).tolist(), (-delta_bins).tolist(), delta_frames.tolist()))
    again = Counter(zip(new_anchor.tolist(), new_delta_bins.tolist(), new_delta_frames.tolist()))
    assert sum((again & backwards).values()) >= 0.5 * source.hashes.size
    backwards_delta_frames = new_delta_frames

    for scaled in (DistractorVariant(5, 1.07, 1.0), DistractorVariant(5, 1.0, 0.93), DistractorVariant(-4, 0.9, 0.9)):
        new_hashes, new_frames, (peak_frames, peak_bins) = distractor(source.peak_frames, source.peak_bins, config,
                                                                      rng, scaled)
        _, _, new_delta_frames = unpack(new_hashes)
        assert peak_frames.size <= source.peak_frames.size
        low, high = (int(hz * config.fft_size / config.sample_rate_hz) for hz in (config.min_freq_hz, config.max_freq_hz))
        middle = (low + high) / 2
        expected = np.round(middle + (source.peak_bins - middle) * scaled.interval_scale) + scaled.shift_bins
        assert Counter(peak_bins.tolist()) <= Counter(expected.astype(np.int64).tolist())  # each peak, moved
        assert peak_bins.min() >= low and peak_bins.max() <= high
        # (pairs are made again: intervals drawn closer bring targets further off in frequency into the zone)
        assert (np.mean(new_delta_frames) / np.mean(backwards_delta_frames)
                == pytest.approx(scaled.time_scale, abs=0.05))


def test_no_distractor_lines_up_with_its_source_played_faster_or_slower(tmp_path):
    """A distractor plays its source's segments backwards: no clip is its song reversed, so no search across speeds
    and pitches lines a distractor up with its source. Played forwards, distractors were named for such clips (at
    100,005 songs 159 of 270; 68 even without the variants nearest a pitch change, which this test indexes)."""
    import soxr

    from bench.scale import _band_bins, distractor, distractor_variants
    from landmark import Index
    from landmark.batch import SongFingerprint
    from landmark.fingerprint import fingerprint
    from landmark.settings import FingerprintSettings

    config = FingerprintSettings()
    signal = rendered(7, 40.0, SYNTH_RATE)
    source = fingerprint(soxr.resample(signal, SYNTH_RATE, config.sample_rate_hz), config, config.index)
    middle = sum(_band_bins(config)) / 2
    nearest = [variant for variant in distractor_variants()  # a pitch change's map, within two bins
               if abs(variant.shift_bins - middle * (variant.interval_scale - 1)) <= 2]
    rng = np.random.default_rng(6)
    batch = []
    for number, variant in enumerate(nearest):
        hashes, frames, peaks = distractor(source.peak_frames, source.peak_bins, config, rng, variant)
        batch.append(SongFingerprint(f"distractor:{number}", f"distractor {number}", 40.0 * variant.time_scale,
                                     f"distractor-{number}", hashes, frames, *peaks))
    clips = []
    for number, (change, factor) in enumerate([(queries.change_speed, 0.97), (queries.change_speed, 1.05),
                                               (queries.change_speed, 0.93), (queries.change_speed, 1.035)]):
        start = int((4.0 + 7.0 * number) * SYNTH_RATE)
        played = change(signal[start:start + 7 * SYNTH_RATE], factor)[:5 * SYNTH_RATE]
        clips.append(soxr.resample(played, SYNTH_RATE, config.sample_rate_hz).astype(np.float32))
    with Index(str(tmp_path / "distractors.db"), create=True) as index:
        index.add_fingerprints(batch)
        named = [index.match_samples(clip) for clip in clips]
        assert [found.song.path if found else None for found in named] == [None] * len(clips)
        index.add_fingerprints([SongFingerprint("source", "source", 40.0, "source", source.hashes,
                                                source.anchor_frames, source.peak_frames, source.peak_bins)])
        named = [index.match_samples(clip) for clip in clips]
    assert [found.song.path if found else None for found in named] == ["source"] * len(clips)


def test_no_two_distractors_of_a_source_share_its_hashes():
    """A source's distractors each at a variant of their own: drawn at random (18 shifts, no scaling), a source's
    740 distractors at 100,000 songs were twins 40 at a time, which tie in every vote they lead."""
    import soxr

    from bench.scale import distractor, distractor_variants
    from landmark.fingerprint import fingerprint
    from landmark.settings import FingerprintSettings

    config = FingerprintSettings()
    source = fingerprint(soxr.resample(rendered(3, 60.0, SYNTH_RATE), SYNTH_RATE, config.sample_rate_hz), config,
                         config.index)
    rng = np.random.default_rng(5)
    variants = distractor_variants()
    assert len(set(variants)) == len(variants) == 1458
    prints = [set(distractor(source.peak_frames, source.peak_bins, config, rng, variant)[0].tolist())
              for variant in variants[:200]]
    shared = max(len(a & b) / min(len(a), len(b)) for i, a in enumerate(prints) for b in prints[:i])
    assert shared < 0.5, shared  # some pairs' short Δt and Δf round alike at neighbouring scales


def test_a_size_s_latencies_leave_out_the_clips_played_faster_or_slower():
    """The warped clips count in recall alone: their searches, slower than a clip matched as recorded, would move
    the latency columns, which issue targets read for the clean, noisy and held-out clips."""
    from bench.metrics import Outcome
    from bench.scale import WARPED_CONDITIONS, size_figures

    outcomes = ([Outcome("clean_5s", True, f"s{i}", f"s{i}", 0.020) for i in range(4)]
                + [Outcome("unindexed_clean", False, f"h{i}", None, 0.040) for i in range(4)]
                + [Outcome("unindexed_noise", False, "h9", "distractor:7", 0.040)]
                + [Outcome(condition, True, f"s{i}", f"s{i}" if i else None, 0.500)
                   for condition in WARPED_CONDITIONS for i in range(4)])
    figures = size_figures(outcomes)
    assert figures["recall"] == {"clean_5s": 1.0, **{condition: 0.75 for condition in WARPED_CONDITIONS}}
    assert figures["false_match_rate"] == pytest.approx(1 / 5) and figures["distractors_named"] == 1
    assert figures["query_ms_p50_indexed"] == 20.0 and figures["query_ms_p50_held_out"] == 40.0
    assert figures["query_ms_p50"] == 40.0 and figures["query_ms_p95"] == 40.0  # 500 ms clips not among them


@pytest.mark.slow
def test_bench_scale_adds_distractors_and_keeps_finding_the_real_songs(tmp_path):
    from bench.scale import ONE_BY_ONE, WARPED_CONDITIONS, scale

    music = tmp_path / "music"
    music.mkdir()
    for seed in range(8):
        write(music / f"g{seed}.flac", rendered(seed + 90, 20.0, SYNTH_RATE), SYNTH_RATE)
    result = scale(str(music), [5, 230], None, workdir=str(tmp_path), show_progress=False,  # 3 distractor batches
                   matching={"max_postings_read": 200_000})
    assert result["matching"] == {"max_postings_read": 200_000}
    first, second = result["rows"]
    assert first["songs"] < 230 and second["songs"] == 230 + ONE_BY_ONE  # then ONE_BY_ONE added one at a time
    assert first["insert_ms_per_distractor"] is None and second["insert_ms_per_distractor"] > 0
    assert second["add_one_ms"] > 0 and second["hashes_per_row"] == 16
    assert first["recall"]["clean_5s"] >= 0.8 and second["recall"]["clean_5s"] >= 0.8  # each size its own index
    assert all(first["recall"][played] >= 0.6 for played in WARPED_CONDITIONS)  # played faster or slower: warped
    assert first["query_ms_p50"] > 0 and second["query_ms_p50"] > 0
    assert 0 < first["db_bytes_per_audio_s"] and 0.1 < second["cold_start_s"] < 30
    assert 50 < second["query_process_peak_mb"] < 2000  # a real process's resident peak, in MB


def test_startup_bench_matches_cold_and_keeps_heavy_modules_off_the_query_path(built_index, library_dir, tmp_path):
    """`bench startup` runs `lmprint match` in fresh processes; the query path imports neither numba nor scipy
    (numba's runtime alone costs about 0.7 s of a cold start, scipy.signal about 1 s)."""
    from click.testing import CliRunner

    from bench.cli import main
    from bench.startup import measure
    from landmark import Index, audio

    with Index(built_index) as index:
        song = index.catalogue.songs()[2]
        clip = audio.load(song.path, SYNTH_RATE)[SYNTH_RATE * 6: SYNTH_RATE * 11]
    write(tmp_path / "clip.wav", clip, SYNTH_RATE)
    result = measure(str(built_index), str(tmp_path / "clip.wav"), runs=1)
    assert result["answer"]["path"] == song.path
    printed = CliRunner().invoke(main, ["startup", "--db", str(built_index), "--runs", "1", str(tmp_path / "clip.wav")])
    assert json.loads(printed.output)["answer"]["path"] == song.path  # JSON, for jq (it was a Python dict)
    assert abs(result["answer"]["offset_s"] - 6.0) < 0.1
    assert "numba" not in result["heavy_modules_imported"] and "scipy" not in result["heavy_modules_imported"]
    assert 20 < result["peak_rss_mb"] < 1000
    strict = measure(str(built_index), str(tmp_path / "clip.wav"), runs=1,
                     settings={"min_score": 1e9, "verify_candidates": 0, "query": {"fanout": 10}})
    assert strict["answer"] is None  # the settings reach the process: no vote scores that much, and none is verified


def test_unseen_rooms_decay_at_their_rt60_and_the_fan_hums_around_900_hz():
    from bench import unseen

    rng = np.random.default_rng(0)
    for rt60_s in unseen.ROOMS_RT60_S:
        response = unseen.synthetic_room(rt60_s, rng)
        decay_db = 10 * np.log10(np.cumsum((response ** 2)[::-1])[::-1] / np.sum(response ** 2))
        t5, t25 = (np.argmax(decay_db <= level) / unseen.RATE_HZ for level in (-5.0, -25.0))
        assert 3 * (t25 - t5) == pytest.approx(rt60_s, rel=0.15)  # T20, extrapolated to 60 dB
    power = np.abs(np.fft.rfft(unseen.fan_noise(rng))) ** 2
    freqs = np.fft.rfftfreq(2 * (power.size - 1), 1 / unseen.RATE_HZ)
    assert np.sum(power[(freqs > 400) & (freqs < 1400)]) > 0.9 * np.sum(power)
    brown = np.abs(np.fft.rfft(unseen.brown_noise(rng))) ** 2
    assert np.mean(brown[(freqs > 80) & (freqs < 120)]) > 100 * np.mean(brown[(freqs > 800) & (freqs < 1200)])


def test_without_matplotlib_compare_stops_at_once_naming_what_to_install(tmp_path, monkeypatch):
    """The plots are part of the result: `bench compare` does not silently leave them out."""
    import sys

    from bench.run import compare

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if it were not installed
    with pytest.raises(SystemExit, match=r"matplotlib: pip install matplotlib \(or the bench extra"):
        compare(["landmark"], str(tmp_path), str(tmp_path / "out"), show_progress=False)
    assert not (tmp_path / "out").exists()  # stopped before any work


def test_bench_dedup_finds_what_it_planted_and_judges_it(tmp_path, monkeypatch):
    """...with distractors made from the corpus's songs alone: made from a planted copy too, they would twin its
    source's (a retag holds the same hashes), which `dedup` would then spend its time on."""
    from bench import scale
    from bench.dedup import markdown, run

    music = tmp_path / "music"
    music.mkdir()
    for seed in range(5):
        write(music / f"g{seed}.flac", rendered(seed + 70, 75.0, SYNTH_RATE), SYNTH_RATE)
    made_from = []
    real_add_distractors = scale.add_distractors

    def add_distractors(index, bases, *arguments, **options):
        made_from.append(len(bases))
        return real_add_distractors(index, bases, *arguments, **options)

    monkeypatch.setattr(scale, "add_distractors", add_distractors)
    # a transcode, a retag and a cut; a size under the corpus's 8 songs is no second row of them
    result = run(str(music), [4, 120], count=3, workdir=str(tmp_path))
    assert made_from and set(made_from) == {5}
    assert [entry["kind"] for entry in result["planted"]] == ["transcode", "retag", "cut"]
    small, large = result["rows"]
    assert (small["songs"], large["songs"]) == (8, 120)
    for row in result["rows"]:
        assert row["found"] == row["planted"] == 3 and not row["missed"]
        assert row["other_groups"] == [] and row["other_parts"] == []
    assert "| 120 | 3 | 3 | 0 | 0 |" in markdown(result) and markdown(result).startswith("The search: the join (")


def test_bench_dedup_with_speed_plants_a_copy_at_another_speed_and_finds_it_only_at_its_speed(tmp_path):
    """`--speed`: a copy played 1.5–7 % faster or slower is planted in turn with the others, and counts as found
    where its group with its source says its speed; the same group at another speed is not a find."""
    from bench.dedup import SPEED_CHANGES, judge, markdown, run
    from landmark.dedup import Duplicates

    music = tmp_path / "music"
    music.mkdir()
    for seed in range(5):
        write(music / f"g{seed}.flac", rendered(seed + 80, 75.0, SYNTH_RATE), SYNTH_RATE)
    result = run(str(music), [60], count=4, workdir=str(tmp_path), speed=True)
    planted = result["planted"]
    assert [entry["kind"] for entry in planted] == ["transcode", "retag", "cut", "speed"]
    assert SPEED_CHANGES[0] <= abs(planted[3]["speed"] - 1) <= SPEED_CHANGES[1]
    for row in result["rows"]:
        assert row["found"] == row["planted"] == 4 and not row["missed"], row
        assert row["other_groups"] == [] and row["other_parts"] == []
    assert markdown(result).startswith("The search: the join and copies at another speed")
    copy = {"kind": "speed", "source": "a.flac", "path": "b.mp3", "speed": 1.04}
    paths = {1: "a.flac", 2: "b.mp3"}
    assert judge([copy], Duplicates([[1, 2]], [], {1: 1.0, 2: 1.041}), paths)["found"] == 1
    assert judge([copy], Duplicates([[1, 2]], [], {1: 1.0, 2: 1.0}), paths)["found"] == 0


def test_bench_dedup_plants_a_cut_of_a_song_long_enough_for_one(tmp_path):
    """A song too short for a cut is the next transcode's or retag's source: every kind is planted as asked,
    whichever songs the draw takes first (the cut of a short song was skipped, and the run planted fewer)."""
    from bench.corpus import Track
    from bench.dedup import CUT_LENGTH_S, CUT_START_S, plant

    tracks = []
    for seed, duration_s in enumerate((20.0, 20.0, 20.0, 66.0, 66.0, 66.0)):
        path = tmp_path / f"g{seed}.flac"
        write(path, rendered(seed + 70, duration_s, SYNTH_RATE), SYNTH_RATE)
        tracks.append(Track(str(path), True))
    long_enough = {t.path for t in tracks[3:]}
    assert CUT_START_S + CUT_LENGTH_S < 66.0
    for seed in range(6):
        folder = tmp_path / f"planted{seed}"
        folder.mkdir()
        planted = plant(tracks, str(folder), 3, np.random.default_rng(seed))
        assert [entry["kind"] for entry in planted] == ["transcode", "retag", "cut"], (seed, planted)
        assert planted[2]["source"] in long_enough and len({entry["source"] for entry in planted}) == 3
    # songs too short for any cut: the other kinds are planted from them all the same
    (tmp_path / "short").mkdir()
    planted = plant(tracks[:3], str(tmp_path / "short"), 3, np.random.default_rng(0))
    assert [entry["kind"] for entry in planted] == ["transcode", "retag", "transcode"], planted


def test_bench_monitor_plays_a_dj_mix_at_each_songs_own_speed_and_matches_clips_cut_from_it(tmp_path):
    from bench import corpus, queries
    from bench.monitor import radio_hour, run

    music = tmp_path / "music"
    music.mkdir()
    for seed in range(6):
        write(music / f"g{seed}.flac", rendered(seed + 50, 60.0, SYNTH_RATE), SYNTH_RATE)
    _, pieces = radio_hour(corpus.load(str(music)), 300, np.random.default_rng(2), "dj",
                           queries.Degraders.load(None, None), str(tmp_path))
    speeds = [p.speed for p in pieces]
    assert all(0.92 <= s <= 1.08 for s in speeds) and max(abs(s - 1) for s in speeds) > 0.02
    result = run(str(music), None, None, conditions=("dj",), hours=0.06, workdir=str(tmp_path))
    row, = result["rows"]
    assert row["clips"] >= 2 and row["clips_named"] >= row["clips"] - 1, row
    assert row["clips_speed_right"] >= row["clips_named"] - 1, row
    assert row["found_share"] >= 0.5, row


def test_bench_monitor_builds_radio_and_scores_the_segments(tmp_path):
    from bench.monitor import markdown, radio_hour, run, score

    music = tmp_path / "music"
    music.mkdir()
    for seed in range(6):
        write(music / f"g{seed}.flac", rendered(seed + 50, 45.0, SYNTH_RATE), SYNTH_RATE)
    result = run(str(music), None, None, conditions=("clean",), hours=0.04, workdir=str(tmp_path))
    row, = result["rows"]
    assert row["pieces"] >= 2 and row["found_share"] >= 0.75, row
    assert row["phantoms_per_hour"] <= 3600 / row["audio_s"]  # at most one in the whole radio
    assert row["x_realtime"] > 1 and f"| clean | {row['audio_s'] / 3600:.2f} |" in markdown(result)
    assert "each hour read from a 44.1 kHz stereo MP3 file" in markdown(result)  # decoded as `lmprint monitor` does
    # the scoring itself: a segment of the wrong song is a phantom, the right one is found with its errors
    from bench import corpus, queries
    from lmprint.monitor import Segment
    from lmprint.results import Song

    tracks = corpus.load(str(music))
    _, pieces = radio_hour(tracks, 120, np.random.default_rng(1), "clean", queries.Degraders.load(None, None),
                           str(tmp_path))
    at, first = next((n, p) for n, p in enumerate(pieces) if p.indexed)
    song = Song(1, first.path, "x", 45.0, "", 0, "")
    other = Song(2, "/elsewhere.flac", "y", 45.0, "", 0, "")
    segments = [Segment(song, first.start_s + 1, first.end_s - 2, first.offset_s + 1, 1.0, 3, open=False),
                Segment(other, 0.0, 10.0, 0.0, 1.0, 3, open=False)]
    scored = score(pieces, segments, 3600.0)
    assert scored["phantoms_per_hour"] == 1.0 and scored["start_error_s"][0] == pytest.approx(
        abs(first.start_s + 1 - (first.start_s + first.fade_in_s / 2)), abs=0.05)
    fade_out_s = pieces[at + 1].fade_in_s  # the piece ends in the middle of the next one's fade in
    assert fade_out_s > 1 and scored["end_error_s"][0] == pytest.approx(abs(-2 + fade_out_s / 2), abs=0.05)
    # the start its open line announced, paired with the segment it opened
    from dataclasses import replace

    from bench.monitor import closed_with_announced_starts

    announced = replace(segments[0], start_s=first.start_s + 3, open=True)
    closed, starts = closed_with_announced_starts([replace(segments[1], open=True), segments[1], announced,
                                                   segments[0]])
    assert closed == segments[::-1] and starts == [0.0, first.start_s + 3]
    assert score(pieces, closed, 3600.0, starts)["announced_start_error_s"][0] == pytest.approx(
        abs(first.start_s + 3 - (first.start_s + first.fade_in_s / 2)), abs=0.05)
    assert "| as announced |" in markdown(result) and row["announced_start_error_s"][0] is not None


def test_a_manifests_paths_are_those_lmprint_stores_and_too_small_a_corpus_is_refused_in_one_line(tmp_path):
    """A manifest row "./a.wav" names the file `lmprint add` stores as ".../a.wav": answers are compared by path,
    so a right answer would otherwise count as a wrong song."""
    for name in ("a", "b"):
        write(tmp_path / f"{name}.wav", rendered(3, 2.0, SYNTH_RATE), SYNTH_RATE)
    (tmp_path / "manifest.tsv").write_text("path\n./a.wav\nsub/../b.wav\n")
    tracks = corpus.load(str(tmp_path / "manifest.tsv"))
    assert sorted(t.path for t in tracks) == [str(tmp_path / "a.wav"), str(tmp_path / "b.wav")]
    with pytest.raises(SystemExit, match="no audio files in"):
        corpus.require([], "empty")
    with pytest.raises(SystemExit, match="needs at least 1 and 1"):
        corpus.require([corpus.Track("/a", True)], "one", indexed=1, held_out=1)
    with pytest.raises(SystemExit, match="needs at least 1 and 1"):  # held out, and none to index
        corpus.require([corpus.Track("/a", False)], "one", indexed=1, held_out=1)
    assert corpus.require(tracks, "two", indexed=0) == tracks


def test_noise_is_babble_by_its_name_within_the_noise_folder_not_by_the_folders_above(tmp_path):
    noise = tmp_path / "babble-lab" / "noise"
    noise.mkdir(parents=True)
    write(noise / "rain.wav", 0.1 * np.random.default_rng(0).standard_normal(RATE).astype(np.float32), RATE)
    assert sorted(queries.Degraders.load(str(noise), None).noises) == ["ambient"]
    write(noise / "cafe babble.wav", 0.1 * np.random.default_rng(1).standard_normal(RATE).astype(np.float32), RATE)
    assert {kind: len(found) for kind, found in queries.Degraders.load(str(noise), None).noises.items()} == {
        "ambient": 1, "babble": 1}


def test_a_radio_hour_of_songs_too_short_to_be_pieces_is_refused_not_drawn_for_ever(tmp_path):
    from bench.monitor import radio_hour

    music = tmp_path / "music"
    music.mkdir()
    for seed in range(6):
        write(music / f"s{seed}.wav", rendered(seed, 10.0, SYNTH_RATE), SYNTH_RATE)
    with pytest.raises(SystemExit, match="20 s or more"):
        radio_hour(corpus.load(str(music)), 300, np.random.default_rng(2), "clean",
                   queries.Degraders.load(None, None), str(tmp_path))


@pytest.mark.parametrize("extension", [".wav", ".flac", ".ogg", ".mp3", ".m4a", ".opus"])
def test_a_written_file_declares_the_duration_it_holds(extension, tmp_path):
    """What a file's container declares is what `match` goes by to say that only its start was matched (an Ogg
    file written without timestamps declared 2.5 s of its 40)."""
    from landmark import audio

    path = tmp_path / f"song{extension}"
    write(path, rendered(3, 40.0, SYNTH_RATE), SYNTH_RATE)
    decoded = audio.decode(path, 8000)
    assert decoded.declared_s == pytest.approx(40.0, abs=0.05)
    assert decoded.duration_s == pytest.approx(40.0, abs=0.05)


def test_bench_refuses_what_it_cannot_do_in_one_line(built_index, library_dir, tmp_path):
    """The bench is a command too: what it is given wrong is one line and exit code 1 or 2, never a traceback, and
    never a clip written as if it had been done."""
    from click.testing import CliRunner

    from bench.cli import main

    song = str(library_dir / "song1.flac")
    silence = tmp_path / "silence.wav"
    write(silence, np.zeros(8000 * 3, np.float32), 8000)
    (tmp_path / "empty").mkdir()
    config_only = tmp_path / "config-only"
    config_only.mkdir()
    (config_only / "config.json").write_text("{}")
    runner = CliRunner()
    for arguments, code, complaint in (
            (["clip", "--start", "100", song, str(tmp_path / "c.wav")], 1, "lasts 40.0 s: nothing from 100 s"),
            (["clip", song, str(tmp_path / "c.xyz")], 2, "no codec for its extension"),
            (["clip", "--duration", "-3", song, str(tmp_path / "c.wav")], 2, "-3"),
            (["clip", "--snr-db", "0", "--noise", str(silence), song, str(tmp_path / "c.wav")], 1, "is silent"),
            (["startup", "--db", str(built_index), "--runs", "1", str(silence)], 1, "lmprint match failed: lmprint:"),
            (["search-speed", "--sizes", "abc"], 2, "expected counts separated by commas"),
            (["search-speed", "--sizes", "0"], 2, "every size must be at least 1"),
            (["compare", "--methods", "foo", "--corpus", str(library_dir), "--out", str(tmp_path / "o")], 2,
             "known methods are landmark and mert"),
            (["compare", "--corpus", str(tmp_path / "empty"), "--out", str(tmp_path / "o")], 1, "no audio files"),
            (["compare", "--limit", "0", "--corpus", str(library_dir), "--out", str(tmp_path / "o")], 2,
             "0 is not in the range"),
            # weights that are not there: said before any work (it was a line of the report, after a whole run)
            (["compare", "--mert-model", str(tmp_path / "nowhere"), "--corpus", str(library_dir), "--out",
              str(tmp_path / "o")], 1, f"no MERT weights at '{tmp_path / 'nowhere'}' (--mert-model): pass --mert-model"),
            (["compare", "--mert-model", str(tmp_path / "empty"), "--corpus", str(library_dir), "--out",
              str(tmp_path / "o")], 1, "config.json: no such file or directory"),
            (["compare", "--mert-model", str(config_only), "--corpus", str(library_dir), "--out",
              str(tmp_path / "o")], 1, "has no model.safetensors or pytorch_model.bin"),
            (["compare", "--methods", "landmark", "--landmark-settings", '{"bogus": 1}', "--corpus",
              str(library_dir), "--out", str(tmp_path / "o")], 1, "unknown setting 'bogus'"),
            (["compare", "--methods", "landmark", "--landmark-settings", "{", "--corpus", str(library_dir), "--out",
              str(tmp_path / "o")], 2, "not JSON")):
        result = runner.invoke(main, arguments)
        assert result.exit_code == code and isinstance(result.exception, (SystemExit, type(None))), (
            arguments, result.output, result.exception)
        assert complaint in result.output and "Traceback" not in result.output, (arguments, result.output)
        # one line; a usage error (code 2) is click's usage line and hint, then its one line of error
        assert result.output.count("\n") == 1 or (code == 2 and result.output.count("Error:") == 1), (
            arguments, result.output)
    assert not (tmp_path / "c.wav").exists() and not (tmp_path / "o").exists()
    # the weights lmprint takes from $LMPRINT_MERT_MODEL, the bench takes too, and says where the folder came from
    result = runner.invoke(main, ["compare", "--corpus", str(library_dir), "--out", str(tmp_path / "o")],
                           env={"LMPRINT_MERT_MODEL": str(tmp_path / "nowhere")})
    assert result.exit_code == 1 and "($LMPRINT_MERT_MODEL): pass --mert-model" in result.output, result.output
    assert not (tmp_path / "o").exists()


def test_search_speed_prints_a_json_object_a_line(monkeypatch):
    """For jq, as `bench startup` (it printed Python dicts: single quotes): a row per size and query (a song's 10
    codes, a clip's 1), each the median of what its searches took, then the code steps' costs."""
    import itertools
    import types

    from click.testing import CliRunner

    from bench.cli import main

    ticks = itertools.count()  # a clock that moves 2 ms each time it is read: every search takes 2 ms
    monkeypatch.setattr("bench.search_speed.time", types.SimpleNamespace(perf_counter=lambda: 0.002 * next(ticks)))
    result = CliRunner().invoke(main, ["search-speed", "--sizes", "200"])
    rows = [json.loads(line) for line in result.output.splitlines()]
    assert result.exit_code == 0, result.output
    assert rows[:2] == [{"songs": 200, "query_codes": 10, "search_ms_median": 2.0},
                        {"songs": 200, "query_codes": 1, "search_ms_median": 2.0}]
    assert rows[2]["kmeans_ms_per_song"] == 0.4 and len(rows) == 3


def test_as_user_prints_its_figures_as_compare_does():
    """Three significant digits, a dash where there is no figure (it printed 0.8571 and 0.0052083333)."""
    from bench.as_user import markdown

    results = {"songs": 8, "indexed_songs": 6, "queries": 70, "clip_format": "m4a", "seed": 0,
               "recall": {"clean_5s": 6 / 7, "speed_+3%": 1.0}, "offset_right_rate": {"clean_5s": 5 / 6},
               "factor_right": {"speed_+3%": 1.0}, "false_match_rate": 1 / 192,
               "false_match_rate_by_condition": {}, "wrong_match_rate": 0.0, "failed_clips": [],
               "db_bytes_per_audio_s": 128.71, "add_x_realtime": 1234.5, "match_ms_per_clip": 31.25}
    table = markdown(results)
    assert "| clean_5s | 0.857 | 0.833 | – |" in table and "| speed_+3% | 1 | – | 1 |" in table
    assert "| false-match rate (songs not indexed) | 0.00521 |" in table
    assert "| false-match rate, sped-up clips | – |" in table and "| `lmprint add` × realtime | 1,234 |" in table


def test_report_cells_print_figures_as_people_read_them():
    """Three significant digits, and whole thousands with separators from 999.5 up (999.6 was printed `1e+03`)."""
    from bench.report import cell

    assert [cell(v) for v in (0.99259, 26.44, 999.4, 999.6, 12_345.6, None, 7)] == [
        "0.993", "26.4", "999", "1,000", "12,346", "–", "7"]


def test_p95_is_the_95th_percentile_of_the_timed_clips():
    from bench.metrics import Outcome, summarise
    from bench.scale import size_figures

    outcomes = [Outcome("clean_5s", True, f"s{i}", f"s{i}", 0.001 * (i + 1)) for i in range(20)]  # 1..20 ms
    assert summarise(outcomes)["query_ms_p95"] == 19.05 and summarise(outcomes)["query_ms_p50"] == 10.5
    assert size_figures(outcomes)["query_ms_p95"] == 19.05


def test_the_startup_bench_passes_a_table_setting_by_its_dotted_name():
    from bench.startup import set_options

    assert set_options({"min_score": 5, "query": {"fanout": 10}}) == [
        "--set", "min_score=5", "--set", "query.fanout=10"]


def test_the_startup_bench_process_gets_a_table_setting(built_index, tmp_path):
    from bench.startup import measure
    from landmark import Index, audio
    from lmprint.errors import LmprintError

    with Index(built_index) as index:
        song = index.catalogue.songs()[2]
        clip = audio.load(song.path, SYNTH_RATE)[SYNTH_RATE * 6: SYNTH_RATE * 11]
    write(tmp_path / "clip.wav", clip, SYNTH_RATE)
    with pytest.raises(LmprintError, match="fanout"):  # refused by the process: the setting got there
        measure(str(built_index), str(tmp_path / "clip.wav"), runs=1, settings={"query": {"fanout": 0}})


def test_a_miss_is_not_a_wrong_song():
    from bench.metrics import Outcome, summarise

    outcomes = [Outcome("clean_5s", True, "a", "a", 0.01), Outcome("clean_5s", True, "b", None, 0.01),
                Outcome("clean_5s", True, "c", "d", 0.01), Outcome("clean_5s", True, "e", "e", 0.01),
                Outcome("unindexed_clean", False, "h", None, 0.01), Outcome("unindexed_clean", False, "i", "a", 0.01)]
    figures = summarise(outcomes)
    assert figures["wrong_match_rate"] == 0.25 and figures["recall"] == {"clean_5s": 0.5}
    assert figures["false_match_rate"] == 0.5


def test_each_figure_is_in_its_own_row_of_the_report():
    from bench.report import markdown

    keys = ("factor_right_as_recorded", "false_match_rate", "wrong_match_rate", "fingerprint_bytes_per_song",
            "db_bytes_per_song", "db_bytes_per_audio_s", "index_x_realtime", "index_x_realtime_per_core",
            "query_ms_p50", "query_ms_p95", "peak_rss_mb")
    figures = {key: float(11 + n) for n, key in enumerate(keys)}  # each figure unlike every other
    figures.update({"recall": {"clean_5s": 0.5}, "factor_right": {},
                    "false_match_rate_by_condition": {"unindexed_speed": 0.125}})
    table = markdown({"songs": 3, "indexed_songs": 2, "queries": 4, "seed": 0, "conditions": ["clean_5s"],
                      "methods": {"landmark": figures}})
    rows = dict(line.strip("|").split(" | ")[:2] for line in table.splitlines() if line.startswith("| "))
    rows = {label.strip(): value.strip() for label, value in rows.items()}
    assert rows["recall clean_5s"] == "0.5" and rows["false-match rate, sped-up clips"] == "0.125"
    assert rows["query ms p50"] == "19" and rows["query ms p95"] == "20"  # query_ms_p50 = 19.0, p95 = 20.0
    assert rows["wrong-song rate (indexed songs)"] == "13" and rows["false-match rate (songs not indexed)"] == "12"
    assert rows["database bytes / s of audio"] == "16" and rows["peak memory MB (above the interpreter's start)"] == "21"
    assert "2 indexed, the rest kept out for false matches" in table
    every_song_indexed = markdown({"songs": 2, "indexed_songs": 2, "queries": 4, "seed": 0,
                                   "conditions": ["clean_5s"], "methods": {"landmark": figures}})
    assert "2 indexed, none kept out for false matches: too few songs" in every_song_indexed


def test_a_warp_is_right_against_the_conditions_own():
    from bench.metrics import Outcome, summarise

    outcomes = [Outcome("speed_+5%", True, "a", "a", 0.01, (1.05, 1.05)),
                Outcome("speed_+5%", True, "e", "e", 0.01, (1.052, 1.052)),  # within 0.5 %
                Outcome("speed_+5%", True, "b", "b", 0.01, (1.0, 1.0)),  # heard as recorded: wrong
                Outcome("tempo_+8%", True, "c", "c", 0.01, (1.08, 1.0)),
                Outcome("clean_5s", True, "d", "d", 0.01, (1.0, 1.0))]
    figures = summarise(outcomes)
    assert figures["factor_right"] == {"speed_+5%": 0.6667, "tempo_+8%": 1.0}
    assert figures["factor_right_as_recorded"] == 1.0


def test_a_sources_distractors_are_each_a_variant_of_their_own(monkeypatch):
    import types

    from bench import scale

    used = []

    def fake_distractor(frames, bins, settings, rng, variant):
        used.append((int(frames[0]), variant))
        return np.zeros(0, np.int64), np.zeros(0, np.int64), (np.zeros(1, np.int64), np.zeros(1, np.int64))

    class Catalogue:
        count = 3

        def song_count(self):
            return self.count

    index = types.SimpleNamespace(catalogue=Catalogue(), fingerprint_settings=None)
    index.add_fingerprints = lambda batch: setattr(index.catalogue, "count", index.catalogue.count + len(batch))
    monkeypatch.setattr(scale, "distractor", fake_distractor)
    bases = [(np.array([source]), np.array([0]), 20.0) for source in range(3)]
    scale.add_distractors(index, bases, 3 + 60, np.random.default_rng(0))
    assert len(used) == 60
    for source in range(3):
        variants = [v for s, v in used if s == source]
        assert len(variants) == 20 and len(set(variants)) == 20, source


def test_insert_time_is_per_distractor_inserted(tmp_path, monkeypatch):
    from bench import scale as scale_module

    music = tmp_path / "music"
    music.mkdir()
    for seed in range(8):
        write(music / f"g{seed}.flac", rendered(seed + 90, 20.0, SYNTH_RATE), SYNTH_RATE)
    real = scale_module.add_distractors
    monkeypatch.setattr(scale_module, "add_distractors", lambda *a, **k: (real(*a, **k), 0.5)[1])  # 0.5 s a call
    result = scale_module.scale(str(music), [5, 230], None, workdir=str(tmp_path), show_progress=False)
    first, second = result["rows"]
    assert second["insert_ms_per_distractor"] == round(1000 * 0.5 / (230 - first["songs"]), 2)
    assert second["add_one_ms"] == 500.0


def test_a_planted_cut_is_found_only_where_both_its_ends_are():
    from bench.dedup import CUT_LENGTH_S, CUT_START_S, judge
    from landmark.dedup import Duplicates, Overlap

    cut = {"kind": "cut", "source": "a.flac", "path": "b.mp3"}
    paths = {1: "a.flac", 2: "b.mp3"}
    whole = Overlap(1, 2, CUT_START_S + 0.5, CUT_START_S + CUT_LENGTH_S - 0.5, 0.5, CUT_LENGTH_S - 0.5, 100)
    half = Overlap(1, 2, CUT_START_S + 0.5, CUT_START_S + CUT_LENGTH_S / 2, 0.5, CUT_LENGTH_S / 2, 100)
    assert judge([cut], Duplicates([], [whole]), paths)["found"] == 1
    found = judge([cut], Duplicates([], [half]), paths)
    assert found["found"] == 0 and len(found["other_parts"]) == 1


def test_calibrate_counts_what_each_threshold_keeps_of_the_right_matches(tmp_path, monkeypatch):
    import types

    import landmark
    from bench import calibrate, queries

    for i in range(30):
        (tmp_path / f"s{i:02d}.flac").write_bytes(b"x")
    clips = ([queries.Query(f"h{i}", False, "unindexed_clean", 0.0, np.full(800, 0.1, np.float32)) for i in range(6)]
             + [queries.Query(f"s{i}", True, "clean_5s", 0.0, np.full(800, 0.1, np.float32)) for i in range(4)])
    monkeypatch.setattr(queries, "build", lambda *a, **k: clips)
    # (right?, confidence, decided_by) of the indexed clips' matches, in order
    answers = iter([(True, 0.995, "vote"), (True, 0.95, "vote"), (False, 0.999, "vote"), (True, 0.9999, "verified")])
    evidence = iter([(1.0, 0.5), (2.0, 1.5), (3.0, 2.0), (4.0, 3.5), (5.0, 4.0), (6.0, 6.5)])

    class FakeIndex:
        sample_rate_hz = 8000

        def __init__(self, *a, **k):
            pass

        def add(self, paths, jobs=1):
            pass

        def strongest_evidence(self, samples):
            return next(evidence)

        def match_samples(self, samples):
            right, confidence, how = next(answers)
            return types.SimpleNamespace(song=types.SimpleNamespace(path="s0" if right else "other"),
                                         confidence=confidence, decided_by=how)

        def close(self):
            pass

    # the clips of indexed songs are s0..s3, each "right" answer names its own song
    clips[6:] = [queries.Query("s0", True, "clean_5s", 0.0, np.full(800, 0.1, np.float32)) for _ in range(4)]
    monkeypatch.setattr(landmark, "Index", FakeIndex)
    result = calibrate.run(str(tmp_path), None, None, workdir=str(tmp_path))
    assert result["right_matches"] == 3 and len(result["wrong_matches"]) == 1
    assert result["kept"][0.99] == {"vote": 0.5, "confirmed": None, "verified": 1.0}
    assert result["kept"][0.9] == {"vote": 1.0, "confirmed": None, "verified": 1.0}
    assert "| 0.99 | 0.01 | 0.5 | None | 1.0 |" in calibrate.markdown(result)


def test_compress_turns_loud_passages_down_and_leaves_quiet_ones():
    """A passage at full level is turned down by (threshold) × (1 - 1/ratio), about 18.75 dB; one 40 dB below stays."""
    t = np.arange(4 * RATE) / RATE
    signal = np.sin(2 * np.pi * 440 * t).astype(np.float32)
    signal[2 * RATE:] *= 0.01  # the second half 40 dB down
    out = queries.compress(signal, RATE)
    loud = 20 * np.log10(np.std(out[RATE // 2:RATE]) / np.std(signal[RATE // 2:RATE]))
    quiet = 20 * np.log10(np.std(out[3 * RATE:]) / np.std(signal[3 * RATE:]))
    assert loud == pytest.approx(-18.75, abs=1.0) and abs(quiet) < 0.5


def test_cut_draws_starts_over_the_whole_song_up_to_its_last_clip():
    """Clips start anywhere a whole clip fits, the song's last seconds included."""
    rng = np.random.default_rng(5)
    signal = np.arange(RATE * 12, dtype=np.float32)
    starts = [queries.cut(signal, RATE, 5.0, rng)[1] for _ in range(300)]
    assert max(starts) > 6.5 and min(starts) < 0.5 and max(starts) <= 7.0


def test_as_user_prints_each_figure_in_its_own_row():
    """The wrong-song rate, failed clips and match time each show their own figure."""
    from bench.as_user import markdown

    results = {"songs": 8, "indexed_songs": 6, "queries": 70, "clip_format": "m4a", "seed": 0,
               "recall": {"clean_5s": 1.0}, "offset_right_rate": {}, "factor_right": {},
               "false_match_rate": 0.125, "false_match_rate_by_condition": {"unindexed_speed": 0.5},
               "wrong_match_rate": 0.25, "failed_clips": ["a", "b"], "db_bytes_per_audio_s": 300.0,
               "add_x_realtime": 40.0, "match_ms_per_clip": 31.25}
    table = markdown(results)
    for row in ("| false-match rate (songs not indexed) | 0.125 |", "| false-match rate, sped-up clips | 0.5 |",
                "| wrong-song rate (indexed songs) | 0.25 |", "| clips that failed | 2 |",
                "| database bytes / s of audio | 300 |", "| `lmprint add` × realtime | 40 |",
                "| `lmprint match` ms per clip, in batches | 31.2 |"):
        assert row in table, (row, table)


def test_search_speed_reports_the_median_of_searches_that_take_different_times(monkeypatch):
    """Each row's time is the median of its five timed searches, each ranked by the `min` rule."""
    import itertools

    from bench import search_speed

    clock = [0.0]
    durations = itertools.cycle([0.001, 0.002, 0.009, 0.003, 0.050])  # median 3 ms, mean 13, min 1
    rules = []

    def rank(*args, rule=None, **kwargs):
        if rule is not None:  # a timed search (the first, untimed one compiles the kernel)
            rules.append(rule)
            clock[0] += next(durations)

    monkeypatch.setattr("neural.search.rank", rank)
    monkeypatch.setattr(search_speed.time, "perf_counter", lambda: clock[0])
    monkeypatch.setattr("neural.codes.kmeans", lambda *a, **k: None)
    monkeypatch.setattr("neural.codes.Projection.fit", lambda *a, **k: None)
    rows = search_speed.measure([200])
    assert [row["search_ms_median"] for row in rows[:2]] == [3.0, 3.0]
    assert rules == ["min"] * 10


def test_fan_noise_swells_at_0_7_hz():
    """The fan's level rises and falls at 0.7 Hz, by about ± 30 %."""
    from bench import unseen

    fan = unseen.fan_noise(np.random.default_rng(0))
    block = unseen.RATE_HZ // 20  # 50 ms blocks: a level 20 times a second
    level = np.sqrt(np.mean(fan[:fan.size // block * block].reshape(-1, block) ** 2, axis=1))
    spectrum = np.abs(np.fft.rfft(level - level.mean()))
    freqs = np.fft.rfftfreq(level.size, 1 / 20)
    assert freqs[np.argmax(spectrum)] == pytest.approx(0.7, abs=0.05)
    swing = 2 * spectrum.max() / level.size / level.mean()
    assert swing == pytest.approx(0.3, abs=0.06)


@pytest.mark.parametrize("bit_rate", [48_000, 128_000])
def test_an_mp3_is_written_at_the_bit_rate_asked(bit_rate, tmp_path):
    """A file written with a bit rate holds about that many bits a second."""
    path = tmp_path / "song.mp3"
    write(path, rendered(4, 20.0, SYNTH_RATE), SYNTH_RATE, bit_rate=bit_rate)
    assert path.stat().st_size * 8 / 20.0 == pytest.approx(bit_rate, rel=0.1)


def test_the_scale_table_puts_each_figure_under_its_own_column():
    """Each cell of a size's row sits under the header naming its figure."""
    from bench.scale import markdown

    row = {"songs": 1000, "recall": {"clean_5s": 0.5, "speed_+5%": 0.25}, "false_match_rate": 0.01,
           "distractors_named": 3, "query_ms_p50": 11.0, "query_ms_p95": 22.0, "query_ms_p50_indexed": 9.0,
           "query_ms_p50_held_out": 33.0, "insert_ms_per_distractor": 4.5, "add_one_ms": 55.0,
           "db_bytes_per_audio_s": 777.0, "db_mb": 66.0, "cold_start_s": 1.5, "query_process_peak_mb": 88.0}
    header, rule, line = markdown({"rows": [row]}).splitlines()
    names = [cell.strip() for cell in header.strip("|").split("|")]
    cells = dict(zip(names, (cell.strip() for cell in line.strip("|").split("|"))))
    assert rule.count("---") == len(names) == len(line.strip("|").split("|"))
    assert cells == {"songs": "1,000", "recall clean_5s": "0.500", "recall speed_+5%": "0.250",
                     "false-match rate": "0.01", "distractors named": "3", "query ms p50": "11.0", "p95": "22.0",
                     "p50 indexed / held-out": "9.0 / 33.0", "insert ms/song": "4.5", "add one ms": "55.0",
                     "DB B/s of audio": "777", "DB MB": "66.0", "cold start s": "1.5", "query process MB": "88.0"}


def test_reverb_keeps_the_clips_level():
    """A reverberant clip has the standard deviation of the dry clip it came from."""
    from bench import unseen

    rng = np.random.default_rng(0)
    clip = rendered(2, 5.0, SYNTH_RATE)
    for rt60_s in unseen.ROOMS_RT60_S:
        wet = queries.reverb(clip, unseen.synthetic_room(rt60_s, rng))
        assert wet.size == clip.size and np.std(wet) == pytest.approx(np.std(clip), rel=0.01)


@pytest.mark.parametrize("condition", ["speed_+8%", "speed_-8%", "tempo_+10%", "tempo_-10%", "pitch_+3%",
                                       "pitch_-3%"])
def test_a_warped_query_lasts_the_clips_five_seconds(condition, tmp_path):
    """A clip played faster or slower still lasts 5 s exactly, as every other condition's."""
    signal = np.random.default_rng(1).standard_normal(30 * RATE).astype(np.float32)
    samples, start_s = queries.make_query(signal, condition, queries.Degraders.load(None, None),
                                          np.random.default_rng(2), str(tmp_path))
    assert samples.size == 5 * RATE and 0 <= start_s < 25


def test_the_conditions_are_the_full_and_the_quick_lists():
    """The full set is every clip length, noise level, codec and warp in report order; the quick set four."""
    rooms = queries.Degraders({"pink": [np.zeros(10, np.float32)]}, [np.ones(10, np.float32)])
    assert queries.conditions(rooms) == (
        ["clean_1s", "clean_2s", "clean_3s", "clean_5s", "clean_10s"]
        + [f"noise_pink_{snr}dB" for snr in (-5, 0, 5, 10)] + ["reverb", "phone", "mp3_48k", "opus_16k"]
        + [f"speed_{s:+d}%" for s in (-8, -5, -3, -2, -1, 1, 2, 3, 5, 8)]
        + [f"tempo_{s:+d}%" for s in (-10, -5, 5, 10)] + [f"pitch_{s:+d}%" for s in (-3, -2, 2, 3)] + ["musicprint"])
    assert queries.conditions(queries.Degraders({"pink": []}, []), full=False) == [
        "clean_5s", "noise_pink_0dB", "phone", "mp3_48k"]


def test_a_serve_runs_summary_counts_limits_apart_from_errors_and_reads_memory_by_quarters():
    from collections import Counter

    from bench.serve_load import markdown, summary

    figures = summary(Counter({200: 6, 413: 1, 503: 2, 500: 1}), [0.1, 0.2, 0.3], 1, [1, 1, 1, 1, 5, 5, 5, 9], 2.0)
    assert figures["statuses"] == {"200": 6, "413": 1, "500": 1, "503": 2}
    assert figures["errors"] == 1 and figures["wrong_answers"] == 1  # the 500 alone: 413 and 503 keep limits
    assert figures["latency_ms_p50"] == 200.0 and figures["answers_per_s"] == 3.0  # 200s alone: 6 in 2 s
    assert (figures["server_rss_mb_first_quarter_peak"], figures["server_rss_mb_last_quarter_peak"]) == (1, 9)
    row = markdown({"clients": 2, "requests_per_client": 5, "workers": 1, "queue": 0, **figures}).splitlines()[2]
    assert row == "| 2 × 5 | 1 + 0 | 200: 6, 413: 1, 500: 1, 503: 2 | 1 | 1 | 200.0 | 298.0 | 3.0 | 1 → 9 |"


@pytest.mark.slow
def test_serve_under_load_answers_every_upload_right_or_keeps_its_limits():
    """The real server, one worker with no queue, four clients: some uploads are turned away (503), the three over
    the cap refused by their size (413, whether the worker is busy or not), the rest named right, nothing failed."""
    from bench.serve_load import load_test

    result = load_test(clients=4, requests=3, workers=1, queue=0, oversize_every=4)
    assert sum(result["statuses"].values()) == 12 and result["statuses"].get("503", 0) > 0, result
    assert set(result["statuses"]) <= {"200", "413", "503"} and result["statuses"].get("200", 0) > 0, result
    assert result["statuses"].get("413") == 3, result
    assert result["errors"] == 0 and result["wrong_answers"] == 0, result
    assert result["latency_ms_p50"] <= result["latency_ms_p99"]
