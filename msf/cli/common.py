"""Shared argparse setup for the msf command-line tools: one-line usage errors and value types
that say what they accept."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from typing import NoReturn

from msf import __version__
from msf.sizes import SIZE_RULE, size_problem


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the epilog's layout and shows defaults that say something (not None/False)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "%(default)" not in text and action.default not in (None, False, [], argparse.SUPPRESS) \
                and action.option_strings and action.nargs != 0:
            text += " (default: %(default)s)"
        return text


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line (exit 2), like every other msf error, instead of the usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def make_parser(prog: str, description: str, epilog: str | None = None) -> argparse.ArgumentParser:
    """An ArgumentParser with ``--version``, defaults shown in ``--help`` and one-line errors."""
    parser = _Parser(prog=prog, description=description, epilog=epilog, formatter_class=_Formatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def _numeric(fn: Callable[[str], object]) -> Callable[[str], object]:
    fn.numeric = True  # type: ignore[attr-defined]  (tests sweep every flag of a numeric type)
    return fn


def int_range(lo: int, hi: int | None = None, what: str | None = None) -> Callable[[str], int]:
    """An argparse type: an integer from ``lo`` to ``hi`` (no upper bound when None)."""
    what = what or (f"an integer from {lo} to {hi}" if hi is not None else
                    "a positive integer" if lo == 1 else f"an integer of at least {lo}")

    @_numeric
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value < lo or (hi is not None and value > hi):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    parse.__name__ = "integer"
    return parse


def float_range(lo: float, hi: float | None = None, lo_open: bool = False, hi_open: bool = False,
                what: str | None = None) -> Callable[[str], float]:
    """An argparse type: a finite number in [lo, hi] (``lo_open``/``hi_open``: that end excluded;
    no upper bound when ``hi`` is None)."""
    if what is None:
        low = f"above {lo:g}" if lo_open else f"at least {lo:g}"
        what = f"a number {low}" if hi is None else \
            f"a number from {lo:g} to {hi:g}" + (" (excluded)" if hi_open else "")
        if lo_open and hi is not None:
            what = f"a number above {lo:g} and up to {hi:g}"

    @_numeric
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        bad = (not math.isfinite(value) or value < lo or (lo_open and value == lo)
               or (hi is not None and (value > hi or (hi_open and value == hi))))
        if bad:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    parse.__name__ = "number"
    return parse


positive_int = int_range(1)
positive_int.__doc__ = "A positive integer (argparse type)."
unit_float = float_range(0.0, 1.0)
unit_float.__doc__ = "A number from 0 to 1 (argparse type)."
seconds = float_range(0.0, 86400.0, lo_open=True, what="a number of seconds above 0 and up to 86400")
threads_int = int_range(1, 1024)


@_numeric
def int_list(text: str) -> list[int]:
    """``"256,384,512"`` -> [256, 384, 512] (argparse type)."""
    try:
        values = [int(v) for v in text.replace("/", ",").split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


@_numeric
def model_size(text: str) -> int:
    """A model input side: a multiple of 32 from 64 to 1024 (argparse type)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {SIZE_RULE}, got {text!r}") from None
    if size_problem(value):
        raise argparse.ArgumentTypeError(f"expected {SIZE_RULE}, got {text!r}")
    return value


@_numeric
def model_sizes(text: str) -> list[int]:
    """``"256,384,512"``: model input sides, each as ``model_size`` (argparse type)."""
    words = [v for v in text.replace("/", ",").split(",") if v.strip()]
    try:
        values = [model_size(v) for v in words]
    except argparse.ArgumentTypeError:
        values = []
    if not values:
        raise argparse.ArgumentTypeError(f"expected comma-separated sizes, each {SIZE_RULE}, got {text!r}")
    return values


def console(stderr: bool = False):
    """A rich Console; wide when output is not a terminal (files, CI logs) so tables stay readable."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    return Console(file=stream, width=None if stream.isatty() else 160)
