"""Units of work (one video file, one image), the settings a whole job shares, and outcomes.

Everything here is plain data that pickles to Ray workers; paths are absolute (workers may run
in another folder, or on another node that sees the same file system).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

DONE, SKIPPED, FAILED, PARTIAL = "done", "skipped", "failed", "partial"


@dataclass
class Outcome:
    """What became of one input: ``status`` done, skipped (its marker matched), partial (a video
    file that ended before its container said; outputs kept, marker written) or failed
    (``reason``: one line)."""

    label: str
    status: str
    reason: str = ""
    frames: int = 0
    seconds: float = 0.0
    host: str = ""
    outputs: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class VideoUnit:
    """One video file: its outputs (a video file, a mask folder, or both) and its marker."""

    input: str
    label: str  # as the user typed it
    name: str  # the source's name: masks are <name>_<frame:06d>.png
    video: str | None
    masks: str | None
    marker: str


@dataclass
class VideoJob:
    """What every video unit of a run shares: Segmenter options, rendering and encoding, the
    pipeline's batch, and what the markers compare (model digest, settings)."""

    segmenter: dict[str, Any]
    render: dict[str, Any]
    video: dict[str, Any]
    batch: int = 4
    max_frames: int | None = None
    model_sha256: str = ""
    settings: dict[str, Any] = field(default_factory=dict)
    resume: bool = True


@dataclass
class ImageJob:
    """What every image of a run shares: how images are decoded (``color`` "bgr" for a
    Segmenter, "rgb" for msf-eval's model), the predictor (``predictor`` "segmenter" or "eval",
    and its options), and what the markers compare."""

    color: str
    predictor: str
    options: dict[str, Any]
    batch: int = 8
    model_sha256: str = ""
    settings: dict[str, Any] = field(default_factory=dict)
    resume: bool = True
    overlay_alpha: float = 0.5


def image_row(input_path: str, label: str, masks: str | None, overlay: str | None, marker: str) -> dict[str, str]:
    """One image as a Ray Data row (plain strings; "" for an output not asked for)."""
    return {"input": input_path, "label": label, "masks": masks or "", "overlay": overlay or "", "marker": marker}
