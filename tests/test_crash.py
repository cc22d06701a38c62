"""Crashes mid-training: SIGKILL (no chance to save) at random steps and inside saves, then resume.

A tiny run (12 steps, a state saved every 2 steps) is killed with SIGKILL when metrics.csv shows a
randomly drawn step, resumed with the same command, killed again, and resumed to the end; its final
state and checkpoint must equal an uninterrupted run's bit for bit (CPU, one thread, num_workers=0:
every step is a pure function of the saved state and the step's seeds). Saves are also killed in the
middle (half a tensor file written, between the tensor file's rename and state.json, half a state.json
written): the previous state must stay loadable and the resumed run still ends bit for bit.

The kill steps come from PCDVIZ_CRASH_SEED (default: drawn from the clock, and printed on failure).
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from test_training import REPO, read_metrics, tiny_args

SEED = int(os.environ.get("PCDVIZ_CRASH_SEED", time.time_ns() % 100_000))
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
STEPS = 12  # 48 shapes, batch 16: 3 steps per epoch, 4 epochs


def run_args(out: Path) -> list[str]:
    """The run's arguments: the same for the straight run, the killed one and every resume."""
    # snapshots=0: the kill points below count the state saves' writes (snapshots are written the same way)
    return tiny_args(out, 3, 16, 4, "--set", "save_every_steps=2", "--set", "freeze_last_layer=1", "--set", "snapshots=0")


def train_cmd(out: Path, prelude: str = "") -> list[str]:
    """`python -c` running training.train.main, after an optional prelude (e.g. a patch that kills a save)."""
    code = f"import sys\n{prelude}\nfrom training.train import main\nsys.exit(main(sys.argv[1:]))"
    return [sys.executable, "-c", code, *run_args(out)]


def run_to_end(out: Path, prelude: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(train_cmd(out, prelude), cwd=REPO, env=ENV, capture_output=True, timeout=300)


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> Path:
    """The uninterrupted run, in a subprocess like the others (same thread count, same code path)."""
    out = tmp_path_factory.mktemp("straight") / "run"
    done = run_to_end(out)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    return out


def final_tensors(out: Path) -> tuple[dict, dict]:
    """(last training state without the RNG entries, the checkpoint's weights) of a finished run."""
    state = json.loads((out / "state.json").read_text())
    assert state["step"] == STEPS
    tensors = {k: v for k, v in load_file(str(out / state["tensors"])).items() if not k.startswith("rng.")}
    return tensors, load_file(str(out / "checkpoint" / "model.safetensors"))


def assert_same_run(a: Path, b: Path, why: str) -> None:
    """Bit-for-bit equal final weights, optimizer, centre and checkpoint; the same loss at every step."""
    (sa, ca), (sb, cb) = final_tensors(a), final_tensors(b)
    assert sa.keys() == sb.keys() and ca.keys() == cb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), f"{why}: state tensor {k} differs"
    for k in ca:
        assert torch.equal(ca[k], cb[k]), f"{why}: checkpoint tensor {k} differs"
    assert [r["loss"] for r in read_metrics(a)] == [r["loss"] for r in read_metrics(b)], why
    assert [int(r["step"]) for r in read_metrics(b)] == list(range(1, STEPS + 1)), why


