"""What each flag accepts (issue 21, item 2): model sizes are a multiple of 32 from 64 to 1024,
batch × size² is checked against the memory available before anything is allocated, and no value
of any numeric flag of any CLI ends in a traceback."""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys

import pytest

from msf.errors import UsageError, run_cli
from msf.sizes import MAX_SIZE, MIN_SIZE, SIZE_STEP, check_memory, check_size, memory_needed, size_problem

CLIS = {"msf-train": "msf.cli.train", "msf-eval": "msf.cli.eval", "msf-export": "msf.cli.export",
        "msf-video": "msf.cli.video", "msf-bench": "msf.cli.bench"}
# Zero, negative, huge, and words that are no numbers (or not finite ones).
VALUES = ["0", "-1", "99999999999999999999", "1e400", "abc", "nan", "inf", ""]


def test_size_rule():
    assert all(size_problem(n) is None for n in (64, 96, 256, 384, 512, 1024))
    for n in (0, -32, 32, 33, 100, 500, 1056, 4096):
        assert "a multiple of 32 from 64 to 1024" in size_problem(n)
    assert (SIZE_STEP, MIN_SIZE, MAX_SIZE) == (32, 64, 1024)
    with pytest.raises(UsageError, match="--size: the model input size must be a multiple of 32"):
        check_size(100)


def test_memory_check_names_the_number():
    need = memory_needed(100_000, 512)
    assert need > 1e12  # terabytes: no machine here has that
    with pytest.raises(UsageError, match=r"a batch of 100000 at 512² input needs about 7\.9 TB of memory and "
                                         r"16\.0 GB is available here: lower --batch or --size"):
        check_memory(100_000, 512, available=16 * 10**9)
    check_memory(4, 512, available=16 * 10**9)  # a few hundred MB: fine
    assert memory_needed(2, 512) == 2 * memory_needed(1, 512) == 8 * memory_needed(1, 256)  # batch × side²


def _numeric_flags(module: str) -> list[str]:
    parser = importlib.import_module(module).build_parser()
    flags = []
    for action in parser._actions:
        if not action.option_strings or action.nargs == 0 or isinstance(action, argparse._VersionAction):
            continue
        if action.type in (int, float) or getattr(action.type, "numeric", False):
            flags.append(max(action.option_strings, key=len))
    return flags


def test_every_numeric_flag_declares_its_range():
    """Raw int/float let 0, -1, nan and 1e400 through to code that cannot take them: every numeric
    flag uses a type that states (and checks) what it accepts."""
    for prog, module in CLIS.items():
        parser = importlib.import_module(module).build_parser()
        raw = [max(a.option_strings, key=len) for a in parser._actions if a.option_strings and a.type in (int, float)]
        assert not raw, f"{prog}: {raw} take any number"
        assert _numeric_flags(module), prog


def _base_args(prog: str, tmp) -> list[str]:
    """Arguments that end each command quickly, after every flag was parsed and checked: a missing
    input (exit 1), or msf-train's --print-config (exit 0)."""
    return {"msf-train": ["--preset", "tiny", "--print-config"],
            "msf-eval": ["--ckpt", str(tmp / "missing.pt")],
            "msf-export": ["--ckpt", str(tmp / "missing.pt"), "-o", str(tmp / "x.onnx")],
            "msf-video": [str(tmp / "missing.mp4"), "--backend", "null", "--no-progress"],
            "msf-bench": ["--engine", str(tmp / "missing.onnx")]}[prog]


