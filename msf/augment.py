"""Training augmentation with OpenCV/numpy: flip with left/right label swap,
rotation, scale, shift and colour jitter. Masks are always warped nearest-neighbour."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from msf.labels import flip_lut

_FLIP_LUT = flip_lut()


def _uniform(lo: float, hi: float) -> float:
    # torch's RNG: DataLoader seeds it per worker, and torch.manual_seed makes runs repeatable.
    return lo + (hi - lo) * torch.rand(()).item()


def hflip(img: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mirror image and mask; left/right classes (eyes, brows, ears) swap ids."""
    return img[:, ::-1], _FLIP_LUT[mask[:, ::-1]]


@dataclass
class Augment:
    flip: float = 0.5
    rotate: float = 15.0
    scale: tuple[float, float] = (0.9, 1.1)
    shift: float = 0.0  # max. translation as a fraction of the side (a face detector's crop error)
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.1

    def __call__(self, img: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if torch.rand(()).item() < self.flip:
            img, mask = hflip(img, mask)
        angle = _uniform(-self.rotate, self.rotate)
        scale = _uniform(*self.scale)
        h, w = mask.shape
        dx, dy = (_uniform(-self.shift, self.shift) * w, _uniform(-self.shift, self.shift) * h) \
            if self.shift else (0.0, 0.0)
        if angle != 0.0 or scale != 1.0 or dx or dy:
            m = cv2.getRotationMatrix2D((w / 2 - 0.5, h / 2 - 0.5), angle, scale)
            m[:, 2] += (dx, dy)
            img = cv2.warpAffine(np.ascontiguousarray(img), m, (w, h), flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_CONSTANT, borderValue=0)
            mask = cv2.warpAffine(np.ascontiguousarray(mask), m, (w, h), flags=cv2.INTER_NEAREST,
                                  borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        return self.jitter(img), mask

    def jitter(self, img: np.ndarray) -> np.ndarray:
        """Brightness, contrast and saturation factors drawn in [1-x, 1+x], torchvision-style."""
        x = img.astype(np.float32)
        x *= _uniform(1 - self.brightness, 1 + self.brightness)
        gray = x @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        c = _uniform(1 - self.contrast, 1 + self.contrast)
        x = (x - gray.mean()) * c + gray.mean()
        s = _uniform(1 - self.saturation, 1 + self.saturation)
        gray = (x @ np.array([0.299, 0.587, 0.114], dtype=np.float32))[..., None]
        x = (x - gray) * s + gray
        return np.clip(x, 0, 255).astype(np.uint8)
