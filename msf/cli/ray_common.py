"""``--ray`` for msf-video and msf-eval: the flags, the progress bar, the final report and its exit
code. Ray itself is imported only by ``msf.runtime.distributed`` when a run starts."""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from msf.cli.common import console, float_range, int_range
from msf.errors import EXIT_INTERRUPTED, EXIT_PARTIAL, MsfError, UsageError

RAY_FLAGS = ("gpus_per_task", "cpus_per_task", "workers", "max_retries", "resume")
SHOWN_FAILURES = 20  # failed inputs listed in the terminal; the JSON report lists all


def add_ray_flags(p: argparse.ArgumentParser, unit: str, tasks: bool = True) -> None:
    """The distributed-run flags; ``unit``: how the command's inputs are spread; ``tasks``: the
    command runs Ray tasks (``--max-retries``), not only Ray Data."""
    g = p.add_argument_group("distributed run on a Ray cluster (pip install 'msf[ray]')")
    g.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                   help=f"run on Ray: {unit}. local (the default of a bare --ray): a cluster of this machine "
                        "alone, started for the run; auto: the cluster 'ray start' runs on this machine; "
                        "HOST:PORT or ray://HOST:10001: a remote one (inputs and outputs on a file system every "
                        "node sees at the same paths)")
    g.add_argument("--gpus-per-task", type=float_range(0.0, 64.0), metavar="G",
                   help="with --ray: GPUs each task (or model actor) holds; fractions share a GPU "
                        "(default: 1 when the cluster has GPUs, else 0)")
    g.add_argument("--cpus-per-task", type=float_range(0.0, 1024.0, lo_open=True), metavar="C",
                   help="with --ray: CPUs each task (or model actor) holds; also its inference threads unless "
                        "--threads (default: 1)")
    g.add_argument("--workers", type=int_range(1, 100000), metavar="N",
                   help="with --ray: most tasks (or model actors) at once (default: as many as the cluster's "
                        "resources allow)")
    if tasks:
        g.add_argument("--max-retries", type=int_range(0, 100), metavar="N",
                       help="with --ray: times Ray reruns a video task whose worker died (killed, out of memory, "
                            "node lost) (default: 3; Ray Data restarts a dead model actor itself)")
    g.add_argument("--resume", action=argparse.BooleanOptionalAction, default=None,
                   help="with --ray: skip inputs whose done-marker matches the input's hash, the model's and "
                        "the settings (default: on; --no-resume redoes everything)")


def check_ray_flags(args: argparse.Namespace) -> None:
    """The --ray-only flags given without --ray: a usage error (without --ray nothing changes)."""
    if args.ray is None:
        given = [f for f in RAY_FLAGS if getattr(args, f, None) is not None]
        if given:
            flag = "--" + given[0].replace("_", "-")
            raise UsageError(f"{flag} needs --ray")


def ray_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The flags' values with their defaults filled in."""
    retries = getattr(args, "max_retries", None)
    return {"cpus": args.cpus_per_task or 1.0, "retries": 3 if retries is None else retries,
            "resume": args.resume is not False, "workers": args.workers}


def task_gpus(args: argparse.Namespace, cluster_gpus: float) -> float:
    return args.gpus_per_task if args.gpus_per_task is not None else (1.0 if cluster_gpus > 0 else 0.0)


class Report:
    """Outcomes as they arrive (progress bar), then the summary table, the JSON report and the
    exit code."""

    def __init__(self, prog: str, total: int, unit: str, stderr: bool, progress: bool = True) -> None:
        from tqdm import tqdm

        self.prog, self.total, self.stderr = prog, total, stderr
        self.outcomes: list[Any] = []
        self.t0 = time.perf_counter()
        self.cluster: Any = None
        self.interrupted = False
        self.bar = tqdm(total=total, unit=unit, desc=prog, disable=not progress or None, leave=False)

    def add(self, outcome: Any) -> None:
        self.outcomes.append(outcome)
        self.bar.update(1)

    def counts(self) -> Counter:
        c = Counter(o.status for o in self.outcomes)
        c["not run"] = self.total - len(self.outcomes)
        return c

    def to_dict(self) -> dict[str, Any]:
        cl = self.cluster
        return {"cluster": None if cl is None else {"address": cl.address, "nodes": cl.nodes, "cpus": cl.cpus,
                                                    "gpus": cl.gpus, "startup_s": round(cl.startup_s, 2)},
                "seconds": round(time.perf_counter() - self.t0, 2), "interrupted": self.interrupted,
                "counts": dict(self.counts()), "inputs": [o.to_dict() for o in self.outcomes]}

    def finish(self, json_path: str | None = None, allow_partial: bool = False) -> int:
        """Print the summary, write ``json_path``; the exit code (or a one-line error when inputs
        failed)."""
        from rich.table import Table

        self.bar.close()
        if json_path:
            from msf.contract import write_json_atomic

            write_json_atomic(json_path, self.to_dict())
        con = console(stderr=self.stderr)
        c = self.counts()
        frames = Counter()
        for o in self.outcomes:
            frames[o.status] += o.frames
        con.print(f"{self.prog} --ray: {self.total} inputs in {time.perf_counter() - self.t0:.1f} s", highlight=False)
        t = Table()
        for col in ("status", "inputs", "frames"):
            t.add_column(col, justify="left" if col == "status" else "right")
        for status in ("done", "skipped", "partial", "failed", "not run"):
            if c[status] or status in ("done", "skipped", "failed"):
                t.add_row(status, str(c[status]), str(frames[status]) if frames[status] else "")
        con.print(t)
        if self.cluster:
            con.print(self.cluster.describe(), highlight=False)
        bad = [o for o in self.outcomes if o.status in ("failed", "partial")]
        for o in bad[:SHOWN_FAILURES]:
            con.print(f"{o.status}: {o.label}: {o.reason}", markup=False, highlight=False)
        if len(bad) > SHOWN_FAILURES:
            con.print(f"... and {len(bad) - SHOWN_FAILURES} more" + (f" (all in {json_path})" if json_path else ""))
        if self.interrupted:
            print(f"{self.prog}: interrupted; finished inputs keep their done-markers: run the same command again "
                  "to do the rest", file=sys.stderr)
            return EXIT_INTERRUPTED
        if c["failed"]:
            raise MsfError(f"{c['failed']} of {self.total} inputs failed (listed above)")
        if c["partial"] and not allow_partial:
            return EXIT_PARTIAL
        return 0


def absolute(path: str | Path | None) -> str | None:
    """``path`` made absolute (Ray workers run in other folders), or None."""
    return None if path is None else str(Path(path).expanduser().absolute())
