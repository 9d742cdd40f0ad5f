"""TensorRT: the parts that need no TensorRT are tested here; the build runs where TensorRT and a GPU exist."""

import pytest

from msf.contract import GraphEnds
from msf.errors import MsfError
from msf.export import tensorrt as trt_mod
from msf.export.onnx_export import ExportSpec
from msf.export.tensorrt import Profile, build_strategy


def test_profile_parsing_and_shapes():
    p = Profile.parse("1,4,8", None)
    assert p.batch == (1, 4, 8) and p.size == (512, 512, 512)
    assert p.shapes(GraphEnds().contract().input) == ((1, 3, 512, 512), (4, 3, 512, 512), (8, 3, 512, 512))
    assert p.shapes(GraphEnds("uint8", "bgr").contract().input)[2] == (8, 512, 512, 3)
    assert Profile.parse("2", "256,512,1024").size == (256, 512, 1024)
    assert Profile.parse("2").batch == (2, 2, 2)
    assert Profile.parse("1,4,8", None, fixed_batch=1).batch == (1, 1, 1)  # a fixed graph dim wins
    for bad in ("8,4,1", "a,b,c", "1,2", "0,1,2"):
        with pytest.raises(MsfError, match="bad profile"):
            Profile.parse(bad)


@pytest.mark.parametrize("version, precision, expect", [
    ((10, 3), "fp16", {"onnx": "fp32", "fp16_flag": True, "pin_fp32_layers": True, "strongly_typed": False}),
    ((10, 16), "fp16", {"onnx": "fp32", "fp16_flag": True, "pin_fp32_layers": True, "strongly_typed": False}),
    ((11, 0), "fp16", {"onnx": "fp16", "fp16_flag": False, "pin_fp32_layers": False, "strongly_typed": True}),
    ((10, 3), "fp32", {"onnx": "fp32", "fp16_flag": False, "pin_fp32_layers": False, "strongly_typed": False}),
    ((11, 4), "fp32", {"onnx": "fp32", "fp16_flag": False, "pin_fp32_layers": False, "strongly_typed": True}),
])
def test_version_dispatch(version, precision, expect):
    """TensorRT 10 (JetPack 6 ships 10.3): FP16 builder flag + FP32-pinned LayerNorm/Softmax.
    TensorRT 11 removed weak typing: strongly typed build from the mixed-FP16 ONNX."""
    assert build_strategy(version, precision) == expect


def test_int8_engine_is_refused():
    with pytest.raises(MsfError, match="INT8 TensorRT engines are not offered"):
        build_strategy((10, 3), "int8")


def test_missing_tensorrt_or_gpu_is_one_clear_error(monkeypatch):
    monkeypatch.setattr(trt_mod, "tensorrt_version", lambda: None)
    with pytest.raises(MsfError, match="TensorRT is not installed"):
        trt_mod.require_tensorrt()
    monkeypatch.setattr(trt_mod, "tensorrt_version", lambda: (10, 3))
    monkeypatch.setattr(trt_mod, "gpu_info", lambda: None)
    with pytest.raises(MsfError, match="no CUDA GPU is visible"):
        trt_mod.require_tensorrt()


def test_tensorrt_target_graph_has_only_standard_ops(shipped_model):
    from msf.export.onnx_export import export_onnx
    from msf.export.precision import to_fp16

    fp16 = to_fp16(export_onnx(shipped_model, ExportSpec(target="tensorrt")))
    assert all(n.domain in ("", "ai.onnx") for n in fp16.graph.node)
    ops = [n.op_type for n in fp16.graph.node]
    assert ops.count("Softmax") == 7 and ops.count("LayerNormalization") == 27
    assert "ReduceMean" not in ops  # LayerNorm is one op, not a decomposed (FP16-overflowing) chain


def _have_tensorrt_and_gpu():
    try:
        trt_mod.require_tensorrt()
    except MsfError as exc:
        return str(exc)
    return None


@pytest.mark.skipif(_have_tensorrt_and_gpu() is not None, reason=_have_tensorrt_and_gpu() or "")
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_engine_build_with_sidecar(tmp_path, precision, faces_root):
    import json
    import subprocess
    import sys

    out = tmp_path / "m.onnx"
    r = subprocess.run([sys.executable, "-m", "msf.cli.export", "-o", str(out), "--target", "tensorrt",
                        "--precision", precision, "--tensorrt", "--profile", "1,2,4", "--verify-images", "2"],
                       capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, r.stderr
    side = json.loads((tmp_path / "m.engine.json").read_text())
    assert side["format"] == "engine" and side["gpu"]["compute_capability"]
    assert side["profile"]["max"][0] == 4 and side["versions"]["tensorrt"]
    assert side["input"]["dtype"] == "float32" and side["output"]["dtype"] == "float32"  # fp16 inside only
