"""A patch-level objective beside the CLS-level one: iBOT-style masked patch-token distillation.

Method `dino+contrast+ibot` (issue 19): the paper's method (`dino+contrast`, unchanged) plus, on the global
crops, a random share of the student's patch tokens replaced by a learned mask token; the student predicts the
teacher's (unmasked) patch-token distribution at those positions through its own projection head (DINOv2's
separate patch head; iBOT shares one). A masked patch can only be filled in from the patches around it, so
the objective pays for attention that relates local tokens, which the CLS-level loss never asks for.

    loss = distillation + contrast_weight * contrast + patch_weight * patch
    patch = mean over masked tokens of  -sum_k softmax((t_k - c_k) / tau_t) log_softmax(s / tau_s)_k

Masks: per shape a ratio r ~ U(mask_ratio_min, mask_ratio_max) of its G patch tokens, chosen at random
(iBOT's per-image ratio, 0.1-0.5; random rather than blockwise, so a masked patch keeps visible neighbours).
The teacher and the student cut the same groups: FPS and kNN are deterministic for the same points.
Random draws come from torch's global generator, which train.py seeds per step, so resume stays exact.
Only the backbone is exported: the checkpoint of this method loads like any other PointViT.

Method `dino+contrast+mae` has the same masks but Point-MAE's target instead of the teacher's: the masked
token's head predicts the patch's K points (relative to its centre), scored by the squared Chamfer distance
with coordinates divided by the batch's mean patch radius (so the term starts near 1, beside the distillation's
~5). A patch's geometry is best guessed from its neighbours' geometry, which is what local attention reads.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from pcdviz.model import DINOHead, PointViT
from pcdviz.ops import index_points
from training.crops import same_size_runs

IBOT = "dino+contrast+ibot"
MAE = "dino+contrast+mae"
PATCH_METHODS = (IBOT, MAE)


class PatchMultiCropNet(nn.Module):
    """MultiCropNet (backbone + head over a list of views) that also projects the global views' patch tokens.

    In training mode (the student) the global views' patch tokens are masked; in eval mode (the teacher) not.
    After each forward, `patch_logits` (n_global*B, G, K2) and `patch_mask` (n_global*B, G) bool or None hold
    the global views' patch outputs for `patch_loss`.
    """

    def __init__(self, backbone: PointViT, head: DINOHead, patch_head: nn.Module, n_global: int,
                 mask_ratio: tuple[float, float] = (0.1, 0.5), target: str = "teacher"):
        super().__init__()
        if not backbone.config.cls_tokens:
            raise ValueError("the patch objective needs a backbone with a CLS token")
        self.backbone, self.head, self.patch_head = backbone, head, patch_head
        self.n_global, self.mask_ratio = n_global, tuple(mask_ratio)
        if target not in ("teacher", "points"):
            raise ValueError(f"target must be 'teacher' (iBOT) or 'points' (Point-MAE), got {target!r}")
        self.target = target
        self.mask_token = nn.Parameter(torch.zeros(1, 1, backbone.embed_dim))
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        out_dim = patch_head.last_layer.weight.shape[0] if target == "teacher" else patch_head[-1].out_features
        self.register_buffer("patch_center", torch.zeros(1, 1, out_dim))   # used by the teacher target only
        self.patch_logits: Tensor | None = None
        self.patch_points: Tensor | None = None   # target "points": (n, G, K, 3) relative to the centres
        self.patch_mask: Tensor | None = None

    def draw_mask(self, n: int, g: int, device) -> Tensor:
        """(n, g) bool: per row round(r * g) random patches, r ~ U(mask_ratio)."""
        lo, hi = self.mask_ratio
        ratio = lo + (hi - lo) * torch.rand(n, 1, device=device)
        rank = torch.rand(n, g, device=device).argsort(1).argsort(1)   # a random permutation rank per row
        return rank < (ratio * g).round()

    def global_forward(self, points: Tensor) -> Tensor:
        """Global views (V*B, N, 3) -> CLS features (V*B, D); fills patch_logits / patch_mask."""
        bb = self.backbone
        x, pos, centres, group_idx = bb.tokenize(points)   # (V*B, 1+G, D), CLS first
        if self.target == "points":
            self.patch_points = index_points(points, group_idx) - centres.unsqueeze(2)
        mask = None
        if self.training:
            mask = self.draw_mask(x.shape[0], x.shape[1] - 1, x.device)
            patches = torch.where(mask[..., None], self.mask_token.to(x.dtype), x[:, 1:])
            x = torch.cat([x[:, :1], patches], dim=1)
        x, _ = bb.run_blocks(x, pos, centres, len(bb.blocks))
        n, g, d = x[:, 1:].shape
        self.patch_logits = self.patch_head(x[:, 1:].reshape(n * g, d)).reshape(n, g, -1)
        self.patch_mask = mask
        return x[:, 0]

    def forward(self, views: list[Tensor]) -> Tensor:
        """Logits (V*B, K), view-major in the order of `views` (the first n_global are the global crops)."""
        features = [self.global_forward(torch.cat(views[:self.n_global]))]
        # local crops: as MultiCropNet, equal sizes share one pass
        features += [self.backbone(torch.cat(views[s:e])).cls for s, e in same_size_runs(views, self.n_global)]
        return self.head(torch.cat(features))


def build_patch_student(backbone: PointViT, head: DINOHead, cfg) -> PatchMultiCropNet:
    """The student of method IBOT (a patch head shaped like the CLS head, K2 = cfg.patch_out_dim prototypes)
    or MAE (an MLP to the group's K x 3 points)."""
    if cfg.method == MAE:
        D, K = backbone.embed_dim, backbone.config.group_size
        point_head = nn.Sequential(nn.Linear(D, D), nn.GELU(), nn.Linear(D, 3 * K))
        return PatchMultiCropNet(backbone, head, point_head, cfg.n_global, (cfg.mask_ratio_min, cfg.mask_ratio_max),
                                 target="points")
    patch_head = DINOHead(backbone.embed_dim, cfg.patch_out_dim, hidden_dim=cfg.head_hidden,
                          bottleneck_dim=cfg.head_bottleneck, n_layers=cfg.head_layers,
                          norm_last_layer=cfg.norm_last_layer, use_bn=cfg.head_bn)
    return PatchMultiCropNet(backbone, head, patch_head, cfg.n_global, (cfg.mask_ratio_min, cfg.mask_ratio_max))


def patch_loss(student: PatchMultiCropNet, teacher: PatchMultiCropNet, teacher_temp: float, student_temp: float,
               center_momentum: float = 0.9) -> Tensor:
    """Masked patch-token distillation of the last forward passes; updates the patch centre (an EMA of the
    teacher's mean patch logits, all-reduced under DDP) after computing the targets."""
    s, m, t = student.patch_logits.float(), student.patch_mask, teacher.patch_logits.detach().float()
    if m is None or s.shape != t.shape:
        raise RuntimeError("patch_loss needs a masked student pass and a teacher pass on the same global views")
    targets = F.softmax((t - student.patch_center) / teacher_temp, dim=-1)
    per_token = -(targets * F.log_softmax(s / student_temp, dim=-1)).sum(-1)   # (n, G)
    m = m.float()
    loss = ((per_token * m).sum(1) / m.sum(1).clamp(min=1.0)).mean()
    with torch.no_grad():
        batch_sum = t.sum(dim=(0, 1), keepdim=True)
        count = torch.tensor(float(t.shape[0] * t.shape[1]), device=t.device)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(batch_sum)
            dist.all_reduce(count)
        student.patch_center.mul_(center_momentum).add_(batch_sum / count, alpha=1 - center_momentum)
    return loss


def reconstruction_loss(student: PatchMultiCropNet) -> Tensor:
    """Squared Chamfer distance between the predicted and true points of the masked patches (target "points"),
    in units of the batch's mean patch radius; 0 when nothing is masked."""
    pts, m = student.patch_points.float(), student.patch_mask
    if m is None or not m.any():
        return student.patch_logits.sum() * 0.0
    true = pts[m]                                              # (M, K, 3)
    pred = student.patch_logits.float()[m].reshape(true.shape)
    scale = true.norm(dim=-1).amax(-1).mean().clamp(min=1e-6).detach()
    d = torch.cdist(pred, true / scale) ** 2                   # (M, K, K)
    return d.min(2).values.mean() + d.min(1).values.mean()


def add_patch_term(losses: dict, student: PatchMultiCropNet, teacher: PatchMultiCropNet, teacher_temp: float, cfg) -> None:
    """Add patch_weight * the patch loss (IBOT: patch_loss; MAE: reconstruction_loss) to train.step_loss's
    "backward" and logged "loss" (in place)."""
    if student.target == "points":
        term = cfg.patch_weight * reconstruction_loss(student)
    else:
        term = cfg.patch_weight * patch_loss(student, teacher, teacher_temp, cfg.student_temp, cfg.center_momentum)
    losses["backward"] = losses["backward"] + term
    losses["loss"] = losses["loss"] + term.detach()
