"""GPU check: every GPU path msf has, timed and checked against CPU fp32 on real faces.

PyTorch CUDA backend (fp32, fp16, fp16 + CUDA graphs), ONNX Runtime's CUDA and TensorRT
providers (onnxruntime-gpu), the TensorRT engine backend (FP16 engine built here), and
msf-video's 720p pipeline with frames kept on the GPU (``bench_pipeline.gpu_pipeline_check``). A part
whose library or device is missing is reported as skipped with the reason; a part that raises
anything else (while loading, checking accuracy or timing) is reported as failed with its error,
the other parts still run, and the script exits 1. Meant to finish in under 4 minutes on one GPU:

    python benchmarks/gpu_check.py [--out benchmarks/results/gpu_check.json] [--quick]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from msf.contract import DEFAULT_SIZE, GraphEnds, write_json_atomic
from msf.errors import MsfError
from msf.runtime.backends import Backend, create_backend
from msf.runtime.benchmark import BenchSettings, accuracy, measure, reference_labels
from msf.runtime.timing import environment, utc_now

HERE = Path(__file__).resolve().parent
Part = tuple[str, Callable[[], Backend]]


def parts(tmp: Path) -> list[Part]:
    """(name, factory) for every GPU path; a factory raises MsfError/ImportError when unavailable."""
    def engine() -> Backend:
        from msf.export.onnx_export import ExportSpec
        from msf.export.pipeline import ExportOptions, run_export

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


def run_parts(parts: list[Part], pairs: list, frames: list[np.ndarray], ref_labels: list, batches: list[int],
              iters: int, log: Callable[[str], None] = print) -> dict[str, list[dict[str, Any]]]:
    """Run each part; returns ``records`` (what succeeded), ``skipped`` (library or device missing:
    MsfError/ImportError while loading) and ``failed`` (anything else, at any step, with its error)."""
    out: dict[str, list[dict[str, Any]]] = {"records": [], "skipped": [], "failed": []}
    for name, factory in parts:
        try:
            backend = factory()
        except (MsfError, ImportError) as exc:
            out["skipped"].append({"part": name, "reason": str(exc)})
            log(f"skipped {name}: {exc}")
            continue
        except Exception as exc:  # noqa: BLE001  (a part that could run but broke: reported, not fatal)
            out["failed"].append({"part": name, "step": "load", "error": f"{type(exc).__name__}: {exc}"})
            log(f"FAILED {name} (load): {type(exc).__name__}: {exc}")
            continue
        step = "accuracy"
        try:
            acc = accuracy(backend, ref_labels, pairs) if pairs else {}
            for b in batches:
                step = f"timing batch {b}"
                rec = measure(backend, frames, BenchSettings(b, 10, iters))
                rec.pop("_samples")
                out["records"].append({"part": name, "backend": backend.name, "precision": backend.precision,
                                       "device": backend.device, "batch": b, "size": backend.size, **rec, **acc})
                log(f"{name} b{b}: p50 {rec['p50_ms']:.2f} ms, {rec['throughput_ips']:.0f} img/s, "
                    f"agreement {acc.get('agreement', float('nan')):.4%}")
        except Exception as exc:  # noqa: BLE001
            out["failed"].append({"part": name, "step": step, "error": f"{type(exc).__name__}: {exc}"})
            log(f"FAILED {name} ({step}): {type(exc).__name__}: {exc}")
        finally:
            backend.close()
    return out


def pipeline_part(res: dict[str, Any], quick: bool) -> dict[str, Any]:
    """msf-video's 720p pipeline on the PyTorch CUDA fp16 + graphs backend (frames kept on the GPU
    and the OpenCV path, side by side); a failure is recorded in ``res["failed"]``."""
    if str(HERE) not in sys.path:  # bench_pipeline is a script beside this one, not part of the package
        sys.path.insert(0, str(HERE))
    try:
        from bench_pipeline import gpu_pipeline_check

        rec = gpu_pipeline_check(frames=60 if quick else 240, size=(1280, 720), batch=8, fp16=True, cuda_graphs=True)
    except Exception as exc:  # noqa: BLE001  (reported as failed, the other parts' results kept)
        res["failed"].append({"part": "pipeline 720p", "step": "run", "error": f"{type(exc).__name__}: {exc}"})
        print(f"FAILED pipeline 720p: {type(exc).__name__}: {exc}", file=sys.stderr)
        return {"failed": f"{type(exc).__name__}: {exc}"}
    print(f"pipeline 720p: {rec}", file=sys.stderr)
    return rec


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--images", type=int, default=16, help="validation faces for the parity check")
    ap.add_argument("--quick", action="store_true", help="10 timed runs, batch 1, 4 faces (a smoke test)")
    ap.add_argument("--out", default=str(HERE / "results" / "gpu_check.json"))
    args = ap.parse_args(argv)
    if args.quick:
        args.iters, args.batches, args.images = 10, "1", 4
    t_start = time.perf_counter()
    from msf.export.verify import load_verification_images
    from msf.frames import rgb_to_bgr

    pairs, source = load_verification_images(None, args.images, split="val")
    pairs = [(rgb_to_bgr(img), mask) for img, mask in pairs if mask is not None]
    frames = [img for img, _ in pairs[:8]] or [
        np.random.default_rng(i).integers(0, 256, (DEFAULT_SIZE, DEFAULT_SIZE, 3), dtype=np.uint8) for i in range(8)]
    if not pairs:
        print(f"gpu_check: no labeled faces ({source}): parity skipped", file=sys.stderr)
    ref_labels = reference_labels(create_backend(None, "pytorch-reference"), pairs) if pairs else []
    with tempfile.TemporaryDirectory() as tmp:
        res = run_parts(parts(Path(tmp)), pairs, frames, ref_labels, [int(v) for v in args.batches.split(",")],
                        args.iters, log=lambda m: print(m, file=sys.stderr))
    res["pipeline_720p"] = pipeline_part(res, args.quick)
    out = {"benchmark": "GPU check", "date": utc_now(), "environment": environment(), **res,
           "seconds": round(time.perf_counter() - t_start, 1)}
    write_json_atomic(args.out, out)
    print(f"wrote {args.out} ({len(res['records'])} measurements, {len(res['skipped'])} parts skipped, "
          f"{len(res['failed'])} failed, {out['seconds']} s)")
    return 1 if res["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
