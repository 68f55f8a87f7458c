#!/usr/bin/env bash
# Material outside the public corpus, to check that settings tuned on the public bench hold for music in general.
#   scripts/get-unseen.sh OUTDIR
# OUTDIR/music: real recordings (about 6 h, 67 tracks) from Debian game packages whose music the public corpus
#   does not use: warzone2100-music, freedroidrpg-data, flare-game, openclonk-data, frozen-bubble-data
#   (flare-game's sound effects, not its music, are among the public ambient noises).
# OUTDIR/noise, OUTDIR/rir: synthetic noises and rooms (`bench unseen-noise`).
# Then, as docs/bench.md ("Material that is not in the public corpus") does:
#   bench compare --methods landmark --corpus OUTDIR/music --noise OUTDIR/noise --rir OUTDIR/rir --quick --out OUT
set -euo pipefail
out=$(realpath -m "${1:?usage: get-unseen.sh OUTDIR}")  # before the cd below: OUTDIR is the caller's
mkdir -p "$out/music" "$out/.debs"
apt-cache show warzone2100-music >/dev/null 2>&1 || apt-get update -qq  # package lists, on a fresh machine
need=()
for tool in espeak-ng sox; do command -v "$tool" >/dev/null || need+=("$tool"); done
if [ ${#need[@]} -gt 0 ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq espeak-ng sox libsox-fmt-all >/dev/null
fi
# package, the folder of its music inside the package, which files. Variants of other tracks ("_enhanced") are
# left out: a clip of one would rightly match the other.
while read -r package folder pattern; do
  if ! ls "$out/.debs/${package}"_*.deb >/dev/null 2>&1; then
    (cd "$out/.debs" && apt-get download "$package" 2>&1 >/dev/null | { grep -v unsandboxed >&2 || true; })
  fi
  unpacked=$(mktemp -d)
  dpkg -x "$(ls "$out/.debs/${package}"_*.deb | head -1)" "$unpacked"
  mkdir -p "$out/music/$package"
  (cd "$unpacked/$folder" && find . -type f -name "$pattern" ! -name '*_enhanced*' | sort) | while read -r file; do
    file=${file#./}
    cp "$unpacked/$folder/$file" "$out/music/$package/${file//\//__}"  # albums/a/track1.opus -> albums__a__track1.opus
  done
  rm -rf "$unpacked"
  echo "$package: $(ls "$out/music/$package" | wc -l) tracks" >&2
done <<'PACKAGES'
warzone2100-music usr/share/games/warzone2100/music *.opus
freedroidrpg-data usr/share/freedroidrpg/data/sound/music *.ogg
flare-game usr/share/games/flare/mods/fantasycore/music *.ogg
openclonk-data usr/share/games/openclonk/Music.ocg *.ogg
frozen-bubble-data usr/share/games/frozen-bubble/snd *zik*.ogg
PACKAGES
cd "$(dirname "$0")/.."
python3 -m pip install -q --disable-pip-version-check -e '.[bench]'
bench unseen-noise "$out"
