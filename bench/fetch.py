"""`bench corpus`: the public benchmark corpus, fetched from Debian's package archive.

Music: the soundtracks of free games, real recordings in several genres (`MUSIC_PACKAGES`). Noise: ambient
recordings from free games (rain, wind, water, forest, fire; `NOISE_PACKAGES`), and multi-talker babble made with
espeak-ng. Packages are downloaded with `apt-get download` (nothing is installed), unpacked with `dpkg -x`, and
their music copied under stable names, with a `manifest.tsv` giving each file's package, duration, licence and
SHA-1. Known variants and near-duplicates of other tracks are left out: a clip of one would rightly match the
other. Needs apt-get, dpkg, espeak-ng and sox (Debian); `scripts/get-corpus.sh` installs them.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

MIN_DURATION_S = 20.0
"""Tracks shorter than this are jingles, not songs: skipped."""


@dataclass(frozen=True)
class Package:
    """Which files of a Debian package to take."""

    name: str
    music: str
    """Regular expression of the wanted files' paths inside the package."""
    exclude: str = r"^$"
    """Regular expression of files to leave out (variants and near-duplicates of other tracks)."""
    fallback_licence: str = "see debian/copyright"
    """The licence to record when the package's copyright file is not machine-readable."""


MUSIC_PACKAGES = (
    Package("wesnoth-1.16-music", r"/data/core/music/[^/]+\.ogg$", fallback_licence="GPL-2+"),
    Package("supertux-data", r"/supertux2/music/.+\.ogg$"),
    Package("hedgewars-data", r"/Data/Music/[^/]+\.ogg$"),
    Package("supertuxkart-data", r"/data/music/[^/]+\.ogg$", exclude=r"(_fast|/farm_f)\.ogg$"),  # tempo-up variants
    Package("warmux-data", r"/warmux/music/.+\.ogg$", exclude=r"Apnee2\.ogg$", fallback_licence="GPL-2+"),  # = Apnee
    Package("xmoto-data", r"/Textures/Musics/[^/]+\.ogg$"),
    Package("extremetuxracer-data", r"/etr/music/[^/]+\.ogg$"),
    Package("lincity-ng-data", r"/music/.+\.ogg$"),
)
"""The public corpus's music: 167 tracks, about 7 hours."""

NOISE_PACKAGES = (
    Package("megaglest-data", r"/tilesets/[^/]+/sounds/(day|night|rain|wind|desertday|nightime|sunny_day|hell)\.ogg$",
            fallback_licence="CC-BY-SA-3.0"),
    Package("flare-game", r"/soundfx/environment/[^/]+_loop\.ogg$|/soundfx/environment/rain\.ogg$",
            fallback_licence="CC-BY-SA-3.0"),
    Package("minetest-data", r"/env_sounds/sounds/[^/]+\.ogg$", fallback_licence="CC-BY-SA-3.0/CC0 (see copyright)"),
)
"""Ambient recordings: rain, wind, water, forest by day and night, fire."""

BABBLE_VOICES = ("en-us+m1", "en-gb+f2", "de+m3", "fr+f1", "es+m4", "it+f3", "en-us+m7", "nl+f4", "pt+m2", "pl+f1",
                 "sv+m5", "en-gb+m6")
BABBLE_TEXT = "/usr/share/common-licenses/GPL-3"
"""What the voices read (any long text works; this one is on every Debian system)."""
BABBLE_FILES = 10
BABBLE_RATE_HZ = 22050
BABBLE_S = 60


def fetch_corpus(out: str | os.PathLike, music: bool = True, noise: bool = True, packages: tuple[str, ...] = (),
                 log=print) -> None:
    """Fetch the music into OUT/music and the noise into OUT/noise (each with a manifest); `.debs` are kept in
    OUT/.debs, so a second run downloads nothing. `packages` limits the music to those packages."""
    out = Path(out)
    cache = out / ".debs"
    cache.mkdir(parents=True, exist_ok=True)
    unknown = set(packages) - {p.name for p in MUSIC_PACKAGES}
    if unknown:
        raise ValueError(f"unknown music package {sorted(unknown)[0]!r} (known: "
                         f"{', '.join(p.name for p in MUSIC_PACKAGES)})")
    if music:
        rows = [_MANIFEST_HEADER]
        for package in MUSIC_PACKAGES:
            if packages and package.name not in packages:
                continue
            rows += _take_music(package, cache, out / "music", log)
        (out / "music" / "manifest.tsv").write_text("".join(rows))
        log(f"music: {len(rows) - 1} tracks in {out / 'music'}")
    if noise:
        rows = ["path\tpackage\tduration_s\tlicense\tkind\n"]
        for package in NOISE_PACKAGES:
            rows += _take_noise(package, cache, out / "noise", log)
        rows += _make_babble(out / "noise" / "babble", log)
        (out / "noise" / "noise_manifest.tsv").write_text("".join(rows))
        log(f"noise: {len(rows) - 1} files in {out / 'noise'}")


