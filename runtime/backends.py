"""Inference backends behind one small interface (DESIGN §7).

A backend takes a batch in its graph's input contract (``input_spec``: dtype, layout, colour,
size) and returns its output (``output_kind``: ``labels`` N×H×W uint8 or ``logits`` N×C×H×W).
Heavy libraries are imported inside the backend that needs them: a CPU-only install never
imports CUDA, TensorRT or OpenVINO.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from msf.atomic import atomic_write
from msf.errors import MsfError

# What msf-video and Segmenter run when given a checkpoint: frames in, class ids out.
RUNTIME_ENDS = {"io": "uint8", "color": "bgr", "head": "labels"}
CHECKPOINT_EXTS = (".pt", ".pth")


class Backend:
    """Base class: ``infer`` one batch; ``name`` and ``precision`` describe what runs."""

    name = "backend"
    precision = "fp32"
    device = "cpu"

    def __init__(self, input_spec: dict[str, Any], output_kind: str) -> None:
        self.input_spec = input_spec
        self.output_kind = output_kind

    @property
    def size(self) -> int:
        return int(self.input_spec.get("size") or 512)

    @property
    def max_batch(self) -> int | None:
        return self.input_spec.get("batch")

    def infer(self, batch: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def labels(self, batch: np.ndarray) -> np.ndarray:
        """Class ids (N×H×W uint8) whatever the graph returns."""
        out = self.infer(batch)
        return out.astype(np.uint8, copy=False) if self.output_kind == "labels" else out.argmax(1).astype(np.uint8)

    def describe(self) -> str:
        return f"{self.name} {self.precision} ({self.device})"

    def close(self) -> None:  # noqa: B027  (optional hook)
        pass


class OrtBackend(Backend):
    """ONNX Runtime: TensorRT, CUDA or CPU execution provider (best available unless named)."""

    name = "onnxruntime"

    def __init__(self, path: str | Path, sidecar: dict[str, Any], provider: str | None = None,
                 threads: int | None = None, spinning: bool = False) -> None:
        import onnxruntime as ort

        super().__init__(sidecar["input"], sidecar["output"]["kind"])
        self.precision = sidecar.get("precision", "fp32")
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
        # On a 2-core machine spinning workers starve decoding/encoding threads (DESIGN §7).
        so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        try:
            self.session = ort.InferenceSession(str(path), so, providers=providers)
        except Exception as exc:  # noqa: BLE001
            raise MsfError(f"ONNX Runtime cannot load {path}: {str(exc).splitlines()[0][:200]}") from None
        self.device = self.session.get_providers()[0].replace("ExecutionProvider", "")
        self.input_name = self.session.get_inputs()[0].name

    def infer(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: batch})[0]


class TorchBackend(Backend):
    """PyTorch: the deploy rewrite of a checkpoint, uint8 BGR frames in, class ids out."""

    name = "pytorch"

    def __init__(self, ckpt: str | Path | None, device: str = "cpu", fp16: bool = False, size: int = 512,
                 head: str = "labels", cuda_graphs: bool = False) -> None:
        import torch

        from msf.export.rewrite import GraphEnds, deploy
        from msf.model import load_model

        if device.startswith("cuda") and not torch.cuda.is_available():
            raise MsfError("the PyTorch CUDA backend needs a CUDA GPU; none is visible")
        if (fp16 or cuda_graphs) and not device.startswith("cuda"):
            raise MsfError("fp16 and CUDA graphs on the PyTorch backend need --device cuda")
        super().__init__({"name": "image", "dtype": "uint8", "layout": "NHWC", "color": "bgr", "size": size,
                          "batch": None}, head)
        self.torch = torch
        self.device = device
        ends = GraphEnds(RUNTIME_ENDS["io"], RUNTIME_ENDS["color"], head)
        self.model = deploy(load_model(ckpt), "matmul", ends, size).to(device)
        if fp16:
            self.model = self.model.half()
            self.precision = "fp16"
        self.cuda_graphs = cuda_graphs
        self._graphs: dict[tuple[int, ...], tuple] = {}

    def _graph_for(self, shape: tuple[int, ...]):
        """Capture one CUDA graph per input shape (static input/output buffers, replayed)."""
        torch = self.torch
        if shape not in self._graphs:
            static_in = torch.zeros(shape, dtype=torch.uint8, device=self.device)
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side), torch.inference_mode():
                for _ in range(3):  # warm-up on a side stream before capture, as the CUDA graphs docs ask
                    self.model(static_in)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph), torch.inference_mode():
                static_out = self.model(static_in)
            self._graphs[shape] = (graph, static_in, static_out)
        return self._graphs[shape]

    def infer(self, batch: np.ndarray) -> np.ndarray:
        torch = self.torch
        x = torch.from_numpy(np.ascontiguousarray(batch))
        if self.cuda_graphs:
            graph, static_in, static_out = self._graph_for(tuple(x.shape))
            static_in.copy_(x)
            graph.replay()
            out = static_out
        else:
            with torch.inference_mode():
                out = self.model(x.to(self.device))
        return (out.float() if self.output_kind == "logits" else out).cpu().numpy()


class TorchReferenceBackend(Backend):
    """PyTorch eager, the training graph as published (``forward_reference``), fp32 on the CPU:
    the reference every other backend is compared with, and the baseline of the benchmarks."""

    name = "pytorch-eager"

    def __init__(self, ckpt: str | Path | None, size: int = 512, threads: int | None = None) -> None:
        import torch

        from msf.model import load_model

        super().__init__({"name": "image", "dtype": "float32", "layout": "NCHW", "color": "rgb", "size": size,
                          "batch": None}, "logits")
        if threads:
            torch.set_num_threads(threads)
        self.torch = torch
        self.model = load_model(ckpt)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        with self.torch.inference_mode():
            return self.model.forward_reference(self.torch.from_numpy(batch)).numpy()


class OpenVinoBackend(Backend):
    """OpenVINO on Intel CPUs/GPUs; bf16 where the CPU has AMX (DESIGN §6 measured 27 ms vs 47 ms f32)."""

    name = "openvino"

    def __init__(self, path: str | Path, sidecar: dict[str, Any], device: str = "CPU",
                 precision: str | None = None, threads: int | None = None) -> None:
        try:
            import openvino as ov
        except ImportError:
            raise MsfError("OpenVINO is not installed: pip install 'msf[openvino]'") from None
        super().__init__(sidecar["input"], sidecar["output"]["kind"])
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
        return self.request.infer({0: batch})[self.compiled.output(0)].copy()


def cache_dir() -> Path:
    """Per-user cache for ONNX files exported on demand (``MSF_CACHE`` overrides)."""
    root = os.environ.get("MSF_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "msf")
    return Path(root).expanduser()


def cached_onnx(ckpt: str | Path | None, size: int = 512, head: str = "labels") -> Path:
    """The fused runtime ONNX (uint8 BGR frames -> labels or logits) of a checkpoint, exported once
    and cached."""
    from msf.export.onnx_export import ExportSpec, export_onnx
    from msf.export.rewrite import GraphEnds
    from msf.export.sidecar import build_sidecar, file_sha256, sidecar_path, write_json_atomic
    from msf.model import load_model
    from msf.paths import WEIGHTS_PATH

    src = Path(ckpt) if ckpt else WEIGHTS_PATH
    if not src.is_file():
        raise MsfError(f"checkpoint not found: {src}")
    spec = ExportSpec(ends=GraphEnds(RUNTIME_ENDS["io"], RUNTIME_ENDS["color"], head), size=size)
    sha = file_sha256(src)
    key = hashlib.sha256(f"{sha}-{spec}".encode()).hexdigest()[:16]
    out = cache_dir() / f"msf-{key}.onnx"
    if out.is_file() and sidecar_path(out).is_file():
        return out
    import onnx

    proto = export_onnx(load_model(ckpt), spec)
    atomic_write(out, lambda tmp: onnx.save(proto, tmp))
    write_json_atomic(sidecar_path(out), build_sidecar(fmt="onnx", precision="fp32", target="onnxruntime",
                                                       spec=spec, checkpoint_sha256=sha))
    return out


def create_backend(model: str | Path | None = None, backend: str = "auto", *, device: str | None = None,
                   threads: int | None = None, spinning: bool = False, fp16: bool = False,
                   size: int = 512, head: str = "labels", cuda_graphs: bool = False) -> Backend:
    """A backend for ``model`` (checkpoint, ONNX or engine by extension; None = shipped weights).

    ``auto``: an ``.engine`` runs on TensorRT; anything else on ONNX Runtime's best provider
    (TensorRT > CUDA > CPU), checkpoints through their cached fused ONNX export.
    """
    path = Path(model) if model else None
    ext = path.suffix.lower() if path else ".pt"
    if path is not None and not path.is_file():
        raise MsfError(f"model file not found: {path}")
    if ext not in CHECKPOINT_EXTS + (".onnx", ".engine", ".plan"):
        raise MsfError(f"unknown model file type {ext!r}: expected a checkpoint (.pt/.pth), .onnx or .engine")
    if backend == "auto":
        backend = "tensorrt" if ext in (".engine", ".plan") else "onnxruntime"
    if backend == "tensorrt" and ext in (".engine", ".plan"):
        from msf.runtime.tensorrt_backend import TensorRTBackend

        return TensorRTBackend(path)
    if ext in (".engine", ".plan"):
        raise MsfError(f"a TensorRT engine runs only on --backend tensorrt (asked: {backend})")
    if backend in ("pytorch", "pytorch-eager"):
        if ext not in CHECKPOINT_EXTS:
            raise MsfError(f"--backend {backend} takes a checkpoint (.pt/.pth)")
        if backend == "pytorch-eager":
            return TorchReferenceBackend(path, size, threads)
        return TorchBackend(path, device or "cpu", fp16, size, head, cuda_graphs)
    onnx_path = path if ext == ".onnx" else cached_onnx(path, size, head)
    from msf.export.pipeline import sidecar_for

    sidecar = sidecar_for(onnx_path)
    if backend == "onnxruntime":
        return OrtBackend(onnx_path, sidecar, device, threads, spinning)
    if backend == "openvino":
        return OpenVinoBackend(onnx_path, sidecar, (device or "CPU").upper(), None, threads)
    if backend == "tensorrt":
        raise MsfError("--backend tensorrt needs an engine: build one with msf-export --tensorrt")
    raise MsfError(f"unknown backend {backend!r} (auto, onnxruntime, pytorch, pytorch-eager, openvino, tensorrt)")
