"""Paste-back: per-square label maps back into one frame-sized map.

``PasteSpec`` is the paste in numbers: for each square, the frame ``window`` it covers and how a
frame pixel finds its label, nearest-neighbour either way: axis-aligned squares by the index
floor((x - x0)·n / side) (OpenCV's nearest resize; ``origin`` = (x0, y0, side)), rotated ones by
the ``warp`` (window pixel -> label pixel, rounded to the nearest label; 0 outside the square).
Several squares: each pixel takes the label of the square it is most central in (``ownership``,
from each square's ``own`` matrix), and where that square says background, the first other
square with foreground there fills it. One square: its labels, background elsewhere.

Implementations: ``bgr`` (numpy label maps, OpenCV), ``torch``. Labels have no I420 form.
``reference`` is the spec in numpy, pixel by pixel.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import cv2
import numpy as np

from msf.frameops.base import implements
from msf.frameops.geometry import Placement, Window, aligned_index, window_matrix


@dataclass(frozen=True)
class PastePart:
    """One square's part: see the module docstring (exactly one of ``origin`` and ``warp``)."""

    n: int  # the square's label map is n×n
    window: Window
    origin: tuple[int, int, int] | None = None
    warp: tuple[float, ...] | None = None  # 2×3 row-major
    own: tuple[float, ...] = ()  # the square's matrix(2), for ``ownership``

    @property
    def empty(self) -> bool:
        return self.window[2] <= self.window[0] or self.window[3] <= self.window[1]

    @property
    def matrix(self) -> np.ndarray:
        return np.asarray(self.warp, np.float64).reshape(2, 3)

    @property
    def indices(self) -> tuple[np.ndarray, np.ndarray]:
        """Axis-aligned parts: the label row of each window row, the label column of each column."""
        x0, y0, s = self.origin
        fx0, fy0, fx1, fy1 = self.window
        return aligned_index(y0, s, self.n, fy0, fy1), aligned_index(x0, s, self.n, fx0, fx1)

    def centrality(self) -> np.ndarray:
        """``geometry.ownership`` of the window (smaller: more central)."""
        m = np.asarray(self.own, np.float64).reshape(2, 3)
        x0, y0, x1, y1 = self.window
        xs, ys = np.meshgrid(np.arange(x0, x1, dtype=np.float32), np.arange(y0, y1, dtype=np.float32))
        u = m[0, 0] * xs + m[0, 1] * ys + (m[0, 2] - 0.5)
        v = m[1, 0] * xs + m[1, 1] * ys + (m[1, 2] - 0.5)
        return np.maximum(np.abs(u), np.abs(v))


@dataclass(frozen=True)
class PasteSpec:
    """Label maps of ``parts`` (one per square, in order) into an h×w map."""

    h: int
    w: int
    parts: tuple[PastePart, ...]


def paste_part(place: Placement, n: int, h: int, w: int) -> PastePart:
    """The part of ``place``'s n×n label map on an h×w frame."""
    own = tuple(float(v) for v in place.matrix(2).ravel())
    if place.axis_aligned:
        x0, y0, s = int(place.x0), int(place.y0), int(place.side)
        win = (max(x0, 0), max(y0, 0), min(x0 + s, w), min(y0 + s, h))
        return PastePart(n, win, origin=(x0, y0, s), own=own)
    win, m = window_matrix(place, n, h, w)
    return PastePart(n, win, warp=tuple(float(v) for v in m.ravel()), own=own)


def paste_spec(places: Sequence[Placement], h: int, w: int, n: int | Sequence[int]) -> PasteSpec:
    """The spec pasting each placement's label map (n×n, or one n per placement) into h×w."""
    ns = [n] * len(places) if isinstance(n, int) else list(n)
    return PasteSpec(h, w, tuple(paste_part(p, k, h, w) for p, k in zip(places, ns)))


# ---- OpenCV / numpy -------------------------------------------------------------------------

