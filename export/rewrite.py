"""The deploy rewrite (DESIGN §6): an inference-only module with the same function as the
trained MicroSegFormer, built from exact algebraic folds.

1. attention: 1/√d folded into Linear_q; the SR LayerNorm's affine folded into Linear_kv;
   the core softmax(q kᵀ) v emitted for the target (see ``AttentionCore``);
2. decoder: each stage's slice of the fusion Linear folded into its projection and applied at
   the stage's own resolution; fusion Linear_2 ∘ classifier folded (no LMSA); LMSA's BatchNorm
   folded into its pointwise conv; classification before the ×4 upsample;
3. graph ends: optional uint8 NHWC (RGB or BGR) input with /255 and channel order folded into
   the first convolution, optional class-id output.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from msf.model import EfficientAttention, MicroSegFormer, encode_stages

ATTENTION_MODES = ("matmul", "mha", "attention23")


@dataclass(frozen=True)
class GraphEnds:
    """What the graph takes and returns (DESIGN §6 graph contract)."""

    io: str = "float"      # float: float32 NCHW RGB in [0,1]; uint8: uint8 NHWC frames
    color: str = "rgb"     # channel order of uint8 input
    head: str = "logits"   # logits: float N×C×H×W; labels: N×H×W class ids

    def __post_init__(self) -> None:
        if self.io not in ("float", "uint8"):
            raise ValueError(f"io must be float or uint8, not {self.io!r}")
        if self.color not in ("rgb", "bgr"):
            raise ValueError(f"color must be rgb or bgr, not {self.color!r}")
        if self.head not in ("logits", "labels"):
            raise ValueError(f"head must be logits or labels, not {self.head!r}")


class _FusedAttentionOp(torch.autograd.Function):
    """softmax(q kᵀ) v on pre-scaled q; exported as one fused ONNX op (ORT contrib or opset 23)."""

    @staticmethod
    def forward(ctx, q, k, v, heads: int, mode: str):  # noqa: ARG004
        return _attention_reference(q, k, v, heads)

    @staticmethod
    def symbolic(g, q, k, v, heads: int, mode: str):
        if mode == "mha":
            out = g.op("com.microsoft::MultiHeadAttention", q, k, v, num_heads_i=heads, scale_f=1.0)
        else:
            out = g.op("Attention", q, k, v, q_num_heads_i=heads, kv_num_heads_i=heads, scale_f=1.0)
        out.setType(q.type())  # same shape and dtype as q (v has q's width)
        return out


def _split_heads(t: torch.Tensor, heads: int) -> torch.Tensor:
    b, n, c = t.shape
    return t.reshape(b, n, heads, c // heads).transpose(1, 2)


def _attention_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    """Pre-scaled attention as MatMul -> Softmax -> MatMul (the pattern TensorRT fuses)."""
    if heads == 1:
        return torch.matmul(torch.softmax(torch.matmul(q, k.transpose(1, 2)), dim=-1), v)
    b, n, c = q.shape
    qh, kh, vh = (_split_heads(t, heads) for t in (q, k, v))
    out = torch.matmul(torch.softmax(torch.matmul(qh, kh.transpose(-1, -2)), dim=-1), vh)
    return out.transpose(1, 2).reshape(b, n, c)


class DeployAttention(nn.Module):
    """Spatial-reduction attention with scale and SR-LayerNorm affine folded into the GEMMs."""

    def __init__(self, attn: EfficientAttention, mode: str) -> None:
        super().__init__()
        if mode not in ATTENTION_MODES:
            raise ValueError(f"attention mode must be one of {ATTENTION_MODES}, not {mode!r}")
        dim = attn.q.in_features
        self.heads, self.mode, self.sr_ratio = attn.heads, mode, attn.sr_ratio
        scale = 1.0 / math.sqrt(dim // attn.heads)
        self.q = nn.Linear(dim, dim)
        self.q.weight.data = attn.q.weight.data * scale
        self.q.bias.data = attn.q.bias.data * scale
        self.kv = nn.Linear(dim, 2 * dim)
        w, b = attn.kv.weight.data, attn.kv.bias.data
        if attn.sr_ratio > 1:
            self.sr = copy.deepcopy(attn.sr)
            gamma, beta = attn.norm.weight.data, attn.norm.bias.data
            self.norm = nn.LayerNorm(dim, eps=attn.norm.eps, elementwise_affine=False)
            w, b = w * gamma[None, :], w @ beta + b
        self.kv.weight.data, self.kv.bias.data = w.clone(), b.clone()
        self.proj = copy.deepcopy(attn.proj)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        b, n, c = x.shape
        q = self.q(x)
        if self.sr_ratio > 1:
            r = self.sr(x.transpose(1, 2).reshape(b, c, h, w))
            x = self.norm(r.flatten(2).transpose(1, 2))
        k, v = self.kv(x).split(c, dim=-1)
        if self.mode == "matmul":
            out = _attention_reference(q, k, v, self.heads)
        else:
            out = _FusedAttentionOp.apply(q, k, v, self.heads, self.mode)
        return self.proj(out)


def _conv1x1(weight: torch.Tensor, bias: torch.Tensor) -> nn.Conv2d:
    conv = nn.Conv2d(weight.shape[1], weight.shape[0], 1)
    conv.weight.data = weight.reshape(*weight.shape, 1, 1).clone()
    conv.bias.data = bias.clone()
    return conv


class DeployLMSA(nn.Module):
    """LMSA with its BatchNorm folded into the pointwise conv."""

    def __init__(self, lmsa) -> None:
        super().__init__()
        bn = lmsa.bn
        s = bn.weight.data / torch.sqrt(bn.running_var + bn.eps)
        self.dw = copy.deepcopy(lmsa.dw_conv3x3)
        self.pw = nn.Conv2d(self.dw.out_channels, lmsa.pw_conv.out_channels, 1)
        self.pw.weight.data = lmsa.pw_conv.weight.data * s[:, None, None, None]
        self.pw.bias.data = bn.bias.data - bn.running_mean * s
        self.fc1 = copy.deepcopy(lmsa.fc[0])
        self.fc2 = copy.deepcopy(lmsa.fc[2])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.pw(self.dw(x))
        gate = torch.sigmoid(self.fc2(torch.relu(self.fc1(out.mean(dim=(2, 3))))))
        return out * gate[:, :, None, None] + x


def interpolation_matrix(n_in: int, n_out: int) -> torch.Tensor:
    """The n_out×n_in matrix of 1-D linear interpolation (align_corners=False, edges clamped)."""
    eye = torch.eye(n_in)[None]
    return F.interpolate(eye, size=n_out, mode="linear", align_corners=False)[0].T.contiguous()


class SeparableUpsample(nn.Module):
    """Bilinear upsampling of a fixed-size map as two MatMuls, A_h · X · A_wᵀ (exact: bilinear is
    separable). ORT CPU runs these ~5× faster than Resize for the decoder's small stage maps."""

    def __init__(self, in_hw: tuple[int, int], out_hw: tuple[int, int]) -> None:
        super().__init__()
        self.in_hw, self.out_hw = tuple(in_hw), tuple(out_hw)
        self.register_buffer("a_h", interpolation_matrix(in_hw[0], out_hw[0]))
        self.register_buffer("a_wt", interpolation_matrix(in_hw[1], out_hw[1]).T.contiguous())

    def forward(self, x: torch.Tensor, out_hw: tuple[int, int]) -> torch.Tensor:
        if tuple(x.shape[-2:]) != self.in_hw or tuple(out_hw) != self.out_hw:
            return F.interpolate(x, size=out_hw, mode="bilinear", align_corners=False)
        return torch.matmul(self.a_h, torch.matmul(x, self.a_wt))


