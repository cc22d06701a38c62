"""Method dino+contrast+ibot (training/patch_objective.py): masks, the masked patch-token loss, a short run
that exports a plain backbone and resumes bit for bit."""
from __future__ import annotations

import json

import torch
from safetensors.torch import load_file


def test_masks_and_patch_loss():
    from pcdviz.model import DINOHead, PointViT, preset
    from training.patch_objective import PatchMultiCropNet, patch_loss
    torch.manual_seed(0)
    cfg = preset("tiny", depth=1, width=32, n_heads=2, embed_dims=(8, 16), pos_hidden=16, n_points=128,
                 n_groups=8, group_size=16)
    net = PatchMultiCropNet(PointViT(cfg), DINOHead(32, 16, 32, 8), DINOHead(32, 12, 32, 8), n_global=2,
                            mask_ratio=(0.25, 0.5))
    m = net.draw_mask(500, 8, "cpu")
    counts = m.sum(1)
    assert counts.min() >= 2 and counts.max() <= 4             # round(r * 8), r in [0.25, 0.5]
    assert set(counts.tolist()) == {2, 3, 4}
    views = [torch.randn(3, 128, 3) for _ in range(2)] + [torch.randn(3, 32, 3) for _ in range(2)]
    teacher = PatchMultiCropNet(PointViT(cfg), DINOHead(32, 16, 32, 8), DINOHead(32, 12, 32, 8), 2).eval()
    teacher.load_state_dict(net.state_dict())
    with torch.no_grad():
        t_logits = teacher(views[:2])
    s_logits = net.train()(views)
    assert t_logits.shape == (6, 16) and s_logits.shape == (12, 16)
    assert teacher.patch_mask is None and net.patch_mask.shape == (6, 8) and net.patch_logits.shape == (6, 8, 12)
    loss = patch_loss(net, teacher, 0.04, 0.1)
    assert torch.isfinite(loss) and loss > 0
    loss.backward()
    assert net.mask_token.grad is not None and net.mask_token.grad.abs().sum() > 0
    assert net.patch_center.abs().sum() > 0                   # the centre moved towards the teacher's mean
    # with a mask of nothing the student's masked tokens are its own unmasked ones: the loss is a plain CE
    net.mask_ratio = (0.0, 0.0)
    net(views)
    assert not net.patch_mask.any() and patch_loss(net, teacher, 0.04, 0.1) == 0.0


def test_ibot_run_exports_a_plain_backbone_and_resumes_bit_for_bit(tmp_path):
    from test_training import read_metrics, tiny_args

    from pcdviz.checkpoints import load_checkpoint
    from training.train import main
    extra = ("--method", "dino+contrast+ibot", "--set", "patch_out_dim=32")
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert main(tiny_args(straight, 3, 16, 2, *extra)) == 0
    assert main(tiny_args(resumed, 3, 16, 2, *extra, "--max-steps", "4")) == 0
    assert main(["--out", str(resumed)]) == 0
    a = load_file(str(straight / json.loads((straight / "state.json").read_text())["tensors"]))
    b = load_file(str(resumed / json.loads((resumed / "state.json").read_text())["tensors"]))
    assert "student.mask_token" in a and "student.patch_center" in a and "student.patch_head.last_layer.parametrizations.weight.original1" in a
    for k in a:
        if not k.startswith("rng."):
            assert torch.equal(a[k], b[k]), k
    assert [r["loss"] for r in read_metrics(straight)] == [r["loss"] for r in read_metrics(resumed)]
    card = json.loads((straight / "checkpoint" / "config.json").read_text())
    assert card["method"] == "dino+contrast+ibot" and card["recipe"]["patch_weight"] == 1.0
    model, _ = load_checkpoint(straight / "checkpoint")   # only the backbone: loads as any PointViT
    assert not any("mask_token" in k or "patch_head" in k for k in model.state_dict())


def test_point_reconstruction_target():
    """Method dino+contrast+mae: the masked tokens predict their patch's points; a perfect guess scores 0."""
    from types import SimpleNamespace

    from pcdviz.model import DINOHead, PointViT, preset
    from training.patch_objective import MAE, build_patch_student, reconstruction_loss
    torch.manual_seed(0)
    backbone = PointViT(preset("tiny", depth=1, width=32, n_heads=2, embed_dims=(8, 16), pos_hidden=16, n_points=128,
                               n_groups=8, group_size=16))
    cfg = SimpleNamespace(method=MAE, n_global=2, mask_ratio_min=0.25, mask_ratio_max=0.5)
    net = build_patch_student(backbone, DINOHead(32, 16, 32, 8), cfg).train()
    views = [torch.randn(3, 128, 3) for _ in range(2)] + [torch.randn(3, 32, 3)]
    assert net(views).shape == (9, 16)
    assert net.patch_points.shape == (6, 8, 16, 3) and net.patch_logits.shape == (6, 8, 48)
    loss = reconstruction_loss(net)
    assert loss > 0
    loss.backward()
    assert net.mask_token.grad.abs().sum() > 0 and backbone.pos_embed[0].weight.grad.abs().sum() > 0
    # the true points in units of the mean patch radius, in any order within the patch: Chamfer 0
    m = net.patch_mask
    true = net.patch_points[m]
    scale = true.norm(dim=-1).amax(-1).mean()
    perfect = torch.zeros_like(net.patch_logits)
    perfect[m] = (true / scale).flip(1).reshape(len(true), -1)
    net.patch_logits = perfect
    assert reconstruction_loss(net).item() < 1e-9
