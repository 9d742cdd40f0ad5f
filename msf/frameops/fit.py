"""Fit: a picture resized to a given size, by the rule the graph's contract names
(``InputSpec.resize``, ``msf.contract.RESIZE_RULES``), or a label map resized nearest.

``FitSpec.steps`` is the rule in numbers: a list of (kind, width, height) resizes, each rounded
to uint8 for uint8 pictures, as OpenCV does per call:

- ``block``: the mean of k×k blocks (k divides both sides);
- ``area``: INTER_AREA, each output pixel the mean of the input it covers (fractional overlap);
- ``bilinear``: INTER_LINEAR (half-pixel centres, edges clamped, no antialiasing);
- ``nearest``: INTER_NEAREST, output pixel i takes input floor(i · n_in / n_out).

Implementations: ``bgr`` (OpenCV, any numpy picture or plane), ``i420`` (each plane fitted as its
own picture: Y at w×h, U and V at w/2×h/2), ``torch`` (H×W×C uint8 tensors; ``fit_tensor`` takes
float N×C×H×W batches, as training does). ``reference`` is the spec in float64 numpy.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import cv2
import numpy as np

from msf.contract import DEFAULT_RESIZE, RESIZE_RULES
from msf.frameops.base import i420_planes, implements

RULES = (*RESIZE_RULES, "nearest")
_CV_INTERP = {"block": cv2.INTER_AREA, "area": cv2.INTER_AREA, "bilinear": cv2.INTER_LINEAR,
              "nearest": cv2.INTER_NEAREST}


def shrink_factor(src_w: int, src_h: int, dst_w: int, dst_h: int) -> int:
    """The block step of "block+bilinear": the largest whole factor k dividing both sides that
    leaves a bilinear shrink under 2× (bilinear then skips no pixel); 1: no block step; 0: no
    whole factor does, one INTER_AREA resize instead."""
    ratio = min(src_w / dst_w, src_h / dst_h)
    for k in range(int(ratio), 1, -1):
        if src_w % k == 0 and src_h % k == 0:
            return k if ratio / k < 2 else 0
    return 1 if ratio < 2 else 0


@dataclass(frozen=True)
class FitSpec:
    """Resize a src_w×src_h picture to dst_w×dst_h by ``rule`` (a ``RESIZE_RULES`` entry, or
    "nearest" for label maps)."""

    src_w: int
    src_h: int
    dst_w: int
    dst_h: int
    rule: str = DEFAULT_RESIZE

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise ValueError(f"resize rule must be one of {', '.join(RULES)}, not {self.rule!r}")

    @property
    def steps(self) -> tuple[tuple[str, int, int], ...]:
        """The resizes this fit makes, in order: (kind, width, height)."""
        sw, sh, w, h = self.src_w, self.src_h, self.dst_w, self.dst_h
        if (sw, sh) == (w, h):
            return ()
        if self.rule == "nearest":
            return (("nearest", w, h),)
        if w > sw or h > sh:
            return (("bilinear", w, h),)
        k = 0 if self.rule == "area" else shrink_factor(sw, sh, w, h)
        if k == 0:
            return (("area", w, h),)
        steps = [("block", sw // k, sh // k)] if k > 1 else []
        if (sw // k, sh // k) != (w, h):
            steps.append(("bilinear", w, h))
        return tuple(steps)


def spec_for(img: Any, w: int, h: int, rule: str = DEFAULT_RESIZE) -> FitSpec:
    """The spec fitting ``img`` (numpy or torch, H×W[×C]) to w×h."""
    return FitSpec(int(img.shape[1]), int(img.shape[0]), w, h, rule)


# ---- OpenCV ---------------------------------------------------------------------------------

@implements("fit", "bgr")
def fit_bgr(spec: FitSpec, img: np.ndarray) -> np.ndarray:
    """``spec`` applied with OpenCV to an H×W or H×W×C numpy picture (``img`` itself when no step)."""
    for kind, w, h in spec.steps:
        img = cv2.resize(img, (w, h), interpolation=_CV_INTERP[kind])
    return img


def fit(img: np.ndarray, w: int, h: int, rule: str = DEFAULT_RESIZE) -> np.ndarray:
    """``img`` (numpy, H×W or H×W×C) resized to w×h by ``rule``: the one resize every caller uses."""
    return fit_bgr(spec_for(img, w, h, rule), img)


def fit_labels(labels: np.ndarray, w: int, h: int) -> np.ndarray:
    """A label map resized to w×h, nearest."""
    return fit(labels, w, h, "nearest")


# ---- I420 -----------------------------------------------------------------------------------

def chroma_spec(spec: FitSpec) -> FitSpec:
    """The spec of an I420 picture's U and V planes (half of every size)."""
    return FitSpec(spec.src_w // 2, spec.src_h // 2, spec.dst_w // 2, spec.dst_h // 2, spec.rule)


def fit_planes(spec: FitSpec, y: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """An I420 buffer of dst_w×dst_h made from the Y, U and V planes of a src_w×src_h picture."""
    out = np.empty((spec.dst_h * 3 // 2, spec.dst_w), np.uint8)
    oy, ou, ov = i420_planes(out, spec.dst_h)
    oy[:] = fit_bgr(spec, y)
    cs = chroma_spec(spec)
    ou[:] = fit_bgr(cs, u)
    ov[:] = fit_bgr(cs, v)
    return out


@implements("fit", "i420")
def fit_i420(spec: FitSpec, yuv: np.ndarray) -> np.ndarray:
    """``spec`` applied to an I420 buffer (all sizes even): each plane fitted as its own picture."""
    if any(v % 2 for v in (spec.src_w, spec.src_h, spec.dst_w, spec.dst_h)):
        raise ValueError("an I420 fit needs even sizes")
    return fit_planes(spec, *i420_planes(yuv, spec.src_h))


# ---- torch ----------------------------------------------------------------------------------

@lru_cache(maxsize=64)  # face squares change size every frame: bounded
def area_weights(n_in: int, n_out: int, device: str = "cpu") -> Any:
    """n_out×n_in float32 tensor of INTER_AREA along one axis: each output pixel the mean of the
    input interval it covers (fractional pixels weighted by their overlap). Made on ``device``."""
    import torch

    scale = n_in / n_out
    lo = torch.arange(n_out, dtype=torch.float64, device=device)[:, None] * scale
    j = torch.arange(n_in, dtype=torch.float64, device=device)[None, :]
    overlap = (torch.minimum(lo + scale, j + 1) - torch.maximum(lo, j)).clamp(min=0)
    return (overlap / scale).to(torch.float32)


def fit_tensor(spec: FitSpec, x: Any, quantize: bool = False) -> Any:
    """``spec`` applied to a float N×C×H×W tensor (unrounded result). ``quantize``: round each
    intermediate step to uint8 values, as OpenCV does on uint8 pictures."""
    import torch
    import torch.nn.functional as F  # noqa: N812

    steps = spec.steps
    for i, (kind, w, h) in enumerate(steps):
        if kind == "block":
            x = F.avg_pool2d(x, spec.src_w // w)
        elif kind == "area":
            dev = str(x.device)
            wh = area_weights(x.shape[-2], h, dev).to(x.dtype)
            ww = area_weights(x.shape[-1], w, dev).to(x.dtype)
            x = torch.einsum("ij,ncjk,lk->ncil", wh, x, ww)
        else:
            x = F.interpolate(x, size=(h, w), mode=kind, **({"align_corners": False} if kind == "bilinear" else {}))
        if quantize and i < len(steps) - 1:
            x = x.round().clamp(0, 255)
    return x


def to_u8(x: Any) -> Any:
    """A float tensor rounded to uint8."""
    import torch

    return x.round().clamp(0, 255).to(torch.uint8)


@implements("fit", "torch")
def fit_torch(spec: FitSpec, img: Any) -> Any:
    """``spec`` applied to an H×W×C (or H×W) uint8 tensor; uint8 result (``img`` when no step)."""
    if not spec.steps:
        return img
    x = img[..., None] if img.ndim == 2 else img
    if spec.rule == "nearest":
        import torch.nn.functional as F  # noqa: N812

        out = F.interpolate(x.permute(2, 0, 1)[None].float(), size=(spec.dst_h, spec.dst_w), mode="nearest")
        out = out[0].permute(1, 2, 0).to(img.dtype)
    else:
        out = to_u8(fit_tensor(spec, x.permute(2, 0, 1)[None].float(), quantize=True)[0].permute(1, 2, 0))
    return out[..., 0] if img.ndim == 2 else out


# ---- the spec in numpy, for the conformance test ---------------------------------------------

def _axis(kind: str, n_in: int, n_out: int) -> np.ndarray:
    """n_out×n_in float64 matrix of one step along one axis."""
    i = np.arange(n_out, dtype=np.float64)[:, None]
    j = np.arange(n_in, dtype=np.float64)[None, :]
    scale = n_in / n_out
    if kind in ("block", "area"):
        return np.clip(np.minimum(i * scale + scale, j + 1) - np.maximum(i * scale, j), 0, None) / scale
    if kind == "nearest":
        return (j == np.minimum(np.floor(i * scale), n_in - 1)).astype(np.float64)
    src = np.clip((i + 0.5) * scale - 0.5, 0, n_in - 1)  # bilinear: half-pixel centres, clamped
    lo = np.floor(src)
    return np.where(j == lo, 1 - (src - lo), 0) + np.where(j == np.minimum(lo + 1, n_in - 1), src - lo, 0)


def reference(spec: FitSpec, img: np.ndarray) -> np.ndarray:
    """``spec`` in float64 numpy: separable per-axis matrices, each step rounded to uint8."""
    out = img
    for kind, w, h in spec.steps:
        a, b = _axis(kind, out.shape[0], h), _axis(kind, out.shape[1], w)
        x = np.tensordot(a, out.astype(np.float64), axes=(1, 0))  # rows, then columns
        x = np.moveaxis(np.tensordot(b, x, axes=(1, 1)), 0, 1)
        out = np.clip(np.floor(x + 0.5), 0, 255).astype(img.dtype)
    return out
