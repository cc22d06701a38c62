"""DDP on CPU (gloo): ranks stay identical, 2 processes x B compute what 1 process x 2B computes, and a bad
file on one rank ends the whole job within seconds."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from safetensors.torch import load_file

from test_training import TINY

REPO = Path(__file__).resolve().parents[1]
needs_gloo = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="torch built without gloo")


@needs_gloo
def test_two_cpu_processes_stay_identical(tmp_path):
    out, digests = tmp_path / "ddp", tmp_path / "digests"
    # 48 shapes, 8 per process: 3 steps of a total batch of 16; head_bn on (the tiny-cpu recipe's), so the
    # head's global BatchNorm runs in forward and backward of both ranks
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "training.train", "--recipe", "tiny-cpu", "--out", str(out), "--epochs", "1", "--batch-size", "8",
           "--set", "synthetic_per_class=3", "--set", "freeze_last_layer=0", *TINY]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PCDVIZ_TRAIN_DIGEST_DIR": str(digests)}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rank0 = (digests / "rank0.txt").read_text()
    rank1 = (digests / "rank1.txt").read_text()
    assert rank0 == rank1 and len(rank0.split()) == 3       # student, teacher and centre agree
    state = json.loads((out / "state.json").read_text())
    assert state["step"] == 3 and state["world_size"] == 2 and state["samples_seen"] == 48
    assert (out / "checkpoint" / "model.safetensors").is_file()   # written once, by rank 0
    assert len((out / "metrics.csv").read_text().strip().splitlines()) == 1 + 3
    card = json.loads((out / "checkpoint" / "config.json").read_text())
    assert card["dataset"]["world_size"] == 2 and card["dataset"]["total_batch"] == 16


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@needs_gloo
def test_two_processes_of_batch_b_equal_one_process_of_batch_2b(tmp_path):
    """Loss and one step's gradients: the contrast gathers the global batch (negatives, cosine centring),
    the head's BatchNorm spans both ranks; both within float tolerance of the single process."""
    import ddp_equivalence as eq

    B = 4
    torch.multiprocessing.spawn(eq.rank_main, args=(2, B, _free_port(), str(tmp_path)), nprocs=2, join=True)
    for case in eq.CASES:
        single = eq.one_step(case, 0, 1, 2 * B)
        for rank in (0, 1):
            got = load_file(str(tmp_path / f"{case}.rank{rank}.safetensors"))
            assert got.keys() == single.keys(), case
            for key in ("loss", "distill", "contrast"):
                torch.testing.assert_close(got[key], single[key], rtol=1e-5, atol=1e-6, msg=f"{case} {key}")
            assert single["contrast"].item() > 0.1   # the term is there, not a zero
            # float tolerance relative to the largest gradient: some are exactly 0 in exact arithmetic
            # (a bias just before the head's BatchNorm) and only rounding noise in both runs
            scale = max(v.abs().max().item() for k, v in single.items() if k.startswith("grad."))
            for key in single:
                if key.startswith("grad."):
                    torch.testing.assert_close(got[key], single[key], rtol=1e-3, atol=1e-4 * scale,
                                               msg=f"{case} {key}")


@needs_gloo
def test_a_bad_file_on_one_rank_ends_the_whole_job(tmp_path):
    """2 processes with a DataLoader worker each: the rank that meets an unreadable .npy names it, both exit."""
    import layouts
    from pcdviz.data import ShapeNet55
    from training.train import CropBatches, crop_config, TrainConfig

    root = layouts.write_shapenet55(tmp_path / "data", train_per_class=4, n_points=1024)
    ds = ShapeNet55(root, "train", 256)
    # the file rank 1 reads first: the same permutation the trainer draws (seed 0, batch 4, 2 ranks)
    first = CropBatches(ds, crop_config(TrainConfig(), 128), 4, 0, rank=1, world_size=2).indices(0)[0]
    bad = root / "shapenet_pc" / ds.names[first]
    bad.write_bytes(b"\x93NUMPY truncated")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "training.train", "--recipe", "tiny-cpu", "--out", str(tmp_path / "run"), "--epochs", "2",
           "--batch-size", "4", "--dataset", str(root), *TINY, "--set", "num_workers=1"]
    t0 = time.time()
    proc = subprocess.run(cmd, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True,
                          text=True, timeout=180)
    seconds = time.time() - t0
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0, text[-3000:]
    assert f"{bad}: cannot be read as a .npy point array" in text, text[-3000:]
    assert "rank 1: cannot read the data of step 0" in text and "rank 0: another rank could not read" in text
    assert seconds < 90, seconds   # start-up included; a hang would run into the timeout
