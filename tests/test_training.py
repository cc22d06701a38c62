"""Training and evaluation: losses (hand-checked), schedules, crops, EMA, a short run, resume, eval."""
from __future__ import annotations

import csv
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from training.crops import CropConfig, knn_crop, make_crop, multi_crop, normalize_batch
from training.losses import ContrastiveLoss, DistillationLoss, collapse_warning, entropy
from training.train import (TrainConfig, apply_settings, cosine_schedule, ema_update, make_schedules,
                            optimizer_from_tensors, optimizer_tensors, teacher_temp_schedule)

REPO = Path(__file__).resolve().parents[1]

# A very small model and data set, so a run takes seconds on 2 CPU cores.
TINY = ["--set", "model.depth=1", "--set", "model.width=32", "--set", "model.n_heads=2",
        "--set", "model.embed_dims=[16,32]", "--set", "model.pos_hidden=32", "--set", "model.n_points=128",
        "--set", "model.n_groups=8", "--set", "model.group_size=16", "--set", "out_dim=64",
        "--set", "head_hidden=64", "--set", "head_bottleneck=32", "--set", "data_points=256",
        "--set", "n_local=2", "--set", "num_workers=0", "--set", "log_every=1"]


def tiny_args(out: Path, per_class: int, batch: int, epochs: int, *extra: str) -> list[str]:
    return ["--recipe", "tiny-cpu", "--out", str(out), "--epochs", str(epochs), "--batch-size", str(batch),
            "--set", f"synthetic_per_class={per_class}", *TINY, *extra]


def read_metrics(out: Path) -> list[dict]:
    with (out / "metrics.csv").open() as f:
        return list(csv.DictReader(f))


# --------------------------------------------------------------------------- losses


def test_distillation_of_identical_logits_is_the_entropy():
    """tau_s == tau_t, zero centre, same logits everywhere: every pair's cross-entropy is H(softmax(t/tau))."""
    tau = 0.1
    # hand-checkable: logits tau * [0, ln 3] -> p = [1/4, 3/4], H = -(1/4 ln 1/4 + 3/4 ln 3/4)
    t = torch.tensor([[0.0, tau * math.log(3.0)]])
    loss_fn = DistillationLoss(out_dim=2, n_global=2, student_temp=tau)
    loss, targets = loss_fn(t.repeat(4, 1), t.repeat(2, 1), teacher_temp=tau)   # 4 student views, 2 teacher views
    expected = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    assert torch.allclose(targets, torch.tensor([[0.25, 0.75]]).repeat(2, 1))
    # random logits, a batch of 5: the mean entropy
    logits = torch.randn(5, 16)
    loss, targets = DistillationLoss(16, 2, tau)(logits.repeat(3, 1), logits.repeat(2, 1), tau)
    assert loss.item() == pytest.approx(entropy(F.softmax(logits / tau, -1)).item(), rel=1e-5)


def test_distillation_pairs_skip_the_same_view_and_centre_is_an_ema():
    """Student view i is never matched with teacher view i; the centre moves by (1 - m) towards the batch mean."""
    K, B = 8, 3
    t = torch.randn(2 * B, K)
    s = torch.randn(3 * B, K)
    loss_fn = DistillationLoss(K, 2, student_temp=0.1, center_momentum=0.9)
    loss, targets = loss_fn(s, t, teacher_temp=0.04)
    logp = F.log_softmax(s / 0.1, -1).chunk(3)
    tt = targets.chunk(2)
    ce = lambda a, b: (-a * b).sum(-1).mean()
    expected = (ce(tt[0], logp[1]) + ce(tt[0], logp[2]) + ce(tt[1], logp[0]) + ce(tt[1], logp[2])) / 4
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    loss_fn.update_center(t)
    assert torch.allclose(loss_fn.center, 0.1 * t.mean(0, keepdim=True))
    assert "center" in loss_fn.state_dict()   # saved and resumed with the state


