"""`bench dedup`: does `lmprint dedup` find planted copies and cuts in a real corpus, and nothing else?

Some of the corpus's songs get a planted duplicate: a transcode (MP3 at 128 kbit/s), a retag (the same audio stream
with another title: a copy that is byte-different), or a cut (30 s from the middle, off the frame grid, as an MP3);
with `--speed`, also a copy played 1.5–7 % faster or slower (as an MP3), searched as `lmprint dedup --speed` does.
The corpus and the planted files are indexed together, then `Index.overlaps` runs. A transcode, a retag or a speed
copy must come out in one same-recording group with its source, at its speed (1.0 but for a speed copy; ± 0.2 %);
a cut as a shared part of its source at the right place (± 2 s). Everything else reported is listed, for a person
to judge: a soundtrack can reuse its own audio. Then distractors (`bench scale`'s) grow the index to each of
`sizes`, and the same search is timed there.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

import numpy as np

from . import corpus as corpus_module

KINDS = ("transcode", "retag", "cut")
SPEED_KIND = "speed"
"""A copy played faster or slower (resampled, as a tape, a turntable or a film's 25 frames for 24 play it), as an
MP3: planted with `--speed`, in turn with `KINDS`."""
SPEED_CHANGES = (0.015, 0.07)
"""A speed copy's change, drawn between these (either way): beyond what the join's hashes survive (about 1 %), up
to near the search's 8 %."""
SPEED_TOLERANCE = 0.002
"""A speed copy counts as found when its group says its speed to within this."""
CUT_START_S, CUT_LENGTH_S = 30.3, 30.0
"""A cut's stretch of its source: starting between two of the engine's frames, as an edit or a saved excerpt does
(one that starts on a frame keeps nearly every landmark, which flatters the search)."""
RANGE_TOLERANCE_S = 2.0


def plant(tracks, folder: str, count: int, rng: np.random.Generator, kinds: tuple[str, ...] = KINDS) -> list[dict]:
    """Write up to `count` planted files into `folder`, kinds in turn, each copying another corpus song (fewer when
    the corpus holds fewer songs); each entry says what it copies and how (a speed copy: its `speed`)."""
    import av

    from landmark import audio

    from .audio_io import write
    from .queries import change_speed

    rate = 22050
    order = [int(i) for i in rng.permutation(len(tracks))]
    too_short: list[int] = []  # for a cut: each is the next transcode's or retag's source instead
    planted: list[dict] = []
    while len(planted) < count:
        number, kind = len(planted), kinds[len(planted) % len(kinds)]
        if kind != "cut" and too_short:
            track_index = too_short.pop(0)
        elif order:
            track_index = order.pop(0)
        elif too_short:  # no song left is long enough for a cut: the other kinds go on
            kinds = tuple(k for k in kinds if k != "cut")
            continue
        else:
            break
        source = tracks[track_index].path
        target = os.path.join(folder, f"planted-{number:03d}-{kind}")
        if kind == "retag":
            target += os.path.splitext(source)[1]
            with av.open(source) as inbound, av.open(target, "w") as outbound:
                stream = inbound.streams.audio[0]
                copied = outbound.add_stream_from_template(stream)
                outbound.metadata["title"] = f"retagged {number}"
                for packet in inbound.demux(stream):
                    if packet.dts is not None:
                        packet.stream = copied
                        outbound.mux(packet)
        else:
            signal = audio.load(source, rate)
            speed = 1.0
            if kind == SPEED_KIND:  # resampled, then taken at the rate it had: shorter and higher, or the reverse
                speed = float(1 + rng.choice([-1, 1]) * rng.uniform(*SPEED_CHANGES))
                signal = change_speed(signal, speed)
            if kind == "cut":
                if signal.size < (CUT_START_S + CUT_LENGTH_S + 5) * rate:
                    too_short.append(track_index)
                    continue
                signal = signal[int(CUT_START_S * rate):int((CUT_START_S + CUT_LENGTH_S) * rate)]
            target += ".mp3"  # a cut is lossy too: an excerpt someone saved
            write(target, signal, rate, bit_rate=128_000)
        planted.append({"kind": kind, "source": source, "path": target,
                        **({"speed": round(speed, 5)} if kind == SPEED_KIND else {})})
    return planted


def judge(planted: list[dict], found, paths: dict[int, str]) -> dict:
    """Which planted duplicates `found` (a `landmark.dedup.Duplicates`) holds, and what else it reports."""
    groups = [{paths[i] for i in group} for group in found.recordings]
    parts = found.shared_parts
    hits, explained_groups, explained_parts = [], set(), set()
    for entry in planted:
        if entry["kind"] == "cut":
            hit = next((n for n, o in enumerate(parts) if {paths[o.song_a], paths[o.song_b]} ==
                        {entry["source"], entry["path"]} and _cut_in_place(o, paths, entry["source"])), None)
            if hit is not None:
                explained_parts.add(hit)
        else:  # exactly the two: a group that drew in another song is not a find; a speed copy at its speed
            hit = next((n for n, g in enumerate(groups) if {entry["source"], entry["path"]} == g
                        and _at_speed(entry, found.recordings[n], found.speeds, paths)), None)
            if hit is not None:
                explained_groups.add(hit)
        hits.append(hit is not None)
    other_parts = [o for n, o in enumerate(parts) if n not in explained_parts]
    other_groups = [sorted(g) for n, g in enumerate(groups) if n not in explained_groups]
    return {"planted": len(planted), "found": int(sum(hits)),
            "missed": [e for e, ok in zip(planted, hits) if not ok],
            "other_groups": other_groups,
            "other_parts": [{"a": paths[o.song_a], "a_s": [round(o.a_start_s, 1), round(o.a_end_s, 1)],
                             "b": paths[o.song_b], "b_s": [round(o.b_start_s, 1), round(o.b_end_s, 1)],
                             "landmarks": o.shared} for o in other_parts]}


def _at_speed(entry: dict, group: list[int], speeds: dict[int, float], paths: dict[int, str]) -> bool:
    """Whether a group of a planted file and its source says the planted file's speed (1.0 but for a speed copy)."""
    speed_of = {paths[song]: speeds.get(song, 1.0) for song in group}
    return abs(speed_of[entry["path"]] / speed_of[entry["source"]] - entry.get("speed", 1.0)) <= SPEED_TOLERANCE


def _cut_in_place(overlap, paths: dict[int, str], source: str) -> bool:
    """Whether an overlap puts the cut where it was taken from its source."""
    start, end = ((overlap.a_start_s, overlap.a_end_s) if paths[overlap.song_a] == source
                  else (overlap.b_start_s, overlap.b_end_s))
    return (abs(start - CUT_START_S) <= RANGE_TOLERANCE_S
            and abs(end - (CUT_START_S + CUT_LENGTH_S)) <= RANGE_TOLERANCE_S)


def run(corpus: str, sizes: list[int], count: int = 30, seed: int = 0, jobs: int = 2,
        workdir: str | None = None, speed: bool = False) -> dict:
    """The planted duplicates found at each size; with `speed`, copies at another speed planted too and searched
    for (`DedupSettings.max_speed_change` as `lmprint dedup --speed` sets it)."""
    from landmark import Index
    from landmark.dedup import DedupSettings, Duplicates

    from .scale import add_distractors, distractor_bases

    tracks = corpus_module.require(corpus_module.load(corpus), corpus)
    rng = np.random.default_rng(seed)
    rows = []
    with tempfile.TemporaryDirectory(prefix="lmprint-dedup-", dir=workdir) as tmp:
        planted = plant(tracks, tmp, count, rng, (*KINDS, SPEED_KIND) if speed else KINDS)
        index = Index(os.path.join(tmp, "dedup.db"), create=True)
        settings = DedupSettings.searching_speeds(index.matching, speed)
        index.add([t.path for t in tracks], jobs=jobs)
        bases = distractor_bases(index)  # of the corpus alone: a planted copy's distractors would twin its source's
        index.add([e["path"] for e in planted], jobs=jobs)
        if len(planted) < count:
            print(f"bench: planted {len(planted)} of {count}: one for each corpus song", file=sys.stderr)
        have = index.catalogue.song_count()  # the corpus and the planted files: the first row, without distractors
        for size in sorted({have, *(size for size in sizes if size > have)}):  # no size twice
            add_distractors(index, bases, size, rng)
            started = time.perf_counter()
            found = index.duplicates(settings)
            seconds = time.perf_counter() - started
            songs = index.catalogue.songs()
            paths = {song.id: song.path for song in songs}
            # distractors of one source share parts where their variants are near (one shift, neighbouring scales)
            real = Duplicates([g for g in found.recordings if not all(_distractor(paths[i]) for i in g)],
                              [o for o in found.shared_parts
                               if not (_distractor(paths[o.song_a]) and _distractor(paths[o.song_b]))],
                              found.speeds)
            row = {"songs": len(songs), "seconds": round(seconds, 1), **judge(planted, real, paths)}
            print({k: v for k, v in row.items() if not isinstance(v, list)}, file=sys.stderr, flush=True)
            rows.append(row)
        index.close()
    return {"corpus": os.path.abspath(corpus), "seed": seed, "speed": speed, "planted": planted, "rows": rows}


def _distractor(path: str) -> bool:
    return path.startswith("distractor:")


def markdown(result: dict) -> str:
    lines = ["The search: " + ("the join and copies at another speed (`lmprint dedup --speed`)." if result.get("speed")
                               else "the join (`lmprint dedup`)."), "",
             "| songs | planted | found | other groups | other shared parts | dedup s |", "|---|---|---|---|---|---|"]
    for row in result["rows"]:
        lines.append(f"| {row['songs']:,} | {row['planted']} | {row['found']} | {len(row['other_groups'])} | "
                     f"{len(row['other_parts'])} | {row['seconds']} |")
    first = result["rows"][0] if result["rows"] else None
    if first and (first["other_groups"] or first["other_parts"]):
        lines += ["", "Reported beside the planted duplicates:"]
        lines += [f"- same recording: {', '.join(os.path.basename(p) for p in group)}"
                  for group in first["other_groups"]]
        lines += [f"- shared part: {os.path.basename(p['a'])} {p['a_s'][0]}–{p['a_s'][1]} s = "
                  f"{os.path.basename(p['b'])} {p['b_s'][0]}–{p['b_s'][1]} s ({p['landmarks']} landmarks)"
                  for p in first["other_parts"]]
    return "\n".join(lines) + "\n"
