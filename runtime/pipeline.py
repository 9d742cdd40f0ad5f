"""The streaming pipeline: read -> preprocess -> infer (batched) -> postprocess -> render -> write.

``run_pipeline`` wires the stages of ``msf.runtime.stages`` with bounded channels, so every stage
overlaps the others:

- one ``Reader`` per source: decode, face detection / letterbox, crops (in frame order);
- one ``Infer``: batches whatever frames are ready, across sources, and pastes the labels back
  into frame-sized maps;
- per source, a ``Renderer`` (overlay, HUD, the sinks' ``prepare``: PNG compression) and a
  ``Writer`` (the sinks' ``send``: video encoding, mask files, the browser viewer). OpenCV, zlib
  and PyAV release the GIL, so these really run in parallel with decoding and inference;
- the calling thread only counts frames (progress bar) and serves ``main_thread`` sinks (the
  OpenCV window).

For files, the renderer (and in full mode the reader) runs at a lower priority (``helper_nice``)
so that the encoder and inference, which every frame waits for, get the cores first.

File sources are processed in order, every frame, with throughput-sized queues; live sources
use shallow queues (and drop stale frames upstream) so latency stays bounded. The backend is
warmed up before the clock starts; ``PipelineStats.warmup_ms`` reports how long that took.

Each source's frames travel in one format, negotiated from what its parts declare
(``frame_format``): with a backend that takes device frames on CUDA (the PyTorch backend,
TensorRT), on the GPU from upload to rendered overlay (``msf.runtime.gpu_frames``); on the CPU,
full mode from a video file to H.264 keeps the decoder's I420 frames all the way to the encoder;
everything else works on BGR frames.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from msf.errors import MsfError
from msf.frameops.crop import i420_letterbox_size
from msf.runtime.render import RenderOptions
from msf.runtime.segmenter import Segmenter
from msf.runtime.sinks import BGR, I420, Sink
from msf.runtime.sources import Source
from msf.runtime.stages import (
    BgrPath,
    Channel,
    DeviceFrames,
    DevicePath,
    End,
    FrameItem,
    I420Path,
    Infer,
    Reader,
    Renderer,
    Run,
    Workers,
    Writer,
    lower_thread_priority,
)
from msf.runtime.stats import PipelineStats

__all__ = ["FrameItem", "Job", "PipelineConfig", "frame_format", "live_config", "lower_thread_priority",
           "run_pipeline", "warm_up"]
HELPER_NICE = 15  # see PipelineConfig.helper_nice


@dataclass
class Job:
    """One source and where its results go (a sink may be shared with other jobs: a window, the
    browser viewer)."""

    source: Source
    sinks: list[Sink] = field(default_factory=list)
    written: int = 0

    def wants(self, what: str) -> bool:
        """Whether any sink reads ``what`` ("rendered", "labels") off the frames."""
        return any(what in s.wants for s in self.sinks)

    def sink_of(self, kind: type) -> Any:
        """The first sink of class ``kind``, or None."""
        return next((s for s in self.sinks if isinstance(s, kind)), None)


@dataclass
class PipelineConfig:
    """``queue_size``: frames buffered between stages (files: deep, for throughput; live: 2).
    ``warmup``: run the backend once per batch size before the clock starts.
    ``helper_nice``: for file sources, the render thread and, in full mode, the decode/letterbox
    thread run this much nicer (lower priority, Linux) than inference and encoding, the stages
    every frame waits for: those get the cores first and the helpers, whose deep queues absorb the
    delay, fill the gaps (measured on 2 cores, 720p to H.264 veryfast: +11 % FPS at 15, +8 % at
    10). In face and auto mode the reader keeps normal priority: its face detection feeds
    inference (niced, a 720p face clip with ONNX Runtime ran 4-6 % slower). Live sources keep
    normal priority (their frames must not wait). 0: all threads equal."""

    batch: int = 4
    queue_size: int = 8
    helper_nice: int = HELPER_NICE
    render: RenderOptions = field(default_factory=RenderOptions)
    max_frames: int | None = None
    warmup: bool = True
    device_frames: bool | None = None  # None: on the GPU for CUDA backends that allow it; True/False: force
    i420_frames: bool = True  # full mode, video file -> H.264: frames stay I420 (see _i420_frames)


def live_config(sources: int, batch: int = 4, **kw: Any) -> PipelineConfig:
    """Settings for live sources: one frame waiting per stage and at most one frame per source in
    a batch, so a frame never waits for later frames of its own source (latency over throughput)."""
    return PipelineConfig(batch=max(1, min(batch, sources)), queue_size=1, helper_nice=0, **kw)


def warm_up(seg: Segmenter, batch: int) -> float:
    """Run the backend on blank inputs (batch 1 and ``batch``) so one-off costs (ONNX Runtime's
    first run, cuDNN autotuning, CUDA graph capture) happen before timing; returns ms taken."""
    t0 = time.perf_counter()
    sizes = sorted({1, max(1, batch)})
    if str(seg.backend.frames_device or seg.backend.device).startswith("cuda"):
        sizes = list(range(1, max(1, batch) + 1))  # a CUDA graph is captured per batch size
    for side in seg.sizes:
        blank = np.zeros((side, side, 3), np.uint8)
        for n in sizes:
            seg.warmup([blank] * n)
    return (time.perf_counter() - t0) * 1000


def frame_format(seg: Segmenter, job: Job, cfg: PipelineConfig, on_device: bool) -> str:
    """The frame format every stage of ``job`` takes (caps negotiation): I420 when the source
    offers it (a video file through PyAV), full mode letterboxes it (even sizes), rendering needs
    no legend or side-by-side panel, not on the GPU path, and every sink that takes the rendered
    picture takes I420; else BGR. I420 all the way (letterbox on the planes, overlay blended in
    them, encoder fed as is) saves, on 2 cores, 720p to H.264, 2.1-2.7 ms of CPU per frame against
    decode to BGR, blend, convert back (+8-10 % FPS). A run that renders nothing stays BGR."""
    drawn = [s for s in job.sinks if "rendered" in s.wants]
    if (not cfg.i420_frames or on_device or seg.mode != "full" or not drawn or cfg.render.legend
            or cfg.render.side_by_side or I420 not in job.source.formats
            or any(I420 not in s.formats for s in drawn)):
        return BGR
    h, w = job.source.peek().shape[:2]
    return I420 if i420_letterbox_size(h, w, seg.size) is not None else BGR


def _frame_path(run: Run, job: Job, j: int) -> BgrPath:
    """Source ``j``'s frame path: on the device, I420 (where the decoder really gives it), or BGR."""
    if run.device is not None:
        return DevicePath(run, job, j)
    if frame_format(run.seg, job, run.cfg, False) == I420:
        rows = job.source.peek().shape[0]
        frames = job.source.i420_frames()
        if frames is not None:
            return I420Path(run, job, j, frames, rows)
    return BgrPath(run, job, j)


