"""create_backend: which backend each model file and name gets, its one-line errors, and the
export cache behind checkpoints on ONNX Runtime (hit, miss, stale checkpoint)."""

import shutil

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from msf.contract import RUNTIME_CONTRACT, read_sidecar
from msf.errors import MsfError
from msf.paths import WEIGHTS_PATH
from msf.runtime import backends as B
from msf.runtime.backends import Backend, create_backend


def _tiny_onnx(path, in_type=TensorProto.UINT8, out_type=TensorProto.UINT8):
    """A valid one-node graph with the runtime's I/O signature (labels = first channel of the frame)."""
    inp = helper.make_tensor_value_info("image", in_type, ["batch", 8, 8, 3])
    out = helper.make_tensor_value_info("labels", out_type, ["batch", 8, 8])
    starts, ends, axes = (helper.make_tensor(n, TensorProto.INT64, [1], [v]) for n, v in
                          (("s", 0), ("e", 1), ("a", 3)))
    nodes = [helper.make_node("Slice", ["image", "s", "e", "a"], ["sl"]),
             helper.make_node("Squeeze", ["sl", "a"], ["labels"])]
    graph = helper.make_graph(nodes, "tiny", [inp], [out], initializer=[starts, ends, axes])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(proto, path)
    return proto


@pytest.fixture
def ckpt(tmp_path):
    p = tmp_path / "ck.pt"
    shutil.copy(WEIGHTS_PATH, p)
    return p


@pytest.fixture
def fake_export(monkeypatch, tmp_path):
    """export_onnx replaced by a tiny graph (the cache logic is under test, not the exporter)."""
    import msf.export.onnx_export as ox

    calls = []

    def export(model, spec):
        calls.append(spec)
        return _tiny_onnx(tmp_path / "tiny-src.onnx")

    monkeypatch.setattr(ox, "export_onnx", export)
    monkeypatch.setenv("MSF_CACHE", str(tmp_path / "cache"))
    return calls


def test_export_cache_hit_miss_and_stale_checkpoint(ckpt, fake_export):
    first = B.cached_onnx(ckpt, 512, "labels")
    assert len(fake_export) == 1 and first.parent.name == "cache"
    side = read_sidecar(first)
    assert side["checkpoint_sha256"] == B.file_sha256(ckpt) and side["input"]["dtype"] == "uint8"
    assert B.cached_onnx(ckpt, 512, "labels") == first and len(fake_export) == 1  # hit: nothing exported
    other = B.cached_onnx(ckpt, 256, "labels")  # miss: another size is another graph
    assert other != first and len(fake_export) == 2 and fake_export[-1].size == 256
    assert B.cached_onnx(ckpt, 512, "logits") not in (first, other) and len(fake_export) == 3
    # stale: the checkpoint changed (retrained in place): its hash changes, so it is exported again
    state = torch.load(ckpt, weights_only=True)
    torch.save({k: v + 1e-3 if v.is_floating_point() else v for k, v in state["model_state_dict"].items()}
               if "model_state_dict" in state else state, ckpt)
    again = B.cached_onnx(ckpt, 512, "labels")
    assert again != first and len(fake_export) == 4
    assert read_sidecar(again)["checkpoint_sha256"] == B.file_sha256(ckpt)


def test_export_cache_entry_with_a_foreign_sidecar_is_rebuilt(ckpt, fake_export):
    first = B.cached_onnx(ckpt)
    side = read_sidecar(first)
    B.write_sidecar(first, dict(side, checkpoint_sha256="0" * 64))  # tampered or half-updated entry
    assert B.cached_onnx(ckpt) == first and len(fake_export) == 2
    assert read_sidecar(first)["checkpoint_sha256"] == B.file_sha256(ckpt)


def test_onnx_without_sidecar_reads_its_contract_from_the_session(tmp_path):
    _tiny_onnx(tmp_path / "m.onnx")
    b = create_backend(tmp_path / "m.onnx")
    assert isinstance(b, B.OrtBackend) and b.precision == "fp32"
    assert b.contract.input == RUNTIME_CONTRACT.input.__class__(dtype="uint8", layout="NHWC", color="rgb",
                                                                scale=1.0, size=8)
    frames = np.random.default_rng(0).integers(0, 19, (2, 8, 8, 3), dtype=np.uint8)
    np.testing.assert_array_equal(b.labels(frames), frames[..., 0])


def test_sidecar_that_lies_about_the_graph_is_one_line(tmp_path):
    _tiny_onnx(tmp_path / "m.onnx")
    lie = RUNTIME_CONTRACT.to_dict()
    lie["input"].update(dtype="float16", layout="NCHW", scale=1 / 255, color="rgb")  # what fp16 sidecars said
    B.write_sidecar(tmp_path / "m.onnx", {"precision": "fp16", **lie})
    with pytest.raises(MsfError, match="sidecar says the input is float16 but the graph's is uint8"):
        create_backend(tmp_path / "m.onnx")


@pytest.mark.parametrize("model, backend, needle", [
    ("m.tflite", "auto", "unknown model file type '.tflite'"),
    ("missing.onnx", "auto", "model file not found"),
    ("m.onnx", "pytorch", "--backend pytorch takes a checkpoint"),
    ("m.onnx", "pytorch-reference", "--backend pytorch-reference takes a checkpoint"),
    ("m.onnx", "tensorrt", "needs an engine"),
    ("m.engine", "onnxruntime", "runs only on --backend tensorrt"),
    ("m.onnx", "tflite", "unknown backend 'tflite'"),
])
def test_choice_errors_are_one_line(tmp_path, model, backend, needle):
    _tiny_onnx(tmp_path / "m.onnx")
    (tmp_path / "m.engine").write_bytes(b"\0" * 16)
    (tmp_path / "m.tflite").write_bytes(b"\0" * 16)
    with pytest.raises(MsfError, match=needle.replace("(", r"\(")) as exc:
        create_backend(tmp_path / model, backend)
    assert "\n" not in str(exc.value)


