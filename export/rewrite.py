"""The deploy rewrite: an inference-only module with the same function as the trained
MicroSegFormer, built from exact algebraic folds.

1. model folds: ``msf.model.reparameterize``, which calls each module's own ``fuse()``
   (attention: 1/√d into Linear_q, SR LayerNorm affine into Linear_kv; decoder: the per-stage
   fold, Linear_2 ∘ classifier, LMSA's BatchNorm; classification before the ×4 upsample);
2. attention core: softmax(q kᵀ) v emitted for the target (``ATTENTION_MODES``): the plain
   MatMul -> Softmax -> MatMul pattern, or one fused ONNX op (``OnnxAttentionCore``);
3. graph ends: optional uint8 NHWC (RGB or BGR) input with /255 and channel order folded into
   the first convolution, optional class-id output.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from msf.contract import GraphEnds
from msf.model import AttentionCore, FusedAttention, MicroSegFormer, encode_stages, prescaled_attention, reparameterize

ATTENTION_MODES = ("matmul", "mha", "attention23")


class _FusedAttentionOp(torch.autograd.Function):
    """softmax(q kᵀ) v on pre-scaled q; exported as one fused ONNX op (ORT contrib or opset 23)."""

    @staticmethod
    def forward(ctx, q, k, v, heads: int, mode: str):  # noqa: ARG004
        return prescaled_attention(q, k, v, heads)

    @staticmethod
    def symbolic(g, q, k, v, heads: int, mode: str):
        if mode == "mha":
            out = g.op("com.microsoft::MultiHeadAttention", q, k, v, num_heads_i=heads, scale_f=1.0)
        else:
            out = g.op("Attention", q, k, v, q_num_heads_i=heads, kv_num_heads_i=heads, scale_f=1.0)
        out.setType(q.type())  # same shape and dtype as q (v has q's width)
        return out


class OnnxAttentionCore(AttentionCore):
    """An attention core traced as one fused ONNX op: ``mha`` (com.microsoft.MultiHeadAttention) or
    ``attention23`` (traced as the contrib op, renamed after export); PyTorch runs the plain core."""

    def __init__(self, heads: int, mode: str) -> None:
        super().__init__(heads)
        self.mode = mode

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return _FusedAttentionOp.apply(q, k, v, self.heads, self.mode)


class DeployMicroSegFormer(nn.Module):
    """Inference form of MicroSegFormer; same function as ``model.forward_reference``."""

    def __init__(self, model: MicroSegFormer, attention: str = "matmul", ends: GraphEnds | None = None,
                 input_size: int | None = None) -> None:
        super().__init__()
        if attention not in ATTENTION_MODES:
            raise ValueError(f"attention mode must be one of {ATTENTION_MODES}, not {attention!r}")
        model = reparameterize(copy.deepcopy(model).eval().float(), input_size, inplace=True)
        if attention != "matmul":
            for attn in [m for m in model.modules() if isinstance(m, FusedAttention)]:
                attn.core = OnnxAttentionCore(attn.heads, attention)
        self.ends = ends or GraphEnds()
        self.num_stages = model.num_stages
        for n in range(1, self.num_stages + 1):
            for part in ("patch_embed", "block", "norm"):
                setattr(self, f"{part}{n}", getattr(model, f"{part}{n}"))
        self.decoder = model.decoder
        if self.ends.io == "uint8":
            conv = self.patch_embed1.proj
            w = conv.weight.data / 255.0
            if self.ends.color == "bgr":
                w = w.flip(1)  # the frame's B,G,R channels meet the weights trained for R,G,B
            conv.weight.data = w
        self.attention = attention

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = image.permute(0, 3, 1, 2) if self.ends.io == "uint8" else image
        dtype = self.patch_embed1.proj.weight.dtype  # float32, or float16 after .half()
        if x.dtype != dtype:  # uint8 frames (0..255 is exact in fp16) or fp32 input to an fp16 model
            x = x.to(dtype)
        logits = self.decoder(encode_stages(self, x, self.num_stages), x.shape[-2:])
        if self.ends.head == "labels":
            return logits.argmax(dim=1).to(torch.uint8)
        return logits


def deploy(model: MicroSegFormer, attention: str = "matmul", ends: GraphEnds | None = None,
           input_size: int | None = None) -> DeployMicroSegFormer:
    """The deploy rewrite of a trained model (eval mode, fp32); ``input_size`` = a fixed square
    input size the graph is specialised for (None: any size)."""
    return DeployMicroSegFormer(model, attention, ends, input_size).eval()
