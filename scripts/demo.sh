#!/usr/bin/env bash
# The main job end to end on a fresh machine: install lmprint, index some music, identify a noisy clip of it.
#   scripts/demo.sh            generated music (no download)
#   scripts/demo.sh --real     real music: a free game soundtrack from Debian's archive (apt, about a minute)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/python-env.sh
python3 -m pip install -q --disable-pip-version-check -e .
work=${DEMO_DIR:-/tmp/lmprint-demo}
mkdir -p "$work"
export LMPRINT_DB="$work/index.db"
rm -f "$LMPRINT_DB" "$LMPRINT_DB-wal" "$LMPRINT_DB-shm"  # a fresh index each run (an older lmprint's is refused)
if [ "${1:-}" = "--real" ]; then
  bench corpus "$work/corpus" --no-noise --package hedgewars-data
  music="$work/corpus/music/hedgewars-data"
else
  bench generate "$work/music" --songs 20 --duration 60
  music="$work/music"
fi
lmprint add --jobs 2 "$music"
lmprint stats
clip="$work/clip.mp3"
bench clip "$(find "$music" -type f \( -name '*.ogg' -o -name '*.flac' \) | sort | sed -n 3p)" "$clip" \
  --start 21.37 --duration 5 --snr-db 0
echo "query: 5 s from 21.37 s of the third song, with noise at 0 dB SNR, as MP3:"
lmprint match "$clip"
bench generate "$work/unknown" --songs 1 --duration 20 --seed 999
lmprint match "$work/unknown"/*.flac
