"""`bench mert-speed`: windows per second of the full-size MERT-v1-95M architecture (random weights cost the
same as real ones) at several batch sizes, in fp32 and, on a GPU, bf16; and the time for a 3-minute song."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np


def measure(config_path: str | None, batches: list[int], device: str | None = None, dtypes=("fp32", "bf16"),
            repeats: int = 2) -> list[dict]:
    import torch
    from transformers import HubertModel

    from neural import mert

    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    values = mert.read_config(Path(config_path)) if config_path else mert.ARCHITECTURE
    model = HubertModel(mert.hubert_config(values)).eval().to(device)
    rows = []
    windows = np.random.default_rng(0).standard_normal((max(batches), 120_000)).astype(np.float32)
    for dtype in dtypes:
        if dtype == "bf16" and device == "cpu":
            continue
        encoder = mert.MertEncoder(model, device, dtype, "random full-size")
        encoder.embed_windows(windows[:1])  # warm-up
        for batch in batches:
            times = []
            for _ in range(repeats):
                if device.startswith("cuda"):
                    torch.cuda.synchronize()
                started = time.perf_counter()
                encoder.embed_windows(windows[:batch])
                if device.startswith("cuda"):
                    torch.cuda.synchronize()
                times.append(time.perf_counter() - started)
            rate = batch / min(times)
            rows.append({"device": device, "dtype": dtype, "batch": batch, "windows_per_s": round(rate, 2),
                         "song_3min_s": round(176 / rate, 1)})
    return rows


def main_rows(config_path: str | None, batches: list[int], device: str | None) -> None:
    for row in measure(config_path, batches, device):
        print(json.dumps(row))
