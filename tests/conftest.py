"""Shared fixtures: the real face data root (skipped with the reason when absent) and small models."""

from __future__ import annotations

import pytest
import torch

from msf.model import MicroSegFormer
from msf.paths import data_root

# Why a test that needs the face data skips without it (README, "Face data": where it comes from).
NO_DATA = "face data not found: set MSF_DATA or place it at ../shared/data/faces (README: Face data)"


def has_face_data() -> bool:
    root = data_root()
    return root is not None and (root / "train" / "images").is_dir()


@pytest.fixture(scope="session")
def faces_root():
    if not has_face_data():
        pytest.skip(NO_DATA)
    return data_root()


def perturb(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Move every parameter and BN statistic off its initial value (LayerNorm/BN included)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(torch.randn(b.shape, generator=g) * 0.1)
            elif name.endswith("running_var"):
                b.copy_(torch.rand(b.shape, generator=g) + 0.5)
    return model


@pytest.fixture(params=[False, True], ids=["default", "lmsa"])
def trained_like_model(request) -> MicroSegFormer:
    return perturb(MicroSegFormer(use_lmsa=request.param)).eval()


@pytest.fixture(scope="session")
def shipped_model():
    """The weights that ship with the package (the trained default)."""
    from msf.model import load_model
    from msf.paths import WEIGHTS_PATH

    if not WEIGHTS_PATH.is_file():
        pytest.skip(f"no shipped weights at {WEIGHTS_PATH}")
    return load_model()


@pytest.fixture(scope="session")
def face_pairs(faces_root):
    """Eight real labeled faces (fixed choice) as (RGB image, mask) pairs."""
    from msf.data import list_samples, read_pair

    samples = list_samples(faces_root)
    return [read_pair(samples[i]) for i in range(0, 800, 100)]
