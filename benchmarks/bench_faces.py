"""Face mode measured like a user sees it: the labeled validation faces placed into 1280×720 footage.

Each validation face of the shipped checkpoint (the 100 names it records; they were never trained
on) is placed into 1280×720 frames: crop side drawn from 200-520 px, rotation within ±20°, random
position (fully inside the frame) and a random smooth background, held for ``--hold`` frames, in
one seeded sequence; a second sequence places them small (64-240 px) in JPEG-compressed frames.
``msf.runtime.Segmenter`` runs over each sequence in frame order (tracking on) with ONNX Runtime
CPU, in each configuration of ``CONFIGS`` (input size, face-matched sizes, island dropping), and for
each held frame we score:

- parsed: the face counts as parsed when the predicted foreground covers ≥ 50 % of the ground
  truth foreground inside the placed crop;
- F: the CE7454 F-score (mean F1 over the classes present) on the pixels inside the placed crop,
  against the aligned F of the same weights on the same 512² faces (full mode at the same input
  size, no placement);
- spill: labelled pixels outside the placed crop as a share of all labelled pixels;
- detection ms: time of ``Segmenter.placements`` per frame (detector + tracking); parse ms: crop,
  inference and paste-back per frame;
- end-to-end FPS of the msf-video pipeline (decode -> detect/crop -> infer -> paste -> render ->
  H.264 encode) on a clip of the footage, per configuration.

    python benchmarks/bench_faces.py [--quick] [--label after]

Writes benchmarks/results/faces_<label>.json and .md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent
W, H = 1280, 720


def validation_faces(root: Path, limit: int | None = None) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, 512² BGR image, 512² label mask) of the shipped checkpoint's validation faces."""
    from msf.checkpoint import checkpoint_metadata
    from msf.data import list_samples, read_mask

    val = set(checkpoint_metadata().get("val_names") or [])
    if not val:
        raise SystemExit("bench_faces: the shipped checkpoint records no validation names")
    samples = [s for s in list_samples(root) if s.name in val][:limit]
    return [(s.name, cv2.imread(str(s.image)), read_mask(s.mask)) for s in samples]


def crop_matrix(cx: float, cy: float, side: float, angle: float, size: int) -> np.ndarray:
    """2×3 frame -> crop (size²) pixel-index matrix of a square of ``side`` centred at (cx, cy),
    rotated ``angle`` degrees counter-clockwise on screen (written here independently of msf)."""
    k = size / side
    c, s = math.cos(math.radians(angle)) * k, math.sin(math.radians(angle)) * k
    lin = np.array([[c, -s], [s, c]])
    off = size / 2 - 0.5 - lin @ np.array([cx - 0.5, cy - 0.5])
    return np.hstack([lin, off[:, None]])


def background(rng: np.random.Generator) -> np.ndarray:
    """A random smooth colour background with a little fine noise."""
    small = rng.uniform(0, 255, (rng.integers(3, 10), rng.integers(4, 16), 3)).astype(np.float32)
    bg = cv2.resize(small, (W, H), interpolation=cv2.INTER_CUBIC)
    bg += rng.normal(0, 6, (H, W, 3)).astype(np.float32)
    return np.clip(bg, 0, 255).astype(np.uint8)


