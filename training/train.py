"""Self-supervised pre-training of a PointViT with distillation and contrast (one loop, no framework).

    python -m training.train --recipe tiny-cpu --out runs/dwc-tiny                 # full method
    python -m training.train --recipe tiny-cpu --method dino --out runs/dino-tiny   # distillation only
    python -m training.train --recipe tiny-cpu --epochs 3 --set model.depth=2 --out runs/try
    torchrun --nproc_per_node 2 -m training.train --recipe paper --out runs/paper   # DDP (gloo on CPU, nccl on GPU)

Student = PointViT + DINOHead on all crops; teacher = EMA copy on the global crops. A run writes
into --out: metrics.csv, state.json + state-<step>.safetensors (the resumable state, no pickle),
and at the end checkpoint/ (the teacher backbone as a pcdviz checkpoint folder with its card).
Running the same command again resumes from the saved state with no lost or repeated step.

Reproducibility: every random draw of step s (crops, drop path) comes from generators seeded by
(seed, rank, s), and the data order of epoch e from a permutation seeded by (seed, e). A run
resumed at step s therefore continues exactly as the uninterrupted run would (bit for bit on CPU
with num_workers=0).
"""
from __future__ import annotations

import argparse
import copy
import csv
import dataclasses
import hashlib
import json
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
from tqdm import tqdm

from training.batches import (CropBatches, _quiet_worker, crop_config, data_card, describe_dataset,  # noqa: F401
                              open_train_dataset, read_error_sentence, step_seed, stop_loader)
from training.config import (CONFIG_DIR, METHODS, RUNTIME_FIELDS, TrainConfig, apply_settings,  # noqa: F401
                             load_recipe, parse_value, resolve_method)
from training.distributed import convert_global_batchnorm, mean_over_ranks
from training.losses import ContrastiveLoss, DistillationLoss, collapse_warning, entropy
from training.networks import (MultiCropNet, build_student, cancel_gradients_last_layer,  # noqa: F401
                               clip_gradients, ema_update, param_groups)
from training.patch_objective import PATCH_METHODS, add_patch_term
from training.processes import StopFlag, any_rank, init_distributed, threading_main  # noqa: F401
from training.schedules import Schedules, cosine_schedule, make_schedules, teacher_temp_schedule  # noqa: F401
from training.state import (_atomic_write_text, load_state, optimizer_from_tensors,  # noqa: F401
                            optimizer_tensors, params_digest, prefixed, rng_state, save_snapshot, save_state,
                            set_rng_state, snapshot_steps, write_checkpoint)

# The pieces live in sibling modules (config, schedules, networks, batches, state, processes); the names above stay
# importable from training.train for tests, bench/ and the probes. This module is the run itself: the command
# line, then main's steps in the order they happen.


# --------------------------------------------------------------------------- command line


