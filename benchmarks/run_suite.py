"""The project's headline table, reproduced on the current machine with one command.

PyTorch (training graph, backend pytorch-reference) vs ONNX reference export vs fused export
(fp32) vs INT8, all on ONNX Runtime CPU; OpenVINO bf16 where installed; the peer SegFormer-B0 (19 classes, built from
its config with ``transformers``, same input size) where installed. Batch 1, 512², shipped
weights; accuracy on the shipped checkpoint's own validation faces. Also checks that msf-bench's
p50 for the fused export agrees with an independent plain timed loop of the same file.

    python benchmarks/run_suite.py [--iters 30] [--accuracy-images 100] [--quick]

Writes benchmarks/results/suite_cpu.{json,md,png}.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import onnx

from msf.contract import DEFAULT_SIZE, MODEL_CONTRACT, RUNTIME_ENDS, write_sidecar
from msf.export.onnx_export import ExportSpec, export_onnx
from msf.export.pipeline import ExportOptions, run_export
from msf.export.sidecar import build_sidecar
from msf.export.verify import load_verification_images
from msf.frames import rgb_to_bgr
from msf.paths import data_root
from msf.runtime.backends import Backend, create_backend
from msf.runtime.benchmark import BenchSettings, accuracy, measure, reference_labels
from msf.runtime.report import markdown, plot
from msf.runtime.timing import environment, save_results, summarize, time_calls, utc_now

HERE = Path(__file__).resolve().parent


class SegFormerB0(Backend):
    """HF transformers SegFormer-B0 (3.7M params), 19 classes, random weights: a speed peer only."""

    name = "segformer-b0 (torch)"

    def __init__(self, threads: int) -> None:
        import torch
        from transformers import SegformerConfig, SegformerForSemanticSegmentation

        super().__init__(MODEL_CONTRACT)
        torch.set_num_threads(threads)
        self.torch = torch
        self.model = SegformerForSemanticSegmentation(SegformerConfig(num_labels=19)).eval()

    def infer(self, batch):
        with self.torch.inference_mode():
            logits = self.model(pixel_values=self.torch.from_numpy(batch)).logits
            return self.torch.nn.functional.interpolate(logits, size=batch.shape[-2:], mode="bilinear").numpy()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--accuracy-images", type=int, default=100)
    ap.add_argument("--out", default=str(HERE / "results" / "suite_cpu"))
    ap.add_argument("--quick", action="store_true", help="5 runs, 4 faces, to a temporary folder (smoke test)")
    args = ap.parse_args()
    if args.quick:
        args.iters, args.warmup, args.accuracy_images = 5, 1, 4
        args.out = str(Path(tempfile.mkdtemp(prefix="msf-suite-")) / "suite_cpu")
    if data_root() is None:
        sys.exit("run_suite: needs the face data (set MSF_DATA)")
    # the shipped checkpoint's own validation faces: timing frames and accuracy
    val, _ = load_verification_images(None, max(args.accuracy_images, 8), split="val")
    pairs = [(rgb_to_bgr(img), mask) for img, mask in val][: args.accuracy_images]
    frames = [rgb_to_bgr(img) for img, _ in val[:8]]
    settings = BenchSettings(1, args.warmup, args.iters)
    records, samples_ms, skipped = [], [], []
    ref_backend = create_backend(None, "pytorch-reference", threads=args.threads)
    ref_labels = reference_labels(ref_backend, pairs)

    def add(label: str, backend: Backend, path: Path | None, with_accuracy: bool = True) -> dict:
        t0 = time.perf_counter()
        rec = measure(backend, frames, settings)
        samples_ms.append(rec.pop("_samples"))
        acc = accuracy(backend, ref_labels, pairs) if with_accuracy else {}
        rec = {"model": label, "backend": backend.name, "precision": backend.precision, "device": backend.device,
               "batch": 1, "size": backend.size, "file_mb": round(path.stat().st_size / 1e6, 2) if path else None,
               "threads": args.threads, **rec, **acc, "seconds": round(time.perf_counter() - t0, 1)}
        records.append(rec)
        print(f"{label}: p50 {rec['p50_ms']:.1f} ms, e2e {rec['e2e_p50_ms']:.1f} ms", file=sys.stderr)
        return rec

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        add("PyTorch (training graph)", ref_backend, None)
        ref_onnx = tmp / "reference.onnx"
        onnx.save(export_onnx(ref_backend.model, ExportSpec("reference")), ref_onnx)
        _sidecar(ref_onnx, ExportSpec("reference"))
        add("ONNX reference export", create_backend(ref_onnx, "onnxruntime", threads=args.threads), ref_onnx)
        fused = tmp / "fused.onnx"
        run_export(ExportOptions(out=fused, spec=ExportSpec(ends=RUNTIME_ENDS), verify_images=4), log=lambda m: None)
        fused_rec = add("fused export fp32", create_backend(fused, "onnxruntime", threads=args.threads), fused)
        int8 = tmp / "int8.onnx"
        run_export(ExportOptions(out=int8, spec=ExportSpec(ends=RUNTIME_ENDS), precision="int8", verify_images=4),
                   log=lambda m: None)
        add("INT8 export (QDQ)", create_backend(int8, "onnxruntime", threads=args.threads), int8)
        try:
            add("fused export, OpenVINO", create_backend(fused, "openvino", threads=args.threads), fused)
        except Exception as exc:  # noqa: BLE001
            skipped.append(f"OpenVINO: {exc}")
        try:
            add("SegFormer-B0 (HF transformers, peer, random weights)", SegFormerB0(args.threads), None,
                with_accuracy=False)
        except ImportError as exc:
            skipped.append(f"SegFormer-B0 peer: transformers is not installed ({exc.name})")
        # msf-bench's measurement against an independent plain loop over the same file, interleaved
        # in rounds so that drifts of the machine's speed hit both alike.
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = args.threads
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        sess = ort.InferenceSession(str(fused), so, providers=["CPUExecutionProvider"])
        fused_backend = create_backend(fused, "onnxruntime", threads=args.threads)
        x = np.ascontiguousarray(cv2.resize(frames[0], (DEFAULT_SIZE, DEFAULT_SIZE))[None])
        plain, bench_p50 = [], []
        per_round = max(3, args.iters // 3)
        for _ in range(3):
            bench_p50.append(measure(fused_backend, frames, BenchSettings(1, 3, per_round))["p50_ms"])
            plain.extend(time_calls(lambda: sess.run(None, {"image": x}), per_round, warmup=3))
        plain_s = summarize(np.array(plain))
        fused_rec = dict(fused_rec, p50_ms=float(np.median(bench_p50)))
    cross = {"msf_bench_p50_ms": fused_rec["p50_ms"], "plain_loop_p50_ms": plain_s["p50_ms"],
             "relative_difference": abs(fused_rec["p50_ms"] - plain_s["p50_ms"]) / plain_s["p50_ms"],
             "plain_loop_cv": plain_s["cv"]}
    base = records[0]["p50_ms"]
    for r in records:
        r["speedup_vs_pytorch_reference"] = base / r["p50_ms"]
    env = environment()
    result = {"benchmark": "headline suite, CPU, batch 1, 512x512", "date": utc_now(),
              "iters": args.iters, "warmup": args.warmup, "threads": args.threads,
              "accuracy_images": len(pairs), "environment": env, "records": records,
              "msf_bench_vs_plain_loop": cross, "skipped": skipped}
    md = (f"### {result['benchmark']}\n\n{result['date']} · median of {args.iters} runs after {args.warmup} "
          f"warm-up · {args.threads} threads · accuracy on {len(pairs)} validation faces of the shipped weights\n\n"
          + markdown(records, env)
          + f"\nmsf-bench p50 for the fused export {cross['msf_bench_p50_ms']:.1f} ms vs an independent plain "
            f"ORT loop {cross['plain_loop_p50_ms']:.1f} ms (difference {cross['relative_difference']:.1%}).\n"
          + "".join(f"\nskipped: {s}" for s in skipped) + "\n")
    save_results(args.out, result, md)
    plot(records, samples_ms, str(Path(args.out).with_suffix(".png")))
    return 0


def _sidecar(path: Path, spec: ExportSpec) -> None:
    write_sidecar(path, build_sidecar(fmt="onnx", precision="fp32", target="onnxruntime", spec=spec,
                                      checkpoint_sha256=None))


if __name__ == "__main__":
    sys.exit(main())
