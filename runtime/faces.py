"""Faces in larger frames (``--mode face`` / ``auto``): YuNet-n detection (box, score, 5 landmarks;
the ONNX file ships inside the package and runs in OpenCV's ``FaceDetectorYN``, no download),
CelebAMask-HQ-aligned placements, and per-stream tracks smoothed with a One-Euro filter."""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

import msf
from msf.contract import DEFAULT_SIZE
from msf.errors import MsfError
from msf.frameops.geometry import Placement, window_matrix
from msf.runtime.align import aligned_placement, box_placement

MODEL_DIR = Path(msf.__file__).resolve().parent / "models" / "yunet"  # shipped as package data
YUNET_FILE = MODEL_DIR / "yunet_n_320_320.onnx"

# Long side of the frame the detector scans. 640 finds every face of 64-240 px in JPEG-50 720p
# footage (320 missed 11 %, 480 2 %); tracking re-detects faces in their own squares, so the
# full scan runs only every SCAN_EVERY-th run (BENCHMARKS.md, face mode).
DETECT_SIZE = 640
# Side of the upright aligned square each face is re-detected in for its final landmarks (0: no
# second pass). At 320 px a face of the placed-face footage is 37-95 px wide and its tilt comes out
# ±8° off; re-detected upright at 160² it is ±3.7° (BENCHMARKS.md, face mode).
REFINE_SIZE = 160
# While faces are tracked (each re-detected in its own square every run), the whole frame is
# scanned for new faces on every SCAN_EVERY-th detection run (and whenever a tracked face is lost).
SCAN_EVERY = 5
SCORE_THRESHOLD = 0.6
NMS_THRESHOLD = 0.3
# RMS landmark residual after the similarity fit, as a fraction of the crop side: median 0.010,
# 99th percentile 0.046, max 0.093 on the 800 training faces (benchmarks/measure_face_template.py);
# above this the landmarks are not trusted and the box fallback is used.
MAX_RESIDUAL = 0.08


@dataclass
class Face:
    """One detection in frame pixels: box (x, y, w, h), score, 5 landmarks (None: box only)."""

    box: tuple[float, float, float, float]
    score: float = 1.0
    landmarks: np.ndarray | None = None

    def placement(self, size: int = DEFAULT_SIZE) -> tuple[Placement, bool]:
        """Its CelebAMask-HQ-like placement, and whether it is landmark-aligned (else box fallback)."""
        if self.landmarks is not None:
            place, resid = aligned_placement(self.landmarks, size)
            if resid <= MAX_RESIDUAL:
                return place, True
        return box_placement(*self.box), False


_LOG_LEVEL_LOCK = threading.Lock()


@contextlib.contextmanager
def _opencv_quiet() -> Iterator[None]:
    """OpenCV's own log at errors only: OpenCV 5's DNN engine warns on every detector it makes
    ("setPreferableTarget: Targets are not supported by the new graph engine"), which says
    nothing a user can act on."""
    with _LOG_LEVEL_LOCK:  # the level is process-wide: two threads must not interleave
        level = cv2.utils.logging.getLogLevel()
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
        try:
            yield
        finally:
            cv2.utils.logging.setLogLevel(level)


def _new_yunet(path: Path, size: tuple[int, int], score: float, nms: float):
    with _opencv_quiet():
        return cv2.FaceDetectorYN.create(str(path), "", size, score, nms, 5000)


