"""Farthest point sampling and kNN grouping: pcdviz.ops against fpsample, open3d and a plain torch loop.

    .venv/bin/python bench/bench_ops.py                  # 1k-1M points, ~2 min on 2 cores; writes docs/bench-ops.png
    .venv/bin/python bench/bench_ops.py --long           # also the torch loop beyond 64k points (slow)
    .venv/bin/python bench/bench_ops.py --sizes 1000 10000 --repeats 3 --plot ""

FPS draws a fixed number of samples (--samples, 512) from clouds of growing size, so its cost should
grow linearly in N. Every backend is timed in the same repeat loop (interleaved, the order rotating each
repeat; calls under ~1 ms are timed 20 or 5 at a time and divided), and "vs fastest" is
pcdviz's median over the fastest library's median from this run. open3d's time includes building its
PointCloud from the numpy array (what a caller pays). kNN: the --centres nearest-K groups that the
model's tokenizer builds, from the same clouds.
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchutil as bu  # noqa: E402  (sets OMP_WAIT_POLICY before torch loads)

import numpy as np  # noqa: E402
import torch  # noqa: E402

from pcdviz import ops  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_cloud(n: int, seed: int = 0) -> np.ndarray:
    """Points on a noisy torus (float32): surface-like, as scans and mesh samples are."""
    rng = np.random.default_rng(seed)
    u, v = rng.uniform(0, 2 * np.pi, (2, n))
    pts = np.stack([(1 + 0.4 * np.cos(v)) * np.cos(u), (1 + 0.4 * np.cos(v)) * np.sin(u), 0.4 * np.sin(v)], 1)
    return (pts + rng.normal(0, 0.01, pts.shape)).astype(np.float32)


def fps_backends(long: bool) -> dict:
    """name -> (fn(points np (N,3), m) -> indices, max N it is run at)."""
    import fpsample

    out = {"pcdviz (auto)": (lambda p, m: ops.farthest_point_sample(torch.from_numpy(p)[None], m), None),
           "fpsample fps_sampling": (lambda p, m: fpsample.fps_sampling(p, m, start_idx=0), None)}

    def quick_raw(p, m):  # the library call alone, with its own (wrong) start point: the speed ceiling
        n = len(p)
        h = 3 if n < 4096 else 5 if n < 32768 else 7 if n < 524288 else 9
        return fpsample.bucket_fps_kdline_sampling(p, m, h=h, start_idx=0)

    out["fpsample QuickFPS (kdline)"] = (quick_raw, None)
    try:
        import open3d as o3d

        def o3d_fps(p, m):
            pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(p.astype(np.float64)))
            return pc.farthest_point_down_sample(m)

        out["open3d farthest_point_down_sample"] = (o3d_fps, None)
    except Exception as e:  # pragma: no cover - open3d cannot load on this machine
        print(f"(open3d unavailable: {e})")
    out["torch loop (pcdviz backend='torch')"] = (
        lambda p, m: ops.farthest_point_sample(torch.from_numpy(p)[None], m, backend="torch"),
        None if long else 65_536)
    return out


def bench_fps(sizes, m, repeats, long):
    backends = fps_backends(long)
    libs = [n for n in backends if not n.startswith(("pcdviz", "torch"))]
    times = {}  # (backend, N) -> [s]
    for n in sizes:
        p = make_cloud(n)
        active = {k: fn for k, (fn, cap) in backends.items() if cap is None or n <= cap}
        for fn in active.values():
            fn(p, m)  # warm-up
        r = repeats if n <= 100_000 else max(2, repeats // 2)
        inner = 20 if n <= 4_000 else 5 if n <= 16_000 else 1  # sub-millisecond calls are timed in groups
        names = list(active)
        for i in range(r):
            for k in names[i % len(names):] + names[:i % len(names)]:  # rotate the order: no backend always first
                fn = active[k]
                t = bu.timed(lambda: [fn(p, m) for _ in range(inner)], 1, warmup=0)[0] / inner
                times.setdefault((k, n), []).append(t)
    rows = []
    for n in sizes:
        fastest = min((bu.med(times[(k, n)]), k) for k in libs if (k, n) in times)
        ours = bu.med(times[("pcdviz (auto)", n)])
        rows.append([f"{n:,}"] + [bu.ms(times[(k, n)]) if (k, n) in times else "-" for k in backends]
                    + [f"{ours / fastest[0]:.2f}x ({fastest[1].split()[0]}{' QuickFPS' if 'Quick' in fastest[1] else ''})"])
    print(f"\nFPS of {m} samples from one cloud, ms: median (min-max) of {repeats} interleaved repeats "
          f"({max(2, repeats // 2)} above 100k points)")
    bu.print_table(["points"] + list(backends) + ["pcdviz vs fastest library"], rows)
    n_lo, n_hi = sizes[0], sizes[-1]
    growth = {k: bu.med(times[(k, n_hi)]) / bu.med(times[(k, n_lo)]) for k in backends if (k, n_hi) in times}
    print(f"growth from {n_lo:,} to {n_hi:,} points ({n_hi / n_lo:,.0f}x the points): "
          + ", ".join(f"{k.split(' (')[0]} {g:,.0f}x" for k, g in growth.items()))
    return times, list(backends)


def bench_batched_fps(repeats):
    """The model tokenizer's FPS: batches of small clouds (training) and the app's one 2048-point cloud."""
    import fpsample
    cases = [(64, 1024, 32, "tiny train: 2 global views x 32 shapes -> 32 centres"),
             (256, 256, 8, "tiny train: 8 local views x 32 shapes -> 8 centres"),
             (64, 1024, 64, "paper train: global views -> 64 centres"),
             (1, 2048, 1024, "app: a 2048-point cloud -> the model's 1024 inputs"),
             (1, 8192, 256, "8k-point model input -> 256 centres")]
    rows = []
    for b, n, m, what in cases:
        x = torch.from_numpy(np.stack([make_cloud(n, seed=i) for i in range(b)]))
        fns = {"pcdviz (auto)": lambda: ops.farthest_point_sample(x, m),
               "torch loop": lambda: ops.farthest_point_sample(x, m, backend="torch"),
               "fpsample per cloud": lambda: [fpsample.fps_sampling(c, m, start_idx=0) for c in x.numpy()]}
        ts = {k: [] for k in fns}
        for f in fns.values():
            f()
        for _ in range(repeats):
            for k, f in fns.items():
                ts[k] += bu.timed(f, 1, warmup=0)
        rows.append([what, f"{b} x {n:,} -> {m}"] + [bu.ms(ts[k]) for k in fns])
    print(f"\nBatched FPS as the model uses it, ms: median (min-max) of {repeats}")
    bu.print_table(["use", "batch x points -> samples"] + list(fns), rows, align="llrrr")


def bench_batched_knn(k, repeats):
    """The tokenizer's kNN on its batches: ops.knn now (numpy k-smallest) and before (torch.topk), interleaved."""
    cases = [(64, 1024, 32, "tiny train: 2 global views x 32 shapes, 32 centres"),
             (256, 256, 8, "tiny train: 8 local views x 32 shapes, 8 centres"),
             (16, 1024, 64, "paper train (batch 8): global views, 64 centres"),
             (1, 1024, 32, "app: the tiny model's 1024 inputs, 32 centres")]
    rows, limit = [], ops._SMALLEST_K_NUMPY_MAX_N
    try:
        for b, n, g, what in cases:
            x = torch.from_numpy(np.stack([make_cloud(n, seed=i) for i in range(b)]))
            c = ops.index_points(x, ops.farthest_point_sample(x, g))
            ts = {"now": [], "before": []}
            for i in range(repeats + 1):
                for name in ts:
                    ops._SMALLEST_K_NUMPY_MAX_N = limit if name == "now" else 0
                    t = bu.timed(lambda: ops.knn(c, x, k), 1, warmup=0)
                    if i:
                        ts[name] += t
            rows.append([what, f"{b} x {n:,}, {g} x {k}", bu.ms(ts["now"]), bu.ms(ts["before"]),
                         f"{bu.med(ts['before']) / bu.med(ts['now']):.2f}x"])
    finally:
        ops._SMALLEST_K_NUMPY_MAX_N = limit
    print(f"\nBatched kNN as the model uses it, ms: median (min-max) of {repeats}, interleaved")
    bu.print_table(["use", "batch x points, centres x k", "pcdviz knn (numpy k-smallest)", "before: torch.topk",
                    "gain"], rows, align="llrrr")


