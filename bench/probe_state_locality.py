"""Patch-to-patch locality of a training run's current teacher, read from its saved state (no need to finish).

    python bench/probe_state_locality.py runs/ibot-tiny [--student] [--svm]

The teacher is an EMA of the student (momentum 0.996 -> 1: a window of about 250 steps), so early in a run it
is still mostly the initialisation; --student reads the student's backbone instead. Prints the step, then `pcdviz eval`'s locality tables (training.evaluate.locality, the same 16 test shapes);
with --svm also the linear-SVM accuracy of the same protocol (a quick read of what the features keep).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pcdviz.model import PointViT, preset  # noqa: E402
from training.evaluate import extract_features, format_locality, locality, open_split, svm_accuracy  # noqa: E402
from training.train import TrainConfig, load_state, prefixed  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", type=Path)
    p.add_argument("--student", action="store_true", help="the student's backbone instead of the teacher's")
    p.add_argument("--svm", action="store_true")
    args = p.parse_args()
    tensors, meta = load_state(args.run)
    cfg = TrainConfig(**meta["config"])
    model = PointViT(preset(cfg.model, **cfg.model_overrides))
    who = "student" if args.student else "teacher"
    model.load_state_dict(prefixed(tensors, f"{who}.backbone."))
    model.eval()
    torch.set_grad_enabled(False)
    loc = locality(model, open_split("synthetic", "test"))
    print(f"{args.run} {who} step {meta['step']}/{meta['total_steps']} ({cfg.method}, {cfg.model_overrides}), "
          f"{meta['wall_time_s'] / 60:.1f} min: local heads l0-1 {loc['local_heads_share_l01']:.2f}, "
          f"argmax share {loc['argmax_share_mean']:.3f}")
    print(format_locality(loc))
    if args.svm:
        train, test = open_split("synthetic", "train"), open_split("synthetic", "test")
        (a, ay), (b, by) = extract_features(model, train, "cls+max"), extract_features(model, test, "cls+max")
        print(f"  linear SVM {svm_accuracy(a, ay, b, by)['acc'] * 100:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
