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


# HUD and legend: sized for the frame, readable, and never over MAX_AREA of the picture. Text
# below MIN_SCALE (OpenCV's simplex font ~8 px high) is not readable: the HUD drops its later
# lines instead, the legend moves to a panel beside the picture.
FONT = cv2.FONT_HERSHEY_SIMPLEX
MAX_AREA = 0.15
MIN_SCALE = 0.35


def preferred_scale(height: int) -> float:
    """The text scale a frame of this height gets when there is room: grows with the frame."""
    return max(0.45, height / 1200)


def _text_width(text: str, scale: float = 1.0) -> int:
    return cv2.getTextSize(text, FONT, scale, 1)[0][0]


@dataclass(frozen=True)
class HudLayout:
    """Where the HUD goes: a rows×cols box in the top-left corner holding ``lines`` at ``scale``,
    one every ``line`` rows (rows 0: no HUD, the frame is too small for readable text)."""

    rows: int
    cols: int
    scale: float
    line: int
    pad: int
    lines: tuple[str, ...]


# At text scale 1: line pitch, padding.
_HUD_LINE, _HUD_PAD = 40, 12


def hud_layout(height: int, width: int, lines: list[str] | tuple[str, ...]) -> HudLayout:
    """The HUD box for ``lines`` on a height×width picture: the largest scale up to
    ``preferred_scale`` at which the box stays within ``MAX_AREA`` of the picture and inside it;
    later lines are dropped while that scale would be below ``MIN_SCALE``."""
    for n in range(len(lines), 0, -1):
        kept = tuple(lines[:n])
        w1 = max(_text_width(t) for t in kept) + 2 * _HUD_PAD
        h1 = n * _HUD_LINE + _HUD_PAD
        scale = min(preferred_scale(height), (MAX_AREA * height * width / (w1 * h1)) ** 0.5,
                    (width - 1) / w1, (height - 1) / h1)
        while scale >= MIN_SCALE:  # the estimate above, checked on the text as OpenCV measures it
            line, pad = max(1, int(_HUD_LINE * scale)), max(2, int(_HUD_PAD * scale))
            rows, cols = n * line + pad, max(_text_width(t, scale) for t in kept) + 2 * pad
            if rows * cols <= MAX_AREA * height * width and cols <= width and rows <= height:
                return HudLayout(rows, cols, scale, line, pad, kept)
            scale = round(scale * 0.97, 3)
    return HudLayout(0, 0, 0.0, 0, 0, ())


# At text scale 1: row pitch, swatch side, gaps, margin.
_LEG_ROW, _LEG_SWATCH, _LEG_GAP, _LEG_MARGIN = 44, 34, 10, 10
_LEG_TEXT = max(_text_width(name) for name in LABELS[1:])
_LEG_ENTRIES = len(LABELS) - 1  # background is not listed


@dataclass(frozen=True)
class LegendLayout:
    """Where the legend goes on a picture: over its top-right corner (``beside`` False), or in a
    ``panel`` columns wide to its right; entries ``row`` apart, ``per_column`` to a column."""

    beside: bool
    scale: float
    row: int
    col_width: int
    per_column: int
    columns: int
    panel: int  # width added to the right of the picture (0 when the legend is drawn over it)

    def origin(self, width: int) -> int:
        """The legend's left edge on a picture ``width`` wide (the panel starts at ``width``)."""
        return width if self.beside else width - self.col_width

    @property
    def size(self) -> tuple[int, int]:
        """Rows and columns the legend takes with every class listed."""
        rows = min(self.per_column, _LEG_ENTRIES) * self.row + int(_LEG_MARGIN * self.scale)
        return rows, self.columns * self.col_width


