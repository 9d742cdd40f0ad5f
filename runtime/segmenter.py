"""``msf.runtime.Segmenter``: face parsing of BGR frames in three lines of user code.

    from msf.runtime import Segmenter
    seg = Segmenter()                    # shipped weights, best backend on this machine, auto mode
    labels = seg.predict(frame_bgr)      # H×W uint8 class ids, same size as the frame

``Segmenter()`` and ``msf-video`` share their defaults (``DEFAULT_MODE``: auto), so the same
frame gets the same labels from either. The Segmenter is the public façade over two parts the
pipeline uses directly: ``placer`` (``msf.runtime.placer``: where the model looks, face tracking)
and ``parser`` (``msf.runtime.parser``: backends, batching, smoothing, island clean-up).
"""

from __future__ import annotations

from collections import deque
from pathlib import Path

import numpy as np

from msf.contract import CHECKPOINT_EXTS
from msf.errors import MsfError
from msf.frameops.geometry import Placement
from msf.frameops.paste import assemble
from msf.runtime.backends import Backend, create_backend
from msf.runtime.faces import DETECT_SIZE, SCAN_EVERY, SCORE_THRESHOLD
from msf.runtime.parser import FACE_SIZE_RULE, Parser
from msf.runtime.placer import AUTO_FULL_IOU, DEFAULT_MODE, MODES, Placer
from msf.sizes import check_size

