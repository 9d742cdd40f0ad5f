"""``msf-video --ray`` against the single-process pipeline on the same files, in one run.

The job: 8 clips × 200 frames (a face from the data root's unlabeled images gliding over a plain
background, H.264), each parsed to an H.264 video (the default output), as

- ``single``: ``msf-video c0.mp4 ... c7.mp4 -o out/`` (one process, one batched pipeline);
- ``ray-1`` / ``ray-2``: ``msf-video ... -o out/ --ray ADDRESS --workers 1|2`` on a 2-CPU Ray head
  node this script starts (``ray start --head``) and stops; each file is one task;
- ``ray-local``: ``--ray local --workers 2``, the cluster started and stopped by the command itself.

Every configuration is a fresh command (its own process: Python start, imports, model load, Ray
connection, worker processes), timed wall to wall, alternating configurations for ``--reps``
rounds (medians; a slow spell of a shared machine hits them all). Reported apart: the head
node's start-up, each Ray command's connection time, and the per-task overhead (``ray-1``: wall
minus connection minus the sum of the tasks' own seconds, per task). Sections: ``null``
(``--backend null --mode full``: the pipeline alone, 1280×720: the least work per frame to
hide an overhead behind) and ``ort`` (ONNX Runtime CPU, shipped
weights at their default 384², default auto mode, 640×360 face clips, one round of ``single``,
``ray-1`` and ``ray-2``; ``--ort-frames``).
Writes benchmarks/results/ray_cpu.{json,md}.

    python benchmarks/bench_ray.py --shared          # the recorded run (~15 min on 2 cores)
    python benchmarks/bench_ray.py --quick           # 8 × 40 frames, one round, null only
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_pipeline import load_faces, synth_frames, write_clip  # noqa: E402

from msf.runtime.timing import environment, machine_line, markdown_table, save_results, utc_now  # noqa: E402

CONFIGS = ("single", "ray-1", "ray-2", "ray-local")


@contextlib.contextmanager
def head_node(cpus: int = 2):
    """A Ray head node on this machine for the run: (address, seconds to start)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = Path(tempfile.mkdtemp(prefix="msf-ray-head-")) / "head.log"
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        head = subprocess.Popen([sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block",
                                 "--node-ip-address=127.0.0.1", f"--port={port}", f"--num-cpus={cpus}",
                                 "--num-gpus=0", "--include-dashboard=false", "--disable-usage-stats"],
                                stdout=fh, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    try:
        while "Ray runtime started" not in log.read_text():
            if head.poll() is not None:
                sys.exit(f"bench_ray: the Ray head did not start:\n{log.read_text()[-2000:]}")
            time.sleep(0.1)
        yield f"127.0.0.1:{port}", time.perf_counter() - t0
    finally:
        head.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            head.wait(timeout=10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(head.pid, signal.SIGKILL)


def run_config(config: str, clips: list[Path], address: str, extra: list[str], tmp: Path) -> dict[str, Any]:
    """One fresh ``msf-video`` command over ``clips``: wall seconds, frames, and its JSON report."""
    out = tmp / f"out-{config}"
    shutil.rmtree(out, ignore_errors=True)
    stats = tmp / f"{config}.json"
    argv = [sys.executable, "-m", "msf.cli.video", *map(str, clips), "-o", f"{out}/", "--no-progress",
            "--stats", str(stats), *extra]
    if config != "single":
        workers = "1" if config == "ray-1" else "2"
        argv += ["--ray", "local" if config == "ray-local" else address, "--workers", workers, "--no-resume"]
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    load = os.getloadavg()[0]  # a shared machine: how busy it was when the run started
    t0 = time.perf_counter()
    r = subprocess.run(argv, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        sys.exit(f"bench_ray: {config} failed ({r.returncode}):\n{r.stderr[-3000:]}")
    rep = json.loads(stats.read_text())
    shutil.rmtree(out, ignore_errors=True)
    res: dict[str, Any] = {"wall_s": round(wall, 2), "load_1min": round(load, 2)}
    if config == "single":
        frames = rep["frames"]
        res.update(pipeline_fps=rep["fps"], warmup_ms=rep["warmup_ms"],
                   process_cpu_ms_per_frame=rep.get("process_cpu_ms_per_frame"),
                   infer_ms_per_frame=rep["stages"].get("infer", {}).get("mean_ms"))
    else:
        frames = sum(i["frames"] for i in rep["inputs"])
        task_s = [i["seconds"] for i in rep["inputs"]]
        res.update(connect_s=rep["cluster"]["startup_s"], task_s_sum=round(sum(task_s), 2),
                   task_s=task_s, hosts=sorted({i["host"] for i in rep["inputs"]}))
        if config == "ray-1":  # tasks one after another: what is not a task's own work is overhead
            res["per_task_overhead_s"] = round((wall - rep["cluster"]["startup_s"] - sum(task_s)) / len(task_s), 3)
    res.update(frames=frames, fps=round(frames / wall, 2))
    return res


def section(name: str, clips: list[Path], extra: list[str], reps: int, address: str, tmp: Path,
            log, configs: tuple[str, ...] = CONFIGS) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {c: [] for c in configs}
    for rep in range(reps):
        for config in configs:
            r = run_config(config, clips, address, extra, tmp)
            runs[config].append(r)
            log(f"{name} round {rep + 1}/{reps} {config}: {r['fps']:.1f} FPS, {r['wall_s']:.1f} s")
    med = {c: statistics.median(r["fps"] for r in rs) for c, rs in runs.items()}
    # ratios of neighbours in time (same round), then their median
    ratio = {c: statistics.median(r["fps"] / s["fps"] for r, s in zip(runs[c], runs["single"])) for c in configs}
    return {"name": name, "args": extra, "runs": runs, "median_fps": med, "ratio_to_single": ratio}


def markdown(res: dict[str, Any]) -> str:
    env = res["env"]
    lines = [f"### msf-video --ray against one process, {res['clips']} clips × {res['frames']} frames each", "",
             machine_line(env, f"Python {env['python']}", f"Ray {res['ray']}",
                          f"ORT {env['versions'].get('onnxruntime')}", date=res["date"])
             + (" · machine shared with other jobs" if res["shared"] else ""),
             "", f"Ray head node (`ray start --head`, 2 CPUs) started in {res['head_start_s']:.1f} s "
                 "(not in any figure below).", ""]
    for sec in res["sections"]:
        runs = sec["runs"]
        n = len(runs["single"])
        lines += [f"#### {sec['title']} ({n} round(s), configurations alternating; medians)", ""]
        rows = []
        for c in runs:
            rs = runs[c]
            wall = statistics.median(r["wall_s"] for r in rs)
            conn = statistics.median(r["connect_s"] for r in rs) if c != "single" else None
            ovh = statistics.median(r["per_task_overhead_s"] for r in rs) if c == "ray-1" else None
            loads = " / ".join(f"{r['load_1min']:.1f}" for r in rs if "load_1min" in r) or "–"
            rows.append([c, f"{sec['median_fps'][c]:.1f}", " / ".join(f"{r['fps']:.1f}" for r in rs), loads,
                         f"{wall:.1f}", f"{sec['ratio_to_single'][c]:.2f}", f"{conn:.1f}" if conn is not None else "–",
                         f"{ovh:.2f}" if ovh is not None else "–"])
        lines += markdown_table(["command", "FPS (frames / wall)", "runs", "load (1-min avg) at start", "wall s",
                                 "× single",
                                 "Ray connect s", "per-task overhead s"], rows)
        lines.append("")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="8 × 40 frames, one round, null section only")
    ap.add_argument("--clips", type=int, default=8)
    ap.add_argument("--frames", type=int, help="frames per clip (default 200; --quick 40)")
    ap.add_argument("--ort-frames", type=int, default=200, help="frames per clip in the ort section")
    ap.add_argument("--reps", type=int, help="rounds of every configuration (default 3; --quick 1)")
    ap.add_argument("--sections", default="null,ort", help="comma-separated subset of null,ort")
    ap.add_argument("--shared", action="store_true", help="note that the machine was shared in the result")
    ap.add_argument("--out", default=str(HERE / "results" / "ray_cpu"))
    args = ap.parse_args()
    import ray

    frames = args.frames or (40 if args.quick else 200)
    reps = args.reps or (1 if args.quick else 3)
    sections = {"null"} if args.quick else set(args.sections.split(","))
    faces = load_faces()
    t_all = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t_all:6.1f} s] {msg}", file=sys.stderr, flush=True)

    res: dict[str, Any] = {"benchmark": "msf-video --ray vs one process", "date": utc_now(), "env": environment(),
                           "ray": ray.__version__, "shared": args.shared, "clips": args.clips, "frames": frames,
                           "sections": []}
    with tempfile.TemporaryDirectory(prefix="msf-bench-ray-") as tmp_name, head_node() as (address, head_s):
        tmp = Path(tmp_name)
        res["head_start_s"] = round(head_s, 2)
        log(f"Ray head at {address} in {head_s:.1f} s")
        if "null" in sections:
            clips = [write_clip(tmp / f"n{k}.mp4", synth_frames(faces[k % 6:] + faces[:k % 6], frames, (1280, 720)))
                     for k in range(args.clips)]
            sec = section("null", clips, ["--backend", "null", "--mode", "full"], reps, address, tmp, log)
            sec["title"] = ("`--backend null --mode full` (the pipeline alone: decode, letterbox, render, H.264 "
                            "veryfast), 1280×720")
            res["sections"].append(sec)
        if "ort" in sections:
            n = args.ort_frames
            clips = [write_clip(tmp / f"o{k}.mp4", synth_frames(faces[k % 6:] + faces[:k % 6], n, (640, 360)))
                     for k in range(args.clips)]
            sec = section("ort", clips, [], 1, address, tmp, log, configs=("single", "ray-1", "ray-2"))
            sec["title"] = (f"ONNX Runtime CPU, shipped weights at 384², auto mode, 640×360 → H.264, "
                            f"{n} frames per clip")
            res["sections"].append(sec)
    save_results(args.out, res, markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
