"""`pcdviz convert`: the field's checkpoints (Point-MAE, ACT, Point-BERT, POS-BERT) -> pcdviz checkpoint folders.

Each peer's file is read in exactly the layout its own training code writes (../shared/peers/PROVENANCE.md
describes them): the wrapper dict, DataParallel's `module.` prefix, the encoder prefix of Point-MAE's
pre-training checkpoints, POS-BERT's teacher/student pair. The backbone's weights are mapped onto a PointViT
whose architecture options (model.PointViTConfig) reproduce the peer's forward pass: BatchNorm is folded into
the linear layer before it (exact in eval mode), Conv1d(k=1) becomes Linear, a missing qkv bias becomes zeros.
Decoders, classifier heads and projection heads are dropped, and the card lists what was kept and dropped.

Reading a .pth is unpickling, so it goes through PyTorch's restricted unpickler (weights_only=True) with an
explicit allowlist of the few plain types these files hold; anything else (a payload that would run code)
is refused before it runs. Tensors are memory-mapped, so a file cannot make us allocate more than its size.
"""
from __future__ import annotations

import argparse
import hashlib
import math
import pickle
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from pcdviz.checkpoints import CheckpointError, save_checkpoint
from pcdviz.model import PointViT, PointViTConfig

KINDS = ("point-mae", "point-mae-pretrain", "act", "point-bert", "pos-bert")
MAX_FILE_BYTES = 4 * 1024**3  # a ViT-S checkpoint with AdamW moments is ~0.3 GB; refuse absurd files up front
LAYOUTS = (
    "Point-MAE / ACT / Point-BERT fine-tune or pre-training files ({'base_model': state dict, 'optimizer', "
    "'epoch', 'metrics', ...}), POS-BERT pre-training checkpoint.pth ({'teacher', 'student', 'args', ...}) "
    "and POS-BERT classifier model.t7 (a bare DataParallel state dict)"
)
# The only non-tensor globals these files hold (PROVENANCE.md): POS-BERT's argparse.Namespace, and numpy
# scalars in ACT's and POS-BERT's metrics, pickled under numpy 1.x's module name. Plain number dtypes only
# (no object dtype: its scalars would be arbitrary objects).
_ALLOWED_GLOBALS = [
    argparse.Namespace,
    (np._core.multiarray.scalar, "numpy.core.multiarray.scalar"),
    np.dtype,
    *(getattr(np.dtypes, n) for n in ("Float64DType", "Float32DType", "Float16DType", "Int64DType",
                                      "Int32DType", "Int16DType", "Int8DType", "UInt8DType", "BoolDType")),
]
# The peers' published sizes that the files do not store (attention heads, group size and count).
_PEER_DEFAULTS = {
    "point-mae": dict(n_heads=6, n_groups=64, group_size=32),
    "point-mae-pretrain": dict(n_heads=6, n_groups=64, group_size=32),
    "act": dict(n_heads=6, n_groups=64, group_size=32),
    "point-bert": dict(n_heads=6, n_groups=64, group_size=32),
    "pos-bert": dict(n_heads=4, group_size=32),  # pct_base; POS-BERT's classifier (model.t7) uses 8 heads
}
_BN_EPS = 1e-5  # torch's BatchNorm default, used by every peer


class ConvertError(ValueError):
    """A file that cannot be converted; the message is a sentence for the person who gave it."""


@dataclass
class Conversion:
    """A peer checkpoint mapped onto a PointViT: the config, the state dict, and what the card records."""

    kind: str
    config: PointViTConfig
    state: dict[str, torch.Tensor]
    kept: list[str] = field(default_factory=list)     # source key prefixes taken into the backbone
    dropped: list[str] = field(default_factory=list)  # source key prefixes left out, with why
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- reading a .pth safely


