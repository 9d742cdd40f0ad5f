"""``msf-video``: live face parsing of videos, webcams, streams and image folders."""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

from msf.cli.common import (
    console,
    float_range,
    int_range,
    make_parser,
    model_size,
    positive_int,
    seconds,
    threads_int,
    unit_float,
)
from msf.cli.ray_common import add_ray_flags, check_ray_flags
from msf.cli.ray_video import UNIT_HELP as RAY_UNIT_HELP
from msf.contract import CHECKPOINT_EXTS, DEFAULT_SIZE
from msf.errors import EXIT_PARTIAL, MsfError, run_cli
from msf.sizes import SIZE_RULE, check_memory

EPILOG = """\
examples:
  msf-video input.mp4                           # -> input_msf.mp4 (shipped weights, best backend)
  msf-video input.mp4 -o out.mp4 --stats stats.json --save-masks masks/
  msf-video 0 -o http://:8080                   # webcam, watched live in a browser (loopback only)
  msf-video cam.mp4 --live -o http://0.0.0.0:8080 -o out.mp4   # viewer open to the network, and a file
  msf-video 0 --show --mode face                # webcam 0, every face cropped and parsed (384²; small faces 320²)
  msf-video a.mp4 b.mp4 rtsp://cam/stream -o outdir/   # several sources, one batched backend
  msf-video clip.mp4 --model msf.engine         # TensorRT engine (built by msf-export --tensorrt)
  msf-video input.mp4 --size 256                # 256² model input: inference ~2x faster, F 0.74 vs 0.77
  msf-video input.mp4 --backend null --stats s.json   # what the pipeline alone costs (no inference)
  msf-video input.mp4 --live --stats s.json     # play the file as a camera would: latency p50/p99
  msf-video clips/*.mp4 -o out/ --ray auto      # on a Ray cluster: a task per file; a rerun skips what is done

File sources are processed frame by frame in order (the output has the input's frame count),
with deep queues for throughput; live sources use shallow queues and drop stale frames to keep
latency bounded, and report how many. The backend warms up before timing starts (reported as
warm-up). Ctrl-C finishes the output file (playable) and writes the stats.

A file that ends before its container said it would (truncated or damaged) is still written out
(playable), with a warning naming frames decoded against expected, and exit code 3 unless
--allow-partial. No output may be one of the inputs (exit 2, nothing written).
"""


PRESET_HELP = ("libx264 preset, fastest first: %(choices)s (default: %(default)s). Faster presets cost less "
               "CPU and give larger files; measured on 1280×720 frames: ultrafast ~6 ms of CPU per frame "
               "(files ~2.4x larger than veryfast), veryfast ~14 ms, medium ~22 ms (about the same size "
               "as veryfast on simple scenes)")


