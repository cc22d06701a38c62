"""What more than one format shares: the tables of field names (colours, normals, labels), guessing what the
columns of a numeric table are, numbers from a text body, unique field names, and fan triangulation of polygons."""
from __future__ import annotations

import re

import numpy as np

from .cloud import _Fail, _Raw


_COLOR_NAMES = [("red", "green", "blue"), ("r", "g", "b"), ("diffuse_red", "diffuse_green", "diffuse_blue")]
_NORMAL_NAMES = [("nx", "ny", "nz"), ("normal_x", "normal_y", "normal_z"), ("normalx", "normaly", "normalz")]
_LABEL_NAMES = ("label", "labels", "class", "part", "part_id", "part_label", "pid", "seg", "semantic",
                "scalar_label", "segment")


def _pick_named(names) -> dict:
    """Map roles (xyz, normals, colors, label) to field names, case-insensitively."""
    low = {n.lower(): n for n in names}
    out = {}
    if all(k in low for k in ("x", "y", "z")):
        out["xyz"] = (low["x"], low["y"], low["z"])
    for triple in _NORMAL_NAMES:
        if all(k in low for k in triple):
            out["normals"] = tuple(low[k] for k in triple)
            break
    for triple in _COLOR_NAMES:
        if all(k in low for k in triple):
            out["colors"] = tuple(low[k] for k in triple)
            break
    for k in _LABEL_NAMES:
        if k in low:
            out["label"] = low[k]
            break
    return out


def _stack(get, names) -> np.ndarray:
    return np.stack([np.asarray(get(n)) for n in names], axis=1)


def _looks_like_normals(a: np.ndarray) -> bool:
    a = a[np.isfinite(a).all(axis=1)]
    if len(a) == 0 or np.abs(a).max() > 1.001:
        return False
    norms = np.sqrt((a.astype(np.float64) ** 2).sum(axis=1))
    return bool(np.median(np.abs(norms - 1.0)) < 0.01)


def _looks_like_colors(a: np.ndarray) -> bool:
    a = a[np.isfinite(a).all(axis=1)]
    if len(a) == 0 or a.min() < 0:
        return False
    mx = a.max()
    return bool(mx <= 1.0 or (mx <= 255.0 and np.all(a == np.round(a))))


def _looks_like_labels(a: np.ndarray) -> bool:
    a = a[np.isfinite(a)]
    return bool(len(a) and a.min() >= 0 and np.all(a == np.round(a)) and a.max() < 1e6)


def _interpret_columns(arr: np.ndarray, names=None, ext: str | None = None) -> _Raw:
    """A numeric table (N, C>=3) -> points and whatever the extra columns are (by name or by content)."""
    C = arr.shape[1]
    if C < 3:
        raise _Fail(f"each point needs at least 3 values (x y z), but the data has {C} column{'s' * (C != 1)}")
    raw = _Raw(points=arr[:, :3])
    cols = ["x", "y", "z"]
    if names is not None and len(names) == C:
        roles = _pick_named(names)
        index = {n: i for i, n in enumerate(names)}
        if "xyz" in roles:
            raw.points = arr[:, [index[n] for n in roles["xyz"]]]
        if "normals" in roles:
            raw.normals = arr[:, [index[n] for n in roles["normals"]]]
        if "colors" in roles:
            raw.colors = arr[:, [index[n] for n in roles["colors"]]]
        if "label" in roles:
            raw.labels = arr[:, index[roles["label"]]]
        raw.info["columns"] = list(names)
        return raw
    if ext == ".xyzn" and C >= 6:
        raw.normals, cols = arr[:, 3:6], cols + ["nx", "ny", "nz"]
    elif ext == ".xyzrgb" and C >= 6:
        raw.colors, cols = arr[:, 3:6], cols + ["r", "g", "b"]
    elif ext == ".pts" and C in (4, 7):  # Leica .pts: x y z intensity [r g b]
        cols.append("intensity")
        if C == 7:
            raw.colors, cols = arr[:, 4:7], cols + ["r", "g", "b"]
    else:
        nxt = 3
        for _ in range(2):  # up to two triplets after xyz: normals and/or colours, in either order
            if C >= nxt + 3:
                block = arr[:, nxt:nxt + 3]
                if raw.normals is None and _looks_like_normals(block):
                    raw.normals, cols, nxt = block, cols + ["nx", "ny", "nz"], nxt + 3
                    continue
                if raw.colors is None and _looks_like_colors(block):
                    raw.colors, cols, nxt = block, cols + ["r", "g", "b"], nxt + 3
                    continue
            break
        if C == nxt + 1 and nxt > 3 and _looks_like_labels(arr[:, nxt]):  # e.g. ShapeNetPart x y z nx ny nz part
            raw.labels, cols = arr[:, nxt], cols + ["label"]
    cols += [f"extra{i}" for i in range(len(cols), C)]
    raw.info["columns"] = cols
    return raw


def _fromstring(text: bytes | str) -> np.ndarray:
    """All whitespace-separated numbers in text as float64; raises ValueError on a non-number.

    (NumPy >= 2.3 raises on unmatched data; older NumPy only warned, and catching that warning meant
    switching the process-wide warning filters, which in a threaded server turned other threads'
    warnings into exceptions.)"""
    return np.fromstring(text, dtype=np.float64, sep=" ")


def _first_bad_token(lines, first_line_no: int = 1) -> str:
    """'line L: "tok"' for the first token that is not a number (for error messages)."""
    for i, line in enumerate(lines):
        for tok in re.split(rb"[\s,;]+", line.strip()):
            if not tok:
                continue
            try:
                float(tok)
            except ValueError:
                return f'line {i + first_line_no}: "{tok[:40].decode("latin-1")}"'
    return "an unreadable value"


def _unique_names(names) -> list[str]:
    """Field names made unique in order: a repeated name gets _1, _2, ... (PLY properties, PCD fields)."""
    seen, out = {}, []
    for name in names:
        k = seen.get(name, 0)
        seen[name] = k + 1
        out.append(name if k == 0 else f"{name}_{k}")
    return out


def _triangulate(counts: np.ndarray, flat: np.ndarray) -> np.ndarray:
    """Fan-triangulate polygons given as (counts, flat vertex indices) -> (M, 3) int64."""
    counts = np.asarray(counts, dtype=np.int64)
    flat = np.asarray(flat).astype(np.int64, copy=False)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    tris = []
    for k in np.unique(counts):
        if k < 3:
            continue
        s = starts[counts == k]
        for j in range(1, int(k) - 1):
            tris.append(np.stack([flat[s], flat[s + j], flat[s + j + 1]], axis=1))
    return np.concatenate(tris) if tris else np.zeros((0, 3), np.int64)