@lru_cache(maxsize=64)
def _resize_is_exact(part: PastePart) -> bool:
    """Whether ``cv2.resize(INTER_NEAREST)`` of the covered label block gives exactly the part's
    indices (checked once per geometry on random labels: the resize is ~5× cheaper than numpy's
    take, but its float arithmetic can round an index differently)."""
    ys, xs = part.indices
    labels = np.random.default_rng(0).integers(0, 256, (part.n, part.n), dtype=np.uint8)
    block = labels[ys[0]:ys[-1] + 1, xs[0]:xs[-1] + 1]
    got = cv2.resize(block, (len(xs), len(ys)), interpolation=cv2.INTER_NEAREST)
    return bool(np.array_equal(got, labels.take(ys, axis=0).take(xs, axis=1)))


def part_labels(part: PastePart, labels: np.ndarray) -> np.ndarray:
    """The window's labels of one square (numpy)."""
    x0, y0, x1, y1 = part.window
    if part.warp is not None:
        return cv2.warpAffine(labels, part.matrix, (x1 - x0, y1 - y0), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    ys, xs = part.indices
    if _resize_is_exact(part):
        block = labels[ys[0]:ys[-1] + 1, xs[0]:xs[-1] + 1]
        return cv2.resize(block, (x1 - x0, y1 - y0), interpolation=cv2.INTER_NEAREST)
    return labels.take(ys, axis=0).take(xs, axis=1)


@implements("paste", "bgr")
def paste_bgr(spec: PasteSpec, labels: Sequence[np.ndarray]) -> np.ndarray:
    """The h×w uint8 label map (numpy) from one label map per part."""
    h, w = spec.h, spec.w
    out = np.zeros((h, w), dtype=np.uint8)
    parts = [(p, part_labels(p, lab)) for p, lab in zip(spec.parts, labels) if not p.empty]
    if len(spec.parts) <= 1:
        for p, lab in parts:
            x0, y0, x1, y1 = p.window
            if p.window == (0, 0, w, h) and lab.dtype == out.dtype:
                return lab  # the square covers the frame (letterbox): the part is the frame's map
            out[y0:y1, x0:x1] = lab  # a fresh map: plain assignment, no foreground mask needed
        return out
    best = np.full((h, w), np.inf, dtype=np.float32)
    for p, lab in parts:
        x0, y0, x1, y1 = p.window
        own = p.centrality()
        sel = own < best[y0:y1, x0:x1]
        np.copyto(out[y0:y1, x0:x1], lab, where=sel)
        np.copyto(best[y0:y1, x0:x1], own, where=sel)
    for p, lab in parts:  # background of the owner: another square's foreground
        x0, y0, x1, y1 = p.window
        np.copyto(out[y0:y1, x0:x1], lab, where=(out[y0:y1, x0:x1] == 0) & (lab > 0))
    return out


def assemble(shape: Sequence[int], labels: Sequence[np.ndarray], places: Sequence[Placement]) -> np.ndarray:
    """One frame-sized (``shape[:2]``) label map from per-square labels (numpy)."""
    h, w = int(shape[0]), int(shape[1])
    return paste_bgr(paste_spec(places, h, w, [lab.shape[0] for lab in labels]), labels)


# ---- torch ----------------------------------------------------------------------------------

def _part_torch(part: PastePart, labels: Any) -> Any:
    import torch
    import torch.nn.functional as F  # noqa: N812

    from msf.frameops.crop import sample_grid

    x0, y0, x1, y1 = part.window
    if part.warp is not None:
        grid = sample_grid(part.matrix, y1 - y0, x1 - x0, part.n, part.n, labels.device)
        out = F.grid_sample(labels[None, None].float(), grid, mode="nearest", padding_mode="zeros", align_corners=False)
        return out[0, 0].to(torch.uint8)
    ys, xs = (torch.as_tensor(i, device=labels.device) for i in part.indices)
    return labels.index_select(0, ys).index_select(1, xs)


def _centrality_torch(part: PastePart, device: Any) -> Any:
    import torch

    m = np.asarray(part.own, np.float64).reshape(2, 3)
    x0, y0, x1, y1 = part.window
    ys, xs = torch.meshgrid(torch.arange(y0, y1, dtype=torch.float32, device=device),
                            torch.arange(x0, x1, dtype=torch.float32, device=device), indexing="ij")
    u = m[0, 0] * xs + m[0, 1] * ys + (m[0, 2] - 0.5)
    v = m[1, 0] * xs + m[1, 1] * ys + (m[1, 2] - 0.5)
    return torch.maximum(u.abs(), v.abs())


@implements("paste", "torch")
def paste_torch(spec: PasteSpec, labels: Any) -> Any:
    """The h×w uint8 label map (a tensor on the labels' device) from one label map per part."""
    import torch

    dev = labels[0].device if len(labels) else "cpu"
    out = torch.zeros((spec.h, spec.w), dtype=torch.uint8, device=dev)
    parts = [(p, _part_torch(p, lab)) for p, lab in zip(spec.parts, labels) if not p.empty]
    if len(spec.parts) <= 1:
        for p, lab in parts:
            x0, y0, x1, y1 = p.window
            out[y0:y1, x0:x1] = lab
        return out
    best = torch.full((spec.h, spec.w), float("inf"), device=dev)
    for p, lab in parts:
        x0, y0, x1, y1 = p.window
        own = _centrality_torch(p, dev)
        sel = own < best[y0:y1, x0:x1]
        out[y0:y1, x0:x1] = torch.where(sel, lab, out[y0:y1, x0:x1])
        best[y0:y1, x0:x1] = torch.where(sel, own, best[y0:y1, x0:x1])
    for p, lab in parts:
        x0, y0, x1, y1 = p.window
        cur = out[y0:y1, x0:x1]
        out[y0:y1, x0:x1] = torch.where((cur == 0) & (lab > 0), lab, cur)
    return out


# ---- the spec in numpy, for the conformance test ---------------------------------------------

def reference(spec: PasteSpec, labels: Sequence[np.ndarray]) -> np.ndarray:
    """``spec`` pixel by pixel: every square's label and centrality at every frame pixel, then
    the most central square's label, its background filled by the first square with foreground."""
    h, w = spec.h, spec.w
    ys, xs = np.mgrid[0:h, 0:w]
    labs, owns = [], []
    for p, lab in zip(spec.parts, labels):
        x0, y0, x1, y1 = p.window
        inside = (xs >= x0) & (xs < x1) & (ys >= y0) & (ys < y1)
        if p.warp is not None:
            m = p.matrix
            u = np.floor(m[0, 0] * (xs - x0) + m[0, 1] * (ys - y0) + m[0, 2] + 0.5).astype(int)
            v = np.floor(m[1, 0] * (xs - x0) + m[1, 1] * (ys - y0) + m[1, 2] + 0.5).astype(int)
            ok = inside & (u >= 0) & (u < p.n) & (v >= 0) & (v < p.n)
            got = np.where(ok, lab[v.clip(0, p.n - 1), u.clip(0, p.n - 1)], 0)
        else:
            ox, oy, s = p.origin
            iy = np.minimum((ys - oy) * p.n // s, p.n - 1).clip(0)
            ix = np.minimum((xs - ox) * p.n // s, p.n - 1).clip(0)
            got = np.where(inside, lab[iy, ix], 0)
        labs.append(got.astype(np.uint8))
        own = np.full((h, w), np.inf, np.float32)
        if not p.empty:
            own[y0:y1, x0:x1] = p.centrality()
        owns.append(own)
    if not labs:
        return np.zeros((h, w), np.uint8)
    labs_a, owns_a = np.stack(labs), np.stack(owns)
    owner = np.argmin(owns_a, axis=0)
    out = np.where(np.isfinite(owns_a.min(0)), np.take_along_axis(labs_a, owner[None], 0)[0], 0).astype(np.uint8)
    for lab in labs:
        out = np.where((out == 0) & (lab > 0), lab, out)
    return out

