"""The streaming pipeline: read -> preprocess -> infer (batched) -> postprocess -> render -> write.

Readers (one thread per source), inference (one thread; batches whatever frames are ready,
across sources) and rendering/writing (the calling thread) overlap through bounded queues.
File sources are processed in order, every frame; live sources drop stale frames upstream.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from msf.errors import MsfError
from msf.runtime.render import RenderOptions, render
from msf.runtime.segmenter import Segmenter
from msf.runtime.sinks import MaskSink, VideoSink, WindowSink
from msf.runtime.sources import Source
from msf.runtime.stats import PipelineStats

_END = object()


@dataclass
class Job:
    """One source and where its results go."""

    source: Source
    video: VideoSink | None = None
    masks: MaskSink | None = None
    written: int = 0


@dataclass
class PipelineConfig:
    batch: int = 4
    queue_size: int = 8
    render: RenderOptions = field(default_factory=RenderOptions)
    window: WindowSink | None = None
    max_frames: int | None = None


def _put(q: queue.Queue, item, stop: threading.Event) -> bool:
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def run_pipeline(seg: Segmenter, jobs: list[Job], cfg: PipelineConfig, stats: PipelineStats,
                 on_frame: Callable[[int], None] | None = None) -> None:
    """Run every job to its end (or Ctrl-C / error); sinks are left for the caller to close."""
    q_in: queue.Queue = queue.Queue(maxsize=cfg.queue_size)
    q_out: queue.Queue = queue.Queue(maxsize=cfg.queue_size)
    stop = threading.Event()
    errors: list[BaseException] = []

    def reader(j: int, job: Job) -> None:
        try:
            i = 0
            while not stop.is_set() and (cfg.max_frames is None or i < cfg.max_frames):
                t0 = time.perf_counter()
                frame = job.source.read()
                if frame is None:
                    break
                t1 = time.perf_counter()
                stats.add("read", (t1 - t0) * 1000)
                # Face detection and cropping run here, per source and in order, overlapping inference.
                places = seg.placements(frame, j)
                crops = seg.crops(frame, places)
                stats.add("preprocess", (time.perf_counter() - t1) * 1000)
                if not _put(q_in, (j, i, frame, t0, places, crops), stop):
                    break
                i += 1
        except BaseException as exc:  # noqa: BLE001  (reported by the main thread)
            errors.append(exc)
            stop.set()
        finally:
            _put(q_in, (j, _END, None, 0.0, None, None), stop)

    def infer() -> None:
        open_sources = len(jobs)
        try:
            while open_sources and not stop.is_set():
                try:
                    items = [q_in.get(timeout=0.1)]
                except queue.Empty:
                    continue
                while len(items) < cfg.batch:
                    try:
                        items.append(q_in.get_nowait())
                    except queue.Empty:
                        break
                frames = [it for it in items if it[1] is not _END]
                open_sources -= len(items) - len(frames)
                if frames:
                    _infer_batch(seg, frames, q_out, stats, stop)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
            stop.set()
        finally:
            _put(q_out, _END, stop)

    threads = [threading.Thread(target=reader, args=(j, job), name=f"read-{j}", daemon=True)
               for j, job in enumerate(jobs)]
    threads.append(threading.Thread(target=infer, name="infer", daemon=True))
    for t in threads:
        t.start()
    try:
        while True:
            try:
                item = q_out.get(timeout=0.2)
            except queue.Empty:
                if stop.is_set() and not any(t.is_alive() for t in threads):
                    break
                continue
            if item is _END:
                break
            j, i, frame, labels, t_read = item
            _emit(jobs[j], i, frame, labels, t_read, seg, cfg, stats, stop)
            if on_frame is not None:
                on_frame(j)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=5)
        stats.dropped = sum(job.source.dropped for job in jobs)
        stats.finish()
    if errors:
        exc = errors[0]
        if isinstance(exc, MsfError):
            raise exc
        raise MsfError(f"pipeline failed: {type(exc).__name__}: {exc}") from exc


def _infer_batch(seg: Segmenter, items: list, q_out: queue.Queue, stats: PipelineStats,
                 stop: threading.Event) -> None:
    t1 = time.perf_counter()
    labels = seg.infer([c for *_, crops in items for c in crops],
                       [it[0] for it in items for _ in it[5]])
    t2 = time.perf_counter()
    k = 0
    out = []
    for j, i, frame, t_read, places, _ in items:
        out.append((j, i, frame, seg.assemble(frame.shape, labels[k:k + len(places)], places), t_read))
        k += len(places)
    t3 = time.perf_counter()
    n = len(items)
    stats.add("infer", (t2 - t1) * 1000 / n)
    stats.add("postprocess", (t3 - t2) * 1000 / n)
    stats.batches.append(n)
    for o in out:
        if not _put(q_out, o, stop):
            return


def _emit(job: Job, index: int, frame: np.ndarray, labels: np.ndarray, t_read: float, seg: Segmenter,
          cfg: PipelineConfig, stats: PipelineStats, stop: threading.Event) -> None:
    t0 = time.perf_counter()
    hud = None
    if cfg.render.hud:
        e2e = stats.ms.get("end_to_end")
        hud = [f"{stats.rolling_fps():5.1f} FPS  {e2e[-1] if e2e else 0:5.0f} ms",
               f"{seg.describe()}  {seg.mode} {seg.size}px"]
    out = render(frame, labels, cfg.render, hud) if (job.video or cfg.window) else None
    t1 = time.perf_counter()
    if job.video is not None:
        job.video.write(out)
    if job.masks is not None:
        job.masks.write(index, labels)
    if cfg.window is not None and not cfg.window.write(out):
        stop.set()
    job.written += 1
    t2 = time.perf_counter()
    stats.add("render", (t1 - t0) * 1000)
    stats.add("write", (t2 - t1) * 1000)
    stats.frame_done((t2 - t_read) * 1000)
