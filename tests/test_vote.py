from collections import Counter

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from landmark.settings import MatchSettings
from landmark.vote import Alignments, Candidate, QueryHashes, Votes, align, decide, hash_weights


def brute_force(votes, tolerance):
    """Per song, the best ±tolerance window of weights, each (song, Δt, query frame) counted once at its max."""
    heaviest = {}
    for song, delta, frame, weight in votes:
        heaviest[song, delta, frame] = max(heaviest.get((song, delta, frame), 0.0), weight)
    per_bin = Counter()
    for (song, delta, _), weight in heaviest.items():
        per_bin[song, delta] += weight
    best = {}
    for song, delta in per_bin:
        score = sum(per_bin.get((song, delta + k), 0.0) for k in range(-tolerance, tolerance + 1))
        best[song] = max(best.get(song, 0.0), score)
    return best, per_bin


def align_postings(query_hashes, query_frames, posting_hashes, posting_songs, posting_frames, n_songs, config):
    """`align` on postings given with their hashes: each is named by its hash's index among the query's distinct
    ones, as `Store.lookup` names them; postings of hashes the query lacks are not returned by a lookup."""
    query = QueryHashes.of(query_hashes, query_frames)
    hash_index = np.minimum(np.searchsorted(query.distinct, posting_hashes), query.distinct.size - 1)
    asked = query.distinct[hash_index] == posting_hashes
    return align(query, hash_index[asked], posting_songs[asked], posting_frames[asked], n_songs, config)[1]


@settings(max_examples=200, deadline=None)  # timing is not what this checks
@given(st.lists(st.tuples(st.integers(1, 6), st.integers(-40, 40), st.integers(0, 30), st.sampled_from([0.5, 1.0, 3.0])),
                max_size=300), st.integers(0, 2), st.booleans(), st.sampled_from([0, 1 << 40]))
@example([(1, 5, 7, 0.5), (1, 5, 7, 3.0), (1, 6, 7, 1.0)], 0, False, 0)  # an anchor's votes of two weights in one bin
@example([(1, 5, 7, 0.5), (1, 5, 7, 3.0), (1, 6, 7, 1.0)], 0, True, 0)
@example([(1, 0, 0, 0.5), (1, 1, 0, 0.5)], 0, True, 0)  # two windows of one score
@example([(1, 5, 7, 0.5), (2, 5, 7, 3.0), (1, 6, 7, 1.0)], 0, False, 1 << 40)  # ids past what a packed key holds
def test_best_alignment_scores_equal_a_brute_force_sum(votes, tolerance, packed, first_id):
    """Both ways of finding each anchor's heaviest vote: the packed sort key, and the columns sorted together,
    taken when the key would not fit in 63 bits; song ids of 2^40 and more too. A song's best Δt is the earliest of
    its windows of the best score."""
    from landmark import vote

    votes = [(first_id + song, *rest) for song, *rest in votes]
    vote.PACKED_KEY_BITS = 63 if packed else 0
    columns = [np.array([v[i] for v in votes], np.int64) for i in range(3)]
    weights = np.array([v[3] for v in votes], np.float64)
    try:
        song_ids, scores, best_deltas = Alignments.of(Votes.from_weights(*columns, weights), tolerance).best()
    finally:
        vote.PACKED_KEY_BITS = 63
    expected, per_bin = brute_force(votes, tolerance)
    assert song_ids.tolist() == sorted(expected)
    assert np.allclose(scores, [expected[s] for s in song_ids.tolist()])
    for song, delta, score in zip(song_ids.tolist(), best_deltas.tolist(), scores.tolist()):
        windows = {at: sum(per_bin.get((song, at + k), 0.0) for k in range(-tolerance, tolerance + 1))
                   for bin_song, at in per_bin if bin_song == song}
        assert np.isclose(windows[delta], score)  # the reported Δt really has the reported score
        assert delta == min(at for at, window in windows.items() if np.isclose(window, score))  # the earliest


