"""msf-bench: the timing machinery on a fake backend of known latency (deterministic: a fake clock),
and the command's bad-input errors."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from msf.contract import RUNTIME_CONTRACT
from msf.errors import MsfError
from msf.runtime.backends import Backend
from msf.runtime.benchmark import BenchSettings, measure
from msf.runtime.timing import markdown_table, save_results, summarize, time_calls


class FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


class FakeBackend(Backend):
    """Takes ``base + per_image * batch`` ms per call on the fake clock; the first ``slow`` calls
    (warm-up) take 100× longer, and every 10th call has +20 % jitter."""

    name = "fake"

    def __init__(self, clock, base=4.0, per_image=1.0, slow=3):
        super().__init__(RUNTIME_CONTRACT.with_input(size=64))
        self.clock, self.base, self.per_image, self.slow, self.calls = clock, base, per_image, slow, 0

    def infer(self, batch):
        self.calls += 1
        ms = self.base + self.per_image * len(batch)
        if self.calls <= self.slow:
            ms *= 100
        elif self.calls % 10 == 0:
            ms *= 1.2
        self.clock.t += ms / 1000
        return np.zeros((len(batch), 64, 64), np.uint8)


@pytest.mark.parametrize("batch", [1, 4, 8])
def test_percentiles_warmup_and_throughput_on_known_latency(batch):
    clock = FakeClock()
    backend = FakeBackend(clock)
    frames = [np.zeros((64, 64, 3), np.uint8)]
    rec = measure(backend, frames, BenchSettings(batch=batch, warmup=3, iters=50), clock=clock)
    known = 4.0 + 1.0 * batch
    assert rec["p50_ms"] == pytest.approx(known)  # the slow warm-up calls are excluded
    assert rec["min_ms"] == pytest.approx(known) and rec["max_ms"] == pytest.approx(1.2 * known)
    assert rec["min_ms"] <= rec["p50_ms"] <= rec["p90_ms"] <= rec["p95_ms"] <= rec["p99_ms"] <= rec["max_ms"]
    assert rec["throughput_ips"] == pytest.approx(batch * 1000 / known)
    assert rec["runs"] == 50
    assert rec["e2e_p50_ms"] >= rec["p50_ms"] - 1e-9  # end to end includes the same backend call
    assert len(rec["_samples"]) == 50


def test_recorded_results_are_json_and_markdown(tmp_path, capsys):
    table = markdown_table(["a", "b"], [["1", "2"], ["3", "4"]])
    assert table == ["| a | b |", "|---|---|", "| 1 | 2 |", "| 3 | 4 |"]
    save_results(tmp_path / "r" / "suite", {"x": 1.5}, "\n".join(table) + "\n")
    assert json.loads((tmp_path / "r" / "suite.json").read_text()) == {"x": 1.5}
    assert (tmp_path / "r" / "suite.md").read_text().startswith("| a | b |")
    assert sorted(f.name for f in (tmp_path / "r").iterdir()) == ["suite.json", "suite.md"]
    assert "| 3 | 4 |" in capsys.readouterr().out


def test_duration_mode_and_noise_flag():
    clock = FakeClock()
    backend = FakeBackend(clock, slow=0)
    rec = measure(backend, [np.zeros((64, 64, 3), np.uint8)], BenchSettings(1, 0, None, 0.5), clock=clock)
    assert rec["runs"] == pytest.approx(0.5 / 0.005, abs=2)
    assert not rec["noisy"]  # 20 % jitter on one call in ten keeps CV under 10 %
    def slow_call():  # each call takes 0.5 s on the fake clock
        clock.t += 0.5

    ms = time_calls(slow_call, iters=None, warmup=2, clock=clock, duration=1.0)
    assert list(ms) == [500.0, 500.0, 500.0]  # 1 s holds two calls; the minimum is three
    with pytest.raises(ValueError):
        time_calls(lambda: None, iters=None)
    s = summarize(np.array([10.0, 10.0, 30.0, 10.0]))
    assert s["cv"] > 0.1


def bench(*args):
    return subprocess.run([sys.executable, "-m", "msf.cli.bench", *map(str, args)], capture_output=True, text=True,
                          timeout=600)


@pytest.mark.parametrize("args, needle", [
    (["--engine", "model.tflite"], "unknown model file type"),
    (["--engine", "missing.onnx"], "model file not found"),
])
def test_bad_input_one_line(tmp_path, args, needle):
    r = bench(*args)
    assert r.returncode == 1 and needle in r.stderr and "Traceback" not in r.stderr


def test_engine_without_gpu_is_one_line(tmp_path):
    from msf.export.tensorrt import tensorrt_version

    if tensorrt_version() is not None:
        pytest.skip("TensorRT is installed here")
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"\0" * 64)
    r = bench("--engine", engine)
    assert r.returncode == 1 and "TensorRT is not installed" in r.stderr and "Traceback" not in r.stderr


def test_bench_real_onnx_json_and_accuracy(tmp_path, faces_root, shipped_model):
    out = tmp_path / "m.onnx"
    e = subprocess.run([sys.executable, "-m", "msf.cli.export", "-o", str(out), "--io", "uint8", "--color", "bgr",
                        "--head", "labels", "--size", "256", "--verify-images", "2"], capture_output=True, text=True,
                       timeout=600)
    assert e.returncode == 0, e.stderr
    r = bench("--engine", out, "--batch", "1,2", "--iters", "3", "--warmup", "1", "--data", faces_root,
              "--accuracy-images", "2", "--json", tmp_path / "b.json", "--csv", tmp_path / "b.csv",
              "--plot", tmp_path / "b.png", "--markdown", tmp_path / "b.md")
    assert r.returncode == 0, r.stderr
    res = json.loads((tmp_path / "b.json").read_text())
    assert [rec["batch"] for rec in res["records"]] == [1, 2]
    rec = res["records"][0]
    for key in ("p50_ms", "p90_ms", "p95_ms", "p99_ms", "mean_ms", "min_ms", "max_ms", "throughput_ips",
                "e2e_p50_ms", "e2e_p99_ms", "f_score", "agreement", "cv", "backend", "precision", "size",
                "file_mb"):
        assert key in rec, key
    assert rec["size"] == 256 and rec["agreement"] > 0.99
    # the CV column and the noisy flag use the noisier of the compute and end-to-end loops
    assert rec["cv_max"] == max(rec["cv"], rec["e2e_cv"]) and rec["noisy"] == (rec["cv_max"] > 0.1)
    assert res["environment"]["cores"] and res["environment"]["versions"]["onnxruntime"]
    assert (tmp_path / "b.png").stat().st_size > 10_000 and "| model |" in (tmp_path / "b.md").read_text()


def test_gpu_check_reports_every_missing_part(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: run benchmarks/gpu_check.py itself")
    out = tmp_path / "gpu.json"
    r = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--out", str(out), "--images", "1"],
                       capture_output=True, text=True, timeout=600, cwd=str(Path(__file__).parents[1]))
    assert r.returncode == 0, r.stderr
    res = json.loads(out.read_text())
    assert res["records"] == [] and len(res["skipped"]) == 6 and res["failed"] == []
    assert all(s["reason"] for s in res["skipped"])


def _gpu_check_module():
    import importlib.util

    path = Path(__file__).parents[1] / "benchmarks" / "gpu_check.py"
    spec = importlib.util.spec_from_file_location("gpu_check", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class _Quick(Backend):
    name = "quick"

    def __init__(self, fail_on_call=None):
        super().__init__(RUNTIME_CONTRACT.with_input(size=64))
        self.calls, self.fail_on_call = 0, fail_on_call

    def infer(self, batch):
        self.calls += 1
        if self.calls == self.fail_on_call:
            raise RuntimeError("Input type (float) and bias type (c10::Half) should be the same")
        return np.zeros((len(batch), 64, 64), np.uint8)


def _raise(exc):
    raise exc


def test_gpu_check_reports_a_part_that_raises_as_failed_and_keeps_the_rest(tmp_path, monkeypatch):
    gc = _gpu_check_module()
    frame = np.zeros((64, 64, 3), np.uint8)
    pairs = [(frame, np.zeros((64, 64), np.uint8))]
    fake_parts = [
        ("works", lambda: _Quick()),
        ("no gpu", lambda: _raise(MsfError("no CUDA GPU is visible"))),
        ("breaks while loading", lambda: _raise(RuntimeError("CUDA driver too old"))),
        ("breaks on its first frame", lambda: _Quick(fail_on_call=1)),
        ("breaks while timing", lambda: _Quick(fail_on_call=3)),
        ("works too", lambda: _Quick()),
    ]
    res = gc.run_parts(fake_parts, pairs, [frame], [np.zeros((64, 64), np.uint8)], [1, 2], 2, log=lambda m: None)
    assert [r["part"] for r in res["records"]] == ["works", "works", "works too", "works too"]
    assert [s["part"] for s in res["skipped"]] == ["no gpu"]
    failed = {f["part"]: f for f in res["failed"]}
    assert list(failed) == ["breaks while loading", "breaks on its first frame", "breaks while timing"]
    assert failed["breaks on its first frame"]["step"] == "accuracy"
    assert "bias type (c10::Half)" in failed["breaks on its first frame"]["error"]
    assert failed["breaks while timing"]["step"] == "timing batch 1"
    # the script: the JSON keeps what succeeded, and the exit status says a part failed
    import msf.export.verify as verify

    monkeypatch.setattr(gc, "parts", lambda tmp: fake_parts)
    monkeypatch.setattr(verify, "load_verification_images", lambda *a, **k: ([], "no faces"))
    out = tmp_path / "gpu.json"
    assert gc.main(["--out", str(out), "--quick"]) == 1
    saved = json.loads(out.read_text())
    assert len(saved["records"]) == 2 and len(saved["failed"]) == 3 and len(saved["skipped"]) == 1
