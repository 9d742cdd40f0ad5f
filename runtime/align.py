"""One geometry spec for every square the model sees: a ``Placement`` is a similarity transform
(rotation + uniform scale + translation) between the frame and the model input.

Coordinates follow OpenCV's pixel-index convention: pixel (i, j) of an image has its centre at
x = j, y = i, so ``Placement.matrix(size)`` can be passed straight to ``cv2.warpAffine`` (frame ->
size×size input). A torch path converts it for ``affine_grid`` (``align_corners=False``) by
mapping index coordinates u to normalised ones (2u + 1) / n - 1 on both sides.

The landmark template (``TEMPLATE``) is where YuNet's 5 landmarks sit on the CelebAMask-HQ
training crops, so an aligned face looks to the model like the faces it was trained on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from msf.contract import DEFAULT_SIZE

# Measured with ``python benchmarks/measure_face_template.py``: YuNet-n (this package's file,
# OpenCV 4.14 FaceDetectorYN, score ≥ 0.6) on the 800 training faces of the data root (the shipped
# checkpoint's validation names left out), each 512² crop seen whole at 160² — the geometry the
# final landmarks come from, since msf-video re-detects every face upright in its aligned square
# at ``faces.REFINE_SIZE``²; found in all 800.
# Mean landmark position as a fraction of the crop side (x, y), in YuNet's order: right eye, left
# eye (as seen: image left first), nose tip, right and left mouth corner. Spread (std) 0.011-0.017,
# nose x 0.035.
TEMPLATE = np.array([
    [0.3798, 0.4830],
    [0.6300, 0.4801],
    [0.5055, 0.6274],
    [0.3980, 0.7341],
    [0.6128, 0.7317],
], dtype=np.float64)
# Same run: the detector's box relative to the crop (centre x, centre y; side = max(w, h)), for the
# box-only fallback when landmarks are unreliable.
BOX_CENTER = (0.5047, 0.5553)
BOX_SIDE = 0.7289


@dataclass(frozen=True)
class Placement:
    """The square of the frame one model input covers: ``side``×``side`` pixels with top-left
    corner (``x0``, ``y0``) before a rotation of ``angle`` degrees (counter-clockwise as seen on
    screen) about the square's centre. Parts outside the frame are zero padding.

    Integer ``x0``, ``y0``, ``side`` with ``angle == 0`` is the axis-aligned case (letterbox, box
    crops): cropped with a plain resize (``shrink_factor``) and pasted pixel-exactly.
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


def crop_windows(place: Placement, h: int, w: int, size: int
                 ) -> tuple[tuple[int, int, int, int], tuple[int, int, int, int]] | None:
    """For an axis-aligned ``place`` in an h×w frame: its in-frame window (x0, y0, x1, y1) and
    where that window lands on the size×size input canvas; None when nothing is in the frame.
    The one definition both crop paths (OpenCV and torch) use."""
    x0, y0, s = int(place.x0), int(place.y0), int(place.side)
    fx0, fy0, fx1, fy1 = max(x0, 0), max(y0, 0), min(x0 + s, w), min(y0 + s, h)
    if fx1 <= fx0 or fy1 <= fy0:
        return None
    k = size / s
    canvas = (round((fx0 - x0) * k), round((fy0 - y0) * k), round((fx1 - x0) * k), round((fy1 - y0) * k))
    return (fx0, fy0, fx1, fy1), canvas


def shrink_factor(src_w: int, src_h: int, dst_w: int, dst_h: int) -> int:
    """How a src_w×src_h image is shrunk to dst_w×dst_h for the model input: first averaged over
    k×k blocks by the returned whole factor k (OpenCV's fast INTER_AREA path; 1: no such step),
    then resized bilinearly by the remaining factor, which is under 2, so bilinear skips no
    pixel. 0: no whole factor divides both sides that well; a plain INTER_AREA resize instead.

    Measured on the 100 validation faces at shrink ratios 1.14-3.2: CE7454 F within 0.0003 of an
    INTER_AREA resize (what training uses), at a sixth of its cost on 720p frames.
    The one definition both crop paths (OpenCV and torch) use."""
    ratio = min(src_w / dst_w, src_h / dst_h)
    for k in range(int(ratio), 1, -1):
        if src_w % k == 0 and src_h % k == 0:
            return k if ratio / k < 2 else 0
    return 1 if ratio < 2 else 0


def fit_similarity(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, float]:
    """Least-squares similarity (Umeyama, no reflection) mapping ``src`` points onto ``dst``
    (both N×2); returns the 2×3 matrix and the RMS residual in ``dst`` units."""
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    ms, md = src.mean(0), dst.mean(0)
    s0, d0 = src - ms, dst - md
    var = (s0 ** 2).sum() / len(src)
    cov = d0.T @ s0 / len(src)
    u, d, vt = np.linalg.svd(cov)
    sign = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[1, 1] = -1
    r = u @ sign @ vt
    scale = float(np.trace(np.diag(d) @ sign) / var) if var > 0 else 1.0
    lin = scale * r
    m = np.hstack([lin, (md - lin @ ms)[:, None]])
    resid = float(np.sqrt((((src @ lin.T + m[:, 2]) - dst) ** 2).sum(1).mean()))
    return m, resid


def aligned_placement(landmarks: np.ndarray, size: int = DEFAULT_SIZE,
                      template: np.ndarray | None = None) -> tuple[Placement, float]:
    """The CelebAMask-HQ-like placement of a face from its 5 landmarks (frame pixel indices, in
    YuNet's order) and the fit's RMS residual as a fraction of the crop side (large = landmarks
    do not look like a frontal face: use the box fallback)."""
    m, resid = fit_similarity(landmarks, (TEMPLATE if template is None else template) * size - 0.5)
    return Placement.from_matrix(m, size), resid / size


def box_placement(x: float, y: float, w: float, h: float) -> Placement:
    """Axis-aligned square crop around a detector box with the training crops' margins (fallback)."""
    side = max(w, h) / BOX_SIDE
    cx = x + w / 2 + (0.5 - BOX_CENTER[0]) * side
    cy = y + h / 2 + (0.5 - BOX_CENTER[1]) * side
    return Placement(round(cx - side / 2), round(cy - side / 2), round(side))


def square_iou(a: Placement, b: Placement, n: int = 64) -> float:
    """Area IoU of two (possibly rotated) squares, rasterised on an n×n grid over both."""
    import cv2

    pts = np.vstack([a.corners(), b.corners()])
    (x0, y0), (x1, y1) = pts.min(0), pts.max(0)
    scale = n / max(x1 - x0, y1 - y0, 1e-9)
    masks = []
    for p in (a, b):
        m = np.zeros((n + 2, n + 2), np.uint8)
        cv2.fillConvexPoly(m, np.round((p.corners() - [x0, y0]) * scale * 16).astype(np.int32), 1, shift=4)
        masks.append(m.astype(bool))
    return float((masks[0] & masks[1]).sum() / max(1, (masks[0] | masks[1]).sum()))
