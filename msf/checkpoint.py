"""Checkpoint reading (every accepted layout, untrusted: ``weights_only=True``) and writing."""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

import torch

from msf.atomic import atomic_write
from msf.contract import DEFAULT_SIZE, MODEL_CONTRACT
from msf.errors import MsfError
from msf.labels import LABELS, PALETTE
from msf.model import MicroSegFormer, ModelConfig
from msf.paths import WEIGHTS_PATH

# The input the model takes (msf.contract.MODEL_CONTRACT), as every checkpoint records it; the
# scale is written as the fraction "1/255" checkpoints have always carried.
INPUT_CONVENTION = {"color": MODEL_CONTRACT.input.color, "layout": MODEL_CONTRACT.input.layout,
                    "scale": f"1/{round(1 / MODEL_CONTRACT.input.scale)}", "mean": None, "std": None}


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint file safely; a clear error for missing or non-checkpoint files."""
    path = Path(path)
    if not path.is_file():
        raise MsfError(f"checkpoint not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt or unsafe files
        raise MsfError(f"{path} is not a readable PyTorch checkpoint: {_load_error_reason(path, exc)}") from None
    if not isinstance(obj, dict):
        raise MsfError(f"{path} holds a {type(obj).__name__}, not a checkpoint dict")
    return obj


def _load_error_reason(path: Path, exc: Exception) -> str:
    """The likely cause of a torch.load failure, in words (torch's own message is long and often
    cryptic: "Unsupported operand 148", "pop from empty list")."""
    text = str(exc)
    if "WeightsUnpickler error" in text and "Unsupported operand" not in text:
        # Lines after the marker say what the unpickler refused (e.g. a class: code could run).
        after = [ln.strip() for ln in text.split("WeightsUnpickler error:", 1)[1].splitlines() if ln.strip()]
        return f"refused by the safe loader: {(after[0] if after else 'not plain tensors')[:160]}"
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(4)
    if size == 0:
        return "the file is empty"
    if head.startswith(b"PK\x03\x04"):  # torch.save's zip format
        import zipfile

        try:
            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()
        except zipfile.BadZipFile:
            return f"the archive is truncated or corrupt ({size:,} bytes; an interrupted download or copy?)"
        if not any(n.endswith("data.pkl") for n in names):
            return "a zip archive, but not one torch.save wrote"
        return f"the archive is corrupt ({type(exc).__name__})"
    if head[:1] == b"\x80":  # a pickle: torch.save's legacy format, or a plain pickle
        return "a pickle that is not a PyTorch checkpoint, or a corrupt legacy checkpoint"
    return f"the file is not in torch.save's format (a zip archive); it starts with {head!r}"


def extract_state_dict(obj: dict[str, Any], source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """The model weights of any accepted layout, with a DataParallel/DDP ``module.`` prefix removed."""
    for key in ("model_state_dict", "state_dict", "model"):
        if isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    state = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not state:
        raise MsfError(f"{source} contains no weights (expected model_state_dict, state_dict or a bare state dict)")
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def infer_config(state: dict[str, torch.Tensor]) -> ModelConfig:
    """Architecture read from the weights' shapes (LMSA detected from its keys)."""
    cfg = ModelConfig()
    dims, depths, srs = [], [], []
    for i in range(1, 5):
        w = state.get(f"patch_embed{i}.proj.weight")
        if w is None:
            return ModelConfig(use_lmsa=any(k.startswith("decoder.lmsa.") for k in state))
        dims.append(int(w.shape[0]))
        blocks = {int(m.group(1)) for k in state if (m := re.match(rf"block{i}\.(\d+)\.", k))}
        depths.append(max(blocks) + 1 if blocks else 0)
        sr = state.get(f"block{i}.0.attn.sr.weight")
        srs.append(int(sr.shape[-1]) if sr is not None else 1)
    cfg.embed_dims, cfg.depths, cfg.sr_ratios = dims, depths, srs
    fc1 = state.get("block1.0.mlp.fc1.weight")
    if fc1 is not None:
        cfg.mlp_ratio = fc1.shape[0] / fc1.shape[1]
    seg = state.get("decoder.conv_seg.weight")
    if seg is not None:
        cfg.num_classes, cfg.decoder_dim = int(seg.shape[0]), int(seg.shape[1])
    cfg.use_lmsa = any(k.startswith("decoder.lmsa.") for k in state)
    return cfg


