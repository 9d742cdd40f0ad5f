"""Per-stage and end-to-end latency statistics of the video pipeline, and a rolling FPS."""

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
        self.frames = 0
        self.dropped = 0
        self.batches: list[int] = []
        self._recent: deque[float] = deque(maxlen=window)
        self.t_start = time.perf_counter()
        self.t_end: float | None = None

    def add(self, stage: str, ms: float) -> None:
        with self._lock:
            self.ms[stage].append(ms)

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

    def finish(self) -> None:
        self.t_end = time.perf_counter()

    def summary(self) -> dict[str, Any]:
        """mean/p50/p90/p99 per stage, end to end (frame read -> frame written), FPS over the run."""
        wall = (self.t_end or time.perf_counter()) - self.t_start
        stages = {}
        for name in STAGES:
            vals = self.ms.get(name)
            if vals:
                s = summarize(np.array(vals))
                stages[name] = {k: round(s[k], 3) for k in ("mean_ms", "p50_ms", "p90_ms", "p99_ms", "max_ms")}
                stages[name]["count"] = len(vals)
        return {"frames": self.frames, "dropped": self.dropped, "wall_s": round(wall, 3),
                "fps": round(self.frames / wall, 3) if wall > 0 else 0.0,
                "mean_batch": round(float(np.mean(self.batches)), 2) if self.batches else None,
                "stages": stages}
