"""A backend that does no inference: correctly shaped labels, instantly.

``msf-video --backend null`` runs the whole pipeline (decode, crop, paste, render, encode)
with inference taking no time, which shows what the pipeline itself costs. The labels are a
fixed face-like drawing (skin, brows, eyes, nose, lips, hair on background), so pasting and
blending do as much work as with a real face. The tests use it as their fake backend.
"""

from __future__ import annotations

import cv2
import numpy as np

from msf.contract import DEFAULT_SIZE, RUNTIME_CONTRACT
from msf.runtime.backends import Backend


def face_pattern(size: int) -> np.ndarray:
    """A size×size uint8 label map that looks like a parsed face (the same every call)."""
    lab = np.zeros((size, size), np.uint8)
    c, s = size // 2, size / 512

    def ell(cx: float, cy: float, ax: float, ay: float, cls: int) -> None:
        cv2.ellipse(lab, (int(cx * s), int(cy * s)), (max(1, int(ax * s)), max(1, int(ay * s))), 0, 0, 360,
                    cls, -1)

    ell(c / s, 230, 190, 200, 13)  # hair
    ell(c / s, 280, 150, 190, 1)  # skin
    ell(200, 230, 30, 12, 4)  # eyes
    ell(312, 230, 30, 12, 5)
    ell(200, 200, 40, 8, 6)  # brows
    ell(312, 200, 40, 8, 7)
    ell(256, 300, 22, 40, 2)  # nose
    ell(256, 380, 50, 14, 11)  # lips
    return lab


class NullBackend(Backend):
    """uint8 NHWC BGR frames in, a fixed label map per frame out (no computation)."""

    name = "null"
    precision = "none"
    device = "cpu"

    def __init__(self, size: int = DEFAULT_SIZE) -> None:
        super().__init__(RUNTIME_CONTRACT.with_input(size=size))
        self._pattern = face_pattern(size)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """N×size×size labels for an N-frame batch (a read-only broadcast view: no copy)."""
        return np.broadcast_to(self._pattern, (len(batch),) + self._pattern.shape)

    def labels(self, batch: np.ndarray) -> np.ndarray:
        return self.infer(batch)

    def describe(self) -> str:
        return "null (no inference)"
