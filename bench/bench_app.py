"""Explorer app: server time per event, figure payload per displayed point, peak memory.

    .venv/bin/python bench/bench_app.py [--repeats 7] [--checkpoints checkpoints] [--no-client]

"server ms" is what one event costs the server: the Explorer call plus turning the figure into the JSON
gr.Plot sends (plotly's to_json, what Gradio's postprocess runs). "round trip ms" is the same event
through the launched app and gradio_client on loopback (queue, HTTP, JSON decode in the client).
Each row: median (min-max) over --repeats runs in this one process. Warm rows reuse the cached maps;
"new cloud" rows use a fresh cloud each repetition (a new seed / new file), so the model runs.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import socket
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

from pcdviz.explorer import Explorer, ViewSettings  # noqa: E402


def timed(fn, repeats: int) -> list[float]:
    """Milliseconds of fn(i) for i in range(repeats)."""
    out = []
    for i in range(repeats):
        t0 = time.perf_counter()
        fn(i)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def fmt(ms: list[float]) -> str:
    return f"{statistics.median(ms):8.1f} ({min(ms):.1f}-{max(ms):.1f})"


def checkpoints_for_bench(src: Path, tmp: Path, n: int = 4) -> Path:
    """The usable checkpoints of src, topped up to n with random tiny ones (different seeds)."""
    import torch

    from pcdviz.checkpoints import save_checkpoint, scan_checkpoints
    from pcdviz.model import PointViT, preset

    root = tmp / "ckpts"
    root.mkdir()
    usable = [i for i in scan_checkpoints(src) if not i.error] if src.is_dir() else []
    for info in usable[:n]:
        shutil.copytree(info.path, root / info.name.replace("/", "_"))
    for k in range(n - min(n, len(usable))):
        torch.manual_seed(100 + k)
        save_checkpoint(root / f"bench-random-{k}", PointViT(preset("tiny")), {"method": "random"})
    return root


def view_ms(ex: Explorer, ckpt: str, cloud_id: str, s: ViewSettings, compare=None) -> tuple[object, int]:
    v = ex.view(ckpt, cloud_id, s, compare)
    return v, len(v.figure.to_json())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--checkpoints", default=str(REPO / "checkpoints"))
    p.add_argument("--no-client", action="store_true", help="skip the round trips through a launched app")
    p.add_argument("--torch-threads", type=int, default=None,
                   help="torch threads (default: what `pcdviz app` uses, CPUs / 2 concurrent events; 0 = torch's)")
    args, _ = p.parse_known_args(argv)  # `pcdviz bench` passes its arguments to every bench script
    import torch

    from pcdviz.app import default_torch_threads

    threads = default_torch_threads(2) if args.torch_threads is None else args.torch_threads
    if threads > 0:
        torch.set_num_threads(threads)
    R = max(1, args.repeats)
    tmp = Path(tempfile.mkdtemp(prefix="pcdviz-bench-app-"))
    rows: list[tuple[str, str, str]] = []
    sizes: list[tuple[str, int, int]] = []
    try:
        root = checkpoints_for_bench(Path(args.checkpoints), tmp)
        ex = Explorer(root)
        names = ex.usable_checkpoints()[:4]
        ck = names[0]
        t0 = time.perf_counter()
        ex.view(ck, ex.load_shape("chair", 0, 2048).cloud_id)  # imports, first model load, plotly validators
        warmup_ms = (time.perf_counter() - t0) * 1000

        def new_cloud(n):
            def run(i):
                c = ex.load_shape("airplane", 1000 + i + n, n)
                view_ms(ex, ck, c.cloud_id, ViewSettings())
            return run

        rows.append(("new cloud, 2,048 pts (shape + FPS + model + figure)", fmt(timed(new_cloud(2048), R)), ""))
        rows.append(("new cloud, 10,000 pts", fmt(timed(new_cloud(10_000), R)), ""))

        chair = ex.load_shape("chair", 0, 2048).cloud_id
        heads = [str(h) for h in range(6)] + ["mean", "max"]
        rows.append(("change head, 2,048 pts", fmt(timed(
            lambda i: view_ms(ex, ck, chair, ViewSettings(head=heads[i % len(heads)])), R)), ""))
        rows.append(("change layer, 2,048 pts", fmt(timed(
            lambda i: view_ms(ex, ck, chair, ViewSettings(layer=i % 4, head="1")), R)), ""))
        modes = ["rollout", "query", "cls"]
        rows.append(("change mode (rollout/query/CLS), 2,048 pts", fmt(timed(
            lambda i: view_ms(ex, ck, chair, ViewSettings(mode=modes[i % 3], query=i)), R)), ""))
        rows.append(("mass threshold 60%, 2,048 pts", fmt(timed(
            lambda i: view_ms(ex, ck, chair, ViewSettings(keep=0.6, head=str(i % 6))), R)), ""))
        rows.append(("all heads grid (6 panels), 2,048 pts", fmt(timed(
            lambda i: view_ms(ex, ck, chair, ViewSettings(mode="heads", layer=i % 4)), R)), ""))
        rows.append(("local crop <-> global, new crop (runs the crop)", fmt(timed(
            lambda i: view_ms(ex, ck, chair, ViewSettings(mode="crop", query=i, crop_ratio=0.3)), R)), ""))
        for n in (2, 4):
            others = names[1:n]
            view_ms(ex, ck, chair, ViewSettings(), others)
            rows.append((f"compare {n} checkpoints, change head (warm)", fmt(timed(
                lambda i: view_ms(ex, ck, chair, ViewSettings(head=heads[i % len(heads)]), others), R)), ""))
            rows.append((f"compare {n} checkpoints, new 2,048-pt cloud", fmt(timed(
                lambda i: view_ms(ex, ck, ex.load_shape("mug", 2000 + 10 * n + i, 2048).cloud_id, ViewSettings(),
                                  others), R)), ""))

        # 1M points: uploads written as .npy and as binary .ply, each repetition a new file (no cache hit)
        from pcdviz import io

        big_r = min(R, 3)
        rng = np.random.default_rng(0)
        big_ids = []
        for suffix in (".npy", ".ply"):
            files = []
            for i in range(big_r):
                path = tmp / f"million_{suffix[1:]}_{i}{suffix}"
                pts = rng.normal(size=(1_000_000, 3)).astype(np.float32)
                np.save(path, pts) if suffix == ".npy" else io.save_ply(path, pts)
                files.append(path)

            def big(i):
                c = ex.load_upload(files[i])
                big_ids.append(c.cloud_id)
                view_ms(ex, ck, c.cloud_id, ViewSettings())

            rows.append((f"1M-point upload ({suffix}): load, decimate to 100k, model, figure", fmt(timed(big, big_r)), ""))
        rows.append(("change head, 1M-point upload (100k shown)", fmt(timed(
            lambda i: view_ms(ex, ck, big_ids[-1], ViewSettings(head=heads[i % len(heads)])), R)), ""))
        for n in (2, 4):
            rows.append((f"compare {n} checkpoints on the 1M-point upload (first time)", fmt(timed(
                lambda i: view_ms(ex, ck, big_ids[-1], ViewSettings(head="2"), names[1:n]), 1)), ""))

        # payload: bytes of the figure JSON per displayed point
        for label, cid, s, comp in [("one cloud, 2,048 pts", chair, ViewSettings(), None),
                                    ("one cloud, 10,000 pts", ex.load_shape("airplane", 1000 + 10_000, 10_000).cloud_id,
                                     ViewSettings(), None),
                                    ("one cloud, 100,000 pts (1M upload)", big_ids[-1], ViewSettings(), None),
                                    ("heads grid, 6 x 2,048 pts", chair, ViewSettings(mode="heads"), None),
                                    ("compare 4, 4 x 2,048 pts", chair, ViewSettings(), names[1:4]),
                                    ("compare 4 on the 1M upload (4 x 50,000 pts)", big_ids[-1], ViewSettings(),
                                     names[1:4])]:
            v, nbytes = view_ms(ex, ck, cid, s, comp)
            shown = sum(len(t.x) for t in v.figure.data if t.name == "points")
            sizes.append((label, nbytes, shown))

        if not args.no_client:
            rows = round_trips(ex, ck, chair, names, rows, R)
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print(bu.header("bench_app") + f"\n# repeats {R}")
    print(f"checkpoints: {', '.join(names)}  (model {ex.model(ck)[0].config.n_points} input points); "
          f"warm-up (first view, imports) {warmup_ms:.0f} ms\n")
    print(f"| {'event':<62} | {'server ms median (min-max)':<28} | {'round trip ms median (min-max)':<30} |")
    print(f"|{'-' * 64}|{'-' * 30}|{'-' * 32}|")
    for name, server, trip in rows:
        print(f"| {name:<62} | {server:<28} | {trip:<30} |")
    print(f"\n| {'figure sent to the browser':<46} | {'points shown':>12} | {'JSON bytes':>12} | {'bytes/point':>11} |")
    print(f"|{'-' * 48}|{'-' * 14}|{'-' * 14}|{'-' * 13}|")
    for label, nbytes, shown in sizes:
        print(f"| {label:<46} | {shown:>12,} | {nbytes:>12,} | {nbytes / shown:>11.1f} |")
    print(f"\npeak resident memory of this process (4 checkpoints, 1M-point clouds loaded): {peak_mb:,.0f} MB")
    return 0


def round_trips(ex: Explorer, ck: str, chair: str, names: list[str], rows, R: int):
    """Fill the round-trip column for the main events by calling the launched app through gradio_client."""
    from gradio_client import Client

    from pcdviz.app import build_app, launch

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo = build_app(ex)
    launch(demo, "127.0.0.1", port, prevent_thread_lock=True, quiet=True)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        heads = [str(h) for h in range(6)]
        base = dict(checkpoint=ck, compare=[], layer=3, camera="")
        trips = {
            "change head, 2,048 pts": lambda i: client.predict(cloud_id=chair, head=heads[i % 6], **base,
                                                               api_name="/view"),
            "new cloud, 2,048 pts (shape + FPS + model + figure)": lambda i: client.predict(
                category="vase", seed=5000 + i, n_points=2048, **base, api_name="/load_shape"),
            "new cloud, 10,000 pts": lambda i: client.predict(
                category="vase", seed=6000 + i, n_points=10_000, **base, api_name="/load_shape"),
            "change mode (rollout/query/CLS), 2,048 pts": lambda i: client.predict(
                cloud_id=chair, mode=["rollout", "query", "cls"][i % 3], **base, api_name="/view"),
            "all heads grid (6 panels), 2,048 pts": lambda i: client.predict(
                cloud_id=chair, mode="heads", head=heads[i % 6], **base, api_name="/view"),
            "compare 2 checkpoints, change head (warm)": lambda i: client.predict(
                cloud_id=chair, head=heads[i % 6], **{**base, "compare": names[1:2]}, api_name="/view"),
            "compare 4 checkpoints, change head (warm)": lambda i: client.predict(
                cloud_id=chair, head=heads[i % 6], **{**base, "compare": names[1:4]}, api_name="/view"),
        }
        trips["change head, 2,048 pts"](0)  # the client's first call sets up its session
        out = []
        for name, server, trip in rows:
            out.append((name, server, fmt(timed(trips[name], R)) if name in trips else trip))
        return out
    finally:
        demo.close()


if __name__ == "__main__":
    sys.exit(main())
