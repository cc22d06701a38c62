"""Hand-written parsers against libraries: pcdviz.io's PLY, PCD, OBJ, OFF, STL and text readers against the
libraries a 3D person would reach for (plyfile, pypcd4, trimesh, numpy-stl, open3d, numpy.loadtxt, pandas),
on the same files (issue 18).

    nice -n 10 .venv/bin/python bench/bench_parsers.py                # everything, ~5 min on the loaded 2-core VM
    .venv/bin/python bench/bench_parsers.py --sizes 10000 --fuzz-cases 3 --no-samples   # a quick look

Three parts (tables a, b1 and b2, c):
  (a) real files: ../shared/samples (PCL scans, trimesh and common-3d-test-models meshes) and Gradio's
      bundled Bunny.obj, face.obj, sofia.stl: does each library read them, and the same data as pcdviz?
  (b) hostile files built by the tests' own builders: tests/test_hardening.py's hand-made cases and
      `_hostile_uploads` (truncation, random bytes, absurd counts), the fuzzer's absurd numbers put on each
      seed's counts, and test_fuzz.py's `mutated_file` / `mutation` drawn by hypothesis (derandomized: the
      same cases every run) from its seed files, the real samples and three LZF blocks (pcdviz's LZF
      decoder against python-neo-lzf, the C liblzf binding pypcd4 uses, behind a length check).
      Every reader runs in its own worker process (stdout/stderr discarded, address space capped at
      2 GiB above its size after imports); each case gets PER_CASE_S seconds, and the peak RSS growth
      (VmHWM after resetting it through /proc/self/clear_refs) is recorded.
  (c) speed at 10k, 100k and 1M points on files written like bench/bench_io.py's: medians of repeats in
      which pcdviz and every library are interleaved, and each library's time over pcdviz's. A library more
      than 3x slower on a file is not timed on it again at the larger sizes (minutes saved, verdict unchanged).

pcdviz is timed at its parser (`pcdviz.io._PARSERS[ext]`, before mesh sampling and validation, which a
swap would keep); a library at the call that gives (N, 3) points and (M, 3) triangles as numpy arrays.
"Same data" compares points in order (clouds) or the triangle soups, vertex order ignored (meshes:
libraries split vertices at texture seams or merge STL corners), to 1e-6 relative.

The libraries are not pcdviz dependencies: `.venv/bin/pip install plyfile trimesh pypcd4 numpy-stl`
(pypcd4 brings python-neo-lzf; open3d is one already); a reader whose library is missing is skipped and named.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import re
import resource
import signal
import statistics
import struct
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchutil as bu  # noqa: E402

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO.parent / "shared" / "samples"
PER_CASE_S = 10.0          # as tests/test_fuzz.py: generous, the machine is shared and noisy
AS_HEADROOM = 2 * 1024**3  # a worker may map this much beyond its size after imports
HUGE_RSS = 256 * 1024**2   # peak RSS growth counted as a huge allocation (hostile files are a few KB)
MESH_EXTS = (".obj", ".off", ".stl")
TEXT_EXTS = (".xyz", ".xyzn", ".xyzrgb", ".pts", ".txt", ".csv")


# --------------------------------------------------------------------------- readers: path -> (points, faces|None)


def read_pcdviz(path: Path):
    from pcdviz import io as pio

    ext = path.suffix.lower()
    if ext == ".lzf":
        n, src = lzf_block(path)
        return bytes_as_points(pio._lzf_decompress(src, n)), None
    raw = pio._PARSERS[ext](path, ext=ext, cap=pio.MAX_POINTS, h5_key=None, h5_index=0,
                            decode_limit=pio.DECODE_FACTOR * pio.MAX_FILE_BYTES)
    return raw.points, raw.faces


def pcdviz_load(path: Path) -> str:
    """load_point_cloud, everything a user's file goes through: 'loaded', or raises its PointCloudError."""
    from pcdviz.io import load_point_cloud

    if path.suffix == ".lzf":  # a bare LZF block has no loader: its decoder is all there is
        read_pcdviz(path)
    else:
        load_point_cloud(path)
    return "loaded"


def lzf_block(path: Path) -> tuple[int, bytes]:
    """A '.lzf' file of this bench: the declared decoded size (uint32) and the LZF stream, as a PCD's
    binary_compressed block holds them once the header's sizes have been checked."""
    data = path.read_bytes()
    return struct.unpack_from("<I", data)[0], data[4:]


def bytes_as_points(b: bytes) -> np.ndarray:
    """Decoded bytes as a (k, 3) uint8 view (padded), so the comparison of clouds compares them byte for byte
    and the decode-only timing carries little besides the decoder."""
    return np.frombuffer(b + b"\0" * (-len(b) % 3) if len(b) % 3 else b, np.uint8).reshape(-1, 3)


def read_neo_lzf(path: Path):
    """python-neo-lzf (pypcd4's decoder, liblzf in C) with the thin check it needs: None or a short result is an error."""
    import lzf

    n, src = lzf_block(path)
    out = lzf.decompress(src, n) if n else b""
    if out is None or len(out) != n:
        raise ValueError(f"the LZF stream does not decode to the {n:,} bytes declared")
    return bytes_as_points(out), None


def _fan(lists) -> np.ndarray:
    """Face index lists (an object array of arrays, as plyfile gives) -> (M, 3) triangles, fan-triangulated."""
    lens = np.fromiter((len(f) for f in lists), int, len(lists))
    if len(lists) and (lens == 3).all():
        return np.vstack(lists).astype(np.int64)
    return np.array([(f[0], f[i], f[i + 1]) for f in lists for i in range(1, len(f) - 1)], np.int64).reshape(-1, 3)


