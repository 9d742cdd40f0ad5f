"""msf.runtime: inference backends and the streaming video pipeline.

``from msf.runtime import Segmenter`` is the embedding API; heavy imports stay lazy.
"""

from __future__ import annotations

__all__ = ["Segmenter", "create_backend"]


def __getattr__(name: str):
    if name == "Segmenter":
        from msf.runtime.segmenter import Segmenter

        return Segmenter
    if name == "create_backend":
        from msf.runtime.backends import create_backend

        return create_backend
    raise AttributeError(name)
