"""Export parity on real faces: deploy rewrite, ONNX graphs per target, fp16 and int8 variants."""

import json
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx.reference import ReferenceEvaluator

from msf.contract import GraphEnds
from msf.export.onnx_export import ExportSpec, export_onnx, graph_contract
from msf.export.precision import float_nodes, to_fp16, to_int8
from msf.export.rewrite import deploy
from msf.export.verify import graph_input, ort_runner, verify_session
from msf.frameops.fit import fit
from msf.metrics import ce7454_fscore
from msf.model import MicroSegFormer
from msf.paths import WEIGHTS_PATH

from .conftest import perturb


def _batch(pairs, size):
    return torch.stack([torch.from_numpy(fit(im, size, size).transpose(2, 0, 1).astype(np.float32) / 255)
                        for im, _ in pairs])


def _session(proto):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    return ort.InferenceSession(proto.SerializeToString(), so, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module", params=[False, True], ids=["default", "lmsa"])
def model(request, shipped_model):
    # The default variant is the trained, shipped model; LMSA has no trained weights, so its
    # parameters (BatchNorm statistics included) are moved off their initial values.
    return shipped_model if not request.param else perturb(MicroSegFormer(use_lmsa=True)).eval()


@pytest.mark.parametrize("core", ["matmul", "mha", "attention23"])
def test_deploy_rewrite_matches_training_graph(model, face_pairs, core):
    x = _batch(face_pairs[:4], 256)
    with torch.no_grad():
        ref = model.forward_reference(x)
        out = deploy(model, core)(x)
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)


def test_graph_ends_fold_exactly(model, face_pairs):
    imgs = np.stack([fit(im, 256, 256) for im, _ in face_pairs[:2]])
    x = torch.from_numpy(imgs.transpose(0, 3, 1, 2).astype(np.float32) / 255)
    with torch.no_grad():
        ref = model.forward_reference(x)
        bgr = torch.from_numpy(np.ascontiguousarray(imgs[..., ::-1]))
        logits = deploy(model, "matmul", GraphEnds("uint8", "bgr", "logits"))(bgr)
        labels = deploy(model, "matmul", GraphEnds("uint8", "rgb", "labels"))(torch.from_numpy(imgs))
    torch.testing.assert_close(logits, ref, atol=1e-4, rtol=1e-4)
    assert labels.dtype == torch.uint8
    assert (labels == ref.argmax(1)).float().mean() > 0.9999


@pytest.mark.parametrize("spec", [
    ExportSpec("reference"),
    ExportSpec(target="onnxruntime"),
    ExportSpec(target="onnxruntime", core="attention23"),
    ExportSpec(target="tensorrt"),
    ExportSpec(target="tensorrt", size=256),
], ids=["reference", "fused-ort-mha", "fused-ort-attention23", "fused-tensorrt-matmul", "fused-fixed-256"])
def test_onnx_graphs_match_pytorch_fp32(model, face_pairs, spec):
    # dynamic size (Resize upsampling) unless the spec fixes it (MatMul upsampling); tested at 256
    spec = ExportSpec(spec.attention, spec.target, spec.core, size=spec.size if spec.size == 256 else None)
    proto = export_onnx(model, spec)
    ops = {n.op_type for n in proto.graph.node}
    if spec.resolved_core == "attention23":
        assert "Attention" in ops and "Softmax" not in ops
    elif spec.resolved_core == "mha":
        assert "MultiHeadAttention" in ops and "Softmax" not in ops
    else:
        assert "Softmax" in ops and "LayerNormalization" in ops
    if spec.target == "tensorrt":
        assert all(n.domain in ("", "ai.onnx") for n in proto.graph.node)  # TensorRT parses no contrib ops
    x = _batch(face_pairs[:4], 256)
    out = _session(proto).run(None, {"image": x.numpy()})[0]
    with torch.no_grad():
        ref = model.forward_reference(x).numpy()
    assert np.abs(out - ref).max() <= 1e-3
    assert (out.argmax(1) == ref.argmax(1)).mean() >= 0.999


def test_fused_graph_is_smaller_than_reference(shipped_model):
    ref = export_onnx(shipped_model, ExportSpec("reference"))
    fused = export_onnx(shipped_model, ExportSpec())
    assert len(fused.graph.node) < 0.7 * len(ref.graph.node)
    ops = [n.op_type for n in fused.graph.node]
    # 7 fused attention cores; at a fixed size the 3 stage upsamples are MatMuls, one Resize remains
    assert ops.count("MultiHeadAttention") == 7 and ops.count("Softmax") == 0 and ops.count("Resize") == 1


