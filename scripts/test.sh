#!/usr/bin/env bash
# Install everything the tests need, then run the whole test suite. CI (.ci/run) calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q --disable-pip-version-check torch==2.13.0   # the local CPU wheel, first: see README
python3 -m pip install -q --disable-pip-version-check -e '.[neural,bench,test]'
python3 -m pytest -q "$@"
