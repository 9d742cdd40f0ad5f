"""Reading labeled face data in the CE7454 layout, splitting it, and serving training batches.

CE7454 layout: ``images/<name>.jpg`` and ``masks/<name>.png`` (palette PNG,
pixel value = class id). The root may be that folder or one holding ``train/``.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from msf import celebamask
from msf.contract import MODEL_CONTRACT
from msf.errors import MsfError
from msf.frameops.fit import FitSpec, fit, fit_labels, fit_tensor
from msf.labels import NUM_CLASSES
from msf.paths import IMAGE_EXTS


@dataclass(frozen=True)
class Sample:
    name: str
    image: Path
    mask: Path | None
    official_root: Path | None = None  # set for the official CelebAMask-HQ layout (per-part masks)


def resolve_split_dir(root: str | Path) -> Path:
    """The folder holding ``images/`` (the root itself or its ``train/``)."""
    root = Path(root)
    if not root.exists():
        raise MsfError(f"data folder not found: {root}")
    for cand in (root, root / "train"):
        if (cand / "images").is_dir():
            return cand
    raise MsfError(f"no images/ folder under {root} (expected the CE7454 layout: images/ and masks/)")


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTS)


def list_samples(root: str | Path, require_masks: bool = True) -> list[Sample]:
    """All samples under a data root, sorted by name.

    Accepts the CE7454 layout (``images/`` + ``masks/``, or a folder holding ``train/``), the
    official CelebAMask-HQ layout, and (with ``require_masks=False``) a plain folder of images.
    """
    root = Path(root)
    if celebamask.is_official_layout(root):
        imgs = [p for p in _images_in(root / celebamask.IMG_DIR) if p.stem.isdigit()]
        return sorted((Sample(p.stem, p, None, root) for p in imgs), key=lambda s: int(s.name))
    if not require_masks and root.is_dir() and not (root / "images").is_dir() \
            and not (root / "train").is_dir():
        images = _images_in(root)
        if not images:
            raise MsfError(f"no images in {root}")
        return [Sample(p.stem, p, None) for p in images]
    split = resolve_split_dir(root)
    images = _images_in(split / "images")
    if not images:
        raise MsfError(f"no images in {split / 'images'}")
    samples = []
    for img in images:
        mask = split / "masks" / f"{img.stem}.png"
        if not mask.exists():
            if require_masks:
                raise MsfError(f"mask missing for {img.name}: expected {mask}")
            mask = None
        samples.append(Sample(img.stem, img, mask))
    return samples


def read_image(path: str | Path) -> np.ndarray:
    """An RGB uint8 H×W×3 image; a clear error for a missing or unreadable file."""
    path = Path(path)
    if not path.is_file():
        raise MsfError(f"image not found: {path}")
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise MsfError(f"cannot decode image: {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def read_mask(path: str | Path) -> np.ndarray:
    """A class-id mask (H×W uint8). Read with PIL: OpenCV would expand the palette to colours."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            if im.mode not in ("P", "L", "I", "I;16"):
                raise MsfError(f"mask {path} has mode {im.mode}; expected a single-channel class-id PNG")
            mask = np.array(im)
    except FileNotFoundError:
        raise MsfError(f"mask not found: {path}") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise MsfError(f"cannot decode mask {path}: {exc}") from None
    if mask.max(initial=0) >= NUM_CLASSES:
        raise MsfError(f"mask {path} has class id {int(mask.max())} >= {NUM_CLASSES}")
    return mask.astype(np.uint8)


def read_mask_any(path: str | Path) -> np.ndarray:
    """A single-channel view of any PNG (the official per-part masks may be L or RGB)."""
    try:
        with Image.open(path) as im:
            return np.array(im.convert("L"))
    except (UnidentifiedImageError, OSError) as exc:
        raise MsfError(f"cannot decode mask {path}: {exc}") from None


def read_pair(sample: Sample) -> tuple[np.ndarray, np.ndarray]:
    """Image and mask of one sample, checked to have the same size."""
    img = read_image(sample.image)
    if sample.official_root is not None:
        # Official images are 1024² and part masks 512²: parse at the masks' resolution.
        mask = celebamask.merge_parts(sample.official_root, int(sample.name))
        return fit(img, mask.shape[1], mask.shape[0], MODEL_CONTRACT.input.resize), mask
    if sample.mask is None:
        raise MsfError(f"no mask for {sample.name}")
    mask = read_mask(sample.mask)
    if img.shape[:2] != mask.shape:
        raise MsfError(f"size mismatch for {sample.name}: image {img.shape[1]}x{img.shape[0]}, "
                       f"mask {mask.shape[1]}x{mask.shape[0]}")
    return img, mask


