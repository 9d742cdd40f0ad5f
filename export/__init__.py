"""msf.export: deploy rewrite, verified ONNX export, precision variants and TensorRT engines.

Installed as ``msf.export``. The export pipeline is tracked in its own issue; this package is
the place it lands.
"""
