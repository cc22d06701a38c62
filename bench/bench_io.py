"""Time pcdviz.io: a big binary PLY loaded and decimated for display, then every format at a smaller size.

    .venv/bin/python bench/bench_io.py                 # 1,000,000-point PLY -> 100k, formats at 100k, 5 repeats
    .venv/bin/python bench/bench_io.py --points 2000000 --repeats 3 --no-formats

Prints one table; timings are wall-clock seconds on whatever machine runs it (median of the repeats).
"""
from __future__ import annotations

import argparse
import os
import statistics
import struct
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from pcdviz.io import decimate_for_display, load_point_cloud, save_ply


def make_cloud(n: int, seed: int = 0):
    """A noisy sphere-ish shell with normals and colours, float32."""
    rng = np.random.default_rng(seed)
    nrm = rng.normal(size=(n, 3)).astype(np.float32)
    nrm /= np.linalg.norm(nrm, axis=1, keepdims=True)
    pts = nrm * (1.0 + 0.05 * rng.standard_normal((n, 1), dtype=np.float32))
    col = rng.random((n, 3), dtype=np.float32)
    return pts.astype(np.float32), nrm, col


def time_it(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--points", type=int, default=1_000_000, help="points in the big binary PLY")
    ap.add_argument("--display", type=int, default=100_000, help="decimate_for_display target")
    ap.add_argument("--format-points", type=int, default=100_000, help="points for the per-format rows")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--no-formats", action="store_true", help="only the big PLY")
    args = ap.parse_args(argv)

    rows = []  # (what, n_points, times)
    with tempfile.TemporaryDirectory(prefix="pcdviz-bench-io-") as tmp:
        d = Path(tmp)
        pts, nrm, col = make_cloud(args.points)
        big = d / "big.ply"
        save_ply(big, pts, col, normals=nrm, scalar=pts[:, 2])  # xyz, normals, uchar rgb, a float scalar
        size_mb = big.stat().st_size / 1e6

        def load_and_decimate():
            c = load_point_cloud(big)
            idx = decimate_for_display(c.points, args.display)
            assert len(c) == args.points and len(idx) == min(args.display, args.points)

        load_point_cloud(big)  # warm the page cache and imports once
        rows.append((f"binary PLY {size_mb:.0f} MB: load + decimate to {args.display:,}", args.points,
                     time_it(load_and_decimate, args.repeats)))
        rows.append(("  of which load_point_cloud", args.points, time_it(lambda: load_point_cloud(big), args.repeats)))
        rows.append(("  of which decimate_for_display", args.points,
                     time_it(lambda: decimate_for_display(pts, args.display), args.repeats)))

        if not args.no_formats:
            n = args.format_points
            p, nr, cl = pts[:n], nrm[:n], col[:n]
            files = {}
            save_ply(d / "a.ply", p, cl, normals=nr, binary=False)
            files["ASCII PLY (xyz nxyz rgb)"] = d / "a.ply"
            for mode in ("ascii", "binary", "binary_compressed"):
                write_pcd(d / f"{mode}.pcd", p, mode)
                files[f"PCD {mode}"] = d / f"{mode}.pcd"
            np.savetxt(d / "a.xyz", p, fmt="%.6f")
            files[".xyz (x y z)"] = d / "a.xyz"
            np.savetxt(d / "a.txt", np.c_[p, nr], fmt="%.6f", delimiter=",")
            files[".txt ModelNet (x,y,z,nx,ny,nz)"] = d / "a.txt"
            np.save(d / "a.npy", p)
            files[".npy (N, 3)"] = d / "a.npy"
            np.savez_compressed(d / "a.npz", points=p, normals=nr)
            files[".npz compressed"] = d / "a.npz"
            import h5py
            with h5py.File(d / "a.h5", "w") as f:
                f.create_dataset("data", data=np.stack([p[:2048]] * 4))
                f.create_dataset("label", data=np.zeros((4, 1), np.uint8))
            files[".h5 ModelNet40 (4, 2048, 3), one sample"] = d / "a.h5"
            side = int(np.sqrt(n))
            nv, nf = write_mesh_files(d, side)
            for ext in ("obj", "off", "stl"):
                files[f".{ext} mesh {nf:,} triangles -> 20k samples"] = d / f"mesh.{ext}"
            for what, path in files.items():
                load_point_cloud(path)
                k = len(load_point_cloud(path))
                rows.append((what, k, time_it(lambda path=path: load_point_cloud(path), args.repeats)))

    print(f"pcdviz.io benchmark  (python {sys.version.split()[0]}, numpy {np.__version__}, "
          f"{os.cpu_count()} CPUs, {args.repeats} repeats; seconds)")
    w = max(len(r[0]) for r in rows)
    print(f"{'what':<{w}}  {'points':>9}  {'median':>7}  {'min':>7}  {'max':>7}  {'points/s':>10}")
    for what, npts, ts in rows:
        med = statistics.median(ts)
        print(f"{what:<{w}}  {npts:>9,}  {med:>7.3f}  {min(ts):>7.3f}  {max(ts):>7.3f}  {npts / med:>10.3g}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