def describe_mismatch(model: MicroSegFormer, state: dict[str, torch.Tensor]) -> str | None:
    """What keeps ``state`` from loading into ``model`` (missing/unexpected keys, shapes), or None."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
              for k, v in own.items() if k in state and state[k].shape != v.shape]
    parts = []
    for label, items in (("missing keys", missing), ("unexpected keys", unexpected),
                         ("shape mismatches", shapes)):
        if items:
            more = f" (+{len(items) - 3} more)" if len(items) > 3 else ""
            parts.append(f"{len(items)} {label}: {', '.join(items[:3])}{more}")
    return "; ".join(parts) or None


def build_model_from_state(state: dict[str, torch.Tensor], config: ModelConfig | dict | None = None,
                           source: str = "checkpoint") -> MicroSegFormer:
    """A MicroSegFormer holding ``state``; one-line error naming what does not fit."""
    if isinstance(config, dict):
        config = ModelConfig(**config)
    model = MicroSegFormer(config=config or infer_config(state))
    problem = describe_mismatch(model, state)
    if problem:
        raise MsfError(f"{source} is not a MicroSegFormer checkpoint: {problem}")
    model.load_state_dict(state, strict=True)
    return model


def load_checkpoint_model(path: str | Path | None = None,
                          map_location: str | torch.device = "cpu") -> MicroSegFormer:
    """A MicroSegFormer in eval mode from a checkpoint path (None = the shipped weights)."""
    if path is None:
        if not WEIGHTS_PATH.is_file():
            raise MsfError(f"no shipped weights in this install (looked for {WEIGHTS_PATH}); pass a checkpoint")
        path = WEIGHTS_PATH
    obj = read_checkpoint(path)
    state = extract_state_dict(obj, source=str(path))
    model_cfg = (obj.get("config") or {}).get("model") if isinstance(obj.get("config"), dict) else None
    model = build_model_from_state({k: v.float() for k, v in state.items()}, model_cfg, source=str(path))
    return model.to(map_location).eval()


def checkpoint_metadata(path: str | Path | None = None) -> dict[str, Any]:
    """Everything in a checkpoint except tensors and optimizer state (config, history, ...)."""
    obj = read_checkpoint(path or WEIGHTS_PATH)
    skip = {"model_state_dict", "state_dict", "optimizer_state_dict", "scheduler_state_dict", "scaler_state_dict"}
    return {k: v for k, v in obj.items() if k not in skip and not isinstance(v, torch.Tensor)}


def recommended_size(path: str | Path | None = None) -> int:
    """The square input size a checkpoint is meant to run at: its ``input_size`` entry (msf-train
    records its validation size; the shipped weights record the size chosen by measurement), else
    the historic default, ``DEFAULT_SIZE``. None = the shipped weights."""
    p = Path(path or WEIGHTS_PATH)
    try:
        st = p.stat()
    except OSError:
        return DEFAULT_SIZE
    return _recorded_size(str(p.resolve()), st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=16)
def _recorded_size(path: str, mtime_ns: int, nbytes: int) -> int:
    try:
        size = read_checkpoint(path).get("input_size")
    except MsfError:
        return DEFAULT_SIZE
    return int(size) if isinstance(size, int) and not isinstance(size, bool) and size > 0 else DEFAULT_SIZE


def atomic_save(obj: Any, path: str | Path) -> None:
    """torch.save without ever leaving a half-written checkpoint."""
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def standard_metadata() -> dict[str, Any]:
    """Labels, palette and input convention stored in every checkpoint msf writes."""
    return {"labels": list(LABELS), "palette": PALETTE.tolist(), "input": dict(INPUT_CONVENTION)}
