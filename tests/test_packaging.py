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
