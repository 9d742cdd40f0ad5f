"""msf-video end-to-end FPS on a file against the backend's pure inference FPS, in one run.

ONNX Runtime CPU, 512² model input, the runtime's default thread settings (all cores, spinning
off). Clips are made from the data root's unlabeled faces: a 512×512 clip (no resize on the way
in) and a 1280×720 clip, letterboxed (full mode) and in face mode with the face detector run on
every frame and on every 3rd frame (``--detect-every 3``). Pure inference = the backend called in a loop
on prepared inputs; end to end = decode -> preprocess -> infer -> postprocess -> render -> H.264
encode, through the same pipeline msf-video runs. Writes JSON + Markdown to benchmarks/results/.

    python benchmarks/bench_video.py [--frames 60]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from msf.data import list_samples
from msf.paths import data_root
from msf.runtime.pipeline import Job, PipelineConfig, run_pipeline
from msf.runtime.segmenter import Segmenter
from msf.runtime.sinks import VideoSink
from msf.runtime.sources import open_source
from msf.runtime.stats import PipelineStats
from msf.runtime.timing import environment, markdown_table, save_results, summarize, time_calls, utc_now

HERE = Path(__file__).resolve().parent


def make_clip(path: Path, faces: list[np.ndarray], frames: int, size: tuple[int, int]) -> Path:
    w, h = size
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25, (w, h))
    for i in range(frames):
        face = faces[(i // 10) % len(faces)]
        if (w, h) == face.shape[1::-1]:
            frame = face
        else:
            frame = np.full((h, w, 3), 60, np.uint8)
            s = min(h, 420)
            x = 100 + (i * 7) % max(1, w - s - 200)
            frame[(h - s) // 2:(h - s) // 2 + s, x:x + s] = cv2.resize(face, (s, s))
        vw.write(frame)
    vw.release()
    return path


def pure_inference_fps(seg: Segmenter, frame: np.ndarray, runs: int) -> dict:
    places = seg.placements(frame)
    crops = seg.crops(frame, places)
    ms = time_calls(lambda: seg.infer(crops), iters=runs, warmup=5)
    return summarize(ms)


def pipeline_fps(seg: Segmenter, clip: Path, out: Path, batch: int) -> dict:
    src = open_source(str(clip))
    h, w = src.peek().shape[:2]
    job = Job(src, VideoSink(out, src.fps, (w, h)))
    stats = PipelineStats()
    try:
        run_pipeline(seg, [job], PipelineConfig(batch=batch), stats)
    finally:
        job.video.close()
        src.close()
    s = stats.summary()
    return {"fps": s["fps"], "frames": s["frames"], "stages": s["stages"], "codec": job.video.codec}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--out", default=str(HERE / "results" / "video_ort_cpu"))
    args = ap.parse_args()
    root = data_root()
    if root is None:
        sys.exit("bench_video: needs the face data (MSF_DATA or ../shared/data/faces)")
    faces = [cv2.resize(cv2.imread(str(s.image)), (512, 512))
             for s in list_samples(root / "unlabeled", require_masks=False)[:6]]
    threads = os.cpu_count()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        variants = (("512×512 clip", (512, 512), "full", 1), ("1280×720 clip", (1280, 720), "full", 1),
                    ("1280×720 clip, face mode", (1280, 720), "face", 1),
                    ("1280×720 clip, face mode, detect every 3rd frame", (1280, 720), "face", 3))
        clips: dict[tuple[int, int], Path] = {}
        for label, size, mode, every in variants:
            if size not in clips:
                clips[size] = make_clip(Path(tmp) / f"{size[0]}.mp4", faces, args.frames, size)
            clip = clips[size]
            seg = Segmenter(threads=threads, mode=mode, detect_every=every)
            frame = open_source(str(clip)).peek()
            pure = pure_inference_fps(seg, frame, args.frames)
            t0 = time.perf_counter()
            e2e = pipeline_fps(Segmenter(threads=threads, mode=mode, detect_every=every), clip,
                               Path(tmp) / f"out{size[0]}.mp4", args.batch)
            rows.append({"clip": label, "mode": mode, "detect_every": every, "frames": e2e["frames"],
                         "pure_inference_fps": pure["throughput_ips"],
                         "pure_inference_p50_ms": pure["p50_ms"], "end_to_end_fps": e2e["fps"],
                         "ratio": e2e["fps"] / pure["throughput_ips"], "codec": e2e["codec"],
                         "stages": e2e["stages"], "wall_s": round(time.perf_counter() - t0, 1)})
            print(rows[-1]["clip"], f"pure {pure['throughput_ips']:.1f} FPS, e2e {e2e['fps']:.1f} FPS",
                  file=sys.stderr)
    result = {"benchmark": "msf-video end-to-end vs pure inference, ONNX Runtime CPU, 512² model input",
              "date": utc_now(), "threads": threads, "spinning": False, "batch": args.batch,
              "environment": environment(), "rows": rows}
    env = result["environment"]
    lines = [f"### {result['benchmark']}", "",
             f"{result['date']} · {env['cpu']} · {env['cores']} cores · ORT {env['versions']['onnxruntime']} · "
             f"{threads} ORT threads, spinning off · batch ≤ {args.batch} · {args.frames} frames", ""]
    lines += markdown_table(
        ["clip", "pure inference FPS", "msf-video end-to-end FPS", "ratio", "preprocess p50 ms",
         "infer p50 ms (pipeline)", "render p50 ms", "write p50 ms", "codec"],
        [[r["clip"], f"{r['pure_inference_fps']:.1f}", f"{r['end_to_end_fps']:.1f}", f"{r['ratio']:.2f}",
          f"{r['stages']['preprocess']['p50_ms']:.1f}", f"{r['stages']['infer']['p50_ms']:.1f}",
          f"{r['stages']['render']['p50_ms']:.1f}",
          f"{r['stages']['write']['p50_ms']:.1f}", r["codec"]] for r in rows])
    save_results(args.out, result, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
