"""HUD and legend: text on frames, sized for the frame, readable, and never over ``MAX_AREA`` of
the picture. Text below ``MIN_SCALE`` (OpenCV's simplex font ~8 px high) is not readable: the
HUD drops its later lines instead, the legend moves to a panel beside the picture.

``HudLayout`` and ``LegendLayout`` are the specs in numbers (boxes, text scale, pitch); the
text itself is OpenCV's rasteriser, so the BGR drawing is the reference.

Implementations of the HUD: ``bgr`` (``draw_hud``), ``i420`` (the HUD's corner converted to BGR,
drawn, and converted back; the rest of the frame untouched). No torch form: the GPU path brings
the overlaid frame back and the HUD is drawn there. The legend is drawn on BGR pictures only
(the I420 path is not taken with a legend).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from msf.frameops.base import i420_planes, implements
from msf.labels import LABELS, PALETTE

FONT = cv2.FONT_HERSHEY_SIMPLEX
MAX_AREA = 0.15
MIN_SCALE = 0.35
_PALETTE_BGR = PALETTE[:, ::-1].copy()


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


@implements("hud", "bgr")
def draw_hud_bgr(spec: HudLayout, img: np.ndarray) -> np.ndarray:
    """The HUD drawn in place on a BGR picture: its lines on a black box in the top-left corner."""
    if spec.rows:
        cv2.rectangle(img, (0, 0), (spec.cols - 1, spec.rows - 1), (0, 0, 0), -1)
        for i, text in enumerate(spec.lines):
            cv2.putText(img, text, (spec.pad, spec.line * (i + 1)), FONT, spec.scale, (255, 255, 255), 1, cv2.LINE_AA)
    return img


def draw_hud(img: np.ndarray, lines: list[str], frame_hw: tuple[int, int] | None = None) -> None:
    """FPS/latency lines in the top-left corner, sized for the frame (``frame_hw`` when ``img``
    is only that corner of it, or when a legend panel is beside the picture)."""
    draw_hud_bgr(hud_layout(*(frame_hw or img.shape[:2]), lines), img)


def draw_i420(yuv: np.ndarray, h: int, rows: int, cols: int, draw: Callable[[np.ndarray], None]) -> None:
    """Run ``draw(bgr)`` (an OpenCV drawing on a BGR image) on the top-left rows×cols corner of an
    I420 frame h rows high: that corner goes to BGR and back, the rest is untouched."""
    rows, cols = min(h, rows + rows % 2), min(yuv.shape[1], cols + cols % 2)
    corner = [(p[: rows >> s, : cols >> s]) for p, s in zip(i420_planes(yuv, h), (0, 1, 1))]
    patch = np.empty((rows * 3 // 2, cols), np.uint8)
    for dst, src in zip(i420_planes(patch, rows), corner):
        dst[:] = src
    bgr = cv2.cvtColor(patch, cv2.COLOR_YUV2BGR_I420)
    draw(bgr)
    for dst, src in zip(corner, i420_planes(cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420), rows)):
        dst[:] = src


@implements("hud", "i420")
def draw_hud_i420(spec: HudLayout, yuv: np.ndarray, h: int) -> np.ndarray:
    """The HUD drawn in place on an I420 buffer of a frame h rows high."""
    if spec.rows:
        draw_i420(yuv, h, spec.rows, spec.cols, lambda bgr: draw_hud_bgr(spec, bgr))
    return yuv


# ---- legend ---------------------------------------------------------------------------------

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
