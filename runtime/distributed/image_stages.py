"""Images in three stages, each a function of a batch (``dict`` of numpy columns, Ray Data's
batch format): ``decode_batch`` (CPU: hash, skip when done, decode), a predictor (one per
actor: the model, batched inference) and ``write_batch`` (CPU: PNG/JPEG encoding, atomic files,
the done-marker). Nothing here imports Ray; Ray Data runs these, and tests call them directly.

Rows carry ``status``: "todo" until written ("done"), or "skipped" / "failed" (with ``reason``)
as soon as that is known; later stages pass such rows through untouched. A bad image fails
alone, with its reason; it is never raised (Ray would retry it, and fail the whole dataset).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from msf.contract import file_sha256
from msf.errors import MsfError
from msf.runtime.distributed.markers import is_done, sweep_temps, temp_pattern, write_marker
from msf.runtime.distributed.units import DONE, FAILED, SKIPPED, ImageJob

TODO = "todo"
_EMPTY_IMAGE = np.zeros((1, 1, 3), np.uint8)  # placeholder of rows with no image (skipped, failed)
_EMPTY_LABELS = np.zeros((1, 1), np.uint8)


def _column(values: list[Any]) -> np.ndarray:
    """A column of per-row arrays (images of any size)."""
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def decode_image(path: str, color: str) -> np.ndarray:
    """An image as the single-process commands read it: RGB like ``msf-eval`` (``read_image``)
    or BGR like ``msf-video``'s image folders (``cv2.imread``)."""
    if color == "rgb":
        from msf.data import read_image

        return read_image(path)
    import cv2

    frame = cv2.imread(path, cv2.IMREAD_COLOR)
    if frame is None:
        raise MsfError(f"cannot decode image {path}")
    return frame


def decode_batch(batch: dict[str, np.ndarray], job: ImageJob) -> dict[str, np.ndarray]:
    """Hash each input; mark it skipped when its marker matches (``job.resume``), else decode it
    (failed, with the reason, when it cannot be read)."""
    n = len(batch["input"])
    images, status, reason, sha = [_EMPTY_IMAGE] * n, [TODO] * n, [""] * n, [""] * n
    for i, path in enumerate(batch["input"]):
        path = str(path)
        try:
            sha[i] = file_sha256(path)
            if job.resume and is_done(str(batch["marker"][i]), sha[i], job.model_sha256, job.settings):
                status[i] = SKIPPED
                continue
            images[i] = decode_image(path, job.color)
        except MsfError as exc:
            status[i], reason[i] = FAILED, str(exc)
        except OSError as exc:
            status[i], reason[i] = FAILED, f"cannot read {path}: {exc.strerror}"
    return {**batch, "image": _column(images), "status": np.array(status), "reason": np.array(reason),
            "sha256": np.array(sha)}


class Predictor:
    """Label maps for the "todo" rows of a batch: one instance per actor holds the model.
    ``labels(images)`` is the model-specific part."""

    keep_image = False  # whether write_batch needs the decoded image (overlays)

    def labels(self, images: list[np.ndarray]) -> list[np.ndarray]:
        raise NotImplementedError

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        status, reason = np.array(batch["status"], dtype=object), np.array(batch["reason"], dtype=object)
        todo = [i for i, s in enumerate(status) if s == TODO]
        out: list[np.ndarray] = [_EMPTY_LABELS] * len(status)
        try:
            for i, lab in zip(todo, self.labels([np.asarray(batch["image"][i]) for i in todo])):
                out[i] = lab
        except Exception:  # noqa: BLE001  (one image broke the batch: find it, the others go on)
            for i in todo:
                try:
                    out[i] = self.labels([np.asarray(batch["image"][i])])[0]
                except Exception as exc:  # noqa: BLE001
                    status[i], reason[i] = FAILED, f"inference failed: {type(exc).__name__}: {exc}"[:300]
        result = {k: v for k, v in batch.items() if k != "image" or self.keep_image}
        return {**result, "labels": _column(out), "status": status.astype(str), "reason": reason.astype(str)}


