"""Attention maps of one Point ViT forward pass, and the per-patch / per-point maps derived from them.

Everything here except `AttentionMaps.from_model`, `knn_crop` and `crop_relation` works on plain numpy
arrays, so the app can switch layer, head or mode without touching the model: one forward pass fills an
`AttentionMaps`, and every selector below is a few array operations on it.

Conventions: attention tensors are (L, H, 1+G, 1+G) with token 0 = CLS and rows softmaxed (the query is
the row); a model without a CLS token (Point-MAE's pre-training encoder) gives (L, H, G, G) and
`cls_tokens` = 0. A "patch map" is one value per patch (G,); `to_points` turns it into one value per point.

Projection rule (patch values -> point values), used by every map the app draws:
  1. a model-input point that lies in one or more groups gets the MEAN of those groups' values;
  2. a model-input point in no group gets the value of the patch whose CENTRE is nearest to it
     (the same patch `nearest_patch` picks when that point is clicked);
  3. a point of any other cloud (e.g. the full-resolution upload shown instead of the model's input)
     gets the value of its NEAREST MODEL-INPUT POINT, so it looks exactly like the model-input rendering.
A map averaged over several patchings (the explorer's default) projects each patching with the SMOOTH rule
instead of 1-2: a model-input point gets a Gaussian-weighted mean of the values of its SMOOTH_CENTRES
nearest patch centres, sigma = the mean distance of a group's points from its centre (each kernel less that
of the next-nearest centre, so values move continuously with the points; rule 3 stays). Rules
1-2 paint each patch's exact group, with an edge that a small jitter moves across points; averaging
patchings blurs those edges anyway, and the kernel does it without the sampling noise (on sofia.stl, rank
correlation under a 0.5% jitter 0.856 -> 0.930 with 16 patchings: BENCHMARKS.md, "Stable maps").
"""
from __future__ import annotations

import hashlib
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

HEAD_FUSIONS = ("mean", "max", "min")
_DISPLAY_CACHE_SIZE = 4   # display clouds whose nearest-input index is kept (current cloud, comparison, ...)
SMOOTH_CENTRES = 4        # the smooth rule's nearest centres (few: the page gets the weights; all G did no better)
PROJECTION_RULES = ("groups", "smooth")


def _fuse_heads(x: np.ndarray, head: int | str, n_heads: int) -> np.ndarray:
    """Select one head (int) or fuse over the head axis 0 ("mean" | "max" | "min")."""
    if isinstance(head, str):
        if head == "mean":
            return x.mean(axis=0)
        if head == "max":
            return x.max(axis=0)
        if head == "min":
            return x.min(axis=0)
        raise ValueError(f"head must be an int or one of {HEAD_FUSIONS}, got {head!r}")
    if isinstance(head, (bool, np.bool_)) or not isinstance(head, (int, np.integer)):
        raise ValueError(f"head must be an int or one of {HEAD_FUSIONS}, got {head!r}")
    if not -n_heads <= head < n_heads:
        raise IndexError(f"head {head} out of range for {n_heads} heads")
    return x[head]


def mass_threshold(values: np.ndarray, keep: float) -> np.ndarray:
    """Bool mask of the smallest set of entries holding `keep` of the total mass (DINO's threshold)."""
    # DINO (visualize_attention.py) sorts, normalises, takes a cumulative sum and keeps the largest entries
    # until `keep` of the mass is covered. Negative values carry no mass (clipped at 0); ties break by index.
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(v)):
        raise ValueError("mass_threshold: values must be finite")
    if not 0.0 <= keep <= 1.0:
        raise ValueError(f"keep must be in [0, 1], got {keep}")
    v = np.clip(v, 0.0, None)
    mask = np.zeros(v.shape, dtype=bool)
    total = v.sum()
    if keep <= 0.0 or total <= 0.0:
        return mask
    order = np.argsort(-v, kind="stable")
    cum = np.cumsum(v[order]) / total
    # first prefix whose mass reaches `keep` (tolerance so keep=1 with rounding still stops at the last non-zero)
    n_keep = int(np.searchsorted(cum, keep - 1e-9, side="left")) + 1
    mask[order[:min(n_keep, v.size)]] = True
    return mask


def _fingerprint(points: np.ndarray) -> tuple:
    """Content key of a point array (shape, dtype, hash of the bytes): ~13 ms for 1M points."""
    a = np.ascontiguousarray(points)
    digest = hashlib.blake2b(memoryview(a).cast("B"), digest_size=16).hexdigest()
    return a.shape, str(a.dtype), digest


