"""`pcdviz convert`: the field's checkpoints, converted exactly.

Three kinds of evidence:
- the fixtures in ../shared/peers (built from each peer's own code, with reference outputs in refs.npz):
  centres and group members identical, tokens, CLS, patch tokens and every attention map within 1e-5;
- at full paper size there are no fixtures, so a reference forward written here from PROVENANCE.md's
  description of each peer (Conv1d + eval-mode BatchNorm, the peer's key names) is first checked against
  the fixtures' refs, then compared with the converted model on full-size random peer-layout files;
- hostile files: code-running payloads, truncated or foreign files, wrong shapes, absurd tensor sizes.
"""
from __future__ import annotations

import json
import math
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pcdviz import convert as cv
from pcdviz.checkpoints import load_checkpoint
from pcdviz.cli import main as cli_main
from pcdviz.ops import farthest_point_sample, index_points, knn

PEERS = Path(__file__).resolve().parents[2] / "shared" / "peers"
FIXTURES = {  # folder: (file, detected kind)
    "point_mae_ft": ("ckpt-best.pth", "point-mae"),
    "point_mae_pretrain": ("ckpt-last.pth", "point-mae-pretrain"),
    "point_bert_ft": ("ckpt-best.pth", "point-bert"),
    "act_ft": ("ckpt-best.pth", "act"),
    "pos_bert_base": ("checkpoint.pth", "pos-bert"),
    "pos_bert_cls": ("model.t7", "pos-bert"),
}
needs_peers = pytest.mark.skipif(not PEERS.is_dir(), reason=f"the peer checkpoint fixtures ({PEERS}) are not here")
ATOL = 1e-5


def run_model(model, points: np.ndarray):
    with torch.no_grad():
        x = torch.from_numpy(points)[None]
        out = model(x, return_attention=True)
        centres, centre_idx, group_idx = model.group(x)
        tokens = model.token_proj(model.patch_embed(x, centre_idx, group_idx))
    return out, tokens


# --------------------------------------------------------------------------- the fixtures


@needs_peers
@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_fixture_converts_exactly(name, tmp_path):
    file, kind = FIXTURES[name]
    src = PEERS / name / file
    out = tmp_path / name
    assert cli_main(["convert", str(src), "--out", str(out), "--heads", "4"]) == 0
    model, card = load_checkpoint(out)
    refs = np.load(PEERS / name / "refs.npz")
    for inp in ("shape", "origin_probe"):
        o, tokens = run_model(model, refs[f"{inp}/input"])
        np.testing.assert_array_equal(o.centers.numpy(), refs[f"{inp}/centers"])
        for mine, theirs in zip(o.group_idx[0].numpy(), refs[f"{inp}/group_idx"][0]):
            assert set(mine) == set(theirs)
        # the tokenizer's output is pre-norm (magnitudes up to ~11): 1e-5 relative to its scale
        scale = float(np.abs(refs[f"{inp}/tokens"]).max())
        np.testing.assert_allclose(tokens.numpy(), refs[f"{inp}/tokens"], atol=ATOL * max(1.0, scale), rtol=0)
        np.testing.assert_allclose(o.patches.numpy(), refs[f"{inp}/patches"], atol=ATOL, rtol=0)
        np.testing.assert_allclose(torch.stack(o.attentions).numpy(), refs[f"{inp}/attn"], atol=ATOL, rtol=0)
        if f"{inp}/cls" in refs.files:
            np.testing.assert_allclose(o.cls.numpy(), refs[f"{inp}/cls"], atol=ATOL, rtol=0)
        worst = max(float(np.abs(a - refs[f"{inp}/{k}"]).max()) for a, k in
                    ((o.patches.numpy(), "patches"), (torch.stack(o.attentions).numpy(), "attn"))
                    + (((o.cls.numpy(), "cls"),) if f"{inp}/cls" in refs.files else ()))
        print(f"{name} {inp}: centres and groups identical; CLS, patches, attention max |difference| {worst:.1e}")
    # the card says where the weights came from and what was left out
    assert card["source"]["kind"] == kind and card["source"]["file"] == file
    assert len(card["source"]["sha256"]) == 64 and card["source"]["bytes"] == src.stat().st_size
    assert card["kept"] and card["architecture"]["options"]["embed_norm"] == "none"
    dropped = " ".join(card["dropped"])
    expect_dropped = {"point_mae_ft": "cls_head_finetune", "act_ft": "cls_head_finetune", "point_bert_ft":
                      "cls_head_finetune", "point_mae_pretrain": "MAE_decoder", "pos_bert_base": "student",
                      "pos_bert_cls": "head_conv"}[name]
    assert expect_dropped in dropped
    json.loads((out / "config.json").read_text())  # strict JSON


