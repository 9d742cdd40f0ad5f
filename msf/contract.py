"""The graph I/O contract: what an exported graph (or a backend) takes and returns.

This module is the one place that knows a graph's ends. Export writes it into the sidecar
``<artifact>.json``; every backend reads it back; ``msf.frames.to_input`` turns BGR frames into
the input it describes. Light on purpose: no torch, onnx or cv2 imports, so the runtime can use
it without loading the export stack.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from msf.atomic import atomic_write
from msf.errors import MsfError
from msf.labels import NUM_CLASSES

DEFAULT_SIZE = 512  # the square input size the model was trained and is exported at

# How a picture is resized to the model's input (``msf.frameops.fit``): "block+bilinear" averages
# k×k blocks by the largest whole factor k that leaves a shrink under 2×, then one bilinear step
# (plain INTER_AREA where no whole factor fits; bilinear when enlarging); "area" is one INTER_AREA
# resize (bilinear when enlarging). Training, msf-eval, export verification and the runtime all
# use the contract's rule. "block+bilinear" is the one rule, chosen by measurement
# (benchmarks/check_resize_rule.py, results/resize_rule_cpu.md): the shipped weights at their 384²
# default on their 100 validation faces score F 0.7660 with it against 0.7659 with "area" (the
# rule they were trained with), and a 720p frame's letterbox to 384×216 costs 0.38 against 3.29 ms
# on one core (I420 planes: 0.25 against 1.92 ms), which the pipeline's 100 FPS bar needs.
RESIZE_RULES = ("block+bilinear", "area")
DEFAULT_RESIZE = "block+bilinear"
# A sidecar written before the rule was recorded: every msf runtime since the block shrink has made
# such a graph's inputs with "block+bilinear", so it keeps getting them.
LEGACY_RESIZE = "block+bilinear"

# Model-file extensions, by kind (the only definition: CLIs and backends import these).
CHECKPOINT_EXTS: tuple[str, ...] = (".pt", ".pth")
ONNX_EXTS: tuple[str, ...] = (".onnx",)
ENGINE_EXTS: tuple[str, ...] = (".engine", ".plan")
MODEL_EXTS: tuple[str, ...] = CHECKPOINT_EXTS + ONNX_EXTS + ENGINE_EXTS

INPUT_DTYPES = ("uint8", "float32", "float16")
OUTPUT_KINDS = ("logits", "labels")
IO_KINDS = ("float", "uint8")
COLORS = ("rgb", "bgr")
LAYOUTS = ("NCHW", "NHWC")


def _check(value: Any, allowed: Sequence[Any], what: str) -> None:
    if value not in allowed:
        raise ValueError(f"{what} must be one of {', '.join(map(str, allowed))}, not {value!r}")


def _check_dim(value: int | None, what: str) -> None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value <= 0):
        raise ValueError(f"{what} must be a positive integer or None (dynamic), not {value!r}")


@dataclass(frozen=True)
class InputSpec:
    """The graph's input: BGR frames become ``dtype`` in ``layout`` and ``color`` order, times ``scale``.

    ``size`` is the square side (None: any size); ``batch`` the fixed batch (None: any batch);
    ``resize`` the rule pictures are resized to ``size`` with (``RESIZE_RULES``, see above).
    """

    name: str = "image"
    dtype: str = "float32"
    layout: str = "NCHW"
    color: str = "rgb"
    scale: float = 1 / 255
    size: int | None = DEFAULT_SIZE
    batch: int | None = None
    resize: str = DEFAULT_RESIZE

    def __post_init__(self) -> None:
        _check(self.resize, RESIZE_RULES, "input resize")
        _check(self.dtype, INPUT_DTYPES, "input dtype")
        _check(self.layout, LAYOUTS, "input layout")
        _check(self.color, COLORS, "input color")
        _check_dim(self.size, "input size")
        _check_dim(self.batch, "input batch")
        if self.dtype == "uint8" and self.scale != 1.0:
            raise ValueError("a uint8 input carries raw pixel values: scale must be 1.0")

    def shape(self, batch: int = 1, size: int = DEFAULT_SIZE) -> tuple[int, int, int, int]:
        """The input array's shape (fixed dimensions win over ``batch``/``size``)."""
        n, s = self.batch or batch, self.size or size
        return (n, s, s, 3) if self.layout == "NHWC" else (n, 3, s, s)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> InputSpec:
        """From a sidecar's ``input`` dict (unknown keys ignored; old sidecars without ``scale`` or
        ``resize`` accepted: ``resize`` then is ``LEGACY_RESIZE``)."""
        dtype = d.get("dtype", "float32")
        scale = d.get("scale")
        if isinstance(scale, str):  # "1/255" as checkpoints record it
            num, _, den = scale.partition("/")
            scale = float(num) / float(den or 1)
        if scale is None:
            scale = 1.0 if dtype == "uint8" else 1 / 255
        return cls(name=d.get("name", "image"), dtype=dtype, layout=d.get("layout", "NCHW"),
                   color=d.get("color", "rgb"), scale=float(scale), size=d.get("size"), batch=d.get("batch"),
                   resize=d.get("resize", LEGACY_RESIZE))


