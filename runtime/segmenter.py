"""``msf.runtime.Segmenter``: face parsing of BGR frames in three lines of user code.

    from msf.runtime import Segmenter
    seg = Segmenter()                    # shipped weights, best backend on this machine, auto mode
    labels = seg.predict(frame_bgr)      # H×W uint8 class ids, same size as the frame

``Segmenter()`` and ``msf-video`` share their defaults (``DEFAULT_MODE``: auto), so the same
frame gets the same labels from either.
"""

from __future__ import annotations

from collections import deque
from pathlib import Path

import numpy as np

from msf.contract import CHECKPOINT_EXTS
from msf.errors import MsfError
from msf.frames import to_input
from msf.runtime.backends import Backend, create_backend
from msf.runtime.faces import DETECT_SIZE, SCAN_EVERY, SCORE_THRESHOLD
from msf.runtime.postprocess import drop_islands
from msf.runtime.preprocess import Placement, assemble_labels, letterbox_placement, square_crop
from msf.sizes import check_size

MODES = ("auto", "full", "face")
DEFAULT_MODE = "auto"  # msf-video's --mode default too
# --mode auto parses the whole frame when it is a face close-up like the training images: a face
# whose aligned crop covers the letterboxed frame with IoU ≥ this. Measured with
# benchmarks/measure_face_template.py: IoU ≥ 0.71 on 99 % of the 800 training faces (median 0.91);
# a face of 200-520 px in a 1280×720 frame has IoU ≤ 0.17.
AUTO_FULL_IOU = 0.5
# Face-matched input sizes (face and auto modes, checkpoints only): a face whose square is at most
# MAX_SIDE frame pixels is parsed at SIZE² when SIZE is below the Segmenter's size; larger faces
# at the Segmenter's size. Off by default: measured with msf-eval --degrade (model card), the
# shipped weights score 0.013-0.025 lower at 256² than at 384² on faces shrunk to 64-192 px, for
# about half the inference cost.
FACE_SIZE_RULE: tuple[tuple[int, int], ...] = ((192, 256),)


