"""``--ray`` on a real Ray cluster started by this module (issue 24): one head node with 2 CPUs
on this machine (``ray start --head --block`` in its own process group, stopped at the end).

- video files as tasks: masks equal a single-process run bit for bit, videos have every frame,
  a corrupt file fails alone with its reason (exit 1), a rerun skips what is done;
- image folders through Ray Data: msf-eval's masks and overlays, and msf-video's masks (full
  mode), equal the single-process runs bit for bit;
- a worker killed by its pid in the middle of a unit (a video task, or the model's actor of Ray
  Data): Ray reruns its work, every output exists once;
- Ctrl-C, then the same command: only the missing work is done.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from msf.errors import run_cli
from msf.paths import REPO_DIR
from tests.test_pipeline import _decoded_frames

pytest.importorskip("ray", reason="Ray is not installed: pip install 'msf[ray]' (the dev extra pulls it)")

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """The address of a 2-CPU head node started for this module."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path_factory.mktemp("ray") / "head.log"
    # A test cluster without token authentication (Ray's default for `ray start` is a token in
    # ~/.ray): this process imported Ray before any test could set the mode, so it has none either.
    old_mode = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"  # the commands the tests start inherit it
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    with open(log, "w") as fh:
        head = subprocess.Popen([sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block",
                                 "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2", "--num-gpus=0",
                                 "--include-dashboard=false", "--disable-usage-stats"],
                                stdout=fh, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    try:
        deadline = time.monotonic() + 90
        while "Ray runtime started" not in log.read_text():
            if head.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the Ray head did not start:\n{log.read_text()[-2000:]}")
            time.sleep(0.2)
        yield f"127.0.0.1:{port}"
    finally:
        head.terminate()  # `ray start --block` stops what it started
        with contextlib.suppress(subprocess.TimeoutExpired):
            head.wait(timeout=5)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(head.pid, signal.SIGKILL)  # whatever is left of the group it leads
        if old_mode is None:
            os.environ.pop("RAY_AUTH_MODE", None)
        else:
            os.environ["RAY_AUTH_MODE"] = old_mode


def _clip(path: Path, n: int, w: int = 320, h: int = 180) -> Path:
    """``n`` frames of the README's public-domain astronaut sliding sideways (a real face)."""
    frame = cv2.resize(cv2.imread(str(REPO_DIR / "docs" / "astronaut.jpg")), (w, h), interpolation=cv2.INTER_AREA)
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (w, h))
    for i in range(n):
        vw.write(np.roll(frame, 3 * i, axis=1))
    vw.release()
    return path


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _cli(module: str, args: list[str], cwd: Path) -> subprocess.Popen:
    """The command in a subprocess that takes Ctrl-C as a terminal would deliver it (pytest started
    in the background by a script has SIGINT ignored, and children inherit that)."""
    return subprocess.Popen([sys.executable, "-m", f"msf.cli.{module}", *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=_default_sigint)


def _visible(folder: Path) -> list[str]:
    """Everything in ``folder`` but the markers' folder: outputs, and temporaries (dot files) if any."""
    return sorted(p.name for p in folder.iterdir() if p.name != ".msf-done")


def test_video_files_match_one_process_and_a_corrupt_file_fails_alone(cluster, tmp_path, capsys):
    from msf.cli.video import main

    for k in range(2):
        _clip(tmp_path / f"c{k}.mp4", 6 + 2 * k)
    (tmp_path / "bad.mp4").write_bytes(b"\x00" * 4096)
    common = ["--size", "64", "--no-progress", "--codec", "mp4v"]
    assert run_cli("msf-video", main, [str(tmp_path / "c0.mp4"), str(tmp_path / "c1.mp4"), "-o",
                                       str(tmp_path / "one/"), "--save-masks", str(tmp_path / "one_m"), *common]) == 0
    argv = [str(tmp_path / f) for f in ("c0.mp4", "bad.mp4", "c1.mp4")] + [
        "-o", str(tmp_path / "ray/"), "--save-masks", str(tmp_path / "ray_m"), *common, "--ray", cluster,
        "--stats", str(tmp_path / "report.json")]
    capsys.readouterr()
    rc = run_cli("msf-video", main, argv)
    err = capsys.readouterr().err
    assert rc == 1, err
    assert f"failed: {tmp_path / 'bad.mp4'}: cannot open video" in err and "Traceback" not in err
    assert err.strip().splitlines()[-1] == "msf-video: error: 1 of 3 inputs failed (listed above)"
    masks = _visible(tmp_path / "one_m")
    assert len(masks) == 14 and _visible(tmp_path / "ray_m") == masks
    for name in masks:  # bit for bit
        assert (tmp_path / "one_m" / name).read_bytes() == (tmp_path / "ray_m" / name).read_bytes(), name
    assert _visible(tmp_path / "ray") == ["c0.mp4", "c1.mp4"]
    assert [_decoded_frames(tmp_path / "ray" / f"c{k}.mp4") for k in range(2)] == [6, 8]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["counts"]["done"] == 2 and report["counts"]["failed"] == 1
    # the same command again: the two done are skipped, the bad one fails again
    rc = run_cli("msf-video", main, argv)
    report = json.loads((tmp_path / "report.json").read_text())
    assert rc == 1 and report["counts"]["skipped"] == 2 and report["counts"]["failed"] == 1


def test_images_through_ray_data_match_one_process(cluster, faces_root, tmp_path, capsys):
    from msf.cli.eval import main as eval_main
    from msf.cli.video import main as video_main
    from msf.data import list_samples

    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for s in list_samples(faces_root / "unlabeled", require_masks=False)[:4]:
        (imgs / s.image.name).symlink_to(s.image)
    rc = run_cli("msf-eval", eval_main, ["--data", str(imgs), "--size", "64", "--save-masks", str(tmp_path / "e1"),
                                         "--save-overlays", str(tmp_path / "o1")])
    assert rc == 0
    rc = run_cli("msf-video", video_main, [str(imgs), "--mode", "full", "--size", "64", "--save-masks",
                                           str(tmp_path / "v1"), "--no-progress"])
    assert rc == 0
    (imgs / "zz_broken.jpg").write_bytes(b"not an image")
    capsys.readouterr()
    rc = run_cli("msf-eval", eval_main, ["--data", str(imgs), "--size", "64", "--save-masks", str(tmp_path / "e2"),
                                         "--save-overlays", str(tmp_path / "o2"), "--ray", cluster])
    out, err = capsys.readouterr()
    assert rc == 1 and f"failed: zz_broken: cannot decode image: {imgs / 'zz_broken.jpg'}" in out, out + err
    (imgs / "zz_broken.jpg").unlink()
    rc = run_cli("msf-video", video_main, [str(imgs), "--mode", "full", "--size", "64", "--save-masks",
                                           str(tmp_path / "v2"), "--no-progress", "--ray", cluster])
    assert rc == 0
    for one, two in (("e1", "e2"), ("o1", "o2"), ("v1", "v2")):
        names = _visible(tmp_path / one)
        assert len(names) == 4 and _visible(tmp_path / two) == names, (one, two)
        for n in names:
            assert (tmp_path / one / n).read_bytes() == (tmp_path / two / n).read_bytes(), (two, n)


def _worker_pids(title: str) -> list[int]:
    """Processes whose title (Ray sets it while a worker runs a task) starts with ``title``."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmd = (d / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
            except OSError:
                continue
            if cmd.startswith(title):
                out.append(int(d.name))
    return out


def _check_complete(tmp_path: Path, clips: int, frames: int) -> list[dict]:
    """Every output once: each video with every frame, every mask, a marker each, nothing else."""
    assert _visible(tmp_path / "out") == [f"c{k}.mp4" for k in range(clips)]
    assert _visible(tmp_path / "masks") == [f"c{k}_{i:06d}.png" for k in range(clips) for i in range(frames)]
    assert [_decoded_frames(tmp_path / "out" / f"c{k}.mp4") for k in range(clips)] == [frames] * clips
    done = tmp_path / "out" / ".msf-done"
    assert sorted(p.name for p in done.iterdir()) == [f"c{k}.mp4.json" for k in range(clips)]
    return [json.loads(p.read_text()) for p in sorted(done.iterdir())]


def _null_run(cluster: str, tmp_path: Path, clips: int) -> list[str]:
    return [*(str(tmp_path / f"c{k}.mp4") for k in range(clips)), "-o", "out/", "--save-masks", "masks",
            "--backend", "null", "--mode", "full", "--codec", "mp4v", "--no-progress", "--ray", cluster,
            "--workers", "1", "--stats", "report.json"]


def test_killed_worker_is_rerun_and_nothing_is_lost_or_doubled(cluster, tmp_path):
    clips, frames = 3, 120
    for k in range(clips):
        _clip(tmp_path / f"c{k}.mp4", frames)
    proc = _cli("video", _null_run(cluster, tmp_path, clips), tmp_path)
    killed = None
    deadline = time.monotonic() + 120
    while killed is None and proc.poll() is None and time.monotonic() < deadline:
        pids = _worker_pids("ray::msf_video_unit")
        if pids and any(p.name.startswith("c") for p in (tmp_path / "masks").glob("*.png")):
            os.kill(pids[0], signal.SIGKILL)  # mid-unit: some of its masks are written, its marker is not
            killed = pids[0]
        time.sleep(0.02)
    out, err = proc.communicate(timeout=300)
    assert killed is not None, f"no worker was caught running a unit\n{err}"
    assert proc.returncode == 0, err
    records = _check_complete(tmp_path, clips, frames)
    assert killed not in {r["pid"] for r in records}  # the killed attempt wrote no marker: a new worker did
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["counts"]["done"] == clips and not report["counts"].get("failed")


def test_rerun_after_ctrl_c_does_only_the_missing_work(cluster, tmp_path):
    clips, frames = 4, 240  # a unit lasts about a second: Ctrl-C lands while units are left
    for k in range(clips):
        _clip(tmp_path / f"c{k}.mp4", frames)
    argv = _null_run(cluster, tmp_path, clips)
    proc = _cli("video", argv, tmp_path)
    done_dir = tmp_path / "out" / ".msf-done"
    deadline = time.monotonic() + 120
    while not (done_dir.is_dir() and any(done_dir.glob("*.json"))) and time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1]
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted; finished inputs keep their done-markers" in err and "Traceback" not in err
    before = {p.name: p.stat().st_mtime_ns for p in done_dir.glob("*.json")}
    assert 1 <= len(before) < clips, before
    proc = _cli("video", argv, tmp_path)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    _check_complete(tmp_path, clips, frames)
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["counts"]["skipped"] == len(before) and report["counts"]["done"] == clips - len(before)
    assert all((done_dir / n).stat().st_mtime_ns == t for n, t in before.items())  # not redone


def test_killed_model_actor_is_restarted_and_nothing_is_lost_or_doubled(cluster, faces_root, tmp_path):
    from msf.data import list_samples

    imgs = tmp_path / "imgs"
    imgs.mkdir()
    samples = list_samples(faces_root / "unlabeled", require_masks=False)[:24]
    for s in samples:
        (imgs / s.image.name).symlink_to(s.image)
    proc = _cli("eval", ["--data", str(imgs), "--size", "64", "--batch", "2", "--save-masks", "masks", "--ray",
                         cluster, "--workers", "1", "--json", "report.json"], tmp_path)
    killed = None
    deadline = time.monotonic() + 120
    while killed is None and proc.poll() is None and time.monotonic() < deadline:
        pids = _worker_pids("ray::MapWorker(MapBatches(MsfPredictor))")
        if pids and (tmp_path / "masks").is_dir() and any((tmp_path / "masks").glob("*.png")):
            os.kill(pids[0], signal.SIGKILL)  # the model's actor, with batches still to come
            killed = pids[0]
        time.sleep(0.02)
    out, err = proc.communicate(timeout=300)
    assert killed is not None, f"no model actor was caught at work\n{out}{err}"
    assert proc.returncode == 0, out + err
    assert _visible(tmp_path / "masks") == sorted(f"{s.name}.png" for s in samples)
    assert len(list((tmp_path / "masks" / ".msf-done").glob("*.json"))) == len(samples)
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["counts"]["done"] == len(samples) and not report["counts"].get("failed")
