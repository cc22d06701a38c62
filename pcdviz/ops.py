"""Point-cloud operations in plain PyTorch: farthest point sampling, kNN, gathering, grouping.

Batched, device-agnostic (the same code runs on CPU and CUDA), no compiled extensions.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

try:  # exact FPS in C++, same picks as the torch loop below, 2-8x faster on CPU (see farthest_point_sample)
    import fpsample as _fpsample
except ImportError:  # pragma: no cover - optional at run time, the torch loop is the reference
    _fpsample = None

# Bound on the (B, M-chunk, N) distance matrix kNN builds at once (elements, ~256 MB of float32).
_KNN_MAX_ELEMENTS = 64 * 1024 * 1024


def farthest_point_sample(xyz: Tensor, n_samples: int, backend: str = "auto") -> Tensor:
    """Indices (B, n_samples) of farthest point samples of xyz (B, N, 3), start index 0, deterministic.

    Ties go to the highest index (as fpsample does), so both backends pick the same points.
    backend: "auto" (fpsample for CPU tensors when installed, else torch), "torch" or "fpsample".
    Measured on 2 CPU threads: batch 32 x 1024 points -> 32 samples 3.6 ms (fpsample) vs 6.6 ms (torch);
    1 x 100k -> 1024: 0.24 s vs 0.58 s.
    """
    if xyz.dim() != 3 or xyz.shape[-1] != 3:
        raise ValueError(f"farthest_point_sample expects (B, N, 3) points, got {tuple(xyz.shape)}")
    B, N, _ = xyz.shape
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    if n_samples > N:
        raise ValueError(f"cannot sample {n_samples} distinct points from {N}")
    if backend == "auto":
        backend = "fpsample" if (_fpsample is not None and xyz.device.type == "cpu") else "torch"
    if backend == "fpsample":
        return _fps_fpsample(xyz, n_samples)
    if backend != "torch":
        raise ValueError(f"unknown FPS backend {backend!r}")
    return _fps_torch(xyz, n_samples)


def _fps_torch(xyz: Tensor, n_samples: int) -> Tensor:
    """Batched FPS in plain torch: a (B, N) min-distance tensor, one vectorised update per sample."""
    B, N, _ = xyz.shape
    with torch.no_grad():
        pts = xyz.detach().float()
        idx = torch.zeros(B, n_samples, dtype=torch.long, device=xyz.device)
        min_d = torch.full((B, N), float("inf"), device=xyz.device)  # squared distance to the chosen set
        batch = torch.arange(B, device=xyz.device)
        farthest = torch.zeros(B, dtype=torch.long, device=xyz.device)
        for i in range(n_samples):
            idx[:, i] = farthest
            centre = pts[batch, farthest].unsqueeze(1)  # (B, 1, 3)
            d = ((pts - centre) ** 2).sum(-1)  # (B, N)
            torch.minimum(min_d, d, out=min_d)
            # argmax returns the first maximum; on the flipped row that is the last one (fpsample's tie rule)
            farthest = (N - 1) - min_d.flip(1).argmax(dim=1)
    return idx


def _fps_fpsample(xyz: Tensor, n_samples: int) -> Tensor:
    """FPS of each cloud with fpsample's exact C++ implementation (CPU)."""
    if _fpsample is None:
        raise RuntimeError("the fpsample package is not installed; use backend='torch'")
    pts = xyz.detach().to("cpu", torch.float32).numpy()
    out = np.stack([_fpsample.fps_sampling(np.ascontiguousarray(p), n_samples, start_idx=0) for p in pts])
    return torch.from_numpy(out.astype(np.int64)).to(xyz.device)


def square_distance(a: Tensor, b: Tensor) -> Tensor:
    """Squared Euclidean distances (B, M, N) between a (B, M, C) and b (B, N, C), clamped at 0."""
    # ||a||^2 + ||b||^2 - 2ab: one matmul instead of a (B, M, N, C) difference tensor
    d = (a * a).sum(-1, keepdim=True) + (b * b).sum(-1).unsqueeze(1) - 2.0 * (a @ b.transpose(1, 2))
    return d.clamp_min_(0.0)


def knn(query: Tensor, ref: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The k nearest ref points of each query: squared dists (B, M, k) and idx (B, M, k), sorted ascending."""
    if query.dim() != 3 or ref.dim() != 3 or query.shape[0] != ref.shape[0]:
        raise ValueError(f"knn expects (B, M, C) and (B, N, C), got {tuple(query.shape)} and {tuple(ref.shape)}")
    B, M, _ = query.shape
    N = ref.shape[1]
    if not 1 <= k <= N:
        raise ValueError(f"k must be in [1, {N}], got {k}")
    # chunk over queries so a big cloud never builds the whole (B, M, N) matrix at once
    chunk = max(1, _KNN_MAX_ELEMENTS // max(1, B * N))
    dists, idxs = [], []
    with torch.autocast(device_type=query.device.type, enabled=False):  # neighbours from fp32, even under AMP
        dtype = torch.float64 if query.dtype == torch.float64 else torch.float32
        q32, r32 = query.to(dtype), ref.to(dtype)
        for s in range(0, M, chunk):
            d = square_distance(q32[:, s:s + chunk], r32)
            dd, ii = torch.topk(d, k, dim=-1, largest=False, sorted=True)
            dists.append(dd)
            idxs.append(ii)
    if len(dists) == 1:
        return dists[0], idxs[0]
    return torch.cat(dists, 1), torch.cat(idxs, 1)


def index_points(points: Tensor, idx: Tensor) -> Tensor:
    """Gather points (B, N, C) at idx (B, ...) -> (B, ..., C)."""
    B = points.shape[0]
    C = points.shape[-1]
    flat = idx.reshape(B, -1)
    out = torch.gather(points, 1, flat.unsqueeze(-1).expand(-1, -1, C))
    return out.reshape(*idx.shape, C)


def group(xyz: Tensor, n_groups: int, group_size: int) -> tuple[Tensor, Tensor, Tensor]:
    """FPS centres, their kNN groups: neighbourhoods relative to centre (B,G,K,3), centres (B,G,3), idx (B,G,K)."""
    centre_idx = farthest_point_sample(xyz, n_groups)
    centres = index_points(xyz, centre_idx)
    with torch.no_grad():  # only the indices are needed: no autograd graph for the distance matrix
        _, idx = knn(centres, xyz, group_size)
    neighbourhoods = index_points(xyz, idx) - centres.unsqueeze(2)
    return neighbourhoods, centres, idx


def nearest_index(ref: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Index (M,) int64 of the nearest row of ref (R, 3) for each row of query (M, 3), on the CPU.

    A KD-tree over ref (a model's input points: building it takes well under a millisecond), then one
    query per display point: about a second for a million of them.
    """
    from scipy.spatial import cKDTree

    _, idx = cKDTree(np.asarray(ref, dtype=np.float64)).query(np.asarray(query, dtype=np.float64), k=1)
    return np.asarray(idx, dtype=np.int64)