@dataclass(eq=False)
class AttentionMaps:
    """All layers' and heads' attention of one forward pass on one cloud, plus what projects it to points."""

    attentions: np.ndarray    # (L, H, T, T) float32, T = cls_tokens + G; token 0 = CLS when there is one
    centers: np.ndarray       # (G, 3)
    group_idx: np.ndarray     # (G, K) into `points`
    points: np.ndarray        # (N, 3) the model's input points (normalised)
    cls_feature: np.ndarray   # (D,)
    patch_tokens: np.ndarray  # (G, D)
    cls_tokens: int = 1       # 1, or 0 for a model without a CLS token (cls_feature is then its mean patch token)
    # Not fields (so dataclasses.asdict(maps) is the arrays and cls_tokens, ready for np.savez): self._cache holds the
    # point<-patch incidence, rollouts, and an LRU of display clouds' nearest-input indices; self._lock guards
    # it (Gradio calls handlers from several threads).

    def __post_init__(self):
        self.attentions = np.ascontiguousarray(self.attentions, dtype=np.float32)
        self.centers = np.ascontiguousarray(self.centers, dtype=np.float32)
        self.group_idx = np.ascontiguousarray(self.group_idx, dtype=np.int64)
        self.points = np.ascontiguousarray(self.points, dtype=np.float32)
        self.cls_feature = np.ascontiguousarray(self.cls_feature, dtype=np.float32).reshape(-1)
        self.patch_tokens = np.ascontiguousarray(self.patch_tokens, dtype=np.float32)
        a = self.attentions
        self.cls_tokens = int(self.cls_tokens)
        if self.cls_tokens not in (0, 1):
            raise ValueError(f"cls_tokens must be 0 or 1, got {self.cls_tokens}")
        if a.ndim != 4 or a.shape[2] != a.shape[3] or a.shape[2] < 1 + self.cls_tokens:
            raise ValueError(f"attentions must be (L, H, T, T) with T = {self.cls_tokens} + G, got {a.shape}")
        G = a.shape[2] - self.cls_tokens
        if self.centers.shape != (G, 3):
            raise ValueError(f"centers must be ({G}, 3), got {self.centers.shape}")
        if self.group_idx.ndim != 2 or self.group_idx.shape[0] != G:
            raise ValueError(f"group_idx must be ({G}, K), got {self.group_idx.shape}")
        if self.points.ndim != 2 or self.points.shape[1] != 3:
            raise ValueError(f"points must be (N, 3), got {self.points.shape}")
        if self.group_idx.size and (self.group_idx.min() < 0 or self.group_idx.max() >= len(self.points)):
            raise ValueError("group_idx has indices outside the points")
        if self.patch_tokens.ndim != 2 or self.patch_tokens.shape[0] != G:
            raise ValueError(f"patch_tokens must be ({G}, D), got {self.patch_tokens.shape}")
        self._cache = {"display": OrderedDict()}
        self._lock = threading.Lock()
        self._build_incidence()

    # ---- construction -------------------------------------------------------------------------------

    @classmethod
    def from_model(cls, model, points: np.ndarray) -> "AttentionMaps":
        """One forward pass (eval mode, no grad, return_attention=True) of `model` on points (N, 3)."""
        pts = np.ascontiguousarray(points, dtype=np.float32)
        if pts.ndim != 2 or pts.shape[1] != 3:
            raise ValueError(f"points must be (N, 3), got {pts.shape}")
        return maps_from_model_batch(model, pts[None])[0]

    def _build_incidence(self):
        """Precompute the sparse point<-patch weights of the projection rule (see the module docstring)."""
        N, G = len(self.points), self.n_patches
        # unique (point, group) memberships: a group never counts twice for one point
        pairs = np.unique(self.group_idx.reshape(-1) + N * np.repeat(np.arange(G), self.group_idx.shape[1]))
        member_pt, member_g = pairs % N, pairs // N
        count = np.bincount(member_pt, minlength=N)
        uncovered = np.flatnonzero(count == 0)
        near = self._nearest_center(self.points[uncovered]) if len(uncovered) else np.zeros(0, np.int64)
        self._cache["proj_point"] = np.concatenate([member_pt, uncovered])
        self._cache["proj_patch"] = np.concatenate([member_g, near])
        self._cache["proj_weight"] = np.concatenate([1.0 / count[member_pt], np.ones(len(uncovered))])
        self._cache["n_groups_of_point"] = count

    def smooth_incidence(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(point, patch, weight) of the smooth rule (module docstring), SMOOTH_CENTRES entries per input point;
        the weights are float32 values (in float64), so the page that gets them as float32 adds the same."""
        with self._lock:
            hit = self._cache.get("smooth")
        if hit is None:
            pts = np.asarray(self.points, dtype=np.float64)
            c = np.asarray(self.centers, dtype=np.float64)
            sigma = max(float(np.linalg.norm(pts[self.group_idx] - c[:, None], axis=-1).mean()), 1e-12)
            k = min(SMOOTH_CENTRES, self.n_patches)
            d2_all = np.maximum(self._squared_distances_to_centers(pts), 0.0)   # (N, G)
            order = np.argsort(d2_all, axis=1, kind="stable")[:, :k + 1]   # nearest centres, one more than kept
            kern = np.exp(-(np.take_along_axis(d2_all, order, 1) - d2_all.min(1, keepdims=True)) / (2 * sigma * sigma))
            # minus the first left-out centre's kernel: a centre's weight is 0 when it enters or leaves the k
            # nearest, so the values move continuously with the points (all k+1 tied: equal weights)
            w = kern[:, :k] - kern[:, k:k + 1] if self.n_patches > k else kern
            w[w.sum(1) <= 0] = 1.0
            w = (w / w.sum(1, keepdims=True)).astype(np.float32).astype(np.float64)
            near = order[:, :k]
            hit = (np.repeat(np.arange(len(pts)), k), near.reshape(-1).astype(np.int64), w.reshape(-1))
            with self._lock:
                self._cache["smooth"] = hit
        return hit

    def _squared_distances_to_centers(self, xyz: np.ndarray) -> np.ndarray:
        """(M, G) squared distances (float64, by the dot-product expansion) of rows of xyz to the patch centres."""
        q = np.asarray(xyz, dtype=np.float64)
        c = self.centers.astype(np.float64)
        return (q * q).sum(1, keepdims=True) - 2.0 * q @ c.T + (c * c).sum(1)

    def _nearest_center(self, xyz: np.ndarray) -> np.ndarray:
        """Index of the nearest patch centre for each row of xyz (M, 3); brute force (G is small)."""
        out = np.empty(len(xyz), dtype=np.int64)
        for s in range(0, len(xyz), 65536):  # chunks keep the (chunk, G) distance matrix small
            out[s:s + 65536] = self._squared_distances_to_centers(xyz[s:s + 65536]).argmin(1)
        return out

    # ---- sizes --------------------------------------------------------------------------------------

    @property
    def n_layers(self) -> int:
        """Number of transformer blocks L."""
        return self.attentions.shape[0]

    @property
    def n_heads(self) -> int:
        """Number of attention heads H."""
        return self.attentions.shape[1]

    @property
    def n_patches(self) -> int:
        """Number of patch tokens G (CLS excluded)."""
        return self.attentions.shape[2] - self.cls_tokens

    @property
    def has_cls(self) -> bool:
        """Whether token 0 is a CLS token (the CLS views need one)."""
        return self.cls_tokens == 1

    def _layer(self, layer: int) -> int:
        if isinstance(layer, (bool, np.bool_)) or not isinstance(layer, (int, np.integer)):
            raise ValueError(f"layer must be an int, got {layer!r}")
        if not -self.n_layers <= layer < self.n_layers:
            raise IndexError(f"layer {layer} out of range for {self.n_layers} layers")
        return int(layer)

    # ---- patch maps (G,) ----------------------------------------------------------------------------

    def cls_to_patches(self, layer: int, head: int | str) -> np.ndarray:
        """CLS token's attention to each patch (G,) for one layer and one head or a head fusion."""
        if not self.has_cls:
            raise ValueError("this model has no CLS token (like Point-MAE's pre-training encoder), so it has no "
                             "CLS -> patch maps; use the mean attention each patch receives, a query patch, or rollout")
        rows = self.attentions[self._layer(layer), :, 0, 1:]  # (H, G)
        return np.ascontiguousarray(_fuse_heads(rows, head, self.n_heads))

    def mean_received(self, layer: int, head: int | str) -> np.ndarray:
        """Mean attention each patch receives from the patch queries (G,): the column mean of patch -> patch.

        The global view of a model without a CLS token: where the patches, on average, look."""
        c = self.cls_tokens
        cols = self.attentions[self._layer(layer), :, c:, c:].mean(axis=1)  # (H, G)
        return np.ascontiguousarray(_fuse_heads(cols, head, self.n_heads))

    def global_map(self, layer: int, head: int | str) -> np.ndarray:
        """The model's global view of the patches: CLS -> patches, or mean_received without a CLS token."""
        return self.cls_to_patches(layer, head) if self.has_cls else self.mean_received(layer, head)

    def patch_to_patches(self, layer: int, head: int | str, query: int) -> tuple[np.ndarray, float]:
        """Attention of patch `query` to every patch (G,), and its attention to the CLS token (NaN without one)."""
        G, c = self.n_patches, self.cls_tokens
        if isinstance(query, (bool, np.bool_)) or not isinstance(query, (int, np.integer)) or not -G <= query < G:
            raise IndexError(f"query patch {query!r} out of range for {G} patches")
        row = _fuse_heads(self.attentions[self._layer(layer), :, c + (int(query) % G), :], head, self.n_heads)
        return np.ascontiguousarray(row[c:]), float(row[0]) if c else float("nan")

    def rollout(self, head_fusion: str = "mean") -> np.ndarray:
        """CLS row (G,) of attention rollout (Abnar & Zuidema 2020) across all layers; without a CLS token,
        the mean over the patch rows (where the patches' final tokens draw from, on average)."""
        if head_fusion not in HEAD_FUSIONS:
            raise ValueError(f"head_fusion must be one of {HEAD_FUSIONS}, got {head_fusion!r}")
        key = ("rollout", head_fusion)
        if key not in self._cache:
            T = self.attentions.shape[2]
            joint = np.eye(T)
            for layer in range(self.n_layers):
                a = _fuse_heads(self.attentions[layer].astype(np.float64), head_fusion, self.n_heads)
                a = a + np.eye(T)                       # the residual connection: identity added...
                a = a / a.sum(axis=-1, keepdims=True)   # ...and rows renormalised
                joint = a @ joint                       # later layers act on earlier layers' mixture
            c = self.cls_tokens
            row = joint[0, 1:] if c else joint.mean(axis=0)
            self._cache[key] = row.astype(np.float32)
        return self._cache[key].copy()

    # ---- patch -> point -----------------------------------------------------------------------------

    def to_points(self, values: np.ndarray, points: np.ndarray | None = None, rule: str = "groups") -> np.ndarray:
        """Patch values (G,) or (M, G) -> one value per point (N,) or (M, N) by the module's projection rule:
        "groups" (rules 1-3) or "smooth" (the kernel, then rule 3)."""
        v = np.asarray(values, dtype=np.float64)
        if v.shape[-1] != self.n_patches or v.ndim not in (1, 2):
            raise ValueError(f"values must be (G,) or (M, G) with G={self.n_patches}, got {v.shape}")
        if rule not in PROJECTION_RULES:
            raise ValueError(f"rule must be one of {PROJECTION_RULES}, got {rule!r}")
        if rule == "smooth":
            p, g, w = self.smooth_incidence()
        else:
            p, g, w = self._cache["proj_point"], self._cache["proj_patch"], self._cache["proj_weight"]
        N = len(self.points)
        if v.ndim == 1:
            on_input = np.bincount(p, weights=v[g] * w, minlength=N)
        else:
            on_input = np.stack([np.bincount(p, weights=row[g] * w, minlength=N) for row in v])
        on_input = on_input.astype(np.float32)
        if points is None:
            return on_input
        nn = self.display_index(points)
        return on_input if nn is None else on_input[..., nn]

    def display_index(self, points: np.ndarray) -> np.ndarray | None:
        """Index (M,) of the nearest model-input point of each display point; None when points ARE the input."""
        if points is self.points:
            return None
        pts = np.asarray(points)
        if pts.ndim != 2 or pts.shape[1] != 3:
            raise ValueError(f"points must be (M, 3), got {pts.shape}")
        if pts.shape == self.points.shape and np.array_equal(pts, self.points):
            return None
        return self._display_entry(pts)["nn"]

    def _display_entry(self, pts: np.ndarray) -> dict:
        """Cached per-display-cloud data (LRU by content): nearest input index, and later its patch ids."""
        cache = self._cache["display"]
        key = _fingerprint(pts)
        with self._lock:
            if key in cache:
                cache.move_to_end(key)
                return cache[key]
        entry = {"nn": self._nearest_input(pts)}   # outside the lock: ~1 s for 1M points
        with self._lock:
            cache[key] = entry
            while len(cache) > _DISPLAY_CACHE_SIZE:
                cache.popitem(last=False)
        return entry

    def _nearest_input(self, xyz: np.ndarray) -> np.ndarray:
        """Nearest model-input point of each row of xyz."""
        from pcdviz.ops import nearest_index

        return nearest_index(self.points, xyz)

    def point_patch(self, points: np.ndarray | None = None) -> np.ndarray:
        """The patch each point is shown as belonging to (N,): its nearest centre (for hover and click picking)."""
        if points is None or self.display_index(points) is None:   # the model input itself
            if "point_patch" not in self._cache:
                self._cache["point_patch"] = self._nearest_center(self.points)
            return self._cache["point_patch"]
        entry = self._display_entry(np.asarray(points))
        if "patch" not in entry:
            entry["patch"] = self._nearest_center(np.asarray(points))
        return entry["patch"]

    def group_points(self, patch: int) -> np.ndarray:
        """Sorted unique model-input point indices of one patch's group (to highlight the selected patch)."""
        return np.unique(self.group_idx[int(patch)])

    # ---- part alignment -----------------------------------------------------------------------------

    def attended_points(self, values: np.ndarray, keep: float = 0.6) -> np.ndarray:
        """Bool (N,) over model-input points: at least half of the point's projected value comes from kept patches."""
        # kept patches: mass_threshold(values, keep). Project the 0/1 kept indicator with the projection rule:
        # a point in groups gets the fraction of its groups that are kept, a point in no group 0 or 1 from its
        # nearest centre. "Attended" = that fraction >= 0.5 (the analogue of a pixel whose patch is kept in DINO).
        return self.to_points(mass_threshold(values, keep).astype(np.float64)) >= 0.5 - 1e-6

    def head_part_iou(self, labels: np.ndarray, layer: int = -1, keep: float | None = None) -> "HeadPartIoU":
        """Per head: how well its CLS map singles out one part of the shape (see HeadPartIoU).

        The head's point set for part p of n_p points is, by default, its n_p most-attended model-input
        points: free of any threshold, and fair to diffuse and peaky maps alike (points tied at the cut,
        a patch's points sharing one value, count fractionally, as a random tie-break would on average).
        With `keep`, it is instead `attended_points(map, keep)` for every part: DINO's rule (keep that
        share of the mass), under which a diffuse map keeps many points and so overlaps the biggest part.
        """
        labels = np.asarray(labels).reshape(-1)
        if len(labels) != len(self.points):
            raise ValueError(f"labels must have one entry per model-input point ({len(self.points)}), got {len(labels)}")
        parts = np.unique(labels[labels >= 0])   # negative labels mean "no part" and are in no part set
        if len(parts) == 0:
            raise ValueError("labels contain no part (all negative)")
        part_sets = labels[None, :] == parts[:, None]                       # (P, N)
        n_part = part_sets.sum(1)
        layer = self._layer(layer)
        overlap = np.empty((self.n_heads, len(parts)))
        size = np.empty((self.n_heads, len(parts)))                         # of each head's set for each part
        for h in range(self.n_heads):
            values = self.global_map(layer, h)
            if keep is None:
                overlap[h], size[h] = _top_k_overlap(self.to_points(values), part_sets), n_part
            else:
                attended = self.attended_points(values, keep)
                overlap[h], size[h] = (part_sets & attended).sum(1), attended.sum()
        iou = overlap / np.maximum(size + n_part - overlap, 1e-12)
        # a random set of the same size holds a fraction f = n_p / N of it in part p, on average
        expected = size * (n_part / len(labels))
        chance = expected / (size + n_part - expected)
        corrected = np.where(chance < 1, (iou - chance) / np.maximum(1 - chance, 1e-12), 0.0)   # one part: no signal
        best = iou.argmax(1)
        best_corrected = corrected.argmax(1)
        rows = np.arange(self.n_heads)
        return HeadPartIoU(iou=iou[rows, best].astype(np.float32), part=parts[best],
                           corrected=corrected[rows, best_corrected].astype(np.float32),
                           corrected_part=parts[best_corrected])


@dataclass
class HeadPartIoU:
    """AttentionMaps.head_part_iou's answer, one entry per head.

    iou: the best part's IoU (a random map already scores about f / (2 - f) for a part holding a fraction f
    of the points, so on its own it favours maps that happen to cover the biggest part);
    corrected: the best part's chance-corrected IoU, (IoU - chance) / (1 - chance), where chance is the IoU
    a random point set of the same size would have on average: 0 for a random map, 1 for a head whose
    set is exactly one part, whatever that part's size.
    """
    iou: np.ndarray
    part: np.ndarray
    corrected: np.ndarray
    corrected_part: np.ndarray


def _top_k_overlap(values: np.ndarray, part_sets: np.ndarray) -> np.ndarray:
    """(P,): for each part p, the expected number of p's points among the |p| highest values (ties broken at random)."""
    desc = np.sort(values)[::-1]
    out = np.empty(len(part_sets), dtype=np.float64)
    for i, in_part in enumerate(part_sets):
        k = int(in_part.sum())
        cut = desc[k - 1]
        above, tied = values > cut, values == cut
        n_tied = tied.sum()
        out[i] = (above & in_part).sum() + (k - above.sum()) * (tied & in_part).sum() / n_tied
    return out


def nearest_patch(maps: AttentionMaps, point_xyz) -> int:
    """Index of the patch whose centre is nearest a (clicked) point (3,)."""
    xyz = np.asarray(point_xyz, dtype=np.float64).reshape(1, 3)
    return int(maps._nearest_center(xyz)[0])


# ---- local <-> global ------------------------------------------------------------------------------

def knn_crop(points: np.ndarray, seed_index: int, ratio: float, n_out: int | None = None) -> np.ndarray:
    """Indices of a kNN-ball crop: the ceil(N*ratio) points nearest the seed (itself included), optionally FPS-resampled to n_out."""
    # The kNN-ball crop of training/crops.py, through the same core (ops.ball_order); training then subsamples
    # at random, the app by FPS so its crop is deterministic. Order: by distance from the seed, so FPS
    # (start index 0) starts at the seed. Fewer crop points than n_out: indices repeat cyclically.
    import torch

    from pcdviz import ops

    pts = np.ascontiguousarray(points, dtype=np.float32)
    N = len(pts)
    if pts.ndim != 2 or pts.shape[1] != 3 or N == 0:
        raise ValueError(f"points must be (N, 3) with N >= 1, got {pts.shape}")
    if not 0 <= int(seed_index) < N:
        raise IndexError(f"seed_index {seed_index} out of range for {N} points")
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"ratio must be in (0, 1], got {ratio}")
    k = min(N, max(1, math.ceil(N * ratio)))
    t = torch.from_numpy(pts)[None]
    idx = ops.ball_order(t, torch.tensor([int(seed_index)]))[0, :k]
    if n_out is None or n_out == k:
        return idx.numpy().astype(np.int64)
    if n_out < 1:
        raise ValueError(f"n_out must be >= 1, got {n_out}")
    if n_out > k:
        return np.resize(idx.numpy().astype(np.int64), n_out)
    sel = ops.farthest_point_sample(t[:, idx], n_out)[0]
    return idx[sel].numpy().astype(np.int64)


