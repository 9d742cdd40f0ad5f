"""Robustness report: a model's CE7454 F-score on clean faces and on each degradation of
:func:`msf.degrade.degradation_suite` (what ``msf-eval --degrade`` and ``msf-bench --degrade`` print)."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from msf.degrade import Degradation, degrade_pairs

Pairs = list[tuple[np.ndarray, np.ndarray]]
# Scores one list of (image, mask) pairs: returns at least f_score and f_score_ci95.
Scorer = Callable[[Pairs], dict]

# The rows the summary's targets are stated for (small compressed faces).
TARGET_ROWS = ("s128_q40", "s96_q40", "s64_q40")


def robustness_rows(score: Scorer, pairs: Pairs, degradations: Sequence[Degradation], seed: int = 0,
                    bgr: bool = False, progress: Callable[[str], None] | None = None,
                    clean: dict | None = None) -> list[dict]:
    """One row per condition, clean first: name, description, group, F-score and its 95 % interval.
    Images are degraded as RGB (``bgr`` pairs are converted there and back); ``clean`` is the
    clean score when the caller has it already."""
    rows = []
    for deg in [None, *degradations]:
        name = deg.name if deg else "clean"
        if progress is not None:
            progress(name)
        if deg is None and clean is not None:
            res = clean
        else:
            res = score(pairs if deg is None else _degraded(pairs, deg, seed, bgr))
        rows.append({"name": name, "description": deg.description if deg else "the faces as they are",
                     "group": deg.group if deg else "clean", "f_score": res["f_score"],
                     "f_score_ci95": list(res.get("f_score_ci95") or (float("nan"), float("nan")))})
    return rows


def _degraded(pairs: Pairs, deg: Degradation, seed: int, bgr: bool) -> Pairs:
    if not bgr:
        return degrade_pairs(pairs, deg, seed)
    rgb = [(np.ascontiguousarray(img[..., ::-1]), m) for img, m in pairs]
    return [(np.ascontiguousarray(img[..., ::-1]), m) for img, m in degrade_pairs(rgb, deg, seed)]


def summarize_rows(rows: list[dict]) -> dict:
    """Clean F, the mean and the worst F over the degraded rows, and the mean drop from clean."""
    clean = next(r["f_score"] for r in rows if r["name"] == "clean")
    degraded = [r for r in rows if r["name"] != "clean"]
    if not degraded:
        return {"clean": clean}
    worst = min(degraded, key=lambda r: r["f_score"])
    mean = float(np.mean([r["f_score"] for r in degraded]))
    return {"clean": clean, "degraded_mean": mean, "drop_mean": clean - mean,
            "worst": worst["name"], "worst_f_score": worst["f_score"]}


def robustness_table(results: dict[str, list[dict]], title: str):
    """A rich table: one row per condition, an F-score and interval column per configuration."""
    from rich.table import Table

    t = Table(title=title)
    t.add_column("condition")
    t.add_column("what")
    for key in results:
        t.add_column(f"F {key}", justify="right")
        t.add_column("95% CI", justify="right")
    first = next(iter(results.values()))
    for i, row in enumerate(first):
        cells = [row["name"], row["description"]]
        for rows in results.values():
            r = rows[i]
            lo, hi = r["f_score_ci95"]
            cells += [f"{r['f_score']:.4f}", f"{lo:.3f}–{hi:.3f}"]
        t.add_row(*cells, end_section=(row["name"] == "clean"))
    sums = {k: summarize_rows(v) for k, v in results.items()}
    if "degraded_mean" in next(iter(sums.values())):
        t.add_section()
        t.add_row("mean", "over the degraded rows",
                  *[c for s in sums.values() for c in (f"{s['degraded_mean']:.4f}", "")])
        t.add_row("worst", "the lowest degraded row",
                  *[c for s in sums.values() for c in (f"{s['worst_f_score']:.4f}", s["worst"])])
    return t


def plot_robustness(results: dict[str, list[dict]], path: str | Path, title: str = "") -> None:
    """F-score against the face's pixel size, plain and with JPEG quality 40, per configuration."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from msf.atomic import atomic_write

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for i, (key, rows) in enumerate(results.items()):
        by = {r["name"]: r["f_score"] for r in rows}
        colour = f"C{i}"
        for suffix, style, label in (("", "-", "shrunk"), ("_q40", "--", "shrunk + JPEG 40")):
            pts = sorted((int(m.group(1)), f) for n, f in by.items()
                         if (m := re.fullmatch(rf"s(\d+){suffix}", n)))
            if pts:
                ax.plot(*zip(*pts), style, marker="o", color=colour, label=f"{key}: {label}")
        ax.axhline(by["clean"], color=colour, lw=0.8, alpha=0.5)
    ax.set_xlabel("face size (px, side of the face crop)")
    ax.set_ylabel("CE7454 F-score")
    ax.set_xscale("log", base=2)
    ax.set_xticks([64, 96, 128, 192, 256])
    ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(title or "F-score on degraded faces (thin lines: clean)", fontsize=10)
    fig.tight_layout()
    atomic_write(str(path), lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    plt.close(fig)
