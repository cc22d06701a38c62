"""Fuzzing pcdviz.io: damaged files of every format it reads end in a cloud or a PointCloudError, quickly.

Each case takes a small valid file (generated here, so CI needs no data), applies one to three mutations
drawn by hypothesis (truncation, random bytes in the header or the body, absurd numbers in headers and
face lists, NaN/inf values, binary fields set to extreme patterns, format-specific edits such as HDF5
datasets declaring 10^12 points, deep nesting, external storage) and loads it. A case passes when, within
PER_CASE_S seconds and MEMORY_BOUND bytes of Python/numpy allocations (tracemalloc peak), it ends in

- a PointCloud that holds what it should (finite float32 points, at least MIN_POINTS), or
- a PointCloudError that a parser raised on purpose: one wrapped by load_point_cloud's catch-all
  ("could not be read as ... (IndexError: ...)") or caused by a MemoryError counts as a failure,
  because it means a path nobody foresaw.

CI runs FUZZ_EXAMPLES cases in all (derandomized: the same cases every run). The long variant:
    PCDVIZ_FUZZ_EXAMPLES=20000 .venv/bin/python -m pytest tests/test_fuzz.py -q -s
draws fresh random cases (hypothesis' own seeding) and prints the per-format counts at the end;
PCDVIZ_FUZZ_COLLECT=1 records failures and goes on (to count them), PCDVIZ_FUZZ_REPORT=FILE writes
the counts as JSON.
"""
from __future__ import annotations

import io as _io
import json
import os
import signal
import struct
import time
import tracemalloc
from collections import Counter
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pcdviz import io as pio
from pcdviz.io import MIN_POINTS, PointCloud, PointCloudError

FUZZ_EXAMPLES = int(os.environ.get("PCDVIZ_FUZZ_EXAMPLES", "1200"))  # total over all formats
LONG_RUN = "PCDVIZ_FUZZ_EXAMPLES" in os.environ
PER_CASE_S = float(os.environ.get("PCDVIZ_FUZZ_CASE_S", "10"))  # generous: the machine is shared and noisy
MEMORY_BOUND = 64 * 1024**2  # peak traced allocations of one case; seed files are a few KB
COLLECT = os.environ.get("PCDVIZ_FUZZ_COLLECT") == "1"  # record failures and go on (to count them in a long run)


# --------------------------------------------------------------------------- seed files (small and valid)


def _cloud(n: int = 64, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 3)).astype(np.float32)


def _rows(a: np.ndarray) -> bytes:
    return "".join(" ".join(f"{v:.6g}" for v in row) + "\n" for row in a).encode()


def _box() -> tuple[np.ndarray, np.ndarray]:
    """A unit cube: 8 vertices, 12 triangles."""
    v = np.array([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)], dtype=np.float32)
    f = np.array([[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
                  [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]], dtype=np.int64)
    return v, f


def _ply_ascii_cloud() -> bytes:
    p = _cloud()
    rgb = (np.abs(p) * 60).astype(int) % 256
    head = (b"ply\nformat ascii 1.0\ncomment fuzz seed\nelement vertex 64\nproperty float x\nproperty float y\n"
            b"property float z\nproperty uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n")
    return head + "".join(f"{a:.5g} {b:.5g} {c:.5g} {r} {g} {bl}\n"
                          for (a, b, c), (r, g, bl) in zip(p, rgb)).encode()


def _ply_binary_mesh(bo: str = "<") -> bytes:
    v, f = _box()
    name = "binary_little_endian" if bo == "<" else "binary_big_endian"
    head = (f"ply\nformat {name} 1.0\nelement vertex 8\nproperty float x\nproperty float y\nproperty float z\n"
            f"element face 12\nproperty list uchar int vertex_indices\nend_header\n").encode()
    body = v.astype(bo + "f4").tobytes()
    body += b"".join(struct.pack(bo + "B3i", 3, *map(int, tri)) for tri in f)
    return head + body


def _ply_binary_cloud() -> bytes:
    p = _cloud(48, 1)
    dt = np.dtype([("x", ">f4"), ("y", ">f4"), ("z", ">f4"), ("label", ">i4")])
    a = np.zeros(len(p), dt)
    a["x"], a["y"], a["z"], a["label"] = p[:, 0], p[:, 1], p[:, 2], np.arange(len(p)) % 4
    head = (b"ply\nformat binary_big_endian 1.0\nelement vertex 48\nproperty float x\nproperty float y\n"
            b"property float z\nproperty int label\nend_header\n")
    return head + a.tobytes()


def _pcd(mode: str) -> bytes:
    p = _cloud(40, 2)
    rgb = np.full(len(p), 0x00FF8040, dtype=np.uint32)
    head = (f"# .PCD v0.7\nVERSION 0.7\nFIELDS x y z rgb\nSIZE 4 4 4 4\nTYPE F F F U\nCOUNT 1 1 1 1\n"
            f"WIDTH {len(p)}\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS {len(p)}\nDATA {mode}\n").encode()
    if mode == "ascii":
        return head + "".join(f"{a:.6g} {b:.6g} {c:.6g} {int(r)}\n" for (a, b, c), r in zip(p, rgb)).encode()
    if mode == "binary":
        rec = np.zeros(len(p), np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("rgb", "<u4")]))
        rec["x"], rec["y"], rec["z"], rec["rgb"] = p[:, 0], p[:, 1], p[:, 2], rgb
        return head + rec.tobytes()
    # binary_compressed: each field for all points, then LZF (literal runs only: a valid LZF stream)
    raw = b"".join(np.ascontiguousarray(col).tobytes() for col in (p[:, 0], p[:, 1], p[:, 2], rgb))
    comp = b"".join(bytes([len(raw[i:i + 32]) - 1]) + raw[i:i + 32] for i in range(0, len(raw), 32))
    return head + struct.pack("<II", len(comp), len(raw)) + comp


