"""`lmprint serve`: the index over HTTP, and a page that names what the microphone hears.

- `POST /match`: an audio file in any format (the request's body, or a form's `file` field) → the JSON of
  `lmprint match --json`.
- `GET /songs`, `GET /stats`, `GET /health`.
- `WebSocket /listen`: live audio in (a JSON hello `{"sample_rate": HZ}`, then binary chunks of mono float32
  little-endian samples), segments out as the streaming identifier (`lmprint.monitor`) confirms and closes them:
  `{"event": "listening"}` once, then `{"event": "open" | "closed", "title": ..., "song_offset_s": ...,
  "heard_s": ...}`, `heard_s` being the seconds of audio received when the event was sent. A server that stops
  closes every stream (uvicorn's 1012) with no closed event: the song open then ends where the audio sent ends.
- `GET /`: the page (`static/listen.html`), which streams the microphone to `/listen`.
- `POST /songs`, only with `allow_add` and the token: an audio file to index.

The index is opened once per worker thread, so a query pays no start-up. Work is bounded: `workers` queries run
at once and `queue` more may be read or wait, so that uploads held in memory are bounded too; a request beyond
that gets 503 with `Retry-After` (and so does one that finds the index locked by a writer for longer than its busy
timeout), an upload over the size or duration cap 413, a client that takes longer than `read_timeout_s` to send
its upload 408, a bad upload a 4xx JSON error. Starlette serves it, uvicorn runs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import hmac
import logging
import os
import re
import stat
import tempfile
import threading
import time
import unicodedata
from collections.abc import Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np

from .errors import ChangedWhileRead, IndexFileError, IndexLocked, LmprintError, ModelError, os_reason
from .files import AUDIO_EXTENSIONS, audio_extension, declared_duration_s, decoded_duration_s
from .method import Method
from .monitor import Monitor, MonitorSettings, Segment
from .results import Outcome
from .samples import finite_samples


def _capped(request, max_bytes: int):
    """`request` with its body read through a count that raises `TooLarge` past `max_bytes`: a form's file part
    is spooled whole before its size is known, and a declared Content-Length need not be the body's length (a
    chunked body's framing wins)."""
    from starlette.requests import Request

    received = 0

    async def receive():
        nonlocal received
        message = await request.receive()
        received += len(message.get("body", b""))
        if received > max_bytes:
            raise TooLarge
        return message

    return Request(request.scope, receive)


INDEX_BUSY = (IndexLocked, ChangedWhileRead)
"""The index's errors that pass: a writer holds it (an `add` of a large batch, a merge), or another process
changed it under a read-only server. A request gets 503 with `Retry-After`, a listener close code 1013: ask again."""

SERVER_FAULTS = (IndexFileError, ModelError)
"""The server's own errors, no fault of the client's: its index damaged or gone, or a MERT model that does not fit
the index. A request gets 500, a listener close code 1011."""

MAX_CHUNK_S = 4.0
"""`/listen` refuses a message of more audio than this (the page sends half a second)."""
MAX_AHEAD_S = 20.0
"""...and makes a client wait when it sends audio this far ahead of real time: one stream cannot take the
workers away from everyone else's queries."""

MAX_OPEN_CONNECTIONS = 512
"""Connections one server process holds open at once, idle keep-alive ones included; past it uvicorn itself
answers 503 (plain text, no `Retry-After`). Uploads held in memory are bounded by `ServeSettings.queue`, not by
this, so it can be large: an idle connection costs a few kilobytes, and a few clients keeping theirs open must not
shut everyone else out. One that sends no request for `read_timeout_s` is closed (`lmprint.connections`)."""

STORE_ATTEMPTS = 5
"""Tries to store an upload whose file other requests delete and write again meanwhile, before a 507."""
LOCK_POLL_S = 0.005
"""How often a request waiting for an upload's file that another request is deleting tries its lock again."""

SHUTDOWN_GRACE_S = 5.0
"""After Ctrl-C, requests in flight have this long to finish (a query takes milliseconds); one still running then,
such as an upload still arriving, is cancelled and answered 503, and the server stops, rather than waiting out
its read timeout."""
ANSWER_GRACE_S = 1.0
"""...and the cancelled requests have this long to send their 503s before the application shuts down: a worker
process of several (`--workers`) is ended as soon as its application has."""

LIVE = MonitorSettings(window_s=5.0, hop_s=1.0, idle_hop_s=1.0)
"""How `/listen` follows a microphone: a 5 s look every second, silence and unknown music included, so that two
agreeing looks name a song about 6 s after it starts (a file's monitor looks every 2 s at 6 s, every 4 s while it
hears nothing, for speed)."""


