"""run_pipeline with in-memory sources and sinks and the null (fake) backend: order, batching
across sources, each source's labels reaching its own outputs, errors, Ctrl-C, frame counts."""

from __future__ import annotations

import io
import sys
import threading
import time

import cv2
import numpy as np
import pytest
from PIL import Image

from msf.errors import MsfError
from msf.frameops.overlay import overlay
from msf.runtime import sinks
from msf.runtime.null_backend import NullBackend, face_pattern
from msf.runtime.pipeline import FrameItem, Job, PipelineConfig, live_config, run_pipeline
from msf.runtime.render import RenderOptions, render
from msf.runtime.segmenter import Segmenter
from msf.runtime.sinks import MaskSink, VideoSink
from msf.runtime.sources import Source, open_source
from msf.runtime.stats import PipelineStats

SIZE = 32  # model input of the fake backends: small, the pipeline does not care


class MemorySource(Source):
    """Frames from a list (a copy per read, as a decoder gives); ``fail_at``: raise at that frame."""

    def __init__(self, frames: list[np.ndarray], name: str = "mem", fail_at: int | None = None,
                 barrier: threading.Barrier | None = None) -> None:
        super().__init__(name, 25.0, len(frames))
        self.frames, self.i, self.fail_at, self.barrier = frames, 0, fail_at, barrier

    def _read(self) -> np.ndarray | None:
        if self.barrier is not None and self.i < 3:
            self.barrier.wait(timeout=10)  # sources in lock-step: their frames interleave in the queue
        if self.fail_at is not None and self.i == self.fail_at:
            raise MsfError(f"source {self.name} broke")
        if self.i >= len(self.frames):
            return None
        self.i += 1
        return self.frames[self.i - 1].copy()


class MemoryVideo:
    """A sink that collects the rendered frames, like a VideoSink would encode them."""

    codec = "memory"
    label = "memory"
    wants = frozenset({"rendered"})
    formats = frozenset({"bgr"})
    main_thread = False

    def __init__(self) -> None:
        self.frames: list[np.ndarray] = []

    def prepare(self, frame) -> None:
        pass

    def send(self, frame) -> bool:
        self.frames.append(frame.rendered.copy())
        return True

    def close(self, keep: bool = True) -> None:
        pass


class EchoBackend(NullBackend):
    """Labels = the crop's blue channel: a backend whose output depends on its input. Records the
    value of every crop of every batch; ``slow_first`` s on the first call; raises at call ``fail_at``."""

    def __init__(self, slow_first: float = 0.0, fail_at: int | None = None) -> None:
        super().__init__(SIZE)
        self.calls: list[list[int]] = []
        self.slow_first, self.fail_at = slow_first, fail_at

    def infer(self, batch: np.ndarray) -> np.ndarray:
        if self.fail_at is not None and len(self.calls) == self.fail_at:
            raise RuntimeError("boom")
        if not self.calls and self.slow_first:
            time.sleep(self.slow_first)
        self.calls.append([int(b[0, 0, 0]) for b in batch])
        return np.ascontiguousarray(batch[..., 0])


def seg_with(backend: NullBackend, mode: str = "full") -> Segmenter:
    seg = Segmenter(backend="null", mode=mode, size=backend.size)
    seg.backend = backend
    return seg


def value(stream: int, index: int) -> int:
    return 1 + 40 * stream + index  # distinct for every (stream, frame) below 6 streams × 40 frames


def const_frames(stream: int, n: int, side: int = 48) -> list[np.ndarray]:
    return [np.full((side, side, 3), value(stream, i), np.uint8) for i in range(n)]


PLAIN = RenderOptions(alpha=0.0, hud=False)  # the rendered frame is the input frame itself


