"""Checkpoint folders: `model.safetensors` (the backbone weights) + `config.json` (the model card).

Loading never unpickles anything: pickled files (.pt, .pth, .ckpt, .pkl, ...) are refused, and the
safetensors header is validated by hand before the library reads the file, so a crafted header can
neither run code nor make us allocate what it claims.
"""
from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import json
import math
import os
import shutil
import struct
import sys
import tempfile
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

import pcdviz
from pcdviz.model import PRESETS, PointViT, PointViTConfig, preset

CARD_FORMAT = "pcdviz-checkpoint/1"
MODEL_FILE = "model.safetensors"
CARD_FILE = "config.json"
PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".bin", ".joblib", ".tar")
MAX_CARD_BYTES = 1024 * 1024
MAX_HEADER_BYTES = 100 * 1024 * 1024  # a real header is a few KB; refuse absurd claims before reading
MAX_MODEL_BYTES = 8 * 1024**3

# safetensors dtype -> (bytes per element, is floating point)
_DTYPES = {
    "F64": (8, True), "F32": (4, True), "F16": (2, True), "BF16": (2, True),
    "I64": (8, False), "I32": (4, False), "I16": (2, False), "I8": (1, False), "U8": (1, False),
    "BOOL": (1, False),
}
# sanity bounds on a card's architecture numbers (far above any real model; a crafted card cannot ask for more)
_INT_LIMITS = {"n_points": 10_000_000, "n_groups": 65536, "group_size": 4096, "width": 16384, "depth": 512,
               "n_heads": 1024, "pos_hidden": 16384}
_PICKLE_HINT = (
    "pickled checkpoints are refused because loading them can run code; convert a Point-MAE, ACT, Point-BERT "
    "or POS-BERT checkpoint with `pcdviz convert FILE --out FOLDER` "
    "(reads tensors only, through PyTorch's restricted unpickler)"
)


class CheckpointError(ValueError):
    """A checkpoint folder is missing, unsafe, corrupt or does not match its config."""


@dataclass
class CheckpointInfo:
    """One folder found by scan_checkpoints; `error` says why it cannot be loaded (None when fine)."""

    name: str
    path: Path
    card: dict = field(default_factory=dict)
    error: str | None = None


# --------------------------------------------------------------------------- cards


def _config_to_dict(config: PointViTConfig) -> dict:
    d = asdict(config)
    d["embed_dims"] = list(d["embed_dims"])
    return d


def config_from_card(card: dict) -> PointViTConfig:
    """The PointViTConfig in a card's "model" entry, validated (CheckpointError if anything is off)."""
    model = card.get("model")
    if not isinstance(model, dict):
        raise CheckpointError('config.json has no "model" object describing the architecture')
    names = {f.name for f in fields(PointViTConfig)}
    unknown = sorted(set(model) - names)
    if unknown:
        raise CheckpointError(f'config.json "model" has unknown keys {unknown}; known keys: {sorted(names)}')
    for k, limit in _INT_LIMITS.items():
        if k in model and (not isinstance(model[k], int) or isinstance(model[k], bool) or not 1 <= model[k] <= limit):
            raise CheckpointError(f'config.json "model.{k}" must be a positive integer up to {limit}, got {model[k]!r}')
    for k in ("mlp_ratio", "drop_path"):
        if k in model and (not isinstance(model[k], (int, float)) or isinstance(model[k], bool)
                           or not math.isfinite(model[k]) or not 0 <= model[k] <= 64):
            raise CheckpointError(f'config.json "model.{k}" must be a finite number, got {model[k]!r}')
    if "embed_dims" in model:
        e = model["embed_dims"]
        if not (isinstance(e, list) and len(e) == 2
                and all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 16384 for v in e)):
            raise CheckpointError(f'config.json "model.embed_dims" must be two positive integers, got {e!r}')
    try:
        return PointViTConfig(**model)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f'config.json "model" is not a valid PointViT configuration: {err}') from None


def _validate_card(card, where: Path) -> dict:
    if not isinstance(card, dict):
        raise CheckpointError(f"{where}: config.json must hold a JSON object, not {type(card).__name__}")
    fmt = card.get("format")
    if fmt != CARD_FORMAT:
        raise CheckpointError(f'{where}: config.json "format" is {fmt!r}; expected {CARD_FORMAT!r}')
    config_from_card(card)
    return card


def read_card(folder) -> dict:
    """The validated model card (config.json) of a checkpoint folder."""
    folder = _checkpoint_dir(folder)
    path = folder / CARD_FILE
    if not path.is_file():
        raise CheckpointError(f"{folder}: no {CARD_FILE} (a checkpoint is a folder with {MODEL_FILE} and {CARD_FILE})")
    if path.stat().st_size > MAX_CARD_BYTES:
        raise CheckpointError(f"{path}: {CARD_FILE} is larger than {MAX_CARD_BYTES} bytes")
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path}: not valid JSON ({err})") from None
    except RecursionError:  # "[[[[..." nested deeper than the parser's stack
        raise CheckpointError(f"{path}: not valid JSON (nested too deeply)") from None
    return _validate_card(card, folder)