@needs_peers
def test_pos_bert_student_part_and_wrong_kind(tmp_path):
    src = PEERS / "pos_bert_base" / "checkpoint.pth"
    t = cv.convert(cv.load_peer_file(src), heads=4)
    s = cv.convert(cv.load_peer_file(src), part="student", heads=4)
    # the fixture's two networks share weights (no step taken) but not BatchNorm statistics
    assert not torch.equal(t.state["patch_embed.point_mlp.0.bias"], s.state["patch_embed.point_mlp.0.bias"])
    assert any("teacher network" in d for d in s.dropped)
    with pytest.raises(cv.ConvertError, match="keys are those of a pos-bert"):
        cv.convert(cv.load_peer_file(src), kind="point-bert")
    # ACT files are Point-MAE's layout: either name is accepted
    assert cv.convert(cv.load_peer_file(PEERS / "act_ft" / "ckpt-best.pth"), kind="point-mae").kind == "point-mae"


# --------------------------------------------------------------------------- a reference forward, per PROVENANCE.md


def _conv(s, x, p, bias=True):
    return F.conv1d(x, s[p + ".weight"], s[p + ".bias"] if bias else None)


def _bn(s, x, p):
    return F.batch_norm(x, s[p + ".running_mean"], s[p + ".running_var"], s[p + ".weight"], s[p + ".bias"],
                        False, 0.0, 1e-5)