def _npy() -> bytes:
    buf = _io.BytesIO()
    np.save(buf, _cloud(50, 3))
    return buf.getvalue()


def _npz() -> bytes:
    buf = _io.BytesIO()
    np.savez_compressed(buf, points=_cloud(50, 4), normals=_cloud(50, 5), label=np.array([3]))
    return buf.getvalue()


def _h5() -> bytes:
    buf = _io.BytesIO()
    with h5py.File(buf, "w") as f:
        f["data"] = np.stack([_cloud(32, 6), _cloud(32, 7)])
        f["label"] = np.array([[1], [2]])
        f["pid"] = np.zeros((2, 32), np.int64)
    return buf.getvalue()


def _obj() -> bytes:
    v, f = _box()
    out = "# cube\no first\n" + "".join(f"v {a} {b} {c}\n" for a, b, c in v)
    out += "vn 0 0 1\n" + "".join(f"f {a + 1}//1 {b + 1}//1 {c + 1}//1\n" for a, b, c in f[:6])
    out += "g second\n" + "".join(f"f {a - 8} {b - 8} {c - 8}\n" for a, b, c in f[6:])  # relative indices
    return out.encode()


def _off() -> bytes:
    v, f = _box()
    return (b"OFF\n# a cube\n8 12 0\n" + _rows(v)
            + "".join(f"3 {a} {b} {c}\n" for a, b, c in f).encode())


def _flat_off() -> bytes:
    """Every face has zero area (repeated or collinear vertices): the loader falls back to the vertices."""
    v = _cloud(20, 8)
    faces = "".join(f"3 {i} {i} {(i + 1) % 20}\n" for i in range(20))
    return "OFF\n20 20 0\n".encode() + _rows(v) + faces.encode()


def _stl_ascii() -> bytes:
    v, f = _box()
    out = "solid cube\n"
    for tri in f:
        out += "facet normal 0 0 0\nouter loop\n" + "".join(f"vertex {a} {b} {c}\n" for a, b, c in v[tri])
        out += "endloop\nendfacet\n"
    return (out + "endsolid cube\n").encode()


def _stl_binary() -> bytes:
    v, f = _box()
    body = b"".join(struct.pack("<12fH", 0, 0, 0, *v[tri].reshape(-1), 0) for tri in f)
    return b"binary stl fuzz seed".ljust(80, b" ") + struct.pack("<I", len(f)) + body


def _gltf_doc() -> tuple[dict, bytes]:
    v, f = _box()
    vb, ib = v.astype("<f4").tobytes(), f.astype("<u2").tobytes()
    doc = {"asset": {"version": "2.0"}, "scene": 0, "scenes": [{"nodes": [0]}], "nodes": [{"mesh": 0}],
           "meshes": [{"primitives": [{"attributes": {"POSITION": 0}, "indices": 1}]}],
           "buffers": [{"byteLength": len(vb) + len(ib)}],
           "bufferViews": [{"buffer": 0, "byteOffset": 0, "byteLength": len(vb)},
                           {"buffer": 0, "byteOffset": len(vb), "byteLength": len(ib)}],
           "accessors": [{"bufferView": 0, "componentType": 5126, "count": 8, "type": "VEC3",
                          "min": [0, 0, 0], "max": [1, 1, 1]},
                         {"bufferView": 1, "componentType": 5123, "count": 36, "type": "SCALAR"}]}
    return doc, vb + ib


