"""Latency, throughput and accuracy of one backend configuration (what ``msf-bench`` reports).

Two latencies per configuration, as trtexec separates them: *compute* (the backend call on an
input already in the graph's contract) and *end to end* (BGR frames at their own size ->
letterbox crop -> input contract -> backend -> labels at frame size, host work included: the
``Segmenter`` path msf-video runs).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from msf.frameops.crop import crop
from msf.frameops.geometry import letterbox
from msf.frameops.normalize import to_input
from msf.metrics import bootstrap_ci, ce7454_fscore
from msf.runtime.backends import Backend
from msf.runtime.timing import summarize, time_calls

NOISY_CV = 0.10  # coefficient of variation above which a run is flagged as noisy


@dataclass
class BenchSettings:
    batch: int = 1
    warmup: int = 5
    iters: int | None = 30
    duration: float | None = None  # seconds; used when iters is None


def _segmenter(backend: Backend):
    """A full-frame Segmenter around an existing backend (nothing is loaded again)."""
    from msf.runtime.segmenter import Segmenter

    return Segmenter(backend=backend, mode="full")


def frame_labels(backend: Backend, frames: list[np.ndarray]) -> list[np.ndarray]:
    """End-to-end path: BGR frames -> letterboxed crops -> backend -> frame-sized labels."""
    return _segmenter(backend).predict_batch(frames)


def measure(backend: Backend, frames: list[np.ndarray], settings: BenchSettings,
            clock: Callable[[], float] = time.perf_counter) -> dict[str, Any]:
    """Compute-only and end-to-end latency statistics for batches of ``settings.batch`` frames."""
    batch = [frames[i % len(frames)] for i in range(settings.batch)]
    spec = backend.input_spec
    x = to_input(spec, [crop(f, letterbox(*f.shape[:2]), backend.size, spec.resize) for f in batch])
    seg = _segmenter(backend)

    def timed(fn: Callable[[], Any]) -> np.ndarray:
        return time_calls(fn, settings.iters, settings.warmup, clock, settings.duration)

    compute_ms = timed(lambda: backend.infer(x))
    compute = summarize(compute_ms, settings.batch)
    e2e = summarize(timed(lambda: seg.predict_batch(batch)), settings.batch)
    rec = dict(compute)
    rec.update({f"e2e_{k}": v for k, v in e2e.items() if k != "runs"})
    rec["cv_max"] = max(compute["cv"], e2e["cv"])  # the table's CV column: the noisier of the two loops
    rec["noisy"] = bool(rec["cv_max"] > NOISY_CV)
    rec["_samples"] = compute_ms  # raw compute latencies, for plots (not serialised)
    return rec


def reference_labels(reference: Backend, pairs: list[tuple[np.ndarray, np.ndarray]]) -> list[np.ndarray]:
    """The reference backend's labels for each pair's image (computed once, compared many times)."""
    seg = _segmenter(reference)
    return [seg.predict(img) for img, _ in pairs]


def fscore(backend: Backend, pairs: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, Any]:
    """CE7454 F-score of ``backend`` on labeled (BGR image, mask) pairs, with its 95 % interval."""
    seg = _segmenter(backend)
    scores = [ce7454_fscore(mask, seg.predict(img)) for img, mask in pairs]
    return {"f_score": float(np.mean(scores)), "f_score_ci95": list(bootstrap_ci(scores))}


def accuracy(backend: Backend, ref_labels: list[np.ndarray],
             pairs: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    """CE7454 F-score of ``backend`` on labeled (BGR image, mask) pairs, the reference's F-score,
    and pixel label agreement with the reference's labels (PyTorch fp32)."""
    seg = _segmenter(backend)
    f, f_ref, agree, total = [], [], 0, 0
    for (img, mask), ref in zip(pairs, ref_labels):
        lab = seg.predict(img)
        f.append(ce7454_fscore(mask, lab))
        f_ref.append(ce7454_fscore(mask, ref))
        agree += int((lab == ref).sum())
        total += lab.size
    return {"f_score": float(np.mean(f)), "f_score_reference": float(np.mean(f_ref)),
            "agreement": agree / max(total, 1), "accuracy_images": len(pairs)}
