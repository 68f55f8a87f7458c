import pytest

from landmark.config import Config, Density


def test_settings_round_trip_through_json():
    config = Config(min_margin=9, index=Density(10, 3, 5, 5))
    assert Config.from_json(config.to_json()) == config


def test_overrides_change_only_what_they_name():
    config = Config().with_overrides({"min_margin": 7, "index": {"fanout": 3}})
    assert config.min_margin == 7 and config.index.fanout == 3
    assert config.index.peaks_per_s == Config().index.peaks_per_s and config.query == Config().query
    with pytest.raises(ValueError, match="unknown setting"):
        Config().with_overrides({"fanout": 3})


def test_query_side_and_decision_settings_do_not_change_what_is_stored():
    base = Config().fingerprint_settings()
    assert Config(min_margin=3, query=Density(10, 2, 2, 2), max_query_s=5).fingerprint_settings() == base
    assert Config(index=Density(5, 2, 6, 6)).fingerprint_settings() != base