def _gltf() -> bytes:
    import base64

    doc, data = _gltf_doc()
    doc["buffers"][0]["uri"] = "data:application/octet-stream;base64," + base64.b64encode(data).decode()
    return json.dumps(doc).encode()


def _glb() -> bytes:
    doc, data = _gltf_doc()
    js = json.dumps(doc).encode()
    js += b" " * (-len(js) % 4)
    data += b"\0" * (-len(data) % 4)
    chunks = struct.pack("<I4s", len(js), b"JSON") + js + struct.pack("<I4s", len(data), b"BIN\0") + data
    return struct.pack("<4sII", b"glTF", 2, 12 + len(chunks)) + chunks


# format name -> (file extension, seed bytes); every extension pcdviz.io reads has at least one seed
SEEDS = {
    "ply_ascii": (".ply", _ply_ascii_cloud), "ply_mesh_le": (".ply", _ply_binary_mesh),
    "ply_mesh_be": (".ply", lambda: _ply_binary_mesh(">")), "ply_binary": (".ply", _ply_binary_cloud),
    "pcd_ascii": (".pcd", lambda: _pcd("ascii")), "pcd_binary": (".pcd", lambda: _pcd("binary")),
    "pcd_compressed": (".pcd", lambda: _pcd("binary_compressed")),
    "xyz": (".xyz", lambda: _rows(_cloud(40, 9))),
    "xyzn": (".xyzn", lambda: _rows(np.hstack([_cloud(40, 10), np.tile([0, 0, 1], (40, 1))]))),
    "xyzrgb": (".xyzrgb", lambda: _rows(np.hstack([_cloud(40, 11), np.full((40, 3), 128)]))),
    "pts": (".pts", lambda: b"40\n" + _rows(np.hstack([_cloud(40, 12), np.ones((40, 1))]))),
    "txt": (".txt", lambda: _rows(_cloud(40, 13)).replace(b" ", b", ")),
    "csv": (".csv", lambda: b"x,y,z,label\n" + _rows(np.hstack([_cloud(40, 14), np.ones((40, 1))])).replace(b" ", b",")),
    "npy": (".npy", _npy), "npz": (".npz", _npz), "h5": (".h5", _h5), "hdf5": (".hdf5", _h5),
    "obj": (".obj", _obj), "off": (".off", _off), "off_flat": (".off", _flat_off),
    "stl_ascii": (".stl", _stl_ascii), "stl_binary": (".stl", _stl_binary),
    "gltf": (".gltf", _gltf), "glb": (".glb", _glb),
}
_SEED_CACHE: dict[str, bytes] = {}


def seed_bytes(fmt: str) -> bytes:
    if fmt not in _SEED_CACHE:
        _SEED_CACHE[fmt] = SEEDS[fmt][1]()
    return _SEED_CACHE[fmt]


# --------------------------------------------------------------------------- mutations

ABSURD_NUMBERS = [b"0", b"1", b"2", b"-1", b"-3", b"15", b"16", b"65535", b"2147483647", b"2147483648",
                  b"4294967295", b"4294967296", b"1000000000000", b"18446744073709551617", b"1e12", b"nan",
                  b"inf", b"-inf", b"1e309", b"-0", b"0x10", b"9" * 40]
EXTREME_U32 = [0, 1, 0xFFFFFFFF, 0x7FFFFFFF, 0x80000000, 10**9, 0x7FC00000, 0x7F800000, 0xFF800000, 3]
_NUM_TOKEN = __import__("re").compile(rb"-?\d+(\.\d+)?([eE][-+]?\d+)?")


def _header_len(data: bytes) -> int:
    """Where the header of a seed ends (roughly): the mutations aim there half of the time."""
    for marker in (b"end_header\n", b"DATA ", b"\n\n"):
        i = data.find(marker)
        if i >= 0:
            return min(len(data), i + len(marker) + 16)
    return min(len(data), 128)


