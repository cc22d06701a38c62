"""Model speed: one forward pass with every layer's attention per preset and input size, and file -> figure.

    .venv/bin/python bench/bench_model.py                # all presets at 1k, 2k, 8k points; ~1 min
    .venv/bin/python bench/bench_model.py --presets tiny --repeats 30 --sizes 2048
    .venv/bin/python bench/bench_model.py --train-presets tiny   # + the old per-view training rows
                                                                 # (bench_train.py measures real training steps)

Rows (medians and min-max over repeats, 2 torch threads unless --threads; `--threads 1 2` runs both):
- "forward N": N points are the model input (G = groups_for(N) patches), one forward pass with every
  layer's attention (AttentionMaps.from_model), then one CLS map projected onto the N points (to_points).
- "app 2048": what the explorer does for a 2048-point cloud: FPS to the preset's n_points, then the same.
- file -> figure: the explorer's whole path for a new file (pcdviz.explorer.Explorer: load_upload, FPS,
  model, maps, projection to every displayed point, plotly figure, its JSON), a new file each repeat.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

# On a shared machine, OpenMP's default spin-waiting makes 2-thread torch pathologically slow whenever
# another process holds a core (measured: tiny forward 502 ms spinning vs 12 ms passive). benchutil sets
# OMP_WAIT_POLICY=PASSIVE before torch loads; an explicit OMP_WAIT_POLICY in the environment wins.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchutil as bu  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from pcdviz.model import PointViT, DINOHead, count_parameters, preset  # noqa: E402
from pcdviz.ops import farthest_point_sample  # noqa: E402

try:
    from pcdviz.attention import AttentionMaps
except Exception:  # attention.py not importable: a nearest-centre projection stands in
    AttentionMaps = None


def cloud(n: int, seed: int = 0) -> np.ndarray:
    """A normalised test cloud: points on a noisy torus-and-sphere shape (structure matters little for speed)."""
    rng = np.random.default_rng(seed)
    u, v = rng.uniform(0, 2 * np.pi, (2, n))
    pts = np.stack([(1 + 0.4 * np.cos(v)) * np.cos(u), (1 + 0.4 * np.cos(v)) * np.sin(u), 0.4 * np.sin(v)], 1)
    pts += rng.normal(0, 0.01, pts.shape)
    pts -= pts.mean(0)
    return (pts / np.linalg.norm(pts, axis=1).max()).astype(np.float32)


def maps_and_projection(model: PointViT, pts: np.ndarray, display: np.ndarray) -> np.ndarray:
    """One forward pass with all attention, then the last layer's mean-head CLS map on every display point."""
    if AttentionMaps is not None:
        maps = AttentionMaps.from_model(model, pts)
        return maps.to_points(maps.cls_to_patches(-1, "mean"), display)
    with torch.no_grad():
        out = model(torch.from_numpy(pts)[None], return_attention=True)
    values = out.attentions[-1][0, :, 0, 1:].mean(0).numpy()
    centers = out.centers[0].numpy()
    d = (display ** 2).sum(1, keepdims=True) - 2 * display @ centers.T + (centers ** 2).sum(1)
    return values[d.argmin(1)]


def timed(fn, repeats: int, warmup: int = 2) -> list[float]:
    """Wall times in ms of repeated calls, after warm-up."""
    return [t * 1e3 for t in bu.timed(fn, repeats, warmup)]


def fmt(ts: list[float]) -> str:
    return f"{statistics.median(ts):8.1f} ms  ({min(ts):.1f}-{max(ts):.1f})"


def bench_maps(name: str, repeats: int, sizes: list[int]) -> list[str]:
    torch.manual_seed(0)
    model = PointViT(preset(name)).eval()
    cfg = model.config
    full = cloud(2048)

    def app_path():
        idx = farthest_point_sample(torch.from_numpy(full)[None], cfg.n_points)[0].numpy()
        return maps_and_projection(model, full[idx], full)

    rows = [f"{name:6s} {count_parameters(model) / 1e6:5.2f}M  app 2048 ({cfg.n_points} in, "
            f"G={cfg.n_groups})         {fmt(timed(app_path, repeats))}"]
    for n in sizes:
        pts = cloud(n)
        rows.append(f"{name:6s} {'':6s} forward {n:5d} (G={cfg.groups_for(n):3d})             "
                    f"{fmt(timed(lambda: maps_and_projection(model, pts, pts), repeats))}")
    return rows


