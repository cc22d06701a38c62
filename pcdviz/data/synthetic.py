"""Procedural, part-labelled synthetic shapes: the embedded default data set.

Every shape is assembled from primitive surfaces (boxes, surfaces of revolution, swept tubes,
extruded outlines) turned into triangles, one triangle list per part, and points are sampled
uniformly by area over the whole shape, so density is the same on every part and each point
carries the index of its part (an index into PART_NAMES[category]).

Conventions: y is up and the object stands on y = 0 before normalisation; furniture faces +z
(a chair's back is at -z); long objects lie along x (airplane and car noses point to +x, a bed's
headboard is at -x); upright objects (rocket, tower, bottle, lamp, guitar) grow along +y.
Each shape gets a small random rotation about the up axis (default within +-15 degrees).

Proportions are drawn per shape, with overlapping ranges within the look-alike groups
(chair / bench / sofa / stool, table / desk, bottle / vase, airplane / rocket / tower,
bed / sofa), so telling a pair apart takes the part structure, not the bounding box.
"""

from __future__ import annotations

import zlib

import numpy as np
import torch

# The shapes are built in three sibling modules: primitive surfaces as triangle arrays, and the category
# generators by family. _box, _cylinder, Y_TO_X and Y_TO_Z are also importable from here, as before the split.
from .synthetic_furniture import _bed, _bench, _chair, _desk, _sofa, _stool, _table
from .synthetic_objects import _airplane, _bottle, _car, _guitar, _lamp, _mug, _rocket, _tower, _vase
from .synthetic_primitives import Y_TO_X, Y_TO_Z, _box, _cylinder, _rot_y  # noqa: F401

CATEGORIES: list[str] = [
    "airplane", "rocket", "chair", "bench", "sofa", "stool", "table", "desk",
    "bed", "lamp", "mug", "bottle", "vase", "guitar", "car", "tower",
]

PART_NAMES: dict[str, list[str]] = {
    "airplane": ["fuselage", "wings", "tail_fin", "stabilizers", "engines"],
    "rocket": ["body", "nose_cone", "fins", "nozzle", "boosters"],
    "chair": ["seat", "back", "legs", "arms"],
    "bench": ["seat", "legs", "backrest"],
    "sofa": ["seat", "back", "arms", "base"],
    "stool": ["seat", "legs", "footrest"],
    "table": ["top", "legs", "shelf"],
    "desk": ["top", "drawers", "legs"],
    "bed": ["frame", "mattress", "headboard", "footboard", "pillows"],
    "lamp": ["base", "pole", "shade"],
    "mug": ["body", "handle"],
    "bottle": ["body", "neck", "cap"],
    "vase": ["body", "neck"],
    "guitar": ["body", "neck", "head"],
    "car": ["body", "cabin", "wheels"],
    "tower": ["base", "tiers", "spire"],
}

# Parts that only some variants have (every other part is in every shape of its category).
OPTIONAL_PARTS: dict[str, set[str]] = {
    "airplane": {"engines"},
    "rocket": {"boosters"},
    "chair": {"arms"},
    "bench": {"backrest"},
    "sofa": {"arms"},
    "stool": {"footrest"},
    "bed": {"footboard"},
    "table": {"shelf"},
    "desk": {"legs"},
}

MAX_YAW = np.deg2rad(15.0)   # single shapes (the app's examples) face the camera, give or take a little
# The datasets turn each shape to any heading about the up axis, as objects in real scans are. At +-15
# degrees an untrained PointViT already told most categories apart by their heading-aligned silhouettes,
# which left little for pre-training to show; `pcdviz eval checkpoints/random-tiny` prints the untrained
# baseline on these datasets.
DATASET_MAX_YAW = np.pi


# ----------------------------------------------------------------------------------------------
# Shape assembly and sampling

class _Shape:
    """Triangles collected per part while a category generator runs."""

    def __init__(self, category: str):
        self.names = PART_NAMES[category]
        self.tris: list[list[np.ndarray]] = [[] for _ in self.names]

    def add(self, part: str, *tris: np.ndarray) -> None:
        """Add triangle arrays to the named part."""
        self.tris[self.names.index(part)].extend(tris)