def test_each_source_reaches_its_own_outputs_in_order_batched_across_sources(tmp_path):
    lengths = [5, 7, 3]
    backend = EchoBackend(slow_first=0.3)  # the readers queue up meanwhile: later batches mix sources
    seg = seg_with(backend)
    barrier = threading.Barrier(len(lengths))
    jobs = [Job(MemorySource(const_frames(j, n), f"s{j}", barrier=barrier), [MemoryVideo(),
                MaskSink(tmp_path, f"s{j}")]) for j, n in enumerate(lengths)]
    stats = PipelineStats()
    seen: list[int] = []
    run_pipeline(seg, jobs, PipelineConfig(batch=4, warmup=False, render=PLAIN), stats, on_frame=seen.append)
    for j, (job, n) in enumerate(zip(jobs, lengths)):
        assert job.written == n and len(job.sinks[0].frames) == n
        for i, out in enumerate(job.sinks[0].frames):  # in order, and this source's own frames
            assert np.array_equal(out, np.full((48, 48, 3), value(j, i), np.uint8)), (j, i)
        for i in range(n):
            with Image.open(tmp_path / f"s{j}_{i:06d}.png") as im:
                assert im.mode == "P"
                assert np.array_equal(np.array(im), np.full((48, 48), value(j, i), np.uint8)), (j, i)
    assert stats.frames == sum(lengths) and sorted(seen) == sorted(j for j, n in enumerate(lengths) for _ in range(n))
    batches = backend.calls
    assert sorted(v for b in batches for v in b) == sorted(value(j, i) for j, n in enumerate(lengths) for i in range(n))
    assert max(len(b) for b in batches) == 4
    assert any(len({(v - 1) // 40 for v in b}) > 1 for b in batches)  # one batch held several sources
    for j in range(len(lengths)):  # each source's frames reached the backend in order
        mine = [v for b in batches for v in b if (v - 1) // 40 == j]
        assert mine == sorted(mine)


def test_masks_written_equal_the_backends_labels_full_and_letterboxed(tmp_path):
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (90, 160, 3), dtype=np.uint8) for _ in range(4)]
    seg = Segmenter(backend="null", mode="full", size=64)
    job = Job(MemorySource(frames, "v"), [MaskSink(tmp_path, "v")])
    run_pipeline(seg, [job], PipelineConfig(batch=3), PipelineStats())
    for i, f in enumerate(frames):
        with Image.open(tmp_path / f"v_{i:06d}.png") as im:
            written = np.array(im)
        expected = seg.predict(f)
        assert expected.any() and np.array_equal(written, expected)


def test_frame_counts_max_frames_and_stats(tmp_path):
    seg = seg_with(EchoBackend())
    jobs = [Job(MemorySource(const_frames(j, 9)), [MemoryVideo()]) for j in range(2)]
    stats = PipelineStats()
    run_pipeline(seg, jobs, PipelineConfig(batch=2, max_frames=6), stats)
    assert [j.written for j in jobs] == [6, 6] and [len(j.sinks[0].frames) for j in jobs] == [6, 6]
    s = stats.summary()
    assert s["frames"] == 12 and s["fps"] > 0
    for stage in ("read", "preprocess", "render", "write", "end_to_end"):
        assert s["stages"][stage]["count"] == 12
        assert s["stages"][stage]["p50_ms"] <= s["stages"][stage]["p99_ms"]
    assert s["stages"]["infer"]["count"] == len(stats.batches) and sum(stats.batches) == 12
    assert s["stages"]["end_to_end"]["p50_ms"] >= s["stages"]["write"]["p50_ms"]


def test_warm_up_runs_before_the_clock_and_is_reported_apart():
    backend = EchoBackend(slow_first=0.4)
    stats = PipelineStats()
    run_pipeline(seg_with(backend), [Job(MemorySource(const_frames(0, 3)), [MemoryVideo()])],
                 PipelineConfig(batch=2), stats)
    s = stats.summary()
    assert s["warmup_ms"] >= 400
    assert s["stages"]["infer"]["max_ms"] < 300  # the slow first call was the warm-up, not a frame
    assert backend.calls[0] == [0] and backend.calls[1] == [0, 0]  # blank batches of 1 and 2 first


@pytest.mark.parametrize("where", ["backend", "source", "sink"])
def test_errors_stop_everything_and_surface_as_one_error(where):
    backend = EchoBackend(fail_at=2 if where == "backend" else None)
    frames = const_frames(0, 30)
    source = MemorySource(frames, "bad", fail_at=5 if where == "source" else None)
    video = MemoryVideo()
    if where == "sink":
        def send(frame) -> bool:
            if len(video.frames) == 4:
                raise OSError("disk full")
            video.frames.append(frame.rendered)
            return True

        video.send = send
    others = Job(MemorySource(const_frames(1, 30)), [MemoryVideo()])
    expected = {"backend": "pipeline failed: RuntimeError: boom", "source": "source bad broke",
                "sink": "pipeline failed: OSError: disk full"}[where]
    before = set(threading.enumerate())
    t0 = time.perf_counter()
    with pytest.raises(MsfError, match=expected):
        run_pipeline(seg_with(backend), [Job(source, [video]), others], PipelineConfig(batch=2, warmup=False),
                     PipelineStats())
    assert time.perf_counter() - t0 < 10
    assert not [t for t in threading.enumerate() if t not in before and t.is_alive()]  # no thread left behind


def test_ctrl_c_stops_cleanly_and_every_written_frame_is_counted():
    n = 200
    job = Job(MemorySource(const_frames(0, n, side=64)), [MemoryVideo()])
    stats = PipelineStats()
    seen = []

    def on_frame(j: int) -> None:
        seen.append(j)
        if len(seen) == 5:
            raise KeyboardInterrupt  # what Ctrl-C raises in the calling thread

    before = set(threading.enumerate())
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(seg_with(EchoBackend()), [job], PipelineConfig(batch=2, render=PLAIN), stats, on_frame)
    assert 5 <= job.written < n
    assert stats.frames == job.written == len(job.sinks[0].frames)  # nothing written uncounted
    for i, f in enumerate(job.sinks[0].frames):
        assert f[0, 0, 0] == value(0, i)
    assert not [t for t in threading.enumerate() if t not in before and t.is_alive()]


def test_null_backend_labels_have_the_shape_and_look_of_a_face():
    b = NullBackend(size=128)
    out = b.labels(np.zeros((3, 128, 128, 3), np.uint8))
    assert out.shape == (3, 128, 128) and out.dtype == np.uint8
    assert b.contract.input.dtype == "uint8" and b.contract.input.layout == "NHWC" and b.contract.input.color == "bgr"
    counts = np.bincount(face_pattern(512).ravel(), minlength=19)
    assert counts[1] > 0.2 * 512 * 512 and counts[2] > 0 and counts[0] > 0  # skin, nose, background


def test_segmenter_backend_null_through_create_backend():
    seg = Segmenter(backend="null", mode="full", size=256)
    labels = seg.predict(np.zeros((100, 200, 3), np.uint8))
    assert labels.shape == (100, 200) and labels.any()
    assert seg.describe().startswith("null")
    # the default mode is msf-video's: auto labels nothing on a frame without a face
    assert not Segmenter(backend="null", size=256).predict(np.zeros((100, 200, 3), np.uint8)).any()


def test_label_png_is_lossless_fast_and_the_usual_palette_file(tmp_path):
    from msf.visualize import label_png_bytes, save_label_png

    labels = np.random.default_rng(1).integers(0, 19, (37, 53), dtype=np.uint8)
    png = label_png_bytes(labels)
    save_label_png(tmp_path / "ref.png", labels)
    with Image.open(io.BytesIO(png)) as im, Image.open(tmp_path / "ref.png") as ref:
        assert im.mode == "P" and np.array_equal(np.array(im), labels)
        assert im.getpalette() == ref.getpalette()


def test_render_in_place_draws_the_overlay_on_the_frame_itself():
    rng = np.random.default_rng(2)
    frame = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    labels = np.zeros((60, 80), np.uint8)
    labels[10:30, 20:50] = rng.integers(0, 19, (20, 30))
    out = overlay(frame, labels, 0.4)  # the rule itself: tests/test_frameops.py
    inplace = frame.copy()
    res = render(inplace, labels, RenderOptions(alpha=0.4, hud=False), in_place=True)
    assert res is inplace and np.array_equal(res, out)


def _decoded_frames(path) -> int:
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


def test_hardware_encoders_fall_back_when_they_do_not_open(tmp_path, monkeypatch):
    pytest.importorskip("av")
    # Listed-but-unusable encoders (no GPU, no V4L2 device here) and one FFmpeg does not know.
    monkeypatch.setattr(sinks, "HW_ENCODERS", ("h264_nvenc", "h264_v4l2m2m", "no_such_encoder"))
    sink = VideoSink(tmp_path / "o.mp4", 25, (64, 48), "h264", "ultrafast")
    assert sink.codec == "H.264 (libx264 ultrafast via PyAV)"
    for i in range(5):
        sink.write(np.full((48, 64, 3), 40 * i, np.uint8))
    sink.close()
    assert _decoded_frames(tmp_path / "o.mp4") == 5
    assert not list(tmp_path.glob(".o.*"))  # the failed attempts left no temporary file


def test_a_hardware_encoder_that_opens_is_used(tmp_path, monkeypatch):
    pytest.importorskip("av")
    opened = []

    def fake_open(self, name, fps, w, h, preset, live):  # noqa: ANN001
        opened.append(name)
        return ("av", "container", "stream") if name == "h264_v4l2m2m" else None

    monkeypatch.setattr(VideoSink, "_open_av", fake_open)
    sink = VideoSink(tmp_path / "o.mp4", 25, (64, 48))
    assert opened == ["h264_nvenc", "h264_v4l2m2m"] and sink.codec == "H.264 (h264_v4l2m2m via PyAV)"
    sink.tmp.unlink()
    monkeypatch.setattr(VideoSink, "_open_av", lambda self, *a: None)  # no H.264 at all: mp4v
    sink = VideoSink(tmp_path / "p.mp4", 25, (64, 48))
    assert sink.codec.startswith("MPEG-4 Part 2")
    sink.write(np.zeros((48, 64, 3), np.uint8))
    sink.close()
    assert _decoded_frames(tmp_path / "p.mp4") == 1


@pytest.mark.parametrize("w, h", [(64, 48), (98, 66)])  # 98: chroma rows of 49 pixels, padded in PyAV's planes
def test_yuv420_frame_equals_pyav_from_ndarray(w, h):
    av = pytest.importorskip("av")
    frame = np.random.default_rng(2).integers(0, 256, (h, w, 3), dtype=np.uint8)
    ref = av.VideoFrame.from_ndarray(cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420), format="yuv420p")
    got = sinks.yuv420_frame(av, frame)
    assert (got.width, got.height, got.format.name) == (w, h, "yuv420p")
    assert np.array_equal(got.to_ndarray(), ref.to_ndarray())


def test_encoder_preset_is_checked_and_changes_the_encoding(tmp_path):
    pytest.importorskip("av")
    with pytest.raises(MsfError, match="unknown encoder preset"):
        VideoSink(tmp_path / "x.mp4", 25, (64, 48), preset="warp9")
    rng = np.random.default_rng(3)
    frames = [cv2.GaussianBlur(rng.integers(0, 256, (96, 128, 3), dtype=np.uint8), (9, 9), 3) for _ in range(12)]
    sizes = {}
    for preset in ("ultrafast", "medium"):
        sink = VideoSink(tmp_path / f"{preset}.mp4", 25, (128, 96), preset=preset, hardware=False)
        for f in frames:
            sink.write(f)
        sink.close()
        sizes[preset] = (tmp_path / f"{preset}.mp4").stat().st_size
        assert _decoded_frames(tmp_path / f"{preset}.mp4") == 12
    assert sizes["ultrafast"] != sizes["medium"]


def test_file_played_live_is_paced_and_reports_latency(tmp_path):
    path = tmp_path / "c.avi"
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 50, (64, 48))
    for i in range(20):
        vw.write(np.full((48, 64, 3), 10 * i, np.uint8))
    vw.release()
    src = open_source(str(path), live=True)
    assert src.live and src.fps == 50
    stats = PipelineStats()
    job = Job(src, [MemoryVideo()])
    t0 = time.perf_counter()
    try:
        run_pipeline(Segmenter(backend="null", size=SIZE), [job], PipelineConfig(batch=1, queue_size=2), stats)
    finally:
        src.close()
    wall = time.perf_counter() - t0
    s = stats.summary()
    assert wall >= 19 / 50 * 0.9  # frames arrive at the clip's frame rate, not as fast as decoding
    assert s["frames"] + s["dropped"] == 20 and s["frames"] == job.written
    assert s["stages"]["end_to_end"]["count"] == s["frames"]


