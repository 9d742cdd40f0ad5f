"""A live viewer for a browser: the parsed stream served over HTTP as Motion JPEG.

``msf-video 0 -o http://:8080`` serves, on loopback unless another address is named:

- ``/``: a page that shows every source live (drawn on a canvas from the MJPEG stream), with its
  FPS, the pipeline's capture-to-output latency, the capture-to-screen latency the page itself
  measures, and the class legend (classes in view highlighted);
- ``/stream/<j>``: source ``j`` as ``multipart/x-mixed-replace`` JPEG parts (also plays in an
  ``<img>``, VLC or ffplay), each part carrying its frame number and capture time;
- ``/frame/<j>.jpg``: the latest frame of source ``j``;
- ``/stats``: the numbers the page shows, as JSON; the page posts what it measured to ``/report``.

The pipeline never waits for a viewer: ``send`` only swaps in the newest frame. Each viewer's
connection thread takes the newest frame when it is ready for one (a slow viewer skips frames;
a closed tab ends its thread) and frames are JPEG-compressed once, by the first thread that
needs them, only while somebody watches. Why MJPEG and not WebRTC: see BENCHMARKS.md, "Live
viewer".
"""

from __future__ import annotations

import json
import re
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any

import cv2
import numpy as np

from msf.errors import MsfError
from msf.labels import LABELS, PALETTE
from msf.runtime.sinks import BGR, SinkFrame

BOUNDARY = "msfframe"
JPEG_QUALITY = 80
_WAIT = 0.5  # s: how often a waiting connection looks whether the viewer closed
_REPORTS_KEPT = 512  # latency samples kept per run for the summary