def _ref_blocks(s, prefix, x, pos, heads, eps):
    """Pre-norm blocks as the peers write them: x <- Block(x + pos) when pos is given; attention of each."""
    D, attns, i = x.shape[-1], [], 0
    while f"{prefix}{i}.norm1.weight" in s:
        p = f"{prefix}{i}."
        if pos is not None:
            x = x + pos
        h = F.layer_norm(x, (D,), s[p + "norm1.weight"], s[p + "norm1.bias"], eps)
        B, T, _ = h.shape
        qkv = F.linear(h, s[p + "attn.qkv.weight"], s.get(p + "attn.qkv.bias"))
        q, k, v = qkv.reshape(B, T, 3, heads, D // heads).permute(2, 0, 3, 1, 4)
        a = (q @ k.transpose(-2, -1) * (D // heads) ** -0.5).softmax(-1)
        x = x + F.linear((a @ v).transpose(1, 2).reshape(B, T, D), s[p + "attn.proj.weight"], s[p + "attn.proj.bias"])
        h = F.layer_norm(x, (D,), s[p + "norm2.weight"], s[p + "norm2.bias"], eps)
        x = x + F.linear(F.gelu(F.linear(h, s[p + "mlp.fc1.weight"], s[p + "mlp.fc1.bias"])),
                         s[p + "mlp.fc2.weight"], s[p + "mlp.fc2.bias"])
        attns.append(a)
        i += 1
    return F.layer_norm(x, (D,), s["norm.weight"], s["norm.bias"], eps), attns


def ref_point_mae(s, pts, heads, G=64, K=32):
    """Point-MAE / ACT / Point-BERT (and Point-MAE's pre-training encoder) on points (1, N, 3)."""
    centres = index_points(pts, farthest_point_sample(pts, G, rule="pointnet2"))
    _, gi = knn(centres, pts, K)
    nb = (index_points(pts, gi) - centres[:, :, None]).reshape(G, K, 3).transpose(1, 2)  # (G, 3, K)
    f = _conv(s, F.relu(_bn(s, _conv(s, nb, "encoder.first_conv.0"), "encoder.first_conv.1")), "encoder.first_conv.3")
    f = torch.cat([f.max(2, keepdim=True).values.expand(-1, -1, K), f], 1)
    f = _conv(s, F.relu(_bn(s, _conv(s, f, "encoder.second_conv.0"), "encoder.second_conv.1")), "encoder.second_conv.3")
    tok = f.max(2).values[None]
    if "reduce_dim.weight" in s:
        tok = F.linear(tok, s["reduce_dim.weight"], s["reduce_dim.bias"])
    pos = F.linear(F.gelu(F.linear(centres, s["pos_embed.0.weight"], s["pos_embed.0.bias"])),
                   s["pos_embed.2.weight"], s["pos_embed.2.bias"])
    if "cls_token" in s:
        tok, pos = torch.cat([s["cls_token"], tok], 1), torch.cat([s["cls_pos"], pos], 1)
    return _ref_blocks(s, "blocks.blocks.", tok, pos, heads, 1e-5)


def ref_pos_bert(s, pts, heads, K=32, leaky=False):
    """POS-BERT's PCT backbone (pct_base, or the classifier's with LeakyReLU per point) on points (1, N, 3)."""
    act = (lambda x: F.leaky_relu(x, 0.2)) if leaky else F.relu
    f = pts.transpose(1, 2)
    f = act(_bn(s, _conv(s, f, "conv1", bias=False), "bn1"))
    f = act(_bn(s, _conv(s, f, "conv2", bias=False), "bn2")).transpose(1, 2)  # (1, N, 64)
    G = math.ceil(pts.shape[1] / K)
    ci = farthest_point_sample(pts, G, rule="first_max")
    _, gi = knn(index_points(pts, ci), pts, K)
    fn, fc = index_points(f, gi), index_points(f, ci)[:, :, None]
    e = torch.cat([fn - fc, fc.expand_as(fn)], -1)[0].transpose(1, 2)  # (G, 128, K)
    e = F.relu(_bn(s, _conv(s, e, "gather_local_0.conv1", bias=False), "gather_local_0.bn1"))
    e = F.relu(_bn(s, _conv(s, e, "gather_local_0.conv2", bias=False), "gather_local_0.bn2"))
    D = e.shape[1]
    x = torch.cat([s["cls_token"].reshape(1, 1, D), e.max(2).values[None]], 1)
    return _ref_blocks(s, "blocks.", x, None, heads, 1e-6)


def _backbone_state(name, obj):
    """The backbone's state dict with the peer's own key names (prefixes removed as the peers' loaders do)."""
    if name == "pos_bert_base":
        return cv._strip(cv._unwrap_module(obj["teacher"]), "backbone.")
    if name == "pos_bert_cls":
        return cv._unwrap_module(obj)
    s = cv._unwrap_module(obj["base_model"])
    return cv._strip(s, "MAE_encoder.") if name == "point_mae_pretrain" else s


def _reference(name, s, pts, heads, **kw):
    if name.startswith("pos_bert"):
        return ref_pos_bert(s, pts, heads, leaky=name == "pos_bert_cls", **kw)
    return ref_point_mae(s, pts, heads, **kw)


@needs_peers
@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_reference_forward_reproduces_the_fixtures(name):
    """The reference used at full size below is the peers' forward: it reproduces their refs.npz."""
    obj = cv.load_peer_file(PEERS / name / FIXTURES[name][0])
    s = {k: v.float() for k, v in _backbone_state(name, obj).items()}
    refs = np.load(PEERS / name / "refs.npz")
    with torch.no_grad():
        x, attns = _reference(name, s, torch.from_numpy(refs["shape/input"])[None], heads=4)
    cls_tokens = 0 if name == "point_mae_pretrain" else 1
    np.testing.assert_allclose(x[:, cls_tokens:].numpy(), refs["shape/patches"], atol=ATOL, rtol=0)
    np.testing.assert_allclose(torch.stack(attns).numpy(), refs["shape/attn"], atol=ATOL, rtol=0)


def _random_peer_state(kind: str, width: int, depth: int, enc: int, seed: int = 0) -> dict:
    """A state dict with the peer's key names and shapes at the given size; weights N(0, 1/fan_in) as the fixtures."""
    g = torch.Generator().manual_seed(seed)
    s = {}

    def lin(name, o, i, conv=False, bias=True):
        s[name + ".weight"] = torch.randn(o, i, *((1,) if conv else ()), generator=g) / i ** 0.5
        if bias:
            s[name + ".bias"] = 0.1 * torch.randn(o, generator=g)

    def bn(name, c):
        s[name + ".weight"] = 1 + 0.1 * torch.randn(c, generator=g)
        s[name + ".bias"] = 0.1 * torch.randn(c, generator=g)
        s[name + ".running_mean"] = 0.2 * torch.randn(c, generator=g)
        s[name + ".running_var"] = torch.exp(0.3 * torch.randn(c, generator=g))
        s[name + ".num_batches_tracked"] = torch.tensor(1)

    def blocks(prefix, mlp, qkv_bias):
        for i in range(depth):
            p = f"{prefix}{i}."
            for n in ("norm1", "norm2"):
                s[p + n + ".weight"] = 1 + 0.1 * torch.randn(width, generator=g)
                s[p + n + ".bias"] = 0.1 * torch.randn(width, generator=g)
            lin(p + "attn.qkv", 3 * width, width, bias=qkv_bias)
            lin(p + "attn.proj", width, width)
            lin(p + "mlp.fc1", mlp * width, width)
            lin(p + "mlp.fc2", width, mlp * width)
        s["norm.weight"] = 1 + 0.1 * torch.randn(width, generator=g)
        s["norm.bias"] = 0.1 * torch.randn(width, generator=g)

    if kind == "pos-bert":
        lin("conv1", 64, 3, conv=True, bias=False), bn("bn1", 64)
        lin("conv2", 64, 64, conv=True, bias=False), bn("bn2", 64)
        lin("gather_local_0.conv1", width, 128, conv=True, bias=False), bn("gather_local_0.bn1", width)
        lin("gather_local_0.conv2", width, width, conv=True, bias=False), bn("gather_local_0.bn2", width)
        s["cls_token"] = 0.5 * torch.randn(1, width, 1, generator=g)
        blocks("blocks.", 2, True)
        return s
    lin("encoder.first_conv.0", 128, 3, conv=True), bn("encoder.first_conv.1", 128)
    lin("encoder.first_conv.3", 256, 128, conv=True)
    lin("encoder.second_conv.0", 512, 512, conv=True), bn("encoder.second_conv.1", 512)
    lin("encoder.second_conv.3", enc, 512, conv=True)
    if enc != width:
        lin("reduce_dim", width, enc)
    lin("pos_embed.0", 128, 3), lin("pos_embed.2", width, 128)
    if kind != "point-mae-pretrain":
        s["cls_token"] = 0.5 * torch.randn(1, 1, width, generator=g)
        s["cls_pos"] = 0.5 * torch.randn(1, 1, width, generator=g)
    blocks("blocks.blocks.", 4, False)
    return s


FULL_SIZE = {  # kind: width, depth, heads, tokenizer output, wrapper   (the peers' published configurations)
    "point-mae": (384, 12, 6, 384, "base_model"),
    "point-mae-pretrain": (384, 12, 6, 384, "base_model"),
    "point-bert": (384, 12, 6, 256, "base_model"),
    "pos-bert": (192, 4, 4, 192, "teacher"),  # pct_base, pre-training checkpoint.pth
    "pos-bert-cls": (512, 8, 8, 512, None),  # models/model_cls.POS_BERT, model.t7
}


@pytest.mark.parametrize("kind", sorted(FULL_SIZE))
def test_full_size_conversion_matches_the_reference(kind, tmp_path):
    width, depth, heads, enc, wrapper = FULL_SIZE[kind]
    source_kind = "pos-bert" if kind.startswith("pos-bert") else kind
    s = _random_peer_state(source_kind, width, depth, enc)
    if kind == "pos-bert":
        state = {"module.backbone." + k: v for k, v in s.items()}
        obj = {"teacher": state, "student": dict(state), "epoch": 3, "args": None}
    elif kind == "pos-bert-cls":
        obj = {"module." + k: v for k, v in s.items()}
    else:
        pre = "module.MAE_encoder." if kind == "point-mae-pretrain" else "module."
        obj = {"base_model": {pre + k: v for k, v in s.items()}, "optimizer": {}, "epoch": 3,
               "metrics": {"acc": torch.tensor(0.5)}}
        if kind == "point-mae-pretrain":
            obj["base_model"]["module.mask_token"] = torch.zeros(1, 1, width)
    torch.save(obj, tmp_path / "peer.pth")
    assert cli_main(["convert", str(tmp_path / "peer.pth"), "--out", str(tmp_path / "conv"), "--heads", str(heads)]) == 0
    model, card = load_checkpoint(tmp_path / "conv")
    assert card["source"]["kind"] == source_kind
    g = torch.Generator().manual_seed(1)
    pts = torch.randn(1, 1024, 3, generator=g)
    pts = pts / pts.norm(dim=-1).max()
    with torch.no_grad():
        out = model(pts, return_attention=True)
        x, attns = _reference({"pos-bert": "pos_bert_base", "pos-bert-cls": "pos_bert_cls"}.get(kind, kind), s, pts, heads)
    cls_tokens = 0 if kind == "point-mae-pretrain" else 1
    diff = max(float((out.patches - x[:, cls_tokens:]).abs().max()),
               float((torch.stack(out.attentions) - torch.stack(attns)).abs().max()))
    print(f"{kind} full size (width {width}, depth {depth}, {heads} heads): max |difference| {diff:.2e}")
    assert diff < ATOL, diff


# --------------------------------------------------------------------------- hostile files


class WritesAFile:
    """A pickle payload: unpickling it with the full unpickler would create `path`."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_code_running_payload_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned.txt"
    torch.save({"base_model": {"module.cls_token": torch.zeros(1)}, "payload": WritesAFile(str(marker))},
               tmp_path / "evil.pth")
    with pytest.raises(cv.ConvertError, match="refused.*nothing in it was executed"):
        cv.load_peer_file(tmp_path / "evil.pth")
    assert cli_main(["convert", str(tmp_path / "evil.pth"), "--out", str(tmp_path / "conv")]) == 1
    assert not marker.exists() and not (tmp_path / "conv").exists()
    # a bare pickle (no zip container) is not even opened by the unpickler
    (tmp_path / "bare.pth").write_bytes(pickle.dumps(WritesAFile(str(marker))))
    with pytest.raises(cv.ConvertError, match="not a PyTorch checkpoint"):
        cv.load_peer_file(tmp_path / "bare.pth")
    assert not marker.exists()


def test_truncated_foreign_and_unknown_files_get_sentences(tmp_path):
    torch.save({"base_model": {"module.x": torch.zeros(3)}, "epoch": 1}, tmp_path / "ok.pth")
    data = (tmp_path / "ok.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    (tmp_path / "noise.pth").write_bytes(np.random.default_rng(0).bytes(4096))
    for f in ("cut.pth", "noise.pth"):
        with pytest.raises(cv.ConvertError, match="pcdviz converts Point-MAE"):
            cv.load_peer_file(tmp_path / f)
    with pytest.raises(cv.ConvertError, match="not a checkpoint layout pcdviz knows.*pcdviz converts"):
        cv.convert(cv.load_peer_file(tmp_path / "ok.pth"))


def test_wrong_shapes_and_nan_weights_get_sentences(tmp_path):
    s = _random_peer_state("point-mae", 96, 2, 96)
    s["blocks.blocks.1.attn.qkv.weight"] = torch.zeros(100, 96)
    with pytest.raises(cv.ConvertError, match="do not fit"):
        cv.convert({"base_model": s}, heads=4)
    s = _random_peer_state("pos-bert", 96, 2, 96)
    s["blocks.0.mlp.fc1.bias"][0] = float("nan")
    s = {"backbone." + k: v for k, v in s.items()}
    with pytest.raises(cv.ConvertError, match="NaN"):
        cv.convert({"teacher": s, "student": s}, heads=4)
    s = _random_peer_state("point-mae", 96, 2, 96)
    del s["blocks.blocks.1.norm2.bias"]
    with pytest.raises(cv.ConvertError, match="norm2.bias"):
        cv.convert({"base_model": s}, heads=4)


def _rewrite_numbers(src: Path, dst: Path, old: bytes, new: bytes) -> None:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename.endswith("data.pkl"):
                assert old in data
                data = data.replace(old, new, 1)
            zout.writestr(info.filename, data)


def test_absurd_tensor_sizes_allocate_nothing(tmp_path):
    torch.save({"w": torch.zeros(4)}, tmp_path / "small.pth")
    huge = b"\x8a\x05" + (10**11).to_bytes(5, "little")  # LONG1: 1e11 elements, 400 GB of float32
    _rewrite_numbers(tmp_path / "small.pth", tmp_path / "shape.pth", b"K\x04\x85", huge + b"\x85")  # tensor size
    _rewrite_numbers(tmp_path / "small.pth", tmp_path / "numel.pth", b"K\x04t", huge + b"t")  # storage numel
    code = (
        "import sys\nfrom pcdviz import convert as cv\n"
        "def hwm():\n return int([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1])\n"
        "before = hwm()\n"
        "for f in sys.argv[1:]:\n"
        "  try:\n    cv.convert(cv.load_peer_file(f))\n  except cv.ConvertError as e:\n    print('sentence:', str(e)[:60])\n"
        "print('grew_kb', hwm() - before)\n")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "shape.pth"), str(tmp_path / "numel.pth")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("sentence:") == 2, out.stdout
    assert int(out.stdout.split("grew_kb")[1]) < 200_000, out.stdout  # well under 200 MB, not 400 GB


# --------------------------------------------------------------------------- converted models in the explorer


def _converted(tmp_path, kind: str, width: int, depth: int, heads: int = 4) -> Path:
    s = _random_peer_state(kind, width, depth, width)
    obj = ({"teacher": {"backbone." + k: v for k, v in s.items()}, "student": {}} if kind == "pos-bert"
           else {"base_model": {("MAE_encoder." if kind == "point-mae-pretrain" else "") + k: v for k, v in s.items()}})
    torch.save(obj, tmp_path / f"{kind}.pth")
    out = tmp_path / "ckpts" / kind
    cv.convert_file(tmp_path / f"{kind}.pth", out, heads=heads)
    return out


def test_a_model_without_cls_token_offers_the_views_that_make_sense(tmp_path):
    from pcdviz.attention import AttentionMaps
    from pcdviz.explorer import Explorer, ViewSettings

    folder = _converted(tmp_path, "point-mae-pretrain", 96, 3)
    model, _ = load_checkpoint(folder)
    pts = np.random.default_rng(0).standard_normal((1024, 3)).astype(np.float32)
    maps = AttentionMaps.from_model(model, pts)
    assert maps.cls_tokens == 0 and maps.n_patches == 64 and maps.attentions.shape[-1] == 64
    with pytest.raises(ValueError, match="no CLS token"):
        maps.cls_to_patches(-1, "mean")
    received = maps.mean_received(-1, "mean")
    np.testing.assert_allclose(received, maps.attentions[-1].mean(0).mean(0), rtol=1e-5)
    assert abs(received.sum() - 1) < 1e-4  # rows sum to 1, so the mean column sums to 1
    q, to_cls = maps.patch_to_patches(-1, 0, 5)
    assert q.shape == (64,) and math.isnan(to_cls)
    assert maps.rollout().shape == (64,)

    ex = Explorer(folder.parent)
    cid = ex.load_shape("chair").cloud_id
    v = ex.view(folder.name, cid, ViewSettings(mode="cls"))
    assert "no CLS token" in v.panels[0].title
    v = ex.view(folder.name, cid, ViewSettings(mode="heads"))
    assert len(v.panels) == 4 and "no CLS token" in v.caption


def test_compare_models_of_different_depth_shows_the_same_relative_layer(tmp_path):
    from pcdviz.explorer import Explorer, ViewSettings, relative_layer

    assert relative_layer(-1, 12, 4) == 3 and relative_layer(0, 12, 4) == 0 and relative_layer(11, 12, 4) == 3
    assert relative_layer(6, 12, 4) == 2 and relative_layer(2, 4, 12) == 7 and relative_layer(1, 2, 2) == 1
    deep = _converted(tmp_path, "point-mae", 96, 6, heads=4)
    shallow = _converted(tmp_path, "pos-bert", 96, 2, heads=2)
    ex = Explorer(deep.parent)
    cid = ex.load_shape("chair").cloud_id
    v = ex.view(deep.name, cid, ViewSettings(mode="cls", layer=5), compare=[shallow.name])
    assert len(v.panels) == 2
    assert "layer 5" in v.panels[0].title and "layer 1" in v.panels[1].title  # both the last layer
    v = ex.view(deep.name, cid, ViewSettings(mode="query", layer=0, head="1"), compare=[shallow.name])
    assert "layer 0" in v.panels[1].title and "head 1" in v.panels[1].title


def test_point_bert_pretraining_file_converts_its_query_network(tmp_path):
    """Point-BERT's pre-training file holds the MoCo pair (transformer_q, transformer_k), the dVAE and the queue;
    its fine-tune loader keeps transformer_q less cls_head: the same backbone as a fine-tuned file's."""
    s = _random_peer_state("point-bert", 96, 2, 256)
    g = torch.Generator().manual_seed(3)
    pre = {f"module.transformer_q.{k}": v for k, v in s.items()}
    pre.update({f"module.transformer_k.{k}": v + 1 for k, v in s.items()})
    pre.update({"module.transformer_q.mask_token": torch.randn(1, 1, 96, generator=g),
                "module.transformer_q.lm_head.weight": torch.randn(8192, 96, generator=g),
                "module.transformer_q.cls_head.0.weight": torch.randn(256, 96, generator=g),
                "module.dvae.encoder.first_conv.0.weight": torch.randn(128, 3, 1, generator=g),
                "module.queue": torch.randn(256, 16, generator=g), "module.queue_ptr": torch.zeros(1, dtype=torch.long)})
    obj = {"base_model": pre, "optimizer": {}, "epoch": 300}
    conv = cv.convert(obj, heads=4)
    direct = cv.convert({"base_model": s}, heads=4)
    assert conv.kind == "point-bert" and conv.state.keys() == direct.state.keys()
    assert all(torch.equal(conv.state[k], direct.state[k]) for k in conv.state)
    dropped = " ".join(conv.dropped)
    assert all(p in dropped for p in ("transformer_k", "dvae", "queue", "lm_head", "cls_head", "mask_token"))
    assert "transformer_q" in " ".join(conv.notes)