def test_frame_item_is_a_dataclass():
    item = FrameItem(stream=1, index=2, frame=np.zeros((2, 2, 3), np.uint8), t_capture=0.0, places=[], crops=[])
    assert item.labels is None and item.stream == 1 and item.index == 2


# ---- the frame-on-device path (its rules one by one: tests/test_frameops.py), on CPU torch ----------

def _face_frames(faces_root, n: int = 3) -> list[np.ndarray]:
    from msf.data import list_samples

    files = list_samples(faces_root / "unlabeled", require_masks=False)[:n]
    out = []
    for k, s in enumerate(files):
        frame = np.full((720, 1280, 3), 60, np.uint8)
        side = 380 + 40 * k
        x, y = 150 + 250 * k, (720 - side) // 2
        frame[y:y + side, x:x + side] = cv2.resize(cv2.imread(str(s.image)), (side, side),
                                                   interpolation=cv2.INTER_AREA)
        out.append(frame)
    return out


def test_graph_chunks_reuse_the_captured_batch_sizes():
    from msf.runtime.backends import graph_chunks

    assert graph_chunks(5, None) == [(0, 5)]  # nothing captured yet: one graph for the whole batch
    assert graph_chunks(3, 8) == [(0, 3)]
    assert graph_chunks(11, 4) == [(0, 4), (4, 8), (8, 11)]  # 11 faces with graphs up to 4: no new size above 4
    assert graph_chunks(0, 4) == []


