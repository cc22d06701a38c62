"""PLY (Stanford polygon files): reads ascii, binary_little_endian and binary_big_endian files, the vertex
element's x y z and optional normals, colours (uchar, ushort or float) and a label property, and the face
element's polygon lists (fan-triangulated; the file is then a mesh). Refuses a header without 'end_header' or
'format', unknown types, properties before an element, and any file shorter than its header's counts say
(checked before anything is allocated). save_ply writes the clouds pcdviz exports."""
from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .cloud import _Fail, _Raw, _fmt_count, _human_bytes, _read_bytes, _too_many
from .columns import _first_bad_token, _fromstring, _pick_named, _stack, _triangulate, _unique_names


_PLY_TYPES = {"char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
              "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
              "float": "f4", "float32": "f4", "double": "f8", "float64": "f8"}


@dataclass
class _PlyProp:
    name: str
    dtype: str                    # numpy type code without byte order
    count_dtype: str | None = None  # set for list properties


@dataclass
class _PlyElement:
    name: str
    count: int
    props: list = field(default_factory=list)


def _parse_ply_header(data: bytes):
    end = data.find(b"end_header", 0, 1 << 20)
    if end < 0:
        raise _Fail("the PLY header has no 'end_header' line (the file is truncated or not a PLY file)")
    nl = data.find(b"\n", end)
    body_start = len(data) if nl < 0 else nl + 1
    lines = data[:end].decode("latin-1").splitlines()
    fmt, elements = None, []
    for i, line in enumerate(lines[1:], start=2):
        tok = line.split()
        if not tok or tok[0] in ("comment", "obj_info"):
            continue
        if tok[0] == "format":
            if len(tok) < 2 or tok[1] not in ("ascii", "binary_little_endian", "binary_big_endian"):
                raise _Fail(f"header line {i}: unknown PLY format '{line.strip()}' (expected ascii, "
                            f"binary_little_endian or binary_big_endian)")
            fmt = tok[1]
        elif tok[0] == "element":
            if len(tok) != 3 or not tok[2].isdigit():
                raise _Fail(f"header line {i}: malformed element line '{line.strip()}'")
            elements.append(_PlyElement(tok[1], int(tok[2])))
        elif tok[0] == "property":
            if not elements:
                raise _Fail(f"header line {i}: a property before any element")
            if len(tok) == 5 and tok[1] == "list":
                if tok[2] not in _PLY_TYPES or tok[3] not in _PLY_TYPES:
                    raise _Fail(f"header line {i}: unknown PLY type in '{line.strip()}'")
                elements[-1].props.append(_PlyProp(tok[4], _PLY_TYPES[tok[3]], _PLY_TYPES[tok[2]]))
            elif len(tok) == 3 and tok[1] in _PLY_TYPES:
                elements[-1].props.append(_PlyProp(tok[2], _PLY_TYPES[tok[1]]))
            else:
                raise _Fail(f"header line {i}: malformed or unknown property '{line.strip()}'")
    if fmt is None:
        raise _Fail("the PLY header has no 'format' line")
    return fmt, elements, body_start


