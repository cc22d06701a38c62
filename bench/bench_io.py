"""Time pcdviz.io: a big binary PLY loaded and decimated for display, then every format at a smaller size.

    .venv/bin/python bench/bench_io.py                 # 1M-point PLY -> 100k; every format at 10k, 100k, 1M points
    .venv/bin/python bench/bench_io.py --points 2000000 --repeats 3 --no-formats
    .venv/bin/python bench/bench_io.py --sizes 10000 100000
    .venv/bin/python bench/bench_io.py --against 93b856e --no-big    # this tree's pcdviz.io against a commit's
    .venv/bin/python bench/bench_io.py --against 93b856e --no-big --only PCD .xyz .txt   # rows naming these

Prints one table; timings are wall-clock milliseconds on whatever machine runs it (median, min, max of the
repeats), grouped by format with one row per file size. With --against REF, pcdviz.io as it was at git commit
REF is loaded beside this tree's and every format row times both on the same files, their repeats interleaved
(so both see the same load on a shared machine), and checks that both return the same cloud.

"""
from __future__ import annotations

import argparse
import importlib
import os
import statistics
import struct
import subprocess
import time
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchutil as bu  # noqa: E402

import numpy as np  # noqa: E402

from pcdviz.io import decimate_for_display, load_point_cloud, save_ply  # noqa: E402


def make_cloud(n: int, seed: int = 0):
    """A noisy sphere-ish shell with normals and colours, float32."""
    rng = np.random.default_rng(seed)
    nrm = rng.normal(size=(n, 3)).astype(np.float32)
    nrm /= np.linalg.norm(nrm, axis=1, keepdims=True)
    pts = nrm * (1.0 + 0.05 * rng.standard_normal((n, 1), dtype=np.float32))
    col = rng.random((n, 3), dtype=np.float32)
    return pts.astype(np.float32), nrm, col