def place_face(img: np.ndarray, mask: np.ndarray, rng: np.random.Generator,
               sides: tuple[float, float] = (200, 520), quality: int | None = None) -> dict:
    """One 1280×720 frame with ``img`` placed at a random side (``sides``, default 200-520 px),
    angle (±20°) and position, JPEG-compressed at ``quality`` if given; returns the frame, the
    ground-truth labels and the inside-the-crop mask."""
    side = float(rng.uniform(*sides))
    angle = float(rng.uniform(-20, 20))
    half = side / 2 * (abs(math.cos(math.radians(angle))) + abs(math.sin(math.radians(angle))))
    cx, cy = float(rng.uniform(half, W - half)), float(rng.uniform(half, H - half))
    n = max(1, round(side))
    face = cv2.resize(img, (n, n), interpolation=cv2.INTER_AREA)  # antialiased, then only rotated
    lab = cv2.resize(mask, (n, n), interpolation=cv2.INTER_NEAREST)
    m = crop_matrix(cx, cy, side, angle, n)
    flags = cv2.WARP_INVERSE_MAP
    warped = cv2.warpAffine(face, m, (W, H), flags=cv2.INTER_LINEAR | flags)
    gt = cv2.warpAffine(lab, m, (W, H), flags=cv2.INTER_NEAREST | flags)
    inside = cv2.warpAffine(np.ones((n, n), np.uint8), m, (W, H), flags=cv2.INTER_NEAREST | flags) > 0
    frame = background(rng)
    frame[inside] = warped[inside]
    if quality:
        frame = cv2.imdecode(cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, quality])[1], cv2.IMREAD_COLOR)
    return {"frame": frame, "gt": gt, "inside": inside, "side": side, "angle": angle, "center": (cx, cy)}


def make_footage(faces: list, hold: int, seed: int, sides: tuple[float, float] = (200, 520),
                 quality: int | None = None) -> list[dict]:
    """The seeded sequence: each face placed once and held for ``hold`` frames."""
    rng = np.random.default_rng(seed)
    shots = [place_face(img, mask, rng, sides, quality) for _, img, mask in faces]
    return [dict(s, shot=i, held=k) for i, s in enumerate(shots) for k in range(hold)]


def score_frame(pred: np.ndarray, shot: dict) -> dict:
    from msf.metrics import ce7454_fscore

    inside, gt = shot["inside"], shot["gt"]
    p_in, g_in = pred[inside], gt[inside]
    fg_gt = g_in > 0
    covered = np.count_nonzero((p_in > 0) & fg_gt) / max(1, np.count_nonzero(fg_gt))
    return {"parsed": covered >= 0.5, "f": ce7454_fscore(g_in, p_in),
            "spill_px": int(np.count_nonzero((pred > 0) & ~inside)), "label_px": int(np.count_nonzero(pred))}


def new_segmenter(mode: str, threads: int, **kw):
    from msf.runtime.segmenter import Segmenter

    try:
        return Segmenter(mode=mode, threads=threads, **kw)
    except TypeError:  # an older msf without the detector options
        if kw:
            return None
        raise


def run_footage(seg, footage: list[dict]) -> dict:
    """Face mode over the sequence, frame by frame in order; per-frame scores, detection ms and
    parse ms (crop, inference, paste back)."""
    rows, det_ms, parse_ms = [], [], []
    for shot in footage:
        frame = shot["frame"]
        t0 = time.perf_counter()
        places = seg.placements(frame)
        t1 = time.perf_counter()
        labels = seg.infer(seg.crops(frame, places), [0] * len(places))
        pred = seg.assemble(frame.shape, labels, places)
        det_ms.append((t1 - t0) * 1000)
        parse_ms.append((time.perf_counter() - t1) * 1000)
        rows.append(score_frame(pred, shot))
    spill = sum(r["spill_px"] for r in rows) / max(1, sum(r["label_px"] for r in rows))
    parsed = [r["f"] for r in rows if r["parsed"]]
    return {"frames": len(rows), "parsed_rate": float(np.mean([r["parsed"] for r in rows])),
            "f_mean": float(np.mean([r["f"] for r in rows])),
            "f_mean_parsed": float(np.mean(parsed)) if parsed else 0.0, "spill": spill,
            "detect_ms_mean": float(np.mean(det_ms)), "detect_ms_p50": float(np.median(det_ms)),
            "parse_ms_mean": float(np.mean(parse_ms)), "parse_ms_p50": float(np.median(parse_ms))}


