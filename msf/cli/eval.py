"""``msf-eval``: score a checkpoint on labeled faces (CE7454 F-score, literature F1, mIoU, per class)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from msf.cli.common import console, make_parser, model_sizes, positive_int
from msf.cli.ray_common import add_ray_flags, check_ray_flags
from msf.cli.ray_eval import UNIT_HELP as RAY_UNIT_HELP
from msf.contract import write_json_atomic
from msf.errors import MsfError, run_cli
from msf.sizes import SIZE_RULE, check_memory

EPILOG = """\
examples:
  msf-eval                                    # shipped weights on the data root
  msf-eval --ckpt runs/msf/best.pt --split val --size 256,384,512
  msf-eval --data test_images/ --save-masks preds/   # unlabeled images: masks only (submission format)
  msf-eval --data test_images/ --save-masks preds/ --ray auto   # the same on a Ray cluster (resumable)
  msf-eval --split val --degrade --size 256,384 --degrade-plot robust.png
                                              # F on small, blurred, noisy, dark, JPEG/H.264 faces
  msf-eval --split val --degrade s96_q40,s64_q40 # chosen rows (msf-eval --degrade list names them)
"""


def build_parser():
    p = make_parser("msf-eval", "Evaluate a MicroSegFormer checkpoint on face images.", EPILOG)
    p.add_argument("--ckpt", metavar="PATH", help="checkpoint (.pt/.pth); default: the shipped weights")
    p.add_argument("--data", metavar="DIR",
                   help="CE7454 layout, official CelebAMask-HQ layout, or a folder of images "
                        "(default: $MSF_DATA)")
    p.add_argument("--split", choices=["all", "val", "train"], default="all",
                   help="val/train = the checkpoint's own held-out names (stored at training time)")
    p.add_argument("--size", type=model_sizes, metavar="N[,N...]",
                   help=f"model input size(s), each {SIZE_RULE} (default: the size the checkpoint records, 384 for the "
                        "shipped weights); predictions are scored at the label resolution")
    p.add_argument("--batch", type=positive_int, default=8,
                   help="images inferred together (refused when batch × size² would not fit in memory)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--amp", choices=["off", "bf16", "fp16"], default="off", help="inference precision")
    p.add_argument("--tta", choices=["off", "flip", "flip-ms"], default="off",
                   help="test-time augmentation, for offline labelling: class probabilities averaged over "
                        "the image and its mirror image (flip: 2 passes), also at 5/6 and 7/6 of the size "
                        "(flip-ms: 6 passes); off = one pass, msf-video's default")
    p.add_argument("--limit", type=positive_int, metavar="N", help="only the first N images")
    p.add_argument("--save-masks", metavar="DIR", help="write single-channel palette PNG masks named like the images")
    p.add_argument("--save-overlays", metavar="DIR", help="write colour overlays (JPEG) named like the images")
    p.add_argument("--json", metavar="FILE", help="write all numbers as JSON")
    p.add_argument("--figure", metavar="OUT.png",
                   help="write a figure: image | ground truth | prediction for the first images (needs matplotlib)")
    p.add_argument("--figure-count", type=positive_int, default=4, metavar="N", help="rows in --figure")
    p.add_argument("--per-class", action=argparse.BooleanOptionalAction, default=True,
                   help="print the per-class table")
    p.add_argument("--degrade", nargs="?", const="all", metavar="NAMES",
                   help="also score the faces under a fixed, seeded set of degradations (shrunk to a face "
                        "side of 64-256 px, JPEG quality 30-50, an H.264 round trip, blur, noise, low light), "
                        "each enlarged back to the label size: all (the default) or comma-separated names; "
                        "'list' prints them")
    p.add_argument("--degrade-plot", metavar="OUT.png", help="with --degrade: F-score against face size")
    add_ray_flags(p, RAY_UNIT_HELP, tasks=False)
    return p


def _run_on_ray(args) -> int:
    """``--ray``: unlabeled images on a Ray cluster (``msf.cli.ray_eval``); Ray is imported only here."""
    from msf.cli.ray_eval import eval_on_ray

    return eval_on_ray(args)


def _select(samples, split: str, meta: dict):
    if split == "all":
        return samples
    val = set(meta.get("val_names") or [])
    if not val:
        raise MsfError("--split needs a checkpoint that records its validation names (msf-train writes them)")
    chosen = [s for s in samples if (s.name in val) == (split == "val")]
    if not chosen:
        raise MsfError(f"none of the checkpoint's {split} images are in this data folder")
    return chosen


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.degrade == "list":
        return _list_degradations()
    if args.ray is not None:
        return _run_on_ray(args)
    check_ray_flags(args)
    from tqdm import tqdm

    from msf.checkpoint import checkpoint_metadata, recommended_size
    from msf.data import list_samples, read_image, read_pair
    from msf.evaluate import TTA_MODES, check_tta, evaluate_pairs, predict_labels
    from msf.frameops.overlay import overlay
    from msf.model import load_model
    from msf.paths import data_root
    from msf.train import resolve_device
    from msf.visualize import save_label_png, save_rgb

    root = args.data or data_root()
    if root is None:
        raise MsfError("no data: pass --data DIR or set MSF_DATA")
    device = resolve_device(args.device)
    model = load_model(args.ckpt, map_location=device)
    args.size = args.size or [recommended_size(args.ckpt)]
    tta = TTA_MODES[args.tta]
    for size in args.size:
        check_tta(tta, size)
    meta = checkpoint_metadata(args.ckpt)
    samples = list_samples(root, require_masks=False)
    labeled = all(s.mask is not None or s.official_root is not None for s in samples)
    samples = _select(samples, args.split, meta)[: args.limit]
    check_memory(min(args.batch, len(samples)), max(max(tta.sizes(n)) for n in args.size))
    masks_dir = Path(args.save_masks) if args.save_masks else None
    over_dir = Path(args.save_overlays) if args.save_overlays else None
    _check_outputs(args, samples, masks_dir, over_dir)
    make_output_dirs(masks_dir, over_dir)

    if not labeled:
        if masks_dir is None and over_dir is None:
            raise MsfError(f"{root} has no masks: nothing to score (use --save-masks to predict)")
        for s in tqdm(samples, desc="predict", unit="img", disable=None):
            img = read_image(s.image)
            pred = predict_labels(model, [img], args.size[0], device, args.amp, tta=tta)[0]
            _save(s, img, pred, masks_dir, over_dir, save_label_png, save_rgb, overlay)
        print(f"wrote predictions for {len(samples)} images", file=sys.stderr)
        return 0

    pairs = [read_pair(s) for s in tqdm(samples, desc="load", unit="img", disable=None)]
    results = {}
    for i, size in enumerate(args.size):
        hook = None
        if i == 0 and (masks_dir or over_dir):
            def hook(idx, pred):
                _save(samples[idx], pairs[idx][0], pred, masks_dir, over_dir, save_label_png, save_rgb, overlay)
        t0 = time.perf_counter()
        with tqdm(total=len(pairs), desc=f"eval @{size}", unit="img", disable=None) as bar:
            res = evaluate_pairs(model, pairs, size, device, args.amp, args.batch, hook, bar.update, tta=tta)
        res["seconds"] = round(time.perf_counter() - t0, 2)
        results[size] = res
    _print_tables(results, args, root)
    robustness = _robustness(model, pairs, results, args, device, tta) if args.degrade else None
    if args.figure:
        _figure(model, samples, pairs, args, device, tta)
    if args.json:
        out = {"checkpoint": args.ckpt or "shipped", "data": str(root), "split": args.split,
               "amp": args.amp, "tta": args.tta, "results": {str(k): v for k, v in results.items()}}
        if robustness is not None:
            from msf.robustness import summarize_rows

            out["robustness"] = {k: {"rows": rows, "summary": summarize_rows(rows)} for k, rows in robustness.items()}
        write_json_atomic(args.json, out)
    return 0


def _list_degradations() -> int:
    from rich.table import Table

    from msf.degrade import degradation_suite

    t = Table(title="msf-eval --degrade: the fixed degradations (each enlarged back to the label size)")
    for col in ("name", "group", "what"):
        t.add_column(col)
    for d in degradation_suite():
        t.add_row(d.name, d.group, d.description)
    console().print(t)
    return 0


def _robustness(model, pairs, results, args, device, tta) -> dict[str, list[dict]]:
    """Rows of F-scores on the degraded faces per input size (the clean row is the plain result)."""
    from tqdm import tqdm

    from msf.degrade import select_degradations
    from msf.evaluate import evaluate_pairs
    from msf.robustness import plot_robustness, robustness_rows, robustness_table

    degs = select_degradations(args.degrade)
    out = {}
    with tqdm(total=len(degs) * len(results), desc="degraded", unit="cond", disable=None) as bar:
        for size in results:
            def score(p, size=size):
                return evaluate_pairs(model, p, size, device, args.amp, args.batch, tta=tta)
            out[f"@{size}"] = robustness_rows(score, pairs, degs, clean=results[size],
                                              progress=lambda name: bar.update(name != "clean"))
    console().print(robustness_table(out, f"msf-eval --degrade: CE7454 F-score on {len(pairs)} degraded faces"))
    if args.degrade_plot:
        plot_robustness(out, args.degrade_plot, f"{args.ckpt or 'shipped weights'} ({args.split}, {len(pairs)} faces)")
        print(f"wrote {args.degrade_plot}", file=sys.stderr)
    return out


def _check_outputs(args, samples, masks_dir: Path | None, over_dir: Path | None) -> None:
    """Refuse (exit 2, nothing written) outputs that are inputs: a mask or overlay named like an
    image or ground-truth mask in its own folder, a --json or --figure onto any input; fail
    before scoring when their folders are not writable."""
    from msf.cli.guard import Inputs, check_writable, refuse_overwrite
    from msf.paths import WEIGHTS_PATH

    inputs = Inputs().add(args.ckpt or WEIGHTS_PATH, *[p for s in samples for p in (s.image, s.mask)])
    named = []
    for flag, folder, ext in (("--save-masks", masks_dir, ".png"), ("--save-overlays", over_dir, ".jpg")):
        if folder is not None:
            named += [(f"{flag} {folder}", folder / f"{s.name}{ext}") for s in samples]
    named += [(f"{flag} {f}", Path(f)) for flag, f in (("--json", args.json), ("--figure", args.figure)) if f]
    refuse_overwrite(named, inputs)
    for f in (args.json, args.figure):
        if f:
            check_writable(Path(f).parent)


def _figure(model, samples, pairs, args, device, tta) -> None:
    from msf.evaluate import predict_labels
    from msf.figures import prediction_grid

    n = min(args.figure_count, len(pairs))
    preds = predict_labels(model, [im for im, _ in pairs[:n]], args.size[0], device, args.amp, tta=tta)
    rows = [(s.name, im, gt, p) for s, (im, gt), p in zip(samples[:n], pairs[:n], preds)]
    prediction_grid(rows, args.figure, title=f"{args.ckpt or 'shipped weights'} @ {args.size[0]}² ({args.split})")
    print(f"wrote {args.figure}", file=sys.stderr)


def make_output_dirs(*dirs: Path | None) -> None:
    """Create the output folders that are asked for (one line naming a folder that cannot be)."""
    for d in dirs:
        if d is not None:
            try:
                d.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise MsfError(f"cannot create output folder {d}: {exc.strerror}") from None


def _save(sample, img, pred, masks_dir, over_dir, save_label_png, save_rgb, overlay) -> None:
    if masks_dir is not None:
        save_label_png(masks_dir / f"{sample.name}.png", pred)
    if over_dir is not None:
        save_rgb(over_dir / f"{sample.name}.jpg", overlay(img, pred, order="rgb"))


def _print_tables(results: dict, args, root) -> None:
    from rich.table import Table

    from msf.labels import LABELS

    con = console()
    sizes = list(results)
    if args.per_class:
        t = Table(title="per-class F1 / IoU")
        t.add_column("id", justify="right")
        t.add_column("class")
        for s in sizes:
            t.add_column(f"F1 @{s}", justify="right")
            t.add_column(f"IoU @{s}", justify="right")
        t.add_column("pixels", justify="right")
        for cid, name in enumerate(LABELS):
            row = [str(cid), name]
            for s in sizes:
                pc = results[s]["per_class"][name]
                row += ([f"{pc['f1']:.3f}", f"{pc['iou']:.3f}"] if pc["support"] else ["-", "-"])
            row.append(f"{results[sizes[0]]['per_class'][name]['support']:,}")
            t.add_row(*row)
        con.print(t)
    s = Table(title=f"msf-eval: {results[sizes[0]]['images']} images from {root} (split {args.split})")
    for col in ("input size", "CE7454 F-score", "95% CI", "F1 (lit., fg mean)", "mIoU", "pixel acc.", "seconds"):
        s.add_column(col, justify="right")
    for size, r in results.items():
        lo, hi = r["f_score_ci95"]
        s.add_row(f"{size}²", f"{r['f_score']:.4f}", f"{lo:.3f}–{hi:.3f}", f"{r['f1_literature']:.4f}",
                  f"{r['miou']:.4f}", f"{r['pixel_accuracy']:.4f}", f"{r['seconds']:.1f}")
    con.print(s)


def entry() -> None:
    sys.exit(run_cli("msf-eval", main))


if __name__ == "__main__":
    entry()
