"""Frames to model inputs and labels back to frames: letterboxing, square face crops, contracts."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Placement:
    """Where a model-input square came from in the frame: square ``box`` (x0, y0, side) in frame
    coordinates (may reach outside the frame; outside is padding)."""

    x0: int
    y0: int
    side: int


def square_crop(frame: np.ndarray, place: Placement, size: int) -> np.ndarray:
    """The square region ``place`` of ``frame`` resized to ``size``², zero-padded outside the frame.

    Only the in-frame part is resized (then placed on a black canvas): no full-size padded copy.
    """
    h, w = frame.shape[:2]
    x0, y0, s = place.x0, place.y0, place.side
    fx0, fy0, fx1, fy1 = max(x0, 0), max(y0, 0), min(x0 + s, w), min(y0 + s, h)
    if fx0 == x0 and fy0 == y0 and fx1 - fx0 == s and fy1 - fy0 == s:
        region = frame[fy0:fy1, fx0:fx1]
        if s == size:
            return np.ascontiguousarray(region)
        return cv2.resize(region, (size, size), interpolation=cv2.INTER_AREA if s > size else cv2.INTER_LINEAR)
    canvas = np.zeros((size, size, 3), dtype=frame.dtype)
    if fx1 <= fx0 or fy1 <= fy0:
        return canvas
    k = size / s
    cx0, cy0 = round((fx0 - x0) * k), round((fy0 - y0) * k)
    cx1, cy1 = round((fx1 - x0) * k), round((fy1 - y0) * k)
    if cx1 > cx0 and cy1 > cy0:
        interp = cv2.INTER_AREA if s > size else cv2.INTER_LINEAR
        canvas[cy0:cy1, cx0:cx1] = cv2.resize(frame[fy0:fy1, fx0:fx1], (cx1 - cx0, cy1 - cy0), interpolation=interp)
    return canvas


def letterbox_placement(h: int, w: int) -> Placement:
    """The whole frame centred in a square (``--mode full``): faces keep their proportions."""
    side = max(h, w)
    return Placement((w - side) // 2, (h - side) // 2, side)


def to_input(crops_bgr: list[np.ndarray], spec: dict) -> np.ndarray:
    """Stack square BGR crops into the graph's input contract (uint8 NHWC or float NCHW RGB)."""
    batch = np.stack(crops_bgr)
    if spec.get("dtype") == "uint8":
        return batch if spec.get("color", "bgr") == "bgr" else np.ascontiguousarray(batch[..., ::-1])
    rgb = batch[..., ::-1].transpose(0, 3, 1, 2)
    dtype = np.float16 if spec.get("dtype") == "float16" else np.float32
    return np.ascontiguousarray(rgb, dtype=dtype) * dtype(1 / 255)


def paste_labels(target: np.ndarray, labels: np.ndarray, place: Placement) -> None:
    """Write the in-frame part of a square label map (resized nearest to ``place.side``) into
    ``target``; only foreground overwrites, so overlapping faces do not erase each other."""
    h, w = target.shape
    s, n = place.side, labels.shape[0]
    fx0, fy0, fx1, fy1 = max(place.x0, 0), max(place.y0, 0), min(place.x0 + s, w), min(place.y0 + s, h)
    if fx1 <= fx0 or fy1 <= fy0:
        return
    # Nearest-neighbour source index of every in-frame output pixel (what cv2.resize computes),
    # applied to the in-frame window only: no side×side intermediate.
    ys = np.minimum(((np.arange(fy0, fy1) - place.y0) * n) // s, n - 1)
    xs = np.minimum(((np.arange(fx0, fx1) - place.x0) * n) // s, n - 1)
    part = labels.take(ys, axis=0).take(xs, axis=1)
    np.copyto(target[fy0:fy1, fx0:fx1], part, where=part > 0)
