"""Text tables (.xyz .xyzn .xyzrgb .pts .txt .csv): one point per line, x y z then optional normals, colours and
a label, separated by spaces, tabs, commas or semicolons (then commas may be decimal commas); leading comment
lines (#, //, %), a row of column names, a leading point count (.pts), count lines between scans. Refuses a
first line that is neither numbers, names nor a count, a non-number in the data (naming line and value), rows
of different lengths, fewer rows than a count line says, and more rows than the point limit."""
from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np

from .cloud import _TEXT_EXTS, _Fail, _Raw, _fmt_count, _read_bytes, _too_many
from .columns import _interpret_columns, _pick_named


_NUM_RE = re.compile(rb"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$|^[+-]?(nan|inf|infinity)$", re.IGNORECASE)


def _is_number(tok: bytes) -> bool:
    return bool(_NUM_RE.match(tok))


def _split_tokens(line: bytes) -> list[bytes]:
    return [t for t in re.split(rb"[\s,;]+", line.strip()) if t]


def _text_head(data: bytes):
    """Walk the first lines: comments, an optional row of column names, an optional count line, up to the first
    row of numbers -> (its offset, its line number, names, count, the last comment, the row stripped)."""
    pos, line_no, names, count, comment = 0, 0, None, None, None
    while True:
        nl = data.find(b"\n", pos)
        line = data[pos:] if nl < 0 else data[pos:nl]
        s = line.strip()
        line_no += 1
        if s and not (s.startswith(b"#") or s.startswith(b"//") or s.startswith(b"%")):
            toks = _split_tokens(s)
            numeric = [_is_number(t) for t in toks]
            if not all(numeric):
                if any(numeric) or names is not None or count is not None:  # a header row has names only
                    bad = toks[numeric.index(False)].decode("latin-1")[:40]
                    raise _Fail(f'line {line_no}: "{bad}" is not a number (line: "{s[:60].decode("latin-1")}")')
                names = [t.decode("latin-1") for t in toks]
            elif len(toks) == 1 and count is None and names is None and re.fullmatch(rb"\d+", toks[0]):
                count = int(toks[0])  # a leading point count (.pts, some .xyz)
            else:
                return pos, line_no, names, count, comment, s
        elif s:
            comment = s.lstrip(b"#/% ")
        if nl < 0:
            raise _Fail("the file has no rows of numbers" if line_no > 1 or s else "the file is empty")
        pos = nl + 1


def _parse_text(path: Path, *, ext: str, cap: int, **_) -> _Raw:
    data = _read_bytes(path)
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    pos, line_no, names, count, comment, s = _text_head(data)
    # the first row of numbers sets the separator: "1,5;2,0;3,25": semicolons separate, commas are decimal commas
    decimal_comma = b";" in s and b"," in s
    delimiter = ";" if b";" in s else "," if b"," in s else None
    ncols = len(_split_tokens(s.replace(b",", b".") if decimal_comma else s))
    if names is None and comment:  # e.g. CloudCompare's "//X,Y,Z,R,G,B" header comment
        ctoks = [t.decode("latin-1") for t in _split_tokens(comment)]
        if len(ctoks) == ncols and not any(_is_number(t.encode()) for t in ctoks) and "xyz" in _pick_named(ctoks):
            names = ctoks
    table = _loadtxt(data[pos:].rstrip(), delimiter, decimal_comma, ncols)
    if table is None:  # what numpy.loadtxt does not take: line by line, as before, with a sentence naming the line
        table = _parse_text_slow(data[pos:], ncols, line_no, cap)
    if count is not None and len(table) < count:
        raise _Fail(f"the file is truncated: its first line says {_fmt_count(count)} points but only "
                    f"{_fmt_count(len(table))} rows follow")
    if len(table) > cap:
        raise _Fail(_too_many(len(table), cap))
    raw = _interpret_columns(table, names, ext)
    raw.info["format"] = ext[1:]
    if count is not None:
        raw.info["count_line"] = count
    return raw


# Whitespace to numpy.loadtxt (Unicode's rules) but not to _parse_text_slow (bytes' rules): a body holding one
# goes line by line, so that loadtxt never accepts a file the line-by-line reader refuses.
_UNICODE_ONLY_SPACE = (b"\x1c", b"\x1d", b"\x1e", b"\x1f")


def _loadtxt(body: bytes, delimiter: str | None, decimal_comma: bool, ncols: int) -> np.ndarray | None:
    """The rows after the head as an (N, ncols) float64 table by numpy.loadtxt (C parser, 2-3x faster than the
    np.fromstring it replaced: BENCHMARKS.md), or None when it does not take them: comments or count lines
    between rows, rows of other lengths, non-numbers, another separator, bytes beyond ASCII."""
    if decimal_comma:
        body = body.replace(b",", b".")
    if any(c in body for c in _UNICODE_ONLY_SPACE):
        return None
    try:
        table = np.loadtxt(io.BytesIO(body), dtype=np.float64, delimiter=delimiter, comments=None, ndmin=2,
                           encoding="ascii")
    except MemoryError:
        raise
    except Exception:  # ValueError (a value, a row's length), UnicodeDecodeError: the slow path says which line
        return None
    return table if table.shape[1] == ncols else None


def _parse_text_slow(body: bytes, ncols: int, first_line_no: int, cap: int) -> np.ndarray:
    """Line by line, for files the fast path cannot take: precise messages, comments, count lines."""
    rows = []
    for i, line in enumerate(body.splitlines()):
        s = line.strip()
        if not s or s.startswith(b"#") or s.startswith(b"//") or s.startswith(b"%"):
            continue
        toks = _split_tokens(s.replace(b",", b".") if b";" in s and b"," in s else s)
        if len(toks) == 1 and re.fullmatch(rb"\d+", toks[0]) and ncols > 1:
            continue  # a count line between scans (multi-scan .pts)
        if len(toks) != ncols:
            raise _Fail(f"line {i + first_line_no} has {len(toks)} value{'s' * (len(toks) != 1)} but the first "
                        f"data line has {ncols}; every line must have the same number of columns")
        try:
            rows.append([float(t) for t in toks])
        except ValueError:
            bad = next(t for t in toks if not _is_number(t))
            raise _Fail(f'line {i + first_line_no}: "{bad[:40].decode("latin-1")}" is not a number') from None
        if len(rows) > cap:
            raise _Fail(_too_many(len(rows), cap))
    if not rows:
        raise _Fail("the file has no rows of numbers")
    return np.asarray(rows, dtype=np.float64)


PARSERS = {e: _parse_text for e in _TEXT_EXTS}
