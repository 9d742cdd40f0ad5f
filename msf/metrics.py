"""Face-parsing metrics: the CE7454 per-image F-score, literature F1, mIoU."""

from __future__ import annotations

import numpy as np

from msf.labels import LABELS, NUM_CLASSES

_EPS = 1e-7


def ce7454_fscore(gt: np.ndarray, pred: np.ndarray) -> float:
    """CE7454 F-score of one image: mean F1 over the classes present in ``gt``.

    Classes only in ``pred`` are not scored (their false positives still lower the
    precision of the classes they were taken from).
    """
    gt = np.asarray(gt).ravel()
    pred = np.asarray(pred).ravel()
    if gt.shape != pred.shape:
        raise ValueError(f"shape mismatch: gt {gt.shape} vs pred {pred.shape}")
    scores = []
    for c in np.unique(gt):
        g, p = gt == c, pred == c
        tp = np.count_nonzero(g & p)
        fp = np.count_nonzero(~g & p)
        fn = np.count_nonzero(g & ~p)
        prec = tp / (tp + fp + _EPS)
        rec = tp / (tp + fn + _EPS)
        scores.append(2 * prec * rec / (prec + rec + _EPS))
    return float(np.mean(scores))


def confusion_matrix(gt: np.ndarray, pred: np.ndarray, n: int = NUM_CLASSES) -> np.ndarray:
    """n×n pixel counts, rows = ground truth, columns = prediction."""
    idx = np.asarray(gt, dtype=np.int64).ravel() * n + np.asarray(pred, dtype=np.int64).ravel()
    return np.bincount(idx, minlength=n * n).reshape(n, n)


def per_class_from_confusion(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Per-class precision, recall, F1, IoU and ground-truth pixel support."""
    tp = np.diag(cm).astype(np.float64)
    fp = cm.sum(axis=0) - tp
    fn = cm.sum(axis=1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        prec = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
        rec = np.where(tp + fn > 0, tp / (tp + fn), 0.0)
        f1 = np.where(prec + rec > 0, 2 * prec * rec / (prec + rec), 0.0)
        iou = np.where(tp + fp + fn > 0, tp / (tp + fp + fn), 0.0)
    return {"precision": prec, "recall": rec, "f1": f1, "iou": iou, "support": cm.sum(axis=1)}


def bootstrap_ci(scores: list[float] | np.ndarray, level: float = 0.95, resamples: int = 2000,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of per-image scores (images resampled with
    replacement; seeded, so a report is reproducible). How far the score could move on other
    faces like these, from the spread between images."""
    x = np.asarray(scores, dtype=np.float64)
    if x.size == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(resamples, x.size))].mean(axis=1)
    tail = (1.0 - level) / 2 * 100
    lo, hi = np.percentile(means, [tail, 100 - tail])
    return float(lo), float(hi)


class MetricAccumulator:
    """Accumulates the per-image CE7454 score and a data-set confusion matrix."""

    def __init__(self, n: int = NUM_CLASSES) -> None:
        self.n = n
        self.cm = np.zeros((n, n), dtype=np.int64)
        self.image_scores: list[float] = []

    def update(self, gt: np.ndarray, pred: np.ndarray) -> float:
        score = ce7454_fscore(gt, pred)
        self.image_scores.append(score)
        self.cm += confusion_matrix(gt, pred, self.n)
        return score

    def summary(self) -> dict:
        """CE7454 F-score (with its 95 % bootstrap interval over images), literature F1 (foreground mean
        over classes present), mIoU, pixel accuracy, per class."""
        pc = per_class_from_confusion(self.cm)
        present = pc["support"] > 0
        fg = present.copy()
        fg[0] = False
        return {
            "images": len(self.image_scores),
            "f_score": float(np.mean(self.image_scores)) if self.image_scores else float("nan"),
            "f_score_ci95": list(bootstrap_ci(self.image_scores)),
            "f1_literature": float(pc["f1"][fg].mean()) if fg.any() else float("nan"),
            "miou": float(pc["iou"][present].mean()) if present.any() else float("nan"),
            "pixel_accuracy": float(np.trace(self.cm) / max(self.cm.sum(), 1)),
            "per_class": {
                LABELS[c] if c < len(LABELS) else str(c): {
                    "f1": float(pc["f1"][c]), "iou": float(pc["iou"][c]),
                    "precision": float(pc["precision"][c]), "recall": float(pc["recall"][c]),
                    "support": int(pc["support"][c]),
                }
                for c in range(self.n)
            },
        }
