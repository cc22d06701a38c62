"""PCD (Point Cloud Library): reads ascii, binary and binary_compressed (LZF) data with F/I/U fields of 1-8
bytes and any COUNT, the x y z fields and optional normals, packed rgb/rgba or separate colour fields, and a
label field. Refuses a header without FIELDS/SIZE/TYPE or DATA, unknown TYPE/SIZE pairs, lines of different
lengths, a COUNT of 0, data shorter than the header says, compressed blocks whose sizes are impossible or
that would decompress past the limit (checked before decoding), and LZF streams that do not decode to
exactly the size the header says."""
from __future__ import annotations

import re
import struct
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .cloud import DECODE_FACTOR, MAX_FILE_BYTES, _Fail, _Raw, _fmt_count, _human_bytes, _read_bytes, _too_many
from .columns import _first_bad_token, _fromstring, _pick_named, _stack, _unique_names


_PCD_TYPES = {("F", 4): "f4", ("F", 8): "f8", ("I", 1): "i1", ("I", 2): "i2", ("I", 4): "i4", ("I", 8): "i8",
              ("U", 1): "u1", ("U", 2): "u2", ("U", 4): "u4", ("U", 8): "u8"}


def _lzf_decompress(src: bytes, out_len: int) -> bytes:
    """Decompress LZF (liblzf, as PCL's binary_compressed uses) into exactly out_len bytes.

    python-neo-lzf (liblzf's own C decoder) replaced a Python loop here: 14-20x faster and, on the fuzzer's
    damaged blocks, refusing exactly what the loop refused (BENCHMARKS.md, bench/bench_parsers.py). The caller has
    already bounded out_len by the decode limit; anything but exactly out_len bytes back is a refusal."""
    if out_len == 0:  # python-neo-lzf answers None for an empty output buffer, whatever the input
        if src:
            raise _Fail(_LZF_BAD.format(out_len))
        return b""
    try:
        import lzf
    except ImportError as e:
        raise _Fail(f"python-neo-lzf, which decodes binary_compressed data, could not be imported ({e}); "
                    f"run scripts/setup.sh, or save the cloud as binary or ascii PCD") from None
    try:
        out = lzf.decompress(src, out_len)  # None: it would decode to more than out_len bytes
    except ValueError:  # liblzf: a back reference before the start, or a run past the end of the input
        out = None
    if out is None or len(out) != out_len:
        raise _Fail(_LZF_BAD.format(out_len))
    return out


_LZF_BAD = ("the compressed data is damaged or truncated (it does not decompress to the {:,} bytes the header "
            "says)")


def _header_int(hdr: dict, key: str, text: str) -> int:
    """A non-negative integer from a PCD header line, or a sentence naming the line."""
    if not re.fullmatch(r"\d{1,19}", text):
        raise _Fail(f"the PCD header's {key} line should hold a non-negative whole number, got "
                    f"'{' '.join(hdr.get(key, []))[:40]}'")
    return int(text)


def _pcd_header(data: bytes) -> tuple[dict, int, int]:
    """The header's lines up to DATA (KEY -> its values), the offset of the data and the header's line count."""
    hdr, pos, line_no = {}, 0, 0
    while True:
        nl = data.find(b"\n", pos)
        if nl < 0 or pos > 1 << 20:
            raise _Fail("the PCD header has no DATA line (the file is truncated or not a PCD file)")
        line = data[pos:nl].decode("latin-1").strip()
        pos, line_no = nl + 1, line_no + 1
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition(" ")
        hdr[key.upper()] = value.split()
        if key.upper() == "DATA":
            return hdr, pos, line_no


class _Layout(NamedTuple):
    names: list          # FIELDS as written
    uniq: list           # the same, made unique
    dts: list            # numpy type codes without byte order
    counts: list         # values per field
    n: int               # points
    point_size: int      # bytes per point


def _pcd_layout(hdr: dict) -> _Layout:
    """FIELDS, SIZE, TYPE, COUNT and the point count, checked against each other."""
    for k in ("FIELDS", "SIZE", "TYPE"):
        if k not in hdr:
            raise _Fail(f"the PCD header has no {k} line")
    names = hdr["FIELDS"]
    counts = [_header_int(hdr, "COUNT", c) for c in hdr.get("COUNT", ["1"] * len(names))]
    if 0 in counts:
        raise _Fail("the PCD header's COUNT line has a 0: every field needs at least one value")
    try:
        sizes = [int(s) for s in hdr["SIZE"]]
        types = [t.upper() for t in hdr["TYPE"]]
        dts = [_PCD_TYPES[(t, s)] for t, s in zip(types, sizes)]
    except (KeyError, ValueError):
        raise _Fail(f"the PCD header has an unknown TYPE/SIZE combination ({' '.join(hdr['TYPE'])} / "
                    f"{' '.join(hdr['SIZE'])}); accepted: F 4/8, I 1/2/4/8, U 1/2/4/8") from None
    if not (len(names) == len(sizes) == len(types) == len(counts)):
        raise _Fail("the PCD header's FIELDS, SIZE, TYPE and COUNT lines have different lengths")
    if "POINTS" in hdr:
        n = _header_int(hdr, "POINTS", (hdr["POINTS"] or [""])[0])
    else:
        n = _header_int(hdr, "WIDTH", hdr.get("WIDTH", ["0"])[0]) * _header_int(hdr, "HEIGHT", hdr.get("HEIGHT", ["1"])[0])
    point_size = sum(s * c for s, c in zip(sizes, counts))
    return _Layout(names, _unique_names(names), dts, counts, n, point_size)


