"""Squares in, labels out: the ``Parser`` of a ``Segmenter``.

It owns the backends (one per input size: a small face may be parsed at a smaller size), cuts
each square at its size, runs them in batches the graph takes (``flip``: each square and its
mirror image, class probabilities averaged with left/right classes swapped back), smooths class
probabilities over time per key (``smooth`` = A: p = A·p_prev + (1-A)·p_now; keys come with each
frame's ``Plan``) and drops labelled islands that touch no part of the face. Called from one
thread (inference).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from msf.frameops.crop import crop
from msf.frameops.geometry import Placement
from msf.frameops.normalize import to_input
from msf.frameops.paste import assemble
from msf.labels import NUM_CLASSES, flip_lut
from msf.runtime.backends import Backend
from msf.runtime.postprocess import drop_islands

# Face-matched input sizes (face and auto modes, checkpoints only): a face whose square is at most
# MAX_SIDE frame pixels is parsed at SIZE² when SIZE is below the Segmenter's size; larger faces
# at the Segmenter's size. Chosen by measurement with the shipped weights (model card,
# benchmarks/bench_faces.py): a square of at most 192 px carries no more detail than 320² holds;
# on such faces JPEG-compressed (the footage a small face comes in) 320² scores as well as 384² or
# better (face at 96 px, JPEG 40: 0.686 against 0.676) for about 0.7 of the inference, and in
# compressed 720p footage face mode scored higher with it. 256² lost 0.013-0.025 F on those faces.
FACE_SIZE_RULE: tuple[tuple[int, int], ...] = ((192, 320),)

_MIRROR = flip_lut()[:NUM_CLASSES].astype(np.intp)  # class c of a mirror image is class _MIRROR[c]


class Parser:
    """See the module docstring. ``new_backend(n)`` makes the backend of input size n when a
    size rule needs it; ``size_rule``: ((max square side, size), ...)."""

    def __init__(self, backend: Backend, new_backend: Callable[[int], Backend],
                 size_rule: tuple[tuple[int, int], ...] = (), smooth: float = 0.0,
                 clean_islands: bool = False, flip: bool = False) -> None:
        self.backend, self._new_backend = backend, new_backend
        self.size_rule, self.smooth, self.clean_islands = size_rule, smooth, clean_islands
        self.flip = flip
        self._backends: dict[int, Backend] = {}  # the other sizes' backends
        self.probs: dict[object, np.ndarray] = {}  # smoothed class probabilities per key

    @property
    def size(self) -> int:
        return self.backend.size

    @property
    def sizes(self) -> list[int]:
        """Every input size this parser may run at (one, unless faces get matched sizes)."""
        return sorted({self.size, *(n for _, n in self.size_rule)})

    def size_for(self, place: Placement) -> int:
        """The input size a square of ``place.side`` frame pixels is parsed at."""
        for side, n in self.size_rule:
            if place.side <= side:
                return n
        return self.size

    def crops(self, frame: np.ndarray, places: list[Placement]) -> list[np.ndarray]:
        rule = self.backend.input_spec.resize  # every size's graph is the same model's
        return [crop(frame, p, self.size_for(p), rule) for p in places]

    def backend_at(self, n: int) -> Backend:
        if n == self.size:
            return self.backend
        if n not in self._backends:
            self._backends[n] = self._new_backend(n)
        return self._backends[n]

    def forget_absent(self, stream: int, keys: list) -> None:
        """Drop the smoothing state of ``stream``'s keys that a frame no longer has (a face that
        left, a switch between full and face): called per frame, in order, before its inference."""
        for k in [k for k in self.probs if isinstance(k, tuple) and k[0] == stream and k not in keys]:
            del self.probs[k]

    def infer(self, crops: list[np.ndarray], keys: list | None = None) -> np.ndarray | list[np.ndarray]:
        """Class ids for square BGR crops: an N×S×S array, or a list of S×S maps when the crops come
        in several sizes (each size runs as its own batch). With smoothing, ``keys`` names each
        crop's key (crops in frame order)."""
        if not crops:
            return np.zeros((0, self.size, self.size), dtype=np.uint8)
        keys = keys if self.smooth else None
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
        backend = self.backend_at(n)
        parts = backend.batches(len(crops))
        if keys is None and not self.flip:
            labels = np.concatenate([backend.labels(to_input(backend.input_spec, crops[part])) for part in parts])
        elif keys is None:  # the mirror pass alone: only the argmax is needed
            labels = self._scores(backend, crops, parts, probs=False).argmax(axis=1).astype(np.uint8)
        else:
            labels = self._smoothed_labels(self._scores(backend, crops, parts, probs=True), keys)
        if self.clean_islands:
            labels = np.stack([drop_islands(lab) for lab in labels])
        return labels

    def _scores(self, backend: Backend, crops: list[np.ndarray], parts: list[slice], probs: bool) -> np.ndarray:
        """Class scores (N×C×S×S) of the crops: probabilities when ``probs`` (smoothing averages
        them), else logits. With ``flip``, averaged with their mirror images' (mirrored back,
        left/right classes swapped); summing logits instead of probabilities for the argmax alone
        spares two softmaxes and changed held-out F by under 0.001 (0.7714 against 0.7716)."""
        spec = backend.input_spec

        def run(images: list[np.ndarray]) -> np.ndarray:
            out = np.concatenate([backend.infer(to_input(spec, images[part])) for part in parts])
            return _softmax(out) if probs else out

        scores = run(crops)
        if self.flip:
            mirrored = run([c[:, ::-1] for c in crops])[:, _MIRROR, :, ::-1]
            scores = 0.5 * (scores + mirrored) if probs else scores + mirrored
        return scores

    def _smoothed_labels(self, probs: np.ndarray, keys: list) -> np.ndarray:
        """Exponential moving average of class probabilities per key, then argmax."""
        out = np.empty((len(probs),) + probs.shape[2:], dtype=np.uint8)
        for k, (p, key) in enumerate(zip(probs, keys)):
            prev = self.probs.get(key)
            if prev is not None and prev.shape == p.shape:
                p = self.smooth * prev + (1 - self.smooth) * p
            else:
                p = p.copy()  # not a view that would keep the whole batch's array alive
            self.probs[key] = p
            out[k] = p.argmax(axis=0)
        return out

    @staticmethod
    def assemble(shape: tuple[int, ...], labels: np.ndarray, places: list[Placement]) -> np.ndarray:
        """One frame-sized label map from per-square labels (inverse warp, nearest; overlapping
        faces: each pixel from the square it is most central in)."""
        return assemble(shape, labels, places)

    def warmup(self, crops: list[np.ndarray]) -> None:
        """Run the backend once on square ``crops`` (blank ones will do) without touching any
        smoothing state, so one-off costs (first run, autotuning, graph capture) are paid now."""
        backend = self.backend_at(crops[0].shape[0]) if crops else self.backend
        for part in backend.batches(len(crops)):
            backend.infer(to_input(backend.input_spec, crops[part]))

    def close(self) -> None:
        """Release every backend (each input size has its own)."""
        for b in [self.backend, *self._backends.values()]:
            b.close()


def _softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the class axis (1) of N×C×H×W logits, in float32."""
    e = np.exp(logits - logits.max(axis=1, keepdims=True), dtype=np.float32)
    return e / e.sum(axis=1, keepdims=True)
