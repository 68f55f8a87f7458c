"""`bench`: the same corpus, the same queries and the same metrics for every method."""

from __future__ import annotations

import os
import subprocess

import click
import numpy as np
from click.core import ParameterSource

from .audio_io import CODECS


class _Guarded(click.Group):
    """The bench's commands, whose errors about what they were given (lmprint's own: a bad file, a missing model, a
    damaged index) are one line, as `lmprint`'s are."""

    def invoke(self, ctx: click.Context):
        from lmprint.errors import LmprintError

        try:
            return super().invoke(ctx)
        except LmprintError as error:
            click.echo(f"bench: {error}", err=True)
            ctx.exit(1)


def _sizes(ctx: click.Context, parameter: click.Parameter, value: str) -> list[int]:
    """A comma-separated list of positive counts (empty: none)."""
    try:
        sizes = [int(size) for size in value.split(",") if size.strip()]
    except ValueError:
        raise click.BadParameter(f"{value!r}: expected counts separated by commas, e.g. 100,1000") from None
    if sizes and min(sizes) < 1:
        raise click.BadParameter(f"{value!r}: every size must be at least 1")
    return sizes


@click.group(cls=_Guarded, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Benchmark lmprint's methods, and make the audio the benchmarks and the demo need."""
    from lmprint.allocator import keep_freed_memory

    keep_freed_memory()  # what `lmprint` runs with, in every process the bench times


@main.command()
@click.argument("outdir", type=click.Path(file_okay=False))
@click.option("--songs", type=click.IntRange(1), default=20, show_default=True)
@click.option("--duration", type=click.FloatRange(1), default=60.0, show_default=True, help="Seconds per song.")
@click.option("--seed", type=int, default=0, show_default=True, help="First seed; song i uses seed + i.")
@click.option("--format", "extension", type=click.Choice(["flac", "ogg", "mp3", "wav"]), default="flac",
              show_default=True)
def generate(outdir, songs, duration, seed, extension):
    """Write generated songs (distinct, deterministic) to OUTDIR."""
    from .audio_io import write
    from .synth import song

    os.makedirs(outdir, exist_ok=True)
    for i in range(songs):
        write(os.path.join(outdir, f"generated-{seed + i:05d}.{extension}"), song(seed + i, duration), 22050)
    click.echo(f"wrote {songs} song{'' if songs == 1 else 's'} of {duration:g} s to {outdir}", err=True)


@main.command()
@click.argument("source", type=click.Path(exists=True, dir_okay=False))
@click.argument("target", type=click.Path(dir_okay=False))
@click.option("--start", type=click.FloatRange(0), default=0.0, show_default=True, help="Seconds into SOURCE.")
@click.option("--duration", type=click.FloatRange(0, min_open=True), default=5.0, show_default=True,
              help="Seconds.")
@click.option("--snr-db", type=float, default=None, help="Add noise at this SNR (pink noise unless --noise).")
@click.option("--noise", type=click.Path(exists=True, dir_okay=False), help="Noise recording to add.")
@click.option("--seed", type=int, default=0, show_default=True)
def clip(source, target, start, duration, snr_db, noise, seed):
    """Cut a clip out of SOURCE, optionally with noise, and write it to TARGET (extension picks the codec)."""
    from landmark import audio
    from lmprint.errors import LmprintError

    from . import queries
    from .audio_io import write

    if os.path.splitext(target)[1].lower() not in CODECS:
        raise click.BadParameter(f"{target}: no codec for its extension (known: {', '.join(CODECS)})",
                                 param_hint="TARGET")
    rate = 22050
    signal = audio.load(source, rate)
    piece = signal[int(start * rate):int((start + duration) * rate)]
    if piece.size == 0:
        raise LmprintError(f"{source} lasts {signal.size / rate:.1f} s: nothing from {start:g} s")
    if snr_db is not None:
        rng = np.random.default_rng(seed)
        background = audio.load(noise, rate) if noise else queries.pink_noise(piece.size, rng)
        if not np.any(background):
            raise LmprintError(f"{noise} is silent: no noise to add at {snr_db:g} dB")
        piece = queries.add_noise(piece, background, snr_db, rng)
    write(target, piece / max(1.0, float(np.max(np.abs(piece)))), rate)


def _corpus_and_rooms_options(command):
    """--corpus, --out, --noise and --rir, for the benches that degrade corpus audio with noise and rooms."""
    options = [
        click.option("--corpus", required=True, type=click.Path(exists=True)),
        click.option("--out", required=True, type=click.Path(file_okay=False)),
        click.option("--noise", "noise_dir", type=click.Path(), help="Folder of noise recordings."),
        click.option("--rir", "rir_dir", type=click.Path(), default=ROOMS_DIR,
                     help="Folder of room impulse responses (default: the rooms shipped in bench/rooms)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def write_report(out: str, name: str, result: dict, markdown) -> None:
    """`result` as OUT/NAME.json, and its table as OUT/NAME.md and on stdout."""
    import json

    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, f"{name}.json"), "w") as handle:
        json.dump(result, handle, indent=2)
    table = markdown(result)
    with open(os.path.join(out, f"{name}.md"), "w") as handle:
        handle.write(table)
    click.echo(table)


ROOMS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "rooms")
"""The measured room impulse responses that ship with the bench (credits in rooms/SOURCES.md)."""


