"""The streaming pipeline: read -> preprocess -> infer (batched) -> postprocess -> render -> write.

Threads, joined by bounded queues so every stage overlaps the others:

- one reader per source: decode, face detection / letterbox, crops (in frame order);
- one inference thread: batches whatever frames are ready, across sources, and pastes the
  labels back into frame-sized maps;
- per source, a render thread (overlay, HUD, mask PNG compression) and a write thread (video
  encoding, mask files). OpenCV, zlib and PyAV release the GIL, so these really run in parallel
  with decoding and inference;
- the calling thread only counts frames (progress bar) and shows the live window.

For files, the render thread (and in full mode the reader) runs at a lower priority
(``helper_nice``) so that the encoder and inference, which every frame waits for, get the cores
first.

File sources are processed in order, every frame, with throughput-sized queues; live sources
use shallow queues (and drop stale frames upstream) so latency stays bounded. The backend is
warmed up before the clock starts; ``PipelineStats.warmup_ms`` reports how long that took.

With a CUDA backend that can take device tensors (the PyTorch backend, TensorRT), frames stay on
the GPU from upload to rendered overlay (``msf.runtime.gpu_frames``): cropping, inference,
argmax, paste-back and blending run there, and only the rendered frame (and labels, for masks)
return. On the CPU, full mode from a video file to H.264 keeps the decoder's I420 frames all the
way to the encoder (``_i420_frames``); everything else works on BGR frames.
"""

from __future__ import annotations

import contextlib
import gc
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from msf.errors import MsfError
from msf.runtime.preprocess import i420_letterbox, i420_letterbox_size
from msf.runtime.render import RenderOptions, render, render_i420
from msf.runtime.segmenter import Segmenter
from msf.runtime.sinks import BGR, I420, Sink
from msf.runtime.sources import Source
from msf.runtime.stats import PipelineStats

_POLL = 0.1  # s: how often blocked threads look at the stop flag
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


def lower_thread_priority(nice: int) -> None:
    """Make the calling thread ``nice`` steps nicer (Linux sets the nice value per thread; elsewhere,
    where the same call would renice the whole process, nothing happens)."""
    if nice <= 0 or not sys.platform.startswith("linux"):
        return
    tid = threading.get_native_id()
    with contextlib.suppress(OSError):  # a sandbox that forbids it: run at normal priority
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice))


@dataclass
class FrameItem:
    """One frame on its way through the pipeline."""

    stream: int
    index: int
    frame: np.ndarray
    t_capture: float  # perf_counter(): grabbed (live) or read (file)
    places: list[Any]
    crops: list[np.ndarray]
    labels: np.ndarray | None = None
    rendered: np.ndarray | None = None
    i420_rows: int = 0  # > 0: ``frame`` is an I420 buffer of a frame this many rows high (0: BGR)
    fps: float = 0.0  # rolling FPS and capture-to-write latency when written (for the sinks)
    latency_ms: float = 0.0
    payload: dict = field(default_factory=dict)  # per sink: what its prepare() left for send()

    @property
    def shape(self) -> tuple[int, int]:
        """The frame's height and width."""
        return (self.i420_rows, self.frame.shape[1]) if self.i420_rows else self.frame.shape[:2]


@dataclass
class _End:
    stream: int


def _put(q: queue.Queue, item: object, stop: threading.Event) -> bool:
    while not stop.is_set():
        try:
            q.put(item, timeout=_POLL)
            return True
        except queue.Full:
            continue
    return False


def _get(q: queue.Queue, stop: threading.Event) -> object | None:
    """The next item, or None once ``stop`` is set."""
    while not stop.is_set():
        try:
            return q.get(timeout=_POLL)
        except queue.Empty:
            continue
    return None


