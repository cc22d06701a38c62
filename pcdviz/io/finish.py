"""After a parser: sample a mesh's surface, validate the points (finite, enough, not one point, within limits),
decimate, shift far-off coordinates by a float64 offset, bring colours, normals and labels to their types; and
the array helpers every caller uses: normalize, resample (FPS or random), decimate_for_display."""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from .cloud import MIN_POINTS, PointCloud, _Fail, _Raw, _too_many

FPS_TORCH_MAX_N = 20_000  # above this, resample(method="fps") uses fpsample (same indices, much faster)


def _sample_mesh(raw: _Raw, n: int, seed: int) -> _Raw:
    """n points uniformly over the surface (area-weighted), normals from the faces, colours interpolated."""
    V = np.asarray(raw.points, dtype=np.float64)
    F = np.asarray(raw.faces, dtype=np.int64)
    nv = len(V)
    if F.size and (F.min() < 0 or F.max() >= nv):
        bad = int(F.max()) if F.max() >= nv else int(F.min())
        raise _Fail(f"a face refers to vertex {bad + 1 if raw.info.get('format') == 'obj' else bad}, but the mesh "
                    f"has {nv:,} vertices")
    finite_v = np.isfinite(V).all(axis=1)
    a, b, c = V[F[:, 0]], V[F[:, 1]], V[F[:, 2]]
    cross = np.cross(b - a, c - a)
    area = 0.5 * np.sqrt((cross * cross).sum(axis=1))
    area[~(finite_v[F].all(axis=1) & np.isfinite(area))] = 0.0  # faces touching NaN vertices are skipped
    total = area.sum()
    info = dict(raw.info, n_vertices=nv, n_triangles=len(F), n_dropped_vertices=int((~finite_v).sum()))
    if not total > 0:  # all faces degenerate: fall back to the vertices as a point cloud
        info["sampled"] = False
        return replace(raw, faces=None, info=info)
    rng = np.random.default_rng(seed)
    cdf = np.cumsum(area)
    face = np.minimum(np.searchsorted(cdf, rng.random(n) * cdf[-1], side="right"), len(F) - 1)
    u, v = rng.random(n), rng.random(n)
    flip = u + v > 1.0  # reflect into the triangle so samples are uniform
    u[flip], v[flip] = 1.0 - u[flip], 1.0 - v[flip]
    w = 1.0 - u - v
    fa, fb, fc = F[face, 0], F[face, 1], F[face, 2]
    pts = w[:, None] * V[fa] + u[:, None] * V[fb] + v[:, None] * V[fc]
    nrm = cross[face] / np.maximum(np.linalg.norm(cross[face], axis=1, keepdims=True), 1e-300)
    out = _Raw(points=pts, normals=nrm, info=info)
    if raw.colors is not None:
        col = np.asarray(raw.colors, dtype=np.float64)
        col = col / (255.0 if col.max(initial=0) > 1.0 else 1.0)
        out.colors = w[:, None] * col[fa] + u[:, None] * col[fb] + v[:, None] * col[fc]
    if raw.face_labels is not None:
        out.labels = np.asarray(raw.face_labels)[face]
    info.update(sampled=True, surface_area=float(total), mesh_samples=n, sample_seed=seed)
    return out


def _colors_to_unit(c: np.ndarray) -> np.ndarray:
    """Colours of any numeric type -> float32 in [0, 1] (uchar / 255, floats in [0, 255] / 255)."""
    if c.dtype == np.uint8:
        return c.astype(np.float32) / 255.0
    c = np.nan_to_num(c.astype(np.float32), nan=0.0, posinf=1.0, neginf=0.0)
    if c.size and c.max() > 1.0:
        c = c / (65535.0 if c.max() > 255.0 else 255.0)
    return np.clip(c, 0.0, 1.0)


