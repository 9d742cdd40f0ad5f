"""Sidecar metadata ``<artifact>.json`` beside every exported file (DESIGN §6 graph contract).

Metadata stays out of the artifact bytes, so trtexec, Triton and plain ORT load files as they are.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
from pathlib import Path
from typing import Any

from msf import __version__
from msf.atomic import atomic_write
from msf.labels import LABELS, PALETTE


def sidecar_path(artifact: str | Path) -> Path:
    return Path(f"{artifact}.json")


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def library_versions() -> dict[str, str | None]:
    """Versions of the libraries an artifact depends on (None when not installed)."""
    import importlib.metadata as md

    out: dict[str, str | None] = {"msf": __version__}
    for name, dist in (("torch", "torch"), ("onnx", "onnx"), ("onnxruntime", None), ("tensorrt", "tensorrt")):
        cands = [dist] if dist else ["onnxruntime", "onnxruntime-gpu"]
        out[name] = None
        for d in cands:
            try:
                out[name] = md.version(d)
                break
            except md.PackageNotFoundError:
                continue
    if out["tensorrt"] is None:
        try:
            import tensorrt  # noqa: F401  (JetPack and NVIDIA containers install it outside pip)

            out["tensorrt"] = tensorrt.__version__
        except Exception:  # noqa: BLE001
            pass
    return out


def build_sidecar(*, fmt: str, precision: str, target: str, spec, checkpoint_sha256: str | None,
                  extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The sidecar dict for an artifact exported under ``spec`` (an ``ExportSpec``)."""
    ends = spec.ends
    if ends.io == "uint8":
        inp = {"name": "image", "dtype": "uint8", "layout": "NHWC", "color": ends.color, "scale": 1.0}
    else:
        inp = {"name": "image", "dtype": "float16" if precision == "fp16" else "float32",
               "layout": "NCHW", "color": "rgb", "scale": 1 / 255}
    inp["size"] = spec.size  # None = dynamic
    inp["batch"] = spec.batch  # None = dynamic
    out = {"name": ends.head, "kind": ends.head,
           "dtype": "uint8" if ends.head == "labels" else ("float16" if precision == "fp16" else "float32")}
    data = {
        "format": fmt, "precision": precision, "target": target,
        "attention": spec.attention, "attention_core": spec.resolved_core, "opset": spec.resolved_opset,
        "input": inp, "output": out, "labels": list(LABELS), "palette": PALETTE.tolist(),
        "checkpoint_sha256": checkpoint_sha256,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": library_versions(),
    }
    if extra:
        data.update(extra)
    return data


def write_json_atomic(path: str | Path, data: dict[str, Any]) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(data, indent=2) + "\n"))


def read_sidecar(artifact: str | Path) -> dict[str, Any] | None:
    """The artifact's sidecar, or None when it has none (a file exported elsewhere)."""
    p = sidecar_path(artifact)
    if not p.is_file():
        return None
    return json.loads(p.read_text())
