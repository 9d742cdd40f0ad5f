"""Prediction and scoring of a model on labeled images (shared by training and ``msf-eval``)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F

from msf.contract import MODEL_CONTRACT
from msf.data import to_tensor
from msf.frameops.fit import fit
from msf.metrics import MetricAccumulator


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


def predict_labels(model: torch.nn.Module, images: list[np.ndarray], size: int,
                   device: torch.device | str = "cpu", amp: str = "off",
                   resize: Callable[[np.ndarray, int], np.ndarray] = fit_square) -> np.ndarray:
    """Class ids (N×H×W uint8) for same-sized RGB uint8 images run at ``size``²."""
    return predict_logits(model, images, size, device, amp, resize).argmax(1).to(torch.uint8).cpu().numpy()


def batched(items: list, n: int) -> Iterable[list]:
    for i in range(0, len(items), n):
        yield items[i:i + n]


def evaluate_pairs(model: torch.nn.Module, pairs: list[tuple[np.ndarray, np.ndarray]], size: int,
                   device: torch.device | str = "cpu", amp: str = "off", batch: int = 8,
                   on_prediction: Callable[[int, np.ndarray], None] | None = None,
                   progress: Callable[[int], None] | None = None,
                   resize: Callable[[np.ndarray, int], np.ndarray] = fit_square) -> dict:
    """Score ``model`` on (image, mask) pairs at input ``size`` (images made ``size``² by
    ``resize``); labels compared at mask size."""
    was_training = model.training
    model.eval()
    acc = MetricAccumulator()
    idx = 0
    try:
        for chunk in batched(pairs, batch):
            preds = predict_labels(model, [im for im, _ in chunk], size, device, amp, resize)
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