def test_pytorch_device_inference_matches_the_numpy_path(shipped_model):
    """``infer_on_device`` (what the frame-on-device path calls) computes what ``infer`` returns;
    the backend declares the ability (and ONNX Runtime does not)."""
    torch = pytest.importorskip("torch")
    from msf.runtime.backends import create_backend

    b = create_backend(None, "pytorch", size=64)
    assert b.device_frames and b.frames_device == "cpu" and b.float_dtype == torch.float32
    assert not create_backend(None, "onnxruntime", size=64).device_frames
    x = np.random.default_rng(7).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    got = b.infer_on_device(torch.from_numpy(x))
    assert isinstance(got, torch.Tensor) and np.array_equal(got.numpy(), b.infer(x))


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["full", "face"])
def test_device_path_labels_agree_with_the_cpu_path_on_real_faces(faces_root, shipped_model, tmp_path, mode):
    """The whole GPU frame path (run here on CPU torch) against the OpenCV path, through
    run_pipeline, with the PyTorch backend on real faces: ≥ 99.9 % of pixels get the same label."""
    pytest.importorskip("torch")
    frames = _face_frames(faces_root, 2)
    results = {}
    for device_frames in (False, True):
        seg = Segmenter(backend="pytorch", mode=mode, size=256)  # fresh face tracks for each run
        job = Job(MemorySource(frames, "f"), [MemoryVideo(), MaskSink(tmp_path / str(device_frames), "f")])
        run_pipeline(seg, [job], PipelineConfig(batch=2, device_frames=device_frames,
                                                render=RenderOptions(hud=False)), PipelineStats())
        masks = [np.array(Image.open(tmp_path / str(device_frames) / f"f_{i:06d}.png")) for i in range(len(frames))]
        results[device_frames] = (masks, job.sinks[0].frames)
    for cpu, dev in zip(results[False][0], results[True][0]):
        assert (cpu > 0).mean() > 0.05  # a face was parsed
        assert (cpu == dev).mean() >= 0.999
    for cpu, dev in zip(results[False][1], results[True][1]):
        assert (np.abs(cpu.astype(np.int16) - dev) > 1).mean() < 0.002  # the same overlay


