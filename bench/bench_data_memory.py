"""Data-loading memory per DataLoader worker: arithmetic for a ShapeNet-55-sized run, and a measurement on a
scaled-down copy in the release's exact layout.

    python bench/bench_data_memory.py                 # 3000 shapes, 2 workers (about a minute on 2 cores)
    python bench/bench_data_memory.py --shapes 600    # quicker

Each worker is a process with its own copy of whatever a reader caches, so a cache that keeps every
shape it has seen costs (workers + 1) x the processed data set. The measurement iterates one epoch of
each reader through a DataLoader and reports each worker's growth in unique memory (USS, psutil); the
growth of the reader without a cache (first row) is what a worker's own allocations add anyway:
  ShapeNet55                the pre-training reader: reads each .npy on use, caches nothing
  folder, unbounded cache   PointCloudFolder with a cache larger than the data set (the old dict cache)
  folder, cache_mb bound    PointCloudFolder with the BoundedCache at --cache-mb
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import psutil  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))   # tests/layouts.py writes the copy
sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchutil as bu  # noqa: E402

SHAPENET55_TRAIN = 41952   # lines of Point-BERT's ShapeNet-55/train.txt
MB = 2**20


class Points(torch.utils.data.Dataset):
    def __init__(self, ds):
        self.ds = ds

    def __len__(self):
        return len(self.ds)

    def __getitem__(self, i):
        return torch.as_tensor(self.ds[i]["points"])


def worker_growth(dataset, workers: int, batch: int) -> tuple[list[float], float]:
    """(USS growth in MB of each worker from its first batch to the end of one epoch, seconds)."""
    loader = torch.utils.data.DataLoader(Points(dataset), batch_size=batch, num_workers=workers,
                                         prefetch_factor=2, persistent_workers=False)
    t0 = time.perf_counter()
    it = iter(loader)
    next(it)
    procs = [psutil.Process(w.pid) for w in it._workers]
    start = [p.memory_full_info().uss for p in procs]
    end = start
    for _ in it:
        end = [p.memory_full_info().uss for p in procs]   # sampled while the workers are alive
    return [(e - s) / MB for s, e in zip(start, end)], time.perf_counter() - t0


def arithmetic(points: int, workers: int, cache_mb: float) -> list[str]:
    per_shape = points * 3 * 4
    full = SHAPENET55_TRAIN * per_shape / MB
    raw = SHAPENET55_TRAIN * 8192 * 3 * 4 / MB
    return [f"ShapeNet-55 train split: {SHAPENET55_TRAIN} shapes; the .npy files hold {raw:.0f} MB "
            f"({8192 * 3 * 4 / 1024:.0f} KB each: 8192 x 3 float32)",
            f"processed at {points} points: {per_shape / 1024:.0f} KB per shape, {full:.0f} MB for the split",
            f"a cache of every shape per process, {workers} workers + the main process: {(workers + 1) * full:.0f} MB",
            f"ShapeNet55 reader (no cache): 0 MB of cache per process; the page cache holds the files once",
            f"BoundedCache at cache_mb={cache_mb:g} (text/mesh readers): at most {(workers + 1) * cache_mb:.0f} MB"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shapes", type=int, default=3000, help="shapes in the scaled-down copy")
    p.add_argument("--points", type=int, default=2048, help="points per processed shape (the recipes' data_points)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--cache-mb", type=float, default=8.0, help="the bound measured on the copy")
    p.add_argument("--paper-workers", type=int, default=8, help="workers in the arithmetic (the paper recipe's)")
    p.add_argument("--paper-cache-mb", type=float, default=256.0, help="cache_mb in the arithmetic (the default)")
    args = p.parse_args(argv)

    import layouts
    from pcdviz.data import PointCloudFolder, ShapeNet55
    # pcdviz.io hands FPS a read-only array (a memory-mapped .npy); torch warns once per worker, harmlessly
    warnings.filterwarnings("ignore", message="The given NumPy array is not writable")

    print(bu.header("bench_data_memory"))
    print("## arithmetic, a ShapeNet-55-sized run")
    for line in arithmetic(args.points, args.paper_workers, args.paper_cache_mb):
        print("  " + line)
    with tempfile.TemporaryDirectory() as tmp:
        per_class = args.shapes // len(layouts.SYNSETS)
        root = layouts.write_shapenet55(Path(tmp), train_per_class=per_class, test_per_class=0)
        # the same files as class folders (synset -> folder), for the folder reader and its cache
        folder = Path(tmp) / "folders"
        for f in (root / "shapenet_pc").glob("*.npy"):
            (folder / f.name.split("-")[0]).mkdir(parents=True, exist_ok=True)
            (folder / f.name.split("-")[0] / f.name).symlink_to(f)
        n = per_class * len(layouts.SYNSETS)
        processed = n * args.points * 12 / MB
        print(f"\n## measured: {n} shapes ({processed:.1f} MB processed at {args.points} points), {args.workers} workers,"
              f" batch {args.batch}, one epoch; USS growth per worker from its first batch to the end")
        print(f"  {'reader':<28} {'growth per worker (MB)':>24} {'expected':>22} {'seconds':>8}")
        cases = [("ShapeNet55", ShapeNet55(root, "train", args.points), "0 (no cache)"),
                 ("folder, unbounded cache", PointCloudFolder(folder, args.points, cache_mb=1e6),
                  f"~{processed / args.workers:.1f} (its share)"),
                 (f"folder, cache_mb={args.cache_mb:g}", PointCloudFolder(folder, args.points, cache_mb=args.cache_mb),
                  f"<= {args.cache_mb:g} + the 1st row")]
        for name, ds, expected in cases:
            growth, seconds = worker_growth(ds, args.workers, args.batch)
            print(f"  {name:<28} {', '.join(f'{g:.1f}' for g in growth):>24} {expected:>22} {seconds:8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