def _query_set_options(command):
    """--noise, --rir, --seed and --limit: what compare's query set (and as-user's, the same) is made from."""
    options = [
        click.option("--noise", "noise_dir", type=click.Path(), help="Folder of noise recordings (get-corpus.sh's "
                     "OUTDIR/noise); babble files are those with 'babble' in the path. Default: pink noise."),
        click.option("--rir", "rir_dir", type=click.Path(file_okay=False), default=ROOMS_DIR,
                     help="Folder of room impulse responses. Default: the measured rooms that ship with the "
                     "bench (bench/rooms)."),
        click.option("--seed", type=int, default=0, show_default=True),
        click.option("--limit", type=click.IntRange(1), default=None,
                     help="Use only this many songs (a deterministic subset)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@main.command()
@click.argument("outdir", type=click.Path(file_okay=False))
@click.option("--music/--no-music", default=True, show_default=True, help="Fetch the music (OUTDIR/music).")
@click.option("--noise/--no-noise", default=True, show_default=True, help="Fetch the noise (OUTDIR/noise).")
@click.option("--package", "packages", multiple=True, help="Only this music package (repeatable).")
def corpus(outdir, music, noise, packages):
    """Fetch the public corpus: free game soundtracks and ambient noise from Debian, and babble (espeak-ng).

    About 450 MB of packages; the music lands in OUTDIR/music and the noise in OUTDIR/noise, each with a
    manifest.tsv of licences. Needs apt-get, dpkg, espeak-ng and sox (scripts/get-corpus.sh installs them)."""
    from .fetch import fetch_corpus

    try:
        fetch_corpus(outdir, music=music, noise=noise, packages=packages, log=lambda line: click.echo(line, err=True))
    except (RuntimeError, OSError, ValueError, subprocess.CalledProcessError) as error:
        raise SystemExit(f"bench corpus: {error}") from None


@main.command(name="unseen-noise")
@click.argument("outdir", type=click.Path(file_okay=False))
def unseen_noise(outdir):
    """Write synthetic noises (OUTDIR/noise) and rooms (OUTDIR/rir) unlike the public ones (needs espeak-ng, sox)."""
    from .unseen import make

    noise_dir, rir_dir = make(outdir)
    click.echo(f"wrote {noise_dir} and {rir_dir}", err=True)


@main.command()
@click.option("--methods", default="landmark,mert", show_default=True, help="Comma-separated: landmark, mert.")
@click.option("--corpus", required=True, type=click.Path(exists=True), help="Folder of audio, or a manifest.tsv.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Where results.json, report.md and "
              "the plots go.")
@click.option("--mert-model", type=click.Path(), envvar="LMPRINT_MERT_MODEL",
              help="Local MERT checkpoint folder (default: $LMPRINT_MERT_MODEL). Without either, mert is skipped.")
@click.option("--mert-device", default=None, help="Torch device for mert (default: cuda if present).")
@_query_set_options
@click.option("--quick", is_flag=True, help="Fewer conditions: clean 5 s, 0 dB noise, reverb, phone, MP3.")
@click.option("--jobs", type=click.IntRange(1), default=2, show_default=True, help="Processes for indexing.")
@click.option("--landmark-settings", default=None, help='Landmark settings to change, fingerprint or matching, as '
              'JSON, e.g. \'{"min_margin": 7, "index": {"peaks_per_s": 7, "fanout": 3}}\' (see landmark/settings.py).')
def compare(methods, corpus, out, mert_model, mert_device, noise_dir, rir_dir, seed, limit, quick, jobs,
            landmark_settings):
    """Every method on the same songs with the same queries: results.json, report.md and PNG plots in OUT."""
    from lmprint.errors import LmprintError

    from .report import markdown
    from .run import compare as run_compare

    chosen = [m.strip() for m in methods.split(",") if m.strip()]
    unknown = sorted(set(chosen) - {"landmark", "mert"})
    if unknown or not chosen:
        raise click.BadParameter(f"{methods!r}: known methods are landmark and mert", param_hint="--methods")
    if "landmark" in chosen:  # settings it would refuse are said before any work, as a wrong model folder is
        from .run import split_landmark_settings

        try:
            split_landmark_settings(landmark_settings)
        except ValueError as error:  # not JSON
            raise click.BadParameter(f"not JSON: {error}", param_hint="--landmark-settings") from None
    if "mert" in chosen and mert_model:  # a wrong folder is said before any work, not in the report at the end
        from neural.mert import checked_model_dir

        given_by_environment = (click.get_current_context().get_parameter_source("mert_model")
                                == ParameterSource.ENVIRONMENT)  # then None, so that the error names the variable
        checked_model_dir(None if given_by_environment else mert_model, option="--mert-model")
    results = run_compare(chosen, corpus, out,
                          mert_model=mert_model, mert_device=mert_device, noise_dir=noise_dir,
                          rir_dir=rir_dir, seed=seed, limit=limit, full=not quick,
                          jobs=jobs, show_progress=True, landmark_settings=landmark_settings)
    click.echo(markdown(results))
    skipped = [f"{name}: {figures['skipped']}" for name, figures in results["methods"].items()
               if "skipped" in figures and (name != "mert" or mert_model)]  # mert without weights: as documented
    if skipped:  # the run did not do what was asked (weights that do not load, landmark settings it refused)
        raise LmprintError("; ".join(skipped))


@main.command(name="as-user")
@click.option("--corpus", required=True, type=click.Path(exists=True), help="Folder of audio, or a manifest.tsv.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Where results.json and report.md go.")
@_query_set_options
@click.option("--full", is_flag=True, help="Every condition of compare, not only its --quick ones.")
@click.option("--jobs", type=click.IntRange(1), default=2, show_default=True, help="`lmprint add --jobs`.")
@click.option("--format", "clip_format", type=click.Choice(["m4a", "mp3", "ogg", "opus", "flac", "wav"]),
              default="m4a", show_default=True, help="Audio format the clips are written in.")
def as_user(corpus, out, noise_dir, rir_dir, seed, limit, full, jobs, clip_format):
    """compare's queries as audio files, through `lmprint add` and `lmprint match --json`: report.md in OUT."""
    from .as_user import markdown, run

    results = run(corpus, out, noise_dir=noise_dir, rir_dir=rir_dir, seed=seed,
                  limit=limit, full=full, jobs=jobs, clip_format=clip_format)
    click.echo(markdown(results))


@main.command()
@click.option("--corpus", required=True, type=click.Path(exists=True))
@click.option("--out", required=True, type=click.Path(file_okay=False))
@click.option("--sizes", default="100,1000,10000", show_default=True, callback=_sizes,
              help="Index sizes (songs), comma-separated.")
@click.option("--noise", "noise_dir", type=click.Path(), help="Folder of noise recordings.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--limit", type=click.IntRange(1), default=None, help="Use only this many real songs.")
@click.option("--jobs", type=click.IntRange(1), default=2, show_default=True)
@click.option("--matching", default=None, help='Matching settings the queries use, as JSON, e.g. '
              '\'{"max_postings_read": 200000}\' (see landmark/settings.py, MatchSettings).')
def scale(corpus, out, sizes, noise_dir, seed, limit, jobs, matching):
    """Landmark recall, false matches, latency and storage as distractor songs are added."""
    import json

    from landmark.settings import MatchSettings
    from lmprint.errors import SettingsError

    from .scale import markdown
    from .scale import scale as run_scale

    try:
        values = json.loads(matching) if matching else {}
        if not isinstance(values, dict):
            raise ValueError("expected a JSON object")
        MatchSettings().with_values(values)
    except (ValueError, SettingsError) as error:
        raise click.BadParameter(str(error), param_hint="--matching") from None
    result = run_scale(corpus, sizes, noise_dir, seed=seed, limit=limit, jobs=jobs, matching=values)
    write_report(out, "scale", result, markdown)


@main.command()
@click.option("--corpus", required=True, type=click.Path(exists=True))
@click.option("--out", required=True, type=click.Path(file_okay=False))
@click.option("--sizes", default="10000", show_default=True, callback=_sizes,
              help="Index sizes (songs) at which the search is timed again, with distractors; comma-separated.")
@click.option("--planted", type=click.IntRange(1), default=30, show_default=True,
              help="Duplicates to plant: transcodes, retags and cuts in turn (and copies at another speed, with "
                   "--speed).")
@click.option("--speed", is_flag=True,
              help="Plant copies played 1.5-7 % faster or slower too, and search as `lmprint dedup --speed` does.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--jobs", type=click.IntRange(1), default=2, show_default=True)
def dedup(corpus, out, sizes, planted, speed, seed, jobs):
    """Plant copies and cuts of corpus songs, and check that `lmprint dedup` finds them and nothing else."""

    from .dedup import markdown, run

    result = run(corpus, sizes, count=planted, seed=seed, jobs=jobs, speed=speed)
    write_report(out, "dedup", result, markdown)


@main.command()
@_corpus_and_rooms_options
@click.option("--seed", type=int, default=1, show_default=True, help="Not the bench's seed: a calibration split.")
@click.option("--jobs", type=click.IntRange(1), default=2, show_default=True)
def calibrate(corpus, out, noise_dir, rir_dir, seed, jobs):
    """Fit the chance tails behind the landmark confidence, and show what each confidence threshold keeps."""

    from .calibrate import markdown, run

    write_report(out, "calibrate", run(corpus, noise_dir, rir_dir, seed=seed, jobs=jobs), markdown)


@main.command()
@_corpus_and_rooms_options
@click.option("--conditions", default="clean,noise,phone", show_default=True,
              help="Comma-separated: clean, noise, phone, dj (each song at its own speed within ± 8 %).")
@click.option("--hours", type=click.FloatRange(0.01), default=1.0, show_default=True, help="Radio per condition.")
@click.option("--songs", type=click.IntRange(0), default=0, show_default=True,
              help="Grow the index to this many songs with distractors, as `bench scale` makes them (0: the corpus).")
@click.option("--follow/--search-every-look", default=True, show_default=True,
              help="Check the song followed before searching (`MonitorSettings.follow`), or search at every look.")
@click.option("--file-format", type=click.Choice([*(ext.lstrip(".") for ext in CODECS), "none"]), default="mp3",
              show_default=True, help="Write each hour as a stereo file of this format, as a recorded broadcast is, "
                                      "and monitor the file, decoding included (none: hand over decoded samples).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--jobs", type=click.IntRange(1), default=2, show_default=True)
def monitor(corpus, out, noise_dir, rir_dir, conditions, hours, songs, follow, file_format, seed, jobs):
    """Radio hours made from the corpus through `lmprint monitor`: songs found, boundary errors, phantoms, speed."""

    from .monitor import ALL_CONDITIONS, markdown, run

    wanted = [c for c in conditions.split(",") if c]
    unknown = sorted(set(wanted) - set(ALL_CONDITIONS))
    if unknown:
        raise click.BadParameter(f"unknown condition {unknown[0]!r} (known: {', '.join(ALL_CONDITIONS)})")
    write_report(out, "monitor", run(corpus, noise_dir, rir_dir, wanted, hours=hours, seed=seed, jobs=jobs,
                                     songs=songs, follow=follow,
                                     file_format=None if file_format == "none" else file_format), markdown)


@main.command()
@click.option("--db", required=True, type=click.Path(exists=True, dir_okay=False), help="An lmprint index.")
@click.option("--runs", type=click.IntRange(1), default=7, show_default=True)
@click.argument("clip", type=click.Path(exists=True, dir_okay=False))
def startup(db, runs, clip):
    """Cold-start wall time of `lmprint match CLIP`, each run a fresh process: a JSON object.

    It holds the median wall time, the process's peak memory, the heavy modules the query path imported (numba,
    scipy, torch, sqlite_utils: none, as it should be) and the match."""
    import json

    from .startup import measure

    click.echo(json.dumps(measure(db, clip, runs)))


@main.command(name="serve")
@click.option("--out", required=True, type=click.Path(file_okay=False))
@click.option("--clients", type=click.IntRange(1), default=16, show_default=True)
@click.option("--requests", type=click.IntRange(1), default=200, show_default=True, help="Per client.")
@click.option("--workers", type=click.IntRange(1), default=2, show_default=True)
@click.option("--queue", type=click.IntRange(0), default=14, show_default=True)
def serve_load(out, clients, requests, workers, queue):
    """`lmprint serve` under load on loopback: latency, statuses, errors and the server's memory."""
    from .serve_load import load_test, markdown

    write_report(out, "serve", load_test(clients, requests, workers, queue), markdown)


@main.command(name="search-speed")
@click.option("--sizes", default="100000,1000000", show_default=True, callback=_sizes, help="Songs (10 codes each).")
def search_speed(sizes):
    """MERT Hamming search time per query song at each size, and k-means / PCA costs: a JSON object a line."""
    import json

    from .search_speed import measure

    for row in measure(sizes):
        click.echo(json.dumps(row))


@main.command(name="mert-speed")
@click.option("--config", "config_path", default=None, help="A MERT config.json (default: MERT-v1-95M's architecture).")
@click.option("--batches", default="1,4,8", show_default=True, callback=_sizes,
              help="Batch sizes; on a GPU try 1,2,4,...,256.")
@click.option("--device", default=None, help="cuda or cpu (default: cuda if present).")
def mert_speed(config_path, batches, device):
    """Windows/s of the full-size MERT architecture (random weights), fp32 and bf16 on a GPU."""
    from .mert_speed import main_rows

    main_rows(config_path, batches, device)


if __name__ == "__main__":
    main()