class SegmenterPredictor(Predictor):
    """``msf-video``'s Segmenter. Each image is parsed on its own, as the first frame of a source
    (no face tracking or smoothing from one image to the next): the result does not depend on
    which actor got the image, or in which order."""

    def __init__(self, options: dict[str, Any]) -> None:
        from msf.runtime.segmenter import Segmenter

        self.seg = Segmenter(**options)

    def labels(self, images: list[np.ndarray]) -> list[np.ndarray]:
        seg = self.seg
        plans = [seg.placer.place(im, k) for k, im in enumerate(images)]  # a stream per image: fresh tracks
        seg.reset()
        crops = [c for im, plan in zip(images, plans) for c in seg.parser.crops(im, plan.places)]
        labels = seg.parser.infer(crops) if crops else []
        out, k = [], 0
        for im, plan in zip(images, plans):
            n = len(plan.places)
            out.append(seg.parser.assemble(im.shape, labels[k:k + n], plan.places))
            k += n
        return out


class EvalPredictor(Predictor):
    """``msf-eval``'s PyTorch model (``predict_labels`` at one input size), one image per call as
    ``msf-eval --save-masks`` does, so the masks are the same bit for bit: inferring images
    together changes the odd pixel (1 of 4096 of one face at 64², measured). On a GPU, give each
    actor a fraction of one (``--gpus-per-task 0.25``: four actors share it)."""

    def __init__(self, ckpt: str | None, size: int, device: str = "auto", amp: str = "off",
                 overlays: bool = False, tta: str = "off") -> None:
        from msf.model import load_model
        from msf.train import resolve_device

        self.device = resolve_device(device)
        self.model = load_model(ckpt, map_location=self.device)
        self.size, self.amp, self.keep_image, self.tta = size, amp, overlays, tta

    def labels(self, images: list[np.ndarray]) -> list[np.ndarray]:
        from msf.evaluate import TTA_MODES, predict_labels

        tta = TTA_MODES[self.tta]
        return [predict_labels(self.model, [im], self.size, self.device, self.amp, tta=tta)[0] for im in images]


def make_predictor(job: ImageJob) -> Predictor:
    """The predictor ``job`` names, with its options."""
    if job.predictor == "segmenter":
        return SegmenterPredictor(job.options)
    if job.predictor == "eval":
        return EvalPredictor(**job.options)
    raise ValueError(f"unknown predictor {job.predictor!r}")


def _sweep(path: Path) -> None:
    sweep_temps(path.parent, temp_pattern(re.escape(path.stem), path.suffix))


def write_batch(batch: dict[str, np.ndarray], job: ImageJob) -> dict[str, np.ndarray]:
    """Write each "todo" row's outputs (atomically, after removing a killed attempt's temporary
    files), then its marker; rows come back without images and labels: what the report needs."""
    from msf.frameops.overlay import overlay
    from msf.visualize import save_label_png, save_rgb

    status, reason = np.array(batch["status"], dtype=object), np.array(batch["reason"], dtype=object)
    for i, st in enumerate(status):
        if st != TODO:
            continue
        labels = np.asarray(batch["labels"][i])
        outputs = []
        try:
            if batch["masks"][i]:
                outputs.append(Path(str(batch["masks"][i])))
                _sweep(outputs[-1])
                save_label_png(outputs[-1], labels)
            if batch["overlay"][i]:
                outputs.append(Path(str(batch["overlay"][i])))
                _sweep(outputs[-1])
                image = np.asarray(batch["image"][i])
                if job.color == "bgr":
                    image = image[..., ::-1]
                save_rgb(outputs[-1], overlay(np.ascontiguousarray(image), labels, job.overlay_alpha, order="rgb"))
            write_marker(str(batch["marker"][i]), str(batch["sha256"][i]), job.model_sha256, job.settings, outputs)
            status[i] = DONE
        except OSError as exc:
            status[i], reason[i] = FAILED, f"cannot write {outputs[-1] if outputs else 'an output'}: {exc.strerror}"
    return {"input": batch["input"], "label": batch["label"], "status": status.astype(str),
            "reason": reason.astype(str)}
