"""``msf-bench``: latency, throughput and accuracy per model file, backend, batch and size."""

from __future__ import annotations

import csv
import json
import os
import sys
import warnings
from pathlib import Path
from typing import Any

from msf.cli.common import console, int_list, make_parser
from msf.errors import MsfError, run_cli

EPILOG = """\
examples:
  msf-bench                                          # shipped weights, fused ONNX on the best provider
  msf-bench --engine ref.onnx msf.onnx msf_int8.onnx --data ../shared/data/faces --plot bench.png
  msf-bench --engine best.pt --backend pytorch-eager --backend onnxruntime   # same weights, two backends
  msf-bench --engine msf.engine --batch 1,8,32 --json trt.json   # TensorRT engine (GPU)
  msf-bench --engine best.pt --size 256,384,512 --data DIR       # the accuracy/speed trade per input size

Latency is reported twice: compute (the backend call on a prepared input) and end to end
(BGR frames -> letterbox -> input contract -> backend -> frame-sized labels). CV is the larger
coefficient of variation of the two; above 10 % the run is flagged as noisy. Accuracy (--data) is the CE7454
F-score on labeled faces and the pixel agreement with the PyTorch fp32 training graph.
"""

BACKENDS = ["auto", "onnxruntime", "pytorch", "pytorch-eager", "openvino", "tensorrt"]
MODEL_EXTS = (".pt", ".pth", ".onnx", ".engine", ".plan")


def build_parser():
    p = make_parser("msf-bench", "Benchmark MicroSegFormer model files side by side.", EPILOG)
    p.add_argument("--engine", nargs="+", metavar="PATH", default=[None],
                   help="model files: checkpoint (.pt/.pth), .onnx or .engine (default: the shipped weights)")
    p.add_argument("--backend", action="append", choices=BACKENDS,
                   help="backend(s) to run each model on (repeatable; default auto)")
    p.add_argument("--device", help="onnxruntime provider (cpu/cuda/tensorrt), pytorch device, openvino device")
    p.add_argument("--batch", type=int_list, default=[1], metavar="N[,N...]", help="batch sizes")
    p.add_argument("--size", type=int_list, metavar="N[,N...]",
                   help="input sizes (default: the model's own; checkpoints are exported per size)")
    p.add_argument("--warmup", type=int, default=5, help="untimed runs first")
    p.add_argument("--iters", type=int, default=30, help="timed runs per configuration")
    p.add_argument("--duration", type=float, metavar="S", help="time each configuration for S seconds instead")
    p.add_argument("--threads", type=int, help="inference threads (default: all cores)")
    p.add_argument("--data", metavar="DIR", help="labeled faces: report F-score and agreement with PyTorch fp32")
    p.add_argument("--accuracy-images", type=int, default=20, metavar="N", help="images scored with --data")
    p.add_argument("--ckpt", metavar="PATH", help="checkpoint of the fp32 reference (default: the model's own "
                                                  "checkpoint, else the shipped weights)")
    p.add_argument("--json", metavar="OUT.json")
    p.add_argument("--csv", metavar="OUT.csv")
    p.add_argument("--markdown", metavar="OUT.md")
    p.add_argument("--plot", metavar="OUT.png", help="latency distributions and throughput against batch")
    return p


def _frames(data: str | None, n: int = 8):
    import cv2
    import numpy as np

    from msf.data import list_samples
    from msf.paths import data_root

    root = Path(data) if data else data_root()
    if root is not None and root.exists():
        sub = root / "unlabeled" if (root / "unlabeled").is_dir() else root
        samples = list_samples(sub, require_masks=False)[:n]
        return [cv2.imread(str(s.image)) for s in samples]
    warnings.warn("no face images found: timing on generated frames", stacklevel=2)
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (512, 512, 3), dtype=np.uint8) for _ in range(n)]