def test_rank_finds_the_song_whose_hashes_line_up():
    rng = np.random.default_rng(1)
    query_hashes = rng.choice(1 << 21, 200, replace=False).astype(np.uint32)
    query_frames = np.sort(rng.choice(300, 200, replace=False)).astype(np.uint32)
    # song 7 holds 60 of the query's hashes, 1000 frames later; song 3 holds 60 scattered ones
    posting_hashes = np.concatenate([query_hashes[:60], query_hashes[60:120]])
    posting_songs = np.array([7] * 60 + [3] * 60, np.uint32)
    posting_frames = np.concatenate([query_frames[:60] + 1000, rng.integers(0, 5000, 60)]).astype(np.uint32)
    candidates = align_postings(query_hashes, query_frames, posting_hashes, posting_songs, posting_frames, 2, MatchSettings()).top(5)
    assert candidates[0].song_id == 7 and candidates[0].delta_frames == 1000
    assert np.isclose(candidates[0].score, 60 * hash_weights(np.array([1]), 2, MatchSettings())[0])
    best = decide(candidates, MatchSettings())
    assert best is not None and best.song_id == 7


def test_a_candidate_carries_the_other_offsets_where_its_song_lines_up():
    """A refrain that returns: the query's hashes line up with song 7 at Δt 1000 (60 of them), at 3000 (30) and at
    1003 (20, within the vote's reach of 1000, so not another offset), and 5 scattered ones elsewhere."""
    rng = np.random.default_rng(2)
    query_hashes = rng.choice(1 << 21, 100, replace=False).astype(np.uint32)
    query_frames = np.sort(rng.choice(300, 100, replace=False)).astype(np.uint32)
    posting_hashes = np.concatenate([query_hashes[:60], query_hashes[:30], query_hashes[60:80], query_hashes[80:85]])
    posting_frames = np.concatenate([query_frames[:60] + 1000, query_frames[:30] + 3000, query_frames[60:80] + 1003,
                                     query_frames[80:85] + np.array([7000, 7500, 8000, 8500, 9000])])
    posting_songs = np.full(posting_hashes.size, 7, np.uint32)
    args = (query_hashes, query_frames, posting_hashes, posting_songs, posting_frames.astype(np.uint32), 1, MatchSettings())
    best, = align_postings(*args).top(1, other_offsets=2)
    assert best.delta_frames == 1000 and best.other_delta_frames[0] == 3000 and len(best.other_delta_frames) == 2
    assert all(abs(delta - 1000) > 2 * MatchSettings().vote_tolerance_frames for delta in best.other_delta_frames)
    assert align_postings(*args).top(1)[0] == Candidate(best.song_id, best.score, best.delta_frames)  # no other offsets asked


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 5), st.integers(-60, 60), st.integers(0, 30), st.sampled_from([0.5, 1.0, 3.0])),
                min_size=1, max_size=300), st.integers(0, 2), st.integers(1, 6), st.integers(0, 5))
def test_other_offsets_are_the_heaviest_windows_clear_of_those_taken(votes, tolerance, count, other_offsets):
    """Each candidate's other offsets, taken for all candidates at once, are those of a greedy pass over its own
    windows by falling weight (the earliest Δt on a tie), each more than twice the tolerance from its best Δt and
    from those taken before. Weights are exact binary fractions, so sums tie exactly where they should."""
    columns = [np.array([v[i] for v in votes], np.int64) for i in range(3)]
    weights = np.array([v[3] for v in votes], np.float64)
    candidates = Alignments.of(Votes.from_weights(*columns, weights), tolerance).top(count, other_offsets)
    _, per_bin = brute_force(votes, tolerance)
    assert len(candidates) == min(count, len({v[0] for v in votes}))
    for candidate in candidates:
        windows = {delta: sum(per_bin.get((song, delta + k), 0.0) for k in range(-tolerance, tolerance + 1))
                   for song, delta in per_bin if song == candidate.song_id}
        assert windows[candidate.delta_frames] == candidate.score == max(windows.values())
        taken = [candidate.delta_frames]
        for delta in sorted(windows, key=lambda d: (-windows[d], d)):
            if len(taken) > other_offsets:
                break
            if all(abs(delta - other) > 2 * tolerance for other in taken):
                taken.append(delta)
        assert candidate.other_delta_frames == tuple(taken[1:])


