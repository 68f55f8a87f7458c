"""Files on disk: finding audio files under folders, and the content hash that tells one file's bytes from
another's. Both engines add songs through these."""

from __future__ import annotations

import os
import stat
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple, TypeVar

from .errors import AudioError, os_reason, reading_file

T = TypeVar("T")

AUDIO_EXTENSIONS = frozenset(
    ".wav .wave .flac .ogg .oga .opus .mp3 .m4a .m4b .mp4 .mkv .aac .wma .aif .aiff .aifc .mka .webm .ape .wv .mpc "
    ".au .caf .ac3 .mp2 .spx .3gp .3g2 .amr .tta .dsf .eac3 .dts".split())
"""Files with these extensions are picked up when a folder is walked (a phone's recordings among them: `.3gp`,
`.amr`, `.m4a`). Files named explicitly are always tried."""

AUDIO_DEMUXERS = ("wav,w64,flac,ogg,mp3,mov,aac,asf,aiff,matroska,ape,wv,mpc,mpc8,tta,au,caf,ac3,eac3,dts,amr,dsf,"
                  "avi,flv,mpegts,mpeg")
"""FFmpeg's demuxers a file may be opened with (`format_whitelist`): audio containers and the video ones that carry
audio. Playlists and manifests (HLS, DASH, concat lists) are not among them: they make FFmpeg open the files they
name, and an upload to `lmprint serve` could name the server's own files, or a live playlist that never ends."""

READ_BLOCK_BYTES = 1 << 20
"""Bytes read at a time when hashing a file's content."""


def find_audio_files(paths: Iterable[str | os.PathLike]) -> Iterator[tuple[str, str | None]]:
    """(absolute path, error or None) for each file named or found under a named folder, recursively.

    Symlinked folders are followed once each; a symlink loop is never entered twice, and a link to a folder that
    holds it (`loop -> ..`) not at all: it would walk everything above. Links met in a walk, and folders named
    through a link into another folder named, are followed after everything else named is walked, so a file
    reached both ways is found first at its own path, which outlives the link (a "favourites" link removed, the
    song's path is still there). Hidden files and folders (a name starting with one dot: `._song.mp3`, the
    resource forks a Mac copies along, `.Trash`; "...Ready for It" is a title) are passed over; named explicitly,
    they are tried. Folder errors (unreadable, missing) are reported as errors against that path.
    """
    if isinstance(paths, (str, os.PathLike)):
        raise TypeError("find_audio_files takes a list of paths, not one path")
    seen_dirs: set[tuple[int, int]] = set()
    links: deque[str] = deque()  # links met in the walks, followed last
    paths = list(paths)
    folders = {folder: _Named.of(folder) for folder in (os.path.abspath(given) for given in paths if os.fspath(given))
               if os.path.isdir(folder)}
    for given in paths:
        if not os.fspath(given):  # "" names no file (os.path.abspath would make it the current folder)
            yield "", "no such file"
            continue
        path = os.path.abspath(given)
        if os.path.isdir(path) and _through_a_link_into(path, folders):  # as a link met in a walk
            links.append(path)
        elif os.path.isdir(path):
            yield from _walk(path, seen_dirs, links)
        elif os.path.lexists(path) and not os.path.exists(path):
            yield path, "broken symlink"
        else:
            yield path, _missing(path)
    while links:
        link = links.popleft()
        if os.path.isdir(link):
            yield from _walk(link, seen_dirs, links)
        else:
            yield link, _file_error(link)


def _walk(top: str, seen_dirs: set[tuple[int, int]], links: deque[str]) -> Iterator[tuple[str, str | None]]:
    """What `find_audio_files` finds under `top`, leaving the links it meets (to folders and to audio files) in
    `links`."""
    try:
        info = os.stat(top)
    except OSError as error:
        yield top, os_reason(error)
        return
    key = (info.st_dev, info.st_ino)
    if key in seen_dirs:
        return
    seen_dirs.add(key)
    try:
        entries = sorted(os.scandir(top), key=lambda entry: entry.name)
    except OSError as error:
        yield top, f"cannot read folder: {os_reason(error)}"
        return
    for entry in entries:
        if entry.name.startswith(".") and not entry.name.startswith(".."):  # "...Ready for It.mp3" is music
            continue
        try:
            is_dir = entry.is_dir(follow_symlinks=True)
        except OSError:
            is_dir = False
        if is_dir:
            if not entry.is_symlink():
                yield from _walk(entry.path, seen_dirs, links)
            elif not _holds(os.path.realpath(entry.path), os.path.realpath(top)):  # not a link up its own tree
                links.append(entry.path)
        elif os.path.splitext(entry.name)[1].lower() in AUDIO_EXTENSIONS:
            if entry.is_symlink():
                links.append(entry.path)
            else:
                yield entry.path, None if _is_regular_file(entry) else NOT_REGULAR


class _Named(NamedTuple):
    """A folder named, with its real path and how many of its path's components are symbolic links."""

    path: str
    real: str
    links: int

    @classmethod
    def of(cls, path: str) -> _Named:
        parts = path.split(os.sep)
        return cls(path, os.path.realpath(path),
                   sum(os.path.islink(os.sep.join(parts[:i])) for i in range(2, len(parts) + 1)))


def _through_a_link_into(folder: str, named: dict[str, _Named]) -> bool:
    """Whether `folder` reaches into another of the `named` folders (by path) through more links than that one does:
    its real path lies within that one's, and more of its path's components are links (a library under a linked
    home, whose every path passes one link, is walked as named). Each folder's real path and links are read once,
    not once per pair: `add ~/Music/*` may name hundreds. A folder made since they were read is read now."""
    this = named.get(folder) or _Named.of(folder)
    return any(_holds(other.real, this.real) and other.links < this.links
               for other in named.values() if other.path != folder)


