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


def summarise(outcomes: list[Outcome]) -> dict:
    """recall per condition (indexed songs, right song first), false-match rate (songs not indexed, any
    answer), wrong-match rate (indexed songs, another song), and query latency p50/p95 in ms."""
    hits: dict[str, list[bool]] = defaultdict(list)
    wrong = []
    false_matches: dict[str, list[bool]] = defaultdict(list)
    for outcome in outcomes:
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
    }