@dataclass(frozen=True)
class ServeSettings:
    """Limits of one server process; the defaults suit a small machine serving a household (`lmprint serve` starts
    `--workers` processes of one worker each, each with its own `--queue`: 2 and 14 by default)."""

    workers: int = 1
    """Queries answered at once by one server process, each in a thread with its own open index. Python runs one
    thread at a time, so `lmprint serve --workers N` starts N processes of one worker each instead."""

    queue: int = 7
    """Uploads that may be read, or wait for a worker of the process, while the workers are busy; one more gets 503
    with `Retry-After`. At most `workers + queue` uploads of `max_upload_bytes` are held at once."""

    max_upload_bytes: int = 32 << 20
    """An upload larger than this is refused with 413, before it is read whole."""

    max_upload_s: float = 900.0
    """An upload whose container declares more audio than this is refused with 413 (only its first
    `max_query_s` would be matched anyway)."""

    read_timeout_s: float = 30.0
    """A client that takes longer than this to send its upload gets 408."""

    max_listeners: int = 8
    """Microphone streams followed at once; one more is closed with code 1013 (try again later)."""

    allow_add: bool = False
    """Whether `POST /songs` may add to the index (with `token`)."""

    token: str | None = None
    """The bearer token `POST /songs` needs."""


class Busy(Exception):
    """Every worker is busy and the queue is full."""


class TooLarge(Exception):
    """The upload's bytes, as read, went over the size cap."""


