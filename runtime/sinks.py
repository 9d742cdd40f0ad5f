"""Outputs of the video pipeline: encoded video, per-frame label PNGs, a live window.

Video is written to a temporary file beside the target and renamed when finished, so an
interrupted run leaves either a complete, playable file or none. H.264 through PyAV's FFmpeg
where it has an encoder (libx264), else MPEG-4 Part 2 through OpenCV — and the sink says which.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from msf.atomic import temp_beside
from msf.errors import MsfError
from msf.visualize import save_label_png


def _even(n: int) -> int:
    return n + (n % 2)


class VideoSink:
    """Encodes BGR frames to ``path``; ``codec`` tells what was used."""

    def __init__(self, path: str | Path, fps: float, size: tuple[int, int], prefer: str = "h264") -> None:
        self.path = Path(path)
        parent = self.path.parent if str(self.path.parent) else Path(".")
        if not parent.is_dir():
            raise MsfError(f"output folder does not exist: {parent}")
        try:
            tmp = temp_beside(self.path, self.path.suffix or ".mp4")
        except OSError as exc:
            raise MsfError(f"cannot write to {parent}: {exc.strerror}") from None
        self.tmp = Path(tmp)
        self.size = size
        self.frames = 0
        self._av = None
        self._cv = None
        w, h = size
        if prefer == "h264" and self._open_av(fps, _even(w), _even(h)):
            self.codec = "H.264 (libx264 via PyAV)"
        else:
            self._cv = cv2.VideoWriter(str(self.tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
            if not self._cv.isOpened():
                self.tmp.unlink(missing_ok=True)
                raise MsfError(f"no video encoder available for {self.path.suffix or 'mp4'} output")
            self.codec = "MPEG-4 Part 2 (mp4v via OpenCV)"

    def _open_av(self, fps: float, w: int, h: int) -> bool:
        try:
            from fractions import Fraction

            import av

            container = av.open(str(self.tmp), mode="w")
            stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        except Exception:  # noqa: BLE001  (no PyAV, or no libx264 in its FFmpeg)
            return False
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"crf": "23", "preset": "veryfast"}
        self._av = (av, container, stream)
        return True

    def write(self, frame_bgr: np.ndarray) -> None:
        if self._av is not None:
            av, container, stream = self._av
            if frame_bgr.shape[1] != stream.width or frame_bgr.shape[0] != stream.height:
                frame_bgr = cv2.copyMakeBorder(frame_bgr, 0, stream.height - frame_bgr.shape[0], 0,
                                               stream.width - frame_bgr.shape[1], cv2.BORDER_REPLICATE)
            vf = av.VideoFrame.from_ndarray(frame_bgr, format="bgr24")
            for packet in stream.encode(vf):
                container.mux(packet)
        else:
            self._cv.write(frame_bgr)
        self.frames += 1

    def close(self, keep: bool = True) -> None:
        """Flush and finalise; the file appears under its name only now (or is discarded)."""
        if self._av is not None:
            _, container, stream = self._av
            for packet in stream.encode():
                container.mux(packet)
            container.close()
            self._av = None
        if self._cv is not None:
            self._cv.release()
            self._cv = None
        if keep and self.frames:
            os.replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)


class MaskSink:
    """One frame-sized palette PNG per frame: ``<source>_<frame:06d>.png``."""

    def __init__(self, folder: str | Path, source_name: str) -> None:
        self.folder = Path(folder)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise MsfError(f"cannot create mask folder {self.folder}: {exc.strerror}") from None
        self.name = source_name

    def write(self, index: int, labels: np.ndarray) -> None:
        save_label_png(self.folder / f"{self.name}_{index:06d}.png", labels)


class WindowSink:
    """A live OpenCV window; needs a GUI build of OpenCV (opencv-python, not -headless)."""

    def __init__(self, title: str = "msf") -> None:
        self.title = title
        try:
            cv2.namedWindow(title, cv2.WINDOW_NORMAL)
        except cv2.error:
            raise MsfError("--show needs a GUI build of OpenCV (pip install opencv-python) and a display") from None

    def write(self, frame_bgr: np.ndarray) -> bool:
        """Show a frame; False when the user pressed q or Esc."""
        cv2.imshow(self.title, frame_bgr)
        return (cv2.waitKey(1) & 0xFF) not in (ord("q"), 27)

    def close(self) -> None:
        cv2.destroyWindow(self.title)