def load_peer_file(path) -> object:
    """The unpickled contents of a peer's .pth/.t7 file, through the restricted unpickler and our allowlist."""
    path = Path(path)
    if not path.is_file():
        raise ConvertError(f"{path}: no such file")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise ConvertError(f"{path}: {size / 1024**3:.1f} GB is larger than any point transformer checkpoint "
                           f"(limit {MAX_FILE_BYTES / 1024**3:.0f} GB)")
    if not zipfile.is_zipfile(path):
        raise ConvertError(f"{path.name}: not a PyTorch checkpoint (no zip container; truncated, or another "
                           f"format). pcdviz converts {LAYOUTS}")
    try:
        with torch.serialization.safe_globals(_ALLOWED_GLOBALS):
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as err:
        what = str(err).split("Unsupported global: ")[-1].split(" was not")[0].strip() if "Unsupported" in str(err) else ""
        raise ConvertError(
            f"{path.name}: refused, it asks to load {what or 'objects'} that a weights file does not need "
            f"(loading it could run code; nothing in it was executed). pcdviz converts {LAYOUTS}") from None
    except Exception as err:  # zip records missing or cut short, storages that do not fit: a damaged file
        raise ConvertError(f"{path.name}: could not be read as a PyTorch checkpoint ({_first_line(err)}); "
                           f"is it damaged or truncated? pcdviz converts {LAYOUTS}") from None


def _first_line(err: Exception) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0][:200]


