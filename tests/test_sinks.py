"""Outputs from URIs (``-o``): parsing, the viewer's address rule (loopback unless named), several
outputs chained in one run, clear errors. No browser needed (tests/test_viewer.py has one)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from msf.errors import MsfError
from msf.runtime.sinks import MaskSink, OutputSpec, VideoSink, WindowSink, open_sink, parse_output, video_paths
from msf.runtime.viewer import ViewerSink


@pytest.mark.parametrize("uri, spec", [
    ("out.mp4", OutputSpec("video", "out.mp4")),
    ("outs/", OutputSpec("folder", "outs/")),
    ("masks:m", OutputSpec("masks", "m")),
    ("window", OutputSpec("window", "msf")),
    ("window:cam", OutputSpec("window", "cam")),
    ("http://:8080", OutputSpec("viewer", "127.0.0.1:8080")),
    ("http://localhost:9000/", OutputSpec("viewer", "127.0.0.1:9000")),
    ("http://", OutputSpec("viewer", "127.0.0.1:8080")),
    ("http://0.0.0.0:8080", OutputSpec("viewer", "0.0.0.0:8080")),
    ("HTTP://192.168.1.5:81", OutputSpec("viewer", "192.168.1.5:81")),
])
def test_output_uris(uri, spec):
    assert parse_output(uri) == spec


def test_a_file_name_with_several_sources_is_a_folder():
    spec = parse_output("out.mp4", sources=2)
    assert spec.kind == "folder"
    assert video_paths(spec, ["a", "a"]) == [Path("out.mp4/a_0.mp4"), Path("out.mp4/a_1.mp4")]


@pytest.mark.parametrize("uri, msg", [
    ("rtsp://cam/out", "unsupported output"),
    ("webrtc://x", "unsupported output"),
    ("http://:99999", "port must be"),
    ("http://:8080/view", "takes no path"),
    ("masks:", "needs a folder"),
])
def test_bad_output_uris_fail_clearly(uri, msg):
    with pytest.raises(MsfError, match=msg):
        parse_output(uri)


def test_the_viewer_listens_on_loopback_unless_told_otherwise():
    v = ViewerSink(parse_output("http://:0").target, ["a"])
    try:
        assert v.host == "127.0.0.1" and v.port > 0 and v.url == f"http://127.0.0.1:{v.port}/"
        with urllib.request.urlopen(v.url + "stats", timeout=5) as r:
            stats = json.load(r)
        assert stats["streams"][0]["name"] == "a" and stats["streams"][0]["frames"] == 0
        assert len(stats["legend"]) == 18
        with pytest.raises(urllib.error.HTTPError):  # no frame yet
            urllib.request.urlopen(v.url + "frame/0.jpg", timeout=5)
    finally:
        v.close()
    v = ViewerSink("0.0.0.0:0", ["a"])  # named: every interface
    try:
        assert v.host == "0.0.0.0"
    finally:
        v.close()


def test_a_taken_port_is_one_clear_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(MsfError, match=f"cannot listen on 127.0.0.1:{port}"):
            ViewerSink(f"127.0.0.1:{port}", ["a"])


def test_open_sink_kinds(tmp_path):
    sink = open_sink(str(tmp_path / "o.mp4"), fps=25, size=(64, 48))
    assert isinstance(sink, VideoSink) and "rendered" in sink.wants
    sink.close(keep=False)
    sink = open_sink(f"masks:{tmp_path / 'm'}", name="cam")
    assert isinstance(sink, MaskSink) and sink.wants == {"labels"}
    viewer = open_sink("http://:0")
    try:
        assert isinstance(viewer, ViewerSink) and viewer.host == "127.0.0.1"
    finally:
        viewer.close()
    assert WindowSink.main_thread and not VideoSink.main_thread


def test_msf_video_chains_outputs_and_serves_the_viewer(tmp_path):
    clip = tmp_path / "c.mp4"
    vw = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 25, (96, 64))
    for i in range(6):
        vw.write(np.full((64, 96, 3), 30 * i, np.uint8))
    vw.release()
    r = subprocess.run([sys.executable, "-m", "msf.cli.video", str(clip), "--backend", "null", "--mode", "full",
                        "--size", "64", "-o", str(tmp_path / "o.mp4"), "-o", f"masks:{tmp_path / 'm'}",
                        "-o", "http://:0", "--stats", str(tmp_path / "s.json"), "--no-progress"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "live viewer at http://127.0.0.1:" in r.stderr
    assert (tmp_path / "o.mp4").stat().st_size > 0
    assert len(list((tmp_path / "m").glob("c_*.png"))) == 6
    stats = json.loads((tmp_path / "s.json").read_text())
    outs = stats["sources"][0]["outputs"]
    assert len(outs) == 3 and outs[0] == str(tmp_path / "o.mp4") and outs[2].startswith("viewer http://127.0.0.1:")
    assert stats["viewers"][0]["stream_connections"] == 0
