"""I420 frame buffers: OpenCV's layout (``COLOR_BGR2YUV_I420``), and PyAV's planes.

An h×w frame is one (h * 3 / 2) × w uint8 array: h rows of Y, then U and V at h/2 × w/2 each,
stored one after the other (h/4 rows of the array each). h and w must be even.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from msf.frameops.base import i420_planes

__all__ = ["i420_planes", "plane_view"]


def plane_view(plane: Any) -> np.ndarray:
    """A writable height×width uint8 view of one plane of a PyAV frame (rows padded to line_size)."""
    return np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, : plane.width]
