"""ONNX export of the reference (training) graph or the deploy rewrite, for a target runtime."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import onnx
import torch
from onnx import helper
from torch import nn

from msf.contract import DEFAULT_SIZE, GraphContract, GraphEnds, contract_from_io
from msf.errors import MsfError
from msf.export.rewrite import deploy
from msf.model import MicroSegFormer

TARGETS = ("onnxruntime", "tensorrt")
# What "fused" emits per target. ORT: com.microsoft.MultiHeadAttention measured fastest on ORT CPU
# (benchmarks/BENCHMARKS.md); TensorRT cannot parse com.microsoft ops and its fused-attention
# pass matches the pre-scaled MatMul->Softmax->MatMul pattern.
DEFAULT_CORE = {"onnxruntime": "mha", "tensorrt": "matmul"}
CORES = ("matmul", "mha", "attention23")


@dataclass(frozen=True)
class ExportSpec:
    """Everything that decides the exported graph."""

    attention: str = "fused"         # fused | reference
    target: str = "onnxruntime"
    core: str | None = None          # matmul | mha | attention23 (None: the target's default)
    ends: GraphEnds = GraphEnds()
    batch: int | None = None         # None = dynamic
    size: int | None = DEFAULT_SIZE  # None = dynamic H and W
    opset: int | None = None

    @property
    def contract(self) -> GraphContract:
        """What the exported graph takes and returns."""
        return self.ends.contract(self.size, self.batch)

    @property
    def resolved_core(self) -> str | None:
        if self.attention == "reference":
            return None
        return self.core or DEFAULT_CORE[self.target]

    @property
    def resolved_opset(self) -> int:
        need = 23 if self.resolved_core == "attention23" else 17
        return max(self.opset or need, need)

    def validate(self) -> None:
        if self.attention not in ("fused", "reference"):
            raise MsfError(f"unknown attention {self.attention!r} (fused or reference)")
        if self.target not in TARGETS:
            raise MsfError(f"unknown target {self.target!r} ({', '.join(TARGETS)})")
        if self.core is not None and self.core not in CORES:
            raise MsfError(f"unknown attention core {self.core!r} ({', '.join(CORES)})")
        if self.target == "tensorrt" and self.resolved_core == "mha":
            raise MsfError("TensorRT cannot parse com.microsoft.MultiHeadAttention: use --core matmul or attention23")
        if self.opset is not None and self.opset < 17:
            raise MsfError(f"opset {self.opset} is too old: LayerNormalization needs opset 17")
        for value, flag in ((self.batch, "--batch"), (self.size, "--size")):
            if value is not None and value <= 0:
                raise MsfError(f"{flag} must be a positive integer or dynamic, not {value}")


class _ReferenceWithEnds(nn.Module):
    """The training graph, untouched, with graph ends added outside it (no folding)."""

    def __init__(self, model: MicroSegFormer, ends: GraphEnds) -> None:
        super().__init__()
        self.model, self.ends = model, ends

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = image
        if self.ends.io == "uint8":
            x = image.permute(0, 3, 1, 2).float() / 255.0
            if self.ends.color == "bgr":
                x = x.flip(1)
        logits = self.model.forward_reference(x)
        return logits.argmax(1).to(torch.uint8) if self.ends.head == "labels" else logits


def build_export_module(model: MicroSegFormer, spec: ExportSpec) -> nn.Module:
    """The module that gets traced: the untouched training graph, or the deploy rewrite."""
    if spec.attention == "reference":
        return _ReferenceWithEnds(model.eval(), spec.ends).eval()
    core = spec.resolved_core
    # attention23 is traced as the contrib MHA node, then renamed (the TorchScript exporter stops at opset 20).
    return deploy(model, "mha" if core == "attention23" else core, spec.ends, spec.size)


def example_input(spec: ExportSpec, batch: int = 1, size: int = DEFAULT_SIZE) -> torch.Tensor:
    """A random tensor in the spec's input contract (what the exporter traces with)."""
    shape = spec.contract.input.shape(batch, size)
    if spec.contract.input.dtype == "uint8":
        return torch.randint(0, 256, shape, dtype=torch.uint8)
    return torch.rand(*shape)