def test_engine_goes_to_tensorrt(tmp_path):
    from msf.export.tensorrt import tensorrt_version

    if tensorrt_version() is not None:
        pytest.skip("TensorRT is installed here")
    (tmp_path / "m.engine").write_bytes(b"\0" * 16)
    with pytest.raises(MsfError, match="TensorRT is not installed"):
        create_backend(tmp_path / "m.engine")  # auto picks TensorRT for an engine


def test_null_backend_and_backend_instances(tmp_path):
    null = create_backend(None, "null", size=64)
    assert type(null).__name__ == "NullBackend" and null.contract == RUNTIME_CONTRACT.with_input(size=64)
    assert null.labels(np.zeros((3, 64, 64, 3), np.uint8)).shape == (3, 64, 64)
    assert create_backend("ignored.pt", null) is null  # a loaded backend passes through (Segmenter(backend=b))


def test_pytorch_names(shipped_model, capsys):
    deploy = create_backend(None, "pytorch", size=64)
    assert deploy.name == "pytorch" and deploy.contract == RUNTIME_CONTRACT.with_input(size=64)
    ref = create_backend(None, "pytorch-reference", size=64)
    assert ref.name == "pytorch-reference" and ref.contract.input.dtype == "float32"
    assert capsys.readouterr().err == ""
    old = create_backend(None, "pytorch-eager", size=64)
    err = capsys.readouterr().err
    assert isinstance(old, B.TorchReferenceBackend) and err.count("\n") == 1 and "deprecated" in err
    assert "pytorch-reference" in err
    frames = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    from msf.frames import to_input

    agree = (deploy.labels(to_input(list(frames), deploy.input_spec))
             == ref.labels(to_input(list(frames), ref.input_spec))).mean()
    assert agree > 0.99  # the same function, two graphs
    with pytest.raises(MsfError, match="need --device cuda"):
        create_backend(None, "pytorch", fp16=True)


def test_runtime_loads_an_onnx_without_the_export_stack(tmp_path):
    import subprocess
    import sys

    _tiny_onnx(tmp_path / "m.onnx")
    code = ("import sys; from msf.runtime import create_backend; b = create_backend(sys.argv[1]); "
            "print(sorted(m for m in sys.modules if m.startswith(('msf.export', 'torch', 'onnx.'))))")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "m.onnx")], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_base_backend_contract_parts():
    b = Backend(RUNTIME_CONTRACT.with_input(size=None, batch=4))
    assert b.size == 512 and b.max_batch == 4 and b.input_spec.dtype == "uint8" and b.output_kind == "labels"


class _FakeTrtContext:
    """TensorRT's execution-context calls as the backend makes them; "runs" the engine by writing
    each input pixel's blue value + 1 as its label, through the addresses it was given (host
    pointers here, device pointers on a GPU)."""

    def __init__(self, fixed: int | None) -> None:
        self.fixed, self.shape, self.addr = fixed, None, {}

    def set_input_shape(self, name, shape):
        self.shape = shape
        return self.fixed is None or shape[0] == self.fixed

    def get_tensor_shape(self, name):
        return self.shape[:3]

    def set_tensor_address(self, name, ptr):
        self.addr[name] = ptr
        return True

    def execute_async_v3(self, stream):
        import ctypes

        n = int(np.prod(self.shape))
        src = np.ctypeslib.as_array(ctypes.cast(self.addr["frames"], ctypes.POINTER(ctypes.c_uint8)), (n,))
        dst = np.ctypeslib.as_array(ctypes.cast(self.addr["labels"], ctypes.POINTER(ctypes.c_uint8)), (n // 3,))
        dst[:] = src.reshape(-1, 3)[:, 0] + 1
        return True


@pytest.mark.parametrize("fixed", [None, 4])
def test_tensorrt_infer_on_device_plumbing(fixed):
    """The frame-on-device entry of the TensorRT backend (no TensorRT here: a fake context checks
    the shapes, addresses, output allocation and the padding of a short batch)."""
    from msf.runtime.tensorrt_backend import TensorRTBackend

    b = object.__new__(TensorRTBackend)
    Backend.__init__(b, RUNTIME_CONTRACT.with_input(size=8, batch=fixed))
    b.inputs, b.outputs = ["frames"], ["labels"]
    b.dtypes = {"frames": np.dtype(np.uint8), "labels": np.dtype(np.uint8)}
    b.context = _FakeTrtContext(fixed)
    x = torch.from_numpy(np.random.default_rng(9).integers(0, 200, (3, 8, 8, 3), dtype=np.uint8))
    out = b.infer_on_device(x)
    assert out.shape == (3, 8, 8) and out.dtype == torch.uint8
    assert torch.equal(out, x[..., 0] + 1)
    assert b.context.shape[0] == (fixed or 3)  # a fixed-batch engine got a padded batch
    if fixed:
        with pytest.raises(MsfError, match="batches of 4"):
            b.infer_on_device(torch.zeros((5, 8, 8, 3), dtype=torch.uint8))
