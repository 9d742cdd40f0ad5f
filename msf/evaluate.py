"""Prediction and scoring of a model on labeled images (shared by training and ``msf-eval``)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from msf.contract import MODEL_CONTRACT
from msf.data import to_tensor
from msf.errors import UsageError
from msf.frameops.fit import fit
from msf.labels import NUM_CLASSES, flip_lut
from msf.metrics import MetricAccumulator
from msf.sizes import SIZE_STEP, size_problem


def fit_square(img: np.ndarray, size: int) -> np.ndarray:
    """``img`` at ``size``² by the model contract's resize rule (``msf.frameops.fit``)."""
    return fit(img, size, size, MODEL_CONTRACT.input.resize)


def autocast(device: torch.device, amp: str):
    """An autocast context for ``amp`` in {off, bf16, fp16} (``off`` = plain fp32)."""
    if amp == "off":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


@torch.no_grad()
def predict_logits(model: torch.nn.Module, images: list[np.ndarray], size: int,
                   device: torch.device | str = "cpu", amp: str = "off",
                   resize: Callable[[np.ndarray, int], np.ndarray] = fit_square) -> torch.Tensor:
    """Logits (N×C×H×W at the images' own size) for same-sized RGB uint8 images run at ``size``²
    (made ``size``² by ``resize``)."""
    device = torch.device(device)
    h, w = images[0].shape[:2]
    x = torch.stack([to_tensor(resize(im, size)) for im in images]).to(device)
    with autocast(device, amp):
        logits = model(x)
    logits = logits.float()
    if logits.shape[-2:] != (h, w):
        logits = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)
    return logits


@dataclass(frozen=True)
class TestTimeAugment:
    """Test-time augmentation: class probabilities averaged over the image and its mirror image
    (``flip``; left/right classes swapped back) at each of ``scales`` × the input size."""

    name: str
    flip: bool = False
    scales: tuple[float, ...] = (1.0,)

    @property
    def active(self) -> bool:
        return self.flip or self.scales != (1.0,)

    def sizes(self, size: int) -> list[int]:
        """The input sizes run for ``size`` (each scale rounded to the model's size step)."""
        out = []
        for s in self.scales:
            n = max(SIZE_STEP, round(size * s / SIZE_STEP) * SIZE_STEP)
            if n not in out:
                out.append(n)
        return out

    @property
    def passes(self) -> int:
        """Forward passes per image at a size where the scales give distinct sizes (the cost
        against a plain run)."""
        return len(self.scales) * (2 if self.flip else 1)


# Chosen on the 100 held-out faces with the shipped weights at 384² (model card): flip alone
# adds about 0.011 F for 2 passes, flip at 5/6, 1 and 7/6 × the size about 0.015 for 6.
TTA_MODES: dict[str, TestTimeAugment] = {
    "off": TestTimeAugment("off"),
    "flip": TestTimeAugment("flip", flip=True),
    "flip-ms": TestTimeAugment("flip-ms", flip=True, scales=(5 / 6, 1.0, 7 / 6)),
}
NO_TTA = TTA_MODES["off"]


def check_tta(tta: TestTimeAugment, size: int) -> None:
    """A UsageError when one of ``tta``'s sizes for ``size`` is not a model input size."""
    for n in tta.sizes(size):
        problem = size_problem(n)
        if problem:
            raise UsageError(f"--tta {tta.name} at --size {size}: {problem}")


_MIRROR = torch.from_numpy(flip_lut()[:NUM_CLASSES].astype(np.int64))


@torch.no_grad()
def predict_probs(model: torch.nn.Module, images: list[np.ndarray], size: int, tta: TestTimeAugment,
                  device: torch.device | str = "cpu", amp: str = "off",
                  resize: Callable[[np.ndarray, int], np.ndarray] = fit_square) -> torch.Tensor:
    """Class probabilities (N×C×H×W at the images' own size) averaged over ``tta``'s passes."""
    device = torch.device(device)
    h, w = images[0].shape[:2]
    total, passes = None, 0
    for n in tta.sizes(size):
        x = torch.stack([to_tensor(resize(im, n)) for im in images]).to(device)
        views = [x, x.flip(-1)] if tta.flip else [x]
        for k, v in enumerate(views):
            with autocast(device, amp):
                p = model(v).float().softmax(1)
            if k == 1:
                p = p.flip(-1)[:, _MIRROR.to(device)]
            if p.shape[-2:] != (h, w):
                p = F.interpolate(p, size=(h, w), mode="bilinear", align_corners=False)
            total = p if total is None else total + p
            passes += 1
    return total / passes


def predict_labels(model: torch.nn.Module, images: list[np.ndarray], size: int,
                   device: torch.device | str = "cpu", amp: str = "off",
                   resize: Callable[[np.ndarray, int], np.ndarray] = fit_square,
                   tta: TestTimeAugment = NO_TTA) -> np.ndarray:
    """Class ids (N×H×W uint8) for same-sized RGB uint8 images run at ``size``² (with ``tta``:
    the argmax of its averaged probabilities)."""
    if tta.active:
        scores = predict_probs(model, images, size, tta, device, amp, resize)
    else:
        scores = predict_logits(model, images, size, device, amp, resize)
    return scores.argmax(1).to(torch.uint8).cpu().numpy()


def batched(items: list, n: int) -> Iterable[list]:
    for i in range(0, len(items), n):
        yield items[i:i + n]


def evaluate_pairs(model: torch.nn.Module, pairs: list[tuple[np.ndarray, np.ndarray]], size: int,
                   device: torch.device | str = "cpu", amp: str = "off", batch: int = 8,
                   on_prediction: Callable[[int, np.ndarray], None] | None = None,
                   progress: Callable[[int], None] | None = None,
                   resize: Callable[[np.ndarray, int], np.ndarray] = fit_square,
                   tta: TestTimeAugment = NO_TTA) -> dict:
    """Score ``model`` on (image, mask) pairs at input ``size`` (images made ``size``² by
    ``resize``; with ``tta``'s passes averaged); labels compared at mask size."""
    was_training = model.training
    model.eval()
    acc = MetricAccumulator()
    idx = 0
    try:
        for chunk in batched(pairs, batch):
            preds = predict_labels(model, [im for im, _ in chunk], size, device, amp, resize, tta)
            for (_, mask), pred in zip(chunk, preds):
                acc.update(mask, pred)
                if on_prediction is not None:
                    on_prediction(idx, pred)
                idx += 1
            if progress is not None:
                progress(len(chunk))
    finally:
        model.train(was_training)
    return acc.summary()
