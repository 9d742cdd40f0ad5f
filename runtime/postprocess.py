"""Label-map clean-up for face crops: drop the labelled islands that are not attached to a face."""

from __future__ import annotations

import cv2
import numpy as np

from msf.labels import LABELS

# The face's own parts: a labelled region is kept when it holds at least one of these pixels
# (hair, hat, neck, cloth and ears count only when they are joined to one).
CORE_CLASSES = tuple(LABELS.index(n) for n in ("skin", "nose", "eye_g", "l_eye", "r_eye", "l_brow", "r_brow",
                                               "mouth", "u_lip", "l_lip"))
_CORE_LUT = np.zeros(256, dtype=bool)
_CORE_LUT[list(CORE_CLASSES)] = True


def drop_islands(labels: np.ndarray) -> np.ndarray:
    """``labels`` (H×W class ids of one face crop) with every 8-connected foreground region that
    holds no core face pixel set to background: the blobs a face parser paints on seats, windows
    and walls around a face. Without any core pixel (no face parsed) the labels are returned as
    they are."""
    fg = (labels > 0).view(np.uint8)
    n, comp = cv2.connectedComponents(fg, connectivity=8)
    if n <= 2:  # background and at most one region: nothing to drop
        return labels
    core = _CORE_LUT[labels]
    keep = np.zeros(n, dtype=bool)
    keep[np.unique(comp[core])] = True
    keep[0] = False
    if not keep.any():
        return labels
    return np.where(keep[comp], labels, 0).astype(labels.dtype)
