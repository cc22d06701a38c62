"""Probe (issue 19): a learned distance bias in attention, as a training-only subclass of PointViT.

    python bench/probe_distance_bias.py --epochs 4 --out runs/probes/bias4 [pcdviz train args...]

Each block's attention logits get -softplus(s_h) * d_ij / mean(d) on the patch-to-patch entries (d = distance
between patch centres, CLS row and column untouched), one learned slope per head and block, initialised
ALiBi-like from 8 down to 0.25 (half the heads local, half near global). This is a probe only: the explorer
cannot load such a model (pcdviz.model has no such option), so the script trains with training.train's loop
(build_student swapped), then prints the locality of the student and teacher and the teacher's linear SVM.
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import training.train as T  # noqa: E402
from pcdviz.model import Attention, PointViT  # noqa: E402
from training.evaluate import extract_features, format_locality, locality, open_split, svm_accuracy  # noqa: E402

INIT_SLOPES = (8.0, 4.0, 2.0, 1.0, 0.5, 0.25)


class DistanceBiasAttention(Attention):
    """Attention with logits - softplus(slope_h) * dist; `dist` (B, 1, T, T) is set by the model per forward."""

    def __init__(self, dim: int, n_heads: int):
        super().__init__(dim, n_heads)
        init = torch.tensor([INIT_SLOPES[h % len(INIT_SLOPES)] for h in range(n_heads)])
        self.slope = nn.Parameter(torch.log(torch.expm1(init)))   # softplus^-1
        self.dist: torch.Tensor | None = None

    def forward(self, x, return_attention: bool = False):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.n_heads, C // self.n_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        bias = -F.softplus(self.slope)[None, :, None, None] * self.dist.to(q.dtype)   # (B, H, T, T)
        if return_attention:
            attn = ((q * self.scale) @ k.transpose(-2, -1) + bias).softmax(dim=-1)
            out = attn @ v
        else:
            attn, out = None, F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        return self.proj(out.transpose(1, 2).reshape(B, N, C)), attn


class BiasedPointViT(PointViT):
    def __init__(self, config):
        super().__init__(config)
        for blk in self.blocks:
            old = blk.attn
            blk.attn = DistanceBiasAttention(config.width, config.n_heads)
            blk.attn.qkv, blk.attn.proj = old.qkv, old.proj

    def tokenize(self, points):
        x, pos, centres, idx = super().tokenize(points)
        d = torch.cdist(centres, centres)                       # (B, G, G)
        d = d / d.mean(dim=(1, 2), keepdim=True).clamp(min=1e-6)
        c = self.config.cls_tokens
        d = F.pad(d, (c, 0, c, 0))[:, None]                     # CLS row and column: no bias
        for blk in self.blocks:
            blk.attn.dist = d
        return x, pos, centres, idx


def build_student(cfg):
    net = ORIGINAL_BUILD(cfg)
    biased = BiasedPointViT(net.backbone.config)
    net.backbone = biased
    return net


ORIGINAL_BUILD = T.build_student


def main() -> int:
    T.build_student = build_student
    argv = sys.argv[1:]
    code = T.main(["--recipe", "tiny-cpu", *argv])
    out = Path(argv[argv.index("--out") + 1])
    tensors, meta = T.load_state(out)
    cfg = T.TrainConfig(**meta["config"])
    torch.set_grad_enabled(False)
    test = open_split("synthetic", "test")
    for who in ("student", "teacher"):
        model = BiasedPointViT(T.preset(cfg.model, **cfg.model_overrides))
        model.load_state_dict(T.prefixed(tensors, f"{who}.backbone."))
        model.eval()
        loc = locality(model, test)
        slopes = torch.stack([F.softplus(b.attn.slope) for b in model.blocks])
        print(f"{out} {who} step {meta['step']}: local heads l0-1 {loc['local_heads_share_l01']:.2f}, "
              f"argmax share {loc['argmax_share_mean']:.3f}; slopes per layer "
              + " | ".join(" ".join(f"{s:.2f}" for s in row) for row in slopes.tolist()))
        print(format_locality(loc))
    a, ay = extract_features(model, open_split("synthetic", "train"), "cls+max")
    b, by = extract_features(model, test, "cls+max")
    print(f"  teacher linear SVM {svm_accuracy(a, ay, b, by)['acc'] * 100:.1f}")
    return code


if __name__ == "__main__":
    sys.exit(main())