__all__ = ["AUTO_FULL_IOU", "DEFAULT_MODE", "FACE_SIZE_RULE", "MODES", "Segmenter"]


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

    ``flip`` parses each square and its mirror image and averages their class scores (left and
    right eyes, brows and ears swapped back): about 0.01 higher F for two inferences per square.

    In face and auto modes, ``matched_sizes`` parses a small face at a smaller input size
    (``FACE_SIZE_RULE``; a checkpoint's own backend per size, crops batched per size), and
    ``drop_islands`` removes labelled regions of a face's crop that touch none of its core parts
    (skin, eyes, brows, nose, mouth, lips).
    """

    def __init__(self, model: str | Path | None = None, backend: str | Backend = "auto", mode: str = DEFAULT_MODE, *,
                 device: str | None = None, threads: int | None = None, spinning: bool = False,
                 fp16: bool = False, size: int | None = None, smooth: float = 0.0, cuda_graphs: bool = False,
                 detect_every: int = 1, detect_size: int = DETECT_SIZE, detect_score: float = SCORE_THRESHOLD,
                 scan_every: int = SCAN_EVERY, matched_sizes: bool = True, drop_islands: bool = True,
                 flip: bool = False) -> None:
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
        # Smoothing and the mirror pass average class probabilities, so the graph must return logits.
        opts = dict(device=device, threads=threads, spinning=spinning, fp16=fp16,
                    head="logits" if smooth or flip else "labels", cuda_graphs=cuda_graphs)
        first = create_backend(model, backend, size=size, **opts)
        if (smooth or flip) and first.output_kind != "logits":
            what = "temporal smoothing" if smooth else "the mirror pass (--tta flip)"
            raise MsfError(f"{what} needs a model that returns logits (a checkpoint, or an ONNX "
                           "exported with --head logits)")
        self.smooth = smooth
        self.mode = mode
        per_size = (isinstance(backend, str) and mode != "full" and matched_sizes
                    and (model is None or Path(model).suffix.lower() in CHECKPOINT_EXTS or backend == "null"))
        # smaller sizes each get the same model and backend, exported (and cached) at that size
        rule = tuple((side, n) for side, n in FACE_SIZE_RULE if n < first.size) if per_size else ()
        self.parser = Parser(first, lambda n: create_backend(model, backend, size=n, **opts), rule, smooth,
                             clean_islands=drop_islands and mode != "full", flip=flip)
        self.placer = Placer(mode, first.size, detect_every, detect_size, detect_score, scan_every)
        # For callers of placements() then infer(): each frame's smoothing keys, queued per stream
        # and consumed in the same order (the pipeline carries them on its frames instead).
        self._keys: dict[int, deque] = {}
        self._cur: dict[int, list] = {}

    # -- the parts, as attributes of the façade ------------------------------------------------------
    @property
    def backend(self) -> Backend:
        """The backend at ``size``."""
        return self.parser.backend

    @backend.setter
    def backend(self, value: Backend) -> None:
        self.parser.backend = value

    @property
    def size(self) -> int:
        return self.parser.size

    @property
    def size_rule(self) -> tuple[tuple[int, int], ...]:
        return self.parser.size_rule

    @size_rule.setter
    def size_rule(self, value: tuple[tuple[int, int], ...]) -> None:
        self.parser.size_rule = value

    @property
    def clean_islands(self) -> bool:
        return self.parser.clean_islands

    @property
    def trackers(self) -> dict[int, object]:
        return self.placer.trackers

    @property
    def sizes(self) -> list[int]:
        """Every input size this Segmenter may run at (one, unless faces get matched sizes)."""
        return self.parser.sizes

    def size_label(self) -> str:
        return "/".join(map(str, self.sizes))

    def size_for(self, place: Placement) -> int:
        """The input size a square of ``place.side`` frame pixels is parsed at (``FACE_SIZE_RULE``)."""
        return self.parser.size_for(place)

    def single_size(self) -> None:
        """Parse every face at ``size`` (paths that crop at one size only, such as the GPU frame path)."""
        self.parser.size_rule = ()

    # -- frames, one step at a time --------------------------------------------------------------------
    def placements(self, frame: np.ndarray, stream: int = 0) -> list[Placement]:
        """The squares of ``frame`` the model will see (one letterbox, or one aligned square per
        face); faces are tracked and smoothed per ``stream`` (call in frame order for each stream)."""
        return self._queue(self.placer.place(frame, stream))

    def full_placements(self, h: int, w: int, stream: int = 0) -> list[Placement]:
        """``placements`` in full mode, from the frame's size alone: the letterbox."""
        return self._queue(self.placer.full(h, w, stream))

    def _queue(self, plan) -> list[Placement]:
        if self.smooth and plan.keys:  # consumed by _key(), frame by frame
            self._keys.setdefault(plan.keys[0][0], deque()).append(plan.keys)
        return plan.places

    def _key(self, stream: int) -> object:
        """Smoothing key of the next crop of ``stream`` (falls back to the stream itself)."""
        while not self._cur.get(stream):
            pending = self._keys.get(stream)
            if not pending:
                return stream
            keys = pending.popleft()
            self.parser.forget_absent(stream, keys)
            self._cur[stream] = list(keys)
        return self._cur[stream].pop(0)

    def crops(self, frame: np.ndarray, places: list[Placement]) -> list[np.ndarray]:
        return self.parser.crops(frame, places)

    def infer(self, crops: list[np.ndarray], streams: list[int] | None = None) -> np.ndarray | list[np.ndarray]:
        """Class ids for square BGR crops, in batches the graph accepts: an N×S×S array, or a list
        of S×S maps when the crops come in several sizes (each size runs as its own batch). With
        smoothing, ``streams`` names the stream of each crop (crops of the frames ``placements``
        gave, in the same order)."""
        keys = [self._key(s) for s in (streams or [0] * len(crops))] if self.smooth else None
        return self.parser.infer(crops, keys)

    @staticmethod
    def assemble(shape: tuple[int, ...], labels: np.ndarray, places: list[Placement]) -> np.ndarray:
        """One frame-sized label map from per-square labels (inverse warp, nearest; overlapping
        faces: each pixel from the square it is most central in)."""
        return assemble(shape, labels, places)

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

    def reset(self) -> None:
        """Forget every stream's state (face tracks, smoothed probabilities): the next frame of any
        stream starts fresh, as in a new Segmenter with the same backends."""
        self.placer.trackers.clear()
        self.parser.probs.clear()
        self._keys.clear()
        self._cur.clear()

    def describe(self) -> str:
        """The backend, and the mirror pass when it runs (the HUD and the run summary show it)."""
        return self.backend.describe() + (" + mirror pass" if self.parser.flip else "")

    def warmup(self, crops: list[np.ndarray]) -> None:
        """Run the backend once on square ``crops`` (blank ones will do) without touching any
        stream's state, so one-off costs (first run, autotuning, graph capture) are paid now."""
        self.parser.warmup(crops)

    def close(self) -> None:
        """Release every backend (each input size has its own)."""
        self.parser.close()
