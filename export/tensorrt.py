"""TensorRT engine building from an exported ONNX graph (TensorRT 10.x and 11.x).

TensorRT 10: FP16 through the builder flag, with LayerNorm/Softmax layers pinned to FP32 under
OBEY_PRECISION_CONSTRAINTS. TensorRT 11 removed weak typing: networks are strongly typed and an
FP16 engine is built from an ONNX that is already mixed FP16 (``to_fp16``). Either way the engine
keeps the ONNX graph's I/O contract (float32 or uint8 in; float32 logits or uint8 labels out).
TensorRT is imported lazily: nothing here touches CUDA until a build is asked for.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from msf.atomic import atomic_write
from msf.contract import DEFAULT_SIZE, InputSpec
from msf.errors import MsfError


@dataclass(frozen=True)
class Profile:
    """Optimisation profile batch sizes (and square sizes, for a dynamic-size graph)."""

    batch: tuple[int, int, int] = (1, 1, 1)
    size: tuple[int, int, int] = (DEFAULT_SIZE,) * 3

    @staticmethod
    def parse(batch_text: str | None, size_text: str | None = None, fixed_batch: int | None = None,
              fixed_size: int | None = None) -> Profile:
        """``"1,4,8"`` -> min/opt/max; a fixed graph dimension overrides the text."""
        def three(text, fixed, default):
            if fixed is not None:
                return (fixed, fixed, fixed)
            if not text:
                return default
            try:
                vals = tuple(int(v) for v in text.split(","))
            except ValueError:
                raise MsfError(f"bad profile {text!r}: expected MIN,OPT,MAX integers") from None
            if len(vals) == 1:
                vals = vals * 3
            if len(vals) != 3 or not (0 < vals[0] <= vals[1] <= vals[2]):
                raise MsfError(f"bad profile {text!r}: expected 0 < MIN <= OPT <= MAX")
            return vals
        return Profile(three(batch_text, fixed_batch, (1, 1, 1)), three(size_text, fixed_size, (DEFAULT_SIZE,) * 3))

    def shapes(self, spec: InputSpec) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        """min/opt/max input shapes in the graph's input layout (NCHW float or NHWC uint8)."""
        mn, opt, mx = (spec.shape(b, s) for b, s in zip(self.batch, self.size))
        return mn, opt, mx


def tensorrt_version() -> tuple[int, int] | None:
    """(major, minor) of the importable TensorRT, or None when it is not installed."""
    try:
        import tensorrt as trt
    except Exception:  # noqa: BLE001  (ImportError, or a broken install missing its libraries)
        return None
    major, minor = (int(v) for v in trt.__version__.split(".")[:2])
    return major, minor


def build_strategy(version: tuple[int, int], precision: str) -> dict[str, Any]:
    """How to build ``precision`` on this TensorRT: which ONNX to parse and which flags to set."""
    major = version[0]
    if precision == "int8":
        raise MsfError("INT8 TensorRT engines are not offered: build FP16 (TensorRT) or use --precision int8 "
                       "for ONNX Runtime CPU")
    if precision == "fp32":
        return {"onnx": "fp32", "strongly_typed": major >= 11, "fp16_flag": False, "pin_fp32_layers": False}
    if major >= 11:
        return {"onnx": "fp16", "strongly_typed": True, "fp16_flag": False, "pin_fp32_layers": False}
    return {"onnx": "fp32", "strongly_typed": False, "fp16_flag": True, "pin_fp32_layers": True}


def gpu_info() -> dict[str, Any] | None:
    """Name and compute capability of CUDA device 0 (torch, else cuda-python), None without a GPU."""
    try:
        import torch

        if torch.cuda.is_available():
            major, minor = torch.cuda.get_device_capability(0)
            return {"name": torch.cuda.get_device_name(0), "compute_capability": f"{major}.{minor}"}
    except Exception:  # noqa: BLE001
        pass
    try:
        from cuda.bindings import runtime as cudart
    except Exception:  # noqa: BLE001
        try:
            from cuda import cudart  # older cuda-python layout
        except Exception:  # noqa: BLE001
            return None
    err, count = cudart.cudaGetDeviceCount()
    if int(err) != 0 or count == 0:
        return None
    err, prop = cudart.cudaGetDeviceProperties(0)
    if int(err) != 0:
        return None
    name = prop.name.decode() if isinstance(prop.name, bytes) else str(prop.name)
    return {"name": name.strip("\x00"), "compute_capability": f"{prop.major}.{prop.minor}"}


def require_tensorrt() -> tuple[tuple[int, int], dict[str, Any]]:
    """TensorRT version and GPU, or one clear error naming what is missing."""
    version = tensorrt_version()
    if version is None:
        raise MsfError("TensorRT is not installed (it comes with JetPack, NVIDIA's containers or NVIDIA's pip index)")
    gpu = gpu_info()
    if gpu is None:
        raise MsfError("no CUDA GPU is visible: a TensorRT engine is built on the GPU it will run on")
    return version, gpu


def build_engine(onnx_path: str | Path, engine_path: str | Path, *, precision: str, input_spec: InputSpec,
                 profile: Profile, workspace_mb: int = 1024, opt_level: int = 3,
                 timing_cache: str | Path | None = None, log=print) -> dict[str, Any]:
    """Build and write a serialized engine; returns the facts for its sidecar."""
    import tensorrt as trt

    version, gpu = require_tensorrt()
    strategy = build_strategy(version, precision)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if strategy["strongly_typed"] and hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise MsfError(f"TensorRT could not parse {onnx_path}: {errors[:300]}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    config.builder_optimization_level = opt_level
    if strategy["fp16_flag"]:
        config.set_flag(trt.BuilderFlag.FP16)
    if strategy["pin_fp32_layers"]:
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
        pinned = (trt.LayerType.NORMALIZATION, trt.LayerType.SOFTMAX, trt.LayerType.REDUCE)
        for i in range(network.num_layers):
            layer = network.get_layer(i)
            if layer.type in pinned:
                layer.precision = trt.float32
                for o in range(layer.num_outputs):
                    layer.set_output_type(o, trt.float32)
    inp = network.get_input(0)
    mn, opt, mx = profile.shapes(input_spec)
    prof = builder.create_optimization_profile()
    prof.set_shape(inp.name, mn, opt, mx)
    config.add_optimization_profile(prof)
    cache_bytes = Path(timing_cache).read_bytes() if timing_cache and Path(timing_cache).is_file() else b""
    cache = config.create_timing_cache(cache_bytes)
    config.set_timing_cache(cache, ignore_mismatch=False)
    log(f"building TensorRT {'.'.join(map(str, version))} engine ({precision}) on {gpu['name']} ...")
    blob = builder.build_serialized_network(network, config)
    if blob is None:
        raise MsfError("TensorRT failed to build the engine (see the TensorRT log above)")
    atomic_write(engine_path, lambda tmp: Path(tmp).write_bytes(memoryview(blob)))
    if timing_cache:
        atomic_write(timing_cache, lambda tmp: Path(tmp).write_bytes(memoryview(cache.serialize())))
    return {"tensorrt": trt.__version__, "gpu": gpu, "strategy": strategy,
            "profile": {"input": inp.name, "min": list(mn), "opt": list(opt), "max": list(mx)},
            "workspace_mb": workspace_mb, "builder_optimization_level": opt_level}
