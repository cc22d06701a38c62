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
import random
import shutil
import signal
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from pcdviz.checkpoints import fsync_dir, fsync_file
from pcdviz.model import DINOHead, PointViT, preset
from training.crops import CropConfig, multi_crop, same_size_runs
from training.distributed import convert_global_batchnorm, mean_over_ranks
from training.losses import ContrastiveLoss, DistillationLoss, collapse_warning, entropy
from training.patch_objective import IBOT, MAE, PATCH_METHODS, add_patch_term, build_patch_student

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
METHODS = ("dino+contrast", "dino", IBOT, MAE)   # IBOT / MAE: + masked patch-token distillation / point reconstruction


# --------------------------------------------------------------------------- config


@dataclass
class TrainConfig:
    """Every setting of a training run; recipes in training/configs/*.json set a subset of these."""
    recipe: str = "tiny-cpu"
    method: str = "dino+contrast"           # "dino" = distillation only (contrast_weight forced to 0)
    # model
    model: str = "tiny"                      # pcdviz.model preset name
    model_overrides: dict = field(default_factory=dict)   # e.g. {"depth": 2}; --set model.depth=2
    out_dim: int = 512                       # K prototypes
    head_hidden: int = 512
    head_bottleneck: int = 256
    head_layers: int = 3
    norm_last_layer: bool = True
    head_bn: bool = False                    # BatchNorm in the head's hidden layers (DINO's use_bn); SyncBatchNorm under DDP on CUDA
    # optimisation
    epochs: int = 30
    batch_size: int = 32                     # per process
    lr: float = 5e-4                         # at a total batch of 256; scaled linearly with the total batch
    min_lr: float = 1e-6
    warmup_epochs: float = 2.0
    weight_decay: float = 0.04
    weight_decay_end: float = 0.4
    clip_grad: float = 3.0                   # 0 = no clipping
    freeze_last_layer: int = 1               # epochs with the head's last layer frozen
    momentum_teacher: float = 0.996          # cosine -> 1
    # crops (global_points/local_points 0 = model n_points and n_points // 4)
    n_global: int = 2
    n_local: int = 8
    global_points: int = 0
    local_points: int = 0
    global_scale: tuple = (0.5, 1.0)
    local_scale: tuple = (0.2, 0.5)
    jitter_sigma: float = 0.01
    jitter_clip: float = 0.05
    scale_range: tuple = (2 / 3, 3 / 2)
    translate: float = 0.2
    rotate_up: bool = False
    # loss
    student_temp: float = 0.1
    teacher_temp: float = 0.07
    warmup_teacher_temp: float = 0.04
    warmup_teacher_temp_epochs: float = 5.0
    center_momentum: float = 0.9
    contrast_weight: float = 1.0
    contrast_scale: float = 64.0
    contrast_score: str = "prob"             # "prob" | "cosine" (see losses.ContrastiveLoss)
    patch_weight: float = 1.0                # method dino+contrast+ibot only (training/patch_objective.py): the
    patch_out_dim: int = 512                 #   masked patch term's weight, its head's prototypes, and the share
    mask_ratio_min: float = 0.1              #   of a global crop's patch tokens masked, U(min, max) per shape
    mask_ratio_max: float = 0.5
    # data
    dataset: str = "synthetic"               # "synthetic" or a release's path (ShapeNet55-34/, ...) for pcdviz.data.open_dataset
    dataset_variant: str = ""                # ShapeNet "55" | "34"; ScanObjectNN OBJ_BG | OBJ_ONLY | PB_T50_RS; "" = the reader's default
    background: str = "keep"                 # ScanObjectNN: "keep" or "drop" the points its mask marks as background
    data_points: int = 2048                  # points per training shape (crops are cut from these)
    synthetic_per_class: int = 0             # 0 = SyntheticShapes' default
    data_seed: int = 0
    # run
    seed: int = 0
    out: str = "runs/tiny-cpu"
    device: str = "auto"                     # auto | cpu | cuda
    num_workers: int = 0                     # DataLoader workers that cut the crops (0 = main process)
    cache_mb: float = 256                    # per-process cache of parsed shapes (text/mesh readers); x (workers + 1) in all
    log_every: int = 10
    save_every_steps: int = 0                # 0 = only by time
    save_every_min: float = 10.0
    max_steps: int = 0                       # stop (state saved, resumable) after this global step; 0 = run to the end
    snapshots: int = 4                       # teacher backbones kept at evenly spaced steps (0, 1/n, ..., (n-1)/n of the
    #                                          run; float16) and shipped in the checkpoint: attention over training

    def __post_init__(self):
        self.global_scale = tuple(self.global_scale)
        self.local_scale = tuple(self.local_scale)
        self.scale_range = tuple(self.scale_range)
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")


