"""Multi-crop views of a batch of point clouds: kNN-ball crops, resampling, renormalisation, augmentation.

Everything is batched over the (B, N, 3) tensor (one loop over crops, none over points or shapes)
and draws every random number from one torch.Generator, so a resumed run reproduces its crops.
Resampling to the fixed per-kind size is a random subsample (not FPS): FPS over every crop of every
step would dominate the step time on CPU, and a random subsample of a kNN ball is already a fair,
roughly uniform sample of it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from pcdviz.ops import ball_order, stable_argsort_rows


@dataclass
class CropConfig:
    """How many crops of which kind, their sizes and the augmentations applied to each."""
    n_global: int = 2
    n_local: int = 8
    global_points: int = 1024                       # the model's n_points
    local_points: int = 256                         # n_points // 4
    global_scale: tuple[float, float] = (0.5, 1.0)  # crop = seed + ceil(N * r) nearest neighbours
    local_scale: tuple[float, float] = (0.2, 0.5)
    jitter_sigma: float = 0.01
    jitter_clip: float = 0.05
    scale_range: tuple[float, float] = (2 / 3, 3 / 2)  # per axis
    translate: float = 0.2                              # U(-t, t) per axis
    rotate_up: bool = False                             # random rotation about the up (y) axis


def _uniform(shape, low: float, high: float, generator: torch.Generator, device) -> Tensor:
    """U(low, high) samples of the given shape from `generator`."""
    return low + (high - low) * torch.rand(shape, generator=generator, device=device)


def knn_crop(points: Tensor, ratio: Tensor, n_out: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """A kNN-ball crop per cloud: random seed + its ceil(N*ratio) nearest points, randomly resampled to n_out.

    points (B, N, 3), ratio (B,) in (0, 1]. Returns the crop indices (B, n_out) into `points` and the
    seed indices (B,). The seed is always the crop's first point. Crops smaller than n_out repeat points.
    """
    B, N, _ = points.shape
    device = points.device
    seed = torch.randint(0, N, (B,), generator=generator, device=device)
    by_distance = ball_order(points, seed)                                     # (B, N) nearest first, seed first
    k = torch.ceil(ratio * N).long().clamp(1, N)                               # (B,) ball size per cloud
    # Random order inside each ball, ball members before the rest, seed (position 0) first.
    position = torch.arange(N, device=device).expand(B, N)
    keys = torch.rand((B, N), generator=generator, device=device) + (position >= k[:, None]).float() * 2.0
    keys[:, 0] = -1.0
    shuffled = stable_argsort_rows(keys)                                             # positions in by_distance
    # Slot j takes the (j mod k)-th shuffled ball member: a subsample when k >= n_out, repeats otherwise.
    slot = torch.arange(n_out, device=device)[None, :] % k[:, None]           # (B, n_out)
    chosen = torch.gather(shuffled, 1, slot)
    return torch.gather(by_distance, 1, chosen), seed


def normalize_batch(points: Tensor) -> Tensor:
    """Centre each cloud (B, n, 3) at its centroid and scale it into the unit sphere."""
    centred = points - points.mean(dim=1, keepdim=True)
    radius = centred.norm(dim=-1).amax(dim=1).clamp_min(1e-6)
    return centred / radius[:, None, None]


def augment(points: Tensor, cfg: CropConfig, generator: torch.Generator) -> Tensor:
    """Optional rotation about y, per-axis scale, translation, and clipped jitter of a batch (B, n, 3)."""
    B, n, _ = points.shape
    device = points.device
    if cfg.rotate_up:
        angle = _uniform((B,), 0.0, 2 * math.pi, generator, device)
        c, s = torch.cos(angle), torch.sin(angle)
        zero, one = torch.zeros_like(c), torch.ones_like(c)
        rot = torch.stack([c, zero, s, zero, one, zero, -s, zero, c], dim=1).view(B, 3, 3)
        points = points @ rot.transpose(1, 2)
    scale = _uniform((B, 1, 3), cfg.scale_range[0], cfg.scale_range[1], generator, device)
    shift = _uniform((B, 1, 3), -cfg.translate, cfg.translate, generator, device)
    points = points * scale + shift
    if cfg.jitter_sigma > 0:
        noise = torch.randn(points.shape, generator=generator, device=device) * cfg.jitter_sigma
        points = points + noise.clamp(-cfg.jitter_clip, cfg.jitter_clip)
    return points


def make_crop(points: Tensor, scale: tuple[float, float], n_out: int, cfg: CropConfig,
              generator: torch.Generator) -> Tensor:
    """One augmented, renormalised kNN crop (B, n_out, 3) of each cloud, with r ~ U(scale)."""
    B = points.shape[0]
    ratio = _uniform((B,), scale[0], scale[1], generator, points.device)
    idx, _ = knn_crop(points, ratio, n_out, generator)
    crop = torch.gather(points, 1, idx.unsqueeze(-1).expand(-1, -1, 3))
    return augment(normalize_batch(crop), cfg, generator)


def same_size_runs(views: list[Tensor], start: int = 0):
    """(start, end) of each run of consecutive views of one shape from `start` on: the model embeds each run in
    one forward pass (crops of one kind share a size)."""
    while start < len(views):
        end = start
        while end < len(views) and views[end].shape == views[start].shape:
            end += 1
        yield start, end
        start = end


def multi_crop(points: Tensor, cfg: CropConfig, generator: torch.Generator) -> list[Tensor]:
    """The views of a batch (B, N, 3): n_global global crops, then n_local local crops, each (B, n_kind, 3)."""
    points = points.float()
    views = [make_crop(points, cfg.global_scale, cfg.global_points, cfg, generator) for _ in range(cfg.n_global)]
    views += [make_crop(points, cfg.local_scale, cfg.local_points, cfg, generator) for _ in range(cfg.n_local)]
    return views