def write_pcd(path: Path, pts, mode: str):
    """x y z rgb; binary_compressed uses literal-only LZF runs (valid LZF, the slowest case for a reader)."""
    n = len(pts)
    rgb = np.full(n, (200 << 16) | (100 << 8) | 50, np.uint32).view(np.float32)
    head = (f"# .PCD v0.7\nVERSION 0.7\nFIELDS x y z rgb\nSIZE 4 4 4 4\nTYPE F F F F\nCOUNT 1 1 1 1\n"
            f"WIDTH {n}\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS {n}\nDATA {mode}\n").encode()
    if mode == "ascii":
        body = "".join(f"{x:.7g} {y:.7g} {z:.7g} {c:.9g}\n" for (x, y, z), c in zip(pts.tolist(), rgb.tolist())).encode()
    elif mode == "binary":
        rec = np.empty(n, [("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("rgb", "<f4")])
        rec["x"], rec["y"], rec["z"], rec["rgb"] = pts[:, 0], pts[:, 1], pts[:, 2], rgb
        body = rec.tobytes()
    else:
        raw = b"".join(np.ascontiguousarray(a).tobytes() for a in (pts[:, 0], pts[:, 1], pts[:, 2], rgb))
        comp = bytearray()
        for i in range(0, len(raw), 32):
            chunk = raw[i:i + 32]
            comp.append(len(chunk) - 1)
            comp += chunk
        body = struct.pack("<II", len(comp), len(raw)) + bytes(comp)
    path.write_bytes(head + body)


def write_mesh_files(d: Path, n_side: int):
    """A height-field grid mesh (n_side^2 vertices, 2 (n_side-1)^2 triangles) as OBJ, OFF and binary STL."""
    g = np.stack(np.meshgrid(np.linspace(0, 1, n_side), np.linspace(0, 1, n_side), indexing="ij"), -1).reshape(-1, 2)
    v = np.c_[g, 0.1 * np.sin(6 * g[:, 0]) * np.cos(6 * g[:, 1])].astype(np.float32)
    i, j = np.meshgrid(np.arange(n_side - 1), np.arange(n_side - 1), indexing="ij")
    a = (i * n_side + j).ravel()
    f = np.concatenate([np.c_[a, a + 1, a + n_side + 1], np.c_[a, a + n_side + 1, a + n_side]])
    np.savetxt(d / "mesh.obj", v, fmt="v %.6f %.6f %.6f")
    with open(d / "mesh.obj", "a") as fh:
        np.savetxt(fh, f + 1, fmt="f %d %d %d")
    with open(d / "mesh.off", "w") as fh:
        fh.write(f"OFF\n{len(v)} {len(f)} 0\n")
        np.savetxt(fh, v, fmt="%.6f")
        np.savetxt(fh, f, fmt="3 %d %d %d")
    rec = np.zeros(len(f), dtype=[("n", "<f4", 3), ("v", "<f4", (3, 3)), ("a", "<u2")])
    rec["v"] = v[f]
    (d / "mesh.stl").write_bytes(b"bench".ljust(80) + struct.pack("<I", len(f)) + rec.tobytes())
    return len(v), len(f)


def write_ply_files(d: Path, n: int, p, nr, cl) -> dict:
    """An ASCII and a binary PLY of the points p with normals and colours; name -> path."""
    save_ply(d / f"a{n}.ply", p, cl, normals=nr, binary=False)
    save_ply(d / f"b{n}.ply", p, cl, normals=nr)
    return {"ASCII PLY (xyz nxyz rgb)": d / f"a{n}.ply", "binary PLY (xyz nxyz rgb)": d / f"b{n}.ply"}


def write_format_files(d: Path, n: int, pts, nrm, col) -> dict:
    """Every point-cloud format pcdviz.io reads, n points each; name -> path."""
    p, nr, cl = pts[:n], nrm[:n], col[:n]
    files = write_ply_files(d, n, p, nr, cl)
    for mode in ("ascii", "binary", "binary_compressed"):
        write_pcd(d / f"{mode}{n}.pcd", p, mode)
        files[f"PCD {mode}"] = d / f"{mode}{n}.pcd"
    np.savetxt(d / f"a{n}.xyz", p, fmt="%.6f")
    files[".xyz (x y z)"] = d / f"a{n}.xyz"
    np.savetxt(d / f"a{n}.txt", np.c_[p, nr], fmt="%.6f", delimiter=",")
    files[".txt ModelNet (x,y,z,nx,ny,nz)"] = d / f"a{n}.txt"
    np.save(d / f"a{n}.npy", p)
    files[".npy (N, 3)"] = d / f"a{n}.npy"
    np.savez_compressed(d / f"a{n}.npz", points=p, normals=nr)
    files[".npz compressed"] = d / f"a{n}.npz"
    import h5py
    with h5py.File(d / f"a{n}.h5", "w") as f:
        f.create_dataset("data", data=p[None])
        f.create_dataset("label", data=np.zeros((1, 1), np.uint8))
    files[".h5 (1, N, 3), one sample"] = d / f"a{n}.h5"
    return files


def write_meshes(d: Path, n_vertices: int) -> tuple[dict, int]:
    """OBJ, OFF and binary STL grid meshes of about n_vertices vertices (.glb/.gltf go through open3d's reader
    and are not timed here: open3d's own glb writer gives files its reader finds no mesh in)."""
    side = int(np.sqrt(n_vertices))
    sub = d / f"mesh{side}"
    sub.mkdir()
    _, nf = write_mesh_files(sub, side)
    return {f".{ext} mesh": sub / f"mesh.{ext}" for ext in ("obj", "off", "stl")}, nf


def io_at(ref: str, folder: Path):
    """pcdviz.io as it was at git commit `ref` (the module pcdviz/io.py or the package pcdviz/io/), imported
    under another name from a copy in folder."""
    repo = Path(__file__).resolve().parents[1]
    listing = subprocess.run(["git", "ls-tree", "--name-only", ref, "pcdviz/"], cwd=repo, check=True,
                             capture_output=True, text=True).stdout.split()
    name = "pcdviz_io_at_" + "".join(c for c in ref if c.isalnum())
    if "pcdviz/io.py" in listing:
        src = subprocess.run(["git", "show", f"{ref}:pcdviz/io.py"], cwd=repo, check=True, capture_output=True).stdout
        (folder / f"{name}.py").write_bytes(src)
    else:
        tar = subprocess.run(["git", "archive", ref, "pcdviz/io"], cwd=repo, check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(folder)], input=tar, check=True)
        (folder / "pcdviz" / "io").rename(folder / name)
    sys.path.insert(0, str(folder))
    return importlib.import_module(name)


def same_cloud(a, b) -> bool:
    """The same points, colours, normals and labels, bit for bit."""
    return all((x is None and y is None) or (x is not None and y is not None and x.dtype == y.dtype
                                             and x.shape == y.shape and x.tobytes() == y.tobytes())
               for x, y in ((a.points, b.points), (a.colors, b.colors), (a.normals, b.normals), (a.labels, b.labels)))


def interleaved(fns, repeats: int) -> list[list[float]]:
    """Wall times of each fn, called in turn `repeats` times (one untimed round first)."""
    for fn in fns:
        fn()
    out = [[] for _ in fns]
    for _ in range(repeats):
        for ts, fn in zip(out, fns):
            t = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t)
    return out


def big_ply_rows(d: Path, pts, nrm, col, args) -> list:
    """A big binary PLY (with a scalar) loaded, then decimated for display."""
    big = d / "big.ply"
    save_ply(big, pts[:args.points], col[:args.points], normals=nrm[:args.points], scalar=pts[:args.points, 2])
    size_mb = big.stat().st_size / 1e6

    def load_and_decimate():
        c = load_point_cloud(big)
        idx = decimate_for_display(c.points, args.display)
        assert len(c) == args.points and len(idx) == min(args.display, args.points)

    load_point_cloud(big)  # warm the page cache and imports once
    rows = [(f"binary PLY {size_mb:.0f} MB (+ a scalar): load + decimate to {args.display:,}", args.points,
             bu.timed(load_and_decimate, args.repeats))]
    rows.append(("  of which load_point_cloud", args.points, bu.timed(lambda: load_point_cloud(big), args.repeats)))
    rows.append(("  of which decimate_for_display", args.points,
                 bu.timed(lambda: decimate_for_display(pts[:args.points], args.display), args.repeats)))
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--points", type=int, default=1_000_000, help="points in the big binary PLY")
    ap.add_argument("--display", type=int, default=100_000, help="decimate_for_display target")
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000],
                    help="points per file for the per-format rows (meshes: about this many vertices)")
    ap.add_argument("--repeats", type=int, default=5, help="repeats (3 for files of 1M points and more)")
    ap.add_argument("--no-formats", action="store_true", help="only the big PLY")
    ap.add_argument("--no-big", action="store_true", help="only the per-format rows")
    ap.add_argument("--against", metavar="REF", help="also time pcdviz.io as it was at git commit REF")
    ap.add_argument("--only", nargs="+", metavar="WORD", help="only the format rows whose name holds one of these")
    args, _ = ap.parse_known_args(argv)  # `pcdviz bench` passes its arguments to every script

    rows = []  # (what, n_points, times)
    with tempfile.TemporaryDirectory(prefix="pcdviz-bench-io-") as tmp:
        d = Path(tmp)
        pts, nrm, col = make_cloud(max([args.points] + args.sizes))
        old = None if args.against is None else io_at(args.against, d)
        if not args.no_big:
            rows.extend(big_ply_rows(d, pts, nrm, col, args))

        if not args.no_formats:
            rows.extend(format_rows(d, pts, nrm, col, args, old))

    print(bu.header("bench_io") + f"\n# numpy {np.__version__}, {args.repeats} repeats (3 at 1M points); "
          "milliseconds; points/s = points returned per second"
          + ("" if old is None else f"; against pcdviz.io at {args.against}, repeats interleaved, "
                                    f"ratio = median here / median there"))
    w = max(len(r[0]) for r in rows)
    cols = f"{'what':<{w}}  {'points':>9}  {'median ms':>10}  {'min':>9}  {'max':>9}  {'points/s':>10}"
    if old is not None:
        cols += f"  {args.against + ' ms':>12}  {'min':>9}  {'ratio':>6}  same"
    print(cols)
    for what, npts, ts, *against in rows:
        med = statistics.median(ts)
        line = (f"{what:<{w}}  {npts:>9,}  {med * 1e3:>10.1f}  {min(ts) * 1e3:>9.1f}  {max(ts) * 1e3:>9.1f}  "
                f"{npts / med:>10.3g}")
        if against:
            ts_old, same = against
            line += (f"  {statistics.median(ts_old) * 1e3:>12.1f}  {min(ts_old) * 1e3:>9.1f}  "
                     f"{med / statistics.median(ts_old):>6.2f}  {same}")
        print(line)
    return 0


