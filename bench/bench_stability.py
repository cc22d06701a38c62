"""Stable maps: the same map for any point order, and under small jitter; what averaging patchings costs.

    nice -n 10 .venv/bin/python bench/bench_stability.py [--checkpoint dwc-tiny] [--perms 4] [--jitters 3]

Files: the real files in ../shared/samples (PROVENANCE.md there) and the meshes in Gradio's wheel; a mesh is
sampled on its surface as pcdviz.io loads it. Each file's points are saved as .npy in --perms random point
orders and loaded through the Explorer as uploads, as a person would. The map: CLS -> patches, last layer,
mean of heads, one value per point (Explorer.view's display values), compared in the file's point order.

- order overlap: for every pair of orders, |top 10% of points in one ∩ in the other| / (10% of N); mean
  and minimum over the pairs (1 = the same most-attended points whatever the order).
- jitter rho: Spearman rank correlation over the points between the map of the file and the map after every
  point moved by 0.5% of the object's size (bounding-box diagonal) in a random direction; mean over
  --jitters draws (1 = the same ranking). Beside it, "input spacing": the median nearest-neighbour distance
  among the distinct points of the model's input (FPS to its size), as a share of the diagonal; where it is
  near the jitter's 0.5 %, the jitter reshapes the cloud at the resolution the model sees it.
- jitter colour change: mean and largest |map after - map before| over the points, as a share of the map's
  range (max - min), mean over the draws: how far a colour moves on the colour bar (0 = the same picture).
  Where most points share nearly one value, a rank correlation counts reorderings no colour shows.
Variants: "index0" is the old rule (FPS from the file's first point, for the input and the centres);
"geometric" starts at the point farthest from the centroid; "xK" averages the per-point maps of K patchings,
each projected to the points by the smooth rule when K > 1 (pcdviz/attention.py's docstring).
Latency: server time (Explorer.view + the figure's JSON) at 2,048 points (new synthetic chairs) and for a
1M-point upload shown as 100,000 points, medians of one run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
import benchutil as bu  # noqa: E402  (sets OMP_WAIT_POLICY before torch loads)

from pcdviz.explorer import Explorer, ViewSettings, gradio_assets_dir, resolve_up  # noqa: E402

SAMPLES = REPO.parent / "shared" / "samples"
VARIANTS = [("index0 x1", "index0", 1), ("geometric x1", "geometric", 1), ("geometric x4", "geometric", 4),
            ("geometric x8", "geometric", 8), ("geometric x16", "geometric", 16), ("geometric x32", "geometric", 32)]


def files() -> list[Path]:
    """The real files: ../shared/samples, then Gradio's meshes."""
    from pcdviz import io

    out = sorted(p for p in SAMPLES.glob("*") if p.suffix.lower() in io.SUPPORTED_EXTENSIONS) if SAMPLES.is_dir() else []
    g = gradio_assets_dir()
    if g is not None:
        out += sorted(p for p in g.iterdir() if p.suffix.lower() in io.SUPPORTED_EXTENSIONS)
    return out


def point_map(ex: Explorer, ckpt: str, path: Path, settings: ViewSettings) -> np.ndarray:
    """The per-point map of a file uploaded through the Explorer, in the file's point order."""
    cloud = ex.load_upload(path)
    return ex.view(ckpt, cloud.cloud_id, settings).panels[0].values.astype(np.float64)


def top_overlap(a: np.ndarray, b: np.ndarray, share: float = 0.1) -> float:
    """|top share of a ∩ top share of b| / k (ties broken by point index, the same in both)."""
    k = max(1, int(np.ceil(share * len(a))))
    ta = np.argsort(-a, kind="stable")[:k]
    tb = np.argsort(-b, kind="stable")[:k]
    return len(np.intersect1d(ta, tb)) / k


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def jittered(points: np.ndarray, rng: np.random.Generator, share: float = 0.005) -> np.ndarray:
    """Every point moved by share x the bounding-box diagonal, in a uniformly random direction."""
    size = float(np.linalg.norm(points.max(0) - points.min(0)))
    d = rng.normal(size=points.shape)
    d /= np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-12)
    return (points.astype(np.float64) + share * size * d).astype(np.float32)


