"""Clips played faster or slower than the recording: speed, tempo and pitch (`landmark.warp`)."""

from dataclasses import replace

import numpy as np
import pytest
import soxr

from bench import queries
from bench.metrics import Outcome, summarise
from landmark import Index, MatchSettings
from landmark.hashes import FREQ_BITS, pack, pair_indices
from landmark.peaks import refine
from landmark.settings import FingerprintSettings
from landmark.settings import MatchSettings as Matching
from landmark.warp import (
    EXPONENTS,
    Warp,
    _best_covered,
    _best_covered_groups,
    factor_samples,
    fit,
    nearest_on_line,
    warped_query,
)
from tests.conftest import SYNTH_RATE, rendered

RATE = 8000


@pytest.fixture(scope="module")
def index(built_index):
    with Index(built_index) as opened:
        yield opened


def warped_clip(seed: int, kind: str, factor: float, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """A 5 s clip of generated song `seed` played at `factor` along `kind`, at the engine's rate, and its start."""
    clip, start_s = queries.cut(rendered(seed, 40.0, SYNTH_RATE), SYNTH_RATE, 6.0, rng)
    if kind == "speed":
        clip = queries.change_speed(clip, factor)
    elif kind == "tempo":
        clip = queries.time_stretch(clip, SYNTH_RATE, factor)
    else:
        clip = queries.pitch_shift(clip, SYNTH_RATE, factor)
    return soxr.resample(clip[:5 * SYNTH_RATE], SYNTH_RATE, RATE).astype(np.float32), start_s


@pytest.mark.parametrize("kind, factors", [("speed", (0.92, 0.97, 1.05, 1.08)), ("tempo", (0.9, 1.1)),
                                           ("pitch", (0.97, 1.03))])
def test_a_clip_played_faster_or_slower_names_the_song_its_warp_and_where_it_starts(index, kind, factors):
    rng = np.random.default_rng(31)
    for number, factor in enumerate(factors):
        seed = number % 6
        clip, start_s = warped_clip(seed, kind, factor, rng)
        found = index.match_samples(clip)
        assert found is not None and found.song.title == f"song{seed}", (kind, factor)
        heard = {"speed": found.speed, "tempo": found.tempo, "pitch": found.pitch}
        assert heard[kind] is not None and abs(heard[kind] / factor - 1) <= 0.005, (kind, factor, heard)
        if kind != "speed":
            other = "pitch" if kind == "tempo" else "tempo"
            assert abs(heard[other] - 1) <= 0.005, (kind, factor, heard)
        assert abs(found.offset_s - start_s) < 0.15, (kind, factor, found.offset_s, start_s)


def test_a_clip_played_as_recorded_reports_speed_one(index):
    clip, _ = queries.cut(rendered(4, 40.0, RATE), RATE, 5.0, np.random.default_rng(32))
    found = index.match_samples(clip)
    assert found is not None and found.tempo is None and found.pitch is None
    assert found.speed == 1.0 and found.to_dict()["speed"] == 1.0  # as recorded means exactly 1.0


def test_without_the_warped_search_a_clip_five_percent_fast_is_not_named(built_index):
    clip, _ = warped_clip(1, "speed", 1.05, np.random.default_rng(33))
    off = MatchSettings(max_speed_change=0.0, max_tempo_change=0.0, max_pitch_change=0.0)
    with Index(built_index, matching=off) as index:
        assert index.match_samples(clip) is None
    with Index(built_index) as index:
        found = index.match_samples(clip)
        assert found is not None and found.song.title == "song1"


def test_sped_up_clips_of_songs_that_are_not_indexed_give_no_match(index):
    # Every factor tried is another chance for chance to line up; the decision must hold as at factor 1 (see
    # test_library's test of songs that are not indexed: generated songs are far more alike than recordings).
    rng = np.random.default_rng(34)
    false_matches = 0
    for seed in range(100, 116):
        clip, _ = queries.cut(rendered(seed, 20.0, SYNTH_RATE), SYNTH_RATE, 6.0, rng)
        factor = (0.93, 0.97, 1.04, 1.07)[seed % 4]
        clip = soxr.resample(queries.change_speed(clip, factor)[:5 * SYNTH_RATE], SYNTH_RATE, RATE)
        false_matches += index.match_samples(clip.astype(np.float32)) is not None
    assert false_matches <= 1


def test_warped_keys_hold_the_pairs_the_song_stored():
    # Peaks of a "song" on the integer grid, and the same peaks as a clip played 6 % fast would hold them (time
    # / 1.06, frequency × 1.06, off the grid): hashing the clip's peaks warped back must give the song's own keys.
    settings = FingerprintSettings()
    rng = np.random.default_rng(35)
    song_frames = np.sort(rng.choice(np.arange(20, 400), 120, replace=False))
    song_bins = rng.integers(20, 200, song_frames.size)
    anchors, targets = pair_indices(song_frames, song_bins, settings, settings.index)
    stored = set(pack(song_bins[anchors], song_bins[targets] - song_bins[anchors],
                      song_frames[targets] - song_frames[anchors]).tolist())
    clip_frames = song_frames / 1.06 + rng.uniform(-0.1, 0.1, song_frames.size)
    clip_bins = song_bins * 1.06 + rng.uniform(-0.1, 0.1, song_bins.size)
    warped = warped_query(clip_frames, clip_bins, settings, Matching())
    found = stored & set(warped.hashes.distinct.tolist())
    assert len(found) >= 0.9 * len(stored)
    as_is = Matching(max_speed_change=0.0, max_tempo_change=0.0, max_pitch_change=0.0)
    assert warped_query(clip_frames, clip_bins, settings, as_is).hashes.distinct.size == 0


def test_each_warped_key_spans_every_factor_that_makes_it():
    # Brute force: every pair at every sampled factor, rounded both ways, gives a key; each key's entry must
    # span from the first to the last factor of its line that makes it (the search sorts only runs' ends)
    settings, matching = FingerprintSettings(), Matching()
    rng = np.random.default_rng(8)
    frames = np.sort(rng.uniform(0, 300, 90))
    bins = rng.uniform(20, 200, frames.size)
    warped = warped_query(frames, bins, settings, matching)
    lines, factors = factor_samples(matching)
    tempo, pitch = factors ** EXPONENTS[lines, 0], factors ** EXPONENTS[lines, 1]
    zone = (settings.min_delta_frames / tempo.max(), settings.max_delta_frames / tempo.min(),
            settings.max_delta_bins * pitch.max())
    anchors, targets = pair_indices(frames, bins, settings, replace(settings.index, fanout=matching.warp_fanout),
                                    zone)
    spans: dict[tuple[int, int, int], list[float]] = {}
    for line, factor, t, p in zip(lines, factors, tempo, pitch):
        anchor_bins = np.round(bins[anchors] / p).astype(int)
        delta_bins = np.round(bins[targets] / p).astype(int) - anchor_bins
        for rounded in (np.floor, np.ceil):
            delta_frames = rounded((frames[targets] - frames[anchors]) * t).astype(int)
            ok = ((delta_frames >= settings.min_delta_frames) & (delta_frames <= settings.max_delta_frames)
                  & (np.abs(delta_bins) <= settings.max_delta_bins) & (anchor_bins >= 0) & (anchor_bins < 1 << FREQ_BITS))
            for pair in np.flatnonzero(ok):
                key = (int(line), int(pair), int(pack(anchor_bins[pair], delta_bins[pair], delta_frames[pair])))
                low, high = spans.get(key, (factor, factor))
                spans[key] = [min(low, factor), max(high, factor)]
    expected = sorted((h, line, low, high) for (line, _, h), (low, high) in spans.items())
    query = warped.hashes
    hashes = np.repeat(query.distinct, query.counts)
    assert sorted(zip(hashes.tolist(), warped.line.tolist(), warped.low.tolist(), warped.high.tolist())) == expected


def test_refined_peaks_find_the_vertex_of_a_parabola_and_round_back_to_the_peak():
    frames, bins = np.mgrid[0:9, 0:9]
    true_frame, true_bin = 4.3, 3.8
    values = -((frames - true_frame) ** 2) - 2 * (bins - true_bin) ** 2
    fine_frames, fine_bins = refine(values, np.array([4]), np.array([4]))
    assert fine_frames[0] == pytest.approx(true_frame) and fine_bins[0] == pytest.approx(true_bin)
    edge_frames, _ = refine(values, np.array([0]), np.array([4]))
    assert edge_frames[0] == 0  # no neighbour before the first frame: kept where it is


def test_a_warp_is_put_on_the_nearest_line():
    assert nearest_on_line(1.05, 1.05) == Warp("speed", pytest.approx(1.05))
    assert nearest_on_line(1.0, 1.03).kind == "pitch"
    assert nearest_on_line(0.9, 1.0).kind == "tempo"
    assert nearest_on_line(1.001, 1.0).kind == "speed"  # within measurement error of 1.0: as recorded
    warp = Warp("speed", 1.05)
    frames, bins = warp.to_clip(np.array([105, 210]), np.array([100, 200]))
    assert frames.tolist() == [100, 200] and bins.tolist() == [105, 210]


def test_the_bench_scores_a_reported_warp_against_the_condition():
    outcomes = [Outcome("speed_+5%", True, "a", "a", 0.01, (1.049, 1.049)),
                Outcome("speed_+5%", True, "b", "b", 0.01, (1.03, 1.03)),
                Outcome("tempo_-10%", True, "c", "c", 0.01, (0.901, 1.0)),
                Outcome("tempo_-10%", True, "d", "d", 0.01, (0.9, 0.9)),  # right tempo, wrong pitch
                Outcome("pitch_+3%", True, "e", "x", 0.01, (1.0, 1.03))]  # wrong song: not scored
    figures = summarise(outcomes)
    assert figures["factor_right"] == {"speed_+5%": 0.5, "tempo_-10%": 0.5}
    assert figures["factor_right_overall"] == 0.5


def test_the_factor_most_spans_cover_is_where_they_overlap():
    low, high = np.array([0.95, 1.01, 1.02, 1.025]), np.array([1.05, 1.03, 1.04, 1.035])
    weight, factor = _best_covered(low, high, np.ones(4))
    assert weight == 4 and 1.025 <= factor <= 1.03
    weight, factor = _best_covered(low, high, np.array([5.0, 1.0, 1.0, 1.0]))  # one heavy span alone wins
    assert weight == 8 and 1.025 <= factor <= 1.03


def test_a_fit_on_too_few_or_degenerate_peaks_leaves_the_warp_as_found():
    warp = Warp("speed", 1.03)
    song_frames, song_bins = np.arange(100, 400, 10), np.full(30, 120)
    clip_frames, clip_bins = song_frames[:5] / 1.03 - 100 / 1.03, song_bins[:5] * 1.03
    assert fit(clip_frames.astype(float), clip_bins.astype(float), song_frames, song_bins, warp, 100) == (warp, 100)
    # every clip peak in one frame: no slope to fit, and never a NaN
    one_frame = np.zeros(20)
    same_bins = np.full(20, 120 * 1.03)
    fitted, start = fit(one_frame, same_bins, np.full(20, 100), np.full(20, 120), warp, 100)
    assert np.isfinite(fitted.factor) and np.isfinite(start)


def test_spans_of_many_groups_are_swept_as_each_alone():
    """`estimates` sweeps every candidate and line at once: each group's answer is the one it gets alone, and the
    factor returned is covered by the most weight that any factor is (checked by brute force)."""
    rng = np.random.default_rng(3)
    groups = np.repeat([0, 4, 5, 9], [7, 1, 12, 5])
    low = 0.92 + 0.16 * rng.random(groups.size)
    high = low + 0.03 * rng.random(groups.size)
    weights = rng.choice([0.5, 1.0, 2.5], groups.size)
    tops, middles = _best_covered_groups(groups, low, high, weights)
    assert sorted(tops) == [0, 4, 5, 9]
    for group in tops:
        mine = groups == group
        assert (tops[group], middles[group]) == _best_covered(low[mine], high[mine], weights[mine])

        def cover(factor, mine=mine):
            return weights[mine][(low[mine] <= factor) & (factor <= high[mine])].sum()

        most = max(cover(x) for x in np.r_[low[mine], high[mine]])
        assert tops[group] == pytest.approx(most) and cover(middles[group]) == pytest.approx(most)
