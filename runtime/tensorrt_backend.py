"""TensorRT engine backend: TensorRT 10/11 tensor-address API with ``execute_async_v3``, device
buffers through cuda-python (wheels install anywhere; pycuda needs the CUDA toolkit to build).

An engine only runs on the TensorRT version and GPU architecture it was built for: the sidecar
written by ``msf-export --tensorrt`` records both, and a mismatch is refused with that reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from msf.contract import GraphContract, contract_from_io, read_sidecar
from msf.errors import MsfError
from msf.runtime.backends import Backend, pad_batch


def _cudart():
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cudart  # older cuda-python
        except ImportError:
            raise MsfError("the TensorRT backend needs cuda-python for device buffers: pip install cuda-python") \
                from None
    return cudart


def _check(result):
    err, *rest = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise MsfError(f"CUDA runtime error {int(err)} ({err})")
    return rest[0] if len(rest) == 1 else rest


def check_engine_compatible(sidecar: dict[str, Any] | None, trt_version: str, gpu: dict[str, Any] | None) -> None:
    """Refuse an engine built for another TensorRT version or GPU compute capability."""
    if sidecar is None:
        return  # an engine built elsewhere: TensorRT itself will refuse an incompatible one
    built = (sidecar.get("versions") or {}).get("tensorrt") or sidecar.get("tensorrt")
    if built and built != trt_version:
        raise MsfError(f"engine was built with TensorRT {built}, this machine has {trt_version}: rebuild it here "
                       "(msf-export --tensorrt)")
    want = (sidecar.get("gpu") or {}).get("compute_capability")
    if want and gpu and gpu.get("compute_capability") != want:
        raise MsfError(f"engine was built for compute capability {want} ({sidecar['gpu'].get('name')}), this GPU "
                       f"is {gpu['compute_capability']} ({gpu.get('name')}): rebuild it here")


class TensorRTBackend(Backend):
    """Runs a serialized engine; input/output contract from its sidecar (else from the engine's
    own tensors)."""

    name = "tensorrt"

    def __init__(self, path: str | Path) -> None:
        from msf.export.tensorrt import gpu_info, tensorrt_version

        if tensorrt_version() is None:
            raise MsfError("TensorRT is not installed: an .engine needs TensorRT and a GPU "
                           "(use the .onnx with --backend onnxruntime instead)")
        import tensorrt as trt

        gpu = gpu_info()
        if gpu is None:
            raise MsfError("no CUDA GPU is visible: a TensorRT engine runs only on a GPU")
        side = read_sidecar(path)
        check_engine_compatible(side, trt.__version__, gpu)
        self.cudart = _cudart()
        logger = trt.Logger(trt.Logger.WARNING)
        self.engine = trt.Runtime(logger).deserialize_cuda_engine(Path(path).read_bytes())
        if self.engine is None:
            raise MsfError(f"TensorRT could not deserialize {path}")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self.dtypes = {n: np.dtype(trt.nptype(self.engine.get_tensor_dtype(n))) for n in names}
        i, o = self.inputs[0], self.outputs[0]
        engine = contract_from_io((i, self.dtypes[i].name, list(self.engine.get_tensor_shape(i))),
                                  (o, self.dtypes[o].name, list(self.engine.get_tensor_shape(o))))
        contract = GraphContract.from_dict(side) if side else engine
        for part, want, got in (("input", contract.input, engine.input), ("output", contract.output, engine.output)):
            if want.dtype != got.dtype:
                raise MsfError(f"{path}: its sidecar says the {part} is {want.dtype} but the engine's is {got.dtype}")
        super().__init__(contract)
        self.precision = (side or {}).get("precision", "fp16")
        self.device = gpu["name"]
        self.device_frames = True  # infer_on_device: torch tensors in and out, no host copy
        self.frames_device = "cuda"  # the engine runs on the current CUDA device, where torch's frames live
        self.stream = _check(self.cudart.cudaStreamCreate())
        self._buffers: dict[str, tuple[int, int]] = {}  # name -> (pointer, bytes)

    def _buffer(self, name: str, nbytes: int) -> int:
        ptr, have = self._buffers.get(name, (0, 0))
        if have < nbytes:
            if ptr:
                _check(self.cudart.cudaFree(ptr))
            ptr = _check(self.cudart.cudaMalloc(nbytes))
            self._buffers[name] = (ptr, nbytes)
        return ptr

    def infer(self, batch: np.ndarray) -> np.ndarray:
        rt = self.cudart
        name = self.inputs[0]
        host_in = np.ascontiguousarray(batch, dtype=self.dtypes[name])
        self.context.set_input_shape(name, tuple(host_in.shape))
        d_in = self._buffer(name, host_in.nbytes)
        self.context.set_tensor_address(name, d_in)
        out_name = self.outputs[0]
        out_shape = tuple(self.context.get_tensor_shape(out_name))
        host_out = np.empty(out_shape, dtype=self.dtypes[out_name])
        d_out = self._buffer(out_name, host_out.nbytes)
        self.context.set_tensor_address(out_name, d_out)
        h2d, d2h = rt.cudaMemcpyKind.cudaMemcpyHostToDevice, rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        _check(rt.cudaMemcpyAsync(d_in, host_in.ctypes.data, host_in.nbytes, h2d, self.stream))
        if not self.context.execute_async_v3(int(self.stream)):
            raise MsfError("TensorRT execution failed")
        _check(rt.cudaMemcpyAsync(host_out.ctypes.data, d_out, host_out.nbytes, d2h, self.stream))
        _check(rt.cudaStreamSynchronize(self.stream))
        return host_out

    def infer_on_device(self, x: Any) -> Any:
        """The engine on ``x``, a torch tensor already on the GPU (the frame-on-device path): TensorRT
        reads it and writes a new torch tensor in place, on torch's current stream, so no copy
        leaves the device and the caching allocator's stream order keeps both buffers alive. A
        batch shorter than a fixed-batch engine's is zero-padded (padding's outputs dropped)."""
        import torch

        name, out_name = self.inputs[0], self.outputs[0]
        want = torch.from_numpy(np.empty(0, self.dtypes[name])).dtype
        x, n = pad_batch(x.to(want).contiguous(), self.input_spec.batch)
        if not self.context.set_input_shape(name, tuple(x.shape)):
            raise MsfError(f"the engine does not take input shape {tuple(x.shape)}")
        out = torch.empty(tuple(self.context.get_tensor_shape(out_name)),
                          dtype=torch.from_numpy(np.empty(0, self.dtypes[out_name])).dtype, device=x.device)
        self.context.set_tensor_address(name, x.data_ptr())
        self.context.set_tensor_address(out_name, out.data_ptr())
        stream = torch.cuda.current_stream(x.device).cuda_stream if x.is_cuda else 0
        if not self.context.execute_async_v3(stream):
            raise MsfError("TensorRT execution failed")
        return out[:n]

    def close(self) -> None:
        for ptr, _ in self._buffers.values():
            self.cudart.cudaFree(ptr)
        self._buffers.clear()