def read_plyfile(path: Path):
    from plyfile import PlyData

    d = PlyData.read(str(path))
    v = d["vertex"].data
    pts = np.stack([v["x"], v["y"], v["z"]], axis=1)
    names = [e.name for e in d.elements]
    if "face" not in names:
        return pts, None
    f = d["face"].data
    key = "vertex_indices" if "vertex_indices" in f.dtype.names else "vertex_index"
    return pts, _fan(f[key])


def read_trimesh(path: Path):
    import trimesh

    ext = path.suffix.lower()
    kw = {"skip_materials": True} if ext == ".obj" else {}
    m = trimesh.load(str(path), process=False, force="mesh" if ext in MESH_EXTS else None, **kw)
    faces = getattr(m, "faces", None)
    return np.asarray(m.vertices), None if faces is None or len(faces) == 0 else np.asarray(faces)


def read_numpy_stl(path: Path):
    from stl import mesh

    tri = mesh.Mesh.from_file(str(path)).vectors
    return tri.reshape(-1, 3), np.arange(3 * len(tri), dtype=np.int64).reshape(-1, 3)


def read_pypcd4(path: Path):
    from pypcd4 import PointCloud

    return PointCloud.from_path(path).numpy(("x", "y", "z")), None


def read_open3d(path: Path):
    import open3d as o3d

    o3d.utility.set_verbosity_level(o3d.utility.VerbosityLevel.Error)  # its warnings go to stdout, into the tables
    ext = path.suffix.lower()
    if ext == ".pcd" or ext in TEXT_EXTS:
        g = o3d.io.read_point_cloud(str(path), format=ext[1:], remove_nan_points=False, remove_infinite_points=False)
        return np.asarray(g.points), None
    m = o3d.io.read_triangle_mesh(str(path))  # a PLY without faces comes back as vertices only
    t = np.asarray(m.triangles)
    return np.asarray(m.vertices), t if len(t) else None


_NUM = re.compile(rb"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$|^[+-]?(nan|inf)$", re.IGNORECASE)


def text_layout(path: Path) -> tuple[str | None, int]:
    """The thin check a text reader needs in front of it: comma or whitespace, and a header/count line to skip."""
    with open(path, "rb") as f:
        lines = [f.readline() for _ in range(2)]
    toks = lines[0].replace(b",", b" ").split()
    skip = int(not toks or not all(_NUM.match(t) for t in toks) or (path.suffix.lower() == ".pts" and len(toks) == 1))
    return ("," if b"," in lines[skip] else None), skip


def read_loadtxt(path: Path):
    delim, skip = text_layout(path)
    a = np.loadtxt(path, delimiter=delim, skiprows=skip, comments="#", ndmin=2, dtype=np.float64)
    if a.shape[1] < 3:
        raise ValueError(f"{a.shape[1]} columns")
    return a[:, :3], None


def read_pandas(path: Path):
    import pandas as pd

    delim, skip = text_layout(path)
    a = pd.read_csv(path, sep=delim or r"\s+", header=None, skiprows=skip, comment="#", dtype=np.float64,
                    engine="c").to_numpy()
    if a.shape[1] < 3:
        raise ValueError(f"{a.shape[1]} columns")
    return a[:, :3], None


READERS = {"pcdviz": read_pcdviz, "python-neo-lzf": read_neo_lzf, "plyfile": read_plyfile, "pypcd4": read_pypcd4, "trimesh": read_trimesh,
           "numpy-stl": read_numpy_stl, "open3d": read_open3d, "numpy.loadtxt": read_loadtxt,
           "pandas.read_csv": read_pandas}
MODULES = {"python-neo-lzf": "lzf", "plyfile": "plyfile", "pypcd4": "pypcd4", "trimesh": "trimesh", "numpy-stl": "stl", "open3d": "open3d",
           "pandas.read_csv": "pandas", "pcdviz": "pcdviz.io", "numpy.loadtxt": "numpy"}
LIBS_FOR = {".ply": ["plyfile", "trimesh", "open3d"], ".pcd": ["pypcd4", "open3d"], ".obj": ["trimesh", "open3d"],
            ".off": ["trimesh", "open3d"], ".stl": ["trimesh", "numpy-stl", "open3d"],
            ".xyz": ["numpy.loadtxt", "pandas.read_csv", "trimesh", "open3d"],
            ".xyzn": ["numpy.loadtxt", "pandas.read_csv", "open3d"], ".xyzrgb": ["numpy.loadtxt", "pandas.read_csv", "open3d"],
            ".pts": ["numpy.loadtxt", "pandas.read_csv", "open3d"], ".txt": ["numpy.loadtxt", "pandas.read_csv"],
            ".csv": ["numpy.loadtxt", "pandas.read_csv"], ".lzf": ["python-neo-lzf"]}
FAMILY = {".lzf": "LZF", ".ply": "PLY", ".pcd": "PCD", ".obj": "OBJ", ".off": "OFF", ".stl": "STL",
          **{e: "text" for e in TEXT_EXTS}}


def installed(names) -> tuple[list[str], list[str]]:
    import importlib.util

    have = [n for n in names if importlib.util.find_spec(MODULES[n]) is not None]
    return have, [n for n in names if n not in have]


# --------------------------------------------------------------------------- comparing what readers return