PAPER_ROUTE = """the paper's pipeline (ShapeNet-55 pre-training, ModelNet40 linear SVM), on one GPU:
  pcdviz train --recipe paper --dataset data/ShapeNet55-34 --out runs/paper
  pcdviz eval runs/paper/checkpoint --dataset data/ModelNet/modelnet40_normal_resampled --no-part-iou
on 8 GPUs of one machine (same total batch as 8 x 64 on one; the contrast and head_bn span all ranks):
  torchrun --standalone --nproc_per_node 8 -m training.train --recipe paper --dataset data/ShapeNet55-34 --out runs/paper
--dataset takes a release's root or any documented sub-path (ShapeNet55-34/, shapenet_pc/, ShapeNet-55/;
modelnet40_normal_resampled/, modelnet40_ply_hdf5_2048/; ScanObjectNN h5_files/, main_split/ with
--set dataset_variant=PB_T50_RS); each is read with its official split (README: Training).
"""


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The command line: a recipe, a few common overrides, any setting by --set key=value."""
    p = argparse.ArgumentParser(prog="pcdviz train", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=PAPER_ROUTE + "\nsettings (--set): "
                                + ", ".join(f.name for f in dataclasses.fields(TrainConfig)) + ", model.<PointViTConfig field>")
    p.add_argument("--recipe", help="named recipe in training/configs (tiny-cpu, paper) or a JSON file; default tiny-cpu")
    p.add_argument("--method", choices=METHODS, help="dino+contrast (full method) or dino (distillation only)")
    p.add_argument("--out", help="run folder (state, metrics.csv, checkpoint/)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int, help="shapes per process and step")
    p.add_argument("--dataset", help='"synthetic" or a release by path: ShapeNet55-34/ (ShapeNet-55), ModelNet40, '
                                     'ScanObjectNN, ShapeNetPart, or a folder of class folders')
    p.add_argument("--seed", type=int)
    p.add_argument("--num-workers", type=int)
    p.add_argument("--max-steps", type=int, help="stop after this global step, state saved (resume later)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any setting, e.g. --set lr=1e-3 --set model.depth=2 --set local_scale=[0.2,0.4]")
    resume = p.add_mutually_exclusive_group()
    resume.add_argument("--resume", dest="resume", action="store_const", const="yes",
                        help="resume (error if --out has no saved state); default: resume when it has one")
    resume.add_argument("--no-resume", dest="resume", action="store_const", const="no",
                        help="start over, discarding a saved state in --out")
    return p.parse_args(argv)


def explicit_settings(args: argparse.Namespace) -> dict:
    """The settings given on the command line (not from the recipe)."""
    settings = {}
    for key in ("method", "out", "epochs", "batch_size", "dataset", "seed", "num_workers", "max_steps"):
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)
    for item in args.set:
        if "=" not in item:
            raise SystemExit(f"--set expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        settings[key.strip().replace("-", "_")] = parse_value(value)
    return settings


def resolve_config(args: argparse.Namespace) -> tuple[TrainConfig, bool]:
    """(config, resuming): recipe + overrides, or the saved config of a run being resumed (+ runtime overrides)."""
    overrides = explicit_settings(args)
    fresh = resolve_method(apply_settings(apply_settings(TrainConfig(), load_recipe(args.recipe or "tiny-cpu")),
                                          overrides))
    out = Path(fresh.out)
    saved = (out / "state.json").is_file()
    if args.resume == "yes" and not saved:
        raise SystemExit(f"--resume: no saved state in {out}")
    if not saved or args.resume == "no":
        return fresh, False
    cfg = TrainConfig(**json.loads((out / "state.json").read_text())["config"])
    if args.recipe and args.recipe != cfg.recipe:
        raise SystemExit(f"{out} holds a run of recipe {cfg.recipe!r}; use --no-resume to start over "
                         f"with {args.recipe!r}, or another --out")
    resumed = resolve_method(apply_settings(cfg, overrides))
    resumed.out = fresh.out
    if "max_steps" not in overrides:   # a resumed run goes to the end unless told otherwise
        resumed.max_steps = 0
    changed = [f.name for f in dataclasses.fields(TrainConfig)
               if f.name not in RUNTIME_FIELDS and getattr(resumed, f.name) != getattr(cfg, f.name)]
    if changed:
        raise SystemExit(f"cannot change {', '.join(changed)} when resuming {out} (it would not be the same run); "
                         "use --no-resume to start over, or another --out")
    return resumed, True


# --------------------------------------------------------------------------- the loop


def step_loss(cfg: TrainConfig, student_logits: torch.Tensor, teacher_logits: torch.Tensor, tau_t: float,
              distill_loss: DistillationLoss, contrast_loss: ContrastiveLoss, world: int) -> dict:
    """One step's losses: "backward" (what this rank differentiates) and the global values to log.

    The distillation term is a mean over this rank's shapes, which DDP's gradient average turns into
    the global mean. The contrastive term is already the global batch's loss on every rank, computed
    with gradients through this rank's rows only, so its backward is scaled by the world size (see
    training/distributed.py): W processes x batch B then give the gradients of one process x W*B.
    """
    distill, targets = distill_loss(student_logits, teacher_logits, tau_t)
    if cfg.contrast_weight > 0:
        contrast = contrast_loss(student_logits, targets, teacher_logits)
    else:
        contrast = torch.zeros((), device=student_logits.device)
    backward = distill + cfg.contrast_weight * world * contrast
    distill_all = mean_over_ranks(distill)
    return {"backward": backward, "loss": distill_all + cfg.contrast_weight * contrast.detach(),
            "distill": distill_all, "contrast": contrast.detach(), "targets": targets}


# kl = distill - teacher_entropy: the mean KL(teacher || student) over pairs, the part of the loss the student controls.
METRIC_COLUMNS = ["step", "epoch", "loss", "distill", "contrast", "kl", "teacher_entropy", "teacher_batch_entropy",
                  "lr", "wd", "momentum", "tau_t", "grad_norm", "samples_per_s", "prep_share", "wait_share"]


def open_metrics(path: Path, start_step: int):
    """metrics.csv opened for appending; rows logged after the saved state (step > start_step) are dropped."""
    rows = []
    if start_step > 0 and path.is_file():
        with path.open() as f:
            rows = [r for r in csv.DictReader(f) if int(r["step"]) <= start_step]
    f = path.open("w", newline="")
    writer = csv.DictWriter(f, fieldnames=METRIC_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    f.flush()
    return f, writer


# --------------------------------------------------------------------------- main, as named steps


@dataclass
class Run:
    """Where a run happens (setup_run): its settings, device, rank and process count, and folder."""
    cfg: TrainConfig
    resuming: bool
    device: torch.device
    rank: int
    world: int
    local_rank: int
    out: Path

    @property
    def main_process(self) -> bool:
        return self.rank == 0


@dataclass
class Nets:
    """The networks and what trains them (build_models); `model` is the student, which train_loop wraps in
    DistributedDataParallel when there are several processes."""
    student: nn.Module
    teacher: nn.Module
    distill_loss: DistillationLoss
    contrast_loss: ContrastiveLoss
    optimizer: torch.optim.Optimizer
    model: nn.Module


@dataclass
class Data:
    """The data side (build_data): the data set and its card, the batches, the schedules and the steps to run;
    restore_state sets start_step and wall_before of a resumed run."""
    dataset: object
    info: dict
    batches: CropBatches
    sched: Schedules
    total_steps: int
    end_step: int
    total_batch: int                 # shapes per step over all processes
    start_step: int = 0
    wall_before: float = 0.0         # training time of the run before this process resumed it

    @property
    def steps_per_epoch(self) -> int:
        return self.batches.steps_per_epoch


@dataclass
class Loop:
    """What train_loop carries from step to step (start_loop): the step, the log window and clocks, how it ended."""
    step: int
    bar: tqdm
    snap_at: set[int]                # steps at which a teacher snapshot is kept (rank 0)
    metrics_file: object             # metrics.csv and its writer (rank 0; None elsewhere)
    metrics: csv.DictWriter | None
    t_start: float
    last_save: float
    t_wait: float                    # when the loop started waiting for the current batch
    window: dict[str, list[float]] = field(default_factory=dict)   # scalars since the last metrics row
    warned_at: int = -10**9
    stopped_by: int | None = None    # the signal that stopped the run
    failed: bool = False             # a rank could not read its data
    nonfinite: bool = False          # the loss was not finite


def main(argv: list[str] | None = None) -> int:
    """Train (or resume) a run; returns 0 when finished or stopped at --max-steps, 130/143 when interrupted."""
    args = parse_args(list(sys.argv[1:] if argv is None else argv))
    cfg, resuming = resolve_config(args)
    run = setup_run(cfg, resuming)
    # data first: a missing or unreadable release ends the run before a large model is built
    dataset = open_train_dataset(cfg)
    data_info = data_card(cfg, dataset, run.world)
    nets = build_models(run)
    data = build_data(run, nets, dataset, data_info)
    restore_state(run, nets, data)
    loop = train_loop(run, nets, data)
    if loop.nonfinite:   # the message is out and the last saved state is intact
        return 1
    return finish_run(run, nets, data, loop)


def setup_run(cfg: TrainConfig, resuming: bool) -> Run:
    """Device, process rank and count (torchrun), and the run folder; a new run removes an old run's state."""
    device = torch.device("cuda" if cfg.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if cfg.device == "auto" else cfg.device))
    rank, world, local_rank = init_distributed(device.type)
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
    run = Run(cfg, resuming, device, rank, world, local_rank, Path(cfg.out))
    if run.main_process:
        run.out.mkdir(parents=True, exist_ok=True)
        if not resuming:
            for old in list(run.out.glob("state*")):
                old.unlink()
            shutil.rmtree(run.out / "snapshots", ignore_errors=True)   # a new run: the old run's snapshots do not belong
    return run