def build_parser():
    from msf.runtime.backends import BACKENDS, DEPRECATED_BACKENDS
    from msf.runtime.faces import DETECT_SIZE, SCAN_EVERY, SCORE_THRESHOLD
    from msf.runtime.segmenter import DEFAULT_MODE, MODES
    from msf.runtime.sinks import DEFAULT_PRESET, X264_PRESETS

    p = make_parser("msf-video", "Face parsing of video files, webcams, streams and image folders.", EPILOG)
    p.add_argument("sources", nargs="+", metavar="SOURCE",
                   help="video file, webcam index, rtsp:// or http:// URL, image folder or glob")
    p.add_argument("--model", metavar="PATH", help="checkpoint (.pt/.pth), .onnx or .engine; default: shipped weights")
    p.add_argument("--size", type=model_size, metavar="N",
                   help=f"model input size N² for a checkpoint, {SIZE_RULE} (default: the size the checkpoint "
                        "records, 384 for the shipped weights; an .onnx or .engine file keeps the size it was "
                        "exported at)")
    p.add_argument("--backend", choices=BACKENDS + tuple(DEPRECATED_BACKENDS), default="auto",
                   help="inference backend; null: no inference, fixed labels (measures the pipeline itself)")
    p.add_argument("--device", help="onnxruntime: cpu/cuda/tensorrt provider; pytorch: cpu/cuda; openvino: CPU/GPU")
    p.add_argument("--threads", type=threads_int, help="inference threads (default: all cores; spinning off)")
    p.add_argument("--spinning", action="store_true", help="let ONNX Runtime workers spin (faster alone, "
                                                           "starves decode/encode on few cores)")
    p.add_argument("--fp16", action="store_true", help="pytorch backend on CUDA: run in fp16")
    p.add_argument("--cuda-graphs", action="store_true", help="pytorch backend on CUDA: replay CUDA graphs")
    p.add_argument("--smooth", type=float_range(0.0, 1.0, hi_open=True), default=0.0, metavar="A",
                   help="temporal smoothing of class probabilities, p = A·p_prev + (1-A)·p_now: over the whole "
                        "frame in full mode, per tracked face in its aligned crop in face mode (a new face starts "
                        "fresh); auto mode smooths whichever of the two the frame used")
    p.add_argument("--tta", choices=["off", "flip"], default="off",
                   help="test-time augmentation: parse each frame (or face) and its mirror image and average "
                        "their class scores (left/right classes swapped back): about 0.01 higher F for about "
                        "twice the CPU; not on the GPU frame path (off: one pass)")
    p.add_argument("--mode", choices=MODES, default=DEFAULT_MODE,
                   help="auto: face mode, but a frame that already is a face close-up like the "
                        "training images (a face whose aligned crop covers the frame, IoU >= 0.5) is parsed "
                        "whole; no face found = nothing labelled. full: whole frame letterboxed to a square. "
                        "face: each face found by the YuNet detector aligned like the training images, parsed "
                        "and pasted back")
    p.add_argument("--detect-every", type=positive_int, default=1, metavar="N",
                   help="face/auto mode: run the face detector on every N-th frame, track in between")
    p.add_argument("--scan-every", type=positive_int, default=SCAN_EVERY, metavar="N",
                   help="face/auto mode: tracked faces are re-detected in their own aligned square on every "
                        "detection run; the whole frame is scanned for new faces on every N-th run (and at once "
                        "when a tracked face is lost)")
    p.add_argument("--matched-size", action=argparse.BooleanOptionalAction, default=True,
                   help="face/auto mode with a checkpoint: parse a small face (a square of up to 192 px) at 320² "
                        "instead of the default size: about 0.7 of the inference, and as good or better on "
                        "compressed small faces (--no-matched-size, and the GPU frame path: every face at --size)")
    p.add_argument("--keep-islands", action="store_true",
                   help="face/auto mode: keep labelled regions of a face's crop that touch none of its core "
                        "parts (by default they are dropped: blobs on seats, windows and walls)")
    p.add_argument("--detect-size", type=int_range(32, 4096), default=DETECT_SIZE, metavar="PX",
                   help="face/auto mode: long side of the downscaled frame the detector sees (larger finds "
                        "smaller faces, costs more)")
    p.add_argument("--detect-score", type=float_range(0.0, 1.0, lo_open=True, hi_open=True,
                                                      what="a number between 0 and 1 (both excluded)"),
                   default=SCORE_THRESHOLD, metavar="S", help="face/auto mode: detector score threshold in (0, 1)")
    p.add_argument("--batch", type=positive_int, default=4,
                   help="most frames inferred together (refused when batch × size² would not fit in memory)")
    p.add_argument("-o", "--output", metavar="OUT", action="append",
                   help="where results go, repeatable: a video file (a folder with several sources), DIR/ (one "
                        "video per source), masks:DIR (label PNGs), window, or http://[HOST]:PORT: a live viewer "
                        "for a browser, listening on loopback unless HOST names another address "
                        "(default: <source>_msf.mp4)")
    p.add_argument("--show", action="store_true", help="show a live window, like -o window (q or Esc quits)")
    p.add_argument("--save-masks", metavar="DIR", help="write <source>_<frame:06d>.png label maps, like -o masks:DIR")
    p.add_argument("--stats", metavar="STATS.json", help="write latency/FPS statistics as JSON")
    p.add_argument("--alpha", type=unit_float, default=0.5, help="overlay opacity, 0 to 1")
    p.add_argument("--legend", action="store_true", help="draw the class legend")
    p.add_argument("--no-hud", action="store_true", help="no FPS/latency text on the frames")
    p.add_argument("--side-by-side", action="store_true", help="original and overlay next to each other")
    p.add_argument("--codec", choices=["h264", "libx264", "mp4v"], default="h264",
                   help="h264: a hardware encoder (h264_nvenc, h264_v4l2m2m) if one opens here, else libx264; "
                        "libx264: always software; mp4v: MPEG-4 Part 2 through OpenCV (no PyAV needed)")
    p.add_argument("--encoder-preset", choices=X264_PRESETS, default=DEFAULT_PRESET, metavar="PRESET",
                   help=PRESET_HELP)
    p.add_argument("--live", action="store_true",
                   help="play video files at their frame rate as live sources (shallow queues, stale frames "
                        "dropped): measures capture-to-output latency as a camera would see it")
    p.add_argument("--max-frames", type=positive_int, metavar="N", help="stop each source after N frames")
    p.add_argument("--stall-timeout", type=seconds, default=10.0, metavar="S", help="give up on a silent live source")
    p.add_argument("--open-timeout", type=seconds, metavar="S",
                   help="give up on an rtsp:// or http:// stream that does not open within S seconds "
                        "(default: --stall-timeout)")
    p.add_argument("--allow-partial", action="store_true",
                   help="a video file that ends before its container said it would (truncated or damaged) "
                        "exits 0 instead of 3 (the warning stays)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_ray_flags(p, RAY_UNIT_HELP)
    return p


def _run_on_ray(args) -> int:
    """``--ray``: the same job on a Ray cluster (``msf.cli.ray_video``); Ray is imported only here."""
    from msf.cli.ray_video import video_on_ray

    return video_on_ray(args)


def _output_specs(args, sources) -> list:
    """Every output asked for (-o, --show, --save-masks), parsed; the default video per source
    when none is."""
    from msf.runtime.sinks import OutputSpec, parse_output

    specs = [parse_output(o, len(sources)) for o in args.output or []]
    if args.show:
        specs.append(OutputSpec("window", "msf"))
    if args.save_masks:
        specs.append(OutputSpec("masks", args.save_masks))
    return specs or [OutputSpec("default", "")]


def _check_outputs(args, sources, specs) -> None:
    """Refuse (exit 2, before anything is written) any output that is one of the inputs: a video
    file or image, or the model and its sidecar."""
    from msf.cli.guard import Inputs, refuse_overwrite, refuse_overwrite_in_folder
    from msf.runtime.sinks import video_paths

    inputs = Inputs().add(*[p for s in sources for p in s.paths])
    if args.model:
        inputs.add(args.model, f"{args.model}.json")
    names = [s.name for s in sources]
    named = [(f"-o {spec.target}" if spec.kind != "default" else "the default output", v)
             for spec in specs if spec.kind in ("video", "folder", "default") for v in video_paths(spec, names)]
    if args.stats:
        named.append((f"--stats {args.stats}", Path(args.stats)))
    refuse_overwrite(named, inputs)
    for spec in specs:
        if spec.kind == "masks":
            for s in sources:
                refuse_overwrite_in_folder(f"masks {spec.target}", spec.target, rf"{re.escape(s.name)}_\d{{6}}\.png",
                                           inputs)


def _make_folders(specs) -> None:
    from msf.cli.guard import check_writable

    for spec in specs:
        if spec.kind == "folder":
            try:
                Path(spec.target).mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise MsfError(f"cannot create output folder {spec.target}: {exc.strerror}") from None
        if spec.kind in ("video", "default"):
            check_writable(Path(spec.target or ".").parent if spec.kind == "video" else Path("."))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.ray is not None:
        return _run_on_ray(args)
    check_ray_flags(args)
    # FFmpeg's own lines (decoder errors on a damaged file, stream timeouts) would bury our one-line
    # errors and warnings: OpenCV reads this when it opens its first capture.
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    import cv2
    from tqdm import tqdm

    # OpenCV's own warnings (V4L2 probing, FFmpeg demuxer chatter) would bury our one-line errors.
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)

    from msf.cli.guard import check_writable
    from msf.runtime.pipeline import Job, PipelineConfig, live_config, run_pipeline
    from msf.runtime.render import RenderOptions, output_size
    from msf.runtime.segmenter import Segmenter
    from msf.runtime.sinks import Outputs, VideoOptions, VideoSink
    from msf.runtime.sources import open_source
    from msf.runtime.stats import PipelineStats

    if args.model is None or Path(args.model).suffix.lower() in CHECKPOINT_EXTS:
        check_memory(args.batch, args.size or DEFAULT_SIZE)  # before anything is exported or loaded
    if args.stats:
        check_writable(Path(args.stats).parent, "stats folder")
    sources = []
    jobs: list[Job] = []
    outputs = None
    interrupted = False
    stats = PipelineStats()
    try:
        sources = [open_source(s, args.stall_timeout, live=args.live, open_timeout=args.open_timeout)
                   for s in args.sources]
        specs = _output_specs(args, sources)
        _check_outputs(args, sources, specs)
        _make_folders(specs)
        seg = Segmenter(args.model, args.backend, args.mode, device=args.device,
                        threads=args.threads or os.cpu_count(), spinning=args.spinning, fp16=args.fp16,
                        smooth=args.smooth, cuda_graphs=args.cuda_graphs, detect_every=args.detect_every,
                        detect_size=args.detect_size, detect_score=args.detect_score, scan_every=args.scan_every,
                        matched_sizes=args.matched_size, drop_islands=not args.keep_islands,
                        size=args.size, flip=args.tta == "flip")
        if args.size and seg.size != args.size:
            raise MsfError(f"{args.model} is fixed at {seg.size}² input; export it with msf-export --size "
                             f"{args.size}, or pass a checkpoint")
        check_memory(args.batch, seg.size)
        render = RenderOptions(args.alpha, args.legend, not args.no_hud, args.side_by_side)
        outputs = Outputs(specs, VideoOptions("mp4v" if args.codec == "mp4v" else "h264", args.encoder_preset,
                                              hardware=args.codec == "h264"))
        names = [s.name for s in sources]
        for j, src in enumerate(sources):
            h, w = src.peek().shape[:2]
            jobs.append(Job(src, outputs.for_source(j, names, src.fps, output_size(h, w, render), src.live)))
        for sink in outputs.sinks:
            if getattr(sink, "url", None):
                print(f"msf-video: live viewer at {sink.url}", file=sys.stderr)
        opts = dict(render=render, max_frames=args.max_frames)
        if any(s.live for s in sources):  # latency: shallow queues, one frame per source per batch
            cfg = live_config(len(sources), args.batch, **opts)
        else:  # throughput: deep queues, full batches
            cfg = PipelineConfig(batch=args.batch, queue_size=8, **opts)
        total = None
        if all(s.frame_count for s in sources):
            total = sum(min(s.frame_count, args.max_frames or s.frame_count) for s in sources)
        bar = tqdm(total=total, unit="frame", desc="msf-video", disable=args.no_progress or None, leave=False)
        try:
            run_pipeline(seg, jobs, cfg, stats, on_frame=lambda j: bar.update(1))
        except KeyboardInterrupt:
            interrupted = True
        finally:
            bar.close()
    finally:
        if outputs is not None:
            outputs.close(keep=True)
        for src in sources:
            src.close()
    summary = stats.summary()
    short = [j.source.shortfall() for j in jobs]
    videos = [j.sink_of(VideoSink) for j in jobs]
    summary.update(backend=seg.describe(), mode=args.mode, size=seg.size, sizes=seg.sizes,
                   sources=[{"source": a, "frames_in": j.source.frame_count, "frames_out": j.written,
                             "frames_decoded": j.source.decoded, "partial": sf is not None,
                             "output": str(v.path) if v and j.written else None,
                             "codec": v.codec if v else None, "outputs": [s.label for s in j.sinks],
                             "dropped": j.source.dropped}
                            for a, j, v, sf in zip(args.sources, jobs, videos, short)],
                   viewers=[s.report() for s in (outputs.sinks if outputs else []) if hasattr(s, "report")],
                   interrupted=interrupted)
    if args.stats:
        from msf.contract import write_json_atomic

        write_json_atomic(args.stats, summary)
    _print_summary(summary)
    if interrupted:
        print("msf-video: interrupted; outputs finalised", file=sys.stderr)
        return 130
    partial = [(a, j, v, sf) for a, j, v, sf in zip(args.sources, jobs, videos, short) if sf is not None]
    for a, j, v, (got, expected) in partial:
        kept = f"{v.path} holds them" if v and j.written else "its outputs hold them"
        print(f"msf-video: warning: {a} ended after {got} of the {expected} frames its container announces "
              f"(truncated or damaged file); {kept}" + ("" if args.allow_partial else
                                                        f"; exit {EXIT_PARTIAL} (--allow-partial: exit 0)"),
              file=sys.stderr)
    return EXIT_PARTIAL if partial and not args.allow_partial else 0


