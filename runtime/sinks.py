"""Outputs of the video pipeline: every output is a ``Sink`` (encoded video, per-frame label
PNGs, a live window, the browser viewer in ``msf.runtime.viewer``), made from a URI by
``open_sink``.

A sink declares what it reads off a frame (``wants``: the rendered picture, the labels), the frame
formats it takes (``formats``: BGR, I420; the pipeline picks one every stage of a source can take)
and whether it must run on the calling thread (``main_thread``: GUI windows). ``prepare`` runs in
the source's render thread (heavy per-frame work, e.g. PNG compression), ``send`` in its write
thread; a sink shared by several sources (window, viewer) gets every source's frames, each
telling its ``stream``.

Video is written to a temporary file beside the target and renamed when finished, so an
interrupted run leaves either a complete, playable file or none. H.264 through PyAV's FFmpeg:
a hardware encoder (``h264_nvenc``, ``h264_v4l2m2m``) when one actually opens on this machine,
else libx264 at the chosen preset; MPEG-4 Part 2 through OpenCV when PyAV has no H.264 encoder.
The sink says which it used.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from msf.atomic import atomic_write, temp_beside
from msf.errors import MsfError
from msf.runtime.yuv import i420_planes, plane_view
from msf.visualize import label_png_bytes

# libx264 presets, fastest first. CPU per 1280×720 frame measured with libx264 alone: ultrafast
# ~6 ms (files ~2.4x larger), veryfast ~14 ms, medium ~22 ms.
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
DEFAULT_PRESET = "veryfast"
# Hardware H.264 encoders, tried in order; PyAV lists them even where they cannot open.
HW_ENCODERS = ("h264_nvenc", "h264_v4l2m2m")


BGR, I420 = "bgr", "i420"


class SinkFrame(Protocol):
    """What a sink reads off a frame (the pipeline's ``FrameItem``)."""

    stream: int  # the source's position among the run's sources
    index: int  # the frame's number in its source
    rendered: np.ndarray | None  # the picture with the overlay (BGR, or I420 when ``i420_rows``)
    i420_rows: int  # > 0: ``rendered`` is an I420 buffer of a frame this many rows high
    labels: np.ndarray | None  # frame-sized class ids
    t_capture: float  # perf_counter() when the frame was grabbed or read
    fps: float  # the pipeline's rolling FPS when the frame was written
    latency_ms: float  # capture to write
    payload: dict  # what ``prepare`` left for ``send``, per sink


class Sink(Protocol):
    """Where results go; see the module docstring."""

    label: str  # names the output in messages and the summary
    wants: frozenset[str]  # "rendered", "labels"
    formats: frozenset[str]  # frame formats ``send`` takes
    main_thread: bool  # send from the thread that runs the pipeline (GUI windows)

    def prepare(self, frame: SinkFrame) -> None:
        """Per-frame work done in the render thread, ahead of ``send``."""

    def send(self, frame: SinkFrame) -> bool:
        """Deliver one frame; False asks the pipeline to stop (a window was closed)."""

    def close(self, keep: bool = True) -> None:
        """Finish the output (``keep=False``: discard what is unfinished)."""


def _even(n: int) -> int:
    return n + (n % 2)


def yuv420_frame(av: Any, frame_bgr: np.ndarray) -> Any:
    """A yuv420p ``av.VideoFrame`` of an even-sized BGR frame.

    OpenCV's BGR -> I420 (BT.601, limited range, like swscale's default) is ~5x faster than
    PyAV's swscale, and the planes are filled by numpy copies: both release the GIL, where
    ``VideoFrame.from_ndarray`` copies row by row holding it (~1 ms per 720p frame that stalls
    every other pipeline thread)."""
    return i420_frame(av, cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2YUV_I420), frame_bgr.shape[0])


def i420_frame(av: Any, yuv: np.ndarray, h: int) -> Any:
    """A yuv420p ``av.VideoFrame`` of an h-row I420 buffer (OpenCV's layout: Y, then U and V at
    h/4 rows each), its planes filled by numpy copies (GIL released)."""
    frame = av.VideoFrame(yuv.shape[1], h, "yuv420p")
    for plane, src in zip(frame.planes, i420_planes(yuv, h)):
        np.copyto(plane_view(plane), src)
    return frame


