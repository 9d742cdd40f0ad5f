"""``msf.runtime.Segmenter``: face parsing of BGR frames in three lines of user code.

    from msf.runtime import Segmenter
    seg = Segmenter()                    # shipped weights, best backend on this machine
    labels = seg.predict(frame_bgr)      # H×W uint8 class ids, same size as the frame
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from msf.errors import MsfError
from msf.runtime.backends import Backend, create_backend
from msf.runtime.preprocess import Placement, letterbox_placement, paste_labels, square_crop, to_input

MODES = ("full", "face")


class Segmenter:
    """Frames in, label maps out. ``mode="full"`` parses the whole (letterboxed) frame;
    ``mode="face"`` finds every face, parses square crops as one batch and pastes them back."""

    def __init__(self, model: str | Path | None = None, backend: str = "auto", mode: str = "full", *,
                 device: str | None = None, threads: int | None = None, spinning: bool = False,
                 fp16: bool = False, size: int = 512, smooth: float = 0.0, cuda_graphs: bool = False,
                 detect_every: int = 1) -> None:
        if mode not in MODES:
            raise MsfError(f"unknown mode {mode!r} ({', '.join(MODES)})")
        if detect_every < 1:
            raise MsfError(f"detect_every must be at least 1, not {detect_every}")
        if not 0.0 <= smooth < 1.0:
            raise MsfError(f"smoothing must be in [0, 1), not {smooth}")
        if smooth and mode != "full":
            raise MsfError("temporal smoothing needs --mode full (face crops move between frames)")
        # Smoothing averages class probabilities over time, so the graph must return logits.
        self.backend: Backend = create_backend(model, backend, device=device, threads=threads,
                                               spinning=spinning, fp16=fp16, size=size,
                                               head="logits" if smooth else "labels", cuda_graphs=cuda_graphs)
        if smooth and self.backend.output_kind != "logits":
            raise MsfError("temporal smoothing needs a model that returns logits (a checkpoint, or an ONNX "
                           "exported with --head logits)")
        self.smooth = smooth
        self._probs: dict[int, np.ndarray] = {}  # per stream: smoothed class probabilities
        self.mode = mode
        self.size = self.backend.size
        self.trackers: dict[int, object] = {}  # face mode: one tracker per stream
        self.detect_every = detect_every

    def placements(self, frame: np.ndarray, stream: int = 0) -> list[Placement]:
        """The squares of ``frame`` the model will see (one letterbox, or one per face); face
        boxes are tracked and smoothed per ``stream`` (call in frame order for each stream)."""
        if self.mode == "full":
            return [letterbox_placement(*frame.shape[:2])]
        if stream not in self.trackers:
            from msf.runtime.faces import FaceTracker

            self.trackers[stream] = FaceTracker(detect_every=self.detect_every)
        return self.trackers[stream].update(frame)

    def crops(self, frame: np.ndarray, places: list[Placement]) -> list[np.ndarray]:
        return [square_crop(frame, p, self.size) for p in places]

    def infer(self, crops: list[np.ndarray], streams: list[int] | None = None) -> np.ndarray:
        """Class ids for square BGR crops, in batches the graph accepts. With smoothing, ``streams``
        names the stream of each crop (one crop per frame, frames in order per stream)."""
        if not crops:
            return np.zeros((0, self.size, self.size), dtype=np.uint8)
        step = self.backend.max_batch or len(crops)
        if not self.smooth:
            outs = [self.backend.labels(to_input(crops[i:i + step], self.backend.input_spec))
                    for i in range(0, len(crops), step)]
            return np.concatenate(outs)
        logits = np.concatenate([self.backend.infer(to_input(crops[i:i + step], self.backend.input_spec))
                                 for i in range(0, len(crops), step)])
        return self._smoothed_labels(logits, streams or [0] * len(crops))

    def _smoothed_labels(self, logits: np.ndarray, streams: list[int]) -> np.ndarray:
        """Exponential moving average of softmax probabilities per stream, then argmax."""
        out = np.empty((len(logits),) + logits.shape[2:], dtype=np.uint8)
        for k, (lg, s) in enumerate(zip(logits, streams)):
            e = np.exp(lg - lg.max(axis=0, keepdims=True))
            p = e / e.sum(axis=0, keepdims=True)
            prev = self._probs.get(s)
            if prev is not None and prev.shape == p.shape:
                p = self.smooth * prev + (1 - self.smooth) * p
            self._probs[s] = p
            out[k] = p.argmax(axis=0)
        return out

    @staticmethod
    def assemble(shape: tuple[int, ...], labels: np.ndarray, places: list[Placement]) -> np.ndarray:
        """One frame-sized label map from per-square labels."""
        out = np.zeros(shape[:2], dtype=np.uint8)
        for lab, p in zip(labels, places):
            paste_labels(out, lab, p)
        return out

    def predict(self, frame_bgr: np.ndarray) -> np.ndarray:
        """H×W uint8 class ids for one BGR frame (OpenCV's channel order)."""
        return self.predict_batch([frame_bgr])[0]

    def predict_batch(self, frames_bgr: list[np.ndarray]) -> list[np.ndarray]:
        """Label maps for several frames, all their squares inferred as one batch."""
        for f in frames_bgr:
            if not isinstance(f, np.ndarray) or f.ndim != 3 or f.shape[2] != 3 or f.dtype != np.uint8:
                raise MsfError("frames must be H×W×3 uint8 BGR arrays")
        places = [self.placements(f) for f in frames_bgr]  # one stream: frames in order
        crops = [c for f, ps in zip(frames_bgr, places) for c in self.crops(f, ps)]
        labels = self.infer(crops, [0] * len(crops))
        out, i = [], 0
        for f, ps in zip(frames_bgr, places):
            out.append(self.assemble(f.shape, labels[i:i + len(ps)], ps))
            i += len(ps)
        return out

    def describe(self) -> str:
        return self.backend.describe()
