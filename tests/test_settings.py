import json
import sqlite3

import pytest

from landmark.settings import FINGERPRINT_SETTINGS_ADDED, Density, FingerprintSettings, MatchSettings
from lmprint.errors import SettingsError


def test_fingerprint_settings_round_trip_through_what_an_index_stores():
    """Every fingerprint setting is recorded, and read back as it was, none left at its default."""
    import dataclasses

    settings = FingerprintSettings(
        sample_rate_hz=11025, fft_size=256, hop_size=64, min_freq_hz=200.0, max_freq_hz=4000.0, background_frames=21,
        background_bins=11, min_prominence_db=2.5, dynamic_range_db=40.0, peak_rank_frames=5, peak_block_s=0.5,
        frequency_bands=3, index=Density(10, 3, 5, 5), min_delta_frames=3, max_delta_frames=60, max_delta_bins=50)
    assert all(getattr(settings, item.name) != getattr(FingerprintSettings(), item.name)
               for item in dataclasses.fields(FingerprintSettings))
    assert FingerprintSettings.from_stored(settings.to_json()) == settings


def test_changing_matching_settings_changes_only_what_they_name():
    """Of settings already changed, `with_values` changes what it names and keeps the rest as they were."""
    before = MatchSettings().with_values({"min_score": 33.0, "query": {"peaks_per_s": 41.0}})
    matching = before.with_values({"min_margin": 7, "query": {"fanout": 3}})
    assert matching.min_margin == 7 and matching.query.fanout == 3
    assert matching.query.peaks_per_s == 41.0 and matching.min_score == 33.0
    assert {**matching.to_dict(), "min_margin": before.min_margin,
            "query": {**matching.to_dict()["query"], "fanout": before.query.fanout}} == before.to_dict()


def test_unknown_names_and_wrong_types_are_refused_with_the_name():
    with pytest.raises(SettingsError, match="unknown setting 'fanout'"):
        MatchSettings().with_values({"fanout": 3})
    with pytest.raises(SettingsError, match="min_score must be a number, not \"high\""):
        MatchSettings(min_score="high")  # type: ignore[arg-type]
    with pytest.raises(SettingsError, match="min_score must be a number, not true"):
        MatchSettings(min_score=True)  # a bool is an int to Python, not a score
    with pytest.raises(SettingsError, match="bit layout"):
        FingerprintSettings(max_delta_frames=64)  # Δt has 6 bits in a hash
    with pytest.raises(SettingsError, match="max_freq_hz"):
        FingerprintSettings(max_freq_hz=4500.0)  # above Nyquist at 8 kHz


def test_a_negative_count_or_reach_is_refused_with_its_name():
    """A negative tolerance would borrow across the fields of a packed vote key, a negative shift read no offset:
    every whole-number setting (each counts something) and every length in seconds refuses one, naming it."""
    import dataclasses

    counts_and_lengths = [item.name for item in dataclasses.fields(MatchSettings)
                          if item.type == "int" or item.name.endswith("_s")]
    assert len(counts_and_lengths) >= 15
    for name in counts_and_lengths:
        with pytest.raises(SettingsError, match=f"{name} must be"):
            MatchSettings().with_values({name: -1})
    with pytest.raises(SettingsError, match="rare_hash_scale must be more than 0"):  # every vote would weigh 0
        MatchSettings().with_values({"rare_hash_scale": 0})
    assert MatchSettings().with_values({"follow_reach_s": 0.0, "verify_shift_frames": 0}).follow_reach_s == 0.0


