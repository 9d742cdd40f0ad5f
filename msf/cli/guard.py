"""Outputs never overwrite inputs, and unwritable outputs fail before any work (``check_writable``).

Paths are compared by the file they reach (device and inode, after symlinks), not by how they
are spelled: ``in.mp4``, ``./in.mp4``, a symlink to it and a hard link are all the same input.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path

from msf.atomic import check_writable
from msf.errors import UsageError

__all__ = ["Inputs", "check_writable", "refuse_overwrite", "refuse_overwrite_in_folder"]


def _file_id(path: str | Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)  # follows symlinks: the file the path reaches
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino


class Inputs:
    """The files a command reads: single files, and folders whose files matching a name test are
    all read (an image folder, a data set's ``images/`` and ``masks/``)."""

    def __init__(self) -> None:
        self._files: list[Path] = []
        self._folders: list[tuple[Path, Callable[[str], bool]]] = []
        self._ids: dict[tuple[int, int], Path] | None = None

    def add(self, *paths: str | Path | None) -> Inputs:
        """Input files (None and paths that do not exist are ignored)."""
        self._files += [Path(p) for p in paths if p is not None]
        self._ids = None
        return self

    def add_folder(self, folder: str | Path, match: Callable[[str], bool] = lambda name: True) -> Inputs:
        """Every file in ``folder`` whose name passes ``match`` is an input."""
        self._folders.append((Path(folder), match))
        self._ids = None
        return self

    def _index(self) -> dict[tuple[int, int], Path]:
        if self._ids is None:  # built on first use: only when some output already exists
            ids: dict[tuple[int, int], Path] = {}
            for f in self._files:
                key = _file_id(f)
                if key is not None:
                    ids.setdefault(key, f)
            for folder, match in self._folders:
                try:
                    entries = list(os.scandir(folder))
                except OSError:
                    continue
                for e in entries:
                    if match(e.name):
                        key = _file_id(e.path)
                        if key is not None:
                            ids.setdefault(key, Path(e.path))
            self._ids = ids
        return self._ids

    def owner(self, output: str | Path) -> Path | None:
        """The input that writing ``output`` would overwrite, or None."""
        key = _file_id(output)
        return None if key is None else self._index().get(key)


def refuse_overwrite(outputs: Iterable[tuple[str, str | Path]], inputs: Inputs) -> None:
    """A UsageError (exit 2, nothing written) when an output file is one of the inputs.
    ``outputs``: (how the user named it, e.g. ``-o out.mp4``, the file's path)."""
    for label, path in outputs:
        hit = inputs.owner(path)
        if hit is not None:
            same = "" if Path(path) == hit else f" (as {path}, the same file)"
            raise UsageError(f"{label} would overwrite the input {hit}{same}: choose another output")


def refuse_overwrite_in_folder(label: str, folder: str | Path, pattern: str, inputs: Inputs) -> None:
    """``refuse_overwrite`` for a folder output whose file names are known only as a regular
    expression (``pattern``, matched against whole names): every existing file there that the
    command could write is checked."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return  # not there yet: nothing in it can be an input
    rx = re.compile(pattern)
    refuse_overwrite(((label, e.path) for e in entries if rx.fullmatch(e.name)), inputs)
