import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from msf.data import list_samples
from msf.model import MicroSegFormer

CLIS = ["msf.cli.train", "msf.cli.eval"]


def run(module, *args, timeout=300):
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.parametrize("module", CLIS)
def test_help_and_version(module):
    h = run(module, "--help")
    assert h.returncode == 0 and "usage:" in h.stdout and "examples:" in h.stdout
    v = run(module, "--version")
    assert v.returncode == 0 and v.stdout.strip().endswith("0.1.0")


def test_train_print_config_applies_overrides():
    r = run("msf.cli.train", "--preset", "cpu", "--lr", "0.01", "--set", "aug.rotate=5", "--print-config")
    assert r.returncode == 0
    assert "lr: 0.01" in r.stdout and "rotate: 5" in r.stdout and "size: 512" in r.stdout


@pytest.mark.parametrize("args, needle", [
    (["--set", "nonsense=1"], "unknown TrainConfig keys: nonsense"),
    (["--phases", "12at256"], "bad phase"),
    (["--config", "/no/such.yaml"], "config file not found"),
    (["--data", "/no/such/dir", "--preset", "tiny"], "data folder not found"),
    (["--preset", "tiny", "--init", "/no/such.pt"], "checkpoint not found: /no/such.pt"),
    (["--set", "lr=fast", "--print-config"], "TrainConfig.lr must be a number"),
])
def test_train_bad_input_is_one_line(args, needle, tmp_path):
    r = run("msf.cli.train", *args, "--out", tmp_path / "o")
    assert r.returncode == 1
    assert needle in r.stderr and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, faces_root):
    names = [s.name for s in list_samples(faces_root)[:3]]
    path = tmp_path_factory.mktemp("ck") / "m.pt"
    torch.manual_seed(0)
    torch.save({"model_state_dict": MicroSegFormer().state_dict(), "val_names": names}, path)
    return path, names


def test_eval_scores_split_and_writes_masks(ckpt, faces_root, tmp_path):
    path, names = ckpt
    r = run("msf.cli.eval", "--ckpt", path, "--data", faces_root, "--split", "val", "--size", "64,96",
            "--save-masks", tmp_path / "m", "--save-overlays", tmp_path / "o", "--json", tmp_path / "r.json")
    assert r.returncode == 0, r.stderr
    assert "CE7454 F-score" in r.stdout and "l_brow" in r.stdout
    res = json.loads((tmp_path / "r.json").read_text())
    assert set(res["results"]) == {"64", "96"} and res["results"]["64"]["images"] == 3
    r96 = res["results"]["96"]
    assert 0.0 <= r96["f_score_ci95"][0] <= r96["f_score"] <= r96["f_score_ci95"][1] <= 1.0
    assert "95% CI" in r.stdout
    written = sorted(p.stem for p in (tmp_path / "m").iterdir())
    assert written == sorted(names)
    with Image.open(tmp_path / "m" / f"{names[0]}.png") as im:
        assert im.mode == "P" and im.size == (512, 512)
        assert np.array(im).max() < 19
    assert len(list((tmp_path / "o").glob("*.jpg"))) == 3


def test_eval_predicts_unlabeled_folder(ckpt, faces_root, tmp_path):
    r = run("msf.cli.eval", "--ckpt", ckpt[0], "--data", faces_root / "unlabeled", "--limit", "2",
            "--size", "64", "--save-masks", tmp_path / "m")
    assert r.returncode == 0, r.stderr
    assert len(list((tmp_path / "m").glob("*.png"))) == 2


@pytest.mark.parametrize("make, needle", [
    (lambda d: d / "missing.pt", "checkpoint not found"),
    (lambda d: (d / "junk.pt").write_bytes(b"junk") and d / "junk.pt", "not a readable PyTorch checkpoint"),
])
def test_eval_bad_checkpoint_is_one_line(tmp_path, make, needle):
    r = run("msf.cli.eval", "--ckpt", make(tmp_path), "--data", tmp_path)
    assert r.returncode == 1 and needle in r.stderr and r.stderr.count("\n") == 1


def test_eval_split_needs_recorded_names(tmp_path, faces_root):
    torch.save(MicroSegFormer().state_dict(), tmp_path / "bare.pt")
    r = run("msf.cli.eval", "--ckpt", tmp_path / "bare.pt", "--data", faces_root, "--split", "val")
    assert r.returncode == 1 and "validation names" in r.stderr


@pytest.mark.parametrize("args, needle", [
    (["x.mp4", "--batch", "0"], "expected a positive integer, got '0'"),
    (["x.mp4", "--alpha", "3"], "expected a number from 0 to 1, got '3'"),
    (["x.mp4", "--max-frames", "-2"], "expected a positive integer, got '-2'"),
    (["x.mp4", "--scan-every", "0"], "expected a positive integer, got '0'"),
])
def test_video_refuses_out_of_range_values(args, needle):
    r = run("msf.cli.video", *args)
    assert r.returncode == 2 and needle in r.stderr and "Traceback" not in r.stderr


def test_video_glob_without_match_names_its_pattern(tmp_path):
    pattern = str(tmp_path / "nothing_*.jpg")
    r = run("msf.cli.video", pattern, "--backend", "null", "-o", tmp_path / "o.mp4", "--no-progress")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert f"no images match the pattern {pattern!r}" in r.stderr and r.stderr.count("\n") == 1
    assert not (tmp_path / "o.mp4").exists()