def test_a_hash_weighs_by_its_postings_against_the_size_of_the_library():
    """log2(1 + K / postings), K = `rare_hash_scale` (0.75) × songs: a hash stored once among 4 songs weighs 2, one
    stored 3 times 1; in a library ten times as large, the same counts weigh more."""
    assert hash_weights(np.array([1, 3]), 4, MatchSettings()) == pytest.approx([2.0, 1.0])
    assert hash_weights(np.array([1, 3]), 40, MatchSettings()) == pytest.approx(np.log2([31.0, 11.0]))


def test_rare_aligned_hashes_outweigh_many_common_ones():
    """Song 1 lines up on 40 hashes every song holds, song 2 on 15 hashes only it holds: song 2 is the match
    (by raw count it would lose)."""
    n_songs = 20
    common = np.arange(100, 140, dtype=np.uint32)
    rare = np.arange(500, 515, dtype=np.uint32)
    query_hashes = np.concatenate([common, rare])
    query_frames = np.arange(query_hashes.size, dtype=np.uint32) * 3
    songs, frames, hashes = [], [], []
    for song in range(1, n_songs + 1):  # every song holds the common hashes; only song 1 in the query's order
        hashes.append(common)
        songs.append(np.full(common.size, song))
        frames.append(query_frames[:common.size] + 400 if song == 1 else np.arange(common.size) * 97 + song * 13)
    hashes.append(rare)
    songs.append(np.full(rare.size, 2))
    frames.append(query_frames[common.size:] + 900)
    candidates = align_postings(query_hashes, query_frames, np.concatenate(hashes), np.concatenate(songs).astype(np.uint32),
                       np.concatenate(frames).astype(np.uint32), n_songs, MatchSettings()).top(5)
    assert [c.song_id for c in candidates[:2]] == [2, 1]
    assert candidates[0].delta_frames == 900


def test_an_anchor_frame_votes_once_per_alignment():
    """Ten pairs from one query anchor frame matching one song anchor count once, not ten times."""
    query_hashes = np.arange(10, dtype=np.uint32)
    query_frames = np.full(10, 50, np.uint32)
    candidates = align_postings(query_hashes, query_frames, query_hashes.copy(), np.full(10, 4, np.uint32),
                       np.full(10, 80, np.uint32), 1, MatchSettings()).top(5)
    assert candidates[0].song_id == 4 and candidates[0].delta_frames == 30
    assert np.isclose(candidates[0].score, hash_weights(np.array([1]), 1, MatchSettings())[0])


def test_no_match_below_the_score_the_margin_or_the_ratio():
    config = MatchSettings(min_score=6, min_margin=5, min_ratio=1.4)  # thresholds given explicitly: this tests the rule
    assert decide([], config) is None
    assert decide([Candidate(1, 5, 0)], config) is None  # too few
    assert decide([Candidate(1, 6, 0)], config).song_id == 1  # the least score a match may have
    assert decide([Candidate(1, 20, 0), Candidate(2, 16, 3)], config) is None  # too close to the runner-up
    assert decide([Candidate(1, 10, 0), Candidate(2, 6, 3)], config) is None  # 1.67×, but a lead of 4 only
    assert decide([Candidate(1, 11, 0), Candidate(2, 6, 3)], config).song_id == 1  # a lead of 5
    assert decide([Candidate(1, 20, 0), Candidate(2, 14, 3)], config).song_id == 1
    assert decide([Candidate(1, 60, 0), Candidate(2, 45, 3)], config) is None  # a lead of 15, but only 1.33×
    assert decide([Candidate(1, 63, 0), Candidate(2, 45, 3)], config).song_id == 1
    assert decide([Candidate(1, 63, 0), Candidate(2, 45, 3)], config, min_ratio=1.5) is None  # a second look's


def test_query_hashes_group_each_hash_with_the_anchor_frames_that_ask_for_it():
    """Each distinct hash looked up, widened by Δt ± 2 frames, lists exactly the anchor frames whose pairs give it."""
    from landmark.hashes import pack, unpack

    rng = np.random.default_rng(3)
    hashes = pack(rng.integers(1, 60, 300), rng.integers(-8, 8, 300), rng.integers(1, 12, 300)).astype(np.uint32)
    frames = rng.integers(0, 300, 300).astype(np.uint32)
    query = QueryHashes.of(hashes, frames, tolerance_frames=2)
    expected = {}
    for h, frame in zip(hashes.tolist(), frames.tolist()):
        for shift in range(-2, 3):
            if unpack(np.array([h + shift], np.uint32))[2][0] == unpack(np.array([h], np.uint32))[2][0] + shift >= 1:
                expected.setdefault(h + shift, []).append(frame)
    got = {int(h): sorted(query.frames[start:start + count].tolist())
           for h, start, count in zip(query.distinct, query.starts, query.counts)}
    assert got == {h: sorted(f) for h, f in expected.items()}
    assert (np.diff(query.distinct.astype(np.int64)) > 0).all()


