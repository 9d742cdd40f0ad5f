"""``msf-export``: checkpoint -> verified ONNX (fused SR-attention), FP16/INT8 variants, TensorRT engines."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from msf.cli.common import console, int_range, make_parser, model_size, positive_int
from msf.contract import DEFAULT_SIZE
from msf.errors import MsfError, run_cli
from msf.sizes import SIZE_RULE, check_memory

EPILOG = """\
examples:
  msf-export -o msf.onnx                          # shipped weights, fused graph for ONNX Runtime
  msf-export --ckpt best.pt -o msf.onnx --io uint8 --color bgr --head labels   # frames in, class ids out
  msf-export -o ref.onnx --attention reference    # the training graph as is (baseline, debugging)
  msf-export -o msf_fp16.onnx --precision fp16    # fp16 inside, float32 in and out (GPU providers)
  msf-export -o msf_int8.onnx --precision int8    # static QDQ, calibrated on training faces
  msf-export -o msf_fp16.onnx --target tensorrt --precision fp16 --tensorrt --profile 1,4,8
  msf-export --verify msf.onnx                    # re-check a file against the checkpoint

Every export is verified against the PyTorch fp32 model on faces of the checkpoint's validation
split, which it never trained on (fp32: label agreement >= 99.9 %, max |Δlogit| <= 1e-3; fp16:
>= 99.5 %, F-score drop <= 0.005; int8: >= 97 %, F-score drop <= 0.02), and written with a
sidecar OUT.onnx.json that msf-bench and msf-video read. fp16 and int8 files keep the float32
(or uint8) inputs and outputs of the fp32 graph: the reduced precision is inside. INT8 pays on
hardware with INT8 arithmetic (GPUs with INT8 tensor cores, NPUs); on ONNX Runtime CPU it is
slower than fp32.
"""


def build_parser():
    p = make_parser("msf-export", "Export MicroSegFormer to verified ONNX / TensorRT.", EPILOG)
    p.add_argument("--ckpt", metavar="PATH", help="checkpoint (.pt/.pth); default: the shipped weights")
    p.add_argument("-o", "--output", metavar="OUT.onnx", default="microsegformer.onnx", help="ONNX file to write")
    p.add_argument("--verify", metavar="FILE", help="only verify an existing ONNX file against --ckpt")
    p.add_argument("--attention", choices=["fused", "reference"], default="fused",
                   help="fused = deploy rewrite + fused attention core; reference = the training graph as is")
    p.add_argument("--target", choices=["onnxruntime", "tensorrt"], default="onnxruntime",
                   help="runtime the graph is shaped for (decides the attention core)")
    p.add_argument("--core", choices=["matmul", "mha", "attention23"],
                   help="override the attention core: MatMul-Softmax-MatMul, com.microsoft.MultiHeadAttention, "
                        "or opset-23 Attention (default: mha for onnxruntime, matmul for tensorrt)")
    p.add_argument("--io", choices=["float", "uint8"], default="float",
                   help="input: float32 NCHW RGB in [0,1], or uint8 NHWC frames (cast and /255 in the graph)")
    p.add_argument("--color", choices=["rgb", "bgr"], default="rgb", help="channel order of uint8 input")
    p.add_argument("--head", choices=["logits", "labels"], default="logits",
                   help="output: float logits N×19×H×W, or uint8 class ids N×H×W")
    p.add_argument("--precision", choices=["fp32", "fp16", "int8"], default="fp32")
    p.add_argument("--batch", type=_or_dynamic(positive_int), default="dynamic", metavar="{dynamic,N}",
                   help="batch dimension")
    p.add_argument("--size", type=_or_dynamic(model_size), metavar="{N,dynamic}",
                   help=f"square input size: {SIZE_RULE}, or dynamic (default: the size the checkpoint records, "
                        f"384 for the shipped weights; {DEFAULT_SIZE} for checkpoints that record none)")
    p.add_argument("--opset", type=int_range(17, 23), help="ONNX opset, 17 to 23 (default 17; 23 with the "
                                                           "Attention core)")
    p.add_argument("--data", metavar="DIR", help="labeled faces for verification (validation split) and INT8 "
                                                 "calibration (training split) (default: $MSF_DATA)")
    p.add_argument("--verify-images", type=positive_int, default=8, metavar="N",
                   help="validation faces used for verification")
    p.add_argument("--calib-images", type=positive_int, default=64, metavar="N",
                   help="training faces used for INT8 calibration")
    p.add_argument("--no-verify", action="store_true", help="skip verification (not recommended)")
    p.add_argument("--tensorrt", action="store_true", help="also build OUT.engine with TensorRT")
    p.add_argument("--profile", metavar="MIN,OPT,MAX", help="TensorRT optimisation profile batch sizes")
    p.add_argument("--profile-size", metavar="MIN,OPT,MAX", help="profile sizes for a --size dynamic graph")
    p.add_argument("--workspace", type=positive_int, default=1024, metavar="MB", help="TensorRT workspace limit")
    p.add_argument("--opt-level", type=int_range(0, 5), default=3, metavar="{0..5}",
                   help="TensorRT builder optimisation level")
    p.add_argument("--timing-cache", metavar="FILE", help="TensorRT timing cache to reuse and update")
    p.add_argument("--json", metavar="FILE", help="write the export summary as JSON")
    return p


def _or_dynamic(parse):
    """An argparse type: ``dynamic`` (kept as the word) or what ``parse`` accepts."""
    def parse_or_dynamic(text: str):
        if text == "dynamic":
            return text
        try:
            return parse(text)
        except argparse.ArgumentTypeError as exc:
            raise argparse.ArgumentTypeError(f"{exc} (or 'dynamic')") from None

    parse_or_dynamic.numeric = True  # type: ignore[attr-defined]
    return parse_or_dynamic


def _dim(value: int | str) -> int | None:
    """A graph dimension from ``_or_dynamic``: None for dynamic."""
    return None if value == "dynamic" else value


def _check_outputs(args) -> None:
    """Refuse (exit 2, nothing written) an output that is an input: the checkpoint, the file to
    verify, a face image or mask of the data folder."""
    from msf.cli.guard import Inputs, check_writable, refuse_overwrite
    from msf.paths import IMAGE_EXTS, WEIGHTS_PATH, data_root

    inputs = Inputs().add(args.ckpt or WEIGHTS_PATH, args.verify)
    root = Path(args.data) if args.data else data_root()
    for split in ((root, root / "train") if root else ()):
        inputs.add_folder(split / "images", lambda n: n.lower().endswith(IMAGE_EXTS))
        inputs.add_folder(split / "masks", lambda n: n.lower().endswith(".png"))
    out = Path(args.output)
    named = [(f"-o {args.output}", out), (f"-o {args.output} (its sidecar)", Path(f"{out}.json"))]
    if args.tensorrt:
        engine = out.with_suffix(".engine")
        named += [(f"-o {args.output} (its engine)", engine), (f"-o {args.output} (its engine)",
                                                                Path(f"{engine}.json"))]
    if args.json:
        named.append((f"--json {args.json}", Path(args.json)))
    refuse_overwrite(named, inputs)
    if args.json:
        check_writable(Path(args.json).parent)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from msf.checkpoint import recommended_size
    from msf.contract import GraphEnds, write_json_atomic
    from msf.export.onnx_export import ExportSpec
    from msf.export.pipeline import ExportOptions, run_export, verify_file

    if args.verify:
        report = verify_file(args.verify, args.ckpt, args.data, args.verify_images)
        _print_verification([report.to_dict()])
        if not report.ok:
            raise MsfError(f"verification failed: {'; '.join(report.failures)}")
        return 0
    _check_outputs(args)

    batch = _dim(args.batch)
    size = _dim(args.size) if args.size is not None else recommended_size(args.ckpt)
    check_memory(batch or 1, size or DEFAULT_SIZE)  # verification runs batches of the graph's batch
    spec = ExportSpec(attention=args.attention, target=args.target, core=args.core,
                      ends=GraphEnds(args.io, args.color, args.head), batch=batch, size=size, opset=args.opset)
    opts = ExportOptions(out=Path(args.output), spec=spec, precision=args.precision, ckpt=args.ckpt,
                         data=args.data, verify=not args.no_verify, verify_images=args.verify_images,
                         calib_images=args.calib_images, tensorrt=args.tensorrt, profile_batch=args.profile,
                         profile_size=args.profile_size, workspace_mb=args.workspace, opt_level=args.opt_level,
                         timing_cache=args.timing_cache)
    summary = run_export(opts, log=lambda m: print(m, file=sys.stderr))
    _print_summary(summary)
    if args.json:
        write_json_atomic(args.json, summary)
    return 0


def _fmt_sig(sigs: list[dict]) -> str:
    from rich.markup import escape

    return escape(", ".join(f"{s['name']} {s['dtype']}[{'×'.join(str(d) for d in s['shape'])}]" for s in sigs))


def _print_summary(summary: dict) -> None:
    from rich.table import Table

    g = summary["graph"]
    t = Table(title="msf-export", show_header=False)
    t.add_row("file", summary["file"])
    t.add_row("size", f"{summary['bytes'] / 1e6:.2f} MB")
    t.add_row("graph", f"{summary['attention']} ({summary['attention_core'] or 'training graph'}), "
                       f"target {summary['target']}, {summary['precision']}")
    t.add_row("opset / nodes", f"{g['opset']} / {g['nodes']}")
    t.add_row("inputs", _fmt_sig(g["inputs"]))
    t.add_row("outputs", _fmt_sig(g["outputs"]))
    v = summary.get("verification")
    if v:
        logit = f"max |Δlogit| {v['max_abs_logit']:.2e}, " if v["max_abs_logit"] is not None else ""
        fchg = (f", F-score {v['f_score_torch']:.4f} -> {v['f_score_onnx']:.4f}"
                if v["f_score_torch"] is not None else "")
        t.add_row("parity", f"{logit}label agreement {v['agreement']:.4%}{fchg} on {v['source']} [PASS]")
    else:
        t.add_row("parity", "not verified (--no-verify)")
    if "engine" in summary:
        e = summary["engine"]
        t.add_row("engine", f"{e['file']} ({e['bytes'] / 1e6:.2f} MB, TensorRT {e['tensorrt']}, {e['gpu']['name']})")
    t.add_row("time", f"{summary['seconds']:.1f} s")
    console().print(t)


def _print_verification(reports: list[dict]) -> None:
    from rich.table import Table

    t = Table(title="msf-export --verify")
    for col in ("file", "precision", "images", "max |Δlogit|", "agreement", "F torch", "F onnx", "result"):
        t.add_column(col)
    for r in reports:
        t.add_row(r["file"], r["precision"], str(r["images"]),
                  "-" if r["max_abs_logit"] is None else f"{r['max_abs_logit']:.2e}",
                  f"{r['agreement']:.4%}",
                  "-" if r["f_score_torch"] is None else f"{r['f_score_torch']:.4f}",
                  "-" if r["f_score_onnx"] is None else f"{r['f_score_onnx']:.4f}",
                  "PASS" if r["ok"] else "FAIL: " + "; ".join(r["failures"]))
    console().print(t)


def entry() -> None:
    sys.exit(run_cli("msf-export", main))


if __name__ == "__main__":
    entry()
