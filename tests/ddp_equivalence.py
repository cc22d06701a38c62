"""One training step's loss and gradients, on 1 process with batch 2B or as rank r of 2 processes with batch B.

Used by tests/test_training_ddp.py through torch.multiprocessing.spawn (gloo on CPU). The views are
fixed random clouds; rank r takes shapes r*B .. r*B+B-1 of each view, so the two ranks together see
exactly the single process's batch. Drop path is off (its draws would differ between the runs).
"""
from __future__ import annotations

import copy
import os

import torch
import torch.distributed as dist
from safetensors.torch import save_file

# settings: a very small model; both contrast scores; head_bn on in the cosine case
CASES = {
    "cosine+head_bn": {"contrast_score": "cosine", "contrast_scale": 10.0, "head_bn": True},
    "prob": {"contrast_score": "prob", "contrast_scale": 64.0, "head_bn": False},
}
SMALL = {"model.depth": 1, "model.width": 32, "model.n_heads": 2, "model.embed_dims": [16, 32],
         "model.pos_hidden": 32, "model.n_points": 64, "model.n_groups": 8, "model.group_size": 8,
         "model.drop_path": 0.0, "out_dim": 32, "head_hidden": 48, "head_bottleneck": 16, "n_local": 2,
         "contrast_weight": 1.0}


def views(total_batch: int, n_points: int, n_local: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(123)
    return ([torch.randn(total_batch, n_points, 3, generator=g) for _ in range(2)]
            + [torch.randn(total_batch, n_points // 4, 3, generator=g) for _ in range(n_local)])


def one_step(case: str, rank: int, world: int, batch: int) -> dict[str, torch.Tensor]:
    """{"loss", "distill", "contrast", "grad.<param>"...} after one forward/backward of this rank."""
    from training.distributed import convert_global_batchnorm
    from training.losses import ContrastiveLoss, DistillationLoss
    from training.train import TrainConfig, apply_settings, build_student, step_loss

    cfg = apply_settings(TrainConfig(), {**SMALL, **CASES[case]})
    torch.manual_seed(0)
    student = build_student(cfg)
    if world > 1:
        student = convert_global_batchnorm(student)
    teacher = copy.deepcopy(student).eval()
    # a teacher different from the student, as after some EMA steps
    with torch.no_grad():
        for p in teacher.parameters():
            p.add_(0.01 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    model = torch.nn.parallel.DistributedDataParallel(student) if world > 1 else student
    n = student.backbone.config.n_points
    vs = [v[rank * batch:(rank + 1) * batch] for v in views(batch * world, n, cfg.n_local)]
    with torch.no_grad():
        teacher_logits = teacher(vs[:cfg.n_global])
    student_logits = model(vs)
    distill = DistillationLoss(cfg.out_dim, cfg.n_global, cfg.student_temp, cfg.center_momentum)
    contrast = ContrastiveLoss(cfg.n_global, cfg.student_temp, cfg.contrast_scale, cfg.contrast_score)
    losses = step_loss(cfg, student_logits, teacher_logits, 0.04, distill, contrast, world)
    losses["backward"].backward()
    out = {k: losses[k].detach().reshape(1).clone() for k in ("loss", "distill", "contrast")}
    out |= {f"grad.{name}": p.grad.detach().clone() for name, p in student.named_parameters() if p.grad is not None}
    return out


def rank_main(rank: int, world: int, batch: int, port: int, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        for case in CASES:
            save_file(one_step(case, rank, world, batch), os.path.join(out_dir, f"{case}.rank{rank}.safetensors"))
        # both ranks done before either tears gloo down, as training.train does: once a rank left first and its
        # peer died in gloo with SIGABRT ("terminate called without an active exception")
        dist.barrier()
    finally:
        dist.destroy_process_group()