def update_card(folder, **fields_) -> dict:
    """Merge fields into config.json atomically (dict values such as scores merge one level deep)."""
    folder = _checkpoint_dir(folder)
    card = read_card(folder)
    for key in ("format", "model"):
        if key in fields_:
            raise CheckpointError(f'update_card cannot change "{key}"; save a new checkpoint instead')
    for key, value in fields_.items():
        if isinstance(value, dict) and isinstance(card.get(key), dict):
            card[key] = {**card[key], **value}
        else:
            card[key] = value
    _write_json_atomic(folder / CARD_FILE, card)
    return card


# --------------------------------------------------------------------------- safetensors header check


def check_safetensors_header(path) -> dict:
    """Validate a safetensors file's header by hand; return {name: (dtype, shape)}. Reads only the header."""
    path = Path(path)
    size = path.stat().st_size
    if size > MAX_MODEL_BYTES:
        raise CheckpointError(f"{path}: {size} bytes is larger than the {MAX_MODEL_BYTES}-byte limit")
    if size < 8:
        raise CheckpointError(f"{path}: too short to be a safetensors file ({size} bytes)")
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        if n > MAX_HEADER_BYTES:
            raise CheckpointError(f"{path}: corrupt safetensors header (declares a {n}-byte header)")
        if 8 + n > size:
            raise CheckpointError(f"{path}: corrupt safetensors header (declares {n} bytes; the file has {size - 8})")
        raw = f.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):  # RecursionError: "[[[[..." nested too deep
        raise CheckpointError(
            f"{path}: corrupt safetensors header (not JSON); is this really a safetensors file?") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: corrupt safetensors header (not a JSON object)")
    data_len = size - 8 - n
    spans, tensors = [], {}
    for name, entry in header.items():
        if name == "__metadata__":
            if not (isinstance(entry, dict) and all(isinstance(v, str) for v in entry.values())):
                raise CheckpointError(f"{path}: corrupt safetensors header (__metadata__ must map strings to strings)")
            continue
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            raise CheckpointError(f"{path}: corrupt safetensors header (bad entry for tensor {name!r})")
        dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if not isinstance(dtype, str) or dtype not in _DTYPES:  # a JSON object or list here is unhashable
            raise CheckpointError(f"{path}: tensor {name!r} has unsupported dtype {dtype!r}")
        if not (isinstance(shape, list)
                and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape)):
            raise CheckpointError(f"{path}: tensor {name!r} has an invalid shape {shape!r}")
        if not (isinstance(offsets, list) and len(offsets) == 2
                and all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)):
            raise CheckpointError(f"{path}: tensor {name!r} has invalid data_offsets {offsets!r}")
        begin, end = offsets
        if not 0 <= begin <= end <= data_len:
            raise CheckpointError(
                f"{path}: tensor {name!r} claims bytes {begin}..{end} but the data section has {data_len} bytes")
        if end - begin != math.prod(shape) * _DTYPES[dtype][0]:
            raise CheckpointError(f"{path}: tensor {name!r} has {end - begin} bytes for shape {shape} of {dtype}")
        spans.append((begin, end, name))
        tensors[name] = (dtype, tuple(shape))
    spans.sort()
    for (b0, e0, n0), (b1, e1, n1) in zip(spans, spans[1:]):
        if b1 < e0:
            raise CheckpointError(f"{path}: tensors {n0!r} and {n1!r} overlap in the file")
    return tensors


# --------------------------------------------------------------------------- load / save


def _pickles_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES)


def _checkpoint_dir(folder) -> Path:
    """Resolve a user-given path to a checkpoint folder, refusing pickled files."""
    path = Path(folder)
    if path.is_file():
        if path.suffix.lower() in PICKLE_SUFFIXES:
            raise CheckpointError(f"{path.name}: {_PICKLE_HINT}")
        if path.name in (MODEL_FILE, CARD_FILE):
            return path.parent
        raise CheckpointError(f"{path}: a checkpoint is a folder holding {MODEL_FILE} and {CARD_FILE}, not a file")
    if not path.is_dir():
        raise CheckpointError(f"{path}: no such checkpoint folder")
    return path