def test_contrastive_loss_on_a_hand_checkable_batch():
    """2 shapes, one-hot teacher targets, student probs [.75, .25] / [.25, .75]: CE = log(1 + exp(-0.5 * scale))."""
    tau = 0.1
    a = torch.tensor([math.log(0.75), math.log(0.25)]) * tau
    student = torch.stack([a, a.flip(0)]).repeat(2, 1)          # 2 views x 2 shapes
    targets = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).repeat(2, 1)
    for scale in (1.0, 4.0):
        loss = ContrastiveLoss(n_global=2, student_temp=tau, scale=scale)(student, targets)
        assert loss.item() == pytest.approx(math.log1p(math.exp(-0.5 * scale)), rel=1e-5)
    # swapping the students' shapes makes every positive the worse score
    swapped = torch.stack([a.flip(0), a]).repeat(2, 1)
    assert ContrastiveLoss(2, tau, 1.0)(swapped, targets).item() == pytest.approx(math.log1p(math.exp(0.5)), rel=1e-5)


def test_contrastive_cosine_scores_and_gradients_reach_the_student_only():
    s = torch.randn(4 * 6, 32, requires_grad=True)
    t = torch.randn(2 * 6, 32, requires_grad=True)
    loss = ContrastiveLoss(2, 0.1, scale=10.0, score="cosine")(s, None, t)
    loss.backward()
    assert s.grad is not None and s.grad.abs().sum() > 0 and t.grad is None
    # student views equal to the teacher's, shapes on orthogonal axes plus a shared offset that the
    # batch centring removes: with a large scale the loss is ~0
    base = torch.eye(6, 32) * 0.01 + 5.0
    aligned = ContrastiveLoss(2, 0.1, scale=100.0, score="cosine")(base.repeat(3, 1), None, base.repeat(2, 1))
    assert aligned.item() < 1e-6


def test_collapse_warning():
    K = 512
    ln_k = math.log(K)
    assert collapse_warning(0.99 * ln_k, 0.99 * ln_k, K) is not None          # uniform
    assert collapse_warning(0.01, 0.01, K) is not None                        # one prototype for everything
    assert collapse_warning(0.01, 3.0, K) is None                             # sharp but diverse: healthy
    assert collapse_warning(0.5 * ln_k, 0.8 * ln_k, K) is None


# --------------------------------------------------------------------------- schedules and EMA


def test_cosine_schedule_endpoints_and_warmup():
    v = cosine_schedule(1.0, 0.1, total_steps=12, warmup_steps=2, warmup_start=0.0)
    assert len(v) == 12
    assert v[0] == 0.0 and v[1] == pytest.approx(0.5) and v[2] == pytest.approx(1.0)
    assert np.all(np.diff(v[2:]) < 0) and v[-1] > 0.1 and v[-1] == pytest.approx(0.1, abs=0.03)
    m = cosine_schedule(0.996, 1.0, 100)
    assert m[0] == pytest.approx(0.996) and np.all(np.diff(m) >= 0) and m[-1] == pytest.approx(1.0, abs=1e-5)
    tt = teacher_temp_schedule(0.04, 0.07, total_steps=10, warmup_steps=4)
    assert tt[0] == pytest.approx(0.04) and tt[4:].tolist() == [0.07] * 6 and np.all(np.diff(tt[:5]) > 0)
    cfg = TrainConfig(epochs=3, lr=5e-4, warmup_epochs=1, min_lr=1e-6)
    s = make_schedules(cfg, steps_per_epoch=10, total_batch=64)
    assert len(s.lr) == 30 and s.lr.max() == pytest.approx(5e-4 * 64 / 256)   # linear scaling with the batch
    assert s.wd[0] == pytest.approx(0.04) and s.wd[-1] == pytest.approx(0.4, abs=0.01)


def test_ema_update_math():
    student, teacher = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    before = [p.detach().clone() for p in teacher.parameters()]
    ema_update(teacher, student, 0.9)
    for t0, t1, s in zip(before, teacher.parameters(), student.parameters()):
        assert torch.allclose(t1, 0.9 * t0 + 0.1 * s)
    ema_update(teacher, student, 1.0)   # momentum 1 leaves the teacher alone
    ema_update(teacher, student, 0.0)   # momentum 0 copies the student
    assert all(torch.equal(t, s) for t, s in zip(teacher.parameters(), student.parameters()))


def test_optimizer_state_round_trip_without_pickle():
    model = torch.nn.Linear(4, 3)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model(torch.randn(2, 4)).sum().backward()
    opt.step()
    tensors, meta = optimizer_tensors(opt)
    assert all(k.startswith("opt.state.") for k in tensors) and json.dumps(meta)
    opt2 = torch.optim.AdamW(model.parameters(), lr=1e-2)
    optimizer_from_tensors(opt2, tensors, json.loads(json.dumps(meta)))
    for k, v in opt.state_dict()["state"][0].items():
        assert torch.equal(torch.as_tensor(v), torch.as_tensor(opt2.state_dict()["state"][0][k]))


