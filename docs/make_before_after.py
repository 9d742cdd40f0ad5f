"""Regenerate ``docs/small_faces_before_after.jpg``: small, compressed faces parsed with the
previous defaults (left) and the current ones (right), side by side.

    python docs/make_before_after.py [--before-ckpt PREVIOUS.pt] [--out docs/small_faces_before_after.jpg]

The frames are made from ``docs/astronaut.jpg`` (NASA, public domain) the way small footage looks:
a 176×144 in-car camera frame (JPEG quality 35) and a 640×360 video-call frame (JPEG quality 40).
"Before" is ``--before-ckpt`` (default: the shipped weights) at 512² input, a 320-px face scan and
islands kept; "after" is the shipped weights with msf-video's defaults.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from msf.runtime import Segmenter
from msf.runtime.render import RenderOptions, render

HERE = Path(__file__).resolve().parent


FACE_BOX = (420, 122, 74, 90)  # the astronaut's face in docs/astronaut.jpg (YuNet box: x, y, w, h)


def small_frame(src: np.ndarray, size: tuple[int, int], face_px: int, quality: int) -> np.ndarray:
    """``src`` (docs/astronaut.jpg) scaled so the face is ``face_px`` wide, cut to ``size``
    (w, h) around the face and JPEG-compressed at ``quality``."""
    x, y, fw, fh = FACE_BOX
    k = face_px / fw
    img = cv2.resize(src, None, fx=k, fy=k, interpolation=cv2.INTER_AREA)
    w, h = size
    pad = max(w, h)
    big = cv2.copyMakeBorder(img, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    cx, cy = round((x + fw / 2) * k) + pad, round((y + fh * 0.6) * k) + pad
    frame = np.ascontiguousarray(big[cy - h // 2:cy - h // 2 + h, cx - w // 2:cx - w // 2 + w])
    return cv2.imdecode(cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, quality])[1], cv2.IMREAD_COLOR)


def parse(seg: Segmenter, frame: np.ndarray) -> np.ndarray:
    """Labels of ``frame`` after a few identical frames (the tracker settles as on a clip)."""
    for _ in range(3):
        places = seg.placements(frame)
        labels = seg.assemble(frame.shape, seg.infer(seg.crops(frame, places)), places)
    return labels


def panel(frame: np.ndarray, labels: np.ndarray, title: str, height: int = 300) -> np.ndarray:
    out = render(frame, labels, RenderOptions(alpha=0.6, legend=False, hud=False, side_by_side=False))
    k = height / out.shape[0]
    out = cv2.resize(out, (round(out.shape[1] * k), height), interpolation=cv2.INTER_NEAREST)
    bar = np.full((28, out.shape[1], 3), 30, np.uint8)
    cv2.putText(bar, title, (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 1, cv2.LINE_AA)
    return np.vstack([bar, out])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before-ckpt", help="the previous weights (default: the shipped weights)")
    ap.add_argument("--out", default=str(HERE / "small_faces_before_after.jpg"))
    args = ap.parse_args()
    src = cv2.imread(str(HERE / "astronaut.jpg"))
    frames = {"176x144, face 70 px, JPEG 35": small_frame(src, (176, 144), 70, 35),
              "640x360, face 110 px, JPEG 40": small_frame(src, (640, 360), 110, 40)}
    before = Segmenter(args.before_ckpt, mode="auto", size=512, detect_size=320, drop_islands=False,
                       matched_sizes=False)
    after = Segmenter(mode="auto")
    rows = []
    for name, frame in frames.items():
        a = panel(frame, parse(before, frame), f"before (512px, scan 320): {name}")
        labels = parse(after, frame)
        sizes = [after.size_for(pl) for pl in after.placements(frame)]  # the settled track's square
        b = panel(frame, labels, f"after (defaults: face parsed at {max(sizes, default=after.size)}px)")
        rows.append(np.hstack([a, np.full((a.shape[0], 6, 3), 255, np.uint8), b]))
    width = max(r.shape[1] for r in rows)
    rows = [cv2.copyMakeBorder(r, 0, 6, 0, width - r.shape[1], cv2.BORDER_CONSTANT, value=(255, 255, 255))
            for r in rows]
    cv2.imwrite(args.out, np.vstack(rows), [cv2.IMWRITE_JPEG_QUALITY, 90])
    print("wrote", args.out)


if __name__ == "__main__":
    main()