def stability(ex: Explorer, ckpt: str, path: Path, tmp: Path, perms: int, jitters: int) -> dict:
    """Per variant: (order overlap mean, min, jitter rho mean) for one file."""
    from pcdviz import io

    pc = io.load_point_cloud(path, decimate_to=ex.display_max)
    pts = np.ascontiguousarray(pc.points, dtype=np.float32)
    up = resolve_up(str(pc.info.get("format", "")))[0]   # the file's own auto axis, not the .npy's
    rng = np.random.default_rng(0)
    orders = [rng.permutation(len(pts)) for _ in range(perms)]
    order_files, jitter_files = [], []
    for i, perm in enumerate(orders):
        np.save(tmp / f"{path.stem}_perm{i}.npy", pts[perm])
        order_files.append(tmp / f"{path.stem}_perm{i}.npy")
    np.save(tmp / f"{path.stem}_orig.npy", pts)
    for j in range(jitters):
        np.save(tmp / f"{path.stem}_jit{j}.npy", jittered(pts, rng))
        jitter_files.append(tmp / f"{path.stem}_jit{j}.npy")
    from scipy.spatial import cKDTree

    # the model's input as it samples it (distinct points): how far apart the points it sees lie, against the
    # jitter's 0.5 % (a 20,000-point mesh gives it 1,024 of them; a 100-point file all 100, repeated)
    seen = pts[np.unique(io.resample(pts, int(ex.model(ckpt)[0].config.n_points), method="fps", start="geometric"))]
    nn = cKDTree(seen).query(seen, 2)[0][:, 1]
    out = {"n": len(pts), "up": up, "spacing": float(np.median(nn) / np.linalg.norm(np.ptp(pts, 0)))}
    for name, start, k in VARIANTS:
        s = ViewSettings(fps_start=start, patchings=k, up=up)
        maps = []
        for perm, f in zip(orders, order_files):
            back = np.empty(len(pts))
            back[perm] = point_map(ex, ckpt, f, s)   # the value of file point perm[i] is the i-th value
            maps.append(back)
        pairs = [top_overlap(maps[i], maps[j]) for i in range(len(maps)) for j in range(i + 1, len(maps))]
        base = point_map(ex, ckpt, tmp / f"{path.stem}_orig.npy", s)
        after = [point_map(ex, ckpt, f, s) for f in jitter_files]
        rhos = [spearman(base, a) for a in after]
        moved = [np.abs(a - base) / max(float(np.ptp(base)), 1e-12) for a in after]
        out[name] = (statistics.mean(pairs), min(pairs), statistics.mean(rhos),
                     statistics.mean(float(m.mean()) for m in moved), statistics.mean(float(m.max()) for m in moved))
    ex.clouds.clear()
    ex.maps_cache.clear()
    ex.more_patchings.clear()
    return out


def latency_rows(ex: Explorer, ckpt: str, shown: str, variants, new_clouds, heads: int) -> list[list]:
    """Per variant: medians of the first view of each new cloud (K forward passes) and of `heads` head changes
    after it, server ms; ratio = head change / the first variant's; the page's JSON for the last view (the
    figure and the maps it recolours from, pagedata.page_payload). new_clouds(start, k) yields the clouds."""
    from pcdviz.pagedata import page_payload

    rows, base = [], None
    for name, start, k in variants:
        first, change = [], []
        for cloud in new_clouds(start, k):
            for i, head in enumerate(["mean", *map(str, range(heads))]):   # "mean": the default, the first view
                t0 = time.perf_counter()
                view = ex.view(ckpt, cloud.cloud_id, ViewSettings(fps_start=start, patchings=k, head=head))
                view.figure.to_json()
                (change if i else first).append((time.perf_counter() - t0) * 1000)
        med_change = statistics.median(change)
        base = base or med_change
        page_mb = len(page_payload(ex, view, ckpt)) / 1e6
        rows.append([name, shown, f"{statistics.median(first):.1f}", f"{med_change:.1f}", f"{med_change / base:.2f}",
                     f"{page_mb:.2f}"])
    return rows


