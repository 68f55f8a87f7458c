"""MERT binary codes: 320 bytes per song, searched by Hamming distance. Needs the `[neural]` extra (torch)."""
