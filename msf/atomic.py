"""Writing files so that a reader never sees half of one: temporary file beside it, then rename."""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from msf.errors import MsfError


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


def check_writable(folder: str | Path, what: str = "output folder") -> None:
    """An MsfError, before any work, when new files cannot be created in ``folder``: a real probe
    (``os.access`` says yes to root where writing still fails)."""
    folder = Path(folder) if str(folder) else Path(".")
    if not folder.is_dir():
        raise MsfError(f"{what} does not exist: {folder}")
    try:
        fd, probe = tempfile.mkstemp(prefix=".msf-probe-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        # /proc and friends answer ENOENT for a folder that plainly exists: say what it means.
        why = "it does not accept new files" if exc.errno == errno.ENOENT else exc.strerror
        raise MsfError(f"cannot write to {folder}: {what} is not writable ({why})") from None
