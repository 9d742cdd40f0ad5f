"""Runtime and msf-video on clips made from the data root's faces."""

import json
import os
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
from PIL import Image

from msf.data import list_samples
from msf.errors import MsfError
from msf.runtime import Segmenter


def _faces(root, n, size):
    files = list_samples(root / "unlabeled", require_masks=False)[:n]
    return [cv2.resize(cv2.imread(str(s.image)), (size, size), interpolation=cv2.INTER_AREA) for s in files]


def _write(path, frames, fps=10):
    h, w = frames[0].shape[:2]
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    for f in frames:
        vw.write(f)
    vw.release()
    return path


def _read_all(path):
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            return frames
        frames.append(f)


@pytest.fixture(scope="module")
def clips(tmp_path_factory, faces_root):
    """720p clip with one 300-px face moving right; 720p clip with two faces; a small full-face clip."""
    d = tmp_path_factory.mktemp("clips")
    f1, f2 = _faces(faces_root, 2, 300)
    moving, boxes = [], []
    for i in range(8):
        frame = np.full((720, 1280, 3), 70, np.uint8)
        x, y = 200 + 60 * i, 200
        frame[y:y + 300, x:x + 300] = f1
        moving.append(frame)
        boxes.append((x, y))
    two = []
    for _ in range(4):
        frame = np.full((720, 1280, 3), 70, np.uint8)
        frame[150:450, 150:450] = f1
        frame[250:550, 800:1100] = f2
        two.append(frame)
    small = [cv2.resize(f1, (256, 256))] * 3 + [cv2.resize(f2, (256, 256))] * 3
    return {"moving": (_write(d / "moving.mp4", moving), boxes), "two": _write(d / "two.mp4", two),
            "small": _write(d / "small.mp4", small, fps=5), "dir": d}


@pytest.fixture(scope="module")
def seg(shipped_model):
    return Segmenter()


