"""Numerical verification of an exported graph against the PyTorch fp32 model on real faces."""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from msf.data import list_samples, read_image, read_pair, resize_image
from msf.errors import MsfError
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


def load_verification_images(data: str | Path | None, count: int, seed: int = 0
                             ) -> tuple[list[tuple[np.ndarray, np.ndarray | None]], str]:
    """Up to ``count`` (image, mask-or-None) pairs: labeled faces when available, else unlabeled,
    else generated inputs (with a warning); returns the pairs and a description of the source."""
    root = Path(data) if data else data_root()
    if root is not None and root.exists():
        samples = list_samples(root, require_masks=False)
        labeled = [s for s in samples if s.mask is not None or s.official_root is not None]
        rng = np.random.default_rng(seed)
        if labeled:
            pick = sorted(rng.choice(len(labeled), min(count, len(labeled)), replace=False))
            return [read_pair(labeled[i]) for i in pick], f"{len(pick)} labeled images from {root}"
        pick = sorted(rng.choice(len(samples), min(count, len(samples)), replace=False))
        return [(read_image(samples[i].image), None) for i in pick], f"{len(pick)} unlabeled images from {root}"
    warnings.warn("no face data found (set MSF_DATA or pass --data): verifying on generated inputs",
                  stacklevel=2)
    rng = np.random.default_rng(seed)
    imgs = [cv2.GaussianBlur(rng.integers(0, 256, (512, 512, 3), dtype=np.uint8), (0, 0), 4) for _ in range(count)]
    return [(im, None) for im in imgs], f"{count} generated inputs (no face data found)"


def make_input(img_rgb: np.ndarray, size: int, sidecar: dict) -> np.ndarray:
    """The graph's input for one image resized to ``size``² per the sidecar's input contract."""
    im = resize_image(img_rgb, size)
    spec = sidecar["input"]
    if spec["dtype"] == "uint8":
        if spec.get("color") == "bgr":
            im = im[..., ::-1]
        return np.ascontiguousarray(im[None])
    return np.ascontiguousarray(im.transpose(2, 0, 1)[None], dtype=np.float32) / np.float32(255.0)


def _score(mask: np.ndarray, labels: np.ndarray) -> float:
    if labels.shape != mask.shape:
        labels = cv2.resize(labels, mask.shape[::-1], interpolation=cv2.INTER_NEAREST)
    return ce7454_fscore(mask, labels)


def verify_session(run, model: torch.nn.Module, pairs: list[tuple[np.ndarray, np.ndarray | None]],
                   sidecar: dict, size: int, precision: str, file: str, source: str) -> VerifyReport:
    """Compare ``run(input) -> output`` (an exported graph) with the fp32 PyTorch model."""
    tol = TOLERANCES[precision]
    max_abs, agree_px, total_px = 0.0, 0, 0
    f_t, f_o = [], []
    kind = sidecar["output"]["kind"]
    model = model.eval().float()
    for img, mask in pairs:
        x = make_input(img, size, sidecar)
        out = run(x)
        xt = torch.from_numpy(resize_image(img, size).transpose(2, 0, 1)[None].astype(np.float32) / 255.0)
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


def graph_size(sidecar: dict, default: int = 512) -> int:
    return sidecar["input"].get("size") or default
