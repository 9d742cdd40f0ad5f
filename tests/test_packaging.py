import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_ships_weights_and_namespaces(tmp_path):
    """A regular (non-editable) install gets the weights and the msf.export / msf.runtime packages."""
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps",
                        "-q", "-w", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    (wheel,) = tmp_path.glob("msf-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "msf/weights/microsegformer.pt" in names and "msf/weights/MODEL_CARD.md" in names
    assert "msf/export/rewrite.py" in names and "msf/runtime/timing.py" in names
    assert not any(n.startswith(("export/", "runtime/", "tests/")) for n in names)  # no top-level collisions
    for f in ("yunet_n_320_320.onnx", "LICENSE", "README.md"):  # the face detector ships with its licence
        assert f"msf/models/yunet/{f}" in names


def test_face_detector_file_is_tracked_and_found():
    """The detector ONNX is not git-ignored (``*.onnx`` is) and the runtime reads it from the package."""
    from msf.runtime.faces import YUNET_FILE

    assert YUNET_FILE.is_file() and YUNET_FILE.parent == ROOT / "msf" / "models" / "yunet"
    assert "Apache License" in (YUNET_FILE.parent / "LICENSE").read_text()
    r = subprocess.run(["git", "check-ignore", "-q", str(YUNET_FILE)], cwd=ROOT, capture_output=True)
    if r.returncode == 128:
        pytest.skip("not a git checkout")
    assert r.returncode == 1, "msf/models/yunet/*.onnx is ignored by .gitignore"