def build_models(run: Run) -> Nets:
    """Student, teacher, losses and optimizer (identical init on every rank; DDP also broadcasts rank 0's)."""
    cfg = run.cfg
    torch.manual_seed(cfg.seed)
    student = build_student(cfg).to(run.device)
    if run.world > 1:   # head_bn: student and teacher normalise over the global batch (a no-op without head_bn)
        student = convert_global_batchnorm(student)
    teacher = copy.deepcopy(student)
    for p in teacher.parameters():
        p.requires_grad = False
    teacher.eval()   # no drop path in the teacher; its head's BatchNorm (head_bn) still uses batch statistics, as in DINO
    distill_loss = DistillationLoss(cfg.out_dim, cfg.n_global, cfg.student_temp, cfg.center_momentum).to(run.device)
    contrast_loss = ContrastiveLoss(cfg.n_global, cfg.student_temp, cfg.contrast_scale, cfg.contrast_score)
    optimizer = torch.optim.AdamW(param_groups(student), lr=0.0, weight_decay=cfg.weight_decay)
    return Nets(student, teacher, distill_loss, contrast_loss, optimizer, model=student)


def build_data(run: Run, nets: Nets, dataset, data_info: dict) -> Data:
    """This rank's batches (crops sized for the student's n_points), the schedules and the steps to run."""
    cfg = run.cfg
    n_points = nets.student.backbone.config.n_points
    batches = CropBatches(dataset, crop_config(cfg, n_points), cfg.batch_size, cfg.seed, run.rank, run.world)
    total_steps = cfg.epochs * batches.steps_per_epoch
    total_batch = cfg.batch_size * run.world
    sched = make_schedules(cfg, batches.steps_per_epoch, total_batch)
    end_step = min(total_steps, cfg.max_steps) if cfg.max_steps else total_steps
    return Data(dataset, data_info, batches, sched, total_steps, end_step, total_batch)


