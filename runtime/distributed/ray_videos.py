"""Video files as Ray tasks: each runs ``process_video`` (the existing pipeline) on one file.

A task holds ``cpus`` CPUs and ``gpus`` GPUs while it runs. A worker that dies (killed, out of
memory, its node lost) is replaced and the unit rerun by Ray, up to ``retries`` times; the rerun
removes the dead attempt's temporary files and rewrites every output under its own name, so
nothing is lost or written twice. Problems with an input come back as failed outcomes and are
not retried.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from msf.runtime.distributed.cluster import import_ray
from msf.runtime.distributed.units import FAILED, Outcome, VideoJob, VideoUnit
from msf.runtime.distributed.video_unit import process_video


def msf_video_unit(unit: VideoUnit, job: VideoJob) -> Outcome:
    """The Ray task (its workers show as ``ray::msf_video_unit`` while they run it)."""
    return process_video(unit, job)


def failure_reason(exc: BaseException, retries: int) -> str:
    """One line for a unit Ray gave up on."""
    import ray.exceptions as rex

    if isinstance(exc, rex.OutOfMemoryError):
        return "its worker ran out of memory (lower --batch, or give each task more memory)"
    if isinstance(exc, (rex.WorkerCrashedError, rex.NodeDiedError, rex.ActorDiedError)):
        return f"its worker died {retries + 1} time(s) (killed, out of memory, node lost); gave up"
    if isinstance(exc, rex.TaskCancelledError):
        return "cancelled"
    cause = getattr(exc, "cause", None) or exc
    text = str(cause).strip().splitlines()[-1] if str(cause).strip() else ""
    return f"internal error: {type(cause).__name__}: {text}"[:300]


def run_videos(units: list[VideoUnit], job: VideoJob, *, cpus: float, gpus: float, retries: int,
               window: int, on_outcome: Callable[[Outcome], None]) -> bool:
    """Run every unit, at most ``window`` tasks submitted at once; ``on_outcome`` gets each result
    as it arrives. Returns False when interrupted (Ctrl-C: the running tasks end with the driver's
    connection; their units have no marker, so a rerun does them)."""
    ray = import_ray()
    task = ray.remote(msf_video_unit).options(num_cpus=cpus, num_gpus=gpus, max_retries=retries,
                                              retry_exceptions=False)
    todo = list(reversed(units))
    running: dict[Any, VideoUnit] = {}
    try:
        while todo or running:
            while todo and len(running) < window:
                unit = todo.pop()
                running[task.remote(unit, job)] = unit
            ready, _ = ray.wait(list(running), num_returns=1)
            for ref in ready:
                unit = running.pop(ref)
                try:
                    out = ray.get(ref)
                except ray.exceptions.RayError as exc:
                    out = Outcome(unit.label, FAILED, failure_reason(exc, retries))
                on_outcome(out)
    except KeyboardInterrupt:
        # Not ray.cancel: force-cancelling can abort the driver inside Ray (2.60: "Tried to
        # complete task that was not pending"); the job's running tasks end with its driver.
        return False
    return True