def normalize_crop(points: np.ndarray) -> np.ndarray:
    """Centre a crop (n, 3) at its centroid and scale it into the unit sphere, as training does for every view."""
    p = np.asarray(points, dtype=np.float64)
    p = p - p.mean(axis=0)
    return (p / max(float(np.sqrt((p * p).sum(1).max())), 1e-6)).astype(np.float32)


def crop_relation(model, points: np.ndarray, seed_index: int, ratio: float = 0.3, n_crop: int | None = None,
                  *, maps: AttentionMaps | None = None, normalize: bool = True) -> dict:
    """Cut a local crop as training does, embed it, and compare its CLS feature with the whole shape's patch tokens."""
    # Returns: indices (n_crop,) into points; similarity (G,) cosine of the crop's CLS feature to each patch
    # token of the whole shape; cls_similarity (crop CLS vs whole CLS); crop_cls (D,). Pass `maps` (from the same
    # model and points) to reuse the whole shape's tokens instead of a second forward pass. The crop is
    # renormalised before the model sees it (training.crops does the same; no augmentation here), and
    # resampled by FPS (training resamples at random) so the app's result is deterministic.
    import torch

    pts = np.ascontiguousarray(points, dtype=np.float32)
    if n_crop is None:
        n_crop = max(1, int(model.config.n_points) // 4)  # training's local crop size
    idx = knn_crop(pts, seed_index, ratio, n_crop)
    crop = normalize_crop(pts[idx]) if normalize else pts[idx]
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            crop_cls = model(torch.from_numpy(crop).to(device)[None]).cls[0].float().cpu().numpy()
            if maps is None:
                whole = model(torch.from_numpy(pts).to(device)[None])
                patch_tokens = whole.patches[0].float().cpu().numpy()
                whole_cls = whole.cls[0].float().cpu().numpy()
            else:
                patch_tokens, whole_cls = maps.patch_tokens, maps.cls_feature
    finally:
        model.train(was_training)

    def unit(x):
        return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)

    c = unit(crop_cls.astype(np.float64))
    return {
        "indices": idx,
        "similarity": (unit(patch_tokens.astype(np.float64)) @ c).astype(np.float32),
        "cls_similarity": float(unit(whole_cls.astype(np.float64)) @ c),
        "crop_cls": crop_cls,
        "seed_index": int(seed_index),
        "ratio": float(ratio),
        "n_crop": int(n_crop),
    }


