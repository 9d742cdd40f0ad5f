"""MicroSegFormer: a 1.72M-parameter SegFormer-style face parser (DESIGN §3).

Parameter names match the public CE7454 implementation exactly, so its checkpoints load
without any key mapping. ``forward`` runs an algebraically identical but cheaper decoder
(per-stage fusion at native resolution, classification before the ×4 upsample);
``forward_reference`` keeps the literal published graph for checks and the reference export.
"""

from __future__ import annotations

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

    def _head(self, fused: torch.Tensor, out_size: tuple[int, int], classify_first: bool) -> torch.Tensor:
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
        fuse = self.linear_fuse[0]
        h1, w1 = feats[0].shape[-2:]
        total = None
        for i, (f, lin) in enumerate(zip(feats, self.stage_linears())):
            s = fuse.weight[:, i * self.dim:(i + 1) * self.dim]
            y = F.linear(f.permute(0, 2, 3, 1), s @ lin.weight, s @ lin.bias)
            if i:
                y = F.interpolate(y.permute(0, 3, 1, 2), size=(h1, w1), mode="bilinear",
                                  align_corners=False).permute(0, 2, 3, 1)
            total = y if total is None else total + y
        fused = self.linear_fuse[1](total + fuse.bias)
        return self._head(fused, out_size, classify_first=True)

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
        return self._head(fused, out_size, classify_first=False)


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


def count_parameters(model: nn.Module) -> int:
    """Parameter count as the course counts it: sum of numel over ``parameters()``."""
    return sum(p.numel() for p in model.parameters())


def load_model(path: str | Path | None = None, map_location: str | torch.device = "cpu") -> MicroSegFormer:
    """Load a MicroSegFormer in eval mode from any accepted checkpoint layout (DESIGN §3.3).

    With no path, the weights shipped inside the package are loaded.
    """
    from msf.checkpoint import load_checkpoint_model

    return load_checkpoint_model(path, map_location)
