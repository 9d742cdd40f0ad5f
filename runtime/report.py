"""Tables, Markdown and plots of benchmark records (msf-bench and the benchmark scripts share them)."""

from __future__ import annotations

from pathlib import Path

from msf.runtime.timing import machine_line, markdown_table

COLUMNS = [("model", "model"), ("backend", "backend"), ("precision", "prec."), ("batch", "batch"),
           ("size", "size"), ("file_mb", "MB"), ("p50_ms", "p50 ms"), ("p90_ms", "p90"), ("p99_ms", "p99"),
           ("e2e_p50_ms", "e2e p50"), ("e2e_p99_ms", "e2e p99"), ("throughput_ips", "img/s"),
           ("f_score", "F-score"), ("agreement", "agree"), ("cv_max", "CV")]


def fmt(key: str, v) -> str:
    """One table cell: percentages, 3 decimals for scores, 1 for times, "-" when missing."""
    if v is None:
        return "-"
    if key == "agreement":
        return f"{v:.2%}"
    if key in ("f_score", "cv_max"):
        return f"{v:.3f}"
    if isinstance(v, float):
        return f"{v:.1f}"
    return str(v)


def markdown(records: list[dict], env: dict) -> str:
    """A Markdown table of ``records`` with a line naming the machine and library versions."""
    v = env["versions"]
    lines = [machine_line(env, f"ORT {v.get('onnxruntime')}", f"torch {v.get('torch')}"), ""]
    lines += markdown_table([h for _, h in COLUMNS], [[fmt(k, r.get(k)) for k, _ in COLUMNS] for r in records])
    return "\n".join(lines) + "\n"


def plot(records: list[dict], samples: list, out: str) -> None:
    """Left: compute latency distributions (violins) with end-to-end p50; right: throughput vs batch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(13, 4.8))
    names = [f"{r['model']}\n{r['backend']} {r['precision']} b{r['batch']} {r['size']}" for r in records]
    y = range(len(records))
    parts = a1.violinplot(list(samples), positions=list(y), vert=False, showmedians=True, widths=0.8)
    for body in parts["bodies"]:
        body.set_facecolor("#4c72b0")
    a1.scatter([r["p99_ms"] for r in records], y, marker="x", color="#c44e52", label="p99 compute", zorder=3)
    a1.scatter([r["e2e_p50_ms"] for r in records], y, marker="o", color="#dd8452", label="p50 end to end", zorder=3)
    a1.set_yticks(list(y), names, fontsize=7)
    a1.invert_yaxis()
    a1.set_xlabel("latency per batch (ms)")
    a1.legend(fontsize=7)
    groups: dict[str, list[dict]] = {}
    for r in records:
        groups.setdefault(f"{r['model']} {r['backend']} {r['precision']} {r['size']}", []).append(r)
    for label, rs in groups.items():
        rs = sorted(rs, key=lambda r: r["batch"])
        a2.plot([r["batch"] for r in rs], [r["throughput_ips"] for r in rs], marker="o", label=label)
    a2.set_xscale("log", base=2)
    a2.set_xlabel("batch")
    a2.set_ylabel("throughput (images/s, compute)")
    a2.legend(fontsize=7)
    a2.grid(alpha=0.3)
    fig.tight_layout()
    from msf.atomic import atomic_write

    atomic_write(out, lambda tmp: fig.savefig(tmp, dpi=110, format=Path(out).suffix.lstrip(".") or "png"))
    plt.close(fig)
