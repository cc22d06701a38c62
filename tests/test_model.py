"""PointViT / DINOHead: shapes, determinism, fused == plain attention, variable input sizes."""
import copy

import pytest
import torch

from pcdviz.model import PRESETS, DINOHead, PointViT, PointViTConfig, PointViTOutput, preset

# a small config so the tests stay fast; the presets are checked structurally below
SMALL = dict(n_points=256, n_groups=16, group_size=16, width=48, depth=2, n_heads=3, embed_dims=(16, 32))


def make(**kw) -> PointViT:
    torch.manual_seed(0)
    return PointViT(preset("tiny", **{**SMALL, **kw})).eval()


def cloud(B=2, N=256, seed=0):
    return torch.randn(B, N, 3, generator=torch.Generator().manual_seed(seed))


def test_output_shapes():
    m = make()
    out = m(cloud(), return_attention=True)
    assert isinstance(out, PointViTOutput)
    assert out.cls.shape == (2, 48) and out.patches.shape == (2, 16, 48)
    assert out.centers.shape == (2, 16, 3) and out.group_idx.shape == (2, 16, 16)
    assert out.group_idx.dtype == torch.long
    assert len(out.attentions) == 2
    assert all(a.shape == (2, 3, 17, 17) for a in out.attentions)
    assert m(cloud()).attentions is None


def test_attention_rows_sum_to_one():
    out = make()(cloud(), return_attention=True)
    for a in out.attentions:
        assert (a >= 0).all()
        torch.testing.assert_close(a.sum(-1), torch.ones(a.shape[:-1]), atol=1e-5, rtol=0)


def test_fused_and_plain_paths_agree():
    m = make()
    x = cloud()
    with torch.no_grad():
        fused, plain = m(x), m(x, return_attention=True)
    for name in ("cls", "patches", "centers"):
        torch.testing.assert_close(getattr(fused, name), getattr(plain, name), atol=1e-5, rtol=1e-4)
    assert torch.equal(fused.group_idx, plain.group_idx)


def test_final_norm_features():
    out = make()(cloud())
    # cls / patches are LayerNorm outputs (weight 1, bias 0 at init): zero mean, unit variance per token
    torch.testing.assert_close(out.cls.mean(-1), torch.zeros(2), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.patches.var(-1, unbiased=False), torch.ones(2, 16), atol=1e-3, rtol=0)


def test_group_idx_points_into_input():
    x = cloud()
    out = make()(x)
    assert out.group_idx.min() >= 0 and out.group_idx.max() < x.shape[1]
    gathered = torch.stack([x[b, out.group_idx[b, :, 0]] for b in range(2)])
    torch.testing.assert_close(gathered, out.centers)  # first neighbour of each group is its centre


def test_deterministic_init_and_forward():
    x = cloud()
    a, b = make(), make()
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    with torch.no_grad():
        assert torch.equal(a(x).cls, b(x).cls)
        assert torch.equal(a(x).cls, a(x).cls)


