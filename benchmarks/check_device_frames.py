"""The torch frame path (``msf.runtime.gpu_frames``, what CUDA backends use) against the OpenCV
path, scored on the labeled validation faces placed into 1280×720 footage.

Same footage as ``bench_faces.py`` (each validation face of the shipped checkpoint placed once:
crop side 200-520 px, rotation ±20°, random position and background). For every frame both paths
get the same placements (full mode: the letterbox; face mode: the tracked, aligned faces) and the
same backend (ONNX Runtime CPU, 512²); only cropping, input normalisation and paste-back differ:
OpenCV/numpy on one side, torch ops (run here on the CPU) on the other. Reports pixel agreement of
the frame-sized label maps and the CE7454 F-score inside the placed crop for each path.

    python benchmarks/check_device_frames.py [--faces 100]

Writes benchmarks/results/device_frames_cpu.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_faces import make_footage, score_frame, validation_faces  # noqa: E402


def compare(seg, footage: list[dict]) -> dict:
    """Agreement and F of the OpenCV path and the torch path over ``footage`` (one Segmenter)."""
    import torch

    from msf.runtime.gpu_frames import TorchFrames

    gf = TorchFrames("cpu", seg.size)
    spec = seg.backend.input_spec
    agree = total = 0
    f_cv, f_torch = [], []
    for shot in footage:
        frame = shot["frame"]
        places = seg.placements(frame)
        if not places:
            continue
        cv_labels = seg.assemble(frame.shape, seg.infer(seg.crops(frame, places)), places)
        x = gf.upload(frame)
        crops = gf.crops(x, places)
        out = torch.from_numpy(np.asarray(seg.backend.infer(gf.to_input(crops, spec).numpy())))
        t_labels = gf.assemble(frame.shape, gf.labels(out, seg.backend.output_kind), places).numpy()
        agree += int((cv_labels == t_labels).sum())
        total += cv_labels.size
        f_cv.append(score_frame(cv_labels, shot)["f"])
        f_torch.append(score_frame(t_labels, shot)["f"])
    return {"frames": len(f_cv), "agreement": agree / max(1, total), "f_opencv": float(np.mean(f_cv)),
            "f_torch": float(np.mean(f_torch)), "f_diff": float(np.mean(f_torch) - np.mean(f_cv))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--faces", type=int, default=100, help="validation faces to place (default 100)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(HERE / "results" / "device_frames_cpu"))
    args = ap.parse_args()
    import torch

    from msf.atomic import atomic_write
    from msf.contract import write_json_atomic
    from msf.paths import data_root
    from msf.runtime.segmenter import Segmenter
    from msf.runtime.timing import environment, utc_now

    root = data_root()
    if root is None:
        sys.exit("check_device_frames: needs the face data (MSF_DATA or ../shared/data/faces)")
    footage = make_footage(validation_faces(root, args.faces), 1, args.seed)
    t0 = time.perf_counter()
    res = {"benchmark": "torch frame path vs OpenCV path", "date": utc_now(), "environment": environment(),
           "torch": torch.__version__, "faces": len(footage), "seed": args.seed}
    for mode in ("full", "face"):
        res[mode] = compare(Segmenter(mode=mode), footage)
        print(mode, json.dumps(res[mode]), file=sys.stderr)
    res["seconds"] = round(time.perf_counter() - t0, 1)
    lines = ["### torch frame path vs OpenCV path (CPU torch), validation faces in 1280×720 footage", "",
             f"{res['date']} · {res['faces']} faces, one frame each, seed {args.seed} · torch {torch.__version__} · "
             "ONNX Runtime CPU, 512² input", "",
             "| mode | frames | label agreement | F OpenCV path | F torch path | difference |",
             "|---|---|---|---|---|---|"]
    for mode in ("full", "face"):
        r = res[mode]
        lines.append(f"| {mode} | {r['frames']} | {r['agreement']:.4%} | {r['f_opencv']:.4f} | {r['f_torch']:.4f} | "
                     f"{r['f_diff']:+.4f} |")
    md = "\n".join(lines) + "\n"
    write_json_atomic(f"{args.out}.json", res)
    atomic_write(Path(f"{args.out}.md"), lambda tmp: Path(tmp).write_text(md))
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