class DeployDecoder(nn.Module):
    """Folded all-MLP decoder: per-stage 1×1 convs at native resolution, summed at 1/4 scale."""

    def __init__(self, dec, input_size: int | None = None) -> None:
        super().__init__()
        fuse0, fuse2, seg = dec.linear_fuse[0], dec.linear_fuse[2], dec.conv_seg
        d = dec.dim
        self.stage = nn.ModuleList()
        for i, lin in enumerate(dec.stage_linears()):
            s = fuse0.weight.data[:, i * d:(i + 1) * d]
            bias = s @ lin.bias.data + (fuse0.bias.data if i == 0 else 0)  # fusion bias added once
            self.stage.append(_conv1x1(s @ lin.weight.data, bias))
        seg_w = seg.weight.data.reshape(seg.out_channels, -1)
        if dec.lmsa is None:
            # Linear_2 and the classifier have nothing between them: one 128 -> classes map.
            self.pre = None
            self.lmsa = None
            self.cls = _conv1x1(seg_w @ fuse2.weight.data, seg_w @ fuse2.bias.data + seg.bias.data)
        else:
            self.pre = _conv1x1(fuse2.weight.data, fuse2.bias.data)
            self.lmsa = DeployLMSA(dec.lmsa)
            self.cls = _conv1x1(seg_w, seg.bias.data)
        # With a known input size the stage maps have fixed sizes: upsample them by MatMul.
        self.upsample = None
        if input_size:
            s1 = input_size // 4
            sizes = [-(-s1 // 2 ** i) for i in range(1, len(self.stage))]  # conv output sizes (ceil)
            self.upsample = nn.ModuleList(SeparableUpsample((s, s), (s1, s1)) for s in sizes)

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


class DeployMicroSegFormer(nn.Module):
    """Inference form of MicroSegFormer; same function as ``model.forward_reference``."""

    def __init__(self, model: MicroSegFormer, attention: str = "matmul", ends: GraphEnds | None = None,
                 input_size: int | None = None) -> None:
        super().__init__()
        model = copy.deepcopy(model).eval().float()
        self.ends = ends or GraphEnds()
        self.num_stages = model.num_stages
        for n in range(1, self.num_stages + 1):
            setattr(self, f"patch_embed{n}", getattr(model, f"patch_embed{n}"))
            blocks = getattr(model, f"block{n}")
            for blk in blocks:
                blk.attn = DeployAttention(blk.attn, attention)
            setattr(self, f"block{n}", blocks)
            setattr(self, f"norm{n}", getattr(model, f"norm{n}"))
        self.decoder = DeployDecoder(model.decoder, input_size)
        if self.ends.io == "uint8":
            conv = self.patch_embed1.proj
            w = conv.weight.data / 255.0
            if self.ends.color == "bgr":
                w = w.flip(1)  # the frame's B,G,R channels meet the weights trained for R,G,B
            conv.weight.data = w
        self.attention = attention

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = image.permute(0, 3, 1, 2).float() if self.ends.io == "uint8" else image
        logits = self.decoder(encode_stages(self, x, self.num_stages), x.shape[-2:])
        if self.ends.head == "labels":
            return logits.argmax(dim=1).to(torch.uint8)
        return logits


def deploy(model: MicroSegFormer, attention: str = "matmul", ends: GraphEnds | None = None,
           input_size: int | None = None) -> DeployMicroSegFormer:
    """The deploy rewrite of a trained model (eval mode, fp32); ``input_size`` = a fixed square
    input size the graph is specialised for (None: any size)."""
    return DeployMicroSegFormer(model, attention, ends, input_size).eval()