def _print_summary(summary: dict) -> None:
    from rich.table import Table

    con = console(stderr=True)
    t = Table(title=f"msf-video: {summary['frames']} frames, {summary['fps']:.1f} FPS, {summary['backend']}, "
                    f"mode {summary['mode']}")
    for col in ("stage", "mean ms", "p50 ms", "p90 ms", "p99 ms"):
        t.add_column(col, justify="right" if col != "stage" else "left")
    for name, s in summary["stages"].items():
        t.add_row(name, f"{s['mean_ms']:.1f}", f"{s['p50_ms']:.1f}", f"{s['p90_ms']:.1f}", f"{s['p99_ms']:.1f}")
    con.print(t)
    lat = summary["stages"].get("end_to_end")
    if lat:
        con.print(f"capture-to-output latency p50 {lat['p50_ms']:.1f} ms, p99 {lat['p99_ms']:.1f} ms"
                  + (f"; backend warm-up {summary['warmup_ms']:.0f} ms (not timed)" if summary.get("warmup_ms")
                     else ""))
    for s in summary["sources"]:
        line = f"{s['source']}: {s['frames_out']} frames"
        if s["output"]:
            line += f" -> {s['output']} ({s['codec']})"
        if s["dropped"]:
            line += f", {s['dropped']} stale frames dropped"
        con.print(line)
    for v in summary.get("viewers", []):
        lat = v["display_latency_p50_ms"]
        con.print(f"viewer {v['url']}: {v['stream_connections']} stream connection(s)"
                  + (f", capture-to-screen latency p50 {lat:.0f} ms" if lat is not None else ""))


def entry() -> None:
    sys.exit(run_cli("msf-video", main))


if __name__ == "__main__":
    entry()