def latency(ex: Explorer, ckpt: str, repeats: int) -> list[list]:
    """The latency table: new 2,048-point chairs, then 1M-point uploads shown decimated to 100,000 points."""
    def chairs(start, k):   # a new cloud: the model runs
        return (ex.load_shape("chair", 1000 + 100 * k + r, 2048) for r in range(repeats))

    def big_uploads(start, k):   # new bytes: a new cloud, the model runs
        for r in range(2):
            path = Path(tmp) / f"big{k}{start}{r}.npy"
            np.save(path, np.random.default_rng(100 * k + r).normal(size=(1_000_000, 3)).astype(np.float32))
            yield ex.load_upload(path)

    rows = latency_rows(ex, ckpt, "2,048", VARIANTS, chairs, heads=6)
    with tempfile.TemporaryDirectory() as tmp:
        rows += latency_rows(ex, ckpt, "100,000 (1M file)", [v for v in VARIANTS if v[2] in (1, 16)], big_uploads,
                             heads=3)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoints", type=Path, default=REPO / "checkpoints")
    ap.add_argument("--checkpoint", default="dwc-tiny")
    ap.add_argument("--perms", type=int, default=4)
    ap.add_argument("--jitters", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=5, help="new clouds per variant in the latency table")
    ap.add_argument("--only", default="", help="comma-separated file names (default: all)")
    args = ap.parse_args(argv)
    print(bu.header("bench_stability"))
    ex = Explorer(args.checkpoints, max_clouds=64, max_maps=256, max_patching_sets=64)
    if args.checkpoint not in ex.usable_checkpoints():
        print(f"bench_stability: no usable checkpoint {args.checkpoint!r} in {args.checkpoints}", file=sys.stderr)
        return 1
    chosen = [f for f in files() if not args.only or f.name in args.only.split(",")]
    if not chosen:
        print(f"bench_stability: no sample files (looked in {SAMPLES} and Gradio's media_assets)", file=sys.stderr)
        return 1
    print(f"checkpoint {args.checkpoint}; {args.perms} point orders and {args.jitters} jitters (0.5% of the "
          f"bounding-box diagonal) per file; map: CLS -> patches, last layer, mean of heads, per point\n")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for f in chosen:
            t0 = time.perf_counter()
            r = stability(ex, args.checkpoint, f, Path(tmp), args.perms, args.jitters)
            results.append((f, r))
            print(f"  {f.name}: {r['n']:,} points, up {r['up']}, {time.perf_counter() - t0:.0f} s", file=sys.stderr)

    names = [v[0] for v in VARIANTS]
    print("order overlap: top-10% points shared between point orders, mean (min) over pairs\n")
    bu.print_table(["file", "points"] + names,
                   [[f.name, f"{r['n']:,}"] + [f"{r[n][0]:.3f} ({r[n][1]:.3f})" for n in names] for f, r in results])
    print("\njitter rho: Spearman rank correlation of the map before / after a 0.5% jitter, mean over draws; "
          "input spacing: median nearest-neighbour distance in the model's input / diagonal\n")
    bu.print_table(["file", "points", "input spacing"] + names,
                   [[f.name, f"{r['n']:,}", f"{100 * r['spacing']:.2f}%"] + [f"{r[n][2]:.3f}" for n in names]
                    for f, r in results])
    print("\njitter colour change: mean (largest) |after - before| over the points / the map's range, mean over "
          "draws\n")
    bu.print_table(["file", "points"] + names,
                   [[f.name, f"{r['n']:,}"] + [f"{r[n][3]:.3f} ({r[n][4]:.3f})" for n in names] for f, r in results])
    print("\nover all files: worst order overlap (min over pairs and files), mean and worst jitter rho\n")
    bu.print_table(["variant", "worst order overlap", "mean jitter rho", "worst jitter rho"],
                   [[n, f"{min(r[n][1] for _, r in results):.3f}",
                     f"{statistics.mean(r[n][2] for _, r in results):.3f}",
                     f"{min(r[n][2] for _, r in results):.3f}"] for n in names])
    print("\nserver ms (Explorer.view + figure JSON), medians: first view of a new cloud (the model runs once per "
          "patching), head change; ratio = head change / index0 x1's at the same size; page JSON: what the page gets "
          "for the view (figure and maps)\n")
    bu.print_table(["variant", "points shown", "first view ms", "head change ms", "ratio", "page JSON MB"],
                   latency(ex, args.checkpoint, args.repeats))
    return 0


if __name__ == "__main__":
    sys.exit(main())
