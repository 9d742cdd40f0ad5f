"""``msf-video --ray``: video files as Ray tasks (each runs the pipeline on one file), image
folders through Ray Data with a pool of Segmenter actors (each image parsed on its own)."""

from __future__ import annotations

import argparse
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from msf.cli.ray_common import Report, absolute, ray_settings, task_gpus
from msf.errors import UsageError

UNIT_HELP = ("each video file is a task running the pipeline (--gpus-per-task), image folders go through "
             "Ray Data to a pool of model actors (label PNGs only: each image parsed on its own); "
             "finished inputs are skipped on a rerun (--resume)")


def _is_images(spec: str) -> bool:
    from msf.paths import IMAGE_EXTS

    return Path(spec).is_dir() or any(ch in spec for ch in "*?[") or Path(spec).suffix.lower() in IMAGE_EXTS


def _sources(args: argparse.Namespace) -> list[Any]:
    """Each source, as much as planning needs (``name``, ``paths``) without decoding anything:
    image folders are listed, video files are not opened (their workers do)."""
    from msf.runtime.sources import open_source

    out = []
    for spec in args.sources:
        if spec.isdigit() or "://" in spec:
            raise UsageError(f"--ray parses files: {spec} is a live source (run it without --ray)")
        if _is_images(spec):
            src = open_source(spec)  # lists the files; reads none
            out.append(SimpleNamespace(spec=spec, name=src.name, paths=list(src.files), images=True))
        else:
            out.append(SimpleNamespace(spec=spec, name=Path(spec).stem, paths=[Path(spec)], images=False))
    return out


def _specs(args: argparse.Namespace, sources: list[Any]) -> tuple[Any, Any, list[Any]]:
    """(the video output, the masks output, every spec) that --ray can write, or a usage error."""
    from msf.cli.video import _output_specs

    if args.live:
        raise UsageError("--ray parses files in order, every frame: --live does not apply")
    specs = _output_specs(args, sources)
    shown = [s for s in specs if s.kind in ("window", "viewer")]
    if shown:
        raise UsageError(f"--ray runs on cluster workers: {'--show' if shown[0].kind == 'window' else shown[0].target}"
                         " cannot be watched from here (write files: -o DIR/, masks:DIR)")
    videos = [s for s in specs if s.kind in ("video", "folder", "default")]
    masks = [s for s in specs if s.kind == "masks"]
    if len(videos) > 1 or len(masks) > 1:
        raise UsageError("--ray writes one video and one mask folder per input: give each output once")
    if videos and any(s.images for s in sources):
        raise UsageError("under --ray an image folder gives label PNGs only (--save-masks DIR or -o masks:DIR): "
                         "its video would be one sequential file; run it without --ray")
    names = [s.name for s in sources]
    if masks and len(set(names)) < len(names):
        raise UsageError("two inputs have the same name and would write the same masks: rename one")
    return (videos[0] if videos else None), (masks[0] if masks else None), specs


def _segmenter_options(args: argparse.Namespace, cpus: float) -> dict[str, Any]:
    return dict(model=absolute(args.model), backend=args.backend, mode=args.mode, device=args.device,
                threads=args.threads or max(1, round(cpus)), spinning=args.spinning, fp16=args.fp16,
                smooth=args.smooth, cuda_graphs=args.cuda_graphs, detect_every=args.detect_every,
                detect_size=args.detect_size, detect_score=args.detect_score, scan_every=args.scan_every,
                matched_sizes=args.matched_size, drop_islands=not args.keep_islands, size=args.size,
                flip=args.tta == "flip")


def _settings(args: argparse.Namespace, kind: str, video: bool, masks: bool) -> dict[str, Any]:
    """What changes the outputs (the markers compare it)."""
    keys = ("backend", "mode", "size", "device", "fp16", "smooth", "detect_every", "detect_size", "detect_score",
            "scan_every", "matched_size", "keep_islands", "tta")
    out = {k: getattr(args, k) for k in keys}
    out.update(kind=kind, masks=masks, video=video)
    if kind == "video":
        out.update(alpha=args.alpha, legend=args.legend, hud=not args.no_hud, side_by_side=args.side_by_side,
                   codec=args.codec, preset=args.encoder_preset, max_frames=args.max_frames)
    return out


