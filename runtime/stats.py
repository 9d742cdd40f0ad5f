"""Per-stage and end-to-end latency statistics of the video pipeline, and a rolling FPS.

Each stage records its wall time (ms) and, where it runs in its own thread, that thread's CPU
time. ``end_to_end`` runs from capture (live sources: when the frame was grabbed; files: when it
was read) to the frame being written. Backend warm-up happens before the clock starts and is
reported on its own (``warmup_ms``).
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque
from typing import Any

import numpy as np

from msf.runtime.timing import summarize

STAGES = ("read", "preprocess", "infer", "postprocess", "render", "write", "end_to_end")


class PipelineStats:
    """Thread-safe collection of stage durations (ms) and frame completion times."""

    def __init__(self, window: int = 30) -> None:
        self._lock = threading.Lock()
        self.ms: dict[str, list[float]] = defaultdict(list)
        self.cpu_ms: dict[str, float] = defaultdict(float)
        self.frames = 0
        self.dropped = 0
        self.batches: list[int] = []
        self.warmup_ms: float | None = None
        self._recent: deque[float] = deque(maxlen=window)
        self.t_start = time.perf_counter()
        self.t_end: float | None = None
        self._cpu_start = time.process_time()
        self._cpu_end: float | None = None

    def start_clock(self) -> None:
        """Start timing now (after warm-up)."""
        self.t_start = time.perf_counter()
        self._cpu_start = time.process_time()

    def add(self, stage: str, ms: float, cpu_ms: float | None = None) -> None:
        with self._lock:
            self.ms[stage].append(ms)
            if cpu_ms is not None:
                self.cpu_ms[stage] += cpu_ms

    def frame_done(self, end_to_end_ms: float) -> None:
        with self._lock:
            self.ms["end_to_end"].append(end_to_end_ms)
            self.frames += 1
            self._recent.append(time.perf_counter())

    def rolling_fps(self) -> float:
        with self._lock:
            if len(self._recent) < 2:
                return 0.0
            span = self._recent[-1] - self._recent[0]
            return (len(self._recent) - 1) / span if span > 0 else 0.0

    def last_latency_ms(self) -> float:
        with self._lock:
            e2e = self.ms.get("end_to_end")
            return e2e[-1] if e2e else 0.0

    def finish(self) -> None:
        self.t_end = time.perf_counter()
        self._cpu_end = time.process_time()

    def summary(self) -> dict[str, Any]:
        """mean/p50/p90/p99 per stage (and its thread's CPU ms per frame), end to end (capture ->
        written), FPS and process CPU ms per frame over the timed run, warm-up separately."""
        wall = (self.t_end or time.perf_counter()) - self.t_start
        cpu = (self._cpu_end or time.process_time()) - self._cpu_start
        stages = {}
        with self._lock:
            for name in STAGES:
                vals = self.ms.get(name)
                if vals:
                    s = summarize(np.array(vals))
                    stages[name] = {k: round(s[k], 3) for k in ("mean_ms", "p50_ms", "p90_ms", "p99_ms", "max_ms")}
                    stages[name]["count"] = len(vals)
                    if name in self.cpu_ms and self.frames:
                        stages[name]["cpu_ms_per_frame"] = round(self.cpu_ms[name] / self.frames, 3)
        return {"frames": self.frames, "dropped": self.dropped, "wall_s": round(wall, 3),
                "fps": round(self.frames / wall, 3) if wall > 0 else 0.0,
                "process_cpu_ms_per_frame": round(1000 * cpu / self.frames, 3) if self.frames else None,
                "warmup_ms": round(self.warmup_ms, 1) if self.warmup_ms is not None else None,
                "mean_batch": round(float(np.mean(self.batches)), 2) if self.batches else None,
                "stages": stages}
