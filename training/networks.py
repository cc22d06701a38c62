"""The student network (PointViT + DINOHead over multi-crop views) and DINO's per-step optimisation helpers."""
from __future__ import annotations

import torch
import torch.nn as nn

from pcdviz.model import DINOHead, PointViT, preset
from training.config import TrainConfig
from training.crops import same_size_runs
from training.patch_objective import PATCH_METHODS, build_patch_student


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
