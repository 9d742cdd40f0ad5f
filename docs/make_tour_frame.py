"""Regenerate the README's example frame from a public-domain face that ships in a registry
package (scikit-image's ``astronaut()``, NASA, public domain) — never from the data root.

    pip install scikit-image && python docs/make_tour_frame.py [--clip astronaut.mp4]

``--clip`` also writes a 3-second 1280×720 clip of the astronaut drifting across the frame, the
input of the README's ``msf-video`` example. ``docs/astronaut.jpg`` (the frame, before parsing)
is the input of the README's Python example.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from skimage import data

from msf.runtime import Segmenter
from msf.runtime.render import RenderOptions, render

HERE = Path(__file__).resolve().parent


def write_clip(path: str, frame: np.ndarray, frames: int = 75) -> None:
    vw = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), 25, (1280, 720))
    for i in range(frames):
        canvas = np.full((720, 1280, 3), 40, np.uint8)
        x = 100 + 8 * i
        canvas[104:616, x:x + 512] = frame
        vw.write(canvas)
    vw.release()


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--clip", help="also write a 1280×720 test clip here")
    args = ap.parse_args()
    frame = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    if args.clip:
        write_clip(args.clip, frame)
    # A 1280×720 frame with the astronaut in it, like a webcam picture, parsed in msf-video's default
    # auto mode: the YuNet detector finds the face, it is aligned like the training images, parsed
    # and pasted back (the frame is no close-up, so it is not parsed whole).
    canvas = np.full((720, 1280, 3), 40, np.uint8)
    canvas[104:616, 384:896] = frame
    cv2.imwrite(str(HERE / "astronaut.jpg"), cv2.resize(canvas, (960, 540), interpolation=cv2.INTER_AREA),
                [cv2.IMWRITE_JPEG_QUALITY, 88])
    seg = Segmenter(mode="auto")
    places = seg.placements(canvas)
    labels = seg.assemble(canvas.shape, seg.infer(seg.crops(canvas, places)), places)
    out = render(canvas, labels, RenderOptions(alpha=0.55, legend=True, hud=True, side_by_side=False),
                 [f"{seg.describe()}  auto mode {seg.size}px"])
    small = cv2.resize(out, (960, 540), interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(HERE / "astronaut_msf.jpg"), small, [cv2.IMWRITE_JPEG_QUALITY, 88])
    print("faces:", [(round(p.side), round(p.angle, 1)) for p in places],
          "classes found:", sorted(set(np.unique(labels).tolist()) - {0}))


if __name__ == "__main__":
    main()