# --------------------------------------------------------------------------- crops


def _clouds(B=4, N=500, seed=0):
    return torch.rand(B, N, 3, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_knn_crop_is_a_ball_around_its_seed():
    pts = _clouds()
    ratio = torch.tensor([0.2, 0.5, 0.9, 1.0])
    idx, seed = knn_crop(pts, ratio, n_out=64, generator=torch.Generator().manual_seed(1))
    assert idx.shape == (4, 64) and torch.equal(idx[:, 0], seed)            # the seed is in (first in) the crop
    for b in range(4):
        d = ((pts[b] - pts[b, seed[b]]) ** 2).sum(-1)
        k = math.ceil(ratio[b].item() * 500)
        radius = d.sort().values[k - 1]
        assert d[idx[b]].max() <= radius                                      # only the k nearest points
        assert len(set(idx[b].tolist())) == 64                                # a subsample: no repeats when k >= n_out
    # a ball smaller than n_out repeats its points
    idx, _ = knn_crop(pts, torch.full((4,), 0.02), n_out=64, generator=torch.Generator().manual_seed(1))
    assert all(len(set(row.tolist())) == math.ceil(0.02 * 500) for row in idx)


def test_multi_crop_sizes_normalisation_and_determinism():
    pts = _clouds(B=3, N=400)
    cfg = CropConfig(n_global=2, n_local=3, global_points=128, local_points=32)
    views = multi_crop(pts, cfg, torch.Generator().manual_seed(5))
    assert [tuple(v.shape) for v in views] == [(3, 128, 3)] * 2 + [(3, 32, 3)] * 3
    again = multi_crop(pts, cfg, torch.Generator().manual_seed(5))
    assert all(torch.equal(a, b) for a, b in zip(views, again))
    other = multi_crop(pts, cfg, torch.Generator().manual_seed(6))
    assert not torch.equal(views[0], other[0])
    # without augmentation a crop is centred and fills the unit sphere
    plain = CropConfig(jitter_sigma=0.0, scale_range=(1.0, 1.0), translate=0.0)
    crop = make_crop(pts, (0.2, 0.5), 64, plain, torch.Generator().manual_seed(0))
    assert crop.mean(1).abs().max() < 1e-5
    assert torch.allclose(crop.norm(dim=-1).amax(1), torch.ones(3))
    # augmentation bounds: scale in [2/3, 3/2] and translation in [-.2, .2] per axis, jitter clipped at .05
    aug = make_crop(pts, (0.5, 1.0), 64, CropConfig(), torch.Generator().manual_seed(0))
    assert aug.abs().max() <= 1.5 + 0.2 + 0.05 + 1e-5
    rot = make_crop(pts, (0.5, 1.0), 64, CropConfig(rotate_up=True, jitter_sigma=0.0, scale_range=(1.0, 1.0),
                                                    translate=0.0), torch.Generator().manual_seed(0))
    assert torch.allclose(rot.norm(dim=-1).amax(1), torch.ones(3), atol=1e-5)   # rotation keeps the radius
    assert torch.allclose(normalize_batch(pts * 3 + 1).norm(dim=-1).amax(1), torch.ones(3))


# --------------------------------------------------------------------------- training runs


@pytest.fixture(scope="module")
def short_run(tmp_path_factory):
    """20 steps of a very small model: 64 shapes, batch 16, 5 epochs.

    The centre is held at 0 and tau_t fixed, so the teacher's targets keep their sharpness and the
    loss must fall if the optimisation path works (with centering, a 20-step run of a model this
    small first climbs towards ln K, as DINO does, which says nothing either way).
    """
    from training.train import main
    out = tmp_path_factory.mktemp("runs") / "short"
    args = tiny_args(out, 4, 16, 5, "--set", "lr=0.01", "--set", "warmup_epochs=0", "--set", "center_momentum=1.0",
                     "--set", "warmup_teacher_temp=0.04", "--set", "teacher_temp=0.04", "--set", "freeze_last_layer=0")
    t0 = time.time()
    assert main(args) == 0
    return out, time.time() - t0


def test_short_run_lowers_the_loss_and_writes_everything(short_run):
    out, seconds = short_run
    rows = read_metrics(out)
    assert [int(r["step"]) for r in rows] == list(range(1, 21))
    losses = [float(r["loss"]) for r in rows]
    assert np.mean(losses[-4:]) < np.mean(losses[:4]) - 0.2, losses
    for key in ("distill", "contrast", "kl", "teacher_entropy", "lr", "wd", "momentum", "tau_t", "samples_per_s",
                "prep_share"):
        assert all(np.isfinite(float(r[key])) for r in rows), key
    assert float(rows[0]["momentum"]) < float(rows[-1]["momentum"]) <= 1.0
    card = json.loads((out / "checkpoint" / "config.json").read_text())
    assert card["method"] == "dino+contrast" and card["epochs"] == 5 and card["samples_seen"] == 20 * 16
    assert card["recipe"]["model_overrides"]["depth"] == 1 and card["wall_time_s"] > 0
    assert card["model"]["width"] == 32
    state = json.loads((out / "state.json").read_text())
    assert state["step"] == 20 and (out / state["tensors"]).is_file()
    assert not list(out.glob("*.tmp*"))


def test_resume_reaches_the_same_weights_bit_for_bit(tmp_path):
    """6 steps straight == 3 steps, a stop, and a resume for the remaining 3 (CPU, num_workers=0)."""
    from training.train import main
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    # 48 shapes, batch 16: 3 steps per epoch, 2 epochs (the stop falls on an epoch boundary)
    assert main(tiny_args(straight, 3, 16, 2, "--set", "freeze_last_layer=1")) == 0
    assert main(tiny_args(resumed, 3, 16, 2, "--set", "freeze_last_layer=1", "--max-steps", "3")) == 0
    assert json.loads((resumed / "state.json").read_text())["step"] == 3
    assert not (resumed / "checkpoint").exists()
    assert main(["--out", str(resumed)]) == 0          # same command resumes from the saved state
    a = load_file(str(straight / json.loads((straight / "state.json").read_text())["tensors"]))
    b = load_file(str(resumed / json.loads((resumed / "state.json").read_text())["tensors"]))
    assert a.keys() == b.keys()
    for k in a:
        if not k.startswith("rng."):
            assert torch.equal(a[k], b[k]), k
    ca = load_file(str(straight / "checkpoint" / "model.safetensors"))
    cb = load_file(str(resumed / "checkpoint" / "model.safetensors"))
    assert all(torch.equal(ca[k], cb[k]) for k in ca)
    assert [r["loss"] for r in read_metrics(straight)] == [r["loss"] for r in read_metrics(resumed)]


def test_resume_mid_epoch_and_changed_settings_are_refused(tmp_path):
    from training.train import main
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert main(tiny_args(straight, 3, 16, 2, "--max-steps", "5")) == 0
    assert main(tiny_args(resumed, 3, 16, 2, "--max-steps", "2")) == 0
    with pytest.raises(SystemExit, match="cannot change"):
        main(tiny_args(resumed, 3, 16, 3))                                       # other epochs: not the same run
    assert main(tiny_args(resumed, 3, 16, 2, "--max-steps", "5")) == 0           # resume in the middle of epoch 1
    a = load_file(str(straight / json.loads((straight / "state.json").read_text())["tensors"]))
    b = load_file(str(resumed / json.loads((resumed / "state.json").read_text())["tensors"]))
    assert all(torch.equal(a[k], b[k]) for k in a if k.startswith(("teacher.", "student.", "loss.")))


def test_sigterm_saves_the_state_and_the_run_resumes(tmp_path):
    """A kill (SIGTERM) mid-run: the process finishes its step, saves, exits 143; the same command resumes."""
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "training.train", *tiny_args(out, 3, 16, 50)]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.time() + 120
    while time.time() < deadline and not ((out / "metrics.csv").is_file() and len(read_metrics(out)) >= 2):
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err.decode()[-2000:]
    state = json.loads((out / "state.json").read_text())
    step = state["step"]
    assert step >= 2 and len(read_metrics(out)) == step
    from training.train import main
    assert main(tiny_args(out, 3, 16, 50, "--max-steps", str(step + 1))) == 0
    assert [int(r["step"]) for r in read_metrics(out)] == list(range(1, step + 2))   # no lost or repeated step