# ---- locality of patch-to-patch attention --------------------------------------------------------
# Two numbers per layer and head, on the patch-to-patch block only (CLS row and column dropped, rows
# renormalised over the patches): does a query patch prefer near patches, and does the map depend on the query.

def _patch_block(attentions: np.ndarray, cls_tokens: int = 1) -> np.ndarray:
    """(L, H, T, T) -> (L, H, G, G) patch-to-patch attention with rows renormalised over the patches."""
    a = np.asarray(attentions, dtype=np.float64)
    if a.ndim != 4 or a.shape[2] != a.shape[3] or a.shape[2] <= cls_tokens:
        raise ValueError(f"attentions must be (L, H, T, T) with T > {cls_tokens}, got {a.shape}")
    a = a[:, :, cls_tokens:, cls_tokens:]
    return a / np.maximum(a.sum(-1, keepdims=True), 1e-30)


def attention_distance_ratio(attentions: np.ndarray, centers: np.ndarray, cls_tokens: int = 1) -> np.ndarray:
    """(L, H): attention-weighted distance from each query patch's centre to the key centres, averaged over
    queries, divided by the mean distance over all (query, key) pairs (self included).

    1.0 = no preference for near patches (uniform attention gives exactly 1); a head that attends only to
    each query's nearest patches gives a small ratio; > 1 prefers far patches. Like the ViT paper's mean
    attention distance, made scale-free by the shape's own spread of centres."""
    c = np.asarray(centers, dtype=np.float64)
    mean_d = np.sqrt(((c[:, None, :] - c[None, :, :]) ** 2).sum(-1)).mean() if c.ndim == 2 else 0.0
    if mean_d <= 0:
        raise ValueError("all patch centres coincide: the distance ratio is undefined")
    return attention_mean_distance(attentions, centers, cls_tokens) / mean_d