def video(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "msf.cli.video", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def test_segmenter_three_lines(seg, faces_root):
    frame = _faces(faces_root, 1, 512)[0]
    labels = seg.predict(frame)
    assert labels.shape == (512, 512) and labels.dtype == np.uint8
    counts = np.bincount(labels.ravel(), minlength=19)
    assert counts[1] > 0.05 * labels.size and counts[2] > 0  # skin and a nose on a real face
    with pytest.raises(MsfError, match="uint8"):
        seg.predict(frame.astype(np.float32))


def test_full_mode_file_frames_masks_and_direct_equality(clips, seg, tmp_path):
    out = tmp_path / "out.mp4"
    r = video(clips["small"], "-o", out, "--save-masks", tmp_path / "m", "--stats", tmp_path / "s.json",
              "--no-progress")
    assert r.returncode == 0, r.stderr
    frames_in = _read_all(clips["small"])
    frames_out = _read_all(out)
    assert len(frames_out) == len(frames_in) == 6
    assert frames_out[0].shape == frames_in[0].shape
    masks = sorted((tmp_path / "m").glob("small_*.png"))
    assert [m.name for m in masks] == [f"small_{i:06d}.png" for i in range(6)]
    for i in (0, 4):
        with Image.open(masks[i]) as im:
            assert im.mode == "P" and im.size == (256, 256)
            written = np.array(im)
        assert np.array_equal(written, seg.predict(frames_in[i]))  # same as the backend run directly
    stats = json.loads((tmp_path / "s.json").read_text())
    assert stats["frames"] == 6 and stats["fps"] > 0 and stats["warmup_ms"] > 0
    for stage in ("read", "preprocess", "render", "write", "end_to_end"):  # once per frame
        assert stats["stages"][stage]["count"] == 6
        assert 0 < stats["stages"][stage]["p50_ms"] <= stats["stages"][stage]["p99_ms"]
    # end to end covers every stage of a frame: at least as long as the longest of them
    assert stats["stages"]["end_to_end"]["p50_ms"] >= stats["stages"]["write"]["p50_ms"]
    assert stats["stages"]["infer"]["count"] == stats["stages"]["postprocess"]["count"] >= 2  # batches of ≤ 4
    assert stats["sources"][0]["codec"].startswith(("H.264", "MPEG-4"))


def test_face_mode_labels_land_on_the_moving_face(clips, tmp_path):
    path, boxes = clips["moving"]
    r = video(path, "--mode", "face", "-o", tmp_path / "o.mp4", "--save-masks", tmp_path / "m", "--no-progress")
    assert r.returncode == 0, r.stderr
    assert len(_read_all(tmp_path / "o.mp4")) == 8
    for i, (x, y) in enumerate(boxes):
        labels = np.array(Image.open(tmp_path / "m" / f"moving_{i:06d}.png"))
        assert labels.shape == (720, 1280)
        fg = labels > 0
        inside = np.zeros_like(fg)
        inside[y - 30:y + 330, x - 30:x + 330] = True
        assert fg.sum() > 0.3 * 300 * 300  # the face was parsed
        assert fg[inside].sum() > 0.9 * fg.sum()  # and the labels landed where it is
        assert labels[y + 120:y + 200, x + 100:x + 200].astype(bool).mean() > 0.9


def test_face_detector_every_nth_frame_tracks_in_between(monkeypatch):
    from msf.runtime.faces import FaceTracker

    tracker = FaceTracker(detect_every=3, smoothing=0.0)
    calls = []

    def scripted(frame):  # a face moving 10 px right per frame
        calls.append(int(frame[0, 0, 0]))
        return [(100.0 + 10 * calls[-1], 100.0, 200.0, 200.0)]

    monkeypatch.setattr(tracker, "detect", scripted)
    frames = [np.full((720, 1280, 3), i, np.uint8) for i in range(7)]
    places = [tracker.update(f)[0] for f in frames]
    assert calls == [0, 3, 6]
    assert places[0] == places[1] == places[2] != places[3] == places[4] == places[5] != places[6]
    assert places[3].x0 - places[0].x0 == 30
    with pytest.raises(MsfError, match="detect_every must be at least 1"):
        Segmenter(mode="face", detect_every=0)


def test_face_mode_two_faces_one_batch(clips, seg):
    frame = _read_all(clips["two"])[0]
    face_seg = Segmenter(mode="face")
    places = face_seg.placements(frame)
    assert len(places) == 2
    labels = face_seg.predict(frame)
    for y, x in ((150, 150), (250, 800)):
        assert (labels[y + 100:y + 200, x + 100:x + 200] == 1).mean() > 0.5  # skin on each face


def test_several_sources_share_one_backend(clips, tmp_path):
    r = video(clips["small"], clips["moving"][0], "-o", tmp_path / "outs", "--stats", tmp_path / "s.json",
              "--no-progress", "--batch", "4")
    assert r.returncode == 0, r.stderr
    assert len(_read_all(tmp_path / "outs" / "small.mp4")) == 6
    assert len(_read_all(tmp_path / "outs" / "moving.mp4")) == 8
    stats = json.loads((tmp_path / "s.json").read_text())
    assert stats["frames"] == 14 and stats["mean_batch"] > 1


def test_image_folder_source(clips, faces_root, tmp_path):
    r = video(faces_root / "unlabeled", "--max-frames", "2", "--save-masks", tmp_path / "m", "--no-progress")
    assert r.returncode == 0, r.stderr
    assert len(list((tmp_path / "m").glob("unlabeled_*.png"))) == 2


@pytest.mark.parametrize("make, needle", [
    (lambda d: d / "missing.mp4", "video not found"),
    (lambda d: (d / "empty.mp4").write_bytes(b"") or d / "empty.mp4", "video is empty"),
    (lambda d: (d / "junk.mp4").write_bytes(os.urandom(4096)) or d / "junk.mp4", "cannot"),
    (lambda d: "97", "cannot open webcam 97"),
])
def test_bad_sources_one_line(tmp_path, make, needle):
    r = video(make(tmp_path), "-o", tmp_path / "o.mp4", "--no-progress")
    assert r.returncode == 1 and needle in r.stderr and "Traceback" not in r.stderr
    assert r.stderr.strip().count("\n") == 0
    assert not (tmp_path / "o.mp4").exists()


def test_size_flag_runs_a_checkpoint_at_that_input_size(clips, tmp_path):
    r = video(clips["small"], "--size", "256", "--save-masks", tmp_path / "m", "--stats", tmp_path / "s.json",
              "--no-progress")
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "s.json").read_text())["size"] == 256
    labels = np.array(Image.open(tmp_path / "m" / "small_000000.png"))
    direct = Segmenter(size=256).predict(_read_all(clips["small"])[0])
    assert labels.shape == (256, 256) and np.array_equal(labels, direct)
    assert np.bincount(labels.ravel(), minlength=19)[1] > 0.05 * labels.size  # skin on a real face
    onnx = tmp_path / "m512.onnx"
    e = subprocess.run([sys.executable, "-m", "msf.cli.export", "-o", onnx, "--io", "uint8", "--color", "bgr",
                        "--head", "labels", "--size", "512", "--verify-images", "1"],
                       capture_output=True, text=True, timeout=600)
    assert e.returncode == 0, e.stderr
    r = video(clips["small"], "--model", onnx, "--size", "256", "--no-progress")
    assert r.returncode == 1 and "fixed at 512² input; export it with msf-export --size 256" in r.stderr
    assert "Traceback" not in r.stderr
    r = video(clips["small"], "--size", "0", "--no-progress")
    assert r.returncode == 2 and "expected a multiple of 32 from 64 to 1024" in r.stderr


def test_unwritable_output_and_bad_model(clips, tmp_path):
    r = video(clips["small"], "-o", "/proc/o.mp4", "--no-progress")
    assert r.returncode == 1 and "cannot write to /proc" in r.stderr
    (tmp_path / "m.txt").write_text("x")
    r = video(clips["small"], "--model", tmp_path / "m.txt", "--no-progress")
    assert r.returncode == 1 and "unknown model file type" in r.stderr
    r = video(clips["small"], "--model", tmp_path / "none.engine", "--no-progress")
    assert r.returncode == 1 and "model file not found" in r.stderr


