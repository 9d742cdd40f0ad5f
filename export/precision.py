"""Precision variants of an exported fp32 ONNX graph: mixed FP16 and static INT8 (QDQ)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import onnx

from msf.errors import MsfError

# Kept in fp32 inside an fp16 graph: normalisation, softmax and reductions accumulate there
# (a decomposed or fp16 LayerNorm overflows and blocks TensorRT's fusions).
FP16_BLOCK_OPS = ["LayerNormalization", "Softmax", "ReduceMean", "ReduceSum", "ReduceMax", "Pow", "Sqrt",
                  "ArgMax", "Range"]

# Quantized in the INT8 graph: the weight GEMMs. LayerNorm, Softmax, GELU (Erf) and Resize stay float.
INT8_OPS = ["Conv", "MatMul", "Gemm"]


def to_fp16(proto: onnx.ModelProto, keep_io_types: bool = True) -> onnx.ModelProto:
    """Mixed-precision FP16 graph: fp16 weights and activations, blocked ops run in fp32 behind Casts.

    This is the graph TensorRT 11 builds strongly typed and ORT CUDA runs in fp16.
    """
    from onnxruntime.transformers.float16 import convert_float_to_float16

    block = FP16_BLOCK_OPS
    fp16 = convert_float_to_float16(proto, keep_io_types=keep_io_types, op_block_list=block)
    _cast_uint8_input_to_fp16(fp16)
    toposort(fp16.graph)
    onnx.checker.check_model(fp16)
    return fp16


def toposort(graph: onnx.GraphProto) -> None:
    """Order nodes so each comes after its producers (the fp16 converter appends input Casts last)."""
    ready = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        rest = []
        for node in pending:
            if all(i in ready for i in node.input):
                ordered.append(node)
                ready.update(node.output)
            else:
                rest.append(node)
        if len(rest) == len(pending):
            raise MsfError(f"graph has a cycle or a missing input near node {rest[0].name}")
        pending = rest
    del graph.node[:]
    graph.node.extend(ordered)


def _cast_uint8_input_to_fp16(proto: onnx.ModelProto) -> None:
    """A uint8 frame input is cast straight to fp16 (0..255 is exact in fp16) rather than via fp32."""
    names = {i.name for i in proto.graph.input if i.type.tensor_type.elem_type == onnx.TensorProto.UINT8}
    for node in proto.graph.node:
        if node.op_type == "Cast" and node.input and node.input[0] in names:
            for a in node.attribute:
                if a.name == "to" and a.i == onnx.TensorProto.FLOAT:
                    consumers = [n for n in proto.graph.node if node.output[0] in n.input]
                    # Only retarget when the consumer is itself fp16 (not a blocked fp32 op).
                    if consumers and all(n.op_type not in FP16_BLOCK_OPS for n in consumers):
                        a.i = onnx.TensorProto.FLOAT16


class _ArrayReader:
    """An ORT CalibrationDataReader over preprocessed input arrays."""

    def __init__(self, name: str, arrays: list[np.ndarray]) -> None:
        self._it: Iterator[np.ndarray] = iter(arrays)
        self.name = name

    def get_next(self):
        x = next(self._it, None)
        return None if x is None else {self.name: x}


def float_nodes(proto: onnx.ModelProto, layers: Sequence[str]) -> list[str]:
    """Names of the quantizable nodes inside ``layers`` (module paths such as ``patch_embed1`` or
    ``decoder.cls``, as the exporter names nodes ``/patch_embed1/proj/Conv``)."""
    prefixes = tuple("/" + layer.replace(".", "/") + "/" for layer in layers)
    prefixes += tuple("/" + layer + "/" for layer in layers)  # block names keep their dot: /block1.0/
    return [n.name for n in proto.graph.node if n.op_type in INT8_OPS and n.name.startswith(prefixes)]


def to_int8(fp32_path: str | Path, out_path: str | Path, calibration: list[np.ndarray],
            keep_float: Sequence[str] = ()) -> None:
    """Static QDQ quantization (per-channel int8 weights, int8 activations) calibrated on real
    inputs; the layers named in ``keep_float`` (see ``float_nodes``) stay in float."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if not calibration:
        raise MsfError("INT8 export needs calibration images (--data or the data root)")
    name = onnx.load(str(fp32_path), load_external_data=False).graph.input[0].name
    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        try:
            quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
            src = pre
        except Exception:  # noqa: BLE001  (pre-processing is an optimisation, not a requirement)
            src = Path(fp32_path)
        exclude = float_nodes(onnx.load(str(src), load_external_data=False), keep_float) if keep_float else []
        if keep_float and not exclude:
            raise MsfError(f"no quantizable nodes in the layers to keep in float: {', '.join(keep_float)}")
        quantize_static(
            str(src), str(out_path), _ArrayReader(name, calibration), nodes_to_exclude=exclude,
            quant_format=QuantFormat.QDQ, op_types_to_quantize=INT8_OPS, per_channel=True,
            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            extra_options={"ActivationSymmetric": True, "WeightSymmetric": True},
        )