def query_argmax_share(attentions: np.ndarray, cls_tokens: int = 1) -> np.ndarray:
    """(L, H): the share of query patches whose most-attended patch is the head's most common one.

    1.0 = every query looks at the same patch (a global pooling, one map whatever the query); 1/G = each
    query has its own (for example its own or a neighbouring patch). Ties go to the lowest index."""
    top = _patch_block(attentions, cls_tokens).argmax(-1)   # (L, H, G)
    G = top.shape[-1]
    counts = np.apply_along_axis(np.bincount, -1, top, minlength=G)   # (L, H, G)
    return counts.max(-1) / G


def attention_mean_distance(attentions: np.ndarray, centers: np.ndarray, cls_tokens: int = 1) -> np.ndarray:
    """(L, H): the ViT paper's mean attention distance for patches: the attention-weighted distance between
    each query patch's centre and the key centres, averaged over the queries, in the units of `centers`
    (the explorer's clouds are normalised to the unit sphere)."""
    a = _patch_block(attentions, cls_tokens)
    c = np.asarray(centers, dtype=np.float64)
    if c.shape != (a.shape[-1], 3):
        raise ValueError(f"centers must be ({a.shape[-1]}, 3), got {c.shape}")
    d = np.sqrt(((c[:, None, :] - c[None, :, :]) ** 2).sum(-1))   # (G, G)
    return (a * d).sum(-1).mean(-1)


