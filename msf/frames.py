"""BGR frames to a graph's input, in numpy: the reference implementation of ``InputSpec``.

Export verification, INT8 calibration, the runtime and the benchmarks all build inputs here, so
a graph is checked with exactly the input it will be run with. (A torch implementation for
frames already on a GPU must give the same arrays; tests compare the two.)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from msf.contract import InputSpec
from msf.errors import MsfError


def to_input(crops_bgr: Sequence[np.ndarray], spec: InputSpec) -> np.ndarray:
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


def rgb_to_bgr(img_rgb: np.ndarray) -> np.ndarray:
    """Swap an RGB image's channels to OpenCV's BGR order (contiguous copy)."""
    return np.ascontiguousarray(img_rgb[..., ::-1])
