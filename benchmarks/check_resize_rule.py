"""Which resize rule makes the model's input? F-score and cost of each rule in the contract.

``msf.contract.RESIZE_RULES``: "block+bilinear" (a k×k block average by a whole factor, then one
bilinear step under 2×) and "area" (one INTER_AREA resize), both through ``msf.frameops.fit``.

1. F: the shipped weights at their recorded default size (``msf.checkpoint.recommended_size``,
   384) on their 100 validation faces, scored like ``msf-eval --split val``, with each rule.
2. Cost: a 720p frame's letterbox resize to the default size (1280×720 -> 384×216), BGR and I420
   planes, OpenCV on one thread (what a frame costs when the pipeline's threads share two cores),
   median of 50 calls after 5 warm-up calls.

    python benchmarks/check_resize_rule.py [--limit N] [--out PATH]

Writes benchmarks/results/resize_rule_cpu.{json,md}.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_faces import validation_faces  # noqa: E402

from msf.contract import RESIZE_RULES  # noqa: E402


def f_scores(size: int, limit: int | None) -> list[dict]:
    from msf.evaluate import evaluate_pairs
    from msf.frameops.fit import fit
    from msf.model import load_model
    from msf.paths import data_root

    faces = validation_faces(data_root(), limit)
    pairs = [(cv2.cvtColor(img, cv2.COLOR_BGR2RGB), mask) for _, img, mask in faces]
    model = load_model(None)
    rows = []
    for rule in RESIZE_RULES:
        f = evaluate_pairs(model, pairs, size, batch=10, resize=lambda im, s, r=rule: fit(im, s, s, r))["f_score"]
        rows.append({"rule": rule, "size": size, "faces": len(pairs), "f_score": f})
        print(f"{rule}: F {f:.4f} at {size}² on {len(pairs)} faces", flush=True)
    return rows


def costs(size: int) -> list[dict]:
    from msf.frameops.crop import crop_i420, crop_spec
    from msf.frameops.fit import fit
    from msf.frameops.geometry import letterbox
    from msf.runtime.timing import time_calls

    rng = np.random.default_rng(0)
    frame = cv2.resize(rng.integers(0, 256, (45, 80, 3), dtype=np.uint8), (1280, 720), interpolation=cv2.INTER_CUBIC)
    yuv = cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420)
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    rows = []
    try:
        for rule in RESIZE_RULES:
            spec = crop_spec(letterbox(720, 1280), 720, 1280, size, rule)
            w, h = spec.fit.dst_w, spec.fit.dst_h
            bgr = time_calls(lambda s=spec: fit(frame, s.fit.dst_w, s.fit.dst_h, s.rule), iters=50, warmup=5)
            i420 = time_calls(lambda s=spec: crop_i420(s, yuv, 720), iters=50, warmup=5)
            rows.append({"rule": rule, "frame": "1280×720", "to": f"{w}×{h}", "calls": 50,
                         "steps": [list(s) for s in spec.fit.steps],
                         "bgr_ms": float(np.median(bgr)), "i420_ms": float(np.median(i420))})
            print(f"{rule}: 1280×720 -> {w}×{h}: BGR {np.median(bgr):.2f} ms, I420 letterbox {np.median(i420):.2f} ms",
                  flush=True)
    finally:
        cv2.setNumThreads(threads)
    return rows


def markdown(res: dict) -> str:
    from msf.runtime.timing import machine_line, markdown_table

    lines = ["### Resize rule: block+bilinear vs area", "",
             machine_line(res["environment"], f"OpenCV {cv2.__version__}", date=res["date"]), "",
             f"F (CE7454) of the shipped weights at {res['f'][0]['size']}² on {res['f'][0]['faces']} "
             "validation faces, scored like msf-eval --split val:", ""]
    lines += markdown_table(["rule", "F"], [[r["rule"], f"{r['f_score']:.4f}"] for r in res["f"]])
    lines += ["", "A 720p frame's letterbox resize, one OpenCV thread, median of 50 calls:", ""]
    lines += markdown_table(["rule", "frame", "resized to", "steps", "BGR ms", "I420 letterbox ms"],
                            [[r["rule"], r["frame"], r["to"], " + ".join(s[0] for s in r["steps"]),
                              f"{r['bgr_ms']:.2f}", f"{r['i420_ms']:.2f}"] for r in res["cost"]])
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, help="score only the first N validation faces")
    ap.add_argument("--out", default=str(HERE / "results" / "resize_rule_cpu"), help="results path without suffix")
    args = ap.parse_args()
    from msf.checkpoint import recommended_size
    from msf.runtime.timing import environment, save_results, utc_now

    size = recommended_size()
    res = {"date": utc_now(), "environment": environment(), "cost": costs(size), "f": f_scores(size, args.limit)}
    save_results(args.out, res, markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