@st.composite
def mutation(draw, data: bytes):
    """One mutation of data, as (description, new bytes)."""
    n = len(data)
    kind = draw(st.sampled_from(["truncate", "overwrite_header", "overwrite_body", "insert", "delete",
                                 "number", "number", "number", "u32", "nan_float", "duplicate_line"]))
    if n == 0:
        return "insert", draw(st.binary(min_size=1, max_size=16))
    pos = draw(st.integers(0, n - 1))
    if kind == "truncate":
        return f"truncate@{pos}", data[:pos]
    if kind in ("overwrite_header", "overwrite_body"):
        hl = _header_len(data)
        lo, hi = (0, hl) if kind == "overwrite_header" or hl >= n else (hl, n)
        at = draw(st.integers(lo, max(lo, hi - 1)))
        junk = draw(st.binary(min_size=1, max_size=8))
        return f"{kind}@{at}", data[:at] + junk + data[at + len(junk):]
    if kind == "insert":
        return f"insert@{pos}", data[:pos] + draw(st.binary(min_size=1, max_size=32)) + data[pos:]
    if kind == "delete":
        k = draw(st.integers(1, 64))
        return f"delete@{pos}+{k}", data[:pos] + data[pos + k:]
    if kind == "number":  # an absurd value for a number in the text: counts, indices, coordinates
        tokens = list(_NUM_TOKEN.finditer(data[:4096] if draw(st.booleans()) else data))
        if not tokens:
            return "number(none)", data
        m = draw(st.sampled_from(tokens))
        new = draw(st.sampled_from(ABSURD_NUMBERS))
        return f"number@{m.start()}={new.decode()}", data[:m.start()] + new + data[m.end():]
    if kind == "u32":  # a 4-byte binary field (a count, an index, a float) set to an extreme pattern
        at = draw(st.integers(0, max(0, n - 4))) & ~3 if draw(st.booleans()) else draw(st.integers(0, max(0, n - 4)))
        value = draw(st.sampled_from(EXTREME_U32))
        bo = draw(st.sampled_from("<>"))
        return f"u32@{at}={value:#x}", data[:at] + struct.pack(bo + "I", value) + data[at + 4:]
    if kind == "nan_float":
        at = draw(st.integers(0, max(0, n - 4)))
        value = draw(st.sampled_from([np.nan, np.inf, -np.inf, 1e38, -0.0]))
        return f"float@{at}={value}", data[:at] + struct.pack("<f", value) + data[at + 4:]
    lines = data.split(b"\n")
    i = draw(st.integers(0, len(lines) - 1))
    return f"duplicate_line{i}", b"\n".join(lines[:i + 1] + lines[i:])


class Case(tuple):
    """(mutation descriptions, bytes), shown by hypothesis as the descriptions only (not kilobytes of bytes)."""

    def __repr__(self):
        return f"Case({self[0]!r}, <{len(self[1])} bytes>)"


@st.composite
def mutated_file(draw, fmt: str):
    """Case(list of mutation descriptions, bytes): one to three mutations of the format's seed file."""
    data, done = seed_bytes(fmt), []
    for _ in range(draw(st.integers(1, 3))):
        desc, data = draw(mutation(data))
        done.append(desc)
    return Case((done, data))


# --------------------------------------------------------------------------- HDF5 files drawn whole


def _h5_file(path: Path, kind: str, size: int, depth: int, rng: np.random.Generator) -> None:
    """Hostile HDF5 layouts that byte mutations would rarely produce."""
    with h5py.File(path, "w") as f:
        if kind == "huge_declared":  # shapes of 10^12 points with no data written (fill value)
            f.create_dataset("data", shape=(10**size, 3), dtype="f4", chunks=(1, 3))
        elif kind == "huge_columns":
            f.create_dataset("data", shape=(1, 64, 10**size), dtype="f4", chunks=(1, 16, 1))
        elif kind == "huge_batch":
            f.create_dataset("data", shape=(10**size, 64, 3), dtype="f8", chunks=(1, 64, 3))
        elif kind == "nested":
            g = f
            for i in range(depth):
                g = g.create_group(f"g{i}")
            g["points"] = rng.normal(size=(64, 3)).astype("f4")
        elif kind == "many":
            for i in range(depth * 20):
                f[f"d{i}"] = np.zeros((1, 3), "f4")
        elif kind == "strings":
            f["data"] = np.array([b"abc"] * 64)
        elif kind == "compound":
            f["data"] = np.zeros(64, dtype=[("x", "f4"), ("y", "f4"), ("w", "f4", (size,))])
        elif kind == "nan":
            a = rng.normal(size=(64, 3)).astype("f4")
            a[rng.random(64) < 0.9] = np.nan
            f["data"] = a
        elif kind == "scalar":
            f["data"] = 3.0
        elif kind == "null":
            f["data"] = h5py.Empty("f4")
        elif kind == "empty":
            f.create_dataset("data", shape=(0, 3), dtype="f4")
        elif kind == "virtual":  # a virtual dataset mapping another file's data
            other = path.with_name(path.stem + "_src.h5")
            with h5py.File(other, "w") as g:
                g["data"] = rng.normal(size=(64, 3)).astype("f4")
            layout = h5py.VirtualLayout(shape=(64, 3), dtype="f4")
            layout[:] = h5py.VirtualSource(str(other), "data", shape=(64, 3))
            f.create_virtual_dataset("data", layout)
        elif kind == "external_storage":  # raw data from another file on the server: must never be read
            f.create_dataset("data", shape=(64, 3), dtype="u1", external=[(str(path.with_suffix(".secret")), 0, 192)])
            path.with_suffix(".secret").write_bytes(bytes(range(192)))
        elif kind == "external_link":
            other = path.with_name(path.stem + "_other.h5")
            with h5py.File(other, "w") as g:
                g["data"] = rng.normal(size=(64, 3)).astype("f4")
            f["points"] = h5py.ExternalLink(str(other), "/data")
        elif kind == "soft_loop":
            f.create_group("a")
            f["a/loop"] = h5py.SoftLink("/a")
            f["a/data"] = rng.normal(size=(64, 3)).astype("f4")


