"""Pre-training speed: samples/s, where the step goes (crops, FPS + kNN, model), FLOPs and FLOP/s vs matmul.

    .venv/bin/python bench/bench_train.py                        # tiny-cpu (batch 32) and paper (batch 8), ~3 min
    .venv/bin/python bench/bench_train.py --recipes tiny-cpu --steps 10
    .venv/bin/python bench/bench_train.py --profile              # + torch.profiler's op table for each recipe

Each step is the training loop's own code path (training/train.py): CropBatches[step] cuts the
multi-crop views (training/crops.py), the EMA teacher embeds the global views, the student all views,
DINO + contrastive losses, backward, gradient clipping, AdamW, EMA update. FPS + kNN run inside the
model's grouping (PointViT.group); they are timed by wrapping that function, so "data preparation"
= crops + FPS/kNN, and "model" = everything else in the step. The paper recipe's batch is per GPU (64);
on a CPU the default here is 8 (--paper-batch), which changes samples/s little (the model is per-sample).

FLOPs are counted analytically (flops_per_view: 2 x multiply-adds of every Linear, the attention matmuls
QK^T and AV, the mini-PointNet and the head; not LayerNorm, GELU, softmax, max-pool, kNN distances or
the optimizer) and cross-checked with torch.utils.flop_counter.FlopCounterMode over one real step.
A training step = 3 x the student's forward FLOPs (backward ~ 2 x forward) + the teacher's forward.
The matmul rate is a float32 torch.mm of --mm-size squared matrices on the same threads, timed twice after
each measured step, so the ceiling and the model see the same machine load.
"""
from __future__ import annotations

import argparse
import copy
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import benchutil as bu  # noqa: E402  (sets OMP_WAIT_POLICY before torch loads)

import torch  # noqa: E402

import pcdviz.model as model_mod  # noqa: E402
from pcdviz.model import PointViTConfig  # noqa: E402


# --------------------------------------------------------------------------- FLOPs


def flops_per_view(cfg: PointViTConfig, n: int, head: dict | None = None) -> dict:
    """Forward FLOPs (2 x multiply-adds) of one view of n points, by part: embed, pos, blocks, head."""
    G, K, D = cfg.groups_for(n), min(cfg.group_size, n), cfg.width
    e0, e1 = cfg.embed_dims
    T = 1 + G
    r = cfg.mlp_ratio
    out = {
        # per point: 3->e0, e0->e1, the per-point half of second_in (e1->2e1), 2e1->D; per group: pooled half
        "embed": 2 * (G * K * (3 * e0 + e0 * e1 + e1 * 2 * e1 + 2 * e1 * D) + G * e1 * 2 * e1),
        "pos": 2 * G * (3 * cfg.pos_hidden + cfg.pos_hidden * D),
        # per block: qkv 3D^2, proj D^2, MLP 2rD^2 per token; QK^T and AV: T^2 D each
        "blocks": 2 * cfg.depth * (T * D * D * (4 + 2 * r) + 2 * T * T * D),
    }
    if head:
        h, b, k, L = head["hidden"], head["bottleneck"], head["out_dim"], head["layers"]
        out["head"] = 2 * (D * h + h * h * max(0, L - 2) + h * b + b * k) if L > 1 else 2 * (D * b + b * k)
    return out


def step_flops(cfg: PointViTConfig, views: list[int], n_global: int, head: dict) -> tuple[float, dict]:
    """Training FLOPs per sample: student forward on every view x 3 (forward + backward) + teacher forward."""
    student = sum(sum(flops_per_view(cfg, n, head).values()) for n in views)
    teacher = sum(sum(flops_per_view(cfg, n, head).values()) for n in views[:n_global])
    parts = {}
    for n in views:
        for k, v in flops_per_view(cfg, n, head).items():
            parts[k] = parts.get(k, 0) + 3 * v
    for n in views[:n_global]:
        for k, v in flops_per_view(cfg, n, head).items():
            parts[k] += v
    return 3 * student + teacher, parts


