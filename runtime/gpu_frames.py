"""Frames that stay on the accelerator: the pipeline's frame-side work as torch operations.

For backends that run on a CUDA device (the PyTorch backend, TensorRT), a uint8 frame is
uploaded once (from a pinned host buffer, non-blocking, on a copy stream of its own so copies
overlap compute); crops, the graph's input normalisation, inference, argmax, paste-back and the
overlay all run there (the torch implementations of ``msf.frameops``' rules, the same specs the
OpenCV path follows), and only the rendered frame (or the labels, for masks) comes back. On a
CPU backend the OpenCV path is used; this module is only imported when a CUDA backend asks for it.

    gf = TorchFrames(device="cuda", size=512, resize=backend.input_spec.resize)
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

from msf.contract import DEFAULT_RESIZE, DEFAULT_SIZE, InputSpec
from msf.frameops.crop import crop_spec, crop_torch
from msf.frameops.geometry import Placement
from msf.frameops.normalize import to_input_torch
from msf.frameops.overlay import OverlaySpec, overlay_torch
from msf.frameops.paste import paste_spec, paste_torch


class TorchFrames:
    """Frames on a torch device (see the module docstring): crops at ``size``² by ``resize``."""

    def __init__(self, device: str | torch.device = "cpu", size: int = DEFAULT_SIZE,
                 resize: str = DEFAULT_RESIZE) -> None:
        self.device = torch.device(device)
        self.size = size
        self.resize = resize
        self.cuda = self.device.type == "cuda"
        self._pinned: dict[tuple[int, ...], list[tuple[torch.Tensor, Any]]] = {}
        self.ring_size = 4
        self.copy_stream = torch.cuda.Stream(self.device) if self.cuda else None

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

    # ---- the frame rules, on the device ------------------------------------------------------------

    def crop(self, frame: torch.Tensor, place: Placement) -> torch.Tensor:
        """size×size×3 uint8: the square ``place`` of ``frame`` (``msf.frameops.crop``)."""
        return crop_torch(crop_spec(place, frame.shape[0], frame.shape[1], self.size, self.resize), frame)

    def crops(self, frame: torch.Tensor, places: Sequence[Placement]) -> torch.Tensor:
        """N×size×size×3 uint8, one square per placement."""
        if not places:
            return torch.zeros((0, self.size, self.size, 3), dtype=torch.uint8, device=frame.device)
        return torch.stack([self.crop(frame, p) for p in places])

    @staticmethod
    def to_input(crops: torch.Tensor, spec: InputSpec, dtype: torch.dtype | None = None) -> torch.Tensor:
        """N×S×S×3 uint8 BGR -> the graph's input (``msf.frameops.normalize``)."""
        return to_input_torch(spec, crops, dtype)

    @staticmethod
    def labels(out: torch.Tensor, kind: str) -> torch.Tensor:
        """N×S×S uint8 class ids from a labels or logits output."""
        return (out.argmax(1) if kind == "logits" else out).to(torch.uint8)

    @staticmethod
    def assemble(shape: Sequence[int], labels: torch.Tensor, places: Sequence[Placement]) -> torch.Tensor:
        """H×W uint8 frame labels from per-square labels (``msf.frameops.paste``)."""
        spec = paste_spec(places, int(shape[0]), int(shape[1]), [int(lab.shape[0]) for lab in labels])
        return paste_torch(spec, labels)

    @staticmethod
    def overlay(frame: torch.Tensor, labels: torch.Tensor, alpha: float) -> torch.Tensor:
        """H×W×3 uint8: palette colours blended where labels are foreground (``msf.frameops.overlay``)."""
        return overlay_torch(OverlaySpec(alpha), frame, labels)
