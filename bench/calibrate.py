"""`bench calibrate`: the chance tails behind the landmark engine's confidence, and what each threshold keeps.

The corpus's indexed songs are indexed; clips are cut with a seed other than the bench's (the calibration split:
settings are never chosen on the clips a report shows). For each clip of a held-out song it records the strongest
evidence chance brought (`Index.strongest_evidence`: the vote leader's lead, the best agreement among the
verified candidates), fits a `ChanceTail` to each, and prints the `Calibration` to put in `landmark/confidence.py`.
It then matches the clips of indexed songs with the engine as it is, and reports, per confidence threshold, the
share of their correct matches kept, and the false-match probability the threshold stands for.
"""

from __future__ import annotations

import os
import sys
import tempfile

import numpy as np

from . import corpus as corpus_module
from . import queries as query_module

THRESHOLDS = (0.9, 0.99, 0.999, 0.9999)


def run(corpus: str, noise_dir: str | None, rir_dir: str | None, seed: int = 1, jobs: int = 2,
        workdir: str | None = None) -> dict:
    import soxr

    from landmark import Index, MatchSettings
    from landmark.confidence import ChanceTail

    tracks = corpus_module.require(corpus_module.load(corpus), corpus, indexed=1, held_out=1)
    degraders = query_module.Degraders.load(noise_dir, rir_dir)
    with tempfile.TemporaryDirectory(prefix="lmprint-calibrate-", dir=workdir) as tmp:
        clips = query_module.build(tracks, degraders, seed, tmp, full=False)
        # every match counted, whatever its probability: a bound on it would drop matches from the shares kept
        index = Index(os.path.join(tmp, "calibrate.db"), create=True,
                      matching=MatchSettings(max_false_match_probability=1.0))
        index.add([t.path for t in tracks if t.indexed], jobs=jobs)
        leads, zs, matches = [], [], []
        for clip in clips:
            samples = soxr.resample(clip.samples, query_module.BENCH_RATE_HZ, index.sample_rate_hz).astype(np.float32)
            if not clip.indexed:
                lead, z = index.strongest_evidence(samples)
                leads.append(max(lead, 0.0))
                zs.append(-np.inf if z is None else z)
            else:
                found = index.match_samples(samples)
                if found is not None:
                    matches.append((clip.condition, found.song.path == clip.song, found.confidence, found.decided_by))
        index.close()
    print(f"{len(leads)} clips of held-out songs, {len(matches)} matches of indexed ones", file=sys.stderr)
    lead_tail, z_tail = ChanceTail.fit(np.array(leads)), ChanceTail.fit(np.array(zs))
    finite = np.isfinite(zs)
    kept = {threshold: {how: _share([c >= threshold for _, right, c, h in matches if right and h == how])
                        for how in ("vote", "confirmed", "verified")} for threshold in THRESHOLDS}
    return {"seed": seed, "held_out_clips": len(leads), "vote_lead": lead_tail.__dict__, "agreement_z": z_tail.__dict__,
            "correlation": round(float(np.corrcoef(np.array(leads)[finite], np.array(zs)[finite])[0, 1]), 3),
            "right_matches": sum(right for _, right, _, _ in matches),
            "wrong_matches": [(condition, round(c, 4), how) for condition, right, c, how in matches if not right],
            "kept": kept}


def _share(flags: list[bool]) -> float | None:
    return round(float(np.mean(flags)), 3) if flags else None


def markdown(result: dict) -> str:
    lines = [f"Chance tails from {result['held_out_clips']} clips of held-out songs (seed {result['seed']}): "
             f"vote lead {result['vote_lead']}, agreement z {result['agreement_z']}, correlation "
             f"{result['correlation']}. Right matches: {result['right_matches']}; wrong: {result['wrong_matches']}.",
             "", "| confidence ≥ | false-match probability ≤ | right matches kept: vote | confirmed | verified |",
             "|---|---|---|---|---|"]
    for threshold, kept in result["kept"].items():
        lines.append(f"| {threshold} | {1 - float(threshold):.4g} | {kept['vote']} | {kept['confirmed']} | "
                     f"{kept['verified']} |")
    return "\n".join(lines) + "\n"