def test_fp16_deploy_model_in_torch_half(shipped_model, face_pairs):
    """FP16 check 1: the deploy model run in float16 keeps labels and F-score on real faces; it
    takes the float32 input of its contract and casts it to its weights' dtype itself."""
    x = _batch(face_pairs[:4], 512)
    dep = deploy(shipped_model, "matmul")
    with torch.no_grad():
        ref = dep(x).argmax(1).numpy()
        half = dep.half()(x).float().argmax(1).numpy()
    agreement = (ref == half).mean()
    f_ref = np.mean([ce7454_fscore(m, r) for (_, m), r in zip(face_pairs, ref)])
    f_half = np.mean([ce7454_fscore(m, h) for (_, m), h in zip(face_pairs, half)])
    assert agreement >= 0.995
    assert f_ref - f_half <= 0.005


def test_fp16_deploy_model_takes_uint8_frames(shipped_model, face_pairs):
    """What the PyTorch fp16 backend runs: uint8 BGR frames in, labels out, fp16 weights (CPU
    PyTorch runs fp16 convolutions, slowly: a small size)."""
    frames = torch.from_numpy(np.stack([fit(im, 128, 128)[..., ::-1] for im, _ in face_pairs[:2]]).copy())
    ends = GraphEnds("uint8", "bgr", "labels")
    dep = deploy(shipped_model, "matmul", ends, 128)
    with torch.no_grad():
        ref = dep(frames)
        half = dep.half()(frames)
    assert half.dtype == torch.uint8 and half.shape == (2, 128, 128)
    assert (half == ref).float().mean() >= 0.99


def test_fp16_onnx_file_by_onnx_reference(shipped_model, face_pairs):
    """FP16 check 2: the mixed-precision file itself, run by onnx.reference at a small size."""
    fp32 = export_onnx(shipped_model, ExportSpec(target="tensorrt", size=None))
    fp16 = to_fp16(fp32)
    types = {t.data_type for t in fp16.graph.initializer if len(t.dims) > 1}
    assert types == {onnx.TensorProto.FLOAT16}  # weights are fp16
    ln_inputs = [n.input[0] for n in fp16.graph.node if n.op_type == "LayerNormalization"]
    producers = {o: n.op_type for n in fp16.graph.node for o in n.output}
    assert ln_inputs and all(producers.get(i) == "Cast" for i in ln_inputs)  # LayerNorm runs in fp32
    x = _batch(face_pairs[:2], 96).numpy()
    ref = _session(fp32).run(None, {"image": x})[0]
    out = ReferenceEvaluator(fp16).run(None, {"image": x})[0].astype(np.float32)
    assert (out.argmax(1) == ref.argmax(1)).mean() >= 0.99
    assert np.abs(out - ref).max() < 0.1 * np.abs(ref).max()


def test_int8_keeps_the_named_layers_in_float(shipped_model, face_pairs, tmp_path):
    spec = ExportSpec(core="mha", size=128)  # what msf-export quantizes (opset 17), small for speed
    fp32 = tmp_path / "fp32.onnx"
    onnx.save(export_onnx(shipped_model, spec), fp32)
    keep = ("patch_embed1", "decoder.cls")
    proto = onnx.load(fp32)
    assert float_nodes(proto, keep) == ["/patch_embed1/proj/Conv", "/decoder/cls/Conv"]
    calib = [graph_input([im], spec.contract.input) for im, _ in face_pairs[4:6]]
    to_int8(fp32, tmp_path / "int8.onnx", calib, keep_float=keep)
    q = onnx.load(tmp_path / "int8.onnx")
    assert graph_contract(q) == spec.contract  # float32 in, float32 logits out: int8 is inside only
    producers = {o: n.op_type for n in q.graph.node for o in n.output}
    convs = {n.name: n for n in q.graph.node if n.op_type == "Conv"}
    quantized = {name: producers.get(n.input[1]) == "DequantizeLinear" for name, n in convs.items()}
    assert quantized.pop("/patch_embed1/proj/Conv") is False and quantized.pop("/decoder/cls/Conv") is False
    assert quantized and all(quantized.values())  # every other Conv has int8 weights
    ops = [n.op_type for n in q.graph.node]
    assert ops.count("QuantizeLinear") > 10 and "LayerNormalization" in ops  # LN stays float
    rep = verify_session(ort_runner(tmp_path / "int8.onnx"), shipped_model, face_pairs[:2], spec.contract,
                         "int8", "int8.onnx", "test", size=128)
    assert rep.agreement > 0.9 and rep.images == 2


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "msf.cli.export", *map(str, args)], capture_output=True,
                          text=True, timeout=600)


