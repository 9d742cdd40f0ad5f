"""Face alignment: where a face's square goes (a ``Placement``, ``msf.frameops.geometry``: the
one geometry spec for every square the model sees) from its landmarks or its detector box.

The landmark template (``TEMPLATE``) is where YuNet's 5 landmarks sit on the CelebAMask-HQ
training crops, so an aligned face looks to the model like the faces it was trained on.
"""

from __future__ import annotations

import numpy as np

from msf.contract import DEFAULT_SIZE
from msf.frameops.geometry import Placement

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
