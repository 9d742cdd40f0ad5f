"""The README runs as written (issue 21, item 6): every fenced Python block, and every ``msf-*``
command line of its shell blocks (and ``$ msf-...`` lines of its transcripts), in README order.

How a line is recognised as one that cannot run here (the rule the README follows):

- its trailing comment holds a parenthesised note of ``needs ...`` or ``takes ...`` items (several
  joined by ``;``), e.g. ``(needs a GPU)``, ``(needs TensorRT and a GPU)``, ``(takes hours)``:
  skipped, the note is the reason; except ``needs face data`` (also implied by ``$MSF_DATA`` in
  the command), which runs when the face data is there and skips with that reason when it is not,
  and ``needs Ray``, which runs when Ray is installed (``pip install 'msf[ray]'``) and skips
  when it is not (``needs a Ray cluster`` always skips);
- it reads a file the README expects the reader to have: ``input.mp4`` (any video: the test writes
  a short one) and ``astronaut.mp4`` (made by ``docs/make_tour_frame.py``, which needs scikit-image;
  skipped with that reason without it).

With the face data, the whole file runs in about 1½ minutes on 2 idle cores (msf-eval's three
sizes on 100 faces and msf-bench take most of it); without it, about half a minute.
Commands run in one scratch folder (what one line writes, a later one may read), with the
package's shipped weights; the export cache is the user's (``~/.cache/msf``, or ``MSF_CACHE``).
Python blocks run from the repository root, where their relative paths point.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import subprocess
import sys

import cv2
import numpy as np
import pytest

from msf.paths import REPO_DIR, data_root
from tests.conftest import NO_DATA, has_face_data

README = REPO_DIR / "README.md"
NOTE = re.compile(r"\(((?:needs|takes) [^)]*)\)")


def _blocks(text: str) -> list[tuple[str, list[str]]]:
    """Fenced blocks as (info string, lines)."""
    blocks, info, lines = [], None, []
    for line in text.splitlines():
        if line.startswith("```"):
            if info is None:
                info, lines = line[3:].strip(), []
            else:
                blocks.append((info, lines))
                info = None
        elif info is not None:
            lines.append(line)
    return blocks


def _commands() -> list[str]:
    out = []
    for info, lines in _blocks(README.read_text()):
        for line in lines:
            if info == "bash" and line.startswith("msf-"):
                out.append(line)
            elif line.startswith("$ msf-"):
                out.append(line[2:])
    return out


def _python_blocks() -> list[str]:
    return ["\n".join(lines) for info, lines in _blocks(README.read_text()) if info == "python"]


def _reason(line: str) -> str | None:
    """Why ``line`` cannot run here, or None."""
    command, _, comment = line.partition("#")
    note = NOTE.search(comment)
    items = [i.strip() for i in note.group(1).split(";")] if note else []
    for item in items:
        if item not in ("needs face data", "needs Ray"):
            return f"README marks it: {item}"
    if "needs Ray" in items and importlib.util.find_spec("ray") is None:
        return "Ray is not installed (pip install 'msf[ray]')"
    if ("needs face data" in items or "$MSF_DATA" in command) and not has_face_data():
        return NO_DATA
    if "astronaut.mp4" in shlex.split(command)[1:2]:
        try:
            import skimage  # noqa: F401
        except ImportError:
            return "astronaut.mp4 comes from docs/make_tour_frame.py, which needs scikit-image"
    return None


def test_readme_rule_finds_every_kind_of_line():
    """The parse itself: the commands the README shows, and the rule applied to them."""
    lines = _commands()
    assert lines[0].startswith("msf-video input.mp4")
    kinds = {cmd.split()[0] for cmd in lines}
    assert kinds == {"msf-video", "msf-export", "msf-bench", "msf-eval", "msf-train"}
    reasons = {cmd.split("#")[0].strip(): _reason(cmd) for cmd in lines}
    assert reasons["msf-export -o microsegformer.onnx"] is None
    assert "needs TensorRT and a GPU" in reasons[next(k for k in reasons if "--tensorrt" in k)]
    assert "takes hours" in reasons["msf-train --preset cpu"]
    eval_line = next(k for k in reasons if k.startswith("msf-eval"))
    assert (reasons[eval_line] is None) == has_face_data()  # (needs face data)
    assert _python_blocks() and "frame_bgr = " in _python_blocks()[0]


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    """The folder the README's commands run in, with the files they expect the reader to have."""
    d = tmp_path_factory.mktemp("readme")
    frame = cv2.imread(str(REPO_DIR / "docs" / "astronaut.jpg"))
    frame = cv2.resize(frame, (320, 180), interpolation=cv2.INTER_AREA)
    vw = cv2.VideoWriter(str(d / "input.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10, (320, 180))
    for i in range(5):
        vw.write(np.roll(frame, 4 * i, axis=1))
    vw.release()
    try:
        sys.path.insert(0, str(REPO_DIR / "docs"))
        from make_tour_frame import write_clip  # needs scikit-image
        from skimage import data

        write_clip(str(d / "astronaut.mp4"), cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
    except ImportError:
        pass
    finally:
        sys.path.remove(str(REPO_DIR / "docs"))
    return d


@pytest.mark.parametrize("code", _python_blocks(), ids=lambda c: c.splitlines()[-1][:40])
def test_readme_python_blocks_run(code):
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO_DIR, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    if "labels = seg.predict(frame_bgr)" in code:  # the face in docs/astronaut.jpg is found and parsed
        shown = re.search(r"\((\d+), (\d+)\) ([\d.]+)% of the frame labelled", r.stdout)
        assert shown and shown.group(1, 2) == ("540", "960") and 1.0 < float(shown.group(3)) < 30.0, r.stdout


@pytest.mark.slow
@pytest.mark.parametrize("line", _commands(), ids=lambda ln: ln.split("#")[0].strip()[:70])
def test_readme_command_runs(line, scratch):
    reason = _reason(line)
    if reason:
        pytest.skip(reason)
    command = line.split("#")[0].strip()
    env = dict(os.environ)
    root = data_root()
    if root is not None:
        env["MSF_DATA"] = str(root)
    argv = shlex.split(command.replace("$MSF_DATA", env.get("MSF_DATA", "")))
    module = {"msf-video": "video", "msf-export": "export", "msf-bench": "bench", "msf-eval": "eval",
              "msf-train": "train"}[argv[0]]
    r = subprocess.run([sys.executable, "-m", f"msf.cli.{module}", *argv[1:]], cwd=scratch, env=env,
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, f"{command}\n{r.stderr[-3000:]}"
    assert "Traceback" not in r.stderr
