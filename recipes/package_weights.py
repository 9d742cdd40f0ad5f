"""Package a training checkpoint as the shipped default weights: model weights and metadata only
(no optimiser state), with the training history of every stage that led to it.

    python recipes/package_weights.py FINAL.pt [EARLIER_STAGE.pt ...] [-o msf/weights/microsegformer.pt]
                                      [--input-size N]

Stages are given newest first (the final checkpoint, then the one it was fine-tuned from, ...);
a stage that is already a packaged file contributes its recorded stages.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from msf.checkpoint import atomic_save, read_checkpoint
from msf.paths import WEIGHTS_PATH

KEEP = ("model_state_dict", "config", "val_names", "labels", "palette", "input", "epoch", "best_f_score",
        "data_sha256", "msf_version", "torch_version", "input_size")


def stage_record(ckpt: dict, path: str) -> list[dict]:
    """The stage(s) a checkpoint stands for: its config, history and what it started from."""
    if "stages" in ckpt:  # an already packaged file
        return list(ckpt["stages"])
    state = ckpt.get("train_state") or {}
    return [{"checkpoint": Path(path).name, "config": ckpt.get("config"), "epochs": ckpt.get("epoch"),
             "steps": state.get("step"), "init_from": state.get("init_from"),
             "history": state.get("history") or ckpt.get("history") or []}]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stages", nargs="+", metavar="CKPT", help="final checkpoint first, then earlier stages")
    ap.add_argument("-o", "--out", default=str(WEIGHTS_PATH))
    ap.add_argument("--input-size", type=int, metavar="N",
                    help="the input size msf-video, msf-export and Segmenter default to for these weights "
                         "(default: what the final checkpoint records)")
    args = ap.parse_args()
    final = read_checkpoint(args.stages[0])
    stages: list[dict] = []
    for path in reversed(args.stages):
        stages += stage_record(final if path == args.stages[0] else read_checkpoint(path), path)
    for earlier, later in zip(args.stages[1:], args.stages):
        if read_checkpoint(earlier).get("val_names") != read_checkpoint(later).get("val_names"):
            sys.exit(f"{later} and {earlier} hold out different validation faces")
    out = {k: final[k] for k in KEEP if k in final}
    out["model_state_dict"] = {k: v.float().contiguous() for k, v in final["model_state_dict"].items()}
    if args.input_size:
        out["input_size"] = args.input_size
    out["history"] = stages[-1]["history"]
    out["stages"] = stages
    atomic_save(out, args.out)
    print(f"{args.out}: epoch {out['epoch']}, best F {out['best_f_score']:.4f}, {len(stages)} stage(s), "
          f"input size {out.get('input_size', 'not recorded')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
