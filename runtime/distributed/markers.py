"""Done-markers: a unit of work is finished when its marker says so, and only then.

A unit's outputs are each written atomically (temporary file, then rename), and its marker last,
also atomically: a marker therefore implies complete outputs. It lives in the unit's first output
folder, ``<folder>/.msf-done/<name>.json``, and holds the SHA-256 of the input file, a digest of
the model (its file's SHA-256; a retrained checkpoint is a new model), the settings that change
the outputs, and every output with its size. A rerun skips a unit only when all of these still
match and every output is there with its recorded size.

The whole input is hashed (not size + mtime): reading a file costs far less than decoding it
(SHA-256 runs at several hundred MB/s per core, a video decodes at a few MB/s), and the hash is
taken by the worker that parses the unit, so hashing is spread over the cluster like the work.

A worker killed mid-unit leaves its temporary files (``.<stem>.XXXXXXXX<suffix>``, see
``msf.atomic.temp_beside``); the unit's next attempt removes them first (``sweep_temps``), so
every output exists once under its own name and nothing else is left behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from msf.atomic import atomic_write
from msf.contract import file_sha256, sidecar_path

MARKER_DIR = ".msf-done"
MARKER_VERSION = 1
_TEMP_TAIL = r"\.[A-Za-z0-9_]{8}"  # tempfile.mkstemp's eight random characters


def marker_path(folder: str | Path, name: str) -> Path:
    """Where the marker of unit ``name`` whose outputs start in ``folder`` lives."""
    return Path(folder) / MARKER_DIR / f"{name}.json"


def model_digest(model: str | Path | None, backend: str = "auto") -> str:
    """SHA-256 naming the model: of the file (checkpoint, .onnx or .engine, with its sidecar when it
    has one); the shipped weights when ``model`` is None; ``"null"`` for the null backend."""
    if backend == "null":
        return hashlib.sha256(b"msf-null-backend").hexdigest()
    if model is None:
        from msf.paths import WEIGHTS_PATH

        model = WEIGHTS_PATH
    h = hashlib.sha256(file_sha256(model).encode())
    side = sidecar_path(model)
    if side.is_file():
        h.update(file_sha256(side).encode())
    return h.hexdigest()


def settings_digest(settings: dict[str, Any]) -> str:
    """A stable digest of the settings that change a unit's outputs."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()


def _entry(marker: Path, output: Path) -> dict[str, Any]:
    return {"path": os.path.relpath(output, marker.parent), "bytes": output.stat().st_size}


def write_marker(marker: str | Path, input_sha256: str, model_sha256: str, settings: dict[str, Any],
                 outputs: Iterable[str | Path], **extra: Any) -> None:
    """Record that the unit is done (call after every output is in place): hashes, settings,
    each output (relative to the marker) and its size, and ``extra`` facts (frames, attempt...)."""
    from msf import __version__

    marker = Path(marker)
    marker.parent.mkdir(parents=True, exist_ok=True)
    record = {"version": MARKER_VERSION, "input_sha256": input_sha256, "model_sha256": model_sha256,
              "settings_sha256": settings_digest(settings),
              "outputs": [_entry(marker, Path(p)) for p in outputs], "msf": __version__,
              "host": socket.gethostname(), "pid": os.getpid(),
              "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **extra}
    text = json.dumps(record, indent=1) + "\n"
    atomic_write(marker, lambda tmp: Path(tmp).write_text(text))


def read_marker(marker: str | Path) -> dict[str, Any] | None:
    """The marker's record, or None when it is missing or unreadable."""
    try:
        record = json.loads(Path(marker).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("version") == MARKER_VERSION else None


def is_done(marker: str | Path, input_sha256: str, model_sha256: str, settings: dict[str, Any]) -> bool:
    """Whether the unit's marker matches this input, model and settings, and every output it lists
    is still there with its recorded size."""
    record = read_marker(marker)
    if record is None or (record.get("input_sha256"), record.get("model_sha256"), record.get("settings_sha256")) \
            != (input_sha256, model_sha256, settings_digest(settings)):
        return False
    base = Path(marker).parent
    for out in record.get("outputs", []):
        try:
            if (base / out["path"]).stat().st_size != out["bytes"]:
                return False
        except (OSError, KeyError, TypeError):
            return False
    return True


def temp_pattern(stem_regex: str, suffix: str) -> str:
    """A regular expression for the temporary files ``msf.atomic`` makes for outputs whose stems
    match ``stem_regex`` and whose suffix is ``suffix``."""
    return rf"\.{stem_regex}{_TEMP_TAIL}{re.escape(suffix)}"


def sweep_temps(folder: str | Path, pattern: str) -> int:
    """Remove files in ``folder`` whose whole name matches ``pattern`` (a killed attempt's
    temporary files); how many."""
    rx = re.compile(pattern)
    n = 0
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    for e in entries:
        if rx.fullmatch(e.name) and e.is_file(follow_symlinks=False):
            Path(e.path).unlink(missing_ok=True)
            n += 1
    return n