_MANIFEST_HEADER = "path\tpackage\tduration_s\tlicense\tversion\tsource_path\tcodec\tsample_rate\tchannels\tsha1\n"


def _download(package: str, cache: Path) -> Path:
    """The package's .deb in `cache`, downloaded with `apt-get download` if it is not there yet."""
    found = sorted(cache.glob(f"{package}_*.deb"))
    if found:
        return found[0]
    if subprocess.run(["apt-cache", "show", package], capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], check=True)
    done = subprocess.run(["apt-get", "download", package], cwd=cache, capture_output=True, text=True)
    found = sorted(cache.glob(f"{package}_*.deb"))
    if not found:
        raise RuntimeError(f"apt-get download {package} failed: {done.stderr.strip()}")
    return found[0]


def _unpacked(package: Package, cache: Path, work: Path) -> tuple[Path, str, list[str]]:
    """(unpacked root, package version, wanted files relative to the root, in byte order)."""
    deb = _download(package.name, cache)
    version = subprocess.run(["dpkg-deb", "-f", str(deb), "Version"], capture_output=True, text=True,
                             check=True).stdout.strip()
    root = work / package.name
    subprocess.run(["dpkg", "-x", str(deb), str(root)], check=True)
    wanted, unwanted = re.compile(package.music), re.compile(package.exclude)
    files = sorted((str(path.relative_to(root)) for path in root.rglob("*") if path.is_file()),
                   key=lambda name: name.encode())
    return root, version, [f for f in files if wanted.search(f) and not unwanted.search(f)]


def _sanitise(name: str) -> str:
    """A stable, portable file name: folders joined with `__`, other characters runs of `_`."""
    return re.sub(r"^_+", "", re.sub(r"[^A-Za-z0-9._-]+", "_", name.replace("/", "__")))


def _take_music(package: Package, cache: Path, out: Path, log) -> list[str]:
    """Copy a package's music into OUT/<package>/ and return its manifest rows."""
    with tempfile.TemporaryDirectory(prefix="lmprint-corpus-") as work:
        root, version, files = _unpacked(package, cache, Path(work))
        if not files:
            log(f"{package.name}: no music files matched")
            return []
        prefix = os.path.commonpath([os.path.dirname(f) for f in files]) + "/"
        copyright_file = root / "usr" / "share" / "doc" / package.name / "copyright"
        dest = out / package.name
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir(parents=True)
        used: set[str] = set()
        rows, skipped = [], 0
        for source in files:
            relative = source[len(prefix):] if source.startswith(prefix) else source
            base, extension = os.path.splitext(relative)
            name = f"{_sanitise(base)}{extension}"
            if name in used:
                name = f"{_sanitise(base)}-{hashlib.sha1(source.encode()).hexdigest()[:8]}{extension}"
            used.add(name)
            target = dest / name
            shutil.copyfile(root / source, target)
            duration_s, codec, rate, channels = _probe(target)
            if duration_s < MIN_DURATION_S:
                target.unlink()
                skipped += 1
                continue
            licence = _licence_of(copyright_file, source, package.fallback_licence)
            sha1 = hashlib.sha1(target.read_bytes()).hexdigest()
            rows.append(f"{package.name}/{name}\t{package.name}\t{duration_s:.3f}\t{licence}\t{version}\t{source}\t"
                        f"{codec}\t{rate}\t{channels}\t{sha1}\n")
        if copyright_file.exists():
            shutil.copyfile(copyright_file, dest / "COPYRIGHT.debian")
    log(f"{package.name} {version}: {len(rows)} tracks (skipped {skipped} under {MIN_DURATION_S:g} s)")
    return rows


