"""ONNX Runtime CPU latency of the export variants, side by side in one process.

reference export (training graph) vs fused exports (each attention core, float/logits and
uint8/labels ends) vs INT8 — batch 1, 512², median of N runs after warm-up, variants timed in
interleaved rounds so machine noise hits all of them alike. Writes JSON + Markdown to
benchmarks/results/.

    python benchmarks/bench_export.py [--ckpt PATH] [--runs 30] [--threads 2] [--quick]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from msf.contract import RUNTIME_ENDS, GraphEnds
from msf.export.onnx_export import ExportSpec, export_onnx
from msf.export.pipeline import INT8_FLOAT_LAYERS
from msf.export.precision import to_int8
from msf.export.verify import graph_input, load_verification_images
from msf.model import load_model
from msf.paths import data_root
from msf.runtime.timing import environment, machine_line, markdown_table, save_results, summarize, utc_now

HERE = Path(__file__).resolve().parent
FLOAT, FRAMES = GraphEnds(), RUNTIME_ENDS

VARIANTS = [
    ("reference", ExportSpec("reference"), "fp32"),
    ("fused matmul", ExportSpec(core="matmul"), "fp32"),
    ("fused mha", ExportSpec(core="mha"), "fp32"),
    ("fused attention23", ExportSpec(core="attention23"), "fp32"),
    ("fused attention23, uint8→labels", ExportSpec(core="attention23", ends=FRAMES), "fp32"),
    ("fused mha, uint8→labels", ExportSpec(core="mha", ends=FRAMES), "fp32"),
    ("int8 (mha), float→logits", ExportSpec(core="mha"), "int8"),
    ("int8 (mha), uint8→labels", ExportSpec(core="mha", ends=FRAMES), "int8"),
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", help="checkpoint (default: shipped weights)")
    ap.add_argument("--runs", type=int, default=30, help="timed runs per variant (after warm-up)")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds the runs are split into")
    ap.add_argument("--threads", type=int, default=2, help="ORT intra-op threads")
    ap.add_argument("--calib", type=int, default=32, help="INT8 calibration faces (training split)")
    ap.add_argument("--out", default=str(HERE / "results" / "export_ort_cpu"), help="output path stem")
    ap.add_argument("--quick", action="store_true", help="3 runs, 4 calibration faces, to a temporary folder")
    args = ap.parse_args()
    if args.quick:
        args.runs, args.warmup, args.rounds, args.calib = 3, 1, 1, 4
        args.out = str(Path(tempfile.mkdtemp(prefix="msf-bench-export-")) / "export_ort_cpu")

    model = load_model(args.ckpt)
    if data_root() is None:
        sys.exit("bench_export: needs the face data (set MSF_DATA)")
    calib = [im for im, _ in load_verification_images(None, args.calib, seed=1, split="train", ckpt=args.ckpt)[0]]
    frame = load_verification_images(None, 1, split="val", ckpt=args.ckpt)[0][0][0]
    sessions, meta = {}, {}
    so = ort.SessionOptions()
    so.intra_op_num_threads = args.threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    with tempfile.TemporaryDirectory() as tmp:
        for name, spec, precision in VARIANTS:
            t0 = time.perf_counter()
            path = Path(tmp) / f"{len(sessions)}.onnx"
            proto = export_onnx(model, spec)
            onnx.save(proto, path)
            spec_in = spec.contract.input
            if precision == "int8":
                q = path.with_suffix(".int8.onnx")
                to_int8(path, q, [graph_input([f], spec_in) for f in calib], keep_float=INT8_FLOAT_LAYERS)
                path = q
            sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
            x = graph_input([frame], spec_in)
            sessions[name] = (sess, {sess.get_inputs()[0].name: x})
            meta[name] = {"nodes": len(onnx.load(path).graph.node), "bytes": path.stat().st_size,
                          "precision": precision, "core": spec.resolved_core, "io": spec.ends.io,
                          "head": spec.ends.head, "prepare_s": round(time.perf_counter() - t0, 1)}
            print(f"prepared {name} ({meta[name]['nodes']} nodes)", file=sys.stderr)
        times = {n: [] for n in sessions}
        for sess, feed in sessions.values():
            for _ in range(args.warmup):
                sess.run(None, feed)
        per_round = max(1, args.runs // args.rounds)
        for _ in range(args.rounds):
            for n, (sess, feed) in sessions.items():
                for _ in range(per_round):
                    t0 = time.perf_counter()
                    sess.run(None, feed)
                    times[n].append((time.perf_counter() - t0) * 1000)
    ref = float(np.median(times["reference"]))
    rows = []
    for n in sessions:
        s = summarize(np.array(times[n]))
        rows.append({"variant": n, **meta[n], **s, "speedup_vs_reference": ref / s["p50_ms"]})
    result = {"benchmark": "export variants, ONNX Runtime CPU, batch 1, 512x512", "date": utc_now(),
              "threads": args.threads, "runs": per_round * args.rounds, "warmup": args.warmup,
              "environment": environment(), "rows": rows}
    save_results(args.out, result, markdown(result))
    return 0


def markdown(result: dict) -> str:
    env = result["environment"]
    v = env["versions"]
    lines = [f"### {result['benchmark']}", "",
             machine_line(env, f"ORT {v['onnxruntime']}", f"torch {v['torch']}", f"onnx {v['onnx']}",
                          f"{result['threads']} ORT threads",
                          f"median of {result['runs']} runs after {result['warmup']} warm-up", date=result["date"]), ""]
    lines += markdown_table(
        ["variant", "precision", "nodes", "p50 ms", "p90 ms", "mean ms", "CV", "speed-up vs reference"],
        [[r["variant"], r["precision"], str(r["nodes"]), f"{r['p50_ms']:.1f}", f"{r['p90_ms']:.1f}",
          f"{r['mean_ms']:.1f}", f"{r['cv']:.2f}", f"{r['speedup_vs_reference']:.2f}×"] for r in result["rows"]])
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