def test_dino_method_has_no_contrast_and_epochs_zero_is_the_random_baseline(tmp_path):
    from training.train import main
    out = tmp_path / "dino"
    assert main(tiny_args(out, 2, 16, 1, "--method", "dino")) == 0
    rows = read_metrics(out)
    assert all(float(r["contrast"]) == 0.0 for r in rows)
    assert json.loads((out / "checkpoint" / "config.json").read_text())["method"] == "dino"
    rnd = tmp_path / "random"
    assert main(tiny_args(rnd, 2, 16, 0)) == 0
    assert json.loads((rnd / "checkpoint" / "config.json").read_text())["method"] == "random"


def test_recipes_load_and_overrides_apply():
    from training.train import load_recipe
    for name in ("tiny-cpu", "paper"):
        cfg = apply_settings(TrainConfig(), load_recipe(name))
        assert cfg.recipe == name and cfg.out_dim > 0
    cfg = apply_settings(TrainConfig(), {"model.depth": 2, "lr": 1e-3, "local_scale": [0.1, 0.3]})
    assert cfg.model_overrides == {"depth": 2} and cfg.lr == 1e-3 and cfg.local_scale == (0.1, 0.3)
    with pytest.raises(SystemExit, match="unknown setting"):
        apply_settings(TrainConfig(), {"no_such_setting": 1})


