"""Frame sources: video files, webcams, RTSP/HTTP streams, image folders and globs.

Files and folders are read in order, every frame. Live sources (webcams, streams) are read by a
grabber thread that keeps only the newest frame, so a slow consumer sees fresh frames and the
number of dropped stale frames is counted. A stalled source times out instead of hanging.
A video file can be played as a live source at its frame rate (``live=True``): how latency is
measured without a camera.

Every read records ``t_capture`` (``time.perf_counter()``): when a live frame was grabbed, or
when a file frame was read; the pipeline measures capture-to-output latency from it.

A file that ends before its container said it would (a truncated or damaged file: decoding
stops at the first broken part) is told apart from one read to its end: ``Source.shortfall``.
Streams are opened with a timeout (FFmpeg's own default is 30 s).
"""

from __future__ import annotations

import glob
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from msf.errors import MsfError
from msf.paths import IMAGE_EXTS
from msf.runtime.yuv import i420_planes, plane_view


def partial_tolerance(expected: int) -> int:
    """Frames a file may fall short of its announced count and still count as whole: where the
    container states no count, OpenCV estimates it from the duration (off by a frame or so)."""
    return max(1, expected // 100)


def expected_frames(path: Path, cap: cv2.VideoCapture) -> int | None:
    """The frame count the container announces: OpenCV's (the stream's count, or its estimate
    from the duration), else PyAV's duration × rate; None where neither says."""
    count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    if count > 0:
        return count
    try:
        import av

        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            if stream.frames:
                return int(stream.frames)
            if stream.duration and stream.time_base and stream.average_rate:
                return round(float(stream.duration * stream.time_base * stream.average_rate)) or None
    except Exception:  # noqa: BLE001  (no PyAV, or a file only OpenCV reads: no count to check against)
        return None
    return None


class Source:
    """A sequence of BGR frames. ``read()`` returns the next frame, or None at the end.

    ``fresh_frames``: every ``read()`` returns a new array that the caller may draw on (the
    pipeline then renders in place, saving a copy per frame); a source that reuses its buffers
    sets it False. ``formats``: the frame formats it can give ("bgr" from ``read``; "i420" from
    ``i420_frames``, decoded without a colour conversion), for the pipeline's negotiation."""

    live = False
    dropped = 0
    fresh_frames = True
    formats: frozenset[str] = frozenset({"bgr"})

    def __init__(self, name: str, fps: float, frame_count: int | None) -> None:
        self.name, self.fps, self.frame_count = name, fps, frame_count
        self._peeked: np.ndarray | None = None
        self.t_capture = 0.0  # perf_counter() time of the frame ``read`` returned last
        self.decoded = 0  # frames read so far
        self.ended = False  # read to its end (not stopped early)
        self.paths: list[Path] = []  # the files it reads (outputs must not overwrite them)

    def shortfall(self) -> tuple[int, int] | None:
        """(frames decoded, frames the container announced) when the source ended before its
        container said it would, else None (also while it has not ended, and for live sources)."""
        expected = None if self.live else self.frame_count
        if not self.ended or not expected or expected - self.decoded <= partial_tolerance(expected):
            return None
        return self.decoded, expected

    def peek(self) -> np.ndarray:
        """The first frame, without consuming it (outputs are sized from it)."""
        if self._peeked is None:
            self._peeked = self._read()
            if self._peeked is None:
                raise MsfError(f"source {self.name} has no frames")
        return self._peeked

    def read(self) -> np.ndarray | None:
        """The next frame (None at the end); sets ``t_capture``."""
        if self._peeked is not None:
            frame, self._peeked = self._peeked, None
            self.t_capture = time.perf_counter()
            self.decoded += 1
            return frame
        self.t_capture = time.perf_counter()
        frame = self._read()
        if frame is None:
            self.ended = True
        else:
            self.decoded += 1
        return frame

    def _read(self) -> np.ndarray | None:
        raise NotImplementedError

    def close(self) -> None:  # noqa: B027
        pass


class VideoFileSource(Source):
    formats = frozenset({"bgr", "i420"})

    def __init__(self, path: Path) -> None:
        if not path.is_file():
            raise MsfError(f"video not found: {path}")
        if path.stat().st_size == 0:
            raise MsfError(f"video is empty: {path}")
        cap = cv2.VideoCapture(str(path))
        if not cap.isOpened():
            raise MsfError(f"cannot open video {path} (not a video, or a codec this OpenCV cannot decode)")
        count = expected_frames(path, cap)
        fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
        ok, first = cap.read()
        if not ok or first is None:
            cap.release()
            raise MsfError(f"cannot decode any frame of {path} (corrupt file or unsupported codec)")
        super().__init__(path.stem, fps if 0 < fps < 1000 else 25.0, count)
        self.path, self.cap, self._peeked = path, cap, first
        self.paths = [path]

    def _read(self) -> np.ndarray | None:
        ok, frame = self.cap.read()
        return frame if ok else None

    def i420_frames(self) -> Iterator[np.ndarray] | None:
        """Every frame from the first, as the decoder gives it: I420 buffers ((h * 3 / 2) × w,
        OpenCV's layout) decoded by PyAV without a colour conversion; or None where that cannot be
        (no PyAV, an odd frame size, a file PyAV cannot open). Frames of another format or size
        mid-stream are converted to the first frame's. Replaces ``read`` for the rest of the run."""
        h, w = self.peek().shape[:2]
        if h % 2 or w % 2:
            return None
        try:
            import av

            container = av.open(str(self.path))
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"  # frame and slice threads, as OpenCV's decoder uses
        except Exception:  # noqa: BLE001  (no PyAV, or a file only OpenCV's FFmpeg reads)
            return None
        self.cap.release()
        self._peeked = None
        self.decoded = 0

        def decoded_frames() -> Iterator[Any]:
            try:
                yield from container.decode(stream)
            except av.error.FFmpegError:  # a damaged tail ends the stream, as OpenCV's reader does
                return

        def frames() -> Iterator[np.ndarray]:
            try:
                for fr in decoded_frames():
                    if fr.format.name != "yuv420p" or (fr.width, fr.height) != (w, h):
                        fr = fr.reformat(w, h, "yuv420p")
                    yuv = np.empty((h * 3 // 2, w), np.uint8)
                    for plane, dst in zip(fr.planes, i420_planes(yuv, h)):
                        dst[:] = plane_view(plane)
                    self.t_capture = time.perf_counter()
                    self.decoded += 1
                    yield yuv
                self.ended = True
            finally:
                container.close()

        return frames()

    def close(self) -> None:
        self.cap.release()


class ImageFolderSource(Source):
    def __init__(self, files: list[Path], name: str) -> None:
        if not files:
            raise MsfError(f"no images found for {name}")
        super().__init__(name, 25.0, len(files))
        self.files, self.i = files, 0
        self.paths = list(files)

    def _read(self) -> np.ndarray | None:
        while self.i < len(self.files):
            path = self.files[self.i]
            self.i += 1
            frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if frame is None:
                raise MsfError(f"cannot decode image {path}")
            return frame
        return None


class LiveSource(Source):
    """Webcam or stream: a grabber thread keeps the newest frame; stale frames are dropped.

    ``pace``: release frames at the source's frame rate (a video file played as a live source).
    ``open_timeout``: how long a stream may take to open (default: ``stall_timeout``)."""

    live = True

    def __init__(self, target: int | str, name: str, stall_timeout: float = 10.0, pace: bool = False,
                 open_timeout: float | None = None) -> None:
        open_timeout = stall_timeout if open_timeout is None else open_timeout
        t0 = time.monotonic()
        cap = open_capture(target, open_timeout, stall_timeout)
        if not cap.isOpened():
            if isinstance(target, int):
                raise MsfError(f"cannot open webcam {target}")
            if "://" in target and time.monotonic() - t0 >= open_timeout * 0.9:
                raise MsfError(f"cannot open stream {target}: no answer within {open_timeout:g} s (--open-timeout)")
            raise MsfError(f"cannot open stream {target}")
        fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
        super().__init__(name, fps if 0 < fps < 1000 else 30.0, None)
        self.cap, self.stall_timeout, self.pace = cap, stall_timeout, pace
        self._cond = threading.Condition()
        self._frame: np.ndarray | None = None
        self._t_frame = 0.0
        self._ended = False
        self._fresh = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._grab, name=f"grab-{name}", daemon=True)
        self._thread.start()

    def _grab(self) -> None:
        start, k = time.perf_counter(), 0
        while not self._stop.is_set():
            ok, frame = self.cap.read()
            if ok and self.pace:  # a file played live: frame k is "captured" at start + k / fps
                delay = start + k / self.fps - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                k += 1
            with self._cond:
                if not ok:
                    self._ended = True
                    self._cond.notify_all()
                    return
                if self._fresh:
                    self.dropped += 1  # the previous frame was never consumed
                self._frame, self._fresh, self._t_frame = frame, True, time.perf_counter()
                self._cond.notify_all()

    def _read(self) -> np.ndarray | None:
        deadline = time.monotonic() + self.stall_timeout
        with self._cond:
            while not self._fresh and not self._ended:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise MsfError(f"source {self.name} stalled: no frame for {self.stall_timeout:.0f} s")
                self._cond.wait(left)
            if not self._fresh:
                return None
            self._fresh = False
            self.t_capture = self._t_frame
            return self._frame

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.cap.release()


def open_capture(target: int | str, open_timeout: float, read_timeout: float) -> cv2.VideoCapture:
    """An OpenCV capture; a URL through FFmpeg with open and read timeouts (its own default,
    30 s, would ignore --stall-timeout)."""
    if isinstance(target, str) and "://" in target:
        return cv2.VideoCapture(target, cv2.CAP_FFMPEG, [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, max(1, int(open_timeout * 1000)),
            cv2.CAP_PROP_READ_TIMEOUT_MSEC, max(1, int(read_timeout * 1000))])
    return cv2.VideoCapture(target)


def open_source(spec: str, stall_timeout: float = 10.0, live: bool = False,
                open_timeout: float | None = None) -> Source:
    """A source from a command-line word: webcam index, URL, folder, glob or video file.

    ``live``: play a video file at its frame rate as a live source (latency measurement).
    ``open_timeout``: how long a stream may take to open (default: ``stall_timeout``)."""
    if spec.isdigit():
        return LiveSource(int(spec), f"cam{spec}", stall_timeout)
    if "://" in spec:
        name = spec.split("://", 1)[1].split("/", 1)[0].replace(":", "_") or "stream"
        return LiveSource(spec, name, stall_timeout, open_timeout=open_timeout)
    path = Path(spec)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_EXTS)
        return ImageFolderSource(files, path.name or "images")
    if any(ch in spec for ch in "*?["):
        files = sorted(Path(p) for p in glob.glob(spec) if Path(p).suffix.lower() in IMAGE_EXTS)
        if not files:
            raise MsfError(f"no images match the pattern {spec!r}")
        return ImageFolderSource(files, Path(spec).parent.name or "images")
    if path.suffix.lower() in IMAGE_EXTS:
        if not path.is_file():
            raise MsfError(f"image not found: {path}")
        return ImageFolderSource([path], path.stem)
    if live:
        VideoFileSource(path).close()  # the same checks and one-line errors as a file source
        src = LiveSource(str(path), path.stem, stall_timeout, pace=True)
        src.paths = [path]
        return src
    return VideoFileSource(path)
