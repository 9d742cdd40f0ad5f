"""The parts of ``--ray`` that need no Ray (issue 24): done-markers (input, model and settings
hashes; outputs checked by size), a killed attempt's temporary files swept, one video unit
through the pipeline (skipped when done, a bad file failed with its reason), the image stages
(decode, predict, write) on batches, and the flags without --ray."""

from __future__ import annotations

import json
import os

import cv2
import numpy as np
import pytest

from msf.errors import UsageError, run_cli
from msf.paths import REPO_DIR
from msf.runtime.distributed import markers
from msf.runtime.distributed.image_stages import TODO, Predictor, decode_batch, write_batch
from msf.runtime.distributed.units import DONE, FAILED, SKIPPED, ImageJob, VideoJob, VideoUnit, image_row
from msf.runtime.distributed.video_unit import process_video


def _clip(path, n=6, w=96, h=64):
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (w, h))
    rng = np.random.default_rng(0)
    for _ in range(n):
        vw.write(rng.integers(0, 256, (h, w, 3), np.uint8))
    vw.release()
    return path


def test_marker_matches_input_model_settings_and_outputs(tmp_path):
    out = tmp_path / "a.png"
    out.write_bytes(b"x" * 10)
    m = markers.marker_path(tmp_path, "a")
    assert m == tmp_path / ".msf-done" / "a.json"
    assert not markers.is_done(m, "in", "model", {"s": 1})  # no marker yet
    markers.write_marker(m, "in", "model", {"s": 1}, [out], frames=3)
    assert markers.is_done(m, "in", "model", {"s": 1})
    rec = json.loads(m.read_text())
    assert rec["outputs"] == [{"path": "../a.png", "bytes": 10}] and rec["frames"] == 3
    assert not markers.is_done(m, "other input", "model", {"s": 1})
    assert not markers.is_done(m, "in", "retrained model", {"s": 1})
    assert not markers.is_done(m, "in", "model", {"s": 2})
    out.write_bytes(b"x" * 9)  # an output changed (or half-copied) since
    assert not markers.is_done(m, "in", "model", {"s": 1})
    out.unlink()
    assert not markers.is_done(m, "in", "model", {"s": 1})
    m.write_text("{not json")
    assert markers.read_marker(m) is None and not markers.is_done(m, "in", "model", {"s": 1})


def test_model_digest_follows_the_file(tmp_path):
    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    a.write_bytes(b"weights 1")
    b.write_bytes(b"weights 2")
    assert markers.model_digest(a) != markers.model_digest(b)
    assert markers.model_digest(a) == markers.model_digest(a)
    assert markers.model_digest(None) == markers.model_digest(REPO_DIR / "msf" / "weights" / "microsegformer.pt")
    assert markers.model_digest(a, "null") == markers.model_digest(b, "null")


def test_sweep_removes_only_that_units_temporaries(tmp_path):
    from msf.atomic import temp_beside

    mine = [temp_beside(tmp_path / f"clip_{i:06d}.png") for i in range(3)]
    others = [temp_beside(tmp_path / "clip_000001_000000.png"), temp_beside(tmp_path / "clipx_000000.png")]
    keep = tmp_path / "clip_000000.png"
    keep.write_bytes(b"done")
    from msf.runtime.distributed.video_unit import mask_name_regex

    n = markers.sweep_temps(tmp_path, markers.temp_pattern(mask_name_regex("clip"), ".png"))
    assert n == 3 and not any(os.path.exists(p) for p in mine)
    assert all(os.path.exists(p) for p in others) and keep.exists()


def _video_job(**kw) -> VideoJob:
    return VideoJob(dict(backend="null", mode="full"), dict(hud=False),
                    dict(prefer="mp4v", preset="veryfast", hardware=False), model_sha256="m",
                    settings={"k": 1}, **kw)


def test_video_unit_runs_once_then_is_skipped_and_a_bad_file_fails_alone(tmp_path):
    clip = _clip(tmp_path / "c.mp4")
    out, masks = tmp_path / "out", tmp_path / "masks"
    out.mkdir()
    unit = VideoUnit(str(clip), "c.mp4", "c", str(out / "c.mp4"), str(masks),
                     str(markers.marker_path(out, "c.mp4")))
    from msf.atomic import temp_beside

    masks.mkdir()
    left = [temp_beside(out / "c.mp4", ".mp4"), temp_beside(masks / "c_000002.png")]  # a killed attempt's
    r = process_video(unit, _video_job())
    assert r.status == DONE and r.frames == 6, r
    assert not any(os.path.exists(p) for p in left)
    assert sorted(p.name for p in masks.iterdir()) == [f"c_{i:06d}.png" for i in range(6)]
    assert sorted(p.name for p in out.iterdir()) == [".msf-done", "c.mp4"]
    assert process_video(unit, _video_job()).status == SKIPPED
    assert process_video(unit, _video_job(resume=False)).status == DONE
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 5000)
    r = process_video(VideoUnit(str(bad), "bad.mp4", "bad", str(out / "bad.mp4"), None,
                                str(markers.marker_path(out, "bad.mp4"))), _video_job())
    assert r.status == FAILED and "cannot open video" in r.reason and not (out / "bad.mp4").exists()


