"""Meshes read by pcdviz itself: OBJ (v/f lines, relative indices, v x y z r g b colours, o/g groups as part
labels), OFF (the [ST][C][N][4][n]OFF family, polygon faces) and STL (binary, and ASCII 'solid' files).
Refuses files without vertices, non-numbers in vertex or face lines, face indices outside the vertices (OFF
here; OBJ when the mesh is sampled), counts larger than the file holds, and binary STL shorter than its
triangle count says. Polygons are fan-triangulated; load_point_cloud samples the surface (pcdviz.io.finish)."""
from __future__ import annotations

import re
import struct
from pathlib import Path

import numpy as np

from .cloud import _Fail, _Raw, _human_bytes, _read_bytes, _too_many
from .columns import _first_bad_token, _fromstring, _triangulate
from .sniff import _OFF_RE


def _parse_obj(path: Path, **_) -> _Raw:
    data = _read_bytes(path)
    if b"\r" in data:
        data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    lines = data.split(b"\n")
    if b"\n " in data or b"\n\t" in data or data[:1] in (b" ", b"\t"):
        lines = [ln.lstrip() for ln in lines]
    v_no = [i for i, ln in enumerate(lines) if ln[:2] in (b"v ", b"v\t")]
    f_no = [i for i, ln in enumerate(lines) if ln[:2] in (b"f ", b"f\t")]
    nv = len(v_no)
    if nv == 0:
        raise _Fail("the OBJ file has no vertex ('v x y z') lines")
    # vertices: "v x y z [w]" or "v x y z r g b" (a common colour extension)
    try:
        flat = _fromstring(b" ".join(lines[i][2:] for i in v_no))
    except ValueError:
        flat = None
    width = flat.size // nv if flat is not None and flat.size % nv == 0 else 0
    if width in (3, 4, 6, 7):
        table = flat.reshape(nv, width)
    else:  # ragged vertex lines: take x y z (and r g b when a line has 6 values) one line at a time
        table = np.zeros((nv, 6))
        width = 6
        for j, i in enumerate(v_no):
            toks = lines[i].split()[1:]
            try:
                vals = [float(t) for t in toks]
            except ValueError:
                raise _Fail(f'line {i + 1}: a vertex line with a value that is not a number: '
                            f'"{lines[i][:60].decode("latin-1")}"') from None
            if len(vals) < 3:
                raise _Fail(f"line {i + 1}: a vertex line needs x y z, got {len(vals)} values")
            table[j, :3] = vals[:3]
            table[j, 3:6] = vals[3:6] if len(vals) >= 6 else np.nan
        if np.isnan(table[:, 3]).any():
            width = 3
    raw = _Raw(points=table[:, :3])
    if width in (6, 7):
        raw.colors = table[:, 3:6] if width == 6 else table[:, 4:7]
    raw.info.update(format="obj", n_vertices=nv)
    if not f_no:
        return raw
    # faces: "f 1 2 3", "f 1/1/1 2/2/2 ...", negative = relative to the vertices defined so far
    f_lines = [lines[i][2:] for i in f_no]
    counts = np.fromiter((len(ln.split()) for ln in f_lines), dtype=np.int64, count=len(f_lines))
    joined = re.sub(rb"/\S*", b"", b" ".join(f_lines))
    try:
        idx = _fromstring(joined)
    except ValueError:
        raise _Fail(f"a face line has an index that is not a number ({_first_bad_token([lines[i] for i in f_no])} "
                    f"among the face lines)") from None
    if idx.size != counts.sum() or np.any(idx != np.round(idx)):
        raise _Fail("the face lines could not be read (expected 'f i j k' with integer vertex indices)")
    idx = idx.astype(np.int64)
    if np.any(idx < 0):  # relative indices
        seen = np.searchsorted(np.asarray(v_no), np.asarray(f_no))  # vertices defined before each face
        seen_per_index = np.repeat(seen, counts)
        idx = np.where(idx < 0, seen_per_index + idx + 1, idx)
    if np.any(idx == 0):
        raise _Fail("a face refers to vertex 0, but OBJ vertex indices start at 1")
    idx -= 1
    raw.faces = _triangulate(counts, idx)
    raw.info["n_faces"] = len(f_no)
    # groups ('g'/'o') become part labels of the sampled points when there are several
    g_no = [i for i, ln in enumerate(lines) if ln[:2] in (b"g ", b"o ")]
    if len(g_no) >= 2:
        group_of_face = np.searchsorted(np.asarray(g_no), np.asarray(f_no), side="right") - 1
        group_names = [lines[i][2:].strip().decode("utf-8", "replace") for i in g_no]
        uniq_names = sorted(set(group_names[g] for g in set(group_of_face.tolist()) if g >= 0))
        if len(uniq_names) >= 2:
            label_of_group = np.array([uniq_names.index(nm) if nm in uniq_names else -1 for nm in group_names] + [-1])
            face_lab = label_of_group[group_of_face]  # -1 indexes the trailing -1 (faces before any group)
            raw.face_labels = np.repeat(face_lab, np.maximum(counts - 2, 0))
            raw.info["label_names"] = uniq_names
    return raw


