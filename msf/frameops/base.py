"""What every pixel rule shares: the frame formats, the protocol an implementation follows, and
the registry the conformance test (``tests/test_frameops.py``) walks.

A rule is a numbers-only spec (a frozen dataclass: sizes, windows, 2×3 matrices, the resize
rule, alpha) and one implementation per frame format that applies it:

- ``bgr``: numpy H×W×3 uint8 (or a single H×W plane, or a label map) with OpenCV;
- ``i420``: a flat I420 buffer (Y rows, then U and V at half resolution), as decoders give it;
- ``torch``: tensors on any device (the GPU frame path). Torch is imported inside these
  implementations, so importing a rule module never loads it.

Every implementation is ``impl(spec, *arrays) -> array``, registered with ``@implements(rule,
fmt)``; ``implementation(rule, fmt)`` finds it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

FORMATS = ("bgr", "i420", "torch")


def i420_planes(yuv: np.ndarray, h: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Views of the Y (h×w), U and V (h/2×w/2) planes of an I420 buffer of a frame h rows high:
    one (h·3/2)×w uint8 array, OpenCV's layout (``COLOR_BGR2YUV_I420``); h and w even."""
    w = yuv.shape[1]
    chroma = yuv[h:].reshape(2, h // 2, w // 2)
    return yuv[:h], chroma[0], chroma[1]


class Impl(Protocol):
    """One implementation of a rule: applies ``spec`` to frames in its format."""

    def __call__(self, spec: Any, *arrays: Any) -> Any: ...


_REGISTRY: dict[str, dict[str, Impl]] = {}


def implements(rule: str, fmt: str) -> Callable[[Impl], Impl]:
    """Register the decorated function as ``rule``'s implementation for frame format ``fmt``."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown frame format {fmt!r}")

    def register(fn: Impl) -> Impl:
        _REGISTRY.setdefault(rule, {})[fmt] = fn
        return fn

    return register


RULE_MODULES = ("fit", "crop", "paste", "overlay", "hud", "normalize")


def _load() -> None:
    import importlib

    for name in RULE_MODULES:
        importlib.import_module(f"msf.frameops.{name}")


def implementations(rule: str) -> dict[str, Impl]:
    """``rule``'s implementations by frame format."""
    _load()
    return dict(_REGISTRY.get(rule, {}))


def implementation(rule: str, fmt: str) -> Impl:
    """``rule``'s implementation for ``fmt`` (KeyError when it has none)."""
    _load()
    return _REGISTRY[rule][fmt]


def rules() -> list[str]:
    """Every rule, each registered by its module."""
    _load()
    return sorted(_REGISTRY)
