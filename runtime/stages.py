"""The pipeline's stages and the channels between them.

``Reader`` (one per source: decode, place, crop) -> ``Infer`` (one: batches across sources,
pastes labels back) -> ``Renderer`` (per source: overlay, HUD, each sink's ``prepare``) ->
``Writer`` (per source: each sink's ``send``) -> the calling thread (progress, ``main_thread``
sinks). Each stage is a class whose ``__call__`` is its thread's body; ``Channel`` is the bounded
queue between two of them, and every blocking call gives up once the run's ``stop`` is set.

How a source's frames travel is its ``FramePath``, one per frame format: ``BgrPath`` (OpenCV,
the default), ``I420Path`` (the decoder's planes to the encoder, full mode) and ``DevicePath``
(frames cropped, parsed, pasted back and blended on the backend's device). ``pipeline.frame_format``
picks one per source; a stage asks its path and never tests the format itself.
"""

from __future__ import annotations

import contextlib
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from msf.frameops.crop import i420_letterbox
from msf.runtime.placer import Plan
from msf.runtime.render import render, render_i420

if TYPE_CHECKING:
    from msf.runtime.pipeline import Job, PipelineConfig
    from msf.runtime.segmenter import Segmenter
    from msf.runtime.stats import PipelineStats

POLL = 0.1  # s: how often blocked threads look at the stop flag


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
    keys: list = field(default_factory=list)  # each square's smoothing key (placer.Plan.keys)

    @property
    def shape(self) -> tuple[int, int]:
        """The frame's height and width."""
        return (self.i420_rows, self.frame.shape[1]) if self.i420_rows else self.frame.shape[:2]


@dataclass
class End:
    """A source has no more frames."""

    stream: int


class Channel:
    """A bounded queue between two stages (``size`` 0: unbounded); ``put`` and ``get`` give up,
    returning False / None, once ``stop`` is set."""

    def __init__(self, stop: threading.Event, size: int = 0) -> None:
        self.stop, self.q = stop, queue.Queue(maxsize=size)

    def put(self, item: object) -> bool:
        while not self.stop.is_set():
            try:
                self.q.put(item, timeout=POLL)
                return True
            except queue.Full:
                continue
        return False

    def get(self) -> Any:
        """The next item, or None once ``stop`` is set."""
        while not self.stop.is_set():
            try:
                return self.q.get(timeout=POLL)
            except queue.Empty:
                continue
        return None

    def get_nowait(self) -> Any:
        """The next item if one is waiting, else None."""
        try:
            return self.q.get_nowait()
        except queue.Empty:
            return None

    def get_timeout(self, timeout: float) -> Any:
        """The next item within ``timeout`` s, else None (whether or not the run stopped)."""
        try:
            return self.q.get(timeout=timeout)
        except queue.Empty:
            return None


@dataclass
class Run:
    """What every stage of one run shares."""

    seg: Segmenter
    cfg: PipelineConfig
    stats: PipelineStats
    stop: threading.Event
    device: Any = None  # the GPU frame path's parts (pipeline.DeviceFrames), or None


def lower_thread_priority(nice: int) -> None:
    """Make the calling thread ``nice`` steps nicer (Linux sets the nice value per thread; elsewhere,
    where the same call would renice the whole process, nothing happens)."""
    if nice <= 0 or not sys.platform.startswith("linux"):
        return
    tid = threading.get_native_id()
    with contextlib.suppress(OSError):  # a sandbox that forbids it: run at normal priority
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice))


# -- frame paths ------------------------------------------------------------------------------------

class BgrPath:
    """BGR frames through OpenCV: ``source.read()``, the Segmenter's placements and crops,
    ``render``."""

    format = "bgr"

    def __init__(self, run: Run, job: Job, j: int) -> None:
        self.run, self.job, self.j = run, job, j

    def frames(self) -> Iterator[np.ndarray]:
        while (frame := self.job.source.read()) is not None:
            yield frame

    def place(self, frame: np.ndarray) -> tuple[Plan, list[np.ndarray], int]:
        """The frame's plan (squares and smoothing keys), their crops, its I420 row count (0: BGR)."""
        plan = self.run.seg.placer.place(frame, self.j)
        return plan, self.run.seg.parser.crops(frame, plan.places), 0

    def render(self, item: FrameItem, hud: list[str] | None) -> np.ndarray:
        return render(item.frame, item.labels, self.run.cfg.render, hud, in_place=self.job.source.fresh_frames,
                      overlaid=item.rendered)

    def close(self) -> None:
        """Release what reading holds (a decoder), also when stopped early."""


