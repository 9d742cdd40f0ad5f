"""Frames to model inputs and labels back to frames: letterboxing, aligned face crops (one
similarity transform per square, ``Placement.matrix``), paste-back with per-pixel ownership."""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from msf.runtime.align import Placement, crop_windows, shrink_factor
from msf.runtime.yuv import i420_planes

__all__ = ["Placement", "assemble_labels", "i420_letterbox", "i420_letterbox_size", "letterbox_placement",
           "paste_labels", "resize_to", "square_crop", "warp_crop", "warp_labels"]


def resize_to(img: np.ndarray, w: int, h: int) -> np.ndarray:
    """``img`` resized to w×h as the model input is made: bilinear when enlarging; when shrinking,
    a k×k block average (``shrink_factor``) followed by a bilinear step of less than 2×."""
    src_h, src_w = img.shape[:2]
    if (src_w, src_h) == (w, h):
        return img
    if w > src_w or h > src_h:
        return cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)
    k = shrink_factor(src_w, src_h, w, h)
    if k == 0:
        return cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
    if k > 1:
        img = cv2.resize(img, (src_w // k, src_h // k), interpolation=cv2.INTER_AREA)
    return img if img.shape[:2] == (h, w) else cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)


def i420_letterbox_size(h: int, w: int, size: int) -> tuple[int, int] | None:
    """(width, height) of the frame inside its ``size``² letterbox when both are even, which the
    I420 path needs (chroma at half resolution); None otherwise."""
    place = letterbox_placement(h, w)
    win = crop_windows(place, h, w, size)
    if win is None:
        return None
    cx0, cy0, cx1, cy1 = win[1]
    cw, ch = cx1 - cx0, cy1 - cy0
    return (cw, ch) if cw % 2 == 0 and ch % 2 == 0 and h % 2 == 0 and w % 2 == 0 else None


def i420_letterbox(yuv: np.ndarray, h: int, w: int, size: int) -> np.ndarray:
    """``square_crop(frame, letterbox_placement(h, w), size)`` of the BGR frame an h×w I420 buffer
    holds, made without converting the whole frame: each plane is shrunk like the BGR frame
    (``resize_to``), and only the shrunk planes are converted to BGR (BT.601, as OpenCV decodes).
    Needs ``i420_letterbox_size(h, w, size)``."""
    _, (cx0, cy0, cx1, cy1) = crop_windows(letterbox_placement(h, w), h, w, size)  # the frame is its window
    cw, ch = cx1 - cx0, cy1 - cy0
    y, u, v = i420_planes(yuv, h)
    small = np.empty((ch * 3 // 2, cw), np.uint8)
    sy, su, sv = i420_planes(small, ch)
    sy[:] = resize_to(y, cw, ch)
    su[:] = resize_to(u, cw // 2, ch // 2)
    sv[:] = resize_to(v, cw // 2, ch // 2)
    bgr = cv2.cvtColor(small, cv2.COLOR_YUV2BGR_I420)
    if (cw, ch) == (size, size):
        return bgr
    canvas = np.zeros((size, size, 3), np.uint8)
    canvas[cy0:cy1, cx0:cx1] = bgr
    return canvas


def square_crop(frame: np.ndarray, place: Placement, size: int) -> np.ndarray:
    """The square region ``place`` of ``frame`` resized to ``size``², zero-padded outside the frame.

    Axis-aligned placements: only the in-frame part is resized (``resize_to``, then placed on a
    black canvas), no full-size padded copy. Rotated or sub-pixel placements go
    through ``warp_crop`` with the same ``place.matrix(size)``.
    """
    if not place.axis_aligned:
        return warp_crop(frame, place, size)
    h, w = frame.shape[:2]
    s = int(place.side)
    win = crop_windows(place, h, w, size)
    if win is not None and win[1] == (0, 0, size, size):  # the whole square is in the frame
        (fx0, fy0, fx1, fy1), _ = win
        region = frame[fy0:fy1, fx0:fx1]
        return np.ascontiguousarray(region) if s == size else resize_to(region, size, size)
    canvas = np.zeros((size, size, 3), dtype=frame.dtype)
    if win is None:
        return canvas
    (fx0, fy0, fx1, fy1), (cx0, cy0, cx1, cy1) = win
    if cx1 > cx0 and cy1 > cy0:
        canvas[cy0:cy1, cx0:cx1] = resize_to(frame[fy0:fy1, fx0:fx1], cx1 - cx0, cy1 - cy0)
    return canvas


def _bounds(place: Placement, h: int, w: int, pad: int = 1) -> tuple[int, int, int, int]:
    """In-frame integer window (x0, y0, x1, y1) holding the placement's square (may be empty)."""
    pts = place.corners()
    x0, y0 = np.floor(pts.min(0)).astype(int) - pad
    x1, y1 = np.ceil(pts.max(0)).astype(int) + pad
    return max(int(x0), 0), max(int(y0), 0), min(int(x1), w), min(int(y1), h)


def window_matrix(place: Placement, size: int, h: int, w: int) -> tuple[tuple[int, int, int, int], np.ndarray]:
    """The in-frame window (x0, y0, x1, y1) holding ``place`` and its ``matrix(size)`` rewritten for
    that window's coordinates (x_win = x - x0), so only the window need be warped."""
    x0, y0, x1, y1 = _bounds(place, h, w)
    m = place.matrix(size).copy()
    m[:, 2] += m[:, :2] @ np.array([x0, y0], np.float64)
    return (x0, y0, x1, y1), m


def warp_crop(frame: np.ndarray, place: Placement, size: int) -> np.ndarray:
    """``cv2.warpAffine`` of ``frame`` by ``place.matrix(size)`` (bilinear, zero border). When the
    square is more than twice the input size, its window is first shrunk with INTER_AREA so that
    the warp only rotates and fine-scales (no aliasing from skipping pixels)."""
    (x0, y0, x1, y1), m = window_matrix(place, size, *frame.shape[:2])
    if x1 <= x0 or y1 <= y0:
        return np.zeros((size, size, 3), frame.dtype)
    region = frame[y0:y1, x0:x1]
    k = size / place.side
    if k < 0.5:
        rw, rh = max(1, round((x1 - x0) * k * 1.5)), max(1, round((y1 - y0) * k * 1.5))
        sx, sy = rw / (x1 - x0), rh / (y1 - y0)
        region = cv2.resize(region, (rw, rh), interpolation=cv2.INTER_AREA)
        # small index u = (x + 0.5)·s - 0.5  ->  x = (u + 0.5) / s - 0.5
        inv = np.array([[1 / sx, 0, 0.5 / sx - 0.5], [0, 1 / sy, 0.5 / sy - 0.5], [0, 0, 1]])
        m = m @ inv
    return cv2.warpAffine(region, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=0)


def warp_labels(labels: np.ndarray, place: Placement, h: int, w: int) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Labels (n×n) warped back onto the frame window that ``place`` covers (nearest, 0 outside
    the square); returns the window's labels and its (x0, y0, x1, y1)."""
    (x0, y0, x1, y1), m = window_matrix(place, labels.shape[0], h, w)
    if x1 <= x0 or y1 <= y0:
        return np.zeros((0, 0), labels.dtype), (x0, y0, x0, y0)
    part = cv2.warpAffine(labels, m, (x1 - x0, y1 - y0), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return part, (x0, y0, x1, y1)


def letterbox_placement(h: int, w: int) -> Placement:
    """The whole frame centred in a square (``--mode full``): faces keep their proportions."""
    side = max(h, w)
    return Placement((w - side) // 2, (h - side) // 2, side)


def _nearest_index(offset: int, side: int, n: int, lo: int, hi: int) -> np.ndarray:
    """Label index (of n across ``side`` frame pixels starting at ``offset``) of frame pixels lo..hi-1."""
    return np.minimum(((np.arange(lo, hi) - offset) * n) // side, n - 1)


@lru_cache(maxsize=64)
def _resize_is_exact(x0: int, y0: int, s: int, n: int, fx0: int, fy0: int, fx1: int, fy1: int) -> bool:
    """Whether ``cv2.resize(INTER_NEAREST)`` of the covered label block gives exactly the
    nearest-neighbour indices of ``_aligned_part`` for this window (checked once per geometry on
    random labels: the resize is ~5x cheaper than numpy's take, but its float arithmetic can
    round an index differently)."""
    ys, xs = _nearest_index(y0, s, n, fy0, fy1), _nearest_index(x0, s, n, fx0, fx1)
    labels = np.random.default_rng(0).integers(0, 256, (n, n), dtype=np.uint8)
    block = labels[ys[0]:ys[-1] + 1, xs[0]:xs[-1] + 1]
    got = cv2.resize(block, (fx1 - fx0, fy1 - fy0), interpolation=cv2.INTER_NEAREST)
    return bool(np.array_equal(got, labels.take(ys, axis=0).take(xs, axis=1)))


def _aligned_part(labels: np.ndarray, place: Placement, h: int, w: int) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """The in-frame window of an axis-aligned placement and its labels resized nearest to ``side``."""
    s, n = int(place.side), labels.shape[0]
    x0, y0 = int(place.x0), int(place.y0)
    fx0, fy0, fx1, fy1 = max(x0, 0), max(y0, 0), min(x0 + s, w), min(y0 + s, h)
    if fx1 <= fx0 or fy1 <= fy0:
        return np.zeros((0, 0), labels.dtype), (fx0, fy0, fx0, fy0)
    # Nearest-neighbour source index of every in-frame output pixel, applied to the in-frame window
    # only: no side×side intermediate.
    ys, xs = _nearest_index(y0, s, n, fy0, fy1), _nearest_index(x0, s, n, fx0, fx1)
    if _resize_is_exact(x0, y0, s, n, fx0, fy0, fx1, fy1):
        block = labels[ys[0]:ys[-1] + 1, xs[0]:xs[-1] + 1]
        return cv2.resize(block, (fx1 - fx0, fy1 - fy0), interpolation=cv2.INTER_NEAREST), (fx0, fy0, fx1, fy1)
    return labels.take(ys, axis=0).take(xs, axis=1), (fx0, fy0, fx1, fy1)


def paste_labels(target: np.ndarray, labels: np.ndarray, place: Placement) -> None:
    """Write the in-frame part of a square label map (resized nearest to ``place.side``, or warped
    back nearest by the inverse of ``place.matrix`` when rotated) into ``target``; only foreground
    overwrites."""
    h, w = target.shape
    part, (fx0, fy0, fx1, fy1) = (_aligned_part if place.axis_aligned else warp_labels)(labels, place, h, w)
    if part.size:
        np.copyto(target[fy0:fy1, fx0:fx1], part, where=part > 0)

def ownership(place: Placement, window: tuple[int, int, int, int]) -> np.ndarray:
    """How central each pixel of ``window`` is in ``place``'s square: the larger of |u|, |v| with
    (u, v) the pixel in the square's own coordinates scaled to [-1, 1] (inside: ≤ 1)."""
    x0, y0, x1, y1 = window
    m = place.matrix(2)  # input coordinates at size 2: centre at 0.5, edges at -0.5 and 1.5
    xs, ys = np.meshgrid(np.arange(x0, x1, dtype=np.float32), np.arange(y0, y1, dtype=np.float32))
    u = m[0, 0] * xs + m[0, 1] * ys + (m[0, 2] - 0.5)
    v = m[1, 0] * xs + m[1, 1] * ys + (m[1, 2] - 0.5)
    return np.maximum(np.abs(u), np.abs(v))


def assemble_labels(shape: tuple[int, ...], labels: np.ndarray, places: list[Placement]) -> np.ndarray:
    """One frame-sized label map from per-square labels. One square: pasted directly. Several
    squares that overlap: each pixel takes the label of the square it is most central in (its
    owner); where the owner says background, another square's foreground fills it."""
    h, w = shape[:2]
    out = np.zeros((h, w), dtype=np.uint8)
    if len(places) <= 1:
        for lab, p in zip(labels, places):
            part, (x0, y0, x1, y1) = (_aligned_part if p.axis_aligned else warp_labels)(lab, p, h, w)
            if (x0, y0, x1, y1) == (0, 0, w, h) and part.dtype == out.dtype:
                return part  # the square covers the frame (letterbox): the part is the frame's map
            out[y0:y1, x0:x1] = part  # a fresh map: plain assignment, no foreground mask needed
        return out
    best = np.full((h, w), np.inf, dtype=np.float32)
    parts = []
    for lab, p in zip(labels, places):
        part, win = (_aligned_part if p.axis_aligned else warp_labels)(lab, p, h, w)
        if not part.size:
            continue
        own = ownership(p, win)
        x0, y0, x1, y1 = win
        sel = own < best[y0:y1, x0:x1]
        np.copyto(out[y0:y1, x0:x1], part, where=sel)
        np.copyto(best[y0:y1, x0:x1], own, where=sel)
        parts.append((part, win))
    for part, (x0, y0, x1, y1) in parts:  # background of the owner: another face's foreground
        np.copyto(out[y0:y1, x0:x1], part, where=(out[y0:y1, x0:x1] == 0) & (part > 0))
    return out