H5_KINDS = ["huge_declared", "huge_columns", "huge_batch", "nested", "many", "strings", "compound", "nan",
            "scalar", "null", "empty", "external_storage", "external_link", "virtual", "soft_loop"]


# --------------------------------------------------------------------------- running one case

TALLY: Counter = Counter()        # (format, outcome) -> cases
FAILURES: list[str] = []


class CaseTimeout(BaseException):
    """Raised by the alarm: a BaseException, so load_point_cloud's catch-all cannot swallow it."""


def _alarm(signum, frame):
    raise CaseTimeout()


def _is_unforeseen(err: PointCloudError) -> bool:
    """A PointCloudError that load_point_cloud's catch-all made from some other exception (or MemoryError)."""
    cause = err.__cause__
    return cause is not None and "open3d could not be loaded" not in str(err)


def run_case(path: Path, fmt: str, what: str, **kw) -> str:
    """Load path under a time limit and a memory watch; return the outcome or raise AssertionError."""
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, PER_CASE_S)
    tracemalloc.reset_peak()
    t0 = time.perf_counter()
    try:
        try:
            cloud = pio.load_point_cloud(path, **kw)
            outcome = "loaded"
        except PointCloudError as e:
            cloud, outcome = None, "unforeseen" if _is_unforeseen(e) else "refused"
            detail = f"{type(e.__cause__).__name__}: {e}"
        except CaseTimeout:
            cloud, outcome, detail = None, "timeout", f"no result after {PER_CASE_S} s"
        except Exception as e:  # anything else is exactly what the issue forbids
            cloud, outcome, detail = None, "other_exception", f"{type(e).__name__}: {e}"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    seconds = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    if peak > MEMORY_BOUND:
        outcome, detail = "memory", f"peak {peak / 1e6:.0f} MB of allocations"
    if cloud is not None:
        assert isinstance(cloud, PointCloud) and cloud.points.dtype == np.float32
        assert len(cloud) >= MIN_POINTS and np.isfinite(cloud.points).all()
    TALLY[(fmt, outcome)] += 1
    TALLY[("all", "cases")] += 1
    if outcome not in ("loaded", "refused"):
        FAILURES.append(f"{fmt} [{what}] -> {outcome}: {detail[:300]} ({seconds:.2f} s)")
        if COLLECT:
            return outcome
        raise AssertionError(f"{fmt} [{what}]: {outcome}: {detail[:500]}")
    return outcome


@pytest.fixture(scope="module", autouse=True)
def traced_memory():
    """tracemalloc on for the module (numpy reports its buffers to it); a tally printed at the end."""
    import open3d  # noqa: F401  (imported before tracing starts: its import is not a case's allocation)

    tracemalloc.start()
    yield
    tracemalloc.stop()
    by_fmt: dict[str, Counter] = {}
    for (fmt, outcome), k in TALLY.items():
        if fmt != "all":
            by_fmt.setdefault(fmt, Counter())[outcome] += k
    lines = [f"{fmt:>15}: " + ", ".join(f"{o} {k}" for o, k in sorted(c.items())) for fmt, c in sorted(by_fmt.items())]
    print(f"\n[fuzz] {TALLY[('all', 'cases')]} cases ({'long run' if LONG_RUN else 'CI, derandomized'})\n"
          + "\n".join(lines) + ("\n[fuzz] failures:\n" + "\n".join(FAILURES) if FAILURES else ""))
    report = os.environ.get("PCDVIZ_FUZZ_REPORT")
    if report:
        Path(report).write_text(json.dumps({"cases": TALLY[("all", "cases")], "failures": FAILURES,
                                            "by_format": {f: dict(c) for f, c in by_fmt.items()}}, indent=1))


