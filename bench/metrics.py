"""Metrics from per-query outcomes: recall@1 per condition, false matches, latency percentiles."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Outcome:
    condition: str
    indexed: bool
    song: str
    answer: str | None
    seconds: float
    heard: tuple[float, float] | None = None
    """(tempo, pitch) the method heard the clip at (speed s: (s, s)); None where it cannot tell."""


FACTOR_TOLERANCE = 0.005
"""A reported warp is right when its tempo and pitch are both within this fraction of the true ones."""


def true_warp(condition: str) -> tuple[float, float] | None:
    """(tempo, pitch) a condition plays its clips at (`speed_+5%`: (1.05, 1.05)); None for conditions that do not."""
    from .queries import warp_factor

    factor = warp_factor(condition)
    if factor is None:
        return None
    return {"speed": (factor, factor), "tempo": (factor, 1.0), "pitch": (1.0, factor)}[condition.split("_")[0]]


def summarise(outcomes: list[Outcome]) -> dict:
    """recall per condition (indexed songs, right song first), false-match rate (songs not indexed, any
    answer), wrong-match rate (indexed songs, another song), query latency p50/p95 in ms, and on conditions that
    change speed, tempo or pitch the share of right answers whose reported warp is right (`FACTOR_TOLERANCE`), as
    on the others together the share reported as recorded (a monitor's clock runs at the rate reported)."""
    hits: dict[str, list[bool]] = defaultdict(list)
    wrong = []
    false_matches: dict[str, list[bool]] = defaultdict(list)
    factor_right: dict[str, list[bool]] = defaultdict(list)
    as_recorded_right: dict[str, list[bool]] = defaultdict(list)
    for outcome in outcomes:
        truth = true_warp(outcome.condition)
        if outcome.indexed and outcome.heard and outcome.answer == outcome.song:
            right = max(abs(h / t - 1) for h, t in zip(outcome.heard, truth or (1.0, 1.0))) <= FACTOR_TOLERANCE
            (factor_right if truth else as_recorded_right)[outcome.condition].append(right)
        if outcome.indexed:
            hits[outcome.condition].append(outcome.answer == outcome.song)
            wrong.append(outcome.answer is not None and outcome.answer != outcome.song)
        else:
            false_matches[outcome.condition].append(outcome.answer is not None)
    latencies_ms = np.array([o.seconds * 1000 for o in outcomes]) if outcomes else np.zeros(1)
    all_false = [x for values in false_matches.values() for x in values]
    return {
        "recall": {name: round(float(np.mean(values)), 4) for name, values in hits.items()},
        "queries_per_condition": {name: len(values) for name, values in hits.items()},
        "false_match_rate": round(float(np.mean(all_false)), 4) if all_false else None,
        "false_match_rate_by_condition": {name: round(float(np.mean(v)), 4) for name, v in false_matches.items()},
        "unindexed_queries": len(all_false),
        "wrong_match_rate": round(float(np.mean(wrong)), 4) if wrong else None,
        "query_ms_p50": round(float(np.percentile(latencies_ms, 50)), 2),
        "query_ms_p95": round(float(np.percentile(latencies_ms, 95)), 2),
        "factor_right": {name: round(float(np.mean(v)), 4) for name, v in factor_right.items()},
        "factor_right_overall": (round(float(np.mean([x for v in factor_right.values() for x in v])), 4)
                                 if factor_right else None),
        "factor_right_as_recorded": (round(float(np.mean([x for v in as_recorded_right.values() for x in v])), 4)
                                     if as_recorded_right else None),
        "factor_right_as_recorded_by_condition": {name: round(float(np.mean(v)), 4)
                                                  for name, v in as_recorded_right.items()},
    }