class VideoSink:
    """Encodes BGR frames to ``path``; ``codec`` tells what was used.

    ``prefer``: ``h264`` (hardware encoder if one opens, else libx264, else mp4v) or ``mp4v``.
    ``preset``: the libx264 preset. ``live``: tune libx264 for latency (no frame delay).
    ``hardware``: try the hardware encoders first.
    """

    def __init__(self, path: str | Path, fps: float, size: tuple[int, int], prefer: str = "h264",
                 preset: str = DEFAULT_PRESET, live: bool = False, hardware: bool = True) -> None:
        if preset not in X264_PRESETS:
            raise MsfError(f"unknown encoder preset {preset!r} ({', '.join(X264_PRESETS)})")
        self.path = Path(path)
        parent = self.path.parent if str(self.path.parent) else Path(".")
        if not parent.is_dir():
            raise MsfError(f"output folder does not exist: {parent}")
        try:
            tmp = temp_beside(self.path, self.path.suffix or ".mp4")
        except OSError as exc:
            raise MsfError(f"cannot write to {parent}: {exc.strerror}") from None
        self.tmp = Path(tmp)
        self.label = str(self.path)
        self.size = size
        self.frames = 0
        self._av: tuple[Any, Any, Any] | None = None
        self._cv: cv2.VideoWriter | None = None
        w, h = size
        self.codec = ""
        if prefer == "h264":
            names = (HW_ENCODERS if hardware else ()) + ("libx264",)
            for name in names:
                self._av = self._open_av(name, fps, _even(w), _even(h), preset, live)
                if self._av is not None:
                    what = f"libx264 {preset}" if name == "libx264" else name
                    self.codec = f"H.264 ({what} via PyAV)"
                    break
        if self._av is None:
            self._cv = cv2.VideoWriter(str(self.tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
            if not self._cv.isOpened():
                self.tmp.unlink(missing_ok=True)
                raise MsfError(f"no video encoder available for {self.path.suffix or 'mp4'} output")
            self.codec = "MPEG-4 Part 2 (mp4v via OpenCV)"

    def _open_av(self, name: str, fps: float, w: int, h: int, preset: str,
                 live: bool) -> tuple[Any, Any, Any] | None:
        """(av, container, stream) with encoder ``name`` really opened (PyAV lists encoders that
        cannot open here), or None."""
        try:
            from fractions import Fraction

            import av

            if name not in av.codecs_available:
                return None
            container = av.open(str(self.tmp), mode="w")
        except Exception:  # noqa: BLE001  (no PyAV, or an FFmpeg without this encoder)
            return None
        try:
            stream = container.add_stream(name, rate=Fraction(fps).limit_denominator(1001))
            stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
            if name == "libx264":
                stream.options = {"crf": "23", "preset": preset, **({"tune": "zerolatency"} if live else {})}
            else:
                stream.bit_rate = int(w * h * fps * 0.1)  # ~2.3 Mbit/s at 720p25: visually clean overlays
            stream.codec_context.open()
        except Exception:  # noqa: BLE001  (listed but not usable here: no GPU, no V4L2 device, ...)
            with contextlib.suppress(Exception):  # nothing was written; the next encoder reopens the file
                container.close()
            return None
        return av, container, stream

    def write(self, frame_bgr: np.ndarray) -> None:
        """Encode one frame (frames of another size than the first are an error of the caller)."""
        if self._av is not None:
            av, container, stream = self._av
            if frame_bgr.shape[1] != stream.width or frame_bgr.shape[0] != stream.height:
                frame_bgr = cv2.copyMakeBorder(frame_bgr, 0, stream.height - frame_bgr.shape[0], 0,
                                               stream.width - frame_bgr.shape[1], cv2.BORDER_REPLICATE)
            for packet in stream.encode(yuv420_frame(av, frame_bgr)):
                container.mux(packet)
        else:
            self._cv.write(frame_bgr)
        self.frames += 1

    wants = frozenset({"rendered"})
    main_thread = False

    @property
    def formats(self) -> frozenset[str]:
        return frozenset({BGR, I420}) if self.takes_i420 else frozenset({BGR})

    def prepare(self, frame: SinkFrame) -> None:
        pass

    def send(self, frame: SinkFrame) -> bool:
        (self.write_i420 if frame.i420_rows else self.write)(frame.rendered)
        return True

    @property
    def takes_i420(self) -> bool:
        """Whether ``write_i420`` works: a PyAV encoder at an even frame size (no padding)."""
        return self._av is not None and tuple(self.size) == (self._av[2].width, self._av[2].height)

    def write_i420(self, yuv: np.ndarray) -> None:
        """Encode one I420 frame (``takes_i420`` must hold): no colour conversion on the way."""
        av, container, stream = self._av
        for packet in stream.encode(i420_frame(av, yuv, stream.height)):
            container.mux(packet)
        self.frames += 1

    def close(self, keep: bool = True) -> None:
        """Flush and finalise; the file appears under its name only now (or is discarded)."""
        if self._av is not None:
            _, container, stream = self._av
            for packet in stream.encode():
                container.mux(packet)
            container.close()
            self._av = None
        if self._cv is not None:
            self._cv.release()
            self._cv = None
        if keep and self.frames:
            os.replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)


class MaskSink:
    """One frame-sized palette PNG per frame: ``<source>_<frame:06d>.png``."""

    def __init__(self, folder: str | Path, source_name: str) -> None:
        self.folder = Path(folder)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise MsfError(f"cannot create mask folder {self.folder}: {exc.strerror}") from None
        self.name = source_name
        self.label = f"{self.folder}/{source_name}_*.png"

    wants = frozenset({"labels"})
    formats = frozenset({BGR, I420})  # reads labels only
    main_thread = False

    def prepare(self, frame: SinkFrame) -> None:
        frame.payload[id(self)] = self.encode(frame.labels)

    def send(self, frame: SinkFrame) -> bool:
        png = frame.payload.pop(id(self), None)
        self.write_encoded(frame.index, png if png is not None else self.encode(frame.labels))
        return True

    def close(self, keep: bool = True) -> None:
        pass

    def encode(self, labels: np.ndarray) -> bytes:
        return label_png_bytes(labels)

    def write_encoded(self, index: int, png: bytes) -> None:
        """Write a PNG made by ``encode`` (atomically: a reader never sees half a file)."""
        atomic_write(self.folder / f"{self.name}_{index:06d}.png", lambda tmp: Path(tmp).write_bytes(png))

    def write(self, index: int, labels: np.ndarray) -> None:
        self.write_encoded(index, self.encode(labels))


class WindowSink:
    """A live OpenCV window; needs a GUI build of OpenCV (opencv-python, not -headless)."""

    wants = frozenset({"rendered"})
    formats = frozenset({BGR})
    main_thread = True  # HighGUI windows belong to one thread

    def __init__(self, title: str = "msf") -> None:
        self.title = title
        self.label = f"window {title!r}"
        try:
            cv2.namedWindow(title, cv2.WINDOW_NORMAL)
        except cv2.error:
            raise MsfError("--show needs a GUI build of OpenCV (pip install opencv-python) and a display") from None

    def write(self, frame_bgr: np.ndarray) -> bool:
        """Show a frame; False when the user pressed q or Esc."""
        cv2.imshow(self.title, frame_bgr)
        return (cv2.waitKey(1) & 0xFF) not in (ord("q"), 27)

    def prepare(self, frame: SinkFrame) -> None:
        pass

    def send(self, frame: SinkFrame) -> bool:
        return self.write(frame.rendered)

    def close(self, keep: bool = True) -> None:
        cv2.destroyWindow(self.title)


VIEWER_SCHEMES = ("http://",)


@dataclass(frozen=True)
class OutputSpec:
    """One ``-o`` value, parsed: ``kind`` is video (a file), folder (one video per source),
    default (``<source>_msf.mp4`` each), masks (a folder of label PNGs), window or viewer (the
    browser viewer at ``target`` = host:port)."""

    kind: str
    target: str


def parse_output(uri: str, sources: int = 1) -> OutputSpec:
    """``uri`` as an output: ``FILE.mp4`` (a folder when there are several sources), ``DIR/``,
    ``masks:DIR``, ``window`` or ``window:TITLE``, ``http://[HOST]:PORT`` (the browser viewer; it
    listens on loopback unless HOST names another address)."""
    low = uri.lower()
    if low.startswith(VIEWER_SCHEMES):
        return OutputSpec("viewer", viewer_address(uri))
    if "://" in low:
        raise MsfError(f"unsupported output {uri!r}: outputs are a video file, a folder, masks:DIR, window or "
                       "http://HOST:PORT (the browser viewer)")
    if low.startswith("masks:"):
        if not uri[6:]:
            raise MsfError("masks: needs a folder (masks:DIR)")
        return OutputSpec("masks", uri[6:])
    if low == "window" or low.startswith("window:"):
        return OutputSpec("window", uri[7:] or "msf")
    path = Path(uri)
    if sources == 1 and path.suffix and not uri.endswith(("/", os.sep)):
        return OutputSpec("video", uri)
    return OutputSpec("folder", uri)


def viewer_address(uri: str) -> str:
    """``host:port`` of an ``http://[HOST][:PORT][/]`` viewer URI: no host (or localhost) means
    loopback, 127.0.0.1; no port means 8080, port 0 any free port."""
    rest = uri.split("://", 1)[1].rstrip("/")
    if "/" in rest:
        raise MsfError(f"the viewer URI takes no path: {uri} (http://HOST:PORT)")
    host, _, port = rest.rpartition(":") if ":" in rest else (rest, "", "8080")
    host = host.strip("[]")
    if host in ("", "localhost"):
        host = "127.0.0.1"
    if not port.isdigit() or not 0 <= int(port) < 65536:
        raise MsfError(f"the viewer port must be a number from 0 (any free port) to 65535: {uri}")
    return f"{host}:{int(port)}"


def video_paths(spec: OutputSpec, names: list[str]) -> list[Path]:
    """The video file of each source for a video, folder or default output (``<source>_msf.mp4``
    in the working folder), names made unique."""
    if spec.kind == "video":
        return [Path(spec.target)]
    if spec.kind == "default":
        return [Path(f"{n}_msf.mp4" if names.count(n) == 1 else f"{n}_{i}_msf.mp4") for i, n in enumerate(names)]
    out = Path(spec.target)
    return [out / (f"{n}.mp4" if names.count(n) == 1 else f"{n}_{i}.mp4") for i, n in enumerate(names)]


@dataclass
class VideoOptions:
    """How video outputs are encoded: ``prefer`` h264 or mp4v, the libx264 ``preset``, ``live``
    (tune for latency) and whether to try ``hardware`` encoders."""

    prefer: str = "h264"
    preset: str = DEFAULT_PRESET
    hardware: bool = True


class Outputs:
    """The sinks of a run: each spec opened for each source, a shared sink (window, viewer) once.
    ``for_source`` gives a source's sinks; ``close`` closes every sink once."""

    def __init__(self, specs: list[OutputSpec], video: VideoOptions | None = None) -> None:
        self.specs, self.video = specs, video or VideoOptions()
        self.sinks: list[Sink] = []
        self._shared: dict[OutputSpec, Sink] = {}
        self._closed = 0  # sinks[:_closed] are closed

    def for_source(self, j: int, names: list[str], fps: float, size: tuple[int, int], live: bool) -> list[Sink]:
        """Source ``j``'s sinks (``names``: every source's name; ``size``: the rendered frame's w, h)."""
        out: list[Sink] = []
        for spec in self.specs:
            if spec.kind in ("video", "folder", "default"):
                v = self.video
                sink: Sink = VideoSink(video_paths(spec, names)[j], fps, size, v.prefer, v.preset, live=live,
                                       hardware=v.hardware)
            elif spec.kind == "masks":
                sink = MaskSink(spec.target, names[j])
            else:
                sink = self._shared.get(spec) or self._open_shared(spec, names)
            if sink not in self.sinks:
                self.sinks.append(sink)
            out.append(sink)
        return out

    def _open_shared(self, spec: OutputSpec, names: list[str]) -> Sink:
        if spec.kind == "window":
            sink: Sink = WindowSink(spec.target)
        else:
            from msf.runtime.viewer import ViewerSink

            sink = ViewerSink(spec.target, names)
        self._shared[spec] = sink
        return sink

    def close(self, keep: bool = True) -> None:
        """Close every sink once (a second call does nothing)."""
        for sink in self.sinks[self._closed:]:
            sink.close(keep=keep)
        self._closed = len(self.sinks)


def open_sink(uri: str, name: str = "msf", fps: float = 25.0, size: tuple[int, int] = (1280, 720),
              live: bool = False, video: VideoOptions | None = None) -> Sink:
    """One source's sink for ``uri`` (see ``parse_output``)."""
    return Outputs([parse_output(uri)], video).for_source(0, [name], fps, size, live)[0]
