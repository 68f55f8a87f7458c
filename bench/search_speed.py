"""`bench search-speed`: Hamming search time for one query song (10 codes) at 100k and 1M songs, and the cost of
the per-song code steps (k-means, PCA). Codes are random: search time does not depend on their content."""

from __future__ import annotations

import time

import numpy as np


def measure(sizes: list[int], repeats: int = 5, seed: int = 0) -> list[dict]:
    from neural import codes, search

    rng = np.random.default_rng(seed)
    rows = []
    for songs in sizes:
        library = rng.integers(0, 256, (songs * 10, 32), dtype=np.uint8)
        words, code_song = search.as_columns(library), np.repeat(np.arange(songs), 10)
        for n_query in (10, 1):  # a query song's 10 codes; a 5 s clip's single window
            query = rng.integers(0, 256, (n_query, 32), dtype=np.uint8)
            search.rank(query, words, code_song, songs)  # compile / load the kernel
            times = []
            for _ in range(repeats):
                started = time.perf_counter()
                search.rank(query, words, code_song, songs, rule="min")
                times.append(time.perf_counter() - started)
            rows.append({"songs": songs, "query_codes": n_query,
                         "search_ms_median": round(1000 * float(np.median(times)), 1)})
    windows = rng.standard_normal((175, 768)).astype(np.float32)
    started = time.perf_counter()
    for k in range(5):
        codes.kmeans(windows, seed=k)
    kmeans_ms = (time.perf_counter() - started) / 5 * 1000
    reference = rng.standard_normal((70_000, 768)).astype(np.float32)
    started = time.perf_counter()
    codes.Projection.fit(reference)
    pca_s = time.perf_counter() - started
    rows.append({"kmeans_ms_per_song": round(kmeans_ms, 1), "pca_fit_s_70k_x_768": round(pca_s, 2)})
    return rows