@pytest.mark.parametrize("mode", ["auto", "full"])  # full: the I420 frame path
def test_ctrl_c_finalises_output_and_stats(faces_root, tmp_path, mode):
    frames = _faces(faces_root, 1, 256) * 200
    src = _write(tmp_path / "long.mp4", frames, fps=25)
    out, stats = tmp_path / "o.mp4", tmp_path / "s.json"
    masks = tmp_path / "m"
    proc = subprocess.Popen([sys.executable, "-m", "msf.cli.video", str(src), "-o", str(out), "--stats",
                             str(stats), "--save-masks", str(masks), "--no-progress", "--mode", mode],
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and len(list(masks.glob("*.png"))) < 20:
        time.sleep(0.1)  # interrupt once some frames are through
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    written = _read_all(out)
    s = json.loads(stats.read_text())
    assert s["interrupted"] and 0 < len(written) < 200 and s["frames"] == len(written)
    assert not list(tmp_path.glob(".o.*"))  # no temporary left behind


def test_stalled_live_source_times_out(monkeypatch):
    from msf.runtime import sources

    class Silent:
        def isOpened(self):
            return True

        def get(self, prop):
            return 30.0

        def read(self):
            time.sleep(5)
            return False, None

        def release(self):
            pass

    monkeypatch.setattr(sources.cv2, "VideoCapture", lambda *args: Silent())
    src = sources.open_source("rtsp://camera.invalid/stream", stall_timeout=0.5)
    t0 = time.time()
    with pytest.raises(MsfError, match="stalled"):
        src.read()
    assert time.time() - t0 < 2


def test_temporal_smoothing_averages_probabilities(clips, tmp_path):
    frames = _read_all(clips["small"])
    plain, smooth = Segmenter(), Segmenter(smooth=0.8)
    assert smooth.backend.output_kind == "logits"
    first = smooth.predict(frames[0])
    assert (first == plain.predict(frames[0])).mean() > 0.999  # nothing to average yet: same labels
    # after the cut to another face, the smoothed labels still carry the previous face
    for f in frames[1:4]:
        smooth.predict(f)
    cut_plain, cut_smooth = plain.predict(frames[3]), smooth.predict(frames[3])
    assert (cut_smooth == first).mean() > (cut_plain == first).mean()
    r = video(clips["small"], "--smooth", "0.5", "--save-masks", tmp_path / "m", "--no-progress")
    assert r.returncode == 0, r.stderr
    assert len(list((tmp_path / "m").glob("*.png"))) == 6
    with pytest.raises(MsfError, match=r"in \[0, 1\)"):
        Segmenter(smooth=1.0)  # face-mode smoothing (per tracked face) is tested in test_faces.py


def test_pytorch_backend_matches_onnxruntime(clips, seg):
    frame = _read_all(clips["small"])[0]
    torch_seg = Segmenter(backend="pytorch")
    assert torch_seg.describe().startswith("pytorch")
    assert (torch_seg.predict(frame) == seg.predict(frame)).mean() > 0.999


def test_openvino_backend_bf16_close_to_fp32(clips, seg):
    pytest.importorskip("openvino", reason="OpenVINO is not installed (pip install 'msf[openvino]')")
    frame = _read_all(clips["small"])[0]
    ov = Segmenter(backend="openvino")
    assert ov.describe().startswith("openvino")
    agreement = (ov.predict(frame) == seg.predict(frame)).mean()
    assert agreement > (0.99 if ov.backend.precision == "bf16" else 0.999)


def test_show_without_gui_is_one_line(clips):
    r = video(clips["small"], "--show", "--no-progress")
    if r.returncode == 0:
        pytest.skip("this OpenCV has a GUI and a display")
    assert r.returncode == 1 and "--show needs a GUI build of OpenCV" in r.stderr


def test_engine_compatibility_is_checked_from_the_sidecar():
    from msf.runtime.tensorrt_backend import check_engine_compatible

    side = {"versions": {"tensorrt": "10.3.0"}, "gpu": {"name": "Orin", "compute_capability": "8.7"}}
    check_engine_compatible(side, "10.3.0", {"name": "Orin", "compute_capability": "8.7"})
    check_engine_compatible(None, "10.3.0", None)  # an engine built elsewhere: TensorRT decides
    with pytest.raises(MsfError, match="built with TensorRT 10.3.0, this machine has 10.14.1"):
        check_engine_compatible(side, "10.14.1", {"name": "Orin", "compute_capability": "8.7"})
    with pytest.raises(MsfError, match="compute capability 8.7 .* this GPU is 9.0"):
        check_engine_compatible(side, "10.3.0", {"name": "H100", "compute_capability": "9.0"})
