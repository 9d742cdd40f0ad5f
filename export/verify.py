"""Numerical verification of an exported graph against the PyTorch fp32 model on real faces."""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from msf.contract import DEFAULT_SIZE, MODEL_CONTRACT, GraphContract, InputSpec
from msf.data import Sample, list_samples, read_image, read_pair
from msf.errors import MsfError
from msf.frameops.fit import fit, fit_labels
from msf.frameops.normalize import to_input
from msf.frames import rgb_to_bgr
from msf.metrics import ce7454_fscore
from msf.paths import data_root

# Acceptance per precision: minimum pixel label agreement, maximum |Δlogit| (None: not checked),
# maximum drop of the CE7454 F-score. fp32 from the export issue; fp16 from the same; int8 is
# judged by what users see (labels and F-score), since its logits move by design.
TOLERANCES = {
    "fp32": {"agreement": 0.999, "max_abs_logit": 1e-3, "f_drop": 0.001},
    "fp16": {"agreement": 0.995, "max_abs_logit": None, "f_drop": 0.005},
    "int8": {"agreement": 0.97, "max_abs_logit": None, "f_drop": 0.02},
}


@dataclass
class VerifyReport:
    file: str
    precision: str
    images: int
    labeled: int
    max_abs_logit: float | None
    agreement: float
    f_score_torch: float | None
    f_score_onnx: float | None
    source: str
    tolerance: dict = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def f_drop(self) -> float | None:
        if self.f_score_torch is None or self.f_score_onnx is None:
            return None
        return self.f_score_torch - self.f_score_onnx

    def to_dict(self) -> dict:
        d = asdict(self)
        d["f_drop"] = self.f_drop
        d["ok"] = self.ok
        return d


def split_of(ckpt: str | Path | None, samples: list[Sample]) -> tuple[set[str], str]:
    """The checkpoint's validation names among ``samples`` and how they were found: the names the
    checkpoint records (msf-train stores them), else the seeded split its training config implies."""
    from msf.checkpoint import checkpoint_metadata
    from msf.config import TrainConfig
    from msf.data import split_samples

    meta = checkpoint_metadata(ckpt)
    recorded = set(meta.get("val_names") or [])
    if recorded:
        return recorded, "recorded in the checkpoint"
    cfg = meta.get("config") if isinstance(meta.get("config"), dict) else {}
    defaults = TrainConfig()
    val_count, seed = int(cfg.get("val_count", defaults.val_count)), int(cfg.get("seed", defaults.seed))
    if not 0 < val_count < len(samples):
        return set(), "none"
    _, val = split_samples(samples, val_count, seed)
    return set(val), f"drawn with seed {seed}, as training did"


def load_verification_images(data: str | Path | None, count: int, seed: int = 0, split: str | None = None,
                             ckpt: str | Path | None = None
                             ) -> tuple[list[tuple[np.ndarray, np.ndarray | None]], str]:
    """Up to ``count`` (RGB image, mask-or-None) pairs and a description of where they came from.

    Labeled faces when available, else unlabeled, else generated inputs (with a warning).
    ``split="val"`` draws only from the checkpoint's validation split (images it never trained
    on: what export verification uses), ``split="train"`` only from its training split (INT8
    calibration); ``None`` from all labeled faces. The draw is seeded, so it repeats.
    """
    root = Path(data) if data else data_root()
    rng = np.random.default_rng(seed)
    if root is not None and root.exists():
        samples = list_samples(root, require_masks=False)
        labeled = [s for s in samples if s.mask is not None or s.official_root is not None]
        if labeled:
            where = f"labeled images from {root}"
            if split is not None:
                val, how = split_of(ckpt, labeled)
                chosen = [s for s in labeled if (s.name in val) == (split == "val")]
                if val and chosen:
                    labeled = chosen
                    where = (f"validation faces (split {how}) from {root}" if split == "val" else
                             f"training faces (outside the validation split {how}) from {root}")
                else:
                    where += f" (the checkpoint's {split} split is not in this folder)"
            pick = sorted(rng.choice(len(labeled), min(count, len(labeled)), replace=False))
            return [read_pair(labeled[i]) for i in pick], f"{len(pick)} {where}"
        pick = sorted(rng.choice(len(samples), min(count, len(samples)), replace=False))
        return [(read_image(samples[i].image), None) for i in pick], f"{len(pick)} unlabeled images from {root}"
    warnings.warn("no face data found (set MSF_DATA or pass --data): verifying on generated inputs",
                  stacklevel=2)
    imgs = [cv2.GaussianBlur(rng.integers(0, 256, (DEFAULT_SIZE, DEFAULT_SIZE, 3), dtype=np.uint8), (0, 0), 4)
            for _ in range(count)]
    return [(im, None) for im in imgs], f"{count} generated inputs (no face data found)"