def attention_entropy(attentions: np.ndarray, cls_tokens: int = 1) -> np.ndarray:
    """(L, H): the mean entropy (nats) of the patch queries' attention over the patches; ln G = uniform, 0 = one patch."""
    a = _patch_block(attentions, cls_tokens)
    return -(a * np.log(np.maximum(a, 1e-30))).sum(-1).mean(-1)


def attention_locality(maps: "AttentionMaps") -> dict:
    """Per-head statistics of one forward pass, each (L, H): distance_ratio and argmax_share (locality),
    mean_distance (in units of the normalised cloud) and entropy (nats) of the patch queries' attention."""
    a, c, k = maps.attentions, maps.centers, maps.cls_tokens
    return {"distance_ratio": attention_distance_ratio(a, c, k), "argmax_share": query_argmax_share(a, k),
            "mean_distance": attention_mean_distance(a, c, k), "entropy": attention_entropy(a, k)}


# ---- honest scales and query dependence --------------------------------------------------------------
# Plain functions on arrays (no AttentionMaps method), so they hold for any model the maps come from.

NEAR_UNIFORM_TOL = 0.10   # a map is "near uniform" when every patch lies within +-10% of uniform (see near_uniform)
QUERY_DEPENDENCE_LOW = 0.02   # below this mean total-variation distance the query maps count as "nearly the same"


