"""The I420 frame path (full mode, video file -> H.264) through the pipeline: what it writes
against the BGR path, and the pipeline choosing it only where it applies. Its letterbox, overlay
and HUD on I420 buffers are checked rule by rule in tests/test_frameops.py."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from msf.runtime.pipeline import Job, PipelineConfig, frame_format, run_pipeline
from msf.runtime.render import RenderOptions
from msf.runtime.segmenter import Segmenter
from msf.runtime.sinks import MaskSink, VideoSink
from msf.runtime.sources import VideoFileSource
from msf.runtime.stats import PipelineStats

av = pytest.importorskip("av")


def _frame(faces_root, h: int = 360, w: int = 640) -> np.ndarray:
    """A real face on a plain background, as footage would be."""
    from msf.data import list_samples

    face = cv2.imread(str(list_samples(faces_root / "unlabeled", require_masks=False)[0].image))
    frame = np.full((h, w, 3), (40, 90, 140), np.uint8)
    s = h * 3 // 4
    frame[(h - s) // 2:(h - s) // 2 + s, w // 3:w // 3 + s] = cv2.resize(face, (s, s), interpolation=cv2.INTER_AREA)
    return frame


def _clip(path, frames: list[np.ndarray]) -> None:
    """An H.264 clip written by msf's own video sink."""
    sink = VideoSink(path, 25, (frames[0].shape[1], frames[0].shape[0]), "h264", "ultrafast", hardware=False)
    for f in frames:
        sink.write(f)
    sink.close()
    assert sink.codec.startswith("H.264")


def _decode(path) -> list[np.ndarray]:
    cap, out = cv2.VideoCapture(str(path)), []
    while True:
        ok, f = cap.read()
        if not ok:
            return out
        out.append(f)


def _run(clip, out_dir, i420: bool, max_frames: int | None = None):
    seg = Segmenter(backend="null", mode="full", size=64)
    src = VideoFileSource(clip)
    video = VideoSink(out_dir / "o.mp4", src.fps, (src.peek().shape[1], src.peek().shape[0]), "h264", "ultrafast",
                      hardware=False)
    job = Job(src, [video, MaskSink(out_dir / "m", "c")])
    cfg = PipelineConfig(batch=2, i420_frames=i420, max_frames=max_frames, render=RenderOptions(hud=False))
    chosen = frame_format(seg, job, cfg, False) == "i420"
    try:
        run_pipeline(seg, [job], cfg, PipelineStats())
    finally:
        video.close()
        src.close()
    return chosen, job


def test_pipeline_i420_path_writes_what_the_bgr_path_writes(faces_root, tmp_path):
    frames = [np.roll(_frame(faces_root, 180, 320), 4 * i, axis=1) for i in range(9)]
    clip = tmp_path / "c.mp4"
    _clip(clip, frames)
    outs = {}
    for i420 in (True, False):
        d = tmp_path / str(i420)
        d.mkdir()
        chosen, job = _run(clip, d, i420)
        assert chosen == i420 and job.written == 9
        masks = [np.array(Image.open(d / "m" / f"c_{k:06d}.png")) for k in range(9)]
        outs[i420] = (_decode(d / "o.mp4"), masks)
    (video_a, masks_a), (video_b, masks_b) = outs[True], outs[False]
    assert len(video_a) == len(video_b) == 9
    expected = Segmenter(backend="null", mode="full", size=64).predict(frames[0])
    assert all(np.array_equal(m, expected) for m in masks_a + masks_b)  # written masks = the backend's labels
    for a, b in zip(video_a, video_b):
        assert np.abs(a.astype(np.int16) - b).mean() < 2.0  # the same rendered video, up to rounding


def test_pipeline_i420_path_stops_cleanly_part_way(faces_root, tmp_path):
    frames = [_frame(faces_root, 180, 320)] * 6
    clip = tmp_path / "c.mp4"
    _clip(clip, frames)
    chosen, job = _run(clip, tmp_path, True, max_frames=3)
    assert chosen and job.written == 3 and len(_decode(tmp_path / "o.mp4")) == 3


@pytest.mark.parametrize("case", ["face mode", "legend", "side by side", "mp4v", "masks only", "odd size"])
def test_pipeline_keeps_bgr_frames_where_i420_does_not_apply(faces_root, tmp_path, case):
    frame = _frame(faces_root, 180, 320)
    clip = tmp_path / "c.mp4"
    if case == "odd size":  # 4:2:0 needs even sizes: a lossless RGB file of odd size instead
        clip = tmp_path / "c.mkv"
        with av.open(str(clip), "w") as c:
            s = c.add_stream("ffv1", rate=25)
            s.width, s.height, s.pix_fmt = 321, 181, "bgr0"
            for p in s.encode(av.VideoFrame.from_ndarray(cv2.resize(frame, (321, 181)), format="bgr24")):
                c.mux(p)
            for p in s.encode():
                c.mux(p)
    else:
        _clip(clip, [frame] * 2)
    src = VideoFileSource(clip)
    h, w = src.peek().shape[:2]
    video = None
    if case != "masks only":
        video = VideoSink(tmp_path / "o.mp4", 25, (w, h), "mp4v" if case == "mp4v" else "h264", "ultrafast",
                          hardware=False)
    render = RenderOptions(legend=case == "legend", side_by_side=case == "side by side")
    seg = Segmenter(backend="null", mode="face" if case == "face mode" else "full", size=64)
    job = Job(src, [video] if video else [MaskSink(tmp_path / "m", "c")])
    try:
        assert frame_format(seg, job, PipelineConfig(render=render), False) == "bgr"
    finally:
        if video is not None:
            video.close(keep=False)
        src.close()


def test_pipeline_i420_path_ends_a_damaged_file_like_the_bgr_path(faces_root, tmp_path):
    frames = [np.roll(_frame(faces_root, 180, 320), 8 * i, axis=1) for i in range(20)]
    whole = tmp_path / "whole.mkv"  # Matroska: a cut file still opens
    _clip(whole, frames)
    cut = tmp_path / "c.mkv"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size * 2 // 3])
    written = {}
    for i420 in (True, False):
        d = tmp_path / str(i420)
        d.mkdir()
        chosen, job = _run(cut, d, i420)
        assert chosen == i420
        written[i420] = job.written
    assert 0 < written[True] < 20 and abs(written[True] - written[False]) <= 1
