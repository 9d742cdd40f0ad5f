"""Test-time augmentation (``msf-eval --tta``): the mirror pass swaps left/right classes back, the
scales land on model sizes, and on real held-out faces averaging helps rather than hurts."""

import json

import numpy as np
import pytest

from msf.checkpoint import checkpoint_metadata
from msf.cli.eval import build_parser
from msf.data import list_samples, read_pair
from msf.errors import UsageError
from msf.evaluate import NO_TTA, TTA_MODES, check_tta, evaluate_pairs, predict_labels
from msf.labels import flip_lut
from tests.test_cli import run
from tests.test_outputs_safe import _clip


def test_cli_choices_are_the_modes():
    action = next(a for a in build_parser()._actions if a.dest == "tta")
    assert list(action.choices) == list(TTA_MODES) and action.default == "off"


def test_scales_land_on_model_sizes():
    ms = TTA_MODES["flip-ms"]
    assert ms.sizes(384) == [320, 384, 448] and ms.passes == 6
    assert ms.sizes(64) == [64]  # 5/6 and 7/6 of 64 both round back to 64
    assert TTA_MODES["flip"].sizes(384) == [384] and TTA_MODES["flip"].passes == 2
    assert not NO_TTA.active and NO_TTA.passes == 1
    check_tta(ms, 832)  # 7/6 × 832 -> 960
    with pytest.raises(UsageError, match="--tta flip-ms at --size 1024"):
        check_tta(ms, 1024)


def test_flip_tta_is_mirror_symmetric_with_left_right_swapped(shipped_model, face_pairs):
    """Mirroring the input mirrors the prediction and swaps left/right eyes, brows and ears; a
    mirror pass whose classes were not swapped back would break this on the eyes."""
    lut = flip_lut()
    images = [im for im, _ in face_pairs[:3]]
    mirrored = [np.ascontiguousarray(im[:, ::-1]) for im in images]
    a = predict_labels(shipped_model, images, 256, tta=TTA_MODES["flip"])
    b = predict_labels(shipped_model, mirrored, 256, tta=TTA_MODES["flip"])
    expected = lut[a[:, :, ::-1]]
    assert np.isin(a, [4, 5]).any()  # the faces have eyes, so the swap is exercised
    # bilinear resizes are not exactly mirror-symmetric at the last bit: allow a few ties to flip
    assert (b != expected).mean() < 1e-3


def test_tta_scores_held_out_faces_no_worse(shipped_model, faces_root):
    val = set(checkpoint_metadata()["val_names"])
    pairs = [read_pair(s) for s in list_samples(faces_root) if s.name in val][:12]
    plain = evaluate_pairs(shipped_model, pairs, 256)["f_score"]
    flip = evaluate_pairs(shipped_model, pairs, 256, tta=TTA_MODES["flip"])["f_score"]
    # flip alone adds about 0.01 on the 100 held-out faces; wrong left/right classes would cost more
    assert flip > plain - 0.002


def test_eval_cli_tta(faces_root, tmp_path):
    assert TTA_MODES["flip-ms"].sizes(96) == [64, 96, 128]  # so the CLI run below is multi-scale
    r = run("msf.cli.eval", "--data", faces_root, "--split", "val", "--limit", "2", "--size", "96",
            "--tta", "flip-ms", "--per-class", "--json", tmp_path / "r.json")
    assert r.returncode == 0, r.stderr
    res = json.loads((tmp_path / "r.json").read_text())
    assert res["tta"] == "flip-ms" and res["results"]["96"]["images"] == 2
    bad = run("msf.cli.eval", "--data", faces_root, "--size", "1024", "--tta", "flip-ms")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "--tta flip-ms at --size 1024" in bad.stderr


# -- the runtime's mirror pass (msf-video --tta flip, Segmenter(flip=True)) -------------------------

@pytest.fixture(scope="module")
def flip_segmenter(shipped_model):
    from msf.runtime import Segmenter

    return Segmenter(backend="pytorch", mode="full", size=256, flip=True)


def test_runtime_flip_is_mirror_symmetric_with_left_right_swapped(flip_segmenter, face_pairs):
    lut = flip_lut()
    bgr = [np.ascontiguousarray(im[:, :, ::-1]) for im, _ in face_pairs[:3]]
    a = np.stack(flip_segmenter.predict_batch(bgr))
    b = np.stack(flip_segmenter.predict_batch([np.ascontiguousarray(f[:, ::-1]) for f in bgr]))
    assert np.isin(a, [4, 5]).any()
    assert (b != lut[a[:, :, ::-1]]).mean() < 1e-3
    assert flip_segmenter.describe().endswith("+ mirror pass")  # the HUD and the run summary say so


def test_runtime_flip_scores_held_out_faces_no_worse(flip_segmenter, faces_root):
    from msf.metrics import MetricAccumulator
    from msf.runtime import Segmenter

    val = set(checkpoint_metadata()["val_names"])
    pairs = [read_pair(s) for s in list_samples(faces_root) if s.name in val][:12]
    bgr = [np.ascontiguousarray(im[:, :, ::-1]) for im, _ in pairs]
    plain = Segmenter(backend="pytorch", mode="full", size=256)
    scores = {}
    for name, seg in (("plain", plain), ("flip", flip_segmenter)):
        acc = MetricAccumulator()
        for (_, mask), pred in zip(pairs, seg.predict_batch(bgr)):
            acc.update(mask, pred)
        scores[name] = acc.summary()["f_score"]
    assert scores["flip"] > scores["plain"] - 0.002, scores


def test_video_cli_tta_flip(tmp_path):
    clip = _clip(tmp_path / "in.mp4", n=4)
    r = run("msf.cli.video", clip, "--backend", "pytorch", "--size", "64", "--tta", "flip", "--mode", "full",
            "-o", f"masks:{tmp_path / 'm'}", "--stats", tmp_path / "s.json")
    assert r.returncode == 0, r.stderr
    assert len(list((tmp_path / "m").glob("*.png"))) == 4
    assert json.loads((tmp_path / "s.json").read_text())["backend"].endswith("+ mirror pass")


def test_averaged_probabilities_sum_to_one_where_scales_coincide(shipped_model, face_pairs):
    from msf.evaluate import predict_probs

    p = predict_probs(shipped_model, [face_pairs[0][0]], 64, TTA_MODES["flip-ms"])  # 3 scales -> one size
    assert ((p.sum(1) - 1).abs() < 1e-4).all()