def _sample(shape: _Shape, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Area-weighted uniform surface samples with part labels; every present part gets a few points."""
    part_tris = [np.concatenate(t) if t else np.zeros((0, 3, 3)) for t in shape.tris]
    tris = np.concatenate(part_tris)
    part_of_tri = np.repeat(np.arange(len(part_tris)), [len(t) for t in part_tris])
    area = 0.5 * np.linalg.norm(np.cross(tris[:, 1] - tris[:, 0], tris[:, 2] - tris[:, 0]), axis=1)
    part_area = np.bincount(part_of_tri, weights=area, minlength=len(part_tris))
    # points per part: proportional to area (largest remainder), at least a few for every part present
    exact = n * part_area / part_area.sum()
    counts = np.floor(exact).astype(np.int64)
    counts[np.argsort(counts - exact)[: n - counts.sum()]] += 1
    min_count = min(max(1, n // 512), n // max(1, int((part_area > 0).sum())))
    for p in np.flatnonzero((part_area > 0) & (counts < min_count)):
        counts[np.argmax(counts)] -= min_count - counts[p]
        counts[p] = min_count
    # pick triangles by inverting the cumulative area within each part's range
    cum = np.cumsum(area)
    part_start = np.concatenate([[0.0], np.cumsum(part_area)[:-1]])
    u = np.repeat(part_start, counts) + rng.random(n) * np.repeat(part_area, counts)
    idx = np.minimum(np.searchsorted(cum, u, side="right"), len(tris) - 1)
    labels = part_of_tri[idx]
    # uniform point in each chosen triangle
    r1, r2 = rng.random(n), rng.random(n)
    s = np.sqrt(r1)
    t = tris[idx]
    pts = ((1 - s)[:, None] * t[:, 0] + (s * (1 - r2))[:, None] * t[:, 1]
           + (s * r2)[:, None] * t[:, 2])
    order = rng.permutation(n)   # no part-sorted order leaking into "first n points" subsampling
    return pts[order], labels[order]


# ----------------------------------------------------------------------------------------------
# Categories (generators in synthetic_furniture.py and synthetic_objects.py), splits and the data set

_GENERATORS = {
    "airplane": _airplane, "rocket": _rocket, "chair": _chair, "bench": _bench, "sofa": _sofa,
    "stool": _stool, "table": _table, "desk": _desk, "bed": _bed, "lamp": _lamp, "mug": _mug,
    "bottle": _bottle, "vase": _vase, "guitar": _guitar, "car": _car, "tower": _tower,
}


def generate(category: str, seed: int, n_points: int = 2048,
             max_yaw: float = MAX_YAW) -> tuple[np.ndarray, np.ndarray]:
    """Raw (not normalised) float32 points (n, 3) and int64 part labels (n,) for one shape."""
    if category not in _GENERATORS:
        raise ValueError(f"unknown synthetic category {category!r}; choose from {', '.join(CATEGORIES)}")
    # the category enters the seed so that equal seeds of different categories are independent
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFFFFFF, zlib.crc32(category.encode())])
    shape = _Shape(category)
    _GENERATORS[category](rng, shape)
    pts, labels = _sample(shape, n_points, rng)
    if max_yaw:
        pts = pts @ _rot_y(rng.uniform(-max_yaw, max_yaw)).T
    return pts.astype(np.float32), labels.astype(np.int64)


def make_shape(category: str, seed: int, n_points: int = 2048, max_yaw: float = MAX_YAW):
    """One synthetic shape as a normalised PointCloud whose labels are part ids."""
    from pcdviz.io import PointCloud, normalize

    pts, labels = generate(category, seed, n_points, max_yaw)
    return PointCloud(points=np.asarray(normalize(pts), dtype=np.float32), labels=labels,
                      source=f"synthetic:{category}#{seed}",
                      info={"category": category, "part_names": list(PART_NAMES[category]),
                            "format": "synthetic"})


_SPLIT_OFFSET = {"train": 0, "test": 1, "val": 2}
_SPLIT_STRIDE = 3
_DEFAULT_PER_CLASS = {"train": 100, "test": 40, "val": 40}


def shape_seeds(split: str, n_per_class: int, seed: int = 0) -> np.ndarray:
    """Shape seeds of a split: train, test and val take disjoint residues modulo 3."""
    if split not in _SPLIT_OFFSET:
        raise ValueError(f"split must be one of {sorted(_SPLIT_OFFSET)}, got {split!r}")
    base = int(seed) * 1_000_000 * _SPLIT_STRIDE
    return base + _SPLIT_STRIDE * np.arange(n_per_class) + _SPLIT_OFFSET[split]


class SyntheticShapes(torch.utils.data.Dataset):
    """The synthetic set: every category x n_per_class shapes, generated once, kept as arrays.

    Items are dicts: points float32 (N, 3) normalised, label int (category index), parts int64 (N,)
    (index into PART_NAMES[class_names[label]]). Train, test and val never share a shape seed.
    The arrays are also available whole as .points (M, N, 3), .labels (M,), .parts (M, N).
    """

    def __init__(self, split: str = "train", n_per_class: int | None = None, n_points: int = 2048,
                 seed: int = 0, categories: list[str] | None = None, max_yaw: float = DATASET_MAX_YAW):
        from pcdviz.io import normalize

        self.split = split
        self.class_names = list(categories or CATEGORIES)
        self.part_names = {c: list(PART_NAMES[c]) for c in self.class_names}
        n_per_class = _DEFAULT_PER_CLASS.get(split, 40) if n_per_class is None else int(n_per_class)
        self.seeds = shape_seeds(split, n_per_class, seed)
        m = len(self.class_names) * n_per_class
        self.points = np.empty((m, n_points, 3), dtype=np.float32)
        self.parts = np.empty((m, n_points), dtype=np.int8)
        self.labels = np.repeat(np.arange(len(self.class_names)), n_per_class).astype(np.int64)
        i = 0
        for c in self.class_names:
            for s in self.seeds:
                pts, parts = generate(c, int(s), n_points, max_yaw)
                self.points[i] = normalize(pts)
                self.parts[i] = parts
                i += 1

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        # a copy: a transform that works in place must not change the data set
        return {"points": self.points[i].copy(), "label": int(self.labels[i]),
                "parts": self.parts[i].astype(np.int64)}

    def describe(self) -> dict:
        """The card's description (pcdviz.data.dataset_info): the split is the seeds' own, disjoint by construction."""
        from .describe import fingerprint

        return {"reader": "SyntheticShapes", "layout": "synthetic part-labelled shapes (pcdviz.data.synthetic)",
                "root": "synthetic", "split": self.split, "split_source": "official: disjoint shape seeds per split",
                "n_shapes": len(self), "n_classes": len(self.class_names), "points": int(self.points.shape[1]),
                "fingerprint": fingerprint([int(s) for s in self.seeds] + self.class_names, self.labels)}