def restore_state(run: Run, nets: Nets, data: Data) -> None:
    """A resumed run: networks, loss centre, optimizer and global RNG as saved, and the step to go on from."""
    if not run.resuming:
        return
    out = run.out
    tensors, meta = load_state(out)
    nets.student.load_state_dict(prefixed(tensors, "student."))
    nets.teacher.load_state_dict(prefixed(tensors, "teacher."))
    nets.distill_loss.center.copy_(tensors["loss.center"])
    optimizer_from_tensors(nets.optimizer, tensors, meta["optimizer"])
    set_rng_state(tensors, meta["rng"])
    data.start_step, data.wall_before = int(meta["step"]), float(meta.get("wall_time_s", 0.0))
    if meta.get("world_size", 1) != run.world:
        raise SystemExit(f"{out} was saved by {meta.get('world_size', 1)} processes; resume it with the same number")
    saved_print = meta.get("dataset", {}).get("fingerprint")
    if saved_print and saved_print != data.info["fingerprint"]:
        raise SystemExit(f"{out} was trained on another file list (fingerprint {saved_print}, this data set has "
                         f"{data.info['fingerprint']}); use --no-resume to start over, or another --out")


def train_loop(run: Run, nets: Nets, data: Data) -> Loop:
    """Steps start_step to end_step: train_step, log_step, save_or_stop. A signal (state saved), unreadable data
    or a non-finite loss ends it early; the Loop it returns says which."""
    cfg = run.cfg
    if run.world > 1:
        nets.model = nn.parallel.DistributedDataParallel(
            nets.student, device_ids=[run.local_rank] if run.device.type == "cuda" else None)
    loader = torch.utils.data.DataLoader(
        data.batches, batch_size=None, sampler=range(data.start_step, data.end_step), num_workers=cfg.num_workers,
        pin_memory=run.device.type == "cuda", prefetch_factor=2 if cfg.num_workers else None,
        worker_init_fn=_quiet_worker,
        generator=torch.Generator().manual_seed(cfg.seed))   # own generator: the loader never draws from the global RNG
    loop = start_loop(run, nets, data)
    with StopFlag() as stop:
        batches_iter = iter(loader)
        try:
            while loop.step < data.end_step:
                try:
                    batch = next(batches_iter)
                except (RuntimeError, KeyboardInterrupt):
                    if stop.signal is None:   # a real error, not a DataLoader worker killed by our Ctrl-C
                        raise
                    save_run_state(run, nets, data, loop)
                    loop.stopped_by = stop.signal
                    break
                if any_rank("error" in batch, run.world, run.device):   # every rank stops at the same step, within seconds
                    tqdm.write(f"[train] rank {run.rank}: cannot read the data of step {loop.step}: {batch['error']}"
                               if "error" in batch else f"[train] rank {run.rank}: another rank could not read its data")
                    loop.failed = True
                    break
                t_got = time.perf_counter()
                assert batch["step"] == loop.step, (batch["step"], loop.step)
                scalars = train_step(run, nets, data, batch["views"], loop.step)
                if scalars is None:
                    loop.nonfinite = True
                    break
                loop.step += 1
                if loop.step in loop.snap_at:
                    save_snapshot(run.out, loop.step, nets.teacher.backbone)
                log_step(run, data, loop, {**scalars, "prep_s": batch["prep_s"], "wait_s": t_got - loop.t_wait})
                if save_or_stop(run, nets, data, loop, stop.signal):
                    break
        finally:
            stop_loader(batches_iter)
    return loop