def kill_at_step(out: Path, step: int) -> int:
    """Start the run (or its resume), SIGKILL it once metrics.csv reaches `step`; the last saved step."""
    proc = subprocess.Popen(train_cmd(out), cwd=REPO, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 180
    try:
        while time.time() < deadline and proc.poll() is None:
            if (out / "metrics.csv").is_file():
                rows = read_metrics(out)
                if rows and int(rows[-1]["step"] or 0) >= step:
                    break
            time.sleep(0.02)
    finally:
        proc.kill()  # SIGKILL: no handler runs, nothing is saved on the way out
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, f"seed {SEED}: the run ended before step {step}"
    state = json.loads((out / "state.json").read_text()) if (out / "state.json").is_file() else {"step": 0}
    return int(state["step"])


def test_sigkill_at_random_steps_then_resume_is_bit_for_bit(straight, tmp_path):
    """Two SIGKILLs at random steps, two resumes: the final weights equal the uninterrupted run's exactly."""
    rng = random.Random(SEED)
    first = rng.randint(2, 6)
    second = rng.randint(first + 1, STEPS - 2)
    out = tmp_path / "killed"
    saved = kill_at_step(out, first)
    assert saved <= first and saved % 2 == 0, f"seed {SEED}"
    saved2 = kill_at_step(out, second)
    assert saved <= saved2 <= second, f"seed {SEED}"
    done = run_to_end(out)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert f"{saved2}/{STEPS}" in done.stderr.decode(), "the last run did not start from the saved state"
    assert_same_run(straight, out, f"seed {SEED}, killed at steps {first} and {second}")
    assert not list(out.glob("*.tmp*"))


# Patches run in the training subprocess before main(): each SIGKILLs the process at one point of the
# second save (step 4), so the state of step 2 is the one that must survive.
_SECOND_SAVE = """
import os, signal
import training.state as T
calls = {"n": 0}
"""
KILLS = {
    "half a tensor file written": _SECOND_SAVE + """
real_save = T.save_file
def save_file(tensors, path, *a, **k):
    calls["n"] += 1
    real_save(tensors, path, *a, **k)
    if calls["n"] == 2:
        data = open(path, "rb").read()
        open(path, "wb").write(data[:len(data) // 2])
        os.kill(os.getpid(), signal.SIGKILL)
T.save_file = save_file
""",
    "tensor file renamed, state.json not yet written": _SECOND_SAVE + """
real_write = T._atomic_write_text
def write(path, text):
    calls["n"] += 1
    if calls["n"] == 2:
        os.kill(os.getpid(), signal.SIGKILL)
    real_write(path, text)
T._atomic_write_text = write
""",
    "half a state.json written": _SECOND_SAVE + """
real_replace = T.os.replace
class _Os:
    def __getattr__(self, name):
        return getattr(os, name)
    def replace(self, src, dst):
        if str(dst).endswith("state.json"):
            calls["n"] += 1
            if calls["n"] == 2:
                text = open(src).read()
                open(src, "w").write(text[:len(text) // 2])
                os.kill(os.getpid(), signal.SIGKILL)
        real_replace(src, dst)
T.os = _Os()
""",
}


@pytest.mark.parametrize("where", sorted(KILLS))
def test_kill_inside_a_save_leaves_the_previous_state_loadable(straight, tmp_path, where):
    """SIGKILL in the middle of the second save: the first state still loads, and the resumed run ends bit for bit."""
    from training.train import load_state

    out = tmp_path / "run"
    killed = run_to_end(out, KILLS[where])
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-2000:]
    tensors, meta = load_state(out)  # the previous, complete state
    assert meta["step"] in (2, 4) and all(t.isfinite().all() for t in tensors.values() if t.is_floating_point())
    if where != "tensor file renamed, state.json not yet written":
        assert meta["step"] == 2, where
    done = run_to_end(out)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert_same_run(straight, out, where)
    assert not list(out.glob("*.tmp*")), "a killed save's temp file was left behind"


# --------------------------------------------------------------------------- checkpoint folders (pcdviz)

_SAVE_TWO = """
import os, signal, sys, torch
import pcdviz.checkpoints as C
from pcdviz.model import PointViT, preset
SMALL = dict(n_points=128, n_groups=8, group_size=16, width=24, depth=2, n_heads=2, embed_dims=(8, 16), pos_hidden=16)
folder = sys.argv[1]
torch.manual_seed(0)
C.save_checkpoint(folder, PointViT(preset("tiny", **SMALL)), {"method": "first"})
{patch}
torch.manual_seed(1)
C.save_checkpoint(folder, PointViT(preset("tiny", **SMALL)), {"method": "second"})
"""
CHECKPOINT_KILLS = {
    "half the weights written": ("""
real = C.save_file
def save_file(state, path, **k):
    real(state, path, **k)
    data = open(path, "rb").read()
    open(path, "wb").write(data[:len(data) // 2])
    os.kill(os.getpid(), signal.SIGKILL)
C.save_file = save_file""", "first"),
    "folders swapped, old copy not yet removed": ("""
real = C.shutil.rmtree
def rmtree(path, *a, **k):
    os.kill(os.getpid(), signal.SIGKILL)
C.shutil.rmtree = rmtree""", "second"),
}


@pytest.mark.parametrize("where", sorted(CHECKPOINT_KILLS))
def test_kill_inside_a_checkpoint_save_leaves_a_complete_checkpoint(tmp_path, where):
    """save_checkpoint killed mid-way: the folder holds the old or the new checkpoint, complete, never a mix."""
    from pcdviz.checkpoints import load_checkpoint, scan_checkpoints

    patch, expected = CHECKPOINT_KILLS[where]
    folder = tmp_path / "ckpts" / "model"
    code = _SAVE_TWO.replace("{patch}", patch)
    done = subprocess.run([sys.executable, "-c", code, str(folder)], cwd=REPO, env=ENV, capture_output=True,
                          timeout=120)
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()[-2000:]
    model, card = load_checkpoint(folder)
    assert card["method"] == expected
    assert [i.name for i in scan_checkpoints(tmp_path / "ckpts")] == ["model"]  # temp folders are hidden