def video_on_ray(args: argparse.Namespace) -> int:
    """The whole ``msf-video --ray`` run; its exit code."""
    from msf.cli.guard import check_writable
    from msf.cli.video import _check_outputs, _make_folders
    from msf.contract import CHECKPOINT_EXTS, DEFAULT_SIZE
    from msf.runtime.distributed.cluster import connect, require_ray
    from msf.runtime.distributed.markers import marker_path, model_digest
    from msf.runtime.distributed.units import FAILED, ImageJob, Outcome, VideoJob, VideoUnit, image_row
    from msf.runtime.sinks import video_paths
    from msf.sizes import check_memory

    if args.smooth and any(_is_images(s) for s in args.sources):
        raise UsageError("--smooth averages over time; under --ray the images of a folder are parsed each on its own")
    require_ray()  # a missing Ray is said before anything else
    if args.model is None or Path(args.model).suffix.lower() in CHECKPOINT_EXTS:
        check_memory(args.batch, args.size or DEFAULT_SIZE)
    sources = _sources(args)
    vspec, mspec, specs = _specs(args, sources)
    _check_outputs(args, sources, specs)
    _make_folders(specs)
    if args.stats:
        check_writable(Path(args.stats).parent, "stats folder")
    masks_dir = Path(absolute(mspec.target)) if mspec else None
    if masks_dir is not None:
        masks_dir.mkdir(parents=True, exist_ok=True)
        check_writable(masks_dir)
    rs = ray_settings(args)
    model_sha = model_digest(args.model, args.backend)
    names = [s.name for s in sources]
    units, rows, missing = [], [], []
    for j, s in enumerate(sources):
        if s.images:
            for i, f in enumerate(s.paths[: args.max_frames]):
                stem = f"{s.name}_{i:06d}"
                rows.append(image_row(absolute(f), str(f), str(masks_dir / f"{stem}.png"), None,
                                      str(marker_path(masks_dir, stem))))
            continue
        if not s.paths[0].is_file():
            missing.append(Outcome(s.spec, FAILED, f"video not found: {s.spec}"))
            continue
        video = Path(absolute(video_paths(vspec, names)[j])) if vspec else None
        marker = marker_path(video.parent, video.name) if video else marker_path(masks_dir, s.name)
        units.append(VideoUnit(absolute(s.spec), s.spec, s.name, str(video) if video else None,
                               str(masks_dir) if masks_dir else None, str(marker)))
    report = Report("msf-video", len(units) + len(rows) + len(missing), "input", stderr=True,
                    progress=not args.no_progress)
    for o in missing:
        report.add(o)
    with connect(args.ray) as cluster:
        report.cluster = cluster
        gpus = task_gpus(args, cluster.gpus)
        slots = int(cluster.gpus // gpus) if gpus else int(cluster.cpus // rs["cpus"])
        seg = _segmenter_options(args, rs["cpus"])
        done = True
        if units:
            from msf.runtime.distributed.ray_videos import run_videos

            job = VideoJob(seg, dict(alpha=args.alpha, legend=args.legend, hud=not args.no_hud,
                                     side_by_side=args.side_by_side),
                           dict(prefer="mp4v" if args.codec == "mp4v" else "h264", preset=args.encoder_preset,
                                hardware=args.codec == "h264"),
                           batch=args.batch, max_frames=args.max_frames, model_sha256=model_sha,
                           settings=_settings(args, "video", vspec is not None, masks_dir is not None),
                           resume=rs["resume"])
            done = run_videos(units, job, cpus=rs["cpus"], gpus=gpus, retries=rs["retries"],
                              window=rs["workers"] or max(1, 2 * slots), on_outcome=report.add)
        if rows and done:
            from msf.runtime.distributed.ray_images import run_images

            job = ImageJob("bgr", "segmenter", seg, batch=args.batch, model_sha256=model_sha,
                           settings=_settings(args, "images", False, True), resume=rs["resume"])
            done = run_images(rows, job, cpus=rs["cpus"], gpus=gpus, workers=rs["workers"],
                              on_outcome=report.add)
        report.interrupted = not done
    return report.finish(args.stats, allow_partial=args.allow_partial)

