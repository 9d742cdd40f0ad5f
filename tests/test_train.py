import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from msf.config import PRESETS, config_from_dict, merge, parse_phases
from msf.data import FaceDataset, list_samples, read_pair, resize_batch, to_tensor
from msf.errors import MsfError
from msf.frameops.fit import fit, fit_labels
from msf.losses import seg_loss
from msf.model import load_model
from msf.train import CheckpointKeeper, StopFlag, TrainState, lr_at, train


def _fixed_batch(root, n=8, size=64):
    pairs = [read_pair(s) for s in list_samples(root)[:n]]
    x = torch.stack([to_tensor(fit(i, size, size)) for i, _ in pairs])
    y = torch.stack([torch.from_numpy(fit_labels(m, size, size)).long() for _, m in pairs])
    return x, y


def _tiny(tmp_path, root, **over):
    base = merge(PRESETS["tiny"], {"data": str(root), "out": str(tmp_path / "run"), "seed": 0})
    return config_from_dict(merge(base, over))


def test_short_real_training_lowers_the_loss(tmp_path, faces_root):
    cfg = _tiny(tmp_path, faces_root, phases=[{"epochs": 4, "size": 64, "batch": 4}], train_limit=16)
    summary = train(cfg, log=lambda m: None)
    assert summary["steps"] == 16
    first, last = summary["history"][0]["loss"], summary["history"][-1]["loss"]
    assert last < first
    # and on a fixed batch of real training images, the saved model beats a fresh one
    x, y = _fixed_batch(faces_root)
    from msf.model import MicroSegFormer
    torch.manual_seed(0)
    with torch.no_grad():
        before = seg_loss(MicroSegFormer().eval()(x), y).item()
        after = seg_loss(load_model(tmp_path / "run" / "last.pt")(x), y).item()
    assert after < before - 0.1


def test_checkpoint_records_metadata_and_resumes(tmp_path, faces_root):
    cfg = _tiny(tmp_path, faces_root, phases=[{"epochs": 2, "size": 64, "batch": 8}])
    train(cfg, log=lambda m: None)
    ck = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert ck["epoch"] == 2 and len(ck["val_names"]) == 4 and len(ck["labels"]) == 19
    assert ck["input"]["scale"] == "1/255" and ck["config"]["model"]["embed_dims"] == [32, 64, 128, 192]
    assert len(ck["train_state"]["history"]) == 2 and len(ck["data_sha256"]) == 64
    cfg3 = _tiny(tmp_path, faces_root, phases=[{"epochs": 3, "size": 64, "batch": 8}])
    s = train(cfg3, resume=tmp_path / "run" / "last.pt", log=lambda m: None)
    assert s["epochs"] == 3 and [h["epoch"] for h in s["history"]] == [1, 2, 3]
    resumed = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert resumed["val_names"] == ck["val_names"]


def test_checkpoint_keeper_tracks_the_best_per_size_and_stops_on_patience(tmp_path):
    cfg = config_from_dict({"phases": parse_phases("2x64@4,3x128@4"), "patience": 2})
    state = TrainState()
    keeper = CheckpointKeeper(tmp_path, cfg, state)
    assert keeper.update(0.5, 0) and not keeper.update(0.4, 0)
    assert (state.best_f_score, state.stale_epochs) == (0.5, 1)
    assert keeper.early_stop(0) is None
    # a new validation size: its scores are not comparable, so the best restarts there
    assert keeper.update(0.3, 1) and (state.best_f_score, state.best_phase, state.stale_epochs) == (0.3, 1, 0)
    assert not keeper.update(0.3, 1) and keeper.early_stop(1) is None  # equal is not better
    assert not keeper.update(0.2, 1) and keeper.early_stop(1) == "early stop: 2 epochs without improvement"
    # patience only ends the last phase (earlier phases are the progressive-resolution warm-up)
    assert CheckpointKeeper(tmp_path, cfg, TrainState(best_phase=0, stale_epochs=9)).early_stop(0) is None
    keeper.save({"n": 1}, is_best=False)
    assert keeper.last.is_file() and not keeper.best.exists()
    keeper.save({"n": 2}, is_best=True)
    assert torch.load(keeper.best, weights_only=True) == torch.load(keeper.last, weights_only=True) == {"n": 2}


