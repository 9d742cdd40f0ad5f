"""``msf-train``: train MicroSegFormer on labeled faces (single process or ``torchrun``)."""

from __future__ import annotations

import json
import os
import sys

import yaml

from msf.cli.common import console, float_range, int_range, make_parser, model_size, positive_int
from msf.config import PRESETS, config_from_dict, load_config_file, merge, parse_phases
from msf.errors import MsfError, run_cli
from msf.sizes import SIZE_RULE

EPILOG = """\
examples:
  msf-train --preset cpu                      # ~2 h on 2 CPU cores: 256² -> 384² -> 512²
  msf-train --data /data/CelebAMask-HQ        # the seed recipe (GPU): 150 epochs at 512²
  msf-train --config my.yaml --lr 1e-3 --set model.use_lmsa=true
  msf-train --resume runs/msf/last.pt         # continue after an interruption
  msf-train --init runs/msf/best.pt --phases 20x512/384@12,10x512@8 --lr 2.5e-4
                                              # fine-tune at 512² scale on 384² random crops, then whole
  msf-train --init runs/msf/best.pt --phases 8x512+256+384@8 --lr 8e-5
                                              # multi-scale fine-tune: each batch at 512², 256² or 384²
  torchrun --nproc_per_node 4 -m msf.cli.train --preset gpu   # DDP, one process per GPU

Checkpoints: OUT/best.pt (best validation F-score of the final phase) and OUT/last.pt.
Ctrl-C saves OUT/last.pt and stops; --resume continues from it.
"""


def build_parser():
    p = make_parser("msf-train", "Train MicroSegFormer on labeled face data (AdamW, warm-up + cosine, "
                                 "cross-entropy + Dice loss).", EPILOG)
    p.add_argument("--preset", choices=sorted(PRESETS),
                   help="starting configuration: gpu = the seed recipe (the default), cpu = ~2 h progressive "
                        "run, tiny = seconds-long smoke run; with --resume the checkpoint's own config")
    p.add_argument("--config", metavar="FILE", help="YAML/JSON config applied on top of the preset")
    p.add_argument("--data", metavar="DIR", help="data root (CE7454 or official CelebAMask-HQ layout; "
                                                 "default: $MSF_DATA or ../shared/data/faces)")
    p.add_argument("--out", "-o", metavar="DIR", help="output folder for checkpoints (default runs/msf)")
    p.add_argument("--phases", metavar="SPEC", help="schedule EPOCHSxSIZE@BATCH,... e.g. 40x256@16,12x512@8; "
                   "SIZE/CROP trains on random CROP² windows of SIZE² images, SIZE+S2+S3 resizes each "
                   "batch to one of the sizes (multi-scale; repeat a size to draw it more often); "
                   "validation runs at SIZE")
    p.add_argument("--epochs", type=int_range(1, 100_000), help="single phase: number of epochs")
    p.add_argument("--size", type=model_size, help=f"single phase: square input size, {SIZE_RULE}")
    p.add_argument("--batch", type=int_range(1, 100_000), help="single phase: global batch size")
    p.add_argument("--lr", type=float_range(0.0, 10.0, lo_open=True), help="peak learning rate")
    p.add_argument("--weight-decay", type=float_range(0.0, 10.0))
    p.add_argument("--warmup", type=float_range(0.0, 100_000.0), dest="warmup_epochs", help="warm-up epochs")
    p.add_argument("--patience", type=positive_int, help="early stop after N epochs without a better val F-score")
    p.add_argument("--amp", choices=["auto", "bf16", "fp16", "off"], help="mixed precision")
    p.add_argument("--seed", type=int_range(0, 2**31 - 1), help="seed for the split, initialisation and augmentation")
    p.add_argument("--val-count", type=positive_int, help="images held out for validation (CE7454 layout)")
    p.add_argument("--device", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--workers", type=int_range(0, 256), help="DataLoader worker processes")
    p.add_argument("--lmsa", action="store_true", help="train the LMSA variant")
    p.add_argument("--max-minutes", type=float_range(0.0, 10**7, lo_open=True),
                   help="stop (saving last.pt) after this wall time")
    p.add_argument("--max-steps", type=positive_int, help="stop after this many optimiser steps")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config key, dotted, YAML value (e.g. aug.rotate=10)")
    p.add_argument("--resume", metavar="CKPT", help="resume from an msf-train checkpoint (last.pt)")
    p.add_argument("--init", metavar="CKPT", help="fine-tune: start from these weights with a fresh optimiser "
                                                  "and schedule, keeping the validation split they record")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    return p


def _dotted(key: str, value) -> dict:
    out: dict = value
    for part in reversed(key.split(".")):
        out = {part: out}
    return out


def resolve_config(args) -> dict:
    """Preset (or the resumed checkpoint's config), then config file, then flags, then ``--set``."""
    if args.resume and args.preset is None:
        from msf.checkpoint import read_checkpoint

        cfg = dict(read_checkpoint(args.resume).get("config") or {})
        if not cfg:
            raise MsfError(f"{args.resume} records no training config: pass --preset or --config")
    else:
        cfg = dict(PRESETS[args.preset or "gpu"])
    if args.config:
        cfg = merge(cfg, load_config_file(args.config))
    flat = {k: getattr(args, k) for k in ("data", "out", "lr", "weight_decay", "warmup_epochs", "patience",
                                           "amp", "seed", "val_count", "device", "workers", "max_minutes",
                                           "max_steps")}
    cfg = merge(cfg, {k: v for k, v in flat.items() if v is not None})
    if args.phases:
        cfg["phases"] = parse_phases(args.phases)
    if args.epochs or args.size or args.batch:
        base = config_from_dict(cfg).phases[-1]
        cfg["phases"] = [{"epochs": args.epochs or base.epochs, "size": args.size or base.size,
                          "batch": args.batch or base.batch}]
    if args.lmsa:
        cfg = merge(cfg, {"model": {"use_lmsa": True}})
    for item in args.set:
        if "=" not in item:
            raise MsfError(f"--set expects KEY=VALUE, got {item!r}")
        key, raw = item.split("=", 1)
        cfg = merge(cfg, _dotted(key.strip(), yaml.safe_load(raw)))
    return cfg


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for flag, path in (("--init", args.init), ("--resume", args.resume)):  # before the data is read
        if path and not os.path.isfile(path):
            raise MsfError(f"checkpoint not found: {path} ({flag})")
    cfg = config_from_dict(resolve_config(args))
    if args.print_config:
        print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), end="")
        return 0
    from msf.train import train

    summary = train(cfg, resume=args.resume, init=args.init)
    if int(os.environ.get("RANK", "0")) == 0:
        _print_summary(summary)
        with open(os.path.join(cfg.out, "summary.json"), "w") as fh:
            json.dump(summary, fh, indent=2)
    return 0


def _print_summary(summary: dict) -> None:
    from rich.table import Table

    table = Table(title="msf-train summary", show_header=False)
    for key in ("epochs", "steps", "minutes", "best_f_score", "stopped", "best", "last"):
        val = summary[key]
        table.add_row(key, f"{val:.4f}" if isinstance(val, float) and key == "best_f_score" else str(val))
    console(stderr=True).print(table)


def entry() -> None:
    sys.exit(run_cli("msf-train", main))


if __name__ == "__main__":
    entry()
