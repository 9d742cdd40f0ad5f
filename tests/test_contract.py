"""The graph I/O contract (msf.contract) and the numpy reference pre-processing (msf.frames)."""

import dataclasses
import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from msf.contract import (
    DEFAULT_RESIZE,
    DEFAULT_SIZE,
    LEGACY_RESIZE,
    MODEL_CONTRACT,
    RUNTIME_CONTRACT,
    GraphContract,
    GraphEnds,
    InputSpec,
    OutputSpec,
    contract_from_io,
    read_contract,
    read_sidecar,
    sidecar_path,
    write_json_atomic,
    write_sidecar,
)
from msf.errors import MsfError
from msf.frames import to_input

ALL_ENDS = [GraphEnds(io, color, head) for io in ("float", "uint8") for color in ("rgb", "bgr")
            for head in ("logits", "labels") if io == "uint8" or color == "rgb"]


def test_runtime_and_model_contracts():
    assert RUNTIME_CONTRACT.input == InputSpec(dtype="uint8", layout="NHWC", color="bgr", scale=1.0)
    assert RUNTIME_CONTRACT.output == OutputSpec(name="labels", kind="labels", dtype="uint8", classes=19)
    assert MODEL_CONTRACT.input == InputSpec()  # float32 NCHW RGB in [0, 1]
    assert MODEL_CONTRACT.input.scale == pytest.approx(1 / 255) and MODEL_CONTRACT.output.dtype == "float32"
    assert RUNTIME_CONTRACT.input.size == DEFAULT_SIZE and RUNTIME_CONTRACT.input.batch is None


@pytest.mark.parametrize("ends", ALL_ENDS, ids=lambda e: f"{e.io}-{e.color}-{e.head}")
@pytest.mark.parametrize("size, batch", [(512, None), (None, 4)])
def test_round_trip_through_a_json_sidecar(tmp_path, ends, size, batch):
    c = ends.contract(size, batch)
    assert c.ends == ends
    artifact = tmp_path / "m.onnx"
    write_sidecar(artifact, {"format": "onnx", **c.to_dict()})
    assert sidecar_path(artifact).name == "m.onnx.json"
    assert read_contract(artifact) == c
    assert GraphContract.from_dict(json.loads(json.dumps(c.to_dict()))) == c
    assert c.input.shape(2, 64) == ((batch or 2, 64 if size is None else size, 64 if size is None else size, 3)
                                    if ends.io == "uint8" else
                                    (batch or 2, 3, 64 if size is None else size, 64 if size is None else size))


def test_contracts_are_frozen_and_validated():
    with pytest.raises(dataclasses.FrozenInstanceError):
        RUNTIME_CONTRACT.input.size = 256  # type: ignore[misc]
    for bad in ({"dtype": "int8"}, {"layout": "HWC"}, {"color": "gray"}, {"size": 0}, {"batch": -1},
                {"dtype": "uint8", "scale": 1 / 255}):
        with pytest.raises(ValueError):
            InputSpec(**bad)
    with pytest.raises(ValueError):
        OutputSpec(kind="probabilities")
    with pytest.raises(ValueError):
        GraphEnds(io="float16")
    assert RUNTIME_CONTRACT.with_input(size=256).input.size == 256 and RUNTIME_CONTRACT.input.size == 512


def test_old_sidecars_and_checkpoint_convention_are_read():
    old = {"input": {"name": "image", "dtype": "float32", "layout": "NCHW", "color": "rgb", "size": 512},
           "output": {"name": "logits", "kind": "logits"}}
    c = GraphContract.from_dict(old)
    assert c == MODEL_CONTRACT and c.input.scale == pytest.approx(1 / 255)
    assert InputSpec.from_dict({"color": "rgb", "layout": "NCHW", "scale": "1/255"}).scale == pytest.approx(1 / 255)