def _missing(path: str) -> str | None:
    """Why a path named is no file to read ("no such file", "file name too long", ...), or None."""
    try:
        os.stat(path)
    except FileNotFoundError:
        return "no such file"
    except OSError as error:  # a name too long, a folder in the path one cannot enter, a loop of links
        return os_reason(error)
    return None


def _file_error(path: str) -> str | None:
    """Why a file found in a walk cannot be read as a song, or None."""
    if not os.path.exists(path):
        return "broken symlink"
    return None if os.path.isfile(path) else NOT_REGULAR


NOT_REGULAR = "not a regular file (a pipe or a device)"
"""Why a pipe or a device is not read as a song: a pipe would block the open, a device never end. Named explicitly,
`match` reads a pipe (`lmprint match <(ffmpeg …)`); found in a folder, neither is tried."""


def _is_regular_file(entry: os.DirEntry) -> bool:
    try:
        return entry.is_file()
    except OSError:
        return True  # reading it will say why


def _holds(folder: str, path: str) -> bool:
    """Whether `folder` is `path` or one of the folders above it (both resolved)."""
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def content_sha1(path: str | os.PathLike) -> str:
    """SHA-1 of the file's bytes: the identity used to skip files that are already indexed.

    Raises AudioError, with the reason, for a file that cannot be read."""
    import hashlib  # here: OpenSSL's load is 5 ms of a cold `match`, which never hashes a file

    digest = hashlib.sha1()
    with reading_file(missing="no such file (vanished?)"):
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise AudioError(NOT_REGULAR)
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(READ_BLOCK_BYTES), b""):
                digest.update(block)
    return digest.hexdigest()


def file_size(path: str | os.PathLike) -> int:
    """A file's size in bytes; 0 when there is none (another process may delete it between two looks: a merge its
    segments, a writer closing its last connection its -wal file)."""
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0


def title_from_path(path: str) -> str:
    """A song's title when its file has no title tag: the file name without its extension."""
    return os.path.splitext(os.path.basename(path))[0]


def declared_duration_s(path: str | os.PathLike) -> float | None:
    """The audio duration a file's container declares, without decoding it; None when it declares none or is not
    a container PyAV opens (decoding will say why)."""
    return _from_container(path, lambda container: container.duration / 1e6 if container.duration else None)


def decoded_duration_s(path: str | os.PathLike, max_s: float) -> float:
    """How long a file's audio decodes to, read no further than just past `max_s` and keeping no samples: what its
    container declares may be nothing (a FLAC whose sample count is 0) or too little. A packet that does not
    decode is passed over, as decoding does; 0 for a file PyAV does not open (decoding will say why)."""
    def heard_s(container) -> float:
        stream, heard = container.streams.audio[0], 0.0
        for packet in container.demux(stream):
            try:
                frames = packet.decode()
            except Exception:  # noqa: BLE001 - a damaged packet, whatever FFmpeg calls it
                continue
            heard += sum(frame.samples / frame.sample_rate for frame in frames if frame.sample_rate)
            if heard > max_s:
                break
        return heard
    return _from_container(path, heard_s) or 0.0


DEMUXER_EXTENSIONS = {"asf": "wma"}
"""The extension of an audio file FFmpeg's demuxer reads, where the demuxer lists none (those that know a file by
its content alone: wav, aiff, asf, ...) and its name is not that extension."""

PREFERRED_EXTENSIONS = (".m4a", ".mp3", ".wma", ".mka", ".aiff", ".ape")
"""Which of a container's extensions names its file, where FFmpeg's demuxer has several (mov: .mp4, .m4a, ...)."""


def audio_extension(path: str | os.PathLike) -> str | None:
    """The extension (".flac", ".m4a", ...) that names the audio container a file holds, found by opening it:
    what a file that came without a name needs for a walk of its folder to pick it up. None when it is not a
    container PyAV opens."""
    extensions = _from_container(path, lambda container: {
        f".{DEMUXER_EXTENSIONS.get(name, name)}"
        for name in container.format.extensions or container.format.name.split(",")})
    named = (extensions or set()) & AUDIO_EXTENSIONS
    return next((extension for extension in PREFERRED_EXTENSIONS if extension in named), min(named, default=None))


def _from_container(path: str | os.PathLike, read: Callable[[Any], T]) -> T | None:
    """`read(container)` of the file's container, opened without decoding, with audio demuxers only; None when it
    is not a container PyAV opens (decoding will say why, in one line)."""
    import av

    try:
        with av.open(str(path), metadata_errors="ignore",  # a badly encoded tag hides nothing read here
                     options={"format_whitelist": AUDIO_DEMUXERS}) as container:
            return read(container)
    except Exception:  # noqa: BLE001 - whatever FFmpeg makes of it
        return None


def holds_content(path: str, sha1: str) -> bool:
    """Whether the file at `path` holds exactly the content hashed as `sha1` (False when gone or unreadable): a
    copy recorded by `add` may have been replaced since, or a song's file overwritten."""
    try:
        return content_sha1(path) == sha1
    except AudioError:
        return False


def unstorable_name(path: str) -> str | None:
    """Why an index cannot record this path, or None: a name with bytes that are not UTF-8 (a file copied from an
    old system) cannot be stored as text. `match` reads such a file; `add` refuses it in one line."""
    try:
        path.encode()
    except UnicodeEncodeError:
        return "its name is not valid UTF-8: rename it to add it"
    return None
