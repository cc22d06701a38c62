"""Model speed: attention maps for the explorer, and pre-training throughput of the tiny preset.

    .venv/bin/python bench/bench_model.py                # all presets, default repeats
    .venv/bin/python bench/bench_model.py --presets tiny --repeats 30

Rows (medians and min-max over repeats, 2 torch threads unless --threads; `--threads 1 2` runs both):
- "app 2048": a 2048-point cloud is FPS'd to the preset's n_points, one forward with every layer's
  attention (AttentionMaps.from_model), one CLS map projected back onto all 2048 points (to_points).
- "direct 2048": the 2048 points are the model input (twice the groups), same maps and projection.
- train: student forward + backward + AdamW step with a DINO head, batch 32, global (n_points) and
  local (n_points/4) views; "s/shape" is 2 global + 8 local student views per shape.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

# On a shared machine, OpenMP's default spin-waiting makes 2-thread torch pathologically slow whenever
# another process holds a core (measured: tiny forward 502 ms spinning vs 12 ms passive). Must be set
# before torch loads; an explicit OMP_WAIT_POLICY in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

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
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1e3)
    return out


def fmt(ts: list[float]) -> str:
    return f"{statistics.median(ts):8.1f} ms  ({min(ts):.1f}-{max(ts):.1f})"


def bench_maps(name: str, repeats: int) -> list[str]:
    torch.manual_seed(0)
    model = PointViT(preset(name)).eval()
    full = cloud(2048)
    cfg = model.config

    def app_path():
        idx = farthest_point_sample(torch.from_numpy(full)[None], cfg.n_points)[0].numpy()
        return maps_and_projection(model, full[idx], full)

    rows = [f"{name:6s} {count_parameters(model) / 1e6:5.2f}M  app 2048 ({cfg.n_points} in, "
            f"G={cfg.n_groups})      {fmt(timed(app_path, repeats))}"]
    rows.append(f"{name:6s} {'':6s} direct 2048 (2048 in, G={cfg.groups_for(2048)})    "
                f"{fmt(timed(lambda: maps_and_projection(model, full, full), repeats))}")
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
    ap.add_argument("--train-presets", nargs="*", default=["tiny"])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--train-repeats", type=int, default=8)
    ap.add_argument("--threads", type=int, nargs="+", default=[2],
                    help="torch thread counts to run (on a busy shared machine, 1 thread is steadier than 2)")
    args = ap.parse_args(argv)
    proj = "AttentionMaps.from_model + to_points" if AttentionMaps is not None else "nearest-centre stand-in"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, load average {load:.1f}, "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}, projection: {proj}")
    for threads in args.threads:
        torch.set_num_threads(threads)
        print(f"\n[{threads} thread{'s' if threads > 1 else ''}] attention maps + projection to 2048 points: "
              "median (min-max)")
        for name in args.presets:
            for row in bench_maps(name, args.repeats):
                print(row, flush=True)
        for name in args.train_presets:
            for row in bench_train(name, args.train_repeats):
                print(row, flush=True)


if __name__ == "__main__":
    main()
