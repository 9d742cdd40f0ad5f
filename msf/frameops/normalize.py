"""Normalise: square uint8 BGR crops to the array a graph takes. The spec is the contract's
``InputSpec`` (channel order, layout, dtype, scale, size).

Export verification, INT8 calibration, the runtime and the benchmarks all build inputs here, so
a graph is checked with exactly the input it will be run with. Implementations: ``bgr`` (numpy,
the reference), ``torch`` (crops already on a device).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from msf.contract import InputSpec
from msf.errors import MsfError
from msf.frameops.base import implements


@implements("input", "bgr")
def to_input(spec: InputSpec, crops_bgr: Sequence[np.ndarray]) -> np.ndarray:
    """Stack square uint8 BGR crops (H×W×3) into the array ``spec`` describes: channel order,
    layout, dtype and scale (uint8 input: raw pixels; float input: pixels × ``spec.scale``)."""
    if len(crops_bgr) == 0:
        raise MsfError("no images to batch")
    batch = np.stack(crops_bgr)
    if batch.ndim != 4 or batch.shape[-1] != 3 or batch.dtype != np.uint8:
        raise MsfError(f"expected H×W×3 uint8 BGR images, got {batch.dtype} {tuple(batch.shape[1:])}")
    if spec.size is not None and batch.shape[1:3] != (spec.size, spec.size):
        raise MsfError(f"the graph takes {spec.size}×{spec.size} images, got {batch.shape[1]}×{batch.shape[2]}")
    if spec.color == "rgb":
        batch = batch[..., ::-1]
    if spec.layout == "NCHW":
        batch = batch.transpose(0, 3, 1, 2)
    if spec.dtype == "uint8":
        return np.ascontiguousarray(batch)
    dtype = np.dtype(spec.dtype)
    out = np.ascontiguousarray(batch, dtype=dtype)
    out *= dtype.type(spec.scale)
    return out


@implements("input", "torch")
def to_input_torch(spec: InputSpec, crops: Any, dtype: Any = None) -> Any:
    """``to_input`` for an N×S×S×3 uint8 tensor (on its device); ``dtype`` overrides a float
    input's torch dtype (e.g. fp16 models)."""
    import torch

    x = crops
    if spec.color == "rgb":
        x = x.flip(-1)
    if spec.layout == "NCHW":
        x = x.permute(0, 3, 1, 2)
    if spec.dtype == "uint8":
        return x.contiguous()
    want = dtype or {"float32": torch.float32, "float16": torch.float16}[spec.dtype]
    return (x.to(torch.float32) * spec.scale).to(want).contiguous()