def test_a_query_casting_too_many_votes_is_cut_at_the_budget_by_whole_postings():
    from landmark import vote

    query = QueryHashes.of(np.full(10, 5, np.uint32), np.arange(10, dtype=np.uint32))  # one hash at 10 anchor frames
    votes = vote.join(query, np.zeros(4, np.int64), np.array([1, 2, 3, 4]), np.array([100, 200, 300, 400]), 4,
                      MatchSettings(max_votes=25))
    assert votes.songs.tolist() == [1] * 10 + [2] * 10  # each posting casts 10 votes: a third would pass 25
    assert sorted(votes.deltas[:10].tolist()) == list(range(91, 101))
    votes = vote.join(query, np.zeros(4, np.int64), np.array([1, 2, 3, 4]), np.array([100, 200, 300, 400]), 4,
                      MatchSettings(max_votes=20))
    assert votes.songs.tolist() == [1] * 10 + [2] * 10  # two postings fill the budget exactly: both kept


def test_a_query_pairs_likelihood_falls_with_fewer_peaks_at_index_density_a_later_target_and_a_shifted_delta():
    """The plan's order of reads rests on these: a pair the index's density makes is likeliest, then one with
    both, one or none of its peaks at index density; a later target and a widened Δt are less likely; an
    index-style pair's rank in the query does not count."""
    from landmark import plan
    from landmark.fingerprint import INDEX_STYLE, PAIR_KINDS

    kinds, ranks, shifts = np.meshgrid(np.arange(PAIR_KINDS), np.arange(80), np.arange(4), indexing="ij")
    likelihood = plan.likelihood(kinds.ravel(), ranks.ravel(), shifts.ravel()).reshape(kinds.shape)
    assert (np.diff(likelihood[:, 0, :3], axis=0) > 0).all()  # by kind
    assert (np.diff(likelihood[:, :, :3], axis=2) < 0).all()  # by shift, up to the last column
    assert (likelihood[:, :, 3] == likelihood[:, :, 2]).all()
    others = likelihood[:INDEX_STYLE]
    assert (others[:, :plan.FLAT_RANKS] == others[:, :1]).all()
    assert (np.diff(others[:, plan.FLAT_RANKS - 1:], axis=1) < 0).all()
    assert (likelihood[INDEX_STYLE] == likelihood[INDEX_STYLE, :1]).all()


def test_query_hashes_carry_each_pairs_likelihood_to_the_keys_it_is_looked_up_under():
    """A key's likelihood is the sum over the query pairs (and their Δt ± tolerance copies) looked up under it of
    each pair's own likelihood: kinds and ranks follow their hashes through the sort and the widening."""
    from landmark import plan
    from landmark.hashes import pack

    hashes = pack(np.array([40, 12, 40, 12, 40]), np.array([3, -2, 3, -2, 3]), np.array([10, 20, 11, 21, 30]))
    kinds, ranks = np.array([3, 0, 1, 2, 2]), np.array([0, 5, 70, 2, 9])
    query = QueryHashes.of(hashes.astype(np.uint32), np.array([5, 6, 7, 8, 9], np.uint32), 1, kinds, ranks)
    expected = Counter()
    for h, kind, rank in zip(hashes.tolist(), kinds.tolist(), ranks.tolist()):
        for shift in (-1, 0, 1):
            expected[h + shift] += float(plan.likelihood([kind], [rank], [abs(shift)])[0])
    assert query.distinct.tolist() == sorted(expected)
    assert query.key_likelihood() == pytest.approx([expected[k] for k in sorted(expected)])


