"""MERT-v1-95M embeddings of 5 s windows: load local weights strictly, cut windows, embed.

MERT-v1-95M is architecturally transformers' `HubertModel`: its checkpoint (keys without a prefix) loads with
strict=True into `HubertModel(HubertConfig(...))` built from its config.json with the MERT-only keys dropped, so
no remote code is needed. Weights are never downloaded: a folder, or a Hugging Face cache the user already has.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lmprint.errors import ModelError, os_reason

from .settings import MertSettings

SAMPLE_RATE_HZ = 24000
"""MERT-v1 was trained on 24 kHz audio."""


HUB_NAME = "m-a-p/MERT-v1-95M"
RUNS_ON = ("cpu", "cuda", "mps", "xpu")
"""The kinds of torch device MERT is run on (autocast knows these, Intel's GPUs being "xpu"; "meta", say, holds no
values)."""
DIGEST_VALUES = 1024
"""`weights_digest` reads this many values of each tensor: another training run or a fine-tune changes them all."""

ARCHITECTURE = {
    "model_type": "mert_model", "architectures": ["MERTModel"], "feature_extractor_cqt": False,
    "attention_relax": -1.0, "sample_rate": SAMPLE_RATE_HZ,
    "conv_dim": [512] * 7, "conv_kernel": [10, 3, 3, 3, 3, 2, 2], "conv_stride": [5, 2, 2, 2, 2, 2, 2],
    "conv_bias": False, "feat_extract_norm": "group", "feat_extract_activation": "gelu",
    "feat_proj_layer_norm": True, "do_stable_layer_norm": False, "hidden_act": "gelu", "layer_norm_eps": 1e-5,
    "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072,
    "num_conv_pos_embeddings": 128, "num_conv_pos_embedding_groups": 16,
}
"""MERT-v1-95M's architecture, as its published config.json gives it (MERT-only keys included, which
`hubert_config` drops): what a checkpoint must fit, and what `bench mert-speed` builds with random weights."""


def windows(signal: np.ndarray, sample_rate_hz: int = SAMPLE_RATE_HZ, window_s: float = MertSettings.window_s,
            hop_s: float = MertSettings.hop_s) -> np.ndarray:
    """5 s windows with a 1 s hop from 0, tail dropped: a 180 s song gives 176 windows.

    A clip shorter than one window becomes one window of its own length. It is not zero-padded: padding
    changes the mean-pooled embedding a lot, while MERT embeds any length, so a 3 s clip is embedded as 3 s.
    """
    length = int(window_s * sample_rate_hz)
    hop = int(hop_s * sample_rate_hz)
    if signal.size < length:
        return signal[None, :].astype(np.float32)
    count = 1 + (signal.size - length) // hop
    # a view (no copy for float32 input): an hour's windows copied would take 1.7 GB; `embed` copies a batch at a time
    return np.lib.stride_tricks.sliding_window_view(signal, length)[::hop][:count].astype(np.float32, copy=False)


def standardise(batch: np.ndarray) -> np.ndarray:
    """Zero mean, unit variance per window: (x − mean) / (std + 1e-7)."""
    mean = batch.mean(axis=1, keepdims=True)
    std = batch.std(axis=1, keepdims=True)
    return ((batch - mean) / (std + 1e-7)).astype(np.float32)


def resolve_model_dir(model: str | os.PathLike | None, option: str = "--model") -> Path:
    """A local folder holding config.json and the weights, from `model` (a folder, or a hub name found in an
    existing Hugging Face cache). Raises ModelError, naming the command's `option` that gives a model; never
    downloads."""
    given = option
    if model is None:
        model, given = ((os.environ["LMPRINT_MERT_MODEL"], "$LMPRINT_MERT_MODEL")
                        if os.environ.get("LMPRINT_MERT_MODEL") else (HUB_NAME, "the default, no --model given"))
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    if "/" in str(model) and not path.is_absolute() and not path.exists():  # a hub name
        try:
            from huggingface_hub import snapshot_download

            return Path(snapshot_download(str(model), local_files_only=True))
        except Exception:  # noqa: BLE001 - any failure here means "not in the local cache"
            pass
    raise ModelError(f"no MERT weights at {str(model)!r} ({given}): pass {option} with a local folder holding "
                     f"config.json and pytorch_model.bin or model.safetensors (weights are never downloaded; see "
                     f"README, 'Getting the MERT weights')")


def read_config(config_path: Path) -> dict:
    """A checkpoint's config.json, as a dict."""
    try:
        values = json.loads(Path(config_path).read_text())
    except OSError as error:
        raise ModelError(f"{config_path}: {os_reason(error)} (a MERT checkpoint folder holds config.json)") from None
    except ValueError as error:
        raise ModelError(f"{config_path}: not JSON ({_first_line(error)})") from None
    if not isinstance(values, dict):
        raise ModelError(f"{config_path}: not a MERT configuration (a JSON object)")
    return values


