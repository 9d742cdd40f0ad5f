"""MicroSegFormer: a 1.72M-parameter SegFormer-style face parser.

Parameter names match the public CE7454 implementation exactly, so its checkpoints load
without any key mapping. ``forward`` runs an algebraically identical but cheaper decoder
(per-stage fusion at native resolution, classification before the ×4 upsample);
``forward_reference`` keeps the literal published graph for checks and the reference export.

Each module that has a cheaper inference form owns it: ``EfficientAttention.fuse()``,
``LMSA.fuse()`` and ``Decoder.fuse()`` return modules with the same function built by exact
weight folding, and ``reparameterize(model)`` converts a whole trained model with them.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from msf.labels import NUM_CLASSES


@dataclass
class ModelConfig:
    """Architecture hyper-parameters; the defaults are the published MicroSegFormer."""

    num_classes: int = NUM_CLASSES
    embed_dims: list[int] = field(default_factory=lambda: [32, 64, 128, 192])
    depths: list[int] = field(default_factory=lambda: [1, 2, 2, 2])
    sr_ratios: list[int] = field(default_factory=lambda: [8, 4, 2, 1])
    num_heads: list[int] = field(default_factory=lambda: [1, 1, 1, 1])
    mlp_ratio: float = 2.0
    decoder_dim: int = 128
    use_lmsa: bool = False
    drop: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


# Stage 1 embeds with a 7×7 stride-4 conv, stages 2–4 with 3×3 stride-2 convs.
_PATCH_KERNELS = (7, 3, 3, 3)
_PATCH_STRIDES = (4, 2, 2, 2)


class OverlapPatchEmbed(nn.Module):
    """Overlapping conv patch embedding followed by LayerNorm over channels."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2)
        self.norm = nn.LayerNorm(out_ch)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        x = self.proj(x)
        h, w = x.shape[-2:]
        return self.norm(x.flatten(2).transpose(1, 2)), h, w