def canonical(pts, faces):
    """Points (N, 3) float32 in order for a cloud; the sorted triangle soup (M, 9) for a mesh; or a problem string."""
    p = np.asarray(pts, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 3:
        return f"points of shape {p.shape}"
    a = np.abs(p)
    odd = int((((a > 1e100) & np.isfinite(a)) | ((a > 0) & (a < 1e-300))).any(axis=1).sum())
    if faces is None:
        return ("cloud", p.astype(np.float32), odd)
    f = np.asarray(faces)
    if len(f) and (f.min() < 0 or f.max() >= len(p)):
        return f"face index {f.min() if f.min() < 0 else f.max()} outside {len(p)} vertices"
    tri = p[f].astype(np.float32)                                          # (M, 3, 3)
    o = np.lexsort((tri[..., 2], tri[..., 1], tri[..., 0]), axis=-1)       # vertices within a triangle
    flat = np.take_along_axis(tri, o[..., None], axis=1).reshape(len(f), 9)
    return ("mesh", flat[np.lexsort(flat.T[::-1])], odd)


def same(a, b) -> bool:
    if isinstance(a, str) or isinstance(b, str) or a[0] != b[0] or a[1].shape != b[1].shape:
        return False
    return bool(np.isclose(a[1], b[1], rtol=1e-6, atol=1e-9, equal_nan=True).all())


def describe(c) -> str:
    """'N points' / 'N triangles', with how many hold values no writer produces (finite |v| > 1e100, or subnormal: the
    sign of a reader handing out uninitialised memory; counted before canonical() rounds to float32)."""
    if isinstance(c, str):
        return c
    odd = f", {c[2]:,} vertices with garbage values" if c[2] else ""
    return f"{len(c[1]):,} {'points' if c[0] == 'cloud' else 'triangles'}{odd}"


# --------------------------------------------------------------------------- (b) one worker process per reader


def _status(key: str) -> int:
    return int(re.search(rf"{key}:\s+(\d+)", Path("/proc/self/status").read_text()).group(1)) * 1024


def _worker(name: str, conn) -> None:
    """Child: read each path sent, answer (kind, payload, peak RSS growth, seconds); None ends it."""
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.dup2(null, 2)
    __import__(MODULES[name])
    if name == "pcdviz":
        from pcdviz.io import PointCloudError  # noqa: F401
    limit = _status("VmSize") + AS_HEADROOM
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    conn.send("ready")
    while (path := conn.recv()) is not None:
        rss0 = _status("VmRSS")
        Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
        t = time.perf_counter()
        kind, payload = _attempt(READERS[name], Path(path))
        if name == "pcdviz":  # its row: the guarded load; the reference for the libraries: its parser's result
            load_kind, load_payload = _attempt(pcdviz_load, Path(path), canon=False)
            kind, payload = load_kind, (load_payload, (kind, payload))
        conn.send((kind, payload, _status("VmHWM") - rss0, time.perf_counter() - t))


def _attempt(fn, path: Path, canon: bool = True):
    """(kind, payload): ('data', canonical form or a problem string) | ('error', (message, wrapped)) | ('memory', msg)."""
    try:
        got = fn(path)
        if not canon:
            return "data", got
        c = canonical(*got)
        return "data", c if isinstance(c, str) or c[1].size < 30_000_000 else f"{describe(c)} (not sent)"
    except MemoryError as e:
        return "memory", f"MemoryError: {str(e)[:150]}"
    except Exception as e:  # noqa: BLE001  what the library raises is what we record
        return "error", (f"{type(e).__name__}: {str(e)[:200]}", e.__cause__ is not None)


class Worker:
    """A reader in its own process; restarted after a hang or a crash."""

    def __init__(self, name: str):
        self.name, self.proc = name, None

    def start(self):
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker, args=(self.name, child), daemon=True)
        self.proc.start()
        child.close()
        if not self.conn.poll(120) or self.conn.recv() != "ready":
            raise RuntimeError(f"the {self.name} worker did not start")

    def send(self, path: Path):
        if self.proc is None or not self.proc.is_alive():
            self.start()
        self.conn.send(str(path))
        self.sent = time.perf_counter()

    def result(self, timeout: float):
        """(kind, payload, peak RSS growth, seconds)."""
        ok = self.conn.poll(max(0.0, timeout - (time.perf_counter() - self.sent)))
        try:
            if ok:
                return self.conn.recv()
        except EOFError:
            pass
        if ok or not self.proc.is_alive():
            self.proc.join(5)
            code = self.proc.exitcode
            sig = signal.Signals(-code).name if code is not None and code < 0 else f"exit {code}"
            self.proc = None
            return "crash", sig, 0, time.perf_counter() - self.sent
        try:  # how much it had taken when it was stopped
            rss = int(re.search(r"VmHWM:\s+(\d+)", Path(f"/proc/{self.proc.pid}/status").read_text()).group(1)) * 1024
        except (OSError, AttributeError):
            rss = 0
        self.proc.kill()
        self.proc.join()
        self.proc = None
        return "hang", f"no answer in {timeout:.0f} s, peak RSS {rss / 1e6:.0f} MB", 0, time.perf_counter() - self.sent

    def close(self):
        if self.proc is not None and self.proc.is_alive():
            self.conn.send(None)
            self.proc.join(5)


def run_cases(cases: list[tuple[str, Path]], workers: dict[str, Worker]) -> list[dict]:
    """Each case to pcdviz and every library that reads its extension, in parallel workers; one record per case."""
    out = []
    for label, path in cases:
        ext = path.suffix.lower()
        names = ["pcdviz"] + [n for n in LIBS_FOR[ext] if n in workers]
        for n in names:
            workers[n].send(path)
        res = {n: workers[n].result(PER_CASE_S) for n in names}
        out.append({"label": label, "path": path, "ext": ext, "res": res})
    return out


LIB_COLS = ["error", "empty", "same", "differs", "data, pcdviz refuses", "bad data", "hang", "huge alloc", "crash"]


