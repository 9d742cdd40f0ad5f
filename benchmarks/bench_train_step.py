"""Training step time (forward + loss + backward + AdamW step), ms per image.

Input sizes 256² and 512², fp32 and bf16 autocast, the cheap forward (msf's default) against
the literal published graph — same function, same parameters. Median of N steps after warm-up.

    python benchmarks/bench_train_step.py [--steps 8] [--warmup 2]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from msf.evaluate import autocast
from msf.losses import seg_loss
from msf.model import MicroSegFormer
from msf.runtime.timing import environment, machine_line, markdown_table, save_results, utc_now

HERE = Path(__file__).resolve().parent
CONFIGS = [(256, 16), (512, 8)]


def step_ms_per_image(size: int, batch: int, amp: str, graph: str, steps: int, warmup: int) -> float:
    torch.manual_seed(0)
    model = MicroSegFormer()
    fwd = model.forward if graph == "cheap" else model.forward_reference
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.rand(batch, 3, size, size)
    y = torch.randint(0, 19, (batch, size, size))
    times = []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        with autocast(torch.device("cpu"), amp):
            logits = fwd(x)
        loss = seg_loss(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return float(np.median(times)) * 1000 / batch


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--out", default=str(HERE / "results" / "train_step_cpu"))
    args = ap.parse_args()
    rows = []
    for size, batch in CONFIGS:
        for amp in ("off", "bf16"):
            ms = {g: step_ms_per_image(size, batch, amp, g, args.steps, args.warmup) for g in ("cheap", "reference")}
            rows.append({"size": size, "batch": batch, "precision": "fp32" if amp == "off" else "bf16",
                         "cheap_ms_per_image": ms["cheap"], "reference_ms_per_image": ms["reference"],
                         "speedup": ms["reference"] / ms["cheap"]})
            print(rows[-1], file=sys.stderr)
    result = {"benchmark": "training step (fwd+loss+bwd+AdamW), CPU", "date": utc_now(),
              "steps": args.steps, "warmup": args.warmup, "environment": environment(), "rows": rows}
    env = result["environment"]
    lines = [f"### {result['benchmark']}", "",
             machine_line(env, f"torch {env['versions']['torch']}", f"{env.get('torch_threads')} threads",
                          f"median of {args.steps} steps after {args.warmup} warm-up", date=result["date"]), ""]
    lines += markdown_table(
        ["input", "batch", "precision", "cheap forward (msf) ms/img", "published graph ms/img", "speed-up"],
        [[f"{r['size']}²", str(r["batch"]), r["precision"], f"{r['cheap_ms_per_image']:.0f}",
          f"{r['reference_ms_per_image']:.0f}", f"{r['speedup']:.2f}×"] for r in rows])
    save_results(args.out, result, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
