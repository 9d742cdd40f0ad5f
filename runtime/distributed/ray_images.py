"""Images through Ray Data: decode in CPU tasks, a pool of predictor actors (each holds the
model: ``num_gpus`` per actor on a GPU cluster) that infers in batches, encode and write in CPU
tasks (``image_stages``). Blocks stream through the three stages, so decoding, inference and
encoding overlap across the cluster.

An actor whose process dies is restarted and its batch rerun by Ray Data (its own policy: without
bound; ``--max-retries`` bounds video tasks only, Ray Data's remote arguments being deprecated), and
a decode or write task whose worker dies is rerun by Ray (3 times); outputs are rewritten
atomically under their own names, so nothing is lost or written twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from msf.runtime.distributed.cluster import import_ray
from msf.runtime.distributed.image_stages import decode_batch, make_predictor, write_batch
from msf.runtime.distributed.units import FAILED, ImageJob, Outcome


class MsfPredictor:
    """The actor class (its processes show as ``ray::MapWorker(MapBatches(MsfPredictor))``); a
    run makes a subclass that carries its job (``predictor_class``)."""

    job: ImageJob

    def __init__(self) -> None:
        self.predict = make_predictor(self.job)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        return self.predict(batch)


def predictor_class(job: ImageJob) -> type:
    """``MsfPredictor`` bound to ``job``: pickled with the class, so the actors' constructor takes
    no arguments (Ray warns that arguments kept in the object store could be lost when an actor is
    restarted)."""
    return type("MsfPredictor", (MsfPredictor,), {"job": job})


def _quiet_data(ray: Any) -> None:
    import logging

    import ray.data

    for name in ("ray", "ray.data"):  # Ray Data sets up its loggers when imported
        logging.getLogger(name).setLevel(logging.ERROR)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # the command draws its own
    ctx.print_on_execution_start = False
    ctx.enable_auto_log_stats = False
    ctx.verbose_stats_logs = False


def _execute(rows: list[dict[str, str]], job: ImageJob, cpus: float, gpus: float,
             workers: int | None) -> Iterator[list[tuple[str, str, str, str]]]:
    """The dataset, run where this generator runs: (input, label, status, reason) per image, one
    list per written batch."""
    import ray.data

    _quiet_data(ray)
    # Decoding and encoding are light next to inference: half a CPU each lets them run beside the
    # actors on a node whose CPUs the actors hold.
    ds = ray.data.from_items(rows, override_num_blocks=max(1, min(len(rows) // job.batch, 1000)))
    ds = ds.map_batches(decode_batch, fn_kwargs={"job": job}, batch_size=job.batch, num_cpus=0.5)
    ds = ds.map_batches(predictor_class(job), batch_size=job.batch,
                        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=workers), num_cpus=cpus,
                        num_gpus=gpus)
    ds = ds.map_batches(write_batch, fn_kwargs={"job": job}, batch_size=job.batch, num_cpus=0.5)
    for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
        yield [(str(i), str(lab), str(st), str(r))
               for i, lab, st, r in zip(batch["input"], batch["label"], batch["status"], batch["reason"])]


def msf_images(rows: list[dict[str, str]], job: ImageJob, cpus: float, gpus: float,
               workers: int | None) -> Iterator[list[tuple[str, str, str, str]]]:
    """The Ray task that drives the dataset on the cluster (``ray::msf_images``): the executor's
    work and Ray's own messages stay off the calling machine, which gets the outcomes streamed."""
    yield from _execute(rows, job, cpus, gpus, workers)


def run_images(rows: list[dict[str, str]], job: ImageJob, *, cpus: float, gpus: float, workers: int | None,
               on_outcome: Callable[[Outcome], None]) -> bool:
    """Parse every row (``units.image_row``); ``on_outcome`` gets each image's result as its
    batch is written. ``workers``: most predictor actors (default: as many as resources allow).
    Returns False when interrupted (Ctrl-C); a failure of the run itself (a decode or write task
    whose worker died more often than Ray retries) fails the images not yet reported, with the
    reason."""
    ray = import_ray()
    driver = ray.remote(msf_images).options(num_cpus=0, num_returns="streaming", max_retries=0)
    gen = driver.remote(rows, job, cpus, gpus, workers)
    seen: set[str] = set()
    try:
        for ref in gen:
            for path, label, status, reason in ray.get(ref):
                seen.add(path)
                on_outcome(Outcome(label, status, reason))
    except KeyboardInterrupt:  # the dataset's tasks and actors end with the driver's connection
        return False
    except ray.exceptions.RayError as exc:
        from msf.runtime.distributed.ray_videos import failure_reason

        why = f"the run stopped: {failure_reason(exc, 0)}"
        for row in rows:
            if row["input"] not in seen:
                on_outcome(Outcome(row["label"], FAILED, why))
    return True
