"""Where a model input sits in a frame: ``Placement`` (a similarity transform between the frame
and the input) and the integer windows every crop and paste-back implementation reads.

Coordinates follow OpenCV's pixel-index convention: pixel (i, j) of an image has its centre at
x = j, y = i, so ``Placement.matrix(size)`` can be passed straight to ``cv2.warpAffine`` (frame ->
size×size input). The torch implementations convert it for ``grid_sample``
(``align_corners=False``) by mapping index coordinates u to normalised ones (2u + 1) / n - 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

Window = tuple[int, int, int, int]  # x0, y0, x1, y1 (half-open)


@dataclass(frozen=True)
class Placement:
    """The square of the frame one model input covers: ``side``×``side`` pixels with top-left
    corner (``x0``, ``y0``) before a rotation of ``angle`` degrees (counter-clockwise as seen on
    screen) about the square's centre. Parts outside the frame are zero padding.

    Integer ``x0``, ``y0``, ``side`` with ``angle == 0`` is the axis-aligned case (letterbox, box
    crops): cropped with a plain resize (``msf.frameops.fit``) and pasted pixel-exactly.
    """

    x0: float
    y0: float
    side: float
    angle: float = 0.0

    @property
    def axis_aligned(self) -> bool:
        return self.angle == 0 and all(float(v).is_integer() for v in (self.x0, self.y0, self.side))

    @property
    def center(self) -> tuple[float, float]:
        return self.x0 + self.side / 2, self.y0 + self.side / 2

    def matrix(self, size: int) -> np.ndarray:
        """2×3 float64 affine matrix: frame pixel coordinates -> model-input pixel coordinates at
        ``size``×``size`` (index convention, see the module docstring)."""
        k = size / self.side
        t = math.radians(self.angle)
        c, s = math.cos(t) * k, math.sin(t) * k
        cx, cy = self.center
        # u = k·R(-angle)·(x + 0.5 - centre) + size/2 - 0.5 (continuous edges -> pixel indices)
        lin = np.array([[c, -s], [s, c]])  # turns the square's content upright (y points down)
        off = size / 2 - 0.5 - lin @ np.array([cx - 0.5, cy - 0.5])
        return np.hstack([lin, off[:, None]])

    def theta(self, size: int, frame_hw: tuple[int, int]) -> np.ndarray:
        """The same warp as ``matrix(size)`` as a 2×3 ``theta`` for ``torch.nn.functional.affine_grid``
        (``align_corners=False``): output normalised coordinates -> frame normalised coordinates."""
        h, w = frame_hw
        m = self.matrix(size)
        ai = np.linalg.inv(m[:, :2])
        bi = -ai @ m[:, 2]
        # input index u = (size/2)·n + (size-1)/2; frame normalised = (2x + 1)/W - 1
        lin = ai * (size / 2)
        off = ai @ np.full(2, (size - 1) / 2) + bi
        norm = np.array([2 / w, 2 / h])
        return np.hstack([lin * norm[:, None], (off * norm + norm / 2 - 1)[:, None]])

    def corners(self) -> np.ndarray:
        """4×2 frame coordinates (continuous, pixel edges) of the square's corners."""
        cx, cy = self.center
        t = math.radians(self.angle)
        c, s = math.cos(t), math.sin(t)
        h = self.side / 2
        pts = np.array([[-h, -h], [h, -h], [h, h], [-h, h]])
        rot = np.array([[c, s], [-s, c]])  # inverse of R(-angle) above
        return pts @ rot.T + [cx, cy]

    @staticmethod
    def from_matrix(m: np.ndarray, size: int) -> Placement:
        """The placement whose ``matrix(size)`` is the similarity ``m`` (2×3, no reflection)."""
        a, b = float(m[0, 0]), float(m[1, 0])
        k = math.hypot(a, b)
        angle = math.degrees(math.atan2(b, a))
        side = size / k
        lin = m[:, :2]
        # centre: the frame point mapped to the input's centre
        centre = np.linalg.solve(lin, np.array([size / 2 - 0.5, size / 2 - 0.5]) - m[:, 2]) + 0.5
        return Placement(float(centre[0] - side / 2), float(centre[1] - side / 2), side, angle)


def letterbox(h: int, w: int) -> Placement:
    """The whole frame centred in a square (``--mode full``): faces keep their proportions."""
    side = max(h, w)
    return Placement((w - side) // 2, (h - side) // 2, side)


def crop_windows(place: Placement, h: int, w: int, size: int) -> tuple[Window, Window] | None:
    """For an axis-aligned ``place`` in an h×w frame: its in-frame window and where that window
    lands on the size×size input canvas; None when nothing is in the frame."""
    x0, y0, s = int(place.x0), int(place.y0), int(place.side)
    fx0, fy0, fx1, fy1 = max(x0, 0), max(y0, 0), min(x0 + s, w), min(y0 + s, h)
    if fx1 <= fx0 or fy1 <= fy0:
        return None
    k = size / s
    canvas = (round((fx0 - x0) * k), round((fy0 - y0) * k), round((fx1 - x0) * k), round((fy1 - y0) * k))
    return (fx0, fy0, fx1, fy1), canvas


def bounds(place: Placement, h: int, w: int, pad: int = 1) -> Window:
    """In-frame integer window holding the placement's (possibly rotated) square; may be empty."""
    pts = place.corners()
    x0, y0 = np.floor(pts.min(0)).astype(int) - pad
    x1, y1 = np.ceil(pts.max(0)).astype(int) + pad
    return max(int(x0), 0), max(int(y0), 0), min(int(x1), w), min(int(y1), h)


def window_matrix(place: Placement, size: int, h: int, w: int) -> tuple[Window, np.ndarray]:
    """``bounds(place)`` and ``place.matrix(size)`` rewritten for that window's coordinates
    (x_win = x - x0), so only the window need be warped."""
    x0, y0, x1, y1 = bounds(place, h, w)
    m = place.matrix(size).copy()
    m[:, 2] += m[:, :2] @ np.array([x0, y0], np.float64)
    return (x0, y0, x1, y1), m


def aligned_index(offset: int, side: int, n: int, lo: int, hi: int) -> np.ndarray:
    """Nearest index (of n across ``side`` frame pixels starting at ``offset``) of frame pixels
    lo..hi-1: floor((x - offset)·n / side), OpenCV's INTER_NEAREST resize convention."""
    return np.minimum(((np.arange(lo, hi) - offset) * n) // side, n - 1)


def ownership(place: Placement, window: Window) -> np.ndarray:
    """How central each pixel of ``window`` is in ``place``'s square: the larger of |u|, |v| with
    (u, v) the pixel in the square's own coordinates scaled to [-1, 1] (inside: ≤ 1)."""
    x0, y0, x1, y1 = window
    m = place.matrix(2)  # input coordinates at size 2: centre at 0.5, edges at -0.5 and 1.5
    xs, ys = np.meshgrid(np.arange(x0, x1, dtype=np.float32), np.arange(y0, y1, dtype=np.float32))
    u = m[0, 0] * xs + m[0, 1] * ys + (m[0, 2] - 0.5)
    v = m[1, 0] * xs + m[1, 1] * ys + (m[1, 2] - 0.5)
    return np.maximum(np.abs(u), np.abs(v))


def invert(m: np.ndarray) -> np.ndarray:
    """The inverse of a 2×3 affine matrix."""
    return np.linalg.inv(np.vstack([m, [0.0, 0.0, 1.0]]))[:2]
