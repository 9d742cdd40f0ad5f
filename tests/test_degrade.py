"""Degradations (training stage and evaluation suite), the robustness report and msf-eval --degrade."""

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from msf.augment import Augment
from msf.config import PRESETS, config_from_dict
from msf.data import FaceDataset, list_samples
from msf.degrade import (
    Degrade,
    degradation_suite,
    degrade_pairs,
    h264,
    jpeg,
    low_light,
    select_degradations,
    shrink,
)
from msf.errors import MsfError
from msf.model import MicroSegFormer
from msf.robustness import robustness_rows, summarize_rows


def _face_like(n: int = 128, seed: int = 0) -> np.ndarray:
    """A smooth picture with edges (JPEG and H.264 have something to lose)."""
    rng = np.random.default_rng(seed)
    img = cv2.resize(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), (n, n), interpolation=cv2.INTER_CUBIC)
    cv2.circle(img, (n // 2, n // 2), n // 4, (230, 180, 150), -1)
    cv2.rectangle(img, (n // 3, n // 3), (n // 2, n // 2 + 4), (20, 20, 120), -1)
    return img


def test_shrink_keeps_aspect_and_never_enlarges():
    img = np.zeros((100, 200, 3), np.uint8)
    assert shrink(img, 50).shape == (25, 50, 3)
    assert shrink(img, 400) is img


def test_compression_round_trips_keep_size_and_lose_detail():
    img = _face_like(130)  # odd-free but not a multiple of 16: the codecs pad and crop
    for out in (jpeg(img, 30), h264(img, 40), h264(img[:, :-1], 40)):
        assert out.dtype == np.uint8 and out.shape[2] == 3
        assert out.shape[:2] in (img.shape[:2], img[:, :-1].shape[:2])
    assert 1.0 < np.abs(jpeg(img, 10).astype(int) - img).mean() < 40
    assert np.abs(jpeg(img, 95).astype(int) - img).mean() < np.abs(jpeg(img, 10).astype(int) - img).mean()
    assert np.abs(h264(img, 45).astype(int) - img).mean() > np.abs(h264(img, 15).astype(int) - img).mean()


def test_low_light_darkens():
    img = np.full((4, 4, 3), 200, np.uint8)
    assert low_light(img, 0.3, 1.4).max() < 70


def test_suite_is_deterministic_and_keeps_each_image_size():
    img = _face_like(512)
    names = [d.name for d in degradation_suite()]
    assert len(set(names)) == len(names)
    assert {"s64_q40", "s96_q40", "s128_q40", "s128_h264", "blur", "noise", "low_light"} <= set(names)
    for d in degradation_suite():
        a, b = d(img, 3), d(img, 3)
        assert a.shape == img.shape and np.array_equal(a, b), d.name
        assert not np.array_equal(a, img), d.name
    noise = select_degradations("noise")[0]
    assert not np.array_equal(noise(img, 1), noise(img, 2))  # seeded per image


def test_select_degradations_names_the_unknown():
    assert [d.name for d in select_degradations("s96_q40, blur")] == ["s96_q40", "blur"]
    assert len(select_degradations("all")) == len(degradation_suite())
    with pytest.raises(MsfError, match="unknown degradation 'nope'; known: all, s256"):
        select_degradations("nope")


def test_training_stage_is_seeded_off_by_default_and_keeps_clean_share():
    img = _face_like(128)
    assert Degrade()(img) is img  # p = 0: the published recipe is unchanged
    stage = Degrade(p=0.8)
    torch.manual_seed(5)
    a = [stage(img) for _ in range(40)]
    torch.manual_seed(5)
    b = [stage(img) for _ in range(40)]
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert all(x.shape == img.shape and x.dtype == np.uint8 for x in a)
    clean = sum(np.array_equal(x, img) for x in a)
    assert 2 <= clean <= 25  # some images stay clean, most do not


def test_dataset_degrades_images_only():
    rng = np.random.default_rng(0)
    pairs = [(_face_like(64, i), rng.integers(0, 19, (64, 64), dtype=np.uint8)) for i in range(3)]
    ds = FaceDataset([None] * 3, 64, None, pairs, degrade=lambda im: 255 - im)
    x, y = ds[1]
    assert torch.equal(y, torch.from_numpy(pairs[1][1]).long())
    assert torch.allclose(x, torch.from_numpy(255 - pairs[1][0]).permute(2, 0, 1).float() / 255)


def test_augment_shift_moves_the_picture():
    mask = np.zeros((64, 64), np.uint8)
    mask[28:36, 28:36] = 1
    aug = Augment(flip=0, rotate=0, scale=(1, 1), shift=0.2, brightness=0, contrast=0, saturation=0)
    torch.manual_seed(0)
    moved = [aug(np.zeros((64, 64, 3), np.uint8), mask)[1] for _ in range(5)]
    assert any(not np.array_equal(m, mask) for m in moved)
    assert all(m.sum() == mask.sum() or m.sum() < mask.sum() for m in moved)


def test_robust_preset_round_trips_and_turns_degradation_on():
    cfg = config_from_dict(PRESETS["robust"])
    assert cfg.degrade.p > 0 and cfg.aug.shift > 0 and cfg.val_size == 384 and cfg.val_degrade
    assert config_from_dict(cfg.to_dict()) == cfg
    assert config_from_dict(PRESETS["cpu"]).degrade.p == 0


def test_robustness_rows_and_summary():
    rng = np.random.default_rng(0)
    pairs = [(_face_like(64, i), rng.integers(0, 3, (64, 64), dtype=np.uint8)) for i in range(4)]
    seen = []

    def score(p):
        seen.append(p)
        f = float(np.mean([img.mean() for img, _ in p])) / 255
        return {"f_score": f, "f_score_ci95": [f - 0.1, f + 0.1]}

    degs = select_degradations("s64,low_light")
    rows = robustness_rows(score, pairs, degs)
    assert [r["name"] for r in rows] == ["clean", "s64", "low_light"]
    assert seen[0] is pairs and all(m is pm for (_, m), (_, pm) in zip(seen[2], pairs))
    s = summarize_rows(rows)
    assert s["worst"] == "low_light" and s["drop_mean"] == pytest.approx(rows[0]["f_score"] - s["degraded_mean"])
    bgr_rows = robustness_rows(score, [(im[..., ::-1], m) for im, m in pairs], degs, bgr=True)
    assert bgr_rows[1]["f_score"] == pytest.approx(rows[1]["f_score"])  # same degradation, other channel order
    assert robustness_rows(score, pairs, [], clean={"f_score": 0.5})[0]["f_score"] == 0.5


def test_degrade_pairs_leaves_masks_alone():
    pairs = [(_face_like(64), np.ones((64, 64), np.uint8))]
    out = degrade_pairs(pairs, select_degradations("s64_q40")[0])
    assert out[0][1] is pairs[0][1] and not np.array_equal(out[0][0], pairs[0][0])


def test_eval_degrade_cli_reports_rows_and_writes_json_and_plot(faces_root, tmp_path):
    names = [s.name for s in list_samples(faces_root)[:3]]
    ckpt = tmp_path / "m.pt"
    torch.manual_seed(0)
    torch.save({"model_state_dict": MicroSegFormer().state_dict(), "val_names": names, "input_size": 64}, ckpt)
    r = subprocess.run([sys.executable, "-m", "msf.cli.eval", "--ckpt", str(ckpt), "--data", str(faces_root),
                        "--split", "val", "--degrade", "s96_q40,blur", "--no-per-class",
                        "--json", str(tmp_path / "e.json"), "--degrade-plot", str(tmp_path / "e.png")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "s96_q40" in r.stdout and "worst" in r.stdout
    out = json.loads((tmp_path / "e.json").read_text())
    assert list(out["results"]) == ["64"]  # the checkpoint's recorded input size is the default
    rob = out["robustness"]["@64"]
    assert [row["name"] for row in rob["rows"]] == ["clean", "s96_q40", "blur"]
    assert rob["rows"][0]["f_score"] == pytest.approx(out["results"]["64"]["f_score"])
    assert set(rob["summary"]) >= {"clean", "degraded_mean", "worst"}
    assert (tmp_path / "e.png").stat().st_size > 10_000


def test_eval_degrade_list_needs_no_data():
    r = subprocess.run([sys.executable, "-m", "msf.cli.eval", "--degrade", "list"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0 and "s128_h264" in r.stdout