def _labeled_pairs(data: str, n: int):
    import cv2

    from msf.data import list_samples, read_pair

    samples = [s for s in list_samples(data, require_masks=False) if s.mask is not None or s.official_root]
    if not samples:
        raise MsfError(f"--data {data} has no labeled images (images/ + masks/)")
    step = max(1, len(samples) // n)
    pairs = [read_pair(s) for s in samples[::step][:n]]
    return [(cv2.cvtColor(img, cv2.COLOR_RGB2BGR), mask) for img, mask in pairs]


def _check_paths(paths: list[str | None]) -> None:
    for p in paths:
        if p is None:
            continue
        path = Path(p)
        if path.suffix.lower() not in MODEL_EXTS:
            raise MsfError(f"unknown model file type {path.suffix or path.name!r}: expected .pt/.pth, .onnx or .engine")
        if not path.is_file():
            raise MsfError(f"model file not found: {path}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _check_paths(args.engine)
    from msf.runtime.backends import create_backend
    from msf.runtime.benchmark import BenchSettings, accuracy, measure, reference_labels
    from msf.runtime.timing import environment

    threads = args.threads or os.cpu_count()
    frames = _frames(args.data)
    pairs = _labeled_pairs(args.data, args.accuracy_images) if args.data else None
    references: dict[tuple, Any] = {}
    records, samples, skipped = [], [], []
    for path in args.engine:
        for backend_name in args.backend or ["auto"]:
            for size in _sizes(path, args.size):
                backend = create_backend(path, backend_name, device=args.device, threads=threads, size=size)
                if backend.size != size:
                    skipped.append(f"{_label(path)} @ {size}: graph is fixed at {backend.size}")
                    continue
                acc = {}
                if pairs is not None:
                    ref_ckpt = args.ckpt or (path if path and Path(path).suffix in (".pt", ".pth") else None)
                    key = (ref_ckpt, size)
                    if key not in references:
                        ref = create_backend(ref_ckpt, "pytorch-eager", threads=threads, size=size)
                        references[key] = reference_labels(ref, pairs)
                    acc = accuracy(backend, references[key], pairs)
                for batch in args.batch:
                    if backend.max_batch and batch != backend.max_batch:
                        skipped.append(f"{_label(path)} batch {batch}: graph batch is fixed at {backend.max_batch}")
                        continue
                    settings = BenchSettings(batch, args.warmup, None if args.duration else args.iters, args.duration)
                    rec = measure(backend, frames, settings)
                    samples.append(rec.pop("_samples"))
                    rec = {"model": _label(path), "file": str(path) if path else "shipped weights",
                           "backend": backend.name, "precision": backend.precision, "device": backend.device,
                           "batch": batch, "size": size, "file_mb": _file_mb(path), "threads": threads,
                           **rec, **acc}
                    records.append(rec)
                    print(_progress_line(rec), file=sys.stderr)
                backend.close()
    if not records:
        raise MsfError("nothing was measured: " + "; ".join(skipped))
    env = environment()
    _print_table(records, skipped, env)
    out = {"environment": env, "records": records, "skipped": skipped}
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    if args.csv:
        with open(args.csv, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=sorted({k for r in records for k in r}))
            w.writeheader()
            w.writerows(records)
    if args.markdown:
        Path(args.markdown).write_text(markdown(records, env))
    if args.plot:
        plot(records, samples, args.plot)
    return 0


def _sizes(path, sizes):
    if sizes:
        return sizes
    if path and Path(path).suffix in (".onnx", ".engine", ".plan"):
        from msf.export.sidecar import read_sidecar

        side = read_sidecar(path) or {}
        return [(side.get("input") or {}).get("size") or 512]
    return [512]


def _label(path) -> str:
    return Path(path).name if path else "shipped"


def _file_mb(path) -> float | None:
    from msf.paths import WEIGHTS_PATH

    p = Path(path) if path else WEIGHTS_PATH
    return round(p.stat().st_size / 1e6, 2) if p.is_file() else None


def _progress_line(r: dict) -> str:
    return (f"{r['model']} {r['backend']} {r['precision']} b{r['batch']} {r['size']}px: "
            f"p50 {r['p50_ms']:.1f} ms, e2e p50 {r['e2e_p50_ms']:.1f} ms, {r['throughput_ips']:.1f} img/s")


COLUMNS = [("model", "model"), ("backend", "backend"), ("precision", "prec."), ("batch", "batch"),
           ("size", "size"), ("file_mb", "MB"), ("p50_ms", "p50 ms"), ("p90_ms", "p90"), ("p99_ms", "p99"),
           ("e2e_p50_ms", "e2e p50"), ("e2e_p99_ms", "e2e p99"), ("throughput_ips", "img/s"),
           ("f_score", "F-score"), ("agreement", "agree"), ("cv_max", "CV")]


def _fmt(key: str, v) -> str:
    if v is None:
        return "-"
    if key == "agreement":
        return f"{v:.2%}"
    if key in ("f_score", "cv_max"):
        return f"{v:.3f}"
    if isinstance(v, float):
        return f"{v:.1f}"
    return str(v)


def _print_table(records: list[dict], skipped: list[str], env: dict) -> None:
    from rich.table import Table

    con = console()
    t = Table(title=f"msf-bench · {env['cpu']} · {env['cores']} cores" + (f" · {env['gpu']}" if env.get("gpu") else ""))
    for _, head in COLUMNS:
        t.add_column(head, justify="left" if head in ("model", "backend", "prec.") else "right")
    for r in records:
        t.add_row(*[_fmt(k, r.get(k)) + (" !" if k == "cv_max" and r["noisy"] else "") for k, _ in COLUMNS])
    con.print(t)
    if any(r["noisy"] for r in records):
        con.print("[yellow]! noisy run (CV > 10 %): close other programs or raise --iters[/yellow]")
    for s in skipped:
        con.print(f"skipped: {s}")


def markdown(records: list[dict], env: dict) -> str:
    v = env["versions"]
    from msf.runtime.timing import markdown_table

    lines = [f"{env['cpu']} · {env['cores']} cores · ORT {v.get('onnxruntime')} · torch {v.get('torch')}", ""]
    lines += markdown_table([h for _, h in COLUMNS], [[_fmt(k, r.get(k)) for k, _ in COLUMNS] for r in records])
    return "\n".join(lines) + "\n"


def plot(records: list[dict], samples: list, out: str) -> None:
    """Left: compute latency distributions (violins) with end-to-end p50; right: throughput vs batch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(13, 4.8))
    names = [f"{r['model']}\n{r['backend']} {r['precision']} b{r['batch']} {r['size']}" for r in records]
    y = range(len(records))
    parts = a1.violinplot(list(samples), positions=list(y), vert=False, showmedians=True, widths=0.8)
    for body in parts["bodies"]:
        body.set_facecolor("#4c72b0")
    a1.scatter([r["p99_ms"] for r in records], y, marker="x", color="#c44e52", label="p99 compute", zorder=3)
    a1.scatter([r["e2e_p50_ms"] for r in records], y, marker="o", color="#dd8452", label="p50 end to end", zorder=3)
    a1.set_yticks(list(y), names, fontsize=7)
    a1.invert_yaxis()
    a1.set_xlabel("latency per batch (ms)")
    a1.legend(fontsize=7)
    groups: dict[str, list[dict]] = {}
    for r in records:
        groups.setdefault(f"{r['model']} {r['backend']} {r['precision']} {r['size']}", []).append(r)
    for label, rs in groups.items():
        rs = sorted(rs, key=lambda r: r["batch"])
        a2.plot([r["batch"] for r in rs], [r["throughput_ips"] for r in rs], marker="o", label=label)
    a2.set_xscale("log", base=2)
    a2.set_xlabel("batch")
    a2.set_ylabel("throughput (images/s, compute)")
    a2.legend(fontsize=7)
    a2.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def entry() -> None:
    sys.exit(run_cli("msf-bench", main))


if __name__ == "__main__":
    entry()