def _pcd_ascii(data: bytes, pos: int, line_no: int, lay: _Layout) -> dict:
    """Fields of an ascii body: one line per point, COUNT values per field."""
    n, fields = lay.n, {}
    try:
        flat = _fromstring(data[pos:])
    except ValueError:
        raise _Fail(f"the data contains something that is not a number "
                    f"({_first_bad_token(data[pos:].splitlines(), line_no + 1)})") from None
    width = sum(lay.counts)
    if flat.size < n * width:
        raise _Fail(f"the file is truncated: the header declares {_fmt_count(n)} points but the data holds "
                    f"{flat.size // max(1, width):,}")
    table = flat[:n * width].reshape(n, width)
    c0 = 0
    for nm, dt, c in zip(lay.uniq, lay.dts, lay.counts):
        col = table[:, c0:c0 + c]
        if nm.lower() in ("rgb", "rgba"):  # the packed colour is a float or an int whose bits are 0x00RRGGBB
            col = col.astype(np.float32).view(np.uint32) if dt[0] == "f" else col.astype(np.uint32)
        fields[nm] = col[:, 0] if c == 1 else col
        c0 += c
    return fields


def _pcd_binary(data: bytes, pos: int, lay: _Layout) -> dict:
    """Fields of a binary body: one record per point (its size was checked against the file's)."""
    dt = np.dtype([(nm, "<" + d, (c,)) if c > 1 else (nm, "<" + d) for nm, d, c in zip(lay.uniq, lay.dts, lay.counts)])
    arr = np.frombuffer(data, dtype=dt, count=lay.n, offset=pos)
    return {nm: arr[nm] for nm in lay.uniq}


def _pcd_compressed(data: bytes, pos: int, lay: _Layout, decode_limit: int) -> dict:
    """Fields of a binary_compressed body: two sizes, then one LZF block of each field for all points in turn."""
    n, point_size, fields = lay.n, lay.point_size, {}
    if len(data) - pos < 8:
        raise _Fail("the file is truncated: the compressed data block is missing")
    comp_size, raw_size = struct.unpack_from("<II", data, pos)
    if raw_size != n * point_size:
        raise _Fail(f"the compressed block says {raw_size:,} bytes but {_fmt_count(n)} points of "
                    f"{point_size} bytes need {n * point_size:,} (damaged header or data)")
    if comp_size > len(data) - pos - 8:
        raise _Fail(f"the file is truncated: the compressed block should hold {_human_bytes(comp_size)} but "
                    f"only {_human_bytes(len(data) - pos - 8)} follow")
    if raw_size > 90 * comp_size + 64:  # LZF cannot expand more than ~88x
        raise _Fail("the compressed block's sizes are impossible (damaged file)")
    if raw_size > decode_limit:
        raise _Fail(f"the compressed block would decompress to {_human_bytes(raw_size)}, more than the "
                    f"limit of {_human_bytes(decode_limit)}")
    buf = _lzf_decompress(data[pos + 8:pos + 8 + comp_size], raw_size)
    off = 0  # binary_compressed stores each field for all points contiguously
    for nm, d, c in zip(lay.uniq, lay.dts, lay.counts):
        col = np.frombuffer(buf, dtype="<" + d, count=n * c, offset=off).reshape(n, c)
        fields[nm] = col[:, 0] if c == 1 else col
        off += n * c * np.dtype(d).itemsize
    return fields


def _pcd_raw(fields: dict, lay: _Layout) -> _Raw:
    """Points, normals, colours (a packed rgb/rgba field or three fields) and labels from the fields by name."""
    roles = _pick_named(lay.uniq)
    if "xyz" not in roles:
        raise _Fail(f"the PCD file has no x, y, z fields (found: {' '.join(lay.names)})")
    raw = _Raw(points=_stack(fields.__getitem__, roles["xyz"]))
    if "normals" in roles:
        raw.normals = _stack(fields.__getitem__, roles["normals"])
    rgb_name = next((nm for nm in lay.uniq if nm.lower() in ("rgb", "rgba")), None)
    if rgb_name is not None:
        v = np.ascontiguousarray(fields[rgb_name])
        if v.dtype.kind == "f":
            v = v.astype(np.float32).view(np.uint32)
        v = v.astype(np.uint32)
        raw.colors = np.stack([(v >> 16) & 255, (v >> 8) & 255, v & 255], axis=1).astype(np.uint8)
    elif "colors" in roles:
        raw.colors = _stack(fields.__getitem__, roles["colors"])
    if "label" in roles:
        raw.labels = fields[roles["label"]]
    return raw


def _parse_pcd(path: Path, *, cap: int, decode_limit: int = DECODE_FACTOR * MAX_FILE_BYTES, **_) -> _Raw:
    data = _read_bytes(path)
    hdr, pos, line_no = _pcd_header(data)
    lay = _pcd_layout(hdr)
    n = lay.n
    mode = hdr["DATA"][0].lower() if hdr["DATA"] else ""
    if mode == "binary" and n * lay.point_size > len(data) - pos:
        raise _Fail(f"the file is truncated: the header declares {_fmt_count(n)} points "
                    f"({_human_bytes(n * lay.point_size)}) but only {_human_bytes(len(data) - pos)} of data follow")
    if n > cap:
        raise _Fail(_too_many(n, cap))
    if mode == "ascii":
        fields = _pcd_ascii(data, pos, line_no, lay)
    elif mode == "binary":
        fields = _pcd_binary(data, pos, lay)
    elif mode == "binary_compressed":
        fields = _pcd_compressed(data, pos, lay, decode_limit)
    else:
        raise _Fail(f"unknown PCD DATA mode '{' '.join(hdr['DATA'])}' (accepted: ascii, binary, binary_compressed)")
    raw = _pcd_raw(fields, lay)
    raw.info.update(format=f"pcd ({mode})", fields=lay.names)
    return raw


PARSERS = {".pcd": _parse_pcd}
