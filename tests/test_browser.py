"""The microphone page in real browsers: headless Chromium (Debian's, through Playwright) hears a noisy clip of
an indexed song through its fake microphone, and headless Firefox (Debian's ESR, through Marionette) hears it
from a PulseAudio null sink's monitor, its default microphone; each shows the song's title.
`scripts/get-browser.sh` installs them; without them a test is skipped. With $LMPRINT_SCREENSHOT set, Chromium's
page naming the song is saved there."""

import contextlib
import os
import re
import shutil
import socket
import subprocess
import threading
import time

import numpy as np
import pytest

from bench.audio_io import write
from landmark import Index, audio

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FIREFOX = shutil.which("firefox-esr") or shutil.which("firefox")
PULSEAUDIO = shutil.which("pulseaudio")


@pytest.fixture
def server(built_index, request):
    """`lmprint serve`'s app under uvicorn on a free loopback port, in a thread (`ServeSettings` of the test's
    parameter, if any)."""
    with served(built_index, **getattr(request, "param", {})) as (url, _):
        yield url


@contextlib.contextmanager
def served(built_index, **settings):
    """(URL, uvicorn's server) of the app served in a thread; stopped at the end, as Ctrl-C stops it."""
    uvicorn = pytest.importorskip("uvicorn")
    from lmprint.serve import ServeSettings, create_app

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(create_app(lambda: Index(built_index), ServeSettings(**settings)), host="127.0.0.1",
                            port=port, log_level="warning")
    running = uvicorn.Server(config)
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not running.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}/", running
    finally:
        running.should_exit = True
        thread.join(10)