def matmul_rate(size: int, repeats: int = 5) -> list[float]:
    """FLOP/s of float32 torch.mm of two size x size matrices, one value per repeat."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    ts = bu.timed(lambda: torch.mm(a, b), repeats, warmup=2)
    return [2 * size ** 3 / t for t in ts]


# --------------------------------------------------------------------------- one recipe


class GroupTimer:
    """Wraps PointViT.group (FPS + kNN, called by every forward) and sums its time."""

    def __init__(self):
        self.seconds = 0.0
        self._orig = model_mod.PointViT.group

    def __enter__(self):
        def timed_group(*a, **k):
            t = time.perf_counter()
            out = self._orig(*a, **k)
            self.seconds += time.perf_counter() - t
            return out
        model_mod.PointViT.group = timed_group
        return self

    def __exit__(self, *exc):
        model_mod.PointViT.group = self._orig


def setup(recipe: str, batch: int):
    """The training loop's objects for a recipe, on a small synthetic set (4 shapes per class)."""
    from training import train as T
    from training.losses import ContrastiveLoss, DistillationLoss

    cfg = T.apply_settings(T.TrainConfig(), T.load_recipe(recipe))
    cfg = T.apply_settings(cfg, {"batch_size": batch, "synthetic_per_class": max(4, -(-2 * batch // 16)),
                                 "device": "cpu"})
    cfg = T.resolve_method(cfg)
    torch.manual_seed(cfg.seed)
    student = T.build_student(cfg)
    teacher = copy.deepcopy(student)
    for p in teacher.parameters():
        p.requires_grad = False
    teacher.eval()
    for m in teacher.modules():  # as train.py: batch statistics in the teacher head's BatchNorm
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.train()
    n_points = student.backbone.config.n_points
    data = T.CropBatches(T.open_train_dataset(cfg), T.crop_config(cfg, n_points), cfg.batch_size, cfg.seed)
    distill = DistillationLoss(cfg.out_dim, cfg.n_global, cfg.student_temp, cfg.center_momentum)
    contrast = ContrastiveLoss(cfg.n_global, cfg.student_temp, cfg.contrast_scale, cfg.contrast_score)
    opt = torch.optim.AdamW(T.param_groups(student), lr=1e-4, weight_decay=cfg.weight_decay)
    return cfg, student, teacher, data, distill, contrast, opt


def train_step(cfg, student, teacher, batch, distill, contrast, opt, tau_t=0.04) -> dict:
    """One step of training/train.py's loop (forward, losses, backward, clip, AdamW, EMA); seconds by phase."""
    from training import train as T
    views = batch["views"]
    t0 = time.perf_counter()
    with torch.no_grad():
        teacher_logits = teacher(views[:cfg.n_global]).float()
    t1 = time.perf_counter()
    student_logits = student(views).float()
    d, targets = distill(student_logits, teacher_logits, tau_t)
    loss = d + cfg.contrast_weight * contrast(student_logits, targets, teacher_logits) if cfg.contrast_weight > 0 else d
    t2 = time.perf_counter()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    t3 = time.perf_counter()
    T.clip_gradients(student, cfg.clip_grad)
    opt.step()
    T.ema_update(teacher, student, 0.996)
    distill.update_center(teacher_logits)
    t4 = time.perf_counter()
    return {"teacher": t1 - t0, "student": t2 - t1, "backward": t3 - t2, "optimizer": t4 - t3}


def bench_recipe(recipe: str, batch: int, steps: int, mm_size: int, profile: bool,
                 ab_steps: int) -> list[str]:
    cfg, student, teacher, data, distill, contrast, opt = setup(recipe, batch)
    mcfg = student.backbone.config
    views = [v.shape[1] for v in data[0]["views"]]
    head = {"hidden": cfg.head_hidden, "bottleneck": cfg.head_bottleneck, "out_dim": cfg.out_dim,
            "layers": cfg.head_layers}
    flops_sample, parts = step_flops(mcfg, views, cfg.n_global, head)

    # cross-check the count on one real step
    from torch.utils.flop_counter import FlopCounterMode
    b0 = data[0]
    with FlopCounterMode(display=False) as fc:
        train_step(cfg, student, teacher, b0, distill, contrast, opt)
    counted = fc.get_total_flops() / batch

    rows, mm = [], []
    for step in range(1, steps + 2):  # step 1 is a warm-up
        t = time.perf_counter()
        b = data[step]
        with GroupTimer() as g:
            phases = train_step(cfg, student, teacher, b, distill, contrast, opt)
        total = time.perf_counter() - t
        if step > 1:
            rows.append({"step": total, "crops": b["prep_s"], "fps_knn": g.seconds, **phases})
            mm += matmul_rate(mm_size, repeats=2)  # the ceiling, measured between the steps it is compared with
    mm_flops = bu.med(mm)
    med = {k: bu.med([r[k] for r in rows]) for k in rows[0]}
    step_ts = [r["step"] for r in rows]
    prep = [(r["crops"] + r["fps_knn"]) / r["step"] for r in rows]
    model_s = [r["step"] - r["crops"] - r["fps_knn"] for r in rows]
    fl_step = flops_sample * batch
    out = [
        f"{recipe}: preset {cfg.model} (width {mcfg.width}, depth {mcfg.depth}, embed {mcfg.embed_dims}, "
        f"{mcfg.n_groups}x{mcfg.group_size} groups), batch {batch}, views {views}, {steps} steps",
        f"  step {bu.ms(step_ts)} ms -> {batch / bu.med(step_ts):.1f} samples/s "
        f"(min-max {batch / max(step_ts):.1f}-{batch / min(step_ts):.1f})",
        f"  data preparation {100 * bu.med(prep):.1f}% of the step (min-max {100 * min(prep):.1f}-{100 * max(prep):.1f}): "
        f"crops {med['crops'] * 1e3:.0f} ms ({100 * med['crops'] / med['step']:.1f}%), "
        f"FPS + kNN in the tokenizer {med['fps_knn'] * 1e3:.0f} ms ({100 * med['fps_knn'] / med['step']:.1f}%)",
        f"  model (median ms): teacher fwd {med['teacher'] * 1e3:.0f}, student fwd + losses {med['student'] * 1e3:.0f}, "
        f"backward {med['backward'] * 1e3:.0f}, clip + AdamW + EMA {med['optimizer'] * 1e3:.0f} "
        f"(the forwards include FPS + kNN)",
        f"  FLOPs per sample: {flops_sample / 1e9:.2f} GFLOP analytic ("
        + ", ".join(f"{k} {100 * v / flops_sample:.0f}%" for k, v in parts.items())
        + f"); FlopCounterMode on one step: {counted / 1e9:.2f} GFLOP ({counted / flops_sample:.2f}x)",
        f"  float32 matmul ({mm_size}^2) between these steps: {mm_flops / 1e9:.1f} GFLOP/s "
        f"(min-max {min(mm) / 1e9:.1f}-{max(mm) / 1e9:.1f})",
        f"  achieved: {fl_step / bu.med(model_s) / 1e9:.1f} GFLOP/s over model time = "
        f"{100 * fl_step / bu.med(model_s) / mm_flops:.0f}% of matmul; "
        f"{fl_step / bu.med(step_ts) / 1e9:.1f} GFLOP/s over the whole step = "
        f"{100 * fl_step / bu.med(step_ts) / mm_flops:.0f}%",
    ]
    if ab_steps:
        out.append(ab_crops(data, 3 * ab_steps))
        out.append(ab_max_pool(student, data, 3 * ab_steps))
    if profile:
        out += profile_step(cfg, student, teacher, data, distill, contrast, opt)
    return out


def amax_pool(x, dim, keepdim=False):
    """The patch embedding's pooling before pcdviz.model.max_pool: amax, whose backward is mask-and-count."""
    return x.amax(dim=dim, keepdim=keepdim)


def numpy_stable_argsort(x):
    """pcdviz.ops.stable_argsort_rows before its SIMD fast path: numpy's stable sort on every row."""
    import numpy as np
    return torch.from_numpy(np.argsort(x.numpy(), axis=1, kind="stable"))


def ab_crops(data, steps: int) -> str:
    """Multi-crop preparation of whole batches with the stable row sort (before) and the current one, interleaved."""
    import pcdviz.ops as ops
    import training.crops as crops
    current = ops.stable_argsort_rows  # used by crops directly and through ops.ball_order

    def use(fn):
        ops.stable_argsort_rows = crops.stable_argsort_rows = fn

    ts = {"before": [], "now": []}
    try:
        for s in range(steps + 1):
            for name, fn in (("before", numpy_stable_argsort), ("now", current)):
                use(fn)
                b = data[300 + s]
                if s:
                    ts[name].append(b["prep_s"])
    finally:
        use(current)
    a, b = ts["before"], ts["now"]
    return (f"  A/B crops of one batch ({steps} interleaved pairs): stable numpy argsort {bu.ms(a)} ms, "
            f"SIMD argsort + stable re-sort of tied rows {bu.ms(b)} ms -> {bu.med(a) / bu.med(b):.2f}x")


def ab_max_pool(student, data, steps: int) -> str:
    """The student's patch embedding, forward + backward on one step's views (grouped once), with the
    max-pool by amax (before) and by max_pool (now), interleaved. Whole steps are too noisy on a shared
    machine to show a change of this size; this times exactly the code that changed."""
    bb = student.backbone
    cfg = bb.config
    views = data[200]["views"]
    batches = []
    for n in sorted({v.shape[1] for v in views}):
        x = torch.cat([v for v in views if v.shape[1] == n])
        batches.append((x, *bb.group(x)[1:]))

    def run():
        for x, centre_idx, group_idx in batches:
            bb.patch_embed(x, centre_idx, group_idx).sum().backward()

    current = model_mod.max_pool
    ts = {"amax (before)": [], "max_pool (now)": []}
    try:
        for s in range(steps + 1):
            for name, fn in (("amax (before)", amax_pool), ("max_pool (now)", current)):
                model_mod.max_pool = fn
                t = bu.timed(run, 1, warmup=0)
                if s:  # the first round is a warm-up
                    ts[name] += t
    finally:
        model_mod.max_pool = current
        student.zero_grad(set_to_none=True)
    a, b = ts["amax (before)"], ts["max_pool (now)"]
    return (f"  A/B patch embedding forward + backward on one step's views ({steps} interleaved pairs): "
            f"amax {bu.ms(a)} ms, max_pool {bu.ms(b)} ms -> {bu.med(a) / bu.med(b):.2f}x")


def profile_step(cfg, student, teacher, data, distill, contrast, opt) -> list[str]:
    """torch.profiler over two steps: the ops with the most self CPU time."""
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for s in (100, 101):
            train_step(cfg, student, teacher, data[s], distill, contrast, opt)
    ev = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    total = sum(e.self_cpu_time_total for e in ev)
    return ["  profile (2 steps, self CPU time): " + ", ".join(
        f"{e.key} {100 * e.self_cpu_time_total / total:.0f}%" for e in ev[:12])]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipes", nargs="+", default=["tiny-cpu", "paper"])
    ap.add_argument("--batch", type=int, default=32, help="batch for every recipe but paper")
    ap.add_argument("--paper-batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--mm-size", type=int, default=2048)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--ab-steps", type=int, default=3, help="interleaved before/after pairs of steps (0 = none)")
    args, _ = ap.parse_known_args(argv)
    torch.set_num_threads(args.threads)
    print(bu.header("bench_train"))
    mm = matmul_rate(args.mm_size)
    print(f"float32 torch.mm {args.mm_size}x{args.mm_size}, {args.threads} threads, at the start: "
          f"{bu.med(mm) / 1e9:.1f} GFLOP/s (min-max {min(mm) / 1e9:.1f}-{max(mm) / 1e9:.1f})", flush=True)
    for recipe in args.recipes:
        batch = args.paper_batch if recipe == "paper" else args.batch
        for line in bench_recipe(recipe, batch, args.steps, args.mm_size, args.profile, args.ab_steps):
            print(line, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
