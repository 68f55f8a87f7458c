#!/usr/bin/env bash
# Fetch the public benchmark corpus into OUTDIR (OUTDIR/music, OUTDIR/noise): free game soundtracks and ambient
# noise from Debian's archive, and babble made with espeak-ng. About 450 MB and 3 minutes.
#   scripts/get-corpus.sh OUTDIR
# Installs the Debian tools it needs first (espeak-ng, sox; the packages come by apt-get download).
set -euo pipefail
out=$(realpath -m "${1:?usage: get-corpus.sh OUTDIR}")  # before the cd below: OUTDIR is the caller's
need=()
for tool in espeak-ng sox; do command -v "$tool" >/dev/null || need+=("$tool"); done
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq espeak-ng sox libsox-fmt-all >/dev/null
fi
cd "$(dirname "$0")/.."
. scripts/python-env.sh
python3 -m pip install -q --disable-pip-version-check -e '.[bench]'
bench corpus "$out"