class _Echo(Predictor):
    """Labels = the image's first channel mod 19."""

    keep_image = True

    def labels(self, images):
        return [(im[..., 0] % 19).astype(np.uint8) for im in images]


def test_image_stages_write_skip_and_fail_per_image(tmp_path):
    imgs, out = tmp_path / "imgs", tmp_path / "out"
    imgs.mkdir()
    for i in range(3):
        cv2.imwrite(str(imgs / f"{i}.png"), np.full((8, 12, 3), 40 * i + 1, np.uint8))
    (imgs / "bad.png").write_bytes(b"not an image")
    rows = [image_row(str(imgs / f"{n}.png"), n, str(out / f"{n}.png"), str(out / f"{n}.jpg"),
                      str(markers.marker_path(out, n))) for n in ("0", "1", "2", "bad")]
    job = ImageJob("bgr", "test", {}, batch=4, model_sha256="m", settings={})
    batch = {k: np.array([r[k] for r in rows]) for k in rows[0]}
    dec = decode_batch(batch, job)
    assert list(dec["status"]) == [TODO, TODO, TODO, FAILED] and "cannot decode" in dec["reason"][3]
    res = write_batch(_Echo()(dec), job)
    assert list(res["status"]) == [DONE, DONE, DONE, FAILED] and set(res) == {"input", "label", "status", "reason"}
    from msf.data import read_mask

    assert (read_mask(out / "2.png") == 81 % 19).all() and (out / "2.jpg").is_file()
    again = decode_batch(batch, job)
    assert list(again["status"]) == [SKIPPED, SKIPPED, SKIPPED, FAILED]


@pytest.mark.parametrize("prog, module, args", [("msf-video", "msf.cli.video", ["x.mp4"]),
                                                ("msf-eval", "msf.cli.eval", [])])
def test_ray_flags_need_ray(prog, module, args, capsys):
    import importlib

    main = importlib.import_module(module).main
    rc = run_cli(prog, main, [*args, "--workers", "2"])
    err = capsys.readouterr().err
    assert rc == 2 and "--workers needs --ray" in err and err.count("\n") == 1
    assert UsageError.exit_code == 2


def test_a_truncated_video_stays_partial_when_skipped(tmp_path):
    """A file that ends before its container says is done as far as it goes (marker written), and
    a rerun still reports it partial (exit 3 unless --allow-partial), without redoing it."""
    av = pytest.importorskip("av")
    whole = tmp_path / "whole.mp4"
    with av.open(str(whole), "w", options={"movflags": "faststart"}) as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 96, 64, "yuv420p"
        s.options = {"preset": "ultrafast", "g": "10"}
        rng = np.random.default_rng(0)
        for _ in range(60):
            for p in s.encode(av.VideoFrame.from_ndarray(rng.integers(0, 256, (64, 96, 3), np.uint8),
                                                         format="bgr24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    cut = tmp_path / "cut.mp4"
    data = whole.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    unit = VideoUnit(str(cut), "cut.mp4", "cut", str(tmp_path / "o.mp4"), None,
                     str(markers.marker_path(tmp_path, "o.mp4")))
    first = process_video(unit, _video_job())
    assert first.status == "partial" and "of the 60 frames" in first.reason and 0 < first.frames < 60, first
    again = process_video(unit, _video_job())
    assert again.status == "partial" and again.reason.endswith("done before, skipped")


def test_without_ray_flag_ray_is_not_imported():
    import subprocess
    import sys

    code = ("import sys; from msf.cli import video, eval as ev; video.build_parser(); ev.build_parser(); "
            "from msf.errors import run_cli; run_cli('msf-video', video.main, ['missing.mp4', '--backend', 'null']); "
            "print('ray' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.stdout.strip() == "False", r.stderr


def test_missing_ray_is_one_line(monkeypatch, capsys, tmp_path):
    import importlib.util

    from msf.cli.video import main

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a))
    rc = run_cli("msf-video", main, [str(_clip(tmp_path / "c.mp4")), "--ray"])
    err = capsys.readouterr().err
    assert rc == 1 and err == "msf-video: error: --ray needs Ray: pip install 'msf[ray]' on this machine and on " \
                               "every node of the cluster\n"