def _finish(raw: _Raw, name: str, max_points: int, decimate_to: int | None, seed: int) -> PointCloud:
    """Validate a parsed cloud (finite, enough points, not degenerate, within limits) -> PointCloud."""
    pts = np.asarray(raw.points)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise _Fail(f"the points have shape {pts.shape}, not (N, 3)")
    n_in = len(pts)
    info = dict(raw.info)
    info.setdefault("n_in_file", int(info.get("n_vertices", n_in)))
    if n_in == 0:
        raise _Fail("the file contains no points")
    # finite, and finite once stored as float32 (1e39 is a float64 number but an infinite float32 one);
    # NaN compares False. Per column: faster than .all(axis=1)
    big = float(np.finfo(np.float32).max)
    finite = (np.abs(pts[:, 0]) <= big) & (np.abs(pts[:, 1]) <= big) & (np.abs(pts[:, 2]) <= big)
    n_bad = int(n_in - finite.sum())
    n_dropped = n_bad + int(info.pop("n_dropped_vertices", 0))
    if n_bad:
        if n_bad == n_in:
            raise _Fail(f"all {n_in:,} points have non-finite coordinates (NaN, infinity, or beyond float32's range)")
        keep = np.flatnonzero(finite)
    else:
        keep = None
    pick = (lambda a: None if a is None else np.asarray(a)[keep]) if keep is not None else (
        lambda a: None if a is None else np.asarray(a))
    pts, colors, normals, labels = pick(pts), pick(raw.colors), pick(raw.normals), pick(raw.labels)
    n = len(pts)
    if n < MIN_POINTS:
        extra = f" ({n_dropped:,} more were not finite)" if n_dropped else ""
        raise _Fail(f"it has only {n} valid point{'s' * (n != 1)}{extra}; at least {MIN_POINTS} are needed")
    lo = np.array([pts[:, i].min() for i in range(3)], dtype=np.float64)  # per column: faster than axis=0
    hi = np.array([pts[:, i].max() for i in range(3)], dtype=np.float64)
    extent = float((hi - lo).max())
    if extent == 0.0:
        raise _Fail(f"all {n:,} points are the same point ({', '.join(f'{x:g}' for x in lo)}): the cloud has no extent")
    if n > max_points and decimate_to is None:
        raise _Fail(_too_many(n, max_points))
    if decimate_to is not None and n > decimate_to:
        idx = decimate_for_display(pts, decimate_to, seed)
        pts, colors, normals, labels = (None if a is None else a[idx] for a in (pts, colors, normals, labels))
        info["decimated_from"] = n
    # far from the origin (georeferenced scans), float32 would lose the detail: shift by a float64 offset
    maxabs = float(np.abs(np.concatenate([lo, hi])).max())
    if np.spacing(np.float32(maxabs)) > 1e-5 * extent:
        offset = (lo + hi) / 2.0
        pts = (pts.astype(np.float64) - offset).astype(np.float32)
        info["offset"] = [float(x) for x in offset]  # original = points + offset
    else:
        pts = pts.astype(np.float32, copy=False)
    if colors is not None:
        colors = _colors_to_unit(np.asarray(colors))
    if normals is not None:
        normals = np.nan_to_num(np.asarray(normals, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    if labels is not None:
        lab = np.asarray(labels)
        if lab.dtype.kind == "f":
            lab = np.nan_to_num(lab, nan=-1)
        labels = lab.astype(np.int64)
    return PointCloud(points=np.ascontiguousarray(pts), colors=colors, normals=normals, labels=labels,
                      source=name, n_dropped=n_dropped, info=info)


def normalize(points: np.ndarray) -> np.ndarray:
    """Centre at the mean and scale so the farthest point is at distance 1; float32 (N, 3)."""
    p = np.asarray(points, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] == 0:
        raise ValueError(f"normalize expects a non-empty (N, 3) array, got shape {p.shape}")
    p = p - p.mean(axis=0)
    scale = np.sqrt((p * p).sum(axis=1).max())
    if scale > 0:
        p /= scale
    return p.astype(np.float32)


def resample(points: np.ndarray, n: int, method: str = "fps", seed: int = 0, start: str = "index0") -> np.ndarray:
    """Indices (n,) int64 of n points: farthest point sampling or random; n > N repeats points.

    start (FPS only): "index0" starts at the first point (training and the field's code), "geometric" at the
    point farthest from the centroid (pcdviz.ops.FPS_STARTS), so a permutation of the points gives the same
    points. With n > N every point is taken and the extra n - N follow: index0 cycles in the file's order,
    geometric in FPS order (so which points repeat does not depend on the file's order either)."""
    pts = np.asarray(points)
    if pts.ndim != 2 or pts.shape[0] == 0:
        raise ValueError(f"resample expects a non-empty (N, 3) array, got shape {pts.shape}")
    if n < 1:
        raise ValueError(f"resample needs n >= 1, got {n}")
    N = pts.shape[0]
    if method == "random":
        rng = np.random.default_rng(seed)
        if n <= N:
            return rng.choice(N, n, replace=False).astype(np.int64)
        return np.concatenate([rng.permutation(N), rng.integers(0, N, n - N)]).astype(np.int64)
    if method != "fps":
        raise ValueError(f"resample method must be 'fps' or 'random', got {method!r}")
    if start not in ("index0", "geometric"):
        raise ValueError(f"resample start must be 'index0' or 'geometric', got {start!r}")
    xyz = np.ascontiguousarray(pts[:, :3], dtype=np.float32)
    if n >= N:  # every point, then cycle through them again
        order = np.arange(N, dtype=np.int64) if start == "index0" else _farthest_point_indices(xyz, N, start)
        return np.resize(order, n)
    return _farthest_point_indices(xyz, n, start)


def decimate_for_display(points: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Indices (sorted, int64) of a fixed-seed random subset of at most n points; milliseconds for millions."""
    N = len(points)
    if n >= N:
        return np.arange(N, dtype=np.int64)
    if n < 1:
        raise ValueError(f"decimate_for_display needs n >= 1, got {n}")
    # uniform random keeps the density the eye expects; sorting keeps the file's order (and cache locality)
    idx = np.random.default_rng(seed).choice(N, n, replace=False)
    idx.sort()
    return idx.astype(np.int64, copy=False)


def _farthest_point_indices(points: np.ndarray, n: int, start: str = "index0") -> np.ndarray:
    """FPS indices (n,) int64 from `start` (see resample), by pcdviz.ops, which picks the fastest backend (on CPU
    fpsample's QuickFPS from 128 samples up: ~10x faster than vanilla FPS for 100k -> 1024 points)."""
    import torch
    from pcdviz.ops import farthest_point_sample
    idx = farthest_point_sample(torch.from_numpy(points).unsqueeze(0), n, start=start)[0]
    return idx.numpy().astype(np.int64)
