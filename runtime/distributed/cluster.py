"""Connecting to a Ray cluster (or starting one on this machine), quietly.

``--ray local`` starts a cluster of this machine alone for the run and stops it after;
``--ray auto`` joins the cluster ``ray start`` runs on this machine; ``--ray HOST:PORT`` (or
``ray://HOST:10001``) joins a remote one. A process that is already connected (a test, a
notebook) keeps its connection. Ray's own log lines stay in its session folder
(``/tmp/ray/session_latest/logs``): the command's one-line errors and report are the output.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from msf.errors import MsfError

INSTALL_HINT = "pip install 'msf[ray]' on this machine and on every node of the cluster"


def require_ray() -> None:
    """A one-line error saying how to install Ray when it is not installed (Ray is not imported:
    some of its settings are read once, at import, and ``connect`` sets them first)."""
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        raise MsfError(f"--ray needs Ray: {INSTALL_HINT}")


def import_ray() -> Any:
    """The ``ray`` module, or a one-line error saying how to install it."""
    require_ray()
    import ray

    return ray


@dataclass
class Cluster:
    """The cluster a run uses: how it was named, alive nodes, CPUs and GPUs in all, and the
    seconds connecting (or starting it) took."""

    address: str
    nodes: int
    cpus: float
    gpus: float
    startup_s: float

    def describe(self) -> str:
        return (f"Ray cluster {self.address}: {self.nodes} node(s), {self.cpus:g} CPUs, {self.gpus:g} GPUs "
                f"(connected in {self.startup_s:.1f} s)")


def _token_auth(address: str) -> None:
    """Joining a cluster by address: use its token when this machine has one. Recent Ray starts
    clusters with token authentication and finds the token itself for ``auto``, but not for an
    explicit address unless ``RAY_AUTH_MODE=token`` says so (read when Ray is imported: call
    this first)."""
    from pathlib import Path

    if address in ("local", "auto") or "RAY_AUTH_MODE" in os.environ:
        return
    if os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH") \
            or (Path.home() / ".ray" / "auth_token").is_file():
        os.environ["RAY_AUTH_MODE"] = "token"


def _quiet(ray: Any) -> None:
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.ERROR)


@contextlib.contextmanager
def connect(address: str, num_cpus: int | None = None) -> Iterator[Cluster]:
    """Join (or, for ``local``, start) the cluster for the duration of the ``with`` block.
    ``num_cpus``: the CPUs a ``local`` cluster offers (default: all of this machine's)."""
    _token_auth(address)
    ray = import_ray()
    _quiet(ray)
    t0 = time.perf_counter()
    owned = not ray.is_initialized()
    if owned:
        kw: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.ERROR}
        try:
            if address == "local":
                ray.init(address="local", include_dashboard=False, num_cpus=num_cpus, **kw)
            else:
                ray.init(address=address, **kw)
        except Exception as exc:  # noqa: BLE001  (Ray raises ConnectionError, RuntimeError, ValueError...)
            text = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            hint = " (start one with: ray start --head)" if address != "local" else ""
            raise MsfError(f"cannot {'start' if address == 'local' else 'join'} the Ray cluster "
                           f"{address}: {text}{hint}") from None
    try:
        res = ray.cluster_resources()
        nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
        yield Cluster(address, nodes, float(res.get("CPU", 0)), float(res.get("GPU", 0)),
                      time.perf_counter() - t0)
    finally:
        if owned:
            ray.shutdown()