def test_stop_flag_keeps_the_first_reason():
    stop = StopFlag()
    assert not stop.requested and stop.why == ""
    stop.request("interrupted")
    stop.request("step/time limit")
    assert stop.requested and stop.why == "interrupted"


def test_early_stop_and_resume_continue_the_keepers_state(tmp_path, faces_root):
    # lr 0: the weights never change, so no validation after the first improves on it
    first = _tiny(tmp_path, faces_root, phases=[{"epochs": 2, "size": 32, "batch": 4}], lr=0.0, patience=3,
                  train_limit=8)
    s1 = train(first, log=lambda m: None)
    ck = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert s1["stopped"] == "done" and ck["train_state"]["stale_epochs"] == 1
    assert torch.load(tmp_path / "run" / "best.pt", weights_only=True)["epoch"] == 1  # best.pt = the best epoch
    lines = []
    more = _tiny(tmp_path, faces_root, phases=[{"epochs": 6, "size": 32, "batch": 4}], lr=0.0, patience=3,
                 train_limit=8)
    s2 = train(more, resume=tmp_path / "run" / "last.pt", log=lines.append)
    # stale 1 (restored) + epochs 3 and 4 = patience 3: stops at epoch 4, keeping the first run's best
    assert s2["epochs"] == 4 and s2["stopped"] == "early stop: 3 epochs without improvement"
    assert s2["best_f_score"] == s1["best_f_score"] and not any("*best*" in ln for ln in lines)
    assert lines[-1].startswith("stopped: early stop: 3 epochs without improvement (resume with --resume ")


def test_init_fine_tunes_from_weights_keeping_their_validation_split(tmp_path, faces_root):
    train(_tiny(tmp_path / "a", faces_root, phases=[{"epochs": 1, "size": 64, "batch": 8}]), log=lambda m: None)
    src = tmp_path / "a" / "run" / "last.pt"
    first = torch.load(src, weights_only=True)
    # Another seed would hold out other faces; lr 0 leaves the weights as loaded.
    cfg = _tiny(tmp_path / "b", faces_root, phases=[{"epochs": 1, "size": 64, "batch": 8}], seed=7, lr=0.0)
    summary = train(cfg, init=src, log=lambda m: None)
    tuned = torch.load(tmp_path / "b" / "run" / "last.pt", weights_only=True)
    assert tuned["val_names"] == first["val_names"]
    assert tuned["train_state"]["init_from"] == str(src) and summary["steps"] == 2
    for k, v in first["model_state_dict"].items():
        assert torch.equal(tuned["model_state_dict"][k], v), k


def test_init_refuses_other_architectures_and_resume_together(tmp_path, faces_root):
    from msf.model import MicroSegFormer

    other = tmp_path / "lmsa.pt"
    torch.save(MicroSegFormer(use_lmsa=True).state_dict(), other)
    cfg = _tiny(tmp_path, faces_root)
    with pytest.raises(MsfError, match="does not fit the configured model: .*unexpected keys"):
        train(cfg, init=other, log=lambda m: None)
    with pytest.raises(MsfError, match="either --resume .* or --init"):
        train(cfg, init=other, resume=other, log=lambda m: None)


def test_crop_phase_trains_on_windows_and_validates_whole_images(tmp_path, faces_root):
    samples = list_samples(faces_root)[:3]
    pairs = [read_pair(s) for s in samples]
    ds = FaceDataset(samples, 64, None, pairs, crop=32)
    torch.manual_seed(0)
    full = to_tensor(fit(pairs[1][0], 64, 64))
    full_mask = torch.from_numpy(fit_labels(pairs[1][1], 64, 64)).long()
    x, y = ds[1]
    assert x.shape == (3, 32, 32) and y.shape == (32, 32)
    hits = [(r, c) for r in range(33) for c in range(33) if torch.equal(full[:, r:r + 32, c:c + 32], x)]
    assert hits and any(torch.equal(full_mask[r:r + 32, c:c + 32], y) for r, c in hits)
    # phases of one validation size share the best checkpoint (scores are comparable)
    cfg = _tiny(tmp_path, faces_root, phases=parse_phases("1x64/32@4,1x64@4"))
    summary = train(cfg, log=lambda m: None)
    hist = summary["history"]
    assert [h["crop"] for h in hist] == [32, None]
    assert summary["best_f_score"] == pytest.approx(max(h["val_f_score"] for h in hist), abs=1e-4)


