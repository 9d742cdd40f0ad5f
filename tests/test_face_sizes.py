"""Face mode sized to the face: the checkpoint's recorded input size, face-matched input sizes,
and dropping labelled islands that are not attached to a face."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from msf.checkpoint import recommended_size
from msf.contract import DEFAULT_SIZE
from msf.labels import LABELS
from msf.model import MicroSegFormer
from msf.runtime.align import Placement
from msf.runtime.backends import create_backend
from msf.runtime.postprocess import drop_islands
from msf.runtime.segmenter import FACE_SIZE_RULE, Segmenter

SKIN, HAIR, CLOTH = LABELS.index("skin"), LABELS.index("hair"), LABELS.index("cloth")


def test_recommended_size_is_the_recorded_one(tmp_path):
    sd = MicroSegFormer().state_dict()
    torch.save({"model_state_dict": sd, "input_size": 320}, tmp_path / "a.pt")
    torch.save({"model_state_dict": sd}, tmp_path / "b.pt")
    torch.save({"model_state_dict": sd, "input_size": "big"}, tmp_path / "c.pt")
    assert recommended_size(tmp_path / "a.pt") == 320
    assert recommended_size(tmp_path / "b.pt") == DEFAULT_SIZE
    assert recommended_size(tmp_path / "c.pt") == DEFAULT_SIZE
    assert recommended_size(tmp_path / "missing.pt") == DEFAULT_SIZE
    torch.save({"model_state_dict": sd, "input_size": 192}, tmp_path / "a.pt")  # rewritten: read again
    assert recommended_size(tmp_path / "a.pt") == 192
    backend = create_backend(tmp_path / "a.pt", "pytorch")
    assert backend.size == 192
    assert create_backend(tmp_path / "a.pt", "pytorch", size=128).size == 128


def test_shipped_weights_record_their_size(shipped_model):
    assert recommended_size() == 384


def test_drop_islands_keeps_what_touches_the_face():
    lab = np.zeros((64, 64), np.uint8)
    lab[10:40, 10:40] = HAIR
    lab[20:30, 20:30] = SKIN            # the face, inside the hair
    lab[40:50, 15:35] = CLOTH           # joined to the hair below it
    lab[55:60, 50:60] = CLOTH           # a blob on the seat
    lab[2:5, 55:62] = HAIR              # a blob on the window
    out = drop_islands(lab)
    assert (out[10:50, 10:40] == lab[10:50, 10:40]).all()
    assert not out[55:60, 50:60].any() and not out[2:5, 55:62].any()
    assert out.dtype == np.uint8
    no_face = np.where(lab == SKIN, HAIR, lab).astype(np.uint8)
    assert np.array_equal(drop_islands(no_face), no_face)  # nothing parsed as a face: leave it
    single = np.zeros((8, 8), np.uint8)
    single[2:4, 2:4] = HAIR
    assert drop_islands(single) is single


def test_segmenter_sizes_faces_by_their_pixels():
    side, small = FACE_SIZE_RULE[0]
    seg = Segmenter(backend="null", mode="face", size=384, matched_sizes=True)
    assert Segmenter(backend="null", mode="face", size=384).sizes == seg.sizes  # on by default
    assert seg.sizes == sorted({small, 384})
    assert seg.size_for(Placement(0, 0, side)) == small and seg.size_for(Placement(0, 0, side + 1)) == 384
    frame = np.zeros((720, 1280, 3), np.uint8)
    places = [Placement(100, 100, side - 20), Placement(500, 100, 400), Placement(900, 300, side)]
    crops = seg.crops(frame, places)
    assert [c.shape[0] for c in crops] == [small, 384, small]
    labels = seg.infer(crops)
    assert [lab.shape for lab in labels] == [(small, small), (384, 384), (small, small)]
    assert seg.assemble(frame.shape, labels, places).shape == (720, 1280)
    # one size only: full mode, the option off, a size already at or below the smallest rule
    assert Segmenter(backend="null", mode="full", size=384).sizes == [384]
    assert Segmenter(backend="null", mode="face", size=384, matched_sizes=False).sizes == [384]
    assert Segmenter(backend="null", mode="face", size=small, matched_sizes=True).sizes == [small]
    seg.single_size()
    assert seg.sizes == [384] and seg.size_for(Placement(0, 0, 10)) == 384


def test_segmenter_matched_sizes_batch_per_size_and_smooth_in_crop_order(tmp_path):
    torch.manual_seed(0)
    ckpt = tmp_path / "m.pt"
    torch.save({"model_state_dict": MicroSegFormer().state_dict(), "input_size": 128}, ckpt)
    rule_small = 64
    seg = Segmenter(ckpt, "pytorch", mode="face", size=128, smooth=0.5, drop_islands=False, matched_sizes=True)
    seg.size_rule = ((100, rule_small),)
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 255, (300, 400, 3), np.uint8)
    places = [Placement(10, 10, 90), Placement(150, 20, 200), Placement(300, 200, 80)]
    labels = seg.parser.infer(seg.crops(frame, places), [(0, "a"), (0, "b"), (0, "c")])  # keys as a Plan has them
    assert [lab.shape[0] for lab in labels] == [rule_small, 128, rule_small]
    probs = seg.parser.probs
    assert [k[1] for k in probs] == ["a", "c", "b"]  # per size, keyed in the crops' order
    assert probs[(0, "a")].shape[-1] == rule_small and probs[(0, "b")].shape[-1] == 128
    # each size's labels are what that size's backend gives alone
    direct = Segmenter(ckpt, "pytorch", mode="full", size=rule_small)
    assert np.array_equal(labels[2], direct.infer(seg.crops(frame, places[2:]))[0])
    seg.close()


@pytest.mark.parametrize("mode", ["face", "auto"])
def test_segmenter_drops_islands_in_face_modes_only(mode):
    seg = Segmenter(backend="null", mode=mode, size=64)
    pattern = seg.backend.infer(np.zeros((1, 64, 64, 3), np.uint8))[0].copy()
    assert seg.clean_islands and not Segmenter(backend="null", mode="full", size=64).clean_islands
    assert np.array_equal(seg.infer([np.zeros((64, 64, 3), np.uint8)])[0], drop_islands(pattern))
