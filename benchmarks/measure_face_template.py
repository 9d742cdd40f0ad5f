"""Re-measure the face-alignment constants of ``msf/runtime/align.py`` (``TEMPLATE``, ``BOX_CENTER``,
``BOX_SIDE``) and the numbers behind the ``--mode auto`` rule: run the shipped YuNet detector on the
training faces of the data root (the shipped checkpoint's validation names left out) and print
where the 5 landmarks and the box sit as fractions of the 512² crop.

``--footage``: measure them the way msf-video meets faces instead: each training face placed into
1280×720 frames like ``bench_faces.py`` places the validation faces (crop side 200-520 px,
rotation ±20°, random position and background; another seed), detected on the whole frame
downscaled to the detector's long side, landmarks mapped back into the placed crop. Also reports
how well the aligned square matches the placed crop (IoU, side ratio) with the shipped template
and with the one just measured.

    python benchmarks/measure_face_template.py [--limit N] [--footage] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

from msf.checkpoint import checkpoint_metadata
from msf.data import list_samples
from msf.paths import data_root
from msf.runtime.align import TEMPLATE, Placement, aligned_placement, square_iou
from msf.runtime.faces import DETECT_SIZE, REFINE_SIZE, YuNetDetector


def training_images(root, limit: int | None = None) -> list:
    """The labeled faces the shipped weights were trained on (its validation names excluded)."""
    val = set(checkpoint_metadata().get("val_names") or [])
    samples = [s for s in list_samples(root) if s.name not in val]
    if limit:
        samples = samples[:: max(1, len(samples) // limit)][:limit]
    return samples


def measure(samples: list, detect_size: int = REFINE_SIZE) -> dict:
    """Landmark template, box geometry, fit residuals and crop geometry over ``samples``, each
    512² crop seen whole at ``detect_size``² in one pass: by default the geometry msf-video's
    final landmarks come from (a face's aligned square re-detected upright at ``REFINE_SIZE``²)."""
    det = YuNetDetector(detect_size, refine_size=0)
    lms, boxes, missing = [], [], 0
    for s in samples:
        img = cv2.imread(str(s.image))
        faces = det(img)
        if not faces:
            missing += 1
            continue
        f = max(faces, key=lambda f: f.box[2] * f.box[3])
        n = img.shape[1]
        lms.append((f.landmarks + 0.5) / n)
        x, y, w, h = f.box
        boxes.append(((x + w / 2) / n, (y + h / 2) / n, max(w, h) / n))
    lms_a, boxes_a = np.array(lms), np.array(boxes)
    template = lms_a.mean(0)
    resid, sides, angles, ious = [], [], [], []
    whole = Placement(0, 0, 512)
    for lm in lms_a:
        place, r = aligned_placement(lm * 512 - 0.5, 512, template)
        resid.append(r)
        sides.append(place.side / 512)
        angles.append(place.angle)
        ious.append(square_iou(place, whole))
    q = lambda v, p: float(np.percentile(v, p))  # noqa: E731
    return {"images": len(samples), "detected": len(lms), "missing": missing,
            "template": template.round(4).tolist(), "template_std": lms_a.std(0).round(4).tolist(),
            "box_center": boxes_a[:, :2].mean(0).round(4).tolist(), "box_side": round(float(boxes_a[:, 2].mean()), 4),
            "residual_p50": q(resid, 50), "residual_p99": q(resid, 99), "residual_max": float(np.max(resid)),
            "crop_side_p1": q(sides, 1), "crop_side_p50": q(sides, 50), "crop_side_p99": q(sides, 99),
            "angle_p1": q(angles, 1), "angle_p99": q(angles, 99),
            "iou_with_frame_p1": q(ious, 1), "iou_with_frame_p50": q(ious, 50)}


def _centre_inside(face, inside: np.ndarray) -> bool:
    """Whether the detection's box centre lies inside the placed crop."""
    x, y, w, h = face.box
    i, j = int(np.clip(y + h / 2, 0, inside.shape[0] - 1)), int(np.clip(x + w / 2, 0, inside.shape[1] - 1))
    return bool(inside[i, j])


def measure_footage(samples: list, detect_size: int = DETECT_SIZE, seed: int = 1) -> dict:
    """Landmark template and box geometry as the pipeline sees faces (see the module docstring)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_faces import crop_matrix, place_face

    from msf.data import read_mask

    det = YuNetDetector(detect_size)
    rng = np.random.default_rng(seed)
    lms, boxes, truth, missing = [], [], [], 0
    for s in samples:
        shot = place_face(cv2.imread(str(s.image)), read_mask(s.mask), rng)
        cx, cy = shot["center"]
        true = Placement(cx - shot["side"] / 2, cy - shot["side"] / 2, shot["side"], shot["angle"])
        faces = [f for f in det(shot["frame"]) if f.landmarks is not None]
        faces = [f for f in faces if _centre_inside(f, shot["inside"])]
        if not faces:
            missing += 1
            continue
        f = max(faces, key=lambda f: f.box[2] * f.box[3])
        m = crop_matrix(cx, cy, shot["side"], shot["angle"], 1)  # frame -> crop of side 1 (index coords)
        lms.append(np.hstack([f.landmarks, np.ones((5, 1))]) @ m.T + 0.5)
        x, y, w, h = f.box
        boxes.append(((x + w / 2 - cx) / shot["side"] + 0.5, (y + h / 2 - cy) / shot["side"] + 0.5,
                      max(w, h) / shot["side"]))
        truth.append((f.landmarks, true))
    lms_a, boxes_a = np.array(lms), np.array(boxes)
    template = lms_a.mean(0)

    def fit(tpl: np.ndarray) -> dict:
        ious, ratios = [], []
        for lm, true in truth:
            place, _ = aligned_placement(lm, 512, tpl)
            ious.append(square_iou(place, true))
            ratios.append(place.side / true.side)
        return {"iou_mean": float(np.mean(ious)), "iou_p10": float(np.percentile(ious, 10)),
                "side_ratio_mean": float(np.mean(ratios))}

    return {"images": len(samples), "detected": len(lms), "missing": missing, "detect_size": detect_size,
            "template": template.round(4).tolist(), "template_std": lms_a.std(0).round(4).tolist(),
            "box_center": boxes_a[:, :2].mean(0).round(4).tolist(), "box_side": round(float(boxes_a[:, 2].mean()), 4),
            "shipped_template_fit": fit(TEMPLATE), "measured_template_fit": fit(template)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, help="measure on N training faces spread over the set")
    ap.add_argument("--detect-size", type=int,
                    help=f"detector input: the crop's side (default {REFINE_SIZE}) or, with --footage, the "
                         f"frame's long side (default {DETECT_SIZE})")
    ap.add_argument("--footage", action="store_true", help="measure on faces placed into 1280×720 footage")
    ap.add_argument("--json", help="also write the numbers here")
    args = ap.parse_args()
    root = data_root()
    if root is None:
        sys.exit("measure_face_template: needs the face data (MSF_DATA or ../shared/data/faces)")
    measure_fn = measure_footage if args.footage else measure
    size = args.detect_size or (DETECT_SIZE if args.footage else REFINE_SIZE)
    res = measure_fn(training_images(root, args.limit), size)
    res["shipped_template"] = TEMPLATE.round(4).tolist()
    print(json.dumps(res, indent=1))
    if args.json:
        from msf.atomic import atomic_write

        atomic_write(args.json, lambda tmp: Path(tmp).write_text(json.dumps(res, indent=1)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