def export_onnx(model: MicroSegFormer, spec: ExportSpec) -> onnx.ModelProto:
    """Trace and export ``model`` as described by ``spec``; returns the checked ONNX model."""
    spec.validate()
    module = build_export_module(model, spec)
    x = example_input(spec)
    contract = spec.contract
    in_name, out_name = contract.input.name, contract.output.name
    dyn: dict[str, dict[int, str]] = {in_name: {}, out_name: {}}
    if spec.batch is None:
        dyn[in_name][0] = dyn[out_name][0] = "batch"
    if spec.size is None:
        h_ax, w_ax = (1, 2) if contract.input.layout == "NHWC" else (2, 3)
        dyn[in_name].update({h_ax: "height", w_ax: "width"})
        o_h, o_w = (1, 2) if contract.output.kind == "labels" else (2, 3)
        dyn[out_name].update({o_h: "height", o_w: "width"})
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (x,), buf, dynamo=False, opset_version=min(spec.resolved_opset, 20),
                          input_names=[in_name], output_names=[out_name],
                          dynamic_axes={k: v for k, v in dyn.items() if v} or None,
                          custom_opsets={"com.microsoft": 1}, do_constant_folding=True)
    proto = onnx.load_from_string(buf.getvalue())
    if spec.resolved_opset > 20:
        proto = _upgrade(proto, spec.resolved_opset)
    if spec.resolved_core == "attention23":
        _mha_to_attention23(proto)
    _name_output_dims(proto, spec)
    proto.producer_name = "msf"
    onnx.checker.check_model(proto)
    check_contract(proto, contract)
    return proto


def graph_contract(proto: onnx.ModelProto, color: str = "rgb") -> GraphContract:
    """The contract read from a graph's own first input and output (dtype, layout, fixed dims)."""
    g = graph_summary(proto)
    sig = [(s["name"], s["dtype"], s["shape"]) for s in (g["inputs"][0], g["outputs"][0])]
    return contract_from_io(sig[0], sig[1], color=color)


def check_contract(proto: onnx.ModelProto, contract: GraphContract) -> None:
    """Fail when a written graph does not take and return what its sidecar will say."""
    got = graph_contract(proto, color=contract.input.color)
    if got != contract:
        raise MsfError(f"internal error: the graph's I/O {got.to_dict()} differs from its contract "
                       f"{contract.to_dict()}")


def _name_output_dims(proto: onnx.ModelProto, spec: ExportSpec) -> None:
    """Give the output the same readable dims as the input (the tracer leaves invented names)."""
    num_classes = None
    out = proto.graph.output[0].type.tensor_type.shape
    dims = ["batch" if spec.batch is None else spec.batch]
    if spec.ends.head == "logits":
        num_classes = out.dim[1].dim_value or None
        dims.append(num_classes or "classes")
    dims += [spec.size or "height", spec.size or "width"]
    for d, v in zip(out.dim, dims):
        if isinstance(v, int):
            d.dim_value = v
        else:
            d.dim_param = v


def _upgrade(proto: onnx.ModelProto, opset: int) -> onnx.ModelProto:
    from onnx import version_converter

    return version_converter.convert_version(proto, opset)


def _mha_to_attention23(proto: onnx.ModelProto) -> None:
    """Replace contrib MultiHeadAttention nodes (3-D q/k/v, pre-scaled) with opset-23 Attention."""
    graph = proto.graph
    for i, node in enumerate(graph.node):
        if node.domain == "com.microsoft" and node.op_type == "MultiHeadAttention":
            heads = next(a.i for a in node.attribute if a.name == "num_heads")
            new = helper.make_node("Attention", list(node.input[:3]), list(node.output[:1]),
                                   name=node.name or f"Attention_{i}", q_num_heads=heads,
                                   kv_num_heads=heads, scale=1.0)
            graph.node.remove(node)
            graph.node.insert(i, new)
    if not any(n.domain == "com.microsoft" for n in graph.node):
        keep = [o for o in proto.opset_import if o.domain != "com.microsoft"]
        del proto.opset_import[:]
        proto.opset_import.extend(keep)


def graph_summary(proto: onnx.ModelProto) -> dict:
    """Opset, node count, op histogram and I/O signatures of an ONNX model."""
    from collections import Counter

    def sig(vi):
        t = vi.type.tensor_type
        dims = [d.dim_param or d.dim_value for d in t.shape.dim]
        return {"name": vi.name, "dtype": onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name, "shape": dims}

    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    return {"opset": opset, "nodes": len(proto.graph.node),
            "ops": dict(Counter(n.op_type for n in proto.graph.node).most_common()),
            "inputs": [sig(v) for v in proto.graph.input], "outputs": [sig(v) for v in proto.graph.output]}
