"""BGR frames to a graph's input: ``to_input`` (the rule lives in ``msf.frameops.normalize``,
with its torch implementation) and the RGB -> BGR swap."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from msf.contract import InputSpec
from msf.frameops import normalize


def to_input(crops_bgr: Sequence[np.ndarray], spec: InputSpec) -> np.ndarray:
    """Square uint8 BGR crops stacked into the array ``spec`` describes (``normalize.to_input``)."""
    return normalize.to_input(spec, crops_bgr)


def rgb_to_bgr(img_rgb: np.ndarray) -> np.ndarray:
    """Swap an RGB image's channels to OpenCV's BGR order (contiguous copy)."""
    return np.ascontiguousarray(img_rgb[..., ::-1])
