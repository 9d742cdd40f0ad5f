"""No output may be one of the inputs (issue 21, item 1): msf-video, msf-eval --save-masks /
--save-overlays, msf-export (and msf-bench's result files) refuse in one line, exit 2, and write
nothing, however the path is spelled: the same path, a ./ prefix, a symlink, a hard link, or a
folder that would receive a file named like an input in it."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from msf.errors import run_cli


def _clip(path: Path, n: int = 4, w: int = 64, h: int = 48) -> Path:
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (w, h))
    for i in range(n):
        vw.write(np.full((h, w, 3), 30 * i, np.uint8))
    vw.release()
    return path


def _snapshot(root: Path) -> dict[str, str]:
    """Every file (and link) under ``root`` with a hash of its bytes: what 'nothing written' compares."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_symlink():
            out[str(p)] = "-> " + os.readlink(p)
        elif p.is_file():
            out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
        else:
            out[str(p)] = "dir"
    return out


def _in_process(module: str, prog: str, args: list, capsys, cwd: Path | None = None) -> tuple[int, str]:
    """Run a CLI's ``main`` as its entry point does (one-line errors through ``run_cli``)."""
    import importlib

    main = importlib.import_module(module).main
    old = Path.cwd()
    if cwd is not None:
        os.chdir(cwd)
    try:
        capsys.readouterr()
        try:
            rc = run_cli(prog, main, [str(a) for a in args])
        except SystemExit as exc:  # argparse
            rc = int(exc.code or 0)
    finally:
        os.chdir(old)
    return rc, capsys.readouterr().err


def _refused(rc: int, err: str, needle: str = "would overwrite the input") -> None:
    assert rc == 2, err
    assert needle in err and err.count("\n") == 1 and "Traceback" not in err, err


@pytest.fixture
def video_dir(tmp_path):
    d = tmp_path / "w"
    (d / "clips").mkdir(parents=True)
    _clip(d / "in.mp4")
    _clip(d / "clips" / "a.mp4")
    (d / "link.mp4").symlink_to("in.mp4")
    os.link(d / "in.mp4", d / "hard.mp4")
    frames = d / "frames"
    frames.mkdir()
    for i in range(2):
        cv2.imwrite(str(frames / f"frames_{i:06d}.png"), np.full((48, 64, 3), 50 * i, np.uint8))
    return d


@pytest.mark.parametrize("args", [
    ["in.mp4", "-o", "in.mp4"],                   # the same path
    ["in.mp4", "-o", "./in.mp4"],                 # spelled another way
    ["in.mp4", "-o", "link.mp4"],                 # a symlink to the input
    ["link.mp4", "-o", "in.mp4"],                 # the input is a symlink to the output
    ["in.mp4", "-o", "hard.mp4"],                 # a hard link: same inode
    ["clips/a.mp4", "-o", "clips/"],              # a folder that gets a file named like the input
    ["clips/a.mp4", "-o", "clips"],
    ["in.mp4", "clips/a.mp4", "-o", "."],         # several sources into the folder of one of them
    ["in.mp4", "-o", "out.mp4", "--stats", "in.mp4"],
    ["frames", "--save-masks", "frames"],         # masks frames_000000.png over the input images
    ["frames", "--save-masks", "./frames/"],
])
def test_video_refuses_outputs_that_are_inputs(video_dir, capsys, args):
    before = _snapshot(video_dir)
    rc, err = _in_process("msf.cli.video", "msf-video", [*args, "--backend", "null", "--no-progress"], capsys,
                          cwd=video_dir)
    _refused(rc, err)
    assert _snapshot(video_dir) == before  # inputs untouched, nothing written (no folder, no temp file)