def detection_sweep(footage: list[dict], sizes: list[int]) -> list[dict]:
    """Recall (a detection whose box centre lies inside the placed crop) and ms per frame
    of the whole-frame scan alone (no second pass in the face's square, no tracking) at several
    detector input sizes: what ``--detect-size`` trades."""
    try:
        from msf.runtime.faces import YuNetDetector

        dets = {size: YuNetDetector(size, refine_size=0) for size in sizes}
    except (ImportError, TypeError):  # an msf without the YuNet detector or its second pass
        return []
    out = []
    for size, det in dets.items():
        hits, ms = 0, []
        for shot in footage:
            t0 = time.perf_counter()
            places = det(shot["frame"])
            ms.append((time.perf_counter() - t0) * 1000)
            cx, cy = shot["center"]
            for f in places:
                x, y, w, h = f.box
                if abs(x + w / 2 - cx) < shot["side"] / 2 and abs(y + h / 2 - cy) < shot["side"] / 2:
                    hits += 1
                    break
        out.append({"detect_size": size, "recall": hits / len(footage), "detect_ms_mean": float(np.mean(ms))})
        print(f"detect size {size}: recall {out[-1]['recall']:.3f}, {out[-1]['detect_ms_mean']:.1f} ms",
              file=sys.stderr)
    return out


def aligned_f(faces: list, threads: int, size: int | None = None, flip: bool = False) -> tuple[float, float | None]:
    """Mean CE7454 F of the same weights on the aligned 512² faces (full mode, at ``size``² input,
    with the mirror pass when ``flip``), and the share of them that ``--mode auto`` parses whole
    (None where this msf has no auto mode)."""
    from msf.metrics import ce7454_fscore

    kw = {"size": size} if size else {}
    seg = new_segmenter("full", threads, **kw, **({"flip": True} if flip else {}))
    f = float(np.mean([ce7454_fscore(mask, seg.predict(img)) for _, img, mask in faces]))
    try:
        auto = new_segmenter("auto", threads, **kw)
    except Exception:  # noqa: BLE001  (an older msf: no auto mode)
        return f, None
    whole = 0
    for k, (_, img, _) in enumerate(faces):
        places = auto.placements(img, stream=k)  # a fresh stream each: no tracking across faces
        whole += len(places) == 1 and places[0].side == 512 and places[0].x0 == 0
    return f, whole / len(faces)


def end_to_end(footage: list[dict], frames: int, threads: int, batch: int, modes: dict[str, dict],
               rounds: int = 3) -> dict:
    """msf-video pipeline FPS on a clip of the first ``frames`` footage frames, per configuration
    (name -> (mode, Segmenter options)): the configurations run in turn, ``rounds`` times, and
    each reports its median FPS, so a busy moment of the machine hits them all alike."""
    from msf.runtime.pipeline import Job, PipelineConfig, run_pipeline
    from msf.runtime.sinks import VideoSink
    from msf.runtime.sources import open_source
    from msf.runtime.stats import PipelineStats

    runs: dict[str, list[dict]] = {name: [] for name in modes}
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "footage.mp4"
        vw = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 25, (W, H))
        for shot in footage[:frames]:
            vw.write(shot["frame"])
        vw.release()
        segs = {name: new_segmenter(mode, threads, **kw) for name, (mode, kw) in modes.items()}
        for _ in range(rounds):
            for name, seg in segs.items():
                src = open_source(str(clip))
                job = Job(src, [VideoSink(Path(tmp) / "out.mp4", src.fps, (W, H))])
                stats = PipelineStats()
                try:
                    run_pipeline(seg, [job], PipelineConfig(batch=batch), stats)
                finally:
                    job.sinks[0].close()
                    src.close()
                runs[name].append(stats.summary())
    out = {}
    for name, sums in runs.items():
        fps = sorted(s["fps"] for s in sums)
        cpu = float(np.median([s["process_cpu_ms_per_frame"] for s in sums]))
        out[name] = {"fps": float(np.median(fps)), "fps_runs": fps, "frames": sums[0]["frames"],
                     "process_cpu_ms_per_frame": cpu}
        print(f"end to end, {name}: {out[name]['fps']:.2f} FPS (median of {fps}), {cpu:.1f} CPU ms/frame",
              file=sys.stderr)
    return out


