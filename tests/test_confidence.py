"""One calibrated confidence: 1 − the chance that an unindexed song's clip brings evidence this strong."""

import math

import numpy as np
import pytest

from bench import queries
from landmark import Index
from landmark.confidence import CALIBRATION, Calibration, ChanceTail
from tests.conftest import rendered

RATE = 8000


def test_a_chance_tail_fitted_to_exponential_maxima_recovers_their_rate():
    rng = np.random.default_rng(0)
    values = 3.0 + rng.exponential(0.5, 20_000)  # chance evidence with an exponential tail of scale 0.5
    tail = ChanceTail.fit(values)
    assert tail.scale == pytest.approx(0.5, rel=0.05)
    for value in (4.0, 5.0, 6.0):  # the fitted survival matches the sample's, within sampling error
        assert tail.survival(value) == pytest.approx(np.mean(values >= value), rel=0.15)
    assert tail.survival(-np.inf) == 1.0 and tail.survival(0.0) == 1.0 and tail.survival(np.inf) == 0.0
    tenth = ChanceTail.fit(values, 0.1)  # a tail of one clip in ten: its own quantile and share
    assert tenth.tail_share == 0.1 and tenth.threshold > tail.threshold
    assert tenth.survival(5.0) == pytest.approx(np.mean(values >= 5.0), rel=0.15)


def test_the_false_match_probability_falls_as_either_kind_of_evidence_grows():
    weak = CALIBRATION.false_match_probability(vote_lead=2.0, agreement_z=4.0)
    assert weak > 0.1  # what chance reaches on one clip in several
    assert CALIBRATION.false_match_probability(30.0, 4.0) < weak / 100  # a strong vote
    assert CALIBRATION.false_match_probability(2.0, 8.0) < weak / 100  # peaks that agree far above chance
    assert CALIBRATION.false_match_probability(30.0, None) == CALIBRATION.vote_lead.survival(30.0)  # no peaks stored
    assert CALIBRATION.false_match_probability(30.0, 8.0) < CALIBRATION.false_match_probability(30.0, 4.0) / 100
    assert CALIBRATION.false_match_probability(10.0, 5.0) == pytest.approx(  # the two kinds of evidence independent
        CALIBRATION.vote_lead.survival(10.0) * CALIBRATION.agreement_z.survival(5.0))
    assert Calibration().false_match_probability(0.0, -np.inf) == 1.0


def test_confidence_grows_with_the_evidence_whatever_decided_the_match(built_index):
    """Clean 5 s clips against 2.5 s ones under pink noise at −9 dB, of the same six songs: every match gets the
    same kind of number, and the weak clips' false-match probabilities are far higher (geometric means)."""
    rng = np.random.default_rng(11)
    strong, weak = [], []
    with Index(built_index) as index:
        for seed in range(6):
            clean, _ = queries.cut(rendered(seed, 40.0, RATE), RATE, 5.0, rng)
            short, _ = queries.cut(rendered(seed, 40.0, RATE), RATE, 2.5, rng)
            strong.append(index.match_samples(clean))
            weak.append(index.match_samples(queries.add_noise(short, queries.pink_noise(short.size, rng), -9.0, rng)))
    weak = [m for m, seed in zip(weak, range(6)) if m is not None and m.song.title == f"song{seed}"]
    assert all(m is not None for m in strong) and len(weak) >= 3
    for match in strong + weak:
        assert 0 < match.false_match_probability < 0.1 and match.confidence > 0.9
    assert {m.decided_by for m in strong} == {"vote"}

    def log_mean(matches):
        return np.mean([np.log10(m.false_match_probability) for m in matches])

    assert log_mean(weak) > log_mean(strong) + 2


def test_a_song_is_named_only_where_its_false_match_probability_is_within_the_setting(built_index, monkeypatch):
    """Whichever rule decided, a match's false-match probability must be at most `max_false_match_probability`
    (0.2: one kind of its evidence reaching what only one chance clip in five reaches). With chance tails that put
    every clip's evidence within chance's range on both counts (probability 1), no clip names a song, where the
    calibration's name each. A stricter setting keeps the matches within it, names the others only where another
    rule finds evidence within it too, and none at a bound no evidence meets."""
    import landmark.library as library
    from landmark import MatchSettings
    from lmprint.errors import SettingsError

    rng = np.random.default_rng(5)
    clips = [queries.cut(rendered(seed, 40.0, RATE), RATE, 5.0, rng)[0] for seed in range(3)]
    with Index(built_index) as index:
        found = [index.match_samples(clip) for clip in clips]
        assert [m.song.title for m in found if m is not None] == ["song0", "song1", "song2"]
        probabilities = sorted(m.false_match_probability for m in found)
        assert len(set(probabilities)) == 3
        index.matching = MatchSettings(max_false_match_probability=probabilities[1])
        kept = [index.match_samples(clip) for clip in clips]
        for before, after in zip(found, kept):
            assert after is None or (after.song == before.song and after.false_match_probability <= probabilities[1])
            if before.false_match_probability <= probabilities[1]:
                assert after == before
        index.matching = MatchSettings(max_false_match_probability=1e-30)
        assert [index.match_samples(clip) for clip in clips] == [None] * 3
        index.matching = MatchSettings()
        within_chance = Calibration(ChanceTail(threshold=1e9, scale=1.0), ChanceTail(threshold=1e9, scale=1.0))
        monkeypatch.setattr(library, "CALIBRATION", within_chance)
        assert [index.match_samples(clip) for clip in clips] == [None] * 3
    with pytest.raises(SettingsError, match="max_false_match_probability"):
        MatchSettings(max_false_match_probability=1.5)


def test_evidence_exactly_at_the_threshold_is_in_the_tail():
    """`tail_share` of chance clips reach `threshold`: survival is 1 just below it, `tail_share` at it, and falls
    by e every `scale` above it."""
    tail = ChanceTail(threshold=5.0, scale=2.0, tail_share=0.2)
    assert tail.survival(4.999) == 1.0
    assert tail.survival(5.0) == pytest.approx(0.2)
    assert tail.survival(7.0) == pytest.approx(0.2 / math.e)


def test_a_chance_tail_is_fitted_to_the_finite_values_only():
    """Clips with no evidence of a kind (−inf, as `bench calibrate` records a clip with no agreement) or a NaN
    leave the fit as it is on the others."""
    values = 3.0 + np.random.default_rng(0).exponential(0.5, 1000)
    padded = np.r_[values, np.full(400, -np.inf), [np.nan, np.inf]]
    assert ChanceTail.fit(padded) == ChanceTail.fit(values)
    assert ChanceTail.fit(np.r_[values, np.full(400, -np.inf)], 0.1) == ChanceTail.fit(values, 0.1)
