"""``msf-bench``: latency, throughput and accuracy per model file, backend, batch and size."""

from __future__ import annotations

import csv
import os
import sys
from pathlib import Path
from typing import Any

from msf.atomic import atomic_write
from msf.cli.common import console, int_list, int_range, make_parser, model_sizes, positive_int, seconds, threads_int
from msf.contract import CHECKPOINT_EXTS, DEFAULT_SIZE, MODEL_EXTS, read_contract, write_json_atomic
from msf.errors import MsfError, run_cli
from msf.runtime.backends import BACKENDS, DEPRECATED_BACKENDS
from msf.runtime.report import COLUMNS, fmt, markdown, plot

EPILOG = """\
examples:
  msf-bench                                          # shipped weights, fused ONNX on the best provider
  msf-bench --engine ref.onnx msf.onnx msf_int8.onnx --data $MSF_DATA --plot bench.png
  msf-bench --engine best.pt --backend pytorch-reference --backend pytorch --backend onnxruntime
  msf-bench --engine msf.engine --batch 1,8,32 --json trt.json   # TensorRT engine (GPU)
  msf-bench --engine best.pt --size 256,384,512 --data DIR       # the accuracy/speed trade per input size
  msf-bench --engine m.onnx m_int8.onnx --data DIR --degrade     # F-score on small, compressed, dark faces too

Latency is reported twice: compute (the backend call on a prepared input) and end to end
(BGR frames -> letterbox -> input contract -> backend -> frame-sized labels). CV is the larger
coefficient of variation of the two; above 10 % the run is flagged as noisy. Accuracy (--data) is the CE7454
F-score on the checkpoint's validation faces and the pixel agreement with the PyTorch fp32
training graph (backend pytorch-reference). Backends: pytorch runs a checkpoint's deploy graph
(what the exports contain), pytorch-reference the training graph as published.
"""


def build_parser():
    p = make_parser("msf-bench", "Benchmark MicroSegFormer model files side by side.", EPILOG)
    p.add_argument("--engine", nargs="+", metavar="PATH", default=[None],
                   help="model files: checkpoint (.pt/.pth), .onnx or .engine (default: the shipped weights)")
    p.add_argument("--backend", action="append", choices=BACKENDS + tuple(DEPRECATED_BACKENDS),
                   help="backend(s) to run each model on (repeatable; default auto)")
    p.add_argument("--device", help="onnxruntime provider (cpu/cuda/tensorrt), pytorch device, openvino device")
    p.add_argument("--batch", type=int_list, default=[1], metavar="N[,N...]", help="batch sizes")
    p.add_argument("--size", type=model_sizes, metavar="N[,N...]",
                   help="input sizes (default: the model's own, for a checkpoint the size it records; "
                        "checkpoints are exported per size)")
    p.add_argument("--warmup", type=int_range(0, 10_000), default=5, help="untimed runs first")
    p.add_argument("--iters", type=positive_int, default=30, help="timed runs per configuration")
    p.add_argument("--duration", type=seconds, metavar="S", help="time each configuration for S seconds instead")
    p.add_argument("--threads", type=threads_int, help="inference threads (default: all cores)")
    p.add_argument("--data", metavar="DIR", help="labeled faces: report F-score and agreement with PyTorch fp32")
    p.add_argument("--accuracy-images", type=positive_int, default=20, metavar="N",
                   help="validation faces scored with --data")
    p.add_argument("--degrade", nargs="?", const="all", metavar="NAMES",
                   help="with --data: also score each configuration on the degraded faces of msf-eval "
                        "--degrade (all, or comma-separated names; msf-eval --degrade list names them)")
    p.add_argument("--ckpt", metavar="PATH", help="checkpoint of the fp32 reference (default: the model's own "
                                                  "checkpoint, else the shipped weights)")
    p.add_argument("--json", metavar="OUT.json")
    p.add_argument("--csv", metavar="OUT.csv")
    p.add_argument("--markdown", metavar="OUT.md")
    p.add_argument("--plot", metavar="OUT.png", help="latency distributions and throughput against batch")
    return p


def _faces(data: str | None, n: int, ckpt: str | None) -> tuple[list, str]:
    """``n`` (BGR image, mask-or-None) pairs from the checkpoint's validation faces (generated
    frames, with a warning, when there is no face data)."""
    from msf.export.verify import load_verification_images
    from msf.frames import rgb_to_bgr

    pairs, source = load_verification_images(data, n, split="val", ckpt=ckpt)
    return [(rgb_to_bgr(img), mask) for img, mask in pairs], source


def _check_paths(paths: list[str | None]) -> None:
    for p in paths:
        if p is None:
            continue
        path = Path(p)
        if path.suffix.lower() not in MODEL_EXTS:
            raise MsfError(f"unknown model file type {path.suffix or path.name!r}: expected "
                           f"{', '.join(MODEL_EXTS)}")
        if not path.is_file():
            raise MsfError(f"model file not found: {path}")