class YuNetDetector:
    """YuNet-n through ``cv2.FaceDetectorYN`` on a frame downscaled to ``detect_size`` long side."""

    def __init__(self, detect_size: int = DETECT_SIZE, score_threshold: float = SCORE_THRESHOLD,
                 nms_threshold: float = NMS_THRESHOLD, model: str | Path | None = None,
                 refine_size: int = REFINE_SIZE) -> None:
        if detect_size < 32:
            raise MsfError(f"detect size must be at least 32 px, not {detect_size}")
        if refine_size and refine_size < 64:
            raise MsfError(f"landmark refine size must be 0 (off) or at least 64 px, not {refine_size}")
        if not 0.0 < score_threshold < 1.0:
            raise MsfError(f"detector score threshold must be in (0, 1), not {score_threshold}")
        path = Path(model) if model else YUNET_FILE
        if not path.is_file():
            raise MsfError(f"face detector file missing: {path} (reinstall msf)")
        try:
            self.net = _new_yunet(path, (320, 320), score_threshold, nms_threshold)
        except (cv2.error, AttributeError) as exc:
            reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
            raise MsfError(f"cannot load the face detector {path.name} with OpenCV {cv2.__version__}: "
                           f"{reason}") from None
        self.detect_size, self.refine_size = detect_size, refine_size
        self.thresholds = (score_threshold, nms_threshold)
        self._path = path
        self._input: tuple[int, int] | None = None
        self._refine_net = None

    def __call__(self, frame_bgr: np.ndarray) -> list[Face]:
        """Faces in ``frame_bgr`` (boxes and landmarks in frame pixel indices)."""
        h, w = frame_bgr.shape[:2]
        scale = self.detect_size / max(h, w)
        img = frame_bgr
        if scale != 1.0:
            img = _downscale(frame_bgr, max(1, round(w * scale)), max(1, round(h * scale)))
        sx, sy = w / img.shape[1], h / img.shape[0]
        if self._input != img.shape[1::-1]:
            self._input = img.shape[1::-1]
            self.net.setInputSize(self._input)
        _, rows = self.net.detect(img)
        if rows is None:
            return []
        faces = []
        for r in rows:
            box = (float(r[0] * sx), float(r[1] * sy), float(r[2] * sx), float(r[3] * sy))
            # pixel-centre convention: index x in the small image is (x + 0.5)·s - 0.5 in the frame
            lm = (r[4:14].reshape(5, 2).astype(np.float64) + 0.5) * [sx, sy] - 0.5
            faces.append(Face(box, float(r[14]), lm))
        if self.refine_size:
            faces = [self._refine(frame_bgr, f) for f in faces]
        return faces

    def _refine(self, frame_bgr: np.ndarray, face: Face) -> Face:
        """``face`` with its landmarks re-detected in its aligned square (``redetect``); unchanged
        when its first landmarks are unreliable or the second pass finds no face."""
        place, resid = aligned_placement(face.landmarks, self.refine_size)
        if resid > MAX_RESIDUAL:
            return face
        return self.redetect(frame_bgr, place) or face

    def redetect(self, frame_bgr: np.ndarray, place: Placement) -> Face | None:
        """The face in the square ``place`` (a first detection's or a tracked face's aligned
        square), detected again with the square warped upright to ``refine_size``², the geometry
        the landmark template was measured at; None when no face sits at the square's centre."""
        n = self.refine_size or REFINE_SIZE
        if self._refine_net is None:
            self._refine_net = _new_yunet(self._path, (n, n), *self.thresholds)
        _, rows = self._refine_net.detect(_upright_square(frame_bgr, place, n))
        if rows is None:
            return None
        off = [math.hypot(r[0] + r[2] / 2 - n / 2, r[1] + r[3] / 2 - n / 2) for r in rows]
        r = rows[int(np.argmin(off))]
        if min(off) > n / 4:
            return None
        m = place.matrix(n)  # frame -> square; its inverse takes the detection back to the frame
        inv = np.linalg.inv(m[:, :2])
        lm = (r[4:14].reshape(5, 2).astype(np.float64) - m[:, 2]) @ inv.T
        x, y, w, h = (float(v) for v in r[:4])
        corners = (np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h]]) - 0.5 - m[:, 2]) @ inv.T + 0.5
        (bx0, by0), (bx1, by1) = corners.min(0), corners.max(0)
        return Face((float(bx0), float(by0), float(bx1 - bx0), float(by1 - by0)), float(r[14]), lm)