def multiple_of_uniform(values: np.ndarray) -> np.ndarray:
    """A patch map (G,) or maps (..., G) as multiples of uniform: value / mean over patches (1 = every patch alike).

    The mean is over the map's own patches, so a CLS or query row whose share of attention to the CLS token
    is s still reads 1 where its remaining 1 - s is spread evenly. A map with no mass (all <= 0) gives zeros."""
    v = np.asarray(values, dtype=np.float64)
    mean = v.mean(axis=-1, keepdims=True)
    out = np.divide(v, mean, out=np.zeros_like(v), where=mean > 0)
    return out.astype(np.float32)


def uniform_deviation(values: np.ndarray) -> float:
    """Largest |value / mean - 1| over the patches of one map (G,): 0 for a perfectly uniform map."""
    m = multiple_of_uniform(values)
    return float(np.abs(m - 1.0).max()) if m.size and np.asarray(values).mean() > 0 else float("inf")


def near_uniform(values: np.ndarray, tol: float = NEAR_UNIFORM_TOL) -> bool:
    """Whether every patch of a map (G,) is within `tol` of uniform (e.g. 0.9-1.1x uniform for tol 0.1)."""
    return uniform_deviation(values) <= tol


def query_dependence(attentions: np.ndarray, head: int | str = "mean", first_patch: int = 1) -> np.ndarray:
    """(L,): per layer, how much the patch -> patch maps depend on the query patch.

    For each layer, each query patch's row over the patch tokens (columns from `first_patch` on, renormalised
    to sum 1, heads selected or fused as in `_fuse_heads`) is compared with the mean row over all queries;
    the value is the mean total-variation distance, 0.5 * sum |row - mean row|: 0 when every query gives the
    same map, 1 when the queries attend to disjoint patches. attentions: (L, H, T, T), token `first_patch`
    on are patches (1 with a CLS token)."""
    a = np.asarray(attentions, dtype=np.float64)
    if a.ndim != 4 or a.shape[2] != a.shape[3]:
        raise ValueError(f"attentions must be (L, H, T, T), got {a.shape}")
    out = np.empty(a.shape[0], dtype=np.float64)
    for layer in range(a.shape[0]):
        rows = _fuse_heads(a[layer, :, first_patch:, first_patch:], head, a.shape[1])   # (G, G) query x key
        rows = rows / np.maximum(rows.sum(-1, keepdims=True), 1e-12)
        out[layer] = 0.5 * np.abs(rows - rows.mean(0, keepdims=True)).sum(-1).mean()
    return out.astype(np.float32)