def test_multi_scale_phase_resizes_each_batch_to_a_seeded_size(tmp_path, faces_root, monkeypatch):
    import msf.train as train_mod

    seen = []

    def spy(x, y, size):
        out = resize_batch(x, y, size)
        seen.append((size, tuple(out[0].shape[-2:]), tuple(out[1].shape[-2:])))
        return out

    monkeypatch.setattr(train_mod, "resize_batch", spy)
    cfg = _tiny(tmp_path, faces_root, phases=parse_phases("2x64+32+96@4"))
    summary = train(cfg, log=lambda m: None)
    sizes = [s for s, _, _ in seen]
    assert sizes == [train_mod._input_size_at([64, 32, 96], 0, step) for step in range(summary["steps"])]
    assert len(set(sizes)) > 1 and all(xs == ys == (s, s) for s, xs, ys in seen)
    assert [h["scales"] for h in summary["history"]] == [[32, 96], [32, 96]]
    assert all(h["val_f_score"] >= 0 for h in summary["history"])  # validated at 64² (the phase size)


def test_phase_spec_and_numbers_given_as_text():
    assert parse_phases("40x256@16, 20x512/384@12, 8x512+256+384@8") == [
        {"epochs": 40, "batch": 16, "size": 256}, {"epochs": 20, "batch": 12, "crop": 384, "size": 512},
        {"epochs": 8, "batch": 8, "scales": [256, 384], "size": 512}]
    assert config_from_dict({"phases": parse_phases("8x512+256+384@8")}).phases[0].label() == "512+256+384"
    weighted = config_from_dict({"phases": parse_phases("8x512+512+256@8")}).phases[0]
    assert weighted.train_sizes() == [512, 512, 256] and weighted.label() == "512+512+256"
    for bad in ("20x512/600@12", "20x512@", "x256@16", "8x512+250@8", "8x512+@8"):
        with pytest.raises(MsfError, match="bad phase"):
            parse_phases(bad)
    cfg = config_from_dict({"min_lr": "1e-6", "patience": "5"})  # what YAML 1.1 makes of --set min_lr=1e-6
    assert cfg.min_lr == 1e-6 and cfg.patience == 5
    with pytest.raises(MsfError, match="lr must be a number"):
        config_from_dict({"lr": "fast"})


def test_lr_schedule_warmup_then_cosine():
    cfg = config_from_dict({"phases": [{"epochs": 10}], "warmup_epochs": 2, "lr": 1.0, "min_lr": 0.0})
    assert lr_at(0, cfg) == 0 and lr_at(1, cfg) == pytest.approx(0.5) and lr_at(2, cfg) == pytest.approx(1.0)
    assert lr_at(6, cfg) == pytest.approx(0.5) and lr_at(10, cfg) == pytest.approx(0.0, abs=1e-12)
    vals = [lr_at(e, cfg) for e in np.linspace(2, 10, 20)]
    assert all(a >= b for a, b in zip(vals, vals[1:]))


@pytest.mark.slow
def test_ddp_two_gloo_processes(tmp_path, faces_root):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "msf.cli.train", "--preset", "tiny", "--data", str(faces_root), "--out", str(out),
           "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    ck = torch.load(out / "last.pt", weights_only=True)
    # 16 images, global batch 4 -> 2 per rank -> 4 steps per epoch on each of the 2 ranks
    assert ck["train_state"]["step"] == 4
    assert "2 process(es)" in proc.stdout + proc.stderr
