"""A training run's settings: TrainConfig, the recipes in training/configs/*.json, and --set overrides."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from training.patch_objective import IBOT, MAE

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
METHODS = ("dino+contrast", "dino", IBOT, MAE)   # IBOT / MAE: + masked patch-token distillation / point reconstruction


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
