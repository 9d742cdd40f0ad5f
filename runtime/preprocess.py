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
    """The square region ``place`` of ``frame`` resized to ``size``², zero-padded outside the frame."""
    h, w = frame.shape[:2]
    x0, y0, s = place.x0, place.y0, place.side
    canvas = np.zeros((s, s, 3), dtype=frame.dtype)
    fx0, fy0, fx1, fy1 = max(x0, 0), max(y0, 0), min(x0 + s, w), min(y0 + s, h)
    if fx1 > fx0 and fy1 > fy0:
        canvas[fy0 - y0:fy1 - y0, fx0 - x0:fx1 - x0] = frame[fy0:fy1, fx0:fx1]
    interp = cv2.INTER_AREA if s > size else cv2.INTER_LINEAR
    return cv2.resize(canvas, (size, size), interpolation=interp) if s != size else canvas


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
    """Resize a square label map to ``place.side`` (nearest) and write its in-frame part into
    ``target``; only foreground overwrites, so overlapping faces do not erase each other."""
    h, w = target.shape
    s = place.side
    big = labels if labels.shape[0] == s else cv2.resize(labels, (s, s), interpolation=cv2.INTER_NEAREST)
    fx0, fy0, fx1, fy1 = max(place.x0, 0), max(place.y0, 0), min(place.x0 + s, w), min(place.y0 + s, h)
    if fx1 <= fx0 or fy1 <= fy0:
        return
    part = big[fy0 - place.y0:fy1 - place.y0, fx0 - place.x0:fx1 - place.x0]
    region = target[fy0:fy1, fx0:fx1]
    np.copyto(region, part, where=part > 0)
