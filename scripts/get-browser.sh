#!/usr/bin/env bash
# Install what the real-browser tests of `lmprint serve`'s page need: Debian's chromium and Playwright's Python
# driver (no browser download: the test points Playwright at the system chromium), and Debian's Firefox ESR,
# PulseAudio (a null sink is Firefox's microphone) and Mozilla's Marionette client.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/python-env.sh
if ! command -v chromium >/dev/null || ! command -v firefox-esr >/dev/null || ! command -v pulseaudio >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium firefox-esr pulseaudio \
    pulseaudio-utils >/dev/null
fi
python3 -m pip install -q --disable-pip-version-check 'playwright>=1.45' 'marionette_driver>=3.7'
