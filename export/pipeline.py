"""Checkpoint -> verified ONNX (fp32/fp16/int8) [-> TensorRT engine], writing nothing partial."""

from __future__ import annotations

import os
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx

from msf.atomic import check_writable, temp_beside
from msf.contract import GraphContract, onnx_sidecar, write_sidecar
from msf.errors import MsfError
from msf.export.onnx_export import ExportSpec, check_contract, export_onnx, graph_summary
from msf.export.sidecar import build_sidecar, file_sha256
from msf.export.verify import graph_batches, load_verification_images, ort_runner, verify_session
from msf.model import MicroSegFormer, load_model
from msf.paths import WEIGHTS_PATH

PRECISIONS = ("fp32", "fp16", "int8")
# Layers an INT8 export keeps in float: the first patch embedding (3 input channels, the raw
# pixels) and the classifier. Measured on the 100 validation faces (benchmarks/BENCHMARKS.md):
# label agreement with fp32 98.2 % (worst face 90.7 %) against 97.9 % (worst 80.6 %) with both
# quantized; compute they hold is small. The classifier is decoder.cls in the fused graph and
# conv_seg (its published name) in the --attention reference graph.
INT8_FLOAT_LAYERS: tuple[str, ...] = ("patch_embed1", "decoder.cls", "conv_seg")


@dataclass
class ExportOptions:
    out: Path
    spec: ExportSpec = field(default_factory=ExportSpec)
    precision: str = "fp32"
    ckpt: str | None = None
    data: str | None = None
    verify: bool = True
    verify_images: int = 8
    calib_images: int = 64
    int8_float_layers: tuple[str, ...] = INT8_FLOAT_LAYERS
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
    check_writable(out.parent)


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
        raise MsfError("--precision int8 writes a QDQ file for ONNX Runtime; TensorRT engines are built FP16 "
                       "(--precision fp16)")
    if opts.precision == "int8" and spec.resolved_core == "attention23":
        # ORT's quantizer writes QuantizeLinear nodes that fail type inference in opset-23 graphs
        # (output_dtype vs zero-point type).
        raise MsfError("--precision int8 cannot quantize the opset-23 attention core: use --core mha or matmul")
    if opts.verify_images <= 0 or opts.calib_images <= 0:
        raise MsfError("--verify-images and --calib-images must be positive")
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
    contract = spec.contract
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
            calib, calib_src = load_verification_images(opts.data, opts.calib_images, seed=1, split="train",
                                                        ckpt=opts.ckpt)
            log(f"calibrating INT8 on {calib_src}")
            to_int8(src, tmp, graph_batches([im for im, _ in calib], contract.input),
                    keep_float=opts.int8_float_layers)
        else:
            onnx.save(fp32, tmp)
        check_contract(onnx.load(tmp, load_external_data=False), contract)  # the sidecar says what the file does
        sidecar = build_sidecar(fmt="onnx", precision=opts.precision, target=spec.target, spec=spec,
                                checkpoint_sha256=ckpt_sha, contract=contract)
        report = None
        if opts.verify:
            pairs, source = load_verification_images(opts.data, opts.verify_images, split="val", ckpt=opts.ckpt)
            report = verify_session(ort_runner(tmp), model, pairs, contract, opts.precision, str(opts.out), source)
            sidecar["verification"] = report.to_dict()
            if not report.ok:
                raise MsfError(f"verification failed for {opts.out}: {'; '.join(report.failures)} "
                               f"(nothing written; --no-verify keeps an unverified file)")
        os.replace(tmp, opts.out)
        write_sidecar(opts.out, sidecar)
        summary.update(graph=graph_summary(onnx.load(opts.out, load_external_data=False)),
                       bytes=opts.out.stat().st_size, verification=report.to_dict() if report else None)
        if opts.tensorrt:
            summary["engine"] = _build_engine(opts, fp32, sidecar, contract, profile, trt_version, stack, log)
    summary["seconds"] = round(time.perf_counter() - t0, 2)
    return summary


def _build_engine(opts: ExportOptions, fp32: onnx.ModelProto, sidecar: dict, contract: GraphContract, profile,
                  trt_version, stack: ExitStack, log) -> dict[str, Any]:
    from msf.export.tensorrt import build_engine, build_strategy

    strategy = build_strategy(trt_version, opts.precision)
    if strategy["onnx"] == "fp32" and opts.precision != "fp32":
        src = _tmp_beside(opts.out, stack, ".fp32.onnx")
        onnx.save(fp32, src)
    else:
        src = opts.out
    engine = opts.out.with_suffix(".engine")
    facts = build_engine(src, engine, precision=opts.precision, input_spec=contract.input, profile=profile,
                         workspace_mb=opts.workspace_mb, opt_level=opts.opt_level,
                         timing_cache=opts.timing_cache, log=log)
    meta = dict(sidecar, format="engine", source_onnx=str(opts.out), **facts)
    meta.pop("verification", None)
    meta["versions"]["tensorrt"] = facts["tensorrt"]
    write_sidecar(engine, meta)
    return {"file": str(engine), "bytes": engine.stat().st_size, **facts}


def verify_file(path: str | Path, ckpt: str | None, data: str | None, images: int = 8):
    """``msf-export --verify``: check an existing ONNX file against the checkpoint's fp32 model."""
    path = Path(path)
    if not path.is_file():
        raise MsfError(f"file not found: {path}")
    if path.suffix != ".onnx":
        raise MsfError(f"--verify takes an .onnx file, not {path.name}")
    side = onnx_sidecar(path)
    model: MicroSegFormer = load_model(ckpt)
    if ckpt is None and side.get("checkpoint_sha256") not in (None, file_sha256(WEIGHTS_PATH)):
        raise MsfError(f"{path} was exported from another checkpoint than the shipped weights: pass --ckpt")
    pairs, source = load_verification_images(data, images, split="val", ckpt=ckpt)
    return verify_session(ort_runner(path), model, pairs, GraphContract.from_dict(side), side["precision"],
                          str(path), source)