def _brute_best(songs, deltas, frames, weights, tolerance):
    heaviest = {}
    for key, weight in zip(zip(songs, deltas, frames), weights):
        heaviest[key] = max(heaviest.get(key, 0.0), weight)
    per_bin = {}
    for (song, delta, _), weight in heaviest.items():
        per_bin[song, delta] = per_bin.get((song, delta), 0.0) + weight
    best = {}
    for song, delta in per_bin:
        score = sum(per_bin.get((song, delta + k), 0.0) for k in range(-tolerance, tolerance + 1))
        if song not in best or score > best[song][0] or (score == best[song][0] and delta < best[song][1]):
            best[song] = (score, delta)
    return best


@pytest.mark.parametrize("song_bits", [25, 26, 27, 28])
@pytest.mark.parametrize("tolerance", [0, 2])
def test_alignments_of_large_song_ids_and_wide_offsets_match_a_brute_force(song_bits, tolerance):
    """Votes whose song ids, offsets, query frames and weight levels together need 61 to 64 bits still give each
    song its own best window and score."""
    rng = np.random.default_rng(song_bits * 10 + tolerance)
    songs = np.array([1 << (song_bits - 1), (1 << (song_bits - 1)) + 3, 5], np.int64)
    n = 60
    song = songs[rng.integers(0, songs.size, n)]
    frames = rng.integers(0, 1024, n).astype(np.int64)
    frames[:2] = (0, 1023)  # 10 bits of query frame
    deltas = rng.choice([0, 1, 2, 7, (1 << 21) - 40, (1 << 21) - 39], n).astype(np.int64)
    weights = rng.choice(np.arange(1.0, 17.0), n)  # 16 distinct weights: 4 bits of level
    weights[:16] = np.arange(1.0, 17.0)
    song_ids, scores, best_deltas = Alignments.of(Votes.from_weights(song, deltas, frames, weights), tolerance).best()
    expected = _brute_best(song.tolist(), deltas.tolist(), frames.tolist(), weights.tolist(), tolerance)
    assert song_ids.tolist() == sorted(expected)
    assert scores.tolist() == [expected[s][0] for s in sorted(expected)]
    assert best_deltas.tolist() == [expected[s][1] for s in sorted(expected)]


def test_a_vote_lead_is_over_the_best_other_song_leaving_its_copies_aside():
    """The lead is the candidate's score less the best other song's; songs set aside (its copies) and the
    candidate itself do not count, and with no other song the lead is its whole score."""
    from landmark.vote import Candidate, vote_lead

    best = Candidate(1, 50.0, 0)
    candidates = [best, Candidate(2, 45.0, 0), Candidate(3, 30.0, 0), Candidate(4, 12.0, 0)]
    assert vote_lead(best, candidates) == 5.0
    assert vote_lead(best, candidates, {2}) == 20.0
    assert vote_lead(best, candidates, frozenset({2, 3})) == 38.0
    assert vote_lead(best, [best, Candidate(2, 45.0, 0)], {2}) == 50.0
    assert vote_lead(Candidate(2, 45.0, 0), candidates) == -5.0  # a candidate behind another song



def test_a_second_looks_own_ratio_may_be_looser_than_the_first_looks():
    """`min_ratio` given to `decide` replaces the settings' ratio, in either direction."""
    strict = MatchSettings(min_score=6, min_margin=5, min_ratio=2.0)
    candidates = [Candidate(1, 13.0, 0), Candidate(2, 7.0, 3)]  # 1.86× the runner-up, a lead of 6
    assert decide(candidates, strict) is None
    assert decide(candidates, strict, min_ratio=1.5).song_id == 1


def test_a_score_of_exactly_the_ratio_times_the_runner_ups_is_a_match():
    """`min_ratio`: the winner scores *at least* this many times the runner-up (exact binary fractions)."""
    config = MatchSettings(min_score=6, min_margin=5, min_ratio=1.5)
    assert decide([Candidate(1, 60.0, 0), Candidate(2, 40.0, 3)], config).song_id == 1
    assert decide([Candidate(1, 59.5, 0), Candidate(2, 40.0, 3)], config) is None
    assert decide([Candidate(1, 60.0, 0), Candidate(2, 48.0, 3)], MatchSettings(min_score=6, min_margin=5),
                  min_ratio=1.25).song_id == 1