class Workers:
    """A pool of `workers` threads of its own, each with its own open index (SQLite connections stay in their
    thread): no other thread ever opens one, whatever else the server runs in threads."""

    def __init__(self, open_method: Callable[[], Method], settings: ServeSettings):
        self._open = open_method
        self._threads = settings.workers
        self._local = threading.local()
        self._pool = self._new_pool()
        self._capacity = settings.workers + settings.queue
        self._admitted = 0  # only touched on the event loop's thread
        self._opened: list[Method] = []
        self._path: str | os.PathLike | None = None  # the index file's, once opened

    def method(self) -> Method:
        """This thread's index, opened on first use, and again once its file was replaced (deleted and built anew,
        as a damaged index is: a connection to the old file would answer from it for as long as it is open)."""
        method = getattr(self._local, "method", None)
        if method is not None and _file_identity(method.catalogue.path) != self._local.file:
            self._opened.remove(method)
            self._local.method = None
            method.close()
            method = None
        return method if method is not None else self._open_here()

    def _open_here(self) -> Method:
        """Open this thread's index, noting which file it opened: the file's identity is read before it opens
        (once its path is known), so that a file replaced in between is seen as replaced, and opened again."""
        known_path = self._path
        file = None if known_path is None else _file_identity(known_path)
        method = self._local.method = self._open()
        self._opened.append(method)
        self._path = method.catalogue.path
        self._local.file = file if known_path is not None else _file_identity(self._path)
        return method

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one of the `workers + queue` places from before an upload is read until it is answered: Busy when
        none is free, so that a full server neither reads nor buffers uploads it cannot answer."""
        if self._admitted >= self._capacity:
            raise Busy
        self._admitted += 1
        try:
            yield
        finally:
            self._admitted -= 1

    async def run(self, work: Callable[[Method], Any]) -> Any:
        """`work(index)` in a worker thread."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, lambda: work(self.method()))

    def close(self) -> None:
        """Stop the threads, once the work given to them is done, and close the indexes they opened. A new pool
        takes their place (its threads start with its first work): the application may be started again."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        for method in self._opened:
            method.close()
        self._opened.clear()
        self._local = threading.local()
        self._pool = self._new_pool()

    def _new_pool(self):
        from concurrent.futures import ThreadPoolExecutor

        return ThreadPoolExecutor(self._threads, thread_name_prefix="lmprint-worker")


class Upload:
    """An upload's file while a request uses it (a context manager). Two uploads of the same bytes share one file
    (a folder per content; a client's retry, or two clients), so each request holds the file with a shared
    `flock` while it uses it, in whichever server process it runs. A request that finds the index did not take the
    file deletes it only while no other request holds it (`discard`), so never under one indexing it; one still
    holding it then decides for itself. A worker thread using the file holds it too (`in_use`): a request cancelled
    as the server stops lets go of it only once its worker is done."""

    def __init__(self, path: str, name: str, descriptor: int, written_here: bool = False):
        self.path, self.name = path, name
        self.written_here = written_here  # this request wrote the file: no song of it was stored before
        self._descriptor: int | None = descriptor
        self._closing = threading.Lock()  # the event loop and a worker thread may both let go of it
        self._users = 0  # worker threads using the file now
        self._let_go = False  # the request is done with it: the last worker closes it

    @classmethod
    async def store(cls, data: bytes, folder: str, base: str, name: str, kept: bool) -> Upload:
        """Write `data` as `base` in `folder` (made if need be), or take the file there already, which holds the
        same bytes and is never rewritten (it may be being indexed), and hold it. A `kept` file whose `base` has
        no audio extension is given its container's, so that a walk of the folder finds it."""
        path: str | None = None
        partial: str | None = None
        try:
            for _ in range(STORE_ATTEMPTS):
                try:
                    os.makedirs(folder, exist_ok=True)
                    if partial is None or not os.path.exists(partial):  # first, or renamed into place and deleted
                        partial = _write_partial(folder, base, data)
                except FileNotFoundError:  # the folder, found empty, was deleted meanwhile by a request letting go
                    continue
                if path is None:
                    if kept and os.path.splitext(base)[1].lower() not in AUDIO_EXTENSIONS:
                        base += audio_extension(partial) or ""
                    path = os.path.join(folder, base)
                written = os.stat(partial)  # the file is this request's where the path names this one
                try:
                    os.link(partial, path)  # the file, unless one is there already: a rename would replace it
                except FileExistsError:
                    pass
                except OSError:  # a file system without hard links (FAT): a rename, where no file is there yet
                    if not os.path.exists(path):
                        os.replace(partial, path)
                try:
                    descriptor = os.open(path, os.O_RDWR)  # writable: an emulated flock (NFS) locks only so
                except FileNotFoundError:  # deleted since by a request that found the index did not take it
                    continue
                try:
                    await _shared_lock(descriptor)
                    if _still_names(path, descriptor):
                        return cls(path, name, descriptor, os.path.samestat(os.fstat(descriptor), written))
                except BaseException:
                    os.close(descriptor)
                    raise
                os.close(descriptor)  # deleted (and maybe written again) while this waited: once more
            raise OSError(f"{os.path.join(folder, base)} keeps being deleted and written again")
        finally:
            if partial is not None:
                _discard(partial)

    def discard(self, index: Method | None = None) -> None:
        """Delete the file, and its folder once that is empty, unless another request holds it or `index` names it
        (a song's file, or a copy's); then let go of it. The index is asked once this request holds the file alone,
        so that no other can index it between the answer and the deletion."""
        with self._closing:
            if self._descriptor is None:
                return
            try:
                fcntl.flock(self._descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                if _still_names(self.path, self._descriptor) and not (index is not None and
                                                                      _names_file(index, self.path)):
                    _discard(self.path)
            except OSError:  # another request holds it, and it is theirs to keep or delete; or no lock to be sure
                pass
            finally:
                self._close_descriptor()

    @contextmanager
    def in_use(self) -> Iterator[None]:
        """Hold the file while a worker thread reads it. LmprintError when the request has let go of it already (it
        was cancelled before its worker began)."""
        with self._closing:
            if self._descriptor is None:
                raise LmprintError("the request was cancelled (the server is stopping)")
            self._users += 1
        try:
            yield
        finally:
            with self._closing:
                self._users -= 1
                if self._let_go and not self._users:
                    self._close_descriptor()

    def close(self) -> None:
        """Let go of the file (and its lock), now or, while a worker thread uses it, when that is done."""
        with self._closing:
            self._let_go = True
            if not self._users:
                self._close_descriptor()

    def _close_descriptor(self) -> None:
        if self._descriptor is not None:
            os.close(self._descriptor)
            self._descriptor = None

    def __enter__(self) -> Upload:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Answering:
    """How many HTTP requests the application is answering: its `Counted` middleware keeps the count."""

    def __init__(self):
        self.count = 0  # only touched on the event loop's thread

    class Counted:
        """ASGI middleware counting the HTTP requests it passes on until each has been answered (or has failed)."""

        def __init__(self, app, answering: Answering):
            self.app, self.answering = app, answering

        async def __call__(self, scope, receive, send) -> None:
            if scope["type"] != "http":
                return await self.app(scope, receive, send)
            self.answering.count += 1
            try:
                await self.app(scope, receive, send)
            finally:
                self.answering.count -= 1


class _StoppingSaidPlainly(logging.Filter):
    """uvicorn's "Cancel N running task(s), timeout graceful shutdown exceeded", an ERROR that reads like a crash,
    said as what it is here: requests still running past the grace, each answered 503."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and record.msg.startswith("Cancel %s running task"):
            record.msg = f"stopping: %s request(s) still running after {SHUTDOWN_GRACE_S:g} s were answered 503"
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


class ThreadMethod:
    """A Method whose calls go to the calling thread's index: what a Monitor driven from worker threads uses."""

    def __init__(self, workers: Workers, sample_rate_hz: int):
        self._workers = workers
        self.sample_rate_hz = sample_rate_hz

    def match_samples(self, samples: np.ndarray):
        return self._workers.method().match_samples(samples)

    def follow(self, samples: np.ndarray, previous, offset_s: float, min_score: float = 0.0):
        return self._workers.method().follow(samples, previous, offset_s, min_score)

    def heard_span(self, samples: np.ndarray, previous, offset_s: float):
        return self._workers.method().heard_span(samples, previous, offset_s)


def create_app(open_method: Callable[[], Method], settings: ServeSettings | None = None,
               upload_dir: str | None = None):
    """The Starlette application over the index that `open_method` opens (called once per worker thread). Songs
    added through `POST /songs` are kept in `upload_dir` (default: `lmprint-uploads` beside the index)."""
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.middleware import Middleware
    from starlette.requests import ClientDisconnect, Request
    from starlette.responses import HTMLResponse, JSONResponse
    from starlette.routing import Route, WebSocketRoute
    from starlette.websockets import WebSocket, WebSocketDisconnect

    settings = settings or ServeSettings()
    server_log = logging.getLogger("uvicorn.error")
    if not any(isinstance(existing, _StoppingSaidPlainly) for existing in server_log.filters):
        server_log.addFilter(_StoppingSaidPlainly())
    # a malformed form is answered 400 with its reason; the form parser's own warnings would add a bare line each
    logging.getLogger("python_multipart").setLevel(logging.ERROR)
    if settings.allow_add and not settings.token:
        raise LmprintError("--allow-add needs a token (--token or $LMPRINT_TOKEN)")
    workers = Workers(open_method, settings)
    with open_method() as method:  # fail now, in one line, on a missing or damaged index
        sample_rate_hz = method.sample_rate_hz
        # absolute, as `add` records the files it indexes: an upload is told by the path the catalogue holds
        upload_dir = os.path.abspath(upload_dir or os.path.join(os.path.dirname(str(method.catalogue.path)),
                                                                "lmprint-uploads"))
        if settings.allow_add and method.catalogue.read_only:
            raise LmprintError(f"--allow-add: {method.catalogue.read_only_message()}")
    page = resources.files("lmprint").joinpath("static/listen.html").read_text()
    listeners = [0]

    def error(status: int, message: str, **headers: str) -> JSONResponse:
        """A JSON error body, `{"error": message}`."""
        return JSONResponse({"error": message}, status_code=status, headers=headers or None)

    def busy(message: str = "busy: every worker is taken and the queue is full") -> JSONResponse:
        return error(503, message, **{"Retry-After": "1"})

    def too_large() -> JSONResponse:
        return error(413, f"upload over {settings.max_upload_bytes / 2**20:g} MiB (lmprint serve --max-upload-mb)")

    async def refused(request: Request, response: JSONResponse) -> JSONResponse:
        """`response` to a request whose body is unread, once that body is read and thrown away (for at most
        `read_timeout_s`, holding no place in the queue): a client that writes its whole upload before reading the
        answer would otherwise meet the closed connection, a reset, rather than the answer. Nothing is kept in
        memory. A client that asked to hear first (`Expect: 100-continue`, as curl does for large bodies) has sent
        nothing, and is answered at once: reading would tell it to send."""
        if request.headers.get("expect", "").lower() == "100-continue":
            return response

        async def discard() -> None:
            async for _ in request.stream():
                pass
        try:
            await asyncio.wait_for(discard(), settings.read_timeout_s)
        except (TimeoutError, ClientDisconnect, asyncio.CancelledError):  # cancelled: the server is stopping, past
            pass  # its grace; the answer all the same
        return response

    async def guarded(work: Callable[[Method], Any]) -> Any:
        try:
            return JSONResponse(await workers.run(work))
        except INDEX_BUSY as failure:
            return busy(str(failure))
        except SERVER_FAULTS as failure:
            return error(500, str(failure))
        except LmprintError as failure:
            return error(422, str(failure))

    async def receive(request: Request, folder: str, kept: bool) -> Upload:
        """Write the request's audio (its body, or a form's `file`) to a file in `folder`, and hold it. A `kept`
        file without an audio extension (a raw body's) is given its container's."""
        declared = request.headers.get("content-length")
        request = _capped(request, settings.max_upload_bytes)
        name = "upload"
        if request.headers.get("content-type", "").lower().startswith("multipart/form-data"):  # any case
            if not (declared and declared.isdigit()):  # as documented; its bytes are counted all the same
                raise LmprintError("a form upload needs a Content-Length")
            async with request.form(max_files=1, max_fields=4, max_part_size=settings.max_upload_bytes) as form:
                part = form.get("file")
                if part is None:
                    raise LmprintError("the form has no `file` field")
                if isinstance(part, str):
                    raise LmprintError("the form's `file` field is text, not a file (curl: -F file=@PATH)")
                name, data = part.filename or name, await part.read()
        else:
            data = b"".join([chunk async for chunk in request.stream()])  # within the cap: `_capped` counts it
        if len(data) > settings.max_upload_bytes:
            raise TooLarge
        if not data:
            raise LmprintError("empty upload")
        # a folder per content: two uploads of one name never overwrite each other (nor replace each other's
        # song), and the file keeps its name (a song's title when it has no tag)
        return await Upload.store(data, os.path.join(folder, hashlib.sha1(data).hexdigest()[:16]),
                                  _safe_name(name), name, kept)

    async def with_upload(request: Request, folder: str, work: Callable[[Upload], Any], kept: bool = False):
        """Read the upload into `folder` within the caps and time limit, check its duration, then `work(upload)`.
        `kept`: the file outlives the request (`POST /songs`), and is named so that `add` finds it. An upload over
        the cap by its `Content-Length` is refused before it asks for a place: a full queue would tell it to come
        back, where no worker would take it."""
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > settings.max_upload_bytes:
            return await refused(request, too_large())
        try:
            with workers.slot():  # taken before the body is read, held until it is answered
                return await read_then(request, folder, work, kept)
        except Busy:
            return await refused(request, busy())
        except asyncio.CancelledError:  # the server is stopping, past its grace: an answer, not a traceback
            return busy("the server is stopping")

    async def read_then(request: Request, folder: str, work: Callable[[Upload], Any], kept: bool):
        try:
            upload = await asyncio.wait_for(receive(request, folder, kept), settings.read_timeout_s)
        except TooLarge:
            return too_large()
        except TimeoutError:
            return error(408, f"upload not received within {settings.read_timeout_s:g} s")
        except ClientDisconnect:  # gone before its upload was whole: no one reads the answer, and nothing is kept
            return error(400, "the client went away before its upload was whole")
        except LmprintError as failure:
            return error(400, str(failure))
        except OSError as failure:  # the upload folder: a full disk, no permission
            return error(507, f"cannot store the upload: {os_reason(failure)}")
        with upload:
            declared_s = declared_duration_s(upload.path)
            length = f"{declared_s:.0f} s" if declared_s is not None else ""
            if kept and (declared_s is None or declared_s <= settings.max_upload_s):
                # a length its header does not declare, or misstates: decoded as far as just past the cap
                declared_s = await asyncio.to_thread(decoded_duration_s, upload.path, settings.max_upload_s)
                length = f"over {settings.max_upload_s:g} s"
            if declared_s is not None and declared_s > settings.max_upload_s:
                if kept:  # not kept, unless it is an indexed song's file (uploaded when the cap was higher)
                    try:
                        await workers.run(upload.discard)
                    except (*INDEX_BUSY, *SERVER_FAULTS):  # the index cannot tell; a file written now is no song's
                        if upload.written_here:
                            upload.discard()
                else:
                    upload.discard()
                return error(413, f"upload of {length} of audio, over {settings.max_upload_s:g} s: " + (
                    "add a file this long with `lmprint add`" if kept
                    else "only a query's first seconds are matched, so send those (e.g. ffmpeg -t 30)"))
            return await work(upload)

    async def match(request: Request):
        with tempfile.TemporaryDirectory(prefix="lmprint-serve-") as folder:
            async def answer(upload: Upload):
                return await guarded(lambda method: method.answer(upload.path).to_dict(upload.name))
            return await with_upload(request, folder, answer)

    async def add(request: Request):
        if not settings.allow_add:
            return await refused(request, error(403, "this server is read-only (start it with --allow-add and a "
                                                     "token)"))
        scheme, _, given = request.headers.get("authorization", "").strip().partition(" ")
        # a header's bytes arrive as latin-1 text: compare bytes, so that a token of any characters can match
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode("latin-1", "replace"),
                                                                 (settings.token or "").strip().encode()):
            return await refused(request, error(401, "a valid token is needed: Authorization: Bearer TOKEN",
                                                **{"WWW-Authenticate": "Bearer"}))

        async def index(upload: Upload):
            def work(method: Method) -> dict:
                outcomes: list[Outcome] = []
                with upload.in_use():
                    try:
                        report = method.add([upload.path], on_outcome=outcomes.append)
                        if report.failed:
                            raise LmprintError(report.failed[0][1])
                    except LmprintError:  # kept only as an indexed song's file
                        upload.discard(method)
                        raise
                # skipped: its content was indexed already (a copy of an indexed file is recorded, and skipped too);
                # a warning: what `lmprint add` would print of it (an upload cut short, indexed as far as it goes)
                # the song it is indexed as: a MERT index's first upload is stored once its basis is fitted, after
                # its outcome is said, so it is read from the catalogue then
                song_id = next((o.song_id for o in outcomes if o.path == upload.path and o.song_id is not None),
                               None) or next((song.id for song in method.catalogue.songs_at(upload.path)), None)
                answer = {"added": report.added, "skipped": report.skipped + report.copies, "path": upload.path,
                          "song_id": song_id}
                warnings = [outcome.warning for outcome in outcomes if outcome.warning] + report.notes
                return {**answer, "warning": "; ".join(warnings)} if warnings else answer
            return await guarded(work)
        return await with_upload(request, upload_dir, index, kept=True)

    async def songs(request: Request):
        return await guarded(lambda method: method.catalogue.listed())

    async def stats(request: Request):
        return await guarded(lambda method: method.stats())

    async def health(request: Request):
        return await guarded(lambda method: {"status": "ok", "songs": method.catalogue.song_count()})

    async def home(request: Request):
        return HTMLResponse(page)

    async def listen_over_http(request: Request):
        return error(426, "/listen is a WebSocket: connect to it with ws:// (wss:// over HTTPS)", Upgrade="websocket")

    async def refuse(websocket: WebSocket, message: str, code: int = 1003) -> None:
        """Tell a listener what went wrong, and close: 1003 for what it sent, else the server's `code` (1013: try
        again later, 1011: the index cannot be read); unless it has gone already (its error is nobody's)."""
        with contextlib.suppress(WebSocketDisconnect):
            await websocket.send_json({"event": "error", "error": message})
            await websocket.close(code=code)

    async def listen(websocket: WebSocket):
        import soxr

        if listeners[0] >= settings.max_listeners:  # accepted first: a socket closed before is an HTTP 403
            with contextlib.suppress(WebSocketDisconnect):  # gone already: nobody to tell
                await websocket.accept()
                await websocket.close(code=1013, reason="too many listeners; try again later")
            return
        listeners[0] += 1
        try:
            await websocket.accept()
            try:
                hello = await asyncio.wait_for(websocket.receive_json(), settings.read_timeout_s)
                rate = int(hello["sample_rate"])
                if not 8000 <= rate <= 192000:
                    raise ValueError
            except WebSocketDisconnect:
                return
            except (TimeoutError, ValueError, KeyError, TypeError, OverflowError):
                await refuse(websocket, 'send {"sample_rate": HZ} first, HZ from 8000 to 192000')
                return
            resampler = soxr.ResampleStream(rate, sample_rate_hz, 1, dtype="float32")
            monitor = Monitor(ThreadMethod(workers, sample_rate_hz), LIVE)  # type: ignore[arg-type]
            try:
                await websocket.send_json({"event": "listening"})
            except WebSocketDisconnect:  # gone right after its hello
                return

            async def send(events: list[Segment]) -> None:
                for segment in events:
                    await websocket.send_json({"event": "open" if segment.open else "closed", **segment.to_dict(),
                                               "heard_s": round(monitor.heard_s, 2)})

            began = time.monotonic()
            try:
                while True:
                    try:  # a listener that sends nothing holds one of the few places: it is closed
                        data = await asyncio.wait_for(websocket.receive_bytes(), settings.read_timeout_s)
                    except TimeoutError:
                        raise LmprintError(f"no audio for {settings.read_timeout_s:g} s") from None
                    if len(data) > 4 * rate * MAX_CHUNK_S:
                        raise LmprintError(f"a chunk holds at most {MAX_CHUNK_S:g} s of audio")
                    if len(data) % 4:  # a sample cut in two: every sample after it would be read shifted
                        raise LmprintError("a chunk holds whole float32 samples (a multiple of 4 bytes)")
                    ahead_s = monitor.heard_s - (time.monotonic() - began) - MAX_AHEAD_S
                    if ahead_s > 0:  # a live stream arrives in real time; faster clients wait
                        await asyncio.sleep(ahead_s)
                    samples = np.frombuffer(data, "<f4")
                    chunk = resampler.resample_chunk(finite_samples(samples))

                    def look(_: Method, chunk: np.ndarray = chunk) -> list[Segment]:
                        return monitor.feed(chunk)
                    await send(await workers.run(look))
            except WebSocketDisconnect:
                return
            except INDEX_BUSY as failure:  # not the listener's fault
                await refuse(websocket, str(failure), code=1013)
            except SERVER_FAULTS as failure:
                await refuse(websocket, str(failure), code=1011)
            except (KeyError, LmprintError) as failure:  # a text frame mid-stream, an oversized chunk
                await refuse(websocket, str(failure) if isinstance(failure, LmprintError)
                             else "send audio as binary frames")
        finally:
            listeners[0] -= 1

    async def http_error(request: Request, failure: Exception):
        """Starlette's own refusals (no such route, a malformed form) as JSON too."""
        status = getattr(failure, "status_code", 400)
        # its headers too: a 405 says which methods the route allows (`Allow`)
        return error(status, str(getattr(failure, "detail", "")) or "bad request",
                     **(getattr(failure, "headers", None) or {}))

    async def internal_error(request: Request, failure: Exception):
        """A bug, in one line: never a traceback to the client."""
        return error(500, f"internal error: {type(failure).__name__}")

    answering = Answering()

    @asynccontextmanager
    async def lifespan(app):
        yield
        # past its grace uvicorn cancels the requests still running (each then answers 503) and shuts the
        # application down, and a worker process of several ends at once after: let those answers go out first
        loop = asyncio.get_running_loop()
        deadline = loop.time() + ANSWER_GRACE_S
        while answering.count and loop.time() < deadline:
            await asyncio.sleep(0.01)
        workers.close()

    routes = [Route("/", home), Route("/match", match, methods=["POST"]), Route("/songs", songs),
              Route("/songs", add, methods=["POST"]), Route("/stats", stats), Route("/health", health),
              WebSocketRoute("/listen", listen), Route("/listen", listen_over_http)]
    return Starlette(routes=routes, lifespan=lifespan, middleware=[Middleware(Answering.Counted, answering)],
                     exception_handlers={HTTPException: http_error, Exception: internal_error})


@dataclass(frozen=True)
class TLS:
    """The certificate (PEM) that HTTPS is served with, and its private key where it is not in the same file."""

    certfile: str
    keyfile: str | None = None

    @classmethod
    def of(cls, certfile: str | None, keyfile: str | None) -> TLS | None:
        """The pair given to `lmprint serve`, checked (one line says what is wrong), or None for plain HTTP."""
        import ssl

        if certfile is None:
            if keyfile is not None:
                raise LmprintError("--keyfile goes with --certfile")
            return None
        for path in (path for path in (certfile, keyfile) if path is not None):
            try:
                if not stat.S_ISREG(os.stat(path).st_mode):  # a pipe would wait for a writer
                    raise LmprintError(f"{path}: not a file")
                open(path, "rb").close()  # noqa: SIM115 - only whether it can be read
            except OSError as error:
                raise LmprintError(f"{path}: {os_reason(error)}") from None

        def no_passphrase() -> str:  # the server's worker processes start unattended: none could type it
            raise LmprintError(f"{keyfile or certfile}: the private key has a passphrase; serve needs it without "
                               "(openssl pkey -in KEY -out PLAIN_KEY)")
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(certfile, keyfile, password=no_passphrase)
        except ssl.SSLError:
            what = f"{certfile} and {keyfile}" if keyfile else certfile
            raise LmprintError(f"{what}: no PEM certificate and matching private key") from None
        return cls(certfile, keyfile)


def serve(app: str, host: str, port: int, processes: int, settings: ServeSettings, tls: TLS | None = None) -> None:
    """Run the server until interrupted: `processes` uvicorn workers, each importing the application factory
    `app` ("module:function", called with no arguments) and so opening the index itself; over HTTPS with `tls`."""
    import uvicorn

    from .connections import HeadDeadlineProtocol

    uvicorn.run(app, factory=True, host=host, port=port, workers=processes, log_level="warning",
                http=HeadDeadlineProtocol, timeout_keep_alive=max(1, round(settings.read_timeout_s)),
                limit_concurrency=MAX_OPEN_CONNECTIONS, timeout_graceful_shutdown=int(SHUTDOWN_GRACE_S),
                ssl_certfile=None if tls is None else tls.certfile, ssl_keyfile=None if tls is None else tls.keyfile)


def is_loopback(host: str) -> bool:
    """Whether `host` is this machine alone ("127.0.0.1", "localhost", "::1")."""
    import ipaddress

    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


RESOLVER_WAIT_S = 0.5
"""How long a server's start waits for this machine's name to resolve to its addresses: a resolver that does not
answer (a name missing from /etc/hosts, a DNS server out of reach) must not hold the start for its timeout."""


def urls_of(host: str, port: int, https: bool) -> list[str]:
    """Where a browser reaches a server listening on `host`: itself, or for every interface (0.0.0.0, ::) the
    addresses others reach this machine at, so that a phone on the network can be pointed at one."""
    import socket

    addresses = [host]
    if host in ("0.0.0.0", "::", ""):
        found: list[str] = []
        with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("192.0.2.1", 9))  # no packet is sent: the route picks the address a neighbour sees
            found.append(probe.getsockname()[0])
        found += _host_name_addresses(RESOLVER_WAIT_S)
        addresses = [address for address in dict.fromkeys(found) if not is_loopback(address)] or [host]
    scheme = "https" if https else "http"
    return [f"{scheme}://{f'[{address}]' if ':' in address else address}:{port}/" for address in addresses]