def classify(rec: dict, name: str) -> str:
    """One reader's outcome on one case, judged against pcdviz's (its guarded load refusing or the data it parsed)."""
    kind, payload, peak, _ = rec["res"][name]
    if kind in ("hang", "crash"):
        return kind
    if kind == "memory" or peak > HUGE_RSS:
        return "huge alloc"
    if name == "pcdviz":
        if kind == "error":
            return "unforeseen" if payload[0][1] else "refused"
        return "loaded"
    if kind == "error":
        return "error"
    if isinstance(payload, str):
        return "bad data"
    if len(payload[1]) == 0:
        return "empty"
    ref = parser_result(rec)
    if ref[0] != "data" or isinstance(ref[1], str):
        return "data, pcdviz refuses"
    return "same" if same(payload, ref[1]) else "differs"


def parser_result(rec: dict):
    """pcdviz's parser on this file: ('data', canonical) or ('error', ...); ('hang'|'crash', ...) if its worker was lost."""
    kind, payload = rec["res"]["pcdviz"][:2]
    return payload[1] if kind in ("data", "error") else (kind, payload)


def hostile_table(records: list[dict], libs: list[str]) -> list[list]:
    rows = []
    for fam in ("PLY", "PCD", "LZF", "OBJ", "OFF", "STL", "text"):
        recs = [r for r in records if FAMILY[r["ext"]] == fam]
        for name in ["pcdviz"] + libs:
            mine = [r for r in recs if name in r["res"]]
            if not mine:
                continue
            c = Counter(classify(r, name) for r in mine)
            if name == "pcdviz":
                c["error"], c["same"] = c["refused"] + c["unforeseen"], c["loaded"]
            peak = max(r["res"][name][2] for r in mine) / 1e6
            secs = max(r["res"][name][3] for r in mine)
            label = f"{name} (load_point_cloud)" if name == "pcdviz" else name
            cells = [c[k] or "" for k in LIB_COLS]
            if name == "pcdviz":
                cells[0] = f"{c['error']} ({c['unforeseen']} wrapped)"
            garbage = sum(1 for r in mine if r["res"][name][0] == "data" and name != "pcdviz"
                          and isinstance(r["res"][name][1], tuple) and r["res"][name][1][2])
            rows.append([fam, label, len(mine), *cells, garbage or "", f"{peak:.0f}", f"{secs:.2f}"])
    return rows


def notable(records: list[dict], libs: list[str], per_kind: int) -> list[str]:
    """Lines for every hang, crash, huge allocation and bad data; a few examples of the other disagreements."""
    lines, shown = [], Counter()
    for r in records:
        kind, payload = r["res"]["pcdviz"][:2]
        ref = parser_result(r)
        pc = "pcdviz: " + (payload[0][0][:120] if kind == "error" else "loaded" if kind == "data" else kind)
        if ref[0] == "data":
            pc += f" (its parser: {describe(ref[1])})"
        for name in libs:
            if name not in r["res"]:
                continue
            o = classify(r, name)
            if o in ("error", "empty", "same"):
                continue
            key = (name, FAMILY[r["ext"]], o)
            shown[key] += 1
            if o in ("data, pcdviz refuses", "differs") and shown[key] > per_kind:
                continue
            kind, payload, peak, secs = r["res"][name]
            what = describe(payload) if kind == "data" else payload[0] if kind == "error" else payload
            line = f"- {name} on {r['label']}: **{o}** ({what}; peak +{peak / 1e6:.0f} MB, {secs:.2f} s); {pc}"
            lines.append("".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in line))  # messages quote bytes
    return lines


def outcome_cell(rec: dict, name: str) -> str:
    if name not in rec["res"]:
        return ""
    o = classify(rec, name)
    kind, payload, peak, secs = rec["res"][name]
    if name == "pcdviz" and kind in ("data", "error"):
        ref = parser_result(rec)
        payload = ref[1] if ref[0] == "data" else payload
    extra = f", +{peak / 1e6:.0f} MB" if peak > 64 * 1024**2 else ""
    if o == "error":
        return f"error ({payload[0].split(':')[0]}){extra}"
    if o in ("refused", "unforeseen"):
        return f"{o}{extra}"
    if o == "loaded" and isinstance(payload, tuple) and isinstance(payload[0], str) and payload[0] == "loaded":
        return "loaded (parser refused)"
    if o in ("hang", "crash"):
        return f"**{o}** ({payload})"
    if o == "huge alloc":
        what = payload if kind == "memory" else f"+{peak / 1e6:.0f} MB"
        return f"**huge alloc** ({what[:60]})"
    if o in ("loaded", "same", "differs", "data, pcdviz refuses", "bad data", "empty"):
        return f"{o}: {describe(payload)}{extra}" if o != "same" else "same"
    return o


# --------------------------------------------------------------------------- (b) hostile files, built by the tests


def _draw(strategy, n: int) -> list:
    """n examples of a hypothesis strategy, derandomized (the same every run), as the fuzz tests draw them."""
    from hypothesis import HealthCheck, given, settings

    drawn = []

    @settings(max_examples=n, derandomize=True, database=None, deadline=None, suppress_health_check=list(HealthCheck))
    @given(x=strategy)
    def collect(x):
        drawn.append(x)

    collect()
    return drawn