# --------------------------------------------------------------------------- evaluation


def test_evaluate_a_tiny_checkpoint_writes_scores(short_run):
    from training.evaluate import main as eval_main
    folder = short_run[0] / "checkpoint"
    # 10 train and 20 test shapes per class: the 10-shot settings run, the 20-shot ones cannot (absent, not NaN)
    assert eval_main([str(folder), "--train-per-class", "10", "--test-per-class", "20", "--episodes", "3",
                      "--iou-per-class", "1"]) == 0
    text = (folder / "config.json").read_text()
    card = json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in config.json"))
    scores = card["scores"]
    for key in ("svm_acc", "fewshot_5way10shot", "fewshot_5way10shot_std", "fewshot_10way10shot", "part_iou"):
        assert 0.0 <= scores[key] <= 1.0, key
    assert "fewshot_5way20shot" not in scores and "fewshot_10way20shot" not in scores
    assert "have 20 train and 20 test shapes" in card["evaluation"]["fewshot_skipped"]["fewshot_5way20shot"]
    assert card["benchmarks"]["synthetic"]["scores"]["svm_acc"] == scores["svm_acc"]
    assert -1.0 <= scores["part_iou_corrected"] <= 1.0 and scores["part_iou_corrected_sem"] >= 0.0
    assert card["evaluation"]["svm_C"] > 0


def test_argsort_rows_is_the_stable_argsort():
    # the fast path sorts unstably and re-sorts rows with equal values; the result must be the stable one
    from pcdviz.ops import stable_argsort_rows

    g = torch.Generator().manual_seed(0)
    x = torch.rand(16, 300, generator=g)
    x[::2, 50:80] = 0.5          # ties in every other row
    x[3, :] = 1.0                # a row of equal values
    ref = np.argsort(x.numpy(), axis=1, kind="stable")
    assert np.array_equal(stable_argsort_rows(x).numpy(), ref)


# --------------------------------------------------------------------------- the field's data, at scale


