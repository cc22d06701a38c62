"""Point ViT (Point-MAE-style tokenizer + DINO ViT blocks that can return attention) and the DINO head.

Style follows facebookresearch/dino `vision_transformer.py`: Attention / Block / DropPath, a fused
attention path for training and a plain path that hands back the softmaxed weights for the explorer.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from pcdviz.ops import FPS_RULES, FPS_STARTS, farthest_point_sample, index_points, knn


# --------------------------------------------------------------------------- config


@dataclass
class PointViTConfig:
    """Architecture of a PointViT; saved verbatim in each checkpoint's config.json."""

    n_points: int  # input size the model expects (the app FPS's clouds to this)
    n_groups: int  # G for an input of n_points points
    group_size: int  # K, points per group
    width: int
    depth: int
    n_heads: int
    mlp_ratio: float = 4.0
    drop_path: float = 0.1
    embed_dims: tuple[int, int] = (128, 256)  # mini-PointNet: 3 -> e0 -> e1, max-pool, concat -> 2*e1 -> 2*e1 -> width
    pos_hidden: int = 128  # positional embedding MLP: 3 -> pos_hidden -> width
    # Options for the field's backbones (pcdviz.convert). The defaults are pcdviz's own models, so every
    # existing config.json loads unchanged; each option picks a small module or a rule, not a forward branch.
    tokenizer: str = "pointnet"    # "pointnet": mini-PointNet on centred coordinates (Point-MAE family);
    #                                "pct": per-point MLP on absolute xyz, edge features to the centre (POS-BERT)
    embed_norm: str = "layernorm"  # norm in the tokenizer's MLPs; "none": the peers' BatchNorm folded into the linear before it
    embed_act: str = "gelu"        # tokenizer activation: "gelu", "relu", "leaky_relu" (slope 0.2)
    token_dim: int = 0             # 0: the tokenizer outputs width; else token_dim, then Linear(token_dim, width) (Point-BERT's reduce_dim)
    pos_embed: str = "first_block"  # centre-MLP positions added before the first block, before "every_block" (Point-MAE), or "none"
    norm_eps: float = 1e-6         # LayerNorm eps of the blocks and the final norm (the Point-MAE family: 1e-5)
    cls_tokens: int = 1            # 1, or 0 (Point-MAE's pre-training encoder): then `cls` is the mean patch token
    fps_rule: str = "fpsample"     # how centres are picked: see ops.FPS_RULES
    fps_start: str = "index0"      # where FPS starts: see ops.FPS_STARTS
    group_count: str = "scaled"    # G for N points: "scaled" round(n_groups * N / n_points), "fixed" n_groups, "ceil" ceil(N / group_size)
    attn_bias: str = "none"        # "distance": each head adds -slope_h * |c_i - c_j| / mean distance to its patch-to-patch
    #                                logits (learned slopes, see DISTANCE_SLOPES), so some heads attend near patches

    def __post_init__(self):
        self.embed_dims = tuple(int(d) for d in self.embed_dims)  # JSON round trip gives a list
        if len(self.embed_dims) != 2:
            raise ValueError(f"embed_dims must have two entries, got {self.embed_dims}")
        choices = {"tokenizer": ("pointnet", "pct"), "embed_norm": ("layernorm", "none"), "embed_act": ("gelu", "relu", "leaky_relu"),
                   "pos_embed": ("first_block", "every_block", "none"), "fps_rule": FPS_RULES,
                   "fps_start": FPS_STARTS, "group_count": ("scaled", "fixed", "ceil"),
                   "attn_bias": ("none", "distance")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {list(allowed)}, got {getattr(self, name)!r}")
        if self.cls_tokens not in (0, 1):
            raise ValueError(f"cls_tokens must be 0 or 1, got {self.cls_tokens}")
        if not 0 <= self.token_dim <= 65536:
            raise ValueError(f"token_dim must be 0 (none) or a width, got {self.token_dim}")
        if not 0 < self.norm_eps < 1:
            raise ValueError(f"norm_eps must be in (0, 1), got {self.norm_eps}")
        if self.width % self.n_heads:
            raise ValueError(f"width {self.width} is not divisible by n_heads {self.n_heads}")
        for name in ("n_points", "n_groups", "group_size", "width", "depth", "n_heads"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    def groups_for(self, n: int) -> int:
        """G for an input of n points (never more than n); "scaled" gives local crops fewer groups."""
        if self.group_count == "fixed":
            return min(n, self.n_groups)
        if self.group_count == "ceil":
            return min(n, -(-n // self.group_size))
        return min(n, max(1, round(self.n_groups * n / self.n_points)))


# Presets. `paper` is the paper's scale with a Point-MAE-sized patch embedding (22M parameters).
# `tiny` is what 2 shared CPU cores can pre-train in under an hour with multi-crop (2 global crops of
# n_points + 8 local crops of n_points/4 per shape, teacher on the 2 globals). Measured on this machine
# (torch 2.13 CPU, 2 threads, batch 32, fwd+bwd+AdamW, best of 8 interleaved runs, 1024 / 256 points):
#   embed (32,64)  width 192 depth 4 : 186 / 673 views/s  -> 0.023 s of student time per shape  <- tiny
#   embed (32,64), no LayerNorm      : 198 / 660 views/s     (LayerNorm costs ~6%; kept: no BN buffers)
#   embed (16,32)                    : 242 / 682 views/s
#   embed (64,128)                   : 108 / 483 views/s  -> 0.035 s per shape
#   embed (32,64)  depth 6           : 149 / 528 views/s  -> 0.029 s per shape
# The per-point embedding dominates (f+b at batch 32: embed 101 ms vs 4 blocks 65 ms), so tiny keeps it
# narrow and spends the width on the transformer. With the teacher's forward passes that is ~0.026 s
# per shape, ~38 shapes/s: ~100 epochs of a 1,200-shape set in an hour, with ~1.9x headroom over the
# 100 views/s target for the shared machine. 6 heads of dim 32 give the explorer 6 maps per layer.
# `small` sits between (4.9M parameters). Re-measure: `python bench/bench_model.py`.
PRESETS: dict[str, PointViTConfig] = {
    "tiny": PointViTConfig(n_points=1024, n_groups=32, group_size=32, width=192, depth=4, n_heads=6,
                           embed_dims=(32, 64)),
    "small": PointViTConfig(n_points=1024, n_groups=64, group_size=32, width=256, depth=6, n_heads=8,
                            embed_dims=(64, 128)),
    "paper": PointViTConfig(n_points=1024, n_groups=64, group_size=32, width=384, depth=12, n_heads=6,
                            embed_dims=(128, 256)),
}


def preset(name: str, **overrides) -> PointViTConfig:
    """A copy of the named preset with fields overridden."""
    if name not in PRESETS:
        raise KeyError(f"unknown preset {name!r}; choose from {sorted(PRESETS)}")
    return replace(PRESETS[name], **overrides)


# --------------------------------------------------------------------------- building blocks

ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU, "leaky_relu": lambda: nn.LeakyReLU(0.2)}


def embed_norm(kind: str, dim: int) -> nn.Module:
    """The tokenizer's norm: LayerNorm, or nothing (a converted peer's BatchNorm lives in the linear before it)."""
    return nn.LayerNorm(dim, eps=1e-6) if kind == "layernorm" else nn.Identity()


def drop_path(x: Tensor, p: float = 0.0, training: bool = False) -> Tensor:
    """Stochastic depth per sample: zero the residual branch of whole samples with probability p."""
    if p == 0.0 or not training:
        return x
    keep = 1.0 - p
    mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
    return x * mask / keep


class DropPath(nn.Module):
    """Stochastic depth as a module."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        return drop_path(x, self.p, self.training)


class Mlp(nn.Module):
    """Transformer feed-forward: Linear -> GELU -> Linear."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


# Initial slopes of the distance bias (attn_bias="distance"), head h of every block gets DISTANCE_SLOPES[h % 6]:
# two steep heads (a slope of 8 keeps a head within about a tenth of the mean patch distance), one in between and
# three near global, ALiBi-like. Without the bias no tiny head learned to prefer near patches (BENCHMARKS.md,
# issue 19): a dot product of MLP position features expresses -slope * distance only with large, sharp weights.
DISTANCE_SLOPES = (8.0, 8.0, 4.0, 1.0, 0.5, 0.25)


def centre_distances(centres: Tensor, cls_tokens: int) -> Tensor:
    """Patch-centre distances (B, G, 3) -> (B, 1, T, T), divided by their mean per cloud; CLS rows and columns 0.

    Divided by the mean, the bias means the same for a whole shape and a local crop of it, at any scale.
    """
    d = torch.cdist(centres, centres)
    d = d / d.mean(dim=(1, 2), keepdim=True).clamp(min=1e-6)
    return F.pad(d, (cls_tokens, 0, cls_tokens, 0))[:, None]


class Attention(nn.Module):
    """Multi-head self-attention; the fused SDPA path, or a plain path that also returns the weights.

    With `distance_bias`, each head h adds -softplus(slope_h) * distance to its logits, in both paths, so the
    maps the explorer shows are the ones the model uses.
    """

    def __init__(self, dim: int, n_heads: int, distance_bias: bool = False):
        super().__init__()
        self.n_heads = n_heads
        self.scale = (dim // n_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        self.slope = None
        if distance_bias:  # stored before the softplus, which keeps each slope positive
            init = torch.tensor([DISTANCE_SLOPES[h % len(DISTANCE_SLOPES)] for h in range(n_heads)])
            self.slope = nn.Parameter(torch.log(torch.expm1(init)))

    def forward(self, x: Tensor, return_attention: bool = False,
                distance: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        B, T, C = x.shape
        qkv = self.qkv(x).reshape(B, T, 3, self.n_heads, C // self.n_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # (B, H, T, hd)
        bias = None
        if self.slope is not None:
            bias = -F.softplus(self.slope)[:, None, None] * distance.to(q.dtype)  # (B, H, T, T)
        if return_attention:
            logits = (q * self.scale) @ k.transpose(-2, -1)
            attn = (logits if bias is None else logits + bias).softmax(dim=-1)  # (B, H, T, T)
            out = attn @ v
        else:
            attn = None
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        out = out.transpose(1, 2).reshape(B, T, C)
        return self.proj(out), attn


class Block(nn.Module):
    """Pre-norm transformer block; can return its attention weights."""

    def __init__(self, dim: int, n_heads: int, mlp_ratio: float = 4.0, drop_path: float = 0.0, eps: float = 1e-6,
                 distance_bias: bool = False):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, n_heads, distance_bias)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor, return_attention: bool = False,
                distance: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        y, attn = self.attn(self.norm1(x), return_attention, distance)
        x = x + self.drop_path(y)
        x = x + self.drop_path(self.mlp(self.norm2(x)))
        return x, attn


def max_pool(x: Tensor, dim: int, keepdim: bool = False) -> Tensor:
    """Max over the points of each group (the mini-PointNet's symmetric function).

    Same values either way, but the fast op depends on autograd: amax's backward builds a tie mask and
    counts it (3 extra passes over the (B, G, K, C) tensor), torch.max's indices make it one scatter, so
    with gradients max is ~2.5x faster forward + backward of the pool, and without them amax is 4-10x
    faster (bench/bench_train.py's A/B line times whole steps). On exact ties max sends the gradient to one point instead of
    splitting it; when the tie comes from duplicated points the weight gradients are the same.
    """
    if x.requires_grad and torch.is_grad_enabled():
        return x.max(dim=dim, keepdim=keepdim).values
    return x.amax(dim=dim, keepdim=keepdim)


class PatchEmbed(nn.Module):
    """Mini-PointNet per group (Point-MAE's tokenizer): shared MLP, max-pool, concat pooled to each point, MLP, max-pool.

    Channels-last Linear layers with LayerNorm instead of Point-MAE's Conv1d + BatchNorm: no running
    statistics, so train and eval agree and the EMA teacher needs no buffer handling, and crops of any
    size can share a batch. A converted peer has norm "none" and ReLU: its BatchNorm is folded into the
    linear layer before it, which is exact in eval mode.
    """

    def __init__(self, embed_dims: tuple[int, int], out_dim: int, norm: str = "layernorm", act: str = "gelu"):
        super().__init__()
        e0, e1 = embed_dims
        self.first = nn.Sequential(nn.Linear(3, e0), embed_norm(norm, e0), ACTIVATIONS[act](), nn.Linear(e0, e1))
        self.second_in = nn.Linear(2 * e1, 2 * e1)  # acts on [pooled, per-point]
        self.second = nn.Sequential(embed_norm(norm, 2 * e1), ACTIVATIONS[act](), nn.Linear(2 * e1, out_dim))
        self.e1 = e1

    def forward(self, points: Tensor, centre_idx: Tensor, group_idx: Tensor) -> Tensor:
        """Points (B, N, 3), centre indices (B, G), group indices (B, G, K) -> tokens (B, G, out_dim)."""
        centres = index_points(points, centre_idx)
        f = self.first(index_points(points, group_idx) - centres.unsqueeze(2))  # (B, G, K, e1), relative coordinates
        g = max_pool(f, dim=2, keepdim=True)  # (B, G, 1, e1)
        # Linear([g, f]) split in two: the pooled half is computed once per group, not once per point
        w = self.second_in.weight
        h = F.linear(f, w[:, self.e1:]) + F.linear(g, w[:, : self.e1], self.second_in.bias)
        return max_pool(self.second(h), dim=2)


class EdgeEmbed(nn.Module):
    """POS-BERT's tokenizer: a per-point MLP on absolute coordinates, then per group an MLP on edge features
    [neighbour feature - centre feature, centre feature] and a max-pool (PCT's sample_and_group + Local_op).

    The group MLP always uses ReLU (as POS-BERT's Local_op); `act` is the per-point MLP's activation.
    """

    def __init__(self, embed_dims: tuple[int, int], out_dim: int, norm: str = "layernorm", act: str = "relu"):
        super().__init__()
        e0, e1 = embed_dims
        self.point_mlp = nn.Sequential(nn.Linear(3, e0), embed_norm(norm, e0), ACTIVATIONS[act](),
                                       nn.Linear(e0, e1), embed_norm(norm, e1), ACTIVATIONS[act]())
        self.group_mlp = nn.Sequential(nn.Linear(2 * e1, out_dim), embed_norm(norm, out_dim), nn.ReLU(),
                                       nn.Linear(out_dim, out_dim), embed_norm(norm, out_dim), nn.ReLU())

    def forward(self, points: Tensor, centre_idx: Tensor, group_idx: Tensor) -> Tensor:
        """Points (B, N, 3), centre indices (B, G), group indices (B, G, K) -> tokens (B, G, out_dim)."""
        f = self.point_mlp(points)  # (B, N, e1)
        centre = index_points(f, centre_idx).unsqueeze(2)  # (B, G, 1, e1)
        neighbours = index_points(f, group_idx)  # (B, G, K, e1)
        edges = torch.cat([neighbours - centre, centre.expand_as(neighbours)], dim=-1)
        return max_pool(self.group_mlp(edges), dim=2)


TOKENIZERS = {"pointnet": PatchEmbed, "pct": EdgeEmbed}


# --------------------------------------------------------------------------- the model


@dataclass
class PointViTOutput:
    """What a PointViT forward pass returns."""

    cls: Tensor  # (B, D) final-LayerNorm CLS feature (the global feature; the mean patch token without a CLS token)
    patches: Tensor  # (B, G, D)
    centers: Tensor  # (B, G, 3)
    group_idx: Tensor  # (B, G, K) indices into the input points
    attentions: list[Tensor] | None = None  # depth x (B, H, T, T), softmaxed; T = 1+G with token 0 = CLS, or G


class PointViT(nn.Module):
    """Point transformer: FPS + kNN groups -> tokenizer + centre embedding -> ViT blocks -> final norm."""

    def __init__(self, config: PointViTConfig):
        super().__init__()
        self.config = config
        D = config.width
        self.patch_embed = TOKENIZERS[config.tokenizer](config.embed_dims, config.token_dim or D,
                                                        config.embed_norm, config.embed_act)
        self.token_proj = nn.Linear(config.token_dim, D) if config.token_dim else nn.Identity()
        self.pos_embed = None
        if config.pos_embed != "none":
            self.pos_embed = nn.Sequential(nn.Linear(3, config.pos_hidden), nn.GELU(), nn.Linear(config.pos_hidden, D))
        if config.cls_tokens:
            self.cls_token = nn.Parameter(torch.zeros(1, 1, D))
            if self.pos_embed is not None:
                self.cls_pos = nn.Parameter(torch.zeros(1, 1, D))
        # stochastic depth decay rule (DINO's linspace, in plain Python so the model can be built on "meta")
        dpr = [config.drop_path * i / max(1, config.depth - 1) for i in range(config.depth)]
        self.blocks = nn.ModuleList(Block(D, config.n_heads, config.mlp_ratio, dpr[i], config.norm_eps,
                                          config.attn_bias == "distance") for i in range(config.depth))
        self.norm = nn.LayerNorm(D, eps=config.norm_eps)
        for name in ("cls_token", "cls_pos"):  # after the blocks: the random stream of earlier releases
            if hasattr(self, name):
                nn.init.trunc_normal_(getattr(self, name), std=0.02)
        self.apply(_init_weights)

    @property
    def embed_dim(self) -> int:
        """Width D of the output features."""
        return self.config.width

    def group(self, points: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """FPS centres (B, G, 3), their indices (B, G) and each one's K nearest points' indices (B, G, K)."""
        if points.dim() != 3 or points.shape[-1] != 3:
            raise ValueError(f"PointViT expects points of shape (B, N, 3), got {tuple(points.shape)}")
        N = points.shape[1]
        c = self.config
        centre_idx = farthest_point_sample(points, c.groups_for(N), rule=c.fps_rule, start=c.fps_start)
        centres = index_points(points, centre_idx)
        with torch.no_grad():  # only the indices are needed: no autograd graph for the distance matrix
            _, group_idx = knn(centres, points, min(c.group_size, N))
        return centres, centre_idx, group_idx

    def tokenize(self, points: Tensor) -> tuple[Tensor, Tensor | None, Tensor, Tensor]:
        """Points (B, N, 3) -> tokens (B, T, D) (CLS first if any), positions (B, T, D) or None, centres, group idx."""
        centres, centre_idx, group_idx = self.group(points)
        x = self.token_proj(self.patch_embed(points, centre_idx, group_idx))
        pos = self.pos_embed(centres) if self.pos_embed is not None else None
        if self.config.cls_tokens:
            B = x.shape[0]
            x = torch.cat([self.cls_token.expand(B, -1, -1), x], dim=1)
            if pos is not None:
                pos = torch.cat([self.cls_pos.expand(B, -1, -1), pos], dim=1)
        return x, pos, centres, group_idx

    def run_blocks(self, x: Tensor, pos: Tensor | None, centres: Tensor,
                   attention_from: int) -> tuple[Tensor, list[Tensor]]:
        """The blocks; returns the output and the attention maps of the blocks from index `attention_from` on."""
        distance = None
        if self.config.attn_bias == "distance":  # once per forward, shared by every block
            distance = centre_distances(centres, self.config.cls_tokens)
        attentions = []
        for i, blk in enumerate(self.blocks):
            if pos is not None and (i == 0 or self.config.pos_embed == "every_block"):
                x = x + pos  # Point-MAE re-adds the positions before every block
            x, attn = blk(x, return_attention=i >= attention_from, distance=distance)
            if attn is not None:
                attentions.append(attn)
        return self.norm(x), attentions

    def forward(self, points: Tensor, return_attention: bool = False) -> PointViTOutput:
        """Points (B, N, 3) -> CLS feature, patch tokens, centres, group indices [, all attention maps]."""
        x, pos, centres, idx = self.tokenize(points)
        x, attentions = self.run_blocks(x, pos, centres, 0 if return_attention else len(self.blocks))
        patches = x[:, self.config.cls_tokens:]
        cls = x[:, 0] if self.config.cls_tokens else patches.mean(1)
        return PointViTOutput(cls=cls, patches=patches, centers=centres, group_idx=idx,
                              attentions=attentions if return_attention else None)

    def get_last_selfattention(self, points: Tensor) -> Tensor:
        """The last block's attention (B, H, T, T); token 0 is CLS when the model has one."""
        x, pos, centres, _ = self.tokenize(points)
        return self.run_blocks(x, pos, centres, len(self.blocks) - 1)[1][0]


def _init_weights(m: nn.Module) -> None:
    """DINO init: truncated normal (std .02) linear weights, zero biases, unit LayerNorms."""
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


# --------------------------------------------------------------------------- DINO head


class DINOHead(nn.Module):
    """DINO projection head: MLP (GELU) -> bottleneck -> L2 normalise -> weight-normalised linear to prototypes.

    use_bn puts BatchNorm after each hidden linear layer (DINO's `use_bn`): it normalises each hidden unit
    across the batch, so the head's outputs differ between shapes from the first step even when the
    backbone's features are nearly identical, which keeps the teacher's centred targets from going uniform.
    """

    def __init__(self, in_dim: int, out_dim: int = 512, hidden_dim: int = 512, bottleneck_dim: int = 256,
                 n_layers: int = 3, norm_last_layer: bool = True, use_bn: bool = False):
        super().__init__()
        n_layers = max(n_layers, 1)
        if n_layers == 1:
            self.mlp = nn.Linear(in_dim, bottleneck_dim)
        else:
            def hidden(d_in):
                # batch statistics in training and inference alike: the head only ever runs on training
                # batches, and without running buffers every DDP rank (and a resumed run) holds the same state
                bn = [nn.BatchNorm1d(hidden_dim, track_running_stats=False)] if use_bn else []
                return [nn.Linear(d_in, hidden_dim)] + bn + [nn.GELU()]
            layers = hidden(in_dim)
            for _ in range(n_layers - 2):
                layers += hidden(hidden_dim)
            layers.append(nn.Linear(hidden_dim, bottleneck_dim))
            self.mlp = nn.Sequential(*layers)
        self.apply(_init_weights)
        self.last_layer = nn.utils.parametrizations.weight_norm(nn.Linear(bottleneck_dim, out_dim, bias=False))
        g = self.last_layer.parametrizations.weight.original0  # the norm ("weight_g"), shape (out_dim, 1)
        with torch.no_grad():
            g.fill_(1.0)
        if norm_last_layer:
            g.requires_grad = False

    def forward(self, x: Tensor) -> Tensor:
        """Features (B, in_dim) -> logits (B, out_dim)."""
        x = self.mlp(x)
        x = F.normalize(x, dim=-1, p=2, eps=1e-6 if x.dtype == torch.float16 else 1e-12)
        return self.last_layer(x)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
