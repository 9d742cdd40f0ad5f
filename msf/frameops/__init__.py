"""Pixel rules on frames, each written once: one module per rule, each with its numbers-only
spec and its implementations per frame format (``bgr``: OpenCV on numpy, ``i420``: decoder
planes, ``torch``: tensors on any device) behind one protocol (``base``).

========== ================================ ==================== =================
rule       spec                             implementations      module
========== ================================ ==================== =================
fit        ``FitSpec`` (sizes, resize rule) bgr, i420, torch     ``fit``
crop       ``CropSpec`` (window, canvas or  bgr, i420, torch     ``crop``
           2×3 warp, pre-fit, rule)
paste      ``PasteSpec`` (windows, indices  bgr, torch           ``paste``
           or 2×3 warps, ownership)
overlay    ``OverlaySpec`` (alpha, order)   bgr, i420, torch     ``overlay``
hud        ``HudLayout`` (box, scale, text) bgr, i420            ``hud``
input      ``msf.contract.InputSpec``       bgr, torch           ``normalize``
========== ================================ ==================== =================

``geometry`` holds ``Placement``, the similarity transform every crop and paste-back starts
from. ``tests/test_frameops.py`` checks every implementation against its rule's ``reference``
on synthetic frames. Torch is imported only inside torch implementations.

Import a rule from its module (``from msf.frameops.fit import fit``): this package imports
none of them itself, so ``msf.frameops.normalize`` stays free of OpenCV for the light modules
that need only it.
"""