class DevicePath(BgrPath):
    """BGR frames whose crops, inference, paste-back and blending happen on the backend's device
    (``Infer`` does them): the reader only places."""

    format = "device"

    def place(self, frame: np.ndarray) -> tuple[Plan, list[np.ndarray], int]:
        return self.run.seg.placer.place(frame, self.j), [], 0


class I420Path(BgrPath):
    """The decoder's I420 frames (``frames``: from ``source.i420_frames()``, ``rows`` high) to
    the encoder: letterboxed on their planes, the overlay blended into them."""

    format = "i420"

    def __init__(self, run: Run, job: Job, j: int, frames: Iterator[np.ndarray], rows: int) -> None:
        super().__init__(run, job, j)
        self._frames, self.rows = frames, rows

    def frames(self) -> Iterator[np.ndarray]:
        return self._frames

    def close(self) -> None:
        self._frames.close()  # its decoder

    def place(self, frame: np.ndarray) -> tuple[Plan, list[np.ndarray], int]:
        seg, w = self.run.seg, frame.shape[1]
        crop = i420_letterbox(frame, self.rows, w, seg.size, seg.backend.input_spec.resize)
        return seg.placer.full(self.rows, w, self.j), [crop], self.rows

    def render(self, item: FrameItem, hud: list[str] | None) -> np.ndarray:
        return render_i420(item.frame, item.i420_rows, item.labels, self.run.cfg.render, hud)


# -- stages ---------------------------------------------------------------------------------------

class Reader:
    """Reads a source's frames in order, places and crops each (face detection runs here, per
    source, overlapping inference) and hands them to inference. A live source reads a frame only
    once ``slot`` is free (a place in inference's queue): a frame never waits, already captured,
    for room; files read ahead freely."""

    def __init__(self, run: Run, job: Job, j: int, path: BgrPath, out: Channel,
                 slot: threading.Semaphore) -> None:
        self.run, self.job, self.j, self.path, self.out, self.slot = run, job, j, path, out, slot

    def __call__(self) -> None:
        run, src = self.run, self.job.source
        if not src.live and run.seg.mode == "full":  # face/auto: the reader's detection feeds inference
            lower_thread_priority(run.cfg.helper_nice)
        frames = self.path.frames()
        try:
            i = 0
            while not run.stop.is_set() and (run.cfg.max_frames is None or i < run.cfg.max_frames):
                if src.live and not self._take_slot():
                    return
                t0, c0 = time.perf_counter(), time.thread_time()
                frame = next(frames, None)
                if frame is None:
                    break
                t1, c1 = time.perf_counter(), time.thread_time()
                run.stats.add("read", (t1 - t0) * 1000, (c1 - c0) * 1000)
                plan, crops, rows = self.path.place(frame)
                run.stats.add("preprocess", (time.perf_counter() - t1) * 1000, (time.thread_time() - c1) * 1000)
                if not self.out.put(FrameItem(self.j, i, frame, src.t_capture, plan.places, crops, i420_rows=rows,
                                              keys=plan.keys)):
                    return
                i += 1
        finally:
            self.path.close()
            self.out.put(End(self.j))

    def _take_slot(self) -> bool:
        while not self.slot.acquire(timeout=POLL):
            if self.run.stop.is_set():
                return False
        return True