class EfficientAttention(nn.Module):
    """Spatial-reduction attention: keys/values from a strided-conv-reduced token map."""

    def __init__(self, dim: int, heads: int = 1, sr_ratio: int = 1, drop: float = 0.0) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.sr_ratio = sr_ratio
        self.drop = drop
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        if sr_ratio > 1:
            self.sr = nn.Conv2d(dim, dim, sr_ratio, sr_ratio)
            self.norm = nn.LayerNorm(dim)

    def reduced_tokens(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """The token map keys and values are computed from (LN(SR-conv(x)) or x)."""
        if self.sr_ratio == 1:
            return x
        b, n, c = x.shape
        x = self.sr(x.transpose(1, 2).reshape(b, c, h, w))
        return self.norm(x.flatten(2).transpose(1, 2))

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        b, n, c = x.shape
        d = c // self.heads
        q = self.q(x).reshape(b, n, self.heads, d).transpose(1, 2)
        kv = self.kv(self.reduced_tokens(x, h, w))
        k, v = kv.reshape(b, -1, 2, self.heads, d).permute(2, 0, 3, 1, 4)
        drop = self.drop if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=drop)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))

    @torch.no_grad()
    def fuse(self, input_size: int | None = None) -> FusedAttention:
        """The inference form: 1/√d folded into Linear_q and the SR LayerNorm's affine (γ, β) into
        Linear_kv (W' = W·diag(γ), b' = W·β + b); keys and values stay one GEMM. ``input_size``
        (passed to every ``fuse`` by ``reparameterize``) does not matter here."""
        dim = self.q.in_features
        scale = 1.0 / math.sqrt(dim // self.heads)
        w, b = self.kv.weight, self.kv.bias
        norm = None
        if self.sr_ratio > 1:
            gamma, beta = self.norm.weight, self.norm.bias
            norm = nn.LayerNorm(dim, eps=self.norm.eps, elementwise_affine=False)
            w, b = w * gamma[None, :], w @ beta + b
        return FusedAttention(
            q=_linear(self.q.weight * scale, self.q.bias * scale),
            kv=_linear(w, b),
            proj=copy.deepcopy(self.proj),
            sr=copy.deepcopy(self.sr) if self.sr_ratio > 1 else None,
            norm=norm,
            core=AttentionCore(self.heads),
        )


def prescaled_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    """softmax(q kᵀ) v for B×N×C tokens with q already scaled, as MatMul -> Softmax -> MatMul
    (the pattern TensorRT's fused-attention pass matches)."""
    if heads == 1:
        return torch.matmul(torch.softmax(torch.matmul(q, k.transpose(1, 2)), dim=-1), v)
    b, n, c = q.shape
    qh, kh, vh = (_split_heads(t, heads) for t in (q, k, v))
    out = torch.matmul(torch.softmax(torch.matmul(qh, kh.transpose(-1, -2)), dim=-1), vh)
    return out.transpose(1, 2).reshape(b, n, c)


def _split_heads(t: torch.Tensor, heads: int) -> torch.Tensor:
    b, n, c = t.shape
    return t.reshape(b, n, heads, c // heads).transpose(1, 2)


class AttentionCore(nn.Module):
    """The attention core of a fused attention module, swappable: export replaces it with a
    module that emits one fused ONNX op."""

    def __init__(self, heads: int) -> None:
        super().__init__()
        self.heads = heads

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return prescaled_attention(q, k, v, self.heads)


class FusedAttention(nn.Module):
    """Inference form of ``EfficientAttention`` (see its ``fuse``); same function in eval mode."""

    def __init__(self, q: nn.Linear, kv: nn.Linear, proj: nn.Linear, sr: nn.Conv2d | None,
                 norm: nn.LayerNorm | None, core: AttentionCore) -> None:
        super().__init__()
        self.q, self.kv, self.proj = q, kv, proj
        self.sr_ratio = sr.stride[0] if sr is not None else 1
        if sr is not None:
            self.sr, self.norm = sr, norm
        self.core = core

    @property
    def heads(self) -> int:
        return self.core.heads

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        b, n, c = x.shape
        q = self.q(x)
        if self.sr_ratio > 1:
            r = self.sr(x.transpose(1, 2).reshape(b, c, h, w))
            x = self.norm(r.flatten(2).transpose(1, 2))
        k, v = self.kv(x).split(c, dim=-1)
        return self.proj(self.core(q, k, v))


def _linear(weight: torch.Tensor, bias: torch.Tensor) -> nn.Linear:
    lin = nn.Linear(weight.shape[1], weight.shape[0])
    lin.weight.data, lin.bias.data = weight.detach().clone(), bias.detach().clone()
    return lin


def _conv1x1(weight: torch.Tensor, bias: torch.Tensor) -> nn.Conv2d:
    """A 1×1 convolution applying the out×in matrix ``weight`` per pixel."""
    conv = nn.Conv2d(weight.shape[1], weight.shape[0], 1)
    conv.weight.data = weight.detach().reshape(*weight.shape, 1, 1).clone()
    conv.bias.data = bias.detach().clone()
    return conv


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class Block(nn.Module):
    """Pre-norm transformer block: x + Attn(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, dim: int, heads: int, sr_ratio: int, mlp_ratio: float, drop: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = EfficientAttention(dim, heads, sr_ratio, drop)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), h, w)
        return x + self.mlp(self.norm2(x))


class LMSA(nn.Module):
    """Lightweight multi-scale attention: depthwise-separable conv, BN, squeeze-excite gate, residual."""

    def __init__(self, dim: int, reduction: int = 4) -> None:
        super().__init__()
        self.dw_conv3x3 = nn.Conv2d(dim, dim, 3, padding=1, groups=dim, bias=False)
        self.pw_conv = nn.Conv2d(dim, dim, 1, bias=False)
        self.bn = nn.BatchNorm2d(dim)
        self.fc = nn.Sequential(
            nn.Linear(dim, dim // reduction, bias=False),
            nn.ReLU(inplace=True),
            nn.Linear(dim // reduction, dim, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn(self.pw_conv(self.dw_conv3x3(x)))
        gate = torch.sigmoid(self.fc(out.mean(dim=(2, 3))))
        return out * gate[:, :, None, None] + x

    @torch.no_grad()
    def fuse(self, input_size: int | None = None) -> FusedLMSA:
        """The inference form: the BatchNorm (running statistics) folded into the pointwise conv.
        ``input_size`` (passed to every ``fuse`` by ``reparameterize``) does not matter here."""
        bn = self.bn
        s = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        pw = nn.Conv2d(self.dw_conv3x3.out_channels, self.pw_conv.out_channels, 1)
        pw.weight.data = self.pw_conv.weight * s[:, None, None, None]
        pw.bias.data = bn.bias - bn.running_mean * s
        return FusedLMSA(copy.deepcopy(self.dw_conv3x3), pw, copy.deepcopy(self.fc[0]), copy.deepcopy(self.fc[2]))


class FusedLMSA(nn.Module):
    """Inference form of ``LMSA`` (see its ``fuse``); same function as LMSA in eval mode."""

    def __init__(self, dw: nn.Conv2d, pw: nn.Conv2d, fc1: nn.Linear, fc2: nn.Linear) -> None:
        super().__init__()
        self.dw, self.pw, self.fc1, self.fc2 = dw, pw, fc1, fc2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.pw(self.dw(x))
        gate = torch.sigmoid(self.fc2(torch.relu(self.fc1(out.mean(dim=(2, 3))))))
        return out * gate[:, :, None, None] + x


class Decoder(nn.Module):
    """All-MLP decoder: per-stage projection, fusion MLP, optional LMSA, 1×1 classifier."""

    def __init__(self, in_dims: list[int], dim: int, num_classes: int, use_lmsa: bool,
                 drop: float = 0.0) -> None:
        super().__init__()
        for i, c in enumerate(in_dims, start=1):
            setattr(self, f"linear_c{i}", nn.Linear(c, dim))
        self.linear_fuse = nn.Sequential(
            nn.Linear(dim * len(in_dims), dim), nn.GELU(), nn.Linear(dim, dim)
        )
        self.lmsa = LMSA(dim) if use_lmsa else None
        self.dropout = nn.Dropout2d(drop)
        self.conv_seg = nn.Conv2d(dim, num_classes, 1)
        self.num_stages = len(in_dims)
        self.dim = dim

    def stage_linears(self) -> list[nn.Linear]:
        return [getattr(self, f"linear_c{i}") for i in range(1, self.num_stages + 1)]

    def folded_stage_projections(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The decoder fold: stage i's slice S_i of the fusion Linear_1 folded into its projection,
        (S_i·W_i, S_i·b_i). Linear_1 on the concatenation equals the sum of these applied per stage,
        and bilinear upsampling commutes with per-pixel linear maps, so each runs at its stage's own
        resolution. The fusion bias is not included (it is added once, after the sum).
        Differentiable: the cheap training forward and ``fuse`` both use it."""
        w = self.linear_fuse[0].weight
        d = self.dim
        return [(w[:, i * d:(i + 1) * d] @ lin.weight, w[:, i * d:(i + 1) * d] @ lin.bias)
                for i, lin in enumerate(self.stage_linears())]

    def _classify(self, fused: torch.Tensor, out_size: tuple[int, int], classify_first: bool) -> torch.Tensor:
        """Fusion Linear_2, LMSA, then classifier and ×4 upsample (in either order)."""
        x = self.linear_fuse[2](fused).permute(0, 3, 1, 2)  # B×dim×H1×W1
        if self.lmsa is not None:
            x = self.lmsa(x)
        x = self.dropout(x)
        if classify_first:
            # conv_seg is per-pixel linear and bilinear weights sum to 1: the maps commute.
            return F.interpolate(self.conv_seg(x), size=out_size, mode="bilinear", align_corners=False)
        return self.conv_seg(F.interpolate(x, size=out_size, mode="bilinear", align_corners=False))

    def forward(self, feats: list[torch.Tensor], out_size: tuple[int, int]) -> torch.Tensor:
        """Cheap, exact decoder: each stage's slice of the fusion Linear is applied at the
        stage's own resolution (folded into its projection), then upsampled and summed."""
        h1, w1 = feats[0].shape[-2:]
        total = None
        for i, (f, (weight, bias)) in enumerate(zip(feats, self.folded_stage_projections())):
            y = F.linear(f.permute(0, 2, 3, 1), weight, bias)
            if i:
                y = F.interpolate(y.permute(0, 3, 1, 2), size=(h1, w1), mode="bilinear",
                                  align_corners=False).permute(0, 2, 3, 1)
            total = y if total is None else total + y
        fused = self.linear_fuse[1](total + self.linear_fuse[0].bias)
        return self._classify(fused, out_size, classify_first=True)

    def forward_reference(self, feats: list[torch.Tensor], out_size: tuple[int, int]) -> torch.Tensor:
        """The literal published decoder: project, upsample 128 channels, concatenate, fuse."""
        h1, w1 = feats[0].shape[-2:]
        parts = []
        for i, (f, lin) in enumerate(zip(feats, self.stage_linears())):
            y = lin(f.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
            if i:
                y = F.interpolate(y, size=(h1, w1), mode="bilinear", align_corners=False)
            parts.append(y)
        x = torch.cat(parts, dim=1).permute(0, 2, 3, 1)
        fused = self.linear_fuse[1](self.linear_fuse[0](x))
        return self._classify(fused, out_size, classify_first=False)

    @torch.no_grad()
    def fuse(self, input_size: int | None = None) -> FusedDecoder:
        """The inference form: the decoder fold (``folded_stage_projections``) as 1×1 convs, the
        fusion bias added once; Linear_2 ∘ classifier folded into one map when no LMSA sits between
        them; LMSA fused; classification before the ×4 upsample. With ``input_size`` (a fixed
        square input) the stage upsamples become MatMuls."""
        fuse2, seg = self.linear_fuse[2], self.conv_seg
        stage = nn.ModuleList()
        for i, (weight, bias) in enumerate(self.folded_stage_projections()):
            stage.append(_conv1x1(weight, bias + self.linear_fuse[0].bias if i == 0 else bias))
        seg_w = seg.weight.reshape(seg.out_channels, -1)
        if self.lmsa is None:
            # Linear_2 and the classifier have nothing between them: one dim -> classes map.
            pre, lmsa = None, None
            cls = _conv1x1(seg_w @ fuse2.weight, seg_w @ fuse2.bias + seg.bias)
        else:
            pre, lmsa = _conv1x1(fuse2.weight, fuse2.bias), self.lmsa.fuse()
            cls = _conv1x1(seg_w, seg.bias)
        upsample = None
        if input_size:
            s1 = input_size // 4
            sizes = [-(-s1 // 2 ** i) for i in range(1, len(stage))]  # conv output sizes (ceil)
            upsample = nn.ModuleList(SeparableUpsample((s, s), (s1, s1)) for s in sizes)
        return FusedDecoder(stage, pre, lmsa, cls, upsample)


def interpolation_matrix(n_in: int, n_out: int) -> torch.Tensor:
    """The n_out×n_in matrix of 1-D linear interpolation (align_corners=False, edges clamped)."""
    eye = torch.eye(n_in)[None]
    return F.interpolate(eye, size=n_out, mode="linear", align_corners=False)[0].T.contiguous()


class SeparableUpsample(nn.Module):
    """Bilinear upsampling of a fixed-size map as two MatMuls, A_h · X · A_wᵀ (exact: bilinear is
    separable). ONNX Runtime's CPU provider runs these ~5× faster than Resize for the decoder's
    small stage maps."""

    def __init__(self, in_hw: tuple[int, int], out_hw: tuple[int, int]) -> None:
        super().__init__()
        self.in_hw, self.out_hw = tuple(in_hw), tuple(out_hw)
        self.register_buffer("a_h", interpolation_matrix(in_hw[0], out_hw[0]))
        self.register_buffer("a_wt", interpolation_matrix(in_hw[1], out_hw[1]).T.contiguous())

    def forward(self, x: torch.Tensor, out_hw: tuple[int, int]) -> torch.Tensor:
        if tuple(x.shape[-2:]) != self.in_hw or tuple(out_hw) != self.out_hw:
            return F.interpolate(x, size=out_hw, mode="bilinear", align_corners=False)
        return torch.matmul(self.a_h, torch.matmul(x, self.a_wt))


class FusedDecoder(nn.Module):
    """Inference form of ``Decoder`` (see its ``fuse``): per-stage 1×1 convs at native resolution,
    summed at 1/4 scale, GELU, (LMSA,) classifier, ×4 upsample. Same function as the decoder."""

    def __init__(self, stage: nn.ModuleList, pre: nn.Conv2d | None, lmsa: FusedLMSA | None, cls: nn.Conv2d,
                 upsample: nn.ModuleList | None = None) -> None:
        super().__init__()
        self.stage, self.pre, self.lmsa, self.cls, self.upsample = stage, pre, lmsa, cls, upsample

    def forward(self, feats: list[torch.Tensor], out_size: tuple[int, int]) -> torch.Tensor:
        size = tuple(feats[0].shape[-2:])
        x = self.stage[0](feats[0])
        for i, (conv, f) in enumerate(zip(self.stage[1:], feats[1:])):
            if self.upsample is not None:
                x = x + self.upsample[i](conv(f), size)
            else:
                x = x + F.interpolate(conv(f), size=size, mode="bilinear", align_corners=False)
        x = F.gelu(x)
        if self.lmsa is not None:
            x = self.lmsa(self.pre(x))
        return F.interpolate(self.cls(x), size=out_size, mode="bilinear", align_corners=False)


class MicroSegFormer(nn.Module):
    """MicroSegFormer face parser. Input: N×3×H×W RGB in [0, 1]; output: N×classes×H×W logits."""

    def __init__(self, num_classes: int = NUM_CLASSES, use_lmsa: bool = False,
                 config: ModelConfig | None = None, **overrides) -> None:
        super().__init__()
        cfg = config or ModelConfig(num_classes=num_classes, use_lmsa=use_lmsa, **overrides)
        self.config = cfg
        dims = cfg.embed_dims
        in_chs = [3] + dims[:-1]
        for i in range(len(dims)):
            n = i + 1
            setattr(self, f"patch_embed{n}",
                    OverlapPatchEmbed(in_chs[i], dims[i], _PATCH_KERNELS[i], _PATCH_STRIDES[i]))
            setattr(self, f"block{n}", nn.ModuleList(
                Block(dims[i], cfg.num_heads[i], cfg.sr_ratios[i], cfg.mlp_ratio, cfg.drop)
                for _ in range(cfg.depths[i])
            ))
            setattr(self, f"norm{n}", nn.LayerNorm(dims[i]))
        self.decoder = Decoder(dims, cfg.decoder_dim, cfg.num_classes, cfg.use_lmsa, cfg.drop)

    @property
    def num_stages(self) -> int:
        return len(self.config.embed_dims)

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The four stage feature maps, each N×C_i×H_i×W_i."""
        return encode_stages(self, x, self.num_stages)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encode(x), tuple(x.shape[-2:]))

    def forward_reference(self, x: torch.Tensor) -> torch.Tensor:
        """The published forward graph, op for op (slower; same function as ``forward``)."""
        return self.decoder.forward_reference(self.encode(x), tuple(x.shape[-2:]))


def encode_stages(owner: nn.Module, x: torch.Tensor, num_stages: int) -> list[torch.Tensor]:
    """Run ``owner``'s patch_embed{n} / block{n} / norm{n} stages (the training model's or its
    deploy rewrite's) and return each stage's output as an N×C×H×W map."""
    feats = []
    for n in range(1, num_stages + 1):
        tokens, h, w = getattr(owner, f"patch_embed{n}")(x)
        for blk in getattr(owner, f"block{n}"):
            tokens = blk(tokens, h, w)
        tokens = getattr(owner, f"norm{n}")(tokens)
        x = tokens.transpose(1, 2).reshape(tokens.shape[0], -1, h, w)
        feats.append(x)
    return feats


def reparameterize(model: nn.Module, input_size: int | None = None, inplace: bool = False) -> nn.Module:
    """The inference form of a trained model: every submodule that has a ``fuse(input_size)``
    is replaced by what it returns (its exact weight folding); the rest is walked into.
    ``input_size`` = a fixed square input size the fused forms may specialise for (None: any).
    Use the result in eval mode; it has the model's function, not its parameter names."""
    if not inplace:
        model = copy.deepcopy(model)

    def _walk(parent: nn.Module) -> None:
        for name, child in parent.named_children():
            if callable(getattr(child, "fuse", None)):
                setattr(parent, name, child.fuse(input_size))
            else:
                _walk(child)

    _walk(model)
    return model


def count_parameters(model: nn.Module) -> int:
    """Parameter count as the course counts it: sum of numel over ``parameters()``."""
    return sum(p.numel() for p in model.parameters())


def load_model(path: str | Path | None = None, map_location: str | torch.device = "cpu") -> MicroSegFormer:
    """Load a MicroSegFormer in eval mode from any accepted checkpoint layout (state dict, or a
    dict with ``model_state_dict`` or ``state_dict``, with or without a ``module.`` prefix).

    With no path, the weights shipped inside the package are loaded.
    """
    from msf.checkpoint import load_checkpoint_model

    return load_checkpoint_model(path, map_location)
