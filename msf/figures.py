"""Figures people would rather look at than read: prediction grids with a class legend."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from msf.labels import LABELS, PALETTE
from msf.visualize import colorize


def prediction_grid(rows: list[tuple[str, np.ndarray, np.ndarray | None, np.ndarray]], out: str | Path,
                    title: str = "") -> None:
    """A PNG with one row per image: image | ground truth | prediction, plus a legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    n = len(rows)
    fig, axes = plt.subplots(n, 3, figsize=(9, 3 * n + 0.8), squeeze=False)
    for r, (name, img, gt, pred) in enumerate(rows):
        panels = [(img, name), (colorize(gt) if gt is not None else np.zeros_like(img), "ground truth"),
                  (colorize(pred), "prediction")]
        for c, (arr, label) in enumerate(panels):
            ax = axes[r][c]
            ax.imshow(arr)
            ax.set_title(label[:28], fontsize=9)
            ax.axis("off")
    handles = [Patch(color=PALETTE[i] / 255.0, label=f"{i} {n_}") for i, n_ in enumerate(LABELS)]
    fig.legend(handles=handles, loc="lower center", ncol=7, fontsize=7, frameon=False)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0.06, 1, 0.97))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