def test_msf_video_backend_null_cli(tmp_path):
    import json
    import subprocess
    import sys

    clip = tmp_path / "c.avi"
    vw = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 25, (160, 90))
    frames = [np.full((90, 160, 3), 20 * i, np.uint8) for i in range(7)]
    for f in frames:
        vw.write(f)
    vw.release()
    out, stats = tmp_path / "o.mp4", tmp_path / "s.json"
    r = subprocess.run([sys.executable, "-m", "msf.cli.video", str(clip), "--backend", "null", "--mode", "full",
                        "--size", "64", "--encoder-preset", "ultrafast", "-o", str(out), "--save-masks",
                        str(tmp_path / "m"), "--stats", str(stats), "--no-progress"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    s = json.loads(stats.read_text())
    assert s["frames"] == 7 and s["backend"].startswith("null") and s["warmup_ms"] is not None
    assert s["sources"][0]["codec"] in ("H.264 (libx264 ultrafast via PyAV)", "MPEG-4 Part 2 (mp4v via OpenCV)")
    assert _decoded_frames(out) == 7
    expected = Segmenter(backend="null", mode="full", size=64).predict(frames[0])
    with Image.open(tmp_path / "m" / "c_000000.png") as im:
        assert np.array_equal(np.array(im), expected)


@pytest.mark.parametrize("live", [False, True])
def test_live_sources_capture_only_when_inference_has_room(live):
    """A live frame is captured when there is room for it (so it is fresh when inferred); a file
    reads ahead to keep every stage busy."""
    source = MemorySource(const_frames(0, 12), "cam")
    source.live = live
    read_ahead = []

    class Slow(EchoBackend):
        def infer(self, batch: np.ndarray) -> np.ndarray:
            v = int(batch[0, 0, 0, 0])
            if v:  # not the warm-up (blank frames)
                read_ahead.append(source.i - v)  # frames read beyond the one inferred (frame v - 1)
                time.sleep(0.03)
            return super().infer(batch)

    cfg = live_config(1, batch=4) if live else PipelineConfig(batch=1, queue_size=4)
    assert not live or (cfg.batch == 1 and cfg.queue_size == 1)
    job = Job(source, [MemoryVideo()])
    run_pipeline(seg_with(Slow()), [job], cfg, PipelineStats())
    assert job.written == 12
    if live:
        assert max(read_ahead) <= 1  # the frame in inference and at most one waiting
    else:
        assert max(read_ahead) > 2


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice values are a Linux feature")
def test_file_helpers_run_nicer_and_live_sources_do_not():
    import os

    from msf.runtime.pipeline import lower_thread_priority

    base = os.getpriority(os.PRIO_PROCESS, 0)

    class NiceSource(MemorySource):
        seen: list[int] = []

        def _read(self):  # noqa: ANN202
            self.seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
            return super()._read()

    frames = [np.full((24, 32, 3), 10 * i, np.uint8) for i in range(3)]
    # (the reader's face detection feeds inference: in face mode it keeps normal priority)
    for cfg, live, mode, want in ((PipelineConfig(helper_nice=5), False, "full", min(19, base + 5)),
                                  (PipelineConfig(helper_nice=5), False, "face", base),
                                  (PipelineConfig(helper_nice=0), False, "full", base),
                                  (live_config(1), True, "full", base)):
        src = NiceSource(frames)
        src.live, src.seen = live, []
        job = Job(src, [MemoryVideo()])
        run_pipeline(seg_with(NullBackend(SIZE), mode), [job], cfg, PipelineStats())
        assert job.written == 3 and set(src.seen) == {want}, (cfg, live, mode)
    assert os.getpriority(os.PRIO_PROCESS, 0) == base  # the calling thread is never reniced
    done: list[int] = []
    t = threading.Thread(target=lambda: (lower_thread_priority(3), done.append(os.getpriority(
        os.PRIO_PROCESS, threading.get_native_id()))))
    t.start()
    t.join()
    assert done == [min(19, base + 3)]


class LogitsEcho(NullBackend):
    """Logits from the crop: class 1 scores the blue channel / 64, class 0 scores 2 (so smoothing
    over frames of changing brightness changes the labels)."""

    def __init__(self) -> None:
        super().__init__(SIZE)
        self.output_kind = "logits"

    def infer(self, batch: np.ndarray) -> np.ndarray:
        blue = batch[..., 0].astype(np.float32) / 64
        return np.stack([np.full_like(blue, 2.0), blue], axis=1)


def test_smoothing_keys_travel_with_the_frames_across_sources():
    """Two sources read ahead of inference, batched together: each frame's smoothing keys come
    with it (no state shared between the reader and inference threads), so the labels equal
    each source smoothed alone, frame by frame."""
    values = [[10, 250, 250, 10, 10, 250], [250, 10, 10, 10, 250, 250]]

    def frames(vals):
        return [np.full((48, 48, 3), v, np.uint8) for v in vals]

    def smoothed_seg():
        seg = Segmenter(backend="null", mode="full", size=SIZE)
        seg.backend = LogitsEcho()
        seg.smooth = seg.parser.smooth = 0.7
        return seg

    seg = smoothed_seg()
    jobs = [Job(MemorySource(frames(v), f"s{j}"), [MemoryVideo()]) for j, v in enumerate(values)]
    run_pipeline(seg, jobs, PipelineConfig(batch=4, warmup=False, render=RenderOptions(alpha=1.0, hud=False)),
                 PipelineStats())
    for j, v in enumerate(values):
        alone = smoothed_seg()
        expect = [alone.predict(f) for f in frames(v)]
        red = np.array([0, 0, 204], np.uint8)  # class 1 (skin) in BGR, drawn at alpha 1
        got = [(f == red).all(axis=-1).astype(np.uint8) for f in jobs[j].sinks[0].frames]
        assert [int(e.max()) for e in expect] == [int(g.max()) for g in got], j
    assert len({int(e.max()) for e in expect}) == 2  # smoothing held some frames back: the test can fail