def _check_outputs(args) -> None:
    """Refuse (exit 2, nothing written) a result file that is a model file, its sidecar or --ckpt;
    refuse batch × size combinations that would not fit in memory."""
    from msf.cli.guard import Inputs, refuse_overwrite
    from msf.sizes import check_memory

    inputs = Inputs().add(args.ckpt, *[p for p in args.engine if p], *[f"{p}.json" for p in args.engine if p])
    refuse_overwrite([(f"--{flag} {f}", Path(f)) for flag in ("json", "csv", "markdown", "plot")
                      if (f := getattr(args, flag))], inputs)
    for size in args.size or [DEFAULT_SIZE]:
        check_memory(max(args.batch), size)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _check_outputs(args)
    _check_paths(args.engine)
    if args.degrade and not args.data:
        raise MsfError("--degrade scores labeled faces: pass --data DIR too")
    from msf.runtime.backends import create_backend
    from msf.runtime.benchmark import BenchSettings, accuracy, fscore, measure, reference_labels
    from msf.runtime.timing import environment

    threads = args.threads or os.cpu_count()
    # The held-out faces: those of --ckpt, else of the first checkpoint benchmarked, else the shipped weights'.
    split_ckpt = args.ckpt or next((p for p in args.engine if p and Path(p).suffix.lower() in CHECKPOINT_EXTS), None)
    frames = [img for img, _ in _faces(args.data, 8, split_ckpt)[0]]
    pairs = None
    if args.data:
        scored, source = _faces(args.data, args.accuracy_images, split_ckpt)
        pairs = [(img, m) for img, m in scored if m is not None]
        print(f"accuracy on {source}", file=sys.stderr)
        if not pairs:
            raise MsfError(f"--data {args.data} has no labeled images (images/ + masks/)")
    degradations = []
    if args.degrade:
        from msf.degrade import select_degradations

        degradations = select_degradations(args.degrade)
    references: dict[tuple, Any] = {}
    records, samples, skipped = [], [], []
    robustness: dict[str, list[dict]] = {}
    for path in args.engine:
        for backend_name in args.backend or ["auto"]:
            for size in _sizes(path, args.size):
                backend = create_backend(path, backend_name, device=args.device, threads=threads, size=size)
                if backend.size != size:
                    skipped.append(f"{_label(path)} @ {size}: graph is fixed at {backend.size}")
                    continue
                acc = {}
                if pairs is not None:
                    ref_ckpt = args.ckpt or (path if path and Path(path).suffix.lower() in CHECKPOINT_EXTS else None)
                    key = (ref_ckpt, size)
                    if key not in references:
                        ref = create_backend(ref_ckpt, "pytorch-reference", threads=threads, size=size)
                        references[key] = reference_labels(ref, pairs)
                    acc = accuracy(backend, references[key], pairs)
                    if degradations:
                        from msf.robustness import robustness_rows, summarize_rows

                        rows = robustness_rows(lambda p, b=backend: fscore(b, p), pairs, degradations, bgr=True)
                        robustness[f"{_label(path)} {backend.name} {backend.precision} @{size}"] = rows
                        summary = summarize_rows(rows)
                        acc.update(f_degraded_mean=summary["degraded_mean"],
                                   f_degraded={r["name"]: r["f_score"] for r in rows[1:]})
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
    if robustness:
        from msf.robustness import robustness_table

        console().print(robustness_table(robustness, f"msf-bench --degrade: CE7454 F-score on "
                                                     f"{len(pairs or [])} degraded validation faces"))
        out["robustness"] = robustness
    if args.json:
        write_json_atomic(args.json, out)
    if args.csv:
        def write_csv(tmp: str) -> None:
            with open(tmp, "w", newline="") as fh:
                w = csv.DictWriter(fh, fieldnames=sorted({k for r in records for k in r}))
                w.writeheader()
                w.writerows(records)

        atomic_write(args.csv, write_csv)
    if args.markdown:
        text = markdown(records, env)
        atomic_write(args.markdown, lambda tmp: Path(tmp).write_text(text))
    if args.plot:
        plot(records, samples, args.plot)
    return 0


def _sizes(path, sizes):
    if sizes:
        return sizes
    if path and Path(path).suffix.lower() not in CHECKPOINT_EXTS:
        contract = read_contract(path)
        return [(contract.input.size if contract else None) or DEFAULT_SIZE]
    from msf.checkpoint import recommended_size

    return [recommended_size(path)]


def _label(path) -> str:
    return Path(path).name if path else "shipped"


def _file_mb(path) -> float | None:
    from msf.paths import WEIGHTS_PATH

    p = Path(path) if path else WEIGHTS_PATH
    return round(p.stat().st_size / 1e6, 2) if p.is_file() else None


def _progress_line(r: dict) -> str:
    return (f"{r['model']} {r['backend']} {r['precision']} b{r['batch']} {r['size']}px: "
            f"p50 {r['p50_ms']:.1f} ms, e2e p50 {r['e2e_p50_ms']:.1f} ms, {r['throughput_ips']:.1f} img/s")


def _print_table(records: list[dict], skipped: list[str], env: dict) -> None:
    from rich.table import Table

    con = console()
    t = Table(title=f"msf-bench · {env['cpu']} · {env['cores']} cores" + (f" · {env['gpu']}" if env.get("gpu") else ""))
    for _, head in COLUMNS:
        t.add_column(head, justify="left" if head in ("model", "backend", "prec.") else "right")
    for r in records:
        t.add_row(*[fmt(k, r.get(k)) + (" !" if k == "cv_max" and r["noisy"] else "") for k, _ in COLUMNS])
    con.print(t)
    if any(r["noisy"] for r in records):
        con.print("[yellow]! noisy run (CV > 10 %): close other programs or raise --iters[/yellow]")
    for s in skipped:
        con.print(f"skipped: {s}")


def entry() -> None:
    sys.exit(run_cli("msf-bench", main))


if __name__ == "__main__":
    entry()
