"""Where the model looks in a frame: the ``Placer`` of a ``Segmenter``.

Full mode: the letterboxed frame. Face mode: each face YuNet finds (tracked per stream), warped
onto the training images' alignment. Auto mode: face mode, except that a frame that already is a
face close-up like the training images is parsed whole. Each frame's ``Plan`` holds its squares
and their smoothing keys (``(stream, track id)``, or ``(stream, "full")``): the keys travel with
the frame to inference, so no state crosses threads.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from msf.frameops.geometry import Placement, letterbox

MODES = ("auto", "full", "face")
DEFAULT_MODE = "auto"  # msf-video's --mode default too
# --mode auto parses the whole frame when it is a face close-up like the training images: a face
# whose aligned crop covers the letterboxed frame with IoU ≥ this. Measured with
# benchmarks/measure_face_template.py: IoU ≥ 0.71 on 99 % of the 800 training faces (median 0.91);
# a face of 200-520 px in a 1280×720 frame has IoU ≤ 0.17.
AUTO_FULL_IOU = 0.5


@dataclass
class Plan:
    """A frame's squares for the model and the smoothing key of each."""

    places: list[Placement]
    keys: list[tuple] = field(default_factory=list)


class Placer:
    """The squares of each frame (see the module docstring); one face tracker per stream, so call
    ``place`` in frame order for each stream. ``size``: the model input the squares are cut at."""

    def __init__(self, mode: str, size: int, detect_every: int, detect_size: int, detect_score: float,
                 scan_every: int) -> None:
        self.mode, self.size = mode, size
        self.detect_every, self.detect_size, self.detect_score = detect_every, detect_size, detect_score
        self.scan_every = scan_every
        self.trackers: dict[int, object] = {}  # face/auto mode: one tracker per stream

    def place(self, frame: np.ndarray, stream: int = 0) -> Plan:
        """``frame``'s plan: one letterbox, or one aligned square per face."""
        if self.mode == "full":
            return self.full(*frame.shape[:2], stream)
        if stream not in self.trackers:
            from msf.runtime.faces import FaceTracker

            self.trackers[stream] = FaceTracker(detect_every=self.detect_every, detect_size=self.detect_size,
                                                score_threshold=self.detect_score, size=self.size,
                                                scan_every=self.scan_every)
        tracker = self.trackers[stream]
        places = tracker.update(frame)
        if self.mode == "auto" and places:
            from msf.runtime.align import square_iou

            full = letterbox(*frame.shape[:2])
            if max(square_iou(p, full) for p in places) >= AUTO_FULL_IOU:
                return Plan([full], [(stream, "full")])
        return Plan(places, [(stream, k) for k in tracker.track_ids])

    def full(self, h: int, w: int, stream: int = 0) -> Plan:
        """The plan of a full-mode frame, from its size alone: the letterbox."""
        return Plan([letterbox(h, w)], [(stream, "full")])
