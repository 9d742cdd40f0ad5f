"""Class ids, names and palette in the official CelebAMask-HQ order."""

from __future__ import annotations

import numpy as np

LABELS: tuple[str, ...] = (
    "background", "skin", "nose", "eye_g", "l_eye", "r_eye", "l_brow", "r_brow", "l_ear",
    "r_ear", "mouth", "u_lip", "l_lip", "hair", "hat", "ear_r", "neck_l", "neck", "cloth",
)
NUM_CLASSES = len(LABELS)

PALETTE = np.array(
    [
        (0, 0, 0), (204, 0, 0), (76, 153, 0), (204, 204, 0), (51, 51, 255), (204, 0, 204),
        (0, 255, 255), (255, 204, 204), (102, 51, 0), (255, 0, 0), (102, 204, 0), (255, 255, 0),
        (0, 0, 153), (0, 0, 204), (255, 51, 153), (0, 204, 204), (0, 51, 0), (255, 153, 51),
        (0, 204, 0),
    ],
    dtype=np.uint8,
)

# Left/right pairs ("left" is the subject's left): a horizontal flip swaps them.
LR_PAIRS: tuple[tuple[int, int], ...] = ((4, 5), (6, 7), (8, 9))


def flip_lut() -> np.ndarray:
    """Lookup table mapping each class id to its mirror-image class id."""
    lut = np.arange(256, dtype=np.uint8)
    for a, b in LR_PAIRS:
        lut[a], lut[b] = b, a
    return lut


def palette_bytes() -> list[int]:
    """The palette flattened for ``PIL.Image.putpalette`` (768 entries)."""
    flat = PALETTE.flatten().tolist()
    return flat + [0] * (768 - len(flat))
