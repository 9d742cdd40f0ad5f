"""Where data and shipped weights live."""

from __future__ import annotations

import os
from pathlib import Path

# Image files msf reads (training data, msf-eval folders, msf-video image sources): the one definition.
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_DIR = PACKAGE_DIR.parent
WEIGHTS_PATH = PACKAGE_DIR / "weights" / "microsegformer.pt"


def data_root() -> Path | None:
    """The face data root: ``MSF_DATA`` if set, else ``<repo>/../shared/data/faces`` if present."""
    env = os.environ.get("MSF_DATA")
    if env:
        return Path(env).expanduser()
    default = REPO_DIR.parent / "shared" / "data" / "faces"
    return default if default.is_dir() else None
