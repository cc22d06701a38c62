"""DDP on CPU: torchrun with 2 processes (gloo) trains a few steps and both ranks end identical."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch.distributed as dist
import pytest

from test_training import TINY

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="torch built without gloo")
def test_two_cpu_processes_stay_identical(tmp_path):
    out, digests = tmp_path / "ddp", tmp_path / "digests"
    # 48 shapes, 8 per process: 3 steps of a total batch of 16
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
