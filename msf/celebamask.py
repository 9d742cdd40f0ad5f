"""The official CelebAMask-HQ layout: per-part binary masks merged into class ids,
and the identity-based train/val/test split through ``CelebA-HQ-to-CelebA-mapping.txt``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from msf.errors import MsfError
from msf.labels import LABELS

IMG_DIR = "CelebA-HQ-img"
ANNO_DIR = "CelebAMask-HQ-mask-anno"
MAPPING = "CelebA-HQ-to-CelebA-mapping.txt"
# Original CelebA index thresholds of the standard split: train < 162771 <= val < 182638 <= test.
VAL_START, TEST_START = 162771, 182638


def is_official_layout(root: str | Path) -> bool:
    root = Path(root)
    return (root / IMG_DIR).is_dir() and (root / ANNO_DIR).is_dir()


def part_path(root: Path, index: int, part: str) -> Path:
    return root / ANNO_DIR / str(index // 2000) / f"{index:05d}_{part}.png"


def merge_parts(root: str | Path, index: int, size: int = 512) -> np.ndarray:
    """One class-id mask from the per-part PNGs, merged in label-id order (later ids win)."""
    from msf.data import read_mask_any
    from msf.frameops.fit import fit_labels

    root = Path(root)
    mask = np.zeros((size, size), dtype=np.uint8)
    for cid, part in enumerate(LABELS[1:], start=1):
        p = part_path(root, index, part)
        if p.exists():
            m = fit_labels(read_mask_any(p), size, size)
            mask[m > 0] = cid
    return mask


def read_split(root: str | Path) -> dict[str, list[int]]:
    """CelebA-HQ indices per split from the mapping file (columns: idx orig_idx orig_file)."""
    path = Path(root) / MAPPING
    if not path.is_file():
        raise MsfError(f"split file not found: {path}")
    splits: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    for n, line in enumerate(path.read_text().splitlines()):
        cols = line.split()
        if not cols or not cols[0].isdigit():
            continue  # header
        if len(cols) < 2 or not cols[1].isdigit():
            raise MsfError(f"{path}:{n + 1}: expected 'idx orig_idx orig_file'")
        idx, orig = int(cols[0]), int(cols[1])
        key = "train" if orig < VAL_START else "val" if orig < TEST_START else "test"
        splits[key].append(idx)
    return splits
