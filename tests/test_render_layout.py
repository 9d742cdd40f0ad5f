"""HUD and legend sized for the frame (issue 21, item 5): readable text, never over 15 % of the
picture, nothing cut off; the legend moves to a panel beside the picture where it would cover it.
Measured on the pixels drawn, at 176×144 (QCIF), 640×480 and 1920×1080 (the I420 HUD against the
BGR one: tests/test_frameops.py)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from msf.frameops.hud import FONT, MAX_AREA, MIN_SCALE, hud_layout, legend_layout
from msf.labels import LABELS, PALETTE
from msf.runtime.render import RenderOptions, output_size, render

SIZES = [(144, 176), (480, 640), (1080, 1920)]
HUD = ["  7.5 FPS   134 ms", "onnxruntime fp32 (CPU)  auto 512px"]  # as msf-video writes them


def _frame(h: int, w: int) -> np.ndarray:
    return np.full((h, w, 3), (40, 90, 140), np.uint8)


def _all_classes(h: int, w: int) -> np.ndarray:
    """Every class present, in the middle of the frame (where a face is)."""
    labels = np.zeros((h, w), np.uint8)
    labels[h // 4: 3 * h // 4, w // 4: 3 * w // 4] = np.resize(np.arange(1, len(LABELS), dtype=np.uint8), (1, w // 2))
    return labels


def _changed(a: np.ndarray, b: np.ndarray) -> tuple[int, int, int, int] | None:
    """Bounding box (x0, y0, x1, y1) of the pixels that differ."""
    ys, xs = np.nonzero((a != b).any(axis=2) if a.ndim == 3 else a != b)
    return None if not len(ys) else (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)


@pytest.mark.parametrize("h, w", SIZES)
def test_hud_is_readable_small_and_whole(h, w):
    frame = _frame(h, w)
    out = render(frame.copy(), np.zeros((h, w), np.uint8), RenderOptions(hud=True), HUD)
    x0, y0, x1, y1 = _changed(out, frame)
    area = (x1 - x0) * (y1 - y0) / (h * w)
    lay = hud_layout(h, w, HUD)
    assert (x0, y0) == (0, 0) and (x1, y1) == (lay.cols, lay.rows)  # the box is all that is drawn
    assert area <= MAX_AREA, area
    assert lay.scale >= MIN_SCALE  # text ~8 px high or more
    for i, text in enumerate(lay.lines):  # every kept line fits inside the box: nothing cut off
        (tw, th), base = cv2.getTextSize(text, FONT, lay.scale, 1)
        assert lay.pad + tw <= lay.cols and lay.line * (i + 1) + base <= lay.rows + lay.pad
    if h >= 480:
        assert lay.lines == tuple(HUD)
    else:  # 176×144: two lines would cover 27 % of the picture or be unreadable; the FPS line stays
        assert lay.lines == (HUD[0],)
    print(f"HUD {w}x{h}: {lay.cols}x{lay.rows} px, {area:.1%} of the frame, scale {lay.scale}, "
          f"{len(lay.lines)} line(s)")


@pytest.mark.parametrize("h, w", SIZES)
def test_legend_lists_every_class_and_never_covers_the_picture(h, w):
    frame = _frame(h, w)
    labels = _all_classes(h, w)
    opts = RenderOptions(alpha=0.0, legend=True, hud=False)  # alpha 0: only the legend changes pixels
    out = render(frame.copy(), labels, opts)
    lay = legend_layout(h, w)
    assert out.shape[:2][::-1] == output_size(h, w, opts) == (w + lay.panel, h)
    picture, panel = out[:, :w], out[:, w:]
    swatches = picture if not lay.beside else panel
    for cid in range(1, len(LABELS)):  # all 18 swatches drawn, none cut off at an edge
        color = PALETTE[cid][::-1]
        ys, xs = np.nonzero((swatches == color).all(axis=2))
        side = int(34 * lay.scale)
        assert len(ys) >= side * side * 0.9, LABELS[cid]
    if lay.beside:
        assert np.array_equal(picture, frame)  # the picture is untouched: the legend is beside it
        assert panel.shape[1] <= w  # the panel is no wider than the picture
    else:
        x0, y0, x1, y1 = _changed(picture, frame)
        assert x1 == w and y0 == 0 and x0 >= w * 0.75  # top-right corner, off the face in the middle
        assert (x1 - x0) * (y1 - y0) <= MAX_AREA * h * w
        assert lay.scale >= MIN_SCALE
    where = f"beside ({lay.panel} px panel, {lay.columns} columns)" if lay.beside else \
        f"over the right edge ({(x1 - x0) * (y1 - y0) / (h * w):.1%} of the frame)"
    print(f"legend {w}x{h}: {where}, scale {lay.scale}")


def test_small_frame_legend_goes_beside_and_hud_stays_on_the_picture():
    """176×144, the issue's case: the legend covered the face and stopped after ~10 entries."""
    h, w = SIZES[0]
    lay = legend_layout(h, w)
    assert lay.beside and lay.columns * lay.per_column >= len(LABELS) - 1
    out = render(_frame(h, w), _all_classes(h, w), RenderOptions(alpha=0.0, legend=True, hud=True), HUD)
    hud = hud_layout(h, w, HUD)
    assert out.shape[1] == w + lay.panel and hud.cols <= w  # the HUD box ends inside the picture


def test_side_by_side_with_legend_beside():
    h, w = SIZES[0]
    opts = RenderOptions(alpha=0.0, legend=True, hud=False, side_by_side=True)
    frame = _frame(h, w)
    out = render(frame.copy(), _all_classes(h, w), opts)
    assert out.shape[:2][::-1] == output_size(h, w, opts) == (2 * w + legend_layout(h, w).panel, h)
    assert np.array_equal(out[:, :w], frame) and np.array_equal(out[:, w:2 * w], frame)


def test_msf_video_output_is_sized_for_the_legend_panel(tmp_path):
    import subprocess
    import sys

    h, w = SIZES[0]
    clip = tmp_path / "q.avi"
    vw = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 10, (w, h))
    for _ in range(3):
        vw.write(_frame(h, w))
    vw.release()
    out = tmp_path / "o.mp4"
    r = subprocess.run([sys.executable, "-m", "msf.cli.video", str(clip), "--backend", "null", "--mode", "full",
                        "--legend", "-o", str(out), "--no-progress"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    cap = cv2.VideoCapture(str(out))
    ok, first = cap.read()
    assert ok and first.shape[:2] == (h, w + legend_layout(h, w).panel)
