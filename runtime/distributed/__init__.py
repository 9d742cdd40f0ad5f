"""Parsing large collections on a Ray cluster (``msf-video --ray``, ``msf-eval --ray``).

The parts without Ray (what a unit of work is, done-markers, the work of one video file or one
batch of images) import nothing from Ray and run in any process; only ``cluster``,
``ray_videos`` and ``ray_images`` import Ray, and only ``msf/cli/distributed.py`` imports them,
when ``--ray`` is given.

- ``markers``: input and model hashes, the done-marker written last beside a unit's outputs,
  stale temporary files of a killed attempt;
- ``units``: a unit of work (one video file, one image) and its outcome;
- ``video_unit``: one video file through the existing pipeline (a Ray task runs it);
- ``image_stages``: decode, predict (Segmenter or msf-eval's PyTorch model) and write, as
  batch functions (Ray Data runs them);
- ``cluster``: connecting to (or starting) a cluster, quietly;
- ``ray_videos``: video files as Ray tasks; ``ray_images``: images through Ray Data.
"""
