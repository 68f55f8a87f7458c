"""The microphone page in a real browser: headless Chromium (Debian's, through Playwright) hears a noisy clip of
an indexed song through its fake microphone and shows the song's title. `scripts/get-browser.sh` installs both;
without them the test is skipped. With $LMPRINT_SCREENSHOT set, the page naming the song is saved there."""

import os
import shutil
import socket
import threading
import time

import numpy as np
import pytest

from bench.audio_io import write
from landmark import Index, audio

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
def server(built_index):
    """`lmprint serve`'s app under uvicorn on a free loopback port, in a thread."""
    uvicorn = pytest.importorskip("uvicorn")
    from lmprint.serve import ServeSettings, create_app

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(create_app(lambda: Index(built_index), ServeSettings()), host="127.0.0.1", port=port,
                            log_level="warning")
    running = uvicorn.Server(config)
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not running.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/"
    running.should_exit = True
    thread.join(10)


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium (scripts/get-browser.sh installs it)")
def test_the_page_names_a_song_played_into_the_microphone_within_10_s(server, built_index, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    song = Index(built_index).catalogue.songs()[1]
    rate = 48000
    clip = audio.load(song.path, rate)[rate * 4:rate * 34]
    clip = clip + 0.03 * np.random.default_rng(2).standard_normal(clip.size).astype(np.float32)  # a noisy room
    microphone = tmp_path / "clip.wav"
    write(microphone, clip, rate)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={microphone}", "--autoplay-policy=no-user-gesture-required"])
        try:
            page = browser.new_page(viewport={"width": 720, "height": 560})
            page.goto(server)
            page.click("#listen")
            page.wait_for_function("document.getElementById('title').textContent.length > 0", timeout=10_000)
            assert page.text_content("#title") == song.title
            assert "listening" in page.text_content("#status")
            if os.environ.get("LMPRINT_SCREENSHOT"):
                page.screenshot(path=os.environ["LMPRINT_SCREENSHOT"])
        finally:
            browser.close()