def _host_name_addresses(wait_s: float) -> list[str]:
    """The addresses this machine's name resolves to, or none if the resolver takes over `wait_s` (it answers
    in a thread left behind, which cannot be cancelled) or fails."""
    import socket
    import threading

    found: list[str] = []

    def resolve() -> None:
        with contextlib.suppress(OSError):
            found.extend(socket.gethostbyname_ex(socket.gethostname())[2])

    resolver = threading.Thread(target=resolve, name="resolve this host", daemon=True)
    resolver.start()
    resolver.join(wait_s)
    return [] if resolver.is_alive() else found


def check_can_listen(host: str, port: int) -> int:
    """Refuse, in one line, an address this machine cannot listen on (a port in use, a host it does not have),
    before the server says it is serving there. Returns the port: `port`, or for 0 a free one the system picks
    (the server then binds it a moment later: another process could take it first, as with any such probe)."""
    import socket

    try:
        family, kind, protocol, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, protocol) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: a closed port's
            probe.bind(address)  # lingering connections do not hold it
            return int(probe.getsockname()[1])
    except OSError as error:
        raise LmprintError(f"cannot listen on {host}:{port}: {os_reason(error)}") from None


def _names_file(method: Method, path: str) -> bool:
    """Whether the index names the file at `path` (a song's, or a copy's): an error after its song was stored must
    not delete it. True when the index cannot be read to tell."""
    try:
        return bool(method.catalogue.songs_at(path)) or method.catalogue.copy_at(path) is not None
    except LmprintError:
        return True


