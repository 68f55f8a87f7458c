"""Peak-level verification, on generated music: agreement at the true offset, chance elsewhere, and matches that
voting alone misses."""

import numpy as np
import pytest

from bench import queries
from bench.audio_io import codec_round_trip
from landmark import FingerprintSettings, Index, MatchSettings
from landmark.fingerprint import extract_peaks, fingerprint
from landmark.verify import ProminenceMap, agreement, heard_span, run_edges
from tests.conftest import rendered

RATE = 8000
CONFIG = FingerprintSettings()
MATCHING = MatchSettings()


def _prominence(clip: np.ndarray) -> ProminenceMap:
    return ProminenceMap.of(fingerprint(clip, CONFIG, MATCHING.query, with_prominence=True).prominence, CONFIG)


def test_a_songs_peaks_agree_with_a_noisy_clip_of_it_only_at_the_clips_offset():
    rng = np.random.default_rng(1)
    song = rendered(3, 40.0, RATE)
    song_frames, song_bins = extract_peaks(song, CONFIG, CONFIG.index)
    start = 12 * RATE + 37 * CONFIG.hop_size  # on the frame grid: the clip's frame 0 is the song's frame `delta`
    delta = start // CONFIG.hop_size
    clip = queries.add_noise(song[start:start + 5 * RATE], queries.pink_noise(5 * RATE, rng), 0.0, rng)
    prominence = _prominence(clip)
    z, found_delta = agreement(prominence, song_frames, song_bins, delta + 1, MATCHING)  # the vote is a frame off
    assert z >= MATCHING.min_agreement_z and found_delta == delta
    for wrong in (delta - 300, delta + 157, delta + 800):  # other places of the same song (same notes, same beat)
        assert agreement(prominence, song_frames, song_bins, wrong, MATCHING)[0] < MATCHING.min_agreement_z
    other = rendered(4, 40.0, RATE)  # another song of the same synthesizer, scale and tempo range
    assert agreement(prominence, *extract_peaks(other, CONFIG, CONFIG.index), delta, MATCHING)[0] < MATCHING.min_agreement_z


def test_digital_silence_in_a_clip_does_not_inflate_the_agreement_read_where_it_sounds():
    """Each bin is standardised over the frames that hold sound: a second of music before 5 s of digital silence
    reads as that second alone does (over every frame, its spread was divided by about √6, and every z read there
    multiplied by it)."""
    music = rendered(3, 40.0, RATE)[20 * RATE:21 * RATE]
    alone = _prominence(music).standardised
    padded = _prominence(np.concatenate([music, np.zeros(5 * RATE, np.float32)])).standardised
    sounding = np.abs(padded).max(axis=1) > 0
    assert alone.shape[0] - 8 <= sounding.sum() < padded.shape[0] / 4
    assert np.std(padded[sounding]) == pytest.approx(np.std(alone), rel=0.1)  # 2.2 times as much before


def test_a_songs_peaks_where_the_clip_is_digitally_silent_are_no_evidence_either_way():
    """4 s of a song, then 4 s of zeros: its agreement at the right offset is that of the 4 s alone. (Read as
    points of no prominence, the song's peaks under the silence divided it by about √2: a song that goes on where
    a recording stopped lost to one that ends there.)"""
    song = rendered(2, 40.0, RATE)
    start = 10 * RATE + 11 * CONFIG.hop_size  # on the frame grid
    music = song[start:start + 4 * RATE]
    song_frames, song_bins = extract_peaks(song, CONFIG, CONFIG.index)
    delta = start // CONFIG.hop_size
    alone, _ = agreement(_prominence(music), song_frames, song_bins, delta, MATCHING)
    padded_map = _prominence(np.concatenate([music, np.zeros(4 * RATE, np.float32)]))
    padded, _ = agreement(padded_map, song_frames, song_bins, delta, MATCHING)
    assert padded_map.sounding is not None and _prominence(music).sounding is None
    assert alone > 3 and padded == pytest.approx(alone, rel=0.15), (alone, padded)


