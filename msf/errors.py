"""One exception type for user-facing failures, and the CLI wrapper that prints it as one line."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

# Exit codes every msf command uses (README, "Exit codes").
EXIT_ERROR = 1        # bad input or environment (one line on stderr)
EXIT_USAGE = 2        # what was typed cannot work: a flag's value, an output that is an input (argparse's code)
EXIT_PARTIAL = 3      # msf-video: a file ended before its container said it would (see --allow-partial)
EXIT_INTERRUPTED = 130


class MsfError(Exception):
    """A problem with the user's input or environment; shown as a one-line message."""

    exit_code = EXIT_ERROR


class UsageError(MsfError):
    """A value the user typed that cannot work (exit code 2, like argparse's own errors)."""

    exit_code = EXIT_USAGE


def run_cli(prog: str, main: Callable[[list[str] | None], int | None],
            argv: list[str] | None = None) -> int:
    """Run a CLI entry point: MsfError -> one line on stderr and its exit code (1, or 2 for a
    usage error); Ctrl-C -> exit 130. Anything else is a bug, still shown as one line (exit 1;
    ``MSF_DEBUG=1`` shows the traceback)."""
    try:
        return int(main(argv) or 0)
    except MsfError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except MemoryError:
        if os.environ.get("MSF_DEBUG"):
            raise
        print(f"{prog}: error: out of memory: lower --batch or --size", file=sys.stderr)
        return EXIT_ERROR
    except Exception as exc:  # noqa: BLE001  (a bug: one line for the user, the traceback on request)
        if os.environ.get("MSF_DEBUG"):
            raise
        text = str(exc).splitlines()[0][:200] if str(exc) else ""
        print(f"{prog}: internal error: {type(exc).__name__}: {text} (a bug in msf; MSF_DEBUG=1 shows the "
              "traceback)", file=sys.stderr)
        return EXIT_ERROR
