"""The input sizes the model takes, and the memory a batch of them needs on this machine.

Light on purpose (no torch, onnx or cv2): the CLIs check what the user typed before loading
anything.
"""

from __future__ import annotations

import os
from pathlib import Path

from msf.errors import UsageError

# The model downsamples by 32 (a stride-4 patch embedding, then three stride-2 ones; stage 1's
# spatial-reduction conv needs its 1/4-scale token map divisible by 8): any other side loses
# border pixels in the strided convs and the masks degrade.
SIZE_STEP = 32
# 64: the smallest side the tiny training preset uses (a 2×2 map at the deepest stage).
# 1024: twice the training size; memory grows with the side's square (and stage 1's attention
# with its fourth power), while the face is parsed no better than at the size it was trained at.
MIN_SIZE, MAX_SIZE = 64, 1024
SIZE_RULE = f"a multiple of {SIZE_STEP} from {MIN_SIZE} to {MAX_SIZE}"

# Peak memory of one inference per input pixel (activations, logits and the input itself),
# measured with the shipped weights, batch 1 and 4 at 256-1024 px: ONNX Runtime CPU 200-210
# bytes, PyTorch fp32 (msf-eval) 230-270 bytes; rounded up.
BYTES_PER_INPUT_PIXEL = 300


def size_problem(size: int) -> str | None:
    """Why ``size`` cannot be a model input side, or None when it can."""
    if not MIN_SIZE <= size <= MAX_SIZE or size % SIZE_STEP:
        return f"the model input size must be {SIZE_RULE}, not {size}"
    return None


def check_size(size: int, flag: str = "--size") -> int:
    """``size`` when the model can take it, else a UsageError naming ``flag``."""
    problem = size_problem(size)
    if problem:
        raise UsageError(f"{flag}: {problem}")
    return size


def memory_needed(batch: int, size: int) -> int:
    """Bytes one inference of ``batch`` inputs of ``size``² needs at its peak (an upper estimate)."""
    return batch * size * size * BYTES_PER_INPUT_PIXEL


def memory_available() -> int | None:
    """Bytes this process can still allocate: the system's available memory, lowered by a
    container's (cgroup v2) limit; None where neither can be read."""
    avail = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                avail = int(line.split()[1]) * 1024
                break
    except (OSError, ValueError, IndexError):
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            avail = None
    try:
        cg = Path("/sys/fs/cgroup")
        limit = (cg / "memory.max").read_text().strip()
        if limit != "max":
            left = int(limit) - int((cg / "memory.current").read_text())
            avail = left if avail is None else min(avail, left)
    except (OSError, ValueError):
        pass
    return avail


def _gb(n: int) -> str:
    return f"{n / 1e9:,.1f} GB" if n < 1e12 else f"{n / 1e12:,.1f} TB"


def check_memory(batch: int, size: int, available: int | None = None) -> None:
    """A UsageError, with the number, when a batch of ``batch`` inputs at ``size``² would need
    more memory than this machine has available (checked before anything is allocated)."""
    need = memory_needed(batch, size)
    avail = memory_available() if available is None else available
    if avail is not None and need > avail:
        raise UsageError(f"a batch of {batch} at {size}² input needs about {_gb(need)} of memory and "
                         f"{_gb(avail)} is available here: lower --batch or --size")
