"""Checkpoint -> verified ONNX (fp32/fp16/int8) [-> TensorRT engine], writing nothing partial."""

from __future__ import annotations

import os
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import onnx

from msf.atomic import temp_beside
from msf.errors import MsfError
from msf.export.onnx_export import ExportSpec, export_onnx, graph_summary
from msf.export.sidecar import build_sidecar, file_sha256, read_sidecar, sidecar_path, write_json_atomic
from msf.export.verify import (
    graph_size,
    load_verification_images,
    make_input,
    ort_runner,
    verify_session,
)
from msf.model import MicroSegFormer, load_model
from msf.paths import WEIGHTS_PATH

PRECISIONS = ("fp32", "fp16", "int8")


@dataclass
class ExportOptions:
    out: Path
    spec: ExportSpec = field(default_factory=ExportSpec)
    precision: str = "fp32"
    ckpt: str | None = None
    data: str | None = None
    verify: bool = True
    verify_images: int = 8
    calib_images: int = 32
    tensorrt: bool = False
    profile_batch: str | None = None
    profile_size: str | None = None
    workspace_mb: int = 1024
    opt_level: int = 3
    timing_cache: str | None = None


def check_output_path(out: Path, suffix: str = ".onnx") -> None:
    """Fail early (before any work) when the output cannot be written."""
    if out.suffix != suffix:
        raise MsfError(f"output must end in {suffix}: {out}")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise MsfError(f"output folder does not exist: {parent}")
    try:  # a real probe: os.access() says yes to root even where writing fails
        fd, probe = tempfile.mkstemp(prefix=".msf-probe-", dir=parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise MsfError(f"output folder is not writable: {parent} ({exc.strerror})") from None


def _tmp_beside(path: Path, stack: ExitStack, suffix: str) -> Path:
    tmp = Path(temp_beside(path, suffix))
    stack.callback(lambda: tmp.unlink(missing_ok=True))
    return tmp


def run_export(opts: ExportOptions, log=print) -> dict[str, Any]:
    """Export, convert precision, verify and (optionally) build a TensorRT engine."""
    t0 = time.perf_counter()
    spec = opts.spec
    spec.validate()
    if opts.precision not in PRECISIONS:
        raise MsfError(f"unknown precision {opts.precision!r} ({', '.join(PRECISIONS)})")
    if opts.precision == "int8" and spec.target == "tensorrt":
        raise MsfError("--precision int8 is for ONNX Runtime CPU; TensorRT engines are built FP16")
    if opts.precision == "int8" and spec.core is None:
        # ORT's quantizer writes QuantizeLinear nodes that fail type inference in opset-23 graphs
        # (output_dtype vs zero-point type), so INT8 starts from the opset-17 MHA graph.
        spec = replace(spec, core="mha")
    check_output_path(opts.out)
    trt_version = None
    if opts.tensorrt:
        from msf.export.tensorrt import Profile, require_tensorrt

        trt_version, _ = require_tensorrt()  # before any file is written
        profile = Profile.parse(opts.profile_batch, opts.profile_size, spec.batch, spec.size)
    model = load_model(opts.ckpt)
    ckpt_path = Path(opts.ckpt) if opts.ckpt else WEIGHTS_PATH
    ckpt_sha = file_sha256(ckpt_path)
    pairs, source = (None, "")
    summary: dict[str, Any] = {"file": str(opts.out), "precision": opts.precision, "attention": spec.attention,
                               "attention_core": spec.resolved_core, "target": spec.target}
    with ExitStack() as stack:
        fp32 = export_onnx(model, spec)
        tmp = _tmp_beside(opts.out, stack, ".onnx")
        if opts.precision == "fp16":
            from msf.export.precision import to_fp16

            onnx.save(to_fp16(fp32), tmp)
        elif opts.precision == "int8":
            from msf.export.precision import to_int8

            src = _tmp_beside(opts.out, stack, ".fp32.onnx")
            onnx.save(fp32, src)
            side = build_sidecar(fmt="onnx", precision="fp32", target=spec.target, spec=spec, checkpoint_sha256=None)
            calib, calib_src = load_verification_images(opts.data, opts.calib_images, seed=1)
            log(f"calibrating INT8 on {calib_src}")
            to_int8(src, tmp, [make_input(im, graph_size(side), side) for im, _ in calib])
        else:
            onnx.save(fp32, tmp)
        sidecar = build_sidecar(fmt="onnx", precision=opts.precision, target=spec.target, spec=spec,
                                checkpoint_sha256=ckpt_sha)
        report = None
        if opts.verify:
            pairs, source = load_verification_images(opts.data, opts.verify_images)
            report = verify_session(ort_runner(tmp), model, pairs, sidecar, graph_size(sidecar),
                                    opts.precision, str(opts.out), source)
            sidecar["verification"] = report.to_dict()
            if not report.ok:
                raise MsfError(f"verification failed for {opts.out}: {'; '.join(report.failures)} "
                               f"(nothing written; --no-verify keeps an unverified file)")
        os.replace(tmp, opts.out)
        write_json_atomic(sidecar_path(opts.out), sidecar)
        summary.update(graph=graph_summary(onnx.load(opts.out, load_external_data=False)),
                       bytes=opts.out.stat().st_size, verification=report.to_dict() if report else None)
        if opts.tensorrt:
            summary["engine"] = _build_engine(opts, fp32, sidecar, profile, trt_version, stack, log)
    summary["seconds"] = round(time.perf_counter() - t0, 2)
    return summary


def _build_engine(opts: ExportOptions, fp32: onnx.ModelProto, sidecar: dict, profile, trt_version,
                  stack: ExitStack, log) -> dict[str, Any]:
    from msf.export.tensorrt import build_engine, build_strategy

    strategy = build_strategy(trt_version, opts.precision)
    if strategy["onnx"] == "fp32" and opts.precision != "fp32":
        src = _tmp_beside(opts.out, stack, ".fp32.onnx")
        onnx.save(fp32, src)
    else:
        src = opts.out
    engine = opts.out.with_suffix(".engine")
    facts = build_engine(src, engine, precision=opts.precision, input_meta=sidecar["input"], profile=profile,
                         workspace_mb=opts.workspace_mb, opt_level=opts.opt_level,
                         timing_cache=opts.timing_cache, log=log)
    meta = dict(sidecar, format="engine", source_onnx=str(opts.out), **facts)
    meta.pop("verification", None)
    meta["versions"]["tensorrt"] = facts["tensorrt"]
    write_json_atomic(sidecar_path(engine), meta)
    return {"file": str(engine), "bytes": engine.stat().st_size, **facts}


def sidecar_for(path: Path) -> dict[str, Any]:
    """The artifact's sidecar, or one inferred from the graph for files exported elsewhere."""
    side = read_sidecar(path)
    if side is not None:
        return side
    proto = onnx.load(path, load_external_data=False)
    g = graph_summary(proto)
    inp, out = g["inputs"][0], g["outputs"][0]
    nhwc = inp["dtype"] == "uint8"
    size = inp["shape"][1 if nhwc else 2]
    quant = any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in proto.graph.node)
    half = any(t.data_type == onnx.TensorProto.FLOAT16 for t in proto.graph.initializer)
    precision = "int8" if quant else "fp16" if half else "fp32"
    spec = ExportSpec(size=size if isinstance(size, int) and size > 0 else None)
    side = build_sidecar(fmt="onnx", precision=precision, target="onnxruntime", spec=spec, checkpoint_sha256=None)
    side["input"].update(dtype=inp["dtype"], layout="NHWC" if nhwc else "NCHW", name=inp["name"])
    kind = "labels" if len(out["shape"]) == 3 else "logits"
    side["output"].update(name=out["name"], kind=kind)
    return side


def verify_file(path: str | Path, ckpt: str | None, data: str | None, images: int = 8):
    """``msf-export --verify``: check an existing ONNX file against the checkpoint's fp32 model."""
    path = Path(path)
    if not path.is_file():
        raise MsfError(f"file not found: {path}")
    if path.suffix != ".onnx":
        raise MsfError(f"--verify takes an .onnx file, not {path.name}")
    try:
        side = sidecar_for(path)
    except Exception as exc:  # noqa: BLE001  (onnx raises DecodeError and friends)
        raise MsfError(f"{path} is not a readable ONNX model ({type(exc).__name__})") from None
    model: MicroSegFormer = load_model(ckpt)
    if ckpt is None and side.get("checkpoint_sha256") not in (None, file_sha256(WEIGHTS_PATH)):
        raise MsfError(f"{path} was exported from another checkpoint than the shipped weights: pass --ckpt")
    pairs, source = load_verification_images(data, images)
    return verify_session(ort_runner(path), model, pairs, side, graph_size(side), side["precision"],
                          str(path), source)
