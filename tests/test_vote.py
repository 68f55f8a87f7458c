from collections import Counter

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from landmark.config import Config
from landmark.vote import Candidate, best_alignments, decide, rank


def brute_force(songs, deltas, tolerance):
    votes = Counter(zip(songs, deltas))
    best = {}
    for song, delta in votes:
        score = sum(votes.get((song, delta + k), 0) for k in range(-tolerance, tolerance + 1))
        best[song] = max(best.get(song, 0), score)
    return best


@settings(max_examples=200)
@given(st.lists(st.tuples(st.integers(1, 6), st.integers(-40, 40)), max_size=300), st.integers(0, 2))
def test_best_alignment_scores_equal_a_brute_force_count(votes, tolerance):
    songs = np.array([v[0] for v in votes], np.int64)
    deltas = np.array([v[1] for v in votes], np.int64)
    song_ids, scores, best_deltas = best_alignments(songs, deltas, tolerance)
    expected = brute_force(songs.tolist(), deltas.tolist(), tolerance)
    assert dict(zip(song_ids.tolist(), scores.tolist())) == expected
    for song, delta, score in zip(song_ids.tolist(), best_deltas.tolist(), scores.tolist()):
        window = sum(1 for s, d in votes if s == song and abs(d - delta) <= tolerance)
        assert window == score  # the reported Δt really has the reported score


def test_rank_finds_the_song_whose_hashes_line_up():
    rng = np.random.default_rng(1)
    query_hashes = rng.integers(0, 1 << 21, 200).astype(np.uint32)
    query_frames = np.sort(rng.integers(0, 300, 200)).astype(np.uint32)
    # song 7 holds 60 of the query's hashes, 1000 frames later; song 3 holds 60 scattered ones
    posting_hashes = np.concatenate([query_hashes[:60], query_hashes[60:120]])
    posting_songs = np.array([7] * 60 + [3] * 60, np.uint32)
    posting_frames = np.concatenate([query_frames[:60] + 1000, rng.integers(0, 5000, 60)]).astype(np.uint32)
    candidates = rank(query_hashes, query_frames, posting_hashes, posting_songs, posting_frames, Config())
    assert candidates[0] == Candidate(7, 60, 1000)
    best, confidence = decide(candidates, Config())
    assert best.song_id == 7 and confidence > 0.8


def test_no_match_below_the_score_or_the_margin():
    config = Config(min_score=6, min_margin=5)  # thresholds given explicitly: this tests the rule
    assert decide([], config)[0] is None
    assert decide([Candidate(1, 5, 0)], config)[0] is None  # too few
    assert decide([Candidate(1, 20, 0), Candidate(2, 16, 3)], config)[0] is None  # too close to the runner-up
    assert decide([Candidate(1, 20, 0), Candidate(2, 15, 3)], config)[0].song_id == 1
