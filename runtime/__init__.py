"""msf.runtime: inference backends and the streaming video pipeline.

Installed as ``msf.runtime``. The runtime is tracked in its own issue; this package is the
place it lands.
"""