def _absurd_counts() -> dict[str, tuple[str, bytes]]:
    """The fuzzer's 'absurd number' mutations put deliberately on each seed's count (the fuzz draws them at random)."""
    from test_fuzz import seed_bytes

    def sub(fmt, old, new):
        b = seed_bytes(fmt)
        assert old in b, (fmt, old)
        return b.replace(old, new, 1)

    big = b"1000000000000"
    pcd_c = bytearray(seed_bytes("pcd_compressed"))
    at = pcd_c.find(b"binary_compressed\n") + len(b"binary_compressed\n")
    pcd_c[at + 4:at + 8] = struct.pack("<I", 0xFFFFFFFF)  # the declared decompressed size: 4 GiB
    stl = bytearray(seed_bytes("stl_binary"))
    stl[80:84] = struct.pack("<I", 0xFFFFFFFF)
    mid = b"10000000"  # 10^7: what it would allocate fits under the worker's cap, so RSS shows if it is touched
    pcd_m, stl_m = bytearray(pcd_c), bytearray(stl)
    pcd_m[at + 4:at + 8] = struct.pack("<I", 10**9)
    stl_m[80:84] = struct.pack("<I", 2 * 10**7)
    return {
        "ASCII PLY, element vertex 10^12": (".ply", sub("ply_ascii", b"element vertex 64", b"element vertex " + big)),
        "binary PLY, element vertex 10^12": (".ply", sub("ply_binary", b"element vertex 48", b"element vertex " + big)),
        "binary PLY mesh, element face 2^32-1": (".ply", sub("ply_mesh_le", b"element face 12", b"element face 4294967295")),
        "ASCII PCD, POINTS and WIDTH 10^12": (".pcd", sub("pcd_ascii", b"WIDTH 40", b"WIDTH " + big).replace(b"POINTS 40", b"POINTS " + big)),
        "binary PCD, POINTS and WIDTH 10^12": (".pcd", sub("pcd_binary", b"WIDTH 40", b"WIDTH " + big).replace(b"POINTS 40", b"POINTS " + big)),
        "compressed PCD, decoded size 2^32-1": (".pcd", bytes(pcd_c)),
        "OFF, 10^12 vertices": (".off", sub("off", b"8 12 0", big + b" 12 0")),
        "OFF, 2^31-1 faces": (".off", sub("off", b"8 12 0", b"8 2147483647 0")),
        "binary STL, 2^32-1 triangles": (".stl", bytes(stl)),
        ".pts, count line 10^12": (".pts", sub("pts", b"40\n", big + b"\n")),
        "ASCII PLY, element vertex 10^7": (".ply", sub("ply_ascii", b"element vertex 64", b"element vertex " + mid)),
        "binary PLY, element vertex 10^7": (".ply", sub("ply_binary", b"element vertex 48", b"element vertex " + mid)),
        "ASCII PCD, POINTS and WIDTH 10^7": (".pcd", sub("pcd_ascii", b"WIDTH 40", b"WIDTH " + mid).replace(b"POINTS 40", b"POINTS " + mid)),
        "binary PCD, POINTS and WIDTH 10^7": (".pcd", sub("pcd_binary", b"WIDTH 40", b"WIDTH " + mid).replace(b"POINTS 40", b"POINTS " + mid)),
        "compressed PCD, decoded size 10^9": (".pcd", bytes(pcd_m)),
        "OFF, 10^7 vertices": (".off", sub("off", b"8 12 0", mid + b" 12 0")),
        "binary STL, 2x10^7 triangles": (".stl", bytes(stl_m)),
    }


