"""Drawing on frames: palette overlay, class legend, HUD (FPS, latency, backend), side-by-side."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from msf.labels import LABELS, PALETTE

_PALETTE_BGR = PALETTE[:, ::-1].copy()
# 256-entry, 3-channel lookup table for cv2.LUT (ids beyond the palette are black).
_LUT_BGR = np.zeros((256, 1, 3), np.uint8)
_LUT_BGR[: len(PALETTE), 0] = _PALETTE_BGR


@dataclass
class RenderOptions:
    alpha: float = 0.5
    legend: bool = False
    hud: bool = True
    side_by_side: bool = False


def overlay_bgr(frame: np.ndarray, labels: np.ndarray, alpha: float, out: np.ndarray | None = None) -> np.ndarray:
    """Palette colours blended over the frame where a class other than background was found.

    Only the bounding box of the foreground is touched, with whole-array OpenCV operations
    (colour map, addWeighted, masked copy): several times faster than numpy indexing on 720p
    frames. ``out`` may be ``frame`` itself (drawn in place) or None (a copy is drawn on).
    """
    if out is None:
        out = frame.copy()
    elif out is not frame:
        np.copyto(out, frame)
    x, y, w, h = cv2.boundingRect(labels)  # of the non-zero (foreground) pixels
    if w == 0 or h == 0:
        return out
    lab = labels[y:y + h, x:x + w]
    roi = out[y:y + h, x:x + w]
    color = cv2.applyColorMap(lab, _LUT_BGR)  # one pass; cv2.LUT would need a 3-channel copy first
    cv2.addWeighted(roi, 1 - alpha, color, alpha, 0, dst=color)
    cv2.copyTo(color, lab, roi)  # foreground only: the background keeps the original pixels
    return out


def draw_legend(img: np.ndarray, present: np.ndarray | None = None) -> None:
    """Class swatches down the right edge (only the classes present, when given)."""
    ids = [i for i in range(1, len(LABELS)) if present is None or present[i]]
    scale = max(0.35, img.shape[0] / 1400)
    row = int(22 * scale / 0.5)
    x = img.shape[1] - int(150 * scale / 0.5)
    for k, cid in enumerate(ids):
        y = 8 + k * row
        cv2.rectangle(img, (x, y), (x + row - 4, y + row - 4), tuple(int(c) for c in _PALETTE_BGR[cid]), -1)
        cv2.putText(img, LABELS[cid], (x + row, y + row - 8), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1,
                    cv2.LINE_AA)


def draw_hud(img: np.ndarray, lines: list[str]) -> None:
    scale = max(0.45, img.shape[0] / 1200)
    h = int(28 * scale / 0.6)
    cv2.rectangle(img, (0, 0), (int(img.shape[1] * 0.42), 8 + h * len(lines)), (0, 0, 0), -1)
    for i, text in enumerate(lines):
        cv2.putText(img, text, (8, h * (i + 1)), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)


def render(frame: np.ndarray, labels: np.ndarray | None, opts: RenderOptions, hud: list[str] | None = None,
           in_place: bool = False, overlaid: np.ndarray | None = None) -> np.ndarray:
    """The output frame: overlay (optionally beside the original), legend and HUD.

    ``in_place``: draw on ``frame`` itself (the pipeline owns its frames; saves a copy).
    ``overlaid``: the overlay already made elsewhere (on the GPU); ``labels`` are then only
    needed for the legend."""
    if overlaid is not None:
        out = overlaid
    else:
        out = overlay_bgr(frame, labels, opts.alpha, frame if in_place and not opts.side_by_side else None)
    if opts.legend and labels is not None:
        draw_legend(out, np.bincount(labels.ravel(), minlength=len(LABELS)) > 0)
    if opts.side_by_side:
        out = np.hstack([frame, out])
    if opts.hud and hud:
        draw_hud(out, hud)
    return out