class _Stage:
    """Collects worker threads and the first error any of them raises."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.threads: list[threading.Thread] = []

    def spawn(self, fn: Callable[..., None], *args: Any, name: str) -> threading.Thread:
        def run() -> None:
            try:
                fn(*args)
            except BaseException as exc:  # noqa: BLE001  (re-raised by the calling thread)
                self.errors.append(exc)
                self.stop.set()

        t = threading.Thread(target=run, name=name, daemon=True)
        self.threads.append(t)
        return t


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


def _i420_frames(seg: Segmenter, job: Job, cfg: PipelineConfig,
                 on_device: bool) -> tuple[Iterator[np.ndarray], int] | None:
    """The job's I420 frames and their height where ``frame_format`` picks I420 and the decoder
    really gives them, else None (BGR frames)."""
    if frame_format(seg, job, cfg, on_device) != I420:
        return None
    rows = job.source.peek().shape[0]
    frames = job.source.i420_frames()
    return None if frames is None else (frames, rows)


def _device_path(seg: Segmenter, cfg: PipelineConfig) -> _DevicePath | None:
    """The GPU frame path when asked for (or, by default, for a CUDA backend that allows it)."""
    if cfg.device_frames is False or seg.smooth:
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
    return _DevicePath(gpu_frames.TorchFrames(device, seg.size), backend.infer_on_device, backend.float_dtype)


@dataclass
class _DevicePath:
    frames: Any  # gpu_frames.TorchFrames
    run: Callable[[Any], Any]
    dtype: Any


def run_pipeline(seg: Segmenter, jobs: list[Job], cfg: PipelineConfig, stats: PipelineStats,
                 on_frame: Callable[[int], None] | None = None) -> None:
    """Run every job to its end (or Ctrl-C / error / window closed); sinks are left for the
    caller to close. Every frame a job's video or mask sink received is counted in
    ``job.written`` and ``stats.frames`` (also after Ctrl-C)."""
    dev = _device_path(seg, cfg)
    if cfg.warmup:
        stats.warmup_ms = warm_up(seg, cfg.batch) if dev is None else _warm_up_device(seg, dev, cfg.batch)
    # Everything allocated so far (modules, the model) is left out of the cyclic garbage
    # collector's passes: they otherwise rescan it a few times a second, in whichever thread
    # allocates, holding the GIL.
    i420 = [_i420_frames(seg, job, cfg, dev is not None) for job in jobs]
    main_sinks = [[s for s in job.sinks if s.main_thread] for job in jobs]  # sent from this thread
    show = any(main_sinks)
    froze = gc.get_freeze_count() == 0  # a caller's own freeze is left as it is
    if froze:
        gc.freeze()
    stats.start_clock()
    st = _Stage()
    stop = st.stop
    n_live = sum(job.source.live for job in jobs)
    q_in: queue.Queue = queue.Queue(maxsize=cfg.queue_size * max(1, n_live))  # live: queue_size per source
    q_render = [queue.Queue(maxsize=cfg.queue_size) for _ in jobs]
    q_write = [queue.Queue(maxsize=cfg.queue_size) for _ in jobs]
    # With a window, done frames (whole rendered images) wait for the calling thread's sinks:
    # bounded, so a slow window slows the pipeline instead of piling frames up in memory.
    q_done: queue.Queue = queue.Queue(maxsize=cfg.queue_size if show else 0)
    # Live sources read a frame only once it has a free place in the inference queue: a frame
    # never waits, already captured, for room (it would go stale); files read ahead freely.
    slots = [threading.Semaphore(cfg.queue_size) for _ in jobs]

    def reader(j: int, job: Job) -> None:
        live = job.source.live
        if not live and seg.mode == "full":  # face/auto: the reader's face detection feeds inference
            lower_thread_priority(cfg.helper_nice)
        frames, rows = i420[j] or (None, 0)
        try:
            i = 0
            while not stop.is_set() and (cfg.max_frames is None or i < cfg.max_frames):
                if live:
                    while not slots[j].acquire(timeout=_POLL):
                        if stop.is_set():
                            return
                t0, c0 = time.perf_counter(), time.thread_time()
                frame = job.source.read() if frames is None else next(frames, None)
                if frame is None:
                    break
                t1, c1 = time.perf_counter(), time.thread_time()
                stats.add("read", (t1 - t0) * 1000, (c1 - c0) * 1000)
                # Face detection and cropping run here, per source and in order, overlapping inference.
                if rows:
                    places = seg.full_placements(rows, frame.shape[1], j)
                    crops = [i420_letterbox(frame, rows, frame.shape[1], seg.size)]
                else:
                    places = seg.placements(frame, j)
                    crops = seg.crops(frame, places) if dev is None else []  # device path: cropped on the GPU
                stats.add("preprocess", (time.perf_counter() - t1) * 1000, (time.thread_time() - c1) * 1000)
                if not _put(q_in, FrameItem(j, i, frame, job.source.t_capture, places, crops, i420_rows=rows),
                            stop):
                    return
                i += 1
        finally:
            if frames is not None:
                frames.close()  # its decoder, also when stopped early
            _put(q_in, _End(j), stop)

    def infer() -> None:
        open_sources = len(jobs)
        while open_sources:
            first = _get(q_in, stop)
            if first is None:
                return
            items = [first]
            while len(items) < cfg.batch:
                try:
                    items.append(q_in.get_nowait())
                except queue.Empty:
                    break
            for it in items:
                if isinstance(it, FrameItem) and jobs[it.stream].source.live:
                    slots[it.stream].release()  # its place is free: that source may capture the next frame
            frames = [it for it in items if isinstance(it, FrameItem)]
            if frames and dev is None:
                _infer_batch(seg, frames, stats)
            elif frames:
                _infer_batch_device(seg, dev, frames, stats, cfg,
                                    draw=[jobs[it.stream].wants("rendered") for it in frames],
                                    keep_labels=[jobs[it.stream].wants("labels") for it in frames])
            for it in items:  # frames and end markers in arrival order: each stream stays in order
                if not _put(q_render[it.stream], it, stop):
                    return
                if isinstance(it, _End):
                    open_sources -= 1

    def renderer(j: int, job: Job) -> None:
        draw = job.wants("rendered")
        if not job.source.live:
            lower_thread_priority(cfg.helper_nice)
        in_place = job.source.fresh_frames
        while True:
            item = _get(q_render[j], stop)
            if item is None:
                return
            if isinstance(item, FrameItem):
                t0, c0 = time.perf_counter(), time.thread_time()
                if draw:
                    hud = None
                    if cfg.render.hud:
                        hud = [f"{stats.rolling_fps():5.1f} FPS  {stats.last_latency_ms():5.0f} ms",
                               f"{seg.describe()}  {seg.mode} {seg.size_label()}px"]
                    if item.i420_rows:
                        item.rendered = render_i420(item.frame, item.i420_rows, item.labels, cfg.render, hud)
                    else:
                        item.rendered = render(item.frame, item.labels, cfg.render, hud, in_place=in_place,
                                               overlaid=item.rendered)
                for sink in job.sinks:
                    sink.prepare(item)
                stats.add("render", (time.perf_counter() - t0) * 1000, (time.thread_time() - c0) * 1000)
            if not _put(q_write[j], item, stop) or isinstance(item, _End):
                return

    def writer(j: int, job: Job) -> None:
        while True:
            item = _get(q_write[j], stop)
            if item is None or isinstance(item, _End):
                _put(q_done, _End(j), stop)  # after stop the caller no longer waits for it
                return
            t0, c0 = time.perf_counter(), time.thread_time()
            item.fps, item.latency_ms = stats.rolling_fps(), (t0 - item.t_capture) * 1000
            for sink in job.sinks:
                if not sink.main_thread and not sink.send(item):
                    stop.set()
            job.written += 1
            t1 = time.perf_counter()
            stats.add("write", (t1 - t0) * 1000, (time.thread_time() - c0) * 1000)
            stats.frame_done((t1 - item.t_capture) * 1000)
            _put(q_done, item if show else j, stop)

    readers = [st.spawn(reader, j, job, name=f"read-{j}") for j, job in enumerate(jobs)]
    others = [st.spawn(infer, name="infer")]
    others += [st.spawn(renderer, j, job, name=f"render-{j}") for j, job in enumerate(jobs)]
    writers = [st.spawn(writer, j, job, name=f"write-{j}") for j, job in enumerate(jobs)]
    for t in st.threads:
        t.start()
    try:
        open_jobs = len(jobs)
        while open_jobs:
            try:
                item = q_done.get(timeout=0.2)
            except queue.Empty:
                if not any(t.is_alive() for t in writers):
                    break
                continue
            if isinstance(item, _End):
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
    if st.errors:
        exc = st.errors[0]
        if isinstance(exc, MsfError):
            raise exc
        raise MsfError(f"pipeline failed: {type(exc).__name__}: {exc}") from exc


def _infer_batch(seg: Segmenter, items: list[FrameItem], stats: PipelineStats) -> None:
    """Infer every crop of ``items`` as one batch; each item gets its frame-sized labels."""
    t1, c1 = time.perf_counter(), time.thread_time()
    labels = seg.infer([c for it in items for c in it.crops], [it.stream for it in items for _ in it.crops])
    t2, c2 = time.perf_counter(), time.thread_time()
    k = 0
    for it in items:
        n = len(it.places)
        it.labels = seg.assemble(it.shape, labels[k:k + n], it.places)
        it.crops = []  # no longer needed: free them early
        k += n
    t3, c3 = time.perf_counter(), time.thread_time()
    n = len(items)
    stats.add("infer", (t2 - t1) * 1000 / n, (c2 - c1) * 1000)
    stats.add("postprocess", (t3 - t2) * 1000 / n, (c3 - c2) * 1000)
    stats.batches.append(n)


def _warm_up_device(seg: Segmenter, dev: _DevicePath, batch: int) -> float:
    """``warm_up`` for the device path: the graph as the pipeline will call it."""
    t0 = time.perf_counter()
    sizes = list(range(1, max(1, batch) + 1)) if dev.frames.cuda else sorted({1, max(1, batch)})
    import torch

    for n in sizes:
        blank = torch.zeros((n, seg.size, seg.size, 3), dtype=torch.uint8, device=dev.frames.device)
        dev.run(dev.frames.to_input(blank, seg.backend.input_spec, _float_dtype(seg, dev)))
    if dev.frames.cuda:
        torch.cuda.synchronize(dev.frames.device)
    return (time.perf_counter() - t0) * 1000


def _float_dtype(seg: Segmenter, dev: _DevicePath) -> Any:
    return dev.dtype if seg.backend.input_spec.dtype != "uint8" else None


def _infer_batch_device(seg: Segmenter, dev: _DevicePath, items: list[FrameItem], stats: PipelineStats,
                        cfg: PipelineConfig, draw: list[bool], keep_labels: list[bool]) -> None:
    """``_infer_batch`` with the frames on the device: upload, crop, infer, argmax, paste back and
    blend there; the rendered frame (and the labels where masks are written) come back."""
    import torch

    gf = dev.frames
    t1, c1 = time.perf_counter(), time.thread_time()
    uploaded = [gf.upload(it.frame) for it in items]
    crops = torch.cat([gf.crops(x, it.places) for x, it in zip(uploaded, items)])
    spec = seg.backend.input_spec
    outs = [dev.run(gf.to_input(crops[part], spec, _float_dtype(seg, dev))) for part in seg.backend.batches(len(crops))]
    labels = gf.labels(torch.cat(outs) if outs else crops.new_zeros((0, seg.size, seg.size)), seg.backend.output_kind)
    if gf.cuda:  # kernels run asynchronously: without this, "infer" would time only their launches
        torch.cuda.synchronize(gf.device)
    t2, c2 = time.perf_counter(), time.thread_time()
    k = 0
    for it, x, d, keep in zip(items, uploaded, draw, keep_labels):
        n = len(it.places)
        frame_labels = gf.assemble(it.frame.shape, labels[k:k + n], it.places)
        k += n
        if d:
            it.rendered = gf.download(gf.overlay(x, frame_labels, cfg.render.alpha))  # render() adds the rest
        if keep or not d or cfg.render.legend:
            it.labels = gf.download(frame_labels)
    t3, c3 = time.perf_counter(), time.thread_time()
    n = len(items)
    stats.add("infer", (t2 - t1) * 1000 / n, (c2 - c1) * 1000)
    stats.add("postprocess", (t3 - t2) * 1000 / n, (c3 - c2) * 1000)
    stats.batches.append(n)
