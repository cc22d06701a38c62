"""The run's processes: ranks under torchrun, agreeing across ranks, and stopping cleanly on a signal."""
from __future__ import annotations

import os
import signal

import torch
import torch.distributed as dist
from tqdm import tqdm


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


def any_rank(flag: bool, world: int, device: torch.device) -> bool:
    """True on every rank when flag is true on any rank (all ranks must take the same branch)."""
    if world == 1:
        return bool(flag)
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)
