"""Sidecar metadata ``<artifact>.json`` beside every exported file.

Metadata stays out of the artifact bytes, so trtexec, Triton and plain ORT load files as they are.
The graph's input/output contract, the sidecar file helpers and the version helpers live in
``msf.contract`` (the runtime reads them without importing the export stack); they are re-exported
here for export code.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

from msf.contract import (
    GraphContract,
    file_sha256,
    library_versions,
    read_sidecar,
    sidecar_path,
    write_json_atomic,
    write_sidecar,
)
from msf.labels import LABELS, PALETTE

__all__ = ["build_sidecar", "file_sha256", "library_versions", "read_sidecar", "sidecar_path",
           "write_json_atomic", "write_sidecar"]


def build_sidecar(*, fmt: str, precision: str, target: str, spec, checkpoint_sha256: str | None,
                  contract: GraphContract | None = None, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The sidecar dict for an artifact exported under ``spec`` (an ``ExportSpec``).

    ``input``/``output`` are the graph's contract (``spec.contract`` unless given): the same for
    every precision, since fp16 and int8 graphs keep float32 (or uint8) I/O with the reduced
    precision inside.
    """
    contract = contract or spec.contract
    data = {
        "format": fmt, "precision": precision, "target": target,
        "attention": spec.attention, "attention_core": spec.resolved_core, "opset": spec.resolved_opset,
        **contract.to_dict(), "labels": list(LABELS), "palette": PALETTE.tolist(),
        "checkpoint_sha256": checkpoint_sha256,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": library_versions(),
    }
    if extra:
        data.update(extra)
    return data
