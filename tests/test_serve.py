"""`lmprint serve`: the HTTP API, its limits, and the WebSocket that follows live audio, in process."""

import asyncio
import json
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("starlette")
pytest.importorskip("httpx")

from starlette.testclient import TestClient  # noqa: E402

from bench.audio_io import write  # noqa: E402
from bench.serve_load import wav_bytes  # noqa: E402
from landmark import Index, audio  # noqa: E402
from landmark.segments import folder_of  # noqa: E402
from lmprint.errors import LmprintError  # noqa: E402
from lmprint.serve import ServeSettings, Upload, create_app  # noqa: E402
from tests.conftest import SYNTH_RATE, children_of, rendered, run_cli  # noqa: E402


def client_for(db, **settings) -> TestClient:
    return TestClient(create_app(lambda: Index(db), ServeSettings(**settings)))


def clip_bytes(path, start_s: float, length_s: float, tmp_path, extension="m4a", noise=0.0) -> bytes:
    """A clip of an indexed file, encoded as a user's phone would upload it."""
    samples = audio.load(path, SYNTH_RATE)[int(start_s * SYNTH_RATE):int((start_s + length_s) * SYNTH_RATE)]
    samples = samples + noise * np.random.default_rng(0).standard_normal(samples.size).astype(np.float32)
    target = tmp_path / f"clip.{extension}"
    write(target, samples, SYNTH_RATE)
    return target.read_bytes()


@pytest.fixture(scope="module")
def client(built_index):
    with client_for(built_index) as opened:
        yield opened


def test_match_answers_an_upload_with_the_json_of_match_json(client, built_index, tmp_path):
    song = Index(built_index).catalogue.songs()[1]
    body = clip_bytes(song.path, 12.0, 5.0, tmp_path)
    raw = client.post("/match", content=body, headers={"content-type": "audio/mp4"})
    form = client.post("/match", files={"file": ("phone clip.m4a", body, "audio/mp4")})
    assert raw.status_code == form.status_code == 200
    found = raw.json()
    assert found["match"]["path"] == song.path and found["match"]["offset_s"] == pytest.approx(12.0, abs=0.1)
    assert set(found) == {"query", "match", "runner_up"}
    expected = Index(built_index).answer(str(tmp_path / "clip.m4a")).to_dict("phone clip.m4a")
    assert form.json() == json.loads(json.dumps(expected))


