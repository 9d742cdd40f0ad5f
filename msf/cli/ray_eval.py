"""``msf-eval --ray``: an unlabeled image folder through Ray Data, with a pool of actors that each
hold msf-eval's PyTorch model; masks and overlays exactly as ``msf-eval --save-masks`` writes them."""

from __future__ import annotations

import argparse
from pathlib import Path

from msf.cli.ray_common import Report, absolute, ray_settings, task_gpus
from msf.errors import MsfError, UsageError

UNIT_HELP = ("unlabeled images (--save-masks/--save-overlays) go through Ray Data to a pool of model actors; "
             "finished images are skipped on a rerun (--resume)")


def eval_on_ray(args: argparse.Namespace) -> int:
    """The whole ``msf-eval --ray`` run; its exit code."""
    from msf.checkpoint import checkpoint_metadata, recommended_size
    from msf.cli.eval import _check_outputs, _select, make_output_dirs
    from msf.data import list_samples
    from msf.evaluate import TTA_MODES, check_tta
    from msf.paths import data_root
    from msf.runtime.distributed.cluster import connect, require_ray
    from msf.runtime.distributed.markers import marker_path, model_digest
    from msf.runtime.distributed.units import ImageJob, image_row
    from msf.sizes import check_memory

    if args.degrade or args.figure:
        raise UsageError(f"{'--degrade' if args.degrade else '--figure'} scores labeled faces in one process: "
                         "drop --ray")
    if not (args.save_masks or args.save_overlays):
        raise UsageError("--ray writes predictions: give --save-masks DIR and/or --save-overlays DIR")
    sizes = args.size or [recommended_size(args.ckpt)]
    if len(sizes) > 1:
        raise UsageError("--ray predicts at one input size: give one --size")
    tta = TTA_MODES[args.tta]
    check_tta(tta, sizes[0])
    require_ray()
    root = args.data or data_root()
    if root is None:
        raise MsfError("no data: pass --data DIR or set MSF_DATA")
    samples = list_samples(root, require_masks=False)
    if all(s.mask is not None or s.official_root is not None for s in samples):
        raise UsageError(f"{root} is labeled: --ray predicts unlabeled images; scoring runs in one process "
                         "(drop --ray)")
    samples = _select(samples, args.split, checkpoint_metadata(args.ckpt))[: args.limit]
    check_memory(min(args.batch, len(samples)), max(tta.sizes(sizes[0])))
    masks_dir = Path(absolute(args.save_masks)) if args.save_masks else None
    over_dir = Path(absolute(args.save_overlays)) if args.save_overlays else None
    _check_outputs(args, samples, masks_dir, over_dir)
    make_output_dirs(masks_dir, over_dir)
    first = masks_dir or over_dir
    rows = [image_row(absolute(s.image), s.name, str(masks_dir / f"{s.name}.png") if masks_dir else None,
                      str(over_dir / f"{s.name}.jpg") if over_dir else None, str(marker_path(first, s.name)))
            for s in samples]
    rs = ray_settings(args)
    settings = {"kind": "eval", "size": sizes[0], "amp": args.amp, "tta": args.tta, "masks": bool(masks_dir),
                "overlays": bool(over_dir)}
    report = Report("msf-eval", len(rows), "img", stderr=False)
    with connect(args.ray) as cluster:
        report.cluster = cluster
        from msf.runtime.distributed.ray_images import run_images

        opts = dict(ckpt=absolute(args.ckpt), size=sizes[0], device=args.device, amp=args.amp, tta=args.tta,
                    overlays=over_dir is not None)
        job = ImageJob("rgb", "eval", opts, batch=args.batch, model_sha256=model_digest(args.ckpt, "pytorch"),
                       settings=settings, resume=rs["resume"])
        report.interrupted = not run_images(rows, job, cpus=rs["cpus"], gpus=task_gpus(args, cluster.gpus),
                                            workers=rs["workers"], on_outcome=report.add)
    return report.finish(args.json)
