"""What a run writes into its folder, without pickle: the resumable state (state.json + state-<step>.safetensors:
networks, optimizer, RNG), the teacher snapshots over training, and the final checkpoint with its card."""
from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

from pcdviz.checkpoints import fsync_dir, fsync_file
from pcdviz.model import PointViT
from training.batches import describe_dataset
from training.config import TrainConfig
from training.losses import DistillationLoss


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