def _ply_binary_element(data, pos, el: _PlyElement, bo: str):
    """Read one binary element at pos -> (dict name -> array or (counts, flat) for lists, new pos)."""
    names = _unique_names([p.name for p in el.props])
    remaining = len(data) - pos
    has_list = any(p.count_dtype for p in el.props)
    if not has_list:
        dt = np.dtype([(n, bo + p.dtype) for n, p in zip(names, el.props)])
        need = el.count * dt.itemsize
        if need > remaining:
            raise _Fail(f"the file is truncated: the header declares {_fmt_count(el.count)} '{el.name}' elements "
                        f"({_human_bytes(need)}) but only {_human_bytes(remaining)} of data follow")
        arr = np.frombuffer(data, dtype=dt, count=el.count, offset=pos)
        return {n: arr[n] for n in names}, pos + need
    # the smallest possible size (all lists empty) is a cheap bound that catches absurd counts
    min_row = sum(np.dtype(p.count_dtype or p.dtype).itemsize for p in el.props)
    if el.count * min_row > remaining:
        raise _Fail(f"the file is truncated: the header declares {_fmt_count(el.count)} '{el.name}' elements "
                    f"(at least {_human_bytes(el.count * min_row)}) but only {_human_bytes(remaining)} of data follow")
    if el.count == 0:
        return {n: (np.zeros(0, np.int64), np.zeros(0)) if p.count_dtype else np.zeros(0)
                for n, p in zip(names, el.props)}, pos
    # fast path: every row has the same list lengths as the first row (e.g. all triangles)
    q, first_counts, fields = pos, [], []
    for n, p in zip(names, el.props):
        if p.count_dtype:
            k = int(np.frombuffer(data, bo + p.count_dtype, 1, q)[0]) if q < len(data) else -1
            if k < 0:
                break
            first_counts.append(k)
            fields += [(f"__n_{n}", bo + p.count_dtype), (n, bo + p.dtype, (k,))]
            q += np.dtype(p.count_dtype).itemsize + k * np.dtype(p.dtype).itemsize
        else:
            fields.append((n, bo + p.dtype))
            q += np.dtype(p.dtype).itemsize
    else:
        dt = np.dtype(fields)
        if el.count * dt.itemsize <= remaining:
            arr = np.frombuffer(data, dtype=dt, count=el.count, offset=pos)
            list_names = [n for n, p in zip(names, el.props) if p.count_dtype]
            if all(np.all(arr[f"__n_{n}"] == k) for n, k in zip(list_names, first_counts)):
                out = {}
                for n, p in zip(names, el.props):
                    if p.count_dtype:
                        flat = arr[n].reshape(-1)
                        out[n] = (np.full(el.count, arr[n].shape[1] if arr[n].ndim == 2 else 1, np.int64), flat)
                    else:
                        out[n] = arr[n]
                return out, pos + el.count * dt.itemsize
    return _ply_binary_rows(data, pos, el, bo, names)


def _ply_binary_rows(data, pos, el: _PlyElement, bo: str, names: list[str]):
    """The slow path of _ply_binary_element: variable-length rows, one Python step per row (mixed polygons)."""
    mv = memoryview(data)
    cols = {n: [] for n in names}
    counts = {n: np.empty(el.count, np.int64) for n, p in zip(names, el.props) if p.count_dtype}
    plan = []
    for n, p in zip(names, el.props):
        if p.count_dtype:
            plan.append((n, struct.Struct(bo + np.dtype(p.count_dtype).char), np.dtype(bo + p.dtype)))
        else:
            plan.append((n, None, np.dtype(bo + p.dtype)))
    end = len(data)
    for r in range(el.count):
        for n, cstruct, idt in plan:
            if cstruct is None:
                _check_row_end(pos, idt.itemsize, end, el, r)
                cols[n].append(mv[pos:pos + idt.itemsize])
                pos += idt.itemsize
            else:
                _check_row_end(pos, cstruct.size, end, el, r)
                k = cstruct.unpack_from(data, pos)[0]
                pos += cstruct.size
                nbytes = k * idt.itemsize
                _check_row_end(pos, nbytes, end, el, r)
                counts[n][r] = k
                cols[n].append(mv[pos:pos + nbytes])
                pos += nbytes
    out = {}
    for n, cstruct, idt in plan:
        buf = b"".join(cols[n])
        flat = np.frombuffer(buf, dtype=idt)
        out[n] = (counts[n], flat) if cstruct is not None else flat
    return out, pos


def _check_row_end(pos, nbytes, end, el, r) -> None:
    """Raise if a row of a binary PLY element runs past the end of the file."""
    if pos + nbytes > end:
        raise _Fail(f"the file is truncated: it ends inside '{el.name}' element {r + 1:,} of {el.count:,}")