def start_loop(run: Run, nets: Nets, data: Data) -> Loop:
    """Announce the run, open metrics.csv (rank 0), keep the first snapshot if it is due, start the clocks."""
    out, metrics_file, metrics = run.out, None, None
    if run.main_process:
        n_params = sum(p.numel() for p in nets.student.parameters())
        info = data.info
        tqdm.write(f"[train] {'resuming' if run.resuming else 'starting'} {out} at step {data.start_step}/"
                   f"{data.total_steps} ({run.cfg.epochs} epochs x {data.steps_per_epoch} steps, {len(data.dataset)} "
                   f"shapes, total batch {data.total_batch}, {run.world} process(es), {run.device}); method "
                   f"{run.cfg.method}, {n_params / 1e6:.2f}M parameters")
        tqdm.write(f"[train] data: {info['layout']} at {info['root']}, {info['split']} split "
                   f"({info['split_source']}), {info['n_shapes']} shapes, {info['n_classes']} classes, "
                   f"{info['fingerprint']}")
        metrics_file, metrics = open_metrics(out / "metrics.csv", data.start_step)
    snap_at = snapshot_steps(data.total_steps, run.cfg.snapshots) if run.main_process else set()
    if data.start_step in snap_at and not (out / "snapshots" / f"step-{data.start_step:07d}.safetensors").exists():
        save_snapshot(out, data.start_step, nets.teacher.backbone)
    t_start = time.time()
    last_save = time.time()
    bar = tqdm(total=data.total_steps, initial=data.start_step, disable=not run.main_process, dynamic_ncols=True,
               unit="step")
    return Loop(data.start_step, bar, snap_at, metrics_file, metrics, t_start, last_save, t_wait=time.perf_counter())


