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
# Primitive surfaces as triangle arrays (T, 3, 3)

def _rot_x(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def _rot_y(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def _rot_z(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


Y_TO_X = _rot_z(-np.pi / 2)   # maps the local up axis onto +x
Y_TO_Z = _rot_x(np.pi / 2)    # maps the local up axis onto +z


def _place(tris: np.ndarray, at=(0.0, 0.0, 0.0), R: np.ndarray | None = None) -> np.ndarray:
    """Rotate (about the local origin) then translate a triangle array."""
    if R is not None:
        tris = tris @ R.T
    return tris + np.asarray(at, dtype=np.float64)


def _quads(a, b, c, d) -> np.ndarray:
    """Two triangles per quad a-b-c-d; corners are arrays (..., 3)."""
    t1 = np.stack([a, b, c], axis=-2).reshape(-1, 3, 3)
    t2 = np.stack([a, c, d], axis=-2).reshape(-1, 3, 3)
    return np.concatenate([t1, t2])


def _unit_cube() -> tuple[np.ndarray, np.ndarray]:
    faces = []
    for axis in range(3):
        for sign in (-0.5, 0.5):
            u, v = [i for i in range(3) if i != axis]
            corners = []
            for cu, cv in ((-0.5, -0.5), (0.5, -0.5), (0.5, 0.5), (-0.5, 0.5)):
                p = [0.0, 0.0, 0.0]
                p[axis], p[u], p[v] = sign, cu, cv
                corners.append(p)
            faces.append(_quads(*[np.array(c) for c in corners]))
    return np.concatenate(faces), np.repeat(np.arange(6), 2)


_CUBE, _CUBE_FACE = _unit_cube()
_FACE_ID = {"-x": 0, "+x": 1, "-y": 2, "+y": 3, "-z": 4, "+z": 5}


def _box(size, at=(0, 0, 0), R=None, skip: tuple[str, ...] = ()) -> np.ndarray:
    """Surface of a box of `size` (x, y, z) centred at `at`; `skip` drops hidden faces like '-y'."""
    tris = _CUBE
    if skip:
        tris = tris[~np.isin(_CUBE_FACE, [_FACE_ID[f] for f in skip])]
    return _place(tris * np.asarray(size, dtype=np.float64), at, R)


def _revolve(r, y, n_seg: int = 24, at=(0, 0, 0), R=None, phase: float = 0.0,
             scale_xz=(1.0, 1.0)) -> np.ndarray:
    """Surface of revolution of the profile (r_k, y_k) about the local y axis."""
    r, y = np.asarray(r, dtype=np.float64), np.asarray(y, dtype=np.float64)
    th = phase + np.linspace(0.0, 2 * np.pi, n_seg + 1)
    v = np.empty((len(r), n_seg + 1, 3))
    v[..., 0] = r[:, None] * np.cos(th)[None] * scale_xz[0]
    v[..., 1] = y[:, None]
    v[..., 2] = r[:, None] * np.sin(th)[None] * scale_xz[1]
    tris = _quads(v[:-1, :-1], v[1:, :-1], v[1:, 1:], v[:-1, 1:])
    return _place(tris, at, R)


def _cylinder(r, h, at=(0, 0, 0), R=None, caps=(True, True), n_seg: int = 20) -> np.ndarray:
    """Cylinder of radius r from local y=0 to y=h, optionally capped at either end."""
    rr, yy = [r, r], [0.0, h]
    if caps[0]:
        rr, yy = [0.0] + rr, [0.0] + yy
    if caps[1]:
        rr, yy = rr + [0.0], yy + [h]
    return _revolve(rr, yy, n_seg, at, R)


def _ellipsoid(radii, at=(0, 0, 0), R=None, n_seg: int = 16, n_ring: int = 9) -> np.ndarray:
    """Ellipsoid with semi-axes `radii` (x, y, z) centred at `at`."""
    a = np.linspace(-np.pi / 2, np.pi / 2, n_ring)
    tris = _revolve(np.cos(a), np.sin(a), n_seg) * np.asarray(radii, dtype=np.float64)
    return _place(tris, at, R)


def _basis_to(d: np.ndarray) -> np.ndarray:
    """A rotation whose local y axis points along d."""
    y = d / np.linalg.norm(d)
    ref = np.array([0.0, 0.0, 1.0]) if abs(y[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    x = np.cross(y, ref)
    x /= np.linalg.norm(x)
    z = np.cross(x, y)
    return np.stack([x, y, z], axis=1)


def _beam(p0, p1, thickness, round_: bool = False, n_seg: int = 10, r1=None) -> np.ndarray:
    """A square or round bar from p0 to p1 (legs, posts, poles); r1 tapers a round bar."""
    p0, p1 = np.asarray(p0, dtype=np.float64), np.asarray(p1, dtype=np.float64)
    d = p1 - p0
    L = np.linalg.norm(d)
    R = _basis_to(d)
    if round_:
        r0 = thickness / 2
        r1 = r0 if r1 is None else r1
        return _revolve([0, r0, r1, 0], [0, 0, L, L], n_seg, p0, R)
    return _box((thickness, L, thickness), (0, L / 2, 0), None, skip=()) @ R.T + p0


def _strip(v, lo, hi, thickness, at=(0, 0, 0), M=None) -> np.ndarray:
    """A thin slab whose outline spans u in [lo_k, hi_k] at each v_k (wings, fins, guitar body).

    Local axes: u, v in the outline's plane and w across the thickness; M's columns are the
    world directions of u, v, w.
    """
    v = np.asarray(v, dtype=np.float64)
    lo = np.broadcast_to(np.asarray(lo, dtype=np.float64), v.shape)
    hi = np.broadcast_to(np.asarray(hi, dtype=np.float64), v.shape)
    t = np.broadcast_to(np.asarray(thickness, dtype=np.float64), v.shape) / 2

    def pts(u, w):
        return np.stack([u, v, w], axis=-1)

    lo_top, hi_top, lo_bot, hi_bot = pts(lo, t), pts(hi, t), pts(lo, -t), pts(hi, -t)
    parts = [
        _quads(lo_top[:-1], hi_top[:-1], hi_top[1:], lo_top[1:]),      # front face
        _quads(lo_bot[:-1], hi_bot[:-1], hi_bot[1:], lo_bot[1:]),      # back face
        _quads(lo_bot[:-1], lo_bot[1:], lo_top[1:], lo_top[:-1]),      # edge at u = lo
        _quads(hi_bot[:-1], hi_bot[1:], hi_top[1:], hi_top[:-1]),      # edge at u = hi
        _quads(lo_bot[:1], hi_bot[:1], hi_top[:1], lo_top[:1]),        # end at v_0
        _quads(lo_bot[-1:], hi_bot[-1:], hi_top[-1:], lo_top[-1:]),    # end at v_K
    ]
    tris = np.concatenate(parts)
    if M is not None:
        tris = tris @ np.asarray(M, dtype=np.float64).T
    return tris + np.asarray(at, dtype=np.float64)


def _prism(poly, depth, at=(0, 0, 0), M=None) -> np.ndarray:
    """Convex polygon (K, 2) in the local (u, v) plane extruded by `depth` along w, centred."""
    poly = np.asarray(poly, dtype=np.float64)
    k = len(poly)
    c = poly.mean(axis=0)
    h = depth / 2
    top = np.concatenate([poly, np.full((k, 1), h)], axis=1)
    bot = np.concatenate([poly, np.full((k, 1), -h)], axis=1)
    ctop, cbot = np.array([*c, h]), np.array([*c, -h])
    nxt = np.roll(np.arange(k), -1)
    caps = np.concatenate([
        np.stack([np.broadcast_to(ctop, (k, 3)), top, top[nxt]], axis=1),
        np.stack([np.broadcast_to(cbot, (k, 3)), bot, bot[nxt]], axis=1),
    ])
    sides = _quads(bot, bot[nxt], top[nxt], top)
    tris = np.concatenate([caps, sides])
    if M is not None:
        tris = tris @ np.asarray(M, dtype=np.float64).T
    return tris + np.asarray(at, dtype=np.float64)


def _tube(path, radius, n_seg: int = 8, ref=(0.0, 0.0, 1.0)) -> np.ndarray:
    """A round tube swept along a polyline (K, 3); `ref` must not be parallel to the path."""
    path = np.asarray(path, dtype=np.float64)
    tang = np.gradient(path, axis=0)
    tang /= np.linalg.norm(tang, axis=1, keepdims=True)
    n = np.cross(tang, np.asarray(ref, dtype=np.float64))
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    b = np.cross(tang, n)
    ph = np.linspace(0, 2 * np.pi, n_seg + 1)
    ring = (path[:, None] + radius * (np.cos(ph)[None, :, None] * n[:, None]
                                      + np.sin(ph)[None, :, None] * b[:, None]))
    return _quads(ring[:-1, :-1], ring[1:, :-1], ring[1:, 1:], ring[:-1, 1:])


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
# Categories. Units are roughly metres (only proportions survive normalisation).

def _chair(rng, m: _Shape) -> None:
    U = rng.uniform
    W, D, H, t = U(0.40, 0.62), U(0.38, 0.56), U(0.40, 0.50), U(0.025, 0.08)
    m.add("seat", _box((W, t, D), (0, H - t / 2, 0)))
    lt, inset = U(0.025, 0.055), U(0.0, 0.05)
    round_legs = rng.random() < 0.4
    splay = U(0.0, 0.05) if rng.random() < 0.4 else 0.0
    corners = []
    for sx in (-1, 1):
        for sz in (-1, 1):
            top = np.array([sx * (W / 2 - lt / 2 - inset), H - t, sz * (D / 2 - lt / 2 - inset)])
            bottom = top + [sx * splay, -(H - t), sz * splay]
            corners.append((bottom, top))
            m.add("legs", _beam(bottom, top, lt, round_legs))
    if rng.random() < 0.3:   # stretchers between front and back legs
        y = U(0.08, 0.2)
        for sx in (0, 2):
            (b0, t0), (b1, t1) = corners[sx], corners[sx + 1]
            f = y / (H - t)
            m.add("legs", _beam(b0 + (t0 - b0) * f, b1 + (t1 - b1) * f, lt * 0.7, round_legs))
    # back, built around its bottom-back edge then tilted backwards
    BH, bt, tilt = U(0.30, 0.62), U(0.02, 0.06), U(0.0, 0.25)
    bw = W * U(0.85, 1.0)
    style = rng.choice(["panel", "slats", "rails"], p=[0.5, 0.25, 0.25])
    if style == "panel":
        back = [_box((bw, BH, bt), (0, BH / 2, 0))]
    else:
        pw = U(0.025, 0.05)
        rail = U(0.05, 0.12)
        back = [_box((pw, BH, bt), (sx * (bw / 2 - pw / 2), BH / 2, 0)) for sx in (-1, 1)]
        back.append(_box((bw, rail, bt), (0, BH - rail / 2, 0)))
        if style == "slats":
            k = int(rng.integers(2, 5))
            for x in np.linspace(-bw / 2 + pw, bw / 2 - pw, k + 2)[1:-1]:
                back.append(_box((U(0.02, 0.06), BH - rail, bt * 0.6), (x, (BH - rail) / 2, 0)))
        else:
            for yy in np.linspace(0.1, BH - rail, int(rng.integers(1, 3)) + 1)[:-1]:
                back.append(_box((bw - 2 * pw, rail * 0.6, bt * 0.6), (0, yy + rail * 0.3, 0)))
    m.add("back", _place(np.concatenate(back), (0, H, -D / 2 + bt / 2), _rot_x(-tilt)))
    if rng.random() < 0.3:   # armrests on front posts
        ah, aw = U(0.16, 0.26), U(0.04, 0.08)
        for sx in (-1, 1):
            x = sx * (W / 2 - aw / 2)
            m.add("arms", _box((aw, U(0.02, 0.04), D * U(0.75, 0.95)), (x, H + ah, -D * 0.05)),
                  _beam((x, H, D / 2 - 0.05), (x, H + ah, D / 2 - 0.05), aw * 0.6))


def _bench(rng, m: _Shape) -> None:
    U = rng.uniform
    L, D, H, t = U(0.8, 1.8), U(0.28, 0.5), U(0.38, 0.48), U(0.03, 0.07)
    if rng.random() < 0.2:   # upholstered: a thick cushion on a board
        ct = U(0.06, 0.14)
        m.add("seat", _box((L, t, D), (0, H - ct - t / 2, 0)), _box((L * 0.98, ct, D * 0.96), (0, H - ct / 2, 0)))
        H -= ct
    elif rng.random() < 0.4:   # slatted seat: boards along x with gaps
        k = int(rng.integers(3, 6))
        gap = U(0.008, 0.02)
        bd = (D - gap * (k - 1)) / k
        for i in range(k):
            m.add("seat", _box((L, t, bd), (0, H - t / 2, -D / 2 + bd / 2 + i * (bd + gap))))
    else:
        m.add("seat", _box((L, t, D), (0, H - t / 2, 0)))
    inset = U(0.02, 0.18)
    if rng.random() < 0.5:   # four legs
        lt = U(0.03, 0.07)
        round_legs = rng.random() < 0.3
        for sx in (-1, 1):
            for sz in (-1, 1):
                x, z = sx * (L / 2 - lt / 2 - inset), sz * (D / 2 - lt / 2 - U(0.0, 0.04))
                m.add("legs", _beam((x, 0, z), (x, H - t, z), lt, round_legs))
    else:                    # two slab ends
        lt = U(0.04, 0.09)
        sd = D * U(0.75, 1.0)
        for sx in (-1, 1):
            m.add("legs", _box((lt, H - t, sd), (sx * (L / 2 - lt / 2 - inset), (H - t) / 2, 0)))
    if rng.random() < 0.5:   # stretcher along the length
        y = U(0.08, 0.2)
        m.add("legs", _box((L - 2 * inset, 0.04, 0.04), (0, y, 0)))
    if rng.random() < 0.45:  # backrest: long and low
        BH, tilt = U(0.2, 0.42), U(0.05, 0.25)
        pw = U(0.03, 0.06)
        back = [_box((pw, BH, pw), (sx * (L / 2 - inset - pw / 2), BH / 2, 0)) for sx in (-1, 1)]
        nb = int(rng.integers(1, 3))
        bh = U(0.07, 0.16)
        for i in range(nb):
            back.append(_box((L - 2 * inset + 0.1, bh, 0.025), (0, BH - bh / 2 - i * (bh + 0.03), 0.02)))
        m.add("backrest", _place(np.concatenate(back), (0, H, -D / 2 + 0.03), _rot_x(-tilt)))


def _sofa(rng, m: _Shape) -> None:
    U = rng.uniform
    L, D = U(0.9, 2.4), U(0.72, 1.0)
    r = rng.random()
    fh = U(0.04, 0.12) if r < 0.45 else U(0.12, 0.25) if r < 0.65 else 0.0   # short, tall or no feet
    bh = U(0.12, 0.28) if fh < 0.12 else U(0.06, 0.14)
    arms = rng.random() < 0.9
    aw = U(0.08, 0.25) if arms else 0.0
    inner = L - 2 * aw
    base_y = fh + bh
    m.add("base", _box((inner, bh, D), (0, fh + bh / 2, 0)))
    if fh > 0:
        ft = U(0.03, 0.06)
        for sx in (-1, 1):
            for sz in (-1, 1):
                x, z = sx * (L / 2 - 0.06), sz * (D / 2 - 0.06)
                m.add("base", _beam((x, 0, z), (x, fh, z), ft, rng.random() < 0.5))
    bt = U(0.12, 0.25)
    back_top = base_y + U(0.3, 0.55)
    back_len = L if rng.random() < 0.5 else inner
    m.add("back", _box((back_len, back_top - fh, bt), (0, (back_top + fh) / 2, -D / 2 + bt / 2)))
    # seat cushions
    ct = U(0.1, 0.18)
    k = max(1, int(round(inner / U(0.55, 0.8))))
    gap = 0.015
    cw = (inner - gap * (k - 1)) / k
    for i in range(k):
        x = -inner / 2 + cw / 2 + i * (cw + gap)
        m.add("seat", _box((cw, ct, D - bt), (x, base_y + ct / 2, bt / 2)))
        if rng.random() < 0.5 and back_top - base_y - ct > 0.25:   # back cushions
            bch = back_top - base_y - ct - 0.03
            m.add("back", _place(_box((cw, bch, U(0.08, 0.14)), (0, bch / 2, 0.05)),
                                 (x, base_y + ct, -D / 2 + bt), _rot_x(-0.12)))
    if arms:
        arm_top = min(base_y + ct + U(0.05, 0.3), back_top - U(0.0, 0.1))
        for sx in (-1, 1):
            x = sx * (L / 2 - aw / 2)
            m.add("arms", _box((aw, arm_top - fh, D), (x, (arm_top + fh) / 2, 0)))
            if rng.random() < 0.4:   # rolled arm top
                m.add("arms", _cylinder(aw * 0.6, D, (x, arm_top, -D / 2), Y_TO_Z, n_seg=14))


def _stool(rng, m: _Shape) -> None:
    U = rng.uniform
    H, t = U(0.45, 0.8), U(0.03, 0.06)
    r = U(0.14, 0.22)
    if rng.random() < 0.7:
        m.add("seat", _cylinder(r, t, (0, H - t, 0), n_seg=24))
    else:
        m.add("seat", _box((2 * r, t, 2 * r), (0, H - t / 2, 0)))
    n = int(rng.choice([3, 4]))
    lt = U(0.02, 0.045)
    r_top, r_bot = r * U(0.55, 0.8), r * U(0.75, 1.35)
    phase = rng.uniform(0, np.pi)
    round_legs = rng.random() < 0.6
    for a in phase + np.arange(n) * 2 * np.pi / n:
        d = np.array([np.cos(a), 0, np.sin(a)])
        m.add("legs", _beam(d * r_bot, d * r_top + [0, H - t, 0], lt, round_legs))
    if rng.random() < 0.55:
        y = H * U(0.25, 0.45)
        rr = r_bot + (r_top - r_bot) * y / (H - t)
        if rng.random() < 0.6:   # ring
            a = np.linspace(0, 2 * np.pi, 33)
            ring = np.stack([rr * np.cos(a), np.full_like(a, y), rr * np.sin(a)], axis=1)
            m.add("footrest", _tube(ring, lt * 0.4, 6, ref=(0, 1, 0)))
        else:                    # crossbars between the legs
            for a in phase + np.arange(n) * 2 * np.pi / n:
                a2 = a + 2 * np.pi / n
                p0 = np.array([rr * np.cos(a), y, rr * np.sin(a)])
                p1 = np.array([rr * np.cos(a2), y, rr * np.sin(a2)])
                m.add("footrest", _beam(p0, p1, lt * 0.7, True))


def _table(rng, m: _Shape) -> None:
    U = rng.uniform
    round_top = rng.random() < 0.3
    L = U(0.6, 2.0)
    D = max(0.45, L * (U(0.8, 1.0) if round_top else U(0.45, 1.0)))
    H, t = U(0.42, 0.78), U(0.02, 0.07)
    if round_top:
        m.add("top", _revolve([0, L / 2, L / 2, 0], [0, 0, t, t], 32, (0, H - t, 0),
                              scale_xz=(1.0, D / L)))
    else:
        m.add("top", _box((L, t, D), (0, H - t / 2, 0)))
    style = rng.choice(["four", "pedestal", "trestle"],
                       p=[0.35, 0.65, 0.0] if round_top else [0.75, 0.05, 0.2])
    if style == "four":
        lt = U(0.03, 0.08)
        round_legs = rng.random() < 0.4
        f = 0.7 if round_top else 1.0
        inset = U(0.0, 0.12)
        for sx in (-1, 1):
            for sz in (-1, 1):
                x, z = sx * (f * L / 2 - lt / 2 - inset), sz * (f * D / 2 - lt / 2 - inset)
                # round legs may taper towards the floor
                m.add("legs", _beam((x, 0, z), (x, H - t, z), lt * (U(0.5, 1.0) if round_legs else 1.0),
                                    round_legs, r1=lt / 2 if round_legs else None))
        if rng.random() < 0.5:   # apron under the top
            ah = U(0.05, 0.12)
            ax, az = f * L / 2 - lt / 2 - inset, f * D / 2 - lt / 2 - inset
            for sz in (-1, 1):
                m.add("legs", _box((2 * ax, ah, 0.02), (0, H - t - ah / 2, sz * az)))
            for sx in (-1, 1):
                m.add("legs", _box((0.02, ah, 2 * az), (sx * ax, H - t - ah / 2, 0)))
        if not round_top and rng.random() < 0.35:   # a lower shelf between the legs
            ax, az = f * L / 2 - inset, f * D / 2 - inset
            m.add("shelf", _box((2 * ax, U(0.015, 0.04), 2 * az), (0, U(0.08, 0.35) * H, 0)))
    elif style == "pedestal":
        cr = U(0.04, 0.1)
        m.add("legs", _cylinder(cr, H - t, (0, 0, 0), caps=(False, False), n_seg=16))
        if rng.random() < 0.5:
            fr = min(L, D) / 2 * U(0.4, 0.75)
            m.add("legs", _revolve([0, fr, fr * 0.7, cr], [0, 0, U(0.02, 0.06), U(0.06, 0.1)], 24))
        else:
            fr = min(L, D) / 2 * U(0.5, 0.8)
            for a in np.arange(4) * np.pi / 2 + np.pi / 4:
                m.add("legs", _beam((0, 0.02, 0), (fr * np.cos(a), 0.02, fr * np.sin(a)), 0.04))
    else:   # trestle: two end panels and a stretcher
        pt, inset = U(0.04, 0.08), U(0.05, 0.2)
        for sx in (-1, 1):
            m.add("legs", _box((pt, H - t, D * U(0.55, 0.8)), (sx * (L / 2 - inset), (H - t) / 2, 0)))
        m.add("legs", _box((L - 2 * inset, 0.05, 0.04), (0, U(0.1, 0.3), 0)))


def _desk(rng, m: _Shape) -> None:
    U = rng.uniform
    L, D, H, t = U(0.95, 1.8), U(0.5, 0.8), U(0.68, 0.78), U(0.02, 0.05)
    m.add("top", _box((L, t, D), (0, H - t / 2, 0)))
    side = rng.choice([-1, 1])
    two_pedestals = rng.random() < 0.2
    pw, pd, inset = U(0.3, 0.5), D * U(0.85, 0.97), U(0.0, 0.04)
    plinth = U(0.0, 0.08)
    ph = H - t - plinth
    pz = D / 2 - pd / 2 - 0.01
    k = int(rng.integers(2, 5))
    gap = 0.012
    fronts = rng.dirichlet(np.full(k, 4.0)) * (ph - gap * (k + 1))
    handles = rng.random() < 0.6
    for ps in ((-1, 1) if two_pedestals else (side,)):
        px = ps * (L / 2 - pw / 2 - inset)
        m.add("drawers", _box((pw, ph, pd), (px, plinth + ph / 2, pz)))
        if plinth > 0.01:
            m.add("drawers", _box((pw * 0.9, plinth, pd * 0.9), (px, plinth / 2, pz)))
        y = plinth + ph - gap
        for fh in fronts:
            yc = y - fh / 2
            m.add("drawers", _box((pw - 0.03, fh, 0.015), (px, yc, pz + pd / 2 + 0.0075), skip=("-z",)))
            if handles:
                m.add("drawers", _box((pw * 0.3, 0.015, 0.02), (px, yc + fh * 0.25, pz + pd / 2 + 0.025)))
            y -= fh + gap
    if two_pedestals:
        return
    px = side * (L / 2 - pw / 2 - inset)
    ox = -side * (L / 2 - inset)
    if rng.random() < 0.6:   # two legs on the free side
        lt = U(0.03, 0.06)
        round_legs = rng.random() < 0.4
        for sz in (-1, 1):
            x, z = ox + side * lt / 2, sz * (D / 2 - lt / 2 - U(0.0, 0.04))
            m.add("legs", _beam((x, 0, z), (x, H - t, z), lt, round_legs))
    else:                    # a side panel
        st = U(0.02, 0.05)
        m.add("legs", _box((st, H - t, D * U(0.85, 1.0)), (ox + side * st / 2, (H - t) / 2, 0)))
    if rng.random() < 0.4:   # modesty panel at the back
        mh = U(0.25, 0.45)
        x0, x1 = ox, px - side * pw / 2
        m.add("legs", _box((abs(x1 - x0), mh, 0.02), ((x0 + x1) / 2, H - t - mh / 2, -D / 2 + 0.04)))


def _bed(rng, m: _Shape) -> None:
    U = rng.uniform
    L, W = U(1.9, 2.2), U(0.9, 1.9)
    ftop = U(0.15, 0.4)
    if rng.random() < 0.55:   # rail frame on legs
        rh, lt = U(0.08, 0.18), U(0.04, 0.08)
        m.add("frame", _box((L, rh, W), (0, ftop - rh / 2, 0)))
        for sx in (-1, 1):
            for sz in (-1, 1):
                x, z = sx * (L / 2 - lt / 2), sz * (W / 2 - lt / 2)
                m.add("frame", _beam((x, 0, z), (x, ftop - rh, z), lt, rng.random() < 0.3))
    else:                     # platform down to the floor
        m.add("frame", _box((L, ftop, W), (0, ftop / 2, 0), skip=("-y",)))
    mt = U(0.14, 0.3)
    mtop = ftop + mt
    m.add("mattress", _box((L - 0.04, mt, W - 0.04), (0, ftop + mt / 2, 0), skip=("-y",)))
    if rng.random() < 0.4:   # blanket over the foot end
        bl = (L - 0.04) * U(0.5, 0.75)
        m.add("mattress", _box((bl, 0.03, W + 0.02), ((L - 0.04) / 2 - bl / 2 + 0.01, mtop + 0.012, 0)))
    ht = U(0.04, 0.1)
    head_top = mtop + U(0.3, 0.8)
    head_bottom = 0.0 if rng.random() < 0.6 else ftop * 0.5
    m.add("headboard", _box((ht, head_top - head_bottom, W + U(0.0, 0.1)),
                            (-L / 2 - ht / 2, (head_top + head_bottom) / 2, 0)))
    if rng.random() < 0.35:
        foot_top = mtop + U(-0.05, 0.25)
        m.add("footboard", _box((ht, foot_top, W + 0.02), (L / 2 + ht / 2, foot_top / 2, 0)))
    n = 1 if W < 1.3 else 2
    for i in range(n):
        pz = (W - 0.04) / n
        z = -W / 2 + 0.02 + pz * (i + 0.5)
        ry = U(0.05, 0.08)
        m.add("pillows", _ellipsoid((U(0.14, 0.22), ry, pz / 2 * U(0.75, 0.92)),
                                    (-L / 2 + U(0.22, 0.3), mtop + ry * 0.8, z)))


def _lamp(rng, m: _Shape) -> None:
    U = rng.uniform
    kind = rng.choice(["table", "floor", "desk"], p=[0.45, 0.3, 0.25])
    if kind == "desk":   # articulated arm with a cone shade
        br, bh = U(0.06, 0.1), U(0.015, 0.04)
        m.add("base", _cylinder(br, bh, n_seg=20))
        a1, a2 = U(0.25, 0.45), U(0.22, 0.4)
        ang1, ang2 = U(0.0, 0.5), U(0.8, 1.6)   # from vertical, towards +x
        p0 = np.array([0, bh, 0])
        p1 = p0 + a1 * np.array([np.sin(ang1), np.cos(ang1), 0])
        p2 = p1 + a2 * np.array([np.sin(ang2), np.cos(ang2), 0])
        pr = U(0.006, 0.012)
        m.add("pole", _beam(p0, p1, 2 * pr, True), _beam(p1, p2, 2 * pr, True),
              _ellipsoid((pr * 1.8,) * 3, p1, n_seg=8, n_ring=5))
        sl, r0, r1 = U(0.1, 0.17), U(0.015, 0.03), U(0.05, 0.09)
        ang = U(0.2, 0.8)
        down = np.array([np.sin(ang), -np.cos(ang), 0])   # the shade points down and outwards
        m.add("shade", _revolve([0, r0, r1], [0, 0, sl], 20, p2 - down * 0.02, _basis_to(down)))
        return
    floor = kind == "floor"
    br = U(0.12, 0.2) if floor else U(0.06, 0.12)
    if floor or rng.random() < 0.5:   # a disc or dome base
        bh = U(0.015, 0.04)
        m.add("base", _revolve([0, br, br * U(0.6, 1.0), br * 0.3], [0, 0, bh, bh * 1.5], 24))
        body_h = bh * 1.5
    else:                               # a bulbous ceramic body
        body_h = U(0.1, 0.28)
        a = np.linspace(0, 1, 12)
        rb = br * (0.6 + 0.4 * np.sin(np.pi * a) ** U(0.5, 1.5))
        rb[-1] = br * 0.15
        m.add("base", _revolve(np.r_[0, rb], np.r_[0, a * body_h], 20))
    pole_len = U(1.2, 1.7) if floor else U(0.1, 0.35)
    pr = U(0.008, 0.016) if floor else U(0.006, 0.012)
    m.add("pole", _cylinder(pr, pole_len, (0, body_h, 0), caps=(False, True), n_seg=10))
    sr = U(0.15, 0.25) if floor else U(0.1, 0.2)
    sh = sr * U(0.6, 1.3)
    top_r = sr * U(0.45, 0.9)
    prof = np.linspace(0, 1, 5)
    bell = U(-0.3, 0.3)   # straight, bell or flared sides
    r = sr + (top_r - sr) * prof + bell * sr * np.sin(np.pi * prof) * 0.3
    y0 = body_h + pole_len - sh * U(0.4, 0.8)
    m.add("shade", _revolve(r, y0 + prof * sh, 28))


def _mug(rng, m: _Shape) -> None:
    U = rng.uniform
    r, w = U(0.035, 0.05), U(0.004, 0.008)
    h = r * U(1.3, 3.2)
    rt = r * U(0.95, 1.18)   # slight taper either way
    prof_r = [0, r, rt, rt - w, r - w, 0]
    prof_y = [0, 0, h, h, w * 1.5, w * 1.5]
    m.add("body", _revolve(prof_r, prof_y, 28))
    hh = h * U(0.5, 0.78)
    yc = h * U(0.45, 0.58)
    ex = U(0.02, 0.038)
    sq = U(1.0, 2.5)   # squarer handles for larger exponents
    a = np.linspace(-np.pi / 2, np.pi / 2, 17)
    c, s = np.cos(a), np.sin(a)
    cx = np.sign(c) * np.abs(c) ** (1 / sq)
    sy = np.sign(s) * np.abs(s) ** (1 / sq)
    wall = r + (rt - r) * (yc / h)
    path = np.stack([wall - w + ex * cx, yc + hh / 2 * sy, np.zeros_like(a)], axis=1)
    m.add("handle", _tube(path, U(0.004, 0.008), 8))


def _bottle(rng, m: _Shape) -> None:
    U = rng.uniform
    R = U(0.03, 0.05)
    hb = R * U(2.0, 6.0)
    hs = R * U(0.3, 1.6)
    rn = R * U(0.22, 0.45)
    hn = R * U(0.5, 3.0)
    s = np.linspace(0, 1, 9)
    waist = U(0.85, 1.0) if rng.random() < 0.4 else 1.0
    body_r = np.r_[0, R * 0.9, R, R * waist, R, rn + (R - rn) * (0.5 + 0.5 * np.cos(np.pi * s[1:]))]
    body_y = np.r_[0, 0, 0.08 * R, hb * 0.5, hb, hb + hs * s[1:]]
    if rng.random() < 0.3:   # a round flask: body is a flattened sphere
        a = np.linspace(-np.pi / 2, np.pi / 2, 12)
        ry = hb / 2
        body_r = np.r_[0, R * np.cos(a[1:])]
        body_r[-1] = rn
        body_y = np.r_[0, ry + ry * np.sin(a[1:])]
        body_y[-1] = 2 * ry - 0.02 * R
    m.add("body", _revolve(body_r, body_y, 24))
    y0 = body_y[-1]
    lip = rn * U(1.0, 1.2)
    m.add("neck", _revolve([rn, rn, lip, lip], [y0, y0 + hn, y0 + hn, y0 + hn + 0.1 * R], 16))
    ch, cr = R * U(0.3, 0.9), lip * U(1.05, 1.25)
    ytop = y0 + hn + 0.1 * R
    m.add("cap", _revolve([rn, cr, cr, 0], [ytop - ch * 0.6] * 2 + [ytop + ch * 0.4] * 2, 16))


def _vase(rng, m: _Shape) -> None:
    U = rng.uniform
    H = U(1.4, 3.6)
    rf, tm, rt = U(0.35, 0.75), U(0.2, 0.7), U(0.22, 0.65)
    t = np.linspace(0, 1, 17)
    up = t < tm
    r = np.where(up, rf + (1 - rf) * np.sin(np.pi / 2 * np.clip(t / tm, 0, 1)),
                 rt + (1 - rt) * np.cos(np.pi / 2 * np.clip((t - tm) / (1 - tm), 0, 1)))
    m.add("body", _revolve(np.r_[0, r], np.r_[0, t * H], 28))
    hn = H * U(0.12, 0.5)
    rl = rt * U(1.0, 1.8)
    pinch = U(0.0, 0.25)
    s = np.linspace(0, 1, 8)
    rn = rt * (1 - pinch * np.sin(np.pi * s)) + (rl - rt) * s ** 2
    wall = 0.04
    # neck outside, rim, and a short inside wall so the opening reads as open
    m.add("neck", _revolve(np.r_[rn, rl - wall, rn[-1:0:-1][:3] - wall],
                           np.r_[H + s * hn, H + hn, H + hn * s[-1:0:-1][:3]], 28))


def _guitar(rng, m: _Shape) -> None:
    U = rng.uniform
    a1 = 0.19 * U(0.88, 1.12)
    a2 = a1 * U(0.66, 0.85)
    c1, c2 = a1, a1 + (a1 + a2) * U(0.68, 0.82)
    Lb = c2 + a2
    waist = a2 * U(0.55, 0.8)
    y = Lb * (1 - np.cos(np.pi * np.linspace(0, 1, 33))) / 2
    w = np.maximum(np.sqrt(np.clip(a1 ** 2 - (y - c1) ** 2, 0, None)),
                   np.sqrt(np.clip(a2 ** 2 - (y - c2) ** 2, 0, None)))
    w = np.where((y > c1) & (y < c2), np.maximum(w, waist), w)
    electric = rng.random() < 0.3
    T = U(0.035, 0.05) if electric else U(0.07, 0.12)
    m.add("body", _strip(y, -w, w, T))
    if not electric:   # bridge
        m.add("body", _box((a1 * 0.8, 0.02, 0.012), (0, c1 * U(0.6, 0.9), T / 2 + 0.006)))
    nw, nd = U(0.045, 0.06), U(0.02, 0.03)
    top = Lb + U(0.38, 0.5)
    zc = T / 2 + 0.008 - nd / 2
    m.add("neck", _strip([c2 - a2 * 0.3, top], [-nw / 2, -nw * 0.55], [nw / 2, nw * 0.55], nd, (0, 0, zc)))
    hl, hw, tilt = U(0.14, 0.2), U(0.065, 0.09), U(0.08, 0.25)
    hv = np.array([0, hl * 0.3, hl])
    head = [_strip(hv, [-nw * 0.55, -hw / 2, -hw * 0.42], [nw * 0.55, hw / 2, hw * 0.42], 0.016)]
    for i in range(3):   # tuning pegs, three a side
        py = hl * (0.35 + 0.22 * i)
        for sx in (-1, 1):
            head.append(_cylinder(0.005, 0.025, (sx * hw * 0.45, py, 0), _rot_z(-sx * np.pi / 2), n_seg=6))
    m.add("head", _place(np.concatenate(head), (0, top, zc), _rot_x(-tilt)))


def _car(rng, m: _Shape) -> None:
    U = rng.uniform
    kind = rng.choice(["sedan", "hatch", "suv", "pickup"], p=[0.35, 0.25, 0.25, 0.15])
    W, wr = U(0.38, 0.46), U(0.065, 0.09)
    gc = wr * U(0.45, 0.7)   # body sill height
    hb = U(0.16, 0.22) if kind in ("suv", "pickup") else U(0.12, 0.17)
    dxf, dyf = U(0.04, 0.12), hb * U(0.25, 0.6)
    dxr, dyr = U(0.01, 0.06), hb * U(0.1, 0.4)
    wx_f, wx_r = U(0.29, 0.36), U(0.29, 0.36)
    # side profile over x: sill with two wheel arches below, bonnet and boot chamfers above
    x = np.linspace(-0.5, 0.5, 61)
    bottom = np.full_like(x, gc)
    for wx in (wx_f, -wx_r):
        arch = wr * 1.12
        inside = np.abs(x - wx) < arch
        bottom[inside] = np.maximum(gc, wr + np.sqrt(arch ** 2 - (x[inside] - wx) ** 2))
    top = np.interp(x, [-0.5, -0.5 + dxr, 0.5 - dxf, 0.5],
                    [gc + hb - dyr, gc + hb, gc + hb, gc + hb - dyf])
    bottom = np.minimum(bottom, top - 0.02)
    bottom[[0, -1]] += 0.015   # rounded bumpers
    M = np.stack([[0, 1, 0], [1, 0, 0], [0, 0, 1]], axis=1)   # u = up, v = along the car, w = across
    m.add("body", _strip(x, bottom, top, W, M=M))
    y0 = gc + hb
    if kind == "sedan":
        xr, xf, hc = U(-0.33, -0.18), U(0.08, 0.22), U(0.1, 0.14)
        sr, sf = (xf - xr) * U(0.15, 0.3), (xf - xr) * U(0.2, 0.35)
    elif kind == "hatch":
        xr, xf, hc = U(-0.49, -0.44), U(0.1, 0.25), U(0.11, 0.15)
        sr, sf = (xf - xr) * U(0.04, 0.15), (xf - xr) * U(0.15, 0.3)
    elif kind == "suv":
        xr, xf, hc = U(-0.49, -0.46), U(0.1, 0.22), U(0.12, 0.17)
        sr, sf = (xf - xr) * U(0.0, 0.05), (xf - xr) * U(0.1, 0.2)
    else:
        xr, xf, hc = U(-0.15, -0.02), U(0.15, 0.25), U(0.12, 0.16)
        sr, sf = (xf - xr) * U(0.0, 0.05), (xf - xr) * U(0.15, 0.3)
        bed_l = xr + 0.5   # open load bed: side walls and tailgate
        for sz in (-1, 1):
            m.add("body", _box((bed_l - 0.02, 0.07, 0.02), (-0.5 + bed_l / 2, y0 + 0.035, sz * (W / 2 - 0.01))))
        m.add("body", _box((0.02, 0.07, W), (-0.49, y0 + 0.035, 0)))
    cabin = [(xr, y0), (xf, y0), (xf - sf, y0 + hc), (xr + sr, y0 + hc)]
    m.add("cabin", _prism(cabin, W * U(0.78, 0.92)))
    ww = U(0.05, 0.085)
    for wx in (wx_f, -wx_r):
        for sz in (-1, 1):
            z = sz * (W / 2 - ww / 2 + U(0.0, 0.015))
            m.add("wheels", _revolve([0, wr * 0.6, wr, wr, wr * 0.6, 0],
                                     [0, 0, ww * 0.15, ww * 0.85, ww, ww], 18, (wx, wr, z - ww / 2), Y_TO_Z))


def _tower(rng, m: _Shape) -> None:
    U = rng.uniform
    section = rng.choice(["square", "octagon", "round"])
    n_seg, phase, k = {"square": (4, np.pi / 4, np.sqrt(2)), "octagon": (8, np.pi / 8, 1 / np.cos(np.pi / 8)),
                       "round": (24, 0.0, 1.0)}[section]

    def block(width, y0, h):
        r = width / 2 * k
        return _revolve([0, r, r, 0], [y0, y0, y0 + h, y0 + h], n_seg, phase=phase)

    w = 1.0
    ph = U(0.05, 0.2)
    m.add("base", block(w * U(1.2, 1.7), 0.0, ph))
    y = ph
    n = int(rng.integers(2, 6))
    ledges = rng.random() < 0.5
    shrink = U(0.6, 0.88)
    for i in range(n):
        h = w * U(0.8, 2.4) * (1.3 if i == 0 else 1.0)
        m.add("tiers", block(w, y, h))
        y += h
        if ledges:
            m.add("tiers", block(w * 1.15, y, 0.05 * w))
            y += 0.05 * w
        w *= shrink
    sh = w * U(0.8, 3.5)
    sr = w / 2 * k * U(0.6, 1.0)
    m.add("spire", _revolve([0, sr, 0], [y, y, y + sh], n_seg, phase=phase))
    if rng.random() < 0.5:
        m.add("spire", _cylinder(w * 0.03, sh * U(0.3, 0.8), (0, y + sh * 0.9, 0), n_seg=6))


def _rocket(rng, m: _Shape) -> None:
    U = rng.uniform
    R, Hb = 1.0, U(6.0, 14.0)
    if rng.random() < 0.4:   # two stages joined by an interstage
        ys = Hb * U(0.45, 0.75)
        Rt = R * U(0.65, 0.9)
        m.add("body", _revolve([0, R, R, Rt, Rt], [0, 0, ys, ys + 0.6, Hb], 24))
    else:
        Rt = R
        m.add("body", _revolve([0, R, R], [0, 0, Hb], 24))
    ln, kexp = Rt * U(1.5, 4.0), U(0.5, 1.0)
    s = np.linspace(0, 1, 10)
    m.add("nose_cone", _revolve(Rt * np.cos(s * np.pi / 2) ** kexp, Hb + s * ln, 24))
    n = int(rng.choice([3, 4]))
    cr = R * U(1.5, 3.5)
    ct, span = cr * U(0.2, 0.7), R * U(0.8, 2.2)
    drop = U(0.2, 1.0) * (cr - ct)
    y0 = R * U(-0.6, 0.3)
    fin_phase = rng.uniform(0, np.pi)
    for a in fin_phase + np.arange(n) * 2 * np.pi / n:
        # local u = height, v = radial distance, w = across the fin
        M = np.stack([[0, 1, 0], [np.cos(a), 0, np.sin(a)], [-np.sin(a), 0, np.cos(a)]], axis=1)
        m.add("fins", _strip([R * 0.95, R + span], [y0, y0 - drop], [y0 + cr, y0 - drop + ct], 0.08 * R, M=M))
    r_throat, r_exit, nl = R * U(0.3, 0.55), R * U(0.55, 0.85), R * U(0.5, 1.2)
    s = np.linspace(0, 1, 6)
    m.add("nozzle", _revolve(r_throat + (r_exit - r_throat) * s ** 0.6, -s * nl, 20))
    if rng.random() < 0.35:
        k = int(rng.choice([2, 4]))
        rb, hb = R * U(0.3, 0.5), Hb * U(0.35, 0.6)
        lb = rb * U(1.5, 3.0)
        s = np.linspace(0, 1, 6)
        prof_r = np.r_[0, rb * 0.6, rb, rb * np.cos(s[1:] * np.pi / 2) ** 0.7]
        prof_y = np.r_[-rb * 0.6, -rb * 0.6, 0, hb + s[1:] * lb]
        prof_r[-1] = 0
        for a in fin_phase + np.pi / n + np.arange(k) * 2 * np.pi / k:
            m.add("boosters", _revolve(prof_r, prof_y, 14, ((R + rb) * np.cos(a), 0, (R + rb) * np.sin(a))))


def _airplane(rng, m: _Shape) -> None:
    U = rng.uniform
    fighter = rng.random() < 0.3
    rf = U(0.035, 0.065)
    nose_l, tail_l = U(0.05, 0.14), U(0.18, 0.32)
    r_tail = rf * U(0.15, 0.35)
    s = np.linspace(0, 1, 28)
    r = np.full_like(s, rf)
    tail = s < tail_l
    r[tail] = r_tail + (rf - r_tail) * (s[tail] / tail_l) ** 0.7
    nose = s > 1 - nose_l
    r[nose] = rf * np.sqrt(np.clip(1 - ((s[nose] - (1 - nose_l)) / nose_l) ** 2, 0, 1))
    m.add("fuselage", _revolve(np.r_[0, r], np.r_[0, s] - 0.5, 20, R=Y_TO_X))
    # wings: trapezoid planform per side, local u = x (chord), v = span, w = thickness
    if fighter:
        cr, span = U(0.35, 0.5), U(0.18, 0.3)
        ct = U(0.02, 0.08)
        sweep = (cr - ct) * U(0.8, 1.0)
        x_le = U(0.05, 0.2)
    else:
        cr, span = U(0.13, 0.26), U(0.36, 0.62)
        ct = cr * U(0.25, 0.5)
        sweep = span * U(0.1, 0.55)
        x_le = U(0.0, 0.18)
    dih, wy, th = U(0.0, 0.1), -rf * U(0.0, 0.7), U(0.012, 0.025)
    for side in (-1, 1):
        M = np.stack([[1, 0, 0], [0, np.sin(dih), side * np.cos(dih)], [0, np.cos(dih), -side * np.sin(dih)]], axis=1)
        m.add("wings", _strip([0, span], [x_le - cr, x_le - sweep - ct], [x_le, x_le - sweep], [th, th * 0.5],
                              (0, wy, 0), M))
    # vertical fin: local u = x, v = up
    fc = U(0.1, 0.2) * (1.3 if fighter else 1.0)
    fhgt = U(0.1, 0.2)
    fsweep = fc * U(0.3, 0.9)
    fct = fc * U(0.3, 0.6)
    xt = -0.5 + 0.02
    m.add("tail_fin", _strip([0, fhgt], [xt, xt + fsweep], [xt + fc, xt + fsweep + fct], 0.01,
                             (0, r_tail * 0.5, 0)))
    sc, sspan = U(0.06, 0.12), U(0.09, 0.2) * (0.7 if fighter else 1.0)
    ssweep = sc * U(0.3, 0.8)
    for side in (-1, 1):
        M = np.stack([[1, 0, 0], [0, 0, side], [0, 1, 0]], axis=1)
        m.add("stabilizers", _strip([0, sspan], [xt + 0.01, xt + 0.01 + ssweep],
                                    [xt + 0.01 + sc, xt + 0.01 + ssweep + sc * 0.5], 0.008,
                                    (0, r_tail * 0.8, 0), M))
    if not fighter and rng.random() < 0.85:
        re, le = U(0.018, 0.032), U(0.08, 0.14)
        stations = [U(0.28, 0.4)] if rng.random() < 0.65 else [U(0.25, 0.32), U(0.55, 0.7)]
        for f in stations:
            z = f * span
            x_front = x_le - sweep * f + le * U(0.3, 0.6)
            y = wy + np.sin(dih) * z - re * 1.4
            prof_r = [0, re * 0.75, re, re, re * 0.6, 0]
            prof_y = [0, 0, le * 0.15, le * 0.7, le, le]
            for side in (-1, 1):
                m.add("engines", _revolve(prof_r, -np.asarray(prof_y), 16, (x_front, y, side * z), Y_TO_X),
                      _box((le * 0.4, re * 0.8, 0.006), (x_front - le * 0.5, y + re * 1.0, side * z)))


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
