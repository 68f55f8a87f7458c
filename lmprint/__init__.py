"""lmprint: offline song identification. This package is the application around the two engines:

- `lmprint.catalogue`: the index file and its songs catalogue, shared by every engine;
- `lmprint.files`: finding audio files and hashing their content;
- `lmprint.results`, `lmprint.errors`: what the API returns and raises;
- `lmprint.method`: the interface both engines (`landmark.Index`, `neural.library.MertIndex`) implement;
- `lmprint.cli`: the `lmprint` command, the only module that imports the engines.
"""