def maps_from_model_batch(model, points: np.ndarray) -> list[AttentionMaps]:
    """AttentionMaps of several clouds (B, N, 3) in one forward pass (eval mode, no grad): about 3x less time
    per cloud than B calls of `AttentionMaps.from_model` for the tiny models (batch 31 of 1,024 points)."""
    import torch

    pts = np.ascontiguousarray(points, dtype=np.float32)
    if pts.ndim != 3 or pts.shape[2] != 3:
        raise ValueError(f"points must be (B, N, 3), got {pts.shape}")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()  # drop path off; restored below so a training caller is not surprised
    try:
        with torch.no_grad():
            out = model(torch.from_numpy(pts).to(device), return_attention=True)
    finally:
        model.train(was_training)
    att = torch.stack(list(out.attentions), 1).float().cpu().numpy()   # depth x (B, H, T, T) -> (B, L, H, T, T)
    centers, groups = out.centers.float().cpu().numpy(), out.group_idx.cpu().numpy()
    cls, patches = out.cls.float().cpu().numpy(), out.patches.float().cpu().numpy()
    cls_tokens = int(getattr(getattr(model, "config", None), "cls_tokens", 1))
    return [AttentionMaps(attentions=att[b], centers=centers[b], group_idx=groups[b], points=pts[b],
                          cls_feature=cls[b], patch_tokens=patches[b], cls_tokens=cls_tokens) for b in range(len(pts))]
