"""Losses of distillation with contrast: DINO's centred, sharpened cross-entropy and an N-pair contrastive term.

Logits arrive view-major: the student's (V*B, K) are V views of the same B shapes stacked in view
order (the global views first), the teacher's (G*B, K) its G global views in the same order.
"""
from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from training.distributed import gather_views


def _pairs(n_teacher: int, n_student: int):
    """(teacher view i, student view j) pairs with j != i: a view is never its own target."""
    return [(i, j) for i in range(n_teacher) for j in range(n_student) if j != i]


class DistillationLoss(nn.Module):
    """Cross-entropy between softmax((t - c)/tau_t) and log_softmax(s/tau_s) over all (teacher, other student view) pairs.

    The centre c is an EMA (momentum 0.9) of the teacher's mean logits; it is a buffer, so it is
    saved and resumed with the state, and it is all-reduced across processes under DDP.
    """

    def __init__(self, out_dim: int, n_global: int = 2, student_temp: float = 0.1, center_momentum: float = 0.9):
        super().__init__()
        self.n_global = n_global
        self.student_temp = student_temp
        self.center_momentum = center_momentum
        self.register_buffer("center", torch.zeros(1, out_dim))

    def teacher_probs(self, teacher_logits: Tensor, teacher_temp: float) -> Tensor:
        """The teacher's centred, sharpened targets softmax((t - c)/tau_t), no gradient."""
        return F.softmax((teacher_logits.detach().float() - self.center) / teacher_temp, dim=-1)

    def forward(self, student_logits: Tensor, teacher_logits: Tensor, teacher_temp: float) -> tuple[Tensor, Tensor]:
        """Mean cross-entropy over pairs and the teacher targets (G*B, K) it used (for the contrast and the entropy)."""
        targets = self.teacher_probs(teacher_logits, teacher_temp)
        n_student = student_logits.shape[0] // (targets.shape[0] // self.n_global)
        log_p = F.log_softmax(student_logits.float() / self.student_temp, dim=-1).chunk(n_student)
        t = targets.chunk(self.n_global)
        pairs = _pairs(self.n_global, n_student)
        loss = sum((-t[i] * log_p[j]).sum(-1).mean() for i, j in pairs) / len(pairs)
        return loss, targets

    @torch.no_grad()
    def update_center(self, teacher_logits: Tensor) -> None:
        """EMA of the teacher's batch-mean logits (averaged over all processes under DDP)."""
        batch_sum = teacher_logits.detach().float().sum(dim=0, keepdim=True)
        count = torch.tensor(float(teacher_logits.shape[0]), device=batch_sum.device)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(batch_sum)
            dist.all_reduce(count)
        m = self.center_momentum
        self.center.mul_(m).add_(batch_sum / count, alpha=1 - m)


class ContrastiveLoss(nn.Module):
    """N-pair (InfoNCE) loss across the batch: a student view's positive is its own shape's teacher view.

    For every (teacher global view i, student view j != i) pair the B x B scores compare student
    shape a with teacher shape b, and the cross-entropy asks each row to pick its own column.
    score="prob" (default, as in the follow-up code): scale * <softmax(s/tau_s), teacher target>, both
    probability vectors, so scores lie in [0, scale]; the teacher target is the same centred,
    sharpened distribution that the distillation term uses. score="cosine": scale * the cosine of the
    student and teacher logits, each view's logits minus their batch mean (at initialisation all
    shapes share one dominant logit direction, cosine ~0.995, which would otherwise swamp every
    score). Under DDP the rows of every process are gathered first (training/distributed.py), so the
    negatives and the centring are those of the global batch and every process returns the same
    global loss; the trainer scales its backward by the world size (see distributed.py).
    """

    def __init__(self, n_global: int = 2, student_temp: float = 0.1, scale: float = 64.0, score: str = "prob"):
        super().__init__()
        if score not in ("prob", "cosine"):
            raise ValueError(f"score must be 'prob' or 'cosine', got {score!r}")
        self.n_global, self.student_temp, self.scale, self.score = n_global, student_temp, scale, score

    def forward(self, student_logits: Tensor, teacher_targets: Tensor | None,
                teacher_logits: Tensor | None = None) -> Tensor:
        """Mean N-pair cross-entropy over view pairs; score="cosine" needs teacher_logits instead of targets."""
        teacher = teacher_targets if self.score == "prob" else teacher_logits
        n_student = student_logits.shape[0] // (teacher.shape[0] // self.n_global)
        # the global batch: negatives and the cosine score's centring span every process
        student_logits = gather_views(student_logits, n_student)
        teacher = gather_views(teacher.detach(), self.n_global)
        teacher_targets, teacher_logits = (teacher, None) if self.score == "prob" else (None, teacher)
        batch = teacher.shape[0] // self.n_global
        if self.score == "prob":
            s = F.softmax(student_logits.float() / self.student_temp, dim=-1).chunk(n_student)
            t = teacher_targets.detach().chunk(self.n_global)
        else:
            s = [_centred_unit(v) for v in student_logits.float().chunk(n_student)]
            t = [_centred_unit(v) for v in teacher_logits.detach().float().chunk(self.n_global)]
        labels = torch.arange(batch, device=student_logits.device)
        pairs = _pairs(self.n_global, n_student)
        return sum(F.cross_entropy(self.scale * s[j] @ t[i].T, labels) for i, j in pairs) / len(pairs)


def _centred_unit(x: Tensor) -> Tensor:
    """Rows of x minus their batch mean, L2-normalised."""
    return F.normalize(x - x.mean(dim=0, keepdim=True), dim=-1)


def entropy(probs: Tensor) -> Tensor:
    """Mean over rows of the entropy (nats) of each probability row."""
    return -(probs * probs.clamp_min(1e-12).log()).sum(-1).mean()


def collapse_warning(teacher_entropy: float, batch_entropy: float, out_dim: int,
                     low: float = 0.05, high: float = 0.95) -> str | None:
    """A sentence when the teacher's outputs look collapsed, else None.

    Uniform collapse: every target near uniform, entropy above high*ln K. One-prototype collapse:
    every target one-hot on the same prototype, so both the per-shape entropy and the entropy of the
    batch-mean target fall below low*ln K. (Sharp targets on different prototypes are healthy: that
    is what sharpening asks for, so a low per-shape entropy alone is not a warning.)
    """
    ln_k = math.log(out_dim)
    if teacher_entropy > high * ln_k:
        return (f"collapse? teacher output entropy {teacher_entropy:.3f} is near ln K = {ln_k:.3f} "
                "(uniform targets): try a lower teacher temperature or a smaller centre momentum")
    if teacher_entropy < low * ln_k and batch_entropy < low * ln_k:
        return (f"collapse? teacher targets are one-hot on the same prototype (entropy {teacher_entropy:.3f}, "
                f"batch-mean entropy {batch_entropy:.3f}, ln K = {ln_k:.3f}): try a higher teacher temperature")
    return None
