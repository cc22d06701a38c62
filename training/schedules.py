"""Per-step schedules of a run (DINO's): learning rate, weight decay, teacher momentum and temperature."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from training.config import TrainConfig


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