def bench_knn(sizes, centres, k, repeats):
    """kNN groups: `centres` FPS centres, their k nearest points, as ops.group builds them."""
    from scipy.spatial import cKDTree
    times, rows = {}, []
    for n in sizes:
        p = make_cloud(n)
        x = torch.from_numpy(p)[None]
        c_idx = ops.farthest_point_sample(x, centres)
        c = ops.index_points(x, c_idx)
        fns = {"pcdviz knn (matmul + k smallest)": lambda: ops.knn(c, x, k),
               "scipy cKDTree (build + query)": lambda: cKDTree(p).query(c[0].numpy(), k=k),
               "pcdviz group (FPS + kNN + gather)": lambda: ops.group(x, centres, k)}
        for f in fns.values():
            f()
        r = repeats if n <= 100_000 else max(2, repeats // 2)
        for _ in range(r):
            for name, f in fns.items():
                times.setdefault((name, n), []).extend(bu.timed(f, 1, warmup=0))
        rows.append([f"{n:,}"] + [bu.ms(times[(name, n)]) for name in fns])
    print(f"\nkNN grouping: {centres} centres x {k} neighbours from one cloud, ms: median (min-max)")
    bu.print_table(["points"] + list(fns), rows)
    return times, list(fns)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_000, 4_000, 16_000, 64_000, 250_000, 1_000_000])
    ap.add_argument("--samples", type=int, default=512)
    ap.add_argument("--centres", type=int, default=64)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--long", action="store_true", help="run the torch loop at every size")
    ap.add_argument("--plot", default=os.path.join(REPO, "docs", "bench-ops.png"), help="PNG path ('' = none)")
    args, _ = ap.parse_known_args(argv)  # `pcdviz bench` passes its arguments to every script
    torch.set_num_threads(args.threads)
    print(bu.header("bench_ops"))
    fps_t, fps_names = bench_fps(args.sizes, args.samples, args.repeats, args.long)
    bench_batched_fps(args.repeats)
    bench_batched_knn(args.k, args.repeats)
    knn_t, knn_names = bench_knn(args.sizes, args.centres, args.k, args.repeats)
    if args.plot:
        def series(times, names):
            return {k: [(n, bu.med(times[(k, n)]) * 1e3) for n in args.sizes if (k, n) in times] for k in names}
        bu.loglog_png(args.plot, [
            {"title": f"FPS: {args.samples} samples from N points (median ms, {args.threads} threads)",
             "xlabel": "points N", "ylabel": "ms", "series": series(fps_t, fps_names)},
            {"title": f"kNN groups: {args.centres} centres x {args.k} neighbours (median ms)",
             "xlabel": "points N", "ylabel": "ms", "series": series(knn_t, knn_names)}])
        print(f"\nplot: {os.path.relpath(args.plot, REPO)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