def train_step(run: Run, nets: Nets, data: Data, views: list[torch.Tensor], step: int) -> dict | None:
    """One optimisation step on this rank's views; the step's scalars, or None when the loss is not finite on
    some rank (then every rank stops, and the last saved state is intact)."""
    cfg, sched = run.cfg, data.sched
    views = [v.to(run.device, non_blocking=True) for v in views]
    torch.manual_seed(step_seed(cfg.seed, 3, run.rank, step))   # drop path of this step, independent of history
    for i, group in enumerate(nets.optimizer.param_groups):
        group["lr"] = float(sched.lr[step])
        if i == 0:
            group["weight_decay"] = float(sched.wd[step])
    tau_t = float(sched.teacher_temp[step])

    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=run.device.type == "cuda"):
        with torch.no_grad():
            teacher_logits = nets.teacher(views[:cfg.n_global]).float()
        student_logits = nets.model(views).float()
    losses = step_loss(cfg, student_logits, teacher_logits, tau_t, nets.distill_loss, nets.contrast_loss, run.world)
    if cfg.method in PATCH_METHODS:   # the masked patch term (training/patch_objective.py)
        add_patch_term(losses, nets.student, nets.teacher, tau_t, cfg)
    loss, targets = losses["loss"], losses["targets"]
    if any_rank(not torch.isfinite(loss.detach()), run.world, run.device):   # every rank must take the same branch
        tqdm.write(f"[train] loss is {loss.item()} at step {step}; stopping (the last saved state is intact)")
        return None

    nets.optimizer.zero_grad(set_to_none=True)
    losses["backward"].backward()
    grad_norm = clip_gradients(nets.student, cfg.clip_grad)
    cancel_gradients_last_layer(nets.student, step // data.steps_per_epoch, cfg.freeze_last_layer)
    nets.optimizer.step()
    ema_update(nets.teacher, nets.student, float(sched.momentum[step]))
    nets.distill_loss.update_center(teacher_logits)
    with torch.no_grad():
        h = float(entropy(targets))
        h_batch = float(entropy(targets.mean(0, keepdim=True)))
    return {"loss": loss.item(), "distill": losses["distill"].item(), "contrast": losses["contrast"].item(),
            "teacher_entropy": h, "teacher_batch_entropy": h_batch, "grad_norm": grad_norm}


def log_step(run: Run, data: Data, loop: Loop, scalars: dict) -> None:
    """Add a finished step's scalars (and its time) to the window; on rank 0 move the bar, warn of a collapse,
    and every log_every steps write the window's means to metrics.csv."""
    cfg, step = run.cfg, loop.step
    t_done = time.perf_counter()
    scalars["step_s"] = t_done - loop.t_wait
    for key, value in scalars.items():
        loop.window.setdefault(key, []).append(value)
    loop.t_wait = t_done
    if not run.main_process:
        return
    loop.bar.update(1)
    loop.bar.set_postfix(loss=f"{scalars['loss']:.3f}", lr=f"{data.sched.lr[step - 1]:.2e}",
                         sps=f"{data.total_batch / scalars['step_s']:.1f}", refresh=False)
    # uniform-looking targets are expected while the teacher temperature warms up
    warmup_tt_steps = min(data.total_steps, round(cfg.warmup_teacher_temp_epochs * data.steps_per_epoch))
    warning = (collapse_warning(scalars["teacher_entropy"], scalars["teacher_batch_entropy"], cfg.out_dim)
               if step > warmup_tt_steps else None)
    if warning and step - loop.warned_at >= 50:
        tqdm.write(f"[train] step {step}: {warning}")
        loop.warned_at = step
    if step % cfg.log_every == 0 or step == data.end_step:
        loop.metrics.writerow(metrics_row(step, loop.window, data))
        loop.metrics_file.flush()
        loop.window = {}


def metrics_row(step: int, window: dict[str, list[float]], data: Data) -> dict:
    """metrics.csv's row after `step`: the means over the window, the schedules at the step just taken."""
    mean = {k: float(np.mean(v)) for k, v in window.items()}
    sched, i = data.sched, step - 1
    return {
        "step": step, "epoch": f"{step / data.steps_per_epoch:.3f}", "loss": f"{mean['loss']:.5f}",
        "distill": f"{mean['distill']:.5f}", "contrast": f"{mean['contrast']:.5f}",
        "kl": f"{mean['distill'] - mean['teacher_entropy']:.5f}",
        "teacher_entropy": f"{mean['teacher_entropy']:.4f}",
        "teacher_batch_entropy": f"{mean['teacher_batch_entropy']:.4f}",
        "lr": f"{sched.lr[i]:.6g}", "wd": f"{sched.wd[i]:.4g}",
        "momentum": f"{sched.momentum[i]:.6f}", "tau_t": f"{float(sched.teacher_temp[i]):.4f}",
        "grad_norm": f"{mean['grad_norm']:.4f}",
        "samples_per_s": f"{data.total_batch / mean['step_s']:.2f}",
        "prep_share": f"{mean['prep_s'] / mean['step_s']:.4f}",
        "wait_share": f"{mean['wait_s'] / mean['step_s']:.4f}"}


def save_or_stop(run: Run, nets: Nets, data: Data, loop: Loop, stop_signal: int | None) -> bool:
    """Save the state when due (steps or minutes), at the end step or on a signal; True when the loop must stop.
    Every rank agrees on both."""
    if run.world > 1:   # every rank must agree to stop at the same step
        flag = torch.tensor([0 if stop_signal is None else stop_signal], device=run.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        stop_signal = int(flag.item()) or None
    cfg = run.cfg
    due = (cfg.save_every_steps and loop.step % cfg.save_every_steps == 0) or \
          (time.time() - loop.last_save) > 60 * cfg.save_every_min
    if stop_signal is not None or due or loop.step == data.end_step:
        save_run_state(run, nets, data, loop)
        loop.last_save = time.time()
    if stop_signal is not None:
        loop.stopped_by = stop_signal
        return True
    return False


def save_run_state(run: Run, nets: Nets, data: Data, loop: Loop) -> None:
    """Rank 0 saves the resumable state at loop.step, with the run's progress in state.json (training/state.py)."""
    if not run.main_process:
        return
    step, spe = loop.step, data.steps_per_epoch
    meta = {"config": asdict(run.cfg), "epoch": step // spe, "position_in_epoch": step % spe,
            "steps_per_epoch": spe, "total_steps": data.total_steps, "world_size": run.world,
            "samples_seen": step * data.total_batch, "wall_time_s": data.wall_before + (time.time() - loop.t_start),
            "n_train_shapes": len(data.dataset), "dataset": data.info}
    save_state(run.out, step, nets.student, nets.teacher, nets.distill_loss, nets.optimizer, meta)


def finish_run(run: Run, nets: Nets, data: Data, loop: Loop) -> int:
    """Close the bar and metrics.csv, write the checkpoint when the run is complete, and leave together; the exit
    code: 0, 1 when a rank could not read its data, 128 + the signal that stopped the run."""
    loop.bar.close()
    if loop.failed:
        if run.world > 1 and dist.is_initialized():
            dist.destroy_process_group()
        if run.main_process:
            loop.metrics_file.close()
            tqdm.write("[train] stopped: fix or remove the file above (the last saved state is intact)")
        return 1

    if os.environ.get("PCDVIZ_TRAIN_DIGEST_DIR"):   # rank-consistency test hook
        d = Path(os.environ["PCDVIZ_TRAIN_DIGEST_DIR"])
        d.mkdir(parents=True, exist_ok=True)
        (d / f"rank{run.rank}.txt").write_text(
            f"{params_digest(nets.student)}\n{params_digest(nets.teacher)}\n"
            f"{hashlib.sha256(nets.distill_loss.center.cpu().numpy().tobytes()).hexdigest()}\n")
    if run.main_process:
        loop.metrics_file.close()
    code, step = 0, loop.step
    if loop.stopped_by is not None:
        if run.main_process:
            tqdm.write(f"[train] stopped at step {step}; run the same command again to resume")
        code = 128 + loop.stopped_by
    elif step >= data.total_steps and run.main_process:
        wall = data.wall_before + (time.time() - loop.t_start)
        write_checkpoint(run.out / "checkpoint", nets.teacher.backbone, run.cfg, data.info, wall,
                         step * data.total_batch)
        tqdm.write(f"[train] done: {step} steps in {wall / 60:.1f} min; teacher backbone -> {run.out / 'checkpoint'}")
    elif run.main_process:
        tqdm.write(f"[train] stopped at step {step} (max_steps); run again without --max-steps to continue")
    if run.world > 1 and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
    return code


if __name__ == "__main__":
    sys.exit(main())
