"""Frames that stay on the accelerator: the pipeline's frame-side work as torch operations.

For backends that run on a CUDA device (the PyTorch backend, TensorRT), a uint8 frame is
uploaded once (from a pinned host buffer, non-blocking, on a copy stream of its own so copies
overlap compute); letterbox / face crops (``Placement.matrix``: the same similarity transform
the OpenCV path uses), the graph's input normalisation, inference, argmax, pasting the labels
back into the frame, colouring and blending all run there, and only the rendered frame (or the
labels, for masks) comes back.

One pre-processing spec, two implementations: ``msf.runtime.preprocess`` (OpenCV, the
reference) and this module (torch). Tests run both on the CPU and compare them. On a CPU
backend the OpenCV path is used; this module is only imported when a CUDA backend asks for it.

    gf = TorchFrames(device="cuda", size=512)
    x = gf.upload(frame_bgr)                          # H×W×3 uint8 on the device
    crops = gf.crops(x, places)                       # N×size×size×3 uint8
    out = backend.infer_on_device(gf.to_input(crops, spec))
    labels = gf.assemble(x.shape, gf.labels(out, kind), places)
    rendered = gf.download(gf.overlay(x, labels, alpha))
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from msf.contract import DEFAULT_SIZE, InputSpec
from msf.labels import PALETTE
from msf.runtime.align import crop_windows, shrink_factor


def area_weights(n_in: int, n_out: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """n_out×n_in matrix of OpenCV's INTER_AREA shrink along one axis: each output pixel is the
    mean of the input interval it covers (fractional pixels weighted by their overlap)."""
    scale = n_in / n_out
    lo = torch.arange(n_out, dtype=torch.float64, device=device)[:, None] * scale  # made there: no host copy
    j = torch.arange(n_in, dtype=torch.float64, device=device)[None, :]
    overlap = (torch.minimum(lo + scale, j + 1) - torch.maximum(lo, j)).clamp(min=0)
    return (overlap / scale).to(torch.float32)


# Weight matrices kept per TorchFrames; face squares change size every frame, so the cache is bounded.
_WEIGHT_CACHE_SIZE = 64


def _resize(img: torch.Tensor, h: int, w: int, cache: dict[tuple[int, int, str], torch.Tensor]) -> torch.Tensor:
    """H×W×C uint8 -> h×w×C float32 (unrounded), as ``preprocess.resize_to``: bilinear
    (``align_corners=False``, as INTER_LINEAR) when enlarging; when shrinking, a k×k block average
    (``shrink_factor``; rounded to uint8 as OpenCV does) and then bilinear, or, where no whole
    factor fits, INTER_AREA's separable weight matrices."""
    src_h, src_w = img.shape[:2]
    x = img.float()
    k = shrink_factor(src_w, src_h, w, h) if h <= src_h and w <= src_w else 1
    if k == 0:
        dev = str(img.device)

        def wts(n_in: int, n_out: int) -> torch.Tensor:
            key = (n_in, n_out, dev)
            w = cache.pop(key, None)  # re-inserted below: the dict's order is least recently used first
            if w is None:
                w = area_weights(n_in, n_out, img.device)
                if len(cache) >= _WEIGHT_CACHE_SIZE:
                    del cache[next(iter(cache))]
            cache[key] = w
            return w

        x = torch.einsum("ij,jkc->ikc", wts(src_h, h), x)
        return torch.einsum("kl,ilc->ikc", wts(src_w, w), x)
    x = x.permute(2, 0, 1)[None]
    if k > 1:
        x = _to_u8(F.avg_pool2d(x, k)).float()
    if x.shape[-2:] != (h, w):
        x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
    return x[0].permute(1, 2, 0)


def _to_u8(x: torch.Tensor) -> torch.Tensor:
    return x.round().clamp(0, 255).to(torch.uint8)