def test_bad_uploads_get_a_json_error_and_never_a_500(built_index, tmp_path, caplog):
    caplog.set_level("DEBUG")
    song = Index(built_index).catalogue.songs()[0]
    flac = next(song for song in Index(built_index).catalogue.songs() if song.path.endswith(".flac"))
    with client_for(built_index, max_upload_bytes=1 << 20, max_upload_s=30.0) as client:
        cases = {
            "empty": (client.post("/match", content=b""), 400),
            "not audio": (client.post("/match", content=b"GIF89a" + bytes(range(256)) * 40), 422),
            "silence": (client.post("/match", files={"file": ("s.wav", wav_bytes(np.zeros(5 * SYNTH_RATE), SYNTH_RATE))}), 422),
            "0.2 s": (client.post("/match", files={"file": ("s.wav", wav_bytes(np.ones(SYNTH_RATE // 5) * 0.1, SYNTH_RATE))}), 422),
            "too large": (client.post("/match", content=bytes(1_100_000)), 413),
            "too long": (client.post("/match", content=clip_bytes(song.path, 0.0, 38.0, tmp_path, "ogg")), 413),
            "no file field": (client.post("/match", files={"other": ("x", b"123")}), 400),
            "a broken form": (client.post("/match", content=b"--x\r\nnonsense",
                                          headers={"content-type": "multipart/form-data; boundary=x"}), 400),
            "another boundary": (client.post("/match", content=b"--gg\r\nnonsense",
                                             headers={"content-type": "multipart/form-data; boundary=x"}), 400),
            # a playlist naming the server's own file: FFmpeg would open that file (and follow a live one forever)
            "a playlist": (client.post("/match", files={"file": ("list.m3u8", (
                f"#EXTM3U\n#EXT-X-TARGETDURATION:8\n#EXTINF:8.0,\n#EXT-X-BYTERANGE:200000@0\n{flac.path}\n"
                "#EXT-X-ENDLIST\n").encode())}), 422),
            "a text field for the file": (client.post("/match", data={"file": "hello"},
                                                      files={"other": ("x", b"123")}), 400),
            "no such page": (client.get("/nothing"), 404),
            "wrong method": (client.get("/match"), 405),
            "the live socket over HTTP": (client.get("/listen"), 426),
        }
        for name, (response, status) in cases.items():
            assert response.status_code == status, name
            assert set(response.json()) == {"error"} and response.json()["error"], name
        said = {name: response.json()["error"] for name, (response, _) in cases.items()}
        assert said["too large"] == "upload over 1 MiB (lmprint serve --max-upload-mb)"
        assert said["too long"].endswith("only a query's first seconds are matched, so send those (e.g. ffmpeg -t 30)")
        assert said["a text field for the file"] == "the form's `file` field is text, not a file (curl: -F file=@PATH)"
        assert said["no file field"] == "the form has no `file` field"
        assert cases["the live socket over HTTP"][0].headers["upgrade"] == "websocket"
        assert client.get("/health").json()["status"] == "ok"  # and it still serves
    # the broken form's reason is in its answer, not also a bare line of the form parser's in the server's log
    assert not [record for record in caplog.records if record.name.startswith("python_multipart")]


def test_an_index_that_cannot_be_read_answers_500_with_its_one_line(built_index, tmp_path):
    """A damaged index is the server's fault, not the request's: 500 with the error `match` prints (it answered
    422, which tells a client to change its request)."""
    import sqlite3

    db = tmp_path / "i.db"
    shutil.copy(built_index, db)
    song = Index(db).catalogue.songs()[1]
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE peaks SET data=? WHERE song_id=?", (b"\x78" + bytes(40), song.id))
    clip = tmp_path / "clip.m4a"
    clip.write_bytes(clip_bytes(song.path, 12.0, 5.0, tmp_path))
    with client_for(db) as damaged_client:
        answer = damaged_client.post("/match", content=clip.read_bytes())
    said = run_cli("match", clip, db=db).stderr  # "lmprint: ..." on one line
    assert answer.status_code == 500 and said.startswith("lmprint: ") and "damaged" in said, (answer.text, said)
    assert answer.json()["error"] == said.removeprefix("lmprint: ").strip(), (answer.text, said)


def test_a_405_says_which_methods_are_allowed_and_an_upload_folder_that_cannot_be_made_is_507(built_index,
                                                                                             library_dir, tmp_path):
    """HTTP asks a 405 to name the methods the route allows (`Allow`: its JSON answer dropped it); and an upload
    whose folder cannot be made (a file in its place) cannot be stored: 507, as a full disk (it was a 500 from an
    unguarded `makedirs`)."""
    with client_for(built_index) as client:
        refused = client.get("/match")
    assert refused.status_code == 405 and refused.headers["allow"] == "POST", refused.headers
    db = tmp_path / "i.db"
    shutil.copy(built_index, db)
    (tmp_path / "lmprint-uploads").write_text("a file where the folder goes")
    with client_for(db, allow_add=True, token="t") as client:
        answer = client.post("/songs", content=(library_dir / "song0.wav").read_bytes(),
                             headers={"authorization": "Bearer t"})
    assert answer.status_code == 507 and answer.json()["error"] == "cannot store the upload: not a directory", \
        answer.text


def refused_listening(db) -> tuple[dict, int]:
    """What a listener streaming 12 s of the index's second song is told, and the code its socket closes with."""
    from starlette.websockets import WebSocketDisconnect

    song = Index(db).catalogue.songs()[1]
    samples = audio.load(song.path, 16000)[:12 * 16000]
    with client_for(db) as client, client.websocket_connect("/listen") as socket:
        socket.send_json({"sample_rate": 16000})
        assert socket.receive_json() == {"event": "listening"}
        for start in range(0, samples.size, 16000):
            socket.send_bytes(samples[start:start + 16000].astype("<f4").tobytes())
        told = socket.receive_json()
        with pytest.raises(WebSocketDisconnect) as closed:
            socket.receive_json()
    return told, closed.value.code


def test_a_listener_is_told_when_the_index_cannot_be_read_with_the_servers_close_code(built_index, tmp_path):
    """A damaged index while a stream is followed is the server's fault: close code 1011, not 1003 (which tells
    the listener its data was bad)."""
    import sqlite3

    db = tmp_path / "i.db"
    shutil.copy(built_index, db)
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE peaks SET data=?", (b"\x78" + bytes(40),))
    told, code = refused_listening(db)
    assert told["event"] == "error" and "damaged" in told["error"] and code == 1011, (told, code)


def errors_logged(caplog) -> list[str]:
    """What the server logged as an error or with a traceback."""
    return [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR or record.exc_info]


def test_a_client_that_goes_away_mid_upload_gets_an_answer_not_a_traceback(built_index, caplog):
    """The client closes its connection after part of its body: the request ends with a 400, not an exception
    in the server's log."""
    app = create_app(lambda: Index(built_index), ServeSettings())
    gone = asyncio.Event()
    gone.set()
    with caplog.at_level(logging.INFO):
        status, _ = asyncio.run(asgi_post(app, "/match", {"content-length": "100000"},
                                          body_of(bytes(1000), then=gone)))
    assert status == 400 and not errors_logged(caplog), caplog.text


def test_songs_stats_and_health(client, built_index):
    songs = client.get("/songs").json()
    assert sorted(s["path"] for s in songs) == sorted(s.path for s in Index(built_index).catalogue.songs())
    with Index(built_index) as index:
        assert client.get("/stats").json() == json.loads(json.dumps(index.stats()))
        assert len(songs) == index.catalogue.song_count()
    assert client.get("/health").json() == {"status": "ok", "songs": len(songs)}
    page = client.get("/")
    assert page.status_code == 200 and "getUserMedia" in page.text
    for flag in ("echoCancellation: false", "noiseSuppression: false", "autoGainControl: false"):
        assert flag in page.text


def test_a_full_pool_answers_503_with_retry_after(built_index, tmp_path, monkeypatch):
    """One worker, no queue: while it is busy, the next request is turned away at once, not queued; an upload whose
    Content-Length is over the cap is told so (413), which no worker would change, rather than to come back."""
    inside, release = threading.Event(), threading.Event()
    slow_answer = Index.answer

    def held_answer(self, path):
        inside.set()
        release.wait(30)
        return slow_answer(self, path)

    monkeypatch.setattr(Index, "answer", held_answer)
    song = Index(built_index).catalogue.songs()[2]
    body = clip_bytes(song.path, 3.0, 5.0, tmp_path)
    with client_for(built_index, workers=1, queue=0) as client:
        first = {}
        worker = threading.Thread(target=lambda: first.update(r=client.post("/match", content=body)))
        worker.start()
        assert inside.wait(30)
        turned_away = client.post("/match", content=body)
        over_cap = client.post("/match", content=bytes(ServeSettings().max_upload_bytes + 1))
        release.set()
        worker.join(60)
    assert turned_away.status_code == 503 and turned_away.headers["retry-after"] == "1"
    assert over_cap.status_code == 413 and "MiB" in over_cap.json()["error"], over_cap.text
    assert first["r"].status_code == 200 and first["r"].json()["match"]["path"] == song.path


@pytest.mark.parametrize("workers", [1, 2])
def test_uploads_being_read_count_against_the_queue(built_index, workers):
    """Slow clients each send part of a large upload: with one place in the queue, the client after `workers + 1`
    of them is turned away before its body is read, so a server holds at most `workers + queue` uploads in
    memory."""
    app = create_app(lambda: Index(built_index), ServeSettings(workers=workers, queue=1))

    async def clients():
        ended = asyncio.Event()
        slow = [asyncio.create_task(asgi_post(app, "/match", {}, body_of(*[bytes(1 << 20)] * 3, then=ended)))
                for _ in range(workers + 1)]
        await asyncio.sleep(0.2)  # all are reading their uploads now
        next_one = await asyncio.wait_for(asgi_post(app, "/match", {}, body_of(b"RIFF", b"RIFF")), 10)
        ended.set()
        return next_one, await asyncio.gather(*slow)

    (status, headers), slow = asyncio.run(clients())
    assert status == 503 and headers["retry-after"] == "1"
    assert [status for status, _ in slow] == [400] * (workers + 1)  # they went away before their uploads were whole


def test_an_upload_of_exactly_the_cap_is_read_and_a_byte_more_is_not(built_index):
    with client_for(built_index, max_upload_bytes=10_000) as client:
        assert client.post("/match", content=b"not audio" + bytes(10_000 - 9)).status_code == 422
        assert client.post("/match", content=b"not audio" + bytes(10_001 - 9)).status_code == 413
    app = create_app(lambda: Index(built_index), ServeSettings(max_upload_bytes=10_000))  # sent in parts, unsized
    assert asyncio.run(asgi_post(app, "/match", {}, body_of(b"not audio", bytes(5000), bytes(10_000 - 5009))))[0] == 422


async def asgi_exchange(app, path: str, headers: dict, receive) -> list[dict]:
    """One POST straight through the ASGI application, its body from `receive`: the messages it sent back."""
    sent: list[dict] = []

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": path, "query_string": b"", "root_path": "",
             "headers": [(name.encode(), value.encode()) for name, value in headers.items()],
             "scheme": "http", "server": ("test", 80), "client": ("c", 1), "http_version": "1.1", "app": app}
    await app(scope, receive, send)
    return sent


async def asgi_post(app, path: str, headers: dict, receive) -> tuple[int, dict]:
    """`asgi_exchange`'s status and headers."""
    sent = await asgi_exchange(app, path, headers, receive)
    return sent[0]["status"], {name.decode(): value.decode() for name, value in sent[0]["headers"]}


async def posted(app, path: str, headers: dict, receive) -> tuple[int, dict]:
    """`asgi_exchange`'s status and JSON body."""
    sent = await asgi_exchange(app, path, headers, receive)
    body = b"".join(message.get("body", b"") for message in sent if message["type"] == "http.response.body")
    return sent[0]["status"], json.loads(body)


def copied(built_index, tmp_path):
    """A copy of the shared index (and its segments) that a test may add to."""
    db = tmp_path / "copy.db"
    shutil.copy(built_index, db)
    if folder_of(built_index).is_dir():
        shutil.copytree(folder_of(built_index), folder_of(db))
    return db


def body_of(*parts: bytes, then: asyncio.Event | None = None):
    """An ASGI `receive` sending `parts`; with `then`, the body goes on until it is set, and the client leaves."""
    parts_left = list(parts)

    async def receive():
        if not parts_left:
            await then.wait()
            return {"type": "http.disconnect"}
        return {"type": "http.request", "body": parts_left.pop(0), "more_body": bool(parts_left) or then is not None}
    return receive


def test_a_refusal_reads_no_body_a_client_has_not_sent_and_holds_no_queue_place(built_index):
    """A client that asked `Expect: 100-continue` is refused without being asked for its body (reading it would
    tell the server to send "100 Continue"); an upload over the cap by its `Content-Length`, whose body is read
    and thrown away, does not hold the one worker's place meanwhile."""
    app = create_app(lambda: Index(built_index), ServeSettings(workers=1, queue=0, max_upload_bytes=1000))

    async def never():
        raise AssertionError("the body was asked for")

    status, _ = asyncio.run(asgi_post(app, "/songs", {"content-length": "50000", "expect": "100-continue"}, never))
    assert status == 403

    async def large_then_small():
        sent_all = asyncio.Event()
        large = asyncio.create_task(asgi_post(app, "/match", {"content-length": "2000"},
                                              body_of(bytes(500), bytes(500), then=sent_all)))
        await asyncio.sleep(0.05)  # being drained now, the rest of its body still to come
        small = await asyncio.wait_for(asgi_post(app, "/match", {"content-length": "16"},
                                                 body_of(b"not audio at all")), 10)
        sent_all.set()
        return (await asyncio.wait_for(large, 10))[0], small[0]

    assert asyncio.run(large_then_small()) == (413, 422)


@pytest.mark.parametrize("path, answer", [("/match", 503), ("/songs", 403)],
                         ids=["an upload still arriving", "a refusal still reading the body it throws away"])
def test_a_request_cancelled_as_the_server_stops_is_answered(built_index, path, answer, caplog, tmp_path,
                                                             monkeypatch):
    """Past the shutdown grace uvicorn cancels what is still running: it gets an answer (an upload's temporary
    folder removed; a refusal the answer it was going to get), not a 500 or a traceback in the log."""
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where an upload's folder is made
    app = create_app(lambda: Index(built_index), ServeSettings())

    async def stopping():
        never = asyncio.Event()
        request = asyncio.create_task(asgi_post(app, path, {"content-length": "100000"},
                                                body_of(bytes(1000), then=never)))
        await asyncio.sleep(0.05)
        request.cancel()
        return await request

    with caplog.at_level(logging.INFO):
        status, headers = asyncio.run(stopping())
    assert status == answer and not errors_logged(caplog), caplog.text
    assert not list(tmp_path.iterdir())
    if answer == 503:
        assert headers["retry-after"] == "1"


def test_a_request_cancelled_while_its_upload_is_being_indexed_holds_the_file_until_that_is_done(built_index,
                                                                                                  tmp_path):
    """The server stops past its grace while a worker thread indexes an upload: the request is answered 503 at
    once, but its hold on the file, which keeps other requests from deleting it, lasts until the worker is done."""
    import fcntl

    db = tmp_path / "copy.db"
    shutil.copy(built_index, db)
    song = tmp_path / "new.flac"
    write(song, rendered(46, 20.0, SYNTH_RATE), SYNTH_RATE)
    body = song.read_bytes()
    adding, finish = threading.Event(), threading.Event()

    class Slow(Index):
        def add(self, *args, **kwargs):
            adding.set()
            finish.wait(30)
            return super().add(*args, **kwargs)

    app = create_app(lambda: Slow(db), ServeSettings(allow_add=True, token="t"))

    async def cancelled():
        request = asyncio.create_task(asgi_post(app, "/songs", {"content-length": str(len(body)),
                                                                "authorization": "Bearer t"}, body_of(body)))
        while not adding.is_set():
            await asyncio.sleep(0.01)
        request.cancel()
        return await request

    def held(path) -> bool:
        probe = os.open(path, os.O_RDONLY)
        try:
            fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return False
        except BlockingIOError:
            return True
        finally:
            os.close(probe)

    try:
        status, _ = asyncio.run(cancelled())
        assert status == 503
        stored = next((tmp_path / "lmprint-uploads").rglob("upload*"))
        assert held(stored)  # the worker still reads it
    finally:
        finish.set()
    deadline = time.monotonic() + 30
    while held(stored) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not held(stored)  # let go once the worker was done
    assert str(stored) in [song.path for song in Index(db).catalogue.songs()]  # and the song indexed


def test_an_index_locked_by_a_writer_answers_503_and_keeps_no_upload(built_index, tmp_path):
    """`POST /songs` while another process holds the write lock past the busy timeout: try again later (503), and
    the upload, which the index did not take, is not left in the upload folder."""
    import sqlite3

    db = tmp_path / "copy.db"
    shutil.copy(built_index, db)
    song = tmp_path / "new.flac"
    write(song, rendered(44, 20.0, SYNTH_RATE), SYNTH_RATE)

    def impatient() -> Index:
        return Index(db, busy_timeout_s=0.2)

    writer = sqlite3.connect(db, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    try:
        with TestClient(create_app(impatient, ServeSettings(allow_add=True, token="t"))) as client:
            locked = client.post("/songs", files={"file": ("new.flac", song.read_bytes())},
                                 headers={"authorization": "Bearer t"})
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert locked.status_code == 503 and locked.headers["retry-after"] == "1"
    assert "locked by another process" in locked.json()["error"]
    assert list((tmp_path / "lmprint-uploads").iterdir()) == []
    with client_for(db, allow_add=True, token="t") as client:  # the same upload once the writer is done
        added = client.post("/songs", files={"file": ("new.flac", song.read_bytes())},
                            headers={"authorization": "Bearer t"})
    assert added.status_code == 200 and added.json()["added"] == 1


def stored(folder, data=b"the same bytes", base="song.flac") -> Upload:
    """An upload's file as a `POST /songs` request stores and holds it."""
    return asyncio.run(Upload.store(data, str(folder), base, base, kept=True))


def test_an_upload_that_another_request_holds_is_left_to_it(tmp_path):
    """Two uploads of the same bytes share one file. One that the index did not take is left while another
    request, maybe in another server process, still holds it (it may be indexing it); the one that holds it last
    deletes it, with its folder."""
    folder = tmp_path / "uploads" / "0123abcd"
    first, second = stored(folder), stored(folder)
    assert first.path == second.path and os.listdir(folder) == ["song.flac"]
    first.discard()
    assert os.path.exists(second.path)
    other_process = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, os, sys; descriptor = os.open(sys.argv[1], os.O_RDONLY); "
         "fcntl.flock(descriptor, fcntl.LOCK_SH); print('held', flush=True); sys.stdin.read()", second.path],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert other_process.stdout.readline().strip() == "held"
        second.discard()
        assert os.path.exists(second.path)
    finally:
        other_process.communicate("")
    last = stored(folder)
    last.discard()
    assert not folder.exists()
    last.discard()  # let go of already: nothing more happens
    last.close()


def test_whether_the_index_names_an_upload_is_asked_once_no_other_request_can_index_it(tmp_path):
    """A request that would delete the file asks the index about it only while it holds it alone: another request
    indexing it meanwhile, then letting go, cannot be answered "not named" from before its commit."""
    import fcntl

    class AskedWhileAlone:
        """An index that names a file or not (`answer`), and checks when asked that no request can take it."""

        def __init__(self, answer: bool):
            self.catalogue, self.answer = self, answer

        def songs_at(self, path: str) -> list[str]:
            other = os.open(path, os.O_RDONLY)
            try:
                with pytest.raises(BlockingIOError):  # no request can take the file now
                    fcntl.flock(other, fcntl.LOCK_SH | fcntl.LOCK_NB)
            finally:
                os.close(other)
            asked.append(path)
            return [path] if self.answer else []

        def copy_at(self, path: str) -> None:
            return None

    asked: list[str] = []
    upload = stored(tmp_path / "a")
    upload.discard(AskedWhileAlone(True))  # type: ignore[arg-type]  # an indexed song's file: kept
    assert asked == [upload.path] and os.path.exists(upload.path)
    upload = stored(tmp_path / "a")
    upload.discard(AskedWhileAlone(False))  # type: ignore[arg-type]
    assert len(asked) == 2 and not (tmp_path / "a").exists()
    first, second = stored(tmp_path / "b"), stored(tmp_path / "b")
    first.discard(AskedWhileAlone(False))  # type: ignore[arg-type]  # held by the other: not asked, not deleted
    assert len(asked) == 2 and os.path.exists(second.path)
    second.close()


def test_an_upload_deleted_while_a_request_waited_for_it_is_written_again(tmp_path):
    import fcntl

    folder = tmp_path / "0123abcd"
    first = stored(folder)
    first.close()
    deleting = os.open(first.path, os.O_RDWR)
    fcntl.flock(deleting, fcntl.LOCK_EX)  # what `discard` holds while it asks the index and deletes
    taken: list[Upload] = []
    waiting = threading.Thread(target=lambda: taken.append(stored(folder)))
    waiting.start()

    def opened_by_the_waiting_request() -> bool:
        return sum(os.path.realpath(f"/proc/self/fd/{fd}") == first.path for fd in os.listdir("/proc/self/fd")) > 1

    deadline = time.monotonic() + 10
    while not opened_by_the_waiting_request() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert opened_by_the_waiting_request() and not taken  # it opened the file and waits for its lock
    os.remove(first.path)
    os.close(deleting)
    waiting.join(10)
    with taken[0] as again:
        assert again.path == first.path and open(again.path, "rb").read() == b"the same bytes"
        assert os.listdir(folder) == ["song.flac"]  # its partial file is gone


def test_an_upload_that_cannot_be_written_whole_leaves_no_file(tmp_path):
    """A full disk (here a file size limit) while the upload is written: a 507 for the request, and neither a
    partial file nor its folder left in the upload folder."""
    script = (
        "import asyncio, resource, signal, sys\n"
        "from lmprint.serve import Upload\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))\n"
        "try:\n"
        "    asyncio.run(Upload.store(bytes(100_000), sys.argv[1], 'song.flac', 'song.flac', kept=True))\n"
        "except OSError as failure:\n"
        "    print(failure.errno)\n")
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    ran = subprocess.run([sys.executable, "-c", script, str(uploads / "0123abcd")], capture_output=True, text=True,
                         cwd=os.path.dirname(os.path.dirname(__file__)))
    assert ran.stdout.strip() == "27", ran.stderr  # EFBIG
    assert list(uploads.iterdir()) == []


def test_the_servers_worker_threads_stop_with_it_and_it_can_start_again(built_index):
    def workers() -> set[threading.Thread]:  # as objects: another test's idle pool may let its thread go any time
        return {thread for thread in threading.enumerate() if thread.name.startswith("lmprint-worker")}

    before = workers()
    app = create_app(lambda: Index(built_index), ServeSettings())
    for _ in range(2):
        with TestClient(app) as client:
            assert client.get("/health").status_code == 200
            started = workers() - before
            assert len(started) == 1
        assert not any(thread.is_alive() for thread in started)


def test_a_songs_file_is_kept_when_an_error_comes_after_it_was_stored(built_index, tmp_path, monkeypatch):
    """Housekeeping after the song's commit fails (a full disk while compacting): the answer is the server's error
    (500), but the song is indexed, and its only file must stay."""
    from lmprint.errors import IndexFileError

    db = tmp_path / "copy.db"
    shutil.copy(built_index, db)
    song = tmp_path / "kept.flac"
    write(song, rendered(45, 20.0, SYNTH_RATE), SYNTH_RATE)

    def failing(self, changed_audio_s):
        raise IndexFileError("no space left on device while compacting")

    monkeypatch.setattr(Index, "_compact_after_change", failing)
    with client_for(db, allow_add=True, token="t") as client:
        answer = client.post("/songs", files={"file": ("kept.flac", song.read_bytes())},
                             headers={"authorization": "Bearer t"})
    assert answer.status_code == 500 and "no space left" in answer.json()["error"]
    stored = [s.path for s in Index(db).catalogue.songs() if s.title == "kept"]
    assert len(stored) == 1 and os.path.exists(stored[0])


def test_an_upload_to_an_index_named_by_a_relative_path_answers_its_song(built_index, tmp_path, monkeypatch):
    """The app built on `Index("index.db")` (the API; the command line gives an absolute path): its uploads' folder
    is absolute, as the files `add` records are, so the upload is told by the song's path."""
    shutil.copy(built_index, tmp_path / "index.db")
    monkeypatch.chdir(tmp_path)
    song = tmp_path / "new.flac"
    write(song, rendered(43, 20.0, SYNTH_RATE), SYNTH_RATE)
    settings = ServeSettings(allow_add=True, token="t")
    with TestClient(create_app(lambda: Index("index.db"), settings)) as client:
        answers = [client.post("/songs", files={"file": ("new.flac", song.read_bytes())},
                               headers={"authorization": "Bearer t"}).json() for _ in range(2)]
    with Index("index.db") as index:
        (stored,) = [s for s in index.catalogue.songs() if s.title == "new"]
    assert [(a["added"], a["skipped"], a["song_id"], a["path"]) for a in answers] == [
        (1, 0, stored.id, stored.path), (0, 1, stored.id, stored.path)]


def test_adding_needs_allow_add_and_the_token_and_then_the_song_matches(built_index, library_dir, tmp_path):
    db = tmp_path / "copy.db"
    shutil.copy(built_index, db)
    new_song = tmp_path / "new song.flac"
    write(new_song, rendered(41, 30.0, SYNTH_RATE), SYNTH_RATE)
    upload = {"file": ("new song.flac", new_song.read_bytes())}
    with client_for(db) as read_only:
        assert read_only.post("/songs", files=upload).status_code == 403
    for token in (None, ""):  # adding for anyone is never a default
        with pytest.raises(LmprintError, match="--allow-add needs a token"):
            create_app(lambda: Index(db), ServeSettings(allow_add=True, token=token))
    with client_for(db, allow_add=True, token="s3cret") as client:
        assert client.post("/songs", files=upload).status_code == 401
        assert client.post("/songs", files=upload, headers={"authorization": "Bearer wrong"}).status_code == 401
        assert client.post("/songs", files=upload, headers={"authorization": "s3cret"}).status_code == 401
        for near in ("S3CRET", "s3cre", "s3cretX"):  # the token is compared whole, and as it is
            assert client.post("/songs", content=b"x", headers={"authorization": f"Bearer {near}"}).status_code == 401
        assert client.post("/songs", content=b"x", headers={"authorization": "bearer s3cret"}).status_code == 422
        added = client.post("/songs", files=upload, headers={"authorization": "Bearer s3cret"})
        assert added.status_code == 200 and added.json()["added"] == 1
        found = client.post("/match", content=clip_bytes(added.json()["path"], 10.0, 5.0, tmp_path)).json()
        assert found["match"]["title"] == "new song" and found["match"]["song_id"] == added.json()["song_id"]
        other = tmp_path / "other.flac"  # another song uploaded under the same name keeps the first one
        write(other, rendered(42, 30.0, SYNTH_RATE), SYNTH_RATE)
        again = client.post("/songs", files={"file": ("new song.flac", other.read_bytes())},
                            headers={"authorization": "Bearer s3cret"})
        assert again.status_code == 200 and again.json()["path"] != added.json()["path"]
        titles = [song["path"] for song in client.get("/songs").json()]
        assert added.json()["path"] in titles and again.json()["path"] in titles
        # the same upload again (a client's retry) is known, and its file, maybe being indexed, is never rewritten
        written_ns = os.stat(added.json()["path"]).st_mtime_ns
        retry = client.post("/songs", files=upload, headers={"authorization": "Bearer s3cret"})
        assert retry.json() == {"added": 0, "skipped": 1, "path": added.json()["path"],
                                "song_id": added.json()["song_id"]}
        assert os.stat(added.json()["path"]).st_mtime_ns == written_ns
        # what the index does not take is not kept
        refused = client.post("/songs", files={"file": ("junk.mp3", b"ID3" + bytes(range(256)) * 8)},
                              headers={"authorization": "Bearer s3cret"})
        assert refused.status_code == 422 and set(refused.json()) == {"error"}
        kept = sorted(str(path) for path in (tmp_path / "lmprint-uploads").rglob("*") if path.is_file())
        assert kept == sorted([added.json()["path"], again.json()["path"]])
        assert len(list((tmp_path / "lmprint-uploads").iterdir())) == 2  # nor the folder it was put in
        # the same bytes under another name: known (skipped), the file kept as the song's copy
        renamed = client.post("/songs", files={"file": ("renamed.flac", new_song.read_bytes())},
                              headers={"authorization": "Bearer s3cret"})
        assert renamed.json()["added"] == 0 and renamed.json()["skipped"] == 1
        assert renamed.json()["song_id"] == added.json()["song_id"]  # the song whose copy it is
    with client_for(db, allow_add=True, token="s3cret", max_upload_s=10.0) as stricter:
        # an indexed song's upload over a cap lowered since: refused, and its file, an earlier request's, kept
        over = stricter.post("/songs", files=upload, headers={"authorization": "Bearer s3cret"})
        assert over.status_code == 413 and os.path.exists(added.json()["path"])


def test_an_uploads_name_keeps_its_letters_in_any_script_and_loses_what_is_unsafe(built_index, tmp_path):
    from lmprint.serve import MAX_NAME_BYTES, _safe_name

    assert _safe_name("Ça – ñ 日本.ogg") == "Ça – ñ 日本.ogg"  # was "_a _ _ __.ogg", and so its title
    assert _safe_name("Cafe\u0301.flac") == "Café.flac"  # composed, as `add` finds a file named either way
    assert _safe_name("../../../tmp/evil.ogg") == _safe_name("..\\..\\tmp\\evil.ogg") == "evil.ogg"
    assert _safe_name('a<b>:c"d|e?f*g\x00h\x7f.mp3') == "a_b__c_d_e_f_g_h_.mp3"
    assert _safe_name("a\x85b\x9b[31m.mp3") == "a_b_[31m.mp3"  # C1 controls
    assert _safe_name("song\u202egpj.mp3") == "song_gpj.mp3"  # shown as "song3pm.jpg"
    assert _safe_name(".hidden.mp3") == "hidden.mp3" and _safe_name("...") == _safe_name("") == "upload"
    assert _safe_name("lone \udcff surrogate.mp3") == "lone  surrogate.mp3"
    long = _safe_name("日本" * 100 + ".flac")  # 3 bytes a letter: cut whole, and the extension kept
    assert long.endswith("日本.flac") or long.endswith("日.flac")
    assert len(long.encode()) <= MAX_NAME_BYTES and "\ufffd" not in long
    db = tmp_path / "copy.db"
    shutil.copy(built_index, db)
    song = tmp_path / "song.flac"
    write(song, rendered(47, 20.0, SYNTH_RATE), SYNTH_RATE)
    with client_for(db, allow_add=True, token="t") as client:
        added = client.post("/songs", files={"file": ("Bät Cave – 日本.flac", song.read_bytes())},
                            headers={"authorization": "Bearer t"})
        assert os.path.basename(added.json()["path"]) == "Bät Cave – 日本.flac"
        assert client.post("/match", content=clip_bytes(song, 5.0, 5.0, tmp_path)).json()["match"]["title"] == (
            "Bät Cave – 日本")


def test_an_upload_cut_short_is_added_with_the_warning_add_prints(built_index, library_dir, tmp_path):
    db = tmp_path / "copy.db"
    shutil.copy(built_index, db)
    data = (library_dir / "song1.flac").read_bytes()
    with client_for(db, allow_add=True, token="t") as client:
        added = client.post("/songs", content=data[: len(data) // 4], headers={"authorization": "Bearer t"})
    assert added.status_code == 200 and added.json()["added"] == 1
    assert re.fullmatch(r"decoded only \d+\.\d s of the 40\.0 s it declares \(truncated or damaged\)",
                        added.json()["warning"]), added.json()


@pytest.mark.parametrize("extension", ["flac", "wav"])
def test_a_raw_upload_is_kept_under_its_containers_extension_so_that_add_finds_it_again(built_index, tmp_path,
                                                                                        extension):
    """A raw body has no file name: the file kept is named by its container (`upload.flac`), so that indexing the
    uploads folder again (rebuilding an index) picks it up. FFmpeg lists no extensions for a WAV's demuxer (it
    knows one by its content): its name is its extension."""
    from lmprint.files import find_audio_files

    db = tmp_path / "copy.db"
    shutil.copy(built_index, db)
    song = tmp_path / f"raw.{extension}"
    write(song, rendered(46, 20.0, SYNTH_RATE), SYNTH_RATE)
    with client_for(db, allow_add=True, token="t") as client:
        added = client.post("/songs", content=song.read_bytes(), headers={"authorization": "Bearer t"})
    assert added.status_code == 200 and added.json()["added"] == 1
    assert os.path.basename(added.json()["path"]) == f"upload.{extension}"
    found = [path for path, error in find_audio_files([str(tmp_path / "lmprint-uploads")]) if error is None]
    assert found == [added.json()["path"]]


def test_serve_refuses_a_port_in_use_in_one_line_before_saying_it_serves(built_index):
    import socket

    from click.testing import CliRunner

    from lmprint.cli import main

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(main, ["--db", str(built_index), "serve", "--port", str(port)])
    assert result.exit_code == 1 and result.output.count("\n") == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.output and "serving" not in result.output


def test_serve_on_port_0_listens_on_a_free_port_and_says_which(built_index, monkeypatch):
    from click.testing import CliRunner

    import lmprint.serve
    from lmprint.cli import SERVE_OPTIONS, main

    monkeypatch.delenv(SERVE_OPTIONS, raising=False)  # restored after: the command sets it for its workers
    started = {}

    def serving(app, host, port, *rest):  # binds and listens there, as uvicorn does: the probe let it go
        with socket.socket() as server:
            server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            server.bind((host, port))
            server.listen()
        started.update(port=port)

    monkeypatch.setattr(lmprint.serve, "serve", serving)
    result = CliRunner().invoke(main, ["--db", str(built_index), "serve", "--port", "0"])
    assert result.exit_code == 0 and started["port"] > 0, result.output
    assert f"at http://127.0.0.1:{started['port']}/ " in result.output


def test_it_keeps_serving_while_another_process_adds_to_the_index(built_index, tmp_path):
    db = tmp_path / "copy.db"
    shutil.copy(built_index, db)
    newcomer = tmp_path / "late.wav"
    write(newcomer, rendered(43, 25.0, SYNTH_RATE), SYNTH_RATE)
    with client_for(db) as client:
        before = len(client.get("/songs").json())
        with Index(db) as writer:  # another connection, as `lmprint add` would be
            writer.add([str(newcomer)])
        assert len(client.get("/songs").json()) == before + 1
        assert client.post("/match", content=clip_bytes(newcomer, 5.0, 5.0, tmp_path)).json()["match"]["title"] == "late"


def test_an_index_deleted_and_built_anew_is_opened_anew(built_index, tmp_path):
    """A damaged index is mended by indexing the music again into a new file; a server kept answering from the
    old file, which its open connection still read after it was deleted."""
    db = tmp_path / "rebuilt.db"
    shutil.copy(built_index, db)
    newcomer = tmp_path / "late.wav"
    write(newcomer, rendered(43, 25.0, SYNTH_RATE), SYNTH_RATE)
    with client_for(db, allow_add=True, token="t", max_upload_s=10.0) as client:
        assert client.get("/health").json()["songs"] == 6
        for stale in tmp_path.glob("rebuilt.db*"):
            shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
        gone = client.get("/health")
        assert gone.status_code == 500 and "no index at" in gone.json()["error"], gone.json()
        long = client.post("/songs", content=newcomer.read_bytes(), headers={"authorization": "Bearer t"})
        assert long.status_code == 413, long.json()  # over the cap, whether the index can be read or not
        assert not [path for path in (tmp_path / "lmprint-uploads").rglob("*") if path.is_file()]  # nor kept
        with Index(db, create=True) as rebuilt:
            rebuilt.add([str(newcomer)])
        assert client.get("/health").json()["songs"] == 1
        assert client.post("/match", content=clip_bytes(newcomer, 5.0, 5.0, tmp_path)).json()["match"]["title"] == "late"


def test_the_listen_socket_names_a_song_from_live_audio_within_8_s(client, built_index):
    """A browser's microphone: 48 kHz float32 in half-second chunks, a noisy copy of an indexed song. Each event
    says how much audio the server had heard when it was sent (`heard_s`)."""
    song = Index(built_index).catalogue.songs()[3]
    live = audio.load(song.path, 48000)[48000 * 5:48000 * 25]
    live = live + 0.05 * np.random.default_rng(1).standard_normal(live.size).astype(np.float32)
    with client.websocket_connect("/listen") as socket:
        socket.send_json({"sample_rate": 48000})
        assert socket.receive_json() == {"event": "listening"}
        for start in range(0, live.size, 24000):
            socket.send_bytes(live[start:start + 24000].astype("<f4").tobytes())
        event = socket.receive_json()
    assert event["event"] == "open" and event["path"] == song.path
    from lmprint.monitor import MonitorSettings

    assert MonitorSettings().window_s <= event["heard_s"] <= 8.0  # a look's window heard, then the look's time
    assert event["song_offset_s"] == pytest.approx(5.0 + event["start_s"], abs=1.0)


def test_the_listen_socket_places_a_song_where_it_is_heard_to_begin(client, built_index):
    """A straight cut from one song to another: the second starts where the stream begins to hear it, read from
    its peaks as `lmprint monitor` reads a file's (guessed from the looks that named it, it came a few seconds
    late)."""
    songs = Index(built_index).catalogue.songs()
    first, second = (audio.load(song.path, 16000) for song in songs[2:4])
    live = np.concatenate([first[16000 * 2:16000 * 14], second[16000 * 5:16000 * 25]])
    events = []
    with client.websocket_connect("/listen") as socket:
        socket.send_json({"sample_rate": 16000})
        assert socket.receive_json() == {"event": "listening"}
        for start in range(0, live.size, 16000):
            socket.send_bytes(live[start:start + 16000].astype("<f4").tobytes())
        while len(events) < 3:
            events.append(socket.receive_json())
    assert [(e["event"], e["path"]) for e in events] == [("open", songs[2].path), ("closed", songs[2].path),
                                                          ("open", songs[3].path)]
    assert events[2]["start_s"] == pytest.approx(12.0, abs=0.5)
    assert events[2]["song_offset_s"] == pytest.approx(5.0, abs=0.5)
    # each event's `heard_s` is the audio received when it was sent: past the segment's end, and for the closed
    # one seconds past it (closing takes looks that no longer hear the song)
    heard = [e["heard_s"] for e in events]
    assert heard == sorted(heard) and heard[-1] <= live.size / 16000
    assert all(e["heard_s"] >= e["end_s"] for e in events), events
    assert events[1]["heard_s"] >= events[1]["end_s"] + 2.0, events[1]


def test_the_listen_socket_bounds_samples_as_a_files_decoder_does(client, built_index, monkeypatch):
    """A float stream gone wrong (a sample at infinity or 1e30 every half second): its samples are made finite and
    bounded as a file's are (`lmprint.samples`) before the monitor hears them, and the song is still named;
    passed on, they overflowed the resampler and every window failed to read."""
    from lmprint.monitor import Monitor
    from lmprint.samples import SAMPLE_BOUND

    heard = []
    real_feed = Monitor.feed

    def feed(self, samples):
        heard.append(samples)
        return real_feed(self, samples)

    monkeypatch.setattr(Monitor, "feed", feed)
    song = Index(built_index).catalogue.songs()[3]
    live = audio.load(song.path, 16000)[16000 * 5:16000 * 25].copy()
    live[::16000], live[8000::16000] = np.inf, 1e30
    with client.websocket_connect("/listen") as socket:
        socket.send_json({"sample_rate": 16000})
        assert socket.receive_json() == {"event": "listening"}
        for start in range(0, live.size, 16000):
            socket.send_bytes(live[start:start + 16000].astype("<f4").tobytes())
        socket.send_text("end")  # answered with an error after the audio: no wait for a song never named
        event = socket.receive_json()
    assert event["event"] == "open" and event["path"] == song.path, event
    everything = np.concatenate(heard)
    assert everything.size > 0 and np.isfinite(everything).all() and np.abs(everything).max() <= SAMPLE_BOUND


def test_a_form_upload_is_read_whatever_the_case_of_its_content_type(client, built_index, tmp_path):
    """Media types are case-insensitive: `Multipart/Form-Data` is a form (it was stored whole as raw audio, and
    refused as not audio)."""
    song = Index(built_index).catalogue.songs()[1]
    boundary = "lmprint-test-boundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"clip.m4a\"\r\n"
            "Content-Type: audio/mp4\r\n\r\n").encode() + clip_bytes(song.path, 12.0, 5.0, tmp_path) + \
        f"\r\n--{boundary}--\r\n".encode()
    answer = client.post("/match", content=body,
                         headers={"content-type": f"Multipart/Form-Data; boundary={boundary}"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["match"]["path"] == song.path and answer.json()["query"] == "clip.m4a"


def test_the_listen_socket_refuses_a_stream_without_its_rate_a_text_frame_and_an_oversized_chunk(client):
    from starlette.websockets import WebSocketDisconnect

    for hello in ('{"hello": 1}', '{"sample_rate": 1e999}', '{"sample_rate": "fast"}', "[]", '{"sample_rate": 7999}',
                  '{"sample_rate": 192001}'):
        with client.websocket_connect("/listen") as socket:
            socket.send_text(hello)
            assert socket.receive_json() == {
                "event": "error", "error": 'send {"sample_rate": HZ} first, HZ from 8000 to 192000'}, hello
            with pytest.raises(WebSocketDisconnect) as closed:
                socket.receive_json()
            assert closed.value.code == 1003  # refused for what it sent
    for rate in (8000, 192000):
        with client.websocket_connect("/listen") as socket:
            socket.send_json({"sample_rate": rate})
            assert socket.receive_json() == {"event": "listening"}
    with client.websocket_connect("/listen") as socket:
        pass  # gone before its hello
    assert client.get("/health").json()["status"] == "ok"
    with client.websocket_connect("/listen") as socket:
        socket.send_json({"sample_rate": 8000})
        assert socket.receive_json() == {"event": "listening"}
        socket.send_bytes(np.zeros(4000, "<f4").tobytes())
        socket.send_text("hello")
        assert socket.receive_json() == {"event": "error", "error": "send audio as binary frames"}
    with client.websocket_connect("/listen") as socket:
        socket.send_json({"sample_rate": 8000})
        socket.receive_json()
        socket.send_bytes(np.zeros(int(8000 * 3.5), "<f4").tobytes())  # 3.5 s in one message: taken
        socket.send_text("hello")  # (the chunk's own refusal would come first)
        assert socket.receive_json() == {"event": "error", "error": "send audio as binary frames"}
    with client.websocket_connect("/listen") as socket:
        socket.send_json({"sample_rate": 8000})
        socket.receive_json()
        socket.send_bytes(np.zeros(int(8000 * 4.5), "<f4").tobytes())  # 4.5 s in one message
        assert socket.receive_json() == {"event": "error", "error": "a chunk holds at most 4 s of audio"}
    with client.websocket_connect("/listen") as socket:
        socket.send_json({"sample_rate": 8000})
        socket.receive_json()
        socket.send_bytes(np.zeros(4000, "<f4").tobytes()[:-1])  # a sample cut: the rest would be read shifted
        socket.send_text("hello")  # (answered, where the cut sample is not)
        assert "multiple of 4 bytes" in socket.receive_json()["error"]


@pytest.mark.parametrize("gone_at", ["listening", "error"])
def test_a_listener_gone_before_an_answer_is_sent_ends_quietly(built_index, gone_at):
    """The client closes right after its hello, or after a text frame mid-stream: what the server would send it
    has no one to go to, and the socket ends without an exception (uvicorn logged chained tracebacks)."""
    app = create_app(lambda: Index(built_index), ServeSettings())
    frames = [{"type": "websocket.connect"}, {"type": "websocket.receive", "text": '{"sample_rate": 8000}'},
              {"type": "websocket.receive", "bytes": np.zeros(4000, "<f4").tobytes()},
              {"type": "websocket.receive", "text": "hello"}]
    sent = []

    async def receive():
        return frames.pop(0) if frames else {"type": "websocket.disconnect", "code": 1000}

    async def send(message):
        if json.loads(message.get("text") or "{}").get("event") == gone_at:
            raise OSError("the client has gone")  # as uvicorn's socket reports a peer that closed
        sent.append(message)

    async def session():
        scope = {"type": "websocket", "path": "/listen", "query_string": b"", "root_path": "", "headers": [],
                 "scheme": "ws", "server": ("test", 80), "client": ("c", 1), "subprotocols": [], "app": app}
        await app(scope, receive, send)

    with TestClient(app):  # started, so that its workers run
        asyncio.run(session())
    assert [message["type"] for message in sent] == (
        ["websocket.accept"] if gone_at == "listening" else ["websocket.accept", "websocket.send"])


def test_a_listener_past_the_limit_is_told_to_try_again_later(built_index):
    """The socket is closed with 1013 (try again later), which a page can act on, not refused as a bad request."""
    from starlette.websockets import WebSocketDisconnect

    with client_for(built_index, max_listeners=1) as client, client.websocket_connect("/listen") as first:
        first.send_json({"sample_rate": 8000})
        assert first.receive_json() == {"event": "listening"}
        with client.websocket_connect("/listen") as second, pytest.raises(WebSocketDisconnect) as closed:
            second.receive_json()
        assert closed.value.code == 1013



def started_serve(db, *options: str, context=None):
    """`lmprint serve` in a process of its own on a free loopback port, once it answers `/health` (over HTTPS with
    a `context`): (the process, its port)."""
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "lmprint.cli", "--db", str(db), "serve", "--port", str(port),
                               *options], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"{'https' if context else 'http'}://127.0.0.1:{port}/health", timeout=2,
                                        context=context) as response:
                assert json.loads(response.read())["status"] == "ok"
                return server, port
        except OSError:
            assert time.monotonic() < deadline and server.poll() is None, server.stderr.read()
            time.sleep(0.2)


@pytest.mark.slow
def test_lmprint_serve_starts_worker_processes_that_answer_and_stops_on_a_signal(built_index, tmp_path):
    """The command as a user runs it: two worker processes, each opening the index itself."""
    import signal
    import socket
    import time
    import urllib.request

    song = Index(built_index).catalogue.songs()[0]
    body = clip_bytes(song.path, 20.0, 5.0, tmp_path, "wav")
    server, port = started_serve(built_index, "--workers", "2")
    try:
        answers = []
        for _ in range(4):
            request = urllib.request.Request(f"http://127.0.0.1:{port}/match", data=body, method="POST")
            with urllib.request.urlopen(request, timeout=60) as response:
                answers.append(json.loads(response.read())["match"]["path"])
        assert answers == [song.path] * 4
        commands = [Path(f"/proc/{child}/cmdline").read_bytes() for child in children_of(server.pid)]
        assert sum(b"spawn_main" in command for command in commands) == 2, commands  # the two workers
        import http.client  # clients that keep their connections open, idle, do not shut others out

        idle = [http.client.HTTPConnection("127.0.0.1", port, timeout=10) for _ in range(130)]  # 60 a process before
        for connection in idle:
            connection.request("GET", "/health")
            assert connection.getresponse().read()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10) as response:
            assert response.status == 200
        for connection in idle:
            connection.close()
        # a client stalled halfway through its upload: Ctrl-C answers it and stops within the grace, not its 30 s
        stalled = socket.create_connection(("127.0.0.1", port), timeout=30)
        stalled.sendall(b"POST /match HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + bytes(1000))
        time.sleep(0.5)
        began = time.monotonic()
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(30)
    assert time.monotonic() - began < 15
    answer = stalled.recv(200)
    # answered, though a worker process of several ends as soon as its application has shut down
    assert answer.startswith(b"HTTP/1.1 503"), answer
    stalled.close()
    said = server.stderr.read()
    assert "Traceback" not in said and "ERROR" not in said, said  # uvicorn's "Cancel 1 running task(s)" said plainly
    assert "stopping: 1 request(s) still running after 5 s were answered 503" in said


@pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl to make a certificate with")
def test_lmprint_serve_over_https_with_a_certificate_and_its_key(built_index, tmp_path):
    """Browsers lend the microphone page a microphone over HTTPS (or on localhost): `--certfile` and `--keyfile`
    serve it so, and a pair that does not fit is refused in one line before anything starts."""
    import ssl
    import subprocess
    import urllib.request

    from click.testing import CliRunner

    from lmprint.cli import main
    from lmprint.serve import is_loopback, urls_of

    certificate, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(certificate), "-days", "1", "-subj", "/CN=localhost", "-addext",
                    "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    fifo = tmp_path / "fifo.pem"
    os.mkfifo(fifo)
    locked = tmp_path / "locked.pem"  # a key with a passphrase: OpenSSL would ask for it on the terminal
    subprocess.run(["openssl", "pkey", "-in", str(key), "-out", str(locked), "-aes256", "-passout", "pass:secret"],
                   check=True, capture_output=True)
    for wrong, said in ((["--certfile", str(key)], f"{key}: no PEM certificate and matching private key"),
                        (["--keyfile", str(key)], "--keyfile goes with --certfile"),
                        (["--certfile", str(tmp_path / "gone.pem")], "gone.pem: no such file"),
                        (["--certfile", str(certificate), "--keyfile", str(tmp_path / "gone.pem")],
                         "gone.pem: no such file"),
                        (["--certfile", str(certificate), "--keyfile", str(locked)],
                         f"{locked}: the private key has a passphrase; serve needs it without"),
                        (["--certfile", str(fifo)], f"{fifo}: not a file")):  # not a wait for a writer
        result = CliRunner().invoke(main, ["--db", str(built_index), "serve", "--port", "0", *wrong])
        assert result.exit_code == 1 and result.output.count("\n") == 1 and said in result.output, result.output
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5")
    assert urls_of("127.0.0.1", 8000, True) == ["https://127.0.0.1:8000/"]
    with pytest.MonkeyPatch.context() as patch:  # every interface: the addresses others reach, not 0.0.0.0
        patch.setattr(socket, "gethostbyname_ex", lambda name: (name, [], ["127.0.0.1", "10.1.2.3"]))
        everywhere = urls_of("0.0.0.0", 80, False)
    assert "http://10.1.2.3:80/" in everywhere and not any("0.0.0.0" in url or "127." in url for url in everywhere)
    answer = threading.Event()  # a resolver that does not answer: the start goes on without its addresses
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket, "gethostbyname_ex", lambda name: (answer.wait(30), (name, [], ["10.9.9.9"]))[1])
        unresolved = urls_of("0.0.0.0", 80, False)
        answer.set()
    assert unresolved and not any("10.9.9.9" in url for url in unresolved), unresolved

    song = Index(built_index).catalogue.songs()[0]
    body = clip_bytes(song.path, 20.0, 5.0, tmp_path, "wav")
    trusting = ssl.create_default_context(cafile=str(certificate))
    server, port = started_serve(built_index, "--workers", "1", "--certfile", str(certificate), "--keyfile", str(key),
                                 context=trusting)
    try:
        request = urllib.request.Request(f"https://127.0.0.1:{port}/match", data=body, method="POST")
        with urllib.request.urlopen(request, timeout=60, context=trusting) as response:
            assert json.loads(response.read())["match"]["path"] == song.path
    finally:
        server.terminate()
        server.wait(30)
    assert f"at https://127.0.0.1:{port}/ (Ctrl-C stops)" in server.stderr.read()


def test_serve_refuses_a_missing_index_in_one_line(tmp_path):
    from click.testing import CliRunner

    from lmprint.cli import main

    result = CliRunner().invoke(main, ["--db", str(tmp_path / "none.db"), "serve"])
    assert result.exit_code == 1 and result.output.count("\n") == 1 and "lmprint:" in result.output


def test_serve_without_its_extra_says_what_to_install_in_one_line(built_index, monkeypatch):
    """The framework is imported in each worker, after the command has checked the index: a missing one is named
    before that, not met as a traceback in a worker."""
    import importlib.util
    import sys

    from click.testing import CliRunner

    from lmprint.cli import main

    monkeypatch.setitem(sys.modules, "starlette", None)  # importing it fails, as where it is not installed
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: None if name == "starlette" else real_find_spec(name, *args))
    result = CliRunner().invoke(main, ["--db", str(built_index), "serve"])
    assert result.exit_code == 1 and result.output.count("\n") == 1
    assert "[serve] extra (starlette is missing)" in result.output and "Traceback" not in result.output



def test_a_form_over_the_cap_is_refused_by_the_bytes_it_sends_whatever_length_it_declares(built_index):
    """A form's file part is spooled whole before its size is known, and a chunked body's framing wins over its
    Content-Length: a form declaring 100 bytes and sending a megabyte was read whole (to memory and to disk)
    before its 413. The bytes received are now counted as they come, and the form refused past the cap."""
    app = create_app(lambda: Index(built_index), ServeSettings(max_upload_bytes=10_000))
    read = []
    head = b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n'
    parts = [head, *[bytes(4096)] * 256, b"\r\n--XyZ--\r\n"]
    receive = body_of(*parts)

    async def counted():
        message = await receive()
        read.append(len(message.get("body", b"")))
        return message

    status, _ = asyncio.run(asgi_post(app, "/match", {"content-type": "multipart/form-data; boundary=XyZ",
                                                      "content-length": "100"}, counted))
    assert status == 413 and sum(read) < 20_000, (status, sum(read))


def test_a_song_uploaded_to_add_is_refused_by_the_length_it_decodes_to_when_its_header_declares_none(
        built_index, tmp_path):
    """A FLAC whose STREAMINFO sample count is 0 declares no length: `POST /songs` decoded all of it, however long
    (a constant level compresses to almost nothing). It is decoded no further than just past the cap now."""
    db = copied(built_index, tmp_path)
    long_song = tmp_path / "long.flac"
    write(long_song, np.r_[rendered(43, 20.0, 8000), np.full(8000 * 100, 0.25, np.float32)], 8000)
    data = bytearray(long_song.read_bytes())
    at = data.index(b"fLaC") + 4 + 4 + 10  # STREAMINFO: block header, then 10 bytes before the sample count
    data[at + 3] &= 0xF0  # its 36-bit sample count, from the low 4 bits of this byte on: 0, not declared
    data[at + 4:at + 8] = bytes(4)
    with client_for(db, allow_add=True, token="t", max_upload_s=60.0) as client:
        refused = client.post("/songs", files={"file": ("long.flac", bytes(data))},
                              headers={"authorization": "Bearer t"})
        assert refused.status_code == 413 and "over 60 s" in refused.json()["error"], refused.text
    from lmprint.files import decoded_duration_s

    (tmp_path / "undeclared.flac").write_bytes(bytes(data))
    assert 60.0 < decoded_duration_s(tmp_path / "undeclared.flac", 60.0) < 61.0  # of its 120 s


def test_a_listener_that_sends_no_audio_is_closed_and_gives_its_place_back(built_index):
    """A listener that sent its hello and then nothing (its client answering pings) held one of the few places for
    ever. It is told and closed after `read_timeout_s` without audio, and the next listener takes its place."""
    app = create_app(lambda: Index(built_index), ServeSettings(read_timeout_s=2.0, max_listeners=1))
    said: list[dict] = []

    def listen() -> None:
        with TestClient(app) as client:
            with client.websocket_connect("/listen") as socket:
                socket.send_json({"sample_rate": 8000})
                said.append(socket.receive_json())
                said.append(socket.receive_json())
            with client.websocket_connect("/listen") as socket:  # the only place, given back
                socket.send_json({"sample_rate": 8000})
                said.append(socket.receive_json())

    listener = threading.Thread(target=listen, daemon=True)  # never closed, it would wait for ever
    listener.start()
    listener.join(30)
    assert [event["event"] for event in said] == ["listening", "error", "listening"], said
    assert "no audio for 2 s" in said[1]["error"]


def test_a_connection_that_sends_no_request_head_in_time_is_closed_and_others_are_not():
    """uvicorn keeps a connection that never sends a request, or sends its headers a byte at a time, for as long
    as the client likes: enough of them take every place of a process. `lmprint serve` closes one whose request
    head is not in within the keep-alive timeout; a request sent in time, a connection kept alive between requests
    and a WebSocket are served as before."""
    import base64

    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route, WebSocketRoute

    from lmprint.connections import HeadDeadlineProtocol

    async def hello(request):
        return PlainTextResponse("hello")

    async def echo(websocket):
        await websocket.accept()
        await websocket.send_text(await websocket.receive_text())
        await websocket.close()

    app = Starlette(routes=[Route("/", hello), WebSocketRoute("/ws", echo)])
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, http=HeadDeadlineProtocol,
                                           timeout_keep_alive=1, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive()
        time.sleep(0.05)

    def connected() -> socket.socket:
        return socket.create_connection(("127.0.0.1", port), timeout=10)

    def closed_within(connection: socket.socket, seconds: float) -> bool:
        connection.settimeout(seconds)
        try:
            while connection.recv(4096):
                pass
            return True
        except TimeoutError:
            return False

    def answered(connection: socket.socket) -> bytes:
        said = b""
        while not said.endswith(b"hello"):
            said += connection.recv(4096)
        return said

    try:
        silent, trickling, in_time, upgraded = (connected() for _ in range(4))
        trickling.sendall(b"GET / HTTP/1.1\r\n")
        time.sleep(0.6)
        trickling.sendall(b"Host: x\r\n")  # still no whole head: the deadline counts from the connection's start
        in_time.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert answered(in_time).startswith(b"HTTP/1.1 200")
        key = base64.b64encode(bytes(16)).decode()
        upgraded.sendall(f"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                         f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
        assert upgraded.recv(4096).startswith(b"HTTP/1.1 101")
        started = time.monotonic()
        assert closed_within(silent, 5) and closed_within(trickling, 5)
        assert time.monotonic() - started < 4
        assert not closed_within(upgraded, 1.0)  # the WebSocket is past its head: no deadline
        upgraded.sendall(bytes([0x81, 0x82, 0, 0, 0, 0]) + b"hi")  # a masked text frame "hi" (a zero mask)
        assert upgraded.recv(4096).startswith(bytes([0x81, 0x02]) + b"hi")
        kept = connected()
        for _ in range(2):  # requests on a connection kept alive, each in time
            kept.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert answered(kept).startswith(b"HTTP/1.1 200")
            time.sleep(0.6)
        assert closed_within(kept, 5)  # ...and idle after them for longer than the timeout
        # an upload to a path that answers before reading it: the rest of its body is read within the deadline,
        # and a client that sends a byte more and then nothing is closed (uvicorn kept it for ever)
        early = connected()
        early.sendall(b"POST /nowhere HTTP/1.1\r\nHost: x\r\nContent-Length: 6000\r\n\r\n" + bytes(1000))
        assert early.recv(4096).startswith(b"HTTP/1.1 404")
        answered_at = time.monotonic()
        time.sleep(0.3)
        early.sendall(bytes(1))
        assert closed_within(early, 5) and time.monotonic() - answered_at < 3
        for connection in (silent, trickling, in_time, kept, upgraded, early):
            connection.close()
    finally:
        server.should_exit = True
        thread.join(10)


def test_lmprint_serve_runs_uvicorn_with_the_head_deadline(monkeypatch):
    """What `lmprint serve` hands uvicorn: the protocol above, its deadline the read timeout."""
    import uvicorn

    from lmprint.connections import HeadDeadlineProtocol
    from lmprint.serve import serve

    ran = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: ran.update(options, app=app))
    serve("lmprint.cli:serve_app", "127.0.0.1", 8000, 2, ServeSettings(read_timeout_s=12.0))
    assert ran["http"] is HeadDeadlineProtocol and ran["timeout_keep_alive"] == 12 and ran["workers"] == 2


def test_get_songs_lists_each_songs_copies(built_index, tmp_path):
    """`GET /songs` is `lmprint list --json`'s answer: every song with the paths of its copies."""
    db = copied(built_index, tmp_path)
    song = tmp_path / "original.flac"
    write(song, rendered(48, 20.0, SYNTH_RATE), SYNTH_RATE)
    with client_for(db, allow_add=True, token="t") as client:
        auth = {"authorization": "Bearer t"}
        added = client.post("/songs", files={"file": ("original.flac", song.read_bytes())}, headers=auth).json()
        copy = client.post("/songs", files={"file": ("a copy.flac", song.read_bytes())}, headers=auth).json()
        listed = client.get("/songs").json()
    assert added["added"] == 1 and copy["skipped"] == 1 and copy["path"] != added["path"]
    (entry,) = [song for song in listed if song["id"] == added["song_id"]]
    assert entry["copies"] == [copy["path"]], entry
    with Index(db) as index:
        assert listed == json.loads(json.dumps(index.catalogue.listed()))


def test_a_query_over_the_duration_cap_is_told_its_declared_length(built_index, tmp_path):
    """A query refused for its length names the seconds its file declares and the cap it is over."""
    song = Index(built_index).catalogue.songs()[0]
    with client_for(built_index, max_upload_s=30.0) as client:
        refused = client.post("/match", content=clip_bytes(song.path, 0.0, 38.0, tmp_path, "ogg"))
    assert refused.status_code == 413
    assert refused.json()["error"] == ("upload of 38 s of audio, over 30 s: only a query's first seconds are "
                                       "matched, so send those (e.g. ffmpeg -t 30)"), refused.text


def test_an_upload_not_received_within_the_read_timeout_gets_408(built_index):
    """A client that stalls mid-upload is answered 408 once `read_timeout_s` has passed."""
    app = create_app(lambda: Index(built_index), ServeSettings(read_timeout_s=0.5))

    async def stalled():
        never = asyncio.Event()
        began = time.monotonic()
        answer = await asyncio.wait_for(posted(app, "/match", {"content-length": "100000"},
                                               body_of(bytes(1000), then=never)), 10)
        return answer, time.monotonic() - began

    (status, body), took = asyncio.run(stalled())
    assert status == 408 and body == {"error": "upload not received within 0.5 s"}, (status, body)
    assert 0.4 < took < 5, took


def test_a_listener_whose_index_is_locked_is_told_to_try_again_later(built_index, monkeypatch):
    """A writer holding the index while a stream is followed is no fault of the listener's: close code 1013."""
    from lmprint.errors import IndexLocked

    def locked(self, *args, **kwargs):
        raise IndexLocked(f"{built_index} is locked by another process (gave up after 60 s)")

    monkeypatch.setattr(Index, "match_samples", locked)
    told, code = refused_listening(built_index)
    assert told["event"] == "error" and "locked by another process" in told["error"] and code == 1013, (told, code)


def test_a_listener_sending_faster_than_real_time_is_held_back(built_index, monkeypatch):
    """A client sending audio more than `MAX_AHEAD_S` ahead of real time is made to wait for it."""
    import lmprint.serve

    monkeypatch.setattr(lmprint.serve, "MAX_AHEAD_S", 1.0)
    with client_for(built_index) as client, client.websocket_connect("/listen") as socket:
        socket.send_json({"sample_rate": 8000})
        assert socket.receive_json() == {"event": "listening"}
        began = time.monotonic()
        for _ in range(10):  # 5 s of audio at once
            socket.send_bytes(np.zeros(4000, "<f4").tobytes())
        socket.send_text("end")  # answered once every chunk before it was taken
        assert socket.receive_json() == {"event": "error", "error": "send audio as binary frames"}
        took = time.monotonic() - began
    assert 3.0 <= took < 15, took


def test_serve_hands_uvicorn_its_address_connection_limit_and_shutdown_grace(monkeypatch):
    """What `lmprint serve` hands uvicorn besides the head deadline: the address, the cap on open connections
    and the grace given to requests in flight at a stop."""
    import uvicorn

    from lmprint.serve import MAX_OPEN_CONNECTIONS, SHUTDOWN_GRACE_S, serve

    ran = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: ran.update(options, app=app))
    serve("lmprint.cli:serve_app", "0.0.0.0", 8123, 2, ServeSettings(read_timeout_s=12.0))
    assert (ran["host"], ran["port"]) == ("0.0.0.0", 8123)
    assert ran["limit_concurrency"] == MAX_OPEN_CONNECTIONS == 512
    assert ran["timeout_graceful_shutdown"] == SHUTDOWN_GRACE_S == 5


def test_a_form_upload_without_a_content_length_is_refused(built_index):
    """A form sent without a Content-Length (chunked) is refused with 400, saying it needs one."""
    app = create_app(lambda: Index(built_index), ServeSettings())
    form = (b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n' + b"not audio" * 100
            + b"\r\n--XyZ--\r\n")
    status, body = asyncio.run(posted(app, "/match", {"content-type": "multipart/form-data; boundary=XyZ"},
                                      body_of(form[:200], form[200:])))
    assert status == 400 and body == {"error": "a form upload needs a Content-Length"}, (status, body)


def test_an_upload_whose_extension_is_in_capitals_keeps_its_name(built_index, tmp_path):
    """`LOUD.FLAC` is an audio file's name as it is: stored under it, and titled `LOUD`."""
    db = copied(built_index, tmp_path)
    song = tmp_path / "loud.flac"
    write(song, rendered(48, 20.0, SYNTH_RATE), SYNTH_RATE)
    with client_for(db, allow_add=True, token="t") as client:
        added = client.post("/songs", files={"file": ("LOUD.FLAC", song.read_bytes())},
                            headers={"authorization": "Bearer t"})
    assert added.status_code == 200 and os.path.basename(added.json()["path"]) == "LOUD.FLAC", added.text
    with Index(db) as index:
        assert [s.title for s in index.catalogue.songs_at(added.json()["path"])] == ["LOUD"]


def test_a_new_song_over_the_duration_cap_leaves_no_file(built_index, tmp_path):
    """`POST /songs` of a song longer than `max_upload_s` (by its header) is refused, and nothing is kept."""
    db = copied(built_index, tmp_path)
    song = tmp_path / "long.flac"
    write(song, rendered(49, 25.0, SYNTH_RATE), SYNTH_RATE)
    with client_for(db, allow_add=True, token="t", max_upload_s=10.0) as client:
        refused = client.post("/songs", files={"file": ("long.flac", song.read_bytes())},
                              headers={"authorization": "Bearer t"})
    assert refused.status_code == 413 and "over 10 s" in refused.json()["error"], refused.text
    assert not [path for path in (tmp_path / "lmprint-uploads").rglob("*") if path.is_file()]


def test_serve_names_the_missing_index_file(tmp_path):
    """A missing index is refused in one line that names the file, and how to make one."""
    from click.testing import CliRunner

    from lmprint.cli import main

    result = CliRunner().invoke(main, ["--db", str(tmp_path / "none.db"), "serve"])
    assert result.exit_code == 1
    assert result.output == f"lmprint: no index at {tmp_path / 'none.db'} (`lmprint add` creates one)\n"


def test_a_long_upload_name_whose_only_dot_is_in_its_title_is_cut_to_the_limit():
    """A name whose last dot is in its title, not before an extension, is cut as a whole to `MAX_NAME_BYTES`."""
    from lmprint.serve import MAX_NAME_BYTES, _safe_name

    for name in ("Vol. " + "a long title " * 20, "Live at the Roxy. " + "x" * 300):
        safe = _safe_name(name)
        assert len(safe.encode()) <= MAX_NAME_BYTES and safe == name[:len(safe)].rstrip(" ."), safe
        assert len(safe.encode()) >= MAX_NAME_BYTES - 4, safe