def test_video_refusal_from_the_command_line(video_dir):
    """The installed entry point: one line, exit 2, the input's bytes unchanged."""
    before = _snapshot(video_dir)
    r = subprocess.run([sys.executable, "-m", "msf.cli.video", "clips/a.mp4", "-o", "clips/", "--backend", "null",
                        "--no-progress"], cwd=video_dir, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert "msf-video: error: -o clips/ would overwrite the input clips/a.mp4" in r.stderr
    assert _snapshot(video_dir) == before


def test_video_distinct_outputs_still_work(video_dir, capsys):
    rc, err = _in_process("msf.cli.video", "msf-video", ["in.mp4", "clips/a.mp4", "-o", "outs", "--save-masks",
                                                         "frames", "--backend", "null", "--no-progress"],
                          capsys, cwd=video_dir)
    assert rc == 0, err
    assert (video_dir / "outs" / "in.mp4").is_file() and (video_dir / "outs" / "a.mp4").is_file()
    assert (video_dir / "frames" / "in_000000.png").is_file()  # masks beside images not named like them


@pytest.fixture
def data_dir(tmp_path):
    """A tiny CE7454-layout data set (two 64² faces-to-be) and a checkpoint copy."""
    d = tmp_path / "d"
    for sub in ("images", "masks", "pngs/images", "pngs/masks"):
        (d / sub).mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        img = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
        Image.fromarray(img).save(d / "images" / f"{name}.jpg")
        Image.fromarray(img).save(d / "pngs" / "images" / f"{name}.png")
        mask = Image.fromarray(rng.integers(0, 19, (64, 64), dtype=np.uint8))
        mask.save(d / "masks" / f"{name}.png")
        mask.save(d / "pngs" / "masks" / f"{name}.png")
    (d / "masks_link").symlink_to("masks")
    return d


@pytest.mark.parametrize("data, args", [
    ("d", ["--save-masks", "d/masks"]),             # the ground truth, by name
    ("d", ["--save-masks", "./d/masks/"]),
    ("d", ["--save-masks", "d/masks_link"]),        # through a symlinked folder
    ("d", ["--save-overlays", "d/images"]),         # overlays <name>.jpg over the images
    ("d/pngs", ["--save-masks", "d/pngs/images"]),  # masks <name>.png over PNG images
    ("d", ["--json", "d/images/a.jpg"]),
    ("d", ["--figure", "d/masks/b.png"]),
])
def test_eval_refuses_outputs_that_are_inputs(data_dir, capsys, data, args):
    root = data_dir.parent
    before = _snapshot(root)
    rc, err = _in_process("msf.cli.eval", "msf-eval", ["--data", data, "--size", "64", *args], capsys, cwd=root)
    _refused(rc, err)
    assert _snapshot(root) == before


@pytest.fixture
def ckpt_copy(tmp_path):
    from msf.paths import WEIGHTS_PATH

    d = tmp_path / "e"
    d.mkdir()
    (d / "m.pt").write_bytes(WEIGHTS_PATH.read_bytes())
    (d / "link.pt").symlink_to("m.pt")
    return d


@pytest.mark.parametrize("args", [
    ["--ckpt", "m.pt", "-o", "x.onnx", "--json", "m.pt"],
    ["--ckpt", "m.pt", "-o", "x.onnx", "--json", "./m.pt"],
    ["--ckpt", "m.pt", "-o", "x.onnx", "--json", "link.pt"],
    ["--ckpt", "link.pt", "-o", "x.onnx", "--json", "m.pt"],
    ["--ckpt", "m.pt", "-o", "x.onnx", "--data", "../d", "--json", "../d/images/b.jpg"],
])
def test_export_refuses_outputs_that_are_inputs(ckpt_copy, data_dir, capsys, args):
    root = ckpt_copy.parent
    before = _snapshot(root)
    rc, err = _in_process("msf.cli.export", "msf-export", args, capsys, cwd=ckpt_copy)
    _refused(rc, err)
    assert _snapshot(root) == before


def test_export_refuses_the_default_checkpoint_as_output(tmp_path, capsys, monkeypatch):
    """Without --ckpt the shipped weights are the input: --json onto them would destroy them. (A copy
    stands in for them, so a regression here cannot damage the real file.)"""
    import msf.paths
    from msf.paths import WEIGHTS_PATH

    weights = tmp_path / "weights.pt"
    weights.write_bytes(WEIGHTS_PATH.read_bytes())
    monkeypatch.setattr(msf.paths, "WEIGHTS_PATH", weights)
    before = _snapshot(tmp_path)
    rc, err = _in_process("msf.cli.export", "msf-export", ["-o", tmp_path / "x.onnx", "--json", weights], capsys)
    _refused(rc, err)
    assert _snapshot(tmp_path) == before


def test_bench_refuses_result_files_that_are_models(tmp_path, capsys):
    model = tmp_path / "m.onnx"
    model.write_bytes(b"not really a model")
    for flag in ("--json", "--csv", "--markdown", "--plot"):
        rc, err = _in_process("msf.cli.bench", "msf-bench", ["--engine", model, flag, model], capsys)
        _refused(rc, err)
    assert model.read_bytes() == b"not really a model"


def test_unwritable_output_folder_says_so(tmp_path, capsys):
    """/proc exists but takes no new files: the error says that, not 'No such file or directory'."""
    clip = _clip(tmp_path / "c.mp4")
    rc, err = _in_process("msf.cli.video", "msf-video", [clip, "-o", "/proc/out.mp4", "--backend", "null",
                                                         "--no-progress"], capsys)
    assert rc == 1 and err.count("\n") == 1
    assert "cannot write to /proc: output folder is not writable (it does not accept new files)" in err
    assert "No such file" not in err