def test_a_setting_that_would_make_every_clip_fail_is_refused_not_blamed_on_the_audio():
    """A fanout of 0 found "no landmarks" in every clip, a max_query_s of 0 "no audio samples"; NaN compares false
    with everything; an unknown name inside `query` listed the dataclass's arguments rather than the known names.
    Infinity is a fingerprint setting's number (a dynamic range of inf: no floor), and an index that recorded it
    opens; no matching setting's (a max_query_s of inf sized no buffer)."""
    for values, complaint in (({"query": {"fanout": 0}}, "query: need peaks_per_s > 0 and finite, fanout >= 1"),
                              ({"query": {"peaks_per_s": -5}}, "query: need peaks_per_s > 0"),
                              ({"query": {"peaks_per_s": float("inf")}}, "query: need peaks_per_s > 0 and finite"),
                              ({"query": {"neighbourhood_bins": -1}}, "neighbourhood_frames >= 0"),
                              ({"query": {"neighbourhood_frames": -1}}, "neighbourhood_frames >= 0"),
                              ({"max_query_s": 0, "min_duration_s": 0}, "max_query_s must be more than 0"),
                              ({"max_query_s": 0.5}, "max_query_s (0.5 s) must be at least min_duration_s (1 s)"),
                              ({"min_duration_s": 40}, "max_query_s (30 s) must be at least min_duration_s (40 s)"),
                              ({"min_ratio": float("nan")}, "min_ratio must be a number"),
                              ({"min_duration_s": -1}, "min_duration_s must be at least 0"),
                              ({"max_query_s": float("inf")}, "max_query_s must be a finite number, not inf"),
                              ({"verify_candidates": True}, "verify_candidates must be a whole number, not true"),
                              ({"query": {"nosuch": 3}}, "query: unknown setting 'nosuch' (known: fanout, ")):
        with pytest.raises(SettingsError) as refused:
            MatchSettings().with_values(values)
        assert complaint in str(refused.value), (values, str(refused.value))
    assert MatchSettings(max_query_s=5.0, min_duration_s=5.0).max_query_s == 5.0  # as long as the least: enough
    with pytest.raises(SettingsError, match="need peaks_per_s > 0"):
        FingerprintSettings(index=Density(0.0, 3, 3, 3))
    unbounded = FingerprintSettings(dynamic_range_db=float("inf"))
    assert FingerprintSettings.from_stored(unbounded.to_json()) == unbounded


def test_every_setting_is_either_stored_or_used_at_query_time_never_both():
    """No hand-kept list decides which settings an index records: the two objects do, so a new matching setting
    can never be mistaken for a stored one."""
    import dataclasses

    stored = set(FingerprintSettings().to_dict())
    matching = set(MatchSettings().to_dict())
    assert stored == {item.name for item in dataclasses.fields(FingerprintSettings)}
    assert matching == {item.name for item in dataclasses.fields(MatchSettings)} and not stored & matching


def _edit_recorded_settings(path, edit) -> None:
    """Change the settings an index recorded, as an older lmprint would have written them."""
    connection = sqlite3.connect(path)
    recorded = json.loads(connection.execute("SELECT value FROM meta WHERE key='config'").fetchone()[0])
    edit(recorded)
    connection.execute("UPDATE meta SET value = ? WHERE key = 'config'", (json.dumps(recorded),))
    connection.commit()
    connection.close()


def test_an_index_recorded_with_matching_settings_beside_its_own_still_opens(tmp_path):
    """Older indexes recorded every setting, matching ones included (some since retired). They are ignored, not
    refused: they never shaped what is stored."""
    from landmark import Index

    path = tmp_path / "i.db"
    Index(path, create=True).close()
    _edit_recorded_settings(path, lambda recorded: recorded.update(
        MatchSettings(min_margin=3).to_dict(), verify_tolerance_frames=1, verify_tolerance_bins=1))
    with Index(path) as index:
        assert index.fingerprint_settings == FingerprintSettings()


def test_an_index_recorded_before_a_fingerprint_setting_existed_keeps_its_old_behaviour(tmp_path):
    """A fingerprint setting added later takes, for an index that did not record it, the value that reproduces how
    that index was built, so its queries are fingerprinted the same way."""
    from landmark import Index

    path = tmp_path / "i.db"
    Index(path, create=True).close()
    _edit_recorded_settings(path, lambda recorded: [recorded.pop(added) for added in FINGERPRINT_SETTINGS_ADDED])
    with Index(path) as index:
        assert index.fingerprint_settings.peak_rank_frames == 1 != FingerprintSettings().peak_rank_frames


def test_an_index_recorded_with_an_unknown_fingerprint_setting_is_refused(tmp_path):
    from landmark import Index
    from lmprint.errors import IndexFileError

    path = tmp_path / "i.db"
    Index(path, create=True).close()
    _edit_recorded_settings(path, lambda recorded: recorded.update(spectral_whitening=True))
    with pytest.raises(IndexFileError, match="newer version"):
        Index(path)