# Settings that may change when a run is resumed (they do not change what is computed).
RUNTIME_FIELDS = {"out", "device", "num_workers", "log_every", "save_every_steps", "save_every_min", "max_steps",
                  "cache_mb", "snapshots"}


def load_recipe(name: str) -> dict:
    """Settings of a named recipe (training/configs/NAME.json) or a JSON file path; keys starting with _ are comments."""
    path = Path(name)
    if not path.suffix:
        path = CONFIG_DIR / f"{name}.json"
    if not path.is_file():
        known = sorted(p.stem for p in CONFIG_DIR.glob("*.json"))
        raise SystemExit(f"unknown recipe {name!r}: choose from {known} or give a JSON file")
    settings = {k: v for k, v in json.loads(path.read_text()).items() if not k.startswith("_")}
    settings.setdefault("recipe", path.stem)
    return settings


def parse_value(text: str):
    """A --set value: JSON when it parses (numbers, true/false, lists, objects), else the string itself."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def apply_settings(cfg: TrainConfig, settings: dict) -> TrainConfig:
    """A copy of cfg with settings applied; "model.X" keys go into model_overrides; unknown keys are an error."""
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    values = asdict(cfg)
    values["model_overrides"] = dict(values["model_overrides"])
    for key, value in settings.items():
        if key.startswith("model."):
            values["model_overrides"][key[len("model."):]] = value
        elif key in known:
            values[key] = value
        else:
            raise SystemExit(f"unknown setting {key!r}; settings are: {', '.join(sorted(known))} and model.<field>")
    return TrainConfig(**values)


def resolve_method(cfg: TrainConfig) -> TrainConfig:
    """`dino` is the distillation-only ablation: its contrast weight is 0."""
    if cfg.method == "dino":
        cfg.contrast_weight = 0.0
    elif cfg.contrast_weight <= 0:
        raise SystemExit("method dino+contrast needs contrast_weight > 0 (use --method dino for the ablation)")
    return cfg


# --------------------------------------------------------------------------- schedules


def cosine_schedule(base: float, final: float, total_steps: int, warmup_steps: int = 0,
                    warmup_start: float = 0.0) -> np.ndarray:
    """Per-step values: linear warm-up from warmup_start to base, then cosine from base to final."""
    warmup_steps = min(warmup_steps, total_steps)
    warmup = np.linspace(warmup_start, base, warmup_steps, endpoint=False)
    n = total_steps - warmup_steps
    cosine = final + 0.5 * (base - final) * (1 + np.cos(np.pi * np.arange(n) / max(n, 1)))
    return np.concatenate([warmup, cosine])


def teacher_temp_schedule(start: float, end: float, total_steps: int, warmup_steps: int) -> np.ndarray:
    """Per-step teacher temperature: linear from start to end over warmup_steps, then constant."""
    warmup_steps = min(warmup_steps, total_steps)
    return np.concatenate([np.linspace(start, end, warmup_steps, endpoint=False),
                           np.full(total_steps - warmup_steps, end)])


@dataclass
class Schedules:
    """Every per-step schedule of a run, indexed by the global step."""
    lr: np.ndarray
    wd: np.ndarray
    momentum: np.ndarray
    teacher_temp: np.ndarray


def make_schedules(cfg: TrainConfig, steps_per_epoch: int, total_batch: int) -> Schedules:
    """The run's schedules (DINO's: lr warm-up + cosine, wd cosine up, momentum cosine to 1, tau_t warm-up)."""
    total = cfg.epochs * steps_per_epoch
    lr = cfg.lr * total_batch / 256.0
    return Schedules(
        lr=cosine_schedule(lr, cfg.min_lr, total, round(cfg.warmup_epochs * steps_per_epoch)),
        wd=cosine_schedule(cfg.weight_decay, cfg.weight_decay_end, total),
        momentum=cosine_schedule(cfg.momentum_teacher, 1.0, total),
        teacher_temp=teacher_temp_schedule(cfg.warmup_teacher_temp, cfg.teacher_temp, total,
                                           round(cfg.warmup_teacher_temp_epochs * steps_per_epoch)),
    )


# --------------------------------------------------------------------------- model pieces


class MultiCropNet(nn.Module):
    """Backbone + head over a list of views: views of equal size share one forward pass."""

    def __init__(self, backbone: PointViT, head: DINOHead):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, views: list[torch.Tensor]) -> torch.Tensor:
        """Logits (V*B, K), view-major in the order of `views`."""
        features = [self.backbone(torch.cat(views[s:e])).cls for s, e in same_size_runs(views)]
        return self.head(torch.cat(features))


def build_student(cfg: TrainConfig) -> MultiCropNet:
    """A fresh PointViT + DINOHead from the config."""
    backbone = PointViT(preset(cfg.model, **cfg.model_overrides))
    head = DINOHead(backbone.embed_dim, cfg.out_dim, hidden_dim=cfg.head_hidden,
                    bottleneck_dim=cfg.head_bottleneck, n_layers=cfg.head_layers,
                    norm_last_layer=cfg.norm_last_layer, use_bn=cfg.head_bn)
    if cfg.method in PATCH_METHODS:   # + a patch head and a mask token (training/patch_objective.py)
        return build_patch_student(backbone, head, cfg)
    return MultiCropNet(backbone, head)


def param_groups(model: nn.Module) -> list[dict]:
    """Weight decay on weight matrices only; biases, norms and tokens are not regularised (as in DINO)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 or name.endswith(".bias") or "token" in name or "cls_pos" in name else decay).append(p)
    return [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """teacher <- momentum * teacher + (1 - momentum) * student, parameter by parameter."""
    for pt, ps in zip(teacher.parameters(), student.parameters()):
        pt.mul_(momentum).add_(ps.detach(), alpha=1.0 - momentum)


def clip_gradients(model: nn.Module, max_norm: float) -> float:
    """Clip the global gradient norm to max_norm (0 = no clipping); returns the norm before clipping."""
    params = [p for p in model.parameters() if p.grad is not None]
    if not params:
        return 0.0
    if max_norm <= 0:
        return float(torch.norm(torch.stack([p.grad.detach().norm() for p in params])))
    return float(nn.utils.clip_grad_norm_(params, max_norm))


def cancel_gradients_last_layer(model: nn.Module, epoch: int, freeze_epochs: int) -> None:
    """Drop the head's last-layer gradients during the first freeze_epochs epochs (stabilises DINO's start)."""
    if epoch >= freeze_epochs:
        return
    for name, p in model.named_parameters():
        if "last_layer" in name:
            p.grad = None


# --------------------------------------------------------------------------- data


def step_seed(*parts: int) -> int:
    """A 63-bit seed derived from integers (seed, rank, step, ...), for per-step generators."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, np.uint64)[0] >> 1)


def open_train_dataset(cfg: TrainConfig):
    """The training split: SyntheticShapes for "synthetic", else pcdviz.data.open_dataset(path) (a sentence if unreadable)."""
    if cfg.dataset == "synthetic":
        from pcdviz.data import SyntheticShapes
        kwargs = {"n_per_class": cfg.synthetic_per_class} if cfg.synthetic_per_class else {}
        return SyntheticShapes("train", n_points=cfg.data_points, seed=cfg.data_seed, **kwargs)
    from pcdviz.data import DatasetError, open_dataset
    try:
        return open_dataset(cfg.dataset, "train", cfg.data_points, variant=cfg.dataset_variant or None,
                            background=cfg.background, cache_mb=cfg.cache_mb)
    except DatasetError as err:
        raise SystemExit(f"pcdviz train: {err}") from None


def data_card(cfg: TrainConfig, dataset, world: int) -> dict:
    """The model card's `dataset`: reader, layout, root, split and its source, counts, fingerprint, world size, total batch."""
    from pcdviz.data import dataset_info
    info = dataset_info(dataset)
    return {**info, "points_per_shape": cfg.data_points, "world_size": world, "total_batch": cfg.batch_size * world}


def describe_dataset(cfg: TrainConfig, info: dict) -> str:
    """One line for the model card's `data` (the explorer shows it)."""
    name = "synthetic shapes" if cfg.dataset == "synthetic" else info.get("layout", cfg.dataset)
    return f"{name} ({info.get('split')} split, {info['n_shapes']} shapes x {cfg.data_points} points)"


class CropBatches(torch.utils.data.Dataset):
    """Item s = the multi-crop views of global step s's batch for this rank (and its preparation time).

    Epoch e's order is a permutation seeded by (seed, e), cut into total batches of batch_size x
    world_size shapes (the last partial one dropped); rank r takes its slice of each. The crop
    generator of step s is seeded by (seed, rank, s), so the item depends only on s.
    """

    def __init__(self, dataset, crop_cfg: CropConfig, batch_size: int, seed: int, rank: int = 0, world_size: int = 1):
        self.dataset, self.crop_cfg = dataset, crop_cfg
        self.batch_size, self.seed, self.rank, self.world_size = batch_size, seed, rank, world_size
        self.steps_per_epoch = len(dataset) // (batch_size * world_size)
        if self.steps_per_epoch < 1:
            raise SystemExit(f"dataset of {len(dataset)} shapes is smaller than one total batch "
                             f"({batch_size} x {world_size} processes)")
        self._order: tuple[int, torch.Tensor] | None = None

    def epoch_order(self, epoch: int) -> torch.Tensor:
        """The seeded permutation of epoch `epoch` (cached)."""
        if self._order is None or self._order[0] != epoch:
            g = torch.Generator().manual_seed(step_seed(self.seed, 1, epoch))
            self._order = (epoch, torch.randperm(len(self.dataset), generator=g))
        return self._order[1]

    def indices(self, step: int) -> list[int]:
        """Dataset indices of this rank's batch at global step `step`."""
        epoch, j = divmod(step, self.steps_per_epoch)
        start = (j * self.world_size + self.rank) * self.batch_size
        return self.epoch_order(epoch)[start:start + self.batch_size].tolist()

    def __len__(self) -> int:
        return 1 << 62   # indexed by global step; the sampler says which steps

    def __getitem__(self, step: int) -> dict:
        t0 = time.perf_counter()
        try:
            points = torch.stack([torch.as_tensor(self.dataset[i]["points"], dtype=torch.float32)
                                  for i in self.indices(step)])
        except Exception as err:   # an unreadable file: reported by the main process, which stops every rank
            return {"step": step, "error": read_error_sentence(err)}
        g = torch.Generator().manual_seed(step_seed(self.seed, 2, self.rank, step))
        views = multi_crop(points, self.crop_cfg, g)
        return {"step": step, "views": views, "prep_s": time.perf_counter() - t0}


def read_error_sentence(err: Exception) -> str:
    """The reader's sentence (it names the file); other errors keep their type so a bug is recognisable."""
    from pcdviz.data import DatasetError
    from pcdviz.io import PointCloudError
    if isinstance(err, (DatasetError, PointCloudError)):
        return str(err)
    return f"{type(err).__name__}: {err}"


def _quiet_worker(_worker_id: int) -> None:
    """DataLoader workers ignore Ctrl-C/SIGTERM: the main process stops them after saving the state
    (stop_loader, which also ends the run when a worker cannot read a file)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def stop_loader(iterator) -> None:
    """Shut a DataLoader iterator's workers down now (not when the iterator is garbage-collected, which an
    exception's traceback can delay past exit). Workers ignore SIGTERM (_quiet_worker), so one still alive
    after the loader's own shutdown gets SIGKILL: otherwise multiprocessing's exit handler would wait for
    it forever and a failing run would hang instead of exiting. (Killing first would trip the loader's
    SIGCHLD handler, which turns a worker's death into an error in the main process.)"""
    workers = list(getattr(iterator, "_workers", []))
    shutdown = getattr(iterator, "_shutdown_workers", None)
    try:
        if shutdown is not None:
            shutdown()
    finally:
        for w in workers:
            if w.is_alive():
                w.kill()
            w.join(timeout=5)


def any_rank(flag: bool, world: int, device: torch.device) -> bool:
    """True on every rank when flag is true on any rank (all ranks must take the same branch)."""
    if world == 1:
        return bool(flag)
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def crop_config(cfg: TrainConfig, n_points: int) -> CropConfig:
    """The crops of a run; sizes default to the model's n_points (global) and n_points // 4 (local)."""
    return CropConfig(n_global=cfg.n_global, n_local=cfg.n_local,
                      global_points=cfg.global_points or n_points,
                      local_points=cfg.local_points or max(1, n_points // 4),
                      global_scale=cfg.global_scale, local_scale=cfg.local_scale,
                      jitter_sigma=cfg.jitter_sigma, jitter_clip=cfg.jitter_clip,
                      scale_range=cfg.scale_range, translate=cfg.translate, rotate_up=cfg.rotate_up)


# --------------------------------------------------------------------------- state (no pickle)


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
    """The optimizer state flattened to tensors "opt.state.<i>.<name>" and JSON (param groups, scalars)."""
    sd = optimizer.state_dict()
    tensors, scalars = {}, {}
    for i, state in sd["state"].items():
        for name, value in state.items():
            if torch.is_tensor(value):
                tensors[f"opt.state.{i}.{name}"] = value
            else:
                scalars[f"{i}.{name}"] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def optimizer_from_tensors(optimizer: torch.optim.Optimizer, tensors: dict, meta: dict) -> None:
    """Inverse of optimizer_tensors: load the flattened state into `optimizer`."""
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("opt.state."):
            i, name = key[len("opt.state."):].split(".", 1)
            state.setdefault(int(i), {})[name] = value
    for key, value in meta["scalars"].items():
        i, name = key.split(".", 1)
        state.setdefault(int(i), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def rng_state() -> tuple[dict, dict]:
    """Global RNG states (torch, CUDA, numpy, python) as tensors and JSON."""
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    tensors["rng.numpy"] = torch.from_numpy(keys.astype(np.int64))
    version, py_state, py_gauss = random.getstate()
    return tensors, {"numpy": [kind, int(pos), int(has_gauss), float(gauss)],
                     "python": [version, list(py_state), py_gauss]}


def set_rng_state(tensors: dict, meta: dict) -> None:
    """Restore what rng_state saved."""
    torch.set_rng_state(tensors["rng.torch"])
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("rng.cuda."))]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    kind, pos, has_gauss, gauss = meta["numpy"]
    np.random.set_state((kind, tensors["rng.numpy"].numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, py_state, py_gauss = meta["python"]
    random.setstate((version, tuple(py_state), py_gauss))


def _atomic_write_text(path: Path, text: str) -> None:
    """Write a text file via a temp file, fsync and os.replace: readers never see half a file."""
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(text)
    fsync_file(tmp)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def save_state(out: Path, step: int, student: nn.Module, teacher: nn.Module, distill: DistillationLoss,
               optimizer: torch.optim.Optimizer, meta: dict) -> Path:
    """Write state-<step>.safetensors, then point state.json at it (both atomic); older tensor files are removed."""
    tensors = {f"student.{k}": v for k, v in student.state_dict().items()}
    tensors |= {f"teacher.{k}": v for k, v in teacher.state_dict().items()}
    tensors["loss.center"] = distill.center
    opt_tensors, opt_meta = optimizer_tensors(optimizer)
    rng_tensors, rng_meta = rng_state()
    tensors |= opt_tensors | rng_tensors
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
    name = f"state-{step:08d}.safetensors"
    tmp = out / (name + f".tmp{os.getpid()}")
    save_file(tensors, str(tmp))
    fsync_file(tmp)
    os.replace(tmp, out / name)
    _atomic_write_text(out / "state.json", json.dumps(
        {"format": "pcdviz-train-state/1", "step": step, "tensors": name,
         "optimizer": opt_meta, "rng": rng_meta, **meta}, indent=1))
    for old in out.glob("state-*.safetensors"):
        if old.name != name:
            old.unlink(missing_ok=True)
    # half-written files of a save that a kill interrupted: ours, and safetensors' own (it writes through a
    # ".tmpXXXXXX" file of Rust's tempfile crate and renames it; a SIGKILL in between leaves that behind)
    for stale in [*out.glob("state*.tmp*"), *out.glob(".tmp*")]:
        if stale.is_file():
            stale.unlink(missing_ok=True)
    return out / name


def snapshot_steps(total_steps: int, n: int) -> set[int]:
    """The steps at which a teacher snapshot is kept: n evenly spaced from 0 (the end is the checkpoint itself)."""
    return {round(total_steps * i / n) for i in range(n)} if n > 0 and total_steps > 0 else set()


def save_snapshot(out: Path, step: int, backbone: nn.Module) -> Path:
    """The teacher backbone at `step` as out/snapshots/step-<step>.safetensors in float16 (half the size; the
    explorer reads it back as float32), written atomically so a kill never leaves half a file."""
    folder = out / "snapshots"
    folder.mkdir(exist_ok=True)
    for stale in [*folder.glob("*.tmp*"), *folder.glob(".tmp*")]:  # left by a kill inside an earlier snapshot
        if stale.is_file():
            stale.unlink(missing_ok=True)
    path = folder / f"step-{step:07d}.safetensors"
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    state = {k: (v.half() if v.is_floating_point() else v).detach().cpu().contiguous() for k, v in
             backbone.state_dict().items()}
    save_file(state, str(tmp), metadata={"step": str(step)})
    fsync_file(tmp)
    os.replace(tmp, path)
    return path


def load_state(out: Path) -> tuple[dict, dict] | None:
    """(tensors, state.json) of the run in `out`, or None when it has no saved state."""
    path = out / "state.json"
    if not path.is_file():
        return None
    meta = json.loads(path.read_text())
    return load_file(str(out / meta["tensors"])), meta


def prefixed(tensors: dict, prefix: str) -> dict:
    """The entries of `tensors` under `prefix`, with the prefix removed."""
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def params_digest(model: nn.Module) -> str:
    """SHA-256 of every parameter and buffer's bytes, in state_dict order (rank-consistency checks)."""
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


# --------------------------------------------------------------------------- distributed


def init_distributed(device_kind: str) -> tuple[int, int, int]:
    """(rank, world size, local rank); starts the process group when launched by torchrun."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return 0, 1, 0
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if world > 1 and not dist.is_initialized():
        if device_kind == "cuda":
            torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl" if device_kind == "cuda" else "gloo")
    return rank, world, local_rank


class StopFlag:
    """Set by SIGINT/SIGTERM: the loop finishes its step, saves the state and exits. A second Ctrl-C aborts."""

    def __init__(self):
        self.signal: int | None = None
        self._previous = {}

    def __enter__(self):
        if threading_main():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signal = signum
        tqdm.write(f"[train] {signal.Signals(signum).name}: saving the state after this step "
                   "(Ctrl-C again to abort without saving)")

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def threading_main() -> bool:
    """Signal handlers can only be installed from the main thread."""
    import threading
    return threading.current_thread() is threading.main_thread()


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


def main(argv: list[str] | None = None) -> int:
    """Train (or resume) a run; returns 0 when finished or stopped at --max-steps, 130/143 when interrupted."""
    args = parse_args(list(sys.argv[1:] if argv is None else argv))
    cfg, resuming = resolve_config(args)
    device = torch.device("cuda" if cfg.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if cfg.device == "auto" else cfg.device))
    rank, world, local_rank = init_distributed(device.type)
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
    main_process = rank == 0
    out = Path(cfg.out)
    if main_process:
        out.mkdir(parents=True, exist_ok=True)
        if not resuming:
            for old in list(out.glob("state*")):
                old.unlink()
            shutil.rmtree(out / "snapshots", ignore_errors=True)   # a new run: the old run's snapshots do not belong

    # data first: a missing or unreadable release ends the run before a large model is built
    dataset = open_train_dataset(cfg)
    data_info = data_card(cfg, dataset, world)

    # model, teacher, losses, optimizer (identical init on every rank; DDP also broadcasts rank 0's)
    torch.manual_seed(cfg.seed)
    student = build_student(cfg).to(device)
    if world > 1:   # head_bn: student and teacher normalise over the global batch (a no-op without head_bn)
        student = convert_global_batchnorm(student)
    teacher = copy.deepcopy(student)
    for p in teacher.parameters():
        p.requires_grad = False
    teacher.eval()   # no drop path in the teacher; its head's BatchNorm (head_bn) still uses batch statistics, as in DINO
    distill_loss = DistillationLoss(cfg.out_dim, cfg.n_global, cfg.student_temp, cfg.center_momentum).to(device)
    contrast_loss = ContrastiveLoss(cfg.n_global, cfg.student_temp, cfg.contrast_scale, cfg.contrast_score)
    optimizer = torch.optim.AdamW(param_groups(student), lr=0.0, weight_decay=cfg.weight_decay)
    n_points = student.backbone.config.n_points

    batches = CropBatches(dataset, crop_config(cfg, n_points), cfg.batch_size, cfg.seed, rank, world)
    spe = batches.steps_per_epoch
    total_steps = cfg.epochs * spe
    total_batch = cfg.batch_size * world
    sched = make_schedules(cfg, spe, total_batch)

    start_step, wall_before = 0, 0.0
    if resuming:
        tensors, meta = load_state(out)
        student.load_state_dict(prefixed(tensors, "student."))
        teacher.load_state_dict(prefixed(tensors, "teacher."))
        distill_loss.center.copy_(tensors["loss.center"])
        optimizer_from_tensors(optimizer, tensors, meta["optimizer"])
        set_rng_state(tensors, meta["rng"])
        start_step, wall_before = int(meta["step"]), float(meta.get("wall_time_s", 0.0))
        if meta.get("world_size", 1) != world:
            raise SystemExit(f"{out} was saved by {meta.get('world_size', 1)} processes; resume it with the same number")
        saved_print = meta.get("dataset", {}).get("fingerprint")
        if saved_print and saved_print != data_info["fingerprint"]:
            raise SystemExit(f"{out} was trained on another file list (fingerprint {saved_print}, this data set has "
                             f"{data_info['fingerprint']}); use --no-resume to start over, or another --out")
    end_step = min(total_steps, cfg.max_steps) if cfg.max_steps else total_steps

    model = student
    if world > 1:
        model = nn.parallel.DistributedDataParallel(student, device_ids=[local_rank] if device.type == "cuda" else None)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")

    loader = torch.utils.data.DataLoader(
        batches, batch_size=None, sampler=range(start_step, end_step), num_workers=cfg.num_workers,
        pin_memory=device.type == "cuda", prefetch_factor=2 if cfg.num_workers else None, worker_init_fn=_quiet_worker,
        generator=torch.Generator().manual_seed(cfg.seed))   # own generator: the loader never draws from the global RNG

    if main_process:
        n_params = sum(p.numel() for p in student.parameters())
        tqdm.write(f"[train] {'resuming' if resuming else 'starting'} {out} at step {start_step}/{total_steps} "
                   f"({cfg.epochs} epochs x {spe} steps, {len(dataset)} shapes, total batch {total_batch}, "
                   f"{world} process(es), {device}); method {cfg.method}, {n_params / 1e6:.2f}M parameters")
        tqdm.write(f"[train] data: {data_info['layout']} at {data_info['root']}, {data_info['split']} split "
                   f"({data_info['split_source']}), {data_info['n_shapes']} shapes, {data_info['n_classes']} classes, "
                   f"{data_info['fingerprint']}")
        metrics_file, metrics = open_metrics(out / "metrics.csv", start_step)

    def state_meta(step: int) -> dict:
        return {"config": asdict(cfg), "epoch": step // spe, "position_in_epoch": step % spe,
                "steps_per_epoch": spe, "total_steps": total_steps, "world_size": world,
                "samples_seen": step * total_batch, "wall_time_s": wall_before + (time.time() - t_start),
                "n_train_shapes": len(dataset), "dataset": data_info}

    def save(step: int) -> None:
        if main_process:
            save_state(out, step, student, teacher, distill_loss, optimizer, state_meta(step))

    snap_at = snapshot_steps(total_steps, cfg.snapshots) if main_process else set()
    if start_step in snap_at and not (out / "snapshots" / f"step-{start_step:07d}.safetensors").exists():
        save_snapshot(out, start_step, teacher.backbone)
    t_start = time.time()
    last_save = time.time()
    step = start_step
    window: dict[str, list[float]] = {}
    bar = tqdm(total=total_steps, initial=start_step, disable=not main_process, dynamic_ncols=True, unit="step")
    warned_at = -10**9
    stopped_by = None
    warmup_tt_steps = min(total_steps, round(cfg.warmup_teacher_temp_epochs * spe))
    t_wait = time.perf_counter()
    failed = False
    with StopFlag() as stop:
        batches_iter = iter(loader)
        try:
            while step < end_step:
                try:
                    batch = next(batches_iter)
                except (RuntimeError, KeyboardInterrupt):
                    if stop.signal is None:   # a real error, not a DataLoader worker killed by our Ctrl-C
                        raise
                    save(step)
                    stopped_by = stop.signal
                    break
                if any_rank("error" in batch, world, device):   # every rank stops at the same step, within seconds
                    tqdm.write(f"[train] rank {rank}: cannot read the data of step {step}: {batch['error']}"
                               if "error" in batch else f"[train] rank {rank}: another rank could not read its data")
                    failed = True
                    break
                t_got = time.perf_counter()
                assert batch["step"] == step, (batch["step"], step)
                epoch = step // spe
                views = [v.to(device, non_blocking=True) for v in batch["views"]]
                torch.manual_seed(step_seed(cfg.seed, 3, rank, step))   # drop path of this step, independent of history
                for i, group in enumerate(optimizer.param_groups):
                    group["lr"] = float(sched.lr[step])
                    if i == 0:
                        group["weight_decay"] = float(sched.wd[step])
                tau_t = float(sched.teacher_temp[step])

                with autocast:
                    with torch.no_grad():
                        teacher_logits = teacher(views[:cfg.n_global]).float()
                    student_logits = model(views).float()
                losses = step_loss(cfg, student_logits, teacher_logits, tau_t, distill_loss, contrast_loss, world)
                if cfg.method in PATCH_METHODS:   # the masked patch term (training/patch_objective.py)
                    add_patch_term(losses, student, teacher, tau_t, cfg)
                loss, distill, contrast, targets = losses["loss"], losses["distill"], losses["contrast"], losses["targets"]
                bad = ~torch.isfinite(loss.detach())
                if world > 1:   # every rank must take the same branch
                    bad = bad.float()
                    dist.all_reduce(bad, op=dist.ReduceOp.MAX)
                    bad = bad > 0
                if bad:
                    tqdm.write(f"[train] loss is {loss.item()} at step {step}; stopping (the last saved state is intact)")
                    return 1

                optimizer.zero_grad(set_to_none=True)
                losses["backward"].backward()
                grad_norm = clip_gradients(student, cfg.clip_grad)
                cancel_gradients_last_layer(student, epoch, cfg.freeze_last_layer)
                optimizer.step()
                ema_update(teacher, student, float(sched.momentum[step]))
                distill_loss.update_center(teacher_logits)
                step += 1
                if step in snap_at:
                    save_snapshot(out, step, teacher.backbone)

                # ---- logging (rank 0)
                t_done = time.perf_counter()
                step_s = t_done - t_wait
                with torch.no_grad():
                    h = float(entropy(targets))
                    h_batch = float(entropy(targets.mean(0, keepdim=True)))
                for key, value in (("loss", loss.item()), ("distill", distill.item()), ("contrast", contrast.item()),
                                   ("teacher_entropy", h), ("teacher_batch_entropy", h_batch), ("grad_norm", grad_norm),
                                   ("step_s", step_s), ("prep_s", batch["prep_s"]), ("wait_s", t_got - t_wait)):
                    window.setdefault(key, []).append(value)
                t_wait = t_done
                if main_process:
                    samples_per_s = total_batch / step_s
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{sched.lr[step - 1]:.2e}", sps=f"{samples_per_s:.1f}",
                                    refresh=False)
                    # uniform-looking targets are expected while the teacher temperature warms up
                    warning = collapse_warning(h, h_batch, cfg.out_dim) if step > warmup_tt_steps else None
                    if warning and step - warned_at >= 50:
                        tqdm.write(f"[train] step {step}: {warning}")
                        warned_at = step
                    if step % cfg.log_every == 0 or step == end_step:
                        mean = {k: float(np.mean(v)) for k, v in window.items()}
                        metrics.writerow({
                            "step": step, "epoch": f"{step / spe:.3f}", "loss": f"{mean['loss']:.5f}",
                            "distill": f"{mean['distill']:.5f}", "contrast": f"{mean['contrast']:.5f}",
                            "kl": f"{mean['distill'] - mean['teacher_entropy']:.5f}",
                            "teacher_entropy": f"{mean['teacher_entropy']:.4f}",
                            "teacher_batch_entropy": f"{mean['teacher_batch_entropy']:.4f}",
                            "lr": f"{sched.lr[step - 1]:.6g}", "wd": f"{sched.wd[step - 1]:.4g}",
                            "momentum": f"{sched.momentum[step - 1]:.6f}", "tau_t": f"{tau_t:.4f}",
                            "grad_norm": f"{mean['grad_norm']:.4f}",
                            "samples_per_s": f"{total_batch / mean['step_s']:.2f}",
                            "prep_share": f"{mean['prep_s'] / mean['step_s']:.4f}",
                            "wait_share": f"{mean['wait_s'] / mean['step_s']:.4f}"})
                        metrics_file.flush()
                        window = {}
                # ---- saving
                stop_signal = stop.signal
                if world > 1:   # every rank must agree to stop at the same step
                    flag = torch.tensor([0 if stop_signal is None else stop_signal], device=device)
                    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
                    stop_signal = int(flag.item()) or None
                due = (cfg.save_every_steps and step % cfg.save_every_steps == 0) or \
                      (time.time() - last_save) > 60 * cfg.save_every_min
                if stop_signal is not None or due or step == end_step:
                    save(step)
                    last_save = time.time()
                if stop_signal is not None:
                    stopped_by = stop_signal
                    break
        finally:
            stop_loader(batches_iter)
    bar.close()
    if failed:
        if world > 1 and dist.is_initialized():
            dist.destroy_process_group()
        if main_process:
            metrics_file.close()
            tqdm.write("[train] stopped: fix or remove the file above (the last saved state is intact)")
        return 1

    if os.environ.get("PCDVIZ_TRAIN_DIGEST_DIR"):   # rank-consistency test hook
        d = Path(os.environ["PCDVIZ_TRAIN_DIGEST_DIR"])
        d.mkdir(parents=True, exist_ok=True)
        (d / f"rank{rank}.txt").write_text(f"{params_digest(student)}\n{params_digest(teacher)}\n"
                                           f"{hashlib.sha256(distill_loss.center.cpu().numpy().tobytes()).hexdigest()}\n")
    if main_process:
        metrics_file.close()
    code = 0
    if stopped_by is not None:
        if main_process:
            tqdm.write(f"[train] stopped at step {step}; run the same command again to resume")
        code = 128 + stopped_by
    elif step >= total_steps and main_process:
        wall = wall_before + (time.time() - t_start)
        write_checkpoint(out / "checkpoint", teacher.backbone, cfg, data_info, wall, step * total_batch)
        tqdm.write(f"[train] done: {step} steps in {wall / 60:.1f} min; teacher backbone -> {out / 'checkpoint'}")
    elif main_process:
        tqdm.write(f"[train] stopped at step {step} (max_steps); run again without --max-steps to continue")
    if world > 1 and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
    return code


def write_checkpoint(folder: Path, backbone: PointViT, cfg: TrainConfig, data_info: dict, wall_time_s: float,
                     samples_seen: int) -> Path:
    """The teacher backbone as a pcdviz checkpoint folder with its model card (data_info: data_card())."""
    from pcdviz.checkpoints import save_checkpoint
    method = cfg.method if samples_seen else "random"   # --epochs 0: the untrained baseline of the same recipe
    card = {"method": method, "data": describe_dataset(cfg, data_info), "dataset": data_info, "epochs": cfg.epochs,
            "wall_time_s": round(wall_time_s, 1), "recipe": asdict(cfg), "samples_seen": samples_seen,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
    snapshots = sorted((folder.parent / "snapshots").glob("step-*.safetensors"))
    if snapshots:  # in the checkpoint folder too, named in the card, for the explorer's training slider
        card["snapshots"] = [{"step": int(p.stem[5:]), "file": f"snapshots/{p.name}"} for p in snapshots]
        card["snapshots_note"] = "teacher backbones (float16) at these training steps; the checkpoint is the last step"
    path = save_checkpoint(folder, backbone.cpu().eval(), card)
    if snapshots:
        (path / "snapshots").mkdir(exist_ok=True)
        for p in snapshots:
            shutil.copy2(p, path / "snapshots" / p.name)
    return path


if __name__ == "__main__":
    sys.exit(main())
