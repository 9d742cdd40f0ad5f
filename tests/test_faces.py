"""Face mode: the geometry spec, YuNet detection and alignment on real faces, tracking, auto mode,
and a small version of benchmarks/bench_faces.py (validation faces placed into 720p frames)."""

from __future__ import annotations

import importlib.util
import math
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from msf.errors import MsfError
from msf.frameops.crop import crop
from msf.frameops.paste import assemble
from msf.runtime.align import TEMPLATE, Placement, fit_similarity, square_iou
from msf.runtime.faces import Face, FaceTracker, OneEuro, YuNetDetector

ROOT = Path(__file__).resolve().parents[1]


def _bench(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def bench():
    return _bench("bench_faces")


@pytest.fixture(scope="module")
def val_faces(faces_root, bench):
    return bench.validation_faces(faces_root, 8)


def test_matrix_is_the_axis_aligned_resize_and_round_trips():
    rng = np.random.default_rng(0)
    frame = cv2.GaussianBlur(rng.integers(0, 255, (300, 400, 3), np.uint8), (9, 9), 3)
    for place in (Placement(10, 20, 200), Placement(-30, 50, 256), Placement(0, -50, 400)):
        tilted = replace(place, angle=1e-9)  # the same square through the warp
        exact, warped = crop(frame, place, 256).astype(int), crop(frame, tilted, 256).astype(int)
        assert np.abs(exact - warped)[8:-8, 8:-8].mean() < 1.0  # same geometry, other interpolation
    assert Placement(3, 4, 10).axis_aligned and not Placement(3, 4, 10, 5.0).axis_aligned
    np.testing.assert_allclose(Placement(0, 0, 512).matrix(512), [[1, 0, 0], [0, 1, 0]], atol=1e-12)
    p = Placement(50.3, 40.7, 180.5, 17.0)
    q = Placement.from_matrix(p.matrix(512), 512)
    np.testing.assert_allclose([q.x0, q.y0, q.side, q.angle], [p.x0, p.y0, p.side, p.angle], atol=1e-9)
    # the square's top-left corner lands on the input's top-left edge
    corner = p.corners()[0] - 0.5  # continuous edge -> index coordinates
    np.testing.assert_allclose(p.matrix(512) @ [*corner, 1], [-0.5, -0.5], atol=1e-9)


def test_theta_is_the_same_warp_for_torch_affine_grid():
    """One geometry spec: ``Placement.theta`` + affine_grid/grid_sample = the crop's warpAffine."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    frame = cv2.GaussianBlur(rng.integers(0, 255, (180, 320, 3), np.uint8), (7, 7), 2)
    p = Placement(60.2, 10.7, 140.5, -14.0)
    theta = torch.tensor(p.theta(128, frame.shape[:2]), dtype=torch.float64)[None]
    x = torch.from_numpy(frame.astype(np.float64)).permute(2, 0, 1)[None]
    grid = torch.nn.functional.affine_grid(theta, [1, 3, 128, 128], align_corners=False)
    out = torch.nn.functional.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    ref = crop(frame, p, 128).astype(np.float64)
    assert np.abs(out[0].permute(1, 2, 0).numpy() - ref)[4:-4, 4:-4].max() < 1.5  # rounding of uint8 only


def test_rotated_paste_inverts_the_warp():
    p = Placement(50.3, 40.7, 180.5, 17.0)
    lab = np.zeros((512, 512), np.uint8)
    lab[100:400, 150:350] = 3
    lab[300:350, 200:300] = 7
    frame_lab = assemble((300, 400), [lab], [p])
    back = crop(np.dstack([frame_lab] * 3), p, 512)[..., 0]
    assert (back == lab)[4:-4, 4:-4].mean() > 0.98
    assert frame_lab[0, 399] == 0 and set(np.unique(frame_lab)) == {0, 3, 7}


def test_fit_similarity_recovers_a_transform():
    rng = np.random.default_rng(1)
    src = rng.uniform(0, 100, (5, 2))
    t = math.radians(12)
    lin = 1.7 * np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    m, resid = fit_similarity(src, src @ lin.T + [4, -9])
    np.testing.assert_allclose(m, np.hstack([lin, [[4], [-9]]]), atol=1e-9)
    assert resid < 1e-9


def test_detector_aligns_real_training_faces_like_the_training_crops(face_pairs):
    det = YuNetDetector()
    for img_rgb, _ in face_pairs:
        faces = det(np.ascontiguousarray(img_rgb[..., ::-1]))
        assert faces, "no face found on a training image"
        face = max(faces, key=lambda f: f.box[2] * f.box[3])
        place, aligned = face.placement(512)
        assert aligned and abs(place.angle) < 12
        assert square_iou(place, Placement(0, 0, 512)) > 0.7  # the training crop is its own alignment


def _placed(bench, img, seed, side=300.0, angle=15.0):
    """One validation face placed into a 720p frame at a known square (bench_faces' geometry)."""
    rng = np.random.default_rng(seed)
    frame = np.full((720, 1280, 3), 100, np.uint8)
    n = round(side)
    m = bench.crop_matrix(640, 360, side, angle, n)
    face = cv2.resize(img, (n, n), interpolation=cv2.INTER_AREA)
    inside = cv2.warpAffine(np.ones((n, n), np.uint8), m, (1280, 720), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP)
    warped = cv2.warpAffine(face, m, (1280, 720), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
    frame[inside > 0] = warped[inside > 0]
    frame = np.clip(frame + rng.normal(0, 3, frame.shape), 0, 255).astype(np.uint8)
    return frame, Placement(640 - side / 2, 360 - side / 2, side, angle)


def test_redetect_in_the_aligned_square_maps_landmarks_back_to_the_frame(bench, val_faces):
    """A face re-detected in a rotated, offset square: its landmarks come back in frame pixels
    (the aligned square from them matches the placed crop), and a square without a face gives None."""
    det = YuNetDetector()
    for k, (_, img, _) in enumerate(val_faces[:4]):
        frame, truth = _placed(bench, img, k, angle=(-15.0, 15.0)[k % 2])
        near = Placement(truth.x0 + 20, truth.y0 - 15, truth.side * 1.1, truth.angle - 8)
        face = det.redetect(frame, near)
        assert face is not None and face.landmarks.shape == (5, 2)
        place, aligned = face.placement(512)
        assert aligned and square_iou(place, truth) > 0.8 and abs(place.angle - truth.angle) < 6
        x, y, w, h = face.box
        assert abs(x + w / 2 - 640) < 0.2 * truth.side and abs(y + h / 2 - 360) < 0.3 * truth.side
    assert det.redetect(frame, Placement(0, 0, 200)) is None  # the frame's empty corner


def test_second_pass_aligns_better_than_the_frame_scan(bench, val_faces):
    """The refined landmarks (face re-detected upright at REFINE_SIZE²) give squares closer to the
    placed crops than one pass over the downscaled frame does."""
    one, two = YuNetDetector(refine_size=0), YuNetDetector()
    iou = {0: [], 1: []}
    for k, (_, img, _) in enumerate(val_faces):
        frame, truth = _placed(bench, img, k, side=220.0, angle=(-18.0, 18.0)[k % 2])
        for i, det in enumerate((one, two)):
            (face,) = det(frame)
            iou[i].append(square_iou(face.placement(512)[0], truth))
    assert np.mean(iou[1]) > np.mean(iou[0]) + 0.01 and np.mean(iou[1]) > 0.85


def test_tracked_faces_are_redetected_and_the_frame_scanned_every_nth_run(bench, val_faces, monkeypatch):
    frame, truth = _placed(bench, val_faces[0][1], 0)
    tracker = FaceTracker(scan_every=3)
    scans, redetects = [], []
    scan, redetect = tracker.detect, tracker.detector.redetect
    monkeypatch.setattr(tracker, "detect", lambda f: scans.append(1) or scan(f))
    monkeypatch.setattr(tracker.detector, "redetect", lambda f, p: redetects.append(1) or redetect(f, p))
    for _ in range(7):
        (place,) = tracker.update(frame)
        assert square_iou(place, truth) > 0.8
    # scans (each face found refined in its square) on runs 1, 4, 7; the tracked square alone on the others
    assert len(scans) == 3 and len(redetects) == 3 + 4
    moved = np.roll(frame, 400, axis=1)  # the face jumped (a cut): found at once by a scan
    (place,) = tracker.update(moved)
    assert len(scans) == 4 and abs(place.center[0] - truth.center[0] - 400) < 30
    from msf.runtime.segmenter import Segmenter

    for make in (lambda: FaceTracker(scan_every=0), lambda: Segmenter(mode="face", backend="null", scan_every=0)):
        with pytest.raises(MsfError, match="scan_every must be at least 1"):
            make()


def test_detector_downscale_matches_one_area_resize():
    from msf.runtime.faces import _downscale

    rng = np.random.default_rng(4)
    for w, h, dw, dh in ((1280, 720, 320, 180), (640, 480, 320, 240), (1920, 1080, 320, 180), (1001, 563, 320, 180)):
        img = cv2.resize(rng.integers(0, 255, (h // 32, w // 32, 3), np.uint8), (w, h), interpolation=cv2.INTER_CUBIC)
        got = _downscale(img, dw, dh).astype(int)
        ref = cv2.resize(img, (dw, dh), interpolation=cv2.INTER_AREA)
        assert got.shape == ref.shape
        if w // dw in (2, 4) and w % dw == 0:  # only halvings: the same block average up to rounding
            assert np.abs(got - ref).max() <= 1
        else:  # halvings, then one area step: an antialiased shrink of the same picture
            assert np.abs(got - ref).mean() < 1.5 and abs(got.mean() - ref.mean()) < 0.5


def test_box_fallback_when_landmarks_do_not_fit():
    good = _lm_face(400, 300, 250)
    place, aligned = good.placement(512)
    assert aligned and abs(place.side - 250) < 1 and abs(place.angle) < 1e-6
    bad = Face(good.box, 0.9, good.landmarks[[3, 1, 2, 0, 4]])  # eyes and mouth swapped: no face
    place, aligned = bad.placement(512)
    assert not aligned and place.axis_aligned and 250 < place.side < 300


def test_template_constants_re_measure(faces_root):
    mod = _bench("measure_face_template")
    res = mod.measure(mod.training_images(faces_root, 40))
    assert res["detected"] == 40
    np.testing.assert_allclose(res["template"], TEMPLATE, atol=0.012)


def test_template_measured_on_footage_matches_the_shipped_one(faces_root):
    """Faces placed into 720p frames, detected as msf-video detects them: the landmarks land where
    the shipped template puts them, and the aligned square overlaps the placed crop."""
    mod = _bench("measure_face_template")
    res = mod.measure_footage(mod.training_images(faces_root, 12))
    assert res["detected"] >= 11
    np.testing.assert_allclose(res["template"], TEMPLATE, atol=0.03)
    assert res["shipped_template_fit"]["iou_mean"] > 0.75


def test_detector_file_errors_are_one_line(tmp_path, monkeypatch):
    with pytest.raises(MsfError, match="face detector file missing"):
        YuNetDetector(model=tmp_path / "none.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not an onnx file")
    with pytest.raises(MsfError, match="cannot load the face detector junk.onnx") as exc:
        YuNetDetector(model=tmp_path / "junk.onnx")
    assert "\n" not in str(exc.value)
    from msf.runtime import faces
    from msf.runtime.segmenter import Segmenter

    monkeypatch.setattr(faces, "YUNET_FILE", tmp_path / "junk.onnx")
    with pytest.raises(MsfError, match="cannot load the face detector"):
        Segmenter(mode="auto", backend="null")
    assert "CascadeClassifier" not in (ROOT / "runtime" / "faces.py").read_text()  # OpenCV 5 has no cascade


class _Scripted:
    """A detector that returns what the test says for each frame."""

    def __init__(self, script):
        self.script, self.calls = script, 0

    def __call__(self, frame):
        out = self.script(self.calls, frame)
        self.calls += 1
        return out


def _lm_face(cx, cy, side):
    lm = (TEMPLATE - 0.5) * side + [cx, cy] - 0.5
    return Face((cx - side * 0.37, cy - side * 0.3, side * 0.74, side * 0.74), 0.9, lm)


def test_tracker_holds_through_a_blink_and_drops_on_a_cut():
    rng = np.random.default_rng(2)
    scene = cv2.GaussianBlur(rng.integers(0, 255, (360, 640, 3), np.uint8), (5, 5), 2)
    other = cv2.GaussianBlur(rng.integers(0, 255, (360, 640, 3), np.uint8), (5, 5), 2)
    # frames 0-1 detected, 2-3 missed (same picture: a blink), 4 is a cut with no face
    det = _Scripted(lambda i, f: [_lm_face(300, 180, 200)] if i < 2 else [])
    tr = FaceTracker(detector=det, max_missed=3)
    assert len(tr.update(scene)) == 1 and len(tr.update(scene)) == 1
    assert len(tr.update(scene)) == 1 and len(tr.update(scene)) == 1  # held
    assert tr.update(other) == []  # the picture under the track changed: dropped at once


def test_tracker_smoothing_damps_jitter_and_follows_motion():
    rng = np.random.default_rng(3)
    frame = np.zeros((720, 1280, 3), np.uint8)
    jitter = [_lm_face(600 + rng.normal(0, 3), 360 + rng.normal(0, 3), 300) for _ in range(30)]
    raw = FaceTracker(detector=_Scripted(lambda i, f: [jitter[i]]), smoothing=0)
    smooth = FaceTracker(detector=_Scripted(lambda i, f: [jitter[i]]))
    xs_raw = [raw.update(frame)[0].center[0] for _ in range(30)]
    xs_smooth = [smooth.update(frame)[0].center[0] for _ in range(30)]
    assert np.std(np.diff(xs_smooth[5:])) < 0.5 * np.std(np.diff(xs_raw[5:]))
    f = OneEuro()
    out = [f(np.array([20.0 * i])) for i in range(20)]  # fast motion: little lag
    assert 20 * 19 - out[-1][0] < 25


def test_auto_mode_whole_frame_for_close_ups_faces_otherwise(val_faces):
    from msf.runtime.segmenter import Segmenter

    seg = Segmenter(mode="auto", backend="null")
    _, img, _ = val_faces[0]
    assert seg.placements(img, stream=0) == [Placement(0, 0, 512)]  # a training-like close-up: whole
    frame = np.full((720, 1280, 3), 90, np.uint8)
    frame[200:500, 100:400] = cv2.resize(img, (300, 300), interpolation=cv2.INTER_AREA)
    (place,) = seg.placements(frame, stream=1)
    assert 250 < place.side < 380 and 100 < place.x0 + place.side / 2 - 100 < 300
    assert seg.placements(np.full((720, 1280, 3), 90, np.uint8), stream=2) == []  # no face: nothing


def test_face_mode_smoothing_is_per_tracked_face(val_faces):
    from msf.runtime.segmenter import Segmenter

    seg = Segmenter(mode="face", smooth=0.5)
    frame = np.full((720, 1280, 3), 90, np.uint8)
    frame[100:400, 100:400] = cv2.resize(val_faces[1][1], (300, 300), interpolation=cv2.INTER_AREA)
    frame[300:640, 800:1140] = cv2.resize(val_faces[2][1], (340, 340), interpolation=cv2.INTER_AREA)
    for _ in range(2):
        labels = seg.predict(frame)
    assert sorted(k for k in seg.parser.probs) == [(0, 0), (0, 1)]  # one probability map per face
    assert (labels[200:300, 200:300] == 1).mean() > 0.5 and (labels[420:520, 920:1020] == 1).mean() > 0.5


def test_placed_validation_faces_small(bench, val_faces):
    """benchmarks/bench_faces.py in small: parsed, F near the aligned F, little spill."""
    footage = bench.make_footage(val_faces, hold=2, seed=0)
    aligned, whole = bench.aligned_f(val_faces, threads=2)
    res = bench.run_footage(bench.new_segmenter("face", 2), footage)
    assert res["parsed_rate"] >= 0.95
    assert res["f_mean"] >= 0.93 * aligned
    assert res["spill"] <= 0.04
    assert whole >= 0.85  # --mode auto parses the aligned faces whole


def test_detector_prints_no_opencv_warnings(faces_root):
    """OpenCV 5 warns about its graph engine on every detector it makes; a user running face mode
    should see msf's output only."""
    import subprocess
    import sys

    from msf.data import list_samples

    img = list_samples(faces_root)[0].image
    code = ("import cv2, numpy as np; from msf.runtime.faces import YuNetDetector; "
            f"f = cv2.imread({str(img)!r}); frame = np.zeros((720, 1280, 3), np.uint8); "
            "frame[100:612, 300:812] = f; d = YuNetDetector(); faces = d(frame); "
            "assert faces, 'no face found'; print(len(faces))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "WARN" not in r.stderr, r.stderr