def _hardening_cases(folder: Path) -> tuple[list, list]:
    """tests/test_hardening.py's own hostile files: (its damaged-header table, the fuzz regressions and deep.ply;
    the other `_hostile_uploads`)."""
    import test_hardening as th

    out = []
    for mark in th.test_damaged_headers_are_sentences_not_wrapped_errors.pytestmark:
        if mark.name == "parametrize":
            for name, content, _ in mark.args[1]:
                if Path(name).suffix in LIBS_FOR:
                    (folder / name).write_bytes(content)
                    out.append((f"hardening {name}", folder / name))
    n = 20_000  # test_compressed_pcd_decoding_is_bounded: input claims ~90x expansion
    head = (f"VERSION .7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\nWIDTH {n}\nHEIGHT 1\nPOINTS {n}\n"
            f"DATA binary_compressed\n").encode()
    comp = b"\x00\x00" * (n * 12 // 90 + 1)
    (folder / "z.pcd").write_bytes(head + struct.pack("<II", len(comp), n * 12) + comp)
    out.append(("hardening z.pcd (LZF stream shorter than it claims)", folder / "z.pcd"))
    rows = [",".join(f"{v:.6g}" for v in p) for p in np.random.default_rng(0).normal(size=(40, 3))]
    rows[3] = "1e39,0,0"  # test_coordinates_beyond_float32_are_dropped_not_loaded_as_inf
    (folder / "big.csv").write_text("\n".join(rows) + "\n")
    out.append(("hardening big.csv (one 1e39 coordinate)", folder / "big.csv"))
    tri = ["facet normal 0 0 1\nouter loop\n" + "".join(f"vertex {x} {y} 0\n" for x, y in t) + "endloop\nendfacet\n"
           for t in [((0, 0), (1, 0), (0, 1)), ((1, 0), (1, 1), (0, 1)), ((1e39, 0), (1, 1), (0, 1))]]
    (folder / "m.stl").write_text("solid m\n" + "".join(tri) + "endsolid m\n")
    out.append(("hardening m.stl (a 1e39 vertex)", folder / "m.stl"))
    sub = folder / "uploads"
    sub.mkdir()
    ups = th._hostile_uploads(sub, 3 * 26)
    deep = [p for p in ups if p.name == "deep.ply"]
    out += [("hardening deep.ply (element vertex 10^12)", p) for p in deep]
    return out, [(f"hardening upload {p.name}", p) for p in ups if p.suffix in LIBS_FOR and p.name != "deep.ply"]


def _lzf_seeds() -> list[tuple[str, bytes]]:
    """LZF blocks (decoded size + stream) to mutate: the fuzz seed's literal-only stream, a liblzf stream with back
    references (its cloud compressed by python-neo-lzf, if installed) and car6.pcd's (written by PCL)."""
    from test_fuzz import seed_bytes

    out = []
    pcd = seed_bytes("pcd_compressed")
    at = pcd.index(b"binary_compressed\n") + len(b"binary_compressed\n")
    comp_len, raw_len = struct.unpack_from("<II", pcd, at)
    out.append(("test_fuzz's pcd_compressed (literal runs)", struct.pack("<I", raw_len) + pcd[at + 8:at + 8 + comp_len]))
    try:
        import lzf

        raw = np.random.default_rng(0).normal(size=(64, 3)).astype(np.float32).T.tobytes() + b"\x40\x80\xff\x00" * 64
        out.append(("a liblzf stream with back references", struct.pack("<I", len(raw)) + lzf.compress(raw)))
    except ImportError:
        pass
    car = SAMPLES / "car6.pcd"
    if car.is_file():
        data = car.read_bytes()
        at = data.index(b"DATA binary_compressed\n") + len(b"DATA binary_compressed\n")
        comp_len, raw_len = struct.unpack_from("<II", data, at)
        out.append(("car6.pcd", struct.pack("<I", raw_len) + data[at + 8:at + 8 + comp_len]))
    return out


def hostile_cases(folder: Path, per_format: int, per_sample: int) -> tuple[list, list]:
    """(hand-made cases, drawn cases): the first are tabled one by one, the second counted."""
    from test_fuzz import SEEDS, mutated_file, mutation

    hand, uploads = _hardening_cases(folder)
    for i, (label, (ext, data)) in enumerate(_absurd_counts().items()):
        (folder / f"count{i}{ext}").write_bytes(data)
        hand.append((label, folder / f"count{i}{ext}"))
    drawn = list(uploads)
    for fmt, (ext, _) in sorted(SEEDS.items()):
        if ext not in LIBS_FOR:
            continue
        seen = set()
        for what, data in _draw(mutated_file(fmt), per_format):
            if data in seen:
                continue
            seen.add(data)
            p = folder / f"fuzz_{fmt}_{len(seen)}{ext}"
            p.write_bytes(data)
            drawn.append((f"fuzz {fmt} [{', '.join(what)}]", p))
    for i, (label, block) in enumerate(_lzf_seeds()):
        for j, (what, data) in enumerate(_draw(mutation(block[4:]), per_format)):
            p = folder / f"lzf{i}_{j}.lzf"
            p.write_bytes(block[:4] + data)
            drawn.append((f"fuzz LZF block of {label} [{what}]", p))
    if per_sample and SAMPLES.is_dir():
        for src in sorted(SAMPLES.iterdir()):
            if src.suffix.lower() not in LIBS_FOR:
                continue
            for j, (what, data) in enumerate(_draw(mutation(src.read_bytes()), per_sample)):
                p = folder / f"sample{j}_{src.name}"
                p.write_bytes(data)
                drawn.append((f"fuzz {src.name} [{what}]", p))
    return hand, drawn


# --------------------------------------------------------------------------- (a) real files


def real_files() -> list[tuple[str, Path]]:
    import importlib.util

    out = []
    if SAMPLES.is_dir():
        out += [(p.name, p) for p in sorted(SAMPLES.iterdir()) if p.suffix.lower() in LIBS_FOR]
    spec = importlib.util.find_spec("gradio")
    if spec is not None:
        g = Path(spec.submodule_search_locations[0]) / "media_assets" / "models3d"
        out += [(f"gradio {n}", g / n) for n in ("Bunny.obj", "face.obj", "sofia.stl") if (g / n).is_file()]
    return out


# --------------------------------------------------------------------------- (c) speed


def write_ascii_stl(binary_stl: Path, out: Path) -> None:
    tri = np.frombuffer(binary_stl.read_bytes(), dtype=[("n", "<f4", 3), ("v", "<f4", 9), ("a", "<u2")], offset=84)["v"]
    fmt = "facet normal 0 0 0\nouter loop\n" + "vertex %.6f %.6f %.6f\n" * 3 + "endloop\nendfacet"
    with open(out, "w") as fh:
        fh.write("solid bench\n")
        np.savetxt(fh, tri, fmt=fmt)
        fh.write("endsolid bench\n")


def speed_files(d: Path, n: int, pts, nrm, col) -> dict[str, Path]:
    """The formats pcdviz parses itself, about n points (meshes: n vertices) each, written like bench_io.py."""
    import bench_io

    from pcdviz.io import MAX_FILE_BYTES

    p, nr, cl = pts[:n], nrm[:n], col[:n]
    files = bench_io.write_ply_files(d, n, p, nr, cl)
    for mode in ("ascii", "binary", "binary_compressed"):
        bench_io.write_pcd(d / f"{mode}{n}.pcd", p, mode)
        files[f"PCD {mode} (xyz rgb)" + (", literal-only LZF" if mode == "binary_compressed" else "")] = d / f"{mode}{n}.pcd"
    try:
        import lzf  # python-neo-lzf, pypcd4's dependency: a real liblzf stream, as PCL writes
        raw = (d / f"binary{n}.pcd").read_bytes()
        head, body = raw[:raw.index(b"DATA binary\n")], raw[raw.index(b"DATA binary\n") + 12:]
        rec = np.frombuffer(body, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("rgb", "<f4")])
        cols = b"".join(np.ascontiguousarray(rec[k]).tobytes() for k in ("x", "y", "z", "rgb"))
        comp = lzf.compress(cols)
        (d / f"lzf{n}.pcd").write_bytes(head + b"DATA binary_compressed\n" + struct.pack("<II", len(comp), len(cols)) + comp)
        files["PCD binary_compressed (xyz rgb), liblzf"] = d / f"lzf{n}.pcd"
        (d / f"lzf{n}.lzf").write_bytes(struct.pack("<I", len(cols)) + comp)
        files["  its LZF block alone (decode only)"] = d / f"lzf{n}.lzf"
    except ImportError:
        pass
    np.savetxt(d / f"a{n}.xyz", p, fmt="%.6f")
    files[".xyz (x y z)"] = d / f"a{n}.xyz"
    np.savetxt(d / f"a{n}.txt", np.c_[p, nr], fmt="%.6f", delimiter=",")
    files[".txt ModelNet (x,y,z,nx,ny,nz)"] = d / f"a{n}.txt"
    side = int(np.sqrt(n))
    sub = d / f"mesh{side}"
    sub.mkdir()
    _, nf = bench_io.write_mesh_files(sub, side)
    files.update({f".{e} grid mesh ({nf:,} triangles)": sub / f"mesh.{e}" for e in ("obj", "off")})
    files[f"binary STL grid ({nf:,} triangles)"] = sub / "mesh.stl"
    if nf * 240 < MAX_FILE_BYTES:
        write_ascii_stl(sub / "mesh.stl", sub / "ascii.stl")
        files[f"ASCII STL grid ({nf:,} triangles)"] = sub / "ascii.stl"
    return files