def split_samples(samples: list[Sample], val_count: int, seed: int) -> tuple[list[str], list[str]]:
    """Train and validation names: the identity split for the official layout, else by seed."""
    if samples and samples[0].official_root is not None:
        splits = celebamask.read_split(samples[0].official_root)
        have = {s.name for s in samples}
        pick = lambda key: sorted((str(i) for i in splits[key] if str(i) in have), key=int)  # noqa: E731
        return pick("train"), pick("val")
    return split_names([s.name for s in samples], val_count, seed)


def split_names(names: list[str], val_count: int, seed: int) -> tuple[list[str], list[str]]:
    """Deterministic train/val split: ``val_count`` names drawn by ``seed`` (both lists sorted)."""
    names = sorted(names)
    if not 0 <= val_count < len(names):
        raise MsfError(f"validation count {val_count} must be in [0, {len(names)})")
    val = set(random.Random(seed).sample(names, val_count))
    return [n for n in names if n not in val], sorted(val)


def data_fingerprint(samples: list[Sample]) -> str:
    """SHA-256 over names and file sizes: identifies the training data without reading it all."""
    h = hashlib.sha256()
    for s in samples:
        h.update(s.name.encode())
        h.update(str(s.image.stat().st_size).encode())
        if s.mask is not None:
            h.update(str(s.mask.stat().st_size).encode())
    return h.hexdigest()


def to_tensor(img: np.ndarray) -> torch.Tensor:
    """H×W×3 uint8 RGB -> 3×H×W float in [0, 1] (the model's input convention; no mean/std)."""
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).float().div_(255.0)


def resize_batch(x: torch.Tensor, y: torch.Tensor, size: int,
                 rule: str = MODEL_CONTRACT.input.resize) -> tuple[torch.Tensor, torch.Tensor]:
    """A training batch (N×3×H×W float images, N×H×W labels) at ``size``²: images by the
    contract's resize rule, labels nearest (``msf.frameops.fit``, as the dataset's)."""
    h, w = x.shape[-2:]
    if h == size and w == size:
        return x, y
    x = fit_tensor(FitSpec(w, h, size, size, rule), x)
    y = fit_tensor(FitSpec(w, h, size, size, "nearest"), y[:, None].float())[:, 0].to(y.dtype)
    return x, y


class FaceDataset(torch.utils.data.Dataset):
    """Labeled faces held in memory, resized to ``size`` once, augmented per access, then degraded
    (``degrade``: an image-only stage such as :class:`msf.degrade.Degrade`), optionally cut to a
    random ``crop``² window (after augmentation, so rotation borders stay rare)."""

    def __init__(self, samples: list[Sample], size: int, augment=None,
                 pairs: list[tuple[np.ndarray, np.ndarray]] | None = None, crop: int | None = None,
                 degrade: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
        self.samples = samples
        self.size = size
        self.augment = augment
        self.degrade = degrade
        self.crop = crop if crop and crop < size else None
        pairs = pairs if pairs is not None else [read_pair(s) for s in samples]
        rule = MODEL_CONTRACT.input.resize
        self.images = [fit(i, size, size, rule) for i, _ in pairs]
        self.masks = [fit_labels(m, size, size) for _, m in pairs]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        img, mask = self.images[idx], self.masks[idx]
        if self.augment is not None:
            img, mask = self.augment(img, mask)
        if self.degrade is not None:
            img = self.degrade(img)
        if self.crop:
            # torch's RNG, like the augmentation: seeded runs repeat, workers differ.
            y0, x0 = (int(v) for v in torch.randint(0, self.size - self.crop + 1, (2,)))
            img = img[y0:y0 + self.crop, x0:x0 + self.crop]
            mask = mask[y0:y0 + self.crop, x0:x0 + self.crop]
        return to_tensor(img), torch.from_numpy(np.ascontiguousarray(mask)).long()