def test_batch_independence():
    m = make()
    x = cloud(B=3)
    with torch.no_grad():
        full = m(x).cls
        one = m(x[1:2]).cls
    torch.testing.assert_close(full[1:2], one, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("n", [17, 64, 256, 700])
def test_variable_input_size(n):
    m = make()
    cfg = m.config
    out = m(cloud(N=n), return_attention=True)
    G, K = cfg.groups_for(n), min(cfg.group_size, n)
    assert G == max(1, round(cfg.n_groups * n / cfg.n_points))
    assert out.patches.shape == (2, G, cfg.width) and out.group_idx.shape == (2, G, K)
    assert out.attentions[-1].shape == (2, cfg.n_heads, 1 + G, 1 + G)


def test_tiny_inputs():
    m = make()
    out = m(cloud(N=3))
    assert out.patches.shape[1] == 1 and out.group_idx.shape == (2, 1, 3)


def test_get_last_selfattention():
    m = make()
    x = cloud()
    with torch.no_grad():
        last = m.get_last_selfattention(x)
        full = m(x, return_attention=True).attentions[-1]
    torch.testing.assert_close(last, full)


def test_train_mode_backward_and_drop_path():
    m = make(drop_path=0.5).train()
    out = m(cloud())
    (out.cls.sum() + out.patches.mean()).backward()
    grads = [p.grad for p in m.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    with torch.no_grad():  # stochastic depth makes train-mode passes differ, eval-mode ones never
        m.eval()
        assert torch.equal(m(cloud()).cls, m(cloud()).cls)


def test_rejects_bad_shapes():
    with pytest.raises(ValueError):
        make()(torch.randn(2, 100, 2))
    with pytest.raises(ValueError):
        PointViTConfig(n_points=64, n_groups=8, group_size=8, width=50, depth=1, n_heads=3)


def test_presets():
    assert set(PRESETS) >= {"tiny", "small", "paper"}
    p = PRESETS["paper"]
    assert (p.n_points, p.n_groups, p.group_size, p.width, p.depth, p.n_heads) == (1024, 64, 32, 384, 12, 6)
    for name, cfg in PRESETS.items():
        assert cfg.width % cfg.n_heads == 0, name
        assert cfg.groups_for(cfg.n_points) == cfg.n_groups
        assert cfg.groups_for(cfg.n_points // 4) == cfg.n_groups // 4  # local crops
    depth = PRESETS["tiny"].depth
    assert preset("tiny", depth=depth + 1).depth == depth + 1
    assert PRESETS["tiny"].depth == depth  # preset() copies, never mutates the table
    with pytest.raises(KeyError):
        preset("huge")


def test_tiny_preset_forward():
    torch.manual_seed(0)
    m = PointViT(preset("tiny")).eval()
    with torch.no_grad():
        out = m(cloud(B=1, N=1024), return_attention=True)
    cfg = m.config
    assert out.patches.shape == (1, cfg.n_groups, cfg.width)
    assert len(out.attentions) == cfg.depth


def test_dino_head():
    torch.manual_seed(0)
    head = DINOHead(48, out_dim=64, hidden_dim=32, bottleneck_dim=16)
    x = torch.randn(5, 48)
    y = head(x)
    assert y.shape == (5, 64)
    # the last layer's rows have norm 1 (weight_g fixed to 1) and the bottleneck is L2-normalised,
    # so every logit is a cosine in [-1, 1]
    assert y.abs().max() <= 1 + 1e-5
    w = head.last_layer.weight
    torch.testing.assert_close(w.norm(dim=1), torch.ones(64))
    g = head.last_layer.parametrizations.weight.original0
    assert not g.requires_grad
    y.sum().backward()
    assert head.last_layer.parametrizations.weight.original1.grad is not None
    assert g.grad is None


def test_dino_head_trainable_norm_and_copy():
    head = DINOHead(8, out_dim=10, hidden_dim=16, bottleneck_dim=4, norm_last_layer=False)
    assert head.last_layer.parametrizations.weight.original0.requires_grad
    teacher = copy.deepcopy(head)  # EMA teacher is a deep copy
    x = torch.randn(3, 8)
    assert torch.equal(head(x), teacher(x))
    for n_layers in (1, 2):
        assert DINOHead(8, out_dim=10, hidden_dim=16, bottleneck_dim=4, n_layers=n_layers)(x).shape == (3, 10)


def test_dino_head_state_dict_saves_as_safetensors(tmp_path):
    from safetensors.torch import load_file, save_file

    head = DINOHead(8, out_dim=10, hidden_dim=16, bottleneck_dim=4)
    save_file({k: v.contiguous() for k, v in head.state_dict().items()}, str(tmp_path / "head.safetensors"))
    other = DINOHead(8, out_dim=10, hidden_dim=16, bottleneck_dim=4)
    other.load_state_dict(load_file(str(tmp_path / "head.safetensors")))
    x = torch.randn(3, 8)
    assert torch.equal(head(x), other(x))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():
    m = make()
    x = cloud()
    with torch.no_grad():
        a = m(x, return_attention=True)
        b = m.cuda()(x.cuda(), return_attention=True)
    assert torch.equal(a.group_idx, b.group_idx.cpu())
    torch.testing.assert_close(a.cls, b.cls.cpu(), atol=1e-4, rtol=1e-3)
    torch.testing.assert_close(a.attentions[-1], b.attentions[-1].cpu(), atol=1e-4, rtol=1e-3)


def test_autocast_bf16_keeps_groups():
    m = make()
    x = cloud()
    with torch.no_grad():
        ref = m(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = m(x)
    assert torch.equal(ref.group_idx, low.group_idx)  # kNN is computed in fp32 under autocast
    assert torch.isfinite(low.cls.float()).all()


def test_max_pool_matches_amax_values_and_gradients():
    # max_pool takes torch.max under autograd (faster backward) and amax otherwise: same values, same grads
    from pcdviz.model import max_pool

    x = torch.randn(2, 4, 8, 5, generator=torch.Generator().manual_seed(0), requires_grad=True)
    g = torch.randn(2, 4, 5, generator=torch.Generator().manual_seed(1))
    max_pool(x, dim=2).backward(g)
    ours = x.grad.clone()
    x.grad = None
    x.amax(dim=2).backward(g)
    torch.testing.assert_close(ours, x.grad)
    with torch.no_grad():
        torch.testing.assert_close(max_pool(x, dim=2, keepdim=True), x.amax(dim=2, keepdim=True))


def test_distance_bias_paths_agree_and_make_steep_heads_local():
    """attn_bias="distance": the fused (SDPA mask) and plain paths agree, the CLS row is unbiased, and at init the
    steep heads (slope 8) attend near patches while the near-global ones (0.25) do not."""
    from pcdviz.attention import attention_distance_ratio
    from pcdviz.model import DISTANCE_SLOPES

    m = make(attn_bias="distance", n_heads=6, width=48)
    x = cloud()
    with torch.no_grad():
        fused, plain = m(x), m(x, return_attention=True)
    torch.testing.assert_close(fused.cls, plain.cls, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(fused.patches, plain.patches, atol=1e-5, rtol=1e-4)
    slopes = torch.nn.functional.softplus(m.blocks[0].attn.slope)
    torch.testing.assert_close(slopes, torch.tensor(DISTANCE_SLOPES))
    ratio = attention_distance_ratio(plain.attentions[0][:1].numpy(), plain.centers[0].numpy())[0]   # layer 0: (H,)
    assert ratio[0] < 0.4 and ratio[1] < 0.4, ratio
    assert ratio[5] > 0.8, ratio
    # the default model has no slopes, so every shipped and converted checkpoint loads as before
    assert not any("slope" in n for n, _ in make().named_parameters())


def test_distance_bias_is_a_learned_parameter_without_weight_decay():
    from training.train import param_groups

    m = make(attn_bias="distance")
    m.train()
    m(cloud()).cls.sum().backward()
    assert m.blocks[0].attn.slope.grad is not None and m.blocks[0].attn.slope.grad.abs().sum() > 0
    no_decay = {id(p) for p in param_groups(m)[1]["params"]}
    assert id(m.blocks[0].attn.slope) in no_decay
