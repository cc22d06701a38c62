"""Checkpoint folders: round trips, atomic replacement, and refusal of unsafe or mismatched files."""
import json
import os
import pickle
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from pcdviz import checkpoints as ck
from pcdviz.checkpoints import (CARD_FORMAT, CheckpointError, load_checkpoint, read_card, save_checkpoint,
                                scan_checkpoints, update_card)
from pcdviz.model import PointViT, preset

REPO = Path(__file__).resolve().parents[1]
SMALL = dict(n_points=128, n_groups=8, group_size=16, width=24, depth=2, n_heads=2, embed_dims=(8, 16), pos_hidden=16)


def small_model(seed=0, **kw) -> PointViT:
    torch.manual_seed(seed)
    return PointViT(preset("tiny", **{**SMALL, **kw})).eval()


@pytest.fixture
def saved(tmp_path):
    m = small_model()
    folder = save_checkpoint(tmp_path / "ck", m, {"method": "random", "epochs": 0})
    return m, folder


def test_round_trip_bit_for_bit(saved):
    m, folder = saved
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    loaded, card = load_checkpoint(folder)
    assert not loaded.training
    assert card["format"] == CARD_FORMAT and card["method"] == "random"
    assert card["model"]["width"] == 24 and card["pcdviz_version"]
    assert loaded.config == m.config
    for k, v in m.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k
    x = torch.randn(2, 128, 3)
    with torch.no_grad():
        a, b = m(x, return_attention=True), loaded(x, return_attention=True)
    assert torch.equal(a.cls, b.cls) and torch.equal(a.patches, b.patches)
    assert all(torch.equal(p, q) for p, q in zip(a.attentions, b.attentions))


def test_load_accepts_file_paths_inside_folder(saved):
    _, folder = saved
    load_checkpoint(folder / "model.safetensors")
    load_checkpoint(str(folder / "config.json"))


def test_card_read_and_update(saved):
    _, folder = saved
    update_card(folder, scores={"svm_acc": 0.5}, epochs=3)
    card = update_card(folder, scores={"part_iou": 0.25})
    assert card["scores"] == {"svm_acc": 0.5, "part_iou": 0.25} and card["epochs"] == 3
    assert read_card(folder) == card
    with pytest.raises(CheckpointError):
        update_card(folder, model={"width": 1})
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no temp files left


def test_save_replaces_atomically_and_keeps_extra_files(saved, tmp_path):
    m, folder = saved
    (folder / "README.md").write_text("card")
    (folder / "eval").mkdir()
    (folder / "eval" / "log.txt").write_text("log")
    m2 = small_model(seed=1)
    save_checkpoint(folder, m2, {"method": "dino"})
    loaded, card = load_checkpoint(folder)
    assert card["method"] == "dino" and (folder / "README.md").read_text() == "card"
    assert (folder / "eval" / "log.txt").read_text() == "log"
    umask = os.umask(0)
    os.umask(umask)
    assert (folder / "model.safetensors").stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600
    assert torch.equal(loaded.cls_token, m2.cls_token)
    assert [p.name for p in tmp_path.iterdir()] == ["ck"]  # no temp or backup folders left


def test_save_without_atomic_exchange(saved, tmp_path, monkeypatch):
    m, folder = saved
    monkeypatch.setattr(ck, "_exchange", lambda a, b: False)
    save_checkpoint(folder, small_model(seed=2), {"method": "dino"})
    assert load_checkpoint(folder)[1]["method"] == "dino"
    assert [p.name for p in tmp_path.iterdir()] == ["ck"]


def test_failed_save_leaves_old_checkpoint(saved, monkeypatch):
    m, folder = saved
    before = (folder / "model.safetensors").read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(ck, "save_file", boom)
    with pytest.raises(OSError):
        save_checkpoint(folder, small_model(seed=3), {"method": "dino"})
    assert (folder / "model.safetensors").read_bytes() == before
    assert load_checkpoint(folder)[1]["method"] == "random"
    assert [p.name for p in folder.parent.iterdir()] == ["ck"]


def test_save_refuses_to_clobber_other_folders(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "precious.txt").write_text("x")
    with pytest.raises(CheckpointError):
        save_checkpoint(tmp_path / "data", small_model(), {})
    assert (tmp_path / "data" / "precious.txt").exists()


# ---------------------------------------------------------------- unsafe files


