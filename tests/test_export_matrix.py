"""Every msf-export option value, written by the export pipeline, loaded through Segmenter and
create_backend (what msf-video runs) and compared with the PyTorch fp32 training graph on real faces.

precision {fp32, fp16, int8} × io {float, uint8 rgb, uint8 bgr} × head {logits, labels} at full
size, plus each attention core, --attention reference, --target tensorrt (the ONNX file), --size
dynamic, --batch N and --opset; combinations that cannot be written are one-line errors.

Kept fast: one trace per graph (a session-wide memo of ``export_onnx``, so fp16 and int8 files of
the same ends convert the same fp32 graph, as msf-export does), small INT8 calibration, 3 faces.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest

from msf.contract import GraphContract, GraphEnds, read_sidecar
from msf.errors import MsfError
from msf.export import pipeline
from msf.export.onnx_export import ExportSpec, graph_contract
from msf.export.pipeline import ExportOptions, run_export
from msf.frames import rgb_to_bgr
from msf.runtime import Segmenter, create_backend

# Minimum pixel label agreement with PyTorch fp32 per precision (int8 is calibrated on 4 faces
# here to keep the test fast; msf-export's own gate, with its default calibration, is 97 %).
AGREEMENT = {"fp32": 0.999, "fp16": 0.995, "int8": 0.95}
IOS = [GraphEnds("float", "rgb"), GraphEnds("uint8", "rgb"), GraphEnds("uint8", "bgr")]


@dataclass(frozen=True)
class Case:
    precision: str = "fp32"
    ends: GraphEnds = GraphEnds()
    spec: ExportSpec | None = None  # other options (ends and precision set above)

    @property
    def name(self) -> str:
        e = self.ends
        s = self.spec or ExportSpec()
        extra = [f"{k}={v}" for k, v in (("attention", s.attention), ("target", s.target), ("core", s.core),
                                        ("size", s.size), ("batch", s.batch), ("opset", s.opset))
                 if v != getattr(ExportSpec(), k)]
        return "-".join([self.precision, e.io + ("" if e.io == "float" else "-" + e.color), e.head, *extra])


FULL = [Case(p, GraphEnds(io.io, io.color, head)) for p, io, head in
        itertools.product(("fp32", "fp16", "int8"), IOS, ("logits", "labels"))]
OPTIONS = [
    Case("fp32", GraphEnds("uint8", "bgr", "labels"), ExportSpec(core="attention23", size=None)),
    Case("fp16", GraphEnds(), ExportSpec(target="tensorrt", core="matmul", opset=18)),
    Case("int8", GraphEnds("uint8", "bgr", "labels"), ExportSpec(core="mha", batch=2)),
    Case("fp32", GraphEnds("uint8", "rgb", "logits"), ExportSpec(attention="reference", batch=2)),
]


@pytest.fixture(scope="session")
def exporter(tmp_path_factory, faces_root, shipped_model):
    """Export a case once per session (verification on in the fp32 cases, the pipeline's own gate)."""
    out_dir = tmp_path_factory.mktemp("matrix")
    traced: dict[ExportSpec, bytes] = {}
    real = pipeline.export_onnx

    def memo(model, spec):
        if spec not in traced:
            traced[spec] = real(model, spec).SerializeToString()
        return onnx.load_from_string(traced[spec])

    files: dict[Case, tuple[Path, dict]] = {}
    mp = pytest.MonkeyPatch()
    mp.setattr(pipeline, "export_onnx", memo)

    def export(case: Case) -> tuple[Path, dict]:
        if case not in files:
            from dataclasses import replace

            spec = replace(case.spec or ExportSpec(), ends=case.ends)
            out = out_dir / f"{case.name}.onnx"
            summary = run_export(ExportOptions(out=out, spec=spec, precision=case.precision, data=str(faces_root),
                                               verify=case == FULL[0], verify_images=2, calib_images=4),
                                 log=lambda m: None)
            files[case] = (out, summary)
        return files[case]

    yield export
    mp.undo()


@pytest.fixture(scope="session")
def faces(face_pairs):
    """Three real faces as BGR frames, and the PyTorch fp32 training graph's labels for them."""
    frames = [rgb_to_bgr(img) for img, _ in face_pairs[:3]]
    ref = Segmenter(None, "pytorch-reference", size=512).predict_batch(frames)  # the matrix exports 512²
    return frames, ref


def _check(case: Case, exporter, faces) -> None:
    path, summary = exporter(case)
    side = read_sidecar(path)
    # the sidecar says exactly what the file takes and returns, whatever the precision
    declared = GraphContract.from_dict(side)
    assert graph_contract(onnx.load(path, load_external_data=False), color=declared.input.color) == declared
    assert declared.ends == case.ends and side["precision"] == case.precision
    assert declared.input.dtype in ("float32", "uint8")  # fp16 and int8 are inside only
    if summary["verification"] is not None:
        assert summary["verification"]["ok"]
    seg = Segmenter(path)  # through create_backend, msf-video's factory
    assert seg.backend.contract == declared and seg.backend.precision == case.precision
    frames, ref = faces
    labels = seg.predict_batch(frames)
    agreement = np.mean([(a == b).mean() for a, b in zip(labels, ref)])
    assert agreement >= AGREEMENT[case.precision], f"{case.name}: agreement {agreement:.4%}"


@pytest.mark.parametrize("case", FULL, ids=lambda c: c.name)
def test_full_size_matrix(case, exporter, faces):
    _check(case, exporter, faces)


@pytest.mark.parametrize("case", OPTIONS, ids=lambda c: c.name)
def test_other_options(case, exporter, faces):
    _check(case, exporter, faces)
    if case.spec.batch:
        assert create_backend(exporter(case)[0]).max_batch == case.spec.batch  # 3 frames ran as 2 + 1 padded
    if case.spec.size is None:
        seg = Segmenter(exporter(case)[0], size=256)  # a dynamic-size graph runs at the size asked for
        assert seg.backend.contract.input.size is None and seg.size == 256
        assert seg.predict(faces[0][0]).shape == (512, 512)


def test_smoothing_takes_a_logits_file(exporter, faces):
    path, _ = exporter(FULL[0])  # fp32 float logits
    seg = Segmenter(path, smooth=0.5)
    assert seg.predict_batch(faces[0][:2])[0].shape == (512, 512)
    labels_file, _ = exporter(FULL[1])
    with pytest.raises(MsfError, match="needs a model that returns logits"):
        Segmenter(labels_file, smooth=0.5)
    with pytest.raises(MsfError, match=r"the mirror pass \(--tta flip\) needs a model that returns logits"):
        Segmenter(labels_file, flip=True)
    assert Segmenter(path, flip=True).predict(faces[0][0]).shape == (512, 512)


@pytest.mark.parametrize("options, needle", [
    ({"precision": "int8", "spec": ExportSpec(core="attention23")}, "cannot quantize the opset-23 attention core"),
    ({"precision": "int8", "spec": ExportSpec(target="tensorrt")}, "TensorRT engines are built FP16"),
    ({"spec": ExportSpec(target="tensorrt", core="mha")}, "TensorRT cannot parse"),
    ({"spec": ExportSpec(batch=0)}, "--batch must be a positive integer"),
    ({"spec": ExportSpec(opset=13)}, "opset 13 is too old"),
])
def test_unwritable_combinations_are_one_line_errors(tmp_path, options, needle):
    out = tmp_path / "m.onnx"
    with pytest.raises(MsfError, match=needle) as exc:
        run_export(ExportOptions(out=out, **options), log=lambda m: None)
    assert "\n" not in str(exc.value) and list(tmp_path.iterdir()) == []