def test_cli_export_writes_verified_onnx_and_sidecar(tmp_path, faces_root, shipped_model):
    out = tmp_path / "m.onnx"
    r = run_cli("-o", out, "--io", "uint8", "--color", "bgr", "--head", "labels", "--data", faces_root,
                "--verify-images", "3", "--json", tmp_path / "s.json")
    assert r.returncode == 0, r.stderr
    assert "PASS" in r.stdout and "opset / nodes" in r.stdout
    side = json.loads((tmp_path / "m.onnx.json").read_text())
    assert side["input"] == {"name": "image", "dtype": "uint8", "layout": "NHWC", "color": "bgr", "scale": 1.0,
                             "size": 384, "batch": None, "resize": "block+bilinear"}  # the rule inputs are made by
    assert side["output"]["kind"] == "labels" and side["format"] == "onnx" and len(side["labels"]) == 19
    assert side["versions"]["onnxruntime"] and len(side["checkpoint_sha256"]) == 64
    assert side["verification"]["agreement"] >= 0.999
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert sess.get_outputs()[0].shape == ["batch", 384, 384]
    v = run_cli("--verify", out, "--data", faces_root, "--verify-images", "2")
    assert v.returncode == 0 and "PASS" in v.stdout


@pytest.mark.parametrize("args, needle", [
    (["--ckpt", "{tmp}/missing.pt"], "checkpoint not found"),
    (["--ckpt", "{tmp}/junk.pt"], "not a readable PyTorch checkpoint: the file is not in torch.save's format"),
    (["--ckpt", "{tmp}/trunc.pt"], "the archive is truncated or corrupt"),
    (["--ckpt", "{tmp}/empty.pt"], "the file is empty"),
    (["--ckpt", "{tmp}/other.pt"], "not a MicroSegFormer checkpoint"),
    (["-o", "{tmp}/no/such/dir/m.onnx"], "output folder does not exist"),
    (["-o", "{tmp}/ro/m.onnx"], "output folder is not writable"),
    (["-o", "/proc/m.onnx"], "output folder is not writable"),
    (["--tensorrt"], "TensorRT is not installed"),
    (["--precision", "int4"], "invalid choice: 'int4'"),
    (["--precision", "int8", "--core", "attention23"], "cannot quantize the opset-23 attention core"),
    (["--precision", "int8", "--target", "tensorrt"], "TensorRT engines are built FP16"),
    (["--batch", "0"], "argument --batch: expected a positive integer, got '0' (or 'dynamic')"),
    (["--size", "-8"], "argument --size: expected a multiple of 32 from 64 to 1024, got '-8' (or 'dynamic')"),
    (["--verify-images", "0"], "expected a positive integer"),
    (["--target", "tensorrt", "--core", "mha"], "TensorRT cannot parse"),
    (["--verify", "{tmp}/junk.onnx"], "not a readable ONNX model"),
])
def test_cli_bad_input_one_line_no_files(tmp_path, args, needle):
    from msf.export.tensorrt import tensorrt_version

    if "--tensorrt" in args and tensorrt_version() is not None:
        pytest.skip("TensorRT is installed here")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    (tmp_path / "trunc.pt").write_bytes(WEIGHTS_PATH.read_bytes()[:100_000])  # an interrupted download
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "junk.onnx").write_bytes(b"junk")
    torch.save({"model_state_dict": torch.nn.Conv2d(3, 4, 3).state_dict()}, tmp_path / "other.pt")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    args = [a.format(tmp=tmp_path) for a in args]
    if "-o" not in args and "--verify" not in args:
        args += ["-o", str(tmp_path / "out.onnx")]
    before = set(tmp_path.rglob("*"))
    r = run_cli(*args)
    if "ro/m.onnx" in " ".join(args) and r.returncode == 0:
        pytest.skip("running as a user who can write anywhere (root ignores directory permissions)")
    assert r.returncode != 0
    assert needle in r.stderr and "Traceback" not in r.stderr
    assert len([ln for ln in r.stderr.splitlines() if "error" in ln]) == 1
    assert set(tmp_path.rglob("*")) == before  # nothing half-written