def test_a_songs_peaks_tell_where_in_a_clip_it_is_heard_and_where_another_song_takes_over():
    """3.3 s of song 3 cut into song 4 (no grid in common): song 3 is heard up to the cut and song 4 from it. Song 4
    begins there with a note; song 3's last note began 0.5 s before (the generated songs' peaks come in bursts at
    their notes' onsets, so a boundary falls somewhere between two bursts). A song not in the clip is heard
    nowhere."""
    three, four = rendered(3, 40.0, RATE), rendered(4, 40.0, RATE)
    start, cut = 12 * RATE + 37 * CONFIG.hop_size, int(3.3 * RATE)  # song 3 on the frame grid
    clip = np.concatenate([three[start:start + cut], four[20 * RATE:20 * RATE + 8 * RATE - cut]])
    prominence = _prominence(clip)
    frame_s = CONFIG.frame_s
    cut_frame = 3.3 / frame_s
    three_peaks = extract_peaks(three, CONFIG, CONFIG.index)
    first, end = heard_span(prominence, *three_peaks, start // CONFIG.hop_size, 10_000, MATCHING)
    assert first == 0 and abs(end - cut_frame) * frame_s <= 0.75
    four_frames, four_bins = extract_peaks(four, CONFIG, CONFIG.index)
    four_delta = int(round(20 / frame_s - cut_frame))  # song 4's frame at the clip's start
    first, end = heard_span(prominence, four_frames, four_bins, four_delta, 10_000, MATCHING)
    assert abs(first - cut_frame) <= 4 and end == prominence.standardised.shape[0]
    # a song that ends within the clip is heard up to its own end at most; one not in it, nowhere
    delta = start // CONFIG.hop_size
    ends_early = three_peaks[0] < delta + 100  # a file of song 3 that stops 100 frames into the clip
    assert heard_span(prominence, three_peaks[0][ends_early], three_peaks[1][ends_early], delta, delta + 100,
                      MATCHING)[1] == 100
    assert heard_span(prominence, *extract_peaks(rendered(5, 40.0, RATE), CONFIG, CONFIG.index), 300, 10_000,
                      MATCHING) is None


def test_a_run_of_peaks_covers_halfway_to_its_neighbours_or_to_the_edges():
    frames = np.array([0, 10, 20, 40])
    assert run_edges(frames, 1, 2, 0, 100) == (5, 30)  # (0 + 10 + 1) // 2 and (20 + 40 + 1) // 2
    assert run_edges(frames, 0, 3, 0, 100) == (0, 100)  # every peak: the edges
    assert run_edges(frames, 2, 2, 0, 100) == (15, 30)


def test_the_last_second_of_a_song_before_silence_names_no_other_songs_end(built_index):
    """Half a second of a song, then digital silence: too little to name, and never another song, whose own end
    lines its peaks up under that half second and nowhere else (5 of these 18 named one, at false-match
    probabilities of 2e-5 to 1e-3, while silence inflated every agreement)."""
    with Index(built_index) as index:
        for seed in range(6):
            song = rendered(seed, 40.0, RATE)
            for end_s in (19.0, 26.0, 33.0):
                clip = np.concatenate([song[int((end_s - 0.5) * RATE):int(end_s * RATE)],
                                       np.zeros(int(5.5 * RATE), np.float32)])
                found = index.match_samples(clip)
                assert found is None or found.song.title == f"song{seed}", (seed, end_s, found)


def test_a_pause_in_the_stream_splits_where_a_song_is_heard_and_silence_in_the_song_itself_does_not(tmp_path):
    """3 s of digital silence: where the stream paused (the song's own peaks go on under it), the song is heard on
    the heavier side only; where the song itself holds the silence (stored so), it is heard right across it (a
    monitor ended such a song at its own gap)."""
    from bench.audio_io import write

    silence = np.zeros(3 * RATE, np.float32)
    song = rendered(3, 40.0, RATE)
    gapped = np.concatenate([song[:15 * RATE], silence, song[18 * RATE:]])
    write(tmp_path / "gapped.wav", gapped, RATE)
    with Index(tmp_path / "index.db", create=True) as index:
        index.add([str(tmp_path / "gapped.wav")])
        named = index.match_samples(gapped[:10 * RATE])
        assert named is not None and named.song.title == "gapped"
        first_s, end_s = index.heard_span(gapped[5 * RATE:25 * RATE], named, 5.0)
        assert first_s < 0.5 and end_s > 19.5, (first_s, end_s)  # across the song's own 10-13 s of silence
        paused = np.concatenate([gapped[5 * RATE:13 * RATE], silence, gapped[13 * RATE:17 * RATE]])
        first_s, end_s = index.heard_span(paused, named, 5.0)  # heard 0-8 s at its clock, then after the pause
        assert first_s < 0.5 and abs(end_s - 8.0) < 0.5, (first_s, end_s)  # not 4 s of it at the wrong clock


def test_verification_reads_a_candidates_other_offsets_too():
    """The vote's best Δt for the true song can be another return of the passage, or chance: its peaks then agree
    at one of the other offsets the vote found, and the match reports that offset."""
    from landmark.verify import verify
    from landmark.vote import Candidate

    rng = np.random.default_rng(4)
    song = rendered(3, 40.0, RATE)
    stored = {1: extract_peaks(song, CONFIG, CONFIG.index)}
    start = 15 * RATE + 5 * CONFIG.hop_size
    delta = start // CONFIG.hop_size
    clip = _prominence(queries.add_noise(song[start:start + 5 * RATE], queries.pink_noise(5 * RATE, rng), 0.0, rng))

    def song_peaks(ids):
        return {i: stored[i] for i in ids if i in stored}

    found, how = verify([Candidate(1, 30.0, delta - 400, (delta + 700, delta))], clip, song_peaks, MATCHING)
    assert how in ("confirmed", "verified")
    assert found is not None and found.song_id == 1 and found.delta_frames == delta
    assert verify([Candidate(1, 30.0, delta - 400, (delta + 700,))], clip, song_peaks, MATCHING)[0] is None


def test_a_song_with_no_peaks_under_the_clip_does_not_agree():
    clip = rendered(3, 5.0, RATE)
    z, _ = agreement(_prominence(clip), np.array([10_000, 10_050]), np.array([40, 50]), 0, MATCHING)
    assert z == -np.inf


def test_a_match_by_vote_stands_only_if_the_songs_peaks_are_in_the_clip():
    from landmark.verify import agreement_at, confirms_vote
    from landmark.vote import Candidate

    def agrees(voted, clip, song_peaks, settings):
        return confirms_vote(agreement_at(voted, clip, song_peaks, settings), settings)

    song, other = rendered(3, 40.0, RATE), rendered(4, 40.0, RATE)
    stored = {1: extract_peaks(song, CONFIG, CONFIG.index), 2: extract_peaks(other, CONFIG, CONFIG.index)}
    start = 20 * RATE + 11 * CONFIG.hop_size
    clip = _prominence(song[start:start + 5 * RATE])

    def song_peaks(ids):
        return {i: stored[i] for i in ids if i in stored}

    delta = start // CONFIG.hop_size
    assert agrees(Candidate(1, 50.0, delta), clip, song_peaks, MATCHING)
    assert not agrees(Candidate(2, 50.0, delta), clip, song_peaks, MATCHING)  # pairs lined up, peaks do not
    assert agrees(Candidate(3, 50.0, delta), clip, song_peaks, MATCHING)  # no stored peaks (schema 3): the vote stands


def test_verification_names_noisy_clips_that_voting_alone_leaves_unmatched(built_index):
    """Babble of eight other songs at −6 dB: their notes outrank the song's among the clip's selected peaks, so
    few pairs survive and voting alone (verification off) names few clips. The song's notes still stand above the
    background: verification names most clips, at the right offset, and still names nothing for clips of songs
    that are not indexed."""
    rng = np.random.default_rng(3)
    clips = []
    for seed in range(6):
        clip, start_s = queries.cut(rendered(seed, 40.0, RATE), RATE, 5.0, rng)
        babble = sum(rendered(10 * seed + 50 + voice, 5.0, RATE)[:clip.size] for voice in range(8))
        clips.append((queries.add_noise(clip, babble, -6.0, rng), seed, start_s))
    found = {}
    for name, matching in (("vote", MatchSettings(verify_candidates=0)), ("verify", MatchSettings())):
        with Index(built_index, matching=matching) as index:
            matches = [(index.match_samples(clip), seed, start_s) for clip, seed, start_s in clips]
        found[name] = [m for m, seed, start_s in matches
                       if m is not None and m.song.title == f"song{seed}" and abs(m.offset_s - start_s) < 0.1]
        assert all(m is None or m.song.title == f"song{seed}" for m, seed, _ in matches)  # no wrong song named
    assert len(found["verify"]) >= 5 and len(found["verify"]) >= len(found["vote"]) + 2
    with Index(built_index) as index:
        for seed in range(200, 215):
            clip, _ = queries.cut(rendered(seed, 20.0, RATE), RATE, 5.0, rng)
            assert index.match_samples(clip) is None


def _decide(monkeypatch, config, scores, z_of_song):
    """The song `verify` picks among candidates with these vote scores and agreements (song ids 1, 2, ...)."""
    from landmark import verify as verify_module
    from landmark.vote import Candidate

    clip = ProminenceMap.of(np.zeros((300, CONFIG.fft_size // 2 + 1), np.float32), CONFIG)
    monkeypatch.setattr(verify_module, "agreements_of", lambda m, readings, c: (
        np.array([z_of_song[int(f[0])] for f, _, _ in readings]), np.array([d[0] for _, _, d in readings])))
    candidates = [Candidate(song, score, 100 + song) for song, score in enumerate(scores, start=1)]
    found, _ = verify_module.verify(candidates, clip, lambda ids: {i: (np.array([i]), np.array([20])) for i in ids},
                                    config)
    return found and found.song_id


def test_the_best_agreeing_candidate_must_stand_out_from_the_others(monkeypatch):
    """The decision rule of `verify` on given agreements: the best z must reach `min_agreement_z` and lead the
    runner-up's z by `min_agreement_lead`, whatever the vote's order."""
    config = MatchSettings(min_agreement_z=5.5, min_agreement_lead=2.0)
    scores = (39.0, 38.0, 37.0)  # too close for the vote's leader to be confirmed
    assert _decide(monkeypatch, config, scores, {1: 1.0, 2: 2.0, 3: 8.0}) == 3  # the vote's third agrees far better
    assert _decide(monkeypatch, config, scores, {1: 1.0, 2: 6.5, 3: 8.0}) is None  # a shared passage, not a match
    assert _decide(monkeypatch, config, scores, {1: 1.0, 2: 5.0, 3: 3.0}) is None  # below the threshold
    assert _decide(monkeypatch, config, scores, {1: 5.0, 2: 2.0, 3: 1.0}) is None


def test_a_clear_vote_leader_is_confirmed_with_less_agreement(monkeypatch):
    """The vote's leader, ahead by `confirm_min_ratio`, needs only `confirm_min_z` and a lead of `confirm_min_lead`."""
    config = MatchSettings(min_agreement_z=6.0, min_agreement_lead=3.0, confirm_min_ratio=1.25, confirm_min_z=4.0,
                    confirm_min_lead=1.5)
    clear, close = (50.0, 30.0, 29.0), (50.0, 45.0, 29.0)
    assert _decide(monkeypatch, config, clear, {1: 4.5, 2: 2.0, 3: 1.0}) == 1
    assert _decide(monkeypatch, config, close, {1: 4.5, 2: 2.0, 3: 1.0}) is None  # the vote does not single it out
    assert _decide(monkeypatch, config, clear, {1: 3.5, 2: 1.0, 3: 1.0}) is None  # too little agreement
    assert _decide(monkeypatch, config, clear, {1: 4.5, 2: 3.5, 3: 1.0}) is None  # another song agrees nearly as well
    assert _decide(monkeypatch, config, clear, {1: 4.5, 2: 8.0, 3: 1.0}) == 2  # another song agrees alone


def test_a_close_vote_leader_is_confirmed_with_more_agreement(monkeypatch):
    """Short of `confirm_min_ratio`, the vote's leader needs `confirm_close_min_z`: still less than alone."""
    config = MatchSettings(min_agreement_z=6.0, min_agreement_lead=3.0, confirm_min_ratio=1.25, confirm_min_z=4.0,
                    confirm_close_min_z=5.0, confirm_min_lead=2.0)
    close = (50.0, 45.0, 29.0)
    assert _decide(monkeypatch, config, close, {1: 5.5, 2: 2.0, 3: 1.0}) == 1
    assert _decide(monkeypatch, config, close, {1: 4.5, 2: 2.0, 3: 1.0}) is None  # enough only for a clear leader
    assert _decide(monkeypatch, config, close, {1: 5.5, 2: 4.0, 3: 1.0}) is None  # another song agrees nearly as well
    assert _decide(monkeypatch, config, close, {1: 2.0, 2: 5.5, 3: 1.0}) is None  # not the vote's leader: alone only


def test_copies_of_a_recording_share_their_peaks_and_different_songs_do_not():
    from landmark.verify import shared_peaks

    song = rendered(3, 30.0, RATE)
    flac = extract_peaks(song, CONFIG, CONFIG.index)
    delayed = extract_peaks(np.r_[np.zeros(5 * CONFIG.hop_size, np.float32), song], CONFIG, CONFIG.index)
    other = extract_peaks(rendered(4, 30.0, RATE), CONFIG, CONFIG.index)
    assert shared_peaks(flac, delayed, 5) > 0.9  # a copy starting 5 frames later (another encoder's delay)
    assert shared_peaks(flac, delayed, 0) < 0.2  # ...at the wrong offset it is not a copy
    assert shared_peaks(flac, other, 0) < 0.1  # same synthesizer, scale and tempo range: still another song


def test_many_readings_in_one_pass_agree_with_each_read_point_by_point():
    """`agreements_of` lays many readings on one axis to read them in one pass: each reading's z and Δt must be
    what summing the clip's standardised prominence at its own peaks gives, whatever its neighbours (a song read at
    offsets before the clip, past its end, or with no peaks at all)."""
    from landmark.verify import agreements_of

    rng = np.random.default_rng(5)
    song, other = rendered(3, 40.0, RATE), rendered(4, 40.0, RATE)
    clip = _prominence(queries.add_noise(song[20 * RATE:25 * RATE], queries.pink_noise(5 * RATE, rng), 5.0, rng))
    peaks, other_peaks = extract_peaks(song, CONFIG, CONFIG.index), extract_peaks(other, CONFIG, CONFIG.index)
    none = (np.zeros(0, np.int64), np.zeros(0, np.int64))
    delta = 20 * RATE // CONFIG.hop_size
    readings = [(*peaks, (delta - 1, delta + 500)), (*other_peaks, (-40,)), (*none, (delta,)),
                (*peaks, (-600, delta + 2)), (*other_peaks, (delta, 10_000))]
    n_frames, n_bins = clip.standardised.shape
    zs, deltas = agreements_of(clip, readings, MATCHING)
    shift = MATCHING.verify_shift_frames
    for (frames, bins, voted), z, found in zip(readings, zs, deltas):
        best = (-np.inf, voted[0])
        for offset in [v + s for v in voted for s in range(-shift, shift + 1)]:
            total, count = 0.0, 0
            for frame, bin_ in zip(frames.tolist(), bins.tolist()):
                if offset <= frame < offset + n_frames and 0 <= bin_ - clip.first_bin < n_bins:
                    total += float(clip.standardised[frame - offset, bin_ - clip.first_bin])
                    count += 1
            if count and total / np.sqrt(count) > best[0]:
                best = (total / np.sqrt(count), offset)
        assert np.isclose(z, best[0]) if np.isfinite(best[0]) else z == -np.inf
        assert found == best[1]
    assert zs[0] >= MATCHING.min_agreement_z and deltas[0] == delta  # the true offset, a frame from the vote's
    assert zs[2] == -np.inf and zs[3] >= MATCHING.min_agreement_z


def test_readings_side_by_side_never_see_each_others_peaks_and_ties_go_to_the_first_offset():
    """On a flat map every offset's z is √(peaks under the clip), so ties are everywhere: each reading takes its
    first offset at its best, and a reading whose peaks lie at the far end of the axis (the largest frame of all)
    does not reach into the next reading's first window."""
    from landmark.verify import agreements_of

    clip = ProminenceMap(np.ones((10, 4), np.float32), first_bin=0)
    matching = MatchSettings(verify_shift_frames=1)
    one = np.array([1])
    readings = [(np.array([0, 30]), np.array([1, 1]), (0,)),  # frame 0 under all three windows; 30 under none
                (np.array([3]), one, (-5,)),  # the lowest offset of all (-6), right after the largest frame
                (np.zeros(0, np.int64), np.zeros(0, np.int64), (7,)),  # no peaks: the first Δt as voted
                (np.array([2]), np.array([4]), (2,))]  # its one peak is out of the band
    zs, deltas = agreements_of(clip, readings, matching)
    assert zs.tolist() == [1.0, 1.0, -np.inf, -np.inf] and deltas.tolist() == [-1, -6, 7, 2]


def test_verification_reads_a_song_far_down_the_vote(monkeypatch):
    """Under noise a large library's chance leaders push a song's weak vote down the ranking: verification reads as
    deep as `verify_candidates`, and no deeper."""
    scores = tuple(100.0 - 0.5 * rank for rank in range(100))
    agreeing = {song: 1.0 for song in range(1, 101)} | {61: 9.0}  # the vote's 61st agrees far better than any other
    assert _decide(monkeypatch, MatchSettings(), scores, agreeing) == 61
    assert _decide(monkeypatch, MatchSettings(verify_candidates=60), scores, agreeing) is None


def test_a_decision_among_the_vote_s_best_stands_whatever_deeper_candidates_agree(monkeypatch):
    """The first `verify_first_candidates` decide alone first: a deeper candidate that agrees by chance does not
    take away the lead that the vote's leader has over its nearest rivals; weighed all at once, it would."""
    scores = tuple(100.0 - 0.5 * rank for rank in range(100))
    agreeing = {song: 1.0 for song in range(1, 101)} | {1: 7.0, 61: 5.5}
    assert _decide(monkeypatch, MatchSettings(), scores, agreeing) == 1
    assert _decide(monkeypatch, MatchSettings(verify_first_candidates=80), scores, agreeing) is None


def test_each_deeper_tier_is_read_only_when_the_ones_before_single_out_nothing(monkeypatch):
    """With `verify_candidates` 320 the tiers are 20, 80 and 320: the vote's 200th is found when the first 80 single
    out nothing; a decision at 80 stands whatever a chance agreement deeper down shows, and nothing deeper is read."""
    from landmark.verify import tiers

    class Read(dict):
        def __init__(self, *args):
            super().__init__(*args)
            self.songs: set[int] = set()  # those whose agreement was read

        def __getitem__(self, song):
            self.songs.add(song)
            return super().__getitem__(song)

    assert tiers(320, 20) == [20, 80, 320] and tiers(80, 20) == [20, 80] and tiers(10, 20) == [10]
    scores = tuple(300.0 - 0.5 * rank for rank in range(330))
    deep = MatchSettings(verify_candidates=320)
    agreeing = Read({song: 1.0 for song in range(1, 331)} | {200: 9.0})
    assert _decide(monkeypatch, MatchSettings(), scores, agreeing) is None and max(agreeing.songs) == 80
    assert _decide(monkeypatch, deep, scores, agreeing) == 200 and max(agreeing.songs) == 320
    agreeing = Read(agreeing | {61: 7.0, 200: 5.5})
    assert _decide(monkeypatch, deep, scores, agreeing) == 61 and max(agreeing.songs) == 80
    assert _decide(monkeypatch, MatchSettings(verify_candidates=320, verify_first_candidates=320), scores,
                   agreeing) is None  # weighed all at once, the deeper chance agreement takes its lead away


def test_a_copy_whose_vote_differs_by_chance_does_not_count_against_its_recording():
    """Two files of one recording: under noise their votes differ by chance (here 30 against 10), while their
    peaks agree with the clip alike. Verification judges them copies by their peaks, not their votes, and names
    the recording; a different song that agrees as well would still leave nothing singled out."""
    from landmark.verify import CopyCheck, verify
    from landmark.vote import Candidate

    rng = np.random.default_rng(4)
    song = rendered(3, 40.0, RATE)
    start = 15 * RATE + 5 * CONFIG.hop_size
    delta = start // CONFIG.hop_size
    clip = _prominence(queries.add_noise(song[start:start + 5 * RATE], queries.pink_noise(5 * RATE, rng), 0.0, rng))
    peaks = extract_peaks(song, CONFIG, CONFIG.index)
    stored = {1: peaks, 2: (peaks[0].copy(), peaks[1].copy())}

    def song_peaks(ids):
        return {i: stored[i] for i in ids if i in stored}

    candidates = [Candidate(1, 30.0, delta), Candidate(2, 10.0, delta)]
    copies = CopyCheck(song_peaks, lambda ids: {i: 40.0 for i in ids}, MATCHING)
    found, how = verify(candidates, clip, song_peaks, MATCHING, copies.same_recording)
    assert found is not None and found.song_id == 1 and how in ("confirmed", "verified"), (found, how)
    assert copies.copies == {1: {2}}
    # a medley holding this passage among other music (80 s): not one recording, so the two tie
    frames, bins = peaks
    other_frames, other_bins = extract_peaks(rendered(4, 80.0, RATE), CONFIG, CONFIG.index)
    passage = (frames >= delta - 200) & (frames < delta + 600)  # about 3 s before the clip to 5 s after it
    others = (other_frames < delta - 200) | (other_frames >= delta + 600)
    stored[2] = (np.r_[frames[passage], other_frames[others]], np.r_[bins[passage], other_bins[others]])
    order = np.argsort(stored[2][0], kind="stable")
    stored[2] = (stored[2][0][order], stored[2][1][order])
    medley = CopyCheck(song_peaks, lambda ids: {1: 40.0, 2: 80.0}, MATCHING)
    assert verify(candidates, clip, song_peaks, MATCHING, medley.same_recording)[0] is None
    # the same recording cut short (its first 20 s, a partial download): one recording where both play
    stored[2] = (frames[frames < 20 * RATE // CONFIG.hop_size], bins[frames < 20 * RATE // CONFIG.hop_size])
    cut = CopyCheck(song_peaks, lambda ids: {1: 40.0, 2: 20.0}, MATCHING)
    found, how = verify(candidates, clip, song_peaks, MATCHING, cut.same_recording)
    assert found is not None and found.song_id == 1 and cut.copies == {1: {2}}, (found, how)
    stored[2] = (peaks[0].copy(), peaks[1].copy())
    # a copy that lost a tenth of its peaks (a lossy encoding) agrees a little worse than the other file, though
    # it leads the vote: each holds most of the other's peaks, so the better one does not count against it
    kept = np.arange(peaks[0].size) % 10 != 0
    stored[1] = (peaks[0][kept], peaks[1][kept])
    copies = CopyCheck(song_peaks, lambda ids: {i: 40.0 for i in ids}, MATCHING)
    found, how = verify(candidates, clip, song_peaks, MATCHING, copies.same_recording)
    assert found is not None and found.song_id in (1, 2), (found, how)


def test_files_as_long_are_one_recording_from_the_same_start_wherever_their_votes_place_them():
    """A song built on a 5 s passage that returns under a changing melody, as two files (the second lossy: a tenth
    of its peaks lost): a short clip of the passage lines each file up at one of its returns, not always the same,
    and 5 s apart the files share under half their peaks. So the two were another's rivals, and a new user's clean
    3 s clips of such a song held three times named nothing for 5 of 20. Files as long are compared from the same
    start too, where every transcode and retag holds its recording, over the whole and where the clip plays;
    another song as long is no copy, nor a version that shares the rest but ends otherwise, for a clip of the
    ending."""
    from landmark.verify import CopyCheck, shared_peaks
    from landmark.vote import Candidate

    song = np.tile(rendered(11, 5.0, RATE), 12) + 0.5 * rendered(12, 60.0, RATE)
    frames, bins = extract_peaks(song, CONFIG, CONFIG.index)
    lossy = np.arange(frames.size) % 10 != 3
    stored = {1: (frames, bins), 2: (frames[lossy], bins[lossy]),
              3: extract_peaks(rendered(13, 60.0, RATE), CONFIG, CONFIG.index)}

    def song_peaks(ids):
        return {i: stored[i] for i in ids if i in stored}

    passage, clip = 5 * RATE // CONFIG.hop_size, 3 * RATE // CONFIG.hop_size
    assert shared_peaks(stored[1], stored[2], passage) < MATCHING.copy_min_shared_peaks  # at the next return
    copies = CopyCheck(song_peaks, lambda ids: {i: 60.0 for i in ids}, MATCHING, clip_frames=clip)
    assert copies(Candidate(1, 50.0, 1000), Candidate(2, 45.0, 1000 + passage))
    assert copies(Candidate(2, 50.0, 1000 + 2 * passage), Candidate(1, 45.0, 1000))
    assert not copies(Candidate(1, 50.0, 1000), Candidate(3, 45.0, 1000))
    assert not copies(Candidate(1, 50.0, 1000), Candidate(3, 45.0, 1000 + passage))
    # the song's first 45 s with another ending: two thirds of their peaks shared from the same start, none where
    # a clip of the song's ending plays
    edit = np.r_[song[:45 * RATE], rendered(14, 15.0, RATE)]
    stored[4] = extract_peaks(edit, CONFIG, CONFIG.index)
    assert shared_peaks(stored[1], stored[4], 0) >= MATCHING.copy_min_shared_peaks
    ending = 50 * RATE // CONFIG.hop_size
    assert not copies(Candidate(1, 50.0, ending), Candidate(4, 45.0, ending - passage))
    assert copies(Candidate(1, 50.0, 1000), Candidate(4, 45.0, 1000 + passage))  # where the two are one


def test_a_file_cut_short_is_a_copy_and_an_extended_mix_or_an_edit_is_not(tmp_path):
    """Files of different lengths are one recording only when one is the other's start: an extended mix holds the
    whole song, later (nearly every peak shared both ways, but not from the same start), and radio edits that skip
    5 s or 1 s share most peaks from the same start, but none past the skip. A lossy cut (an MP3 of the first 10 s)
    misses peaks here and there, some as many as the edits do: it is a copy (it was not, and a monitor named it
    and then the whole file, two segments for one play). The start of a mix of the song
    with another is no copy."""
    from landmark.verify import CopyCheck, shared_peaks
    from landmark.vote import Candidate

    song = rendered(3, 40.0, RATE)
    versions = {1: song, 2: song[:20 * RATE], 3: np.r_[rendered(4, 8.0, RATE), song],
                4: np.r_[song[:30 * RATE], song[35 * RATE:]], 5: np.r_[song[:30 * RATE], song[31 * RATE:]],
                6: codec_round_trip(song[:10 * RATE], RATE, ".mp3", 48_000, str(tmp_path)),
                7: (song + 0.25 * rendered(5, 40.0, RATE))[:20 * RATE]}
    stored = {i: extract_peaks(signal, CONFIG, CONFIG.index) for i, signal in versions.items()}
    lengths_s = {i: signal.size / RATE for i, signal in versions.items()}
    delta, later = 5 * RATE // CONFIG.hop_size, 8 * RATE // CONFIG.hop_size  # a clip at 5 s of the song
    copies = CopyCheck(lambda ids: {i: stored[i] for i in ids}, lambda ids: {i: lengths_s[i] for i in ids}, MATCHING)
    whole = Candidate(1, 30.0, delta)
    assert copies.same_recording(whole, Candidate(2, 29.0, delta))
    # the mix holds nearly all the song's peaks, and they its own
    assert shared_peaks(stored[1], stored[3], later) > 0.9 and shared_peaks(stored[3], stored[1], -later) > 0.9
    assert not copies.same_recording(whole, Candidate(3, 29.0, delta + later))
    for edit in (4, 5):  # as many shared as a lossy copy's: the share cannot tell them apart
        assert shared_peaks(stored[1], stored[edit], 0) > 0.75 and shared_peaks(stored[edit], stored[1], 0) > 0.75
        assert not copies.same_recording(whole, Candidate(edit, 29.0, delta)), edit
    assert copies.same_recording(whole, Candidate(6, 29.0, delta)) and copies.cut_copies[1] == {2, 6}
    # the start of a mix of it with another song 12 dB down: it keeps 0.6 of the song's peaks, but half its own are
    # the other song's, never many in a row; a cut copy holds most of the other's peaks both ways
    assert shared_peaks(stored[1], stored[7], 0) > 0.5 > shared_peaks(stored[7], stored[1], 0)
    assert not copies.same_recording(whole, Candidate(7, 29.0, delta))


def test_where_the_clip_plays_an_edit_or_a_mix_holds_the_same_audio_and_another_song_does_not(tmp_path):
    """With the clip's length, files that hold the stretch it plays are told apart from the song no more than
    copies: an extended mix (the song after 8 s of another), a radio edit (5 s skipped, later), an MP3 of an
    excerpt cut between two frames. A different song, an edit over the stretch it skipped, or a mash-up that holds
    the song under other music, is not."""
    from landmark.verify import CopyCheck
    from landmark.vote import Candidate

    song = rendered(3, 40.0, RATE)
    excerpt = codec_round_trip(song[int(12.3 * RATE):26 * RATE], RATE, ".mp3", 128_000, str(tmp_path))
    versions = {1: song, 3: np.r_[rendered(4, 8.0, RATE), song], 4: np.r_[song[:30 * RATE], song[35 * RATE:]],
                5: excerpt, 6: rendered(5, 40.0, RATE)}
    stored = {i: extract_peaks(signal, CONFIG, CONFIG.index) for i, signal in versions.items()}
    lengths_s = {i: signal.size / RATE for i, signal in versions.items()}
    # a mash-up: the mix's peaks and two other songs' over them, so it holds the song's but not they its
    layers = [stored[3], *(extract_peaks(rendered(seed, 48.0, RATE), CONFIG, CONFIG.index) for seed in (5, 6))]
    points = np.unique(np.concatenate([f.astype(np.int64) << 16 | b for f, b in layers]))
    stored[7], lengths_s[7] = (points >> 16, points & 0xFFFF), 48.0
    def frames(seconds):
        return round(seconds * RATE / CONFIG.hop_size)

    def check(clip_at_s, candidate, song_at_s):
        copies = CopyCheck(lambda ids: {i: stored[i] for i in ids}, lambda ids: {i: lengths_s[i] for i in ids},
                           MATCHING, clip_frames=frames(5))
        return copies.same_recording(Candidate(1, 30.0, frames(clip_at_s)), Candidate(candidate, 29.0,
                                                                                      frames(song_at_s)))

    assert check(15, 3, 23) and check(15, 4, 15) and check(15, 5, 2.7)  # the mix, the edit, the excerpt
    assert check(36, 4, 31) and not check(36, 4, 36) and not check(32, 4, 27)  # past the skip; over it
    assert not check(15, 6, 15) and not check(15, 3, 15)  # another song; the mix at the wrong offset
    assert not check(15, 7, 23)  # the mash-up: the song's peaks are in it, most of its own are not the song's


def test_copies_played_a_little_faster_or_slower_are_one_recording_at_the_speed_their_peaks_show():
    """Two transfers of one recording can run 0.2-2 % apart: at one offset they drift apart (0.3 % over 60 s is 11
    frames), so at the speed their peaks show, from where the clip plays, to the vote's tolerance. Their lengths
    do not tell it: a transfer 0.3 % fast with half a second of silence before it, or its last 0.8 s missing, is
    as long as one 1.2 % or 1.0 % fast. A copy with a second of silence before it stays one at its own speed;
    another song of the same length is none at any."""
    from landmark.verify import CopyCheck, shared_peaks
    from landmark.vote import Candidate

    song = rendered(3, 60.0, RATE)
    fast = queries.change_speed(song, 1.003)
    versions = {1: song, 2: fast, 3: queries.change_speed(song, 0.985), 4: np.r_[np.zeros(RATE, np.float32), song],
                5: rendered(4, 60.0 / 1.003, RATE), 6: np.r_[np.zeros(RATE // 2, np.float32), fast],
                7: fast[:-RATE * 8 // 10], 8: queries.change_speed(song, 1.015)}
    stored = {i: extract_peaks(signal, CONFIG, CONFIG.index) for i, signal in versions.items()}
    lengths_s = {i: signal.size / RATE for i, signal in versions.items()}
    copies = CopyCheck(lambda ids: {i: stored[i] for i in ids}, lambda ids: {i: lengths_s[i] for i in ids}, MATCHING)
    at = 40 * RATE // CONFIG.hop_size  # the clip plays at 40 s of the song
    whole = Candidate(1, 30.0, at)
    assert shared_peaks(stored[1], stored[2], round(at / 1.003) - at) < MATCHING.copy_min_shared_peaks
    lead_in = RATE // 2 // CONFIG.hop_size
    for copy, speed, lead_in_frames in ((2, 1.003, 0), (3, 0.985, 0), (6, 1.003, lead_in), (7, 1.003, 0),
                                        (8, 1.015, 0)):
        for off_by in (-1, 0, 1):  # the vote places each to its tolerance
            weaker = Candidate(copy, 29.0, round(at / speed) + lead_in_frames + off_by)
            assert copies.same_recording(whole, weaker, where_clip_plays=False), (copy, off_by)
            assert copies.same_recording(weaker, whole, where_clip_plays=False), (copy, off_by)
    assert copies.same_recording(whole, Candidate(4, 29.0, at + RATE // CONFIG.hop_size), where_clip_plays=False)
    for offset in (at, round(at / 1.003), round(at / 1.015)):
        assert not copies.same_recording(whole, Candidate(5, 29.0, offset), where_clip_plays=False)

    # a 5 s clip at the song's very start, beginning 2 s or 4 s before it, or at its end: the speed is read from
    # the song's peaks under the clip, on one side of it only
    fps = RATE / CONFIG.hop_size
    at_ends = CopyCheck(lambda ids: {i: stored[i] for i in ids}, lambda ids: {i: lengths_s[i] for i in ids},
                        MATCHING, clip_frames=round(5 * fps))
    for start_s in (-4.0, -2.0, 0.0, 1.0, 55.0):
        at = round(start_s * fps)
        middle = (max(at, 0) + at + at_ends.clip_frames) / 2  # of the song under the clip, where the vote's Δt
        for copy, speed, lead_in_frames in ((2, 1.003, 0), (6, 1.003, lead_in), (8, 1.015, 0)):  # lines them up
            weaker = Candidate(copy, 29.0, round(middle / speed + lead_in_frames - (middle - at)))
            assert at_ends.same_recording(Candidate(1, 30.0, at), weaker, where_clip_plays=False), (start_s, copy)
        assert not at_ends.same_recording(Candidate(1, 30.0, at), Candidate(5, 29.0, at), where_clip_plays=False)


@pytest.mark.parametrize("seed", range(4))
def test_a_grid_of_speeds_and_shifts_reads_as_each_of_its_cells_would_alone(seed):
    """`shared_at_speeds` answers a whole grid in one pass: each cell as `shared_peaks` of the peaks `played_at` its
    speed and moved by its shift, including peaks moved past the other's ends (not counted) and bins a reach
    away."""
    from landmark.verify import played_at, shared_at_speeds, shared_peaks

    rng = np.random.default_rng(seed)
    frames = np.sort(rng.integers(0, 3000, 400))
    bins = rng.integers(0, 256, 400)
    copied_frames, copied_bins = played_at((frames[::2], bins[::2]), 1.01, 1500.0, 7)  # half of them, 1 % fast
    other_frames = np.r_[copied_frames, rng.integers(200, 2500, 300)]  # within a shorter span, among others
    other_bins = np.r_[copied_bins + rng.integers(-1, 2, copied_bins.size), rng.integers(0, 256, 300)]
    order = np.argsort(other_frames, kind="stable")
    other = (other_frames[order], other_bins[order])
    speeds, shifts = np.array([0.98, 1.0, 1.01, 1.02]), np.array([-3, 0, 7, 9])
    grid = shared_at_speeds((frames, bins), other, 1500.0, speeds, shifts)
    for row, speed in enumerate(speeds):
        for column, shift in enumerate(shifts):
            alone = shared_peaks(played_at((frames, bins), float(speed), 1500.0), other, int(shift), bin_reach=1)
            assert grid[row, column] == pytest.approx(alone), (speed, shift)
    assert grid.max() == grid[2, 2] > 0.4  # where the other holds them


def test_a_clip_of_a_song_held_beside_a_slightly_faster_copy_is_named(tmp_path):
    """A library can hold a song twice, one transfer 0.3 % fast: the two line up with a clip almost alike, so the
    vote alone names neither; as one recording, the clip names one of them, where the other is its copy."""
    from bench.audio_io import write

    song = rendered(3, 60.0, RATE)
    signals = {"song.wav": song, "fast.wav": queries.change_speed(song, 1.003), "other.wav": rendered(4, 60.0, RATE)}
    for name, signal in signals.items():
        write(tmp_path / name, signal, RATE)
    with Index(tmp_path / "index.db", create=True) as index:
        assert index.add([str(tmp_path / name) for name in signals]).added == 3
        for start_s in (10, 25, 40, 52):
            match = index.match_samples(song[start_s * RATE:(start_s + 5) * RATE])
            assert match is not None and match.song.path.endswith(("song.wav", "fast.wav")), start_s
            assert {match.song.path, *(c.path for c in match.copies)} >= {str(tmp_path / "song.wav"),
                                                                         str(tmp_path / "fast.wav")}, start_s


def test_a_song_beside_a_lossless_copy_cut_short_is_named_by_its_whole_file(tmp_path):
    """A whole MP3 of a song and a WAV of its first 35 s (a download cut short): the WAV agrees better with a clip
    of it, but the file to name is the whole one, with the cut one among its copies."""
    from bench.audio_io import write

    song = rendered(3, 60.0, RATE)
    write(tmp_path / "whole.mp3", song, RATE, bit_rate=64_000)
    write(tmp_path / "cut.wav", song[:35 * RATE], RATE)
    write(tmp_path / "other.wav", rendered(4, 60.0, RATE), RATE)
    with Index(tmp_path / "index.db", create=True) as index:
        index.add([str(tmp_path / name) for name in ("whole.mp3", "cut.wav", "other.wav")])
        for start_s in range(2, 28, 2):
            match = index.match_samples(song[start_s * RATE:(start_s + 5) * RATE])
            assert match is not None and match.song.path == str(tmp_path / "whole.mp3"), (start_s, match)
            assert [copy.path for copy in match.copies] == [str(tmp_path / "cut.wav")], start_s


def test_a_rival_that_agrees_better_is_never_passed_over_as_a_copy():
    """An instrumental holds most of its vocal version's peaks, but not the other way round. With the instrumental
    ahead in the vote, the vocal version agrees better with a clip of it: the instrumental is not named, though
    its peaks are nearly all in the other."""
    from landmark.verify import CopyCheck, verify
    from landmark.vote import Candidate

    rng = np.random.default_rng(4)
    song = rendered(3, 40.0, RATE)
    start = 15 * RATE + 5 * CONFIG.hop_size
    delta = start // CONFIG.hop_size
    clip = _prominence(queries.add_noise(song[start:start + 5 * RATE], queries.pink_noise(5 * RATE, rng), 0.0, rng))
    frames, bins = extract_peaks(song, CONFIG, CONFIG.index)
    part = np.arange(frames.size) % 5 < 2  # the instrumental's: two peaks in five
    stored = {1: (frames[part], bins[part]), 2: (frames, bins)}

    def song_peaks(ids):
        return {i: stored[i] for i in ids if i in stored}

    copies = CopyCheck(song_peaks, lambda ids: {i: 40.0 for i in ids}, MATCHING)
    found, _ = verify([Candidate(1, 30.0, delta), Candidate(2, 10.0, delta)], clip, song_peaks, MATCHING, copies.same_recording)
    assert found is None or found.song_id == 2, found


def test_copies_a_warped_search_holds_on_the_clips_grid_are_told_on_the_songs_grid():
    """Two files of one recording, one with 2 s more silence before the music (and as much less after it). A
    warped search's candidates carry Δt on the clip's grid (song frames ÷ tempo): at tempo 1.08 the two files
    are 116 clip frames apart where their stored peaks are 125 song frames apart. Compared unscaled no peak meets
    its twin; put back on the songs' grid, they are one recording."""
    from landmark.verify import CopyCheck
    from landmark.vote import Candidate
    from landmark.warp import Warp, same_recording_on_song_grid

    song = rendered(3, 40.0, RATE)
    lead_frames, tempo = 125, 1.08
    padded = np.r_[np.zeros(lead_frames * CONFIG.hop_size, np.float32), song[:-lead_frames * CONFIG.hop_size]]
    stored = {1: extract_peaks(song, CONFIG, CONFIG.index), 2: extract_peaks(padded, CONFIG, CONFIG.index)}

    def copy_check() -> CopyCheck:
        return CopyCheck(lambda ids: {i: stored[i] for i in ids}, lambda ids: {i: 40.0 for i in ids}, MATCHING)

    delta = 10 * RATE // CONFIG.hop_size
    in_song = (Candidate(1, 30.0, delta), Candidate(2, 20.0, delta + lead_frames))
    assert copy_check().same_recording(*in_song)
    on_clip = [Candidate(c.song_id, c.score, round(c.delta_frames / tempo)) for c in in_song]
    assert not copy_check().same_recording(*on_clip)
    assert same_recording_on_song_grid(copy_check(), {1: Warp("speed", tempo), 2: Warp("speed", tempo)})(*on_clip)


def test_a_confirmation_at_evidence_within_chance_s_range_leaves_the_decision_to_the_other_rules():
    """A vote leader confirmed by z ≥ `confirm_min_z` (4.0, under the agreement tail's threshold) with a vote lead
    under the vote tail's could be named at false-match probability 1; the confirmation stopped verification at
    its first candidates, and `match` then refused the song. Now the confirmation itself asks for evidence within
    `max_false_match_probability`: refused, the rule that reads every candidate decides (here: none stands out)."""
    from landmark.verify import _single_out
    from landmark.vote import Candidate

    settings = MatchSettings()
    leader, runner_up = Candidate(1, 24.0, 100), Candidate(2, 19.0, 300)  # 1.26× the runner-up, a lead of 5
    for leader_z, decided in ((4.3, (None, "")), (4.7, (leader, "confirmed"))):  # tail threshold: z 4.571
        agreed = [(leader_z, leader), (1.0, runner_up)]
        assert _single_out([leader, runner_up], agreed, settings, None) == decided, leader_z
    lax = settings.with_values({"max_false_match_probability": 1.0})
    assert _single_out([leader, runner_up], [(4.3, leader), (1.0, runner_up)], lax, None) == (leader, "confirmed")


def test_verified_candidate_needs_evidence_beyond_chance():
    """A candidate singled out by agreement alone ("verified") is refused where its z and vote lead are what chance
    clips reach (false-match probability over `max_false_match_probability`), even when a lowered
    `min_agreement_z` and its lead over the others would pass it."""
    from landmark.verify import _single_out
    from landmark.vote import Candidate

    settings = MatchSettings(min_agreement_z=4.0, min_agreement_lead=2.0)
    leader, second = Candidate(1, 24.0, 100), Candidate(2, 23.0, 300)  # too close for the leader to be confirmed
    agreed = [(1.0, leader), (4.3, second)]  # z 4.3 < the chance tail's 4.571; a vote lead of -1: probability 1
    assert _single_out([leader, second], agreed, settings, None) == (None, "")
    lax = settings.with_values({"max_false_match_probability": 1.0})
    assert _single_out([leader, second], agreed, lax, None) == (second, "verified")


def test_a_vote_leader_exactly_at_the_confirm_ratio_needs_only_confirm_min_z(monkeypatch):
    """A leader scoring exactly `confirm_min_ratio` times the runner-up counts as clear (ratio "at least"): it is
    confirmed at `confirm_min_z`, below `confirm_close_min_z`."""
    config = MatchSettings(min_agreement_z=6.0, min_agreement_lead=3.0, confirm_min_ratio=1.25, confirm_min_z=4.0,
                           confirm_close_min_z=5.0, confirm_min_lead=2.0)
    assert _decide(monkeypatch, config, (50.0, 40.0, 29.0), {1: 4.5, 2: 2.0, 3: 1.0}) == 1  # 50 = 1.25 × 40
    assert _decide(monkeypatch, config, (50.0, 40.5, 29.0), {1: 4.5, 2: 2.0, 3: 1.0}) is None  # just short of it


def test_a_song_that_starts_inside_the_clip_is_heard_from_its_own_start():
    """Other music, then a song from its first sample: the span where the song is heard begins where the song
    begins in the clip (its frame 0), not at the clip's start."""
    song, before = rendered(3, 40.0, RATE), rendered(100, 40.0, RATE)
    lead_frames = 2 * RATE // CONFIG.hop_size  # 125 frames of other music first
    clip = np.concatenate([0.3 * before[:lead_frames * CONFIG.hop_size], song[:6 * RATE]])
    peaks = extract_peaks(song, CONFIG, CONFIG.index)
    span = heard_span(_prominence(clip), *peaks, -lead_frames, 10_000, MATCHING)
    assert span is not None
    first, end = span
    assert abs(first - lead_frames) <= 8 and end == _prominence(clip).standardised.shape[0], span


def test_a_song_whose_peaks_barely_stand_out_is_heard_nowhere():
    """A run of a song's peaks that stands out, but by less than `confirm_min_z` over the run, is no evidence the
    song is heard: the song under pink noise 18 dB louder, and another song that a chance run lines up with, are
    heard nowhere; 10 dB under, the song is heard throughout."""
    song = rendered(3, 40.0, RATE)
    peaks = extract_peaks(song, CONFIG, CONFIG.index)
    start = 12 * RATE + 37 * CONFIG.hop_size
    delta = start // CONFIG.hop_size
    spans = {}
    for snr_db in (-10.0, -18.0):
        rng = np.random.default_rng(1)
        clip = queries.add_noise(song[start:start + 5 * RATE], queries.pink_noise(5 * RATE, rng), snr_db, rng)
        spans[snr_db] = heard_span(_prominence(clip), *peaks, delta, 10_000, MATCHING)
    assert spans[-10.0] is not None and spans[-10.0][0] == 0 and spans[-18.0] is None, spans
    other = extract_peaks(rendered(5, 40.0, RATE), CONFIG, CONFIG.index)
    assert heard_span(_prominence(song[start:start + 5 * RATE]), *other, 300, 10_000, MATCHING) is None


def test_a_clips_prominence_is_standardised_within_each_bin():
    """After standardising each frame, each bin of a clip that sounds throughout is standardised over its frames:
    mean 0 and spread 1, so that a bin a steady hum or a key keeps loud reads no higher than the others."""
    rng = np.random.default_rng(2)
    clip = queries.add_noise(rendered(3, 40.0, RATE)[10 * RATE:15 * RATE], queries.pink_noise(5 * RATE, rng), 5.0,
                             rng)
    clip = clip + 0.05 * np.sin(2 * np.pi * 440.0 * np.arange(clip.size) / RATE).astype(np.float32)  # a hum
    standardised = _prominence(clip).standardised.astype(np.float64)
    assert _prominence(clip).sounding is None
    assert np.abs(standardised.mean(axis=0)).max() < 1e-3
    assert np.sqrt(np.mean(standardised ** 2, axis=0)) == pytest.approx(1.0, abs=1e-3)


def test_a_copy_a_little_faster_is_told_from_the_middle_of_a_long_clip():
    """A 30 s clip (`max_query_s`) of a song beside a transfer 1.5 % fast: the vote places the copy where most of its
    pairs line up, the middle of the clip's stretch, 7 frames from where it would be at the clip's start; its
    speed is read from there, and it is one recording."""
    from landmark.verify import CopyCheck
    from landmark.vote import Candidate

    song = rendered(3, 60.0, RATE)
    versions = {1: song, 8: queries.change_speed(song, 1.015), 5: rendered(4, 60.0 / 1.015, RATE)}
    stored = {i: extract_peaks(signal, CONFIG, CONFIG.index) for i, signal in versions.items()}
    lengths_s = {i: signal.size / RATE for i, signal in versions.items()}
    fps = RATE / CONFIG.hop_size
    copies = CopyCheck(lambda ids: {i: stored[i] for i in ids}, lambda ids: {i: lengths_s[i] for i in ids},
                       MATCHING, clip_frames=round(30 * fps))
    for start_s in (5.0, 20.0):
        at = round(start_s * fps)
        middle = at + copies.clip_frames / 2
        for off_by in (-1, 0, 1):
            weaker = Candidate(8, 29.0, round(middle / 1.015 - (middle - at)) + off_by)
            assert copies.same_recording(Candidate(1, 30.0, at), weaker, where_clip_plays=False), (start_s, off_by)
        assert not copies.same_recording(Candidate(1, 30.0, at), Candidate(5, 29.0, at), where_clip_plays=False)


def test_copies_whose_votes_differ_by_more_than_copies_do_are_not_one_candidate():
    """In the vote (`CopyCheck.__call__`), two files count as one candidate only where their scores are alike
    (`copy_min_score_ratio`) as well as their peaks: two identical files scoring 50 and 30 are two candidates,
    though `same_recording` holds them one recording."""
    from landmark.verify import CopyCheck
    from landmark.vote import Candidate

    peaks = extract_peaks(rendered(3, 40.0, RATE), CONFIG, CONFIG.index)
    stored = {1: peaks, 2: (peaks[0].copy(), peaks[1].copy())}
    delta = 10 * RATE // CONFIG.hop_size
    copies = CopyCheck(lambda ids: {i: stored[i] for i in ids}, lambda ids: {i: 40.0 for i in ids}, MATCHING)
    assert copies(Candidate(1, 50.0, delta), Candidate(2, 45.0, delta))  # votes alike: 0.9 ≥ 0.8
    fresh = CopyCheck(lambda ids: {i: stored[i] for i in ids}, lambda ids: {i: 40.0 for i in ids}, MATCHING)
    assert not fresh(Candidate(1, 50.0, delta), Candidate(2, 30.0, delta))  # 0.6 < 0.8
    assert fresh.same_recording(Candidate(1, 50.0, delta), Candidate(2, 30.0, delta))