@dataclass(frozen=True)
class OutputSpec:
    """The graph's output: ``logits`` (N×classes×H×W) or ``labels`` (N×H×W class ids) of ``dtype``."""

    name: str = "logits"
    kind: str = "logits"
    dtype: str = "float32"
    classes: int = NUM_CLASSES

    def __post_init__(self) -> None:
        _check(self.kind, OUTPUT_KINDS, "output kind")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> OutputSpec:
        kind = d.get("kind", "logits")
        return cls(name=d.get("name", kind), kind=kind,
                   dtype=d.get("dtype", "uint8" if kind == "labels" else "float32"),
                   classes=int(d.get("classes", NUM_CLASSES)))


@dataclass(frozen=True)
class GraphEnds:
    """The selectable ends of an exported graph (msf-export's --io, --color, --head).

    ``io``: float (float32 NCHW RGB in [0, 1]) or uint8 (uint8 NHWC frames, /255 in the graph);
    ``color``: channel order of a uint8 input; ``head``: logits or labels output.
    """

    io: str = "float"
    color: str = "rgb"
    head: str = "logits"

    def __post_init__(self) -> None:
        _check(self.io, IO_KINDS, "io")
        _check(self.color, COLORS, "color")
        _check(self.head, OUTPUT_KINDS, "head")

    def contract(self, size: int | None = DEFAULT_SIZE, batch: int | None = None) -> GraphContract:
        """The contract of a graph exported with these ends (any precision: fp16 and int8 graphs
        keep these I/O types, the reduced precision is inside)."""
        if self.io == "uint8":
            inp = InputSpec(dtype="uint8", layout="NHWC", color=self.color, scale=1.0, size=size, batch=batch)
        else:
            inp = InputSpec(dtype="float32", layout="NCHW", color="rgb", scale=1 / 255, size=size, batch=batch)
        out = OutputSpec(name=self.head, kind=self.head, dtype="uint8" if self.head == "labels" else "float32")
        return GraphContract(inp, out)