def _grid(m: np.ndarray, out_h: int, out_w: int, in_h: int, in_w: int, device: torch.device) -> torch.Tensor:
    """``grid_sample`` grid for output pixel (u, v) -> input pixel ``m @ (u, v, 1)`` (index coords),
    computed on ``device`` (no per-frame host work or upload beyond the six coefficients)."""
    v = torch.arange(out_h, dtype=torch.float64, device=device)[:, None]
    u = torch.arange(out_w, dtype=torch.float64, device=device)[None, :]
    (a, b, c), (d, e, f) = m.tolist()
    x = a * u + b * v + c
    y = d * u + e * v + f
    return torch.stack([(2 * x + 1) / in_w - 1, (2 * y + 1) / in_h - 1], dim=-1)[None].to(torch.float32)


def _invert(m: np.ndarray) -> np.ndarray:
    full = np.vstack([m, [0.0, 0.0, 1.0]])
    return np.linalg.inv(full)[:2]


def _bounds(place: Any, h: int, w: int, pad: int = 1) -> tuple[int, int, int, int]:
    """In-frame integer window (x0, y0, x1, y1) holding the placement's square (may be empty)."""
    pts = place.corners()
    x0, y0 = np.floor(pts.min(0)).astype(int) - pad
    x1, y1 = np.ceil(pts.max(0)).astype(int) + pad
    return max(int(x0), 0), max(int(y0), 0), min(int(x1), w), min(int(y1), h)


