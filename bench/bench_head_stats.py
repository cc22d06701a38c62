"""Head statistics of the shipped checkpoints (issue 17) and what computing them costs.

    .venv/bin/python bench/bench_head_stats.py [--checkpoints checkpoints/dwc-tiny ...]

Per checkpoint and layer, the mean over heads (and the smallest head) of: mean attention distance (unit-sphere
cloud), distance ratio (1 = no locality), entropy (nats; ln G = uniform), query-argmax share (1 = one map for
every query) and chance-corrected part IoU, over the fixed probe set the explorer uses (the first test shape of
each of the 16 synthetic categories; pcdviz.head_stats). Then the cost: the first computation (16 forward
passes + statistics) and a cached call through the explorer, medians.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import benchutil as bu  # noqa: E402


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoints", nargs="+", default=[str(REPO / "checkpoints" / n)
                                                        for n in ("dwc-tiny", "dino-tiny", "random-tiny")])
    args = ap.parse_args(argv)
    import numpy as np

    from pcdviz.checkpoints import load_checkpoint
    from pcdviz.explorer import Explorer
    from pcdviz.head_stats import head_statistics, synthetic_probe_set

    keys = ("mean_distance", "distance_ratio", "entropy", "argmax_share", "part_iou")
    print("| checkpoint | layer | " + " | ".join(f"{k} mean (min)" for k in keys) + " |")
    print("| --- | --- | " + " | ".join("---" for _ in keys) + " |")
    costs = []
    for path in args.checkpoints:
        model, _ = load_checkpoint(path)
        clouds, labels = synthetic_probe_set(model.config.n_points)
        first = bu.timed(lambda: head_statistics(model, clouds, labels), 3, warmup=0)
        st = head_statistics(model, clouds, labels)
        for layer in range(len(st["mean_distance"])):
            cells = [f"{np.mean(st[k][layer]):.3f} ({np.min(st[k][layer]):.3f})" for k in keys]
            print(f"| {Path(path).name} | {layer} | " + " | ".join(cells) + " |")
        ex = Explorer(Path(path).parent)
        ex.head_stats([Path(path).name])
        cached = bu.timed(lambda: ex.head_stats([Path(path).name]), 9)
        costs.append((Path(path).name, first, cached))
    print("\n| checkpoint | compute over 16 shapes, ms | cached, with figure and table, ms |\n| --- | --- | --- |")
    for name, first, cached in costs:
        print(f"| {name} | {bu.ms(first)} | {bu.ms(cached)} |")


if __name__ == "__main__":
    main()