@pytest.mark.parametrize("prog", list(CLIS))
def test_numeric_flags_never_end_in_a_traceback(prog, tmp_path, capsys, monkeypatch):
    """Each numeric flag with 0, -1, a huge number and non-numbers: an exit code and at most one
    line, never an exception (run_cli would print 'internal error' for one that escaped)."""
    monkeypatch.setenv("MSF_CACHE", str(tmp_path / "cache"))
    main = importlib.import_module(CLIS[prog]).main
    seen = 0
    for flag in _numeric_flags(CLIS[prog]):
        for value in VALUES:
            capsys.readouterr()
            try:
                rc = run_cli(prog, main, [*_base_args(prog, tmp_path), flag, value])
            except SystemExit as exc:
                rc = int(exc.code or 0)
            err = capsys.readouterr().err
            case = f"{prog} {flag} {value!r}: rc {rc}, {err!r}"
            assert rc in (0, 1, 2), case
            assert "Traceback" not in err and "internal error" not in err, case
            assert rc == 0 or err.count("\n") == 1, case
            if value in ("abc", "nan", "inf", "1e400", ""):
                assert rc == 2, case  # not a usable number: refused while parsing
            seen += 1
    assert seen >= 2 * len(VALUES)
    assert not (tmp_path / "cache").exists()  # nothing was exported for a refused size


@pytest.mark.parametrize("prog, args", [
    ("msf-video", ["{clip}", "--batch", "100000"]),
    ("msf-video", ["{clip}", "--batch", "100000", "--backend", "null"]),
    ("msf-eval", ["--data", "{data}", "--batch", "100000", "--size", "1024"]),
    ("msf-export", ["-o", "{tmp}/x.onnx", "--batch", "100000"]),
    ("msf-bench", ["--batch", "1,100000"]),
])
def test_huge_batches_are_refused_with_the_memory_they_need(prog, args, tmp_path, capsys, monkeypatch):
    import cv2
    import numpy as np
    from PIL import Image

    monkeypatch.setenv("MSF_CACHE", str(tmp_path / "cache"))
    clip = tmp_path / "c.avi"
    vw = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for _ in range(3):
        vw.write(np.zeros((48, 64, 3), np.uint8))
    vw.release()
    data = tmp_path / "data"
    for sub in ("images", "masks"):
        (data / sub).mkdir(parents=True)
    for i in range(3):  # 3 images: msf-eval's batch of 100000 holds these 3
        Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(data / "images" / f"{i}.jpg")
        Image.fromarray(np.zeros((32, 32), np.uint8)).save(data / "masks" / f"{i}.png")
    main = importlib.import_module(CLIS[prog]).main
    argv = [a.format(clip=clip, data=data, tmp=tmp_path) for a in args]
    if prog == "msf-eval":  # a batch never holds more images than there are: here 3, as much as this allows
        monkeypatch.setattr("msf.sizes.memory_available", lambda: memory_needed(3, 1024) - 1)
    capsys.readouterr()
    rc = run_cli(prog, main, argv)
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1, err
    assert "needs about" in err and "of memory and" in err and "lower --batch or --size" in err
    assert f"a batch of {3 if prog == 'msf-eval' else 100000} at" in err
    assert not (tmp_path / "cache").exists() and not (tmp_path / "x.onnx").exists()


@pytest.mark.parametrize("size", ["4096", "33", "100"])
def test_video_size_outside_the_rule_is_one_line_and_caches_nothing(size, tmp_path):
    """The sizes the issue measured: a traceback (4096) and silently degraded masks that left a
    cache entry each (33, 100); now refused before anything is loaded."""
    clip = tmp_path / "c.avi"
    import cv2
    import numpy as np

    vw = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    vw.write(np.zeros((48, 64, 3), np.uint8))
    vw.release()
    env = {**__import__("os").environ, "MSF_CACHE": str(tmp_path / "cache")}
    r = subprocess.run([sys.executable, "-m", "msf.cli.video", str(clip), "--size", size, "--no-progress"],
                       capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert f"argument --size: expected a multiple of 32 from 64 to 1024, got '{size}'" in r.stderr
    assert not (tmp_path / "cache").exists() and not list(tmp_path.glob("*.mp4"))


def test_segmenter_refuses_sizes_the_model_cannot_take():
    from msf.runtime.segmenter import Segmenter

    with pytest.raises(UsageError, match="size: the model input size must be a multiple of 32"):
        Segmenter(size=100)
    assert Segmenter(backend="null", mode="full", size=48).size == 48  # no model: any size (profiling aid)