def hubert_config(values: dict):
    """HubertConfig from a MERT config (config.json's values), MERT-only keys dropped."""
    from transformers import HubertConfig

    if values.get("feature_extractor_cqt"):
        raise ModelError("CQT feature extractor checkpoints are not HubertModel-compatible")
    accepted = set(inspect.signature(HubertConfig.__init__).parameters)
    kept = {k: v for k, v in values.items() if k in accepted and k not in ("architectures", "auto_map")}
    return HubertConfig(**kept)


def _weights_file(folder: Path) -> Path:
    """The checkpoint's weights: model.safetensors where it has one, else pytorch_model.bin. Raises ModelError."""
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (folder / name).exists():
            return folder / name
    raise ModelError(f"{folder} has no model.safetensors or pytorch_model.bin")


def _state_dict(folder: Path) -> dict:
    import torch

    weights = _weights_file(folder)
    try:
        if weights.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(weights))
        return torch.load(str(weights), map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - a corrupt file is a user error, not a bug
        # not torch's paragraph, which suggests loading the file with code execution allowed
        detail = "not a checkpoint that loads as plain tensors" if isinstance(error, pickle.UnpicklingError) \
            else _first_line(error)
        raise ModelError(f"cannot read the weights in {folder}: {detail} (damaged, or not MERT's?)") from None


@dataclass
class MertEncoder:
    """A frozen MERT (HubertModel) that maps windows to L2-normalised mean-pooled last hidden states."""

    model: Any  # transformers.HubertModel (torch is imported lazily)
    device: str
    dtype: str
    name: str
    digest: str | None = None
    """`weights_digest` of the checkpoint; None for weights of no file (random, for speed benches)."""

    @property
    def dims(self) -> int:
        return int(self.model.config.hidden_size)

    def embed_windows(self, batch: np.ndarray) -> np.ndarray:
        """(n, samples) windows at 24 kHz → (n, hidden_size) float32, each row of unit length."""
        import torch

        inputs = torch.from_numpy(standardise(batch)).to(self.device)
        autocast = torch.autocast(device_type=self.device.split(":")[0], dtype=torch.bfloat16,
                                  enabled=self.dtype == "bf16")
        with torch.inference_mode(), autocast:
            hidden = self.model(inputs).last_hidden_state
        pooled = hidden.float().mean(dim=1)
        pooled = torch.nn.functional.normalize(pooled, dim=1)
        return pooled.cpu().numpy().astype(np.float32)

    def embed(self, signal: np.ndarray, batch_size: int = 16, progress=None, window_s: float = MertSettings.window_s,
              hop_s: float = MertSettings.hop_s) -> np.ndarray:
        """Embeddings of every window of a 24 kHz signal, in batches."""
        cut = windows(signal, SAMPLE_RATE_HZ, window_s, hop_s)
        out = np.empty((cut.shape[0], self.dims), np.float32)
        for start in range(0, cut.shape[0], batch_size):
            out[start:start + batch_size] = self.embed_windows(cut[start:start + batch_size])
            if progress is not None:
                progress.update(min(batch_size, cut.shape[0] - start))
        return out


NEEDS_TORCH = ("the MERT method needs torch and transformers: pip install torch --index-url "
               "https://download.pytorch.org/whl/cpu && pip install 'lmprint[neural]'")
"""What a load without torch or transformers says."""


def checked_model_dir(model: str | os.PathLike | None, option: str = "--model") -> Path:
    """`resolve_model_dir`, with what a load needs that can be told without loading the model: a config.json that
    parses, a weights file, and torch and transformers installed. For a run that loads it later, in another
    process, so that a wrong folder stops it before any work. Raises ModelError."""
    import importlib.util

    folder = resolve_model_dir(model, option)
    read_config(folder / "config.json")
    _weights_file(folder)
    if importlib.util.find_spec("torch") is None or importlib.util.find_spec("transformers") is None:
        raise ModelError(NEEDS_TORCH)
    return folder


def load(model: str | os.PathLike | None = None, device: str | None = None, dtype: str = "fp32",
         threads: int | None = None) -> MertEncoder:
    """Load MERT strictly from local files. `device`: a torch device of a kind in `RUNS_ON` ("cuda", "cpu", ...)
    or None (cuda when present)."""
    folder = resolve_model_dir(model)  # before importing torch: a wrong folder is reported at once
    try:
        import torch
        from transformers import HubertModel
    except ImportError:
        raise ModelError(NEEDS_TORCH) from None
    if dtype not in ("fp32", "bf16"):
        raise ModelError(f"unknown dtype {dtype!r} (fp32 or bf16)")
    config = read_config(folder / "config.json")
    try:
        network = HubertModel(hubert_config(config))
    except ModelError:
        raise
    except Exception as error:  # noqa: BLE001 - a config transformers refuses, in whatever kind its version raises
        raise ModelError(f"{folder}/config.json: not a MERT configuration ({_first_line(error)})") from None
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if threads:
        torch.set_num_threads(threads)
    state = _state_dict(folder)
    try:
        network.load_state_dict(state, strict=True)
    except RuntimeError as error:  # torch's first line only says that loading failed: the keys are on the next
        lines = str(error).splitlines()
        detail = (_cut(lines[1].strip()) if len(lines) > 1 else _first_line(error)) or "mismatched keys"
        raise ModelError(f"{folder}: the weights do not fit MERT's architecture ({detail})") from None
    digest = weights_digest(network.state_dict())  # as loaded: the names a checkpoint's age gives are evened out
    try:
        if torch.device(device).type not in RUNS_ON:
            raise ValueError(f"MERT runs on {', '.join(RUNS_ON)}")
        network.eval().to(device)
    except (RuntimeError, ValueError, AssertionError) as error:  # "gpu", or cuda on a CPU-only build
        raise ModelError(f"cannot use device {device!r}: {_first_line(error)}") from None
    return MertEncoder(network, device, dtype, str(folder), digest)


def weights_digest(state: dict) -> str:
    """A short digest of a checkpoint's weights (each tensor's name, shape and first values): what tells two
    checkpoints of one architecture apart (another training run, a fine-tune), whose codes cannot be compared,
    wherever their folders lie."""
    import torch

    digest = hashlib.sha1()
    for name in sorted(state):
        tensor = state[name]
        digest.update(f"{name}{tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().reshape(-1)[:DIGEST_VALUES].to(torch.float32).cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def _first_line(error: Exception) -> str:
    """An error's first line (`_cut`), or its type's name."""
    return _cut(str(error).splitlines()[0]) if str(error) else type(error).__name__


def _cut(line: str, max_chars: int = 200) -> str:
    """A line of an error, cut to `max_chars`: torch lists every key or device type it knows in one line."""
    return line if len(line) <= max_chars else line[:max_chars - 1] + "…"
