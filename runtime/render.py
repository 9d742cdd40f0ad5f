"""Drawing on frames: palette overlay, class legend, HUD (FPS, latency, backend), side-by-side."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from msf.labels import LABELS, PALETTE
from msf.runtime.yuv import i420_planes

_PALETTE_BGR = PALETTE[:, ::-1].copy()
# 256-entry, 3-channel lookup table for cv2.LUT (ids beyond the palette are black).
_LUT_BGR = np.zeros((256, 1, 3), np.uint8)
_LUT_BGR[: len(PALETTE), 0] = _PALETTE_BGR


def _palette_i420() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The palette as Y, U and V lookup tables (256×1 each), converted as frames are: each colour
    as a 2×2 block through OpenCV's BGR -> I420."""
    blocks = np.repeat(np.repeat(_LUT_BGR[:, 0][None], 2, axis=0), 2, axis=1)  # 2 × 512 × 3
    yuv = cv2.cvtColor(blocks, cv2.COLOR_BGR2YUV_I420)  # 3 rows: Y, Y, then U and V (256 each)
    chroma = yuv[2].reshape(2, 256)
    return (np.ascontiguousarray(yuv[0, ::2]).reshape(256, 1), chroma[0].reshape(256, 1).copy(),
            chroma[1].reshape(256, 1).copy())


_LUT_Y, _LUT_U, _LUT_V = _palette_i420()


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


def overlay_i420(yuv: np.ndarray, labels: np.ndarray, alpha: float) -> np.ndarray:
    """``overlay_bgr`` drawn in place on an I420 buffer (the encoder's format): the palette's Y
    blended at full resolution, U and V at half (each 2×2 block takes its top-left pixel's class).
    Equal to converting ``overlay_bgr``'s result to I420 up to rounding, at half the work (a third
    of the bytes, no colour conversion of the frame)."""
    h, w = labels.shape
    x, y, bw, bh = cv2.boundingRect(labels)
    if bw == 0 or bh == 0:
        return yuv
    x0, y0 = x & ~1, y & ~1  # whole chroma blocks
    x1, y1 = min(w, (x + bw + 1) & ~1), min(h, (y + bh + 1) & ~1)
    lab = labels[y0:y1, x0:x1]
    halves = cv2.resize(lab, ((x1 - x0) // 2, (y1 - y0) // 2), interpolation=cv2.INTER_NEAREST)
    y_plane, u_plane, v_plane = i420_planes(yuv, h)
    for plane, lut, lb, (a0, b0, a1, b1) in (
            (y_plane, _LUT_Y, lab, (x0, y0, x1, y1)),
            (u_plane, _LUT_U, halves, (x0 // 2, y0 // 2, x1 // 2, y1 // 2)),
            (v_plane, _LUT_V, halves, (x0 // 2, y0 // 2, x1 // 2, y1 // 2))):
        roi = plane[b0:b1, a0:a1]
        color = cv2.LUT(lb, lut)
        cv2.addWeighted(roi, 1 - alpha, color, alpha, 0, dst=color)
        cv2.copyTo(color, lb, roi)
    return yuv


def draw_i420(yuv: np.ndarray, h: int, rows: int, cols: int, draw: Callable[[np.ndarray], None]) -> None:
    """Run ``draw(bgr)`` (an OpenCV drawing on a BGR image) on the top-left rows×cols corner of an
    I420 frame: that corner goes to BGR and back, the rest is untouched."""
    rows, cols = min(h, rows + rows % 2), min(yuv.shape[1], cols + cols % 2)
    corner = [(p[: rows >> s, : cols >> s]) for p, s in zip(i420_planes(yuv, h), (0, 1, 1))]
    patch = np.empty((rows * 3 // 2, cols), np.uint8)
    for dst, src in zip(i420_planes(patch, rows), corner):
        dst[:] = src
    bgr = cv2.cvtColor(patch, cv2.COLOR_YUV2BGR_I420)
    draw(bgr)
    for dst, src in zip(corner, i420_planes(cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420), rows)):
        dst[:] = src


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


def hud_box(height: int, width: int, lines: int) -> tuple[int, int, float, int]:
    """The HUD's (rows, cols) on a height×width frame, its text scale and line height."""
    scale = max(0.45, height / 1200)
    line = int(28 * scale / 0.6)
    return 8 + line * lines + 1, int(width * 0.42) + 1, scale, line


def draw_hud(img: np.ndarray, lines: list[str], frame_hw: tuple[int, int] | None = None) -> None:
    """FPS/latency lines on a black box in the top-left corner, sized for the frame (``frame_hw``
    when ``img`` is only that corner of it)."""
    rows, cols, scale, h = hud_box(*(frame_hw or img.shape[:2]), len(lines))
    cv2.rectangle(img, (0, 0), (cols - 1, rows - 1), (0, 0, 0), -1)
    for i, text in enumerate(lines):
        cv2.putText(img, text, (8, h * (i + 1)), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)


def render_i420(yuv: np.ndarray, h: int, labels: np.ndarray, opts: RenderOptions,
                hud: list[str] | None = None) -> np.ndarray:
    """``render`` in place on an h-row I420 frame, for options the I420 path takes (no legend, no
    side-by-side): the overlay blended in I420, the HUD drawn in BGR on its own corner."""
    overlay_i420(yuv, labels, opts.alpha)
    if opts.hud and hud:
        w = yuv.shape[1]
        rows, cols, scale, _ = hud_box(h, w, len(hud))
        text = max(cv2.getTextSize(t, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0] for t in hud)
        draw_i420(yuv, h, rows, max(cols, 8 + text + 2), lambda bgr: draw_hud(bgr, hud, (h, w)))
    return yuv


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
