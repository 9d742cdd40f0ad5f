"""The live viewer's transport, measured: Motion JPEG over HTTP against the encoders a WebRTC
viewer would run (VP8 through libvpx, H.264 through libx264, the two aiortc uses), on the same
rendered 1280×720 frames, and MJPEG end to end in a real headless Chromium on loopback.

1. ``encode``: per frame, CPU ms (thread time) and bytes of each encoder on 100 frames of the
   README's astronaut moving across a 720p frame with the overlay drawn (docs/astronaut_msf.jpg):
   JPEG at quality 70/80/90 (each frame alone), VP8 realtime and H.264 ultrafast/zerolatency at
   1.5 Mbit/s (aiortc's top bitrate), medians after 10 warm-up frames.
2. ``browser``: msf-video's pipeline (``--backend null``: no inference, fixed labels, the
   overlay drawn) on a 720p clip played live at 25 FPS into the viewer; 5 s without a viewer,
   then 10 s with one headless Chromium page: process CPU ms per frame without and with the
   viewer, frames the page drew, the page's capture-to-screen latency against the pipeline's
   capture-to-output latency. Needs Chromium (skipped with a note where there is none).

    python benchmarks/bench_viewer.py          # ~1 min; writes benchmarks/results/viewer_cpu.{json,md}
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from msf.runtime.timing import environment, machine_line, markdown_table, save_results, summarize, utc_now

HERE = Path(__file__).resolve().parent
W, H, FPS = 1280, 720, 25
BITRATE = 1_500_000


def frames(n: int = 110) -> list[np.ndarray]:
    """Rendered-looking 720p frames: the astronaut with its overlay drifting across a grey frame."""
    pic = cv2.imread(str(HERE.parent / "docs" / "astronaut_msf.jpg"))
    pic = cv2.resize(pic, (720, 405), interpolation=cv2.INTER_AREA)
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        f = np.full((H, W, 3), 40, np.int16)
        x = 40 + 4 * i
        f[150:555, x:x + 720] = pic[:, : max(0, min(720, W - x))]
        f += rng.normal(0, 3, f.shape).astype(np.int16)  # a camera's sensor noise: no frame repeats exactly
        out.append(np.clip(f, 0, 255).astype(np.uint8))
    return out


def jpeg_cost(fr: list[np.ndarray], quality: int) -> dict[str, Any]:
    sizes, cpu = [], []
    for k, f in enumerate(fr):
        c0 = time.thread_time()
        ok, buf = cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if k >= 10:
            cpu.append((time.thread_time() - c0) * 1000)
            sizes.append(buf.size)
    return {"cpu_ms": summarize(np.array(cpu))["p50_ms"], "bytes": float(np.median(sizes)), "runs": len(cpu)}


def video_cost(fr: list[np.ndarray], codec: str) -> dict[str, Any]:
    """CPU ms per frame (BGR -> I420 included, as a WebRTC sender converts too) and the stream's
    mean bytes per frame at BITRATE."""
    import av

    from msf.runtime.sinks import yuv420_frame

    ctx = av.CodecContext.create(codec, "w")
    ctx.width, ctx.height, ctx.pix_fmt = W, H, "yuv420p"
    ctx.time_base = Fraction(1, FPS)
    ctx.framerate = Fraction(FPS, 1)
    ctx.bit_rate = BITRATE
    if codec == "libx264":
        ctx.options = {"preset": "ultrafast", "tune": "zerolatency"}
    else:
        ctx.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    ctx.open()
    cpu, total = [], 0
    for k, f in enumerate(fr):
        c0 = time.thread_time()
        frame = yuv420_frame(av, f)
        frame.pts = k
        packets = ctx.encode(frame)
        if k >= 10:
            cpu.append((time.thread_time() - c0) * 1000)
            total += sum(p.size for p in packets)
    return {"cpu_ms": summarize(np.array(cpu))["p50_ms"], "bytes": total / len(cpu), "runs": len(cpu)}


def chromium() -> str | None:
    return next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


def browser_run(fr: list[np.ndarray], tmp: Path, alone_s: float = 5.0, watched_s: float = 10.0) -> dict[str, Any]:
    """The pipeline into the viewer, first unwatched, then with one headless Chromium page."""
    import threading

    from msf.runtime.pipeline import Job, live_config, run_pipeline
    from msf.runtime.render import RenderOptions
    from msf.runtime.segmenter import Segmenter
    from msf.runtime.sources import open_source
    from msf.runtime.stats import PipelineStats
    from msf.runtime.viewer import ViewerSink

    exe = chromium()
    if exe is None:
        return {"skipped": "no Chromium here (Debian: apt-get install chromium)"}
    clip = tmp / "clip.mp4"
    vw = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (W, H))
    n = int((alone_s + watched_s + 6) * FPS)  # the run ends with the clip (+6 s: the browser's start)
    for k in range(n):
        vw.write(fr[k % len(fr)])
    vw.release()
    seg = Segmenter(backend="null", mode="full", size=64)
    viewer = ViewerSink("127.0.0.1:0", ["clip"])
    src = open_source(str(clip), live=True)
    job = Job(src, [viewer])
    stats = PipelineStats()
    t = threading.Thread(target=run_pipeline, args=(seg, [job], live_config(1, render=RenderOptions(hud=True)),
                                                       stats), daemon=True)
    t.start()

    def window(seconds: float) -> dict[str, float]:
        n0, c0, t0 = job.written, time.process_time(), time.perf_counter()
        time.sleep(seconds)
        frames_done = job.written - n0
        return {"frames": frames_done, "fps": frames_done / (time.perf_counter() - t0),
                "cpu_ms_per_frame": (time.process_time() - c0) * 1000 / max(1, frames_done)}

    time.sleep(1.0)
    alone = window(alone_s)
    proc = subprocess.Popen([exe, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                             "--disable-dev-shm-usage", f"--user-data-dir={tmp / 'profile'}", viewer.url],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        t_end = time.monotonic() + 30
        while not viewer.reports and time.monotonic() < t_end:
            time.sleep(0.2)
        viewer.display_latency.clear()
        watched = window(watched_s)
        page = max(viewer.reports.values(), key=lambda r: r.get("frames", 0), default={})
        lat = sorted(viewer.display_latency)
    finally:
        proc.kill()
        proc.wait(timeout=10)
        t.join(timeout=60)  # to the clip's end
        src.close()
        viewer.close()
    pipe = stats.summary()["stages"].get("end_to_end", {})
    return {"alone": alone, "watched": watched, "page_frames": page.get("frames"), "page_fps": page.get("fps"),
            "capture_to_screen_p50_ms": lat[len(lat) // 2] if lat else None, "latency_reports": len(lat),
            "capture_to_output_p50_ms": pipe.get("p50_ms"),
            "viewer_cpu_ms_per_frame": watched["cpu_ms_per_frame"] - alone["cpu_ms_per_frame"]}


def markdown(res: dict[str, Any]) -> str:
    lines = ["### live viewer transport, 1280×720 rendered frames", "",
             machine_line(res["env"], f"OpenCV {cv2.__version__}", date=res["date"])
             + (" · machine shared with other jobs" if res.get("shared") else ""), ""]
    rows = []
    for name, r in res["encode"].items():
        mbit = r["bytes"] * 8 * FPS / 1e6
        rows.append([name, f"{r['cpu_ms']:.2f}", f"{r['bytes'] / 1024:.0f}", f"{mbit:.1f}"])
    lines += markdown_table(["encoder (per frame)", "CPU ms (median)", "KiB / frame", "Mbit/s at 25 FPS"], rows)
    b = res["browser"]
    lines.append("")
    if "skipped" in b:
        lines.append(f"Browser run skipped: {b['skipped']}.")
    else:
        lines += markdown_table(["MJPEG viewer, live 720p at 25 FPS, null backend", "value"], [
            ["pipeline FPS unwatched / watched", f"{b['alone']['fps']:.1f} / {b['watched']['fps']:.1f}"],
            ["process CPU ms per frame unwatched / watched", f"{b['alone']['cpu_ms_per_frame']:.1f} / "
                                                             f"{b['watched']['cpu_ms_per_frame']:.1f}"],
            ["the viewer's CPU ms per frame (difference)", f"{b['viewer_cpu_ms_per_frame']:.1f}"],
            ["frames the page drew (its FPS)", f"{b['page_frames']} ({b['page_fps']:.1f})"],
            ["capture → output p50 (pipeline)", f"{b['capture_to_output_p50_ms']:.1f} ms"],
            [f"capture → screen p50 (page, {b['latency_reports']} reports)",
             f"{b['capture_to_screen_p50_ms']:.1f} ms" if b["capture_to_screen_p50_ms"] is not None else "—"],
        ])
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", action="store_true", help="note that the machine was shared in the result")
    ap.add_argument("--out", default=str(HERE / "results" / "viewer_cpu"))
    args = ap.parse_args()
    cv2.setNumThreads(1)  # one encoder thread each, as the viewer's connection threads run them
    fr = frames()
    res: dict[str, Any] = {"date": utc_now(), "env": environment(), "shared": args.shared, "frames": len(fr),
                           "bitrate": BITRATE, "encode": {}}
    for q in (70, 80, 90):
        res["encode"][f"JPEG quality {q} (MJPEG)"] = jpeg_cost(fr, q)
    res["encode"]["VP8 libvpx realtime, 1.5 Mbit/s (WebRTC)"] = video_cost(fr, "libvpx")
    res["encode"]["H.264 libx264 ultrafast zerolatency, 1.5 Mbit/s (WebRTC)"] = video_cost(fr, "libx264")
    cv2.setNumThreads(os.cpu_count() or 1)
    with tempfile.TemporaryDirectory() as tmp:
        res["browser"] = browser_run(fr, Path(tmp))
    save_results(args.out, res, markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
