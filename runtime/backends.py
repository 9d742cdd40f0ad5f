"""Inference backends behind one small interface.

A backend takes a batch in its graph's input contract (``backend.contract.input``: dtype,
layout, colour, size, batch; see ``msf.contract``) and returns its output (``contract.output``:
``labels`` N×H×W uint8 or ``logits`` N×C×H×W float32). Heavy libraries are imported inside the
backend that needs them: a CPU-only install never imports CUDA, TensorRT or OpenVINO.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from msf.atomic import atomic_write
from msf.contract import (
    CHECKPOINT_EXTS,
    DEFAULT_SIZE,
    ENGINE_EXTS,
    MODEL_CONTRACT,
    MODEL_EXTS,
    RUNTIME_CONTRACT,
    GraphContract,
    GraphEnds,
    contract_from_io,
    file_sha256,
    read_sidecar,
    write_sidecar,
)
from msf.errors import MsfError

# Backend names create_backend (and the CLIs' --backend) accept. ``pytorch`` runs the deploy
# graph (what the exports run), ``pytorch-reference`` the training graph as published.
BACKENDS = ("auto", "onnxruntime", "pytorch", "pytorch-reference", "openvino", "tensorrt", "null")
DEPRECATED_BACKENDS = {"pytorch-eager": "pytorch-reference"}


def pad_batch(x: Any, fixed: int | None) -> tuple[Any, int]:
    """``x`` (a numpy array or torch tensor, batch first) zero-padded to a graph's ``fixed``
    batch, and its own length (the padding's outputs are to be dropped); a longer batch is refused.
    The one place fixed-batch graphs are fed: every backend's ``infer`` goes through it."""
    n = len(x)
    if fixed is None or n == fixed:
        return x, n
    if n > fixed:
        raise MsfError(f"the graph takes batches of {fixed}, got {n}")
    if isinstance(x, np.ndarray):
        return np.concatenate([x, np.zeros((fixed - n,) + x.shape[1:], dtype=x.dtype)]), n
    import torch

    return torch.cat([x, x.new_zeros((fixed - n,) + tuple(x.shape[1:]))]), n


class Backend:
    """Base class: ``infer`` one batch; ``name``, ``precision`` and ``device`` describe what runs,
    ``contract`` what it takes and returns (``input_spec`` and ``output_kind`` are its parts).

    Abilities are declared, not probed: ``device_frames`` backends run ``infer_on_device`` on a
    torch tensor already on ``frames_device`` (the output stays there; float inputs in
    ``float_dtype``); ``max_batch`` is a fixed graph batch, and ``batches`` splits any number of
    inputs into runs the graph takes."""

    name = "backend"
    precision = "fp32"
    device = "cpu"
    device_frames = False
    frames_device: str | None = None
    float_dtype: Any = None  # torch dtype of float inputs on the device path (None: the contract's)

    def __init__(self, contract: GraphContract, run_size: int = DEFAULT_SIZE) -> None:
        self.contract = contract
        self.input_spec = contract.input
        self.output_kind = contract.output.kind
        self.run_size = run_size

    @property
    def size(self) -> int:
        """The square input size this backend is run at: the graph's own, or for a graph of
        dynamic size the size asked for (``create_backend(size=...)``)."""
        return self.input_spec.size or getattr(self, "run_size", DEFAULT_SIZE)

    @property
    def max_batch(self) -> int | None:
        """The graph's fixed batch, or None when any batch runs."""
        return self.input_spec.batch

    def batches(self, n: int) -> list[slice]:
        """How ``n`` inputs are run: all at once, or in chunks of the graph's fixed batch (the
        last one padded by ``infer``)."""
        step = self.max_batch or max(1, n)
        return [slice(i, min(i + step, n)) for i in range(0, n, step)]

    def infer(self, batch: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def infer_on_device(self, x: Any) -> Any:
        """The graph on ``x``, a torch tensor on ``frames_device`` (``device_frames`` backends)."""
        raise MsfError(f"{self.describe()} cannot take frames on its device")

    def _fixed_batch(self, batch: np.ndarray, run) -> np.ndarray:
        """``run(batch)`` with the batch padded to a fixed graph batch (``pad_batch``)."""
        padded, n = pad_batch(batch, self.input_spec.batch)
        out = run(padded)
        return out if n == len(padded) else out[:n]

    def labels(self, batch: np.ndarray) -> np.ndarray:
        """Class ids (N×H×W uint8) whatever the graph returns."""
        out = self.infer(batch)
        return out.astype(np.uint8, copy=False) if self.output_kind == "labels" else out.argmax(1).astype(np.uint8)

    def describe(self) -> str:
        return f"{self.name} {self.precision} ({self.device})"

    def close(self) -> None:  # noqa: B027  (optional hook)
        pass


def _ort_dtype(ort_type: str) -> str:
    """``tensor(float)`` -> ``float32`` (numpy names, as the contract uses)."""
    inner = ort_type[len("tensor("):-1] if ort_type.startswith("tensor(") else ort_type
    return {"float": "float32", "double": "float64", "float16": "float16"}.get(inner, inner)


def session_contract(session, color: str = "rgb") -> GraphContract:
    """The contract an ONNX Runtime session's own first input and output state (no sidecar)."""
    i, o = session.get_inputs()[0], session.get_outputs()[0]
    return contract_from_io((i.name, _ort_dtype(i.type), list(i.shape)),
                            (o.name, _ort_dtype(o.type), list(o.shape)), color=color)


class OrtBackend(Backend):
    """ONNX Runtime: TensorRT, CUDA or CPU execution provider (best available unless named)."""

    name = "onnxruntime"

    def __init__(self, path: str | Path, sidecar: dict[str, Any] | None = None, provider: str | None = None,
                 threads: int | None = None, spinning: bool = False, size: int = DEFAULT_SIZE) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise MsfError("ONNX Runtime is not installed: pip install onnxruntime") from None

        available = ort.get_available_providers()
        order = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
        if provider:
            wanted = {"tensorrt": order[0], "cuda": order[1], "cpu": order[2]}.get(provider, provider)
            if wanted not in available:
                raise MsfError(f"ONNX Runtime provider {wanted} is not available here (have: {', '.join(available)})")
            providers = [wanted] + ([order[2]] if wanted != order[2] else [])
        else:
            providers = [p for p in order if p in available]
        so = ort.SessionOptions()
        if threads:
            so.intra_op_num_threads = threads
        # On a 2-core machine spinning workers starve the decoding and encoding threads.
        so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        try:
            self.session = ort.InferenceSession(str(path), so, providers=providers)
        except Exception as exc:  # noqa: BLE001
            raise MsfError(f"ONNX Runtime cannot load {path}: {str(exc).splitlines()[0][:200]}") from None
        self.device = self.session.get_providers()[0].replace("ExecutionProvider", "")
        self.input_name = self.session.get_inputs()[0].name
        graph = session_contract(self.session)
        if sidecar is None:
            super().__init__(graph, size)
            self.precision = "fp32"
        else:
            super().__init__(GraphContract.from_dict(sidecar), size)
            self.precision = sidecar.get("precision", "fp32")
            for part, want, got in (("input", self.contract.input, graph.input),
                                    ("output", self.contract.output, graph.output)):
                if want.dtype != got.dtype:
                    raise MsfError(f"{path}: its sidecar says the {part} is {want.dtype} but the graph's is "
                                   f"{got.dtype} (re-export it, or delete {Path(path).name}.json)")

    def infer(self, batch: np.ndarray) -> np.ndarray:
        return self._fixed_batch(batch, lambda x: self.session.run(None, {self.input_name: x})[0])


class TorchBackend(Backend):
    """PyTorch, the deploy graph (what msf-export writes) of a checkpoint: uint8 BGR frames in,
    class ids (or logits) out; fp32, or fp16 weights and activations on CUDA."""

    name = "pytorch"

    def __init__(self, ckpt: str | Path | None, device: str = "cpu", fp16: bool = False, size: int = DEFAULT_SIZE,
                 head: str = "labels", cuda_graphs: bool = False) -> None:
        import torch

        from msf.export.rewrite import deploy
        from msf.model import load_model

        if device.startswith("cuda") and not torch.cuda.is_available():
            raise MsfError("the PyTorch CUDA backend needs a CUDA GPU; none is visible")
        if (fp16 or cuda_graphs) and not device.startswith("cuda"):
            raise MsfError("fp16 and CUDA graphs on the PyTorch backend need --device cuda")
        ends = GraphEnds(RUNTIME_CONTRACT.input.dtype, RUNTIME_CONTRACT.input.color, head)
        super().__init__(ends.contract(size))
        self.torch = torch
        self.device = device
        # The deploy model casts its uint8 input to its weights' dtype (fp16 after .half()).
        self.model = deploy(load_model(ckpt), "matmul", ends, size).to(device)
        if fp16:
            self.model = self.model.half()
            self.precision = "fp16"
        self.cuda_graphs = cuda_graphs
        self._graphs: dict[tuple[int, ...], tuple] = {}
        self.device_frames, self.frames_device = True, device
        self.float_dtype = next(self.model.parameters()).dtype

    def _graph_for(self, shape: tuple[int, ...]):
        """Capture one CUDA graph per input shape (static input/output buffers, replayed). Warm-up
        and capture run on one side stream of the backend's own device (on another current device
        a capture would record nothing and every replay return stale output)."""
        torch = self.torch
        if shape not in self._graphs:
            static_in = torch.zeros(shape, dtype=torch.uint8, device=self.device)
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side), torch.inference_mode():
                for _ in range(3):  # warm-up on a side stream before capture, as the CUDA graphs docs ask
                    self.model(static_in)
            torch.cuda.current_stream(self.device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, stream=side), torch.inference_mode():
                static_out = self.model(static_in)
            self._graphs[shape] = (graph, static_in, static_out)
        return self._graphs[shape]

    def infer_on_device(self, x):
        """The model on ``x`` (a uint8 NHWC tensor on this backend's device); the output stays there.

        With CUDA graphs: a batch larger than the largest graph captured so far runs in chunks of
        that size (``graph_chunks``), so face counts above the warmed-up batch reuse the warm-up's
        graphs instead of capturing new ones mid-stream (each capture stalls the stream and keeps
        its own memory pool). Every result is a copy: the graph's output buffer is overwritten by
        the next replay."""
        torch = self.torch
        if not self.cuda_graphs:
            with torch.inference_mode():
                return self.model(x)
        largest = max((s[0] for s in self._graphs if s[1:] == tuple(x.shape[1:])), default=None)
        outs = []
        with torch.cuda.device(self.device):
            for start, stop in graph_chunks(len(x), largest):
                graph, static_in, static_out = self._graph_for((stop - start,) + tuple(x.shape[1:]))
                static_in.copy_(x[start:stop])
                graph.replay()
                outs.append(static_out.clone())
        return outs[0] if len(outs) == 1 else torch.cat(outs)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        x = self.torch.from_numpy(np.ascontiguousarray(batch)).to(self.device)
        out = self.infer_on_device(x)
        return (out.float() if self.output_kind == "logits" else out).cpu().numpy()


def graph_chunks(n: int, largest: int | None) -> list[tuple[int, int]]:
    """(start, stop) chunks of an n-item batch for CUDA graphs whose largest captured batch is
    ``largest`` (None: none yet, the whole batch is one chunk)."""
    step = n if not largest else min(n, largest)
    return [(i, min(i + step, n)) for i in range(0, n, max(1, step))]


class TorchReferenceBackend(Backend):
    """PyTorch, the training graph as published (``forward_reference``), fp32 on the CPU: the
    reference every other backend is compared with, and the baseline of the benchmarks."""

    name = "pytorch-reference"

    def __init__(self, ckpt: str | Path | None, size: int = DEFAULT_SIZE, threads: int | None = None) -> None:
        import torch

        from msf.model import load_model

        super().__init__(MODEL_CONTRACT.with_input(size=size))
        if threads:
            torch.set_num_threads(threads)
        self.torch = torch
        self.model = load_model(ckpt)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        with self.torch.inference_mode():
            return self.model.forward_reference(self.torch.from_numpy(batch)).numpy()


class OpenVinoBackend(Backend):
    """OpenVINO on Intel CPUs/GPUs; bf16 where the CPU has AMX (measured 27 ms against 47 ms in f32)."""

    name = "openvino"

    def __init__(self, path: str | Path, sidecar: dict[str, Any], device: str = "CPU",
                 precision: str | None = None, threads: int | None = None, size: int = DEFAULT_SIZE) -> None:
        try:
            import openvino as ov
        except ImportError:
            raise MsfError("OpenVINO is not installed: pip install 'msf[openvino]' "
                           "(from a source checkout: pip install -e '.[openvino]')") from None
        super().__init__(GraphContract.from_dict(sidecar), size)
        core = ov.Core()
        config: dict[str, Any] = {}
        if precision is None and device == "CPU":
            caps = core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
            precision = "bf16" if "BF16" in caps else "f32"
        if precision:
            config["INFERENCE_PRECISION_HINT"] = precision
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        self.compiled = core.compile_model(str(path), device, config)
        self.precision = {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}.get(precision or "f32", precision)
        self.device = device
        self.request = self.compiled.create_infer_request()

    def infer(self, batch: np.ndarray) -> np.ndarray:
        return self._fixed_batch(batch, lambda x: self.request.infer({0: x})[self.compiled.output(0)].copy())


def cache_dir() -> Path:
    """Per-user cache for ONNX files exported on demand (``MSF_CACHE`` overrides; default
    ``~/.cache/msf``)."""
    root = os.environ.get("MSF_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "msf")
    return Path(root).expanduser()


def cached_onnx(ckpt: str | Path | None, size: int = DEFAULT_SIZE, head: str = "labels") -> Path:
    """The fused runtime ONNX (uint8 BGR frames -> labels or logits) of a checkpoint, exported once
    and cached under ``cache_dir()``; the key is the checkpoint's SHA-256 and the export spec, so
    a changed checkpoint is exported again."""
    from msf.paths import WEIGHTS_PATH

    src = Path(ckpt) if ckpt else WEIGHTS_PATH
    if not src.is_file():
        raise MsfError(f"checkpoint not found: {src}")
    from msf.export.onnx_export import ExportSpec, export_onnx

    spec = ExportSpec(ends=GraphEnds(RUNTIME_CONTRACT.input.dtype, RUNTIME_CONTRACT.input.color, head), size=size)
    sha = file_sha256(src)
    key = hashlib.sha256(f"{sha}-{spec}".encode()).hexdigest()[:16]
    out = cache_dir() / f"msf-{key}.onnx"
    side = read_sidecar(out) if out.is_file() else None
    if side is not None and side.get("checkpoint_sha256") == sha:
        return out
    import onnx

    from msf.export.sidecar import build_sidecar
    from msf.model import load_model

    proto = export_onnx(load_model(src), spec)
    atomic_write(out, lambda tmp: onnx.save(proto, tmp))
    write_sidecar(out, build_sidecar(fmt="onnx", precision="fp32", target="onnxruntime", spec=spec,
                                     checkpoint_sha256=sha))
    return out


def create_backend(model: str | Path | None = None, backend: str | Backend = "auto", *, device: str | None = None,
                   threads: int | None = None, spinning: bool = False, fp16: bool = False,
                   size: int | None = None, head: str = "labels", cuda_graphs: bool = False) -> Backend:
    """A backend for ``model`` (checkpoint, ONNX or engine by extension; None = shipped weights).

    ``size`` None: a checkpoint runs at the size it records (``msf.checkpoint.recommended_size``),
    a graph of dynamic size at ``DEFAULT_SIZE``; a fixed-size graph always at its own size.

    ``auto``: an ``.engine`` runs on TensorRT; anything else on ONNX Runtime's best provider
    (TensorRT > CUDA > CPU), checkpoints through their cached fused ONNX export. ``pytorch`` runs
    a checkpoint's deploy graph, ``pytorch-reference`` its training graph (``pytorch-eager``: the
    old name of ``pytorch-reference``), ``null`` no model at all (labels of the right shape).
    A ``Backend`` instance is returned as it is (so ``Segmenter(backend=b)`` wraps a loaded backend).
    """
    if isinstance(backend, Backend):
        return backend
    if backend in DEPRECATED_BACKENDS:
        new = DEPRECATED_BACKENDS[backend]
        print(f"msf: backend {backend!r} is deprecated, use {new!r} (same graph)", file=sys.stderr)
        backend = new
    if backend not in BACKENDS:
        raise MsfError(f"unknown backend {backend!r} ({', '.join(BACKENDS)})")
    if backend == "null":
        from msf.runtime.null_backend import NullBackend

        return NullBackend(size=size or DEFAULT_SIZE)
    path = Path(model) if model else None
    ext = path.suffix.lower() if path else CHECKPOINT_EXTS[0]
    if ext not in MODEL_EXTS:
        raise MsfError(f"unknown model file type {path.suffix or path.name!r}: expected a checkpoint "
                       f"({'/'.join(CHECKPOINT_EXTS)}), .onnx or {'/'.join(ENGINE_EXTS)}")
    if path is not None and not path.is_file():
        raise MsfError(f"model file not found: {path}")
    if size is None:
        if ext in CHECKPOINT_EXTS:
            from msf.checkpoint import recommended_size

            size = recommended_size(path)
        else:
            size = DEFAULT_SIZE
    if backend == "auto":
        backend = "tensorrt" if ext in ENGINE_EXTS else "onnxruntime"
    if ext in ENGINE_EXTS:
        if backend != "tensorrt":
            raise MsfError(f"a TensorRT engine runs only on --backend tensorrt (asked: {backend})")
        from msf.runtime.tensorrt_backend import TensorRTBackend

        return TensorRTBackend(path)
    if backend in ("pytorch", "pytorch-reference"):
        if ext not in CHECKPOINT_EXTS:
            raise MsfError(f"--backend {backend} takes a checkpoint ({'/'.join(CHECKPOINT_EXTS)}), not {ext}")
        if backend == "pytorch-reference":
            return TorchReferenceBackend(path, size, threads)
        return TorchBackend(path, device or "cpu", fp16, size, head, cuda_graphs)
    if backend == "tensorrt":
        raise MsfError("--backend tensorrt needs an engine: build one with msf-export --tensorrt")
    onnx_path = path if ext not in CHECKPOINT_EXTS else cached_onnx(path, size, head)
    if backend == "onnxruntime":
        return OrtBackend(onnx_path, read_sidecar(onnx_path), device, threads, spinning, size)
    from msf.contract import onnx_sidecar

    return OpenVinoBackend(onnx_path, onnx_sidecar(onnx_path), (device or "CPU").upper(), None, threads, size)