async def _shared_lock(descriptor: int) -> None:
    """`flock(LOCK_SH)` without holding up the event loop: a request deleting the file holds it exclusively while
    it asks the index whether it names it."""
    while True:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            await asyncio.sleep(LOCK_POLL_S)


def _write_partial(folder: str, base: str, data: bytes) -> str:
    """`data` in a new file of this request's own in `folder`, hidden from a walk of it; its path."""
    descriptor, partial = tempfile.mkstemp(prefix=f".{base}.", suffix=".part", dir=folder)
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
    except BaseException:
        _discard(partial)
        raise
    return partial


def _file_identity(path: str | os.PathLike) -> tuple[int, int] | None:
    """The file at `path` as (device, inode), or None where there is none."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino


def _still_names(path: str, descriptor: int) -> bool:
    """Whether `path` still names the file open as `descriptor`."""
    try:
        return os.path.samestat(os.fstat(descriptor), os.stat(path))
    except FileNotFoundError:
        return False


def _discard(path: str) -> None:
    """Delete an upload the index did not take, and its folder (one per content) once that is empty."""
    try:
        os.remove(path)
        os.rmdir(os.path.dirname(path))
    except OSError:  # gone already, or the folder holds the same content under another name
        pass


def _safe_name(name: str) -> str:
    """A client's file name as a safe base name, its letters kept in any script ("Café – Ñandú 日本.ogg", composed
    as NFC): path separators, control characters and what some file systems refuse (`<>:"|?*`) made `_`, no
    leading dot (a hidden file) or space, and at most `MAX_NAME_BYTES` of UTF-8, its extension kept."""
    base = unicodedata.normalize("NFC", name.replace("\\", "/").rsplit("/", 1)[-1])
    base = UNSAFE_IN_NAMES.sub("_", base.encode("utf-8", "ignore").decode("utf-8")).strip(" .")
    stem, extension = os.path.splitext(base)
    if len(extension.encode()) > MAX_NAME_BYTES // 4:  # no extension: a dot in a long title
        stem, extension = base, ""
    room = MAX_NAME_BYTES - len(extension.encode())
    stem = stem.encode()[:room].decode("utf-8", "ignore").rstrip(" .")
    return stem + extension if stem else "upload" + extension


UNSAFE_IN_NAMES = re.compile(r'[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069<>:"/\\|?*]')
"""Characters an upload's file name never keeps: controls (C0, DEL, C1), the bidirectional overrides that would show
a name's end first (`song\u202egpj.mp3`), separators, and those Windows' file systems refuse."""

MAX_NAME_BYTES = 120
"""The longest name an upload is stored under, in bytes of UTF-8: file systems allow 255, and the partial file
written first adds to it."""
