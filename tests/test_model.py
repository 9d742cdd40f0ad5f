import re

import pytest
import torch

from msf.model import (
    LMSA,
    Decoder,
    EfficientAttention,
    FusedAttention,
    FusedDecoder,
    FusedLMSA,
    MicroSegFormer,
    count_parameters,
    reparameterize,
)

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


def _rand(*shape, seed=0):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("heads, sr_ratio", [(1, 1), (1, 2), (2, 4)])
def test_attention_fuse_has_the_same_function(heads, sr_ratio):
    attn = perturb(EfficientAttention(16, heads, sr_ratio)).eval()
    fused = attn.fuse()
    assert isinstance(fused, FusedAttention) and fused.heads == heads
    x = _rand(2, 8 * 8, 16)
    with torch.no_grad():
        torch.testing.assert_close(fused(x, 8, 8), attn(x, 8, 8), atol=1e-5, rtol=1e-4)


def test_lmsa_fuse_folds_batchnorm_statistics():
    lmsa = perturb(LMSA(16)).eval()  # running mean/var off their initial values
    fused = lmsa.fuse()
    assert isinstance(fused, FusedLMSA) and not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    x = _rand(2, 16, 6, 6)
    with torch.no_grad():
        torch.testing.assert_close(fused(x), lmsa(x), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("lmsa", [False, True])
@pytest.mark.parametrize("input_size", [None, 64])
def test_decoder_fuse_equals_published_decoder(lmsa, input_size):
    dec = perturb(Decoder([8, 16, 24, 32], 16, 5, use_lmsa=lmsa)).eval()
    feats = [_rand(2, c, 16 // 2 ** i, 16 // 2 ** i, seed=i) for i, c in enumerate([8, 16, 24, 32])]
    fused = dec.fuse(input_size)
    assert isinstance(fused, FusedDecoder) and (fused.upsample is None) == (input_size is None)
    assert (fused.lmsa is None) != lmsa and (fused.pre is None) != lmsa  # Linear_2 ∘ classifier fold without LMSA
    with torch.no_grad():
        ref = dec.forward_reference(feats, (64, 64))
        torch.testing.assert_close(fused(feats, (64, 64)), ref, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(dec(feats, (64, 64)), ref, atol=1e-5, rtol=1e-4)  # the training forward


def test_decoder_fold_is_shared_by_training_forward_and_fuse():
    dec = perturb(Decoder([8, 16], 16, 5, use_lmsa=False))
    folds = dec.folded_stage_projections()
    assert all(w.requires_grad and b.requires_grad for w, b in folds)  # the training forward backpropagates
    fused = dec.fuse()
    for i, ((w, b), conv) in enumerate(zip(folds, fused.stage)):
        bias = b + dec.linear_fuse[0].bias if i == 0 else b  # the fusion bias, added once
        assert torch.equal(conv.weight.flatten(1), w.detach()) and torch.equal(conv.bias, bias.detach())


@pytest.mark.parametrize("input_size", [None, 64])
def test_reparameterize_walks_the_model_into_its_inference_form(trained_like_model, input_size):
    before = {k: v.clone() for k, v in trained_like_model.state_dict().items()}
    fused = reparameterize(trained_like_model, input_size).eval()
    kinds = {type(m) for m in fused.modules()}
    assert not kinds & {EfficientAttention, LMSA, Decoder, torch.nn.BatchNorm2d}
    assert FusedAttention in kinds and FusedDecoder in kinds
    x = _rand(2, 3, 64, 64, seed=3)
    with torch.no_grad():
        torch.testing.assert_close(fused(x), trained_like_model.forward_reference(x), atol=2e-5, rtol=1e-4)
    # the trained model is left as it was (a copy is converted unless inplace=True)
    assert all(torch.equal(v, before[k]) for k, v in trained_like_model.state_dict().items())
    assert isinstance(trained_like_model.decoder, Decoder)
