"""Is msf-video's cheaper downscale as good as INTER_AREA? F-score and cost, side by side.

The shipped weights were trained on INTER_AREA resizes (the "area" rule). msf-video shrinks frames
by the "block+bilinear" rule instead (``msf.frameops.fit``): a k×k block average by a whole factor
(OpenCV's fast INTER_AREA path) followed by a bilinear step of less than 2× (``shrink_factor``);
since the rule became part of the graph contract, training and msf-eval use it too
(benchmarks/check_resize_rule.py measured the choice at the default 384²).

1. F: the shipped checkpoint's 100 validation faces (512², never trained on) scored like
   ``msf-eval --split val --size S`` at input sizes S where the faces must be shrunk (ratios
   1.14-3.2), once with INTER_AREA and once with "block+bilinear" (``resize_to`` in the tables).
   Accepted when F drops by at most 0.002 at every size.
2. Cost: the letterbox's resize of 640×480, 1280×720 and 1920×1080 frames (to their part of the
   512² input), one-step INTER_AREA (the code before) against ``resize_to``; OpenCV on one thread
   (the CPU a frame costs, what matters when the pipeline's threads share two cores); median of
   50 calls after 5 warm-up calls, both in the same run.

    python benchmarks/check_letterbox.py [--limit N]

Writes benchmarks/results/letterbox_cpu.{json,md}.

``--i420``: the same F check for the I420 frame path (full mode, video file -> H.264), which
shrinks the decoder's Y, U and V planes and converts only the shrunk image to BGR
(``msf.frameops.crop.i420_letterbox``), against converting the whole frame to BGR first and
shrinking that (``resize_to``); each face goes through OpenCV's BGR -> I420 first, as a video
frame would be. Writes benchmarks/results/letterbox_i420_cpu.{json,md}.
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

SIZES = (448, 384, 320, 256, 224, 192, 160)
FRAMES = ((640, 480), (1280, 720), (1920, 1080))


def area(img: np.ndarray, size: int) -> np.ndarray:
    return cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)


def runtime_resize(img: np.ndarray, size: int) -> np.ndarray:
    from msf.frameops.fit import fit

    return fit(img, size, size, "block+bilinear")


def _as_i420(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), cv2.COLOR_BGR2YUV_I420)


def bgr_then_shrink(rgb: np.ndarray, size: int) -> np.ndarray:
    """The BGR path: the decoded frame converted whole, then shrunk."""
    return runtime_resize(cv2.cvtColor(_as_i420(rgb), cv2.COLOR_YUV2RGB_I420), size)


def i420_then_convert(rgb: np.ndarray, size: int) -> np.ndarray:
    """The I420 path: planes shrunk, then converted (a square frame: its letterbox is itself)."""
    from msf.frameops.crop import i420_letterbox

    h, w = rgb.shape[:2]
    return cv2.cvtColor(i420_letterbox(_as_i420(rgb), h, w, size), cv2.COLOR_BGR2RGB)


def f_scores(limit: int | None, variants: tuple = (("f_inter_area", area), ("f_resize_to", runtime_resize))
             ) -> list[dict]:
    """F at each size with both resizes (same model, same faces)."""

    from msf.evaluate import evaluate_pairs
    from msf.model import load_model
    from msf.paths import data_root

    faces = validation_faces(data_root(), limit)
    pairs = [(cv2.cvtColor(img, cv2.COLOR_BGR2RGB), mask) for _, img, mask in faces]
    model = load_model(None)
    rows = []
    (ref_key, ref_fn), (new_key, new_fn) = variants
    for size in SIZES:
        f_ref = evaluate_pairs(model, pairs, size, batch=10, resize=ref_fn)["f_score"]
        f_new = evaluate_pairs(model, pairs, size, batch=10, resize=new_fn)["f_score"]
        rows.append({"size": size, "ratio": 512 / size, "faces": len(pairs), ref_key: f_ref, new_key: f_new,
                     "diff": f_new - f_ref})
        print(f"{size}²: F {ref_key} {f_ref:.4f}  {new_key} {f_new:.4f}  diff {f_new - f_ref:+.4f}", flush=True)
    return rows


def i420_markdown(res: dict) -> str:
    from msf.runtime.timing import machine_line, markdown_table

    lines = ["### Letterbox from I420 planes vs from the converted BGR frame", "",
             machine_line(res["environment"], f"OpenCV {cv2.__version__}", date=res["date"]), "",
             f"F (CE7454) of the shipped weights on {res['f'][0]['faces']} validation faces (each through "
             "BGR -> I420 first), scored at 512² like msf-eval; max |diff| "
             f"{max(abs(r['diff']) for r in res['f']):.4f} (accepted: ≤ 0.002 drop at every size).", ""]
    lines += markdown_table(["input", "shrink ratio", "F convert, then shrink", "F shrink planes, then convert",
                             "diff"],
                            [[f"{r['size']}²", f"{r['ratio']:.2f}", f"{r['f_bgr']:.4f}", f"{r['f_i420']:.4f}",
                              f"{r['diff']:+.4f}"] for r in res["f"]])
    return "\n".join(lines) + "\n"


def costs() -> list[dict]:
    """The letterbox's resize (the whole frame to its 512-wide canvas) per frame size, one-step
    INTER_AREA vs ``resize_to`` (one OpenCV thread)."""
    from msf.data import list_samples
    from msf.frameops.fit import fit
    from msf.frameops.geometry import crop_windows
    from msf.frameops.geometry import letterbox as letterbox_placement
    from msf.paths import data_root
    from msf.runtime.timing import time_calls

    face = cv2.imread(str(list_samples(data_root() / "unlabeled", require_masks=False)[0].image))
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    rows = []
    try:
        for w, h in FRAMES:
            frame = cv2.resize(np.tile(face, (3, 4, 1)), (w, h), interpolation=cv2.INTER_AREA)
            _, (cx0, cy0, cx1, cy1) = crop_windows(letterbox_placement(h, w), h, w, 512)
            cw, ch = cx1 - cx0, cy1 - cy0
            old = time_calls(lambda f=frame, s=(cw, ch): cv2.resize(f, s, interpolation=cv2.INTER_AREA),
                             iters=50, warmup=5)
            new = time_calls(lambda f=frame, s=(cw, ch): fit(f, *s, "block+bilinear"), iters=50, warmup=5)
            rows.append({"frame": f"{w}×{h}", "canvas": f"{cw}×{ch}", "inter_area_ms": float(np.median(old)),
                         "resize_to_ms": float(np.median(new)), "speedup": float(np.median(old) / np.median(new))})
            print(f"{w}×{h} -> {cw}×{ch}: INTER_AREA {np.median(old):.2f} ms  resize_to {np.median(new):.2f} ms",
                  flush=True)
    finally:
        cv2.setNumThreads(threads)
    return rows


def markdown(res: dict) -> str:
    from msf.runtime.timing import machine_line, markdown_table

    env = res["environment"]
    lines = ["### Letterbox downscale: INTER_AREA vs resize_to", "",
             machine_line(env, f"OpenCV {cv2.__version__}", date=res["date"]), "",
             f"F (CE7454) of the shipped weights on {res['f'][0]['faces']} validation faces, scored at 512² "
             "like msf-eval; max |diff| "
             f"{max(abs(r['diff']) for r in res['f']):.4f} (accepted: ≤ 0.002 drop at every size).", ""]
    lines += markdown_table(["input", "shrink ratio", "F INTER_AREA", "F resize_to", "diff"],
                            [[f"{r['size']}²", f"{r['ratio']:.2f}", f"{r['f_inter_area']:.4f}",
                              f"{r['f_resize_to']:.4f}", f"{r['diff']:+.4f}"] for r in res["f"]])
    lines += ["", "The letterbox's resize (frame -> its part of the 512² input), one OpenCV thread, "
              "median of 50 calls:", ""]
    lines += markdown_table(["frame", "resized to", "INTER_AREA ms", "resize_to ms", "speed-up"],
                            [[r["frame"], r["canvas"], f"{r['inter_area_ms']:.2f}", f"{r['resize_to_ms']:.2f}",
                              f"{r['speedup']:.1f}×"] for r in res["cost"]])
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, help="score only the first N validation faces")
    ap.add_argument("--i420", action="store_true", help="check the I420 frame path's letterbox instead")
    ap.add_argument("--out", help="results path without suffix (default: results/letterbox_cpu or "
                                  "results/letterbox_i420_cpu)")
    args = ap.parse_args()
    from msf.runtime.timing import environment, save_results, utc_now

    if args.i420:
        res = {"date": utc_now(), "environment": environment(),
               "f": f_scores(args.limit, (("f_bgr", bgr_then_shrink), ("f_i420", i420_then_convert)))}
        save_results(args.out or str(HERE / "results" / "letterbox_i420_cpu"), res, i420_markdown(res))
    else:
        res = {"date": utc_now(), "environment": environment(), "cost": costs(), "f": f_scores(args.limit)}
        save_results(args.out or str(HERE / "results" / "letterbox_cpu"), res, markdown(res))
    return 0 if all(r["diff"] >= -0.002 for r in res["f"]) else 1


if __name__ == "__main__":
    sys.exit(main())
