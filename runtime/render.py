"""The output picture: overlay, legend, HUD and side-by-side composed from the pixel rules of
``msf.frameops`` (overlay, hud) on BGR frames or, for the I420 path, on I420 buffers."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from msf.frameops.hud import draw_hud, draw_hud_i420, draw_legend, hud_layout, legend_layout
from msf.frameops.overlay import OverlaySpec, overlay_bgr, overlay_i420
from msf.labels import LABELS


@dataclass
class RenderOptions:
    alpha: float = 0.5
    legend: bool = False
    hud: bool = True
    side_by_side: bool = False


def output_size(height: int, width: int, opts: RenderOptions) -> tuple[int, int]:
    """(width, height) of the frames ``render`` makes from height×width frames with ``opts``."""
    pic = 2 * width if opts.side_by_side else width
    return pic + (legend_layout(height, width).panel if opts.legend else 0), height


def render_i420(yuv: np.ndarray, h: int, labels: np.ndarray, opts: RenderOptions,
                hud: list[str] | None = None) -> np.ndarray:
    """``render`` in place on an h-row I420 frame, for options the I420 path takes (no legend, no
    side-by-side): the overlay blended in I420, the HUD drawn in BGR on its own corner."""
    overlay_i420(OverlaySpec(opts.alpha), yuv, labels)
    if opts.hud and hud:
        draw_hud_i420(hud_layout(h, yuv.shape[1], hud), yuv, h)
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
        out = overlay_bgr(OverlaySpec(opts.alpha), frame, labels,
                          frame if in_place and not opts.side_by_side else None)
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
