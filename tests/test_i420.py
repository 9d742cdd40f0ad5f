"""The I420 frame path (full mode, video file -> H.264): letterbox, overlay and HUD on I420
buffers against the BGR path they replace, and the pipeline choosing it only where it applies."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from msf.runtime.pipeline import Job, PipelineConfig, frame_format, run_pipeline
from msf.runtime.preprocess import i420_letterbox, i420_letterbox_size, letterbox_placement, square_crop
from msf.runtime.render import RenderOptions, draw_hud, overlay_bgr, render_i420
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


def _blobs(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Label regions of a few pixels to tens of pixels, like a parsed face; background at the left."""
    rng = np.random.default_rng(seed)
    lab = cv2.resize(rng.integers(0, 19, (h // 16, w // 16), dtype=np.uint8), (w, h), interpolation=cv2.INTER_NEAREST)
    lab[:, : w // 4] = 0
    return lab


def test_i420_letterbox_matches_the_bgr_letterbox(faces_root):
    frame = _frame(faces_root)
    yuv = cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420)
    bgr = cv2.cvtColor(yuv, cv2.COLOR_YUV2BGR_I420)  # the frame as the BGR path decodes it
    for size in (512, 256, 160):
        assert i420_letterbox_size(360, 640, size) is not None
        ref = square_crop(bgr, letterbox_placement(360, 640), size).astype(np.int16)
        got = i420_letterbox(yuv, 360, 640, size).astype(np.int16)
        assert got.shape == ref.shape == (size, size, 3)
        diff = np.abs(got - ref)
        # The same shrink either way; only where chroma is upsampled differs (colour edges): measured
        # mean 0.27-0.61, 99th percentile 5-14 from 512 down to 160 (the model-level check, F-score
        # on the validation faces, is benchmarks/check_letterbox.py --i420).
        assert diff.mean() < 1.0 and np.percentile(diff, 99) <= 16, size
        assert np.array_equal(got[: (size - size * 360 // 640) // 2], ref[: (size - size * 360 // 640) // 2])


def test_i420_letterbox_needs_even_sizes():
    assert i420_letterbox_size(360, 640, 512) == (512, 288)
    assert i420_letterbox_size(361, 640, 512) is None  # odd frame
    assert i420_letterbox_size(360, 640, 101) is None  # 101 columns: odd


def test_overlay_i420_matches_the_bgr_overlay(faces_root):
    frame = _frame(faces_root)
    labels = np.roll(_blobs(360, 640), (1, 1), axis=(0, 1))  # class edges inside chroma blocks
    yuv = cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420)
    ref = cv2.cvtColor(overlay_bgr(cv2.cvtColor(yuv, cv2.COLOR_YUV2BGR_I420), labels, 0.5),
                       cv2.COLOR_BGR2YUV_I420).astype(np.int16)
    got = render_i420(yuv.copy(), 360, labels, RenderOptions(alpha=0.5, hud=False)).astype(np.int16)
    y_diff, c_diff = np.abs(got[:360] - ref[:360]), np.abs(got[360:] - ref[360:])
    assert y_diff.max() <= 4 and (y_diff <= 1).mean() > 0.999  # luma: conversion rounding only
    # chroma: a 2x2 block on a class edge takes its top-left pixel's class instead of a mix
    assert (c_diff <= 2).mean() > 0.97
    untouched = (labels == 0).reshape(180, 2, 320, 2).all(axis=(1, 3))  # 2x2 blocks of background only
    assert np.array_equal(got[:360][labels == 0], yuv[:360][labels == 0])  # background keeps its pixels
    assert np.array_equal(got[360:].reshape(2, 180, 320)[:, untouched], yuv[360:].reshape(2, 180, 320)[:, untouched])


def test_render_i420_draws_the_hud_in_its_corner_only(faces_root):
    frame = _frame(faces_root)
    yuv = cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420)
    lines = ["123.4 FPS  20 ms", "null  full 512px"]
    got = render_i420(yuv.copy(), 360, np.zeros((360, 640), np.uint8), RenderOptions(hud=True), lines)
    ref_bgr = cv2.cvtColor(yuv, cv2.COLOR_YUV2BGR_I420)
    draw_hud(ref_bgr, lines)
    back = cv2.cvtColor(got, cv2.COLOR_YUV2BGR_I420).astype(np.int16)
    assert np.abs(back - ref_bgr).mean() < 0.5  # the same HUD as on the BGR path
    rows = np.flatnonzero((got[:360] != yuv[:360]).any(axis=1))
    cols = np.flatnonzero((got[:360] != yuv[:360]).any(axis=0))
    assert rows.max() < 60 and cols.max() < 0.5 * 640  # nothing drawn outside its corner


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