class Segmenter:
    """Frames in, label maps out. ``mode="full"`` parses the whole (letterboxed) frame;
    ``mode="face"`` finds every face (YuNet), warps each onto the training images' alignment,
    parses the crops as one batch and pastes the labels back; ``mode="auto"`` is face mode, except
    that a frame that already is a face close-up (like the training images: a face whose aligned
    square covers the frame's letterbox square with IoU ≥ ``AUTO_FULL_IOU``) is parsed whole.
    The default is auto, as in ``msf-video``. ``size``: the model input side (``msf.sizes``:
    a multiple of 32 from 64 to 1024).

    ``smooth`` = A averages class probabilities over time, p = A·p_prev + (1-A)·p_now: over the
    whole frame in full mode, per tracked face in its aligned crop in face mode (a new face starts
    fresh), and in auto mode whichever of the two the frame used.

    In face and auto modes, ``matched_sizes`` parses a small face at a smaller input size
    (``FACE_SIZE_RULE``; a checkpoint's own backend per size, crops batched per size), and
    ``drop_islands`` removes labelled regions of a face's crop that touch none of its core parts
    (skin, eyes, brows, nose, mouth, lips).
    """

    def __init__(self, model: str | Path | None = None, backend: str | Backend = "auto", mode: str = DEFAULT_MODE, *,
                 device: str | None = None, threads: int | None = None, spinning: bool = False,
                 fp16: bool = False, size: int | None = None, smooth: float = 0.0, cuda_graphs: bool = False,
                 detect_every: int = 1, detect_size: int = DETECT_SIZE, detect_score: float = SCORE_THRESHOLD,
                 scan_every: int = SCAN_EVERY, matched_sizes: bool = False, drop_islands: bool = True) -> None:
        if mode not in MODES:
            raise MsfError(f"unknown mode {mode!r} ({', '.join(MODES)})")
        if detect_every < 1:
            raise MsfError(f"detect_every must be at least 1, not {detect_every}")
        if scan_every < 1:
            raise MsfError(f"scan_every must be at least 1, not {scan_every}")
        if not 0.0 <= smooth < 1.0:
            raise MsfError(f"smoothing must be in [0, 1), not {smooth}")
        if size is not None and backend != "null" and not isinstance(backend, Backend):
            check_size(size, "size")  # the model's own rule (the null backend has no model)
        if mode != "full":  # load the detector now: a missing or unloadable file fails before any frame
            from msf.runtime.faces import YuNetDetector

            YuNetDetector(detect_size, detect_score)
        # Smoothing averages class probabilities over time, so the graph must return logits.
        opts = dict(device=device, threads=threads, spinning=spinning, fp16=fp16,
                    head="logits" if smooth else "labels", cuda_graphs=cuda_graphs)
        self.backend: Backend = create_backend(model, backend, size=size, **opts)
        if smooth and self.backend.output_kind != "logits":
            raise MsfError("temporal smoothing needs a model that returns logits (a checkpoint, or an ONNX "
                           "exported with --head logits)")
        self.smooth = smooth
        self._probs: dict[object, np.ndarray] = {}  # per stream (and face): smoothed class probabilities
        self.mode = mode
        self.size = self.backend.size
        self._backends: dict[int, Backend] = {}  # the other sizes' backends (matched face sizes)
        per_size = (isinstance(backend, str) and mode != "full" and matched_sizes
                    and (model is None or Path(model).suffix.lower() in CHECKPOINT_EXTS or backend == "null"))
        # smaller sizes each get the same model and backend, exported (and cached) at that size
        self.size_rule = tuple((side, n) for side, n in FACE_SIZE_RULE if n < self.size) if per_size else ()
        self._new_backend = lambda n: create_backend(model, backend, size=n, **opts)
        self.clean_islands = drop_islands and mode != "full"
        self.trackers: dict[int, object] = {}  # face/auto mode: one tracker per stream
        self.detect_every, self.detect_size, self.detect_score = detect_every, detect_size, detect_score
        self.scan_every = scan_every
        # smoothing keys (stream, face track id or "full") of each frame's squares, queued by
        # placements() and consumed in the same order by infer()
        self._keys: dict[int, deque] = {}
        self._cur: dict[int, list] = {}

    def placements(self, frame: np.ndarray, stream: int = 0) -> list[Placement]:
        """The squares of ``frame`` the model will see (one letterbox, or one aligned square per
        face); faces are tracked and smoothed per ``stream`` (call in frame order for each stream)."""
        if self.mode == "full":
            return self.full_placements(*frame.shape[:2], stream)
        full = [letterbox_placement(*frame.shape[:2])]
        if stream not in self.trackers:
            from msf.runtime.faces import FaceTracker

            self.trackers[stream] = FaceTracker(detect_every=self.detect_every, detect_size=self.detect_size,
                                                score_threshold=self.detect_score, size=self.size,
                                                scan_every=self.scan_every)
        tracker = self.trackers[stream]
        places = tracker.update(frame)
        if self.mode == "auto" and places:
            from msf.runtime.align import square_iou

            if max(square_iou(p, full[0]) for p in places) >= AUTO_FULL_IOU:
                return self._queue(stream, full, ["full"])
        return self._queue(stream, places, tracker.track_ids)

    def full_placements(self, h: int, w: int, stream: int = 0) -> list[Placement]:
        """``placements`` in full mode, from the frame's size alone: the letterbox."""
        return self._queue(stream, [letterbox_placement(h, w)], ["full"])

    def _queue(self, stream: int, places: list[Placement], keys: list) -> list[Placement]:
        if self.smooth and keys:  # consumed by _key() in the inference thread, frame by frame
            self._keys.setdefault(stream, deque()).append([(stream, k) for k in keys])
        return places

    def _key(self, stream: int) -> object:
        """Smoothing key of the next crop of ``stream`` (falls back to the stream itself)."""
        while not self._cur.get(stream):
            pending = self._keys.get(stream)
            if not pending:
                return stream
            keys = pending.popleft()
            # Forget faces absent from this frame (or a switch between full and face) here, in the
            # thread that also updates _probs, when this frame's turn comes: readers run ahead.
            for k in [k for k in self._probs if isinstance(k, tuple) and k[0] == stream and k not in keys]:
                del self._probs[k]
            self._cur[stream] = keys
        return self._cur[stream].pop(0)

    @property
    def sizes(self) -> list[int]:
        """Every input size this Segmenter may run at (one, unless faces get matched sizes)."""
        return sorted({self.size, *(n for _, n in self.size_rule)})

    def size_label(self) -> str:
        return "/".join(map(str, self.sizes))

    def size_for(self, place: Placement) -> int:
        """The input size a square of ``place.side`` frame pixels is parsed at (``FACE_SIZE_RULE``)."""
        for side, n in self.size_rule:
            if place.side <= side:
                return n
        return self.size

    def single_size(self) -> None:
        """Parse every face at ``size`` (paths that crop at one size only, such as the GPU frame path)."""
        self.size_rule = ()

    def crops(self, frame: np.ndarray, places: list[Placement]) -> list[np.ndarray]:
        return [square_crop(frame, p, self.size_for(p)) for p in places]

    def _backend_at(self, n: int) -> Backend:
        if n == self.size:
            return self.backend
        if n not in self._backends:
            self._backends[n] = self._new_backend(n)
        return self._backends[n]

    def infer(self, crops: list[np.ndarray], streams: list[int] | None = None) -> np.ndarray | list[np.ndarray]:
        """Class ids for square BGR crops, in batches the graph accepts: an N×S×S array, or a list
        of S×S maps when the crops come in several sizes (each size runs as its own batch). With
        smoothing, ``streams`` names the stream of each crop (one crop per frame, frames in order
        per stream)."""
        if not crops:
            return np.zeros((0, self.size, self.size), dtype=np.uint8)
        keys = [self._key(s) for s in (streams or [0] * len(crops))] if self.smooth else None
        sizes = {c.shape[0] for c in crops}
        if len(sizes) == 1:
            return self._infer_at(sizes.pop(), crops, keys)
        out: list[np.ndarray] = [None] * len(crops)  # type: ignore[list-item]
        for n in sorted(sizes):
            idx = [i for i, c in enumerate(crops) if c.shape[0] == n]
            labels = self._infer_at(n, [crops[i] for i in idx], [keys[i] for i in idx] if keys else None)
            for i, lab in zip(idx, labels):
                out[i] = lab
        return out

    def _infer_at(self, n: int, crops: list[np.ndarray], keys: list | None) -> np.ndarray:
        backend = self._backend_at(n)
        chunks = [to_input(crops[part], backend.input_spec) for part in backend.batches(len(crops))]
        if keys is None:
            labels = np.concatenate([backend.labels(x) for x in chunks])
        else:
            labels = self._smoothed_labels(np.concatenate([backend.infer(x) for x in chunks]), keys)
        if self.clean_islands:
            labels = np.stack([drop_islands(lab) for lab in labels])
        return labels

    def _smoothed_labels(self, logits: np.ndarray, streams: list) -> np.ndarray:
        """Exponential moving average of softmax probabilities per key (stream, or stream and
        face), then argmax."""
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
        """One frame-sized label map from per-square labels (inverse warp, nearest; overlapping
        faces: each pixel from the square it is most central in)."""
        return assemble_labels(shape, labels, places)

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

    def warmup(self, crops: list[np.ndarray]) -> None:
        """Run the backend once on square ``crops`` (blank ones will do) without touching any
        stream's state, so one-off costs (first run, autotuning, graph capture) are paid now."""
        backend = self._backend_at(crops[0].shape[0]) if crops else self.backend
        for part in backend.batches(len(crops)):
            backend.infer(to_input(crops[part], backend.input_spec))

    def close(self) -> None:
        """Release every backend (each input size has its own)."""
        for b in [self.backend, *self._backends.values()]:
            b.close()