def graph_input(images_rgb: list[np.ndarray], spec: InputSpec, size: int = DEFAULT_SIZE) -> np.ndarray:
    """The graph's input for RGB images resized to the graph's size (``size`` when it is dynamic)
    by its contract's rule, built by the runtime's own ``fit`` and ``to_input`` (``msf.frameops``)."""
    side = spec.size or size
    return to_input(spec, [rgb_to_bgr(fit(im, side, side, spec.resize)) for im in images_rgb])


def graph_batches(images_rgb: list[np.ndarray], spec: InputSpec, size: int = DEFAULT_SIZE) -> list[np.ndarray]:
    """The images as graph inputs: one per image, or for a graph of fixed batch N, batches of N
    (the last one filled up with the first images)."""
    n = spec.batch or 1
    if not images_rgb:
        return []
    count = -(-len(images_rgb) // n) * n
    cycled = [images_rgb[i % len(images_rgb)] for i in range(count)]
    return [graph_input(cycled[i:i + n], spec, size) for i in range(0, count, n)]


def _score(mask: np.ndarray, labels: np.ndarray) -> float:
    if labels.shape != mask.shape:
        labels = fit_labels(labels, mask.shape[1], mask.shape[0])
    return ce7454_fscore(mask, labels)


def verify_session(run, model: torch.nn.Module, pairs: list[tuple[np.ndarray, np.ndarray | None]],
                   contract: GraphContract, precision: str, file: str, source: str,
                   size: int = DEFAULT_SIZE) -> VerifyReport:
    """Compare ``run(input) -> output`` (an exported graph taking ``contract``) with the fp32
    PyTorch model on ``pairs``; ``size`` is the input size for a graph of dynamic size."""
    tol = TOLERANCES[precision]
    max_abs, agree_px, total_px = 0.0, 0, 0
    f_t, f_o = [], []
    kind = contract.output.kind
    side = contract.input.size or size
    model = model.eval().float()
    copies = contract.input.batch or 1  # a graph of fixed batch N gets the image N times
    ref_spec = MODEL_CONTRACT.with_input(size=side).input  # the fp32 model, at the graph's size
    for img, mask in pairs:
        out = run(graph_input([img] * copies, contract.input, side))[:1]
        xt = torch.from_numpy(graph_input([img], ref_spec))
        with torch.no_grad():
            ref = model(xt).numpy()
        ref_labels = ref.argmax(1)[0].astype(np.uint8)
        if kind == "labels":
            labels = out[0].astype(np.uint8)
        else:
            out = out.astype(np.float32)
            max_abs = max(max_abs, float(np.abs(out - ref).max()))
            labels = out.argmax(1)[0].astype(np.uint8)
        agree_px += int((labels == ref_labels).sum())
        total_px += labels.size
        if mask is not None:
            f_t.append(_score(mask, ref_labels))
            f_o.append(_score(mask, labels))
    rep = VerifyReport(file=file, precision=precision, images=len(pairs), labeled=len(f_t),
                       max_abs_logit=max_abs if kind == "logits" else None,
                       agreement=agree_px / max(total_px, 1),
                       f_score_torch=float(np.mean(f_t)) if f_t else None,
                       f_score_onnx=float(np.mean(f_o)) if f_o else None, source=source, tolerance=tol)
    if rep.agreement < tol["agreement"]:
        rep.failures.append(f"label agreement {rep.agreement:.4%} < {tol['agreement']:.1%}")
    if tol["max_abs_logit"] is not None and rep.max_abs_logit is not None and rep.max_abs_logit > tol["max_abs_logit"]:
        rep.failures.append(f"max |Δlogit| {rep.max_abs_logit:.2e} > {tol['max_abs_logit']:.0e}")
    if rep.f_drop is not None and rep.f_drop > tol["f_drop"]:
        rep.failures.append(f"F-score drop {rep.f_drop:.4f} > {tol['f_drop']}")
    return rep


def ort_runner(path: str | Path, threads: int | None = None):
    """A function running the ONNX file on ONNX Runtime's CPU provider."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = threads
    try:
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001
        raise MsfError(f"ONNX Runtime cannot load {path}: {str(exc).splitlines()[0][:200]}") from None
    name = sess.get_inputs()[0].name
    return lambda x: sess.run(None, {name: x})[0]
