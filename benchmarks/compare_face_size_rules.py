"""Which face-matched size rule? ``bench_faces.py``'s small-face footage (the validation faces at
64-240 px in JPEG-50 720p frames) parsed in face mode under candidate rules ((largest square side
in frame pixels, input size), ...), F inside the faces and speed side by side.

    python benchmarks/compare_face_size_rules.py

Writes benchmarks/results/faces_size_rules_quick.json and .md: 100 faces × 4 held frames, one
end-to-end round of 160 frames per rule (bench_faces' --quick timing), no detector sweep.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

RULES: dict[str, tuple[tuple[int, int], ...] | None] = {
    "384² (no matched size)": (),
    "256² for squares ≤192 px": ((192, 256),),
    "320² for squares ≤128 px": ((128, 320),),
    "320² for squares ≤192 px": ((192, 320),),
    "256² ≤80, 320² ≤160": ((80, 256), (160, 320)),
}


def main() -> int:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    spec = importlib.util.spec_from_file_location("bench_faces", HERE / "bench_faces.py")
    bf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bf)
    plain = bf.new_segmenter

    def new_segmenter(mode: str, threads: int, **kw):
        rule = kw.pop("rule", None)  # aligned_f() asks for plain full-mode segmenters
        if rule is None:
            return plain(mode, threads, **kw)
        seg = plain(mode, threads, matched_sizes=True, **kw)
        seg.size_rule = rule
        return seg

    bf.new_segmenter = new_segmenter
    bf.CONFIGS = {name: {"rule": rule} for name, rule in RULES.items()}
    bf.FOOTAGES = {k: v for k, v in bf.FOOTAGES.items() if k.startswith("small")}
    sys.argv = [sys.argv[0], "--quick", "--faces", "100", "--hold", "4", "--e2e-frames", "160",
                "--label", "size_rules", "--out", str(HERE / "results")]
    return bf.main()


if __name__ == "__main__":
    sys.exit(main())