def test_an_unreadable_file_in_a_worker_ends_the_run_within_seconds(tmp_path):
    """num_workers=2 (the paper recipe uses 8): a truncated .npy stops the run with its name, exit status 1,
    and no worker left behind (before, the run hung in multiprocessing's exit handler)."""
    import layouts
    root = layouts.write_shapenet55(tmp_path / "data", train_per_class=4, n_points=1024)
    bad = sorted((root / "shapenet_pc").glob("*.npy"))[5]
    bad.write_bytes(bad.read_bytes()[:100])
    cmd = [sys.executable, "-m", "training.train", "--recipe", "tiny-cpu", "--out", str(tmp_path / "run"),
           "--epochs", "3", "--batch-size", "4", "--dataset", str(root), *TINY, "--set", "num_workers=2"]
    t0 = time.time()
    proc = subprocess.run(cmd, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert time.time() - t0 < 60
    out = proc.stdout + proc.stderr
    assert f"{bad}: cannot be read as a .npy point array" in out, out[-3000:]
    assert "Traceback" not in out


def test_the_paper_recipe_runs_a_few_steps_on_cpu_at_a_tiny_batch(tmp_path):
    """The `paper` recipe as shipped (27M-parameter Point ViT, 2 + 8 crops, 8 workers) on a ShapeNet-55 copy,
    only the batch and the step count made small."""
    import layouts
    from training.train import main
    root = layouts.write_shapenet55(tmp_path / "data", train_per_class=2, test_per_class=1)
    out = tmp_path / "paper"
    assert main(["--recipe", "paper", "--dataset", str(root), "--out", str(out), "--batch-size", "2",
                 "--max-steps", "2", "--num-workers", "2", "--set", "log_every=1"]) == 0
    rows = read_metrics(out)
    assert [int(r["step"]) for r in rows] == [1, 2]
    assert all(math.isfinite(float(r["loss"])) and float(r["contrast"]) > 0 for r in rows)
    state = json.loads((out / "state.json").read_text())
    assert state["config"]["model"] == "paper" and state["config"]["n_local"] == 8
    assert state["dataset"]["reader"] == "ShapeNet55" and state["dataset"]["total_batch"] == 2


def test_training_crops_and_the_explorers_local_crop_cut_the_same_ball():
    """One kNN-ball core (pcdviz.ops.ball_order): for the same seed and ball size, training's crop and the
    explorer's local crop hold the same points (training then subsamples at random, the explorer by FPS)."""
    from pcdviz.attention import knn_crop as explorer_crop
    from training.crops import knn_crop as training_crop

    g = torch.Generator().manual_seed(5)
    pts = torch.rand(3, 500, 3, generator=g)
    pts[1, 10:20] = pts[1, 9]                    # duplicates of a point: ties at distance 0
    ratio = torch.tensor([0.25, 0.375, 0.5])   # exact in float32 and float64: one ball size both ways
    gen = torch.Generator().manual_seed(11)
    idx, seed = training_crop(pts, ratio, 500, gen)   # n_out = N: every ball member, repeated cyclically
    for b in range(3):
        k = int(np.ceil(float(ratio[b]) * 500))
        mine = explorer_crop(pts[b].numpy(), int(seed[b]), float(ratio[b]))
        assert len(mine) == k and mine[0] == int(seed[b]) and idx[b, 0] == seed[b]
        assert set(mine.tolist()) == set(idx[b].tolist())


def test_snapshots_are_kept_shipped_and_loadable(short_run):
    """The default recipe keeps 4 teacher snapshots (steps 0, 5, 10, 15 of 20) in the run and the checkpoint;
    each loads as a model whose weights are the float16 copy of that step's teacher, and the explorer steps
    through them by name."""
    from safetensors.torch import load_file

    from pcdviz.checkpoints import load_checkpoint, read_card, snapshot_steps
    from pcdviz.explorer import Explorer, ViewSettings

    out, _ = short_run
    ck = out / "checkpoint"
    card = read_card(ck)
    assert snapshot_steps(card) == [0, 5, 10, 15]
    assert sorted(p.name for p in (ck / "snapshots").iterdir()) == [f"step-{s:07d}.safetensors" for s in (0, 5, 10, 15)]
    first, _ = load_checkpoint(ck, snapshot=0)
    final, _ = load_checkpoint(ck)
    raw = load_file(str(ck / "snapshots" / "step-0000000.safetensors"))
    assert all(v.dtype == torch.float16 for v in raw.values() if v.is_floating_point())
    assert all(torch.equal(first.state_dict()[k], v.float()) for k, v in raw.items())
    assert not torch.equal(first.blocks[0].attn.qkv.weight, final.blocks[0].attn.qkv.weight)  # it trained
    with pytest.raises(Exception, match="no snapshot at step 7"):
        load_checkpoint(ck, snapshot=7)

    ex = Explorer(out)
    names = ex.snapshot_names("checkpoint")
    assert names == ["checkpoint@step-0", "checkpoint@step-5", "checkpoint@step-10", "checkpoint@step-15", "checkpoint"]
    cid = ex.load_shape("chair", n_points=256).cloud_id
    maps = [ex.view(n, cid, ViewSettings(mode="cls")).panels[0].values for n in names]
    assert not np.allclose(maps[0], maps[-1])  # attention over training changes
