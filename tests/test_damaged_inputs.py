"""Damaged inputs and silent streams (issue 21, items 3 and 4): a video file that ends before its
container said it would gives one warning line with frames decoded against expected and exit 3
(0 with --allow-partial), its output still finalised and playable; a stream that accepts the
connection and never answers fails within --open-timeout, not FFmpeg's 30 s."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time

import cv2
import numpy as np
import pytest

from msf.errors import EXIT_PARTIAL, MsfError

av = pytest.importorskip("av")

FRAMES = 60


def _write(path, faststart: bool) -> None:
    """60 frames of noise in H.264, a keyframe every 10 (mp4 with its index first, so a cut file
    still opens and announces all 60, as a recording cut short by a full disk or a download would)."""
    with av.open(str(path), "w", options={"movflags": "faststart"} if faststart else {}) as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 96, 64, "yuv420p"
        s.options = {"preset": "ultrafast", "g": "10"}
        rng = np.random.default_rng(0)
        for _ in range(FRAMES):
            for p in s.encode(av.VideoFrame.from_ndarray(rng.integers(0, 256, (64, 96, 3), np.uint8),
                                                         format="bgr24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


@pytest.fixture(scope="module")
def damaged(tmp_path_factory):
    """Whole, truncated (half the bytes) and byte-flipped (2 % of the bytes past the first third)
    copies of an mp4 and an mkv clip."""
    d = tmp_path_factory.mktemp("damaged")
    files = {}
    for ext in ("mp4", "mkv"):
        whole = d / f"whole.{ext}"
        _write(whole, faststart=ext == "mp4")
        data = whole.read_bytes()
        (d / f"cut.{ext}").write_bytes(data[: len(data) // 2])
        flipped = bytearray(data)
        rng = np.random.default_rng(1)
        for k in rng.integers(len(data) // 3, len(data), len(data) // 50):
            flipped[k] ^= 0xFF
        (d / f"flip.{ext}").write_bytes(bytes(flipped))
        files.update({f"whole.{ext}": whole, f"cut.{ext}": d / f"cut.{ext}", f"flip.{ext}": d / f"flip.{ext}"})
    return files


def _decoded(path) -> int:
    cap, n = cv2.VideoCapture(str(path)), 0
    while cap.read()[0]:
        n += 1
    return n


def _video(*args):
    return subprocess.run([sys.executable, "-m", "msf.cli.video", *map(str, args), "--backend", "null",
                           "--no-progress"], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("name", ["cut.mp4", "flip.mp4", "cut.mkv", "flip.mkv"])
@pytest.mark.parametrize("mode", ["full", "auto"])  # full: PyAV's I420 frame path; auto: OpenCV's BGR frames
def test_damaged_file_warns_exits_3_and_keeps_a_playable_output(damaged, tmp_path, name, mode):
    src = damaged[name]
    before = src.read_bytes()
    out, stats = tmp_path / "o.mp4", tmp_path / "s.json"
    r = _video(src, "-o", out, "--stats", stats, "--mode", mode)
    assert r.returncode == EXIT_PARTIAL == 3, r.stderr
    s = json.loads(stats.read_text())["sources"][0]
    got = s["frames_decoded"]
    assert 0 < got < FRAMES - 1 and s["partial"] and s["frames_in"] == FRAMES
    warnings = [ln for ln in r.stderr.splitlines() if "warning" in ln]
    assert warnings == [f"msf-video: warning: {src} ended after {got} of the {FRAMES} frames its container "
                        f"announces (truncated or damaged file); {out} holds them; exit 3 (--allow-partial: "
                        f"exit 0)"]
    assert "[h264" not in r.stderr and "Traceback" not in r.stderr  # FFmpeg's own lines stay out
    assert _decoded(out) == got == s["frames_out"]  # finalised: every decoded frame is in a playable file
    assert src.read_bytes() == before


def test_allow_partial_exits_0_and_still_warns(damaged, tmp_path):
    r = _video(damaged["cut.mp4"], "-o", tmp_path / "o.mp4", "--allow-partial")
    assert r.returncode == 0, r.stderr
    assert "ended after" in r.stderr and "exit 3" not in r.stderr
    assert _decoded(tmp_path / "o.mp4") > 0


@pytest.mark.parametrize("name", ["whole.mp4", "whole.mkv"])
def test_whole_files_are_not_partial(damaged, tmp_path, name):
    r = _video(damaged[name], "-o", tmp_path / "o.mp4", "--max-frames", "1000")
    assert r.returncode == 0 and "warning" not in r.stderr, r.stderr
    assert _decoded(tmp_path / "o.mp4") == FRAMES


def test_stopping_early_is_not_partial(damaged, tmp_path):
    """--max-frames stops before the end: nothing is missing from what was asked for."""
    r = _video(damaged["cut.mp4"], "-o", tmp_path / "o.mp4", "--max-frames", "5")
    assert r.returncode == 0 and "warning" not in r.stderr, r.stderr


def test_shortfall_tolerates_an_estimated_count():
    from msf.runtime.sources import Source, partial_tolerance

    class Counted(Source):
        def __init__(self, frames: int, announced: int | None) -> None:
            super().__init__("s", 25.0, announced)
            self.left = frames

        def _read(self):
            if not self.left:
                return None
            self.left -= 1
            return np.zeros((2, 2, 3), np.uint8)

    def run(frames, announced, stop=None):
        src = Counted(frames, announced)
        src.peek()
        while (stop is None or src.decoded < stop) and src.read() is not None:
            pass
        return src.shortfall()

    assert partial_tolerance(120) == 1 and partial_tolerance(1000) == 10
    assert run(120, 120) is None and run(119, 120) is None  # a count estimated from the duration
    assert run(43, 120) == (43, 120)
    assert run(5, 120, stop=3) is None  # not at its end: stopped early, nothing is known
    assert run(10, None) is None  # the container announced nothing


class _SilentServer:
    """A loopback server that accepts connections and never says a word."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)

    def close(self) -> None:
        for c in self.conns:
            c.close()
        self.sock.close()


@pytest.fixture
def silent():
    server = _SilentServer()
    yield server
    server.close()


@pytest.mark.parametrize("scheme", ["rtsp", "http"])
def test_stream_open_honours_the_timeout(silent, scheme):
    from msf.runtime.sources import open_source

    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    url = f"{scheme}://127.0.0.1:{silent.port}/stream"
    t0 = time.monotonic()
    with pytest.raises(MsfError, match=r"no answer within 0\.5 s \(--open-timeout\)"):
        open_source(url, stall_timeout=10, open_timeout=0.5)
    took = time.monotonic() - t0
    assert 0.4 < took < 3, took  # FFmpeg's own default is 30 s
    assert silent.conns  # it really connected and waited


def test_msf_video_stall_timeout_bounds_opening_a_silent_stream(silent):
    url = f"rtsp://127.0.0.1:{silent.port}/stream"
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "msf.cli.video", url, "--stall-timeout", "1", "--backend", "null",
                        "--no-progress"], capture_output=True, text=True, timeout=120)
    took = time.monotonic() - t0
    assert r.returncode == 1 and r.stderr == (f"msf-video: error: cannot open stream {url}: no answer within 1 s "
                                              "(--open-timeout)\n")
    assert took < 15, took  # interpreter start-up included; FFmpeg alone would wait 30 s
