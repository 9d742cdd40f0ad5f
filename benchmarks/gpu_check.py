"""GPU check: every GPU path msf has, timed and checked against CPU fp32 on real faces.

PyTorch CUDA backend (fp32, fp16, fp16 + CUDA graphs), ONNX Runtime's CUDA and TensorRT
providers (onnxruntime-gpu), and the TensorRT engine backend (FP16 engine built here). Each part
whose library or device is missing is reported as skipped with the reason. Meant to finish in
under 4 minutes on one GPU:

    python benchmarks/gpu_check.py [--out benchmarks/results/gpu_check.json]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
import time
from pathlib import Path

import cv2

from msf.checkpoint import checkpoint_metadata
from msf.data import list_samples, read_pair
from msf.errors import MsfError
from msf.paths import data_root
from msf.runtime.backends import create_backend
from msf.runtime.benchmark import BenchSettings, accuracy, measure, reference_labels
from msf.runtime.timing import environment

HERE = Path(__file__).resolve().parent


def parts(tmp: Path):
    """(name, factory) for every GPU path; a factory raises MsfError/ImportError when unavailable."""
    def engine():
        from msf.export.onnx_export import ExportSpec
        from msf.export.pipeline import ExportOptions, run_export
        from msf.export.rewrite import GraphEnds

        out = tmp / "msf_fp16.onnx"
        run_export(ExportOptions(out=out, spec=ExportSpec(target="tensorrt", ends=GraphEnds("uint8", "bgr", "labels")),
                                 precision="fp16", tensorrt=True, profile_batch="1,4,8", verify_images=4),
                   log=lambda m: print(m, file=sys.stderr))
        return create_backend(out.with_suffix(".engine"), "tensorrt")

    return [
        ("pytorch cuda fp32", lambda: create_backend(None, "pytorch", device="cuda")),
        ("pytorch cuda fp16", lambda: create_backend(None, "pytorch", device="cuda", fp16=True)),
        ("pytorch cuda fp16 + CUDA graphs", lambda: create_backend(None, "pytorch", device="cuda", fp16=True,
                                                                   cuda_graphs=True)),
        ("onnxruntime CUDA EP", lambda: create_backend(None, "onnxruntime", device="cuda")),
        ("onnxruntime TensorRT EP", lambda: create_backend(None, "onnxruntime", device="tensorrt")),
        ("tensorrt engine fp16", engine),
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--images", type=int, default=16, help="real faces for the parity check")
    ap.add_argument("--out", default=str(HERE / "results" / "gpu_check.json"))
    args = ap.parse_args()
    t_start = time.perf_counter()
    root = data_root()
    pairs, frames = [], []
    if root is not None and root.exists():
        val = set(checkpoint_metadata().get("val_names") or [])
        labeled = [s for s in list_samples(root) if s.name in val] or list_samples(root)
        pairs = [(cv2.cvtColor(i, cv2.COLOR_RGB2BGR), m) for i, m in (read_pair(s) for s in labeled[: args.images])]
        frames = [img for img, _ in pairs[:8]]
    if not pairs:
        print("gpu_check: no face data found (MSF_DATA): timing on generated frames, parity skipped", file=sys.stderr)
        import numpy as np

        frames = [np.random.default_rng(i).integers(0, 256, (512, 512, 3), dtype=np.uint8) for i in range(8)]
    ref_labels = reference_labels(create_backend(None, "pytorch-eager"), pairs) if pairs else []
    results, skipped = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for name, factory in parts(Path(tmp)):
            try:
                backend = factory()
            except (MsfError, ImportError) as exc:
                skipped.append({"part": name, "reason": str(exc)})
                print(f"skipped {name}: {exc}", file=sys.stderr)
                continue
            acc = accuracy(backend, ref_labels, pairs) if pairs else {}
            for b in (int(v) for v in args.batches.split(",")):
                rec = measure(backend, frames, BenchSettings(b, 10, args.iters))
                rec.pop("_samples")
                results.append({"part": name, "backend": backend.name, "precision": backend.precision,
                                "device": backend.device, "batch": b, "size": backend.size, **rec, **acc})
                print(f"{name} b{b}: p50 {rec['p50_ms']:.2f} ms, {rec['throughput_ips']:.0f} img/s, "
                      f"agreement {acc.get('agreement', float('nan')):.4%}", file=sys.stderr)
            backend.close()
    out = {"benchmark": "GPU check", "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
           "environment": environment(), "records": results, "skipped": skipped,
           "seconds": round(time.perf_counter() - t_start, 1)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(f"wrote {args.out} ({len(results)} measurements, {len(skipped)} parts skipped, {out['seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