def load_checkpoint(folder, device: str | torch.device = "cpu", snapshot: int | None = None) -> tuple[PointViT, dict]:
    """Load a checkpoint folder: the PointViT in eval mode and its card. Never unpickles.

    snapshot: a training step listed in the card's "snapshots" (the teacher at that step, stored in float16
    and returned as float32 in the model's own dtypes); None is the checkpoint itself."""
    folder = _checkpoint_dir(folder)
    pickles = _pickles_in(folder)
    if pickles:
        raise CheckpointError(f"{folder}: contains {', '.join(pickles)}; {_PICKLE_HINT}")
    card = read_card(folder)
    config = config_from_card(card)
    weights = folder / MODEL_FILE if snapshot is None else snapshot_file(folder, card, snapshot)
    if not weights.is_file():
        raise CheckpointError(f"{folder}: no {weights.relative_to(folder)}")
    model = _load_weights(weights, config, folder)
    return model.to(device).eval(), card


def snapshot_steps(card: dict) -> list[int]:
    """The training steps of the snapshots a card lists (ascending; empty when it has none)."""
    snaps = card.get("snapshots")
    if not isinstance(snaps, list):
        return []
    return sorted(int(s["step"]) for s in snaps if isinstance(s, dict) and isinstance(s.get("step"), int))


def snapshot_file(folder: Path, card: dict, step: int) -> Path:
    """The file of the snapshot at `step`: only names the card lists, and only inside snapshots/."""
    for s in card.get("snapshots") or []:
        if isinstance(s, dict) and s.get("step") == step:
            name = str(s.get("file", ""))
            path = (folder / name).resolve()
            if path.parent != (folder / "snapshots").resolve() or path.suffix != ".safetensors":
                raise CheckpointError(f"{folder}: snapshot {step} names {name!r}, not a file in snapshots/")
            return path
    raise CheckpointError(f"{folder}: no snapshot at step {step}; it has {snapshot_steps(card) or 'none'}")


def _load_weights(weights: Path, config: PointViTConfig, folder: Path) -> PointViT:
    """A PointViT of `config` with the tensors of `weights`, after checking the header matches it exactly."""
    header = check_safetensors_header(weights)
    with torch.device("meta"):  # shapes only: nothing is allocated before the file is known to match
        expected = PointViT(config).state_dict()
    missing = sorted(set(expected) - set(header))
    unexpected = sorted(set(header) - set(expected))
    mismatched = [f"{k}: file {list(header[k][1])} vs config {list(expected[k].shape)}"
                  for k in sorted(set(header) & set(expected)) if header[k][1] != tuple(expected[k].shape)]
    wrong_dtype = [f"{k}: {header[k][0]}" for k in sorted(set(header) & set(expected))
                   if expected[k].is_floating_point() and not _DTYPES[header[k][0]][1]]
    if missing or unexpected or mismatched or wrong_dtype:
        parts = []
        if missing:
            parts.append(f"missing {_short(missing)}")
        if unexpected:
            parts.append(f"unexpected {_short(unexpected)}")
        if mismatched:
            parts.append(f"shape mismatch {_short(mismatched)}")
        if wrong_dtype:
            parts.append(f"non-float tensors {_short(wrong_dtype)}")
        raise CheckpointError(f"{folder}: {weights.name} does not match the model in {CARD_FILE}: " + "; ".join(parts))
    try:
        state = load_file(str(weights), device="cpu")
    except Exception as err:  # the header passed our checks, so this is a truncated / damaged data section
        raise CheckpointError(f"{weights}: could not read tensors ({err})") from None
    model = PointViT(config)
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()}, strict=True)
    return model


def _short(items: list[str], n: int = 8) -> str:
    return ", ".join(items[:n]) + (f" (+{len(items) - n} more)" if len(items) > n else "")