def _parse_off(path: Path, *, cap: int, **_) -> _Raw:
    data = _read_bytes(path)
    if b"#" in data:
        data = re.sub(rb"#[^\n]*", b"", data)
    lines = [ln for ln in data.replace(b"\r", b"").split(b"\n") if ln.strip()]
    if not lines:
        raise _Fail("the file has no content")
    first = lines[0].split()
    kw = first[0].decode("latin-1") if first and _OFF_RE.match(first[0]) else ""
    rest = first[1:] if kw else first
    li = 1
    if not rest:
        if len(lines) < 2:
            raise _Fail("the file ends after the OFF keyword (no vertex and face counts)")
        rest, li = lines[1].split(), 2
    try:
        nv, nf = int(rest[0]), int(rest[1])
    except (ValueError, IndexError):
        raise _Fail(f"the counts line should be 'n_vertices n_faces n_edges', got "
                    f"'{b' '.join(rest).decode('latin-1')[:60]}'") from None
    if nv < 0 or nf < 0:
        raise _Fail("negative vertex or face count")
    if li + nv > len(lines):
        raise _Fail(f"the file is truncated: the header declares {nv:,} vertices but only {len(lines) - li:,} lines follow")
    if nv > cap:
        raise _Fail(_too_many(nv, cap))
    try:
        flat = _fromstring(b"\n".join(lines[li:li + nv]))
    except ValueError:
        raise _Fail(f"a vertex line has a value that is not a number ({_first_bad_token(lines[li:li + nv], li + 1)} "
                    f"of the non-empty lines)") from None
    if nv == 0 or flat.size % nv or flat.size // nv < 3:
        raise _Fail("the vertex lines have different numbers of values (expected 'x y z' on each)")
    width = flat.size // nv
    vt = flat.reshape(nv, width)
    raw = _Raw(points=vt[:, :3])
    col0 = 3 + (3 if "N" in kw else 0)
    if "C" in kw and width >= col0 + 3:
        raw.colors = vt[:, col0:col0 + 3]
    if "N" in kw and width >= 6:
        raw.normals = vt[:, 3:6]
    raw.info.update(format="off", n_vertices=nv)
    if nf == 0:
        return raw
    face_lines = lines[li + nv:li + nv + nf]
    if len(face_lines) < nf:
        raise _Fail(f"the file is truncated: the header declares {nf:,} faces but only {len(face_lines):,} lines follow")
    try:
        flat = _fromstring(b"\n".join(face_lines))
    except ValueError:
        raise _Fail("a face line has a value that is not a number") from None
    k = int(flat[0]) if flat.size and np.isfinite(flat[0]) else 0
    if k >= 3 and flat.size == nf * (k + 1) and np.all(flat.reshape(nf, k + 1)[:, 0] == k):
        fv = flat.reshape(nf, k + 1)[:, 1:]
        counts, vflat = np.full(nf, k, np.int64), fv.reshape(-1)
    else:  # mixed polygons or trailing face colours: one line at a time
        counts = np.empty(nf, np.int64)
        parts = []
        for j, ln in enumerate(face_lines):
            toks = ln.split()
            try:
                kk = int(toks[0])
                idx = np.array([int(t) for t in toks[1:1 + max(kk, 0)]], dtype=np.int64)
            except (ValueError, OverflowError):
                raise _Fail(f"face {j + 1} holds something that is not a whole number: "
                            f"'{ln[:60].decode('latin-1')}'") from None
            if kk < 0 or len(toks) < kk + 1:
                raise _Fail(f"face {j + 1} says it has {kk} vertices but lists {len(toks) - 1}")
            counts[j] = kk
            parts.append(idx)
        vflat = np.concatenate(parts) if parts else np.zeros(0, np.int64)
    if vflat.size and not (np.isfinite(vflat).all() and np.all(vflat == np.round(vflat))):
        raise _Fail("a face line has a vertex index that is not a whole number")
    if vflat.size and (vflat.min() < 0 or vflat.max() >= nv):
        raise _Fail(f"a face refers to vertex {int(vflat.max() if vflat.max() >= nv else vflat.min())}, "
                    f"but the file has {nv:,} vertices (0..{nv - 1})")
    raw.faces = _triangulate(counts, vflat.astype(np.int64))
    raw.info["n_faces"] = nf
    return raw


def _parse_stl(path: Path, *, cap: int, **_) -> _Raw:
    data = _read_bytes(path)
    size = len(data)
    n = struct.unpack_from("<I", data, 80)[0] if size >= 84 else -1
    binary_ok = n >= 0 and size >= 84 + 50 * n
    is_ascii = data.lstrip()[:5].lower() == b"solid" and not (n >= 0 and size == 84 + 50 * n)
    if is_ascii:
        verts = re.findall(rb"vertex([^\n]*)", data)
        if not verts:
            raise _Fail("the ASCII STL has no 'vertex x y z' lines")
        try:
            flat = _fromstring(b" ".join(verts))
        except ValueError:
            raise _Fail("a 'vertex' line of the ASCII STL holds something that is not a number") from None
        if flat.size % 9:
            raise _Fail("the ASCII STL's facets do not each have three 'vertex x y z' lines")
        tri = flat.reshape(-1, 3, 3)
        fmt = "stl (ascii)"
    else:
        if n < 0:
            raise _Fail(f"the file is only {size} bytes, too short for a binary STL (84-byte header)")
        if not binary_ok:
            raise _Fail(f"the file is truncated: its header declares {n:,} triangles ({_human_bytes(84 + 50 * n)}) "
                        f"but the file is {_human_bytes(size)}")
        if n > cap:
            raise _Fail(f"the STL file has {n:,} triangles, more than the limit of {cap:,}")
        rec = np.frombuffer(data, dtype=np.dtype([("n", "<f4", 3), ("v", "<f4", (3, 3)), ("a", "<u2")]), count=n, offset=84)
        tri = rec["v"]
        fmt = "stl (binary)"
    m = len(tri)
    raw = _Raw(points=tri.reshape(-1, 3), faces=np.arange(3 * m, dtype=np.int64).reshape(m, 3))
    raw.info.update(format=fmt, n_faces=m, n_vertices=3 * m)
    return raw


PARSERS = {".obj": _parse_obj, ".off": _parse_off, ".stl": _parse_stl}
