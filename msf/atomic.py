"""Writing files so that a reader never sees half of one: temporary file beside it, then rename."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def temp_beside(path: str | Path, suffix: str | None = None) -> str:
    """An empty temporary file in ``path``'s folder, with the mode a plain ``open()`` would give.

    mkstemp creates files 0600; renamed into place they would be unreadable to other users.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix if suffix is None else suffix,
                               dir=path.parent if str(path.parent) else ".")
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    return tmp


def atomic_write(path: str | Path, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)`` on a temporary file in ``path``'s folder, then rename it to ``path``.

    On any failure (Ctrl-C included) the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_beside(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