def agree(a, b) -> bool:
    """The same data? Identical faces and close points first (fast), else the canonical forms."""
    (pa, fa), (pb, fb) = a, b
    if (fa is None) == (fb is None) and np.shape(pa) == np.shape(pb) and (fa is None or np.array_equal(fa, fb)):
        if np.isclose(np.asarray(pa, np.float64), np.asarray(pb, np.float64), rtol=1e-6, atol=1e-9, equal_nan=True).all():
            return True
    return same(canonical(pa, fa), canonical(pb, fb))


def time_file(path: Path, names: list[str], repeats: int, budget_s: float, first_counts: bool) -> dict:
    """name -> list of seconds, or an error string. One call each first checks the data against pcdviz's (and warms
    up; with first_counts, at 1M points, it is also the first timed run). Then rounds interleave the readers until
    there are `repeats` runs or `budget_s` is spent (at least one round)."""
    out, ref = {}, None
    for n in names:
        t = time.perf_counter()
        try:
            got = READERS[n](path)
        except Exception as e:  # noqa: BLE001
            out[n] = f"error ({type(e).__name__})"
            continue
        secs = time.perf_counter() - t
        if n == "pcdviz":
            ref = got
        out[n] = [] if ref is None or n == "pcdviz" or agree(got, ref) else ["differs"]
        out[n] += [secs] if first_counts else []
        del got
    live = [n for n in names if isinstance(out[n], list)]
    t0 = time.perf_counter()
    for _ in range(repeats - first_counts):
        for n in live:
            t = time.perf_counter()
            READERS[n](path)
            out[n].append(time.perf_counter() - t)
        if time.perf_counter() - t0 > budget_s:
            break
    return out


def speed_rows(sizes: list[int], libs: list[str], repeats: int, repeats_1m: int, budget_s: float,
               skip_over: float) -> list[list]:
    """One row per file and size. A library more than skip_over times slower than pcdviz on a file at one size is
    not timed on it at the next sizes (its cell says so): that keeps the run within minutes on 2 shared cores."""
    import shutil

    import bench_io

    rows, slow = [], {}  # (file kind, reader) -> (ratio, size) once it was too slow
    pts, nrm, col = bench_io.make_cloud(max(sizes))
    with tempfile.TemporaryDirectory(prefix="pcdviz-bench-parsers-") as tmp:
        for n in sizes:
            d = Path(tmp) / str(n)
            d.mkdir()
            for label, path in speed_files(d, n, pts, nrm, col).items():
                kind = re.sub(r" \([\d,]+ triangles\)", "", label)
                names = ["pcdviz"] + [x for x in LIBS_FOR[path.suffix.lower()] if x in libs and (kind, x) not in slow]
                big = n >= 1_000_000
                res = time_file(path, names, repeats_1m if big else repeats, budget_s, first_counts=big)
                base = statistics.median(res["pcdviz"]) if isinstance(res["pcdviz"], list) else None
                cells = {x: f"not timed ({r:.1f}x at {m:,})" for (k, x), (r, m) in slow.items() if k == kind}
                for x in names:
                    r = res[x]
                    if isinstance(r, str):
                        cells[x] = r
                        continue
                    bad = r and r[0] == "differs"
                    ts = [t for t in r if t != "differs"]
                    m = statistics.median(ts)
                    ratio = "" if x == "pcdviz" or base is None else f" ({m / base:.2f}x)"
                    cells[x] = f"{m * 1e3:.1f}{ratio}" + (" data differs" if bad else "")
                    if x != "pcdviz" and base and m / base > skip_over:
                        slow[(kind, x)] = (m / base, n)
                runs = len([t for t in res["pcdviz"] if t != "differs"]) if isinstance(res["pcdviz"], list) else 0
                rows.append([label, f"{n:,}", f"{path.stat().st_size / 1e6:.1f}", runs,
                             *[cells.get(x, "") for x in ["pcdviz"] + libs]])
                print(f"#   timed {label} at {n:,} points", file=sys.stderr, flush=True)
            shutil.rmtree(d)
    return rows


# --------------------------------------------------------------------------- main


def versions(libs: list[str]) -> str:
    import importlib.metadata as md

    dist = {"python-neo-lzf": "python-neo-lzf", "numpy-stl": "numpy-stl", "numpy.loadtxt": "numpy", "pandas.read_csv": "pandas", "open3d": "open3d-cpu"}
    out = []
    for n in libs:
        try:
            out.append(f"{n} {md.version(dist.get(n, n))}")
        except md.PackageNotFoundError:
            out.append(f"{n} ?")
    return ", ".join(out)


