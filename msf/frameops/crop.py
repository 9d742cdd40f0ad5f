"""Crop: the square a ``Placement`` covers, as a size×size model input (zero outside the frame).

``CropSpec`` is the crop in numbers: the frame ``window`` it reads, and either the ``canvas``
rectangle that window is fitted to (axis-aligned placements: a plain resize, pixel-exact), or a
``warp`` (rotated or sub-pixel placements): the window fitted to ``pre`` first when the square is
over twice the input size (so the bilinear warp only rotates and fine-scales, skipping no pixel),
then the 2×3 matrix (pre-fitted window pixel -> input pixel; bilinear, zero border). Every fit
follows the contract's resize rule (``msf.frameops.fit``).

Implementations: ``bgr`` (OpenCV), ``i420`` (axis-aligned crops with even windows, the letterbox:
the planes are fitted and only the input-sized result is converted to BGR, BT.601 as OpenCV
decodes), ``torch`` (H×W×3 uint8 tensors; ``grid_sample`` for the warp). ``reference`` is the spec
in float64 numpy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from msf.contract import DEFAULT_RESIZE
from msf.frameops import fit as fitting
from msf.frameops.base import i420_planes, implements
from msf.frameops.geometry import Placement, Window, crop_windows, invert, letterbox, window_matrix


@dataclass(frozen=True)
class CropSpec:
    """See the module docstring. ``window`` None: the square misses the frame (all zeros)."""

    size: int
    window: Window | None
    canvas: Window | None = None
    warp: tuple[float, ...] | None = None  # 2×3 row-major
    pre: tuple[int, int] | None = None  # (w, h) the window is fitted to before the warp
    rule: str = DEFAULT_RESIZE

    @property
    def fit(self) -> fitting.FitSpec:
        """The fit of the window (to the canvas rectangle, or to ``pre`` before the warp)."""
        x0, y0, x1, y1 = self.window
        if self.warp is None:
            cx0, cy0, cx1, cy1 = self.canvas
            return fitting.FitSpec(x1 - x0, y1 - y0, cx1 - cx0, cy1 - cy0, self.rule)
        return fitting.FitSpec(x1 - x0, y1 - y0, *self.pre, self.rule)

    @property
    def matrix(self) -> np.ndarray:
        return np.asarray(self.warp, np.float64).reshape(2, 3)

    @property
    def empty(self) -> bool:
        """Nothing of the frame lands on the input."""
        if self.window is None:
            return True
        return self.warp is None and (self.canvas[2] <= self.canvas[0] or self.canvas[3] <= self.canvas[1])


def crop_spec(place: Placement, h: int, w: int, size: int, rule: str = DEFAULT_RESIZE) -> CropSpec:
    """The spec of ``place``'s square of an h×w frame at size×size."""
    if place.axis_aligned:
        win = crop_windows(place, h, w, size)
        return CropSpec(size, None, rule=rule) if win is None else CropSpec(size, win[0], win[1], rule=rule)
    (x0, y0, x1, y1), m = window_matrix(place, size, h, w)
    if x1 <= x0 or y1 <= y0:
        return CropSpec(size, None, rule=rule)
    pre = (x1 - x0, y1 - y0)
    k = size / place.side
    if k < 0.5:
        pre = (max(1, round((x1 - x0) * k * 1.5)), max(1, round((y1 - y0) * k * 1.5)))
        sx, sy = pre[0] / (x1 - x0), pre[1] / (y1 - y0)
        # fitted index u = (x + 0.5)·s - 0.5  ->  x = (u + 0.5) / s - 0.5
        m = m @ np.array([[1 / sx, 0, 0.5 / sx - 0.5], [0, 1 / sy, 0.5 / sy - 0.5], [0, 0, 1]])
    return CropSpec(size, (x0, y0, x1, y1), warp=tuple(float(v) for v in m.ravel()), pre=pre, rule=rule)