# Face-mode configurations compared on each footage: the defaults before face-sized parsing, the
# new default input size alone, then each new step added; last, the defaults with the optional
# mirror pass.
CONFIGS: dict[str, dict] = {
    "512², scan at 320, islands kept (previous defaults)": {"size": 512, "matched_sizes": False,
                                                             "drop_islands": False, "detect_size": 320},
    "384², scan at 640, islands kept": {"size": 384, "matched_sizes": False, "drop_islands": False},
    "384², scan at 640, islands dropped": {"matched_sizes": False},
    "+ 320² for squares up to 192 px (defaults)": {},
    "defaults + mirror pass (--tta flip)": {"flip": True},
}
# The footages: the validation faces as a 720p camera sees them at a desk (200-520 px), and small
# faces in compressed footage (64-240 px, JPEG quality 50 per frame: a phone clip, a video call).
FOOTAGES: dict[str, dict] = {
    "placed faces 200-520 px": {"sides": (200, 520), "quality": None},
    "small faces 64-240 px, JPEG 50": {"sides": (64, 240), "quality": 50},
}


def markdown(res: dict) -> str:
    lines = [f"### face mode on placed validation faces ({res['label']})", "",
             f"{res['date']} · {res['cpu']} · {res['cores']} cores · OpenCV {res['opencv']} · msf at "
             f"{res['msf_path']} · {res['faces']} faces × {res['hold']} held frames, seed {res['seed']}"
             + (" · machine shared with other jobs" if res.get("shared") else ""), ""]
    names = list(res["configs"])
    for foot, per in res["footages"].items():
        lines += [f"**{foot}**", "", "| metric | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]

        def row(label, fn, per=per):
            return f"| {label} | " + " | ".join(fn(per[n]) for n in names) + " |"

        lines += [
            row("faces parsed in held frames", lambda r: f"{r['parsed_rate']:.1%}"),
            row("F inside the placed crop", lambda r: f"{r['f_mean']:.4f}"),
            row("aligned F, same weights and size", lambda r: f"{r['aligned_f']:.4f}"),
            row("F / aligned F", lambda r: f"{r['f_mean'] / r['aligned_f']:.3f}"),
            row("labels spilled outside the crop", lambda r: f"{r['spill']:.2%}"),
            row("detection + tracking ms / frame (mean)", lambda r: f"{r['detect_ms_mean']:.1f}"),
            row("crop + infer + paste ms / frame (mean)", lambda r: f"{r['parse_ms_mean']:.1f}"),
        ]
        if all("e2e_fps" in per[n] for n in names):
            base = per[names[0]]["e2e_fps"]
            label = f"end-to-end FPS ({res['e2e_frames']} frames, median of {res['e2e_rounds']}, × first column)"
            lines.append(row(label, lambda r, base=base: f"{r['e2e_fps']:.2f} ({r['e2e_fps'] / base:.2f}×)"))
        if all("e2e_cpu_ms" in per[n] for n in names):
            base = per[names[0]]["e2e_cpu_ms"]
            lines.append(row("end-to-end process CPU ms / frame (first column ÷ this)",
                             lambda r, base=base: f"{r['e2e_cpu_ms']:.1f} ({base / r['e2e_cpu_ms']:.2f}×)"))
        lines.append("")
    if res.get("auto_whole") is not None:
        lines.append(f"Aligned 512² faces that --mode auto parses whole: {res['auto_whole']:.0%}.")
    for foot, sweep in (res.get("sweeps") or {}).items():
        lines += ["", f"| detector input (long side), {foot} | recall | frame scan ms |", "|---|---|---|"]
        lines += [f"| {s['detect_size']} | {s['recall']:.1%} | {s['detect_ms_mean']:.1f} |" for s in sweep]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="20 faces, 3 held frames, no size sweep (~1 min)")
    ap.add_argument("--faces", type=int, help="validation faces to place (default 100)")
    ap.add_argument("--hold", type=int, help="frames each placement is held (default 4)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--e2e-frames", type=int, help="frames of the end-to-end clip (default 160; quick 24)")
    ap.add_argument("--e2e-rounds", type=int, default=5, help="end-to-end runs per configuration, interleaved")
    ap.add_argument("--label", default="after", help="names the result files: faces_<label>")
    ap.add_argument("--shared", action="store_true", help="note that the machine was shared in the result")
    ap.add_argument("--configs", metavar="I,J", help="only these columns of CONFIGS (1-based, e.g. 4,5)")
    ap.add_argument("--out", default=str(HERE / "results"))
    args = ap.parse_args()
    if args.configs:
        wanted = args.configs.split(",")
        picked = {n: kw for k, (n, kw) in enumerate(CONFIGS.items(), 1) if str(k) in wanted}
        if len(picked) != len(set(wanted)):
            sys.exit(f"bench_faces: --configs takes column numbers 1-{len(CONFIGS)}, not {args.configs}")
        CONFIGS.clear()
        CONFIGS.update(picked)
    from msf.paths import data_root

    root = data_root()
    if root is None:
        sys.exit("bench_faces: needs the face data (MSF_DATA or ../shared/data/faces)")
    n_faces = args.faces or (20 if args.quick else 100)
    hold = args.hold or (3 if args.quick else 4)
    threads = os.cpu_count() or 1
    faces = validation_faces(root, n_faces)
    t0 = time.perf_counter()
    import msf

    e2e_frames = args.e2e_frames or (24 if args.quick else 160)
    res = {"label": args.label, "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "opencv": cv2.__version__,
           "msf_path": str(Path(msf.__file__).parent.parent), "faces": len(faces), "hold": hold,
           "seed": args.seed, "shared": args.shared, "threads": threads, "e2e_frames": e2e_frames,
           "e2e_rounds": 1 if args.quick else args.e2e_rounds,
           "configs": CONFIGS, "footages": {}}
    aligned: dict[tuple[int | None, bool], float] = {}
    for foot_name, foot in FOOTAGES.items():
        footage = make_footage(faces, hold, args.seed, foot["sides"], foot["quality"])
        per = {}
        for name, kw in CONFIGS.items():
            key = (kw.get("size"), kw.get("flip", False))
            if key not in aligned:
                aligned[key], auto_whole = aligned_f(faces, threads, *key)
                res.setdefault("auto_whole", auto_whole)
            r = run_footage(new_segmenter("face", threads, **kw), footage)
            r["aligned_f"] = aligned[key]
            per[name] = r
            print(f"{foot_name} | {name}: {json.dumps(r)}", file=sys.stderr)
        e2e = end_to_end(footage, e2e_frames, threads, 4, {n: ("face", kw) for n, kw in CONFIGS.items()},
                         res["e2e_rounds"])
        for name in CONFIGS:
            per[name]["e2e_fps"] = e2e[name]["fps"]
            per[name]["e2e_cpu_ms"] = e2e[name]["process_cpu_ms_per_frame"]
        res["footages"][foot_name] = per
        if not args.quick:
            per_sweep = res.setdefault("sweeps", {})
            per_sweep[foot_name] = detection_sweep(footage, [320, 480, 640])
    res["wall_s"] = round(time.perf_counter() - t0, 1)
    md = markdown(res)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"faces_{args.label}{'_quick' if args.quick else ''}"
    from msf.atomic import atomic_write

    for path, text in ((stem.with_suffix(".json"), json.dumps(res, indent=1)), (stem.with_suffix(".md"), md)):
        atomic_write(path, lambda tmp, text=text: Path(tmp).write_text(text))
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