def _ply_ascii_elements(body: bytes, elements, wanted: set):
    """Parse the ASCII body: one line per element row; extra tokens at the end of a line are ignored."""
    if b"\r" in body:
        body = body.replace(b"\r", b"")
    lines = body.split(b"\n")
    if re.search(rb"(^|\n)[ \t]*\n", body):  # blank lines are not rows
        lines = [ln for ln in lines if ln.strip()]
    pos, out = 0, {}
    for el in elements:
        if not wanted - set(out):
            break
        if el.count > len(lines) - pos:
            raise _Fail(f"the file is truncated: the header declares {_fmt_count(el.count)} '{el.name}' elements "
                        f"but only {max(0, len(lines) - pos):,} lines of data are left for them")
        rows = lines[pos:pos + el.count]
        first_line_no = pos + 1
        pos += el.count
        names = _unique_names([p.name for p in el.props])
        if el.count == 0:
            out[el.name] = {n: (np.zeros(0, np.int64), np.zeros(0)) if p.count_dtype else np.zeros(0)
                            for n, p in zip(names, el.props)}
            continue
        try:
            first = _fromstring(rows[0]) if rows else np.zeros(0)
        except ValueError:
            raise _Fail(f"the '{el.name}' data contains something that is not a number "
                        f"({_first_bad_token(rows[:1], first_line_no)} after the header)") from None
        # column layout from the first row: (name, column, list length or None)
        layout, c = [], 0
        for n, p in zip(names, el.props):
            if p.count_dtype:
                k = _list_length(first[c], first_line_no) if c < first.size else 0
                layout.append((n, c, k))
                c += 1 + k
            else:
                layout.append((n, c, None))
                c += 1
        width = c
        try:
            flat = _fromstring(b"\n".join(rows))
        except ValueError:
            raise _Fail(f"the '{el.name}' data contains something that is not a number "
                        f"({_first_bad_token(rows, first_line_no)} after the header)") from None
        row_width = first.size
        if row_width >= width and flat.size == el.count * row_width:
            block = flat.reshape(el.count, row_width)
            if all(k is None or np.all(block[:, c] == k) for _, c, k in layout):
                out[el.name] = {n: block[:, c] if k is None else
                                (np.full(el.count, k, np.int64), block[:, c + 1:c + 1 + k].reshape(-1))
                                for n, c, k in layout}
                continue
        # rows of different lengths (mixed polygons): one line at a time
        cols = {n: np.empty(el.count) for n, p in zip(names, el.props) if not p.count_dtype}
        cnt = {n: np.empty(el.count, np.int64) for n, p in zip(names, el.props) if p.count_dtype}
        lists = {n: [] for n in cnt}
        for r, ln in enumerate(rows):
            try:
                vals = np.array(ln.split(), dtype=np.float64)
            except ValueError:
                raise _Fail(f"the '{el.name}' data contains something that is not a number "
                            f"({_first_bad_token([ln], first_line_no + r)} after the header)") from None
            c = 0
            for n, p in zip(names, el.props):
                if c >= vals.size:
                    raise _Fail(f"data line {first_line_no + r} has too few values for a '{el.name}' element")
                if p.count_dtype:
                    k = _list_length(vals[c], first_line_no + r)
                    if k < 0 or c + 1 + k > vals.size:
                        raise _Fail(f"data line {first_line_no + r} says its list has {k} values but it holds fewer")
                    cnt[n][r] = k
                    lists[n].append(vals[c + 1:c + 1 + k])
                    c += 1 + k
                else:
                    cols[n][r] = vals[c]
                    c += 1
        out[el.name] = {n: cols[n] if n in cols else (cnt[n], np.concatenate(lists[n])) for n in names}
    return out


def _list_length(value: float, line_no: int) -> int:
    """A PLY/OFF list length read as a number: a non-negative integer, or a sentence saying it is not."""
    if not (np.isfinite(value) and value == int(value) and 0 <= value <= 1 << 31):
        raise _Fail(f"data line {line_no}: a list length of {value:g} is not a count")
    return int(value)


def _parse_ply(path: Path, *, cap: int, **_) -> _Raw:
    data = _read_bytes(path)
    fmt, elements, body_start = _parse_ply_header(data)
    vert = next((e for e in elements if e.name in ("vertex", "vertices", "point", "points")), None)
    if vert is None:
        vert = next((e for e in elements if {"x", "y", "z"} <= {p.name.lower() for p in e.props}), None)
    if vert is None:
        raise _Fail(f"the PLY file has no vertex element (elements: {', '.join(e.name for e in elements) or 'none'})")
    roles = _pick_named([p.name for p in vert.props])
    if "xyz" not in roles:
        raise _Fail(f"the PLY vertex element has no x, y, z properties (found: {', '.join(p.name for p in vert.props)})")
    # a header that promises more than the file holds is truncated, whatever the count (checked first)
    remaining = len(data) - body_start
    if fmt == "ascii":
        have = data.count(b"\n", body_start)
        before = sum(e.count for e in elements[:elements.index(vert)])
        if before + vert.count > have + 1:
            raise _Fail(f"the file is truncated: the header declares {_fmt_count(vert.count)} 'vertex' elements "
                        f"but the data has only {have:,} lines")
    else:
        least = 0
        for e in elements[:elements.index(vert) + 1]:
            least += e.count * sum(np.dtype(p.count_dtype or p.dtype).itemsize for p in e.props)
        if least > remaining:
            raise _Fail(f"the file is truncated: the header declares {_fmt_count(vert.count)} 'vertex' elements "
                        f"(at least {_human_bytes(least)}) but only {_human_bytes(remaining)} of data follow")
    if vert.count > cap:
        raise _Fail(_too_many(vert.count, cap))
    face = next((e for e in elements if e.name in ("face", "faces")), None)
    wanted = {vert.name} | ({face.name} if face is not None else set())
    if fmt == "ascii":
        parsed = _ply_ascii_elements(data[body_start:], elements, wanted)
    else:
        bo = "<" if fmt == "binary_little_endian" else ">"
        parsed, pos = {}, body_start
        for el in elements:
            if not wanted - set(parsed):
                break
            parsed[el.name], pos = _ply_binary_element(data, pos, el, bo)
    v = parsed[vert.name]
    raw = _Raw(points=_stack(v.__getitem__, roles["xyz"]))
    if "normals" in roles:
        raw.normals = _stack(v.__getitem__, roles["normals"])
    if "colors" in roles:
        types = {p.name: p.dtype for p in vert.props}
        c = _stack(v.__getitem__, roles["colors"])
        raw.colors = c.astype(np.float32) / 65535.0 if types[roles["colors"][0]] == "u2" else c
    if "label" in roles:
        raw.labels = v[roles["label"]]
    raw.info.update(format=f"ply ({fmt})", fields=[p.name for p in vert.props], n_vertices=vert.count)
    if face is not None and face.count > 0:
        f = parsed[face.name]
        key = next((p.name for p in face.props if p.name in ("vertex_indices", "vertex_index") and p.count_dtype), None)
        key = key or next((p.name for p in face.props if p.count_dtype), None)
        if key is not None:
            counts, flat = f[key]
            raw.faces = _triangulate(counts, flat)
            raw.info["n_faces"] = face.count
    return raw


