#!/usr/bin/env bash
# Build the public benchmark corpus: real music from Debian's free game soundtracks, and real noise.
#   scripts/get-corpus.sh OUTDIR [PACKAGE...]     music into OUTDIR (manifest.tsv beside it)
#   NOISE=1 scripts/get-corpus.sh OUTDIR          also ambient noise and babble into OUTDIR/noise
# Installs the Debian tools the download scripts need (ffmpeg, sox, unzip, espeak-ng) first.
set -euo pipefail
out=${1:?usage: get-corpus.sh OUTDIR [PACKAGE...]}; shift
shared="$(cd "$(dirname "$0")/../.." && pwd)/shared/corpus"
[ -d "$shared" ] || { echo "get-corpus: $shared not found (the download scripts live there)" >&2; exit 2; }
need=()
for tool in ffmpeg sox unzip espeak-ng; do command -v "$tool" >/dev/null || need+=("$tool"); done
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg sox libsox-fmt-all unzip espeak-ng >/dev/null
fi
bash "$shared/get-debian-music.sh" "$out" "$@"
if [ "${NOISE:-0}" = 1 ]; then bash "$shared/get-noise.sh" "$out/noise"; fi
