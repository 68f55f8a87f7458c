#!/usr/bin/env bash
# Install what the real-browser test of `lmprint serve`'s page needs: Debian's chromium and Playwright's Python
# driver (no browser download: the test points Playwright at the system chromium).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v chromium >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
python3 -m pip install -q --disable-pip-version-check 'playwright>=1.45'