def save_checkpoint(folder, model: PointViT, card: dict | None = None) -> Path:
    """Write model + card to `folder` atomically (temp folder, fsync, rename); returns the folder."""
    folder = Path(folder)
    parent = folder.parent
    parent.mkdir(parents=True, exist_ok=True)
    if folder.exists():
        if not folder.is_dir():
            raise CheckpointError(f"{folder}: exists and is not a folder")
        if any(folder.iterdir()) and not (folder / CARD_FILE).exists():
            raise CheckpointError(f"{folder}: exists and is not a checkpoint folder; refusing to replace it")
    extra = {k: v for k, v in (card or {}).items() if k not in ("format", "model", "pcdviz_version")}
    card = {"format": CARD_FORMAT, **extra, "model": _config_to_dict(model.config),
            "pcdviz_version": pcdviz.__version__}
    card.setdefault("created", datetime.now(timezone.utc).replace(microsecond=0).isoformat())
    json.dumps(card)  # fail before touching the disk if the card is not JSON-serialisable
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=parent))
    try:
        state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / MODEL_FILE), metadata={"format": "pt", "pcdviz": CARD_FORMAT})
        fsync_file(tmp / MODEL_FILE)
        _write_json(tmp / CARD_FILE, card)
        if folder.is_dir():  # keep files others put there (README.md model card, eval logs)
            for p in folder.iterdir():
                if p.name in (MODEL_FILE, CARD_FILE) or p.name.startswith(".") or p.is_symlink():
                    continue
                if p.is_dir():
                    shutil.copytree(p, tmp / p.name)
                elif p.is_file():
                    shutil.copy2(p, tmp / p.name)
                    fsync_file(tmp / p.name)
        _set_modes(tmp)
        fsync_dir(tmp)
        _replace_dir(tmp, folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return folder


def _set_modes(folder: Path) -> None:
    """mkdtemp makes 0700 folders (and safetensors 0600 files): give them the usual umask-based modes."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(folder, 0o777 & ~umask)
    for name in (MODEL_FILE, CARD_FILE):
        os.chmod(folder / name, 0o666 & ~umask)


def _replace_dir(src: Path, dst: Path) -> None:
    """Move src to dst; if dst exists, swap atomically where the OS allows, so dst is always complete."""
    if not dst.exists():
        os.rename(src, dst)
    elif _exchange(src, dst):
        shutil.rmtree(src)  # src now holds the old folder
    else:  # no atomic exchange: move the old one aside first; a crash in between leaves both complete
        old = Path(tempfile.mkdtemp(prefix=f".{dst.name}.old-", dir=dst.parent))
        os.rmdir(old)
        os.rename(dst, old)
        os.rename(src, dst)
        shutil.rmtree(old, ignore_errors=True)
    fsync_dir(dst.parent)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths with Linux renameat2(RENAME_EXCHANGE); False where unavailable."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    AT_FDCWD, RENAME_EXCHANGE = -100, 2
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    rc = renameat2(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE)
    return rc == 0


def fsync_file(path: Path) -> None:
    """Flush a file's data to disk, so that a rename never lands before the bytes it names."""
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def fsync_dir(path: Path) -> None:
    """Flush a folder's entries (a rename into it) to disk; best effort where the filesystem refuses."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_json(path: Path, obj) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, sort_keys=False)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())


def _write_json_atomic(path: Path, obj) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    os.close(fd)
    try:
        _write_json(Path(tmp), obj)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files
        os.replace(tmp, path)
        fsync_dir(path.parent)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


# --------------------------------------------------------------------------- scan


def scan_checkpoints(root) -> list[CheckpointInfo]:
    """Every folder under root (root included) with a config.json, sorted by name; broken ones carry .error."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))  # skip temp folders of a save in progress
        if CARD_FILE not in filenames:
            continue
        path = Path(dirpath)
        name = path.relative_to(root).as_posix() if path != root else root.name
        info = CheckpointInfo(name=name, path=path)
        try:
            info.card = read_card(path)
            pickles = _pickles_in(path)
            if pickles:
                raise CheckpointError(f"{path}: contains {', '.join(pickles)}; {_PICKLE_HINT}")
            if not (path / MODEL_FILE).is_file():
                raise CheckpointError(f"{path}: no {MODEL_FILE}")
            check_safetensors_header(path / MODEL_FILE)
        except (CheckpointError, OSError) as err:
            info.error = str(err)
            if not info.card:
                try:
                    raw = json.loads((path / CARD_FILE).read_text(encoding="utf-8"))
                    info.card = raw if isinstance(raw, dict) else {}
                except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError):
                    pass
        found.append(info)
    return sorted(found, key=lambda i: i.name)


# --------------------------------------------------------------------------- commands


def init_main(argv: list[str] | None = None) -> int:
    """`pcdviz init --preset tiny --out checkpoints/random-tiny --seed 0`: write a random-initialised checkpoint."""
    ap = argparse.ArgumentParser(prog="pcdviz init", description="Write a random-initialised (untrained) checkpoint.")
    ap.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    ap.add_argument("--out", required=True, help="checkpoint folder to write (replaced atomically if it exists)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    torch.manual_seed(args.seed)
    model = PointViT(preset(args.preset))
    card = {
        "method": "random",
        "data": None,
        "epochs": 0,
        "seed": args.seed,
        "preset": args.preset,
        "notes": "untrained baseline: DINO-style random init (trunc normal std .02) "
                 f"with torch.manual_seed({args.seed})",
    }
    try:
        path = save_checkpoint(args.out, model, card)
    except (CheckpointError, OSError) as err:
        print(f"pcdviz init: {err}", file=sys.stderr)
        return 1
    n = sum(p.numel() for p in model.parameters())
    print(f"wrote {path} ({args.preset}, {n / 1e6:.2f}M parameters, seed {args.seed})")
    return 0


if __name__ == "__main__":
    commands = {"init": init_main}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        print(f"usage: python -m pcdviz.checkpoints {{{'|'.join(commands)}}} ...", file=sys.stderr)
        sys.exit(2)
    sys.exit(commands[sys.argv[1]](sys.argv[2:]))