# ---- OpenCV ---------------------------------------------------------------------------------

@implements("crop", "bgr")
def crop_bgr(spec: CropSpec, frame: np.ndarray) -> np.ndarray:
    """The size×size crop of a numpy frame (H×W×C)."""
    size = spec.size
    if spec.empty:
        return np.zeros((size, size) + frame.shape[2:], frame.dtype)
    x0, y0, x1, y1 = spec.window
    region = fitting.fit_bgr(spec.fit, frame[y0:y1, x0:x1])
    if spec.warp is not None:
        return cv2.warpAffine(region, spec.matrix, (size, size), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    if spec.canvas == (0, 0, size, size):  # the whole square is in the frame
        return np.ascontiguousarray(region)
    out = np.zeros((size, size) + frame.shape[2:], frame.dtype)
    cx0, cy0, cx1, cy1 = spec.canvas
    out[cy0:cy1, cx0:cx1] = region
    return out


def crop(frame: np.ndarray, place: Placement, size: int, rule: str = DEFAULT_RESIZE) -> np.ndarray:
    """``place``'s square of a BGR frame as a size×size input (zero outside the frame)."""
    return crop_bgr(crop_spec(place, frame.shape[0], frame.shape[1], size, rule), frame)


# ---- I420 -----------------------------------------------------------------------------------

def i420_ok(spec: CropSpec, h: int) -> bool:
    """Whether the I420 implementation takes ``spec`` on a frame h rows high: axis-aligned, the
    frame window on whole chroma blocks and fitted to an even size (the result is BGR, so where
    it lands on the canvas does not matter)."""
    if spec.warp is not None or h % 2:
        return False
    if spec.empty:
        return True
    cx0, cy0, cx1, cy1 = spec.canvas
    return all(v % 2 == 0 for v in (*spec.window, cx1 - cx0, cy1 - cy0))


@implements("crop", "i420")
def crop_i420(spec: CropSpec, yuv: np.ndarray, h: int) -> np.ndarray:
    """The size×size BGR crop of an I420 buffer of a frame h rows high (``i420_ok`` specs)."""
    if not i420_ok(spec, h):
        raise ValueError("the I420 crop takes axis-aligned squares on whole chroma blocks only")
    size = spec.size
    if spec.empty:
        return np.zeros((size, size, 3), np.uint8)
    x0, y0, x1, y1 = spec.window
    y, u, v = i420_planes(yuv, h)
    small = fitting.fit_planes(spec.fit, y[y0:y1, x0:x1], u[y0 // 2:y1 // 2, x0 // 2:x1 // 2],
                               v[y0 // 2:y1 // 2, x0 // 2:x1 // 2])
    bgr = cv2.cvtColor(small, cv2.COLOR_YUV2BGR_I420)
    if spec.canvas == (0, 0, size, size):
        return bgr
    out = np.zeros((size, size, 3), np.uint8)
    cx0, cy0, cx1, cy1 = spec.canvas
    out[cy0:cy1, cx0:cx1] = bgr
    return out


def i420_letterbox_size(h: int, w: int, size: int) -> tuple[int, int] | None:
    """(width, height) of an h×w frame inside its ``size``² letterbox when the I420
    implementation can make it (everything on whole chroma blocks); None otherwise."""
    spec = crop_spec(letterbox(h, w), h, w, size)
    if spec.empty or not i420_ok(spec, h) or w % 2:
        return None
    cx0, cy0, cx1, cy1 = spec.canvas
    return cx1 - cx0, cy1 - cy0


def i420_letterbox(yuv: np.ndarray, h: int, w: int, size: int, rule: str = DEFAULT_RESIZE) -> np.ndarray:
    """The letterbox input of an h×w I420 frame (needs ``i420_letterbox_size(h, w, size)``)."""
    return crop_i420(crop_spec(letterbox(h, w), h, w, size, rule), yuv, h)


# ---- torch ----------------------------------------------------------------------------------

def sample_grid(m: np.ndarray, out_h: int, out_w: int, in_h: int, in_w: int, device: Any) -> Any:
    """``grid_sample`` grid (align_corners=False) for output pixel (u, v) -> input pixel
    ``m @ (u, v, 1)`` (index coordinates), made on ``device`` from the six coefficients."""
    import torch

    v = torch.arange(out_h, dtype=torch.float64, device=device)[:, None]
    u = torch.arange(out_w, dtype=torch.float64, device=device)[None, :]
    (a, b, c), (d, e, f) = m.tolist()
    x = a * u + b * v + c
    y = d * u + e * v + f
    return torch.stack([(2 * x + 1) / in_w - 1, (2 * y + 1) / in_h - 1], dim=-1)[None].to(torch.float32)


@implements("crop", "torch")
def crop_torch(spec: CropSpec, frame: Any) -> Any:
    """The size×size crop of an H×W×3 uint8 tensor (on its device)."""
    import torch
    import torch.nn.functional as F  # noqa: N812

    size = spec.size
    if spec.empty:
        return torch.zeros((size, size, frame.shape[2]), dtype=frame.dtype, device=frame.device)
    x0, y0, x1, y1 = spec.window
    region = fitting.fit_torch(spec.fit, frame[y0:y1, x0:x1])
    if spec.warp is not None:
        rh, rw = region.shape[:2]
        grid = sample_grid(invert(spec.matrix), size, size, rh, rw, frame.device)
        out = F.grid_sample(region.permute(2, 0, 1)[None].float(), grid, mode="bilinear", padding_mode="zeros",
                            align_corners=False)
        return fitting.to_u8(out[0].permute(1, 2, 0))
    if spec.canvas == (0, 0, size, size):
        return region.contiguous()
    out = torch.zeros((size, size, frame.shape[2]), dtype=frame.dtype, device=frame.device)
    cx0, cy0, cx1, cy1 = spec.canvas
    out[cy0:cy1, cx0:cx1] = region
    return out


# ---- the spec in numpy, for the conformance test ---------------------------------------------

def _bilinear_zero(img: np.ndarray, m: np.ndarray, size: int) -> np.ndarray:
    """``img`` sampled bilinearly at ``invert(m) @ (u, v, 1)`` for every output pixel, 0 outside."""
    inv = invert(m)
    v, u = np.mgrid[0:size, 0:size].astype(np.float64)
    x = inv[0, 0] * u + inv[0, 1] * v + inv[0, 2]
    y = inv[1, 0] * u + inv[1, 1] * v + inv[1, 2]
    ix, iy = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = (x - ix)[..., None], (y - iy)[..., None]
    h, w = img.shape[:2]

    def at(yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
        ok = ((yy >= 0) & (yy < h) & (xx >= 0) & (xx < w))[..., None]
        return np.where(ok, img[yy.clip(0, h - 1), xx.clip(0, w - 1)].astype(np.float64), 0.0)

    out = ((1 - fy) * ((1 - fx) * at(iy, ix) + fx * at(iy, ix + 1))
           + fy * ((1 - fx) * at(iy + 1, ix) + fx * at(iy + 1, ix + 1)))
    return np.clip(np.floor(out + 0.5), 0, 255).astype(img.dtype)


def reference(spec: CropSpec, frame: np.ndarray) -> np.ndarray:
    """``spec`` in float64 numpy (``fit.reference`` for the fit)."""
    out = np.zeros((spec.size, spec.size) + frame.shape[2:], frame.dtype)
    if spec.empty:
        return out
    x0, y0, x1, y1 = spec.window
    region = fitting.reference(spec.fit, frame[y0:y1, x0:x1])
    if spec.warp is not None:
        return _bilinear_zero(region, spec.matrix, spec.size)
    cx0, cy0, cx1, cy1 = spec.canvas
    out[cy0:cy1, cx0:cx1] = region
    return out
