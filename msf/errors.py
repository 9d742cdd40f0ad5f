"""One exception type for user-facing failures, and the CLI wrapper that prints it as one line."""

from __future__ import annotations

import sys
from collections.abc import Callable


class MsfError(Exception):
    """A problem with the user's input or environment; shown as a one-line message."""


def run_cli(prog: str, main: Callable[[list[str] | None], int | None],
            argv: list[str] | None = None) -> int:
    """Run a CLI entry point: MsfError -> one line on stderr and exit 1; Ctrl-C -> exit 130."""
    try:
        return int(main(argv) or 0)
    except MsfError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
