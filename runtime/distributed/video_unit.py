"""One video file through the existing pipeline, with a done-marker: what a Ray task runs.

``process_video`` hashes the input, skips it when its marker matches (``--resume``), removes what
a killed earlier attempt left, runs ``run_pipeline`` with the unit's sinks (``VideoSink``,
``MaskSink``), and writes the marker after the outputs are in place. A problem with the input
(missing, corrupt, undecodable) is returned as a failed outcome with its one-line reason, never
raised: Ray retries only what kills a worker, so a bad file fails once, alone.
"""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path
from typing import Any

from msf.contract import file_sha256
from msf.errors import MsfError
from msf.runtime.distributed.markers import is_done, read_marker, sweep_temps, temp_pattern, write_marker
from msf.runtime.distributed.units import DONE, FAILED, PARTIAL, SKIPPED, Outcome, VideoJob, VideoUnit

# One Segmenter per worker process and settings: a worker runs many units, and loading a model
# (an export from the cache, an engine, a CUDA context) costs more than resetting its state.
_SEGMENTERS: dict[str, Any] = {}


def _segmenter(options: dict[str, Any]) -> Any:
    from msf.runtime.segmenter import Segmenter

    key = repr(sorted(options.items()))
    seg = _SEGMENTERS.get(key)
    if seg is None:
        seg = _SEGMENTERS[key] = Segmenter(**options)
    seg.reset()
    return seg


def mask_name_regex(name: str) -> str:
    """The stems of a source's mask files: ``<name>_<frame:06d>``."""
    return rf"{re.escape(name)}_\d{{6}}"


def _sweep(unit: VideoUnit) -> None:
    """Remove a killed attempt's temporary files (its outputs are written under these names until
    they are complete)."""
    if unit.video:
        v = Path(unit.video)
        sweep_temps(v.parent, temp_pattern(re.escape(v.stem), v.suffix or ".mp4"))
    if unit.masks:
        sweep_temps(unit.masks, temp_pattern(mask_name_regex(unit.name), ".png"))


def process_video(unit: VideoUnit, job: VideoJob) -> Outcome:
    """Parse one video file into its outputs (see the module docstring); never raises for a bad
    input."""
    t0 = time.perf_counter()
    host = socket.gethostname()

    def outcome(status: str, reason: str = "", **kw: Any) -> Outcome:
        return Outcome(unit.label, status, reason, seconds=round(time.perf_counter() - t0, 3), host=host, **kw)

    try:
        sha = file_sha256(unit.input)
    except OSError as exc:
        return outcome(FAILED, f"cannot read {unit.input}: {exc.strerror}")
    if job.resume and is_done(unit.marker, sha, job.model_sha256, job.settings):
        short = (read_marker(unit.marker) or {}).get("partial")
        if short:  # done as far as the file goes: still says so (exit 3 unless --allow-partial)
            return outcome(PARTIAL, _partial_reason(short) + "; done before, skipped")
        return outcome(SKIPPED)
    _sweep(unit)
    try:
        frames, outputs, short = _run(unit, job)
    except MsfError as exc:
        return outcome(FAILED, str(exc))
    extra = {"frames": frames, "partial": list(short) if short else None}
    write_marker(unit.marker, sha, job.model_sha256, job.settings, outputs, **extra)
    if short:
        return outcome(PARTIAL, _partial_reason(short), frames=frames, outputs=[str(p) for p in outputs[:1]])
    return outcome(DONE, frames=frames, outputs=[str(p) for p in outputs[:1]])


def _partial_reason(short: tuple[int, int] | list[int]) -> str:
    return f"ended after {short[0]} of the {short[1]} frames its container announces (truncated or damaged file)"


def _run(unit: VideoUnit, job: VideoJob) -> tuple[int, list[Path], tuple[int, int] | None]:
    """The pipeline over one file: (frames written, output files, shortfall)."""
    from msf.runtime.pipeline import Job, PipelineConfig, run_pipeline
    from msf.runtime.render import RenderOptions, output_size
    from msf.runtime.sinks import MaskSink, VideoSink
    from msf.runtime.sources import VideoFileSource
    from msf.runtime.stats import PipelineStats

    seg = _segmenter(job.segmenter)
    render = RenderOptions(**job.render)
    src = VideoFileSource(Path(unit.input))
    sinks: list[Any] = []
    ok = False
    try:
        h, w = src.peek().shape[:2]
        if unit.video:
            sinks.append(VideoSink(unit.video, src.fps, output_size(h, w, render), **job.video))
        if unit.masks:
            sinks.append(MaskSink(unit.masks, unit.name))
        pjob = Job(src, sinks)
        cfg = PipelineConfig(batch=job.batch, queue_size=8, render=render, max_frames=job.max_frames)
        run_pipeline(seg, [pjob], cfg, PipelineStats())
        ok = True
    finally:
        for s in sinks:
            s.close(keep=ok)  # an interrupted or failed unit leaves no video under its name
        src.close()
    if pjob.written == 0:
        raise MsfError(f"no frame of {unit.input} could be parsed")
    outputs = [Path(unit.video)] if unit.video else []
    if unit.masks:
        outputs += [Path(unit.masks) / f"{unit.name}_{i:06d}.png" for i in range(pjob.written)]
    return pjob.written, outputs, src.shortfall()

