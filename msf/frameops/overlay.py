"""Overlay: the palette colour of each pixel's class blended over the picture where the class is
not background; background pixels keep their values exactly.

``OverlaySpec`` is the overlay in numbers: ``alpha`` (colour weight) and the channel ``order``
of the picture (bgr frames, rgb figures). Per pixel: round((1 - alpha)·pixel + alpha·colour).

Implementations: ``bgr`` (OpenCV, only the foreground's bounding box is touched; ``order`` rgb
serves figures), ``i420`` (in place on an I420 buffer, the encoder's format: the palette's Y
blended at full resolution, U and V at half, each 2×2 block taking its top-left pixel's class;
the palette's Y, U, V are its colours converted as frames are), ``torch``. ``reference`` is the
spec in numpy.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import cv2
import numpy as np

from msf.frameops.base import i420_planes, implements
from msf.labels import PALETTE

ORDERS = ("bgr", "rgb")


def _lut(order: str) -> np.ndarray:
    """256×1×3 lookup table of the palette (ids beyond it black)."""
    lut = np.zeros((256, 1, 3), np.uint8)
    lut[: len(PALETTE), 0] = PALETTE[:, ::-1] if order == "bgr" else PALETTE
    return lut


LUTS = {order: _lut(order) for order in ORDERS}


def _palette_i420() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The palette as Y, U and V lookup tables (256×1 each), converted as frames are: each colour
    as a 2×2 block through OpenCV's BGR -> I420."""
    blocks = np.repeat(np.repeat(LUTS["bgr"][:, 0][None], 2, axis=0), 2, axis=1)  # 2 × 512 × 3
    yuv = cv2.cvtColor(blocks, cv2.COLOR_BGR2YUV_I420)  # 3 rows: Y, Y, then U and V (256 each)
    chroma = yuv[2].reshape(2, 256)
    return (np.ascontiguousarray(yuv[0, ::2]).reshape(256, 1), chroma[0].reshape(256, 1).copy(),
            chroma[1].reshape(256, 1).copy())


LUT_Y, LUT_U, LUT_V = _palette_i420()


@dataclass(frozen=True)
class OverlaySpec:
    alpha: float = 0.5
    order: str = "bgr"

    def __post_init__(self) -> None:
        if not 0 <= self.alpha <= 1 or self.order not in ORDERS:
            raise ValueError(f"overlay needs 0 <= alpha <= 1 and order in {ORDERS}")


@implements("overlay", "bgr")
def overlay_bgr(spec: OverlaySpec, frame: np.ndarray, labels: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """The overlay of an H×W×3 numpy picture. ``out`` may be ``frame`` itself (drawn in place)
    or None (a copy is drawn on)."""
    if out is None:
        out = frame.copy()
    elif out is not frame:
        np.copyto(out, frame)
    x, y, w, h = cv2.boundingRect(labels)  # of the non-zero (foreground) pixels
    if w == 0 or h == 0:
        return out
    lab = labels[y:y + h, x:x + w]
    roi = out[y:y + h, x:x + w]
    color = cv2.applyColorMap(lab, LUTS[spec.order])  # one pass; cv2.LUT would need a 3-channel copy first
    cv2.addWeighted(roi, 1 - spec.alpha, color, spec.alpha, 0, dst=color)
    cv2.copyTo(color, lab, roi)  # foreground only: the background keeps the original pixels
    return out


def overlay(frame: np.ndarray, labels: np.ndarray, alpha: float = 0.5, order: str = "bgr",
            out: np.ndarray | None = None) -> np.ndarray:
    """Palette colours blended over a numpy picture where ``labels`` is foreground."""
    return overlay_bgr(OverlaySpec(alpha, order), frame, labels, out)


@implements("overlay", "i420")
def overlay_i420(spec: OverlaySpec, yuv: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The overlay drawn in place on an I420 buffer of a frame ``labels.shape`` (even sizes)."""
    h, w = labels.shape
    x, y, bw, bh = cv2.boundingRect(labels)
    if bw == 0 or bh == 0:
        return yuv
    x0, y0 = x & ~1, y & ~1  # whole chroma blocks
    x1, y1 = min(w, (x + bw + 1) & ~1), min(h, (y + bh + 1) & ~1)
    lab = labels[y0:y1, x0:x1]
    halves = lab[::2, ::2]  # each chroma block: its top-left pixel's class
    y_plane, u_plane, v_plane = i420_planes(yuv, h)
    for plane, lut, lb, (a0, b0, a1, b1) in (
            (y_plane, LUT_Y, lab, (x0, y0, x1, y1)),
            (u_plane, LUT_U, halves, (x0 // 2, y0 // 2, x1 // 2, y1 // 2)),
            (v_plane, LUT_V, halves, (x0 // 2, y0 // 2, x1 // 2, y1 // 2))):
        roi = plane[b0:b1, a0:a1]
        color = cv2.LUT(lb, lut)
        cv2.addWeighted(roi, 1 - spec.alpha, color, spec.alpha, 0, dst=color)
        cv2.copyTo(color, np.ascontiguousarray(lb), roi)
    return yuv


@lru_cache(maxsize=8)
def _palette_torch(order: str, device: str) -> Any:
    import torch

    return torch.as_tensor(LUTS[order][:, 0], device=device)


@implements("overlay", "torch")
def overlay_torch(spec: OverlaySpec, frame: Any, labels: Any) -> Any:
    """The overlay of an H×W×3 uint8 tensor (a new tensor on its device)."""
    import torch

    from msf.frameops.fit import to_u8

    color = _palette_torch(spec.order, str(frame.device))[labels.long()]
    blend = to_u8(frame.float() * (1 - spec.alpha) + color.float() * spec.alpha)
    return torch.where((labels > 0)[..., None], blend, frame)


# ---- the spec in numpy, for the conformance test ---------------------------------------------

def reference(spec: OverlaySpec, frame: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``spec`` in float64 numpy."""
    color = LUTS[spec.order][labels, 0].astype(np.float64)
    blend = np.floor(frame * (1 - spec.alpha) + color * spec.alpha + 0.5).astype(np.uint8)
    return np.where((labels > 0)[..., None], blend, frame)


def reference_i420(spec: OverlaySpec, yuv: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The I420 implementation's spec per plane: Y blended per pixel, U and V per 2×2 block by
    its top-left pixel's class, with the palette's Y, U, V."""
    h = labels.shape[0]
    out = yuv.copy()
    a = spec.alpha
    for plane, lut, lab in zip(i420_planes(out, h), (LUT_Y, LUT_U, LUT_V),
                               (labels, labels[::2, ::2], labels[::2, ::2])):
        blend = np.floor(plane * (1 - a) + lut[lab, 0].astype(np.float64) * a + 0.5).astype(np.uint8)
        plane[:] = np.where(lab > 0, blend, plane)
    return out
