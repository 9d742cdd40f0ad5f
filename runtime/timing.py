"""Latency measurement: warm-up, repeated timed calls, percentile summaries, machine description."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


def time_calls(fn: Callable[[], Any], iters: int | None = 30, warmup: int = 5,
               clock: Callable[[], float] = time.perf_counter, duration: float | None = None) -> np.ndarray:
    """Milliseconds of each call of ``fn`` after ``warmup`` untimed calls: ``iters`` calls, or,
    with ``iters=None``, as many as fit in ``duration`` seconds (at least 3)."""
    if iters is None and not duration:
        raise ValueError("time_calls needs iters or a duration")
    for _ in range(warmup):
        fn()
    times: list[float] = []
    t_end = clock() + duration if iters is None else 0.0
    while len(times) < iters if iters is not None else (clock() < t_end or len(times) < 3):
        t0 = clock()
        fn()
        times.append((clock() - t0) * 1000.0)
    return np.array(times, dtype=np.float64)


def summarize(ms: np.ndarray, batch: int = 1) -> dict[str, float]:
    """mean / p50 / p90 / p95 / p99 / min / max in ms, coefficient of variation, images per second."""
    ms = np.asarray(ms, dtype=np.float64)
    p50 = float(np.percentile(ms, 50))
    return {
        "mean_ms": float(ms.mean()), "p50_ms": p50, "p90_ms": float(np.percentile(ms, 90)),
        "p95_ms": float(np.percentile(ms, 95)), "p99_ms": float(np.percentile(ms, 99)),
        "min_ms": float(ms.min()), "max_ms": float(ms.max()),
        "cv": float(ms.std() / ms.mean()) if ms.mean() > 0 else 0.0,
        "throughput_ips": batch * 1000.0 / p50 if p50 > 0 else float("inf"), "runs": int(ms.size),
    }


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment() -> dict[str, Any]:
    """The machine and library versions a measurement was taken on."""
    from msf.contract import library_versions

    env = {"cpu": cpu_name(), "cores": os.cpu_count(), "platform": platform.platform(),
           "python": platform.python_version(), "versions": library_versions()}
    try:
        import torch

        env["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            env["gpu"] = torch.cuda.get_device_name(0)
    except Exception:  # noqa: BLE001
        pass
    try:
        import openvino

        env["versions"]["openvino"] = openvino.__version__
    except Exception:  # noqa: BLE001
        pass
    return env


def utc_now() -> str:
    """The time a measurement was recorded, ISO 8601 in UTC to the second."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def machine_line(env: dict[str, Any], *parts: str, date: str | None = None) -> str:
    """The line naming when and where a result was measured: date · CPU · cores · ``parts``."""
    return " · ".join(([date] if date else []) + [env["cpu"], f"{env['cores']} cores", *parts])


def markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    """Lines of a Markdown table."""
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


def save_results(out: str | Path, result: dict[str, Any], markdown: str) -> str:
    """Write ``OUT.json`` (the full record) and ``OUT.md`` (the summary), each atomically; print and
    return the Markdown."""
    from msf.atomic import atomic_write

    out = Path(out)
    for suffix, text in ((".json", json.dumps(result, indent=2)), (".md", markdown)):
        atomic_write(out.with_suffix(suffix), lambda tmp, text=text: Path(tmp).write_text(text))
    print(markdown)
    return markdown