def test_the_resize_rule_is_part_of_the_contract(tmp_path):
    """The rule inputs are resized by travels in the sidecar; one written before it was recorded
    gets the rule msf ran it with (``LEGACY_RESIZE``); an unknown rule is refused."""
    assert RUNTIME_CONTRACT.input.resize == MODEL_CONTRACT.input.resize == DEFAULT_RESIZE
    area = RUNTIME_CONTRACT.with_input(resize="area")
    write_sidecar(tmp_path / "m.onnx", {"format": "onnx", **area.to_dict()})
    assert json.loads(sidecar_path(tmp_path / "m.onnx").read_text())["input"]["resize"] == "area"
    assert read_contract(tmp_path / "m.onnx") == area
    old = {"input": {"dtype": "uint8", "layout": "NHWC", "color": "bgr", "scale": 1.0}, "output": {"kind": "labels"}}
    assert GraphContract.from_dict(old).input.resize == LEGACY_RESIZE
    with pytest.raises(ValueError, match="resize"):
        InputSpec(resize="cubic")
    with pytest.raises(MsfError, match="not valid"):
        GraphContract.from_dict({"input": {"resize": "cubic"}})


def test_contract_from_graph_signatures():
    c = contract_from_io(("image", "uint8", ["batch", 512, 512, 3]), ("labels", "uint8", ["batch", 512, 512]),
                         color="bgr")
    assert c == RUNTIME_CONTRACT
    c = contract_from_io(("x", "float32", [2, 3, "height", "width"]), ("y", "float32", [2, 19, "h", "w"]))
    assert c.input == InputSpec(name="x", size=None, batch=2) and c.output == OutputSpec(name="y")


def _faces(n=3, size=64):
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(n)]


@pytest.mark.parametrize("ends", [e for e in ALL_ENDS if e.head == "logits"], ids=lambda e: f"{e.io}-{e.color}")
def test_to_input_matches_an_independent_conversion(ends):
    crops = _faces()
    spec = ends.contract(size=64).input
    x = to_input(crops, spec)
    assert x.shape == spec.shape(3, 64) and x.dtype == np.dtype(spec.dtype) and x.flags.c_contiguous
    if ends.io == "uint8":
        want = [c if ends.color == "bgr" else cv2.cvtColor(c, cv2.COLOR_BGR2RGB) for c in crops]
        np.testing.assert_array_equal(x, np.stack(want))
    else:
        want = np.stack([cv2.cvtColor(c, cv2.COLOR_BGR2RGB).transpose(2, 0, 1) for c in crops]) / 255.0
        np.testing.assert_allclose(x, want, atol=1e-7)


def test_to_input_float16_and_dynamic_size():
    spec = InputSpec(dtype="float16", size=None)
    x = to_input(_faces(2, 32), spec)
    assert x.dtype == np.float16 and x.shape == (2, 3, 32, 32) and float(x.max()) <= 1.0


def test_to_input_refuses_what_the_graph_cannot_take():
    with pytest.raises(MsfError, match="takes 512×512 images, got 64×64"):
        to_input(_faces(), RUNTIME_CONTRACT.input)
    with pytest.raises(MsfError, match="uint8 BGR"):
        to_input([np.zeros((64, 64, 3), np.float32)], InputSpec(size=64))
    with pytest.raises(MsfError, match="no images"):
        to_input([], RUNTIME_CONTRACT.input)


def test_json_helpers(tmp_path):
    p = tmp_path / "d" / "x.json"
    write_json_atomic(p, {"a": 1, "path": tmp_path})
    assert json.loads(p.read_text()) == {"a": 1, "path": str(tmp_path)}
    assert read_sidecar(tmp_path / "none.onnx") is None and read_contract(tmp_path / "none.onnx") is None


def test_contract_module_imports_nothing_heavy():
    code = ("import sys, msf.contract, msf.frames, msf.runtime.backends; "
            "print(sorted(m for m in ('torch', 'onnx', 'onnxruntime', 'cv2', 'msf.export') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("text, needle", [
    ("nope{", "cannot read the sidecar"),
    ("[1, 2]", "is not a JSON object"),
    ('{"input": {"dtype": "int8"}}', "contract is not valid: input dtype must be one of"),
    ('{"input": {"size": 0}}', "contract is not valid"),
    ('{"input": [1]}', "contract is not valid"),
])
def test_a_malformed_sidecar_is_a_one_line_error(tmp_path, text, needle):
    art = tmp_path / "m.onnx"
    (tmp_path / "m.onnx.json").write_text(text)
    with pytest.raises(MsfError, match=needle):
        read_contract(art)
