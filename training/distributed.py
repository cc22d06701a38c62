"""What makes a run on W processes x batch B compute what one process computes with batch W*B.

DDP averages gradients, which is exact for a loss that is a mean of independent per-shape terms
(the distillation cross-entropy, once the centre is all-reduced). Two parts of the method are not:

- the contrastive term scores every shape against every other shape of the batch, and its cosine
  score centres the logits on the batch mean: gather_views() assembles the global batch on every
  rank (other ranks' rows detached, this rank's rows with their gradient), every rank computes the
  whole global loss, and the trainer scales its backward by W so that DDP's average of the ranks'
  gradients is exactly the gradient of the global loss (each rank contributes the part that flows
  through its own rows);
- BatchNorm in the head (head_bn) normalises with batch statistics: GlobalBatchNorm1d computes them
  over the global batch with a differentiable all-reduce, for the student and the teacher alike, on
  CPU (gloo) and GPU (nccl).

tests/test_training_ddp.py checks loss and gradients of 2 processes x B against 1 process x 2B.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor, nn


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def gather_views(x: Tensor, n_views: int) -> Tensor:
    """View-major (V*B, K) rows of this rank -> view-major (V*W*B, K) rows of the global batch.

    Within each view the shapes are in rank order (rank 0's B, then rank 1's, ...), the order of a
    single process whose batch is the concatenation of the ranks' batches. This rank's rows keep
    their gradient; the other ranks' rows are constants here (their gradients flow on their ranks).
    """
    w = world_size()
    if w == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(w)]
    dist.all_gather(parts, x.detach().contiguous())
    parts[dist.get_rank()] = x
    b = x.shape[0] // n_views
    return torch.cat([p[v * b:(v + 1) * b] for v in range(n_views) for p in parts])


def mean_over_ranks(x: Tensor) -> Tensor:
    """The mean of a scalar over all processes (for logging; no gradient)."""
    if world_size() == 1:
        return x.detach()
    y = x.detach().clone()
    dist.all_reduce(y)
    return y / world_size()


class _SumOverRanks(torch.autograd.Function):
    """all_reduce(SUM) whose backward is all_reduce(SUM) of the gradient: y = sum_r x_r, so dL/dx_r = sum of
    every rank's dL_r/dy (each rank's loss depends on the shared sum)."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        y = x.clone()
        dist.all_reduce(y)
        return y

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        g = grad.contiguous().clone()
        dist.all_reduce(g)
        return g


def sum_over_ranks(x: Tensor) -> Tensor:
    """The sum of x over all processes, differentiable (identity on one process)."""
    return _SumOverRanks.apply(x) if world_size() > 1 else x


class GlobalBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm1d without running statistics whose batch statistics span every process.

    Same parameters and state_dict keys as the nn.BatchNorm1d it replaces. The sums travel by a
    differentiable all_reduce (sum_over_ranks), so the gradient through the mean and the variance
    reaches every rank's rows, as it would in one process.
    """

    def forward(self, x: Tensor) -> Tensor:
        if world_size() == 1 or not self.training and self.track_running_stats:
            return super().forward(x)
        xf = x.float()
        n = x.shape[0] * world_size()   # every rank holds the same number of rows (full batches only)
        mean = sum_over_ranks(xf.sum(0)) / n
        centred = xf - mean
        var = sum_over_ranks((centred * centred).sum(0)) / n   # biased, as BatchNorm normalises (two passes, as exact as one process)
        y = centred * torch.rsqrt(var + self.eps)
        if self.affine:
            y = y * self.weight + self.bias
        return y.to(x.dtype)


def convert_global_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every BatchNorm1d without running statistics by a GlobalBatchNorm1d (in place; returns module)."""
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm1d and not child.track_running_stats:
            new = GlobalBatchNorm1d(child.num_features, child.eps, child.momentum, child.affine,
                                    track_running_stats=False).to(next(child.parameters(), torch.empty(0)).device)
            if child.affine:
                new.weight, new.bias = child.weight, child.bias
            setattr(module, name, new)
        else:
            convert_global_batchnorm(child)
    return module
