"""The live browser viewer in a real headless Chromium on loopback: the page loads, frames arrive
and their pixels carry the overlay colours, the stats update, a closed tab neither stops nor slows
the pipeline, two viewers at once work. Skipped (with the reason) where no Chromium is installed."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time

import numpy as np
import pytest

from msf.labels import PALETTE
from msf.runtime.pipeline import Job, live_config, run_pipeline
from msf.runtime.render import RenderOptions
from msf.runtime.segmenter import Segmenter
from msf.runtime.sources import Source
from msf.runtime.stats import PipelineStats
from msf.runtime.viewer import ViewerSink

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium for the browser test "
                                                          "(Debian: apt-get install chromium)")
GREY = 90
ALPHA = 0.5
FPS = 25.0


class PacedSource(Source):
    """A camera-like live source: the same grey 320×240 frame at 25 FPS until stopped."""

    live = True

    def __init__(self) -> None:
        super().__init__("cam", FPS, None)
        self.stopped = threading.Event()
        self.next_t = time.perf_counter()

    def _read(self) -> np.ndarray | None:
        self.next_t += 1 / FPS
        delay = self.next_t - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        return None if self.stopped.is_set() else np.full((240, 320, 3), GREY, np.uint8)


@pytest.fixture
def served():
    """A running pipeline (null backend: a fixed face-like label pattern) into a viewer on an
    ephemeral loopback port; yields (viewer, job, stats, pipeline thread)."""
    seg = Segmenter(backend="null", mode="full", size=64)
    viewer = ViewerSink("127.0.0.1:0", ["cam"])
    src = PacedSource()
    job = Job(src, [viewer])
    stats = PipelineStats()
    cfg = live_config(1, render=RenderOptions(alpha=ALPHA, hud=False))
    t = threading.Thread(target=run_pipeline, args=(seg, [job], cfg, stats), daemon=True)
    t.start()
    yield viewer, job, stats, t
    src.stopped.set()
    t.join(timeout=10)
    viewer.close()


def open_browser(url: str, profile) -> subprocess.Popen:
    return subprocess.Popen([CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                             "--disable-dev-shm-usage", f"--user-data-dir={profile}", url],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_for(cond, timeout: float = 40.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = cond()
        if got:
            return got
        time.sleep(0.2)
    raise AssertionError("timed out")


def reports_with(viewer: ViewerSink, frames: int) -> list[dict]:
    return [r for r in list(viewer.reports.values()) if r.get("frames", 0) >= frames]


def close(proc: subprocess.Popen) -> None:
    proc.kill()
    proc.wait(timeout=10)


def test_page_shows_the_parsed_stream_with_its_overlay_colours_and_live_stats(served, tmp_path):
    viewer, job, stats, _ = served
    browser = open_browser(viewer.url, tmp_path / "p")
    try:
        first = wait_for(lambda: reports_with(viewer, 10))[0]
        later = wait_for(lambda: [r for r in reports_with(viewer, first["frames"] + 10)
                                  if r["viewer"] == first["viewer"]])[0]
    finally:
        close(browser)
    assert (later["width"], later["height"]) == (320, 240)
    assert later["frames"] > first["frames"] and later["stats_text"] != first["stats_text"]  # stats update
    assert "FPS" in later["stats_text"] and "capture→screen" in later["stats_text"]
    assert 0 < later["display_latency_ms"] < 2000
    # Every frame is the same grey picture with the same labels: what the page drew must be the
    # rendered frame (within JPEG error), and where a class was found, its palette colour blended in.
    rendered = viewer.streams[0].frame
    labels = viewer.streams[0].labels
    fg_checked = 0
    for x, y, r, g, b in later["samples"]:
        win = labels[max(0, y - 8):y + 9, max(0, x - 8):x + 9]
        if (win != win.flat[0]).any():
            continue  # near an edge between classes: JPEG's 16-px chroma blocks smear it
        # JPEG (quality 80, chroma at half resolution) moves saturated colours by up to ~20 levels;
        # the overlay moves the grey by 40 or more in some channel for every class
        assert np.abs(np.array([r, g, b]) - rendered[y, x, ::-1].astype(int)).max() <= 20, (x, y)
        if labels[y, x]:
            expect = (1 - ALPHA) * GREY + ALPHA * PALETTE[labels[y, x]].astype(float)
            assert np.abs(np.array([r, g, b]) - expect).max() <= 20, (x, y, labels[y, x])
            assert np.abs(np.array([r, g, b]) - GREY).max() >= 30  # the overlay shows
            fg_checked += 1
    assert fg_checked >= 10
    assert viewer.report()["display_latency_p50_ms"] is not None


def test_a_closed_tab_neither_stops_nor_slows_the_pipeline(served, tmp_path):
    viewer, job, stats, thread = served
    browser = open_browser(viewer.url, tmp_path / "p")
    wait_for(lambda: reports_with(viewer, 10))

    def rate(seconds: float = 2.0) -> float:
        n0 = job.written
        time.sleep(seconds)
        return (job.written - n0) / seconds

    watched = rate()
    close(browser)
    wait_for(lambda: viewer.watching == 0, timeout=15)
    alone = rate()
    assert thread.is_alive()
    assert watched > 0.8 * FPS and alone > 0.8 * FPS, (watched, alone)


def test_two_viewers_at_once(served, tmp_path):
    viewer, *_ = served
    browsers = [open_browser(viewer.url, tmp_path / f"p{k}") for k in range(2)]
    try:
        got = wait_for(lambda: {r["viewer"] for r in reports_with(viewer, 10)} if
                       len({r["viewer"] for r in reports_with(viewer, 10)}) >= 2 else None, timeout=60)
    finally:
        for b in browsers:
            close(b)
    assert len(got) == 2
    assert viewer.report()["stream_connections"] >= 2