@dataclass(frozen=True)
class GraphContract:
    """A graph's input and output."""

    input: InputSpec
    output: OutputSpec

    def to_dict(self) -> dict[str, Any]:
        return {"input": self.input.to_dict(), "output": self.output.to_dict()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> GraphContract:
        """From a sidecar (or any dict with ``input`` and ``output``); a malformed one is an MsfError."""
        try:
            return cls(InputSpec.from_dict(d.get("input") or {}), OutputSpec.from_dict(d.get("output") or {}))
        except (AttributeError, TypeError, ValueError) as exc:
            raise MsfError(f"the sidecar's input/output contract is not valid: {exc}") from None

    def with_input(self, **changes: Any) -> GraphContract:
        return replace(self, input=replace(self.input, **changes))

    @property
    def ends(self) -> GraphEnds:
        """The msf-export options that write a graph with this contract."""
        io = "uint8" if self.input.dtype == "uint8" else "float"
        return GraphEnds(io, self.input.color if io == "uint8" else "rgb", self.output.kind)


# What msf-video and Segmenter run when given a checkpoint: uint8 BGR frames in, class ids out.
RUNTIME_ENDS = GraphEnds("uint8", "bgr", "labels")
RUNTIME_CONTRACT = RUNTIME_ENDS.contract()
# What the trained model (and the published reference graph) takes: float32 NCHW RGB in [0, 1], logits out.
MODEL_CONTRACT = GraphEnds().contract()


def contract_from_io(inp: tuple[str, str, Sequence[Any]], out: tuple[str, str, Sequence[Any]],
                     color: str = "rgb") -> GraphContract:
    """The contract of a graph known only by its I/O signatures ``(name, numpy dtype name, shape)``
    (a file exported elsewhere, without a sidecar). A uint8 input is NHWC; its channel order
    cannot be read from the graph, so ``color`` says it (msf-export's default is rgb)."""
    (i_name, i_dtype, i_shape), (o_name, o_dtype, o_shape) = inp, out
    nhwc = i_dtype == "uint8"
    dims = list(i_shape)

    def fixed(v: Any) -> int | None:
        return v if isinstance(v, int) and v > 0 else None

    size = fixed(dims[1 if nhwc else 2]) if len(dims) == 4 else None
    spec = InputSpec(name=i_name, dtype=i_dtype if i_dtype in INPUT_DTYPES else "float32",
                     layout="NHWC" if nhwc else "NCHW", color=color if nhwc else "rgb",
                     scale=1.0 if nhwc else 1 / 255, size=size, batch=fixed(dims[0]) if dims else None)
    kind = "labels" if len(list(o_shape)) == 3 else "logits"
    classes = fixed(list(o_shape)[1]) if kind == "logits" else None
    return GraphContract(spec, OutputSpec(name=o_name, kind=kind, dtype=o_dtype, classes=classes or NUM_CLASSES))


# ---- sidecar files ---------------------------------------------------------------------------

def sidecar_path(artifact: str | Path) -> Path:
    """``m.onnx`` -> ``m.onnx.json``."""
    return Path(f"{artifact}.json")


def read_sidecar(artifact: str | Path) -> dict[str, Any] | None:
    """The artifact's sidecar dict, or None when it has none (a file exported elsewhere)."""
    p = sidecar_path(artifact)
    if not p.is_file():
        return None
    try:
        data = json.loads(p.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MsfError(f"cannot read the sidecar {p} ({type(exc).__name__}: {exc}); delete or fix it") from None
    if not isinstance(data, dict):
        raise MsfError(f"the sidecar {p} is not a JSON object; delete or fix it")
    return data


def write_sidecar(artifact: str | Path, data: Mapping[str, Any]) -> Path:
    """Write ``data`` as the artifact's sidecar (atomically); returns its path."""
    p = sidecar_path(artifact)
    write_json_atomic(p, data)
    return p


def read_contract(artifact: str | Path) -> GraphContract | None:
    """The contract recorded in the artifact's sidecar, or None without one."""
    side = read_sidecar(artifact)
    return GraphContract.from_dict(side) if side is not None else None


# ---- small file helpers both export and runtime use -------------------------------------------

def write_json_atomic(path: str | Path, data: Mapping[str, Any]) -> None:
    """``data`` as indented JSON; a reader never sees half a file."""
    text = json.dumps(data, indent=2, default=str) + "\n"
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def library_versions() -> dict[str, str | None]:
    """Versions of msf and the libraries an artifact depends on (None when not installed);
    read from package metadata, so nothing heavy is imported (except TensorRT when installed
    outside pip, as JetPack and NVIDIA containers do)."""
    import importlib.metadata as md

    from msf import __version__

    out: dict[str, str | None] = {"msf": __version__}
    for name, dists in (("torch", ["torch"]), ("onnx", ["onnx"]),
                        ("onnxruntime", ["onnxruntime", "onnxruntime-gpu"]), ("tensorrt", ["tensorrt"])):
        out[name] = None
        for d in dists:
            try:
                out[name] = md.version(d)
                break
            except md.PackageNotFoundError:
                continue
    if out["tensorrt"] is None:
        try:
            import tensorrt  # noqa: F401

            out["tensorrt"] = tensorrt.__version__
        except Exception:  # noqa: BLE001  (absent, or a broken install: no version to report)
            pass
    return out


def onnx_sidecar(path: str | Path) -> dict[str, Any]:
    """The ONNX file's sidecar, or, for a file exported elsewhere, the facts its graph states:
    ``precision`` (int8 with Q/DQ nodes, fp16 with half initializers, else fp32), ``input`` and
    ``output``. Imports onnx only when the file has no sidecar."""
    side = read_sidecar(path)
    if side is not None:
        return side
    try:
        import onnx
        from onnx.helper import tensor_dtype_to_np_dtype

        proto = onnx.load(str(path), load_external_data=False)
        sigs = []
        for vi in (proto.graph.input[0], proto.graph.output[0]):
            t = vi.type.tensor_type
            sigs.append((vi.name, tensor_dtype_to_np_dtype(t.elem_type).name,
                         [d.dim_value or d.dim_param for d in t.shape.dim]))
    except ImportError:
        raise MsfError(f"{path} has no sidecar and reading its graph needs onnx: pip install onnx") from None
    except Exception as exc:  # noqa: BLE001  (onnx raises DecodeError and friends)
        raise MsfError(f"{path} is not a readable ONNX model ({type(exc).__name__})") from None
    quant = any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in proto.graph.node)
    half = any(t.data_type == onnx.TensorProto.FLOAT16 for t in proto.graph.initializer)
    contract = contract_from_io(sigs[0], sigs[1])
    return {"format": "onnx", "precision": "int8" if quant else "fp16" if half else "fp32",
            **contract.to_dict(), "checkpoint_sha256": None}
