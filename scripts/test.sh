#!/usr/bin/env bash
# Install everything the tests need, then run every test (the slow ones too; one checks that the CLI reference is
# current), the linter and the type checker. CI (.ci/run) calls exactly this; extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/python-env.sh
# torch first, pinned: a range would let pip pick a CUDA build of several GB (see the README for a CPU build)
python3 -m pip install -q --disable-pip-version-check torch==2.13.0
python3 -m pip install -q --disable-pip-version-check -e '.[neural,bench,serve,test]'
bash scripts/get-browser.sh || echo "scripts/get-browser.sh failed: the real-browser test will be skipped" >&2
python3 -m pytest -q -m "slow or not slow" "$@"
python3 -m ruff check .
python3 -m mypy