class TorchFrames:
    """Pre- and post-processing of frames on a torch device (see the module docstring)."""

    def __init__(self, device: str | torch.device = "cpu", size: int = DEFAULT_SIZE) -> None:
        self.device = torch.device(device)
        self.size = size
        self.cuda = self.device.type == "cuda"
        self._weights: dict[tuple[int, int, str], torch.Tensor] = {}
        self._pinned: dict[tuple[int, ...], list[tuple[torch.Tensor, Any]]] = {}
        self.ring_size = 4
        self.copy_stream = torch.cuda.Stream(self.device) if self.cuda else None
        pal = np.zeros((256, 3), np.uint8)
        pal[: len(PALETTE)] = PALETTE[:, ::-1]  # BGR, ids beyond the palette black (as the OpenCV path)
        self.palette = torch.as_tensor(pal, device=self.device)

    # ---- transfers -------------------------------------------------------------------------------

    def upload(self, frame_bgr: np.ndarray) -> torch.Tensor:
        """H×W×3 uint8 frame on the device. On CUDA: copied into a pinned buffer, then sent
        non-blocking on the copy stream; the current stream waits for it before using it."""
        t = torch.from_numpy(np.ascontiguousarray(frame_bgr))
        if not self.cuda:
            return t.to(self.device)
        # A small ring of pinned buffers per frame shape; a buffer is refilled only once the copy
        # that last read it has finished (its event), so the next frame's copy overlaps compute.
        ring = self._pinned.setdefault(tuple(t.shape), [])
        if len(ring) < self.ring_size:
            slot = (torch.empty(t.shape, dtype=torch.uint8, pin_memory=True), torch.cuda.Event())
            ring.append(slot)
        else:
            slot = ring.pop(0)
            ring.append(slot)
            slot[1].synchronize()
        pinned, done = slot
        pinned.copy_(t)
        with torch.cuda.stream(self.copy_stream):
            out = pinned.to(self.device, non_blocking=True)
            done.record(self.copy_stream)
        torch.cuda.current_stream(self.device).wait_stream(self.copy_stream)
        out.record_stream(torch.cuda.current_stream(self.device))
        return out

    def download(self, t: torch.Tensor) -> np.ndarray:
        """A device tensor back as a numpy array (waits for it)."""
        return t.cpu().numpy()

    # ---- pre-processing --------------------------------------------------------------------------

    def crop(self, frame: torch.Tensor, place: Any) -> torch.Tensor:
        """size×size×3 uint8: the square ``place`` of ``frame``, as ``preprocess.square_crop``."""
        size = self.size
        h, w = frame.shape[:2]
        if not place.axis_aligned:
            return self._warp_crop(frame, place)
        s = int(place.side)
        win = crop_windows(place, h, w, size)
        if win is not None and win[1] == (0, 0, size, size):  # the whole square is in the frame
            (fx0, fy0, fx1, fy1), _ = win
            region = frame[fy0:fy1, fx0:fx1]
            return region.contiguous() if s == size else _to_u8(_resize(region, size, size, self._weights))
        canvas = torch.zeros((size, size, 3), dtype=torch.uint8, device=frame.device)
        if win is None:
            return canvas
        (fx0, fy0, fx1, fy1), (cx0, cy0, cx1, cy1) = win
        if cx1 > cx0 and cy1 > cy0:
            canvas[cy0:cy1, cx0:cx1] = _to_u8(_resize(frame[fy0:fy1, fx0:fx1], cy1 - cy0, cx1 - cx0, self._weights))
        return canvas

    def _warp_crop(self, frame: torch.Tensor, place: Any) -> torch.Tensor:
        """Rotated / sub-pixel placements: ``preprocess.warp_crop`` (area pre-shrink when the
        square is over twice the input size, then a bilinear warp with zero border)."""
        size = self.size
        m = place.matrix(size).copy()
        h, w = frame.shape[:2]
        x0, y0, x1, y1 = _bounds(place, h, w)
        if x1 <= x0 or y1 <= y0:
            return torch.zeros((size, size, 3), dtype=torch.uint8, device=frame.device)
        region = frame[y0:y1, x0:x1]
        m[:, 2] += m[:, :2] @ np.array([x0, y0], np.float64)
        k = size / place.side
        if k < 0.5:
            rw, rh = max(1, round((x1 - x0) * k * 1.5)), max(1, round((y1 - y0) * k * 1.5))
            sx, sy = rw / (x1 - x0), rh / (y1 - y0)
            region = _to_u8(_resize(region, rh, rw, self._weights))
            inv = np.array([[1 / sx, 0, 0.5 / sx - 0.5], [0, 1 / sy, 0.5 / sy - 0.5], [0, 0, 1]])
            m = m @ inv
        rh, rw = region.shape[:2]
        grid = _grid(_invert(m), size, size, rh, rw, frame.device)  # output pixel -> region pixel
        x = region.permute(2, 0, 1)[None].float()
        out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        return _to_u8(out[0].permute(1, 2, 0))

    def crops(self, frame: torch.Tensor, places: Sequence[Any]) -> torch.Tensor:
        """N×size×size×3 uint8, one square per placement."""
        if not places:
            return torch.zeros((0, self.size, self.size, 3), dtype=torch.uint8, device=frame.device)
        return torch.stack([self.crop(frame, p) for p in places])

    @staticmethod
    def to_input(crops: torch.Tensor, spec: InputSpec, dtype: torch.dtype | None = None) -> torch.Tensor:
        """N×S×S×3 uint8 BGR -> the graph's input (``msf.frames.to_input`` in torch): channel
        order, layout, dtype (``dtype`` overrides a float input's, e.g. fp16 models) and scale."""
        x = crops
        if spec.color == "rgb":
            x = x.flip(-1)
        if spec.layout == "NCHW":
            x = x.permute(0, 3, 1, 2)
        if spec.dtype == "uint8":
            return x.contiguous()
        want = dtype or {"float32": torch.float32, "float16": torch.float16}[spec.dtype]
        return (x.to(torch.float32) * spec.scale).to(want).contiguous()

    # ---- post-processing -------------------------------------------------------------------------

    @staticmethod
    def labels(out: torch.Tensor, kind: str) -> torch.Tensor:
        """N×S×S uint8 class ids from a labels or logits output."""
        return (out.argmax(1) if kind == "logits" else out).to(torch.uint8)

    @staticmethod
    def _aligned_part(labels: torch.Tensor, place: Any, h: int, w: int) -> tuple[torch.Tensor, tuple[int, ...]]:
        s, n = int(place.side), labels.shape[0]
        x0, y0 = int(place.x0), int(place.y0)
        fx0, fy0, fx1, fy1 = max(x0, 0), max(y0, 0), min(x0 + s, w), min(y0 + s, h)
        if fx1 <= fx0 or fy1 <= fy0:
            return labels.new_zeros((0, 0)), (fx0, fy0, fx0, fy0)
        dev = labels.device
        ys = torch.clamp(((torch.arange(fy0, fy1, device=dev) - y0) * n) // s, max=n - 1)
        xs = torch.clamp(((torch.arange(fx0, fx1, device=dev) - x0) * n) // s, max=n - 1)
        return labels.index_select(0, ys).index_select(1, xs), (fx0, fy0, fx1, fy1)

    @staticmethod
    def _warped_part(labels: torch.Tensor, place: Any, h: int, w: int) -> tuple[torch.Tensor, tuple[int, ...]]:
        x0, y0, x1, y1 = _bounds(place, h, w)
        if x1 <= x0 or y1 <= y0:
            return labels.new_zeros((0, 0)), (x0, y0, x0, y0)
        n = labels.shape[0]
        m = place.matrix(n).copy()
        m[:, 2] += m[:, :2] @ np.array([x0, y0], np.float64)  # window pixel -> label pixel
        grid = _grid(m, y1 - y0, x1 - x0, n, n, labels.device)
        part = F.grid_sample(labels[None, None].float(), grid, mode="nearest", padding_mode="zeros",
                             align_corners=False)
        return part[0, 0].to(torch.uint8), (x0, y0, x1, y1)

    def _part(self, labels: torch.Tensor, place: Any, h: int, w: int) -> tuple[torch.Tensor, tuple[int, ...]]:
        return (self._aligned_part if place.axis_aligned else self._warped_part)(labels, place, h, w)

    @staticmethod
    def _ownership(place: Any, window: tuple[int, ...], device: torch.device) -> torch.Tensor:
        x0, y0, x1, y1 = window
        m = place.matrix(2)
        ys, xs = torch.meshgrid(torch.arange(y0, y1, dtype=torch.float32, device=device),
                                torch.arange(x0, x1, dtype=torch.float32, device=device), indexing="ij")
        u = m[0, 0] * xs + m[0, 1] * ys + (m[0, 2] - 0.5)
        v = m[1, 0] * xs + m[1, 1] * ys + (m[1, 2] - 0.5)
        return torch.maximum(u.abs(), v.abs())

    def assemble(self, shape: Sequence[int], labels: torch.Tensor, places: Sequence[Any]) -> torch.Tensor:
        """H×W uint8 frame labels from per-square labels, as ``Segmenter.assemble``: one square
        pasted (foreground only); overlapping squares: each pixel from the square it is most
        central in, background there filled by another square's foreground."""
        h, w = int(shape[0]), int(shape[1])
        out = torch.zeros((h, w), dtype=torch.uint8, device=labels.device)
        if len(places) <= 1:
            for lab, p in zip(labels, places):
                part, (x0, y0, x1, y1) = self._part(lab, p, h, w)
                if part.numel():
                    win = out[y0:y1, x0:x1]
                    win.copy_(torch.where(part > 0, part, win))
            return out
        best = torch.full((h, w), float("inf"), device=labels.device)
        parts = []
        for lab, p in zip(labels, places):
            part, win = self._part(lab, p, h, w)
            if not part.numel():
                continue
            x0, y0, x1, y1 = win
            own = self._ownership(p, win, labels.device)
            sel = own < best[y0:y1, x0:x1]
            out[y0:y1, x0:x1] = torch.where(sel, part, out[y0:y1, x0:x1])
            best[y0:y1, x0:x1] = torch.where(sel, own, best[y0:y1, x0:x1])
            parts.append((part, win))
        for part, (x0, y0, x1, y1) in parts:
            cur = out[y0:y1, x0:x1]
            out[y0:y1, x0:x1] = torch.where((cur == 0) & (part > 0), part, cur)
        return out

    def overlay(self, frame: torch.Tensor, labels: torch.Tensor, alpha: float) -> torch.Tensor:
        """H×W×3 uint8: palette colours blended over the frame where labels are foreground
        (``render.overlay_bgr`` in torch)."""
        color = self.palette[labels.long()]
        blend = _to_u8(frame.float() * (1 - alpha) + color.float() * alpha)
        return torch.where((labels > 0)[..., None], blend, frame)
