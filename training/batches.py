"""The training data: the data set, its card, and CropBatches, whose item s is global step s's multi-crop
batch for this rank (seeded by step, so a resumed run draws exactly what the uninterrupted one would)."""
from __future__ import annotations

import signal
import time

import numpy as np
import torch

from training.config import TrainConfig
from training.crops import CropConfig, multi_crop


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


def crop_config(cfg: TrainConfig, n_points: int) -> CropConfig:
    """The crops of a run; sizes default to the model's n_points (global) and n_points // 4 (local)."""
    return CropConfig(n_global=cfg.n_global, n_local=cfg.n_local,
                      global_points=cfg.global_points or n_points,
                      local_points=cfg.local_points or max(1, n_points // 4),
                      global_scale=cfg.global_scale, local_scale=cfg.local_scale,
                      jitter_sigma=cfg.jitter_sigma, jitter_clip=cfg.jitter_clip,
                      scale_range=cfg.scale_range, translate=cfg.translate, rotate_up=cfg.rotate_up)