def format_rows(d: Path, pts, nrm, col, args, old) -> list:
    """Every format at each size; with `old` (pcdviz.io at another commit) both, interleaved on the same files."""
    by_format = {}
    for n in args.sizes:
        r = args.repeats if n < 1_000_000 else min(args.repeats, 3)
        files = write_format_files(d, n, pts, nrm, col)
        mesh_files, nf = write_meshes(d, n)
        files.update({f"{k}, {nf:,} triangles -> 20k samples": v for k, v in mesh_files.items()})
        for what, path in files.items():
            if args.only and not any(w in what for w in args.only):
                continue
            c = load_point_cloud(path)  # warm-up, and the number of points it gives
            entry = [f"{what} [{path.stat().st_size / 1e6:.1f} MB]", len(c)]
            if old is None:
                entry.append(bu.timed(lambda path=path: load_point_cloud(path), r, warmup=0))
            else:
                ts, ts_old = interleaved([lambda: load_point_cloud(path), lambda: old.load_point_cloud(path)], r)
                entry += [ts, ts_old, "yes" if same_cloud(c, old.load_point_cloud(path)) else "NO"]
            by_format.setdefault(what.split(",")[0], []).append(tuple(entry))
    return [e for entries in by_format.values() for e in entries]


if __name__ == "__main__":
    raise SystemExit(main())
