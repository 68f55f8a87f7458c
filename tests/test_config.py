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


def _edit_recorded_settings(path, edit) -> None:
    """Change the settings an index recorded, as an older lmprint would have written them."""
    import json
    import sqlite3

    connection = sqlite3.connect(path)
    (key, recorded), = connection.execute("SELECT key, value FROM meta WHERE value LIKE '%min_margin%'").fetchall()
    settings = json.loads(recorded)
    edit(settings)
    connection.execute("UPDATE meta SET value = ? WHERE key = ?", (json.dumps(settings), key))
    connection.commit()
    connection.close()


def test_an_index_recorded_with_retired_matching_settings_still_opens(tmp_path):
    """Indexes record their settings. Matching settings a later lmprint retired are ignored, not refused: they
    never shaped what is stored."""
    from landmark import Index

    path = tmp_path / "i.db"
    Index(path, create=True).close()
    _edit_recorded_settings(path, lambda settings: settings.update(verify_tolerance_frames=1,
                                                                   verify_tolerance_bins=1))  # the retired test's
    with Index(path) as index:
        assert index.config == Config()


def test_an_index_recorded_before_a_fingerprint_setting_existed_keeps_its_old_behaviour(tmp_path):
    """A fingerprint setting added later takes, for an index that did not record it, the value that reproduces how
    that index was built, so its queries are fingerprinted the same way."""
    from landmark import Index
    from landmark.config import FINGERPRINT_SETTINGS_ADDED

    path = tmp_path / "i.db"
    Index(path, create=True).close()
    _edit_recorded_settings(path, lambda settings: [settings.pop(added) for added in FINGERPRINT_SETTINGS_ADDED])
    with Index(path) as index:
        assert index.config.peak_rank_frames == 1 != Config().peak_rank_frames