def save_ply(path, points, colors=None, *, scalar=None, binary: bool = True, normals=None,
             labels=None, scalar_name: str = "attention") -> None:
    """Write a PLY point cloud: float xyz, optional normals, uchar colours, a float scalar and int labels."""
    pts = np.asarray(points, dtype=np.float32)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise ValueError(f"save_ply expects points of shape (N, 3), got {pts.shape}")
    n = len(pts)
    fields: list[tuple[str, str, np.ndarray]] = [("x", "f4", pts[:, 0]), ("y", "f4", pts[:, 1]), ("z", "f4", pts[:, 2])]
    if normals is not None:
        nrm = _check_cols(normals, n, "normals").astype(np.float32)
        fields += [("nx", "f4", nrm[:, 0]), ("ny", "f4", nrm[:, 1]), ("nz", "f4", nrm[:, 2])]
    if colors is not None:
        c = _check_cols(colors, n, "colors")
        if c.dtype != np.uint8:
            c = np.clip(np.rint(np.asarray(c, dtype=np.float64) * 255.0), 0, 255).astype(np.uint8)
        fields += [("red", "u1", c[:, 0]), ("green", "u1", c[:, 1]), ("blue", "u1", c[:, 2])]
    if scalar is not None:
        s = np.asarray(scalar, dtype=np.float32).reshape(-1)
        if s.shape != (n,):
            raise ValueError(f"save_ply scalar must have shape ({n},), got {np.shape(scalar)}")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", scalar_name):
            raise ValueError(f"save_ply scalar_name must be an identifier, got {scalar_name!r}")
        fields.append((scalar_name, "f4", s))
    if labels is not None:
        lab = np.asarray(labels).reshape(-1)
        if lab.shape != (n,):
            raise ValueError(f"save_ply labels must have shape ({n},), got {np.shape(labels)}")
        fields.append(("label", "i4", lab.astype(np.int32)))
    ply_types = {"f4": "float", "u1": "uchar", "i4": "int"}
    header = ["ply", f"format {'binary_little_endian' if binary else 'ascii'} 1.0", "comment written by pcdviz",
              f"element vertex {n}"]
    header += [f"property {ply_types[t]} {name}" for name, t, _ in fields]
    header.append("end_header")
    path = Path(path)
    with open(path, "wb") as f:
        f.write(("\n".join(header) + "\n").encode("ascii"))
        rec = np.empty(n, dtype=[(name, "<" + t) for name, t, _ in fields])
        for name, _, col in fields:
            rec[name] = col
        if binary:
            f.write(rec.tobytes())
        elif n:
            np.savetxt(f, rec, fmt=" ".join("%.9g" if t == "f4" else "%d" for _, t, _ in fields))


def _check_cols(a, n: int, what: str) -> np.ndarray:
    a = np.asarray(a)
    if a.shape != (n, 3):
        raise ValueError(f"save_ply {what} must have shape ({n}, 3), got {a.shape}")
    return a


PARSERS = {".ply": _parse_ply}