class Infer:
    """Batches whatever frames are ready, across sources (up to ``cfg.batch``), infers every crop
    of them in one go and pastes the labels back into frame-sized maps; frames and end markers go
    on to their source's renderer in arrival order, so each source stays in order."""

    def __init__(self, run: Run, jobs: list[Job], inp: Channel, outs: list[Channel],
                 slots: list[threading.Semaphore]) -> None:
        self.run, self.jobs, self.inp, self.outs, self.slots = run, jobs, inp, outs, slots

    def __call__(self) -> None:
        open_sources = len(self.jobs)
        while open_sources:
            first = self.inp.get()
            if first is None:
                return
            items = [first]
            while len(items) < self.run.cfg.batch and (more := self.inp.get_nowait()) is not None:
                items.append(more)
            for it in items:
                if isinstance(it, FrameItem) and self.jobs[it.stream].source.live:
                    self.slots[it.stream].release()  # its place is free: that source may capture the next frame
            frames = [it for it in items if isinstance(it, FrameItem)]
            if frames and self.run.device is None:
                infer_batch(self.run, frames)
            elif frames:
                self.run.device.infer_batch(self.run, frames, draw=[self.jobs[it.stream].wants("rendered")
                                                                    for it in frames],
                                            keep_labels=[self.jobs[it.stream].wants("labels") for it in frames])
            for it in items:
                if not self.outs[it.stream].put(it):
                    return
                if isinstance(it, End):
                    open_sources -= 1


def infer_batch(run: Run, items: list[FrameItem]) -> None:
    """Infer every crop of ``items`` as one batch; each item gets its frame-sized labels."""
    parser, stats = run.seg.parser, run.stats
    t1, c1 = time.perf_counter(), time.thread_time()
    if parser.smooth:  # each frame's keys, in order: faces gone since a stream's previous frame are forgotten
        for it in items:
            parser.forget_absent(it.stream, it.keys)
    labels = parser.infer([c for it in items for c in it.crops], [k for it in items for k in it.keys])
    t2, c2 = time.perf_counter(), time.thread_time()
    k = 0
    for it in items:
        n = len(it.places)
        it.labels = parser.assemble(it.shape, labels[k:k + n], it.places)
        it.crops = []  # no longer needed: free them early
        k += n
    record_batch(stats, len(items), (t1, c1), (t2, c2))


def record_batch(stats: PipelineStats, n: int, start: tuple[float, float], inferred: tuple[float, float]) -> None:
    """Time one batch of ``n`` frames: inference from ``start`` to ``inferred`` and paste-back from
    there to now ((perf_counter, thread_time) pairs), per frame, and the batch's size."""
    (t1, c1), (t2, c2) = start, inferred
    t3, c3 = time.perf_counter(), time.thread_time()
    stats.add("infer", (t2 - t1) * 1000 / n, (c2 - c1) * 1000)
    stats.add("postprocess", (t3 - t2) * 1000 / n, (c3 - c2) * 1000)
    stats.batches.append(n)


class Renderer:
    """Draws the overlay and HUD (when a sink wants the picture) and runs each sink's
    ``prepare`` (PNG compression and the like); for files at a lower thread priority."""

    def __init__(self, run: Run, job: Job, path: BgrPath, inp: Channel, out: Channel) -> None:
        self.run, self.job, self.path, self.inp, self.out = run, job, path, inp, out

    def __call__(self) -> None:
        run, job = self.run, self.job
        draw = job.wants("rendered")
        if not job.source.live:
            lower_thread_priority(run.cfg.helper_nice)
        while True:
            item = self.inp.get()
            if item is None:
                return
            if isinstance(item, FrameItem):
                t0, c0 = time.perf_counter(), time.thread_time()
                if draw:
                    item.rendered = self.path.render(item, self._hud())
                for sink in job.sinks:
                    sink.prepare(item)
                run.stats.add("render", (time.perf_counter() - t0) * 1000, (time.thread_time() - c0) * 1000)
            if not self.out.put(item) or isinstance(item, End):
                return

    def _hud(self) -> list[str] | None:
        run = self.run
        if not run.cfg.render.hud:
            return None
        seg, stats = run.seg, run.stats
        return [f"{stats.rolling_fps():5.1f} FPS  {stats.last_latency_ms():5.0f} ms",
                f"{seg.describe()}  {seg.mode} {seg.size_label()}px"]