def _upright_square(frame_bgr: np.ndarray, place: Placement, n: int) -> np.ndarray:
    """The square ``place`` warped upright to n² for the detector (bilinear, zero border): its
    frame window is first halved while the square stays at least 2n wide, so the warp never skips
    pixels; cheaper than the model crop's arbitrary-ratio area resize (0.7-0.9 against 1.7 ms)."""
    (x0, y0, x1, y1), m = window_matrix(place, n, *frame_bgr.shape[:2])
    region, k = frame_bgr[y0:y1, x0:x1], 1
    while place.side / k >= 2 * n and min(region.shape[:2]) >= 4:
        h2, w2 = region.shape[0] // 2, region.shape[1] // 2
        region = cv2.resize(region[:2 * h2, :2 * w2], (w2, h2), interpolation=cv2.INTER_AREA)
        k *= 2
    if k > 1:  # halved index u = (x + 0.5) / k - 0.5  ->  x = k·u + (k - 1) / 2
        m = np.hstack([m[:, :2] * k, (m[:, 2] + m[:, :2] @ np.full(2, (k - 1) / 2))[:, None]])
    if region.size == 0:
        return np.zeros((n, n, 3), frame_bgr.dtype)
    return cv2.warpAffine(region, m, (n, n), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def _downscale(img: np.ndarray, w: int, h: int) -> np.ndarray:
    """``img`` shrunk to w×h for the detector: exact halvings first (OpenCV's fast 2× area path:
    1280×720 -> 320×180 in 0.34 ms, against 2.0 ms for one 4× area resize), then one area resize."""
    while img.shape[1] >= 2 * w and img.shape[0] >= 2 * h and img.shape[1] % 2 == 0 and img.shape[0] % 2 == 0:
        img = cv2.resize(img, (img.shape[1] // 2, img.shape[0] // 2), interpolation=cv2.INTER_AREA)
    if img.shape[1::-1] == (w, h):
        return img
    return cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA if w < img.shape[1] else cv2.INTER_LINEAR)


class OneEuro:
    """One-Euro filter (Casiez et al. 2012) on a vector, one call per frame: smooth when still,
    little lag when moving. ``min_cutoff`` in cycles per frame; speed in units per frame."""

    def __init__(self, min_cutoff: float = 0.05, beta: float = 4.0, d_cutoff: float = 0.3) -> None:
        self.min_cutoff, self.beta, self.d_cutoff = min_cutoff, beta, d_cutoff
        self.x: np.ndarray | None = None
        self.dx: np.ndarray | None = None

    @staticmethod
    def _alpha(cutoff: np.ndarray | float) -> np.ndarray | float:
        tau = 1.0 / (2 * math.pi * cutoff)
        return 1.0 / (1.0 + tau)

    def __call__(self, x: np.ndarray, dt: float = 1.0) -> np.ndarray:
        x = np.asarray(x, np.float64)
        if self.x is None:
            self.x, self.dx = x.copy(), np.zeros_like(x)
            return self.x.copy()
        dx = (x - self.x) / dt
        a_d = self._alpha(self.d_cutoff / dt)
        self.dx = a_d * dx + (1 - a_d) * self.dx
        a = self._alpha((self.min_cutoff + self.beta * np.abs(self.dx)) / dt)
        self.x = a * x + (1 - a) * self.x
        return self.x.copy()


@dataclass
class _Track:
    id: int
    state: np.ndarray  # cx, cy, side, angle in degrees
    aligned: bool
    filt: OneEuro | None
    missed: int = 0
    thumb: np.ndarray | None = None  # what the face looked like when last detected

    @property
    def place(self) -> Placement:
        cx, cy, side, ang = (float(v) for v in self.state)
        if not self.aligned and ang == 0:  # box crops stay axis-aligned: exact resize and paste
            side = round(side)
            return Placement(round(cx - side / 2), round(cy - side / 2), side)
        return Placement(cx - side / 2, cy - side / 2, side, ang)


def _thumb(frame_bgr: np.ndarray, place: Placement, n: int = 16) -> np.ndarray | None:
    """A small grey picture of the placement's central half (None when it is outside the frame)."""
    h, w = frame_bgr.shape[:2]
    cx, cy = place.center
    r = place.side / 4
    x0, y0, x1, y1 = max(int(cx - r), 0), max(int(cy - r), 0), min(int(cx + r), w), min(int(cy + r), h)
    if x1 - x0 < 4 or y1 - y0 < 4:
        return None
    g = cv2.cvtColor(cv2.resize(frame_bgr[y0:y1, x0:x1], (n, n), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2GRAY)
    return g.astype(np.float32).ravel()


def _same_picture(a: np.ndarray | None, b: np.ndarray | None, min_ncc: float = 0.8) -> bool:
    """Whether two thumbnails show the same thing: normalised cross-correlation ≥ ``min_ncc``,
    similar brightness and contrast (a face against the background that replaced it measured
    NCC 0.51 on the placed-face footage of benchmarks/bench_faces.py; a held face: 1.0)."""
    if a is None or b is None:
        return False
    if abs(float(a.mean() - b.mean())) > 20:
        return False
    da, db = a - a.mean(), b - b.mean()
    na, nb = float(np.sqrt((da * da).sum())), float(np.sqrt((db * db).sum()))
    flat = 2.0 * np.sqrt(a.size)  # std below 2 grey levels
    if na < flat or nb < flat:
        return na < flat and nb < flat
    if not 0.67 < na / nb < 1.5:
        return False
    return float((da * db).sum()) / (na * nb) >= min_ncc


def _state(place: Placement) -> np.ndarray:
    cx, cy = place.center
    return np.array([cx, cy, place.side, place.angle])


class FaceTracker:
    """Detect faces and keep one smoothed, CelebAMask-HQ-aligned placement per face.

    A detection run re-detects each tracked face in its own aligned square and scans the whole
    frame only when nothing is tracked, when a tracked face was not found again, or on every
    ``scan_every``-th run (new faces). Detections are matched to tracks by centre distance; each
    track's transform (centre, log side, angle) goes through a One-Euro filter whose speed is
    measured in face sides per frame. A track survives ``max_missed`` detection runs without a
    match (the detector blinking once does not leave a face unparsed) while the picture under it
    still looks like the face did (a cut or a face that left drops the track at once).
    ``detect_every`` > 1 runs detection on every N-th frame only and reuses the tracked
    placements in between. ``smoothing`` scales the filter: 0 = raw detections, 1 = default,
    larger = smoother.
    """

    def __init__(self, smoothing: float = 1.0, max_missed: int = 3, detect_size: int = DETECT_SIZE,
                 score_threshold: float = SCORE_THRESHOLD, detect_every: int = 1, size: int = DEFAULT_SIZE,
                 detector: YuNetDetector | None = None, scan_every: int = SCAN_EVERY) -> None:
        if detect_every < 1:
            raise MsfError(f"detect_every must be at least 1, not {detect_every}")
        if scan_every < 1:
            raise MsfError(f"scan_every must be at least 1, not {scan_every}")
        if smoothing < 0:
            raise MsfError(f"face smoothing must be ≥ 0, not {smoothing}")
        self.detector = detector or YuNetDetector(detect_size, score_threshold)
        self.smoothing, self.max_missed, self.size = smoothing, max_missed, size
        self.tracks: list[_Track] = []
        self.detect_every, self._frames, self._next_id = detect_every, 0, 0
        self.scan_every, self._since_scan = scan_every, 0

    def detect(self, frame_bgr: np.ndarray) -> list[Face]:
        """Faces in this frame (no tracking)."""
        return self.detector(frame_bgr)

    def update(self, frame_bgr: np.ndarray) -> list[Placement]:
        """Placements for this frame, one per live track (call once per frame, in order)."""
        self._frames += 1
        if (self._frames - 1) % self.detect_every == 0:
            self._match(self._find(frame_bgr), frame_bgr)
        return [t.place for t in self.tracks]

    def _find(self, frame_bgr: np.ndarray) -> list[tuple[Placement, bool]]:
        """This detection run's faces. Tracked faces are re-detected in their own aligned squares
        (cheaper than a frame scan, and at the template's geometry); the whole frame is scanned
        when nothing is tracked, when a tracked face was not found again, and every
        ``scan_every``-th run for faces that have just come in."""
        found: list[tuple[Placement, bool]] = []
        self._since_scan += 1
        if self.tracks and getattr(self.detector, "refine_size", 0) and self._since_scan < self.scan_every:
            # a track whose picture changed (a cut, the face gone) is not looked for in its square
            again = [self.detector.redetect(frame_bgr, t.place)
                     if _same_picture(t.thumb, _thumb(frame_bgr, t.place)) else None for t in self.tracks]
            found = [f.placement(self.size) for f in again if f is not None]
            if len(found) == len(self.tracks):
                return found
        self._since_scan = 0
        for f in self.detect(frame_bgr):
            f = f if isinstance(f, Face) else Face(tuple(map(float, f)))
            p, aligned = f.placement(self.size)
            if all(math.dist(p.center, q.center) >= 0.5 * max(p.side, q.side) for q, _ in found):
                found.append((p, aligned))
        return found

    @property
    def track_ids(self) -> list[int]:
        """Ids of the tracks ``update`` returned placements for, in the same order."""
        return [t.id for t in self.tracks]

    def _filter(self) -> OneEuro | None:
        if self.smoothing == 0:
            return None
        # 0.05 cycles/frame when still; speeds in face sides per frame: a face crossing at 3 % of
        # its side per frame lifts the cutoff to 0.17 (lag ≈ 0.9 × the per-frame motion).
        return OneEuro(min_cutoff=0.05 / self.smoothing, beta=4.0 / self.smoothing)

    def _match(self, found: list[tuple[Placement, bool]], frame_bgr: np.ndarray) -> None:
        pairs = []
        for ti, t in enumerate(self.tracks):
            for fi, (p, _) in enumerate(found):
                cx, cy = p.center
                d = math.hypot(cx - t.state[0], cy - t.state[1])
                if d < 0.5 * max(p.side, t.state[2]):
                    pairs.append((d, ti, fi))
        used_t, used_f = set(), set()
        for _, ti, fi in sorted(pairs):
            if ti in used_t or fi in used_f:
                continue
            used_t.add(ti)
            used_f.add(fi)
            t, (p, aligned) = self.tracks[ti], found[fi]
            raw = _state(p)
            if aligned != t.aligned:  # switching between landmark and box crops: restart the filter
                t.filt = self._filter()
            t.aligned, t.missed = aligned, 0
            t.state = self._smooth(t, raw)
            t.thumb = _thumb(frame_bgr, t.place)
        for ti, t in enumerate(self.tracks):
            if ti not in used_t:
                t.missed += 1
                if not _same_picture(t.thumb, _thumb(frame_bgr, t.place)):
                    t.missed = self.max_missed + 1
        self.tracks = [t for t in self.tracks if t.missed <= self.max_missed]
        for fi, (p, aligned) in enumerate(found):
            if fi not in used_f:
                t = _Track(self._next_id, _state(p), aligned, self._filter())
                self._next_id += 1
                t.state = self._smooth(t, t.state)
                t.thumb = _thumb(frame_bgr, t.place)
                self.tracks.append(t)

    @staticmethod
    def _smooth(t: _Track, raw: np.ndarray) -> np.ndarray:
        if t.filt is None:
            return raw
        # Filter in face-relative units so the speed threshold does not depend on the face size:
        # centre in sides, log side, angle in radians.
        side = raw[2]

        def rel(v: np.ndarray) -> np.ndarray:
            return np.array([v[0] / side, v[1] / side, math.log(v[2]), math.radians(v[3])])

        if t.filt.x is not None:  # the previous state in today's units (the side may have changed)
            t.filt.x = rel(t.state)
        out = t.filt(rel(raw))
        return np.array([out[0] * side, out[1] * side, math.exp(out[2]), math.degrees(out[3])])
