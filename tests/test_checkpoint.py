import pytest
import torch

from msf.checkpoint import extract_state_dict, infer_config
from msf.errors import MsfError
from msf.model import MicroSegFormer, load_model


def _logits(model, seed=3):
    x = torch.rand(1, 3, 96, 96, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return model(x)


def test_public_layout_reproduces_logits(tmp_path, trained_like_model):
    sd = trained_like_model.state_dict()
    # LayerNorm and BatchNorm are off their initial values, so a silent mis-load would show.
    assert not torch.allclose(sd["norm1.weight"], torch.ones_like(sd["norm1.weight"]))
    if trained_like_model.config.use_lmsa:
        assert not torch.allclose(sd["decoder.lmsa.bn.running_var"], torch.ones(128))
    path = tmp_path / "public.pth"
    torch.save({"epoch": 7, "model_state_dict": sd, "optimizer_state_dict": {}, "best_f_score": 0.7}, path)
    loaded = load_model(path)
    assert not loaded.training
    assert loaded.config.use_lmsa == trained_like_model.config.use_lmsa
    torch.testing.assert_close(_logits(loaded), _logits(trained_like_model), atol=0, rtol=0)


@pytest.mark.parametrize("layout", ["state_dict", "bare", "module_prefix"])
def test_other_layouts(tmp_path, layout):
    model = MicroSegFormer().eval()
    sd = model.state_dict()
    obj = {"state_dict": sd} if layout == "state_dict" else (
        {f"module.{k}": v for k, v in sd.items()} if layout == "module_prefix" else sd)
    torch.save(obj, tmp_path / "m.pt")
    torch.testing.assert_close(_logits(load_model(tmp_path / "m.pt")), _logits(model))


def test_missing_file_is_one_clear_error(tmp_path):
    with pytest.raises(MsfError, match="checkpoint not found"):
        load_model(tmp_path / "nope.pt")


def test_garbage_file_is_not_a_checkpoint(tmp_path):
    p = tmp_path / "junk.pt"
    p.write_bytes(b"this is not a checkpoint at all")
    with pytest.raises(MsfError, match="not a readable PyTorch checkpoint"):
        load_model(p)


def test_pickled_code_is_refused(tmp_path):
    p = tmp_path / "evil.pt"
    torch.save({"model_state_dict": MicroSegFormer().state_dict(), "payload": ValueError("x")}, p)
    with pytest.raises(MsfError, match="safe loader"):
        load_model(p)


def test_other_architecture_names_the_mismatch(tmp_path):
    sd = MicroSegFormer().state_dict()
    sd["decoder.linear_fuse.2.weight"] = torch.zeros(64, 128)
    del sd["decoder.conv_seg.bias"]
    sd["head.extra.weight"] = torch.zeros(3)
    torch.save({"model_state_dict": sd}, tmp_path / "other.pt")
    with pytest.raises(MsfError) as err:
        load_model(tmp_path / "other.pt")
    msg = str(err.value)
    assert "\n" not in msg
    for needle in ("missing keys: decoder.conv_seg.bias", "unexpected keys: head.extra.weight",
                   "decoder.linear_fuse.2.weight (64, 128) vs (128, 128)"):
        assert needle in msg


def test_non_microsegformer_weights(tmp_path):
    torch.save(torch.nn.Linear(3, 4).state_dict(), tmp_path / "lin.pt")
    with pytest.raises(MsfError, match="not a MicroSegFormer checkpoint"):
        load_model(tmp_path / "lin.pt")


def test_infer_config_reads_ablation_shapes():
    model = MicroSegFormer(embed_dims=[16, 32, 48, 64], depths=[1, 1, 2, 1], sr_ratios=[4, 2, 1, 1])
    cfg = infer_config(extract_state_dict(model.state_dict()))
    assert cfg.embed_dims == [16, 32, 48, 64] and cfg.depths == [1, 1, 2, 1] and cfg.sr_ratios == [4, 2, 1, 1]