def print_compact(columns: list[str], rows: list[list], align: str | None = None) -> None:
    """bu.print_table without the reader columns that are empty in every row (a reader that reads none of them)."""
    align = align or "l" + "r" * (len(columns) - 1)
    keep = [i for i in range(len(columns)) if i < 2 or any(str(r[i]) for r in rows)]
    bu.print_table([columns[i] for i in keep], [[r[i] for i in keep] for r in rows], "".join(align[i] for i in keep))


def load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def samples_part(workers: dict, libs: list[str]) -> None:
    cols = ["pcdviz"] + libs
    recs = run_cases(real_files(), workers)
    print("\n(a) Real files: what each reader returns against pcdviz's parser (same = same points, or the same "
          "triangles in any vertex order)")
    print_compact(["file", *cols], [[r["label"], *[outcome_cell(r, n) for n in cols]] for r in recs],
                  align="l" * (len(cols) + 1))
    print("\n" + "\n".join(notable(recs, libs, 99) or ["(nothing notable)"]))


def hostile_part(workers: dict, libs: list[str], args) -> None:
    cols = ["pcdviz"] + libs
    with tempfile.TemporaryDirectory(prefix="pcdviz-bench-hostile-") as tmp:
        try:
            hand, drawn = hostile_cases(Path(tmp), args.fuzz_cases, args.sample_cases)
        except ImportError as e:  # the test dependencies (hypothesis, torch) are not installed
            print(f"\n(b) skipped: the tests' builders cannot be imported ({e})")
            return
        t = time.perf_counter()
        hrec = run_cases(hand, workers)
        drec = run_cases(drawn, workers)
        secs = time.perf_counter() - t
    print(f"\n(b1) Hostile files made by hand (tests/test_hardening.py's and the fuzzer's absurd counts "
          f"on each seed); {PER_CASE_S:.0f} s per case, address space capped at +{AS_HEADROOM >> 30} GiB; "
          f"pcdviz = load_point_cloud")
    print_compact(["case", *cols], [[r["label"], *[outcome_cell(r, n) for n in cols]] for r in hrec],
                  align="l" * (len(cols) + 1))
    print(f"\n(b2) {len(drec)} mutated files (test_fuzz.mutated_file: {args.fuzz_cases} drawn per seed format; "
          f"test_fuzz.mutation: {args.fuzz_cases} per LZF block, {args.sample_cases} per real sample; "
          f"test_hardening._hostile_uploads), counted; for pcdviz, error = refused and same = loaded; {secs:.0f} s for "
          f"(b1) and (b2); load {load()}")
    bu.print_table(["format", "reader", "cases", *LIB_COLS, "garbage values", "peak RSS MB", "max s"],
                   hostile_table(drec, libs), align="ll" + "r" * (len(LIB_COLS) + 4))
    print("\n" + "\n".join(notable(hrec + drec, libs, args.show) or ["(nothing notable)"]))


def speed_part(libs: list[str], args) -> None:
    t = time.perf_counter()
    rows = speed_rows(args.sizes, libs, args.repeats, args.repeats_1m, args.budget, args.skip_over)
    print(f"\n(c) Parse time, ms: median of interleaved rounds ({args.repeats}, {args.repeats_1m} at 1M points, fewer "
          f"where a file's rounds passed {args.budget:.0f} s; runs = how many); (x) = library / pcdviz, above 1 the "
          f"library is slower; 'data differs' = not the points/triangles pcdviz's parser returns; a library over "
          f"{args.skip_over:g}x on a file is not timed on it at larger sizes; "
          f"{time.perf_counter() - t:.0f} s; load {load()}")
    print_compact(["file", "points", "MB", "runs", "pcdviz", *libs], rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--repeats", type=int, default=7, help="timed rounds below 1M points")
    ap.add_argument("--repeats-1m", type=int, default=3, help="timed rounds at 1M points and more")
    ap.add_argument("--budget", type=float, default=12.0, help="seconds of timed rounds per file before stopping early")
    ap.add_argument("--skip-over", type=float, default=3.0,
                    help="a library this many times slower than pcdviz on a file is not timed on it at the next sizes")
    ap.add_argument("--fuzz-cases", type=int, default=25, help="mutated files drawn per seed format of test_fuzz")
    ap.add_argument("--sample-cases", type=int, default=3, help="mutated copies drawn per real sample file")
    ap.add_argument("--show", type=int, default=2, help="examples listed per (reader, format, disagreement)")
    ap.add_argument("--no-samples", action="store_true")
    ap.add_argument("--no-hostile", action="store_true")
    ap.add_argument("--no-speed", action="store_true")
    args, _ = ap.parse_known_args(argv)  # `pcdviz bench` passes its arguments to every script

    sys.path.insert(0, str(REPO / "tests"))  # the hostile-file builders of test_fuzz.py and test_hardening.py
    libs, missing = installed(["python-neo-lzf", "plyfile", "pypcd4", "trimesh", "numpy-stl", "open3d",
                               "numpy.loadtxt", "pandas.read_csv"])
    print(bu.header("bench_parsers") + f"\n# {versions(libs)}" + (f"; not installed: {', '.join(missing)}" if missing else ""))
    workers = {n: Worker(n) for n in ["pcdviz"] + libs}
    try:
        if not args.no_samples:
            samples_part(workers, libs)
        if not args.no_hostile:
            hostile_part(workers, libs, args)
    finally:
        for w in workers.values():
            w.close()
    if not args.no_speed:
        speed_part(libs, args)
    print(f"\n# done {time.strftime('%H:%M %Z')}, load {load()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