def _take_noise(package: Package, cache: Path, out: Path, log) -> list[str]:
    """Copy a package's ambient recordings into OUT/<package>/ (each distinct file once) and return manifest rows."""
    with tempfile.TemporaryDirectory(prefix="lmprint-noise-") as work:
        root, _, files = _unpacked(package, cache, Path(work))
        dest = out / package.name
        dest.mkdir(parents=True, exist_ok=True)
        seen: set[str] = set()
        rows = []
        for source in files:
            sha1 = hashlib.sha1((root / source).read_bytes()).hexdigest()
            if sha1 in seen:  # megaglest reuses files across tilesets
                continue
            seen.add(sha1)
            name = re.sub(r"[^A-Za-z0-9._-]+", "_",
                          re.sub(r".*/(tilesets|environment|sounds|ambient)/", "", source).replace("/", "__"))
            shutil.copyfile(root / source, dest / name)
            rows.append(f"{package.name}/{name}\t{package.name}\t{_probe(dest / name)[0]:.3f}\t"
                        f"{package.fallback_licence}\tambient\n")
    log(f"{package.name}: {len(rows)} ambient recordings")
    return rows


def _make_babble(out: Path, log) -> list[str]:
    """BABBLE_FILES files of 4–9 voices reading at once, mixed to one channel (espeak-ng and sox; sox's -R seeds
    its dither, so two runs write the same files)."""
    out.mkdir(parents=True, exist_ok=True)
    lines = Path(BABBLE_TEXT).read_text().splitlines(keepends=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="lmprint-babble-") as work:
        for b in range(1, BABBLE_FILES + 1):
            talkers = 4 + b % 6
            parts = []
            for j in range(1, talkers + 1):
                voice = BABBLE_VOICES[(b * 7 + j * 5) % len(BABBLE_VOICES)]
                start = (b * 131 + j * 57) % 600 + 1
                text = "".join(lines[start - 1:start + 40]).replace("\n", " ")
                part = os.path.join(work, f"t{j}.wav")
                subprocess.run(["espeak-ng", "-v", voice, "-s", str(140 + (b * j) % 60), "-p",
                                str(25 + (b + j * 13) % 50), "-w", part, "--stdin"], input=text.encode(), check=True)
                parts.append(part)
            target = out / f"babble_{b:02d}_{talkers}talkers.flac"
            subprocess.run(["sox", "-R", "-m", *parts, "-r", str(BABBLE_RATE_HZ), "-c", "1", str(target), "trim", "0",
                            str(BABBLE_S), "norm", "-3"], check=True)
            rows.append(f"babble/{target.name}\tespeak-ng\t{_probe(target)[0]:.3f}\t"
                        "generated (espeak-ng GPL-3 tool; text GPL-3)\tbabble\n")
    log(f"babble: {len(rows)} files")
    return rows


def _probe(path: Path) -> tuple[float, str, int, int]:
    """(duration in seconds as the container states it, codec, sample rate, channels) of the first audio stream."""
    import av

    with av.open(str(path), metadata_errors="ignore") as container:
        stream = container.streams.audio[0]
        return ((container.duration or 0) / 1e6, stream.codec_context.name, stream.codec_context.sample_rate,
                stream.codec_context.channels)


def _licence_of(copyright_file: Path, installed_path: str, fallback: str) -> str:
    """The licence of a file from its package's machine-readable copyright file (DEP-5): the last stanza whose
    `Files:` patterns match it. Source-tree paths differ from installed ones (data/music/x is installed as
    usr/share/games/g/music/x), so each pattern is also tried with leading folders dropped."""
    try:
        text = copyright_file.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return fallback
    if not text.startswith("Format:"):
        return fallback
    best = None
    for paragraph in re.split(r"\n\s*\n", text):
        files = re.search(r"^Files:(.*(?:\n[ \t].*)*)", paragraph, re.M)
        licence = re.search(r"^License:[ \t]*(.*)", paragraph, re.M)
        if not files or not licence:
            continue
        for pattern in files.group(1).split():
            parts = pattern.split("/")
            alternatives = [pattern] + ["/".join(parts[k:]) for k in range(1, len(parts) - 1)]
            if any(fnmatch.fnmatchcase(installed_path, a) or fnmatch.fnmatchcase(installed_path, "*/" + a)
                   for a in alternatives):
                best = licence.group(1).strip() or best
    return best or fallback


if __name__ == "__main__":
    fetch_corpus(sys.argv[1])