def bench_file_to_figure(repeats: int, sizes: list[int], checkpoints: str) -> list[str]:
    """Explorer.load_upload + view + figure JSON for new binary PLY files of each size (shipped checkpoint).

    Interleaved with the same path on vanilla FPS ("before": what io.resample ran before QuickFPS), so
    the ratio is measured side by side.
    """
    import shutil
    import tempfile
    from pathlib import Path

    from pcdviz import ops
    from pcdviz.explorer import Explorer
    from pcdviz.io import save_ply

    ex = Explorer(Path(checkpoints))
    ck = ex.usable_checkpoints()[0]
    tmp = Path(tempfile.mkdtemp(prefix="pcdviz-bench-model-"))
    rows, quick_from = [], ops.QUICKFPS_MIN_SAMPLES
    try:
        ex.view(ck, ex.load_shape("chair", 0, 2048).cloud_id)  # imports, model load
        for n in sizes:
            ts = {"now": [], "before": []}
            for i in range(repeats + 1):
                for name in ts:
                    f = tmp / f"cloud_{n}_{name}_{i}.ply"  # new contents each time: no cache hit
                    save_ply(f, cloud(n, seed=100 + 2 * i + (name == "before")))
                    ops.QUICKFPS_MIN_SAMPLES = quick_from if name == "now" else 1 << 62
                    t = time.perf_counter()
                    len(ex.view(ck, ex.load_upload(f).cloud_id).figure.to_json())
                    if i:  # the first round is a warm-up
                        ts[name].append((time.perf_counter() - t) * 1e3)
                    f.unlink()
            rows.append(f"file -> figure, binary PLY {n:>9,} pts ({ck})   {fmt(ts['now'])}   "
                        f"[vanilla FPS, before: {fmt(ts['before']).strip()}; {statistics.median(ts['before']) / statistics.median(ts['now']):.2f}x]")
    finally:
        ops.QUICKFPS_MIN_SAMPLES = quick_from
        shutil.rmtree(tmp, ignore_errors=True)
    return rows


def bench_train(name: str, repeats: int, batch: int = 32) -> list[str]:
    torch.manual_seed(0)
    model = PointViT(preset(name)).train()
    head = DINOHead(model.embed_dim, out_dim=512)
    opt = torch.optim.AdamW(list(model.parameters()) + list(head.parameters()), lr=1e-4)
    rows, per_view = [], {}
    for kind, n in (("global", model.config.n_points), ("local", model.config.n_points // 4)):
        x = torch.from_numpy(np.stack([cloud(n, seed=i) for i in range(batch)]))

        def step():
            logits = head(model(x).cls)
            loss = -(logits.softmax(-1).detach() * logits.log_softmax(-1)).sum(-1).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        ts = timed(step, repeats, warmup=1)
        med = statistics.median(ts)
        per_view[kind] = med / 1e3 / batch
        rows.append(f"{name:6s} train {kind:6s} {n:4d} pts, batch {batch}: {batch / (med / 1e3):6.0f} views/s  "
                    f"(step {fmt(ts).strip()})")
    s = 2 * per_view["global"] + 8 * per_view["local"]
    rows.append(f"{name:6s} train multi-crop (2 global + 8 local student views): {s:.4f} s/shape, "
                f"{1 / s:.0f} shapes/s before the teacher's passes")
    return rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", nargs="+", default=["tiny", "small", "paper"])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048, 8192])
    ap.add_argument("--file-sizes", type=int, nargs="*", default=[2048, 100_000, 1_000_000])
    ap.add_argument("--checkpoints", default=os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                                          "checkpoints"))
    ap.add_argument("--train-presets", nargs="*", default=[])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--train-repeats", type=int, default=8)
    ap.add_argument("--threads", type=int, nargs="+", default=[2],
                    help="torch thread counts to run (on a busy shared machine, 1 thread is steadier than 2)")
    args, _ = ap.parse_known_args(argv)  # `pcdviz bench` passes its arguments to every script
    proj = "AttentionMaps.from_model + to_points" if AttentionMaps is not None else "nearest-centre stand-in"
    print(bu.header("bench_model") + f"\n# projection: {proj}")
    for threads in args.threads:
        torch.set_num_threads(threads)
        print(f"\n[{threads} thread{'s' if threads > 1 else ''}] one forward pass with all attention + projection: "
              "median ms (min-max)")
        for name in args.presets:
            for row in bench_maps(name, args.repeats, args.sizes):
                print(row, flush=True)
        for row in bench_file_to_figure(max(3, args.repeats // 3), args.file_sizes, args.checkpoints):
            print(row, flush=True)
        for name in args.train_presets:
            for row in bench_train(name, args.train_repeats):
                print(row, flush=True)


if __name__ == "__main__":
    main()