def _settings(n: int):
    return settings(max_examples=max(1, n), derandomize=not LONG_RUN, deadline=None, database=None,
                    suppress_health_check=list(HealthCheck), print_blob=False)


# byte-mutated formats share the budget; the HDF5 layouts and the sample files get a share each
PER_FORMAT = FUZZ_EXAMPLES // (len(SEEDS) + 2)


@pytest.mark.parametrize("fmt", sorted(SEEDS))
def test_mutated_files_load_or_refuse(fmt, tmp_path_factory):
    """Mutated files of one format: a cloud or a deliberate PointCloudError, in time, without a memory blow-up."""
    ext = SEEDS[fmt][0]
    folder = tmp_path_factory.mktemp(fmt)
    path = folder / f"case{ext}"
    assert run_case(_write(path, seed_bytes(fmt)), fmt, "seed") == "loaded"  # the seed itself is valid

    @_settings(PER_FORMAT)
    @given(case=mutated_file(fmt), mesh_samples=st.sampled_from([20_000, 0, 1000]))
    def check(case, mesh_samples):
        what, data = case
        run_case(_write(path, data), fmt, ", ".join(what), mesh_samples=mesh_samples)

    check()


@_settings(PER_FORMAT)
@example(kind="huge_columns", size=9, depth=1, key=None, index=0, seed=0)   # 64 x 10^9 floats per sample
@example(kind="huge_batch", size=12, depth=1, key=None, index=-1, seed=0)
@example(kind="huge_declared", size=12, depth=1, key="data", index=0, seed=0)
@example(kind="compound", size=100_000, depth=1, key=None, index=0, seed=0)
@example(kind="nested", size=1, depth=60, key=None, index=0, seed=0)
@example(kind="external_storage", size=1, depth=1, key=None, index=0, seed=0)
@example(kind="virtual", size=1, depth=1, key="data", index=0, seed=0)
@given(kind=st.sampled_from(H5_KINDS), size=st.integers(1, 12), depth=st.integers(1, 60),
       key=st.sampled_from([None, "data", "points", "/etc/passwd", "../x", "g0"]), index=st.integers(-3, 3),
       seed=st.integers(0, 3))
def test_hostile_hdf5_layouts(tmp_path_factory, kind, size, depth, key, index, seed):
    """Absurd declared shapes, deep nesting, strings, compound types, external storage and links."""
    path = tmp_path_factory.mktemp("h5") / "case.h5"
    _h5_file(path, kind, size, depth, np.random.default_rng(seed))
    outcome = run_case(path, "h5_layouts", f"{kind} size={size} depth={depth} key={key} index={index}",
                       h5_key=key, h5_index=index)
    if kind in ("external_storage", "external_link", "virtual"):
        assert outcome == "refused", f"{kind}: data from another file on the server was read"


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@_settings(PER_FORMAT)
@given(data=st.data())
def test_mutated_real_samples(samples_dir_or_none, data):
    """The same mutations applied to the real files in ../shared/samples (PCL scans, trimesh models)."""
    if samples_dir_or_none is None:
        pytest.skip("real sample files not found (../shared/samples)")
    files = sorted(p for p in samples_dir_or_none.iterdir() if p.suffix.lower() in pio.SUPPORTED_EXTENSIONS)
    src = data.draw(st.sampled_from(files))
    content, what = src.read_bytes(), []
    for _ in range(data.draw(st.integers(1, 2))):
        desc, content = data.draw(mutation(content))
        what.append(desc)
    path = _SAMPLE_TMP / f"case{src.suffix}"
    run_case(_write(path, content), f"sample:{src.suffix}", f"{src.name}: {', '.join(what)}")


_SAMPLE_TMP = Path(__import__("tempfile").mkdtemp(prefix="pcdviz-fuzz-"))


@pytest.fixture(scope="module")
def samples_dir_or_none():
    from conftest import SAMPLES

    return SAMPLES if SAMPLES.is_dir() else None
