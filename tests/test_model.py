import re

import pytest
import torch

from msf.model import MicroSegFormer, count_parameters

from .conftest import perturb


@pytest.mark.parametrize("lmsa, params, keys", [(False, 1_721_939, 156), (True, 1_747_923, 165)])
def test_exact_parameter_counts(lmsa, params, keys):
    model = MicroSegFormer(use_lmsa=lmsa)
    assert count_parameters(model) == params
    assert len(model.state_dict()) == keys
    assert params < 1_821_085  # the course limit the model was designed for


def test_parameter_names_match_public_checkpoints():
    sd = MicroSegFormer(use_lmsa=True).state_dict()
    expected_shapes = {
        "block1.0.attn.kv.weight": (64, 32),
        "block4.1.attn.kv.weight": (384, 192),
        "decoder.linear_c3.weight": (128, 128),
        "decoder.linear_fuse.0.weight": (128, 512),
        "decoder.linear_fuse.2.weight": (128, 128),
        "decoder.conv_seg.weight": (19, 128, 1, 1),
        "decoder.lmsa.dw_conv3x3.weight": (128, 1, 3, 3),
        "decoder.lmsa.pw_conv.weight": (128, 128, 1, 1),
        "decoder.lmsa.fc.0.weight": (32, 128),
        "decoder.lmsa.fc.2.weight": (128, 32),
        "patch_embed1.proj.weight": (32, 3, 7, 7),
        "patch_embed4.proj.weight": (192, 128, 3, 3),
    }
    for k, shape in expected_shapes.items():
        assert tuple(sd[k].shape) == shape, k
    assert "decoder.lmsa.bn.num_batches_tracked" in sd
    # SR conv + norm only where the ratio is > 1 (stages 1-3).
    assert any(k.startswith("block3.1.attn.sr.") for k in sd)
    assert not any(re.match(r"block4\.\d+\.attn\.(sr|norm)\.", k) for k in sd)
    assert sorted({k.split(".")[0] for k in sd}) == sorted(
        [f"patch_embed{i}" for i in range(1, 5)] + [f"block{i}" for i in range(1, 5)]
        + [f"norm{i}" for i in range(1, 5)] + ["decoder"])


def test_cheap_forward_equals_published_graph(trained_like_model):
    x = torch.rand(2, 3, 128, 128, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        fast = trained_like_model(x)
        ref = trained_like_model.forward_reference(x)
    assert fast.shape == (2, 19, 128, 128)
    torch.testing.assert_close(fast, ref, atol=2e-5, rtol=1e-4)


def test_cheap_forward_gradients_equal_reference():
    model = perturb(MicroSegFormer())
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    model(x).square().mean().backward()
    fast = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    model.forward_reference(x).square().mean().backward()
    for n, p in model.named_parameters():
        torch.testing.assert_close(fast[n], p.grad, atol=1e-6, rtol=1e-3, msg=n)


def test_configurable_architecture():
    model = MicroSegFormer(num_classes=5, embed_dims=[8, 16, 24, 32], depths=[1, 1, 1, 1],
                           sr_ratios=[4, 2, 1, 1], mlp_ratio=1.0, decoder_dim=16)
    out = model(torch.rand(1, 3, 64, 64))
    assert out.shape == (1, 5, 64, 64)
    assert count_parameters(model) < 50_000