def legend_layout(height: int, width: int) -> LegendLayout:
    """The legend for a height×width picture, laid out for all classes so it does not move when
    classes come and go: over the picture's right edge when it fits there at a readable scale in
    ``MAX_AREA`` of the picture, else in a panel beside the picture (columns as the height needs)."""
    col1 = _LEG_GAP + _LEG_SWATCH + _LEG_GAP + _LEG_TEXT + _LEG_GAP
    tall1 = _LEG_ENTRIES * _LEG_ROW + _LEG_MARGIN
    scale = round(min(preferred_scale(height), (height - 1) / tall1,
                      (MAX_AREA * height * width / (col1 * tall1)) ** 0.5, (width * 0.5) / col1), 3)
    while scale >= MIN_SCALE:
        over = LegendLayout(False, scale, max(1, int(_LEG_ROW * scale)), int(col1 * scale) + 1, _LEG_ENTRIES, 1, 0)
        rows, cols = over.size
        if rows * cols <= MAX_AREA * height * width and rows <= height:
            return over
        scale = round(scale * 0.97, 3)
    scale = round(max(MIN_SCALE, min(preferred_scale(height), (height - 1) / tall1)), 3)
    row = max(1, int(_LEG_ROW * scale))
    per_column = max(1, (height - int(_LEG_MARGIN * scale)) // row)
    columns = -(-_LEG_ENTRIES // per_column)
    col_width = int(col1 * scale) + 1
    return LegendLayout(True, scale, row, col_width, per_column, columns, columns * col_width)


def output_size(height: int, width: int, opts: RenderOptions) -> tuple[int, int]:
    """(width, height) of the frames ``render`` makes from height×width frames with ``opts``."""
    pic = 2 * width if opts.side_by_side else width
    return pic + (legend_layout(height, width).panel if opts.legend else 0), height


def draw_legend(img: np.ndarray, present: np.ndarray | None = None, layout: LegendLayout | None = None,
                width: int | None = None) -> None:
    """Class swatches (only the classes present, when given) where ``layout`` says: over the
    right edge of a picture ``width`` wide, or in the panel right of it."""
    h = img.shape[0]
    width = img.shape[1] if width is None else width
    layout = layout or legend_layout(h, width)
    ids = [i for i in range(1, len(LABELS)) if present is None or present[i]]
    s = layout.scale
    top, gap, swatch = int(_LEG_MARGIN * s), max(1, int(_LEG_GAP * s)), max(2, int(_LEG_SWATCH * s))
    x_base = layout.origin(width)
    if not layout.beside and ids:  # a black box behind it, as behind the HUD: readable on any picture
        rows = min(len(ids), layout.per_column) * layout.row + top
        img[:rows, x_base:x_base + layout.col_width] = 0
    for k, cid in enumerate(ids):
        col, r = divmod(k, layout.per_column)
        x, y = x_base + col * layout.col_width + gap, top + r * layout.row
        cv2.rectangle(img, (x, y), (x + swatch - 1, y + swatch - 1), tuple(int(c) for c in _PALETTE_BGR[cid]), -1)
        cv2.putText(img, LABELS[cid], (x + swatch + gap, y + swatch - max(1, int(4 * s))), FONT, s,
                    (255, 255, 255), 1, cv2.LINE_AA)


def hud_box(height: int, width: int, lines: list[str]) -> tuple[int, int, float, int]:
    """The HUD's (rows, cols) on a height×width frame, its text scale and line height."""
    lay = hud_layout(height, width, lines)
    return lay.rows, lay.cols, lay.scale, lay.line


def draw_hud(img: np.ndarray, lines: list[str], frame_hw: tuple[int, int] | None = None) -> None:
    """FPS/latency lines on a black box in the top-left corner, sized for the frame (``frame_hw``
    when ``img`` is only that corner of it; the picture's size when a legend panel is beside it)."""
    lay = hud_layout(*(frame_hw or img.shape[:2]), lines)
    if not lay.rows:
        return
    cv2.rectangle(img, (0, 0), (lay.cols - 1, lay.rows - 1), (0, 0, 0), -1)
    for i, text in enumerate(lay.lines):
        cv2.putText(img, text, (lay.pad, lay.line * (i + 1)), FONT, lay.scale, (255, 255, 255), 1, cv2.LINE_AA)


def render_i420(yuv: np.ndarray, h: int, labels: np.ndarray, opts: RenderOptions,
                hud: list[str] | None = None) -> np.ndarray:
    """``render`` in place on an h-row I420 frame, for options the I420 path takes (no legend, no
    side-by-side): the overlay blended in I420, the HUD drawn in BGR on its own corner."""
    overlay_i420(yuv, labels, opts.alpha)
    if opts.hud and hud:
        w = yuv.shape[1]
        lay = hud_layout(h, w, hud)
        if lay.rows:
            draw_i420(yuv, h, lay.rows, lay.cols, lambda bgr: draw_hud(bgr, hud, (h, w)))
    return yuv


def render(frame: np.ndarray, labels: np.ndarray | None, opts: RenderOptions, hud: list[str] | None = None,
           in_place: bool = False, overlaid: np.ndarray | None = None) -> np.ndarray:
    """The output frame: overlay (optionally beside the original), legend and HUD; ``output_size``
    says how large it is.

    ``in_place``: draw on ``frame`` itself (the pipeline owns its frames; saves a copy).
    ``overlaid``: the overlay already made elsewhere (on the GPU); ``labels`` are then only
    needed for the legend."""
    if overlaid is not None:
        out = overlaid
    else:
        out = overlay_bgr(frame, labels, opts.alpha, frame if in_place and not opts.side_by_side else None)
    h, w = frame.shape[:2]
    legend = legend_layout(h, w) if opts.legend else None
    present = np.bincount(labels.ravel(), minlength=len(LABELS)) > 0 if labels is not None else None
    if legend is not None and not legend.beside and present is not None:
        draw_legend(out, present, legend)
    if opts.side_by_side:
        out = np.hstack([frame, out])
    if legend is not None and legend.beside:
        pic = out.shape[1]
        out = np.hstack([out, np.zeros((h, legend.panel, 3), np.uint8)])
        if present is not None:
            draw_legend(out, present, legend, width=pic)
    if opts.hud and hud:
        pic = out.shape[1] - (legend.panel if legend is not None else 0)
        draw_hud(out, hud, (h, pic))
    return out