class _Stream:
    """The newest frame of one source and what the page shows about it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.cond = threading.Condition()
        self.frame: np.ndarray | None = None
        self.labels: np.ndarray | None = None
        self.seq = 0  # frames received
        self.capture_ms = 0.0  # wall-clock capture time of the newest frame (ms since the epoch)
        self.fps = self.latency_ms = 0.0
        self.jpeg: tuple[int, bytes] | None = None  # (seq, bytes) of the last encoded frame
        self.encode_lock = threading.Lock()
        self.ended = False

    def jpeg_of(self, seq: int, frame: np.ndarray, quality: int) -> bytes:
        """The JPEG of frame ``seq``, compressed once whoever asks first."""
        with self.encode_lock:
            if self.jpeg is None or self.jpeg[0] != seq:
                ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, quality])
                if not ok:
                    raise MsfError("JPEG compression of a viewer frame failed")
                self.jpeg = (seq, buf.tobytes())
            return self.jpeg[1]


class ViewerSink:
    """The browser viewer as a pipeline sink shared by every source (``names``: their names).
    ``address``: ``host:port`` (port 0 picks a free one; ``url`` tells which)."""

    wants = frozenset({"rendered", "labels"})
    formats = frozenset({BGR})
    main_thread = False

    def __init__(self, address: str, names: list[str], quality: int = JPEG_QUALITY) -> None:
        host, _, port = address.rpartition(":")
        self.quality = quality
        self.streams = [_Stream(n) for n in names]
        self.connections = 0  # stream connections served so far
        self.watching = 0  # stream connections open now
        self.reports: dict[str, dict] = {}  # per page and source: the newest thing it measured
        self.display_latency: list[float] = []  # capture-to-screen ms the pages reported
        self._lock = threading.Lock()
        try:
            self.server = ThreadingHTTPServer((host, int(port)), _handler(self))
        except OSError as exc:
            raise MsfError(f"the viewer cannot listen on {address}: {exc.strerror or exc}") from None
        self.server.daemon_threads = True
        self.host, self.port = self.server.server_address[:2]
        self.url = f"http://{self.host}:{self.port}/"
        self.label = f"viewer {self.url}"
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="viewer", daemon=True)
        self._thread.start()

    def prepare(self, frame: SinkFrame) -> None:
        pass

    def send(self, frame: SinkFrame) -> bool:
        """Make ``frame`` the newest of its source; never waits for a viewer."""
        st = self.streams[frame.stream]
        with st.cond:
            st.frame, st.labels = frame.rendered, frame.labels
            st.seq += 1
            st.capture_ms = (time.time() - (time.perf_counter() - frame.t_capture)) * 1000
            st.fps, st.latency_ms = frame.fps, frame.latency_ms
            st.cond.notify_all()
        return True

    def close(self, keep: bool = True) -> None:
        """End every stream (pages show that it ended) and stop serving."""
        for st in self.streams:
            with st.cond:
                st.ended = True
                st.cond.notify_all()
        self.server.shutdown()
        self.server.server_close()

    def stats(self) -> dict[str, Any]:
        """What ``/stats`` returns: per source its newest frame's numbers and classes in view."""
        out = []
        for st in self.streams:
            with st.cond:
                labels, frame = st.labels, st.frame
                row = {"name": st.name, "frames": st.seq, "fps": round(st.fps, 2),
                       "latency_ms": round(st.latency_ms, 1), "ended": st.ended}
            if frame is not None:
                row["width"], row["height"] = frame.shape[1], frame.shape[0]
            if labels is not None:
                counts = np.bincount(labels.ravel(), minlength=len(LABELS))
                row["classes"] = [int(c) for c in np.flatnonzero(counts[1:len(LABELS)]) + 1]
            out.append(row)
        return {"streams": out, "watching": self.watching,
                "legend": [{"id": i, "name": n, "rgb": PALETTE[i].tolist()} for i, n in enumerate(LABELS)][1:]}

    def report(self) -> dict[str, Any]:
        """The run's viewer numbers for the summary: pages served, capture-to-screen latency."""
        lat = sorted(self.display_latency)
        return {"url": self.url, "stream_connections": self.connections, "pages_reporting": len(self.reports),
                "display_latency_p50_ms": round(lat[len(lat) // 2], 1) if lat else None}

    # -- connection threads ----------------------------------------------------------------------

    def _stream_to(self, j: int, write: Any) -> None:
        """Send source ``j``'s frames as MJPEG parts, each the newest, until the viewer goes."""
        st = self.streams[j]
        seen = 0
        while True:
            with st.cond:
                while st.seq == seen and not st.ended:
                    st.cond.wait(_WAIT)
                if st.seq == seen:  # ended, nothing new
                    return
                seen, frame, capture_ms = st.seq, st.frame, st.capture_ms
            jpeg = st.jpeg_of(seen, frame, self.quality)
            head = (f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n"
                    f"X-Frame: {seen}\r\nX-Capture-Ms: {capture_ms:.1f}\r\n\r\n")
            write(head.encode() + jpeg + b"\r\n")

    def _latest_jpeg(self, j: int) -> bytes | None:
        st = self.streams[j]
        with st.cond:
            seq, frame = st.seq, st.frame
        return None if frame is None else st.jpeg_of(seq, frame, self.quality)

    def _take_report(self, body: dict) -> None:
        with self._lock:
            self.reports[f"{str(body.get('viewer', '?'))[:64]}/{body.get('stream', 0)}"] = body
            lat = body.get("display_latency_ms")
            if isinstance(lat, (int, float)) and len(self.display_latency) < _REPORTS_KEPT:
                self.display_latency.append(float(lat))


def _handler(viewer: ViewerSink) -> type[BaseHTTPRequestHandler]:
    page = resources.files("msf.runtime").joinpath("viewer.html").read_text(encoding="utf-8")
    names = json.dumps([st.name for st in viewer.streams])
    page = page.replace("__SOURCES__", names)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:  # no access log on the terminal
            pass

        def _send(self, status: int, ctype: str, body: bytes, cache: bool = False) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            if not cache:
                self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def _source(self, text: str) -> int | None:
            j = int(text)
            return j if 0 <= j < len(viewer.streams) else None

        def do_GET(self) -> None:  # noqa: N802  (http.server's name)
            path = self.path.split("?", 1)[0]
            if path in ("/", "/index.html"):
                return self._send(HTTPStatus.OK, "text/html; charset=utf-8", page.encode())
            if path == "/stats":
                return self._send(HTTPStatus.OK, "application/json", json.dumps(viewer.stats()).encode())
            m = re.fullmatch(r"/stream/(\d+)", path) or re.fullmatch(r"/frame/(\d+)\.jpg", path)
            j = self._source(m.group(1)) if m else None
            if j is None:
                return self._send(HTTPStatus.NOT_FOUND, "text/plain", b"not found\n")
            if path.startswith("/frame/"):
                jpeg = viewer._latest_jpeg(j)
                if jpeg is None:
                    return self._send(HTTPStatus.SERVICE_UNAVAILABLE, "text/plain", b"no frame yet\n")
                return self._send(HTTPStatus.OK, "image/jpeg", jpeg)
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
            self.send_header("Cache-Control", "no-store")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            with viewer._lock:
                viewer.connections += 1
                viewer.watching += 1
            try:
                viewer._stream_to(j, self.wfile.write)
            except (BrokenPipeError, ConnectionResetError, TimeoutError):
                pass  # the viewer went away: only this thread ends
            finally:
                with viewer._lock:
                    viewer.watching -= 1

        def do_POST(self) -> None:  # noqa: N802
            if self.path != "/report":
                return self._send(HTTPStatus.NOT_FOUND, "text/plain", b"not found\n")
            n = int(self.headers.get("Content-Length") or 0)
            try:
                body = json.loads(self.rfile.read(min(n, 1 << 16)) or b"{}")
            except ValueError:
                return self._send(HTTPStatus.BAD_REQUEST, "text/plain", b"bad report\n")
            if isinstance(body, dict):
                viewer._take_report(body)
            self._send(HTTPStatus.NO_CONTENT, "text/plain", b"")

    return Handler