def sha256_of(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --------------------------------------------------------------------------- which peer wrote it


def _strip(state: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def _unwrap_module(state: dict) -> dict:
    """DataParallel / DistributedDataParallel prefix every key with 'module.'; a plain run does not."""
    if state and all(isinstance(k, str) and k.startswith("module.") for k in state):
        return _strip(state, "module.")
    return dict(state)


def detect_kind(obj) -> str:
    """The peer that wrote `obj` (a loaded file), from its keys; ConvertError when it is none of them."""
    if isinstance(obj, dict) and isinstance(obj.get("base_model"), dict):
        keys = set(_unwrap_module(obj["base_model"]))
        if any(k.startswith("MAE_encoder.") for k in keys):
            return "point-mae-pretrain"
        if "reduce_dim.weight" in keys or "transformer_q.reduce_dim.weight" in keys:
            return "point-bert"  # fine-tuned, or the pre-training file (MoCo's query network transformer_q)
        if "encoder.first_conv.0.weight" in keys:
            metrics = obj.get("metrics")
            return "act" if isinstance(metrics, dict) and "acc_avg" in metrics else "point-mae"
    if isinstance(obj, dict) and isinstance(obj.get("teacher"), dict) and isinstance(obj.get("student"), dict):
        return "pos-bert"
    if isinstance(obj, dict) and "gather_local_0.conv1.weight" in _unwrap_module(
            {k: v for k, v in obj.items() if isinstance(k, str)}):
        return "pos-bert"
    keys = sorted(obj)[:6] if isinstance(obj, dict) else type(obj).__name__
    raise ConvertError(f"not a checkpoint layout pcdviz knows (top-level: {keys}); pcdviz converts {LAYOUTS}")


# --------------------------------------------------------------------------- weight mapping helpers


def _t(state: dict, key: str) -> torch.Tensor:
    if key not in state:
        raise ConvertError(f"the checkpoint has no {key!r}; it does not match the layout of its kind")
    v = state[key]
    if not isinstance(v, torch.Tensor) or not v.is_floating_point() and key.split(".")[-1] != "num_batches_tracked":
        raise ConvertError(f"{key!r} is not a floating-point tensor")
    return v.detach().to(torch.float64)


def _linear(state: dict, prefix: str, bn: str | None = None, bias: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight (out, in) and bias of a Linear or Conv1d(k=1) at `prefix`, with the BatchNorm at `bn` folded in."""
    w = _t(state, prefix + ".weight")
    if w.dim() == 3:
        if w.shape[-1] != 1:
            raise ConvertError(f"{prefix}.weight has kernel size {w.shape[-1]}; only 1x1 convolutions are supported")
        w = w[..., 0]
    b = _t(state, prefix + ".bias") if bias else torch.zeros(w.shape[0], dtype=torch.float64)
    if bn is not None:  # y = gamma * (Wx + b - mean) / sqrt(var + eps) + beta
        scale = _t(state, bn + ".weight") / torch.sqrt(_t(state, bn + ".running_var") + _BN_EPS)
        b = (b - _t(state, bn + ".running_mean")) * scale + _t(state, bn + ".bias")
        w = w * scale[:, None]
    return w, b


def _put(out: dict, prefix: str, wb: tuple[torch.Tensor, torch.Tensor]) -> None:
    out[prefix + ".weight"], out[prefix + ".bias"] = wb


def _copy(out: dict, state: dict, src: str, dst: str) -> None:
    out[dst] = _t(state, src)


def _blocks(state: dict, src: str, depth: int, qkv_bias: bool) -> dict:
    """Transformer blocks: the peers' names are ours (norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2)."""
    out = {}
    for i in range(depth):
        s, d = f"{src}{i}.", f"blocks.{i}."
        for name in ("norm1", "norm2", "attn.proj", "mlp.fc1", "mlp.fc2"):
            _put(out, d + name, (_t(state, s + name + ".weight"), _t(state, s + name + ".bias")))
        _put(out, d + "attn.qkv", _linear(state, s + "attn.qkv", bias=qkv_bias))  # Point-MAE: no bias -> zeros
    return out


def _depth(state: dict, src: str) -> int:
    idx = {int(k[len(src):].split(".")[0]) for k in state if k.startswith(src) and k[len(src):].split(".")[0].isdigit()}
    if not idx or idx != set(range(max(idx) + 1)):
        raise ConvertError(f"the checkpoint's blocks under {src!r} are missing or not numbered 0..depth-1")
    return max(idx) + 1


def _groups_of_keys(keys) -> list[str]:
    """Key prefixes with counts, a readable summary for the card: modules up to their first block number
    ("blocks.blocks.*"), a module's own parameters under the module ("pos_embed.*"), bare tensors by name."""
    params = {"weight", "bias", "running_mean", "running_var", "num_batches_tracked", "weight_g", "weight_v"}
    counts: dict[str, int] = {}
    for k in keys:
        parts = k.split(".")
        digit = next((i for i, p in enumerate(parts) if p.isdigit()), None)
        if digit is not None:
            p = ".".join(parts[:max(digit, 1)]) + ".*"
        elif len(parts) > 1 and parts[-1] in params:
            p = ".".join(parts[:-1]) + ".*"
        else:
            p = k
        counts[p] = counts.get(p, 0) + 1
    return [f"{p} ({n})" for p, n in sorted(counts.items())]


# --------------------------------------------------------------------------- the Point-MAE family


def convert_point_mae(obj: dict, kind: str, heads: int | None, n_groups: int | None, group_size: int | None) -> Conversion:
    """Point-MAE / ACT / Point-BERT fine-tune models and Point-MAE's and Point-BERT's pre-training encoders."""
    full = _unwrap_module(obj["base_model"])
    # Point-MAE pre-training keeps its encoder under MAE_encoder.; Point-BERT's under transformer_q. (the MoCo
    # query network, which Point-BERT's own fine-tune loader takes, less its cls_head)
    prefix = ("MAE_encoder." if kind == "point-mae-pretrain" else
              "transformer_q." if "transformer_q.reduce_dim.weight" in full else "")
    s = _strip(full, prefix)
    d = _PEER_DEFAULTS[kind]
    first0, first3 = _linear(s, "encoder.first_conv.0", bn="encoder.first_conv.1"), _linear(s, "encoder.first_conv.3")
    second0, second3 = _linear(s, "encoder.second_conv.0", bn="encoder.second_conv.1"), _linear(s, "encoder.second_conv.3")
    pos0, pos2 = _linear(s, "pos_embed.0"), _linear(s, "pos_embed.2")
    width = pos2[0].shape[0]
    depth = _depth(s, "blocks.blocks.")
    has_cls = "cls_token" in s
    token_dim = second3[0].shape[0] if "reduce_dim.weight" in s else 0
    if not token_dim and second3[0].shape[0] != width:
        raise ConvertError(f"the tokenizer outputs {second3[0].shape[0]} channels but the blocks are {width} wide, "
                           "and there is no reduce_dim layer")
    config = PointViTConfig(
        n_points=1024, n_groups=n_groups or d["n_groups"], group_size=group_size or d["group_size"],
        width=width, depth=depth, n_heads=heads or d["n_heads"],
        mlp_ratio=_t(s, "blocks.blocks.0.mlp.fc1.weight").shape[0] / width, drop_path=0.0,
        embed_dims=(first0[0].shape[0], first3[0].shape[0]), pos_hidden=pos0[0].shape[0],
        embed_norm="none", embed_act="relu", token_dim=token_dim, pos_embed="every_block", norm_eps=1e-5,
        cls_tokens=int(has_cls), fps_rule="pointnet2", group_count="fixed")
    out = {}
    _put(out, "patch_embed.first.0", first0)
    _put(out, "patch_embed.first.3", first3)
    _put(out, "patch_embed.second_in", second0)
    _put(out, "patch_embed.second.2", second3)
    if token_dim:
        _put(out, "token_proj", _linear(s, "reduce_dim"))
    _put(out, "pos_embed.0", pos0)
    _put(out, "pos_embed.2", pos2)
    if has_cls:
        _copy(out, s, "cls_token", "cls_token")
        _copy(out, s, "cls_pos", "cls_pos")
    out.update(_blocks(s, "blocks.blocks.", depth, qkv_bias=False))
    _put(out, "norm", (_t(s, "norm.weight"), _t(s, "norm.bias")))
    not_backbone = ("cls_head_finetune.", "cls_head.", "lm_head.", "mask_token")
    kept = [k for k in full if k.startswith(prefix) and not k[len(prefix):].startswith(not_backbone)]
    conv = Conversion(kind, config, out, kept=_groups_of_keys(kept),
                      dropped=_groups_of_keys(k for k in full if k not in set(kept)))
    if prefix == "transformer_q.":
        conv.notes.append("Point-BERT pre-training checkpoint: the MoCo query network (transformer_q), as "
                          "Point-BERT's fine-tune loader takes it")
    conv.notes.append("BatchNorm folded into the linear layer before it (eval-mode statistics); qkv bias zeros"
                      + ("; no CLS token: the global feature is the mean patch token" if not has_cls else ""))
    return conv


# --------------------------------------------------------------------------- POS-BERT


def convert_pos_bert(obj: dict, part: str, heads: int | None, group_size: int | None) -> Conversion:
    """POS-BERT's pre-training checkpoint.pth (teacher or student backbone) or its classifier model.t7."""
    pretrain = "teacher" in obj and "student" in obj
    if pretrain:
        full = _unwrap_module(obj[part])
        s = _strip(full, "backbone.")
        args = obj.get("args")
        samplepoint = getattr(args, "patch_size", None) if isinstance(args, argparse.Namespace) else None
        kept = [k for k in full if k.startswith("backbone.") and k not in ("backbone.mask_token",)
                and not k.startswith("backbone.pos_embedding.")]
    else:
        full = _unwrap_module({k: v for k, v in obj.items() if isinstance(k, str)})
        s, samplepoint = full, None
        heads = heads or 8  # models/model_cls.POS_BERT: 8 heads
        kept = [k for k in full if not k.startswith(("head_", "se."))]
    point1 = _linear(s, "conv1", bn="bn1", bias=False)
    point2 = _linear(s, "conv2", bn="bn2", bias=False)
    local1 = _linear(s, "gather_local_0.conv1", bn="gather_local_0.bn1", bias=False)
    local2 = _linear(s, "gather_local_0.conv2", bn="gather_local_0.bn2", bias=False)
    width = local2[0].shape[0]
    depth = _depth(s, "blocks.")
    K = int(group_size or samplepoint or _PEER_DEFAULTS["pos-bert"]["group_size"])
    config = PointViTConfig(
        n_points=1024, n_groups=-(-1024 // K), group_size=K, width=width, depth=depth,
        n_heads=heads or _PEER_DEFAULTS["pos-bert"]["n_heads"],
        mlp_ratio=_t(s, "blocks.0.mlp.fc1.weight").shape[0] / width, drop_path=0.0,
        embed_dims=(point1[0].shape[0], point2[0].shape[0]), tokenizer="pct", embed_norm="none",
        embed_act="relu" if pretrain else "leaky_relu", pos_embed="none", norm_eps=1e-6, cls_tokens=1,
        fps_rule="first_max", group_count="ceil")
    out = {}
    _put(out, "patch_embed.point_mlp.0", point1)
    _put(out, "patch_embed.point_mlp.3", point2)
    _put(out, "patch_embed.group_mlp.0", local1)
    _put(out, "patch_embed.group_mlp.3", local2)
    out["cls_token"] = _t(s, "cls_token").reshape(1, 1, width)  # POS-BERT keeps it channels-first (1, D, 1)
    out.update(_blocks(s, "blocks.", depth, qkv_bias=True))
    _put(out, "norm", (_t(s, "norm.weight"), _t(s, "norm.bias")))
    conv = Conversion("pos-bert", config, out, kept=_groups_of_keys(kept),
                      dropped=_groups_of_keys(k for k in full if k not in set(kept)))
    if pretrain:
        other = "student" if part == "teacher" else "teacher"
        conv.dropped.append(f"the {other} network (--part {part} was converted)")
        conv.notes.append(f"POS-BERT pre-training checkpoint, {part} backbone; per-point MLP uses ReLU")
    else:
        conv.notes.append("POS-BERT classifier (model.t7); per-point MLP uses LeakyReLU(0.2)")
    conv.notes.append("BatchNorm folded into the convolution before it (eval-mode statistics)")
    return conv


# --------------------------------------------------------------------------- the whole conversion


def convert(obj, kind: str = "auto", part: str = "teacher", heads: int | None = None,
            n_groups: int | None = None, group_size: int | None = None) -> Conversion:
    """Map a loaded peer file onto a PointViT config and state dict (float32), checked against the model."""
    detected = detect_kind(obj)
    if kind == "auto":
        kind = detected
    elif kind != detected and {kind, detected} != {"point-mae", "act"}:  # ACT files are Point-MAE's layout
        raise ConvertError(f"--from {kind} was asked for, but the file's keys are those of a {detected} checkpoint")
    if part not in ("teacher", "student"):
        raise ConvertError(f"--part must be teacher or student, got {part!r}")
    try:
        if kind == "pos-bert":
            conv = convert_pos_bert(obj, part, heads, group_size)
        else:
            conv = convert_point_mae(obj, kind, heads, n_groups, group_size)
    except ConvertError:
        raise
    except (ValueError, KeyError, IndexError, RuntimeError, TypeError) as err:  # shapes that do not fit together
        raise ConvertError(f"the {kind} checkpoint's tensors do not fit its layout ({_first_line(err)})") from None
    _check_against_model(conv)
    conv.state = {k: v.to(torch.float32) for k, v in conv.state.items()}
    return conv


def _check_against_model(conv: Conversion) -> None:
    """Every key and shape of the mapped state dict must be the model's, and every value finite."""
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in PointViT(conv.config).state_dict().items()}
    got = {k: tuple(v.shape) for k, v in conv.state.items()}
    if got != expected:
        missing, extra = sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
        wrong = [f"{k} {got[k]} vs {expected[k]}" for k in sorted(set(got) & set(expected)) if got[k] != expected[k]]
        raise ConvertError(f"the {conv.kind} checkpoint's tensor shapes do not fit together: "
                           f"missing {missing[:4]}, unexpected {extra[:4]}, mismatched {wrong[:4]}")
    bad = [k for k, v in conv.state.items() if not torch.isfinite(v).all()]
    if bad:
        raise ConvertError(f"the checkpoint holds NaN or infinite weights in {bad[:4]}")


def convert_file(path, out, kind: str = "auto", part: str = "teacher", heads: int | None = None,
                 n_groups: int | None = None, group_size: int | None = None) -> tuple[Path, Conversion]:
    """Read a peer file, convert it, write the checkpoint folder `out` with its model card."""
    path = Path(path)
    obj = load_peer_file(path)
    conv = convert(obj, kind, part, heads, n_groups, group_size)
    model = PointViT(conv.config)
    model.load_state_dict(conv.state, strict=True)
    c = conv.config
    card = {
        "method": f"converted from {conv.kind}",
        "source": {"kind": conv.kind, "file": path.name, "sha256": sha256_of(path), "bytes": path.stat().st_size,
                   **({"part": part} if conv.kind == "pos-bert" and "teacher" in obj else {})},
        "kept": conv.kept,
        "dropped": conv.dropped,
        "architecture": {
            "options": {k: getattr(c, k) for k in ("tokenizer", "embed_norm", "embed_act", "token_dim", "pos_embed",
                                                   "norm_eps", "cls_tokens", "fps_rule", "group_count")},
            "not_stored_in_the_file": {"n_heads": c.n_heads, "n_groups": c.n_groups, "group_size": c.group_size,
                                       "why": "the peers keep these in their config files, not in the checkpoint; "
                                              "pass --heads / --groups / --group-size if yours differ"},
        },
        "data": None,
        "notes": "; ".join(conv.notes),
    }
    metrics = _plain_metrics(obj)
    if metrics:
        card["source"]["metrics"] = metrics
    return save_checkpoint(out, model, card), conv


def _plain_metrics(obj) -> dict:
    """The peer's own recorded metrics as plain JSON numbers (tensors and numpy scalars included)."""
    out = {}
    if not isinstance(obj, dict):
        return out
    for name in ("metrics", "best_metrics"):
        m = obj.get(name)
        if isinstance(m, dict):
            for k, v in m.items():
                try:
                    x = float(v.item() if hasattr(v, "item") else v)
                except (TypeError, ValueError, RuntimeError):
                    continue
                if math.isfinite(x):
                    out[f"{name}.{k}"] = x
    for name in ("epoch", "best_acc", "best_loss"):
        v = obj.get(name)
        try:
            x = float(v.item() if hasattr(v, "item") else v)
        except (TypeError, ValueError, RuntimeError, AttributeError):
            continue
        if math.isfinite(x):
            out[name] = x
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="pcdviz convert",
        description="Convert a Point-MAE, ACT, Point-BERT or POS-BERT checkpoint into a pcdviz checkpoint folder "
                    "(config.json + model.safetensors). The file is read with PyTorch's restricted unpickler; "
                    "nothing in it is executed.")
    ap.add_argument("file", help="the peer's checkpoint (.pth / .t7), as its training code wrote it")
    ap.add_argument("--out", required=True, help="the checkpoint folder to write, e.g. checkpoints/point-mae")
    ap.add_argument("--from", dest="kind", default="auto", choices=("auto",) + KINDS,
                    help="the peer that wrote the file (default: detected from its keys)")
    ap.add_argument("--part", default="teacher", choices=("teacher", "student"),
                    help="POS-BERT pre-training checkpoints hold both networks; which backbone to convert")
    ap.add_argument("--heads", type=int, default=None,
                    help="attention heads (not stored in the files; default: the peer's published config)")
    ap.add_argument("--groups", type=int, default=None, help="number of patches (Point-MAE family; default 64)")
    ap.add_argument("--group-size", type=int, default=None, help="points per patch (default 32)")
    args = ap.parse_args(argv)
    try:
        path, conv = convert_file(args.file, args.out, args.kind, args.part, args.heads, args.groups, args.group_size)
    except (ConvertError, CheckpointError, OSError) as err:
        print(f"pcdviz convert: {err}", file=sys.stderr)
        return 1
    c = conv.config
    print(f"wrote {path}: {conv.kind}, width {c.width}, depth {c.depth}, {c.n_heads} heads, "
          f"{c.n_groups} x {c.group_size} groups, {'a CLS token' if c.cls_tokens else 'no CLS token'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
