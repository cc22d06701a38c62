"""Point-cloud operations in plain PyTorch: farthest point sampling, kNN, gathering, grouping.

Batched, device-agnostic (the same code runs on CPU and CUDA), no compiled extensions.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

try:  # exact FPS in Rust/C++, same picks as the torch loop below, 2-15x faster on CPU (see farthest_point_sample)
    import fpsample as _fpsample
except ImportError:  # pragma: no cover - optional at run time, the torch loop is the reference
    _fpsample = None

# Bound on the (B, M-chunk, N) distance matrix kNN builds at once (elements, ~256 MB of float32).
_KNN_MAX_ELEMENTS = 64 * 1024 * 1024
# From this many samples up, "auto" FPS uses fpsample's QuickFPS: vanilla FPS costs samples x points,
# QuickFPS mostly a KD-tree build. Measured (2 threads): 2048 -> 1024 points 0.8 ms vs 4.8 ms, 1M -> 512
# 0.17 s vs 2.7 s; but the tokenizer's batches of 1024 -> 32 centres are faster vanilla (7.8 vs 10.2 ms).
QUICKFPS_MIN_SAMPLES = 128
# kNN's k smallest per row go through numpy up to this many candidates (2x faster than torch.topk at
# 256-1024 points, slower from ~8k; see smallest_k).
_SMALLEST_K_NUMPY_MAX_N = 4096


# FPS rules: where the first centre comes from, and how each next one is chosen.
#   "fpsample"  pcdviz's own: ties go to the highest index (fpsample's C++ rule); every backend agrees.
#   "pointnet2" pointnet2_ops' CUDA kernel (Point-BERT, Point-MAE, ACT): points with squared norm <= 1e-3
#               are never picked (except the start) and ties follow the kernel's thread layout.
#   "first_max" POS-BERT's torch loop: the first maximum wins, no skip rule.
FPS_RULES = ("fpsample", "pointnet2", "first_max")
# start: "index0" (every peer and pcdviz's training: the file's first point), or "geometric": the point
# farthest from the centroid, ties to the lexicographically smallest (x, y, z), so the picks do not follow
# the file's point order (a permutation of the cloud gives the same centres, up to exact distance ties).
FPS_STARTS = ("index0", "geometric")


def farthest_point_sample(xyz: Tensor, n_samples: int, backend: str = "auto", rule: str = "fpsample",
                          start: str = "index0") -> Tensor:
    """Indices (B, n_samples) of farthest point samples of xyz (B, N, 3); deterministic.

    rule and start: see FPS_RULES and FPS_STARTS above. With rule "fpsample" the backend is free:
    "auto", "torch", "fpsample" (vanilla FPS in C++/Rust) or "quickfps". "auto" is fpsample on CPU
    (quickfps from QUICKFPS_MIN_SAMPLES samples up), torch elsewhere. "quickfps" is fpsample's
    bucket/KD-tree FPS: the same picks as vanilla FPS (exact distances) but 5-15x faster on big clouds;
    on exact distance ties (grids, duplicates) it may take another, equally far point. The peers' rules
    run in torch. Timings: `python bench/bench_ops.py` (BENCHMARKS.md).
    """
    if xyz.dim() != 3 or xyz.shape[-1] != 3:
        raise ValueError(f"farthest_point_sample expects (B, N, 3) points, got {tuple(xyz.shape)}")
    B, N, _ = xyz.shape
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    if n_samples > N:
        raise ValueError(f"cannot sample {n_samples} distinct points from {N}")
    if rule not in FPS_RULES:
        raise ValueError(f"unknown FPS rule {rule!r}; choose from {FPS_RULES}")
    if start not in FPS_STARTS:
        raise ValueError(f"unknown FPS start {start!r}; choose from {FPS_STARTS}")
    first = geometric_start(xyz) if start == "geometric" else torch.zeros(B, dtype=torch.long, device=xyz.device)
    if rule != "fpsample":
        return _fps_torch(xyz, n_samples, first, rule)
    if backend == "auto":
        if _fpsample is None or xyz.device.type != "cpu":
            backend = "torch"
        else:
            backend = "quickfps" if n_samples >= QUICKFPS_MIN_SAMPLES and N >= 256 else "fpsample"
    if backend == "fpsample":
        return _fps_fpsample(xyz, n_samples, first)
    if backend == "quickfps":
        return _fps_quick(xyz, n_samples, first)
    if backend != "torch":
        raise ValueError(f"unknown FPS backend {backend!r}")
    return _fps_torch(xyz, n_samples, first, rule)


def geometric_start(xyz: Tensor) -> Tensor:
    """Per cloud (B,), the index of the point farthest from the centroid; ties to the smallest (x, y, z).

    float64 throughout, so the choice does not depend on the summation order a permutation would change
    (up to the centroid's last bits: points whose distances differ by less than that are ties anyway).
    """
    with torch.no_grad():
        p = xyz.detach().to(torch.float64)
        d = ((p - p.mean(1, keepdim=True)) ** 2).sum(-1)  # (B, N)
        out = []
        for b in range(p.shape[0]):
            cand = torch.nonzero(d[b] >= d[b].max() * (1 - 1e-12)).flatten()
            if len(cand) > 1:  # lexicographic order of the tied points' coordinates
                c = p[b, cand].cpu().numpy()
                cand = cand[int(np.lexsort((c[:, 2], c[:, 1], c[:, 0]))[0])].reshape(1)
            out.append(cand[0])
        return torch.stack(out).to(xyz.device)


def _fps_torch(xyz: Tensor, n_samples: int, first: Tensor, rule: str = "fpsample") -> Tensor:
    """Batched FPS in plain torch: a (B, N) min-distance tensor, one vectorised update per sample."""
    B, N, _ = xyz.shape
    with torch.no_grad():
        pts = xyz.detach().float()
        idx = torch.zeros(B, n_samples, dtype=torch.long, device=xyz.device)
        # squared distance to the chosen set; pointnet2_ops and POS-BERT start at 1e10
        min_d = torch.full((B, N), float("inf") if rule == "fpsample" else 1e10, device=xyz.device)
        batch = torch.arange(B, device=xyz.device)
        if rule == "pointnet2":  # the kernel skips near-origin points: they never win
            skip = (pts * pts).sum(-1) <= 1e-3
            tie_key = _pointnet2_tie_key(N, xyz.device)
        farthest = first.clone()
        for i in range(n_samples):
            idx[:, i] = farthest
            centre = pts[batch, farthest].unsqueeze(1)  # (B, 1, 3)
            d = ((pts - centre) ** 2).sum(-1)  # (B, N)
            torch.minimum(min_d, d, out=min_d)
            if rule == "fpsample":
                # argmax returns the first maximum; on the flipped row that is the last one (fpsample's tie rule)
                farthest = (N - 1) - min_d.flip(1).argmax(dim=1)
            elif rule == "first_max":
                farthest = min_d.argmax(dim=1)
            else:
                cand = min_d.masked_fill(skip, -1.0)
                tied = cand == cand.max(dim=1, keepdim=True).values
                farthest = torch.where(tied, tie_key, tie_key.max() + 1).argmin(dim=1)
    return idx


def _pointnet2_tie_key(n: int, device) -> Tensor:
    """Rank (N,) of each index among equal maxima in pointnet2_ops' FPS kernel (lower wins).

    Thread t of T = min(512, 2^floor(log2 N)) scans t, t+T, ... keeping its first maximum; the tree
    reduction keeps the lower slot on ties, deciding bit 0 of the thread id last, so the winner is the
    thread whose id, bit-reversed, is smallest, and within it the earliest index.
    """
    T = min(512, 1 << (n.bit_length() - 1))
    bits = T.bit_length() - 1
    i = torch.arange(n, device=device)
    t = i % T
    rev = torch.zeros_like(t)
    for b in range(bits):
        rev |= ((t >> b) & 1) << (bits - 1 - b)
    return rev * ((n + T - 1) // T) + i // T


def _fps_fpsample(xyz: Tensor, n_samples: int, first: Tensor) -> Tensor:
    """FPS of each cloud with fpsample's exact C++ implementation (CPU)."""
    if _fpsample is None:
        raise RuntimeError("the fpsample package is not installed; use backend='torch'")
    pts = xyz.detach().to("cpu", torch.float32).numpy()
    out = np.stack([_fpsample.fps_sampling(np.ascontiguousarray(p), n_samples, start_idx=int(s))
                    for p, s in zip(pts, first.tolist())])
    return torch.from_numpy(out.astype(np.int64)).to(xyz.device)


def _fps_quick(xyz: Tensor, n_samples: int, first: Tensor) -> Tensor:
    """FPS of each cloud with fpsample's QuickFPS (bucket KD-line tree), started at `first` (CPU)."""
    if _fpsample is None:
        raise RuntimeError("the fpsample package is not installed; use backend='torch'")
    try:  # a private function of fpsample 1.0.x (pyproject pins <1.1); any other version: vanilla FPS
        from fpsample._fpsample import _bucket_fps_kdline_sampling
    except ImportError:
        return _fps_fpsample(xyz, n_samples, first)

    out = []
    for p, s in zip(xyz.detach().to("cpu", torch.float32).numpy(), first.tolist()):
        p = np.ascontiguousarray(p)
        n = len(p)
        h = 3 if n < 4096 else 5 if n < 32768 else 7 if n < 524288 else 9  # bucket size 2^h, as the paper suggests
        # fpsample 1.0 reads start_idx *after* its tree build has reordered the points, so ask for the
        # position where point s ends up; if that ever misses (a new fpsample), fall back to vanilla FPS.
        idx = _bucket_fps_kdline_sampling(p, n_samples, h, kdline_position(p, h, s))
        if idx[0] != s:
            idx = _fpsample.fps_sampling(p, n_samples, start_idx=s)
        out.append(idx)
    return torch.from_numpy(np.stack(out).astype(np.int64)).to(xyz.device)


def kdline_position(points: np.ndarray, height: int, target: int = 0) -> int:
    """Where point `target` sits after fpsample's KD-line tree build (float32 points (N, 3), tree height).

    Replays the build (split on the widest bounding-box axis at the float32 running-sum mean, Hoare
    partition: the i-th ">= split" point from the left swaps with the i-th "< split" point from the
    right), following only the node that holds the target: ~2N element operations in all.
    """
    cols = np.ascontiguousarray(points.T)  # (3, N): one gather per axis per level
    seg = np.arange(points.shape[0])       # original indices of the current node, in current order
    pos, base = target, 0                  # target's position in seg; seg's offset in the whole array
    for _ in range(height):
        n = len(seg)
        if n <= 1:
            break
        q = cols if n == points.shape[0] else [c[seg] for c in cols]  # per-axis gathers stay contiguous
        span = np.array([c.max() - c.min() for c in q])
        dim = int(np.argmax(span)) if span.max() > 0 else 0  # first widest axis, as the C++ loop picks
        vals = q[dim]
        split = np.cumsum(vals, dtype=np.float32)[-1] / np.float32(n)  # sequential float32 sum, as in C++
        less = vals < split
        n_less = int(np.count_nonzero(less))
        lim = 1 if n_less == 0 else n - 1 if n_less == n else n_less
        left = np.flatnonzero(~less[:n_less])                      # ">= split" in the left part, increasing
        right = n_less + np.flatnonzero(less[n_less:])[::-1]       # "< split" in the right part, decreasing
        if len(left):
            if pos < n_less:
                i = np.searchsorted(left, pos)
                if i < len(left) and left[i] == pos:
                    pos = int(right[i])
            else:
                j = np.flatnonzero(right == pos)
                if len(j):
                    pos = int(left[j[0]])
        if pos < lim:
            child = seg[:lim].copy()
            child[left] = seg[right]
        else:
            child = seg[lim:].copy()
            child[right - lim] = seg[left]
            base, pos = base + lim, pos - lim
        seg = child
    return base + pos


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
            dd, ii = smallest_k(d, k)
            dists.append(dd)
            idxs.append(ii)
    if len(dists) == 1:
        return dists[0], idxs[0]
    return torch.cat(dists, 1), torch.cat(idxs, 1)


def smallest_k(d: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The k smallest entries of each row of d (..., N), ascending: (values, indices), exactly as torch.topk.

    On CPU for rows of at most _SMALLEST_K_NUMPY_MAX_N entries (the model's groups), numpy's argpartition
    plus a sort of the k is ~2x faster than topk. Rows whose k+1 smallest entries hold equal values (where
    topk's own tie order decides) are taken from torch.topk, so the result never differs from it.
    """
    N = d.shape[-1]
    if d.device.type != "cpu" or N > _SMALLEST_K_NUMPY_MAX_N or k >= N or d.requires_grad:
        return torch.topk(d, k, dim=-1, largest=False, sorted=True)
    a = d.reshape(-1, N).numpy()
    part = np.argpartition(a, k, axis=1)[:, :k + 1]  # the k+1 smallest, unordered
    vals = np.take_along_axis(a, part, 1)
    order = np.argsort(vals, axis=1)
    part, vals = np.take_along_axis(part, order, 1), np.take_along_axis(vals, order, 1)
    values = torch.from_numpy(np.ascontiguousarray(vals[:, :k]))
    indices = torch.from_numpy(np.ascontiguousarray(part[:, :k]))
    tied = torch.from_numpy((vals[:, 1:] == vals[:, :-1]).any(axis=1))
    if tied.any():
        values[tied], indices[tied] = torch.topk(d.reshape(-1, N)[tied], k, dim=-1, largest=False, sorted=True)
    return values.reshape(*d.shape[:-1], k), indices.reshape(*d.shape[:-1], k)


def stable_argsort_rows(x: Tensor) -> Tensor:
    """Row-wise stable argsort of x (B, N). On CPU through numpy's SIMD quicksort (13x faster than its stable
    sort and than torch's sort: 0.55 vs 7.2 ms for (32, 2048)); rows holding equal values, where an unstable
    sort may order them differently, are sorted again stably, so the result is exactly the stable one."""
    if x.device.type != "cpu":
        return x.argsort(dim=1, stable=True)
    a = x.numpy()
    idx = np.argsort(a, axis=1)
    s = np.take_along_axis(a, idx, axis=1)
    tied = (s[:, 1:] == s[:, :-1]).any(axis=1)
    if tied.any():
        idx[tied] = np.argsort(a[tied], axis=1, kind="stable")
    return torch.from_numpy(idx)


def ball_order(points: Tensor, seed: Tensor) -> Tensor:
    """Every point of each cloud ordered by distance to its seed (B, N): the seed first, ties by index.

    points (B, N, 3), seed (B,) indices. The first k entries of a row are the kNN-ball crop of size k that
    training's multi-crop (training/crops.py) and the explorer's local crop (attention.knn_crop) both cut.
    """
    B = points.shape[0]
    rows = torch.arange(B, device=points.device)
    with torch.no_grad():
        dist = ((points - points[rows, seed].unsqueeze(1)) ** 2).sum(-1)  # (B, N) float32 squared distances
        dist[rows, seed] = -1.0  # the seed first even where duplicate points tie with it at distance 0
        return stable_argsort_rows(dist)


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