class WritesAFile:
    """Unpickling this calls open(path, 'w'): proof that code ran."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".ckpt", ".pkl"])
def test_refuses_pickle_file_without_running_it(tmp_path, suffix):
    marker = tmp_path / "pwned.txt"
    bad = tmp_path / f"model{suffix}"
    bad.write_bytes(pickle.dumps({"state": WritesAFile(str(marker))}))
    with pytest.raises(CheckpointError, match="pickled checkpoints are refused"):
        load_checkpoint(bad)
    assert not marker.exists()


def test_refuses_folder_with_pickle(tmp_path, saved):
    marker = tmp_path / "pwned.txt"
    only = tmp_path / "only_pickle"
    only.mkdir()
    (only / "model.pt").write_bytes(pickle.dumps(WritesAFile(str(marker))))
    with pytest.raises(CheckpointError, match="pickled checkpoints are refused"):
        load_checkpoint(only)
    _, folder = saved  # a valid checkpoint with a pickle dropped next to it
    (folder / "extra.pth").write_bytes(pickle.dumps(WritesAFile(str(marker))))
    with pytest.raises(CheckpointError, match="extra.pth"):
        load_checkpoint(folder)
    assert not marker.exists()


def test_refuses_pickle_renamed_to_safetensors(saved, tmp_path):
    _, folder = saved
    marker = tmp_path / "pwned.txt"
    (folder / "model.safetensors").write_bytes(pickle.dumps(WritesAFile(str(marker))))
    with pytest.raises(CheckpointError, match="header"):
        load_checkpoint(folder)
    assert not marker.exists()


def _rewrite_header(path: Path, header: dict, data: bytes) -> None:
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)


def _header(path: Path):
    blob = path.read_bytes()
    (n,) = struct.unpack("<Q", blob[:8])
    return json.loads(blob[8:8 + n]), blob[8 + n:]


def test_refuses_huge_declared_header(saved):
    _, folder = saved
    f = folder / "model.safetensors"
    blob = f.read_bytes()
    f.write_bytes(struct.pack("<Q", 2**62) + blob[8:])
    with pytest.raises(CheckpointError, match="corrupt safetensors header"):
        load_checkpoint(folder)
    f.write_bytes(struct.pack("<Q", len(blob)) + blob[8:])  # plausible size, beyond the end of the file
    with pytest.raises(CheckpointError, match="corrupt safetensors header"):
        load_checkpoint(folder)


def test_refuses_offsets_beyond_file_end(saved):
    _, folder = saved
    f = folder / "model.safetensors"
    header, data = _header(f)
    name = next(k for k in header if k != "__metadata__")
    begin, end = header[name]["data_offsets"]
    header[name]["data_offsets"] = [begin, end + 10**12]
    header[name]["shape"] = [(end + 10**12 - begin) // 4]
    _rewrite_header(f, header, data)
    with pytest.raises(CheckpointError, match="data section"):
        load_checkpoint(folder)


def test_refuses_overlapping_and_inconsistent_entries(saved):
    _, folder = saved
    f = folder / "model.safetensors"
    header, data = _header(f)
    names = [k for k in header if k != "__metadata__"]
    good = json.loads(json.dumps(header))
    header[names[1]]["data_offsets"] = list(header[names[0]]["data_offsets"])
    header[names[1]]["shape"] = list(header[names[0]]["shape"])
    _rewrite_header(f, header, data)
    with pytest.raises(CheckpointError, match="overlap"):
        load_checkpoint(folder)
    bad = json.loads(json.dumps(good))
    bad[names[0]]["dtype"] = "F128"
    _rewrite_header(f, bad, data)
    with pytest.raises(CheckpointError, match="dtype"):
        load_checkpoint(folder)
    bad = json.loads(json.dumps(good))
    bad[names[0]]["shape"] = [s * 2 for s in bad[names[0]]["shape"]]
    _rewrite_header(f, bad, data)
    with pytest.raises(CheckpointError, match="bytes for shape"):
        load_checkpoint(folder)
    f.write_bytes(b"\x01\x00")
    with pytest.raises(CheckpointError, match="too short"):
        load_checkpoint(folder)


def test_refuses_truncated_data(saved):
    _, folder = saved
    f = folder / "model.safetensors"
    f.write_bytes(f.read_bytes()[:-100])
    with pytest.raises(CheckpointError):
        load_checkpoint(folder)


def test_refuses_tensors_not_matching_config(saved):
    m, folder = saved
    state = {k: v.contiguous() for k, v in m.state_dict().items()}
    f = str(folder / "model.safetensors")
    wide = small_model(width=32, n_heads=2).state_dict()
    save_file({k: v.contiguous() for k, v in wide.items()}, f)
    with pytest.raises(CheckpointError, match="shape mismatch"):
        load_checkpoint(folder)
    missing = dict(state)
    missing.pop("norm.weight")
    missing["extra.weight"] = torch.zeros(3)
    save_file(missing, f)
    with pytest.raises(CheckpointError, match=r"missing norm\.weight.*unexpected extra\.weight"):
        load_checkpoint(folder)
    ints = dict(state)
    ints["norm.weight"] = torch.ones(24, dtype=torch.int32)
    save_file(ints, f)
    with pytest.raises(CheckpointError, match="non-float"):
        load_checkpoint(folder)


@pytest.mark.parametrize("card, match", [
    ("not json", "not valid JSON"),
    ("[1, 2]", "JSON object"),
    (json.dumps({"model": {}}), "format"),
    (json.dumps({"format": "other/9", "model": {}}), "format"),
    (json.dumps({"format": CARD_FORMAT}), '"model"'),
    (json.dumps({"format": CARD_FORMAT, "model": {"width": 24}}), "not a valid PointViT"),
    (json.dumps({"format": CARD_FORMAT, "model": {**SMALL, "bogus": 1}}), "unknown keys"),
    (json.dumps({"format": CARD_FORMAT, "model": {**SMALL, "width": -3}}), "positive integer"),
    (json.dumps({"format": CARD_FORMAT, "model": {**SMALL, "embed_dims": "big"}}), "embed_dims"),
    (json.dumps({"format": CARD_FORMAT, "model": {**SMALL, "width": 25}}), "divisible"),
])
def test_refuses_bad_cards(saved, card, match):
    _, folder = saved
    (folder / "config.json").write_text(card)
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(folder)


def test_missing_things(tmp_path, saved):
    with pytest.raises(CheckpointError, match="no such"):
        load_checkpoint(tmp_path / "nope")
    _, folder = saved
    (folder / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="no model.safetensors"):
        load_checkpoint(folder)
    other = tmp_path / "notes.txt"
    other.write_text("x")
    with pytest.raises(CheckpointError, match="folder"):
        load_checkpoint(other)


def test_scan_lists_good_and_broken(tmp_path):
    m = small_model()
    save_checkpoint(tmp_path / "b-good", m, {"method": "dino"})
    save_checkpoint(tmp_path / "nested" / "a-good", m, {"method": "random"})
    broken = tmp_path / "c-broken"
    broken.mkdir()
    (broken / "config.json").write_text("{oops")
    (tmp_path / "d-no-card").mkdir()
    (tmp_path / ".c-broken.tmp-123").mkdir()  # an interrupted save: ignored
    (tmp_path / ".c-broken.tmp-123" / "config.json").write_text("{}")
    infos = scan_checkpoints(tmp_path)
    assert [i.name for i in infos] == ["b-good", "c-broken", "nested/a-good"]
    good = {i.name: i for i in infos}
    assert good["b-good"].error is None and good["b-good"].card["method"] == "dino"
    assert good["c-broken"].error and "JSON" in good["c-broken"].error
    assert scan_checkpoints(tmp_path / "missing") == []


def test_init_main_and_committed_random_tiny(tmp_path, capsys):
    out = tmp_path / "random-tiny"
    assert ck.init_main(["--preset", "tiny", "--out", str(out), "--seed", "0"]) == 0
    model, card = load_checkpoint(out)
    assert card["method"] == "random" and card["model"] == read_card(out)["model"]
    committed = REPO / "checkpoints" / "random-tiny"
    if not committed.exists():
        pytest.skip("checkpoints/random-tiny is not in this checkout")
    shipped, shipped_card = load_checkpoint(committed)
    assert shipped_card["method"] == "random"
    assert shipped.config == preset("tiny")
    assert (committed / "README.md").exists()
    # re-running the documented command reproduces the committed weights exactly
    for k, v in model.state_dict().items():
        assert torch.equal(v, shipped.state_dict()[k]), k
    assert os.path.getsize(committed / "model.safetensors") < 16 * 1024**2


def test_init_main_reports_errors(tmp_path, capsys):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "x.txt").write_text("x")
    assert ck.init_main(["--out", str(tmp_path / "data")]) == 1
    assert "refusing" in capsys.readouterr().err


def test_huge_architecture_in_card_allocates_nothing(saved):
    _, folder = saved
    card = read_card(folder)
    card["model"]["width"] = 16384  # 3 GB per block if it were built for real
    card["model"]["n_heads"] = 2
    (folder / "config.json").write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match="shape mismatch"):
        load_checkpoint(folder)
    card["model"]["depth"] = 10**9
    (folder / "config.json").write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match="up to"):
        load_checkpoint(folder)


