"""Latency, throughput and accuracy of one backend configuration (what ``msf-bench`` reports).

Two latencies per configuration, as trtexec separates them: *compute* (the backend call on an
input already in the graph's contract) and *end to end* (BGR frames at their own size ->
letterbox crop -> input contract -> backend -> labels at frame size, host work included).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from msf.metrics import ce7454_fscore
from msf.runtime.backends import Backend
from msf.runtime.preprocess import letterbox_placement, paste_labels, square_crop, to_input
from msf.runtime.timing import summarize

NOISY_CV = 0.10  # coefficient of variation above which a run is flagged as noisy


@dataclass
class BenchSettings:
    batch: int = 1
    warmup: int = 5
    iters: int | None = 30
    duration: float | None = None  # seconds; used when iters is None


def _timed_loop(fn: Callable[[], Any], s: BenchSettings, clock: Callable[[], float]) -> np.ndarray:
    for _ in range(s.warmup):
        fn()
    times: list[float] = []
    t_end = clock() + s.duration if s.iters is None and s.duration else None
    while (len(times) < s.iters) if s.iters is not None else (clock() < t_end or len(times) < 3):
        t0 = clock()
        fn()
        times.append((clock() - t0) * 1000.0)
    return np.array(times)


def frame_labels(backend: Backend, frames: list[np.ndarray]) -> list[np.ndarray]:
    """End-to-end path: BGR frames -> letterboxed crops -> backend -> frame-sized labels."""
    places = [letterbox_placement(*f.shape[:2]) for f in frames]
    crops = [square_crop(f, p, backend.size) for f, p in zip(frames, places)]
    labels = backend.labels(to_input(crops, backend.input_spec))
    out = []
    for f, lab, p in zip(frames, labels, places):
        full = np.zeros(f.shape[:2], np.uint8)
        paste_labels(full, lab, p)
        out.append(full)
    return out


def measure(backend: Backend, frames: list[np.ndarray], settings: BenchSettings,
            clock: Callable[[], float] = time.perf_counter) -> dict[str, Any]:
    """Compute-only and end-to-end latency statistics for batches of ``settings.batch`` frames."""
    batch = [frames[i % len(frames)] for i in range(settings.batch)]
    places = [letterbox_placement(*f.shape[:2]) for f in batch]
    x = to_input([square_crop(f, p, backend.size) for f, p in zip(batch, places)], backend.input_spec)
    compute_ms = _timed_loop(lambda: backend.infer(x), settings, clock)
    compute = summarize(compute_ms, settings.batch)
    e2e = summarize(_timed_loop(lambda: frame_labels(backend, batch), settings, clock), settings.batch)
    rec = {k: v for k, v in compute.items()}
    rec.update({f"e2e_{k}": v for k, v in e2e.items() if k != "runs"})
    rec["cv_max"] = max(compute["cv"], e2e["cv"])  # the table's CV column: the noisier of the two loops
    rec["noisy"] = bool(rec["cv_max"] > NOISY_CV)
    rec["_samples"] = compute_ms  # raw compute latencies, for plots (not serialised)
    return rec


def reference_labels(reference: Backend, pairs: list[tuple[np.ndarray, np.ndarray]]) -> list[np.ndarray]:
    """The reference backend's labels for each pair's image (computed once, compared many times)."""
    return [frame_labels(reference, [img])[0] for img, _ in pairs]


def accuracy(backend: Backend, ref_labels: list[np.ndarray],
             pairs: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    """CE7454 F-score of ``backend`` on labeled (BGR image, mask) pairs, the reference's F-score,
    and pixel label agreement with the reference's labels (PyTorch fp32)."""
    f, f_ref, agree, total = [], [], 0, 0
    for (img, mask), ref in zip(pairs, ref_labels):
        lab = frame_labels(backend, [img])[0]
        f.append(ce7454_fscore(mask, lab))
        f_ref.append(ce7454_fscore(mask, ref))
        agree += int((lab == ref).sum())
        total += lab.size
    return {"f_score": float(np.mean(f)), "f_score_reference": float(np.mean(f_ref)),
            "agreement": agree / max(total, 1), "accuracy_images": len(pairs)}