def _device_frames(seg: Segmenter, cfg: PipelineConfig) -> DeviceFrames | None:
    """The GPU frame path when asked for (or, by default, for a CUDA backend that takes device
    frames), from what the backend declares."""
    if cfg.device_frames is False or seg.smooth or seg.parser.flip:
        return None
    backend = seg.backend
    device = str(backend.frames_device or backend.device)
    if cfg.device_frames is None and not (backend.device_frames and device.startswith("cuda")):
        return None  # CPU backends: no torch import, the OpenCV path
    if not backend.device_frames:
        raise MsfError(f"{seg.describe()} cannot take frames on its device")
    try:
        from msf.runtime import gpu_frames
    except ImportError:  # TensorRT without torch (a bare Jetson image): frames stay on the host
        if cfg.device_frames:
            raise MsfError("keeping frames on the GPU needs PyTorch (pip install torch)") from None
        return None
    seg.single_size()  # the device path crops every face at one size
    dtype = backend.float_dtype if backend.input_spec.dtype != "uint8" else None
    frames = gpu_frames.TorchFrames(device, seg.size, backend.input_spec.resize)
    return DeviceFrames(frames, backend.infer_on_device, dtype)


def run_pipeline(seg: Segmenter, jobs: list[Job], cfg: PipelineConfig, stats: PipelineStats,
                 on_frame: Callable[[int], None] | None = None) -> None:
    """Run every job to its end (or Ctrl-C / error / window closed); sinks are left for the
    caller to close. Every frame a job's sinks received is counted in ``job.written`` and
    ``stats.frames`` (also after Ctrl-C)."""
    device = _device_frames(seg, cfg)
    if cfg.warmup:
        stats.warmup_ms = warm_up(seg, cfg.batch) if device is None else device.warm_up(seg, cfg.batch)
    run = Run(seg, cfg, stats, threading.Event(), device)
    paths = [_frame_path(run, job, j) for j, job in enumerate(jobs)]
    main_sinks = [[s for s in job.sinks if s.main_thread] for job in jobs]  # sent from this thread
    show = any(main_sinks)
    # Everything allocated so far (modules, the model) is left out of the cyclic garbage
    # collector's passes: they otherwise rescan it a few times a second, in whichever thread
    # allocates, holding the GIL.
    froze = gc.get_freeze_count() == 0  # a caller's own freeze is left as it is
    if froze:
        gc.freeze()
    stats.start_clock()
    stop = run.stop
    n_live = sum(job.source.live for job in jobs)
    to_infer = Channel(stop, cfg.queue_size * max(1, n_live))  # live: queue_size per source
    to_render = [Channel(stop, cfg.queue_size) for _ in jobs]
    to_write = [Channel(stop, cfg.queue_size) for _ in jobs]
    # With a window, done frames (whole rendered images) wait for the calling thread's sinks:
    # bounded, so a slow window slows the pipeline instead of piling frames up in memory.
    done = Channel(stop, cfg.queue_size if show else 0)
    slots = [threading.Semaphore(cfg.queue_size) for _ in jobs]  # live sources: places in to_infer
    workers = Workers(stop)
    readers = [workers.spawn(Reader(run, job, j, paths[j], to_infer, slots[j]), f"read-{j}")
               for j, job in enumerate(jobs)]
    others = [workers.spawn(Infer(run, jobs, to_infer, to_render, slots), "infer")]
    others += [workers.spawn(Renderer(run, job, paths[j], to_render[j], to_write[j]), f"render-{j}")
               for j, job in enumerate(jobs)]
    writers = [workers.spawn(Writer(run, job, j, to_write[j], done, show), f"write-{j}")
               for j, job in enumerate(jobs)]
    for t in workers.threads:
        t.start()
    try:
        open_jobs = len(jobs)
        while open_jobs:
            item = done.get_timeout(0.2)
            if item is None:
                if not any(t.is_alive() for t in writers):
                    break
                continue
            if isinstance(item, End):
                open_jobs -= 1
                continue
            j = item.stream if isinstance(item, FrameItem) else item
            if show and not all([sink.send(item) for sink in main_sinks[j]]):
                stop.set()
            if on_frame is not None:
                on_frame(j)
    finally:
        stop.set()
        for t in writers:
            t.join()  # no frame is half-written when the caller closes the sinks
        for t in readers + others:
            t.join(timeout=5)
        stats.dropped = sum(job.source.dropped for job in jobs)
        stats.finish()
        if froze:
            gc.unfreeze()
    if workers.errors:
        exc = workers.errors[0]
        if isinstance(exc, MsfError):
            raise exc
        raise MsfError(f"pipeline failed: {type(exc).__name__}: {exc}") from exc