def chromium_page(playwright, microphone, *args: str):
    """A headless Chromium whose microphone plays `microphone` (a WAV), and a page of it."""
    browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
        "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={microphone}", "--autoplay-policy=no-user-gesture-required", *args])
    return browser, browser.new_page(viewport={"width": 720, "height": 560})


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium (scripts/get-browser.sh installs it)")
def test_the_page_names_a_song_played_into_the_microphone_within_10_s(server, built_index, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    song = Index(built_index).catalogue.songs()[1]
    microphone = tmp_path / "clip.wav"
    noisy_clip(song.path, microphone)
    with sync_api.sync_playwright() as playwright:
        browser, page = chromium_page(playwright, microphone)
        try:
            page.goto(server)
            page.click("#listen")
            page.wait_for_function("document.getElementById('title').textContent.length > 0", timeout=10_000)
            assert page.text_content("#title") == song.title
            assert "listening" in page.text_content("#status")
            if os.environ.get("LMPRINT_SCREENSHOT"):
                page.screenshot(path=os.environ["LMPRINT_SCREENSHOT"])
        finally:
            browser.close()


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium (scripts/get-browser.sh installs it)")
@pytest.mark.parametrize("server", [{"max_listeners": 0}], indirect=True)
def test_the_page_says_why_it_cannot_listen_and_may_listen_again(server, built_index, tmp_path):
    """Served to another device over plain HTTP, the page has no microphone to ask for (browsers lend one to HTTPS
    and localhost alone): it says what to do. A server that refuses the stream (here: no listener allowed) has its
    reason shown, where the page said "Disconnected", and Listen can be pressed again."""
    sync_api = pytest.importorskip("playwright.sync_api")
    microphone = tmp_path / "clip.wav"
    noisy_clip(Index(built_index).catalogue.songs()[1].path, microphone)
    elsewhere = server.replace("127.0.0.1", "lmprint.test")  # a name of this machine that is not localhost
    with sync_api.sync_playwright() as playwright:
        browser, page = chromium_page(playwright, microphone, "--host-resolver-rules=MAP lmprint.test 127.0.0.1")
        try:
            page.goto(elsewhere)
            page.click("#listen")
            assert "HTTPS" in page.text_content("#status") and "--certfile" in page.text_content("#status")
            page.goto(server)
            page.click("#listen")
            page.wait_for_function("document.getElementById('status').textContent.startsWith('Stopped')",
                                   timeout=10_000)
            assert page.text_content("#status") == "Stopped: too many listeners; try again later."
            assert page.is_enabled("#listen")
        finally:
            browser.close()


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium (scripts/get-browser.sh installs it)")
def test_a_song_playing_when_the_server_stops_is_kept_in_the_heard_list(built_index, tmp_path):
    """A stopping server closes the stream (1012) without a closed event: the page ends the song playing where the
    audio it sent ends, in its list of songs heard, rather than dropping it."""
    sync_api = pytest.importorskip("playwright.sync_api")
    song = Index(built_index).catalogue.songs()[1]
    microphone = tmp_path / "clip.wav"
    noisy_clip(song.path, microphone)
    with served(built_index) as (url, running), sync_api.sync_playwright() as playwright:
        browser, page = chromium_page(playwright, microphone)
        try:
            page.goto(url)
            began = time.monotonic()
            page.click("#listen")
            page.wait_for_function("document.getElementById('title').textContent.length > 0", timeout=10_000)
            assert page.text_content("#heard") == ""
            # the clip is the song from 4 s in: "heard at" the stream's clock, "from" the song's
            heard_at, song_at = re.search(rf"heard at {CLOCK} · from {CLOCK} into the song",
                                          page.text_content("#detail") or "").group(1, 2)
            assert abs(seconds(song_at) - seconds(heard_at) - 4) <= 1, (heard_at, song_at)
            running.should_exit = True
            page.wait_for_function("document.getElementById('status').textContent.startsWith('Disconnected') "
                                   "|| document.getElementById('status').textContent.startsWith('Stopped')",
                                   timeout=10_000)
            heard = page.text_content("#heard li")
            assert heard is not None and heard.startswith(f"{song.title} (0:0")
            start, end = re.search(rf"\({CLOCK}–{CLOCK}\)", heard).group(1, 2)  # seconds of audio sent
            assert seconds(start) <= seconds(end) <= time.monotonic() - began + 1, heard
            assert page.text_content("#title") == ""
        finally:
            browser.close()


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium (scripts/get-browser.sh installs it)")
def test_a_song_that_ended_is_listed_once_when_the_server_stops(built_index, tmp_path):
    """12 s of a song, then silence: the song's closed event lists it, and the server stopping later lists
    nothing more (the page ends only a song still playing)."""
    sync_api = pytest.importorskip("playwright.sync_api")
    song = Index(built_index).catalogue.songs()[1]
    rate = 48000
    clip = audio.load(song.path, rate)[rate * 4:rate * 16]
    clip = np.concatenate([clip, np.zeros(rate * 30, np.float32)])
    microphone = tmp_path / "clip.wav"
    write(microphone, clip + 0.01 * np.random.default_rng(2).standard_normal(clip.size).astype(np.float32), rate)
    with served(built_index) as (url, running), sync_api.sync_playwright() as playwright:
        browser, page = chromium_page(playwright, microphone)
        try:
            page.goto(url)
            page.click("#listen")
            page.wait_for_function("document.querySelectorAll('#heard li').length == 1", timeout=30_000)
            assert page.text_content("#heard li").startswith(song.title)
            running.should_exit = True
            page.wait_for_function("document.getElementById('status').textContent.startsWith('Disconnected') "
                                   "|| document.getElementById('status').textContent.startsWith('Stopped')",
                                   timeout=10_000)
            assert page.eval_on_selector_all("#heard li", "items => items.length") == 1
        finally:
            browser.close()


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium (scripts/get-browser.sh installs it)")
def test_a_stream_the_server_ends_shows_its_reason_and_listen_works_again(built_index, tmp_path):
    """The server's error event is the reason the page shows (it sends no audio often enough for a read timeout
    of 0.2 s: a chunk every 0.5 s), and Listen, pressed again, connects again and is stopped again."""
    sync_api = pytest.importorskip("playwright.sync_api")
    microphone = tmp_path / "clip.wav"
    noisy_clip(Index(built_index).catalogue.songs()[1].path, microphone)
    with served(built_index, read_timeout_s=0.2) as (url, _), sync_api.sync_playwright() as playwright:
        browser, page = chromium_page(playwright, microphone)
        try:
            page.goto(url)
            for _ in range(2):
                page.evaluate("document.getElementById('status').textContent = ''")
                page.click("#listen")
                page.wait_for_function("['Stopped', 'Disconnected'].some((word) => "
                                       "document.getElementById('status').textContent.startsWith(word))",
                                       timeout=10_000)
                assert page.text_content("#status") == "Stopped: no audio for 0.2 s."
        finally:
            browser.close()


CLOCK = r"(\d+:\d\d)"
"""A time as the page writes it (minutes:seconds)."""


def seconds(clock: str) -> int:
    minutes, rest = clock.split(":")
    return 60 * int(minutes) + int(rest)


def noisy_clip(song_path: str, path, rate: int = 48000) -> None:
    """30 s of the song from 4 s in, with a noisy room's hiss, written to `path`."""
    clip = audio.load(song_path, rate)[rate * 4:rate * 34]
    clip = clip + 0.03 * np.random.default_rng(2).standard_normal(clip.size).astype(np.float32)
    write(path, clip, rate)


@pytest.fixture
def room(tmp_path, monkeypatch):
    """A PulseAudio server of its own with one null sink, `room`, whose monitor is the default source: what is
    played into the sink is what a browser's microphone hears."""
    runtime = tmp_path / "pulse"
    runtime.mkdir()
    socket_path = runtime / "native"
    server = subprocess.Popen(
        [PULSEAUDIO, "-n", "--daemonize=no", "--exit-idle-time=-1", "--disallow-exit", "--use-pid-file=no",
         f"--load=module-native-protocol-unix auth-anonymous=1 socket={socket_path}",
         "--load=module-null-sink sink_name=room"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "XDG_RUNTIME_DIR": str(runtime),
                                                                 "HOME": str(tmp_path)})
    monkeypatch.setenv("PULSE_SERVER", f"unix:{socket_path}")
    deadline = time.monotonic() + 15
    while not socket_path.exists() and server.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    if not socket_path.exists():
        server.kill()
        pytest.fail(f"pulseaudio did not start: {server.stderr.read().decode(errors='replace')[-500:]}")
    subprocess.run(["pactl", "set-default-source", "room.monitor"], check=True)
    subprocess.run(["pactl", "set-default-sink", "room"], check=True)
    yield
    server.terminate()
    server.wait(10)


@pytest.mark.skipif(FIREFOX is None or PULSEAUDIO is None,
                    reason="no firefox or pulseaudio (scripts/get-browser.sh installs them)")
def test_the_page_names_a_song_played_into_firefox_s_microphone_within_10_s(server, built_index, tmp_path, room):
    marionette = pytest.importorskip("marionette_driver.marionette")
    from marionette_driver.by import By

    song = Index(built_index).catalogue.songs()[1]
    microphone = tmp_path / "clip.wav"
    noisy_clip(song.path, microphone)
    client = marionette.Marionette(bin=FIREFOX, headless=True, startup_timeout=60,
                                   gecko_log=str(tmp_path / "gecko.log"), prefs={
        "media.navigator.permission.disabled": True,  # no prompt for the microphone
        "media.navigator.streams.fake": False,  # the real default source: the room's monitor
        "media.autoplay.default": 0, "media.autoplay.blocking_policy": 0})
    player = None
    try:
        client.start_session()
        client.navigate(server)
        client.find_element(By.ID, "listen").click()
        player = subprocess.Popen(["paplay", "--device=room", str(microphone)])
        deadline = time.monotonic() + 10
        title = ""
        while not title and time.monotonic() < deadline:
            time.sleep(0.25)
            title = client.find_element(By.ID, "title").text
        assert title == song.title, client.find_element(By.ID, "status").text
        assert "listening" in client.find_element(By.ID, "status").text
    finally:
        if player is not None:
            player.terminate()
        client.cleanup()
