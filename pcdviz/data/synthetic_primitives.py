"""Primitive surfaces as triangle arrays (T, 3, 3), from which pcdviz.data.synthetic builds its shapes.

Boxes, surfaces of revolution (cylinders, ellipsoids, profiles), bars between two points, thin slabs with a
varying outline, extruded convex polygons and tubes swept along a path; each is placed by a rotation about its
local origin and a translation. Local y is up, as in the shapes.
"""

from __future__ import annotations

import numpy as np


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