def test_a_frequency_reach_that_the_hash_cannot_hold_is_refused():
    """Δf has 7 bits offset by 63: a reach of 63 bins fits, 64 (a Δf of −64 would borrow from the anchor's bin)
    is refused."""
    assert FingerprintSettings(max_delta_bins=63).max_delta_bins == 63
    with pytest.raises(SettingsError, match="bit layout"):
        FingerprintSettings(max_delta_bins=64)


@pytest.mark.parametrize("name", ["max_speed_change", "max_tempo_change", "max_pitch_change"])
def test_a_warp_search_is_refused_outside_zero_to_its_widest(name):
    """Each of the speed, tempo and pitch ranges takes 0 up to just under 0.3, and refuses 0.3 or a negative
    range, naming the settings."""
    assert getattr(MatchSettings().with_values({name: 0.29}), name) == 0.29
    assert getattr(MatchSettings().with_values({name: 0.0}), name) == 0.0
    for wrong in (0.3, 0.5, -0.01):
        with pytest.raises(SettingsError, match=r"max_speed_change, max_tempo_change and max_pitch_change must be"):
            MatchSettings().with_values({name: wrong})


def test_set_options_on_one_table_all_apply_typed_and_on_top_of_a_settings_file(tmp_path):
    """`--set query.NAME=VALUE` options each change their own field of `query`, as numbers, and add to a settings
    file's `[query]` table rather than replacing it."""
    from lmprint.cli import match_settings

    settings = match_settings(None, ("query.fanout=10", "query.peaks_per_s=40", "min_score=25"))
    assert (settings.query.fanout, settings.query.peaks_per_s, settings.min_score) == (10, 40, 25)
    assert type(settings.query.fanout) is int and settings.query.neighbourhood_bins == MatchSettings().query.neighbourhood_bins
    file = tmp_path / "s.toml"
    file.write_text("[query]\nfanout = 7\nneighbourhood_bins = 2\n")
    settings = match_settings(str(file), ("query.peaks_per_s=33",))
    assert (settings.query.fanout, settings.query.neighbourhood_bins, settings.query.peaks_per_s) == (7, 2, 33)
    settings = match_settings(str(file), ("query.fanout=9",))  # an option wins over the file, field by field
    assert (settings.query.fanout, settings.query.neighbourhood_bins) == (9, 2)


@pytest.mark.parametrize(("text", "complaint"), [("inf", "must be a finite number, not inf"),
                                                  ("-inf", "must be a finite number, not -inf"),
                                                  ("+Infinity", "must be a finite number, not inf"),
                                                  ("-nan", "must be a number, not nan")])
def test_set_reads_signed_infinities_and_nan_as_numbers(text, complaint):
    """`--set min_score=-inf` is the number −∞ (refused as not finite), not the text "-inf"; so are the other
    spellings of infinity and NaN, signed or not."""
    from lmprint.cli import match_settings

    with pytest.raises(SettingsError) as refused:
        match_settings(None, (f"min_score={text}",))
    assert f"min_score {complaint}" in str(refused.value)


def test_mert_settings_refuse_what_their_codes_and_rules_cannot_be():
    """MERT codes are searched as 64-bit words (a multiple of 64 bits), a rule is one of `RULES`, and windows,
    hops and centroids must be positive; the defaults are accepted."""
    from neural.settings import RULES, MertSettings

    MertSettings()
    for rule in RULES:
        assert MertSettings(rule=rule).rule == rule
    assert MertSettings(code_bits=128).code_bits == 128
    for values, complaint in (({"code_bits": 96}, "multiple of 64"), ({"code_bits": 32}, "multiple of 64"),
                              ({"rule": "max"}, "unknown rule 'max'"), ({"window_s": 0.0}, "window_s and hop_s"),
                              ({"hop_s": -1.0}, "window_s and hop_s"), ({"centroids": 0}, "centroids at least 1")):
        with pytest.raises(SettingsError, match=complaint):
            MertSettings(**values)