class Writer:
    """Sends each frame to the source's sinks (those that must run on the calling thread get it
    there, through ``done``), counts it, and times the frame end to end."""

    def __init__(self, run: Run, job: Job, j: int, inp: Channel, done: Channel, show: bool) -> None:
        self.run, self.job, self.j, self.inp, self.done, self.show = run, job, j, inp, done, show

    def __call__(self) -> None:
        run, job = self.run, self.job
        while True:
            item = self.inp.get()
            if item is None or isinstance(item, End):
                self.done.put(End(self.j))  # after stop the caller no longer waits for it
                return
            t0, c0 = time.perf_counter(), time.thread_time()
            item.fps, item.latency_ms = run.stats.rolling_fps(), (t0 - item.t_capture) * 1000
            for sink in job.sinks:
                if not sink.main_thread and not sink.send(item):
                    run.stop.set()
            job.written += 1
            t1 = time.perf_counter()
            run.stats.add("write", (t1 - t0) * 1000, (time.thread_time() - c0) * 1000)
            run.stats.frame_done((t1 - item.t_capture) * 1000)
            self.done.put(item if self.show else self.j)


@dataclass
class DeviceFrames:
    """The GPU frame path's parts: ``frames`` (``gpu_frames.TorchFrames``) and the backend's
    ``infer_on_device``; float inputs in ``dtype`` (None: uint8 graphs)."""

    frames: Any
    run_model: Callable[[Any], Any]
    dtype: Any

    def warm_up(self, seg: Segmenter, batch: int) -> float:
        """``warm_up`` for the device path: the graph as the pipeline will call it; ms taken."""
        import torch

        t0 = time.perf_counter()
        sizes = list(range(1, max(1, batch) + 1)) if self.frames.cuda else sorted({1, max(1, batch)})
        for n in sizes:
            blank = torch.zeros((n, seg.size, seg.size, 3), dtype=torch.uint8, device=self.frames.device)
            self.run_model(self.frames.to_input(blank, seg.backend.input_spec, self.dtype))
        if self.frames.cuda:
            torch.cuda.synchronize(self.frames.device)
        return (time.perf_counter() - t0) * 1000

    def infer_batch(self, run: Run, items: list[FrameItem], draw: list[bool], keep_labels: list[bool]) -> None:
        """``infer_batch`` with the frames on the device: upload, crop, infer, argmax, paste back and
        blend there; the rendered frame (and the labels where a sink reads them) come back."""
        import torch

        seg, stats, gf = run.seg, run.stats, self.frames
        t1, c1 = time.perf_counter(), time.thread_time()
        uploaded = [gf.upload(it.frame) for it in items]
        crops = torch.cat([gf.crops(x, it.places) for x, it in zip(uploaded, items)])
        spec = seg.backend.input_spec
        outs = [self.run_model(gf.to_input(crops[part], spec, self.dtype)) for part in seg.backend.batches(len(crops))]
        labels = gf.labels(torch.cat(outs) if outs else crops.new_zeros((0, seg.size, seg.size)),
                           seg.backend.output_kind)
        if gf.cuda:  # kernels run asynchronously: without this, "infer" would time only their launches
            torch.cuda.synchronize(gf.device)
        t2, c2 = time.perf_counter(), time.thread_time()
        k = 0
        for it, x, d, keep in zip(items, uploaded, draw, keep_labels):
            n = len(it.places)
            frame_labels = gf.assemble(it.frame.shape, labels[k:k + n], it.places)
            k += n
            if d:
                it.rendered = gf.download(gf.overlay(x, frame_labels, run.cfg.render.alpha))  # render() adds the rest
            if keep or not d or run.cfg.render.legend:
                it.labels = gf.download(frame_labels)
        record_batch(stats, len(items), (t1, c1), (t2, c2))


class Workers:
    """The run's threads, and the first error any of them raises (which stops the run)."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self.errors: list[BaseException] = []
        self.threads: list[threading.Thread] = []

    def spawn(self, fn: Callable[[], None], name: str) -> threading.Thread:
        def body() -> None:
            try:
                fn()
            except BaseException as exc:  # noqa: BLE001  (re-raised by the calling thread)
                self.errors.append(exc)
                self.stop.set()

        t = threading.Thread(target=body, name=name, daemon=True)
        self.threads.append(t)
        return t
